"""Partial information decomposition against exact answers on the analytic mixture world.

Three planted structures, each a :class:`~infodecomp.analytic.MixtureWorld` whose pointwise integrals and MI are
exact (quadrature), so the atoms computed from the exact values are the answers:

- copy (redundancy): y2 is y1 (the same condition), so i1 = i2 = i12 and everything is redundant;
- XOR (synergy): x depends on y1 ⊕ y2 only, so p(x | y1) = p(x | y2) = p(x): i1 = i2 = 0 and i12 is all synergy;
- independent unique sources: y1 moves x's first coordinate, y2 its second, y1 ⊥ y2: i12 = i1 + i2 exactly
  (co-information 0): CCS finds no redundancy, MMI reports min(i1, i2) of it and as much synergy (its artefact).

Estimates are compared with the exact values on the estimator's log-SNR range in units of their standard errors
(paired over the four conditions).
"""

import math

import pytest
import torch

from infodecomp import pid as P
from infodecomp.analytic import MixtureWorld
from infodecomp.estimators import information_terms

LOC, SCALE, CLIP = 1.0, 2.0, 3.0
LO, HI = LOC - CLIP * SCALE, LOC + CLIP * SCALE
Z = 4.5  # |estimate − exact| / se bound, over every example and atom of a test


def copy_world():
    return MixtureWorld.one_factor()


def xor_world():
    mu = {0: -1.5, 1: 1.5}
    means = torch.tensor([[mu[a ^ b]] for a in (0, 1) for b in (0, 1)], dtype=torch.float64)
    covs = torch.full((4, 1, 1), 0.55 ** 2, dtype=torch.float64)
    return MixtureWorld(means, covs, torch.full((4,), 0.25, dtype=torch.float64), factor_sizes=(2, 2))


def unique_world():
    pa, pb = (0.4, 0.6), (0.7, 0.3)
    means = torch.tensor([[(-1.2, 1.2)[a], (-1.0, 1.0)[b]] for a in (0, 1) for b in (0, 1)], dtype=torch.float64)
    covs = torch.diag(torch.tensor([0.6, 0.5], dtype=torch.float64) ** 2).expand(4, 2, 2).clone()
    weights = torch.tensor([pa[a] * pb[b] for a in (0, 1) for b in (0, 1)], dtype=torch.float64)
    return MixtureWorld(means, covs, weights, factor_sizes=(2, 2))


def conditions(world, labels, kind):
    """(context, cond1, cond2, cond12) for labels [N, F]."""
    n = labels.shape[0]
    if kind == "copy":
        c = world.condition(labels)
        return world.null(n), c, c.clone(), c.clone()
    return world.null(n), world.condition(labels, (0,)), world.condition(labels, (1,)), world.condition(labels)


def exact_local(world, x, conds):
    """Exact (i1, i2, i12) on [LO, HI] per example: (standard [N] ×3, orthogonal [N] ×3)."""
    ctx, *cs = conds
    vals = [world.truncated_pointwise(x, c, ctx, LO, HI) for c in cs]
    return [v[0] for v in vals], [v[1] for v in vals]


def exact_average(world, kind):
    if kind == "copy":
        i = world.truncated_information(LO, HI)
        return i, i, i
    return tuple(world.truncated_information(LO, HI, target=t) for t in ((0,), (1,), (0, 1)))


WORLDS = {"copy": copy_world, "xor": xor_world, "unique": unique_world}


def _terms(world, kind, n, n_samples, seed, pixelwise=False):
    g = torch.Generator().manual_seed(seed)
    x, labels = world.sample(n, generator=g)
    conds = conditions(world, labels, kind)
    terms = information_terms(world.denoiser, x, torch.stack(conds[1:], 1), conds[0], n_samples=n_samples,
                              loc=LOC, scale=SCALE, clip=CLIP, pixelwise=pixelwise, generator=g)
    return x, conds, terms


def _assert_close(est, se, exact, what):
    est, se, exact = (torch.as_tensor(v, dtype=torch.float64) for v in (est, se, exact))
    zero_se = se < 1e-12
    assert torch.allclose(est[zero_se], exact[zero_se], atol=1e-9), (what, est, exact)
    z = ((est - exact) / se)[~zero_se]
    assert bool((z.abs() < Z).all()), (what, z, est, exact, se)


