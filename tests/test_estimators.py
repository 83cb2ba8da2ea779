"""The information estimators against exact answers of the analytic worlds.

Tolerances: |estimate − estimand| < 4 standard errors, where the estimand on the clipped log-SNR range is
the exact value minus the information outside the range (computed by infodecomp.analytic, not guessed).
"""

import math

import pytest
import torch

from infodecomp import analytic as A
from infodecomp import estimators as E
from infodecomp.logsnr import LogSNRSampling
from infodecomp.testing import RecordingDenoiser

LO, HI = -5.0, 7.0  # loc 1, scale 2, clip 3
INF = math.inf


def gen(seed):
    return torch.Generator().manual_seed(seed)


def _pairs(kind, world, n, seed):
    """(x, cond, ref) of n examples from the joint, for MI (full vs null) or CMI (full vs context)."""
    if isinstance(world, A.GaussianWorld):
        x, y = world.sample(n, generator=gen(seed))
        ref = world.null(n) if kind == "mi" else world.condition(y, observed=[False, True])
        return x, world.condition(y), ref
    x, lab = world.sample(n, generator=gen(seed))
    ref = world.null(n) if kind == "mi" else world.condition(lab, given=[1])
    return x, world.condition(lab), ref


def _exact_information(kind, world, lo, hi):
    if isinstance(world, A.GaussianWorld):
        args = ((None, ()) if kind == "mi" else ([0], [1]))
        return world.information(*args), world.truncated_information(lo, hi, *args)
    args = ((None, ()) if kind == "mi" else ((0,), (1,)))
    return world.information(*args), float(A.integrate_over_logsnr(
        lambda l: world.information_integrand(l, *args), lo, hi, panel_width=2.0))


# ─────────────────────────────────────── against exact answers ───────────────────────────────────────

@pytest.mark.parametrize("world_name", ["gaussian", "mixture"])
@pytest.mark.parametrize("kind", ["mi", "cmi"])
def test_standard_estimates_the_pointwise_log_likelihood_ratio(world_name, kind, gworld, mworld):
    """i^s of individual examples = log p(x|cond) − log p(x|ref) (Eq. 4) minus the known truncation."""
    world = gworld if world_name == "gaussian" else mworld
    x, cond, ref = _pairs(kind, world, 4, seed=1)
    exact = world.log_ratio(x, cond, ref)
    outside = world.truncated_pointwise(x, cond, ref, -INF, LO)[0] + world.truncated_pointwise(x, cond, ref, HI, INF)[0]
    est = E.pointwise_information(world, x, cond, ref, n_samples=3000, estimator="standard", generator=gen(2))
    assert est.value.shape == est.stderr.shape == (4,)
    z = (est.value - (exact - outside)) / est.stderr
    assert bool((z.abs() < 4).all()), f"z-scores {z.tolist()}; exact {exact.tolist()}, truncation {outside.tolist()}"


@pytest.mark.parametrize("world_name", ["gaussian", "mixture"])
def test_orthogonal_estimates_its_pointwise_integral(world_name, gworld, mworld):
    world = gworld if world_name == "gaussian" else mworld
    x, cond, ref = _pairs("mi", world, 4, seed=3)
    target = world.truncated_pointwise(x, cond, ref, LO, HI)[1]
    est = E.pointwise_information(world, x, cond, ref, n_samples=3000, generator=gen(4))
    assert est.estimator == "orthogonal"
    z = (est.value - target) / est.stderr
    assert bool((z.abs() < 4).all()), z.tolist()
    # a test that can fail: i^o is not the pointwise log ratio (only equal on average)
    assert float((est.value - world.log_ratio(x, cond, ref)).abs().max()) > 0.2


@pytest.mark.parametrize("world_name, kind", [("gaussian", "mi"), ("gaussian", "cmi"), ("mixture", "mi"),
                                              ("mixture", "cmi")])
