"""Fitted log-SNR proposals (infodecomp.proposals) and precision targets (estimators.information_to_precision and
terms_to_precision, its block loop).

Unbiasedness: on the analytic worlds the estimate with a fitted proposal agrees with the exact truncated answer
(infodecomp.analytic) within 4 of its own standard errors, for i^o and i^s, i.i.d. and stratified, and the fitted
proposal's weights are exactly 1/q.
"""

import json
import math

import pytest
import torch

from infodecomp import analytic as A
from infodecomp import estimators as E
from infodecomp.logsnr import LogSNRSampling
from infodecomp.proposals import (FittedLogSNRSampling, ProposalCache, fit_proposal, fitted_proposal,
                                  pilot_second_moment, resolve_sampling, stratified)

LO, HI = -5.0, 7.0


def gen(seed):
    return torch.Generator().manual_seed(seed)


def _mi_pairs(world, n, seed):
    if isinstance(world, A.GaussianWorld):
        x, y = world.sample(n, generator=gen(seed))
        return x, world.condition(y), world.null(n)
    x, lab = world.sample(n, generator=gen(seed))
    return x, world.condition(lab), world.null(n)


def _bump():
    lam = torch.linspace(LO, HI, 240)
    return fit_proposal(lam, torch.exp(-(lam - 2.0) ** 2), bins=12, floor=0.1)


# ─────────────────────────────────────── the density ───────────────────────────────────────

def test_weights_are_exactly_one_over_the_density_and_integrate_the_range():
    q = _bump()
    lam, w = q.sample(200_000, generator=gen(0), dtype=torch.float64)
    assert float(lam.min()) >= LO and float(lam.max()) <= HI
    assert torch.allclose(w * q.density(lam), torch.ones_like(w), atol=1e-12)
    # E[w] = ∫ 1 dλ = the range; ∫ q dλ = 1 (a fine midpoint rule)
    se = float(w.std() / math.sqrt(w.numel()))
    assert abs(float(w.mean()) - (HI - LO)) < 4 * se
    grid = torch.linspace(LO, HI, 120_001, dtype=torch.float64)
    assert abs(float(torch.trapezoid(q.density(grid), grid)) - 1.0) < 1e-3
    assert q.max_weight <= (HI - LO) / 0.1 + 1e-9
    assert float(q.density(torch.tensor([LO - 0.1, HI + 0.1])).abs().max()) == 0.0


def test_it_concentrates_where_the_integrand_is_and_keeps_a_floor():
    q = _bump()
    d = q.density(torch.tensor([2.0, -4.5], dtype=torch.float64))
    assert float(d[0]) > 5 * float(d[1]) > 0


def test_stratified_points_are_marginally_q_and_cover_each_replicate():
    q = _bump().with_(rule="fitted_qmc", replicates=4)
    assert q.is_qmc and q.n_groups(40) == 4
    lam, w = q.sample(40, generator=gen(1), batch_shape=(3,), dtype=torch.float64)
    assert lam.shape == w.shape == (3, 40)
    assert torch.allclose(w * q.density(lam), torch.ones_like(w), atol=1e-12)
    # marginal: the mean weight over many stratified sets is the range
    lam, w = q.sample(40, generator=gen(2), batch_shape=(5000,), dtype=torch.float64)
    assert abs(float(w.mean()) - (HI - LO)) < 0.05 * (HI - LO)
    with pytest.raises(ValueError, match="multiple"):
        q.sample(41)


def test_bad_proposals_raise_clear_errors():
    with pytest.raises(ValueError, match="sum to 1"):
        FittedLogSNRSampling(edges=(LO, 1.0, HI), probs=(0.5, 0.6))
    with pytest.raises(ValueError, match="span the support"):
        FittedLogSNRSampling(edges=(LO, 1.0, 6.0), probs=(0.5, 0.5))
    with pytest.raises(ValueError, match="unknown fitted"):
        FittedLogSNRSampling(rule="logistic", edges=(LO, HI), probs=(1.0,))
    with pytest.raises(ValueError, match="floor"):
        fit_proposal(torch.zeros(3), torch.ones(3), floor=0.0)
    with pytest.raises(ValueError, match=">= 0"):
        fit_proposal(torch.zeros(3), -torch.ones(3))


