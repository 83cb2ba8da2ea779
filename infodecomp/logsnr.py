"""log-SNR: the noise-level coordinate every estimator integrates over.

Convention (docs/protocol.md#conventions, docs/architecture.md#denoiser-interface): the variance-preserving channel is
``z = sqrt(sigmoid(logsnr)) * x + sqrt(sigmoid(-logsnr)) * eps``, so ``logsnr = log(alpha^2 / sigma^2)``;
large ``logsnr`` is little noise. For a discrete diffusers schedule with cumulative products
``alphas_cumprod[t]`` (t = 0 … T-1), the trained log-SNR is ``log ᾱ_t − log(1 − ᾱ_t)``, decreasing in t.

Two parts: schedule mapping (log-SNR ↔ ᾱ ↔ timestep) and quadrature rules over log-SNR
(:class:`LogSNRSampling`, ``*_quadrature`` → ``(logsnr [K], weights [K])`` with weights = 1/q).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import torch
from torch import Tensor

from .checks import count, logsnr_range, nonempty, real
from .checks import generator as check_generator


def logsnr_from_alphas_cumprod(alphas_cumprod: Tensor) -> Tensor:
    """``alphas_cumprod: [T]`` → trained log-SNR ``[T]`` (float64), decreasing in t."""
    a = alphas_cumprod.to(torch.float64)
    return torch.log(a) - torch.log1p(-a)


def alphas_cumprod_from_logsnr(logsnr: Tensor) -> Tensor:
    """Inverse of :func:`logsnr_from_alphas_cumprod`: ``ᾱ = sigmoid(logsnr)``."""
    return torch.sigmoid(logsnr)


def trained_range(alphas_cumprod: Tensor) -> tuple[float, float]:
    """``(logsnr_min, logsnr_max)`` the schedule was trained on: (−5.364, +7.069) for SD 2.1's betas."""
    lam = logsnr_from_alphas_cumprod(alphas_cumprod)
    return float(lam.min()), float(lam.max())


def nearest_timestep(logsnr: Tensor, trained_logsnr: Tensor) -> Tensor:
    """Integer timestep ``[B]`` whose trained log-SNR is nearest to ``logsnr [B]``.

    As the reference code does (docs/protocol.md#timesteps): ``t = argmin_t |logsnr − λ_train(t)|``. A log-SNR outside
    the trained range is clamped to the end timestep (t = T−1 below, t = 0 above).
    """
    nonempty(trained_logsnr, "trained_logsnr", "[T] with T >= 1 timesteps")
    lam = trained_logsnr.to(device=logsnr.device, dtype=torch.float64)
    return (logsnr.to(torch.float64)[:, None] - lam[None, :]).abs().argmin(dim=1)


def interpolated_timestep(logsnr: Tensor, trained_logsnr: Tensor) -> Tensor:
    """Fractional timestep ``[B]`` (float32) by linear interpolation of t in log-SNR, clamped to [0, T−1].

    An alternative to :func:`nearest_timestep` for models whose time embedding accepts non-integer t
    (diffusers' sinusoidal embedding does): the model then sees the noise level actually applied.
    """
    count(trained_logsnr.numel(), "the number of trained timesteps T", minimum=2, hint="to interpolate between")
    lam = trained_logsnr.to(device=logsnr.device, dtype=torch.float64)
    T = lam.numel()
    # λ decreases with t; flip to an increasing sequence for searchsorted.
    inc = lam.flip(0)
    q = logsnr.to(torch.float64).clamp(float(inc[0]), float(inc[-1]))
    hi = torch.searchsorted(inc, q).clamp(1, T - 1)
    lo = hi - 1
    frac = (q - inc[lo]) / (inc[hi] - inc[lo])
    pos_inc = lo.to(torch.float64) + frac  # position in the flipped (increasing) sequence
    return ((T - 1) - pos_inc).to(torch.float32)


