"""Adaptive relation testing: score the candidates of an example until its decision is significant.

The paper scores every candidate caption with a fixed 100 (λ, ε) draws. Most examples are decided long before:
this module draws in blocks shared by all candidates and, after each block, runs a sequential test on the paired
per-draw differences of the chosen score (docs/protocol.md#relation-testing; an option of the corrected protocol,
never of the faithful one).

The rule (:class:`SequentialRule`), for one example with M candidates:

1. Draw ``first_look`` (λ, ε) draws, shared by every still-active candidate (and the null prompt, when the score
   needs it); then look, and after every further ``block`` draws look again, up to ``max_samples`` draws.
2. At a look after n draws, the *leader* L is the active candidate with the highest mean score. For every other
   active candidate j, the paired differences d = s_L − s_j over the n draws give t = mean(d) / (sd(d)/√n).
   j is dropped when t > c − δ/(sd(d)/√n), where c is the one-sided Student-t quantile with n − 1 degrees of
   freedom at level α / (K (M − 1)), K the number of looks, and δ ≥ 0 the indifference zone: ``indifference``
   (nats) plus ``resolution`` ρ times sd(d)/√N, the margin's standard error at the cap of N draws (0 and 0 =
   plain significance).
3. The example stops when one candidate is left (its prediction) or at ``max_samples`` (the leader then).

**Error rate.** Each drop is a one-sided paired t-test of "μ_L > μ_j − δ". The best candidate (highest expected
score) is dropped only if one of at most K (M − 1) such tests rejects wrongly, so by the union bound (Bonferroni
over looks and rivals) P(the prediction is worse than the best candidate by more than δ) ≤ α, under the t-test's
normal approximation of the mean of n per-draw differences.

**Resolution.** The fixed run decides a near-tie (a margin of a standard error or two at N draws) by its noise, and
the plain rule (δ = 0) runs every such case to the cap to do as much. With ``resolution`` ρ the zone is measured in
the fixed run's own precision: the rule then promises a prediction within ρ standard errors (at N draws) of the
best, with probability ≥ 1 − α, and stops near-ties early. The zone is estimated (sd(d) at the look), so the promise
is approximate; how much accuracy it costs against the fixed run is measured, not assumed. It also caps the draws:
once c/√U < ρ/√U_cap the threshold is below zero and every rival goes, so no example takes more than about
(c/ρ)² of the cap (ρ = 3 and two candidates: about 80 of 100 draws).

The benchmark (benchmarks/adaptive_relation_testing.py) reports how often the adaptive decision differs from the
fixed 100-draw decision on the same draws; :func:`replay` evaluates a rule on a fixed run's stored draws without
evaluating the denoiser again.

**Units.** With i.i.d. log-SNR draws a unit is one draw. With ``qmc=True`` each block is one randomized-QMC lattice
of ``block`` log-SNR points with one random shift (:class:`~infodecomp.logsnr.LogSNRSampling` ``logistic_qmc``),
and the unit of the test is the block mean (the points of a lattice are not independent); that needs at least two
blocks before the first look.

**The null prompt.** i^o = ½∫E‖ε̂(z|y) − ε̂(z|∅)‖² needs ε̂(·|∅). i^s and the denoising error do not need it to
rank candidates: the null's term of i^s = ½∫E[‖ε − ε̂(z|∅)‖² − ‖ε − ε̂(z|y)‖²] is common to all candidates and cancels
from every difference. With ``evaluate_null=False`` (allowed for ``method`` "info_s" and "mmse") the null is not
evaluated, one denoiser row per draw fewer, and the i^s values returned are relative to the first candidate
(their differences, the prediction and the test are those of i^s).

Draws are taken from ``generator`` in the same order whatever the active set, so a run with the rule switched off
(:meth:`SequentialRule.fixed`) sees the same draws as a prefix: the fixed and adaptive decisions of one example are
paired (common random numbers), which is how the benchmark compares them.
"""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass, field

import numpy as np
import torch
from scipy import stats
from torch import Tensor

from ..estimators import information_scores
from ..logsnr import LogSNRSampling

__all__ = ["SequentialRule", "SequentialScores", "sequential_scores", "replay", "Replay", "SEQUENTIAL_METHODS"]

#: The scores the rule can decide by (higher = better): i^o, i^s, −MMSE (the names of relation_testing.METHODS).
SEQUENTIAL_METHODS = ("info_o", "info_s", "mmse")


def _count(name: str, v, minimum: int = 1) -> int:
    if isinstance(v, bool) or not isinstance(v, numbers.Integral) or v < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {v!r}")
    return int(v)


