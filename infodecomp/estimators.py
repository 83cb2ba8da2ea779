"""Pointwise information estimators over a denoiser (paper Sec. 2; docs/protocol.md#estimators,
docs/architecture.md#equations).

A denoiser is any callable ``eps_hat = denoiser(z, logsnr, cond)`` (docs/architecture.md#denoiser-interface) with
``z = sqrt(σ(λ))·x + sqrt(σ(−λ))·ε`` and λ = log-SNR (large λ = little noise). For a condition ``cond`` and a
reference ``ref`` (the null prompt for MI, the context prompt for CMI), with the log-SNR integral over the real
line estimated by importance sampling (λ_k ~ q, weights w_k = 1/q(λ_k); :mod:`infodecomp.logsnr`):

- standard (i^s):   ½ · mean_k w_k (‖ε_k − ε̂(z_k|ref)‖² − ‖ε_k − ε̂(z_k|cond)‖²)  ≈ log p(x|cond) − log p(x|ref)
- orthogonal (i^o): ½ · mean_k w_k ‖ε̂(z_k|cond) − ε̂(z_k|ref)‖²   (same mean over x ~ p(x|cond), ≥ 0,
  lower variance; the paper's default)

All values are in nats. On a clipped range [lo, hi] the estimators estimate the part of the integral on
[lo, hi]; the information outside it (truncation) is not estimated (:mod:`infodecomp.analytic` computes it for
the test worlds).

Guarantees of every function here: one set of (λ, ε) draws serves every condition of an example; all
conditions of a chunk go through ONE denoiser call (concatenated along the batch); the reference is evaluated
once per draw; squared errors are reduced in at least float32 whatever the denoiser's dtype; a candidate equal
to the reference (bitwise, per example) reuses the reference's output, so identical conditions give exactly 0.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor
from tqdm.auto import tqdm

from .checks import count, finite_tensor, flag, logsnr_coverage, nonempty
from .checks import generator as check_generator
from .logsnr import LogSNRSampling

__all__ = [
    "ESTIMATORS", "InformationEstimate", "InformationScores", "InformationTerms", "MMSECurve",
    "pointwise_information", "information_scores", "information_terms", "mmse_curve", "variable_shape",
    "PrecisionEstimate", "PrecisionTerms", "information_to_precision", "terms_to_precision",
]

ESTIMATORS = ("orthogonal", "standard")
_DEFAULT_CHUNK = 256


# ───────────────────────────────────────────── results ──────────────────────────────────────────────

@dataclass(frozen=True)
class InformationEstimate:
    """Result of :func:`pointwise_information`."""

    value: Tensor        # [B] nats; with pixelwise=True the per-variable map: [B, *S] for x [B, C, *S]
    #                      (summed over channels, Eq. 6), [B, d] for x [B, d]
    stderr: Tensor       # [B] nats, Monte-Carlo standard error of the image-level value (NaN with < 2 replicates)
    image_value: Tensor  # [B] nats, the image-level value (equals value.sum over variables when pixelwise)
    estimator: str       # "orthogonal" | "standard"
    n_samples: int       # log-SNR draws per example (each with noise_per_logsnr noise draws)
    sampling: LogSNRSampling


@dataclass(frozen=True)
class InformationScores:
    """Result of :func:`information_scores`: M candidate conditions against one reference."""

    orthogonal: Tensor          # [B, M] i^o(x; cond_m ‖ ref), nats
    orthogonal_stderr: Tensor   # [B, M]
    standard: Tensor            # [B, M] i^s(x; cond_m ‖ ref) ≈ log p(x|cond_m) − log p(x|ref), nats
    standard_stderr: Tensor     # [B, M]
    mmse: Tensor                # [B, M] mean denoising error E_{λ~q, ε}‖ε − ε̂(z|cond_m)‖² (unweighted, summed
    #                             over variables): the DiffITM score (lower = better match)
    mmse_stderr: Tensor         # [B, M]
    ref_mmse: Tensor            # [B] the same for the reference
    ref_mmse_stderr: Tensor     # [B]
    pixel_orthogonal: Tensor | None  # [B, M, *V] per-variable i^o maps (pixelwise=True), V = variable_shape(x)
    pixel_standard: Tensor | None    # [B, M, *V] per-variable i^s maps
    n_samples: int
    sampling: LogSNRSampling


@dataclass(frozen=True)
class InformationTerms:
    """Result of :func:`information_terms`: the per-draw terms behind :class:`InformationScores`, for estimates of
    linear combinations of candidates' informations (co-information, PID atoms) with paired standard errors."""

    orthogonal: Tensor   # [B, K, M] nats: ½ w_k ‖ε̂(z_k|cond_m) − ε̂(z_k|ref)‖², averaged over the noise draws of λ_k
    standard: Tensor     # [B, K, M] nats: ½ w_k (‖ε − ε̂(z_k|ref)‖² − ‖ε − ε̂(z_k|cond_m)‖²), likewise
    pixel_orthogonal: Tensor | None  # [B, M, *V] per-variable i^o maps (pixelwise=True)
    pixel_standard: Tensor | None    # [B, M, *V] per-variable i^s maps
    groups: int          # independent replicate blocks along K (K for i.i.d. λ, the replicates for QMC)
    n_samples: int
    sampling: LogSNRSampling

    def contrast(self, coef: Tensor, estimator: str = "orthogonal") -> tuple[Tensor, Tensor]:
        """Σ_m coef[..., m] · i(x; cond_m ‖ ref) for each example: ``(value [B], stderr [B])`` in nats, the
        standard error from the same draws (paired). ``coef``: ``[M]``, or ``[B, M]`` for one combination per
        example."""
        if estimator not in ESTIMATORS:
            raise ValueError(f"unknown estimator {estimator!r}; expected one of {ESTIMATORS}")
        terms = self.orthogonal if estimator == "orthogonal" else self.standard
        B, _, M = terms.shape
        coef = torch.as_tensor(coef, dtype=torch.float64, device=terms.device)
        finite_tensor(coef, "coef")
        if coef.shape not in ((M,), (B, M)):
            raise ValueError(f"coef must have shape [{M}] or [{B}, {M}] (one weight per candidate), got "
                             f"{tuple(coef.shape)}")
        combined = (terms * coef.expand(B, M)[:, None, :]).sum(-1, keepdim=True)  # [B, K, 1]
        mean, se = _mean_stderr(combined, self.groups)
        return mean[:, 0], se[:, 0]


