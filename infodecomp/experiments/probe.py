"""The interactive probe's experiment: one (image, prompt, word) at a time (paper Secs. 3.2–3.3, Figs. 1–3).

What :class:`infodecomp.widgets.Probe` runs when a word is clicked; usable without widgets too::

    res = probe_word(model, image, "a small blue circle", "circle", ProbeSettings(n_samples=16))
    res.cmi, res.cmi_image, res.cmi_stderr          # [h, w] nats per latent pixel, nats, nats

* :func:`probe_word`: pixel CMI i^o_j(x; y*|c) (reference = the prompt with the word deleted), pixel MI
  i^o_j(x; y*) (the word alone against the null prompt: the "word" choice of docs/protocol.md#b24, as a typed prompt has
  no COCO label)
  and the Attention+Information map, all from :func:`~infodecomp.experiments.heatmaps.word_heatmaps` with the
  log-SNR distribution of :class:`ProbeSettings` (truncated logistic, loc ± clip·scale).
* :func:`probe_pair`: the two-word mode (beyond the paper): the partial information decomposition of two words
  y1, y2 of the prompt (:mod:`infodecomp.pid`): i(x; y1|c), i(x; y2|c), i(x; y1, y2|c) with c the prompt without
  both words, from the four conditions c, c+y1, c+y2, c+y1+y2 on the same draws, and the atoms (redundancy,
  unique 1, unique 2, synergy) per image with paired standard errors and per pixel, for both estimators and both
  redundancy definitions from one set of denoiser calls.
* :func:`probe_intervention`: invert the image with the prompt and regenerate with the prompt and with the word
  omitted (or swapped), by :func:`infodecomp.editing.intervene`; the change is the latent
  ``Σ_channels (reconstruction − edit)²`` of :func:`~infodecomp.experiments.intervention.latent_change`.
* :func:`generate_image`: an image from a prompt (DDIM through the denoiser), to probe the model's own output.
* :func:`read_image`: bytes of an uploaded file → an RGB image, with an error that says what was wrong.

**Precision targets** (issue 27; :class:`ProbeSettings` ``target_stderr`` / ``relative_stderr``): instead of a fixed
``n_samples`` draws, each map draws in blocks until the standard error of its sum (the image-level information) is
at most the target, with ``n_samples`` as the cap, so a click costs what the image needs
(:func:`~infodecomp.estimators.terms_to_precision`). The results say how many draws each map took, whether it met
its target, and how many denoiser evaluations the click used. :func:`target_from_text` reads a target typed as
"off", "10%" or "0.05" (nats).

Every input is checked before any model call, so a word not in the prompt or a prompt over the tokenizer's
limit fails at once with a ``ValueError`` naming what was given and what is expected.
"""

from __future__ import annotations

import math
import re
import time
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from .. import pid as _pid
from ..checks import count, load_image
from ..checks import word as checked_word
from ..data.shapes import twin
from ..editing import intervene, sample
from ..estimators import ESTIMATORS, information_terms, terms_to_precision
from ..logsnr import LogSNRSampling
from ..text import check_prompt_length, omit_word, swap_word, token_positions
from .heatmaps import precision_settings, word_heatmaps
from .intervention import latent_change
from .pid import conditions as pair_conditions

__all__ = ["ProbeSettings", "ProbeResult", "ProbePair", "ProbeIntervention", "probe_word", "probe_pair",
           "probe_intervention", "generate_image", "read_image", "default_dataset", "check_word", "check_pair",
           "probe_block", "target_from_text", "target_text"]

#: Default number of log-SNR draws per map: a click on shapes-tiny stays well under 3 s on 2 CPU cores
#: (``benchmarks/probe_latency.py``).
DEFAULT_SAMPLES = 16
#: Most draws per block under a precision target: small blocks let an easy image stop early, and 8 draws still give
#: the first look a standard error to go on.
MAX_BLOCK = 8


