"""What each panel of the probe shows for a result: PNG bytes and HTML, from the results of
:mod:`infodecomp.experiments.probe` and the overlays of :mod:`infodecomp.plotting`. Pure functions: no widget state,
no model call (the widget, :mod:`infodecomp.widgets.probe`, puts their output on screen).

A panel is ``(png, value_html, title_html)``; ``title_html`` is None where the panel keeps its heading.
"""

from __future__ import annotations

import html
import io

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from PIL import Image

from ..experiments.probe import ProbeIntervention, ProbePair, ProbeResult, target_text
from ..plotting import PID_ATOMS, heat_overlay, information_bars

Panel = tuple[bytes, str, "str | None"]

#: The two-word panels: (atom, heading, what it is).
PAIR_PANELS = (("redundancy", "redundancy R", "what both words tell"),
               ("unique1", "unique U1", "only word 1 tells"),
               ("unique2", "unique U2", "only word 2 tells"),
               ("synergy", "synergy S", "only both together tell"))
#: Opacity of the atoms' colours over the image: a diverging scale (blue negative) must not be read as a blue
#: object showing through, so the image stays only faintly visible.
PAIR_ALPHA = 0.75


def png(array: np.ndarray) -> bytes:
    """uint8 ``[H, W, 3]`` → PNG bytes."""
    buf = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(array)).save(buf, format="PNG")
    return buf.getvalue()


def figure_png(fig, dpi: int = 100) -> bytes:
    """A ``matplotlib.figure.Figure`` (not pyplot: the probe draws from a worker thread) → PNG bytes."""
    FigureCanvasAgg(fig)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi)
    return buf.getvalue()


def title(heading: str, subtitle: str) -> str:
    """A panel's two-line heading (every panel has two lines, so the images line up)."""
    return f"<b>{html.escape(heading)}</b><br><small>{html.escape(subtitle)}</small>"


def value_html(name: str, value: float, stderr: float, unit: str = "nats") -> str:
    """``name value ± stderr unit``, the numbers in spans the tests read (``probe-number``, ``probe-stderr``)."""
    return (f"<b>{html.escape(name)}</b> <span class='probe-number'>{value:.3f}</span> ± "
            f"<span class='probe-stderr'>{stderr:.3f}</span> {unit} <small>(± 1 s.e.)</small>")


def _met(met: bool | None) -> str:
    return "" if met is None else (" ✓" if met else " (target not met)")


def cost_html(res: ProbeResult | ProbePair) -> str:
    """What a result cost, for the status line: the draws each map took (under a precision target: of the cap,
    and whether it met the target) and the denoiser evaluations, in a span the tests read (``probe-cost``)."""
    s = res.settings
    if isinstance(res, ProbePair):
        draws = (f"{res.n_samples} of at most {s.n_samples} draws{_met(res.target_met)}" if s.targeted
                 else f"{res.n_samples} draws")
    elif s.targeted:
        draws = (f"MI {res.mi_samples}{_met(res.mi_target_met)}, CMI {res.cmi_samples}{_met(res.cmi_target_met)}"
                 f" of at most {s.n_samples} draws")
    else:
        draws = f"{s.n_samples} draws per map"
    target = "" if not s.targeted else f"target s.e. {html.escape(target_text(s.target_stderr, s.relative_stderr))}: "
    return f"<span class='probe-cost'>{target}{html.escape(draws)}; {res.evaluations} denoiser evaluations</span>"


def draws_label(res: ProbeResult | ProbePair) -> str:
    """The draws behind a bar chart: ``16 draws``, or ``MI 8, CMI 16 draws`` when the maps stopped apart."""
    if isinstance(res, ProbePair):
        return f"{res.n_samples} draws"
    if res.mi_samples == res.cmi_samples:
        return f"{res.cmi_samples} draws"
    return f"MI {res.mi_samples}, CMI {res.cmi_samples} draws"


def enlarge(image: np.ndarray, size: int) -> np.ndarray:
    """``image`` uint8 ``[H, W, 3]`` with its longer side ``size`` pixels (nearest neighbours when enlarging,
    so small ShapesWorld images stay crisp; Lanczos when shrinking)."""
    H, W = image.shape[:2]
    f = size / max(H, W)
    new = (max(1, round(W * f)), max(1, round(H * f)))
    resample = Image.Resampling.NEAREST if f >= 1 else Image.Resampling.LANCZOS
    return np.asarray(Image.fromarray(image).resize(new, resample))


