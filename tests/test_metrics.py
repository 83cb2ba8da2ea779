"""Tests of infodecomp.metrics against answers worked out by hand (and numpy/scipy where that is the reference)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.stats
import torch

from infodecomp import metrics as M

# ----------------------------------------------------------------------------------------------------------------
# IoU sweep

MAP = torch.tensor([[0.0, 0.2], [0.6, 1.0]])
MASK = torch.tensor([[False, False], [True, True]])


def test_iou_hand_example():
    # τ = 0.1: pred {0.2, 0.6, 1.0}: I = 2, U = 3 → 2/3;  τ = 0.3: pred {0.6, 1.0} = mask → 1;
    # τ = 0.7: pred {1.0}: I = 1, U = 2 → 1/2;  τ = 0.6: "map > τ" is strict, pred {1.0} → 1/2.
    iou = M.iou_per_threshold(MAP, MASK, [0.1, 0.3, 0.6, 0.7])
    np.testing.assert_allclose(iou, [[2 / 3, 1.0, 0.5, 0.5]])


def test_iou_min_max_normalises_each_image():
    stacked = torch.stack([MAP, 2 * MAP + 5, -MAP])  # the last flips the order: pred {0.0} at τ < 0.8 after norm
    masks = MASK.expand(3, 2, 2)
    iou = M.iou_per_threshold(stacked, masks, [0.1, 0.3, 0.7])
    np.testing.assert_allclose(iou[0], iou[1])
    # -MAP normalised: [[1, 0.8], [0.4, 0]]; τ=0.1: pred {1, .8, .4}: I = 1 ({.4}), U = 4 → 1/4;
    # τ=0.3: same → 1/4; τ=0.7: pred {1, .8}: I = 0 → 0.
    np.testing.assert_allclose(iou[2], [0.25, 0.25, 0.0])
    np.testing.assert_allclose(M.minmax_normalize(2 * MAP + 5), MAP, atol=1e-7)


def test_iou_empty_cases_and_zero_division():
    const = torch.full((2, 2), 3.0)  # constant map → all zeros → empty prediction at every τ > 0
    assert M.minmax_normalize(const).abs().max() == 0
    empty = torch.zeros(2, 2, dtype=torch.bool)
    np.testing.assert_allclose(M.iou_per_threshold(const, MASK, [0.1, 0.5]), [[0.0, 0.0]])  # 0 / |mask|
    np.testing.assert_allclose(M.iou_per_threshold(const, empty, [0.1]), [[0.0]])  # 0/0 → zero_division = 0
    np.testing.assert_allclose(M.iou_per_threshold(const, empty, [0.1], zero_division=1.0), [[1.0]])
    np.testing.assert_allclose(M.iou_per_threshold(MAP, empty, [0.1]), [[0.0]])  # 0 / |pred|


def _brute_force_iou(h: np.ndarray, m: np.ndarray, thresholds: np.ndarray) -> np.ndarray:
    out = []
    for hb, mb in zip(h, m):
        lo, hi = hb.min(), hb.max()
        n = (hb - lo) / (hi - lo)
        row = []
        for t in thresholds:
            p = n > np.float32(t)
            inter, union = (p & mb).sum(), (p | mb).sum()
            row.append(inter / union if union else 0.0)
        out.append(row)
    return np.array(out)


def test_iou_matches_brute_force_for_all_default_thresholds():
    g = torch.Generator().manual_seed(0)
    h = torch.rand(5, 16, 16, generator=g)
    m = torch.rand(5, 16, 16, generator=g) > 0.6
    iou = M.iou_per_threshold(h, m)
    assert iou.shape == (5, 50)
    np.testing.assert_allclose(iou, _brute_force_iou(h.numpy(), m.numpy(), M.default_thresholds()), atol=1e-12)
    thr = M.default_thresholds()
    assert len(thr) == 50 and thr[0] == 0.1 and thr[-1] == 0.5


def test_iou_shape_errors():
    with pytest.raises(ValueError, match="upsample"):
        M.iou_per_threshold(torch.rand(2, 4, 4), torch.zeros(2, 8, 8, dtype=torch.bool))
    with pytest.raises(ValueError, match="NaN"):
        M.iou_per_threshold(torch.tensor([[0.0, float("nan")]]), torch.tensor([[True, False]]))
    with pytest.raises(ValueError, match="0/1"):
        M.iou_per_threshold(MAP, torch.full((2, 2), 2))


def test_upsample_bilinear_known_values():
    x = torch.tensor([[0.0, 1.0], [0.0, 1.0]], dtype=torch.float16)
    y = M.upsample_bilinear(x, (4, 4))
    # align_corners=False: source x = (o + 0.5)/2 - 0.5 → -0.25 (clamped 0), 0.25, 0.75, 1.25 (clamped 1)
    assert y.dtype == torch.float32 and y.shape == (4, 4)
    np.testing.assert_allclose(y.numpy(), np.tile([0.0, 0.25, 0.75, 1.0], (4, 1)))
    assert M.upsample_bilinear(np.zeros((3, 2, 5, 5)), (10, 10)).shape == (3, 2, 10, 10)


def test_sweep_streaming_equals_one_batch_and_upsamples():
    g = torch.Generator().manual_seed(1)
    lat = torch.rand(6, 8, 8, generator=g).half()
    masks = torch.rand(6, 32, 32, generator=g) > 0.5
    whole = M.iou_per_threshold(M.upsample_bilinear(lat, (32, 32)), masks)
    sweep = M.IoUSweep()
    for k in range(0, 6, 4):
        sweep.update(lat[k:k + 4], masks[k:k + 4], upsample=True)
    np.testing.assert_allclose(sweep.per_image, whole)
    assert sweep.ids == list(range(6)) and len(sweep) == 6
    thr, miou, se = sweep.curve()
    np.testing.assert_allclose(miou, whole.mean(0))
    np.testing.assert_allclose(se, whole.std(0, ddof=1) / math.sqrt(6))


def test_oracle_and_held_out_threshold_selection_by_hand():
    # Two calibration images prefer τ0; the other three prefer τ1.
    per_image = np.array([[0.9, 0.1], [0.9, 0.1], [0.1, 0.8], [0.2, 0.8], [0.3, 0.8]])
    thresholds = np.array([0.2, 0.4])
    oracle = M.select_threshold(per_image, thresholds)
    # mIoU(τ0) = 2.4/5 = 0.48 < mIoU(τ1) = 2.6/5 = 0.52 → τ1, reported on the same five images
    assert oracle.protocol == "faithful" and oracle.threshold == 0.4 and oracle.n == oracle.n_calibration == 5
    assert oracle.miou == pytest.approx(0.52)
    assert oracle.stderr == pytest.approx(np.std(per_image[:, 1], ddof=1) / math.sqrt(5))
    held = M.select_threshold(per_image, thresholds, calibration=[0, 1])
    # chosen on images 0, 1 → τ0; reported on 2, 3, 4 at τ0: mean 0.2, std 0.1, stderr 0.1/√3
    assert held.protocol == "corrected" and held.threshold == 0.2 and held.n == 3 and held.n_calibration == 2
    assert held.miou == pytest.approx(0.2) and held.std == pytest.approx(0.1)
    assert held.stderr == pytest.approx(0.1 / math.sqrt(3))
    np.testing.assert_allclose(held.calibration_curve, [0.9, 0.1])
    with pytest.raises(ValueError, match="both sides"):
        M.select_threshold(per_image, thresholds, calibration=np.ones(5, dtype=bool))


def test_sweep_held_out_split_is_seeded_and_ids_work():
    g = torch.Generator().manual_seed(2)
    sweep = M.IoUSweep(thresholds=np.linspace(0.1, 0.5, 9))
    sweep.update(torch.rand(20, 8, 8, generator=g), torch.rand(20, 8, 8, generator=g) > 0.5,
                 ids=[f"img{i}" for i in range(20)])
    a = sweep.held_out(calibration_fraction=0.25, seed=3)
    b = sweep.held_out(calibration_fraction=0.25, seed=3)
    assert (a.threshold, a.miou, a.stderr) == (b.threshold, b.miou, b.stderr)
    assert a.n_calibration == 5 and a.n == 15
    by_ids = sweep.held_out(calibration_ids=[f"img{i}" for i in range(10)])
    direct = M.select_threshold(sweep.per_image, sweep.thresholds, calibration=np.arange(10))
    assert by_ids.miou == direct.miou and by_ids.threshold == direct.threshold
    with pytest.raises(ValueError, match="not among"):
        sweep.held_out(calibration_ids=["nope"])


def test_whole_image_iou_is_area_fraction():
    masks = torch.zeros(2, 4, 4, dtype=torch.bool)
    masks[0, :2] = True  # 8 of 16
    np.testing.assert_allclose(M.whole_image_iou(masks), [0.5, 0.0])


# ----------------------------------------------------------------------------------------------------------------
# retrieval accuracy

# Two candidates [false, true] (VG order in the reference): true index 1.
SCORES = np.array([[1.0, 2.0],   # correct
                   [2.0, 2.0],   # tie
                   [3.0, 1.0],   # wrong
                   [5.0, 5.0],   # tie
                   [0.0, 4.0]])  # correct


@pytest.mark.parametrize("policy, expected", [
    ("against_true", [1, 0, 0, 0, 1]),
    ("lowest_index", [1, 0, 0, 0, 1]),     # true last: argmax resolves ties against it (docs/protocol.md#b16)
    ("in_favour", [1, 1, 0, 1, 1]),
    ("fractional", [1, 0.5, 0, 0.5, 1]),
    ("exclude", [1, np.nan, 0, np.nan, 1]),
])
def test_tie_policies(policy, expected):
    out = M.retrieval_outcomes(SCORES, 1, tie_policy=policy)
    np.testing.assert_array_equal(out.correct, expected)
    assert out.n_ties == 2 and out.tied.tolist() == [False, True, False, True, False]
    assert out.prediction.tolist() == [1, 0, 0, 0, 1]


def test_lowest_index_differs_when_true_comes_first():
    out = M.retrieval_outcomes(SCORES[:, ::-1], 0, tie_policy="lowest_index")
    np.testing.assert_array_equal(out.correct, [1, 1, 0, 1, 1])  # now argmax favours the true caption


def test_three_way_ties_and_ties_among_wrong_candidates():
    s = np.array([[1.0, 1.0, 1.0], [3.0, 3.0, 1.0], [2.0, 0.0, 2.0 + 1e-9]])
    out = M.retrieval_outcomes(s, 2, tie_policy="fractional")
    np.testing.assert_allclose(out.correct, [1 / 3, 0, 1])  # wrong ones tied above the true one: plain wrong
    assert out.tied.tolist() == [True, False, False]
    loose = M.retrieval_outcomes(s, 2, tie_policy="fractional", tie_tol=1e-6)
    np.testing.assert_allclose(loose.correct, [1 / 3, 0, 0.5])
    with pytest.raises(ValueError, match="tie_policy"):
        M.retrieval_outcomes(s, 2, tie_policy="coin")
    with pytest.raises(ValueError, match="NaN"):
        M.retrieval_outcomes(np.array([[np.nan, 1.0]]), 1)


def test_wilson_interval_known_values():
    # textbook values (Newcombe 1998): 0/10 → (0, 0.2775); 5/10 → (0.2366, 0.7634)
    lo, hi = M.wilson_interval(0, 10)
    assert lo == 0.0 and hi == pytest.approx(0.2775, abs=1e-4)
    lo, hi = M.wilson_interval(5, 10)
    assert (lo, hi) == (pytest.approx(0.2366, abs=1e-4), pytest.approx(0.7634, abs=1e-4))
    assert all(math.isnan(v) for v in M.wilson_interval(0, 0))


def test_retrieval_accuracy_micro_macro_and_exclusion():
    scores = np.array([[0, 1], [0, 1], [1, 0], [1, 1],     # group "on": 2 right, 1 wrong, 1 tie
                       [0, 1], [1, 0],                     # group "near": 1 of 2
                       [0, 1], [0, 1], [0, 1],             # group "holding": 3 of 3
                       [0, 1]], dtype=float)               # group "rare": 1 example
    groups = ["on"] * 4 + ["near"] * 2 + ["holding"] * 3 + ["rare"]
    acc = M.retrieval_accuracy(scores, 1, groups, exclude_groups={"near", "not-present"}, seed=0)
    assert acc.micro.value == pytest.approx(7 / 10) and acc.micro.n == 10 and acc.n_ties == 1
    assert (acc.micro.ci_low, acc.micro.ci_high) == M.wilson_interval(7, 10)
    table = acc.per_group.set_index("group")
    assert table.loc["on", "accuracy"] == 0.5 and table.loc["on", "n_ties"] == 1
    assert table.loc["holding", "accuracy"] == 1.0 and list(acc.per_group["group"]) == sorted(set(groups))
    assert acc.macro.value == pytest.approx((0.5 + 0.5 + 1.0 + 1.0) / 4) and acc.macro.n == 4
    assert acc.macro_filtered.value == pytest.approx((0.5 + 1.0 + 1.0) / 3) and acc.excluded_groups == ("near",)
    assert acc.macro.ci_low <= acc.macro.value <= acc.macro.ci_high

    half = M.retrieval_accuracy(scores, 1, groups, tie_policy="fractional", min_group_size=2)
    assert "rare" not in set(half.per_group["group"]) and half.micro.n == 9
    assert half.micro.value == pytest.approx(6.5 / 9)
    excl = M.retrieval_accuracy(scores, 1, groups, tie_policy="exclude")
    assert excl.n_excluded == 1 and excl.micro.n == 9 and excl.micro.value == pytest.approx(7 / 9)
    assert M.retrieval_accuracy(scores, 1).macro is None


def test_macro_bootstrap_is_seeded_and_calibrated():
    rng = np.random.default_rng(0)
    n = 400
    groups = np.repeat(["a", "b"], n // 2)
    truth = rng.random(n) < np.where(groups == "a", 0.7, 0.4)
    scores = np.stack([np.zeros(n), np.where(truth, 1.0, -1.0)], axis=1)
    one = M.retrieval_accuracy(scores, 1, groups, seed=5)
    two = M.retrieval_accuracy(scores, 1, groups, seed=5)
    other = M.retrieval_accuracy(scores, 1, groups, seed=6)
    assert (one.macro.ci_low, one.macro.ci_high) == (two.macro.ci_low, two.macro.ci_high)
    assert (one.macro.ci_low, one.macro.ci_high) != (other.macro.ci_low, other.macro.ci_high)
    # analytic half-width of a 95 % interval for the mean of two independent proportions
    pa, pb = one.per_group["accuracy"]
    se = 0.5 * math.sqrt(pa * (1 - pa) / 200 + pb * (1 - pb) / 200)
    assert (one.macro.ci_high - one.macro.ci_low) / 2 == pytest.approx(1.96 * se, rel=0.15)


# ----------------------------------------------------------------------------------------------------------------
# Pearson


def test_pearson_matches_scipy_and_numpy():
    rng = np.random.default_rng(0)
    x = rng.normal(size=50)
    y = 0.5 * x + rng.normal(size=50)
    r = M.pearson(x, y)
    assert r == pytest.approx(scipy.stats.pearsonr(x, y)[0], abs=1e-12)
    assert r == pytest.approx(np.corrcoef(x, y)[0, 1], abs=1e-12)
    assert M.pearson([1, 2, 3], [2, 4, 6]) == pytest.approx(1.0)
    assert M.pearson([1, 2, 3], [3, 2, 1]) == pytest.approx(-1.0)
    assert math.isnan(M.pearson([1, 1, 1], [1, 2, 3]))
    with pytest.raises(ValueError, match="same length"):
        M.pearson([1, 2], [1, 2, 3])


def test_pixel_pearson_per_image_and_mean():
    rng = np.random.default_rng(1)
    a = rng.normal(size=(3, 8, 8))
    b = np.stack([3 * a[0] + 1, -a[1], rng.normal(size=(8, 8))])
    r = M.pixel_pearson(torch.from_numpy(a).float(), b)
    assert r[0] == pytest.approx(1.0, abs=1e-6) and r[1] == pytest.approx(-1.0, abs=1e-6)
    assert r[2] == pytest.approx(scipy.stats.pearsonr(a[2].ravel(), b[2].ravel())[0], abs=1e-6)
    assert M.mean_pixel_pearson(a, b) == pytest.approx(r.mean())
    b[2] = 0.0
    with pytest.raises(ValueError, match="constant"):
        M.mean_pixel_pearson(a, b)
    assert M.mean_pixel_pearson(a, b, nan_policy="omit") == pytest.approx(0.0, abs=1e-6)


def test_bootstrap_faithful_protocol():
    rng = np.random.default_rng(2)
    x = rng.normal(size=100)
    y = x + rng.normal(size=100)
    est = M.pearson_bootstrap(x, y, protocol="faithful", seed=0)
    assert est.n_resamples == 100 and est.resample_size == 90 and est.samples.shape == (100,)
    assert est.value == pytest.approx(M.pearson(x, y))
    assert est.std == pytest.approx(np.std(est.samples)) and est.error == pytest.approx(est.std / 10)
    # reproducible with a seed; the reference's unseeded behaviour is seed=None
    assert np.array_equal(est.samples, M.pearson_bootstrap(x, y, protocol="faithful", seed=0).samples)
    assert not np.array_equal(est.samples, M.pearson_bootstrap(x, y, protocol="faithful", seed=1).samples)
    assert M.pearson_bootstrap(x, y, protocol="faithful", seed=None).seed is None
    # hand check of one resample: the statistic sees exactly the drawn indices
    idx = np.random.default_rng(0).integers(0, 100, size=90)
    assert est.samples[0] == pytest.approx(M.pearson(x[idx], y[idx]))


def test_bootstrap_corrected_std_matches_the_standard_error_of_a_mean():
    rng = np.random.default_rng(3)
    v = rng.normal(size=400)
    est = M.bootstrap(lambda idx: float(v[idx].mean()), 400, protocol="corrected", seed=0)
    assert est.n_resamples == 1000 and est.resample_size == 400
    assert est.error == est.std == pytest.approx(np.std(est.samples, ddof=1))
    assert est.std == pytest.approx(v.std(ddof=1) / 20, rel=0.1)  # SE of the mean = sd/√400
    assert est.ci_low < est.value < est.ci_high
    assert est.ci_high - est.ci_low == pytest.approx(2 * 1.96 * v.std(ddof=1) / 20, rel=0.15)
    with pytest.raises(ValueError, match="protocol"):
        M.bootstrap(lambda idx: 0.0, 10, protocol="other")


def test_pixel_pearson_bootstrap_value_is_mean_over_images():
    rng = np.random.default_rng(4)
    a = rng.normal(size=(20, 6, 6))
    b = a + rng.normal(size=(20, 6, 6))
    est = M.pixel_pearson_bootstrap(a, b, protocol="corrected", n_resamples=200, seed=0)
    assert est.value == pytest.approx(M.mean_pixel_pearson(a, b))
    r = M.pixel_pearson(a, b)
    assert est.std == pytest.approx(r.std(ddof=1) / math.sqrt(20), rel=0.2)
