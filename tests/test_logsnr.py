"""log-SNR schedule mapping and quadrature rules, against values worked out by hand."""

import math

import numpy as np
import pytest
import torch
from scipy import special, stats

from infodecomp import logsnr as L

# ─────────────────────────────────────────── schedule mapping ───────────────────────────────────────────


@pytest.fixture(scope="module")
def sd21():
    """SD 2.1's scaled-linear schedule: betas = linspace(sqrt(0.00085), sqrt(0.012), 1000)**2."""
    betas = torch.linspace(0.00085 ** 0.5, 0.012 ** 0.5, 1000, dtype=torch.float64) ** 2
    ac = torch.cumprod(1 - betas, 0)
    return ac, L.logsnr_from_alphas_cumprod(ac)


def test_sd21_trained_range(sd21):
    ac, lam = sd21
    lo, hi = L.trained_range(ac)
    assert lo == pytest.approx(-5.364, abs=1e-3) and hi == pytest.approx(7.069, abs=1e-3)
    assert float(lam[0]) == hi and float(lam[-1]) == lo
    assert bool((lam[1:] < lam[:-1]).all()), "trained log-SNR must decrease with t"


def test_alphas_cumprod_roundtrip(sd21):
    ac, lam = sd21
    torch.testing.assert_close(L.alphas_cumprod_from_logsnr(lam), ac, rtol=1e-12, atol=0)


def test_nearest_timestep_exact_points_and_clamping(sd21):
    _, lam = sd21
    t = torch.tensor([0, 1, 17, 500, 998, 999])
    assert torch.equal(L.nearest_timestep(lam[t], lam), t)
    # outside the trained range: clamp to the end timesteps (docs/protocol.md#timesteps)
    assert L.nearest_timestep(torch.tensor([-7.0, -5.5, 7.2, 9.0]), lam).tolist() == [999, 999, 0, 0]


def test_nearest_timestep_is_the_argmin(sd21):
    _, lam = sd21
    q = torch.linspace(-6.0, 8.0, 997, dtype=torch.float64)
    brute = torch.tensor([int(np.argmin(np.abs(lam.numpy() - v))) for v in q.numpy()])
    assert torch.equal(L.nearest_timestep(q, lam), brute)
    # a point just closer to t = 400 than to t = 401
    mid = (lam[400] + lam[401]) / 2
    assert L.nearest_timestep(torch.stack([mid + 1e-9, mid - 1e-9]), lam).tolist() == [400, 401]


def test_interpolated_timestep(sd21):
    _, lam = sd21
    t = torch.tensor([0, 3, 250, 999])
    torch.testing.assert_close(L.interpolated_timestep(lam[t], lam), t.float(), atol=1e-4, rtol=0)
    # linear in λ between neighbouring trained points
    for frac in (0.25, 0.5, 0.9):
        q = lam[600] + frac * (lam[601] - lam[600])
        assert float(L.interpolated_timestep(q[None], lam)) == pytest.approx(600 + frac, abs=1e-4)
    # clamped, monotone, and within half a step of the nearest timestep
    assert L.interpolated_timestep(torch.tensor([-9.0, 12.0]), lam).tolist() == [999.0, 0.0]
    q = torch.linspace(-5.3, 7.0, 501, dtype=torch.float64)
    ti = L.interpolated_timestep(q, lam)
    assert bool((ti[1:] <= ti[:-1]).all())
    assert float((ti - L.nearest_timestep(q, lam).float()).abs().max()) <= 0.5 + 1e-4


# ─────────────────────────────────────────── quadrature rules ───────────────────────────────────────────

RULES = ["logistic", "uniform", "logistic_qmc", "uniform_qmc"]


def _exact_integrals(lo, hi):
    """∫_lo^hi f(λ) dλ in closed form for a few test functions."""
    softplus = lambda v: math.log1p(math.exp(v))
    return {
        "one": (lambda l: torch.ones_like(l), hi - lo),
        "square": (lambda l: l ** 2, (hi ** 3 - lo ** 3) / 3),
        "sigmoid": (torch.sigmoid, softplus(hi) - softplus(lo)),
        "bump": (lambda l: torch.exp(-(l - 1) ** 2 / 4),
                 math.sqrt(math.pi) * (special.erf((hi - 1) / 2) - special.erf((lo - 1) / 2))),
    }