# ──────────────────────────────────────────────────────────────────────────────────────────────────────
# Quadrature over log-SNR (docs/protocol.md#log-snr-sampling). Every information estimate is ∫ f(λ) dλ over the real
# line, estimated on a clipped range [loc − clip·scale, loc + clip·scale] by importance sampling:
#     ∫_lo^hi f(λ) dλ ≈ (1/K) Σ_k w_k f(λ_k),   w_k = 1 / q(λ_k),
# where q is the density each λ_k has (marginally). Every rule below returns ``(logsnr [..., K], weights
# [..., K])`` with exactly these weights, so estimators never build their own sampling
# (docs/architecture.md#one-quadrature).
# ──────────────────────────────────────────────────────────────────────────────────────────────────────

RULES = ("logistic", "uniform", "logistic_qmc", "uniform_qmc")


def _check_settings(loc: float, scale: float, clip: float) -> tuple[float, float, float]:
    """``(loc, scale, clip)`` as floats, if the range loc ± clip·scale is meaningful
    (:func:`infodecomp.checks.logsnr_range`): finite numbers, scale > 0, clip > 0, within ±32 nats and at least
    0.001 nats wide."""
    logsnr_range(loc, scale, clip)
    return real(loc, "loc"), real(scale, "scale"), real(clip, "clip")


def _check_n(n: int) -> int:
    return count(n, "the number of log-SNR points")


def _uniform01(shape: tuple[int, ...], generator, device, dtype) -> Tensor:
    """U(0, 1) draws in float64 on the generator's device, moved to ``device``."""
    check_generator(generator)
    gen_device = generator.device if generator is not None else (device or torch.device("cpu"))
    u = torch.rand(shape, generator=generator, device=gen_device, dtype=torch.float64)
    return u.to(device=device) if device is not None else u


def logistic_density(logsnr: Tensor, *, loc: float = 1.0, scale: float = 2.0, clip: float = 3.0) -> Tensor:
    """Density q(λ) of the truncated logistic (zero outside the support), same shape as ``logsnr``.

    q(λ) = σ(v)σ(−v) / (scale · tanh(clip/2)) with v = (λ − loc)/scale, because σ(c) − σ(−c) = tanh(c/2).
    """
    _check_settings(loc, scale, clip)
    v = (logsnr.to(torch.float64) - loc) / scale
    q = torch.sigmoid(v) * torch.sigmoid(-v) / (scale * math.tanh(clip / 2))
    return torch.where(v.abs() <= clip, q, torch.zeros_like(q)).to(logsnr.dtype)


def logistic_weights(logsnr: Tensor, *, loc: float = 1.0, scale: float = 2.0, clip: float = 3.0) -> Tensor:
    """Importance weights 1/q(λ) of the truncated logistic: scale·tanh(clip/2)·(2 + 2·cosh v)
    (docs/protocol.md#log-snr-sampling).

    Written with 1/(σ(v)σ(−v)) = 2 + 2 cosh v, which is exact and never divides by a tiny number.
    """
    _check_settings(loc, scale, clip)
    v = (logsnr.to(torch.float64) - loc) / scale
    return scale * math.tanh(clip / 2) * (2.0 + 2.0 * torch.cosh(v))


def _logistic_from_u(u: Tensor, loc, scale, clip, dtype) -> tuple[Tensor, Tensor]:
    """Map u ∈ [0, 1] to λ = loc + scale·logit(σ(−c) + u·tanh(c/2)) and its weight 1/q."""
    lo_u = 1.0 / (1.0 + math.exp(clip))  # σ(−c)
    p = lo_u + u * math.tanh(clip / 2)
    v = torch.logit(p).clamp(-clip, clip)  # clamp only guards float rounding at the ends
    logsnr = loc + scale * v
    weights = scale * math.tanh(clip / 2) * (2.0 + 2.0 * torch.cosh(v))
    return logsnr.to(dtype), weights.to(dtype)


