"""Adaptive relation testing (infodecomp.experiments.sequential): the rule, its error rate, its bookkeeping.

Toy denoisers make the answers known: a denoiser that ignores z gives every draw the same per-candidate gap up to
the log-SNR weight (so a large gap is decided at the first look); a denoiser that reads one coordinate of z per
candidate gives two candidates the same expected score with noisy per-draw differences (so any drop is an error).
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from infodecomp import analytic
from infodecomp.experiments import relation_testing as rt
from infodecomp.experiments.sequential import SequentialRule, replay, sequential_scores
from infodecomp.logsnr import LogSNRSampling


class ConstantDenoiser:
    """ε̂(z, λ, c) = c (a vector the shape of z), whatever z: i^o of c against the null 0 is ½·w(λ)·‖c‖²."""

    def __call__(self, z, logsnr, cond):
        return cond.reshape(z.shape).to(z.dtype)


class CoordinateDenoiser:
    """ε̂(z, λ, c) = z ⊙ c for a 0/1 mask c: candidates reading different coordinates of an i.i.d. z have the
    same expected i^o (by symmetry) and noisy per-draw differences."""

    def __call__(self, z, logsnr, cond):
        return z * cond.reshape(z.shape).to(z.dtype)


def _gen(seed=0):
    return torch.Generator().manual_seed(seed)


# ─────────────────────────────────────────────── the rule ───────────────────────────────────────────────

@pytest.mark.parametrize("kwargs, match", [
    (dict(alpha=1.0), "alpha"), (dict(alpha=-0.1), "alpha"), (dict(block=0), "block"),
    (dict(block=10, first_look=15), "multiples"), (dict(max_samples=95), "multiples"),
    (dict(first_look=110), "first_look"), (dict(block=10, first_look=10, qmc=True), "2 independent units"),
    (dict(indifference=-1.0), "indifference"), (dict(indifference=math.inf), "indifference"),
    (dict(qmc="yes"), "qmc"), (dict(antithetic=1), "antithetic"), (dict(block=5, first_look=5, antithetic=True), "even"),
    (dict(block=2, first_look=2, antithetic=True), "2 independent units"),
    (dict(resolution=-0.5), "resolution"), (dict(resolution=math.nan), "resolution"),
    (dict(resolution=True), "resolution"),
])
def test_bad_rules_are_refused(kwargs, match):
    with pytest.raises(ValueError, match=match):
        SequentialRule(**kwargs)


def test_looks_units_and_the_bonferroni_threshold():
    from scipy import stats

    rule = SequentialRule(alpha=0.05, block=10, first_look=20)
    assert rule.looks == [20, 30, 40, 50, 60, 70, 80, 90, 100]
    assert rule.units(40) == 40 and SequentialRule(block=5, first_look=10, qmc=True).units(40) == 8
    # 9 looks, 3 rivals: each test at 0.05 / 27, one-sided, n − 1 degrees of freedom
    assert rule.critical(20, 4) == pytest.approx(stats.t.ppf(1 - 0.05 / 27, 19))
    assert SequentialRule.fixed().critical(50, 2) == math.inf and SequentialRule.fixed().looks == [100]


# ──────────────────────────────────────── decisions with known answers ────────────────────────────────────────

def test_a_clear_winner_is_decided_at_the_first_look_with_the_rows_it_says():
    d = 4
    conds = torch.tensor([[1.0] * d, [0.1] * d, [0.0, 0.0, 0.2, 0.0]])  # i^o ∝ ‖c‖²: candidate 0 far ahead
    null = torch.zeros(d)
    calls = []

    def counting(z, lam, c):
        calls.append(z.shape[0])
        return ConstantDenoiser()(z, lam, c)

    s = sequential_scores(counting, torch.zeros(d), conds, null, rule=SequentialRule(), generator=_gen())
    assert s.prediction == 0 and s.decided and s.n_samples == 10
    assert s.n_evaluations == sum(calls) == 10 * (3 + 1)
    assert list(s.dropped_at) == [0, 10, 10] and list(s.n_draws) == [10, 10, 10]
    # the per-draw i^o is ½ w(λ) ‖c‖²: the means' ratios are the ‖c‖² ratios exactly
    m = s.mean("info_o")
    assert m[1] / m[0] == pytest.approx(0.01) and m[2] / m[0] == pytest.approx(0.04 / 4)


def test_the_fixed_rule_takes_every_draw_and_adaptive_draws_are_its_prefix(mworld):
    x, labels = mworld.sample(3, generator=_gen(1))
    conds = torch.stack([labels[0], mworld.component_labels[3]])
    null = mworld.null(1)[0]
    f = sequential_scores(mworld, x[0], conds, null, rule=SequentialRule.fixed(), generator=_gen(7))
    a = sequential_scores(mworld, x[0], conds, null, rule=SequentialRule(alpha=0.2), generator=_gen(7))
    assert f.n_samples == 100 and f.n_evaluations == 300 and not f.decided and list(f.dropped_at) == [0, 0]
    assert a.n_samples < 100  # decided early (the two components are far apart at this x)
    for m in ("info_o", "info_s", "mmse"):  # common random numbers: the same draws, in the same order
        ua = a.units[m]
        ok = np.isfinite(ua)
        np.testing.assert_allclose(ua[ok], f.units[m][: len(ua)][ok], rtol=1e-12)


def test_without_the_null_i_s_differences_and_decisions_are_unchanged(mworld):
    x, labels = mworld.sample(4, generator=_gen(2))
    null = mworld.null(1)[0]
    for b in range(4):
        conds = torch.stack([mworld.component_labels[k] for k in range(4)])
        kw = dict(method="info_s", rule=SequentialRule(alpha=0.1), sampling=LogSNRSampling())
        with_null = sequential_scores(mworld, x[b], conds, null, evaluate_null=True, generator=_gen(b), **kw)
        without = sequential_scores(mworld, x[b], conds, null, evaluate_null=False, generator=_gen(b), **kw)
        assert without.prediction == with_null.prediction
        assert list(without.dropped_at) == list(with_null.dropped_at)
        # one row fewer per draw: the rows saved are exactly the null's, one per draw taken
        assert with_null.n_evaluations - without.n_evaluations == with_null.n_samples
        assert "info_o" not in without.units and not without.null_evaluated
        u1, u0 = with_null.units["info_s"], without.units["info_s"]
        p = with_null.prediction
        for j in range(4):  # differences to the prediction, on the draws both were evaluated
            both = np.isfinite(u1[:, j])
            np.testing.assert_allclose((u0[:, p] - u0[:, j])[both], (u1[:, p] - u1[:, j])[both], atol=1e-9)


def test_equal_candidates_are_dropped_at_most_at_the_stated_error_rate():
    """Two candidates with the same expected i^o: every decision is an error. The Bonferroni-corrected rule keeps
    the rate under alpha (binomial slack of two standard errors); the same test without the correction over
    looks and rivals would exceed it."""
    d, alpha, n = 2, 0.2, 200
    conds = torch.eye(d)  # candidate j reads coordinate j of z
    null = torch.zeros(d)
    x = torch.zeros(d)  # symmetric: both coordinates are pure noise
    rule = SequentialRule(alpha=alpha, block=5, first_look=5)
    decided = [sequential_scores(CoordinateDenoiser(), x, conds, null, rule=rule, generator=_gen(s)).decided
               for s in range(n)]
    rate = float(np.mean(decided))
    assert rate <= alpha + 2 * math.sqrt(alpha * (1 - alpha) / n)
    # and the rule is not vacuous: without the correction (alpha × looks × rivals) it decides far more often
    loose = SequentialRule(alpha=min(0.99, alpha * len(rule.looks)), block=5, first_look=5)
    loose_rate = np.mean([sequential_scores(CoordinateDenoiser(), x, conds, null, rule=loose, generator=_gen(s)).decided
                          for s in range(n)])
    assert loose_rate > rate


def test_identical_candidates_tie_and_the_indifference_zone_stops_near_ties():
    d = 3
    null = torch.zeros(d)
    same = torch.tensor([[1.0, 0.0, 0.0], [1.0, 0.0, 0.0]])
    s = sequential_scores(ConstantDenoiser(), torch.zeros(d), same, null, generator=_gen())
    assert s.decided and s.n_samples == 10 and list(s.dropped_at) == [0, 0]  # an exact tie: more draws cannot help
    conds = torch.eye(d)[:2]
    plain = sequential_scores(CoordinateDenoiser(), torch.zeros(d), conds, null, generator=_gen(3))
    wide = sequential_scores(CoordinateDenoiser(), torch.zeros(d), conds, null, generator=_gen(3),
                             rule=SequentialRule(indifference=10.0))
    assert plain.n_samples == 100 and not plain.decided  # a true tie with noise: no significance, the cap
    assert wide.decided and wide.n_samples == 10  # both within 10 nats of each other: either is fine


def test_the_resolution_zone_is_rho_standard_errors_at_the_cap():
    """Two candidates, differences d with a known mean and spread at the first look: the rival is dropped exactly
    when mean(d) > c·sd/√n − ρ·sd/√(units at the cap)."""
    from scipy import stats

    n, rho = 10, 1.5
    rule = SequentialRule(alpha=0.05, resolution=rho)
    base = np.array([1.0, -1.0] * (n // 2))  # mean 0, sd √(n/(n−1))
    sd = float(np.std(base, ddof=1))
    c = float(stats.t.ppf(1 - 0.05 / 10, n - 1))
    edge = c * sd / math.sqrt(n) - rho * sd / math.sqrt(100)
    for shift, dropped in ((edge + 1e-6, True), (edge - 1e-6, False)):
        u = np.stack([base + shift, np.zeros(n)], axis=1)  # candidate 0 leads by `shift` on average
        assert rule.look(u, [0, 1]) == ([0] if dropped else [0, 1])
    # ρ = 0 is the plain test: the same margin is not enough
    assert SequentialRule(alpha=0.05).look(np.stack([base + edge + 1e-6, np.zeros(n)], axis=1), [0, 1]) == [0, 1]
    # the cap is counted in units (antithetic pairs: 50 of them at 100 draws), and δ adds to the zone
    rule = SequentialRule(alpha=0.05, block=20, first_look=20, antithetic=True, indifference=0.1, resolution=rho)
    c5 = float(stats.t.ppf(1 - 0.05 / 5, n - 1))  # 10 pairs at the first look, K = 5 looks
    edge = c5 * sd / math.sqrt(n) - 0.1 - rho * sd / math.sqrt(50)
    for shift, dropped in ((edge + 1e-6, True), (edge - 1e-6, False)):
        u = np.stack([base + shift, np.zeros(n)], axis=1)
        assert rule.look(u, [0, 1]) == ([0] if dropped else [0, 1])


def test_a_resolution_stops_true_ties_early_and_keeps_clear_winners():
    d = 3
    null = torch.zeros(d)
    conds = torch.eye(d)[:2]  # the same expected i^o: a true tie with noisy differences
    plain = [sequential_scores(CoordinateDenoiser(), torch.zeros(d), conds, null, generator=_gen(s))
             for s in range(20)]
    zoned = [sequential_scores(CoordinateDenoiser(), torch.zeros(d), conds, null, generator=_gen(s),
                               rule=SequentialRule(resolution=4.0)) for s in range(20)]
    assert np.mean([p.n_samples for p in plain]) > 90  # the plain test runs a tie to the cap
    assert np.mean([z.n_samples for z in zoned]) < 60  # within what the fixed run could resolve: stopped
    # a clear winner is still the winner, at the first look
    gap = torch.tensor([[1.0, 1.0, 1.0], [0.2, 0.2, 0.2]])
    s = sequential_scores(ConstantDenoiser(), torch.zeros(d), gap, null, rule=SequentialRule(resolution=2.0),
                          generator=_gen())
    assert s.prediction == 0 and s.n_samples == 10


@pytest.mark.parametrize("rule", [
    SequentialRule(alpha=0.1), SequentialRule(alpha=0.05, resolution=1.0), SequentialRule(block=5, first_look=15),
    SequentialRule(indifference=0.05, block=20, first_look=20),
    SequentialRule(block=5, first_look=10, qmc=True, resolution=0.5),
    SequentialRule(block=10, first_look=10, antithetic=True),
], ids=["plain", "resolution", "block5", "indifference", "qmc", "antithetic"])
@pytest.mark.parametrize("evaluate_null", [False, True], ids=["i_s", "i_o"])
def test_replay_on_a_fixed_run_equals_the_live_rule(mworld, rule, evaluate_null):
    """The live rule's prediction, draws and rows equal the replay's on the fixed run drawn the same way."""
    x, _ = mworld.sample(6, generator=_gen(5))
    conds = torch.stack([mworld.component_labels[k] for k in range(4)])
    null = mworld.null(1)[0]
    method = "info_o" if evaluate_null else "info_s"
    fixed = SequentialRule.fixed(rule.max_samples, block=rule.block, qmc=rule.qmc, antithetic=rule.antithetic)
    for b in range(6):
        kw = dict(method=method, evaluate_null=evaluate_null)
        f = sequential_scores(mworld, x[b], conds, null, rule=fixed, generator=_gen(b), **kw)
        live = sequential_scores(mworld, x[b], conds, null, rule=rule, generator=_gen(b), **kw)
        r = replay(f.units[method], rule, evaluate_null=evaluate_null)
        assert (r.prediction, r.decided, r.n_samples, r.n_evaluations) == (
            live.prediction, live.decided, live.n_samples, live.n_evaluations)


def test_replay_refuses_what_it_cannot_replay():
    with pytest.raises(ValueError, match=r"\[U, M\]"):
        replay(np.zeros((100, 1)), SequentialRule())
    with pytest.raises(ValueError, match="100 units"):
        replay(np.zeros((50, 3)), SequentialRule())
    u = np.zeros((100, 2))
    u[40, 1] = np.nan  # a candidate dropped by an adaptive run: not a fixed run
    with pytest.raises(ValueError, match="missing values"):
        replay(u, SequentialRule())
    with pytest.raises(ValueError, match=r"same must be \[M, M\]"):
        replay(np.zeros((100, 2)), SequentialRule(), same=np.eye(3, dtype=bool))
    with pytest.raises(ValueError, match="evaluate_null"):
        replay(np.zeros((100, 2)), SequentialRule(), evaluate_null="yes")
    with pytest.raises(TypeError, match="SequentialRule"):
        replay(np.zeros((100, 2)), {"alpha": 0.05})


def test_qmc_blocks_are_the_units(mworld):
    x, labels = mworld.sample(1, generator=_gen(4))
    conds = torch.stack([mworld.component_labels[k] for k in range(4)])
    rule = SequentialRule(block=5, first_look=10, qmc=True)
    s = sequential_scores(mworld, x[0], conds, mworld.null(1)[0], rule=rule, generator=_gen(0))
    assert s.units["info_o"].shape[0] == s.n_samples // 5
    with pytest.raises(ValueError, match="SequentialRule\\(qmc=True\\)"):
        sequential_scores(mworld, x[0], conds, mworld.null(1)[0], sampling=LogSNRSampling(rule="logistic_qmc"))


def test_antithetic_pairs_are_the_units_and_cancel_the_linear_noise_term():
    """ε̂(z) = a·z: the i^s difference of two candidates a, b per draw is ½w(‖ε − bz‖² − ‖ε − az‖²), whose part linear
    in ε cancels in the mean of a pair (ε, −ε). With a narrow, uniform log-SNR range (so λ adds little spread) and a large
    x (so the linear term dominates), antithetic pairs give a smaller standard error at equal denoiser rows."""
    d = 8
    scale = lambda z, lam, c: z * c.reshape(z.shape[0], -1)[:, :1].reshape(-1, *([1] * (z.ndim - 1)))
    conds = torch.tensor([[0.1] * d, [0.7] * d])  # the linear coefficient c(1 − cσ) differs between them
    null = torch.zeros(d)
    x = torch.full((d,), 6.0)
    narrow = LogSNRSampling(rule="uniform", loc=0.0, scale=0.005, clip=3.0)  # constant weight, λ ∈ [−0.015, 0.015]
    kw = dict(method="info_s", sampling=narrow)
    iid = sequential_scores(scale, x, conds, null, rule=SequentialRule.fixed(), generator=_gen(0), **kw)
    anti = sequential_scores(scale, x, conds, null, rule=SequentialRule.fixed(antithetic=True), generator=_gen(0), **kw)
    assert anti.units["info_s"].shape[0] == 50 and iid.units["info_s"].shape[0] == 100
    assert anti.n_evaluations == iid.n_evaluations == 100 * 2  # no null for i^s: 2 rows per draw
    assert SequentialRule(antithetic=True).units(40) == 20 and SequentialRule(antithetic=True).unit_name == "antithetic pair"
    _, se_iid = iid.difference(0, 1, "info_s")
    _, se_anti = anti.difference(0, 1, "info_s")
    assert se_anti < 0.7 * se_iid  # ≈ 0.5 expected: var 5.9 per pair over 50 pairs against 45 per draw over 100


def test_bad_calls_are_refused(mworld):
    x = torch.zeros(2)
    conds = torch.stack([mworld.component_labels[0], mworld.component_labels[1]])
    null = mworld.null(1)[0]
    with pytest.raises(ValueError, match="method"):
        sequential_scores(mworld, x, conds, null, method="clip")
    with pytest.raises(ValueError, match="evaluate_null"):
        sequential_scores(mworld, x, conds, null, method="info_o", evaluate_null=False)
    with pytest.raises(ValueError, match="at least two"):
        sequential_scores(mworld, x, conds[:1], null)
    with pytest.raises(ValueError, match="conds must be"):
        sequential_scores(mworld, x, conds, null[None])
    with pytest.raises(TypeError, match="SequentialRule"):
        sequential_scores(mworld, x, conds, null, rule={"alpha": 0.1})


# ──────────────────────────────────────── through relation testing ────────────────────────────────────────

def test_adaptive_is_an_option_of_the_corrected_protocol_only():
    with pytest.raises(ValueError, match="corrected"):
        rt.RelationSettings(protocol="faithful", adaptive=SequentialRule())
    with pytest.raises(ValueError, match="cap"):
        rt.RelationSettings(protocol="corrected", n_samples=50, adaptive=SequentialRule())
    with pytest.raises(TypeError, match="SequentialRule"):
        rt.RelationSettings(protocol="corrected", adaptive=0.05)
    a = rt.RelationSettings(protocol="corrected", adaptive=SequentialRule())
    b = rt.RelationSettings(protocol="corrected", adaptive=SequentialRule(), score="standard")
    # the score decides which draws are taken: it is part of an adaptive store's identity (not of a fixed one's)
    assert rt.store_identity(a, "vg-relation", "s") != rt.store_identity(b, "vg-relation", "s")
    fa, fb = (rt.RelationSettings(protocol="corrected", score=s) for s in ("orthogonal", "standard"))
    assert rt.store_identity(fa, "vg-relation", "s") == rt.store_identity(fb, "vg-relation", "s")


def test_adaptive_rows_run_through_the_store_and_the_tables(tiny_model, tmp_path):
    data = rt.load_dataset("vg-relation", 4, seed=0)
    settings = rt.RelationSettings(protocol="corrected", n_samples=20, score="standard",
                                   adaptive=SequentialRule(alpha=0.3, block=5, first_look=5, max_samples=20))
    frame = rt.run(tiny_model, data, dataset="vg-relation", settings=settings, store_root=tmp_path, progress=False)
    assert len(frame) == 4
    for _, r in frame.iterrows():
        M = r["n_candidates"]
        assert r["n_evaluations"] <= 20 * (M + 1) and sum(r["survivors"]) >= 1
        # the table's i^s prediction is the test's: one of the candidates still active when the example stopped
        assert r["survivors"][r["pred_info_s"]]
    again = rt.run(tiny_model, data, dataset="vg-relation", settings=settings, store_root=tmp_path, progress=False)
    assert list(again["n_evaluations"]) == list(frame["n_evaluations"])  # resumed from the store, not re-run
    tables = rt.accuracy_tables(frame)
    assert set(tables.summary["method"]) == {"info_o", "info_s", "mmse"}


def test_a_fitted_margin_proposal_decides_like_the_paper_s_and_stratifies(mworld):
    """The sequential rule takes a proposal fitted to the i^s margin (infodecomp.proposals) as its sampling, i.i.d.
    or stratified (qmc), and its mean i^s differences agree with the paper's sampling's on the same example."""
    from infodecomp.proposals import fitted_proposal

    x, labels = mworld.sample(6, generator=_gen(7))
    others = torch.stack([next(c for c in mworld.component_labels if not torch.equal(c, r)) for r in labels])
    conds = torch.stack([mworld.condition(labels), mworld.condition(others)], 1)  # [6, 2, F]: true first
    q = fitted_proposal(mworld, x[:4], conds[:4], mworld.null(4), quantity="margin_s", n_points=48,
                        generator=_gen(8))
    assert q.rule == "fitted" and q.quantity == "margin_s"
    fixed = SequentialRule.fixed(400)
    for b in (4, 5):
        paper = sequential_scores(mworld, x[b], conds[b], mworld.null(1)[0], method="info_s", rule=fixed,
                                  generator=_gen(9))
        fitted = sequential_scores(mworld, x[b], conds[b], mworld.null(1)[0], method="info_s", rule=fixed,
                                   sampling=q, generator=_gen(10))
        (dp, sp), (dq, sq) = paper.difference(0, 1), fitted.difference(0, 1)
        assert abs(dp - dq) < 4 * math.hypot(sp, sq), (dp, sp, dq, sq)
    s = sequential_scores(mworld, x[5], conds[5], mworld.null(1)[0], method="info_s", sampling=q,
                          rule=SequentialRule(block=5, first_look=10, qmc=True), generator=_gen(11))
    assert s.units["info_s"].shape[0] == s.n_samples // 5