@pytest.mark.parametrize("rule", RULES)
@pytest.mark.parametrize("clip", [3.0, 4.0])
def test_rules_integrate_known_functions(rule, clip):
    s = L.LogSNRSampling(rule=rule, loc=1.0, scale=2.0, clip=clip, replicates=40)
    g = torch.Generator().manual_seed(11)
    n = 40_000
    lam, w = s.sample(n, generator=g, dtype=torch.float64)
    lo, hi = s.support
    assert lam.shape == w.shape == (n,)
    assert float(lam.min()) >= lo and float(lam.max()) <= hi
    groups = s.n_groups(n)
    for name, (f, exact) in _exact_integrals(lo, hi).items():
        terms = (w * f(lam)).view(groups, -1).mean(1)
        est, se = float(terms.mean()), float(terms.std() / math.sqrt(groups))
        assert abs(est - exact) < 4 * se + 1e-12, f"{rule} clip {clip}: ∫{name} = {exact}, got {est} ± {se}"


@pytest.mark.parametrize("rule", RULES)
def test_weights_are_inverse_density(rule):
    s = L.LogSNRSampling(rule=rule, clip=3.0)
    lam, w = s.sample(1000, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    torch.testing.assert_close(w, 1 / s.density(lam), rtol=1e-10, atol=0)
    if rule.startswith("logistic"):
        # independent route: q = d/dλ of the truncated-logistic CDF, by autograd
        lam_ = lam.clone().requires_grad_(True)
        cdf = (torch.sigmoid((lam_ - 1.0) / 2.0) - torch.sigmoid(torch.tensor(-3.0, dtype=torch.float64))) \
            / math.tanh(1.5)
        (q,) = torch.autograd.grad(cdf.sum(), lam_)
        torch.testing.assert_close(w, 1 / q, rtol=1e-10, atol=0)
        # the paper's formula w = s·tanh(c/2)/(σ(v)σ(−v))
        v = (lam - 1.0) / 2.0
        torch.testing.assert_close(w, 2.0 * math.tanh(1.5) / (torch.sigmoid(v) * torch.sigmoid(-v)), rtol=1e-10, atol=0)
        # extremes quoted in docs/protocol.md#log-snr-sampling: ≈ 7.7 at the centre, ≈ 40 at the edge for clip 3, ≈ 109
        # for clip 4
        assert float(L.logistic_weights(torch.tensor([1.0]), clip=3.0)) == pytest.approx(4 * 2 * math.tanh(1.5))
        assert float(L.logistic_weights(torch.tensor([7.0]), clip=3.0)) == pytest.approx(40.0, rel=0.02)
        assert float(L.logistic_weights(torch.tensor([9.0]), clip=4.0)) == pytest.approx(109.0, rel=0.02)
    else:
        assert torch.all(w == 12.0)


@pytest.mark.parametrize("rule", RULES)
def test_samples_follow_the_stated_density(rule):
    """Kolmogorov–Smirnov against the truncated-logistic / uniform CDF (pooled over many draws for QMC)."""
    s = L.LogSNRSampling(rule=rule, replicates=1)
    g = torch.Generator().manual_seed(3)
    lam = torch.cat([s.sample(5, generator=g, dtype=torch.float64)[0] for _ in range(800)]) if rule.endswith("qmc") \
        else s.sample(4000, generator=g, dtype=torch.float64)[0]
    lo, hi = s.support
    if rule.startswith("logistic"):
        c0 = special.expit(-3.0)
        cdf = lambda v: (special.expit((v - 1.0) / 2.0) - c0) / math.tanh(1.5)
    else:
        cdf = lambda v: (v - lo) / (hi - lo)
    assert stats.kstest(lam.numpy(), cdf).pvalue > 1e-3


def test_qmc_points_are_evenly_spaced_quantiles():
    lam, _ = L.logistic_qmc_quadrature(50, generator=torch.Generator().manual_seed(5), dtype=torch.float64,
                                       batch_shape=(3,))
    u = (torch.sigmoid((lam - 1.0) / 2.0) - special.expit(-3.0)) / math.tanh(1.5)  # back to [0, 1]
    torch.testing.assert_close(u.diff(dim=-1), torch.full((3, 49), 1 / 50, dtype=torch.float64), atol=1e-9, rtol=0)
    assert not torch.allclose(u[0], u[1]), "each batch element has its own random shift"
    lam, _ = L.uniform_qmc_quadrature(8, generator=torch.Generator().manual_seed(5), dtype=torch.float64)
    torch.testing.assert_close(lam.diff(), torch.full((7,), 12 / 8, dtype=torch.float64), atol=1e-12, rtol=0)


def test_qmc_has_lower_variance_for_a_smooth_integrand():
    g = torch.Generator().manual_seed(9)
    est = {}
    for rule in ("logistic", "logistic_qmc"):
        s = L.LogSNRSampling(rule=rule, replicates=1)
        lam, w = s.sample(64, generator=g, dtype=torch.float64, batch_shape=(400,))
        est[rule] = (w * torch.sigmoid(lam)).mean(-1)
    exact = math.log1p(math.exp(7)) - math.log1p(math.exp(-5))
    assert abs(float(est["logistic_qmc"].mean()) - exact) < 4 * float(est["logistic_qmc"].std()) / 20
    assert float(est["logistic_qmc"].var()) < float(est["logistic"].var()) / 20


def test_reference_uniform_weight_bug_is_the_density():
    s_bug = L.LogSNRSampling.faithful("uniform")
    assert s_bug.reference_uniform_weight and s_bug.support == (-5.0, 7.0)
    lam_b, w_b = s_bug.sample(10, generator=torch.Generator().manual_seed(1))
    lam, w = L.LogSNRSampling(rule="uniform").sample(10, generator=torch.Generator().manual_seed(1))
    assert torch.equal(lam_b, lam)
    torch.testing.assert_close(w_b, 1 / w)  # 1/range instead of range (docs/protocol.md#b5)


def test_settings_presets():
    assert L.LogSNRSampling().support == (-5.0, 7.0)
    assert L.LogSNRSampling.faithful().support == (-7.0, 9.0)  # clip 4 on the nll paths (docs/protocol.md#b2)
    assert L.LogSNRSampling.faithful("daam_itd").clip == 3.0
    s = L.LogSNRSampling.from_range(-5.364, 7.069)
    assert s.loc == pytest.approx(0.8525) and s.scale == pytest.approx(2.072, abs=1e-3)
    assert s.support == pytest.approx((-5.364, 7.069))
    assert s.with_(clip=2.0).clip == 2.0 and s.clip == 3.0


def test_grid():
    torch.testing.assert_close(L.logsnr_grid(10), torch.linspace(-5.0, 7.0, 10))
    assert L.logsnr_grid(3, clip=4.0, dtype=torch.float64).tolist() == [-7.0, 1.0, 9.0]


def test_generator_makes_draws_reproducible():
    a = L.logistic_quadrature(7, generator=torch.Generator().manual_seed(4))
    b = L.logistic_quadrature(7, generator=torch.Generator().manual_seed(4))
    c = L.logistic_quadrature(7, generator=torch.Generator().manual_seed(5))
    assert torch.equal(a[0], b[0]) and not torch.equal(a[0], c[0])
    assert a[0].dtype == torch.float32
    assert L.logistic_quadrature(7, dtype=torch.float64)[1].dtype == torch.float64


@pytest.mark.parametrize("kwargs, match", [
    (dict(rule="gauss"), "unknown log-SNR rule"),
    (dict(scale=0.0), "scale must be > 0"),
    (dict(clip=-1.0), "clip must be > 0"),
    (dict(loc=float("nan")), "loc must be a finite number"),
    (dict(replicates=0), "replicates"),
    (dict(rule="logistic", reference_uniform_weight=True), "only applies to rule='uniform'"),
])
def test_bad_settings_raise(kwargs, match):
    with pytest.raises(ValueError, match=match):
        L.LogSNRSampling(**kwargs)


def test_bad_counts_raise():
    with pytest.raises(ValueError, match="integer >= 1"):
        L.logistic_quadrature(0)
    with pytest.raises(ValueError, match="multiple of 10"):
        L.LogSNRSampling(rule="logistic_qmc").sample(64)
    with pytest.raises(ValueError, match="scale must be > 0"):
        L.uniform_quadrature(5, scale=-2.0)