@dataclass(frozen=True)
class MMSECurve:
    """Result of :func:`mmse_curve`: per-log-SNR (not integrated, unweighted) quantities on a grid (App. C.2)."""

    logsnr: Tensor               # [L] the grid
    mmse: Tensor                 # [B, M, L] E_ε‖ε − ε̂(z_λ|cond_m)‖² (summed over variables)
    mmse_stderr: Tensor          # [B, M, L]
    ref_mmse: Tensor             # [B, L] E_ε‖ε − ε̂(z_λ|ref)‖²
    ref_mmse_stderr: Tensor      # [B, L]
    standard: Tensor             # [B, M, L] ref_mmse − mmse (the i^s integrand: i^s = ½∫ standard dλ)
    standard_stderr: Tensor      # [B, M, L] (paired across conditions: same noise)
    orthogonal: Tensor           # [B, M, L] E_ε‖ε̂(z_λ|cond_m) − ε̂(z_λ|ref)‖² (the i^o integrand, without ½)
    orthogonal_stderr: Tensor    # [B, M, L]
    pixel_standard: Tensor | None    # [B, M, L, *V] per-variable standard integrand (pixelwise=True)
    pixel_orthogonal: Tensor | None  # [B, M, L, *V] per-variable orthogonal integrand
    n_noise: int                 # noise draws per grid point


# ───────────────────────────────────────────── checks ──────────────────────────────────────────────

def variable_shape(x: Tensor) -> tuple[int, ...]:
    """Shape of the per-variable map of x: ``(d,)`` for x [B, d]; ``S`` for x [B, C, *S] (channels summed, Eq. 6)."""
    if x.ndim < 2:
        raise ValueError(f"x must be batched, [B, d] or [B, C, ...], got shape {tuple(x.shape)}")
    return tuple(x.shape[1:]) if x.ndim == 2 else tuple(x.shape[2:])


def _per_variable(t: Tensor) -> Tensor:
    """[n, *x.shape[1:]] → [n, *V]: sum over channels for images, identity for vectors."""
    return t if t.ndim == 2 else t.sum(1)


def _check_finite(name: str, t: Tensor) -> None:
    finite_tensor(t, name)


def _check_inputs(x: Tensor, conds: Tensor, ref: Tensor, cond_name: str) -> None:
    if not isinstance(x, Tensor) or not x.is_floating_point():
        raise TypeError(f"x must be a floating-point tensor [B, ...], got {type(x).__name__}"
                        f"{'' if not isinstance(x, Tensor) else ' of dtype ' + str(x.dtype)}")
    variable_shape(x)
    if x.shape[0] == 0:
        raise ValueError(f"x is an empty batch (shape {tuple(x.shape)}); expected at least one example")
    nonempty(x, "x", "[B, d] or [B, C, *S] with every dimension >= 1 (an empty image holds no information)")
    for name, t in ((cond_name, conds), ("ref", ref)):
        if not isinstance(t, Tensor):
            raise TypeError(f"{name} must be a tensor batch-aligned with x, got {type(t).__name__}")
        if t.ndim < 1 or t.shape[0] != x.shape[0]:
            raise ValueError(f"{name} must be batch-aligned with x: x has B={x.shape[0]} rows, {name} has shape "
                             f"{tuple(t.shape)}")
    if cond_name == "conds":
        count(conds.shape[1], "the number of candidates M (conds [B, M, ...] has shape "
              f"{tuple(conds.shape)})", hint="at least one condition to score against the reference")
    if tuple(conds.shape[2:]) != tuple(ref.shape[1:]):
        raise ValueError(f"each condition must have the reference's shape: {cond_name} per candidate "
                         f"{tuple(conds.shape[2:])} vs ref {tuple(ref.shape[1:])}")
    if conds.dtype != ref.dtype:
        raise ValueError(f"{cond_name} and ref must have the same dtype (they are concatenated into one "
                         f"denoiser call), got {conds.dtype} and {ref.dtype}")
    _check_finite("x", x)
    _check_finite(cond_name, conds)
    _check_finite("ref", ref)


def _check_int(name: str, v, minimum: int = 1) -> int:
    return count(v, name, minimum=minimum)


def _resolve_sampling(sampling, rule, loc, scale, clip, denoiser=None) -> LogSNRSampling:
    """The :class:`LogSNRSampling` of an estimate, checked against the denoiser's trained log-SNR range where it
    has one (``denoiser.logsnr_range``, as :class:`~infodecomp.models.UNetDenoiser`): refused when no draw falls
    inside it, a warning when most do not (:func:`infodecomp.checks.logsnr_coverage`)."""
    if sampling is None:
        sampling = LogSNRSampling(rule=rule, loc=loc, scale=scale, clip=clip)
    elif not isinstance(sampling, LogSNRSampling):
        raise TypeError(f"sampling must be a LogSNRSampling, got {type(sampling).__name__}")
    elif (rule, loc, scale, clip) != ("logistic", 1.0, 2.0, 3.0):
        raise ValueError("give either sampling=LogSNRSampling(...) or rule/loc/scale/clip, not both "
                         f"(got sampling={sampling} and rule={rule!r}, loc={loc}, scale={scale}, clip={clip})")
    trained = getattr(denoiser, "logsnr_range", None)
    if trained is not None:
        logsnr_coverage(sampling.support, sampling.fraction_within(*trained), trained,
                        what=f"the log-SNR sampling (rule {sampling.rule!r}, loc {sampling.loc:g}, scale "
                             f"{sampling.scale:g}, clip {sampling.clip:g})", stacklevel=4)
    return sampling


