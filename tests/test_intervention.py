"""Tests of the prompt-intervention experiment (infodecomp.experiments.intervention)."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
import torch

from infodecomp.data.shapes import twin
from infodecomp.editing import generate, invert, sigma_range
from infodecomp.experiments.intervention import (
    InterventionSettings,
    intervention_row,
    latent_change,
    mask_fraction,
    paper_sampling,
    run_intervention,
    summarise_failures,
    table4,
)
from infodecomp.models import Model
from infodecomp.testing import tiny_pipeline

FAST = InterventionSettings(n_steps=4, n_logsnr=2, n_noise=2)


@pytest.fixture(scope="module")
def tiny_model():
    return Model(tiny_pipeline(), name="tiny")


@pytest.fixture(scope="module")
def rows():
    return twin("coco100-it", 3, seed=0, groups=("circle", "red", "square"))


# -- correlation pipeline on synthetic data with a known correlation ---------------------------------------------
def _synthetic_frame(n_images=300, rho_img=0.6, rho_pix=0.4, seed=0):
    rng = np.random.default_rng(seed)
    change = rng.normal(size=n_images) + 10
    cmi = rho_img * (change - 10) + math.sqrt(1 - rho_img**2) * rng.normal(size=n_images)
    att = rng.normal(size=n_images)  # independent of the change
    rows = []
    for i in range(n_images):
        cmap = rng.normal(size=(8, 8))
        rows.append({
            "ok": True, "cmi_s": cmi[i], "attention_total": att[i], "change_omit": change[i],
            "change_omit_map": cmap,
            "cmi_map": rho_pix * cmap + math.sqrt(1 - rho_pix**2) * rng.normal(size=(8, 8)),
            "attention_map": rng.normal(size=(8, 8)),
        })
    rows.append({"ok": False, "error": "RuntimeError: boom"})  # failed rows are excluded, not fatal
    return pd.DataFrame(rows)


def test_table4_recovers_known_correlations():
    frame = _synthetic_frame()
    n = 300
    t = table4(frame, protocol="corrected", seed=0)
    se_img = (1 - 0.6**2) / math.sqrt(n)
    assert abs(t["cmi"]["image"].value - 0.6) < 4 * se_img
    assert abs(t["attention"]["image"].value) < 4 / math.sqrt(n)
    # pixel level: mean of n per-image correlations over 64 pixels
    se_pix = (1 - 0.4**2) / math.sqrt(64) / math.sqrt(n)
    assert abs(t["cmi"]["pixel"].value - 0.4) < 5 * se_pix + 0.01  # + small-sample bias of r over 64 pixels
    assert abs(t["attention"]["pixel"].value) < 5 / math.sqrt(64 * n)
    # the corrected bootstrap std is close to the sampling standard error; the interval covers the truth
    assert 0.5 * se_img < t["cmi"]["image"].error < 2 * se_img
    assert t["cmi"]["image"].ci_low < 0.6 < t["cmi"]["image"].ci_high
    f = table4(frame, protocol="faithful", seed=0)
    assert f["cmi"]["image"].n_resamples == 100 and f["cmi"]["image"].resample_size == int(0.9 * n)
    assert f["cmi"]["image"].error == pytest.approx(f["cmi"]["image"].std / 10)


def test_cmi_minus_attention_is_paired_and_recovers_the_known_gap():
    from infodecomp.experiments.intervention import cmi_minus_attention

    frame = _synthetic_frame()
    d = cmi_minus_attention(frame, seed=0)
    t = table4(frame, protocol="corrected", seed=0)
    assert d["image"]["value"] == pytest.approx(t["cmi"]["image"].value - t["attention"]["image"].value)
    assert d["pixel"]["value"] == pytest.approx(t["cmi"]["pixel"].value - t["attention"]["pixel"].value)
    assert d["image"]["ci_low"] > 0.4 and d["pixel"]["ci_low"] > 0.3  # true gaps 0.6 and 0.4
    assert d["image"]["n"] == d["pixel"]["n"] == 300
    same = frame.assign(attention_total=frame["cmi_s"], attention_map=frame["cmi_map"])
    z = cmi_minus_attention(same, seed=0)
    assert z["image"]["value"] == 0 and z["image"]["stderr"] == 0 and z["pixel"]["value"] == 0


def test_table4_needs_successful_rows():
    frame = pd.DataFrame([{"ok": False, "error": "x"}, {"ok": False, "error": "x"}])
    with pytest.raises(ValueError, match="successful"):
        table4(frame)
    assert summarise_failures(frame) == {"n": 2, "n_ok": 0, "n_failed": 2, "errors": {"x": 2}}


def test_latent_change_and_mask_fraction():
    a = torch.zeros(1, 4, 2, 2)
    b = a.clone()
    b[0, :, 0, 0] = 1.0
    c = latent_change(a, b)
    assert c.shape == (1, 2, 2) and float(c[0, 0, 0]) == 4.0 and float(c.sum()) == 4.0
    mask = np.zeros((4, 4), bool)
    mask[:2, :2] = True  # the top-left latent cell, at 2x resolution
    assert mask_fraction(c[0].numpy(), mask) == pytest.approx(1.0)
    mask[:2, :2] = False
    mask[0, 0] = True  # a quarter of that cell
    assert mask_fraction(c[0].numpy(), mask) == pytest.approx(0.25)
    with pytest.raises(ValueError):
        latent_change(a, b[:, :2])


def test_paper_sampling_covers_trained_range():
    loc, scale, clip = paper_sampling((-5.364, 7.069))
    assert loc == pytest.approx(0.8525) and scale == pytest.approx(2.0722, abs=1e-4) and clip == 3
    assert loc - clip * scale == pytest.approx(-5.364) and loc + clip * scale == pytest.approx(7.069)
    with pytest.raises(ValueError):
        paper_sampling((1.0, 1.0))
    with pytest.raises(ValueError):
        InterventionSettings(n_steps=1)


# -- inversion: reconstruction error on a toy denoiser with a closed-form flow ----------------------------------
class _GaussianModel:
    """Data N(0, c²I): the exact ε̂ in the Karras state is σ z /(c² + σ²); in the VP channel (z/sqrt(1+σ²)) it is
    σ sqrt(1+σ²) z_vp /(c² + σ²). The probability-flow ODE solution is z(σ) = x sqrt(c² + σ²)/c."""

    def __init__(self, c=1.0):
        self.c = c
        self.alphas_cumprod = torch.linspace(0.9991, 0.0047, 1000, dtype=torch.float64)

    def denoiser(self, z, logsnr, cond):
        s = torch.exp(-logsnr.to(torch.float64) / 2).view(-1, *[1] * (z.ndim - 1))
        return (s * torch.sqrt(1 + s * s) / (self.c**2 + s * s) * z.to(torch.float64)).to(z.dtype)


def test_inversion_reconstructs_on_toy_denoiser():
    m = _GaussianModel(c=1.0)
    x = torch.randn(2, 4, 3, 3, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    cond = torch.zeros(1, 1, 1, dtype=torch.float64)
    noise = invert(m, x, cond, 100, progress=False)
    smin, smax = sigma_range(m.alphas_cumprod)
    exact = x * math.sqrt(1 + smax**2) / math.sqrt(1 + smin**2)
    assert torch.allclose(noise, exact, rtol=1e-3)
    back = generate(m, noise, cond, 100, progress=False)
    rel = float((back - x).pow(2).sum() / x.pow(2).sum())
    assert rel < 1e-6
    # few steps are visibly worse: the test can fail
    back5 = generate(m, invert(m, x, cond, 5, progress=False), cond, 5, progress=False)
    assert float((back5 - x).pow(2).sum() / x.pow(2).sum()) > rel


# -- the per-example runner on a tiny pipeline ----------------------------------------------------------------
def test_row_fields_and_same_precision(tiny_model, rows):
    seen = []
    base = tiny_model.denoiser

    def spy(z, logsnr, cond):
        out = base(z, logsnr, cond)
        seen.append((z.shape[0], z.dtype, out.dtype))
        return out

    tiny_model.denoiser = spy
    try:
        r = intervention_row(tiny_model, rows[0], FAST, seed=0)
    finally:
        tiny_model.denoiser = base
    # the generation is ONE batch of 3 (reconstruction, omit, swap): all three in the same dtype
    gen_calls = [s for s in seen if s[0] == 3]
    assert len(gen_calls) == 2 * (FAST.n_steps - 1)
    assert {s[1] for s in gen_calls} == {s[2] for s in gen_calls} == {torch.float32}
    assert r["generation_dtypes"] == "state torch.float32,unet torch.float32" and r["ok"]
    h, w = tiny_model.latent_shape[1:]
    for k in ("cmi_map", "swap_map", "mi_map", "attention_map", "change_omit_map", "pixel_change_omit_map"):
        assert r[k].shape == (h, w), k
    # image-level i^o is the sum of its pixel map; changes are sums of their maps
    assert r["cmi_o"] == pytest.approx(float(r["cmi_map"].astype(np.float64).sum()), rel=1e-2, abs=1e-3)
    assert r["change_omit"] == pytest.approx(float(r["change_omit_map"].sum()), rel=1e-5)
    assert (r["swap_map"] >= 0).all() and r["swap_total"] >= 0
    assert 0 <= r["mask_fraction_omit"] <= 1 and np.isfinite(r["recon_error_latent"])


class _Broken(list):
    pass


def test_failures_recorded_per_example_and_resume(tiny_model, rows, tmp_path):
    data = _Broken([dict(r) for r in rows])
    data[1] = {**data[1], "swap_prompt": "a " + "very " * 100 + "long prompt"}  # over CLIP's 77 tokens
    full = run_intervention(tiny_model, data, tmp_path / "full", FAST, progress=False).merge(3)
    s = summarise_failures(full)
    assert s["n"] == 3 and s["n_failed"] == 1 and s["n_ok"] == 2
    assert not full.loc[1, "ok"] and "ValueError" in full.loc[1, "error"]
    assert full.loc[1, "id"] == rows[1]["id"]

    class Interrupting(list):
        def __getitem__(self, i):
            if i == 2:
                raise KeyboardInterrupt
            return list.__getitem__(self, i)

    with pytest.raises(KeyboardInterrupt):
        run_intervention(tiny_model, Interrupting(data), tmp_path / "resumed", FAST, progress=False)
    resumed = run_intervention(tiny_model, data, tmp_path / "resumed", FAST, progress=False).merge(3)
    cols = ["id", "ok", "error", "cmi_s", "cmi_o", "attention_total", "change_omit", "mi_s"]
    pd.testing.assert_frame_equal(full[cols], resumed[cols])
    np.testing.assert_array_equal(np.stack(full.loc[[0, 2], "cmi_map"]), np.stack(resumed.loc[[0, 2], "cmi_map"]))


def test_the_store_is_named_by_the_experiment_under_store_root(tiny_model, rows, tmp_path, monkeypatch):
    """Without store_path, run_intervention names the store under store_root (experiments.stores.store_path, from
    settings.dataset, the settings, the number of rows and the seed); the rows are stubbed, only the naming runs."""
    import infodecomp.experiments.intervention as iv

    monkeypatch.setattr(iv, "intervention_row", lambda model, row, settings, seed: {"ok": True, "caption": "c"})
    store = run_intervention(tiny_model, rows, settings=FAST, store_root=tmp_path, progress=False)
    assert store.path.parent == tmp_path / "tiny" / "intervention"
    assert store.path.name.startswith("shapes-coco100-it-") and len(store.merge(3)) == 3
    assert run_intervention(tiny_model, rows, settings=FAST, store_root=tmp_path, progress=False).path == store.path
    assert run_intervention(tiny_model, rows[:2], settings=FAST, store_root=tmp_path, progress=False).path != store.path
    assert run_intervention(tiny_model, rows, settings=FAST, store_root=tmp_path, seed=1, progress=False).path != \
        store.path


def test_two_processes_equal_one_and_a_killed_shard_resumes(tiny_model, rows, tmp_path, monkeypatch):
    """Notebook 06 under a launch (issue 30): each example's inversion, regenerations and estimates depend only on
    the example, so two processes (one killed after its first example and run again) store what one does."""
    from infodecomp.experiments import intervention
    from shard_checks import Killed, assert_same_rows, counting

    data = [dict(r) for r in rows]
    one = run_intervention(tiny_model, data, tmp_path / "one", FAST, progress=False)
    with pytest.raises(KeyboardInterrupt):  # process 0 of 2 (examples 0 and 2) killed before example 2
        run_intervention(tiny_model, Killed(data, 2), tmp_path / "two", FAST, progress=False, process_index=0,
                         num_processes=2)
    calls = counting(monkeypatch, intervention, "intervention_row")
    run_intervention(tiny_model, data, tmp_path / "two", FAST, progress=False, process_index=0, num_processes=2)
    assert calls == [1]
    two = run_intervention(tiny_model, data, tmp_path / "two", FAST, progress=False, process_index=1,
                           num_processes=2)
    assert calls == [1, 1]
    a, b = one.merge(3), two.merge(3)
    assert_same_rows(a.drop(columns=["traceback"], errors="ignore"), b.drop(columns=["traceback"], errors="ignore"))