def _leader(units: np.ndarray, active: list[int]) -> int:
    """The active candidate with the highest mean over ``units [U, M]`` (the first one on a tie)."""
    return active[int(np.argmax([units[:, j].mean() for j in active]))]


def _settled(active: list[int], same: np.ndarray) -> bool:
    """One candidate (or exact copies of it) is left."""
    return all(same[active[0], j] for j in active)


@dataclass(frozen=True)
class SequentialRule:
    """When to stop scoring an example (see the module docstring for the test and its error rate).

    alpha: the error rate: P(the prediction is worse than the best candidate by more than the zone δ + ρ·se at the
        cap, ``indifference`` + ``resolution`` standard errors) ≤ alpha.
        0 switches the rule off (every example takes ``max_samples`` draws: the fixed protocol on the same draws).
    block: draws between two looks. first_look: draws before the first look (a multiple of ``block``; with
        ``qmc`` at least two blocks). max_samples: the cap (the paper's 100; a multiple of ``block``).
    indifference: δ ≥ 0 in nats of the score: rivals that cannot be better than the leader by more than δ are
        dropped too. 0 (default): only significantly worse rivals are dropped.
    resolution: ρ ≥ 0, an indifference zone relative to the fixed run's precision: δ grows by ρ times the standard
        error the margin would have at ``max_samples`` draws (its per-unit spread / √(units at the cap)). A rival
        is then dropped once it cannot be better than the leader by more than the fixed run could resolve, so
        near-ties, which the fixed run decides by its noise, stop early. 0 (default): off.
    qmc: each block is one randomized-QMC lattice of log-SNR points (the unit of the test is then a block).
    antithetic: draws come in antithetic pairs (λ, ε) and (λ, −ε) (``block`` even); the unit of the test is then
        a pair (or, with ``qmc``, still a block). The linear term of the noise cancels from i^s differences.
    """

    alpha: float = 0.05
    block: int = 10
    first_look: int = 10
    max_samples: int = 100
    indifference: float = 0.0
    qmc: bool = False
    antithetic: bool = False
    resolution: float = 0.0

    def __post_init__(self):
        if isinstance(self.alpha, bool) or not isinstance(self.alpha, numbers.Real) or not 0 <= self.alpha < 1:
            raise ValueError(f"alpha must be a number in [0, 1) (0 = the rule off), got {self.alpha!r}")
        for name in ("block", "first_look", "max_samples"):
            object.__setattr__(self, name, _count(name, getattr(self, name)))
        if self.first_look % self.block or self.max_samples % self.block:
            raise ValueError(f"first_look ({self.first_look}) and max_samples ({self.max_samples}) must be multiples "
                             f"of block ({self.block}): the draws come in blocks")
        if self.first_look > self.max_samples:
            raise ValueError(f"first_look ({self.first_look}) must be <= max_samples ({self.max_samples})")
        if not isinstance(self.antithetic, bool):
            raise ValueError(f"antithetic must be True or False, got {self.antithetic!r}")
        if self.antithetic and self.block % 2:
            raise ValueError(f"antithetic draws come in pairs: block must be even, got {self.block}")
        if self.units(self.first_look) < 2:
            raise ValueError(f"the first look needs at least 2 independent units for a standard error; got "
                             f"first_look={self.first_look} with block={self.block}, qmc={self.qmc} and "
                             f"antithetic={self.antithetic} ({self.unit_name}s are the units)")
        if (isinstance(self.indifference, bool) or not isinstance(self.indifference, numbers.Real)
                or not self.indifference >= 0 or not math.isfinite(self.indifference)):
            raise ValueError(f"indifference must be a finite number >= 0 (nats), got {self.indifference!r}")
        if not isinstance(self.qmc, bool):
            raise ValueError(f"qmc must be True or False, got {self.qmc!r}")
        if (isinstance(self.resolution, bool) or not isinstance(self.resolution, numbers.Real)
                or not self.resolution >= 0 or not math.isfinite(self.resolution)):
            raise ValueError(f"resolution must be a finite number >= 0 (standard errors of the margin at "
                             f"max_samples draws), got {self.resolution!r}")
        object.__setattr__(self, "alpha", float(self.alpha))
        object.__setattr__(self, "indifference", float(self.indifference))
        object.__setattr__(self, "resolution", float(self.resolution))

    @classmethod
    def fixed(cls, max_samples: int = 100, *, block: int = 10, qmc: bool = False,
              antithetic: bool = False) -> "SequentialRule":
        """The rule switched off: every example takes ``max_samples`` draws (the fixed protocol, same draws)."""
        return cls(alpha=0.0, block=block, first_look=max_samples, max_samples=max_samples, qmc=qmc,
                   antithetic=antithetic)

    @property
    def unit_name(self) -> str:
        return "block" if self.qmc else "antithetic pair" if self.antithetic else "draw"

    @property
    def looks(self) -> list[int]:
        """Draw counts at which the test looks: first_look, first_look + block, …, max_samples."""
        return list(range(self.first_look, self.max_samples + 1, self.block))

    def units(self, n_draws: int) -> int:
        """Independent units among ``n_draws`` draws: the draws (i.i.d.), the pairs (antithetic) or the blocks (qmc)."""
        return n_draws // self.block if self.qmc else n_draws // 2 if self.antithetic else n_draws

    def critical(self, n_units: int, n_candidates: int) -> float:
        """The t threshold at a look with ``n_units`` units among ``n_candidates`` candidates (inf when off)."""
        if self.alpha == 0 or n_candidates < 2:
            return math.inf
        level = self.alpha / (len(self.looks) * (n_candidates - 1))
        return float(stats.t.ppf(1.0 - level, n_units - 1))

    def look(self, units: np.ndarray, active: list[int], same: np.ndarray | None = None) -> list[int]:
        """The candidates kept at a look: ``units [U, M]`` the deciding score's units so far (every ``active``
        candidate has all U), ``same [M, M]`` exact duplicates (never dropped for each other). The leader is the
        active candidate with the highest mean; a rival j goes when mean(d) > c·se − δ − ρ·sd/√U_cap for the
        paired differences d = s_leader − s_j (module docstring)."""
        U, M = units.shape
        leader = _leader(units, active)
        crit = self.critical(U, M)
        cap_units = self.units(self.max_samples)
        keep = []
        for j in active:
            if j == leader or (same is not None and same[leader, j]):
                keep.append(j)
                continue
            d = units[:, leader] - units[:, j]
            sd = float(np.std(d, ddof=1))
            se = sd / math.sqrt(U)
            zone = self.indifference + self.resolution * sd / math.sqrt(cap_units)
            if se > 0 and float(np.mean(d)) > crit * se - zone:
                continue
            if se == 0 and float(np.mean(d)) > 0 and self.alpha > 0:  # an exact, noiseless difference
                continue
            keep.append(j)
        return keep


