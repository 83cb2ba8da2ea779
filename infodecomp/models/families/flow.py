"""Rectified flow (SD3, Flux) in the variance-preserving coordinates every estimator uses.

A flow-matching model is trained on the straight path between data and noise (Liu et al. 2023; Esser et al. 2024,
Eq. 3; diffusers' ``FlowMatchEulerDiscreteScheduler``)::

    z_t = (1 − t)·x + t·ε,   t ∈ (0, 1) the noise fraction (diffusers' "sigma"),

and predicts the velocity ``v = dz_t/dt = ε − x``. Dividing by ``s(t) = sqrt((1 − t)² + t²)`` gives the VP channel
of docs/architecture.md#the-denoiser-interface, ``z = z_t / s = α·x + σ·ε`` with ``α = (1 − t)/s``, ``σ = t/s`` (α² + σ² = 1), so

    logsnr = log(α²/σ²) = 2·log((1 − t)/t),          t = sigmoid(−logsnr/2),
    ε = z_t + (1 − t)·v                 (from x = ε − v:  z_t = (1 − t)(ε − v) + t·ε = ε − (1 − t)·v),
    v = (ε − z_t)/(1 − t).

The noise fraction t is a bijection of the log-SNR: every λ ∈ ℝ is some t ∈ (0, 1), so a flow model has no
"trained range" to clamp to (it was trained on continuous t) and :class:`FlowDenoiser` needs no timestep table.

Shifted schedules (SD3's ``shift``, Flux's resolution-dependent ``mu``) reparameterise which t a sampler visits,
``t' = shift·t / (1 + (shift − 1)·t)``, which is a translation in log-SNR: ``λ(t') = λ(t) − 2·log(shift)``
(:func:`shift_time`, :func:`logsnr_shift`). The network is always told the noise fraction actually applied
(diffusers passes ``timestep = 1000·t'`` with the shifted t'), so a shift changes the model's training grid and
sampling schedule (:func:`training_times`), never the conversion of one denoiser call.

Contents: the conversions (pure functions, tested as exact identities), :class:`FlowDenoiser` (a velocity model →
the one denoiser interface), and :func:`velocity_from_denoiser` / :func:`v_prediction_from_denoiser` (an exact VP
denoiser, e.g. from :mod:`infodecomp.analytic`, dressed up as a flow-matching or v-prediction model, for the
analytic checks through every parameterisation).
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import Tensor

from ...checks import finite_tensor

__all__ = [
    "flow_time", "flow_logsnr", "flow_scale", "flow_from_vp", "vp_from_flow", "eps_from_velocity",
    "velocity_from_eps", "shift_time", "logsnr_shift", "dynamic_shift", "training_times",
    "alphas_cumprod_from_times", "FlowDenoiser", "velocity_from_denoiser", "v_prediction_from_denoiser",
]


def _float(t: Tensor) -> Tensor:
    t = torch.as_tensor(t)
    return t if t.is_floating_point() else t.to(torch.float32)


def flow_time(logsnr: Tensor) -> Tensor:
    """The noise fraction ``t = sigmoid(−logsnr/2)`` ∈ (0, 1) of a VP log-SNR (nats); same shape and dtype."""
    return torch.sigmoid(-0.5 * _float(logsnr))


def flow_logsnr(t: Tensor) -> Tensor:
    """The VP log-SNR ``2·log((1 − t)/t) = −2·logit(t)`` (nats) of a noise fraction ``t`` ∈ (0, 1)."""
    t = _float(t)
    return 2.0 * (torch.log1p(-t) - torch.log(t))


def flow_scale(logsnr: Tensor) -> Tensor:
    """``s = sqrt((1 − t)² + t²)`` at ``t = flow_time(logsnr)``: ``z_t = s·z`` (computed from sigmoids, so the
    two ends, t → 0 and t → 1, keep full precision)."""
    lam = _float(logsnr)
    return (torch.sigmoid(0.5 * lam) ** 2 + torch.sigmoid(-0.5 * lam) ** 2).sqrt()


def _col(v: Tensor, like: Tensor) -> Tensor:
    return v.reshape((-1,) + (1,) * (like.ndim - 1))


def flow_from_vp(z: Tensor, logsnr: Tensor) -> Tensor:
    """VP state ``z [B, ...]`` at ``logsnr [B]`` → the flow state ``z_t = s·z`` on the straight path."""
    return z * _col(flow_scale(logsnr).to(z.dtype), z)


def vp_from_flow(z_t: Tensor, t: Tensor) -> Tensor:
    """Flow state ``z_t [B, ...]`` at noise fraction ``t [B]`` → the VP state ``z_t / sqrt((1 − t)² + t²)``."""
    t = _float(t).to(z_t.dtype)
    return z_t / _col(((1 - t) ** 2 + t ** 2).sqrt(), z_t)


def eps_from_velocity(z_t: Tensor, v: Tensor, t: Tensor) -> Tensor:
    """``ε = z_t + (1 − t)·v`` for the velocity ``v = ε − x`` at ``z_t = (1 − t)·x + t·ε``."""
    return z_t + _col(1 - _float(t).to(z_t.dtype), z_t) * v


def velocity_from_eps(z_t: Tensor, eps: Tensor, t: Tensor) -> Tensor:
    """``v = (ε − z_t)/(1 − t)``: the inverse of :func:`eps_from_velocity`."""
    return (eps - z_t) / _col(1 - _float(t).to(z_t.dtype), z_t)


def shift_time(t: Tensor, shift: float) -> Tensor:
    """SD3's timestep shift ``t' = shift·t / (1 + (shift − 1)·t)`` (Esser et al. 2024, Eq. 23; diffusers'
    ``FlowMatchEulerDiscreteScheduler(shift=...)``); Flux's ``time_shift(mu, 1, t)`` is the same with
    ``shift = exp(mu)``. In log-SNR it is the translation ``λ ↦ λ − 2·log(shift)`` (:func:`logsnr_shift`)."""
    if not shift > 0:
        raise ValueError(f"shift must be > 0, got {shift!r}")
    t = _float(t)
    return shift * t / (1 + (shift - 1) * t)


def logsnr_shift(shift: float) -> float:
    """The log-SNR translation of a time shift: ``flow_logsnr(shift_time(t, s)) = flow_logsnr(t) + logsnr_shift(s)``,
    i.e. ``−2·log(s)`` nats (−2.197 for SD3's shift 3)."""
    if not shift > 0:
        raise ValueError(f"shift must be > 0, got {shift!r}")
    return -2.0 * math.log(shift)


def dynamic_shift(image_seq_len: int, *, base_seq_len: int = 256, max_seq_len: int = 4096,
                  base_shift: float = 0.5, max_shift: float = 1.15, time_shift_type: str = "exponential") -> float:
    """The shift a resolution-dependent schedule (Flux, SD3.5 with ``use_dynamic_shifting``) applies at
    ``image_seq_len`` image tokens: ``mu`` linear in the token count between ``(base_seq_len, base_shift)`` and
    ``(max_seq_len, max_shift)`` (as diffusers' pipelines compute it), returned as a :func:`shift_time` factor:
    ``exp(mu)`` for the exponential time shift, ``mu`` for the linear one."""
    m = (max_shift - base_shift) / (max_seq_len - base_seq_len)
    mu = base_shift + m * (image_seq_len - base_seq_len)
    if time_shift_type == "exponential":
        return math.exp(mu)
    if time_shift_type == "linear":
        return float(mu)
    raise ValueError(f"time_shift_type must be 'exponential' or 'linear', got {time_shift_type!r}")


def training_times(num_train_timesteps: int = 1000, shift: float = 1.0) -> Tensor:
    """The discrete training grid of ``FlowMatchEulerDiscreteScheduler``, increasing: ``[N − 1]`` float64 noise
    fractions ``shift_time(i/N, shift)``, i = 1 … N − 1. The scheduler's last point, t = 1 (pure noise,
    log-SNR −∞), is left out, so every point has a finite log-SNR."""
    N = int(num_train_timesteps)
    if N < 2:
        raise ValueError(f"num_train_timesteps must be >= 2, got {num_train_timesteps!r}")
    return shift_time(torch.arange(1, N, dtype=torch.float64) / N, float(shift))


def alphas_cumprod_from_times(t: Tensor) -> Tensor:
    """The VP-equivalent ``ᾱ = α² = (1 − t)² / ((1 − t)² + t²) = sigmoid(λ)`` of noise fractions ``t`` (float64):
    what :func:`infodecomp.logsnr.logsnr_from_alphas_cumprod` and the Karras/DDIM code of
    :mod:`infodecomp.editing` read as a schedule."""
    t = _float(t).to(torch.float64)
    return (1 - t) ** 2 / ((1 - t) ** 2 + t ** 2)


class FlowDenoiser:
    """A rectified-flow velocity model as a denoiser ``eps_hat = denoiser(z, logsnr, cond)`` (docs/architecture.md#the-denoiser-interface).

    Args:
        velocity: ``v = velocity(z_t, t, cond)``: ``z_t [B, C, h, w]`` the flow state (float32, or float64 when
            ``z`` is), ``t [B]`` noise fractions in (0, 1) (same dtype), ``cond [B, ...]`` → ``v [B, C, h, w]``,
            the prediction of ``ε − x``. The family adapters (:mod:`infodecomp.models.families`) give it: they unpack
            ``cond``, scale t to the network's time convention, cast to the network's dtype.
        max_batch: evaluate in chunks of at most this many rows; ``None`` = one call.
        logsnr_range: ``(λ_min, λ_max)`` of the model's training grid, for display (:func:`training_times`);
            nothing is clamped to it.

    Call: ``z [B, ...]`` VP state at ``logsnr [B]`` (or a scalar) → ``eps_hat`` in ``z``'s dtype: ``t =
    sigmoid(−λ/2)``, ``z_t = s·z`` with ``s = sqrt((1 − t)² + t²)``, ``ε̂ = z_t + (1 − t)·v̂`` (conversions in at
    least float32). ``cond`` of batch 1 is broadcast. Runs under ``torch.no_grad()``.
    """

    def __init__(self, velocity: Callable[[Tensor, Tensor, Tensor], Tensor], *, max_batch: int | None = None,
                 logsnr_range: tuple[float, float] | None = None):
        if not callable(velocity):
            raise TypeError(f"velocity must be callable v(z_t, t, cond), got {type(velocity).__name__}")
        if max_batch is not None and (isinstance(max_batch, bool) or not isinstance(max_batch, int) or max_batch < 1):
            raise ValueError(f"max_batch must be a positive int or None, got {max_batch!r}")
        self.velocity = velocity
        self.max_batch = max_batch
        self.logsnr_range = logsnr_range

    def __repr__(self) -> str:
        return f"FlowDenoiser(velocity={self.velocity!r}, max_batch={self.max_batch})"

    def __call__(self, z: Tensor, logsnr: Tensor | float, cond: Tensor) -> Tensor:
        if not isinstance(z, Tensor) or z.ndim < 2 or not z.is_floating_point():
            raise ValueError(f"z must be a float tensor [B, C, h, w], got {type(z).__name__} "
                             f"{tuple(z.shape) if isinstance(z, Tensor) else ''}")
        B = z.shape[0]
        logsnr = torch.as_tensor(logsnr, device=z.device)
        if logsnr.ndim == 0:
            logsnr = logsnr.expand(B)
        if logsnr.shape != (B,):
            raise ValueError(f"logsnr must be [B] = [{B}] (or a scalar), got shape {tuple(logsnr.shape)}")
        if not isinstance(cond, Tensor) or cond.ndim < 2:
            raise ValueError(f"cond must be a conditioning tensor [B, ...], got {type(cond).__name__}")
        if cond.shape[0] == 1 and B > 1:
            cond = cond.expand(B, *cond.shape[1:])
        if cond.shape[0] != B:
            raise ValueError(f"cond has batch {cond.shape[0]}, z has batch {B}; expected equal (or cond batch 1)")
        finite_tensor(z, "z given to the denoiser")
        finite_tensor(cond, "cond given to the denoiser")
        finite_tensor(logsnr.to(torch.float32), "logsnr given to the denoiser")
        if self.max_batch is None or B <= self.max_batch:
            return self._eps(z, logsnr, cond)
        return torch.cat([self._eps(z[i:i + self.max_batch], logsnr[i:i + self.max_batch],
                                    cond[i:i + self.max_batch]) for i in range(0, B, self.max_batch)])

    @torch.no_grad()
    def _eps(self, z: Tensor, logsnr: Tensor, cond: Tensor) -> Tensor:
        acc = torch.promote_types(z.dtype, torch.float32)
        lam = logsnr.to(acc)
        t = torch.sigmoid(-0.5 * lam)            # noise fraction
        one_minus_t = torch.sigmoid(0.5 * lam)   # 1 − t without cancellation near t = 1
        z_t = z.to(acc) * _col((one_minus_t ** 2 + t ** 2).sqrt(), z)
        v = self.velocity(z_t, t, cond)
        if not isinstance(v, Tensor) or v.shape != z.shape:
            raise ValueError(f"the velocity model returned {tuple(v.shape) if isinstance(v, Tensor) else type(v)} "
                             f"for a state of shape {tuple(z.shape)}; expected the same shape")
        return (z_t + _col(one_minus_t, z) * v.to(acc)).to(z.dtype)


def velocity_from_denoiser(denoiser: Callable[[Tensor, Tensor, Tensor], Tensor]):
    """The flow-matching velocity model ``v(z_t, t, cond)`` whose VP denoiser is ``denoiser``: ``z = z_t/s``,
    ``ε̂ = denoiser(z, λ(t), cond)``, ``v = (ε̂ − z_t)/(1 − t)``. ``FlowDenoiser(velocity_from_denoiser(d))``
    equals ``d`` up to rounding: an exact Gaussian denoiser put through the flow parameterisation."""

    def velocity(z_t: Tensor, t: Tensor, cond: Tensor) -> Tensor:
        t = _float(t).to(z_t.dtype)
        eps = denoiser(vp_from_flow(z_t, t), flow_logsnr(t), cond)
        return velocity_from_eps(z_t, eps.to(z_t.dtype), t)

    return velocity


def v_prediction_from_denoiser(denoiser: Callable[[Tensor, Tensor, Tensor], Tensor]):
    """The v-prediction model ``v(z, logsnr, cond) = α·ε̂ − σ·x̂ = (ε̂ − σ·z)/α`` (Salimans & Ho 2022) of a VP
    ``denoiser`` (α = sqrt(sigmoid(λ)), σ = sqrt(sigmoid(−λ)), x̂ = (z − σ·ε̂)/α)."""

    def v_model(z: Tensor, logsnr: Tensor, cond: Tensor) -> Tensor:
        lam = _float(logsnr).to(z.dtype)
        alpha, sigma = _col(torch.sigmoid(lam).sqrt(), z), _col(torch.sigmoid(-lam).sqrt(), z)
        eps = denoiser(z, lam, cond).to(z.dtype)
        return (eps - sigma * z) / alpha

    return v_model
