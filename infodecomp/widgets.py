"""The interactive probe: click a word of a prompt, see where and how much the model depends on it.

::

    from infodecomp.models import load_model
    from infodecomp.widgets import Probe

    probe = Probe(load_model("shapes-tiny"))   # a ShapesWorld image and its caption to start with
    probe                                      # display it (JupyterLab, Voilà, classic notebook)

Choose an image (a dataset item, an uploaded file, or one generated from the prompt), edit the prompt, click a word:
the pixel MI i^o_j(x; y*), the pixel CMI i^o_j(x; y*|c) (MI and CMI share one colour scale, as in the paper's
Fig. 2) and the word's Attention+Information map appear side by side over the image, with the image-level
values and their standard errors. "intervene" regenerates the image from its inversion with the word omitted
(or swapped for the word typed beside it) and shows the change beside the CMI map (Figs. 1 and 3).

The widget only displays (docs/architecture.md#display-only): the numbers come from :mod:`infodecomp.experiments.probe`
(which calls :func:`~infodecomp.experiments.heatmaps.word_heatmaps` and :func:`infodecomp.editing.intervene`). Work runs
in a background thread with a progress bar and a busy state, so the notebook stays responsive; with
``background=False`` each action also waits for its work to finish (headless use, tests), and :meth:`Probe.wait`
blocks until queued work is done in either mode. Results
are cached per (image, prompt, word, settings). Errors — a word not in the prompt, a prompt over the tokenizer's
limit, an unreadable upload — are shown as a message in the widget, never as a traceback.
"""

from __future__ import annotations

import hashlib
import html
import io
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Sequence

import numpy as np

from .checks import rgb_image
from .experiments import probe as _probe
from .experiments.probe import ProbeIntervention, ProbeResult, ProbeSettings
from .plotting import heat_overlay, information_bars, probe_figure
from .text import check_prompt_length, prompt_words

__all__ = ["Probe", "ProbeSettings"]

#: Choices offered for the number of log-SNR draws per map.
SAMPLE_CHOICES = (2, 4, 8, 16, 32, 64, 128, 256)


def _png(array: np.ndarray) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(array)).save(buf, format="PNG")
    return buf.getvalue()


def _figure_png(fig, dpi: int = 100) -> bytes:
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    FigureCanvasAgg(fig)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi)
    return buf.getvalue()


def _title(title: str, subtitle: str) -> str:
    """A panel's two-line heading (every panel has two lines, so the images line up)."""
    return f"<b>{html.escape(title)}</b><br><small>{html.escape(subtitle)}</small>"


def _value_html(name: str, value: float, stderr: float, unit: str = "nats") -> str:
    return (f"<b>{html.escape(name)}</b> <span class='probe-number'>{value:.3f}</span> ± "
            f"<span class='probe-stderr'>{stderr:.3f}</span> {unit} <small>(± 1 s.e.)</small>")