@dataclass(frozen=True)
class SequentialScores:
    """The result of :func:`sequential_scores` for one example (candidates in the order given).

    method: the score that decided. prediction: the index of the chosen candidate. decided: True when the test
    left one candidate (possibly at the cap); False when the cap was reached with rivals left (the leader wins).
    n_samples: draws taken; n_evaluations: denoiser rows used.
    units: ``{method: [U, M]}`` per-unit values of every score computed (NaN once a candidate was dropped);
    "info_o" and the null's terms only when the null was evaluated. n_draws: [M] draws each candidate was evaluated
    on. dropped_at: [M] the draw count of the look that dropped it (0: never dropped).
    """

    method: str
    prediction: int
    decided: bool
    n_samples: int
    n_evaluations: int
    units: dict = field(repr=False)
    n_draws: np.ndarray = field(repr=False)
    dropped_at: np.ndarray = field(repr=False)
    null_evaluated: bool = True

    def mean(self, method: str | None = None) -> np.ndarray:
        """[M] each candidate's mean score over the draws it was evaluated on (higher = better)."""
        return np.nanmean(self.units[method or self.method], axis=0)

    def stderr(self, method: str | None = None) -> np.ndarray:
        """[M] standard errors of :meth:`mean` (NaN with fewer than two units)."""
        u = self.units[method or self.method]
        k = np.sum(np.isfinite(u), axis=0)
        with np.errstate(invalid="ignore", divide="ignore"):
            sd = np.array([np.nanstd(u[:, j], ddof=1) if k[j] > 1 else np.nan for j in range(u.shape[1])])
            return sd / np.sqrt(k)

    def difference(self, i: int, j: int, method: str | None = None) -> tuple[float, float]:
        """(mean of s_i − s_j, its paired standard error) over the units where both were evaluated."""
        u = self.units[method or self.method]
        both = np.isfinite(u[:, i]) & np.isfinite(u[:, j])
        d = u[both, i] - u[both, j]
        se = float(np.std(d, ddof=1) / math.sqrt(d.size)) if d.size > 1 else math.nan
        return float(np.mean(d)) if d.size else math.nan, se


