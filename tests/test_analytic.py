"""The ground truth itself: exact denoisers and exact information of the analytic worlds, each checked by an
independent route (brute-force posterior means, scipy densities, Schur-complement conditioning, Monte Carlo,
and the I-MMSE identity)."""

import math

import numpy as np
import pytest
import torch
from scipy import stats
from scipy.special import logsumexp

from infodecomp import analytic as A
from infodecomp.experiments import estimator_studies as S


def _schur_posterior(w: A.GaussianWorld, y_obs: np.ndarray, obs: list[int]):
    """x | y_O by conditioning the joint Gaussian of (x, y) (Schur complement): independent of the world."""
    mu, S, Am, b, R = (t.numpy() for t in (w.mean, w.cov, w.obs_matrix, w.obs_offset, w.obs_cov))
    if not obs:
        return mu, S
    Ao, bo, Roo = Am[obs], b[obs], R[np.ix_(obs, obs)]
    Syy = Ao @ S @ Ao.T + Roo
    K = S @ Ao.T @ np.linalg.inv(Syy)
    return mu + K @ (y_obs - Ao @ mu - bo), S - K @ Ao @ S


def _brute_eps(logpdf, z: np.ndarray, lam: float, lo: np.ndarray, hi: np.ndarray, n: int = 401) -> np.ndarray:
    """E[ε | z] = ∫ p(x) N(z; αx, σ²I) (z − αx)/σ dx / ∫ p(x) N(z; αx, σ²I) dx on a dense grid (d ≤ 2)."""
    a, s = math.sqrt(1 / (1 + math.exp(-lam))), math.sqrt(1 / (1 + math.exp(lam)))
    axes = [np.linspace(l, h, n) for l, h in zip(lo, hi)]
    X = np.stack([g.ravel() for g in np.meshgrid(*axes, indexing="ij")], -1)
    logw = np.asarray(logpdf(X)).reshape(-1) - ((z - a * X) ** 2).sum(-1) / (2 * s * s)
    w = np.exp(logw - logw.max())
    return ((w[:, None] * (z - a * X) / s).sum(0)) / w.sum()


# ─────────────────────────────────────────── Gaussian world ───────────────────────────────────────────

def test_gaussian_posterior_matches_schur_complement(gworld):
    x, y = gworld.sample(3, generator=torch.Generator().manual_seed(1))
    for obs in ([0, 1], [1], []):
        mask = [i in obs for i in range(2)]
        m, S = gworld.posterior(gworld.condition(y, observed=mask))
        for i in range(3):
            m_ref, S_ref = _schur_posterior(gworld, y[i, obs].numpy(), obs)
            np.testing.assert_allclose(m[i].numpy(), m_ref, atol=1e-10)
            np.testing.assert_allclose(S[i].numpy(), S_ref, atol=1e-10)
        lp = gworld.log_prob(x, gworld.condition(y, observed=mask))
        for i in range(3):
            m_ref, S_ref = _schur_posterior(gworld, y[i, obs].numpy(), obs)
            expected = stats.multivariate_normal(m_ref, S_ref).logpdf(x[i].numpy())
            assert float(lp[i]) == pytest.approx(expected, abs=1e-10)


def test_gaussian_denoiser_is_the_posterior_mean_of_eps():
    w = A.GaussianWorld.random(2, 1, generator=torch.Generator().manual_seed(3))
    x, y = w.sample(2, generator=torch.Generator().manual_seed(4))
    for cond, obs in ((w.condition(y), [0]), (w.null(2), [])):
        for lam in (-3.0, 0.0, 2.5):
            z = torch.tensor([[0.3, -0.7], [1.2, 0.4]], dtype=torch.float64)
            eps = w.denoiser(z, torch.full((2,), lam, dtype=torch.float64), cond)
            for i in range(2):
                m, S = _schur_posterior(w, y[i, obs].numpy(), obs)
                sd = np.sqrt(np.diag(S))
                brute = _brute_eps(stats.multivariate_normal(m, S).logpdf, z[i].numpy(), lam, m - 9 * sd, m + 9 * sd)
                np.testing.assert_allclose(eps[i].numpy(), brute, atol=1e-7)