def test_json_round_trip_and_cache(tmp_path, gworld):
    q = _bump()
    assert FittedLogSNRSampling.from_dict(json.loads(json.dumps(q.to_dict()))) == q
    cache = ProposalCache(tmp_path / "proposals.json")
    ident = {"name": "exact-gaussian", "dtype": "float64"}
    x, cond, ref = _mi_pairs(gworld, 3, seed=5)
    first = fitted_proposal(gworld, x, cond[:, None], ref, quantity="info_o", cache=cache, identity=ident,
                            n_points=24, generator=gen(6))
    assert cache.get(ident, "info_o", None) is None  # the key holds the pilot's setting too
    calls = []

    def counting(z, lam, c):
        calls.append(z.shape[0])
        return gworld.denoiser(z, lam, c)

    again = fitted_proposal(counting, x, cond[:, None], ref, quantity="info_o", cache=cache, identity=ident,
                            n_points=24, generator=gen(7))
    assert again == first and not calls  # served from the cache, no pilot
    other = fitted_proposal(counting, x, cond[:, None], ref, quantity="info_s", cache=cache, identity=ident,
                            n_points=24, generator=gen(7))
    assert calls and other.quantity == "info_s"
    assert len(json.loads((tmp_path / "proposals.json").read_text())) == 2


# ─────────────────────────────────────── unbiased against exact answers ───────────────────────────────────────

@pytest.mark.parametrize("world_name", ["gaussian", "mixture"])
@pytest.mark.parametrize("estimator", ["orthogonal", "standard"])
@pytest.mark.parametrize("rule", ["fitted", "fitted_qmc"])
def test_fitted_proposal_is_unbiased_against_the_exact_truncated_answer(world_name, estimator, rule, gworld,
                                                                        mworld):
    world = gworld if world_name == "gaussian" else mworld
    quantity = "info_o" if estimator == "orthogonal" else "info_s"
    xp, cp, rp = _mi_pairs(world, 8, seed=11)  # the pilot's examples are not the estimated ones
    q = fitted_proposal(world, xp, cp[:, None], rp, quantity=quantity, n_points=64, bins=16,
                        stratified=rule == "fitted_qmc", generator=gen(12))
    assert q.rule == rule and q.support == (LO, HI)
    x, cond, ref = _mi_pairs(world, 4, seed=13)
    exact_std, exact_orth = world.truncated_pointwise(x, cond, ref, LO, HI)
    exact = exact_orth if estimator == "orthogonal" else exact_std
    est = E.pointwise_information(world, x, cond, ref, n_samples=2000, estimator=estimator, sampling=q,
                                  generator=gen(14))
    z = (est.value.double() - exact) / est.stderr.double()
    assert bool(torch.isfinite(z).all()) and bool((z.abs() < 4).all()), (z.tolist(), exact.tolist())


def test_fitted_proposal_lowers_the_variance_where_lambda_carries_it(gworld):
    """On the Gaussian world (ε carries little), the fitted i^o proposal beats the paper's per draw."""
    x, cond, ref = _mi_pairs(gworld, 8, seed=21)
    q = fitted_proposal(gworld, x, cond[:, None], ref, quantity="info_o", n_points=96, generator=gen(22))
    paper = E.pointwise_information(gworld, x, cond, ref, n_samples=400, generator=gen(23))
    fitted = E.pointwise_information(gworld, x, cond, ref, n_samples=400, sampling=q, generator=gen(23))
    assert float((fitted.stderr ** 2).sum()) < 0.7 * float((paper.stderr ** 2).sum())


@pytest.mark.parametrize("quantity", ["pixel_info_o", "margin_s"])
def test_pilot_quantities(quantity, iworld, mworld):
    if quantity.startswith("pixel"):
        x, y = iworld.sample(2, generator=gen(31))
        conds, ref = iworld.condition(y)[:, None], iworld.null(2)
    else:
        x, lab = mworld.sample(2, generator=gen(31))
        other = torch.stack([next(c for c in mworld.component_labels if not torch.equal(c, row)) for row in lab])
        conds = torch.stack([mworld.condition(lab), mworld.condition(other)], 1)
        ref = mworld.null(2)
    lam, m2 = pilot_second_moment(iworld if quantity.startswith("pixel") else mworld, x, conds, ref,
                                  quantity=quantity, n_points=16, generator=gen(32))
    assert lam.shape == m2.shape == (16,) and bool((m2 >= 0).all()) and float(m2.mean()) == pytest.approx(1.0)
    if quantity.startswith("pixel"):
        return
    with pytest.raises(ValueError, match="two candidates"):
        pilot_second_moment(mworld, x, conds[:, :1], ref, quantity="margin_s", n_points=4)
    with pytest.raises(ValueError, match="unknown quantity"):
        pilot_second_moment(mworld, x, conds, ref, quantity="nope")


