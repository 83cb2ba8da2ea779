"""Deterministic ODE inversion and generation, and prompt interventions (docs/protocol.md#intervention-solver; Table 4,
Figs. 1, 3).

The probability-flow ODE is integrated in the Karras et al. (2022) convention: the state is ``z = x + s·ε`` with
noise level ``s`` (σ in the paper), ``logsnr = −2 log s``. A VP-trained denoiser is called on the rescaled state
``z / sqrt(1 + s²)`` (= sqrt(sigmoid(logsnr))·z, which is exactly the VP channel), the denoised estimate is
``D = z − s·ε̂`` and the ODE derivative is ``dz/ds = (z − D)/s = ε̂`` (docs/protocol.md#timesteps).

* :func:`karras_sigmas`: ρ = 7 schedule between the model's trained ``σ_min = exp(−λ_max/2)`` and
  ``σ_max = exp(−λ_min/2)`` (0.0292 and 14.615 for SD's ᾱ), no final σ = 0.
* :func:`heun_integrate`: deterministic 2nd-order Heun (Karras Alg. 2, churn 0) along any σ sequence,
  up (inversion) or down (generation); ``n`` σ values → ``n − 1`` steps, 2 denoiser calls each.
* :func:`invert` / :func:`generate` / :func:`intervene`: the reference's image-editing protocol — invert the
  real latent with the original caption, then regenerate from that noise with the original (reconstruction),
  omit and swap prompts. All generations of one call run batched in the same dtype (avoiding docs/protocol.md#b19, where
  the reference ran the reconstruction in fp16 and the edits in fp32).
* :func:`sample`: fresh images from prompts (N(0, I) noise, DDIM, classifier-free guidance), through the
  model's denoiser, so a model that hides tokens from cross-attention is sampled as it was trained (a stock
  diffusers pipeline call would not hide them).
* :func:`ddim_levels`, :func:`ddim_integrate`, :func:`ddim_invert`, :func:`ddim_generate`: deterministic DDIM
  (η = 0) in the VP convention, as the DAAM baseline of Table 3 runs it (docs/protocol.md#daam): "leading" timesteps
  ``{offset, offset + Δ, …}`` with ``Δ = T // steps``, the clean latent at ``ᾱ_0 = alphas_cumprod[0]``
  (``set_alpha_to_one=False``), ``steps`` denoiser calls each way. (DDIM is the Euler method of the same ODE in
  the Karras coordinates; it is kept in VP form here so the inversion can use the reference's evaluation point.)
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import torch
from torch import Tensor
from tqdm.auto import tqdm

from .checks import batch_size as check_batch_size
from .checks import count, finite_tensor, nonempty, real
from .checks import generator as check_generator
from .checks import word as check_word
from .logsnr import trained_range
from .models.attention import record_cross_attention
from .text import omit_word, swap_word, swap_words

__all__ = [
    "sigma_range",
    "karras_sigmas",
    "model_sigmas",
    "guided_eps",
    "karras_denoiser_eps",
    "heun_integrate",
    "ddim_levels",
    "ddim_integrate",
    "ddim_invert",
    "ddim_generate",
    "sample",
    "invert",
    "generate",
    "Intervention",
    "intervene",
]


def _guidance(guidance_scale) -> float | None:
    """``guidance_scale`` as a float, or ``None`` for no classifier-free guidance."""
    if guidance_scale is None:
        return None
    return real(guidance_scale, "guidance_scale", hint="classifier-free guidance weight, or None for none")


def _rho(rho) -> float:
    return real(rho, "rho", above=0, hint="the exponent of Karras et al.'s noise levels, 7 in the paper")


def _check_state(z, name: str) -> None:
    """``z`` must be a non-empty, finite float tensor ``[B, ...]`` (latents or an ODE state)."""
    if not isinstance(z, Tensor) or not z.is_floating_point() or z.ndim < 2:
        raise ValueError(f"{name} must be a float tensor [B, C, h, w]; got {type(z).__name__} "
                         f"{tuple(z.shape) if isinstance(z, Tensor) else ''}")
    nonempty(z, name, "[B, C, h, w] with every dimension >= 1")
    finite_tensor(z, name)


def sigma_range(alphas_cumprod: Tensor) -> tuple[float, float]:
    """``(σ_min, σ_max) = (exp(−λ_max/2), exp(−λ_min/2))`` of a trained schedule: (0.02917, 14.615) for SD 2.1."""
    lo, hi = trained_range(torch.as_tensor(alphas_cumprod))
    return math.exp(-hi / 2), math.exp(-lo / 2)


def karras_sigmas(n: int, sigma_min: float, sigma_max: float, rho: float = 7.0) -> Tensor:
    """Karras et al. (2022, Eq. 5) noise levels ``[n]`` float64, decreasing from ``sigma_max`` to ``sigma_min``:
    ``σ_i = (σ_max^{1/ρ} + i/(n−1)·(σ_min^{1/ρ} − σ_max^{1/ρ}))^ρ``. No σ = 0 is appended (the reference
    appends it and drops it again: the flow cannot be inverted from σ = 0, docs/protocol.md#intervention-solver)."""
    n = count(n, "n", minimum=2, hint="the number of noise levels")
    rho = _rho(rho)
    sigma_min, sigma_max = real(sigma_min, "sigma_min"), real(sigma_max, "sigma_max")
    if not 0 < sigma_min < sigma_max:
        raise ValueError(f"need 0 < sigma_min < sigma_max, got {sigma_min}, {sigma_max}")
    ramp = torch.linspace(0, 1, n, dtype=torch.float64)
    lo, hi = sigma_min ** (1 / rho), sigma_max ** (1 / rho)
    return (hi + ramp * (lo - hi)) ** rho


def model_sigmas(model, steps: int, rho: float = 7.0) -> Tensor:
    """:func:`karras_sigmas` ``[steps]`` over ``model``'s trained range (``model.alphas_cumprod``)."""
    steps = count(steps, "steps", minimum=2, hint="σ values of the ODE")
    return karras_sigmas(steps, *sigma_range(model.alphas_cumprod), rho=rho)


def karras_denoiser_eps(denoiser, z: Tensor, sigma: float, cond: Tensor, *, uncond: Tensor | None = None,
                        guidance_scale: float | None = None) -> Tensor:
    """ε̂ ``[B, ...]`` for the Karras-space state ``z [B, ...]`` at noise level ``sigma`` (a float).

    Calls the VP ``denoiser`` at ``logsnr = −2 log σ`` on ``z / sqrt(1 + σ²)``. With ``guidance_scale`` g,
    classifier-free guidance ε̂ = ε̂(∅) + g·(ε̂(c) − ε̂(∅)) with ``uncond`` embeddings, both in one batched call.
    """
    logsnr = torch.full((z.shape[0],), -2.0 * math.log(sigma), device=z.device, dtype=torch.float32)
    return guided_eps(denoiser, z / math.sqrt(1.0 + sigma * sigma), logsnr, cond, uncond=uncond,
                      guidance_scale=guidance_scale)


def guided_eps(denoiser, z: Tensor, logsnr: Tensor, cond: Tensor, *, uncond: Tensor | None = None,
               guidance_scale: float | None = None) -> Tensor:
    """ε̂ ``[B, ...]`` of the VP state ``z [B, ...]`` at ``logsnr [B]``, with optional classifier-free guidance.

    Without ``guidance_scale``: ``denoiser(z, logsnr, cond)``. With it, ε̂ = ε̂(∅) + g·(ε̂(c) − ε̂(∅)) from one
    batched call on ``[uncond, cond]`` (unconditional half first, as diffusers' pipelines order it).
    """
    if guidance_scale is None:
        return denoiser(z, logsnr, cond)
    if uncond is None:
        raise ValueError("guidance_scale needs uncond (the null-prompt embeddings)")
    eps_u, eps_c = denoiser(torch.cat([z, z]), torch.cat([logsnr, logsnr]), torch.cat([uncond, cond])).chunk(2)
    return eps_u + guidance_scale * (eps_c - eps_u)


def heun_integrate(denoiser, z: Tensor, sigmas: Tensor, cond: Tensor, *, uncond: Tensor | None = None,
                   guidance_scale: float | None = None, progress: bool = True, desc: str = "Heun") -> Tensor:
    """Integrate the probability-flow ODE ``dz/dσ = ε̂(z, σ)`` from ``sigmas[0]`` to ``sigmas[-1]``.

    Karras et al. (2022) Algorithm 2 with churn 0: for each pair (σ_i, σ_{i+1}), ``d = ε̂(z, σ_i)``, Euler
    predictor ``z' = z + (σ_{i+1} − σ_i)·d``, corrector ``z ← z + (σ_{i+1} − σ_i)·(d + ε̂(z', σ_{i+1}))/2``.
    Increasing ``sigmas`` inverts (data → noise), decreasing ones generate. ``sigmas`` must be > 0.

    Args:
        denoiser: VP denoiser ``eps_hat = denoiser(z, logsnr, cond)``.
        z: ``[B, ...]`` Karras-space state at ``sigmas[0]`` (float32 recommended: the state is kept in z's dtype).
        sigmas: ``[n]`` noise levels (float64).
        cond: ``[B, L, D]`` (or ``[1, L, D]``) prompt embeddings; ``uncond``/``guidance_scale``: optional CFG.
    Returns ``[B, ...]`` the state at ``sigmas[-1]``. ``2·(n − 1)`` denoiser calls.
    """
    guidance_scale = _guidance(guidance_scale)
    _check_state(z, "z")
    sig = [float(s) for s in torch.as_tensor(sigmas).flatten()]
    if len(sig) < 2:
        raise ValueError(f"need at least 2 noise levels, got {len(sig)}")
    if not all(math.isfinite(v) and v > 0 for v in sig):
        raise ValueError(f"all sigmas must be finite and > 0 (the flow is not evaluated at σ = 0); got min "
                         f"{min(sig)}, max {max(sig)}")
    if cond.shape[0] not in (1, z.shape[0]):
        raise ValueError(f"cond batch {cond.shape[0]} does not match z batch {z.shape[0]}")
    kw = dict(uncond=uncond, guidance_scale=guidance_scale)
    for s_cur, s_next in tqdm(list(zip(sig[:-1], sig[1:])), desc=desc, disable=not progress, leave=False):
        d = karras_denoiser_eps(denoiser, z, s_cur, cond, **kw)
        z_pred = z + (s_next - s_cur) * d
        d_next = karras_denoiser_eps(denoiser, z_pred, s_next, cond, **kw)
        z = z + (s_next - s_cur) * 0.5 * (d + d_next)
    return z


def _embed(model, prompt, batch: int) -> Tensor:
    """Prompt(s) or embeddings → ``[batch, L, D]``."""
    if isinstance(prompt, Tensor):
        emb = prompt
    else:
        prompts = [prompt] if isinstance(prompt, str) else list(prompt)
        emb = model.encode_prompts(prompts)
    if emb.shape[0] == 1 and batch > 1:
        emb = emb.expand(batch, *emb.shape[1:])
    if emb.shape[0] != batch:
        raise ValueError(f"{emb.shape[0]} prompts/embeddings for a batch of {batch} latents")
    return emb


def _uncond(model, guidance_scale, batch: int):
    if guidance_scale is None:
        return None
    return _embed(model, "", batch)


def invert(model, latents: Tensor, prompt, steps: int = 100, *, guidance_scale: float | None = None,
           rho: float = 7.0, progress: bool = True) -> Tensor:
    """Deterministic Heun inversion of clean latents to noise (docs/protocol.md#intervention-solver, the reference's
    ``reverse``).

    Args:
        model: an ``infodecomp.models.Model`` (anything with ``.denoiser``, ``.alphas_cumprod`` and, for string
            prompts, ``.encode_prompts``).
        latents: ``[B, C, h, w]`` clean latents ``x``, treated as the state at σ_min.
        prompt: a caption, a list of B captions, or embeddings ``[B or 1, L, D]``.
        steps: number of σ values (the reference's ``--num_steps``, 100): ``steps − 1`` Heun steps,
            ``2(steps − 1)`` denoiser calls (×2 with guidance).
        guidance_scale: classifier-free guidance (default ``None``: none, as the paper).
    Returns ``[B, C, h, w]`` the Karras-space state at σ_max (std ≈ σ_max ≈ 14.6 for SD).
    """
    _check_state(latents, "latents")
    guidance_scale = _guidance(guidance_scale)
    sig = model_sigmas(model, steps, _rho(rho)).flip(0)
    cond = _embed(model, prompt, latents.shape[0])
    return heun_integrate(model.denoiser, latents, sig, cond, uncond=_uncond(model, guidance_scale, latents.shape[0]),
                          guidance_scale=guidance_scale, progress=progress, desc="invert")


def generate(model, noise: Tensor, prompt, steps: int = 100, *, guidance_scale: float | None = None,
             rho: float = 7.0, progress: bool = True) -> Tensor:
    """Deterministic Heun generation from σ_max to σ_min (the reference's ``generate``).

    ``noise [B, C, h, w]`` is the Karras-space state at σ_max (from :func:`invert`, or ``σ_max·N(0, I)`` for a
    fresh sample). Returns the state at σ_min, taken as the clean latent (no final jump to σ = 0).
    Arguments as :func:`invert`.
    """
    _check_state(noise, "noise")
    guidance_scale = _guidance(guidance_scale)
    sig = model_sigmas(model, steps, _rho(rho))
    cond = _embed(model, prompt, noise.shape[0])
    return heun_integrate(model.denoiser, noise, sig, cond, uncond=_uncond(model, guidance_scale, noise.shape[0]),
                          guidance_scale=guidance_scale, progress=progress, desc="generate")


def ddim_levels(alphas_cumprod: Tensor, steps: int, *, offset: int = 1) -> tuple[Tensor, Tensor]:
    """The DDIM grid of docs/protocol.md#daam: ``(timesteps [steps] int64, levels [steps + 1] float64)``.

    ``timesteps`` are diffusers' "leading" spacing, increasing: ``t_i = i·(T // steps) + offset`` (SD 2.1-base's
    scheduler config: ``steps_offset`` 1, so {1, 21, …, 981} for 50 steps, {1, 11, …, 991} for 100).
    ``levels`` are the ᾱ of the states, from clean to noisy: ``[ᾱ[0], ᾱ[t_0], …, ᾱ[t_{steps−1}]]`` — the clean
    latent sits at ``alphas_cumprod[0]``, because the reference's DDIM scheduler has ``set_alpha_to_one=False``
    and uses ᾱ_0 wherever ``t − Δ < 0``.
    """
    ac = torch.as_tensor(alphas_cumprod).to(torch.float64).cpu()
    T = ac.numel()
    steps = count(steps, "steps", maximum=T, hint=f"the schedule has {T} timesteps")
    offset = count(offset, "offset", minimum=0, hint="the scheduler's steps_offset")
    t = torch.arange(steps, dtype=torch.int64) * (T // steps) + offset
    if int(t[0]) < 0 or int(t[-1]) >= T:
        raise ValueError(f"offset {offset} puts the DDIM timesteps {int(t[0])}…{int(t[-1])} outside [0, {T - 1}]")
    return t, torch.cat([ac[:1], ac[t]])


def ddim_integrate(denoiser, z: Tensor, levels: Tensor, cond: Tensor, *, uncond: Tensor | None = None,
                   guidance_scale: float | None = None, progress: bool = True, desc: str = "DDIM") -> Tensor:
    """Deterministic DDIM (η = 0; Song et al. 2021, Eq. 12) from ᾱ = ``levels[0]`` to ``levels[-1]``.

    Per step ``a → a'``: ``x̂ = (z − sqrt(1 − a)·ε̂) / sqrt(a)``, ``z ← sqrt(a')·x̂ + sqrt(1 − a')·ε̂``, with ε̂
    evaluated at the current ``z`` and the log-SNR of the NOISIER of the two levels: going down (generation) that
    is the step's own level, the standard DDIM step; going up (inversion) it is the target level, the usual
    approximate DDIM inversion, as the reference's DAAM script does (docs/protocol.md#daam, item 3).

    Args:
        denoiser: VP denoiser ``eps_hat = denoiser(z, logsnr, cond)``; called at ``logsnr = log(ᾱ / (1 − ᾱ))``
            of the level, which the diffusers adapter maps back to that very timestep.
        z: ``[B, ...]`` VP state at ``levels[0]`` (float32 recommended: the state is kept in z's dtype).
        levels: ``[n]`` ᾱ values in (0, 1) (from :func:`ddim_levels`; flipped for generation).
        cond: ``[B or 1, L, D]`` prompt embeddings; ``uncond``/``guidance_scale``: optional CFG
            (:func:`guided_eps`).
    Returns ``[B, ...]`` the state at ``levels[-1]``. ``n − 1`` denoiser calls (×2 in one batch with CFG).
    """
    guidance_scale = _guidance(guidance_scale)
    _check_state(z, "z")
    a = [float(v) for v in torch.as_tensor(levels, dtype=torch.float64).flatten()]
    if len(a) < 2:
        raise ValueError(f"need at least 2 levels, got {len(a)}")
    if not all(0.0 < v < 1.0 for v in a):
        raise ValueError(f"DDIM levels ᾱ must lie in (0, 1), got min {min(a)}, max {max(a)}")
    if cond.shape[0] not in (1, z.shape[0]):
        raise ValueError(f"cond batch {cond.shape[0]} does not match z batch {z.shape[0]}")
    B = z.shape[0]
    for a_cur, a_next in tqdm(list(zip(a[:-1], a[1:])), desc=desc, disable=not progress, leave=False):
        a_eval = min(a_cur, a_next)
        logsnr = torch.full((B,), math.log(a_eval) - math.log1p(-a_eval), device=z.device, dtype=torch.float32)
        eps = guided_eps(denoiser, z, logsnr, cond, uncond=uncond, guidance_scale=guidance_scale)
        x_hat = (z - math.sqrt(1.0 - a_cur) * eps) / math.sqrt(a_cur)
        z = math.sqrt(a_next) * x_hat + math.sqrt(1.0 - a_next) * eps
    return z


def ddim_invert(model, latents: Tensor, prompt, steps: int = 100, *, guidance_scale: float | None = None,
                offset: int = 1, progress: bool = True) -> Tensor:
    """Deterministic DDIM inversion of clean latents to noise over ``steps`` steps (docs/protocol.md#daam, item 3).

    Args:
        model: an ``infodecomp.models.Model`` (anything with ``.denoiser``, ``.alphas_cumprod`` and, for string
            prompts, ``.encode_prompts``).
        latents: ``[B, C, h, w]`` clean latents ``x``, taken as the state at ᾱ_0 (see :func:`ddim_levels`).
        prompt: a caption, a list of B captions, or embeddings ``[B or 1, L, D]``.
        steps: DDIM steps (the paper: 50, 100, 200): ``steps`` denoiser calls.
        guidance_scale: classifier-free guidance (``None``: none; 1 is the same as none, as the reference ran).
        offset: the scheduler's ``steps_offset`` (1 for SD 2.1-base).
    Returns ``[B, C, h, w]`` the VP state at the last timestep (≈ unit variance).
    """
    _check_state(latents, "latents")
    guidance_scale = _guidance(guidance_scale)
    _, levels = ddim_levels(model.alphas_cumprod, steps, offset=offset)
    cond = _embed(model, prompt, latents.shape[0])
    return ddim_integrate(model.denoiser, latents, levels, cond, uncond=_uncond(model, guidance_scale,
                          latents.shape[0]), guidance_scale=guidance_scale, progress=progress, desc="DDIM invert")


def ddim_generate(model, noise: Tensor, prompt, steps: int = 100, *, guidance_scale: float | None = None,
                  offset: int = 1, progress: bool = True) -> Tensor:
    """Deterministic DDIM generation from the last timestep down to ᾱ_0 over ``steps`` steps (docs/protocol.md#daam,
    item 4).

    ``noise [B, C, h, w]``: the VP state at the last timestep (from :func:`ddim_invert`, or ``N(0, I)`` for a
    fresh sample). Returns the state at ᾱ_0, taken as the clean latent. Arguments as :func:`ddim_invert`.
    """
    _check_state(noise, "noise")
    guidance_scale = _guidance(guidance_scale)
    _, levels = ddim_levels(model.alphas_cumprod, steps, offset=offset)
    cond = _embed(model, prompt, noise.shape[0])
    return ddim_integrate(model.denoiser, noise, levels.flip(0), cond, uncond=_uncond(model, guidance_scale,
                          noise.shape[0]), guidance_scale=guidance_scale, progress=progress, desc="DDIM generate")


def sample(model, prompts: str | Sequence[str] | Tensor, *, steps: int = 50, guidance_scale: float | None = 3.0,
           generator: torch.Generator | None = None, batch_size: int = 32, progress: bool = False) -> Tensor:
    """Clean latents ``[N, C, h, w]`` generated from prompts: ``N(0, I)`` noise drawn with ``generator`` on
    the CPU (as diffusers' pipelines draw it), then :func:`ddim_generate` (``steps`` DDIM steps, "leading"
    timesteps, classifier-free guidance ``guidance_scale``; ``None`` or 1: none). The same algorithm as
    ``StableDiffusionPipeline`` with its DDIM scheduler, but every UNet call goes through ``model.denoiser``
    (which hides the tokens a ``cross_attention_tokens="words"`` model never saw). Decode with
    ``model.decode``. ``prompts``: captions or embeddings ``[N, L, D]``."""
    batch_size = check_batch_size(batch_size)
    check_generator(generator)
    guidance_scale = _guidance(guidance_scale)
    g = None if guidance_scale == 1.0 else guidance_scale
    C, h, w = model.latent_shape
    ddim_levels(model.alphas_cumprod, steps)  # checks steps before the prompts are encoded
    if not isinstance(prompts, (str, Tensor)):
        prompts = list(prompts)
        if not prompts:
            raise ValueError("sample needs at least one prompt; got none")
    cond = _embed(model, prompts, len(prompts) if not isinstance(prompts, (str, Tensor)) else
                  (1 if isinstance(prompts, str) else prompts.shape[0]))
    out = []
    for i in range(0, cond.shape[0], batch_size):
        c = cond[i:i + batch_size]
        noise = torch.randn((c.shape[0], C, h, w), generator=generator).to(model.device)
        out.append(ddim_generate(model, noise, c, steps, guidance_scale=g, progress=progress))
    return torch.cat(out)


@dataclass
class Intervention:
    """Result of :func:`intervene` for a batch of B images.

    Attributes:
        noise: ``[B, C, h, w]`` the inverted latents at σ_max.
        latents: ``{kind: [B, C, h, w]}`` regenerated clean latents, kinds ``"reconstruction"``, ``"omit"``,
            ``"swap"`` (those requested).
        prompts: ``{kind: list[str]}`` the B prompts each kind was generated with.
        attention: ``{kind: [B, L, h, w]}`` per-token cross-attention maps summed over the generation's
            ``2(steps − 1)`` UNet calls, when ``record_attention`` (else empty).
    """

    noise: Tensor
    latents: dict[str, Tensor]
    prompts: dict[str, list[str]]
    attention: dict[str, Tensor] = field(default_factory=dict)

    def change(self, kind: str) -> Tensor:
        """``[B]`` squared L2 distance in latent space between an edit and the reconstruction (the reference's
        "change" metric, docs/protocol.md#b23: latent space)."""
        diff = (self.latents[kind] - self.latents["reconstruction"]).to(torch.float32)
        return diff.flatten(1).pow(2).sum(1)


def intervene(model, latents: Tensor, prompts: str | Sequence[str], word: str | Sequence[str], *,
              omit: bool = True, swap: str | Mapping[str, str] | Sequence[str] | None = None, steps: int = 100,
              guidance_scale: float | None = None, record_attention: bool = False,
              attention_kwargs: dict | None = None, progress: bool = True) -> Intervention:
    """Prompt intervention: invert with the caption, regenerate with the caption, the omit and the swap prompts.

    Args:
        model: an ``infodecomp.models.Model``.
        latents: ``[B, C, h, w]`` clean latents of real images.
        prompts: the B captions (or one for all).
        word: the word y* of each caption (or one for all); the omit prompt replaces it (and its "+s" plural),
            whole-word and case-insensitively, by ``_`` (docs/protocol.md#prompts).
        omit: generate the omit prompt.
        swap: ``None`` (no swap), a replacement word for ``word`` (``swap_word``), a table ``{word: new}``
            applied to every listed word of the caption (``swap_words``, as the reference's swap table), or a
            list of B ready-made swap prompts.
        steps: number of σ values (100 in the reference): ``steps − 1`` Heun steps each way.
        guidance_scale: optional classifier-free guidance, for inversion and generation alike.
        record_attention: record cross-attention during the (batched) generations; ``attention_kwargs`` go to
            :func:`infodecomp.models.attention.record_cross_attention`.

    All generations start from the same inverted noise and run as one batch, in the model's dtype.
    """
    _check_state(latents, "latents")
    guidance_scale = _guidance(guidance_scale)
    B = latents.shape[0]
    prompts = [prompts] * B if isinstance(prompts, str) else list(prompts)
    words = [word] * B if isinstance(word, str) else list(word)
    if len(prompts) != B or len(words) != B:
        raise ValueError(f"{len(prompts)} prompts and {len(words)} words for {B} latents")
    words = [check_word(w, f"word {i}") for i, w in enumerate(words)]
    if swap is not None and not isinstance(swap, (str, Mapping)):
        if isinstance(swap, bytes) or not isinstance(swap, Sequence):
            raise ValueError(f"swap must be None, a replacement word, a table {{word: new}} or a list of {B} swap "
                             f"prompts; got {swap!r} ({type(swap).__name__})")
        swap = [check_word(p, f"swap prompt {i}") for i, p in enumerate(swap)]
    kinds = {"reconstruction": prompts}
    if omit:
        kinds["omit"] = [omit_word(p, w) for p, w in zip(prompts, words)]
    if swap is not None:
        if isinstance(swap, str):
            swap = check_word(swap, "swap", hint="the replacement of `word`")
            kinds["swap"] = [swap_word(p, w, swap) for p, w in zip(prompts, words)]
        elif isinstance(swap, Mapping):
            kinds["swap"] = [swap_words(p, swap) for p in prompts]
        else:
            swapped = list(swap)
            if len(swapped) != B:
                raise ValueError(f"{len(swapped)} swap prompts for {B} latents")
            kinds["swap"] = swapped

    noise = invert(model, latents, prompts, steps, guidance_scale=guidance_scale, progress=progress)
    all_prompts = [p for ps in kinds.values() for p in ps]
    batch_noise = noise.repeat(len(kinds), *([1] * (noise.ndim - 1)))
    attention = {}
    if record_attention:
        with record_cross_attention(model, **(attention_kwargs or {})) as rec:
            out = generate(model, batch_noise, all_prompts, steps, guidance_scale=guidance_scale, progress=progress)
        maps = rec.token_maps()
        if guidance_scale is not None:  # the batched CFG call puts the unconditional half first
            maps = maps[maps.shape[0] // 2:]
        attention = dict(zip(kinds, maps.split(B)))
    else:
        out = generate(model, batch_noise, all_prompts, steps, guidance_scale=guidance_scale, progress=progress)
    return Intervention(noise=noise, latents=dict(zip(kinds, out.split(B))), prompts=kinds, attention=attention)
