"""The probe widget (:class:`Probe`; what it is and does: :mod:`infodecomp.widgets`): its controls, what is on screen,
the jobs it runs in a background thread and the state each job carries."""

from __future__ import annotations

import hashlib
import html
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Sequence

import numpy as np

from ..checks import rgb_image
from ..experiments import probe as _probe
from ..experiments.probe import (ProbeIntervention, ProbePair, ProbeResult, ProbeSettings, target_from_text,
                                 target_text)
from ..plotting import probe_figure, probe_pair_figure
from ..text import check_prompt_length, prompt_words
from .panels import (PAIR_PANELS, Panel, cost_html, enlarge, intervention_panels, pair_panels, png, title,
                     word_panels)

__all__ = ["Probe", "ProbeSettings"]

#: Choices offered for the number of log-SNR draws per map.
SAMPLE_CHOICES = (2, 4, 8, 16, 32, 64, 128, 256)


class Probe:
    """An ipywidgets probe of a text-to-image diffusion model (see the module docstring).

    Args:
        model: an :class:`infodecomp.models.Model` (e.g. ``load_model("shapes-tiny")``).
        dataset: rows with ``image`` and ``caption`` (and optionally ``swap_word``) to pick from; default the
            ShapesWorld twin of COCO100-IT (:func:`infodecomp.experiments.probe.default_dataset`).
        image, prompt: a starting image (PIL, uint8 ``[H, W, 3]``) and prompt; default: dataset item 0.
        settings: the starting :class:`ProbeSettings` (number of samples, precision target, log-SNR loc / scale /
            clip, seed).
        background: ``True``: a click returns at once while the work runs in a background thread (the notebook
            stays responsive); ``False``: a click returns when its maps are shown (headless use, tests).
        display_size: side of each displayed panel in pixels.
        intervention_steps: σ values of the Heun ODE for "intervene" (the paper: 100).
        generation_steps, guidance_scale: the pipeline's sampler for "generate from prompt".
        max_cache: most results kept (least recently used dropped first).

    Programmatic use mirrors the buttons: ``probe.prompt.value = "..."``, ``probe.word_buttons[i].click()`` or
    :meth:`show_word`, :meth:`intervene`, :meth:`load_item`, :meth:`load_image_bytes`, :meth:`generate`; in the
    two-word mode (``probe.mode.value = "two"``) word clicks or :meth:`show_pair`, and ``probe.redundancy.value``
    ("ccs" / "mmi"); ``probe.target.value = "10%"`` for a precision target; then :meth:`wait`. The results shown are ``probe.result``
    (:class:`~infodecomp.experiments.probe.ProbeResult`), ``probe.intervention`` and ``probe.pair_result``
    (:class:`~infodecomp.experiments.probe.ProbePair`); ``probe.n_computed`` / ``n_pairs`` count map and
    decomposition computations (cache hits do not count), ``probe.n_discarded`` results dropped as no longer
    current.
    """

    def __init__(self, model, *, dataset: Sequence[dict] | None = None, image=None, prompt: str | None = None,
                 settings: ProbeSettings | None = None, background: bool = True, display_size: int = 192,
                 intervention_steps: int = 20, generation_steps: int = 30, guidance_scale: float = 3.0,
                 max_cache: int = 128):
        import ipywidgets as w  # optional (the notebooks extra): only when a probe is shown

        self.model = model
        self.background = bool(background)
        self.display_size = int(display_size)
        self.generation_steps = int(generation_steps)
        self.guidance_scale = float(guidance_scale)
        self.max_cache = int(max_cache)
        settings = settings or ProbeSettings()
        if not isinstance(settings, ProbeSettings):
            raise TypeError(f"settings must be an infodecomp.widgets.ProbeSettings, got {type(settings).__name__}")
        self.dataset = dataset if dataset is not None else _probe.default_dataset()
        if image is None and len(self.dataset) == 0:
            raise ValueError("no image given and the dataset is empty; pass image= or a non-empty dataset=")

        # state
        self.result: ProbeResult | None = None
        self.intervention: ProbeIntervention | None = None
        self.pair_result: ProbePair | None = None
        self.word: str | None = None
        self.pair: tuple[str, ...] = ()  # the words picked in the two-word mode (0, 1 or 2)
        self.n_computed = 0
        self.n_pairs = 0
        self.n_intervened = 0
        self.n_cache_hits = 0
        self.n_discarded = 0
        self.last_latency: float | None = None
        self.last_error: BaseException | None = None
        self._image = None            # uint8 [H, W, 3] at the model's resolution
        self._image_key = ""
        self._shown: tuple = ()       # the state of the results shown
        self._cache: OrderedDict = OrderedDict()
        self._lock = threading.Lock()  # the cache and the queue
        # What is on screen (image, prompt, mode, words, shown results) changes under this lock, and a job checks
        # that its state is still current and draws its result under it: nothing stale is drawn in between.
        self._view_lock = threading.RLock()
        self._idle = threading.Event()
        self._idle.set()
        self._pending: Callable[[], None] | None = None
        self._running = False
        self._worker: int | None = None

        S = f"{self.display_size}px"
        lo, hi = model.logsnr_range

        # -- image source ---------------------------------------------------------------------------------
        self.item = w.BoundedIntText(value=0, min=0, max=max(len(self.dataset) - 1, 0), description="dataset item",
                                     style={"description_width": "initial"}, layout=w.Layout(width="170px"))
        self.upload = w.FileUpload(accept="image/*", multiple=False, description="upload image")
        self.generate_button = w.Button(description="generate from prompt", icon="magic",
                                        tooltip="replace the image by one the model generates from the prompt",
                                        layout=w.Layout(width="auto"))
        # -- prompt and words -----------------------------------------------------------------------------
        self.prompt = w.Text(description="prompt", layout=w.Layout(width="520px"))
        self.words_box = w.HBox(layout=w.Layout(flex_flow="row wrap"))
        self.words_box.add_class("probe-words")
        self.mode = w.ToggleButtons(options=[("one word", "one"), ("two words", "two")], value="one",
                                    tooltips=["maps of one word", "decompose what two words tell (PID)"],
                                    style={"button_width": "90px"})
        self.mode.add_class("probe-mode")
        self.redundancy = w.ToggleButtons(options=[("CCS", "ccs"), ("MMI", "mmi")], value="ccs",
                                          description="redundancy", style={"button_width": "52px"},
                                          tooltips=["common change in surprisal (pointwise)",
                                                    "minimum of the two informations"])
        self.redundancy.add_class("probe-redundancy")
        self.estimator = w.ToggleButtons(options=[("i^o", "orthogonal"), ("i^s", "standard")],
                                         value="orthogonal", description="estimator",
                                         style={"button_width": "52px"},
                                         tooltips=["orthogonal estimator", "standard estimator"])
        self.estimator.add_class("probe-estimator")
        # -- settings -------------------------------------------------------------------------------------
        choices = sorted(set(SAMPLE_CHOICES) | {int(settings.n_samples)})
        self.n_samples = w.Dropdown(options=choices, value=int(settings.n_samples), description="samples",
                                    tooltip="log-SNR draws per map", layout=w.Layout(width="160px"))
        slider = dict(continuous_update=False, readout_format=".2f", layout=w.Layout(width="260px"))
        self.loc = w.FloatSlider(value=settings.loc, min=-4.0, max=6.0, step=0.25, description="log-SNR loc",
                                 style={"description_width": "initial"}, **slider)
        self.scale = w.FloatSlider(value=settings.scale, min=0.25, max=4.0, step=0.25, description="scale",
                                   **slider)
        self.clip = w.FloatSlider(value=settings.clip, min=0.5, max=5.0, step=0.25, description="clip", **slider)
        self.seed = w.BoundedIntText(value=int(settings.seed), min=0, max=2**31 - 1, description="seed",
                                     layout=w.Layout(width="150px"))
        # The precision target (issue 27): "off" = the fixed draws; "10%" or "0.05" (nats) = draw each map in blocks
        # until the standard error of its sum reaches it, "samples" being then the cap. Read on Enter or leaving.
        self.target = w.Text(value=target_text(settings.target_stderr, settings.relative_stderr),
                             placeholder="off", description="target s.e.", continuous_update=False,
                             tooltip="off: a fixed number of draws; 10%: until each map's total has a standard "
                                     "error of 10% of it; 0.05: of 0.05 nats (samples: the most draws)",
                             style={"description_width": "initial"}, layout=w.Layout(width="190px"))
        self.target.add_class("probe-target")
        self._attention_samples = settings.attention_samples
        self._block = settings.block
        self.range_label = w.HTML()
        self._trained = (lo, hi)
        # -- status ---------------------------------------------------------------------------------------
        self.progress = w.FloatProgress(value=0.0, min=0.0, max=1.0, description="idle",
                                        layout=w.Layout(width="300px"))
        self.status = w.HTML()
        self.status.add_class("probe-status")
        self.message = w.HTML()
        self.message.add_class("probe-message")
        # -- panels ---------------------------------------------------------------------------------------
        self.views: dict[str, w.Image] = {}
        self.titles: dict[str, w.HTML] = {}
        self.values: dict[str, w.HTML] = {}

        self._default_titles: dict[str, str] = {}

        def panel(key: str, heading: str, subtitle: str):
            img = w.Image(format="png", layout=w.Layout(width=S, height=S, object_fit="contain"))
            img.add_class(f"probe-map-{key}")
            self._default_titles[key] = title(heading, subtitle)
            t = w.HTML(self._default_titles[key])
            v = w.HTML("—")
            v.add_class(f"probe-value-{key}")
            self.views[key], self.titles[key], self.values[key] = img, t, v
            return w.VBox([t, img, v], layout=w.Layout(margin="0 6px 0 0"))

        image_panel = panel("image", "image", "as the model sees it")
        self.bars = w.Image(format="png", layout=w.Layout(width="260px"))
        self.bars.add_class("probe-bars")
        self.word_maps = w.HBox([panel("mi", "pixel MI i(x; y*)", "the word vs the null prompt"),
                                 panel("cmi", "pixel CMI i(x; y*|c)", "c: the prompt without the word"),
                                 panel("attention", "attention", "cross-attention of the word"), self.bars])
        self.pid_bars = w.Image(format="png", layout=w.Layout(width="260px"))
        self.pid_bars.add_class("probe-pid-bars")
        self.pair_info = w.HTML()
        self.pair_info.add_class("probe-pid-info")
        self.pair_maps = w.VBox([
            w.HBox([self.redundancy, self.estimator]),
            w.HBox([panel(f"pid_{a}", heading, sub) for a, heading, sub in PAIR_PANELS] + [self.pid_bars]),
            self.pair_info], layout=w.Layout(display="none"))
        # -- intervention ---------------------------------------------------------------------------------
        self.swap = w.Text(placeholder="(empty: omit the word)", description="swap with",
                           layout=w.Layout(width="260px"))
        self.steps = w.BoundedIntText(value=int(intervention_steps), min=2, max=1000, description="ODE steps",
                                      layout=w.Layout(width="170px"), style={"description_width": "initial"})
        self.intervene_button = w.Button(description="intervene", icon="random", button_style="warning",
                                         tooltip="regenerate the image from its inversion with the word omitted "
                                                 "or swapped")
        self.intervene_button.add_class("probe-intervene")
        iv_row = w.HBox([panel("intervention_cmi", "CMI of the word", "where the word is informative"),
                         panel("reconstruction", "reconstruction", "inverted, regenerated with the prompt"),
                         panel("edited", "edited", "regenerated with the edit"),
                         panel("change", "change", "Σ_channels Δlatent², over the reconstruction")])
        self.intervention_box = w.VBox([w.HBox([self.swap, self.steps, self.intervene_button]), iv_row])

        self.widget = w.VBox([
            w.HTML(f"<h3 style='margin:4px 0'>infodecomp probe — {html.escape(str(getattr(model, 'name', '')))}"
                   "</h3>"),
            w.HBox([self.item, self.upload, self.generate_button]),
            self.prompt,
            w.HBox([self.mode, w.HTML("&nbsp;<b>click a word:</b>&nbsp;"), self.words_box]),
            w.HBox([self.n_samples, self.target, self.seed, self.range_label]),
            w.HBox([self.loc, self.scale, self.clip]),
            w.HBox([self.progress, self.status]),
            self.message,
            w.HBox([image_panel, self.word_maps, self.pair_maps]),
            self.intervention_box,
        ])
        self.widget.add_class("infodecomp-probe")

        # -- wiring ---------------------------------------------------------------------------------------
        self.item.observe(lambda ch: self._guard(self.load_item, ch["new"]), names="value")
        self.upload.observe(self._on_upload, names="value")
        self.generate_button.on_click(lambda _: self._guard(self.generate))
        self.prompt.observe(lambda ch: self._guard(self._on_prompt, ch["new"]), names="value")
        for c in (self.n_samples, self.target, self.loc, self.scale, self.clip, self.seed):
            c.observe(lambda ch: self._guard(self._on_settings, ch), names="value")
        self.intervene_button.on_click(lambda _: self._guard(self.intervene))
        self.mode.observe(lambda ch: self._guard(self._on_mode, ch["new"]), names="value")
        for c in (self.redundancy, self.estimator):
            c.observe(lambda _ch: self._guard(self._redraw_pair), names="value")

        self._update_range()
        self._update_target()
        if image is not None:
            self.set_image(image, prompt=prompt if prompt is not None else "")
        else:
            self.load_item(0)
            if prompt is not None:
                self.prompt.value = prompt

    # -- display ---------------------------------------------------------------------------------------------
    def _repr_mimebundle_(self, **kwargs):
        return self.widget._repr_mimebundle_(**kwargs)

    def __repr__(self) -> str:
        return (f"Probe(model={getattr(self.model, 'name', '?')!r}, prompt={self.prompt.value!r}, "
                f"mode={self.mode.value!r}, word={self.word!r}, pair={self.pair!r}, settings={self.settings}, "
                f"computed={self.n_computed}, pairs={self.n_pairs}, cache hits={self.n_cache_hits}, "
                f"discarded={self.n_discarded})")

    # -- state -----------------------------------------------------------------------------------------------
    @property
    def settings(self) -> ProbeSettings:
        """The settings the controls show now. ``ValueError`` (with what is expected) for a target that is not
        "off", a percentage or nats."""
        target, relative = target_from_text(self.target.value)
        return ProbeSettings(n_samples=int(self.n_samples.value), loc=float(self.loc.value),
                             scale=float(self.scale.value), clip=float(self.clip.value), seed=int(self.seed.value),
                             attention_samples=self._attention_samples, target_stderr=target,
                             relative_stderr=relative, block=self._block if target or relative else None)

    def _snapshot(self, mode: str, words: tuple) -> tuple:
        """The state a job starts from and its result belongs to: (image, prompt, mode, words, settings)."""
        try:
            settings = self.settings
        except ValueError:  # controls out of range: no result is current
            settings = None
        return self._image_key, self.prompt.value, mode, tuple(words), settings

    def _on_screen(self) -> tuple:
        """The state the controls show now."""
        if self.mode.value == "two":
            return self._snapshot("two", self.pair)
        return self._snapshot("one", () if self.word is None else (self.word,))

    def _stale(self, state: tuple) -> str:
        """What changed since ``state`` ("" while it is current)."""
        now = self._on_screen()
        names = ("the image", "the prompt", "the mode", "the words", "the settings")
        return ", ".join(n for n, a, b in zip(names, state, now) if a != b)

    def _discard(self, what: str, changed: str) -> bool:
        """A result of a state no longer on screen: counted and said, never shown. Returns False (the job's
        "discarded" answer to :meth:`_run`)."""
        self.n_discarded += 1
        self.status.value = (f"<span class='probe-discarded'>{html.escape(what)} discarded: {html.escape(changed)}"
                             " changed since the click</span>")
        return False

    @property
    def word_buttons(self) -> list:
        """One button per distinct word of the prompt, in order."""
        return list(self.words_box.children)

    @property
    def busy(self) -> bool:
        """Whether work is running or queued."""
        return not self._idle.is_set()

    @property
    def image(self) -> np.ndarray | None:
        """The current image, uint8 ``[H, W, 3]`` at the model's resolution."""
        return self._image

    def clear_cache(self) -> None:
        """Forget every cached result (the next click recomputes)."""
        with self._lock:
            self._cache.clear()

    def wait(self, timeout: float | None = None) -> bool:
        """Block until no work is running or queued; ``False`` if ``timeout`` (seconds) passed first."""
        return self._idle.wait(timeout)

    def figure(self):
        """What the probe shows, as a matplotlib figure for saving: the word's maps (and its intervention), or in
        the two-word mode the decomposition with the redundancy and estimator chosen. Raises ``RuntimeError``
        when nothing current is shown (nothing clicked yet, or the image, prompt, words or settings changed
        since)."""
        with self._view_lock:
            two = self.mode.value == "two"
            res = self.pair_result if two else self.result
            if res is None:
                raise RuntimeError("nothing to draw yet: " + ("click two words first (or call show_pair)" if two
                                                              else "click a word first (or call show_word)"))
            changed = self._stale(self._shown)
            if changed:
                raise RuntimeError(f"the maps shown are not of what is on screen ({changed} changed since); "
                                   "wait for the new maps or click again")
            if two:
                return probe_pair_figure(res, redundancy=self.redundancy.value, estimator=self.estimator.value)
            iv = self.intervention
            if iv is not None and (iv.prompt, iv.word) != (res.prompt, res.word):
                iv = None
            return probe_figure(res, iv)

    # -- messages and busy state -----------------------------------------------------------------------------
    def _say(self, text: str = "", error: bool = False) -> None:
        if not text:
            self.message.value = ""
        elif error:
            self.message.value = (f"<div class='probe-error' style='color:#b00020;font-weight:bold'>⚠ "
                                  f"{html.escape(text)}</div>")
        else:
            self.message.value = f"<div class='probe-info'>{html.escape(text)}</div>"

    def _fail(self, err: BaseException) -> None:
        self.last_error = err
        text = str(err) if isinstance(err, (ValueError, TypeError)) else f"{type(err).__name__}: {err}"
        self._say(text, error=True)
        self.progress.bar_style = "danger"
        self.progress.description = "error"

    def _guard(self, fn, *args) -> None:
        """Run a UI callback; any error becomes a message."""
        try:
            fn(*args)
        except Exception as err:  # shown in the widget, never a traceback in the notebook
            self._fail(err)

    def _step(self, fraction: float, text: str) -> None:
        self.progress.value = float(fraction)
        self.status.value = f"<span class='probe-busy-text'>{html.escape(text)}</span>"

    # -- the work queue --------------------------------------------------------------------------------------
    def _submit(self, job: Callable[[], None]) -> None:
        """Queue ``job`` for the worker thread; while the worker is busy, the latest request waits (an older
        waiting one is dropped: only the last click matters). With ``background=False`` the call then waits for
        the worker, so it returns with the result shown.

        The work always runs in the worker thread, also when the caller waits: on a CPU shared with other
        processes, PyTorch's OpenMP pool driven from a notebook's main thread was measured 20–50× slower
        (2 cores, another process busy) than the same work in a fresh thread.
        """
        if threading.get_ident() == self._worker:  # queued from inside a job: run it now, never wait on itself
            self._run(job)
            return
        with self._lock:
            self._pending = job
            self._idle.clear()
            start = not self._running
            self._running = True
        if start:
            threading.Thread(target=self._drain, name="infodecomp-probe", daemon=True).start()
        if not self.background:
            self._idle.wait()

    def _drain(self) -> None:
        self._worker = threading.get_ident()
        while True:
            with self._lock:
                job, self._pending = self._pending, None
                if job is None:
                    self._running = False
                    self._worker = None
                    self._idle.set()
                    return
            self._run(job)

    def _run(self, job: Callable[[], None]) -> None:
        self.widget.add_class("probe-busy")
        self.progress.bar_style = "info"
        self.progress.description = "working"
        self.progress.value = 0.02
        for b in (self.intervene_button, self.generate_button):
            b.disabled = True
        try:
            if job() is False:  # its state was no longer on screen
                self.progress.bar_style = ""
                self.progress.description = "discarded"
                self.progress.value = 0.0
            else:
                self.progress.bar_style = "success"
                self.progress.description = "done"
                self.progress.value = 1.0
        except Exception as err:  # shown in the widget, never a traceback in the notebook
            self._fail(err)
            self.status.value = ""
        finally:
            for b in (self.intervene_button, self.generate_button):
                b.disabled = False
            self.widget.remove_class("probe-busy")

    # -- image sources ---------------------------------------------------------------------------------------
    def set_image(self, image, *, prompt: str | None = None) -> None:
        """Use ``image`` (PIL, uint8 ``[H, W, 3]``, or float tensor ``[3, H, W]`` in [0, 1]); resized to the
        model's resolution. ``prompt``: also set the prompt. Clears the maps shown."""
        t = self.model.images_to_tensor(rgb_image(image) if hasattr(image, "convert") else image,
                                        resize="bicubic")
        if t.shape[0] != 1:
            raise ValueError(f"the probe takes one image, got a batch of {t.shape[0]}")
        arr = np.ascontiguousarray((t[0].clamp(0, 1) * 255).round().byte().permute(1, 2, 0).numpy())
        with self._view_lock:
            self._image = arr
            self._image_key = hashlib.sha1(arr.tobytes() + repr(arr.shape).encode()).hexdigest()
            self._clear_panels()
            self.views["image"].value = png(enlarge(arr, self.display_size))
            self.values["image"].value = f"<small>{arr.shape[1]}×{arr.shape[0]} px</small>"
        if prompt is not None:
            if self.prompt.value == prompt:
                self._on_prompt(prompt)
            else:
                self.prompt.value = prompt

    def load_item(self, index: int) -> None:
        """Use dataset row ``index``: its image, its caption as the prompt, its ``swap_word`` (if any)."""
        n = len(self.dataset)
        if isinstance(index, bool) or not isinstance(index, (int, np.integer)) or not 0 <= index < n:
            raise ValueError(f"dataset item {index!r} does not exist; expected an index in 0 … {n - 1}")
        if self.item.value != index:
            self.item.value = int(index)  # its observer loads the row
            return
        row = self.dataset[int(index)]
        self.swap.value = str(row.get("swap_word", "") or "")
        self.set_image(row["image"], prompt=row["caption"])
        self._say(f"dataset item {index}: “{row['caption']}”" + (f" (word of the row: “{row['word']}”)"
                                                                  if row.get("word") else ""))

    def load_image_bytes(self, data: bytes, name: str = "upload") -> None:
        """Use the image file ``data`` (PNG, JPEG, …); an unreadable file leaves the current image and shows why."""
        try:
            img = _probe.read_image(data, name)
            self.set_image(img)
            self._say(f"uploaded {name!r}: {img.size[0]}×{img.size[1]} px; now edit the prompt to describe it")
        except Exception as err:
            self._fail(err)

    def _on_upload(self, change) -> None:
        value = change["new"]
        if not value:
            return
        files = list(value.values()) if isinstance(value, dict) else list(value)  # ipywidgets 7 used a dict
        f = files[-1]
        self.load_image_bytes(bytes(f.get("content", b"")), f.get("name", "upload"))

    def generate(self) -> None:
        """Replace the image by one generated from the current prompt (the pipeline's sampler, seeded by
        ``seed``); the prompt is kept."""
        prompt, seed = self.prompt.value, int(self.seed.value)
        state = (self._image_key, prompt)

        def job():
            self._step(0.1, f"generating an image from “{prompt}” ({self.generation_steps} steps)…")
            img = _probe.generate_image(self.model, prompt, steps=self.generation_steps,
                                        guidance_scale=self.guidance_scale, seed=seed)
            with self._view_lock:  # an image chosen or a prompt typed meanwhile wins over the generated one
                changed = ", ".join(n for n, a, b in zip(("the image", "the prompt"), state,
                                                         (self._image_key, self.prompt.value)) if a != b)
                if changed:
                    return self._discard(f"the image generated from “{prompt}”", changed)
                self.set_image(img)
            self._say(f"generated from “{prompt}” (seed {seed})")
            self.status.value = ""

        self._submit(job)

    # -- prompt and settings ---------------------------------------------------------------------------------
    def _on_prompt(self, prompt: str) -> None:
        import ipywidgets as w  # optional (the notebooks extra): only when a probe is shown

        buttons = []
        for word in prompt_words(prompt):
            b = w.Button(description=word, tooltip=f"maps of “{word}”", layout=w.Layout(width="auto"))
            b.add_class("probe-word")
            b.on_click(lambda _b, word=word: self._guard(self._click, word))
            buttons.append(b)
        with self._view_lock:  # the maps shown were of the old prompt
            self.words_box.children = buttons
            self.word, self.pair = None, ()
            self._clear_results()
        try:
            check_prompt_length(self.model.tokenizer, prompt)
        except ValueError as err:
            self._fail(err)
            return
        if self.message.value and "probe-error" in self.message.value:
            self._say("")

    def _update_range(self) -> None:
        try:
            lo, hi = self.settings.logsnr_range
        except ValueError as err:
            self.range_label.value = f"<span style='color:#b00020'>{html.escape(str(err))}</span>"
            return
        tlo, thi = self._trained
        inside = tlo - 1e-6 <= lo and hi <= thi + 1e-6
        warn = "" if inside else " <span style='color:#b36b00'>(beyond the trained range)</span>"
        self.range_label.value = (f"log-SNR range [{lo:.2f}, {hi:.2f}] nats; the model was trained on "
                                  f"[{tlo:.2f}, {thi:.2f}]{warn}")

    def _update_target(self) -> bool:
        """Check the typed target (an error is a message, and nothing is recomputed); name the draws control
        for what it is now: the draws, or the most draws under a target. Returns whether the target is valid."""
        try:
            target, relative = target_from_text(self.target.value)
        except ValueError as err:
            self._fail(err)
            return False
        self.n_samples.description = "max draws" if target or relative else "samples"
        if self.message.value and "precision target" in self.message.value:
            self._say("")  # the earlier bad target is fixed
        return True

    def _on_settings(self, _change) -> None:
        self._update_range()
        if not self._update_target():
            return  # a bad target: said, and the maps shown stay as they were
        if self.mode.value == "two":
            if len(self.pair) == 2:  # recompute the shown pair with the new settings
                self.show_pair(*self.pair)
        elif self.word is not None:  # recompute the shown word with the new settings
            self.show_word(self.word)

    def _on_mode(self, mode: str) -> None:
        with self._view_lock:
            self.word, self.pair = None, ()
            self._clear_results()
            self._select(None)
            one = mode == "one"
            self.word_maps.layout.display = self.intervention_box.layout.display = None if one else "none"
            self.pair_maps.layout.display = "none" if one else None
        self._say("" if one else "click two words of the prompt: word 1, then word 2")

    def _click(self, word: str) -> None:
        """A word button: its maps (one-word mode) or pick it for the pair (two-word mode)."""
        if self.mode.value == "two":
            self.pick_word(word)
        else:
            self.show_word(word)

    # -- the two actions -------------------------------------------------------------------------------------
    def _select(self, *words: str | None) -> None:
        """Highlight the selected words: the one word, or word 1 (blue) and word 2 (green) of a pair."""
        styles = {wd.lower(): style for wd, style in zip(words, ("info", "success")) if wd is not None}
        for b in self.word_buttons:
            b.button_style = styles.get(b.description.lower(), "")

    def _cached(self, key: tuple, compute: Callable):
        """``(result, from the cache?)``: the cached result of ``key``, or ``compute()`` kept under it."""
        with self._lock:
            hit = self._cache.get(key)
            if hit is not None:
                self._cache.move_to_end(key)
        if hit is not None:
            self.n_cache_hits += 1
            return hit, True
        res = compute()
        with self._lock:
            self._cache[key] = res
            while len(self._cache) > self.max_cache:
                self._cache.popitem(last=False)
        return res, False

    def _maps(self, image, image_key: str, prompt: str, word: str,
              settings: ProbeSettings) -> tuple[ProbeResult, bool]:
        """The maps of one click and whether they came from the cache."""
        def compute():
            draws = (f"up to {settings.n_samples} log-SNR draws, to the target" if settings.targeted
                     else f"{settings.n_samples} log-SNR draws")
            self._step(0.1, f"computing MI, CMI and attention of “{word}” ({draws})…")
            res = _probe.probe_word(self.model, image, prompt, word, settings)
            self.n_computed += 1
            return res

        return self._cached((image_key, prompt, word, settings), compute)

    def show_word(self, word: str) -> None:
        """What clicking ``word``'s button does: compute (or fetch) its maps and show them."""
        t0 = time.perf_counter()
        with self._view_lock:
            if self.mode.value != "one":
                self.mode.value = "one"
            prompt, image, image_key, settings = self.prompt.value, self._image, self._image_key, self.settings
            if self.result is not None and (self.result.word, self.result.prompt) != (word, prompt):
                self._clear_results()  # another word's maps
            self.word = word
            self._select(word)
            state = self._snapshot("one", (word,))
        self._say("")
        try:  # fail fast on bad input, before queueing any work
            _probe.check_word(self.model.tokenizer, prompt, word)
        except ValueError as err:
            self.word = None
            self._select(None)
            self._fail(err)
            return

        def job():
            if changed := self._stale(state):  # superseded before it started: skip the work
                return self._discard(f"the maps of “{word}”", changed)
            res, cached = self._maps(image, image_key, prompt, word, settings)
            with self._view_lock:
                if changed := self._stale(state):
                    return self._discard(f"the maps of “{word}”", changed)
                self._step(0.9, "drawing…")
                self._show(res, state)
                self.last_latency = time.perf_counter() - t0
                self.status.value = (f"<span class='probe-done'>“{html.escape(word)}”: shown "
                                     f"{'from the cache ' if cached else ''}{self.last_latency:.2f} s after the "
                                     f"click</span>; {cost_html(res)}")

        self._submit(job)

    def pick_word(self, word: str) -> None:
        """What clicking a word does in the two-word mode: the first click picks word 1, the second word 2 and
        starts the decomposition; clicking a picked word unpicks it; a click after two starts a new pair."""
        with self._view_lock:
            if self.mode.value != "two":
                self.mode.value = "two"
            pair = [p for p in self.pair if p.lower() != word.lower()]
            if len(pair) == len(self.pair):  # not picked yet
                pair = [word] if len(pair) == 2 else pair + [word]
            if len(pair) < 2:
                self.pair = tuple(pair)
                self._select(*pair)
                self._clear_results()
        if len(pair) == 2:  # outside the lock: the job takes it to draw (and a waiting caller must not hold it)
            self.show_pair(*pair)
            return
        self._say(f"word 1: “{pair[0]}”; now click word 2" if pair else "click two words of the prompt")

    def show_pair(self, word1: str, word2: str) -> None:
        """The two-word mode for ``word1`` and ``word2``: compute (or fetch) their decomposition and show it."""
        t0 = time.perf_counter()
        with self._view_lock:
            if self.mode.value != "two":
                self.mode.value = "two"
            prompt, image, image_key, settings = self.prompt.value, self._image, self._image_key, self.settings
            r = self.pair_result
            if r is not None and (r.word1, r.word2, r.prompt) != (word1, word2, prompt):
                self._clear_results()  # another pair's maps
            self.pair = (word1, word2)
            self._select(word1, word2)
            state = self._snapshot("two", self.pair)
        self._say("")
        try:  # fail fast on bad input, before queueing any work
            _probe.check_pair(self.model.tokenizer, prompt, word1, word2)
        except ValueError as err:
            self.pair = ()
            self._select(None)
            self._fail(err)
            return
        what = f"the decomposition of “{word1}” + “{word2}”"

        def compute():
            draws = f"up to {settings.n_samples} draws, to the target" if settings.targeted else \
                f"{settings.n_samples} draws"
            self._step(0.1, f"decomposing “{word1}” + “{word2}”: 4 conditions × {draws}…")
            res = _probe.probe_pair(self.model, image, prompt, word1, word2, settings)
            self.n_pairs += 1
            return res

        def job():
            if changed := self._stale(state):
                return self._discard(what, changed)
            res, cached = self._cached(("pair", image_key, prompt, word1, word2, settings), compute)
            with self._view_lock:
                if changed := self._stale(state):
                    return self._discard(what, changed)
                self._show_pair(res, state)
                self.last_latency = time.perf_counter() - t0
                self.status.value = (f"<span class='probe-done'>“{html.escape(word1)}” + “{html.escape(word2)}”"
                                     f": shown {'from the cache ' if cached else ''}{self.last_latency:.2f} s "
                                     f"after the click</span>; {cost_html(res)}")

        self._submit(job)

    def intervene(self) -> None:
        """Omit the selected word (or swap it for the word in "swap with"), regenerate the image from its
        inversion, and show the edit and the change beside the word's CMI map."""
        word = self.word
        prompt, image, image_key, settings = self.prompt.value, self._image, self._image_key, self.settings
        swap, steps = self.swap.value.strip() or None, int(self.steps.value)
        state = self._snapshot("one", (word,))
        if self.mode.value != "one" or word is None:
            self._fail(ValueError("click a word of the prompt first: the intervention omits or swaps that word"))
            return
        try:
            _probe.check_word(self.model.tokenizer, prompt, word)
        except ValueError as err:
            self._fail(err)
            return
        self._say("")

        def compute():
            what = f"swapping “{word}” for “{swap}”" if swap else f"omitting “{word}”"
            self._step(0.3, f"inverting the image and regenerating it, {what} ({steps} ODE steps)…")
            iv = _probe.probe_intervention(self.model, image, prompt, word, swap=swap, steps=steps)
            self.n_intervened += 1
            return iv

        def job():
            if changed := self._stale(state):
                return self._discard(f"the intervention on “{word}”", changed)
            res, _ = self._maps(image, image_key, prompt, word, settings)
            with self._view_lock:
                if changed := self._stale(state):
                    return self._discard(f"the maps of “{word}”", changed)
                self._show(res, state)
            iv, _ = self._cached(("intervention", image_key, prompt, word, swap, steps), compute)
            with self._view_lock:
                if changed := self._stale(state):
                    return self._discard(f"the intervention on “{word}”", changed)
                self._show_intervention(iv)
                self.status.value = f"<span class='probe-done'>{iv.kind}: “{html.escape(iv.edit_prompt)}”</span>"

        self._submit(job)

    # -- drawing ---------------------------------------------------------------------------------------------
    def _clear_results(self) -> None:
        """Empty every result panel (all but the image): what they showed is no longer on screen."""
        for k, v in self.views.items():
            if k != "image":
                self.titles[k].value = self._default_titles[k]
                v.value = b""
                self.values[k].value = "—"
        self.bars.value = self.pid_bars.value = b""
        self.pair_info.value = ""
        self.result = self.intervention = self.pair_result = None
        self._shown = ()

    def _clear_panels(self) -> None:
        self._clear_results()
        self.word, self.pair = None, ()
        self._select(None)
        self.progress.value = 0.0
        self.progress.description = "idle"
        self.progress.bar_style = ""
        self.status.value = ""

    def _put(self, panels: dict[str, Panel]) -> None:
        for k, (image, value, heading) in panels.items():
            self.views[k].value, self.values[k].value = image, value
            if heading is not None:
                self.titles[k].value = heading

    def _show(self, res: ProbeResult, state: tuple) -> None:
        panels, self.bars.value = word_panels(res, self.display_size)
        self._put(panels)
        self.result, self._shown = res, state

    def _show_intervention(self, iv: ProbeIntervention) -> None:
        self._put(intervention_panels(iv, self.display_size))
        self.intervention = iv

    def _show_pair(self, res: ProbePair, state: tuple) -> None:
        """The four atoms' maps on one colour scale, their values and bars, for the redundancy and estimator the
        toggles show."""
        panels, self.pid_bars.value, self.pair_info.value = pair_panels(
            res, self.display_size, redundancy=self.redundancy.value, estimator=self.estimator.value)
        self._put(panels)
        self.pair_result, self._shown = res, state

    def _redraw_pair(self) -> None:
        """A redundancy or estimator toggle: redraw the pair shown from the same result (no model call)."""
        with self._view_lock:
            if self.pair_result is not None and not self._stale(self._shown):
                self._show_pair(self.pair_result, self._shown)