def test_gaussian_pointwise_i_mmse_identity(gworld):
    """∫ over the real line of the exact i^s integrand is log p(x|cond) − log p(x|ref), for MI and CMI (Eq. 4)."""
    x, y = gworld.sample(5, generator=torch.Generator().manual_seed(2))
    full, ctx, null = gworld.condition(y), gworld.condition(y, observed=[False, True]), gworld.null(5)
    for cond, ref in ((full, null), (full, ctx), (ctx, null)):
        std, orth = gworld.truncated_pointwise(x, cond, ref)
        torch.testing.assert_close(std, gworld.log_ratio(x, cond, ref), atol=1e-9, rtol=0)
        assert bool((orth >= 0).all())


def test_gaussian_integrands_match_monte_carlo_through_the_denoiser(gworld):
    """The closed-form per-λ integrands agree with E_ε computed by calling the denoiser (within 4 SE)."""
    x, y = gworld.sample(1, generator=torch.Generator().manual_seed(5))
    cond, ref = gworld.condition(y), gworld.null(1)
    g = torch.Generator().manual_seed(6)
    for lam in (-2.0, 1.0, 4.0):
        n = 40_000
        eps = torch.randn(n, 3, generator=g, dtype=torch.float64)
        l = torch.full((n,), lam, dtype=torch.float64)
        z = math.sqrt(1 / (1 + math.exp(-lam))) * x + math.sqrt(1 / (1 + math.exp(lam))) * eps
        e1, e0 = gworld(z, l, cond.expand(n, -1)), gworld(z, l, ref.expand(n, -1))
        mc_std = 0.5 * (((eps - e0) ** 2).sum(1) - ((eps - e1) ** 2).sum(1))
        mc_orth = 0.5 * ((e1 - e0) ** 2).sum(1)
        std, orth = gworld.pointwise_integrands(x, cond, ref, torch.tensor([lam], dtype=torch.float64))
        for mc, exact in ((mc_std, std), (mc_orth, orth)):
            assert abs(float(mc.mean()) - float(exact)) < 4 * float(mc.std()) / math.sqrt(n)
        mse = gworld.pointwise_mmse(x, cond, torch.tensor([lam], dtype=torch.float64))
        mc_mse = ((eps - e1) ** 2).sum(1)
        assert abs(float(mc_mse.mean()) - float(mse)) < 4 * float(mc_mse.std()) / math.sqrt(n)


def test_gaussian_information_three_ways(gworld):
    """MI and CMI: closed form = I-MMSE integral (numerical and softplus) = Monte-Carlo mean of log ratios."""
    for obs, given in ((None, ()), ([0], [1]), ([1], ())):
        exact = gworld.information(obs, given)
        numeric = float(A.integrate_over_logsnr(lambda l: gworld.information_integrand(l, obs, given)))
        assert numeric == pytest.approx(exact, abs=1e-9)
        assert gworld.truncated_information(-math.inf, math.inf, obs, given) == pytest.approx(exact, abs=1e-12)
        part = float(A.integrate_over_logsnr(lambda l: gworld.information_integrand(l, obs, given), -5.0, 7.0))
        assert gworld.truncated_information(-5.0, 7.0, obs, given) == pytest.approx(part, abs=1e-9)
        assert 0 < part < exact
    x, y = gworld.sample(20_000, generator=torch.Generator().manual_seed(7))
    lr = gworld.log_ratio(x, gworld.condition(y, observed=[True, False]), gworld.null(20_000))
    assert abs(float(lr.mean()) - gworld.information([0])) < 4 * float(lr.std()) / math.sqrt(20_000)


def test_gaussian_sampler_moments(gworld):
    x, y = gworld.sample(50_000, generator=torch.Generator().manual_seed(8))
    torch.testing.assert_close(x.mean(0), gworld.mean, atol=0.03, rtol=0)
    torch.testing.assert_close(torch.cov(x.T), gworld.cov, atol=0.05, rtol=0)
    resid = y - x @ gworld.obs_matrix.T - gworld.obs_offset
    torch.testing.assert_close(torch.cov(resid.T), gworld.obs_cov, atol=0.03, rtol=0)


def test_gaussian_bad_conditions(gworld):
    with pytest.raises(ValueError, match="mask in"):
        gworld.posterior(torch.full((2, 4), 0.5, dtype=torch.float64))
    with pytest.raises(ValueError, match=r"cond must have shape \[2, 4\]"):
        gworld.denoiser(torch.zeros(2, 3), torch.zeros(2), torch.zeros(2, 3))