# ───────────────────────────────────────────── the core ──────────────────────────────────────────────

def _acc_dtype(x: Tensor) -> torch.dtype:
    return torch.promote_types(x.dtype, torch.float32)


def _run(denoiser, x: Tensor, conds: Tensor, ref: Tensor, logsnr: Tensor, weights: Tensor, *,
         noise_per_logsnr: int, antithetic: bool, generator, chunk_size: int, maps: str | None,
         progress) -> dict[str, Tensor]:
    """Evaluate every condition on shared draws; return per-draw terms (and optional per-variable maps).

    x [B, *X]; conds [B, M, *C]; ref [B, *C]; logsnr, weights [B, K]. Item order is (k, b, j) with j the
    noise index; the noise of draw k is drawn as one tensor [B, m, *X] in order k = 0, 1, …, so results do not
    depend on chunk_size. Returns (float64):
      sqerr [B, K, m, M+1]   ‖ε − ε̂_j‖² (j = M is the reference)
      std   [B, K, m, M]     ‖ε − ε̂_ref‖² − ‖ε − ε̂_j‖², computed as (ε̂_j − ε̂_ref)·(2ε − ε̂_j − ε̂_ref)
      orth  [B, K, m, M]     ‖ε̂_j − ε̂_ref‖²
      map_std, map_orth      maps="integrated": [B, M, *V] Σ_k,j w/(K m) (·);  maps="per_logsnr": [B, K, M, *V]
                             mean over the m noise draws.
    """
    B, M = conds.shape[:2]
    K, m = logsnr.shape[1], noise_per_logsnr
    n_cond = M + 1
    xshape = tuple(x.shape[1:])
    vshape = variable_shape(x)
    acc = _acc_dtype(x)
    device = x.device
    x_acc = x.to(acc)
    lam_acc = logsnr.to(device=device, dtype=acc)
    w_acc = weights.to(device=device, dtype=acc)
    # candidates equal to the reference reuse its output (exactly zero information).
    alias = (conds == ref[:, None]).reshape(B, M, -1).all(-1).to(device)  # [B, M]
    any_alias = bool(alias.any())

    sqerr = torch.zeros(B * K * m, n_cond, dtype=torch.float64, device=device)
    std = torch.zeros(B * K * m, M, dtype=torch.float64, device=device)
    orth = torch.zeros(B * K * m, M, dtype=torch.float64, device=device)
    if maps == "integrated":
        map_std = torch.zeros(B, M, *vshape, dtype=acc, device=device)
    elif maps == "per_logsnr":
        map_std = torch.zeros(B * K, M, *vshape, dtype=acc, device=device)
    else:
        map_std = None
    map_orth = None if map_std is None else torch.zeros_like(map_std)

    gen_device = generator.device if generator is not None else device
    per_draw = B * m
    n_items = K * per_draw
    items_per_call = chunk_size // n_cond
    noise: dict[int, Tensor] = {}

    def noise_for(k: int) -> Tensor:  # [B*m, *X], drawn in order of k
        if k not in noise:
            half = m // 2 if antithetic else m
            e = torch.randn((B, half, *xshape), generator=generator, device=gen_device, dtype=acc).to(device)
            if antithetic:
                e = torch.cat([e, -e], 1)
            noise[k] = e.reshape(B * m, *xshape)
        return noise[k]

    starts = range(0, n_items, items_per_call)
    if progress:
        starts = tqdm(starts, desc="denoiser calls", leave=False)
    for start in starts:
        idx = torch.arange(start, min(start + items_per_call, n_items), device=device)
        n = idx.numel()
        k_idx = idx // per_draw
        r_idx = idx % per_draw
        b_idx = r_idx // m
        k_lo, k_hi = int(k_idx[0]), int(k_idx[-1])
        for k in [k for k in noise if k < k_lo]:
            del noise[k]
        buf = torch.cat([noise_for(k) for k in range(k_lo, k_hi + 1)]) if k_hi > k_lo else noise_for(k_lo)
        eps = buf[idx - k_lo * per_draw]  # [n, *X]
        lam = lam_acc[b_idx, k_idx]
        expand = (n,) + (1,) * len(xshape)
        z = torch.sigmoid(lam).sqrt().view(expand) * x_acc[b_idx] + torch.sigmoid(-lam).sqrt().view(expand) * eps
        z_in = z.to(x.dtype).repeat(n_cond, *([1] * len(xshape)))
        cond_rows = torch.cat([conds[b_idx.to(conds.device), j] for j in range(M)] + [ref[b_idx.to(ref.device)]])
        lam_in = lam.repeat(n_cond)
        out = denoiser(z_in, lam_in, cond_rows)
        if not isinstance(out, Tensor) or tuple(out.shape) != tuple(z_in.shape):
            raise ValueError(f"the denoiser must return a tensor shaped like z {tuple(z_in.shape)}, got "
                             f"{tuple(out.shape) if isinstance(out, Tensor) else type(out).__name__}")
        if not bool(torch.isfinite(out).all()):
            raise ValueError(f"the denoiser returned non-finite values for log-SNR in [{float(lam.min()):.3f}, "
                             f"{float(lam.max()):.3f}] (dtype {out.dtype}); expected finite ε̂")
        out = out.to(device=device, dtype=acc).view(n_cond, n, *xshape)
        e_ref = out[M]
        e_c = out[:M]
        if any_alias:
            a_rows = alias[b_idx].T.reshape(M, n, *([1] * len(xshape)))  # [M, n, 1…]
            e_c = torch.where(a_rows, e_ref[None], e_c)
        diff = e_c - e_ref[None]  # [M, n, *X]
        var_orth = _per_variable((diff ** 2).flatten(0, 1)).view(M, n, *vshape)
        var_std = _per_variable((diff * (2 * eps[None] - e_c - e_ref[None])).flatten(0, 1)).view(M, n, *vshape)
        err = torch.cat([e_c, e_ref[None]]) - eps[None]
        flat = lambda t: t.flatten(2).sum(-1)  # [Q, n, *] → [Q, n]
        sqerr[idx] = flat(err ** 2).T.to(torch.float64)
        orth[idx] = flat(var_orth).T.to(torch.float64)
        std[idx] = flat(var_std).T.to(torch.float64)
        if maps is not None:
            if maps == "integrated":
                coef = (w_acc[b_idx, k_idx] / (K * m)).view(1, n, *([1] * len(vshape)))
                slot = b_idx
            else:
                coef = torch.full((1, n) + (1,) * len(vshape), 1.0 / m, dtype=acc, device=device)
                slot = b_idx * K + k_idx
            map_std.index_add_(0, slot, (coef * var_std).transpose(0, 1))
            map_orth.index_add_(0, slot, (coef * var_orth).transpose(0, 1))
    # item index = (k·B + b)·m + j → reorder to [B, K, m, Q]
    reshape = lambda t: t.view(K, B, m, -1).transpose(0, 1)
    result = {"sqerr": reshape(sqerr), "std": reshape(std), "orth": reshape(orth)}
    if maps == "integrated":
        result.update(map_std=map_std, map_orth=map_orth)
    elif maps == "per_logsnr":
        result.update(map_std=map_std.view(B, K, M, *vshape), map_orth=map_orth.view(B, K, M, *vshape))
    return result