def logistic_quadrature(n: int, *, loc: float = 1.0, scale: float = 2.0, clip: float = 3.0,
                        generator: torch.Generator | None = None, device=None, dtype=torch.float32,
                        batch_shape: tuple[int, ...] = ()) -> tuple[Tensor, Tensor]:
    """The paper's rule: ``n`` i.i.d. draws from the logistic(loc, scale) truncated to loc ± clip·scale.

    u ~ U(σ(−c), σ(c)), λ = loc + scale·logit(u), weights w = 1/q(λ) = scale·tanh(c/2)/(σ(v)σ(−v)).
    Returns ``(logsnr [*batch_shape, n], weights [*batch_shape, n])`` in ``dtype`` on ``device``.
    Paper defaults loc 1, scale 2, clip 3 (the reference's nll paths effectively use clip 4, docs/protocol.md#b2).
    """
    _check_settings(loc, scale, clip)
    n = _check_n(n)
    u = _uniform01((*batch_shape, n), generator, device, dtype)
    return _logistic_from_u(u, loc, scale, clip, dtype)


def uniform_quadrature(n: int, *, loc: float = 1.0, scale: float = 2.0, clip: float = 3.0,
                       generator: torch.Generator | None = None, device=None, dtype=torch.float32,
                       batch_shape: tuple[int, ...] = (),
                       reference_weight_bug: bool = False) -> tuple[Tensor, Tensor]:
    """``n`` i.i.d. uniform draws on [loc − clip·scale, loc + clip·scale] with weights = range = 1/q.

    ``reference_weight_bug=True`` reproduces the reference code's weight 1/range (the density, not its
    inverse; docs/protocol.md#b5), which scales every integral by 1/range². Use it only to reproduce numbers. (The
    reference also hard-codes clip 3 for this rule, docs/protocol.md#b3: pass clip=3 for that.)
    Returns ``(logsnr [*batch_shape, n], weights [*batch_shape, n])``.
    """
    _check_settings(loc, scale, clip)
    n = _check_n(n)
    u = _uniform01((*batch_shape, n), generator, device, dtype)
    width = 2.0 * clip * scale
    logsnr = (loc - clip * scale) + width * u
    w = 1.0 / width if reference_weight_bug else width
    return logsnr.to(dtype), torch.full_like(logsnr, w).to(dtype)


def _shifted_lattice(n: int, batch_shape, generator, device, dtype) -> Tensor:
    """Evenly spaced points (k + U)/n, k = 0…n−1, with ONE random shift U ~ U(0,1) per batch element.

    Each point is marginally U(0, 1) (so 1/q weights stay exact and the estimate unbiased), while the set
    covers [0, 1] evenly (stratified / randomly shifted lattice, variance O(n^-2) for smooth integrands
    instead of O(n^-1)).
    """
    shift = _uniform01((*batch_shape, 1), generator, device, dtype)
    k = torch.arange(n, dtype=torch.float64, device=shift.device)
    return ((k + shift) / n).clamp(0.0, 1.0)


def logistic_qmc_quadrature(n: int, *, loc: float = 1.0, scale: float = 2.0, clip: float = 3.0,
                            generator: torch.Generator | None = None, device=None, dtype=torch.float32,
                            batch_shape: tuple[int, ...] = ()) -> tuple[Tensor, Tensor]:
    """Evenly spaced quantiles of the truncated logistic with one random shift (randomised QMC).

    u_k = σ(−c) + (k + U)/n · tanh(c/2), λ_k = loc + scale·logit(u_k); each λ_k is marginally the truncated
    logistic, so the weights are the same 1/q and the estimate is unbiased. The points of one call are NOT
    independent: a standard error needs several independent calls (replicates) and the spread between
    their estimates; :class:`LogSNRSampling` with ``replicates`` does that.
    Returns ``(logsnr [*batch_shape, n] ascending, weights [*batch_shape, n])``.
    """
    _check_settings(loc, scale, clip)
    n = _check_n(n)
    u = _shifted_lattice(n, batch_shape, generator, device, dtype)
    return _logistic_from_u(u, loc, scale, clip, dtype)


def uniform_qmc_quadrature(n: int, *, loc: float = 1.0, scale: float = 2.0, clip: float = 3.0,
                           generator: torch.Generator | None = None, device=None, dtype=torch.float32,
                           batch_shape: tuple[int, ...] = ()) -> tuple[Tensor, Tensor]:
    """Evenly spaced points on [loc − clip·scale, loc + clip·scale] with one random shift; weights = range.

    Returns ``(logsnr [*batch_shape, n] ascending, weights [*batch_shape, n])``; see
    :func:`logistic_qmc_quadrature` for how to obtain a standard error.
    """
    _check_settings(loc, scale, clip)
    n = _check_n(n)
    u = _shifted_lattice(n, batch_shape, generator, device, dtype)
    width = 2.0 * clip * scale
    logsnr = (loc - clip * scale) + width * u
    return logsnr.to(dtype), torch.full_like(logsnr, width).to(dtype)


