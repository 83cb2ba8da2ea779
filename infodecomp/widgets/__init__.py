"""The interactive probe: click a word of a prompt, see where and how much the model depends on it.

::

    from infodecomp.models import load_model
    from infodecomp.widgets import Probe

    probe = Probe(load_model("shapes-tiny"))   # a ShapesWorld image and its caption to start with
    probe                                      # display it (JupyterLab, Voilà, classic notebook)

Choose an image (a dataset item, an uploaded file, or one generated from the prompt), edit the prompt, click a word:
the pixel MI i^o_j(x; y*), the pixel CMI i^o_j(x; y*|c) (MI and CMI share one colour scale, as in the paper's
Fig. 2) and the word's Attention+Information map appear side by side over the image, with the image-level
values and their standard errors. A precision target ("target s.e.": off, "10%" of each map's sum, or "0.05" nats)
draws each map until the standard error of its sum reaches it, with "samples" as the cap, and the status line says
the draws and denoiser evaluations a click took (docs/probe.md#precision-targets). "intervene" regenerates the image from its inversion with the word omitted
(or swapped for the word typed beside it) and shows the change beside the CMI map (Figs. 1 and 3).

**Two words** (beyond the paper, :mod:`infodecomp.pid`): in the "two words" mode, click two words y1, y2 of the
prompt. The probe shows the per-pixel maps of redundancy R, unique information U1 and U2 and synergy S over the
image, on one colour scale symmetric about 0 (red: positive, blue: negative), and the image-level atoms with their
standard errors; c is the prompt without both words. The redundancy is "ccs" (common change in surprisal) by
default, "mmi" (the minimum) by its toggle; the estimator is i^o by default, i^s by its toggle. The toggles redraw
from the same denoiser calls.

The widget only displays (docs/architecture.md#display-only): the numbers come from
:mod:`infodecomp.experiments.probe` (which calls :func:`~infodecomp.experiments.heatmaps.word_heatmaps`,
:func:`infodecomp.editing.intervene` and :mod:`infodecomp.pid`). Work runs in a background thread with a progress
bar and a busy state, so the notebook stays responsive; with ``background=False`` each action also waits for its
work to finish (headless use, tests), and :meth:`Probe.wait` blocks until queued work is done in either mode.
Results are cached per (image, prompt, words, settings).

**Only what is on screen is shown.** Each job carries the state it started from (image, prompt, mode, words,
settings). A job whose state is no longer on screen when its turn comes is skipped; a result whose state changed
while it was computed (another image chosen, the prompt edited, other words or settings picked) is discarded,
never drawn, and the status line says so. :meth:`Probe.figure` draws only results of the current state. Errors —
a word not in the prompt, a prompt over the tokenizer's limit, an unreadable upload — are shown as a message in
the widget, never as a traceback.

Modules: :mod:`~infodecomp.widgets.probe` (the widget: controls, what is on screen, the work queue) and
:mod:`~infodecomp.widgets.panels` (what each panel draws from a result).
"""

from ..experiments.probe import ProbeSettings
from .probe import SAMPLE_CHOICES, Probe

__all__ = ["Probe", "ProbeSettings", "SAMPLE_CHOICES"]
