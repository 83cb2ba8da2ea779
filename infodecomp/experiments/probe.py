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

Every input is checked before any model call, so a word not in the prompt or a prompt over the tokenizer's
limit fails at once with a ``ValueError`` naming what was given and what is expected.
"""

from __future__ import annotations

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
from ..estimators import ESTIMATORS, information_terms
from ..logsnr import LogSNRSampling
from ..text import check_prompt_length, omit_word, swap_word, token_positions
from .heatmaps import word_heatmaps
from .intervention import latent_change
from .pid import conditions as pair_conditions

__all__ = ["ProbeSettings", "ProbeResult", "ProbePair", "ProbeIntervention", "probe_word", "probe_pair",
           "probe_intervention", "generate_image", "read_image", "default_dataset", "check_word", "check_pair"]

#: Default number of log-SNR draws per map: a click on shapes-tiny stays well under 3 s on 2 CPU cores
#: (``benchmarks/probe_latency.py``).
DEFAULT_SAMPLES = 16


@dataclass(frozen=True)
class ProbeSettings:
    """What changes the maps of one click (part of the probe's cache key).

    n_samples: log-SNR draws per MI / CMI map (the paper: 100). attention_samples: denoiser passes for the
    attention map (None: ``n_samples``). loc, scale, clip: the truncated logistic over log-SNR, range
    loc ± clip·scale in nats (paper: 1, 2, 3 → [−5, 7]). seed: seeds the draws, so a setting gives one answer.
    """

    n_samples: int = DEFAULT_SAMPLES
    loc: float = 1.0
    scale: float = 2.0
    clip: float = 3.0
    seed: int = 0
    attention_samples: int | None = None

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
    (λ, ε) draws, seeded by ``settings.seed``, log-SNR as :class:`ProbeSettings`). ``image`` as for
    :func:`probe_word`. Raises ``ValueError`` (before any model call) for a bad prompt or word, or one word twice.
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
                     values=values, maps=maps, settings=settings, seconds=time.perf_counter() - t0)


def probe_word(model, image, prompt: str, word: str, settings: ProbeSettings | None = None) -> ProbeResult:
    """Pixel MI, pixel CMI and the attention map of ``word`` in ``prompt`` for one image.

    model: an :class:`infodecomp.models.Model`. image: a PIL image, uint8 array ``[H, W, 3]`` or float tensor
    ``[3, H, W]`` in [0, 1], resized (bicubic) to the model's resolution. Latents are the VAE posterior mean.
    Raises ``ValueError`` (before any model call) for an empty prompt, a prompt over the token limit, or a word
    that does not occur in the prompt.
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
                       attention_samples=settings.attention_samples, generator=g, sampling=settings.sampling)

    def arr(t):
        return t[0].detach().float().cpu().numpy()

    return ProbeResult(image=seen, prompt=prompt, word=word, context=context, mi=arr(hm.mi),
                       cmi=arr(hm.cmi), attention=arr(hm.attention), mi_image=float(hm.mi_image[0]),
                       mi_stderr=float(hm.mi_stderr[0]), cmi_image=float(hm.cmi_image[0]),
                       cmi_stderr=float(hm.cmi_stderr[0]), settings=settings, seconds=time.perf_counter() - t0)


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