def probe_block(n_samples: int) -> int:
    """Draws per block under a precision target when none is given: the largest divisor of the cap ``n_samples``
    that is at most ``max(2, min(MAX_BLOCK, n_samples // 4))`` (16 → 4, 32 → 8, 256 → 8), so the cap is a whole
    number of blocks, an image can stop after a few draws, and a click looks at its standard error at most
    ``n_samples / block`` times."""
    n = count(n_samples, "n_samples", minimum=2)
    return max(d for d in range(1, n + 1) if n % d == 0 and d <= max(2, min(MAX_BLOCK, n // 4)))


_NUMBER = r"[+-]?(?:\d+\.?\d*|\.\d+)(?:e[+-]?\d+)?"
_TARGET_HINT = ("type off (the fixed draws), a percentage of the map's total such as 10%, or an absolute standard "
                "error in nats such as 0.05 (or both, as 10%, 0.05: either one stops)")


def target_from_text(text: str) -> tuple[float | None, float | None]:
    """A precision target typed in the probe → ``(target_stderr, relative_stderr)``: "off" or "" → ``(None, None)``
    (the fixed draws); "10%" → ``(None, 0.1)``; "0.05" or "0.05 nats" → ``(0.05, None)``; "10%, 0.05" → both.
    Raises ``ValueError`` saying what was typed and what is expected for anything else (a word, a number ≤ 0,
    two percentages)."""
    if not isinstance(text, str):
        raise ValueError(f"the precision target must be text; got {type(text).__name__}; {_TARGET_HINT}")
    given = text.strip().lower()
    if given in ("", "off", "none", "no", "fixed"):
        return None, None
    absolute = relative = None
    for part in (p.strip() for p in re.split(r",|\bor\b", given)):
        m = re.fullmatch(rf"({_NUMBER})\s*(%|nats?)?", part)
        if not m or not 0 < float(m.group(1)) < math.inf:
            raise ValueError(f"precision target {text!r} not understood: {part!r} is not a number > 0; "
                             f"{_TARGET_HINT}")
        value = float(m.group(1))
        if (relative if m.group(2) == "%" else absolute) is not None:
            what = "percentages" if m.group(2) == "%" else "values in nats"
            raise ValueError(f"precision target {text!r} gives two {what}; {_TARGET_HINT}")
        if m.group(2) == "%":
            relative = value / 100.0
        else:
            absolute = value
    return absolute, relative


def target_text(target_stderr: float | None, relative_stderr: float | None) -> str:
    """The text :func:`target_from_text` reads back as ``(target_stderr, relative_stderr)``."""
    parts = ([] if relative_stderr is None else [f"{100.0 * relative_stderr:g}%"]) + \
            ([] if target_stderr is None else [f"{target_stderr:g}"])
    return ", ".join(parts) or "off"


@dataclass(frozen=True)
class ProbeSettings:
    """What changes the maps of one click (part of the probe's cache key).

    n_samples: log-SNR draws per MI / CMI map (the paper: 100); under a precision target, the most draws per map.
    attention_samples: denoiser passes for the attention map (None: ``n_samples``; under a target, where
    ``n_samples`` is only the cap, ``min(n_samples, DEFAULT_SAMPLES)``: the attention map is not an estimate with a
    standard error, and its passes must not grow with the cap). loc, scale, clip: the truncated logistic over
    log-SNR, range loc ± clip·scale in nats (paper: 1, 2, 3 → [−5, 7]). seed: seeds the draws, so a setting gives one
    answer.

    target_stderr (nats) / relative_stderr (a fraction, 0.1 = 10 %): a precision target (None, None: off, the fixed
    draws). Each map (MI, CMI; in the two-word mode i1, i2 and i12) draws in blocks of ``block`` (default
    :func:`probe_block`) until the standard error of its **sum**, the image-level information, is at most
    ``target_stderr`` or ``relative_stderr`` × |the sum| (either, when both are given), or ``n_samples`` draws. The
    sum, not a per-pixel error, because (1) a map is the decomposition of that sum (Eq. 6) and every pixel is
    estimated from the same draws, so the draws that pin the sum pin the map's overall level, which the colour scale
    shows; (2) most pixels of a map hold almost no information, and a per-pixel relative error there is noise over
    ≈ 0: a mean of such ratios is dominated by the pixels nobody reads and may never be met; (3) it is the standard
    error the estimator already reports from paired per-draw terms, so the target costs no extra memory (a per-pixel
    error would keep every draw's map). A relative target suits a map read on its own colour scale; a word that
    tells ≈ 0 nats never meets one and stops at the cap (an absolute target stops it).
    """

    n_samples: int = DEFAULT_SAMPLES
    loc: float = 1.0
    scale: float = 2.0
    clip: float = 3.0
    seed: int = 0
    attention_samples: int | None = None
    target_stderr: float | None = None
    relative_stderr: float | None = None
    block: int | None = None

    def __post_init__(self):
        for name in ("n_samples", "attention_samples"):
            v = getattr(self, name)
            if v is None and name == "attention_samples":
                continue
            object.__setattr__(self, name, count(v, name, minimum=2, hint="a standard error needs two draws"))
        object.__setattr__(self, "seed", count(self.seed, "seed", minimum=0, maximum=2 ** 64 - 1,
                                               hint="a torch.Generator seed"))
        sampling = self.sampling  # validates loc, scale, clip: finite, a range within ±32 nats, not degenerate
        for name in ("loc", "scale", "clip"):
            object.__setattr__(self, name, getattr(sampling, name))
        for name, v in self.precision.items():  # checked, and numpy scalars made Python numbers (a cache key)
            if name != "block":
                object.__setattr__(self, name, v)
        if self.block is not None:
            object.__setattr__(self, "block", self.precision["block"])

    @property
    def precision(self) -> dict:
        """The precision target as :func:`~infodecomp.experiments.heatmaps.word_heatmaps` takes it:
        ``{"target_stderr", "relative_stderr", "block"}``, or ``{}`` (off). ``ValueError`` for a target that is not
        a number > 0, or a block without a target or that does not divide ``n_samples``."""
        block = self.block
        if block is None and (self.target_stderr is not None or self.relative_stderr is not None):
            block = probe_block(self.n_samples)
        return precision_settings("corrected", self.n_samples, self.target_stderr, self.relative_stderr, block)

    @property
    def targeted(self) -> bool:
        """Whether a precision target is set (else every map takes ``n_samples`` draws)."""
        return self.target_stderr is not None or self.relative_stderr is not None

    @property
    def attention_passes(self) -> int:
        """Denoiser passes of the attention map (see the class docstring)."""
        if self.attention_samples is not None:
            return self.attention_samples
        return min(self.n_samples, DEFAULT_SAMPLES) if self.targeted else self.n_samples

    @property
    def sampling(self) -> LogSNRSampling:
        """The log-SNR distribution (the paper's truncated logistic)."""
        return LogSNRSampling(rule="logistic", loc=self.loc, scale=self.scale, clip=self.clip)

    @property
    def logsnr_range(self) -> tuple[float, float]:
        """``(loc − clip·scale, loc + clip·scale)`` in nats."""
        return self.sampling.support


@dataclass(frozen=True, eq=False)
class ProbeResult:
    """The maps of one click. Maps are on the latent grid ``[h, w]``; values in nats."""

    image: np.ndarray      # [H, W, 3] uint8: the image as the model saw it (resized to its resolution)
    prompt: str
    word: str
    context: str           # the prompt with the word deleted: the CMI's reference
    mi: np.ndarray         # [h, w] nats per latent pixel, i^o_j(x; y*)
    cmi: np.ndarray        # [h, w] nats per latent pixel, i^o_j(x; y*|c)
    attention: np.ndarray  # [h, w] Attention+Information map of the word (arbitrary units)
    mi_image: float        # nats, the sum of ``mi``
    mi_stderr: float       # nats
    cmi_image: float       # nats, the sum of ``cmi``
    cmi_stderr: float      # nats
    settings: ProbeSettings
    seconds: float         # wall time of the computation
    mi_samples: int        # log-SNR draws the MI map took (settings.n_samples without a target)
    cmi_samples: int       # log-SNR draws the CMI map took
    mi_target_met: bool | None   # the MI's standard error reached the target (None: no target)
    cmi_target_met: bool | None  # the CMI's
    evaluations: int       # denoiser rows of the click: 2 per MI and CMI draw, 1 per attention pass

    @property
    def target_met(self) -> bool | None:
        """Both maps met the precision target (None: no target)."""
        return None if self.cmi_target_met is None else bool(self.cmi_target_met and self.mi_target_met)


@dataclass(frozen=True, eq=False)
class ProbePair:
    """The two-word decomposition of one image (:func:`probe_pair`). Maps on the latent grid ``[h, w]``; nats.

    ``values[(estimator, redundancy)][quantity]`` is ``(value, stderr)`` and ``maps[(estimator, redundancy)]
    [quantity]`` the per-pixel map, for estimator in ("orthogonal", "standard"), redundancy in ("ccs", "mmi") and
    quantity in i1, i2, i12, coinformation, redundancy, unique1, unique2, synergy (:data:`infodecomp.pid.ATOMS`).
    The maps of i1, i2, i12 sum to their image-level values; the atoms' maps do not (a per-pixel minimum or sign
    test is a heuristic picture, :mod:`infodecomp.pid`).
    """

    image: np.ndarray      # [H, W, 3] uint8: the image as the model saw it
    prompt: str
    word1: str
    word2: str
    conditions: tuple      # (c, c+y1, c+y2, prompt): both words deleted, word 2 deleted, word 1 deleted, whole
    values: dict           # (estimator, redundancy) → {quantity: (value, stderr)} in nats
    maps: dict             # (estimator, redundancy) → {quantity: [h, w] ndarray} in nats per latent pixel
    settings: ProbeSettings
    seconds: float         # wall time of the computation
    n_samples: int         # log-SNR draws taken (settings.n_samples without a target)
    target_met: bool | None  # i1, i2 and i12 (i^o) all met the precision target (None: no target)
    evaluations: int       # denoiser rows: 4 per draw (the four conditions)

    def atoms(self, redundancy: str = "ccs", estimator: str = "orthogonal") -> dict[str, tuple[float, float]]:
        """``{atom: (value, stderr)}`` for the four atoms, in lattice order (R, U1, U2, S)."""
        v = self.values[(estimator, redundancy)]
        return {a: v[a] for a in _pid.ATOMS}


@dataclass(frozen=True, eq=False)
class ProbeIntervention:
    """An omit / swap edit of one image: regenerated from its inversion with the prompt and with the edit."""

    kind: str                   # "omit" or "swap"
    prompt: str
    word: str                   # the word omitted or swapped
    edit_prompt: str
    reconstruction: np.ndarray  # [H, W, 3] uint8, regenerated with the prompt
    edited: np.ndarray          # [H, W, 3] uint8, regenerated with the edit prompt
    change: np.ndarray          # [h, w] Σ_channels (reconstruction − edit)² on the latent grid
    change_total: float         # the sum of ``change`` (the reference's "change", docs/protocol.md#b23)
    steps: int                  # σ values of the Heun ODE each way
    seconds: float


def _uint8(images: torch.Tensor) -> np.ndarray:
    """``[B, 3, H, W]`` in [0, 1] → ``[B, H, W, 3]`` uint8."""
    return (images.clamp(0, 1) * 255).round().to(torch.uint8).permute(0, 2, 3, 1).cpu().numpy()


def check_word(tokenizer, prompt: str, word: str) -> str:
    """Check that ``prompt`` fits the tokenizer and ``word`` occurs in it; return the CMI's context (the prompt
    with every whole-word occurrence of ``word`` deleted). Raises ``ValueError`` saying what is wrong."""
    if not isinstance(prompt, str) or not prompt.strip():
        raise ValueError(f"the prompt is empty; expected a caption such as 'a red circle', got {prompt!r}")
    if not isinstance(word, str) or not word.strip():
        raise ValueError(f"no word given; expected one word of the prompt {prompt!r}, got {word!r}")
    check_prompt_length(tokenizer, prompt)
    token_positions(tokenizer, prompt, word)  # raises if the word's tokens do not occur
    try:
        return omit_word(prompt, word, placeholder="", plural=False)
    except ValueError:
        raise ValueError(f"word {word!r} does not occur as a whole word in prompt {prompt!r}; click one of the "
                         "prompt's words") from None


def check_pair(tokenizer, prompt: str, word1: str, word2: str) -> tuple[str, str, str, str]:
    """Check two words of ``prompt`` (each as :func:`check_word`, and different); return the four conditions
    ``(c, c+y1, c+y2, prompt)`` of :func:`infodecomp.experiments.pid.conditions`. Raises ``ValueError``."""
    for w in (word1, word2):
        check_word(tokenizer, prompt, w)
    return pair_conditions(prompt, word1, word2)


def probe_pair(model, image, prompt: str, word1: str, word2: str,
               settings: ProbeSettings | None = None) -> ProbePair:
    """Partial information decomposition of ``word1`` and ``word2`` of ``prompt`` for one image: every quantity
    of :class:`ProbePair` from ``4 · settings.n_samples`` denoiser evaluations (the four conditions on the same
    (λ, ε) draws, seeded by ``settings.seed``, log-SNR as :class:`ProbeSettings`). Under a precision target the
    draws go on in blocks until the standard errors of i1, i2 and i12 (estimator i^o, the one the atoms are read
    from by default) all reach it, or ``n_samples`` draws. ``image`` as for :func:`probe_word`. Raises
    ``ValueError`` (before any model call) for a bad prompt or word, or one word twice.
    """
    settings = settings or ProbeSettings()
    conds = check_pair(model.tokenizer, prompt, word1, word2)
    t0 = time.perf_counter()
    pixels = model.images_to_tensor(image, resize="bicubic")  # [1, 3, H, W] in [0, 1]
    if pixels.shape[0] != 1:
        raise ValueError(f"probe_pair takes one image, got a batch of {pixels.shape[0]}")
    x = model.encode_images(pixels)  # [1, C, h, w], the VAE posterior mean
    emb = model.encode_prompts(list(conds)).to(x.device)  # [4, L, D]: c, c+y1, c+y2, c+y1+y2
    g = torch.Generator().manual_seed(int(settings.seed))
    precision, met = settings.precision, None
    if precision:
        p = terms_to_precision(model.denoiser, x, emb[None, 1:], emb[:1], target=precision["target_stderr"],
                               relative=precision["relative_stderr"], block=precision["block"],
                               max_samples=settings.n_samples, pixelwise=True, sampling=settings.sampling,
                               generator=g)
        terms, met = p.terms[0], bool(p.target_met[0])
    else:
        terms = information_terms(model.denoiser, x, emb[None, 1:], emb[:1], n_samples=int(settings.n_samples),
                                  pixelwise=True, sampling=settings.sampling, generator=g)
    values, maps = {}, {}
    for estimator in ESTIMATORS:  # every reading comes from the same terms: no further denoiser call
        for redundancy in _pid.REDUNDANCIES:
            est = _pid.pid_from_terms(terms, estimator=estimator, redundancy=redundancy)
            values[(estimator, redundancy)] = {k: (float(v[0]), float(est.stderrs[k][0]))
                                               for k, v in est.values.items()}
            maps[(estimator, redundancy)] = {k: m[0].detach().float().cpu().numpy() for k, m in est.pixel.items()}
    return ProbePair(image=_uint8(pixels)[0], prompt=prompt, word1=word1, word2=word2, conditions=conds,
                     values=values, maps=maps, settings=settings, seconds=time.perf_counter() - t0,
                     n_samples=terms.n_samples, target_met=met, evaluations=4 * terms.n_samples)


def probe_word(model, image, prompt: str, word: str, settings: ProbeSettings | None = None) -> ProbeResult:
    """Pixel MI, pixel CMI and the attention map of ``word`` in ``prompt`` for one image.

    model: an :class:`infodecomp.models.Model`. image: a PIL image, uint8 array ``[H, W, 3]`` or float tensor
    ``[3, H, W]`` in [0, 1], resized (bicubic) to the model's resolution. Latents are the VAE posterior mean.
    Raises ``ValueError`` (before any model call) for an empty prompt, a prompt over the token limit, or a word
    that does not occur in the prompt. Under a precision target (:class:`ProbeSettings`) each map draws until the
    standard error of its sum reaches it; the result says the draws each took and the denoiser rows used.
    """
    settings = settings or ProbeSettings()
    context = check_word(model.tokenizer, prompt, word)
    t0 = time.perf_counter()
    pixels = model.images_to_tensor(image, resize="bicubic")  # [1, 3, H, W] in [0, 1]
    if pixels.shape[0] != 1:
        raise ValueError(f"probe_word takes one image, got a batch of {pixels.shape[0]}")
    seen = _uint8(pixels)[0]  # exactly what is analysed and shown
    row = {"image": seen, "caption": prompt, "word": word, "label": word, "context": context}
    g = torch.Generator().manual_seed(int(settings.seed))
    hm = word_heatmaps(model, [row], n_samples=int(settings.n_samples), protocol="corrected", mi_cond="word",
                       attention_samples=settings.attention_passes, generator=g, sampling=settings.sampling,
                       **settings.precision)
    mi_n, cmi_n = int(hm.mi_samples[0]), int(hm.cmi_samples[0])
    met = (None, None) if hm.cmi_target_met is None else (bool(hm.mi_target_met[0]), bool(hm.cmi_target_met[0]))

    def arr(t):
        return t[0].detach().float().cpu().numpy()

    return ProbeResult(image=seen, prompt=prompt, word=word, context=context, mi=arr(hm.mi),
                       cmi=arr(hm.cmi), attention=arr(hm.attention), mi_image=float(hm.mi_image[0]),
                       mi_stderr=float(hm.mi_stderr[0]), cmi_image=float(hm.cmi_image[0]),
                       cmi_stderr=float(hm.cmi_stderr[0]), settings=settings, seconds=time.perf_counter() - t0,
                       mi_samples=mi_n, cmi_samples=cmi_n, mi_target_met=met[0], cmi_target_met=met[1],
                       evaluations=2 * (mi_n + cmi_n) + settings.attention_passes)


def probe_intervention(model, image, prompt: str, word: str, *, swap: str | None = None,
                       steps: int = 20) -> ProbeIntervention:
    """Omit (``swap=None``) or swap ``word`` in ``prompt`` and regenerate ``image`` from its Heun inversion.

    ``steps``: σ values of the ODE each way (the paper: 100); ``2(steps − 1)`` denoiser calls to invert and as many
    (on a batch of 2) to regenerate. Returns :class:`ProbeIntervention` with both regenerated images, the edit
    prompt and the latent change map.
    """
    check_word(model.tokenizer, prompt, word)
    steps = count(steps, "steps", minimum=2, hint="σ values of the ODE")
    if isinstance(swap, str) and not swap.strip():
        swap = None  # an empty swap box means: omit the word
    if swap is not None:
        swap = checked_word(swap, "swap", hint="the word to put in place of `word`, or None to omit it")
    edit_prompt = omit_word(prompt, word) if swap is None else swap_word(prompt, word, swap)
    check_prompt_length(model.tokenizer, edit_prompt)
    t0 = time.perf_counter()
    x = model.encode_images(image, resize="bicubic")  # [1, C, h, w]
    out = intervene(model, x, prompt, word, omit=swap is None, swap=swap, steps=int(steps), progress=False)
    kind = "omit" if swap is None else "swap"
    recon, edit = out.latents["reconstruction"], out.latents[kind]
    imgs = model.decode(torch.cat([recon, edit]).to(model.dtype), output_type="pt")
    change = latent_change(recon, edit)[0]
    pix = _uint8(imgs)
    return ProbeIntervention(kind=kind, prompt=prompt, word=word, edit_prompt=out.prompts[kind][0],
                             reconstruction=pix[0], edited=pix[1], change=change.cpu().numpy(), change_total=float(change.sum()),
                             steps=int(steps), seconds=time.perf_counter() - t0)


def generate_image(model, prompt: str, *, steps: int = 30, guidance_scale: float = 3.0, seed: int = 0):
    """An RGB ``PIL.Image`` generated from ``prompt`` by DDIM with classifier-free guidance through the model's denoiser
    (:func:`infodecomp.editing.sample`), at the model's resolution. Raises ``ValueError`` for an empty or over-long prompt."""
    if not isinstance(prompt, str) or not prompt.strip():
        raise ValueError(f"the prompt is empty; expected a caption to generate from, got {prompt!r}")
    check_prompt_length(model.tokenizer, prompt)
    g = torch.Generator(device="cpu").manual_seed(int(seed))
    latents = sample(model, [prompt], steps=int(steps), guidance_scale=float(guidance_scale), generator=g)
    return model.decode(latents, output_type="pil")[0].convert("RGB")


def read_image(data: bytes, name: str = "upload"):
    """The bytes of an image file (PNG, JPEG, GIF, BMP, WebP, …) → an upright RGB ``PIL.Image`` (alpha dropped;
    EXIF orientation applied; 16-bit and float images rescaled to 8 bits, not clipped): the package's one image
    reader, :func:`infodecomp.checks.load_image`.

    Raises ``ValueError`` naming the file and its size when the bytes are empty, not a readable image, or an
    image of more than :data:`infodecomp.checks.MAX_IMAGE_PIXELS` pixels.
    """
    return load_image(bytes(data), name)


def default_dataset(n: int = 21, seed: int = 0) -> Sequence[dict]:
    """Rows with ``image``, ``caption``, ``word`` and ``swap_word``: the ShapesWorld twin of COCO100-IT (shape
    and colour words that can be omitted or swapped; n >= 7, one block of rows per word group)."""
    return twin("coco100-it", n, seed)
