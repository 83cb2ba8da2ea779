"""log-SNR proposals fitted to a model and a quantity, with exact importance weights (issue 27, item 1).

Every estimate here is ∫_lo^hi f(λ) dλ by importance sampling, (1/K) Σ_k f(λ_k, ε_k) / q(λ_k) with λ_k ~ q
(:mod:`infodecomp.logsnr`). Its variance per draw is ∫ E_ε[f²|λ] / q(λ) dλ − I², smallest for
q*(λ) ∝ sqrt(E_ε[f(λ, ε)² | λ]) — the λ-part of the variance goes, the ε-part at each λ stays. The paper's
proposal is one fixed truncated logistic (loc 1, scale 2) for every model and quantity.

:class:`FittedLogSNRSampling` is a piecewise-constant density on the same truncated range [lo, hi], fitted from a
short pilot's per-λ second moment of the quantity's own integrand (:func:`pilot_second_moment`, :func:`fit_proposal`)
and mixed with a uniform floor so that no weight exceeds (range / floor). Its density is known exactly, so the
weights 1/q are exact and the estimate is unbiased for the same truncated integral as the paper's (tests against
the exact answers of :mod:`infodecomp.analytic`: tests/test_proposals.py). It is a
:class:`~infodecomp.logsnr.LogSNRSampling`, so every estimator takes it as ``sampling=`` unchanged:

* rule ``"fitted"``: i.i.d. draws from the fitted density (inverse CDF);
* rule ``"fitted_qmc"``: stratified: ``replicates`` independent randomly shifted lattices in the fitted CDF (each
  point marginally q, so the weights stay exact; the standard error from the spread between replicates).

Quantities (:data:`QUANTITIES`), the integrand whose second moment the pilot measures, per example and candidate:
``info_o`` / ``info_s`` (image-level i^o / i^s), ``pixel_info_o`` / ``pixel_info_s`` (the per-pixel maps: the sum over
pixels of the squared per-pixel integrand, i.e. the trace of the map's covariance), ``margin_o`` / ``margin_s`` (the
paired difference of two candidates' integrands: what a relation test decides by).

:class:`ProposalCache` keeps fitted proposals in a small JSON file beside the result stores, keyed by the model's
identity (:func:`infodecomp.models.identity.model_identity`, given here as data), the quantity and the setting. It
is the one file access of this module (standard library only).
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import tempfile
import dataclasses
from dataclasses import asdict, dataclass, fields
from pathlib import Path

import torch
from torch import Tensor

from .checks import count, real
from .estimators import mmse_curve
from .logsnr import LogSNRSampling

__all__ = ["FITTED_RULES", "QUANTITIES", "SAMPLINGS", "PILOT_ROWS", "FittedLogSNRSampling", "ProposalCache",
           "fit_proposal", "pilot_second_moment", "fitted_proposal", "resolve_sampling", "stratified"]

FITTED_RULES = ("fitted", "fitted_qmc")
QUANTITIES = ("info_o", "info_s", "pixel_info_o", "pixel_info_s", "margin_o", "margin_s")


@dataclass(frozen=True)
class FittedLogSNRSampling(LogSNRSampling):
    """A piecewise-constant log-SNR density on ``support = loc ± clip·scale`` (the base proposal's range).

    edges: [J+1] increasing bin edges, edges[0] = lo, edges[-1] = hi. probs: [J] bin probabilities (sum 1, each
    > 0). The density in bin j is probs[j] / (edges[j+1] − edges[j]); weights = 1/q exactly. rule: ``"fitted"``
    (i.i.d.) or ``"fitted_qmc"`` (stratified in the fitted CDF, ``replicates`` independent shifted lattices).
    quantity: what it was fitted to (:data:`QUANTITIES`; provenance only).
    """

    rule: str = "fitted"
    edges: tuple = ()
    probs: tuple = ()
    quantity: str = ""

    def __post_init__(self):  # replaces LogSNRSampling's checks: the rule names differ, the range checks do not
        if self.rule not in FITTED_RULES:
            raise ValueError(f"unknown fitted log-SNR rule {self.rule!r}; expected one of {FITTED_RULES}")
        for name in ("loc", "scale", "clip"):
            real(getattr(self, name), name)
        if not self.scale > 0 or not self.clip > 0:
            raise ValueError(f"scale and clip must be > 0, got scale={self.scale!r}, clip={self.clip!r}")
        count(self.replicates, "replicates")
        if self.reference_uniform_weight:
            raise ValueError("reference_uniform_weight (docs/protocol.md#b5) does not apply to a fitted proposal")
        edges = tuple(float(e) for e in self.edges)
        probs = tuple(float(p) for p in self.probs)
        if len(edges) < 2 or len(probs) != len(edges) - 1:
            raise ValueError(f"need J+1 edges and J probabilities (J ≥ 1), got {len(edges)} edges and "
                             f"{len(probs)} probabilities")
        if any(b <= a for a, b in zip(edges, edges[1:])):
            raise ValueError(f"edges must increase strictly, got {edges}")
        lo, hi = self.support
        if abs(edges[0] - lo) > 1e-9 * max(1.0, abs(lo)) or abs(edges[-1] - hi) > 1e-9 * max(1.0, abs(hi)):
            raise ValueError(f"edges must span the support [{lo}, {hi}] of loc ± clip·scale, got "
                             f"[{edges[0]}, {edges[-1]}]")
        if any(not (p > 0 and math.isfinite(p)) for p in probs) or abs(sum(probs) - 1) > 1e-9:
            raise ValueError(f"probs must be positive and sum to 1, got sum {sum(probs)!r}")
        object.__setattr__(self, "edges", edges)
        object.__setattr__(self, "probs", probs)

    # ── the density and its inverse CDF ──
    def _tables(self, device) -> tuple[Tensor, Tensor, Tensor]:
        edges = torch.tensor(self.edges, dtype=torch.float64, device=device)
        probs = torch.tensor(self.probs, dtype=torch.float64, device=device)
        cdf = torch.cat([probs.new_zeros(1), probs.cumsum(0)])
        cdf[-1] = 1.0
        return edges, probs, cdf

    def density(self, logsnr: Tensor) -> Tensor:
        """q(λ) (same shape as ``logsnr``), zero outside the support."""
        edges, probs, _ = self._tables(logsnr.device)
        lam = logsnr.to(torch.float64)
        j = (torch.searchsorted(edges, lam, right=True) - 1).clamp(0, len(self.probs) - 1)
        q = probs[j] / (edges[j + 1] - edges[j])
        inside = (lam >= edges[0]) & (lam <= edges[-1])
        return torch.where(inside, q, torch.zeros_like(q)).to(logsnr.dtype)

    def _from_u(self, u: Tensor) -> tuple[Tensor, Tensor]:
        """u ∈ [0, 1] (float64) → (λ, 1/q(λ)) by the inverse CDF, bin by bin."""
        edges, probs, cdf = self._tables(u.device)
        j = (torch.searchsorted(cdf, u, right=True) - 1).clamp(0, len(self.probs) - 1)
        width = edges[j + 1] - edges[j]
        frac = ((u - cdf[j]) / probs[j]).clamp(0.0, 1.0)
        return edges[j] + frac * width, width / probs[j]

    def sample(self, n: int, *, generator: torch.Generator | None = None, device=None, dtype=torch.float32,
               batch_shape: tuple[int, ...] = ()) -> tuple[Tensor, Tensor]:
        """``(logsnr [*batch_shape, n], weights [*batch_shape, n])``, weights = 1/q exactly."""
        groups = self.n_groups(n)
        gen_device = generator.device if generator is not None else (device or torch.device("cpu"))
        if self.is_qmc:  # one random shift per replicate lattice of n/groups points (as logsnr._shifted_lattice)
            per = n // groups
            shift = torch.rand((*batch_shape, groups, 1), generator=generator, device=gen_device,
                               dtype=torch.float64)
            k = torch.arange(per, dtype=torch.float64, device=gen_device)
            u = ((k + shift) / per).clamp(0.0, 1.0).reshape(*batch_shape, n)
        else:
            u = torch.rand((*batch_shape, n), generator=generator, device=gen_device, dtype=torch.float64)
        logsnr, weights = self._from_u(u)
        if device is not None:
            logsnr, weights = logsnr.to(device), weights.to(device)
        return logsnr.to(dtype), weights.to(dtype)

    @property
    def max_weight(self) -> float:
        """The largest weight 1/q (range / floor at most, for a proposal from :func:`fit_proposal`)."""
        return max((b - a) / p for a, b, p in zip(self.edges, self.edges[1:], self.probs))

    # ── plain JSON ──
    def to_dict(self) -> dict:
        d = asdict(self)
        d["edges"], d["probs"] = list(self.edges), list(self.probs)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "FittedLogSNRSampling":
        names = {f.name for f in fields(cls)}
        unknown = set(d) - names
        if unknown:
            raise ValueError(f"unknown fields {sorted(unknown)} for a fitted proposal; expected {sorted(names)}")
        return cls(**{k: tuple(v) if k in ("edges", "probs") else v for k, v in d.items()})


def fit_proposal(logsnr: Tensor, second_moment: Tensor, *, base: LogSNRSampling | None = None, bins: int = 24,
                 floor: float = 0.1, stratified: bool = False, replicates: int | None = None,
                 quantity: str = "") -> FittedLogSNRSampling:
    """Fit q(λ) ∝ sqrt(E[f²|λ]) piecewise constant on ``bins`` equal bins of ``base.support``, mixed with a uniform
    floor: q = (1 − floor)·q_fit + floor·uniform (every weight ≤ range/floor, so one unlucky pilot cannot make
    the variance explode).

    logsnr: [N] pilot log-SNRs (spread over the support, e.g. a shifted uniform lattice: :func:`pilot_second_moment`);
    second_moment: [N] ≥ 0 the integrand's square at each (summed over what the estimate adds up). A bin with no
    pilot point gets the mean of the others. base: the proposal whose range is kept (default the corrected paper's,
    loc 1, scale 2, clip 3). stratified: rule ``"fitted_qmc"`` (``replicates`` lattices; default base.replicates).
    The bin probabilities are rounded to 6 decimals, so pilots that differ only in the last bits of their arithmetic
    (the processes of a multi-GPU launch) fit the same proposal, and so write to the same store.
    """
    base = base if base is not None else LogSNRSampling()
    bins = count(bins, "bins")
    real(floor, "floor")
    if not 0 < floor <= 1:
        raise ValueError(f"floor must be in (0, 1] (the uniform share of the proposal), got {floor!r}")
    lam = torch.as_tensor(logsnr, dtype=torch.float64).reshape(-1).cpu()
    m2 = torch.as_tensor(second_moment, dtype=torch.float64).reshape(-1).cpu()
    if lam.shape != m2.shape or lam.numel() == 0:
        raise ValueError(f"logsnr and second_moment must be non-empty and of one length, got {tuple(lam.shape)} "
                         f"and {tuple(m2.shape)}")
    if not bool(torch.isfinite(m2).all()) or bool((m2 < 0).any()):
        raise ValueError("second_moment must be finite and >= 0")
    lo, hi = base.support
    edges = torch.linspace(lo, hi, bins + 1, dtype=torch.float64)
    j = (torch.searchsorted(edges, lam, right=True) - 1).clamp(0, bins - 1)
    inside = (lam >= lo) & (lam <= hi)
    total = torch.zeros(bins, dtype=torch.float64).index_add_(0, j[inside], m2[inside])
    hits = torch.zeros(bins, dtype=torch.float64).index_add_(0, j[inside], torch.ones_like(m2[inside]))
    mean = torch.where(hits > 0, total / hits.clamp_min(1), torch.nan)
    mean = torch.where(torch.isnan(mean), mean[~torch.isnan(mean)].mean() if bool((hits > 0).any()) else 1.0, mean)
    shape = mean.clamp_min(0).sqrt()  # sqrt(E f²) per bin (equal widths: the bin mass is ∝ it)
    fit = shape / shape.sum() if float(shape.sum()) > 0 else torch.full((bins,), 1.0 / bins, dtype=torch.float64)
    # the fitted shape rounded to 6 decimals: the processes of a launch each run the pilot, and last-bit differences
    # of their arithmetic must not give them different proposals (and stores); the floor is added after, exactly
    fit = torch.round(fit, decimals=6)
    fit = fit / fit.sum() if float(fit.sum()) > 0 else torch.full((bins,), 1.0 / bins, dtype=torch.float64)
    probs = (1 - floor) * fit + floor / bins
    probs = probs / probs.sum()
    return FittedLogSNRSampling(rule="fitted_qmc" if stratified else "fitted", loc=base.loc, scale=base.scale,
                                clip=base.clip, replicates=base.replicates if replicates is None else replicates,
                                edges=tuple(edges.tolist()), probs=tuple(probs.tolist()), quantity=quantity)


def pilot_second_moment(denoiser, x: Tensor, conds: Tensor, ref: Tensor, *, quantity: str, n_points: int = 96,
                        base: LogSNRSampling | None = None, chunk_size: int = 256,
                        generator: torch.Generator | None = None) -> tuple[Tensor, Tensor]:
    """A short pilot: the integrand of ``quantity`` at ``n_points`` log-SNRs of one randomly shifted uniform
    lattice on ``base.support``, one noise draw each, for every example → ``(logsnr [L], second_moment [L])``.

    x: [B, *X]; conds: [B, M, *C] candidates (``margin_*`` needs M ≥ 2: every pair's paired difference);
    ref: [B, *C]. The second moment of each example (and candidate or pair) is divided by its mean over λ before
    averaging, so every example counts equally whatever its information. Costs B · n_points · (M + 1) denoiser
    rows (chunked by ``chunk_size``).
    """
    if quantity not in QUANTITIES:
        raise ValueError(f"unknown quantity {quantity!r}; expected one of {QUANTITIES}")
    base = base if base is not None else LogSNRSampling()
    n_points = count(n_points, "n_points", minimum=2)
    lo, hi = base.support
    gen_device = generator.device if generator is not None else torch.device("cpu")
    shift = float(torch.rand((), generator=generator, device=gen_device, dtype=torch.float64))
    grid = lo + (hi - lo) * (torch.arange(n_points, dtype=torch.float64) + shift) / n_points
    pixel = quantity.startswith("pixel_")
    c = mmse_curve(denoiser, x, conds, ref, grid.to(torch.float32), n_noise=1, pixelwise=pixel,
                   chunk_size=chunk_size, generator=generator)
    kind = quantity.rsplit("_", 1)[1]  # "o" | "s"
    if pixel:
        f = 0.5 * (c.pixel_orthogonal if kind == "o" else c.pixel_standard)  # [B, M, L, *V]
        m2 = (f.to(torch.float64) ** 2).flatten(3).sum(-1)                    # [B, M, L]
    else:
        f = 0.5 * (c.orthogonal if kind == "o" else c.standard).to(torch.float64)  # [B, M, L]
        if quantity.startswith("margin_"):
            M = f.shape[1]
            if M < 2:
                raise ValueError(f"quantity {quantity!r} needs at least two candidates, got M = {M}")
            i, j = torch.triu_indices(M, M, offset=1)
            f = f[:, i] - f[:, j]  # [B, pairs, L]
        m2 = f ** 2
    m2 = m2.reshape(-1, m2.shape[-1])
    scale = m2.mean(-1, keepdim=True)
    m2 = torch.where(scale > 0, m2 / scale.clamp_min(1e-300), torch.zeros_like(m2)).mean(0)
    return grid, m2


class ProposalCache:
    """Fitted proposals in one JSON file (e.g. ``results/proposals.json`` beside the result stores), keyed by the
    model's identity (a plain dict: :func:`infodecomp.models.identity.model_identity`), the quantity and the
    setting (any JSON: the base range, the pilot's size, the dataset). Writes are atomic (temp file + rename)."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)

    @staticmethod
    def key(identity, quantity: str, setting=None) -> str:
        text = json.dumps({"model": identity, "quantity": quantity, "setting": setting}, sort_keys=True,
                          default=str)
        return hashlib.sha256(text.encode()).hexdigest()[:16]

    def _read(self) -> dict:
        if not self.path.exists():
            return {}
        with open(self.path) as fh:
            return json.load(fh)

    def get(self, identity, quantity: str, setting=None) -> FittedLogSNRSampling | None:
        entry = self._read().get(self.key(identity, quantity, setting))
        return None if entry is None else FittedLogSNRSampling.from_dict(entry["proposal"])

    def put(self, identity, quantity: str, proposal: FittedLogSNRSampling, setting=None) -> None:
        data = self._read()
        data[self.key(identity, quantity, setting)] = {"model": identity, "quantity": quantity, "setting": setting,
                                                       "proposal": proposal.to_dict()}
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=self.path.parent, prefix=self.path.name, suffix=".tmp")
        with os.fdopen(fd, "w") as fh:
            json.dump(data, fh, indent=1, sort_keys=True, default=str)
        os.replace(tmp, self.path)


def fitted_proposal(denoiser, x: Tensor, conds: Tensor, ref: Tensor, *, quantity: str,
                    cache: ProposalCache | None = None, identity=None, setting=None, n_points: int = 96,
                    bins: int = 24, floor: float = 0.1, stratified: bool = False,
                    base: LogSNRSampling | None = None, chunk_size: int = 256,
                    generator: torch.Generator | None = None) -> FittedLogSNRSampling:
    """The cached proposal for (identity, quantity, setting), or a pilot on (x, conds, ref) and a fit, cached.

    The pilot's examples should not be the examples then estimated (they are not reused: the estimate stays
    unbiased either way, since the proposal's weights are exact whatever it was fitted on)."""
    base = base if base is not None else LogSNRSampling()
    setting = {"base": [base.loc, base.scale, base.clip], "bins": bins, "floor": floor, "stratified": stratified,
               "n_points": n_points, "setting": setting}
    if cache is not None:
        hit = cache.get(identity, quantity, setting)
        if hit is not None:
            return hit
    lam, m2 = pilot_second_moment(denoiser, x, conds, ref, quantity=quantity, n_points=n_points, base=base,
                                  chunk_size=chunk_size, generator=generator)
    q = fit_proposal(lam, m2, base=base, bins=bins, floor=floor, stratified=stratified, quantity=quantity)
    if cache is not None:
        cache.put(identity, quantity, q, setting)
    return q


# ─────────────────────────────────────── the corrected protocol's sampling ───────────────────────────────────────

#: The log-SNR sampling a notebook asks for: "paper" (the truncated logistic, i.i.d.), "fitted" (a proposal fitted
#: to the model and the quantity by a pilot, stratified: :func:`stratified`), "auto" (fitted under the corrected
#: protocol, the paper's under the faithful one).
SAMPLINGS = ("auto", "paper", "fitted")
#: Rows of a dataset a pilot runs on (its first ones; their draws are not reused by the estimates).
PILOT_ROWS = 8


def resolve_sampling(sampling: str, protocol: str) -> str:
    """``"paper"`` or ``"fitted"`` for a notebook's ``sampling`` under ``protocol``; ``ValueError`` for an unknown
    name, or a fitted proposal asked of the faithful protocol (which keeps the paper's sampling)."""
    if sampling not in SAMPLINGS:
        raise ValueError(f"sampling must be one of {SAMPLINGS}, got {sampling!r}")
    if sampling == "auto":
        return "fitted" if protocol == "corrected" else "paper"
    if sampling == "fitted" and protocol != "corrected":
        raise ValueError(f"a fitted log-SNR proposal is an option of the corrected protocol; the {protocol!r} "
                         "protocol keeps the paper's sampling (use sampling='auto' or 'paper')")
    return sampling


def stratified(proposal: FittedLogSNRSampling, n: int, lattice: int = 10) -> FittedLogSNRSampling:
    """``proposal`` stratified for estimates of ``n`` draws per call (rule ``"fitted_qmc"``): ``n / L`` randomly
    shifted lattices of L points, L the largest divisor of ``n`` that is at most ``lattice`` and leaves at least two
    lattices (their spread is the standard error). benchmarks/estimator_efficiency.py measured lattices of 10
    (100 → 10 × 10, 32 → 4 × 8, 8 → 2 × 4, 7 → 7 × 1: i.i.d.). A single draw (n = 1: a smoke run) cannot be
    stratified and keeps the i.i.d. rule."""
    n, lattice = count(n, "n"), count(lattice, "lattice")
    if n == 1:
        return dataclasses.replace(proposal, rule="fitted")
    points = max(d for d in range(1, lattice + 1) if n % d == 0 and n // d >= 2)
    return dataclasses.replace(proposal, rule="fitted_qmc", replicates=n // points)