def logsnr_grid(n: int, *, loc: float = 1.0, scale: float = 2.0, clip: float = 3.0, device=None,
                dtype=torch.float32) -> Tensor:
    """Deterministic grid ``linspace(loc − clip·scale, loc + clip·scale, n)`` → ``[n]`` (no weights).

    For per-log-SNR curves and maps (MMSE curves, App. C.2; docs/protocol.md#denoising-process: linspace(−5, 7, N)).
    """
    _check_settings(loc, scale, clip)
    n = _check_n(n)
    return torch.linspace(loc - clip * scale, loc + clip * scale, n, dtype=torch.float64,
                          device=device).to(dtype)


@dataclass(frozen=True)
class LogSNRSampling:
    """How log-SNR is sampled for an information estimate (docs/protocol.md#log-snr-sampling).

    rule: "logistic" (the paper's i.i.d. truncated logistic), "uniform" (i.i.d. uniform on the same range),
        "logistic_qmc" / "uniform_qmc" (evenly spaced with a random shift; lower variance).
    loc, scale, clip: the range is loc ± clip·scale (paper: 1, 2, 3 → [−5, 7]).
    replicates: for the *_qmc rules, the n points of an estimate are split into this many independent
        shifted lattices of n/replicates points each; the standard error comes from the spread between the
        replicate estimates (so it is valid, not the i.i.d. formula misapplied). n must be a multiple.
        Ignored by the i.i.d. rules, whose points are their own replicates.
    reference_uniform_weight: reproduce the reference's uniform weight 1/range (docs/protocol.md#b5). Off = correct.
    """

    rule: str = "logistic"
    loc: float = 1.0
    scale: float = 2.0
    clip: float = 3.0
    replicates: int = 10
    reference_uniform_weight: bool = False

    def __post_init__(self):
        if self.rule not in RULES:
            raise ValueError(f"unknown log-SNR rule {self.rule!r}; expected one of {RULES}")
        for name, value in zip(("loc", "scale", "clip"), _check_settings(self.loc, self.scale, self.clip)):
            object.__setattr__(self, name, value)
        object.__setattr__(self, "replicates", count(self.replicates, "replicates"))
        if self.reference_uniform_weight and self.rule != "uniform":
            raise ValueError("reference_uniform_weight (docs/protocol.md#b5) only applies to rule='uniform', "
                             f"got rule={self.rule!r}")

    @classmethod
    def faithful(cls, path: str = "nll") -> "LogSNRSampling":
        """What the reference code actually ran (docs/protocol.md#log-snr-sampling table).

        path "nll" (ARO, eval_itd nll_1D/nll_2D): clip 4 (docs/protocol.md#b2); "daam_itd": clip 3 (hard-coded,
        docs/protocol.md#b9); "uniform": the uniform rule with clip 3 and the 1/range weight (docs/protocol.md#b3,
        docs/protocol.md#b5). For image editing (ll_ratio, loc/scale from the trained range) use :meth:`from_range`.
        """
        if path == "nll":
            return cls(rule="logistic", loc=1.0, scale=2.0, clip=4.0)
        if path == "daam_itd":
            return cls(rule="logistic", loc=1.0, scale=2.0, clip=3.0)
        if path == "uniform":
            return cls(rule="uniform", loc=1.0, scale=2.0, clip=3.0, reference_uniform_weight=True)
        raise ValueError(f"unknown reference path {path!r}; expected 'nll', 'daam_itd' or 'uniform'")

    @classmethod
    def corrected(cls) -> "LogSNRSampling":
        """The documented setting: truncated logistic, loc 1, scale 2, clip 3 (all draws in SD's range)."""
        return cls()

    @classmethod
    def from_range(cls, logsnr_min: float, logsnr_max: float, *, clip: float = 3.0,
                   rule: str = "logistic") -> "LogSNRSampling":
        """loc = midpoint, scale = range/(2·clip), so the support is exactly [logsnr_min, logsnr_max].

        The reference's image-editing path does this with SD 2.1's trained range (loc ≈ 0.853,
        scale ≈ 2.072, docs/protocol.md#log-snr-sampling).
        """
        logsnr_min, logsnr_max = real(logsnr_min, "logsnr_min"), real(logsnr_max, "logsnr_max")
        clip = real(clip, "clip", above=0, hint="the range is loc ± clip·scale")
        if not logsnr_max > logsnr_min:
            raise ValueError(f"need logsnr_min < logsnr_max, got {logsnr_min!r}, {logsnr_max!r}")
        return cls(rule=rule, loc=(logsnr_min + logsnr_max) / 2,
                   scale=(logsnr_max - logsnr_min) / (2 * clip), clip=clip)

    def with_(self, **changes) -> "LogSNRSampling":
        """A copy with some fields changed (dataclasses.replace)."""
        return replace(self, **changes)

    @property
    def support(self) -> tuple[float, float]:
        """``(lo, hi) = (loc − clip·scale, loc + clip·scale)``."""
        return self.loc - self.clip * self.scale, self.loc + self.clip * self.scale

    @property
    def is_qmc(self) -> bool:
        return self.rule.endswith("_qmc")

    def n_groups(self, n: int) -> int:
        """Number of independent replicate estimates among ``n`` points (n for i.i.d. rules)."""
        n = _check_n(n)
        if not self.is_qmc:
            return n
        if n % self.replicates:
            raise ValueError(f"rule {self.rule!r} with replicates={self.replicates} needs n_samples to be a "
                             f"multiple of {self.replicates}, got {n}")
        return self.replicates

    def fraction_within(self, lo: float, hi: float) -> float:
        """The share of this sampling's draws (its probability mass) that falls in ``[lo, hi]`` nats."""
        a, b = self.support
        lo, hi = max(float(lo), a), min(float(hi), b)
        if not hi > lo:
            return 0.0
        if self.rule.startswith("uniform"):
            return (hi - lo) / (b - a)
        cdf = lambda lam: 1.0 / (1.0 + math.exp(-(lam - self.loc) / self.scale))  # σ(v), |v| <= clip
        return min(1.0, (cdf(hi) - cdf(lo)) / math.tanh(self.clip / 2))

    def density(self, logsnr: Tensor) -> Tensor:
        """Marginal density q(λ) of every point (same shape as ``logsnr``), zero outside the support."""
        if self.rule.startswith("logistic"):
            return logistic_density(logsnr, loc=self.loc, scale=self.scale, clip=self.clip)
        lo, hi = self.support
        inside = (logsnr >= lo) & (logsnr <= hi)
        return torch.where(inside, torch.full_like(logsnr, 1.0 / (hi - lo)), torch.zeros_like(logsnr))

    def sample(self, n: int, *, generator: torch.Generator | None = None, device=None, dtype=torch.float32,
               batch_shape: tuple[int, ...] = ()) -> tuple[Tensor, Tensor]:
        """``(logsnr [*batch_shape, n], weights [*batch_shape, n])``, weights = 1/q (see class docstring).

        For the *_qmc rules the n points are ``n_groups(n)`` consecutive blocks, each an independent shifted
        lattice of n/replicates points.
        """
        groups = self.n_groups(n)
        kw = dict(loc=self.loc, scale=self.scale, clip=self.clip, generator=generator, device=device,
                  dtype=dtype)
        if self.rule == "logistic":
            return logistic_quadrature(n, batch_shape=batch_shape, **kw)
        if self.rule == "uniform":
            return uniform_quadrature(n, batch_shape=batch_shape,
                                      reference_weight_bug=self.reference_uniform_weight, **kw)
        fn = logistic_qmc_quadrature if self.rule == "logistic_qmc" else uniform_qmc_quadrature
        logsnr, weights = fn(n // groups, batch_shape=(*batch_shape, groups), **kw)
        return logsnr.reshape(*batch_shape, n), weights.reshape(*batch_shape, n)
