"""Notebook 01's studies: the estimators of :mod:`infodecomp.estimators` against the exact answers of the worlds
of :mod:`infodecomp.analytic` (no neural network). Used by notebook 01 and ``benchmarks/quadrature.py``.

- :class:`Case`, :func:`standard_cases`: an estimation problem with a known answer (a world and a
  (condition, reference) pair), and the five of the notebook.
- :func:`convergence_study`: one example's estimates as the number of log-SNR draws grows.
- :func:`joint_study`: averages over the joint against the exact MI / CMI.
- :func:`variance_study`: the spread of one example's estimates at equal denoiser evaluations, per rule and noise.

Each study returns plain rows (list of dicts) that pandas turns into a table. Information is in nats.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

from ..analytic import GaussianImageWorld, GaussianWorld, MixtureWorld, integrate_over_logsnr
from ..estimators import information_scores
from ..logsnr import LogSNRSampling

__all__ = ["Case", "standard_cases", "convergence_study", "joint_study", "variance_study"]


@dataclass(frozen=True)
class Case:
    """One estimation problem with a known answer: a world and a (condition, reference) pair.

    kind "mi": condition = everything observed, reference = null. kind "cmi": condition = everything,
    reference = the context (Gaussian world: y₂ observed; mixture world: factor b given), target I(x; y₁ | y₂)
    or I(x; a | b).
    """

    name: str
    world: object
    kind: str

    def __post_init__(self):
        if self.kind not in ("mi", "cmi"):
            raise ValueError(f"kind must be 'mi' or 'cmi', got {self.kind!r}")
        if self.kind == "cmi" and isinstance(self.world, GaussianImageWorld):
            raise ValueError("the image world's cases are MI only")

    def sample(self, n: int, *, generator: torch.Generator | None = None) -> tuple[Tensor, Tensor, Tensor]:
        """``(x [n, ...], cond [n, ...], ref [n, ...])`` drawn from the joint."""
        w = self.world
        if isinstance(w, MixtureWorld):
            x, lab = w.sample(n, generator=generator)
            return x, w.condition(lab), (w.null(n) if self.kind == "mi" else w.condition(lab, given=[w.F - 1]))
        x, y = w.sample(n, generator=generator)
        if isinstance(w, GaussianImageWorld):
            return x, w.condition(y), w.null(n)
        ctx = [False] * (w.k - 1) + [True]
        return x, w.condition(y), (w.null(n) if self.kind == "mi" else w.condition(y, observed=ctx))

    def _info_args(self):
        w = self.world
        if isinstance(w, MixtureWorld):
            return (None, ()) if self.kind == "mi" else (tuple(range(w.F - 1)), (w.F - 1,))
        return (None, ()) if self.kind == "mi" else (list(range(w.k - 1)), [w.k - 1])

    def information(self, lo: float = -math.inf, hi: float = math.inf) -> float:
        """Exact MI / CMI in nats; with lo/hi the part on the log-SNR range [lo, hi] (the estimand)."""
        w = self.world
        if isinstance(w, GaussianImageWorld):
            return float(w.pixel_information(lo=lo, hi=hi).sum())
        if lo == -math.inf and hi == math.inf:
            return w.information(*self._info_args())
        if isinstance(w, MixtureWorld):
            return float(integrate_over_logsnr(lambda l: w.information_integrand(l, *self._info_args()), lo, hi,
                                               panel_width=2.0))
        return w.truncated_information(lo, hi, *self._info_args())

    def log_ratio(self, x: Tensor, cond: Tensor, ref: Tensor) -> Tensor:
        """Exact ``log p(x|cond) − log p(x|ref)`` [n] nats."""
        return self.world.log_ratio(x, cond, ref)

    def pointwise_targets(self, x: Tensor, cond: Tensor, ref: Tensor, lo: float, hi: float) -> tuple[Tensor, Tensor]:
        """What i^s and i^o estimate for each example on [lo, hi]: ``(standard [n], orthogonal [n])``."""
        w = self.world
        if isinstance(w, GaussianImageWorld):
            s, o = w.truncated_pixel_pointwise(x, cond, ref, lo, hi)
            return s.sum((-1, -2)), o.sum((-1, -2))
        return w.truncated_pointwise(x, cond, ref, lo, hi)


def standard_cases(seed: int = 0, *, image_size: int = 16) -> dict[str, Case]:
    """The problems of notebook 01 and the quadrature benchmark, by name:
    gaussian_mi, gaussian_cmi (x ∈ R³, y ∈ R²), mixture_mi, mixture_cmi (:meth:`MixtureWorld.two_factor`),
    image_mi (:meth:`GaussianImageWorld.shapes`, 4 × image_size²)."""
    g = GaussianWorld.random(3, 2, generator=torch.Generator().manual_seed(seed))
    m = MixtureWorld.two_factor()
    im = GaussianImageWorld.shapes(channels=4, size=image_size)
    return {"gaussian_mi": Case("gaussian_mi", g, "mi"), "gaussian_cmi": Case("gaussian_cmi", g, "cmi"),
            "mixture_mi": Case("mixture_mi", m, "mi"), "mixture_cmi": Case("mixture_cmi", m, "cmi"),
            "image_mi": Case("image_mi", im, "mi")}


def convergence_study(case: Case, x: Tensor, cond: Tensor, ref: Tensor, n_samples: list[int], *,
                      rules=("logistic",), loc: float = 1.0, scale: float = 2.0, clip: float = 3.0,
                      generator: torch.Generator | None = None) -> list[dict]:
    """Estimates of ONE example (x [1, ...]) as the number of log-SNR draws grows, for each rule; both
    estimators from the same draws. Rows: rule, n_samples, estimator, value, stderr, target (the estimand on
    the clipped range), exact (the untruncated answer: log ratio for i^s, ∫ over the real line for i^o)."""
    if x.shape[0] != 1:
        raise ValueError(f"convergence_study takes one example, x [1, ...]; got {tuple(x.shape)}")
    base = LogSNRSampling(loc=loc, scale=scale, clip=clip)
    lo, hi = base.support
    t_std, t_orth = case.pointwise_targets(x, cond, ref, lo, hi)
    e_std = float(case.log_ratio(x, cond, ref)[0])
    e_orth = float(case.pointwise_targets(x, cond, ref, -math.inf, math.inf)[1][0])
    rows = []
    for rule in rules:
        for n in n_samples:
            s = information_scores(case.world, x, cond[:, None], ref, n_samples=n, sampling=base.with_(rule=rule),
                                   generator=generator)
            rows.append(dict(rule=rule, n_samples=n, estimator="standard", value=float(s.standard[0, 0]),
                             stderr=float(s.standard_stderr[0, 0]), target=float(t_std[0]), exact=e_std))
            rows.append(dict(rule=rule, n_samples=n, estimator="orthogonal", value=float(s.orthogonal[0, 0]),
                             stderr=float(s.orthogonal_stderr[0, 0]), target=float(t_orth[0]), exact=e_orth))
    return rows


def joint_study(case: Case, n_examples: int, n_samples: int, *, loc: float = 1.0, scale: float = 2.0,
                clip: float = 3.0, rule: str = "logistic", generator: torch.Generator | None = None) -> list[dict]:
    """Mean of i^s and i^o over ``n_examples`` examples drawn from the joint vs the exact MI/CMI.
    Rows: case, estimator, mean, stderr (of the mean, over examples), target (on the clipped range), exact."""
    sampling = LogSNRSampling(rule=rule, loc=loc, scale=scale, clip=clip)
    x, cond, ref = case.sample(n_examples, generator=generator)
    s = information_scores(case.world, x, cond[:, None], ref, n_samples=n_samples, sampling=sampling,
                           generator=generator)
    target, exact = case.information(*sampling.support), case.information()
    rows = []
    for name, v in (("standard", s.standard[:, 0]), ("orthogonal", s.orthogonal[:, 0])):
        rows.append(dict(case=case.name, estimator=name, mean=float(v.mean()),
                         stderr=float(v.std() / math.sqrt(n_examples)), target=target, exact=exact,
                         n_examples=n_examples, n_samples=n_samples))
    return rows


def variance_study(case: Case, x: Tensor, cond: Tensor, ref: Tensor, *, evaluations: int = 200,
                   rules=("logistic", "uniform", "logistic_qmc", "uniform_qmc"), noise=("iid", "antithetic"),
                   n_repeats: int = 200, loc: float = 1.0, scale: float = 2.0, clip: float = 3.0,
                   generator: torch.Generator | None = None) -> list[dict]:
    """Spread of the estimates of ONE example (x [1, ...]) over ``n_repeats`` independent runs, at an equal
    number of denoiser evaluations per condition (``evaluations`` = n_samples × noise draws per λ; "iid":
    one noise draw per λ; "antithetic": two, ε and −ε, so half as many λ).

    Rows: rule, noise, estimator, n_samples, sd (empirical standard deviation of the estimate = its true
    standard error), stderr (root-mean-square of the reported standard errors: calibrated if ≈ sd), bias_z
    (mean error / (sd/√repeats), vs the exact estimand), sd_ratio (sd / sd of the paper's rule: i.i.d.
    logistic with iid noise, same estimator), s_over_o (sd of i^s / sd of i^o, same rule and noise).
    """
    if x.shape[0] != 1:
        raise ValueError(f"variance_study takes one example, x [1, ...]; got {tuple(x.shape)}")
    base = LogSNRSampling(loc=loc, scale=scale, clip=clip)
    targets = dict(zip(("standard", "orthogonal"), case.pointwise_targets(x, cond, ref, *base.support)))
    expand = lambda t: t.expand(n_repeats, *t.shape[1:])
    rows = []
    for rule in rules:
        for nz in noise:
            m = 2 if nz == "antithetic" else 1
            n = evaluations // m
            s = information_scores(case.world, expand(x), expand(cond)[:, None], expand(ref), n_samples=n,
                                   sampling=base.with_(rule=rule), noise_per_logsnr=m,
                                   antithetic=nz == "antithetic", generator=generator)
            for name, v, se in (("standard", s.standard[:, 0], s.standard_stderr[:, 0]),
                                ("orthogonal", s.orthogonal[:, 0], s.orthogonal_stderr[:, 0])):
                sd = float(v.std())
                rows.append(dict(rule=rule, noise=nz, estimator=name, n_samples=n, sd=sd,
                                 stderr=float(se.pow(2).mean().sqrt()),
                                 bias_z=float((v.mean() - targets[name][0]) / (sd / math.sqrt(n_repeats)))))
    sd = {(r["rule"], r["noise"], r["estimator"]): r["sd"] for r in rows}
    for r in rows:
        r["sd_ratio"] = r["sd"] / sd.get(("logistic", "iid", r["estimator"]), math.nan)
        r["s_over_o"] = sd[(r["rule"], r["noise"], "standard")] / sd[(r["rule"], r["noise"], "orthogonal")]
    return rows