# ─────────────────────────────────────────── mixture world ───────────────────────────────────────────

def _scipy_mixture_logpdf(w: A.MixtureWorld, comps: list[int]):
    means, covs, pis = w.means.numpy(), w.covs.numpy(), w.weights.numpy()
    pis_c = pis[comps] / pis[comps].sum()
    comp = [stats.multivariate_normal(means[k], covs[k]) for k in comps]
    return lambda X: logsumexp(np.stack([np.log(p) + np.atleast_1d(c.logpdf(X)) for p, c in zip(pis_c, comp)]), axis=0)


def test_mixture_log_prob_matches_scipy(mworld):
    x, lab = mworld.sample(6, generator=torch.Generator().manual_seed(1))
    for given in ((0, 1), (1,), ()):
        lp = mworld.log_prob(x, mworld.condition(lab, given=given))
        for i in range(6):
            comps = [k for k in range(4) if all(int(mworld.component_labels[k, f]) == int(lab[i, f]) for f in given)]
            assert float(lp[i]) == pytest.approx(float(_scipy_mixture_logpdf(mworld, comps)(x[i].numpy()[None])[0]),
                                                 abs=1e-10)


def test_mixture_denoiser_is_the_posterior_mean_of_eps(mworld):
    lab = torch.tensor([[1, 0]])
    z = torch.tensor([[0.4, -0.9]], dtype=torch.float64)
    for given in ((0, 1), (1,), ()):
        cond = mworld.condition(lab, given=given)
        comps = [k for k in range(4) if all(int(mworld.component_labels[k, f]) == int(lab[0, f]) for f in given)]
        for lam in (-3.0, 0.0, 2.5):
            eps = mworld.denoiser(z, torch.tensor([lam], dtype=torch.float64), cond)
            brute = _brute_eps(_scipy_mixture_logpdf(mworld, comps), z[0].numpy(), lam, np.array([-7.0, -7.0]),
                               np.array([7.0, 7.0]), n=501)
            np.testing.assert_allclose(eps[0].numpy(), brute, atol=1e-6)


def test_mixture_pointwise_i_mmse_identity(mworld):
    x, lab = mworld.sample(2, generator=torch.Generator().manual_seed(2))
    full, ctx, null = mworld.condition(lab), mworld.condition(lab, given=[1]), mworld.null(2)
    for cond, ref in ((full, null), (full, ctx)):
        std, orth = mworld.truncated_pointwise(x, cond, ref)
        torch.testing.assert_close(std, mworld.log_ratio(x, cond, ref), atol=1e-5, rtol=0)
        assert bool((orth >= 0).all())


def test_mixture_information_two_routes_and_monte_carlo(mworld):
    """x-space quadrature (box rule) vs Gauss–Hermite of 200 nodes vs the I-MMSE route through the denoiser,
    for MI I(x; a, b), CMI I(x; a | b) and I(x; b)."""
    for target, given in ((None, ()), ((0,), (1,)), ((1,), ())):
        exact = mworld.information(target, given)
        assert exact > 0.1
        xi, wq = A.gauss_hermite(2, 200)  # an independent, slower-converging rule
        G = xi.shape[0]
        tg = (tuple(range(2)) if target is None else target) + given
        xs = mworld.means[:, None, :] + (mworld._chol[:, None] @ xi[None, :, :, None]).squeeze(-1)
        conds = [mworld.condition(mworld.component_labels, f).repeat_interleave(G, 0) for f in (tg, given)]
        lr = mworld.log_prob(xs.reshape(-1, 2), conds[0]) - mworld.log_prob(xs.reshape(-1, 2), conds[1])
        gh = float((mworld.weights * (lr.reshape(4, G) * wq).sum(-1)).sum())
        assert gh == pytest.approx(exact, abs=1e-8)
        if given:  # the I-MMSE route (slower): once, for the CMI
            immse = float(A.integrate_over_logsnr(lambda l: mworld.information_integrand(l, target, given),
                                                  panel_width=2.0))
            assert immse == pytest.approx(exact, abs=2e-4)  # Gauss–Hermite over z, 24 nodes: ≈3e-5 nats
    x, lab = mworld.sample(40_000, generator=torch.Generator().manual_seed(3))
    lr = mworld.log_ratio(x, mworld.condition(lab), mworld.condition(lab, given=[1]))
    assert abs(float(lr.mean()) - mworld.information((0,), (1,))) < 4 * float(lr.std()) / 200


