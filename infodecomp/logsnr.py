"""log-SNR: the noise-level coordinate every estimator integrates over.

Convention (PROTOCOL.md §0, DESIGN.md §3): the variance-preserving channel is
``z = sqrt(sigmoid(logsnr)) * x + sqrt(sigmoid(-logsnr)) * eps``, so ``logsnr = log(alpha^2 / sigma^2)``;
large ``logsnr`` is little noise. For a discrete diffusers schedule with cumulative products
``alphas_cumprod[t]`` (t = 0 … T-1), the trained log-SNR is ``log ᾱ_t − log(1 − ᾱ_t)``, decreasing in t.
"""

from __future__ import annotations

import torch
from torch import Tensor


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

    As the reference code does (PROTOCOL.md §1.2): ``t = argmin_t |logsnr − λ_train(t)|``. A log-SNR outside
    the trained range is clamped to the end timestep (t = T−1 below, t = 0 above).
    """
    lam = trained_logsnr.to(device=logsnr.device, dtype=torch.float64)
    return (logsnr.to(torch.float64)[:, None] - lam[None, :]).abs().argmin(dim=1)


def interpolated_timestep(logsnr: Tensor, trained_logsnr: Tensor) -> Tensor:
    """Fractional timestep ``[B]`` (float32) by linear interpolation of t in log-SNR, clamped to [0, T−1].

    An alternative to :func:`nearest_timestep` for models whose time embedding accepts non-integer t
    (diffusers' sinusoidal embedding does): the model then sees the noise level actually applied.
    """
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