# ─────────────────────────────────────── precision targets ───────────────────────────────────────

def test_precision_target_is_met_and_counts_evaluations(gworld):
    x, cond, ref = _mi_pairs(gworld, 4, seed=41)
    exact = gworld.truncated_pointwise(x, cond, ref, LO, HI)[1]
    r = E.information_to_precision(gworld, x, cond, ref, target=0.05, block=20, max_samples=4000,
                                   generator=gen(42))
    assert bool(r.target_met.all()) and bool((r.stderr <= 0.05).all())
    assert torch.equal(r.n_evaluations, r.n_samples * 2) and bool((r.n_samples % 20 == 0).all())
    assert len(set(r.n_samples.tolist())) > 1  # examples stop when each is done
    assert bool(((r.value.double() - exact).abs() < 4 * 0.05).all())
    # the same with a relative target and a fitted proposal
    q = fitted_proposal(gworld, x, cond[:, None], ref, quantity="info_o", n_points=48, generator=gen(43))
    r2 = E.information_to_precision(gworld, x, cond, ref, relative=0.05, sampling=q, block=20,
                                    max_samples=4000, generator=gen(44))
    assert bool(r2.target_met.all()) and bool((r2.stderr <= 0.05 * r2.value.abs()).all())


def test_precision_target_reports_a_miss_at_the_cap_and_gives_pixel_maps(iworld):
    x, y = iworld.sample(2, generator=gen(51))
    cond, ref = iworld.condition(y), iworld.null(2)
    r = E.information_to_precision(iworld, x, cond, ref, target=1e-6, block=10, max_samples=30, pixelwise=True,
                                   generator=gen(52))
    assert not bool(r.target_met.any()) and r.n_samples.tolist() == [30, 30]
    assert r.value.shape == (2, *x.shape[2:])
    assert torch.allclose(r.value.sum((-2, -1)), r.image_value, rtol=1e-4, atol=1e-4)


def test_precision_target_bad_input(gworld):
    x, cond, ref = _mi_pairs(gworld, 2, seed=61)
    with pytest.raises(ValueError, match="precision target"):
        E.information_to_precision(gworld, x, cond, ref)
    with pytest.raises(ValueError, match="multiple of block"):
        E.information_to_precision(gworld, x, cond, ref, target=0.1, block=20, max_samples=50)
    with pytest.raises(ValueError, match="target must be"):
        E.information_to_precision(gworld, x, cond, ref, target=-1.0)
    with pytest.raises(ValueError, match="one replicate"):
        E.information_to_precision(gworld, x, cond, ref, target=0.1, block=10,
                                   sampling=LogSNRSampling(rule="logistic_qmc", replicates=1))


def _square_and_whole(world, seed):
    """One image twice: conditioned on y seen on the weak square only (an easy, low-variance map) and everywhere
    (the strong disc too: a hard one). ``(x [2, C, H, W], cond [2, C+1, H, W], ref [2, C+1, H, W])``."""
    x, y = world.sample(1, generator=gen(seed))
    cond = torch.cat([world.condition(y, region=world.gain == 0.7), world.condition(y)])
    return x.expand(2, *x.shape[1:]).clone(), cond, world.null(2)


def test_terms_to_precision_gives_an_easier_map_fewer_draws(iworld):
    x, cond, ref = _square_and_whole(iworld, 71)
    r = E.terms_to_precision(iworld, x, cond[:, None], ref, target=1.0, block=8, max_samples=800, pixelwise=True,
                             generator=gen(72))
    assert bool(r.target_met.all()) and bool((r.stderr <= 1.0).all())  # met when reported met
    assert r.n_samples[0] < r.n_samples[1] and bool((r.n_samples % 8 == 0).all())
    assert torch.equal(r.n_evaluations, 2 * r.n_samples)
    exact = iworld.truncated_pixel_pointwise(x, cond, ref, LO, HI)[1].sum((-2, -1))
    assert bool(((r.value[:, 0] - exact).abs() < 4 * r.stderr[:, 0]).all())
    for b, t in enumerate(r.terms):  # each example's maps are those of its own draws, and sum to its value
        assert t.n_samples == int(r.n_samples[b]) and t.orthogonal.shape == (1, int(r.n_samples[b]), 1)
        assert float(t.pixel_orthogonal[0, 0].sum()) == pytest.approx(float(r.value[b, 0]), rel=1e-6)