def test_mixture_orthogonality_identity(mworld):
    """½E‖ε̂(z|a,b) − ε̂(z|b)‖² = ½(mmse(b) − mmse(a,b)) at each λ (the cross term vanishes)."""
    lam = torch.tensor([-3.0, 0.0, 2.0, 6.0], dtype=torch.float64)
    orth = mworld.information_integrand(lam, (0,), (1,), nodes=48)
    gap = 0.5 * (mworld.mmse(lam, (1,), nodes=48) - mworld.mmse(lam, (0, 1), nodes=48))
    torch.testing.assert_close(orth, gap, atol=3e-6, rtol=0)  # Gauss–Hermite error: 2e-5 at 24 nodes, 1e-6 at 48
    # a full condition is one Gaussian component: closed-form mmse Σ σ(λ + log v)
    k_mmse = torch.stack([A.gaussian_mmse(mworld._eigvals[k], lam) for k in range(4)], 0)
    torch.testing.assert_close(mworld.mmse(lam, (0, 1)), (mworld.weights[:, None] * k_mmse).sum(0), atol=1e-8, rtol=0)


def test_mixture_sampler_frequencies(mworld):
    n = 40_000
    _, lab = mworld.sample(n, generator=torch.Generator().manual_seed(4))
    k = lab[:, 0] * 2 + lab[:, 1]
    freq = torch.bincount(k, minlength=4).double() / n
    p = mworld.weights
    assert bool(((freq - p).abs() < 4 * (p * (1 - p) / n).sqrt()).all())


def test_mixture_bad_conditions(mworld):
    with pytest.raises(ValueError, match="integer tensor"):
        mworld.log_prob(torch.zeros(1, 2), torch.zeros(1, 2))
    with pytest.raises(ValueError, match="factor 0 must be in -1..1"):
        mworld.log_prob(torch.zeros(1, 2), torch.tensor([[2, 0]]))
    with pytest.raises(ValueError, match="do not multiply"):
        A.MixtureWorld(mworld.means, mworld.covs, mworld.weights, factor_sizes=(3, 2))


# ─────────────────────────────────────────── image world ───────────────────────────────────────────