@pytest.mark.parametrize("kind", list(WORLDS))
@pytest.mark.parametrize("redundancy", P.REDUNDANCIES)
def test_local_atoms_agree_with_the_exact_local_atoms(kind, redundancy):
    world = WORLDS[kind]()
    x, conds, terms = _terms(world, kind, n=6, n_samples=1600, seed=1)
    exact_std, exact_orth = exact_local(world, x, conds)
    for estimator, exact in (("standard", exact_std), ("orthogonal", exact_orth)):
        est = P.pid_from_terms(terms, estimator=estimator, redundancy=redundancy)
        want = {"i1": exact[0], "i2": exact[1], "i12": exact[2], **P.atoms(*exact, redundancy)}
        for name in ("i1", "i2", "i12", "coinformation") + P.ATOMS:
            _assert_close(est[name], est.stderrs[name], want[name], (kind, redundancy, estimator, name))


@pytest.mark.parametrize("kind", list(WORLDS))
def test_averaged_atoms_agree_with_the_atoms_of_the_exact_informations(kind):
    world = WORLDS[kind]()
    _, _, terms = _terms(world, kind, n=160, n_samples=16, seed=2)
    exact = exact_average(world, kind)
    for estimator in ("orthogonal", "standard"):
        est = P.pid_from_terms(terms, estimator=estimator)
        for redundancy in P.REDUNDANCIES:
            avg = P.average_pid(est["i1"], est["i2"], est["i12"], redundancy)
            want = {"i1": exact[0], "i2": exact[1], "i12": exact[2], **P.atoms(*exact, redundancy)}
            for name, v in avg.items():
                _assert_close([v["value"]], [v["stderr"]], [float(want[name])], (kind, estimator, redundancy, name))


def test_the_planted_structures_are_what_they_claim():
    # the exact informations themselves: copy all redundant, XOR all synergy, unique additive
    c, xr, u = (exact_average(WORLDS[k](), k) for k in ("copy", "xor", "unique"))
    assert c[0] == c[1] == c[2] > 0.3
    assert abs(xr[0]) < 1e-9 and abs(xr[1]) < 1e-9 and xr[2] > 0.3
    assert u[0] > 0.2 and u[1] > 0.2 and u[2] == pytest.approx(u[0] + u[1], abs=1e-6)
    for red in P.REDUNDANCIES:
        a = P.atoms(*c, red)
        assert float(a["redundancy"]) == pytest.approx(c[0]) and abs(float(a["synergy"])) < 1e-12
        a = P.atoms(*xr, red)
        assert float(a["synergy"]) == pytest.approx(xr[2], abs=1e-9) and abs(float(a["redundancy"])) < 1e-9


def test_mmi_reports_redundancy_and_synergy_for_independent_sources_and_ccs_does_not():
    world = unique_world()
    _, _, terms = _terms(world, "unique", n=160, n_samples=16, seed=3)
    for estimator in ("orthogonal", "standard"):
        est = P.pid_from_terms(terms, estimator=estimator)
        mmi = P.average_pid(est["i1"], est["i2"], est["i12"], "mmi")
        ccs = P.average_pid(est["i1"], est["i2"], est["i12"], "ccs")
        # MMI: R = min(I1, I2) > 0 many standard errors away from 0, and S = R
        assert mmi["redundancy"]["value"] > 8 * mmi["redundancy"]["stderr"] > 0
        assert mmi["synergy"]["value"] == pytest.approx(mmi["redundancy"]["value"], abs=4 * mmi["synergy"]["stderr"])
        # CCS: co-information 0, so no redundancy and no synergy
        assert abs(ccs["redundancy"]["value"]) < 1e-9 and abs(ccs["synergy"]["value"]) < 1e-9
        assert ccs["unique1"]["value"] == pytest.approx(mmi["i1"]["value"])