def test_mean_over_the_joint_is_the_exact_information(world_name, kind, gworld, mworld):
    """E over (x, y) of i^o and of i^s is the exact MI / CMI (minus the known truncation)."""
    world = gworld if world_name == "gaussian" else mworld
    exact, truncated = _exact_information(kind, world, LO, HI)
    N = 3000
    x, cond, ref = _pairs(kind, world, N, seed=5)
    s = E.information_scores(world, x, cond[:, None], ref, n_samples=4, generator=gen(6))
    for name, v in (("orthogonal", s.orthogonal[:, 0]), ("standard", s.standard[:, 0])):
        mean, se = float(v.mean()), float(v.std() / math.sqrt(N))
        assert abs(mean - truncated) < 4 * se, f"{name}: {mean} ± {se} vs {truncated} (untruncated {exact})"
    assert float(s.orthogonal.std()) < float(s.standard.std())  # i^o: lower variance (App. C.2)


def test_gaussian_image_world_mean_and_pixel_maps(iworld):
    N = 300
    x, y = iworld.sample(N, generator=gen(7))
    cond, null = iworld.condition(y), iworld.null(N)
    s = E.information_scores(iworld, x, cond[:, None], null, n_samples=8, pixelwise=True, generator=gen(8))
    assert s.pixel_orthogonal.shape == s.pixel_standard.shape == (N, 1, 8, 8)
    # maps sum to the image-level values
    torch.testing.assert_close(s.pixel_orthogonal.sum((-1, -2)), s.orthogonal, rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(s.pixel_standard.sum((-1, -2)), s.standard, rtol=1e-10, atol=1e-10)
    # the mean map is the exact per-pixel information on [LO, HI], pixel by pixel
    exact = iworld.pixel_information(lo=LO, hi=HI)
    for maps in (s.pixel_orthogonal[:, 0], s.pixel_standard[:, 0]):
        mean, se = maps.mean(0), maps.std(0) / math.sqrt(N)
        informative = iworld.gain != 0
        assert float(((mean - exact)[informative] / se[informative]).abs().max()) < 5
        assert float(mean[~informative].abs().max()) < 1e-10  # no information where the gain is zero


def test_pixelwise_standard_of_one_image(iworld):
    x, y = iworld.sample(2, generator=gen(9))
    cond, null = iworld.condition(y), iworld.null(2)
    est = E.pointwise_information(iworld, x, cond, null, n_samples=2000, estimator="standard", pixelwise=True,
                                  generator=gen(10))
    assert est.value.shape == (2, 8, 8) and est.stderr.shape == (2,)
    torch.testing.assert_close(est.value.sum((-1, -2)), est.image_value, rtol=1e-10, atol=1e-10)
    target = iworld.truncated_pixel_pointwise(x, cond, null, LO, HI)[0]
    assert bool((((est.image_value - target.sum((-1, -2))) / est.stderr).abs() < 4).all())
    # per pixel: the region with information is recovered (correlation with the exact per-pixel ratio)
    r = torch.corrcoef(torch.stack([est.value.flatten(), target.flatten()]))[0, 1]
    assert float(r) > 0.9


def test_vector_maps_have_one_entry_per_variable(gworld):
    x, cond, ref = _pairs("mi", gworld, 5, seed=11)
    for estimator in ("orthogonal", "standard"):
        est = E.pointwise_information(gworld, x, cond, ref, n_samples=16, estimator=estimator, pixelwise=True,
                                      generator=gen(12))
        assert est.value.shape == (5, 3)
        torch.testing.assert_close(est.value.sum(-1), est.image_value, rtol=1e-12, atol=1e-12)
        plain = E.pointwise_information(gworld, x, cond, ref, n_samples=16, estimator=estimator, generator=gen(12))
        torch.testing.assert_close(plain.value, est.image_value, rtol=0, atol=0)


# ─────────────────────────────────────────── properties ───────────────────────────────────────────

def _noisy_denoiser(z, logsnr, cond):
    """Not an MMSE denoiser: depends on cond and on the row's position in the batch (as a real batched net
    might, by rounding), to check properties that must hold for ANY denoiser."""
    pos = torch.arange(z.shape[0], dtype=z.dtype)[:, None] * 1e-3
    return torch.tanh(z * (1 + cond.to(z.dtype)[:, :1])) + torch.sin(logsnr)[:, None] + pos


def test_orthogonal_is_never_negative():
    x = torch.randn(6, 4, generator=gen(13))
    cond, ref = torch.randn(6, 2, generator=gen(14)), torch.randn(6, 2, generator=gen(15))
    for rule in ("logistic", "uniform_qmc"):
        est = E.pointwise_information(_noisy_denoiser, x, cond, ref, n_samples=20, rule=rule, pixelwise=True,
                                      generator=gen(16))
        assert bool((est.value >= 0).all()) and bool((est.image_value > 0).all())


def test_identical_condition_and_reference_give_exactly_zero(gworld):
    x = torch.randn(5, 4, generator=gen(17))
    c = torch.randn(5, 3, generator=gen(18))
    for estimator in ("orthogonal", "standard"):
        est = E.pointwise_information(_noisy_denoiser, x, c, c.clone(), n_samples=10, estimator=estimator,
                                      pixelwise=True, generator=gen(19))
        assert bool((est.value == 0).all()) and bool((est.stderr == 0).all())
    # among several candidates, only the one equal to the reference (in that example) is exactly zero
    other = torch.randn(5, 3, generator=gen(20))
    conds = torch.stack([other, c.clone()], 1)
    conds[0, 0] = c[0]
    s = E.information_scores(_noisy_denoiser, x, conds, c, n_samples=10, generator=gen(21))
    zero = torch.zeros(5, 2, dtype=torch.bool)
    zero[:, 1] = True
    zero[0, 0] = True
    assert bool((s.orthogonal[zero] == 0).all()) and bool((s.standard[zero] == 0).all())
    assert bool((s.orthogonal[~zero] > 0).all())
    torch.testing.assert_close(s.mmse[:, 1], s.ref_mmse)
    # the analytic world: the same, with real conditions
    x, cond, _ = _pairs("mi", gworld, 3, seed=22)
    assert bool((E.pointwise_information(gworld, x, cond, cond, n_samples=8, estimator="standard",
                                                generator=gen(45)).value == 0).all())


def test_stderr_shrinks_like_one_over_sqrt_n_and_is_calibrated(gworld):
    x, cond, ref = _pairs("mi", gworld, 8, seed=23)
    small = E.pointwise_information(gworld, x, cond, ref, n_samples=100, generator=gen(24))
    large = E.pointwise_information(gworld, x, cond, ref, n_samples=1600, generator=gen(25))
    ratio = float(small.stderr.mean() / large.stderr.mean())
    assert 3.2 < ratio < 4.8, ratio  # sqrt(1600/100) = 4
    # calibration: over 400 independent repeats the spread of the estimates equals the reported stderr,
    # for the i.i.d. rule and for the randomised-QMC rule (whose stderr comes from its replicates)
    R = 400
    xr, cr, rr = x[:1].expand(R, -1), cond[:1].expand(R, -1), ref[:1].expand(R, -1)
    for rule in ("logistic", "logistic_qmc"):
        for estimator in ("orthogonal", "standard"):
            est = E.pointwise_information(gworld, xr, cr, rr, n_samples=200, rule=rule, estimator=estimator,
                                          generator=gen(26))
            ratio = float(est.value.std() / est.stderr.pow(2).mean().sqrt())
            assert 0.85 < ratio < 1.15, (rule, estimator, ratio)



def test_noise_is_shared_across_conditions(gworld):
    # 1) a denoiser that ignores the condition: with shared (λ, ε), different conditions give EXACTLY zero
    blind = lambda z, logsnr, cond: torch.tanh(z) * torch.sigmoid(logsnr)[:, None]
    x, cond, ref = _pairs("mi", gworld, 4, seed=27)
    for estimator in ("orthogonal", "standard"):
        assert bool((E.pointwise_information(blind, x, cond, ref, n_samples=16, estimator=estimator,
                                                generator=gen(46)).value == 0).all())
    # 2) every call holds all M+1 conditions of the same items, on identical z and λ
    spy = RecordingDenoiser(gworld)
    conds = torch.stack([cond, ref, cond], 1)
    E.information_scores(spy, x, conds, ref, n_samples=5, noise_per_logsnr=3, chunk_size=4 * 7, generator=gen(28))
    rows = 0
    for z, logsnr, c in spy.calls:
        assert z.shape[0] <= 28 and z.shape[0] % 4 == 0
        n = z.shape[0] // 4
        zb, lb, cb = z.view(4, n, -1), logsnr.view(4, n), c.view(4, n, -1)
        assert all(torch.equal(zb[j], zb[0]) and torch.equal(lb[j], lb[0]) for j in range(4))
        assert torch.equal(cb[3], cb[1])  # the reference block is last, candidate 1 equals it here
        rows += z.shape[0]
    assert rows == 4 * 5 * 3 * (3 + 1), "each draw evaluates the reference once, not once per candidate"


def test_results_do_not_depend_on_chunk_size(gworld):
    x, cond, ref = _pairs("mi", gworld, 3, seed=29)
    conds = torch.stack([cond, ref], 1)
    runs = [E.information_scores(gworld, x, conds, ref, n_samples=7, noise_per_logsnr=2, chunk_size=c,
                                 pixelwise=True, generator=gen(30)) for c in (3, 11, 1000)]
    for r in runs[1:]:
        for f in ("orthogonal", "standard", "mmse", "orthogonal_stderr", "pixel_orthogonal", "pixel_standard"):
            torch.testing.assert_close(getattr(r, f), getattr(runs[0], f), rtol=1e-12, atol=1e-12)


def test_share_logsnr(gworld):
    x, cond, ref = _pairs("mi", gworld, 3, seed=31)
    for share in (True, False):
        spy = RecordingDenoiser(gworld)
        E.pointwise_information(spy, x, cond, ref, n_samples=6, share_logsnr=share, chunk_size=1000, generator=gen(32))
        (z, logsnr, _), = spy.calls
        lam = logsnr[: 3 * 6].view(6, 3)  # items in (draw, example) order
        assert torch.equal(lam, lam[:, :1].expand(6, 3)) == share


def test_low_precision_denoiser_accumulates_in_float32(gworld):
    x, cond, ref = _pairs("mi", gworld, 4, seed=33)
    x32 = x.float()
    exact = E.pointwise_information(gworld, x32, cond, ref, n_samples=50, estimator="standard", generator=gen(34))
    for dt in (torch.float16, torch.bfloat16):
        low = lambda z, l, c, dt=dt: gworld(z, l, c).to(dt)
        est = E.pointwise_information(low, x32, cond, ref, n_samples=50, estimator="standard", generator=gen(34))
        assert est.value.dtype == torch.float32
        tol = 0.02 if dt == torch.float16 else 0.1
        torch.testing.assert_close(est.value, exact.value, atol=tol, rtol=0)
    # fp16 data: z reaches the denoiser in fp16, results come back in float32
    spy = RecordingDenoiser(lambda z, l, c: gworld(z, l, c))
    est = E.pointwise_information(spy, x.half(), cond, ref, n_samples=8, generator=gen(35))
    assert spy.calls[0][0].dtype == torch.float16 and est.value.dtype == torch.float32
    assert bool(torch.isfinite(est.value).all())


def test_information_scores_agree_with_pointwise_and_mmse_is_exact(gworld):
    x, cond, ref = _pairs("mi", gworld, 3, seed=36)
    conds = torch.stack([cond, gworld.condition(gworld.sample(3, generator=gen(37))[1])], 1)
    s = E.information_scores(gworld, x, conds, ref, n_samples=3000, generator=gen(38))
    p = E.pointwise_information(gworld, x, cond, ref, n_samples=3000, generator=gen(38), estimator="standard")
    # the extra candidate does not change the draws seen by the first one
    torch.testing.assert_close(s.standard[:, 0], p.value, rtol=1e-12, atol=1e-12)
    # the mean denoising error under λ ~ q (the DiffITM score): ∫ q(λ) mmse(x, λ) dλ
    q = LogSNRSampling()
    for j in range(2):
        target = A.integrate_over_logsnr(lambda l: q.density(l) * gworld.pointwise_mmse(x, conds[:, j], l), LO, HI)
        assert bool((((s.mmse[:, j] - target) / s.mmse_stderr[:, j]).abs() < 4).all())
    target = A.integrate_over_logsnr(lambda l: q.density(l) * gworld.pointwise_mmse(x, ref, l), LO, HI)
    assert bool((((s.ref_mmse - target) / s.ref_mmse_stderr).abs() < 4).all())


def test_mmse_curve_matches_exact_per_logsnr(gworld):
    x, cond, ref = _pairs("cmi", gworld, 3, seed=39)
    grid = torch.tensor([-4.0, 0.0, 3.0, 6.5], dtype=torch.float64)
    c = E.mmse_curve(gworld, x, cond[:, None], ref, grid, n_noise=20000, pixelwise=True, generator=gen(40))
    assert c.mmse.shape == c.standard.shape == c.orthogonal.shape == (3, 1, 4) and c.ref_mmse.shape == (3, 4)
    std, orth = gworld.pointwise_integrands(x, cond, ref, grid)
    checks = [(c.mmse[:, 0], c.mmse_stderr[:, 0], gworld.pointwise_mmse(x, cond, grid)),
              (c.ref_mmse, c.ref_mmse_stderr, gworld.pointwise_mmse(x, ref, grid)),
              (c.standard[:, 0], c.standard_stderr[:, 0], 2 * std),  # integrands without the ½
              (c.orthogonal[:, 0], c.orthogonal_stderr[:, 0], 2 * orth)]
    for est, se, exact in checks:
        assert bool((((est - exact) / se).abs() < 4).all())
    assert c.pixel_orthogonal.shape == (3, 1, 4, 3)
    torch.testing.assert_close(c.pixel_orthogonal.sum(-1), c.orthogonal, rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(c.pixel_standard.sum(-1), c.standard, rtol=1e-10, atol=1e-10)


def test_other_rules_and_settings_hit_their_estimands(gworld):
    x, cond, ref = _pairs("mi", gworld, 3, seed=41)
    exact = gworld.log_ratio(x, cond, ref)
    cases = [(dict(sampling=LogSNRSampling.faithful()), (-7.0, 9.0)),                    # clip 4 (docs/protocol.md#b2)
             (dict(rule="uniform"), (LO, HI)),
             (dict(sampling=LogSNRSampling(rule="uniform_qmc", replicates=30)), (LO, HI)),
             (dict(noise_per_logsnr=4, antithetic=True), (LO, HI)),
             (dict(loc=0.0, scale=1.5, clip=2.0), (-3.0, 3.0))]
    for kwargs, (lo, hi) in cases:
        outside = (gworld.truncated_pointwise(x, cond, ref, -INF, lo)[0]
                   + gworld.truncated_pointwise(x, cond, ref, hi, INF)[0])
        est = E.pointwise_information(gworld, x, cond, ref, n_samples=2400, estimator="standard", generator=gen(42),
                                      **kwargs)
        z = (est.value - (exact - outside)) / est.stderr
        assert bool((z.abs() < 4).all()), (kwargs, z.tolist(), outside.tolist())
    # the reference's uniform weight (docs/protocol.md#b5) scales everything by 1/range² on the same draws
    good = E.pointwise_information(gworld, x, cond, ref, n_samples=50, rule="uniform", generator=gen(43))
    bug = E.pointwise_information(gworld, x, cond, ref, n_samples=50, generator=gen(43),
                                  sampling=LogSNRSampling.faithful("uniform"))
    torch.testing.assert_close(bug.value, good.value / 144.0, rtol=1e-12, atol=0)


# ─────────────────────────────────────────── bad input ───────────────────────────────────────────

def test_bad_input_raises_clear_errors(gworld):
    x, cond, ref = _pairs("mi", gworld, 3, seed=44)
    pi = E.pointwise_information
    with pytest.raises(ValueError, match="batch-aligned"):
        pi(gworld, x, cond[:2], ref)
    with pytest.raises(ValueError, match="batch-aligned"):
        pi(gworld, x, cond, ref[:2])
    bad = x.clone()
    bad[1, 0] = float("nan")
    with pytest.raises(ValueError, match="x contains 1 non-finite"):
        pi(gworld, bad, cond, ref)
    bad = cond.clone()
    bad[0, 0] = float("inf")
    with pytest.raises(ValueError, match="cond contains 1 non-finite"):
        pi(gworld, x, bad, ref)
    with pytest.raises(ValueError, match="denoiser returned non-finite"):
        pi(lambda z, l, c: z * float("nan"), x, cond, ref, n_samples=2, generator=gen(47))
    with pytest.raises(ValueError, match="shaped like z"):
        pi(lambda z, l, c: z[:, :2], x, cond, ref, n_samples=2, generator=gen(48))
    with pytest.raises(ValueError, match="n_samples must be an integer >= 1"):
        pi(gworld, x, cond, ref, n_samples=0)
    with pytest.raises(ValueError, match="unknown estimator 'pointwise'"):
        pi(gworld, x, cond, ref, estimator="pointwise")
    with pytest.raises(ValueError, match="clip must be > 0"):
        pi(gworld, x, cond, ref, clip=0.0)
    with pytest.raises(ValueError, match="scale must be > 0"):
        pi(gworld, x, cond, ref, scale=-1.0)
    with pytest.raises(ValueError, match="not both"):
        pi(gworld, x, cond, ref, sampling=LogSNRSampling(), clip=4.0)
    with pytest.raises(ValueError, match="chunk_size must be an integer >= 2"):
        pi(gworld, x, cond, ref, chunk_size=1)
    with pytest.raises(ValueError, match="even"):
        pi(gworld, x, cond, ref, noise_per_logsnr=3, antithetic=True)
    with pytest.raises(ValueError, match="same dtype"):
        pi(gworld, x, cond.float(), ref)
    with pytest.raises(ValueError, match="reference's shape"):
        E.information_scores(gworld, x, cond[:, None, :3], ref)
    with pytest.raises(TypeError, match="floating-point"):
        pi(gworld, x.long(), cond, ref)


def test_numpy_integers_are_counts_everywhere(gworld):
    """Issue 14, item 7: ``np.int64(4)`` was rejected with a message that contradicted itself ("must be an integer
    >= 1, got 4")."""
    import numpy as np

    from infodecomp.experiments.intervention import InterventionSettings
    from infodecomp.experiments.probe import ProbeSettings
    from infodecomp.experiments.relation_testing import RelationSettings

    x, y = gworld.sample(3, generator=gen(0))
    a = E.pointwise_information(gworld, x, gworld.condition(y), gworld.null(3), n_samples=np.int64(4),
                                noise_per_logsnr=np.int32(2), chunk_size=np.int64(64), generator=gen(1))
    b = E.pointwise_information(gworld, x, gworld.condition(y), gworld.null(3), n_samples=4, noise_per_logsnr=2,
                                chunk_size=64, generator=gen(1))
    assert torch.equal(a.value, b.value) and a.n_samples == 4 and type(a.n_samples) is int
    assert LogSNRSampling(replicates=np.int64(5)).sample(np.int64(10))[0].shape == (10,)
    assert RelationSettings(n_samples=np.int64(20), blocks=np.int64(4)).resolved()["n_samples"] == 20
    assert ProbeSettings(n_samples=np.int64(4), seed=np.int64(0)).n_samples == 4
    assert InterventionSettings(n_steps=np.int64(3), n_logsnr=np.int64(2), n_noise=np.int16(2)).n_steps == 3
    with pytest.raises(ValueError, match=r"n_samples must be an integer >= 1; got 0"):
        E.pointwise_information(gworld, x, gworld.condition(y), gworld.null(3), n_samples=np.int64(0))
    with pytest.raises(ValueError, match=r"n_samples must be an integer >= 1; got 4.0 \(float\)"):
        E.pointwise_information(gworld, x, gworld.condition(y), gworld.null(3), n_samples=4.0)
    with pytest.raises(ValueError, match=r"empty batch"):
        E.pointwise_information(gworld, x[:0], gworld.condition(y)[:0], gworld.null(0), n_samples=4)