def test_terms_to_precision_watches_every_quantity_and_respects_the_cap(iworld):
    x, cond, ref = _square_and_whole(iworld, 81)
    both = cond[None]  # one image, two candidates: the square and everything
    r = E.terms_to_precision(iworld, x[:1], both, ref[:1], relative=0.1, block=8, max_samples=400,
                             generator=gen(82))
    assert r.value.shape == r.stderr.shape == (1, 2) and torch.equal(r.n_evaluations, 3 * r.n_samples)
    assert bool(r.target_met[0]) and bool((r.stderr <= 0.1 * r.value.abs()).all())  # both, not either
    margin = E.terms_to_precision(iworld, x[:1], both, ref[:1], target=1e-6, block=8, max_samples=24,
                                  coef=[[-1.0, 1.0]], generator=gen(83))
    assert margin.n_samples.tolist() == [24] and not bool(margin.target_met.any())  # the cap, and it says so
    assert margin.value.shape == (1, 1) and float(margin.value[0, 0]) > 0  # the disc tells more than the square


def test_terms_to_precision_bad_input(iworld):
    x, cond, ref = _square_and_whole(iworld, 91)
    with pytest.raises(ValueError, match="precision target"):
        E.terms_to_precision(iworld, x, cond[:, None], ref)
    with pytest.raises(ValueError, match="relative must be a number > 0"):
        E.terms_to_precision(iworld, x, cond[:, None], ref, relative=0.0)
    with pytest.raises(ValueError, match=r"max_samples \(30\) must be a multiple of block \(8\)"):
        E.terms_to_precision(iworld, x, cond[:, None], ref, target=0.1, block=8, max_samples=30)
    with pytest.raises(ValueError, match=r"coef must have shape \[Q, 1\]"):
        E.terms_to_precision(iworld, x, cond[:, None], ref, target=0.1, coef=[1.0, 1.0])
    with pytest.raises(ValueError, match="conds must be a tensor"):
        E.terms_to_precision(iworld, x, cond[:, 0, 0, 0], ref, target=0.1)


@pytest.mark.parametrize("n, lattices", [(100, 10), (32, 4), (8, 2), (7, 7), (50, 5), (2, 2)])
def test_stratified_splits_the_draws_into_lattices_of_at_most_ten_points(n, lattices):
    q = FittedLogSNRSampling(rule="fitted", edges=(LO, 1.0, HI), probs=(0.5, 0.5))
    s = stratified(q, n)
    assert (s.rule, s.replicates, s.n_groups(n)) == ("fitted_qmc", lattices, lattices)
    assert (s.edges, s.probs) == (q.edges, q.probs)  # the same density: the weights stay exact
    assert stratified(q, 1).rule == "fitted"  # one draw (a smoke run) cannot be stratified


def test_the_sampling_names_resolve_by_protocol_and_refuse_what_cannot_be():
    assert resolve_sampling("auto", "corrected") == "fitted" and resolve_sampling("auto", "faithful") == "paper"
    assert resolve_sampling("paper", "corrected") == "paper"
    with pytest.raises(ValueError, match="option of the corrected protocol"):
        resolve_sampling("fitted", "faithful")
    with pytest.raises(ValueError, match="one of"):
        resolve_sampling("stratified", "corrected")


def test_pilots_that_differ_in_the_last_bits_fit_the_same_proposal():
    """Each process of a launch runs its own pilot; their proposals, and so their stores' names, must agree."""
    lam = torch.linspace(LO, HI, 96, dtype=torch.float64)
    m2 = 1.0 + torch.sin(lam).abs()
    q = fit_proposal(lam, m2)
    assert fit_proposal(lam, m2 * (1 + 1e-12)) == q and fit_proposal(lam, m2 + 1e-13) == q
    assert abs(sum(q.probs) - 1) < 1e-12 and min(q.probs) >= 0.1 / 24 - 1e-6