def test_pixel_maps_sum_to_the_informations_and_separate_the_sources():
    world = unique_world()
    _, _, terms = _terms(world, "unique", n=4, n_samples=64, seed=4, pixelwise=True)
    for estimator in ("orthogonal", "standard"):
        est = P.pid_from_terms(terms, estimator=estimator, redundancy="mmi")
        for name in ("i1", "i2", "i12"):
            assert torch.allclose(est.pixel[name].sum(-1), est[name].to(est.pixel[name].dtype), atol=1e-9)
        # y1 informs coordinate 0 only, y2 coordinate 1 only
        assert torch.allclose(est.pixel["i1"][:, 1], torch.zeros(4, dtype=torch.float64), atol=1e-9)
        assert torch.allclose(est.pixel["i2"][:, 0], torch.zeros(4, dtype=torch.float64), atol=1e-9)
        # so a per-pixel minimum finds no redundancy, where the image-level minimum does (the heuristic differs)
        assert est.pixel["redundancy"].abs().max() < 1e-9
    orth = P.pid_from_terms(terms, estimator="orthogonal", redundancy="mmi")
    assert bool((orth["redundancy"] > 0).all())


def test_one_denoiser_pass_gives_both_estimators_and_both_definitions():
    world = xor_world()
    calls = []

    def counting(z, lam, cond):
        calls.append(z.shape[0])
        return world.denoiser(z, lam, cond)

    g = torch.Generator().manual_seed(5)
    x, labels = world.sample(3, generator=g)
    ctx, c1, c2, c12 = conditions(world, labels, "xor")
    est = P.pid(counting, x, ctx, c1, c2, c12, n_samples=10, generator=g, chunk_size=4 * 30)
    assert sum(calls) == 4 * 3 * 10 and len(calls) == 1  # 4 conditions × 3 examples × 10 draws, one call
    assert est.estimator == "orthogonal" and est.redundancy == "ccs" and est.n_samples == 10
    assert set(est.values) == {"i1", "i2", "i12", "coinformation"} | set(P.ATOMS)
    assert len(est.table()) == 3 * 8


def test_bad_arguments_are_refused_with_what_was_given():
    world = xor_world()
    x, labels = world.sample(2, generator=torch.Generator().manual_seed(0))
    ctx, c1, c2, c12 = conditions(world, labels, "xor")
    with pytest.raises(ValueError, match="unknown redundancy definition 'min'"):
        P.pid(world.denoiser, x, ctx, c1, c2, c12, redundancy="min", n_samples=2)
    with pytest.raises(ValueError, match="context's shape"):
        P.pid(world.denoiser, x, ctx, c1[:1], c2, c12, n_samples=2)
    with pytest.raises(TypeError, match="cond2 must be a tensor"):
        P.pid(world.denoiser, x, ctx, c1, [0, 1], c12, n_samples=2)
    with pytest.raises(ValueError, match="at least 2 examples"):
        P.average_pid(torch.ones(1), torch.ones(1), torch.ones(1))
    terms = information_terms(world.denoiser, x, torch.stack([c1, c2], 1), ctx, n_samples=2)
    with pytest.raises(ValueError, match="3 candidates"):
        P.pid_from_terms(terms)
    with pytest.raises(ValueError, match=r"shape \[2\] or \[2, 2\]"):
        terms.contrast(torch.ones(3))


def test_redundancy_coefficients_by_hand():
    i1, i2, i12 = torch.tensor([1.0, 2.0, -1.0, 1.0]), torch.tensor([2.0, 1.0, -2.0, 1.0]), torch.tensor(
        [2.5, 2.5, -2.5, 3.0])
    assert P.redundancy_coefficients(i1, i2, i12, "mmi").tolist() == [[1, 0, 0], [0, 1, 0], [0, 1, 0], [1, 0, 0]]
    # co = 0.5, 0.5, −0.5 (signs agree with all-negative informations), −1 (disagrees)
    assert P.redundancy_coefficients(i1, i2, i12, "ccs").tolist() == [[1, 1, -1], [1, 1, -1], [1, 1, -1], [0, 0, 0]]
    a = P.atoms(i1, i2, i12, "ccs")
    assert a["redundancy"].tolist() == [0.5, 0.5, -0.5, 0.0]
    assert a["synergy"].tolist() == [0.0, 0.0, 0.0, 1.0]
    for k in range(4):  # the lattice identities
        assert float(a["redundancy"][k] + a["unique1"][k]) == pytest.approx(float(i1[k]))
        total = a["redundancy"][k] + a["unique1"][k] + a["unique2"][k] + a["synergy"][k]
        assert float(total) == pytest.approx(float(i12[k]))
    assert math.isclose(float(P.atoms(1.0, 2.0, 2.5, "mmi")["synergy"]), 0.5)