def test_image_denoiser_elementwise_brute_force(iworld):
    x, y = iworld.sample(1, generator=torch.Generator().manual_seed(1))
    region = torch.zeros(8, 8, dtype=torch.bool)
    region[:, :4] = True
    cond = iworld.condition(y, region=region)
    z = torch.randn(1, 3, 8, 8, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    lam = 0.7
    eps = iworld.denoiser(z, torch.tensor([lam], dtype=torch.float64), cond)
    mean, var = iworld.posterior(cond)
    for c, h, w in ((0, 2, 2), (1, 2, 6), (2, 5, 1), (0, 7, 7)):
        m, v = float(mean[0, c, h, w]), float(var[0, c, h, w])
        # independent route to the posterior of one entry (observed or not)
        g = float(iworld.gain[h, w]) if region[h, w] else 0.0
        v_ref = 1 / (1 / float(iworld.var[c]) + g * g / iworld.noise_std ** 2)
        assert v == pytest.approx(v_ref)
        assert m == pytest.approx(v_ref * g * float(y[0, c, h, w]) / iworld.noise_std ** 2)
        brute = _brute_eps(lambda X: stats.norm(m, math.sqrt(v)).logpdf(X[:, 0]), z[0, c, h, w].numpy()[None], lam,
                           np.array([m - 10 * math.sqrt(v)]), np.array([m + 10 * math.sqrt(v)]), n=4001)
        assert float(eps[0, c, h, w]) == pytest.approx(float(brute[0]), abs=1e-8)


def test_image_pixel_information(iworld):
    x, y = iworld.sample(2, generator=torch.Generator().manual_seed(3))
    cond, null = iworld.condition(y), iworld.null(2)
    pix = iworld.pixel_log_ratio(x, cond, null)
    std, orth = iworld.truncated_pixel_pointwise(x, cond, null)
    torch.testing.assert_close(std, pix, atol=1e-9, rtol=0)  # per-pixel I-MMSE identity
    assert bool((orth >= 0).all())
    zero = iworld.gain == 0
    assert float(pix[:, zero].abs().max()) < 1e-12 and float(iworld.pixel_information()[zero].abs().max()) < 1e-12
    info = iworld.pixel_information()
    exact = (0.5 * torch.log(1 + iworld.gain ** 2 * iworld.var[:, None, None] / iworld.noise_std ** 2)).sum(0)
    torch.testing.assert_close(info, exact, atol=1e-12, rtol=0)
    part = iworld.pixel_information(lo=-5.0, hi=7.0)
    assert bool((part <= info + 1e-12).all()) and float(part.sum()) > 0.9 * float(info.sum())
    # conditional: observing the left half given the right half adds nothing on the right half
    left = torch.zeros(8, 8, dtype=torch.bool)
    left[:, :4] = True
    cmi = iworld.pixel_information(region=left, given=~left)
    torch.testing.assert_close(cmi[:, :4], info[:, :4], atol=1e-12, rtol=0)
    assert float(cmi[:, 4:].abs().max()) == 0.0


def test_integrate_over_logsnr_is_converged():
    f = lambda l: torch.stack([torch.sigmoid(l + 0.3) - torch.sigmoid(l - 1.1), torch.exp(-l ** 2)])
    base = A.integrate_over_logsnr(f)
    fine = A.integrate_over_logsnr(f, panel_width=0.25, nodes=12, cutoff=40.0)
    torch.testing.assert_close(base, fine, atol=1e-12, rtol=0)
    torch.testing.assert_close(base, torch.tensor([1.4, math.sqrt(math.pi)], dtype=torch.float64), atol=1e-12, rtol=0)
    part = A.integrate_over_logsnr(lambda l: torch.sigmoid(l), -5.0, 7.0)
    assert float(part) == pytest.approx(math.log1p(math.exp(7)) - math.log1p(math.exp(-5)), abs=1e-13)


# ─────────────────────────────────────────── studies ───────────────────────────────────────────

def test_cases_and_studies_are_consistent():
    cases = S.standard_cases(0, image_size=8)
    assert set(cases) == {"gaussian_mi", "gaussian_cmi", "mixture_mi", "mixture_cmi", "image_mi"}
    g = cases["gaussian_cmi"]
    assert g.information() == pytest.approx(g.world.information([0], [1]))
    assert g.information(-5.0, 7.0) == pytest.approx(g.world.truncated_information(-5.0, 7.0, [0], [1]))
    im = cases["image_mi"]
    x, cond, ref = im.sample(2, generator=torch.Generator().manual_seed(0))
    assert x.shape == (2, 4, 8, 8) and cond.shape == (2, 5, 8, 8) and torch.equal(ref, im.world.null(2))
    std, _ = im.pointwise_targets(x, cond, ref, -math.inf, math.inf)
    torch.testing.assert_close(std, im.log_ratio(x, cond, ref), atol=1e-9, rtol=0)
    x, cond, ref = cases["mixture_cmi"].sample(1, generator=torch.Generator().manual_seed(1))
    assert cond[0, 1] == ref[0, 1] and int(ref[0, 0]) == -1
    rows = S.variance_study(g, *g.sample(1, generator=torch.Generator().manual_seed(2)), evaluations=20,
                            rules=("logistic", "logistic_qmc"), n_repeats=30,
                            generator=torch.Generator().manual_seed(3))
    assert len(rows) == 2 * 2 * 2
    paper = [r for r in rows if r["rule"] == "logistic" and r["noise"] == "iid"]
    assert all(r["sd_ratio"] == 1.0 for r in paper)
    assert all(r["n_samples"] == 10 for r in rows if r["noise"] == "antithetic")
    conv = S.convergence_study(g, *g.sample(1, generator=torch.Generator().manual_seed(4)), [10, 20],
                               rules=("uniform",), generator=torch.Generator().manual_seed(5))
    assert [(r["n_samples"], r["estimator"]) for r in conv] == [(10, "standard"), (10, "orthogonal"), (20, "standard"),
                                                               (20, "orthogonal")]
    with pytest.raises(ValueError, match="one example"):
        S.convergence_study(g, *g.sample(2), [10])