def _mean_stderr(terms: Tensor, groups: int) -> tuple[Tensor, Tensor]:
    """terms [B, K, Q] → (mean [B, Q], stderr [B, Q]) with K split into ``groups`` consecutive independent
    replicate blocks: stderr = std over the block means / sqrt(groups) (NaN if groups < 2)."""
    B, K, Q = terms.shape
    g = terms.view(B, groups, K // groups, Q).mean(2)
    mean = g.mean(1)
    if groups < 2:
        return mean, torch.full_like(mean, math.nan)
    return mean, g.std(1, correction=1) / math.sqrt(groups)


def _draw_logsnr(sampling: LogSNRSampling, n_samples: int, B: int, share: bool, generator, device, dtype):
    if share:
        lam, w = sampling.sample(n_samples, generator=generator, dtype=torch.float64)
        lam, w = lam.expand(B, n_samples), w.expand(B, n_samples)
    else:
        lam, w = sampling.sample(n_samples, generator=generator, dtype=torch.float64, batch_shape=(B,))
    return lam.to(device=device, dtype=dtype), w.to(device=device, dtype=dtype)


# ─────────────────────────────────────────── public API ────────────────────────────────────────────

def information_scores(denoiser, x: Tensor, conds: Tensor, ref: Tensor, *, n_samples: int = 100,
                       pixelwise: bool = False, rule: str = "logistic", loc: float = 1.0, scale: float = 2.0,
                       clip: float = 3.0, sampling: LogSNRSampling | None = None, noise_per_logsnr: int = 1,
                       antithetic: bool = False, share_logsnr: bool = False, chunk_size: int = _DEFAULT_CHUNK,
                       generator: torch.Generator | None = None, progress: bool = False
                       ) -> InformationScores:
    """i^o, i^s and the denoising error of M candidate conditions against one reference, on shared draws.

    x: [B, *X] clean data (e.g. latents [B, 4, 64, 64]); conds: [B, M, *C] candidate conditions (e.g. prompt
    embeddings [B, M, 77, 1024]); ref: [B, *C] the reference (null prompt for MI, context for CMI), evaluated
    ONCE per draw. Per example: ``n_samples`` log-SNR draws (rule/loc/scale/clip, or ``sampling``), each with
    ``noise_per_logsnr`` noise draws (``antithetic``: half of them are −ε of the other half; needs an even
    number). ``share_logsnr``: one set of λ for the whole batch (the reference's eval_itd) instead of one per
    example (its ARO scorer). ``chunk_size`` bounds the rows of one denoiser call (conditions × draws; ≥ M+1);
    results do not depend on it. ``progress``: a tqdm bar over denoiser calls (experiments show their own).
    Relation testing (docs/protocol.md#relation-testing) ranks candidates by ``orthogonal`` (higher = better), DiffITM
    by ``mmse`` (lower = better). Returns :class:`InformationScores`.
    """
    if not isinstance(conds, Tensor) or conds.ndim < 2:
        raise ValueError(f"conds must be a tensor [B, M, ...] of M candidate conditions per example, got "
                         f"{tuple(conds.shape) if isinstance(conds, Tensor) else type(conds).__name__}")
    _check_inputs(x, conds, ref, "conds")
    return _scores(denoiser, x, conds, ref, n_samples=n_samples, pixelwise=pixelwise,
                   sampling=_resolve_sampling(sampling, rule, loc, scale, clip, denoiser),
                   noise_per_logsnr=noise_per_logsnr, antithetic=antithetic, share_logsnr=share_logsnr,
                   chunk_size=chunk_size, generator=generator, progress=progress)


def _draw_and_run(denoiser, x, conds, ref, *, n_samples, pixelwise, sampling, noise_per_logsnr, antithetic,
                  share_logsnr, chunk_size, generator, progress) -> tuple[dict, Tensor, int, int]:
    """Draw (λ, ε) and evaluate every condition: ``(terms of _run, weights [B, K], groups, n_samples)``."""
    n_samples = _check_int("n_samples", n_samples)
    check_generator(generator)
    pixelwise, antithetic = flag(pixelwise, "pixelwise"), flag(antithetic, "antithetic")
    share_logsnr = flag(share_logsnr, "share_logsnr")
    noise_per_logsnr = _check_int("noise_per_logsnr", noise_per_logsnr)
    if antithetic and noise_per_logsnr % 2:
        raise ValueError(f"antithetic noise needs an even noise_per_logsnr, got {noise_per_logsnr}")
    M = conds.shape[1]
    chunk_size = _check_int("chunk_size", chunk_size, minimum=M + 1)
    groups = sampling.n_groups(n_samples)
    B = x.shape[0]
    lam, w = _draw_logsnr(sampling, n_samples, B, share_logsnr, generator, x.device, _acc_dtype(x))
    r = _run(denoiser, x, conds, ref, lam, w, noise_per_logsnr=noise_per_logsnr, antithetic=antithetic,
             generator=generator, chunk_size=chunk_size, maps="integrated" if pixelwise else None,
             progress=progress)
    return r, w, groups, n_samples


def _scores(denoiser, x, conds, ref, *, n_samples, pixelwise, sampling, noise_per_logsnr, antithetic,
            share_logsnr, chunk_size, generator, progress) -> InformationScores:
    r, w, groups, n_samples = _draw_and_run(
        denoiser, x, conds, ref, n_samples=n_samples, pixelwise=pixelwise, sampling=sampling,
        noise_per_logsnr=noise_per_logsnr, antithetic=antithetic, share_logsnr=share_logsnr,
        chunk_size=chunk_size, generator=generator, progress=progress)
    M = conds.shape[1]
    w64 = w.to(torch.float64)[:, :, None]
    orth, orth_se = _mean_stderr(0.5 * w64 * r["orth"].mean(2), groups)
    std, std_se = _mean_stderr(0.5 * w64 * r["std"].mean(2), groups)
    mse, mse_se = _mean_stderr(r["sqerr"].mean(2), groups)
    dt = _acc_dtype(x)
    return InformationScores(
        orthogonal=orth.to(dt), orthogonal_stderr=orth_se.to(dt), standard=std.to(dt),
        standard_stderr=std_se.to(dt), mmse=mse[:, :M].to(dt), mmse_stderr=mse_se[:, :M].to(dt),
        ref_mmse=mse[:, M].to(dt), ref_mmse_stderr=mse_se[:, M].to(dt),
        pixel_orthogonal=None if not pixelwise else 0.5 * r["map_orth"],
        pixel_standard=None if not pixelwise else 0.5 * r["map_std"],
        n_samples=n_samples, sampling=sampling)


def information_terms(denoiser, x: Tensor, conds: Tensor, ref: Tensor, *, n_samples: int = 100,
                      pixelwise: bool = False, rule: str = "logistic", loc: float = 1.0, scale: float = 2.0,
                      clip: float = 3.0, sampling: LogSNRSampling | None = None, noise_per_logsnr: int = 1,
                      antithetic: bool = False, share_logsnr: bool = False, chunk_size: int = _DEFAULT_CHUNK,
                      generator: torch.Generator | None = None, progress: bool = False) -> InformationTerms:
    """The per-draw terms of i^o and i^s of M candidate conditions against one reference, on shared draws:
    the same draws, arguments and denoiser calls as :func:`information_scores` (with the same generator state
    both give the same means), kept per draw so that :meth:`InformationTerms.contrast` gives any linear
    combination of the candidates' informations with its paired standard error. Returns
    :class:`InformationTerms`."""
    if not isinstance(conds, Tensor) or conds.ndim < 2:
        raise ValueError(f"conds must be a tensor [B, M, ...] of M candidate conditions per example, got "
                         f"{tuple(conds.shape) if isinstance(conds, Tensor) else type(conds).__name__}")
    _check_inputs(x, conds, ref, "conds")
    sampling = _resolve_sampling(sampling, rule, loc, scale, clip, denoiser)
    r, w, groups, n_samples = _draw_and_run(
        denoiser, x, conds, ref, n_samples=n_samples, pixelwise=pixelwise, sampling=sampling,
        noise_per_logsnr=noise_per_logsnr, antithetic=antithetic, share_logsnr=share_logsnr,
        chunk_size=chunk_size, generator=generator, progress=progress)
    w64 = w.to(torch.float64)[:, :, None]
    return InformationTerms(
        orthogonal=0.5 * w64 * r["orth"].mean(2), standard=0.5 * w64 * r["std"].mean(2),
        pixel_orthogonal=None if not pixelwise else 0.5 * r["map_orth"],
        pixel_standard=None if not pixelwise else 0.5 * r["map_std"],
        groups=groups, n_samples=n_samples, sampling=sampling)


def pointwise_information(denoiser, x: Tensor, cond: Tensor, ref: Tensor, *, n_samples: int = 100,
                          estimator: str = "orthogonal", pixelwise: bool = False, loc: float = 1.0,
                          scale: float = 2.0, clip: float = 3.0, generator: torch.Generator | None = None,
                          rule: str = "logistic", sampling: LogSNRSampling | None = None,
                          noise_per_logsnr: int = 1, antithetic: bool = False, share_logsnr: bool = False,
                          chunk_size: int = _DEFAULT_CHUNK, progress: bool = False) -> InformationEstimate:
    """Pointwise information i(x; cond ‖ ref) in nats (paper Sec. 2; docs/architecture.md#equations).

    x: [B, *X] clean data; cond, ref: [B, *C] conditions batch-aligned with x (MI: ref = null; CMI: cond =
    full caption, ref = context). estimator "orthogonal" (i^o = ½E[w‖ε̂(z|cond) − ε̂(z|ref)‖²]) or "standard"
    (i^s = ½E[w(‖ε − ε̂(z|ref)‖² − ‖ε − ε̂(z|cond)‖²)], an estimate of log p(x|cond) − log p(x|ref)).
    pixelwise: return the per-variable map (squared errors summed over channels, Eq. 6) — [B, *S] for
    x [B, C, *S], [B, d] for x [B, d] — whose sum is the image-level value. log-SNR: ``n_samples`` draws from
    ``rule`` ("logistic", "uniform", "logistic_qmc", "uniform_qmc") on loc ± clip·scale, or pass a
    :class:`~infodecomp.logsnr.LogSNRSampling` as ``sampling`` (e.g. ``LogSNRSampling.faithful()`` = clip 4).
    Other options as in :func:`information_scores`. Returns :class:`InformationEstimate` (value, stderr [B]).
    """
    if estimator not in ESTIMATORS:
        raise ValueError(f"unknown estimator {estimator!r}; expected one of {ESTIMATORS}")
    if not isinstance(cond, Tensor):
        raise TypeError(f"cond must be a tensor batch-aligned with x, got {type(cond).__name__}")
    conds = cond[:, None] if cond.ndim >= 1 else cond
    _check_inputs(x, conds, ref, "cond")
    s = _scores(denoiser, x, conds, ref, n_samples=n_samples, pixelwise=pixelwise,
                sampling=_resolve_sampling(sampling, rule, loc, scale, clip, denoiser),
                noise_per_logsnr=noise_per_logsnr, antithetic=antithetic, share_logsnr=share_logsnr,
                chunk_size=chunk_size, generator=generator, progress=progress)
    image = (s.orthogonal if estimator == "orthogonal" else s.standard)[:, 0]
    se = (s.orthogonal_stderr if estimator == "orthogonal" else s.standard_stderr)[:, 0]
    value = image
    if pixelwise:
        value = (s.pixel_orthogonal if estimator == "orthogonal" else s.pixel_standard)[:, 0]
    return InformationEstimate(value=value, stderr=se, image_value=image, estimator=estimator,
                               n_samples=s.n_samples, sampling=s.sampling)


def mmse_curve(denoiser, x: Tensor, conds: Tensor, ref: Tensor, logsnr: Tensor, *, n_noise: int = 50,
               pixelwise: bool = False, antithetic: bool = False, chunk_size: int = _DEFAULT_CHUNK,
               generator: torch.Generator | None = None, progress: bool = False) -> MMSECurve:
    """Denoising errors and the i^s / i^o integrands at each log-SNR of a grid (App. C.2;
    docs/protocol.md#denoising-process).

    x: [B, *X]; conds: [B, M, *C] candidates; ref: [B, *C]; logsnr: [L] grid shared by all examples (e.g.
    ``infodecomp.logsnr.logsnr_grid(200)`` = linspace(−5, 7, 200)). At each λ, ``n_noise`` noise draws shared by
    every condition.
    No weights: the curves are per-λ, unintegrated image-level sums (the reference plots them without the
    ½). Standard errors are over the noise draws. pixelwise: also per-variable curves [B, M, L, *V].
    Returns :class:`MMSECurve`.
    """
    if not isinstance(conds, Tensor) or conds.ndim < 2:
        raise ValueError(f"conds must be a tensor [B, M, ...], got "
                         f"{tuple(conds.shape) if isinstance(conds, Tensor) else type(conds).__name__}")
    _check_inputs(x, conds, ref, "conds")
    if not isinstance(logsnr, Tensor) or logsnr.ndim != 1 or logsnr.numel() < 1:
        raise ValueError(f"logsnr must be a 1-D grid [L], got {getattr(logsnr, 'shape', logsnr)!r}")
    _check_finite("logsnr", logsnr)
    trained = getattr(denoiser, "logsnr_range", None)
    if trained is not None:
        inside = float(((logsnr >= trained[0]) & (logsnr <= trained[1])).to(torch.float64).mean())
        logsnr_coverage((float(logsnr.min()), float(logsnr.max())), inside, trained,
                        what=f"the log-SNR grid of {logsnr.numel()} points")
    n_noise = _check_int("n_noise", n_noise)
    check_generator(generator)
    pixelwise, antithetic = flag(pixelwise, "pixelwise"), flag(antithetic, "antithetic")
    if antithetic and n_noise % 2:
        raise ValueError(f"antithetic noise needs an even n_noise, got {n_noise}")
    M = conds.shape[1]
    chunk_size = _check_int("chunk_size", chunk_size, minimum=M + 1)
    B, L = x.shape[0], logsnr.numel()
    dt = _acc_dtype(x)
    lam = logsnr.to(device=x.device, dtype=dt)[None].expand(B, L)
    r = _run(denoiser, x, conds, ref, lam, torch.ones_like(lam), noise_per_logsnr=n_noise, antithetic=antithetic,
             generator=generator, chunk_size=chunk_size, maps="per_logsnr" if pixelwise else None,
             progress=progress)

    def per_point(t):  # [B, L, n_noise, Q] → mean, stderr [B, Q, L]
        mean = t.mean(2)
        se = t.std(2, correction=1) / math.sqrt(n_noise) if n_noise > 1 else torch.full_like(mean, math.nan)
        return mean.transpose(1, 2).to(dt), se.transpose(1, 2).to(dt)

    mse, mse_se = per_point(r["sqerr"])
    std, std_se = per_point(r["std"])
    orth, orth_se = per_point(r["orth"])
    return MMSECurve(
        logsnr=logsnr, mmse=mse[:, :M], mmse_stderr=mse_se[:, :M], ref_mmse=mse[:, M], ref_mmse_stderr=mse_se[:, M],
        standard=std, standard_stderr=std_se, orthogonal=orth, orthogonal_stderr=orth_se,
        pixel_standard=None if not pixelwise else r["map_std"].transpose(1, 2),
        pixel_orthogonal=None if not pixelwise else r["map_orth"].transpose(1, 2), n_noise=n_noise)


# ─────────────────────────────────────── precision targets ────────────────────────────────────────
# Issue 27 item 2: draw in blocks until a target standard error is reached, per example, so a caller pays what each
# example needs. One block loop (:func:`terms_to_precision`) over :func:`information_terms` serves every quantity
# that is a linear combination of candidates' informations (one information and its map, a PID's three, a contrast);
# :func:`information_to_precision` is its one-condition reading.

@dataclass(frozen=True)
class PrecisionEstimate:
    """Result of :func:`information_to_precision`: :class:`InformationEstimate`'s fields, per-example counts,
    and whether each example's target was met."""

    value: Tensor          # [B] nats; pixelwise: [B, *V] maps (as InformationEstimate.value)
    stderr: Tensor         # [B] nats, standard error of the image-level value
    image_value: Tensor    # [B] nats
    estimator: str
    n_samples: Tensor      # [B] int64 log-SNR draws each example took (a multiple of ``block``)
    n_evaluations: Tensor  # [B] int64 denoiser rows each example used: n_samples · noise_per_logsnr · 2
    target_met: Tensor     # [B] bool: stderr ≤ the target when it stopped (False: stopped at max_samples)
    target: float | None   # the absolute target (nats), or None
    relative: float | None  # the relative target (fraction of |image_value|), or None
    sampling: LogSNRSampling


@dataclass(frozen=True)
class PrecisionTerms:
    """Result of :func:`terms_to_precision`: every draw each example took, and what it cost."""

    terms: tuple[InformationTerms, ...]  # per example, its draws as a batch of one: orthogonal, standard
    #                                      [1, n_samples[b], M]; pixel maps [1, M, *V] averaged over its draws
    n_samples: Tensor      # [B] int64 log-SNR draws each example took (a multiple of ``block``)
    n_evaluations: Tensor  # [B] int64 denoiser rows: n_samples · noise_per_logsnr · (M + 1)
    target_met: Tensor     # [B] bool: every watched quantity's stderr reached the target (False: stopped at the cap)
    value: Tensor          # [B, Q] nats, the watched quantities (coef · informations) at the stop
    stderr: Tensor         # [B, Q] nats, their standard errors


def _target_reached(mean: Tensor, se: Tensor, target: float | None, relative: float | None) -> Tensor:
    """[...] bool: the standard error is at or below the absolute target, or the relative one × |mean| (either)."""
    ok = torch.zeros_like(se, dtype=torch.bool)
    if target is not None:
        ok |= se <= target
    if relative is not None:
        ok |= se <= relative * mean.abs()
    return ok & torch.isfinite(se)


def _example_terms(t: InformationTerms, a: int) -> InformationTerms:
    """Example ``a`` of a batch's terms, as a batch of one."""
    pick = lambda v: None if v is None else v[a:a + 1]  # noqa: E731
    return InformationTerms(orthogonal=t.orthogonal[a:a + 1], standard=t.standard[a:a + 1],
                            pixel_orthogonal=pick(t.pixel_orthogonal), pixel_standard=pick(t.pixel_standard),
                            groups=t.groups, n_samples=t.n_samples, sampling=t.sampling)


def _join_terms(parts: list[InformationTerms]) -> InformationTerms:
    """One example's blocks as one set of draws: the per-draw terms concatenated (each block its own replicate
    groups), the maps averaged with each block weighted by its draws (so the map still sums to the mean)."""
    if len(parts) == 1:
        return parts[0]
    K = sum(p.n_samples for p in parts)
    mean = lambda f: None if getattr(parts[0], f) is None else sum(  # noqa: E731
        getattr(p, f) * p.n_samples for p in parts) / K
    return InformationTerms(orthogonal=torch.cat([p.orthogonal for p in parts], 1),
                            standard=torch.cat([p.standard for p in parts], 1),
                            pixel_orthogonal=mean("pixel_orthogonal"), pixel_standard=mean("pixel_standard"),
                            groups=sum(p.groups for p in parts), n_samples=K, sampling=parts[0].sampling)


def _check_target(target, relative) -> None:
    if target is None and relative is None:
        raise ValueError("give a precision target: target (nats) and/or relative (a fraction of the estimate)")
    for name, v in (("target", target), ("relative", relative)):
        if v is not None and (isinstance(v, bool) or not isinstance(v, (int, float)) or not 0 < v < math.inf):
            raise ValueError(f"{name} must be a number > 0, got {v!r}")


def _check_blocks(block, max_samples, sampling: LogSNRSampling) -> tuple[int, int]:
    block = _check_int("block", block)
    max_samples = _check_int("max_samples", max_samples)
    if max_samples % block:
        raise ValueError(f"max_samples ({max_samples}) must be a multiple of block ({block})")
    if sampling.n_groups(block) < 2 and sampling.is_qmc:
        raise ValueError(f"a block of {block} draws holds one replicate of {sampling.rule!r}: no standard error; "
                         "use a block with at least two replicates")
    return block, max_samples


def terms_to_precision(denoiser, x: Tensor, conds: Tensor, ref: Tensor, *, target: float | None = None,
                       relative: float | None = None, block: int = 20, max_samples: int = 1000,
                       coef: Tensor | None = None, estimator: str = "orthogonal", pixelwise: bool = False,
                       sampling: LogSNRSampling | None = None, noise_per_logsnr: int = 1, antithetic: bool = False,
                       chunk_size: int = _DEFAULT_CHUNK, generator: torch.Generator | None = None
                       ) -> PrecisionTerms:
    """The terms of :func:`information_terms` (M candidates ``conds`` [B, M, *C] against ``ref`` [B, *C], on shared
    draws), drawn in blocks of ``block`` log-SNR draws per example until every watched quantity's standard error is
    ≤ ``target`` nats or ≤ ``relative`` · |its value| (either, when both are given), or ``max_samples`` draws.

    The watched quantities are the rows of ``coef`` [Q, M] (default the identity: each candidate's information
    i(x; cond_m ‖ ref)) under ``estimator``, e.g. ``[[1, 0, 0], [0, 1, 0], [0, 0, 1]]`` for a PID's i1, i2, i12 or
    ``[[1, −1]]`` for a margin between two captions; their standard errors are paired (same draws). An example that
    has met its target takes no further draws; those still going share each block's denoiser calls (one generator:
    deterministic for a batch). Stopping on an estimated standard error biases the estimate by a small fraction of
    its standard error (tests/test_proposals.py). ``sampling``: any :class:`~infodecomp.logsnr.LogSNRSampling`;
    for a QMC or stratified rule ``block`` must hold at least two replicates. pixelwise: each example's maps
    ``[1, M, *V]`` average its blocks' maps by draws, so they still sum to its image-level values.
    Returns :class:`PrecisionTerms`.
    """
    if estimator not in ESTIMATORS:
        raise ValueError(f"unknown estimator {estimator!r}; expected one of {ESTIMATORS}")
    _check_target(target, relative)
    if not isinstance(conds, Tensor) or conds.ndim < 2:
        raise ValueError(f"conds must be a tensor [B, M, ...] of M candidate conditions per example, got "
                         f"{tuple(conds.shape) if isinstance(conds, Tensor) else type(conds).__name__}")
    _check_inputs(x, conds, ref, "conds")
    M = conds.shape[1]
    coef = torch.eye(M, dtype=torch.float64) if coef is None else torch.as_tensor(coef, dtype=torch.float64)
    finite_tensor(coef, "coef")
    if coef.ndim != 2 or coef.shape[1] != M or coef.shape[0] < 1:
        raise ValueError(f"coef must have shape [Q, {M}] (one row of weights over the {M} candidates per watched "
                         f"quantity), got {tuple(coef.shape)}")
    sampling = _resolve_sampling(sampling, "logistic", 1.0, 2.0, 3.0)
    block, max_samples = _check_blocks(block, max_samples, sampling)
    B, Q = x.shape[0], coef.shape[0]
    parts: list[list[InformationTerms]] = [[] for _ in range(B)]
    n_samples = torch.zeros(B, dtype=torch.int64)
    done = torch.zeros(B, dtype=torch.bool)
    value = torch.zeros(B, Q, dtype=torch.float64)
    se = torch.full((B, Q), math.nan, dtype=torch.float64)
    while True:
        active = [b for b in range(B) if not done[b] and n_samples[b] < max_samples]
        if not active:
            break
        idx = torch.as_tensor(active, device=x.device)
        t = information_terms(denoiser, x[idx], conds[idx], ref[idx], n_samples=block, pixelwise=pixelwise,
                              sampling=sampling, noise_per_logsnr=noise_per_logsnr, antithetic=antithetic,
                              chunk_size=chunk_size, generator=generator)
        for a, b in enumerate(active):
            parts[b].append(_example_terms(t, a))
            n_samples[b] += block
            joined = _join_terms(parts[b])
            for q in range(Q):
                v, s = joined.contrast(coef[q], estimator)
                value[b, q], se[b, q] = v[0], s[0]
            done[b] = bool(_target_reached(value[b], se[b], target, relative).all())
    return PrecisionTerms(terms=tuple(_join_terms(p) for p in parts), n_samples=n_samples,
                          n_evaluations=n_samples * noise_per_logsnr * (M + 1), target_met=done.clone(),
                          value=value, stderr=se)


def information_to_precision(denoiser, x: Tensor, cond: Tensor, ref: Tensor, *, target: float | None = None,
                             relative: float | None = None, block: int = 20, max_samples: int = 1000,
                             estimator: str = "orthogonal", pixelwise: bool = False,
                             sampling: LogSNRSampling | None = None, noise_per_logsnr: int = 1,
                             antithetic: bool = False, chunk_size: int = _DEFAULT_CHUNK,
                             generator: torch.Generator | None = None) -> PrecisionEstimate:
    """i(x; cond ‖ ref) as :func:`pointwise_information`, drawn in blocks of ``block`` log-SNR draws until the
    image-level standard error of each example is ≤ ``target`` nats or ≤ ``relative`` · |estimate| (either, when
    both are given), or ``max_samples`` draws are reached: :func:`terms_to_precision` with one condition.

    x: [B, *X]; cond, ref: [B, *C]. An example that has met its target takes no further draws (the others go on
    in smaller batches). ``sampling``: any :class:`~infodecomp.logsnr.LogSNRSampling` (the paper's by default; a
    fitted proposal of :mod:`infodecomp.proposals` works unchanged); for a QMC or stratified rule ``block`` must be a
    multiple of its replicates (each block adds that many independent replicates). Stopping on an estimated
    standard error biases the estimate by a small fraction of its standard error (the first block has ≥ 2
    replicates; tests/test_proposals.py). pixelwise: the per-variable map of the draws taken; the target is on its
    sum (the image-level value). Returns :class:`PrecisionEstimate` with the draws and denoiser rows each example
    used, and whether it met its target.
    """
    if estimator not in ESTIMATORS:
        raise ValueError(f"unknown estimator {estimator!r}; expected one of {ESTIMATORS}")
    _check_target(target, relative)
    if not isinstance(cond, Tensor):
        raise TypeError(f"cond must be a tensor batch-aligned with x, got {type(cond).__name__}")
    _check_inputs(x, cond[:, None], ref, "cond")
    sampling = _resolve_sampling(sampling, "logistic", 1.0, 2.0, 3.0)
    _check_blocks(block, max_samples, sampling)  # before any draw, with this function's names
    p = terms_to_precision(denoiser, x, cond[:, None], ref, target=target, relative=relative, block=block,
                           max_samples=max_samples, estimator=estimator, pixelwise=pixelwise, sampling=sampling,
                           noise_per_logsnr=noise_per_logsnr, antithetic=antithetic, chunk_size=chunk_size,
                           generator=generator)
    dt = _acc_dtype(x)
    mean, se = p.value[:, 0], p.stderr[:, 0]
    value = mean.to(device=x.device, dtype=dt)
    if pixelwise:
        key = "pixel_orthogonal" if estimator == "orthogonal" else "pixel_standard"
        value = torch.cat([getattr(t, key)[:, 0] for t in p.terms]).to(dt)
    return PrecisionEstimate(
        value=value, stderr=se.to(device=x.device, dtype=dt), image_value=mean.to(device=x.device, dtype=dt),
        estimator=estimator, n_samples=p.n_samples, n_evaluations=p.n_evaluations, target_met=p.target_met,
        target=target, relative=relative, sampling=sampling)