def word_panels(res: ProbeResult, size: int) -> tuple[dict[str, Panel], bytes]:
    """The panels of one word (MI and CMI on one colour scale, as in the paper's Fig. 2; the attention map on its
    own) and the bar chart of the image-level values."""
    lo = min(float(res.mi.min()), float(res.cmi.min()))
    hi = max(float(res.mi.max()), float(res.cmi.max()))
    cmi = png(heat_overlay(res.image, res.cmi, lo=lo, hi=hi, size=size))
    ctx = res.context if res.context else "∅ (null prompt)"
    cmi_value = value_html("CMI", res.cmi_image, res.cmi_stderr)
    panels = {
        "mi": (png(heat_overlay(res.image, res.mi, lo=lo, hi=hi, size=size)),
               value_html("MI", res.mi_image, res.mi_stderr),
               title(f"pixel MI i(x; “{res.word}”)", "the word vs the null prompt")),
        "cmi": (cmi, cmi_value, title(f"pixel CMI i(x; “{res.word}” | c)", f"c = “{ctx}”")),
        "attention": (png(heat_overlay(res.image, res.attention, size=size)),
                      f"<small>word “{html.escape(res.word)}”, max-normalised</small>", None),
        "intervention_cmi": (cmi, cmi_value, None),
    }
    bars = figure_png(information_bars({"MI": (res.mi_image, res.mi_stderr),
                                        "CMI": (res.cmi_image, res.cmi_stderr)},
                                       title=f"“{res.word}”, {draws_label(res)}"))
    return panels, bars


def intervention_panels(iv: ProbeIntervention, size: int) -> dict[str, Panel]:
    """The reconstruction, the edit and the latent change over the reconstruction."""
    done = "omitted" if iv.kind == "omit" else "swapped"
    return {
        "reconstruction": (png(enlarge(iv.reconstruction, size)), f"<small>“{html.escape(iv.prompt)}”</small>",
                           None),
        "edited": (png(enlarge(iv.edited, size)), f"<small>“{html.escape(iv.edit_prompt)}”</small>",
                   title(iv.kind, f"regenerated with “{iv.word}” {done}")),
        "change": (png(heat_overlay(iv.reconstruction, iv.change, size=size)),
                   f"<b>change</b> Σ <span class='probe-number'>{iv.change_total:.3g}</span>"
                   f" <small>(Σ_channels Δlatent², {iv.steps} ODE steps)</small>", None),
    }


def pair_panels(res: ProbePair, size: int, *, redundancy: str = "ccs", estimator: str = "orthogonal"
                ) -> tuple[dict[str, Panel], bytes, str]:
    """The two-word mode: the maps of R, U1, U2 and S over the image on ONE colour scale symmetric about 0
    (red positive, blue negative, white 0), their image-level values ± standard errors, the bar chart of the
    atoms, and a line with the context, i1, i2, i12 and the co-information. Keys ``pid_<atom>``."""
    key = (estimator, redundancy)
    maps, values = res.maps[key], res.values[key]
    bound = max(max(float(np.abs(maps[a]).max()) for a in PID_ATOMS), 1e-12)  # 0 is white, also for flat maps
    words = {"unique1": res.word1, "unique2": res.word2}
    panels = {}
    for atom, heading, _ in PAIR_PANELS:
        overlay = heat_overlay(res.image, maps[atom], lo=-bound, hi=bound, size=size, cmap="RdBu_r",
                               alpha=PAIR_ALPHA)
        panels[f"pid_{atom}"] = (png(overlay), value_html(PID_ATOMS[atom], *values[atom]),
                                 title(heading, f"only “{words[atom]}” tells") if atom in words else None)
    est = "i^o" if estimator == "orthogonal" else "i^s"
    bars = figure_png(information_bars(
        {PID_ATOMS[a]: values[a] for a in PID_ATOMS},
        title=f"{redundancy.upper()}, {est}, {draws_label(res)}"))  # the words: in the panels
    terms = "; ".join(f"{html.escape(name)} = {values[q][0]:.3f} ± {values[q][1]:.3f}"
                      for name, q in (("i(x; y1|c)", "i1"), ("i(x; y2|c)", "i2"), ("i(x; y1, y2|c)", "i12"),
                                      ("co-information", "coinformation")))
    ctx = res.conditions[0] or "∅ (null prompt)"
    y1, y2 = html.escape(res.word1), html.escape(res.word2)
    info = (f"<small>c = “{html.escape(ctx)}”; y1 = “{y1}”, y2 = “{y2}”: "
            f"{terms} nats (± 1 s.e.; {redundancy.upper()} redundancy, estimator {est}; colour scale ± "
            f"{bound:.3g} nats per latent pixel, red positive)</small>")
    return panels, bars, info