def sequential_scores(denoiser, x: Tensor, conds: Tensor, null: Tensor, *, method: str = "info_o",
                      rule: SequentialRule | None = None, sampling: LogSNRSampling | None = None,
                      evaluate_null: bool | None = None, chunk_size: int = 256,
                      generator: torch.Generator | None = None) -> SequentialScores:
    """Score M candidate conditions of one example under the sequential ``rule`` (module docstring).

    denoiser, x ``[*X]``, conds ``[M, *C]``, null ``[*C]``: as :func:`~infodecomp.experiments.relation_testing.
    score_candidates`. method: the deciding score, "info_o" (i^o, needs the null), "info_s" or "mmse" (−MMSE).
    sampling: the log-SNR rule (default: the corrected truncated logistic, clip 3), or a proposal fitted to the
    margin (:func:`infodecomp.proposals.fitted_proposal` with quantity "margin_s" / "margin_o": exact weights, so
    the scores stay unbiased); with ``rule.qmc`` its ``logistic``/``uniform``/``fitted`` rule becomes the matching
    randomized-QMC (stratified) one. evaluate_null: default True for
    "info_o", False otherwise (the null is not needed to rank by i^s or −MMSE; True gives all three scores).
    Identical candidate conditions are allowed (they tie exactly and neither is dropped in favour of the other).
    """
    if method not in SEQUENTIAL_METHODS:
        raise ValueError(f"method must be one of {SEQUENTIAL_METHODS}, got {method!r}")
    rule = rule if rule is not None else SequentialRule()
    if not isinstance(rule, SequentialRule):
        raise TypeError(f"rule must be a SequentialRule, got {type(rule).__name__}")
    if evaluate_null is None:
        evaluate_null = method == "info_o"
    if method == "info_o" and not evaluate_null:
        raise ValueError("method 'info_o' needs the null prompt's predictions: evaluate_null must be True")
    if not isinstance(conds, Tensor) or not isinstance(null, Tensor) or not isinstance(x, Tensor):
        raise TypeError("x, conds and null must be tensors")
    if conds.ndim != null.ndim + 1 or tuple(conds.shape[1:]) != tuple(null.shape):
        raise ValueError(f"conds must be [M, *C] with null [*C]; got conds {tuple(conds.shape)} and null "
                         f"{tuple(null.shape)}")
    M = int(conds.shape[0])
    if M < 2:
        raise ValueError(f"need at least two candidates to decide between, got {M}")
    if x.ndim >= 2 and x.shape[0] == 1:
        x = x[0]
    sampling = sampling if sampling is not None else LogSNRSampling()
    if rule.qmc:
        base = sampling.rule.removesuffix("_qmc")
        if base not in ("logistic", "uniform", "fitted") or sampling.reference_uniform_weight:
            raise ValueError(f"qmc needs the logistic, uniform or fitted log-SNR rule, got {sampling.rule!r}")
        sampling = sampling.with_(rule=f"{base}_qmc", replicates=1)
    elif sampling.is_qmc:
        raise ValueError(f"sampling {sampling.rule!r} is randomized QMC: set SequentialRule(qmc=True) instead, so the "
                         "test uses block means as its units")

    same = (conds.reshape(M, -1)[:, None] == conds.reshape(M, -1)[None]).all(-1).cpu().numpy()  # exact duplicates
    methods = ("info_o", "info_s", "mmse") if evaluate_null else ("info_s", "mmse")
    chunks: dict[str, list[np.ndarray]] = {m: [] for m in methods}
    active = list(range(M))
    dropped_at = np.zeros(M, dtype=np.int64)
    n_draws = np.zeros(M, dtype=np.int64)
    n, evaluations, decided = 0, 0, False
    looks = set(rule.looks)
    b = rule.block
    noise = 2 if rule.antithetic else 1  # noise draws per log-SNR point: (ε, −ε)
    # one block of b draws: with qmc one lattice of b / noise points (one unit), else b / noise i.i.d. points (units)
    reps, per = (1, b // noise) if rule.qmc else (b // noise, 1)
    xr = x.unsqueeze(0).expand(reps, *x.shape)
    while n < rule.max_samples:
        act = torch.as_tensor(active, device=conds.device)
        if evaluate_null:
            cr = conds[act].unsqueeze(0).expand(reps, len(active), *conds.shape[1:])
            ref = null
        else:  # the first active candidate is the reference: i^s relative to it, one row fewer per draw
            cr = conds[act[1:]].unsqueeze(0).expand(reps, len(active) - 1, *conds.shape[1:])
            ref = conds[active[0]]
        rr = ref.unsqueeze(0).expand(reps, *ref.shape)
        s = information_scores(denoiser, xr, cr, rr, n_samples=per, sampling=sampling, share_logsnr=False,
                               noise_per_logsnr=noise, antithetic=rule.antithetic,
                               chunk_size=max(int(chunk_size), cr.shape[1] + 1), generator=generator)
        evaluations += b * (cr.shape[1] + 1)
        block_vals = {m: np.full((reps, M), np.nan) for m in methods}
        if evaluate_null:
            block_vals["info_o"][:, active] = s.orthogonal.double().cpu().numpy()
            block_vals["info_s"][:, active] = s.standard.double().cpu().numpy()
            block_vals["mmse"][:, active] = -s.mmse.double().cpu().numpy()
        else:
            block_vals["info_s"][:, active[0]] = 0.0
            block_vals["info_s"][:, active[1:]] = s.standard.double().cpu().numpy()
            block_vals["mmse"][:, active[0]] = -s.ref_mmse.double().cpu().numpy()
            block_vals["mmse"][:, active[1:]] = -s.mmse.double().cpu().numpy()
        for m in methods:
            chunks[m].append(block_vals[m])
        n += b
        n_draws[active] += b
        if n not in looks:
            continue
        keep = rule.look(np.concatenate(chunks[method]), active, same)
        dropped_at[sorted(set(active) - set(keep))] = n
        active = keep
        if _settled(active, same):
            decided = True
            break
    units = {m: np.concatenate(v) for m, v in chunks.items()}
    prediction = _leader(units[method], active)  # the survivors share every unit
    return SequentialScores(method=method, prediction=int(prediction), decided=decided, n_samples=int(n),
                            n_evaluations=int(evaluations), units=units, n_draws=n_draws, dropped_at=dropped_at,
                            null_evaluated=bool(evaluate_null))


@dataclass(frozen=True)
class Replay:
    """What the rule would have done on a fixed run's draws (:func:`replay`): the prediction, whether the test
    decided it, the draws taken and the denoiser rows they cost."""

    prediction: int
    decided: bool
    n_samples: int
    n_evaluations: int


def replay(units: np.ndarray, rule: SequentialRule, *, evaluate_null: bool = False,
           same: np.ndarray | None = None) -> Replay:
    """Run ``rule`` on the stored units of a fixed run instead of on a denoiser.

    units ``[U, M]``: the deciding score of M candidates on U units of a run with the rule switched off and drawn
    the same way (:meth:`SequentialRule.fixed` with the same block, qmc and antithetic; the ``units`` of its
    :class:`SequentialScores`), U ≥ the cap's units. Draws come in the same order whatever the active set, so
    :func:`sequential_scores` with ``rule`` and the same generator would see exactly these values: the replay
    gives its prediction and cost without a single denoiser evaluation (a sweep over rules costs one fixed run).
    The units must be the rule's kind (draws, antithetic pairs or lattice blocks): that cannot be checked here.
    same ``[M, M]``: exact duplicate candidates, never dropped for each other (default: identical columns; the
    live scorer compares the conditions). evaluate_null: count the null prompt's row per draw (the i^o rule), else
    the i^s rule's rows (the first active candidate is the reference)."""
    u = np.asarray(units, dtype=np.float64)
    if not isinstance(rule, SequentialRule):
        raise TypeError(f"rule must be a SequentialRule, got {type(rule).__name__}")
    if u.ndim != 2 or u.shape[1] < 2:
        raise ValueError(f"units must be [U, M] with M >= 2 candidates, got shape {u.shape}")
    if not isinstance(evaluate_null, bool):
        raise ValueError(f"evaluate_null must be True or False, got {evaluate_null!r}")
    need = rule.units(rule.max_samples)
    if u.shape[0] < need:
        raise ValueError(f"units must hold the {need} units of {rule.max_samples} draws (a fixed run); got "
                         f"{u.shape[0]} rows")
    if not np.isfinite(u[:need]).all():
        raise ValueError("units have missing values (NaN or inf): every candidate must be scored on every unit, "
                         "as in a fixed run (an adaptive run leaves NaN after a candidate is dropped)")
    M = u.shape[1]
    if same is None:
        same = (u[:need, :, None] == u[:need, None, :]).all(0)
    same = np.asarray(same, dtype=bool)
    if same.shape != (M, M):
        raise ValueError(f"same must be [M, M] = [{M}, {M}], got shape {same.shape}")
    active, n, rows, decided = list(range(M)), 0, 0, False
    looks = set(rule.looks)
    while n < rule.max_samples:
        rows += rule.block * (len(active) + (1 if evaluate_null else 0))
        n += rule.block
        if n not in looks:
            continue
        active = rule.look(u[:rule.units(n)], active, same)
        if _settled(active, same):
            decided = True
            break
    return Replay(prediction=_leader(u[:rule.units(n)], active), decided=decided, n_samples=n, n_evaluations=rows)