class Probe:
    """An ipywidgets probe of a text-to-image diffusion model (see the module docstring).

    Args:
        model: an :class:`infodecomp.models.Model` (e.g. ``load_model("shapes-tiny")``).
        dataset: rows with ``image`` and ``caption`` (and optionally ``swap_word``) to pick from; default the
            ShapesWorld twin of COCO100-IT (:func:`infodecomp.experiments.probe.default_dataset`).
        image, prompt: a starting image (PIL, uint8 ``[H, W, 3]``) and prompt; default: dataset item 0.
        settings: the starting :class:`ProbeSettings` (number of samples, log-SNR loc / scale / clip, seed).
        background: ``True``: a click returns at once while the work runs in a background thread (the notebook
            stays responsive); ``False``: a click returns when its maps are shown (headless use, tests).
        display_size: side of each displayed panel in pixels.
        intervention_steps: σ values of the Heun ODE for "intervene" (the paper: 100).
        generation_steps, guidance_scale: the pipeline's sampler for "generate from prompt".
        max_cache: most results kept (least recently used dropped first).

    Programmatic use mirrors the buttons: ``probe.prompt.value = "..."``, ``probe.word_buttons[i].click()`` or
    :meth:`show_word`, :meth:`intervene`, :meth:`load_item`, :meth:`load_image_bytes`, :meth:`generate`, then
    :meth:`wait`. The last results are ``probe.result`` (:class:`~infodecomp.experiments.probe.ProbeResult`) and
    ``probe.intervention``; ``probe.n_computed`` counts map computations (cache hits do not count).
    """

    def __init__(self, model, *, dataset: Sequence[dict] | None = None, image=None, prompt: str | None = None,
                 settings: ProbeSettings | None = None, background: bool = True, display_size: int = 192,
                 intervention_steps: int = 20, generation_steps: int = 30, guidance_scale: float = 3.0,
                 max_cache: int = 128):
        import ipywidgets as w

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
        self.word: str | None = None
        self.n_computed = 0
        self.n_intervened = 0
        self.n_cache_hits = 0
        self.last_latency: float | None = None
        self.last_error: BaseException | None = None
        self._image = None            # uint8 [H, W, 3] at the model's resolution
        self._image_key = ""
        self._cache: OrderedDict = OrderedDict()
        self._lock = threading.Lock()
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
        self._attention_samples = settings.attention_samples
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

        def panel(key: str, title: str, subtitle: str):
            img = w.Image(format="png", layout=w.Layout(width=S, height=S, object_fit="contain"))
            img.add_class(f"probe-map-{key}")
            self._default_titles[key] = _title(title, subtitle)
            t = w.HTML(self._default_titles[key])
            v = w.HTML("—")
            v.add_class(f"probe-value-{key}")
            self.views[key], self.titles[key], self.values[key] = img, t, v
            return w.VBox([t, img, v], layout=w.Layout(margin="0 6px 0 0"))

        maps_row = w.HBox([panel("image", "image", "as the model sees it"),
                           panel("mi", "pixel MI i(x; y*)", "the word vs the null prompt"),
                           panel("cmi", "pixel CMI i(x; y*|c)", "c: the prompt without the word"),
                           panel("attention", "attention", "cross-attention of the word")])
        self.bars = w.Image(format="png", layout=w.Layout(width="260px"))
        self.bars.add_class("probe-bars")
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

        self.widget = w.VBox([
            w.HTML(f"<h3 style='margin:4px 0'>infodecomp probe — {html.escape(str(getattr(model, 'name', '')))}"
                   "</h3>"),
            w.HBox([self.item, self.upload, self.generate_button]),
            self.prompt,
            w.HBox([w.HTML("<b>click a word:</b>&nbsp;"), self.words_box]),
            w.HBox([self.n_samples, self.seed, self.range_label]),
            w.HBox([self.loc, self.scale, self.clip]),
            w.HBox([self.progress, self.status]),
            self.message,
            w.HBox([maps_row, self.bars]),
            w.HBox([self.swap, self.steps, self.intervene_button]),
            iv_row,
        ])
        self.widget.add_class("infodecomp-probe")

        # -- wiring ---------------------------------------------------------------------------------------
        self.item.observe(lambda ch: self._guard(self.load_item, ch["new"]), names="value")
        self.upload.observe(self._on_upload, names="value")
        self.generate_button.on_click(lambda _: self._guard(self.generate))
        self.prompt.observe(lambda ch: self._guard(self._on_prompt, ch["new"]), names="value")
        for c in (self.n_samples, self.loc, self.scale, self.clip, self.seed):
            c.observe(lambda ch: self._guard(self._on_settings, ch), names="value")
        self.intervene_button.on_click(lambda _: self._guard(self.intervene))

        self._update_range()
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
                f"word={self.word!r}, settings={self.settings}, computed={self.n_computed}, "
                f"cache hits={self.n_cache_hits})")

    # -- state -----------------------------------------------------------------------------------------------
    @property
    def settings(self) -> ProbeSettings:
        """The settings the controls show now."""
        return ProbeSettings(n_samples=int(self.n_samples.value), loc=float(self.loc.value),
                             scale=float(self.scale.value), clip=float(self.clip.value), seed=int(self.seed.value),
                             attention_samples=self._attention_samples)

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
        """The last click (and intervention, if of the same word) as a matplotlib figure, for saving."""
        if self.result is None:
            raise RuntimeError("nothing to draw yet: click a word first (or call show_word)")
        iv = self.intervention
        if iv is not None and (iv.prompt, iv.word) != (self.result.prompt, self.result.word):
            iv = None
        return probe_figure(self.result, iv)

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
            job()
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
        arr = (t[0].clamp(0, 1) * 255).round().byte().permute(1, 2, 0).numpy()
        self._image = np.ascontiguousarray(arr)
        self._image_key = hashlib.sha1(self._image.tobytes() + repr(self._image.shape).encode()).hexdigest()
        self._clear_panels()
        self.views["image"].value = _png(self._enlarge(self._image))
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

        def job():
            self._step(0.1, f"generating an image from “{prompt}” ({self.generation_steps} steps)…")
            img = _probe.generate_image(self.model, prompt, steps=self.generation_steps,
                                        guidance_scale=self.guidance_scale, seed=seed)
            self.set_image(img)
            self._say(f"generated from “{prompt}” (seed {seed})")
            self.status.value = ""

        self._submit(job)

    # -- prompt and settings ---------------------------------------------------------------------------------
    def _on_prompt(self, prompt: str) -> None:
        import ipywidgets as w

        buttons = []
        for word in prompt_words(prompt):
            b = w.Button(description=word, tooltip=f"maps of “{word}”", layout=w.Layout(width="auto"))
            b.add_class("probe-word")
            b.on_click(lambda _b, word=word: self._guard(self.show_word, word))
            buttons.append(b)
        self.words_box.children = buttons
        self.word = None
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

    def _on_settings(self, _change) -> None:
        self._update_range()
        if self.word is not None:  # recompute the shown word with the new settings
            self.show_word(self.word)

    # -- the two actions -------------------------------------------------------------------------------------
    def _select(self, word: str | None) -> None:
        for b in self.word_buttons:
            b.button_style = "info" if word is not None and b.description.lower() == word.lower() else ""

    def _maps(self, image, image_key: str, prompt: str, word: str,
              settings: ProbeSettings) -> tuple[ProbeResult, bool]:
        """The maps of one click and whether they came from the cache."""
        key = (image_key, prompt, word, settings)
        with self._lock:
            hit = self._cache.get(key)
            if hit is not None:
                self._cache.move_to_end(key)
        if hit is not None:
            self.n_cache_hits += 1
            return hit, True
        self._step(0.1, f"computing MI, CMI and attention of “{word}” ({settings.n_samples} log-SNR draws)…")
        res = _probe.probe_word(self.model, image, prompt, word, settings)
        self.n_computed += 1
        with self._lock:
            self._cache[key] = res
            while len(self._cache) > self.max_cache:
                self._cache.popitem(last=False)
        return res, False

    def show_word(self, word: str) -> None:
        """What clicking ``word``'s button does: compute (or fetch) its maps and show them."""
        t0 = time.perf_counter()
        prompt, image, image_key, settings = self.prompt.value, self._image, self._image_key, self.settings
        self.word = word
        self._select(word)
        self._say("")
        try:  # fail fast on bad input, before queueing any work
            _probe.check_word(self.model.tokenizer, prompt, word)
        except ValueError as err:
            self.word = None
            self._fail(err)
            return

        def job():
            res, cached = self._maps(image, image_key, prompt, word, settings)
            self._step(0.9, "drawing…")
            self._show(res)
            self.last_latency = time.perf_counter() - t0
            self.status.value = (f"<span class='probe-done'>“{html.escape(word)}”: shown "
                                 f"{'from the cache ' if cached else ''}{self.last_latency:.2f} s after the click"
                                 "</span>")

        self._submit(job)

    def intervene(self) -> None:
        """Omit the selected word (or swap it for the word in "swap with"), regenerate the image from its
        inversion, and show the edit and the change beside the word's CMI map."""
        word = self.word
        prompt, image, image_key, settings = self.prompt.value, self._image, self._image_key, self.settings
        swap, steps = self.swap.value.strip() or None, int(self.steps.value)
        if word is None:
            self._fail(ValueError("click a word of the prompt first: the intervention omits or swaps that word"))
            return
        try:
            _probe.check_word(self.model.tokenizer, prompt, word)
        except ValueError as err:
            self._fail(err)
            return
        self._say("")

        def job():
            res, _ = self._maps(image, image_key, prompt, word, settings)
            self._show(res)
            key = ("intervention", image_key, prompt, word, swap, steps)
            with self._lock:
                iv = self._cache.get(key)
            if iv is None:
                what = f"swapping “{word}” for “{swap}”" if swap else f"omitting “{word}”"
                self._step(0.3, f"inverting the image and regenerating it, {what} ({steps} ODE steps)…")
                iv = _probe.probe_intervention(self.model, image, prompt, word, swap=swap, steps=steps)
                self.n_intervened += 1
                with self._lock:
                    self._cache[key] = iv
            else:
                self.n_cache_hits += 1
            self._show_intervention(iv)
            self.status.value = f"<span class='probe-done'>{iv.kind}: “{html.escape(iv.edit_prompt)}”</span>"

        self._submit(job)

    # -- drawing ---------------------------------------------------------------------------------------------
    def _enlarge(self, image: np.ndarray) -> np.ndarray:
        from PIL import Image

        H, W = image.shape[:2]
        f = self.display_size / max(H, W)
        size = (max(1, round(W * f)), max(1, round(H * f)))
        resample = Image.Resampling.NEAREST if f >= 1 else Image.Resampling.LANCZOS
        return np.asarray(Image.fromarray(image).resize(size, resample))

    def _clear_panels(self) -> None:
        for k, v in self.views.items():
            self.titles[k].value = self._default_titles[k]
            if k != "image":
                v.value = b""
                self.values[k].value = "—"
        self.bars.value = b""
        self.result = None
        self.intervention = None
        self.word = None
        self._select(None)
        self.progress.value = 0.0
        self.progress.description = "idle"
        self.progress.bar_style = ""
        self.status.value = ""

    def _show(self, res: ProbeResult) -> None:
        S = self.display_size
        lo = min(float(res.mi.min()), float(res.cmi.min()))  # the paper's joint MI/CMI colour scale
        hi = max(float(res.mi.max()), float(res.cmi.max()))
        cmi_png = _png(heat_overlay(res.image, res.cmi, lo=lo, hi=hi, size=S))
        self.views["mi"].value = _png(heat_overlay(res.image, res.mi, lo=lo, hi=hi, size=S))
        self.views["cmi"].value = cmi_png
        self.views["attention"].value = _png(heat_overlay(res.image, res.attention, size=S))
        self.values["mi"].value = _value_html("MI", res.mi_image, res.mi_stderr)
        self.values["cmi"].value = _value_html("CMI", res.cmi_image, res.cmi_stderr)
        self.values["attention"].value = f"<small>word “{html.escape(res.word)}”, max-normalised</small>"
        ctx = res.context if res.context else "∅ (null prompt)"
        self.titles["cmi"].value = _title(f"pixel CMI i(x; “{res.word}” | c)", f"c = “{ctx}”")
        self.titles["mi"].value = _title(f"pixel MI i(x; “{res.word}”)", "the word vs the null prompt")
        self.bars.value = _figure_png(information_bars(
            {"MI": (res.mi_image, res.mi_stderr), "CMI": (res.cmi_image, res.cmi_stderr)},
            title=f"“{res.word}”, {res.settings.n_samples} draws"))
        self.views["intervention_cmi"].value = cmi_png
        self.values["intervention_cmi"].value = _value_html("CMI", res.cmi_image, res.cmi_stderr)
        self.result = res

    def _show_intervention(self, iv: ProbeIntervention) -> None:
        S = self.display_size
        self.views["reconstruction"].value = _png(self._enlarge(iv.reconstruction))
        self.values["reconstruction"].value = f"<small>“{html.escape(iv.prompt)}”</small>"
        self.views["edited"].value = _png(self._enlarge(iv.edited))
        self.titles["edited"].value = _title(iv.kind, f"regenerated with “{iv.word}” "
                                                      f"{'omitted' if iv.kind == 'omit' else 'swapped'}")
        self.values["edited"].value = f"<small>“{html.escape(iv.edit_prompt)}”</small>"
        self.views["change"].value = _png(heat_overlay(iv.reconstruction, iv.change, size=S))
        self.values["change"].value = (f"<b>change</b> Σ <span class='probe-number'>{iv.change_total:.3g}</span>"
                                       f" <small>(Σ_channels Δlatent², {iv.steps} ODE steps)</small>")
        self.intervention = iv
