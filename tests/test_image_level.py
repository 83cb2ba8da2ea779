"""Image-level MI vs CMI correlation and the denoising-process curves."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from infodecomp.data.shapes import twin
from infodecomp.experiments.image_level import curve_frame, denoising_process, mi_cmi_correlation


def test_correlation_by_word_type():
    rng = np.random.default_rng(0)
    mi = rng.normal(size=200)
    cmi = np.where(np.arange(200) < 100, mi + 0.1 * rng.normal(size=200), rng.normal(size=200))
    df = pd.DataFrame({"mi": mi, "cmi": cmi, "word_type": ["noun"] * 100 + ["adj"] * 100})
    t = mi_cmi_correlation(df, n_resamples=200)
    assert t.loc["noun", "r"] > 0.95 and abs(t.loc["adj", "r"]) < 0.3
    assert t.loc["noun", "ci_low"] <= t.loc["noun", "r"] <= t.loc["noun", "ci_high"]
    assert t.loc["all", "n"] == 200
    with pytest.raises(KeyError, match="cmi"):
        mi_cmi_correlation(df.drop(columns="cmi"))


def test_denoising_process_on_tiny_pipeline(tiny_model):
    row = twin("coco-it", 1, 0)[0]
    grid = torch.linspace(-5, 7, 3)
    out = denoising_process(tiny_model, row, grid, n_noise=2, generator=torch.Generator().manual_seed(0))
    c = out["curve"]
    assert c.standard.shape == (1, 1, 3) and c.pixel_orthogonal.shape[:3] == (1, 1, 3)
    assert torch.allclose(c.pixel_orthogonal.flatten(3).sum(-1), c.orthogonal, rtol=1e-4, atol=1e-6)
    assert len(out["noisy"]) == 3
    f = curve_frame(c)
    assert len(f) == 6 and set(f.quantity) == {"standard", "orthogonal"}
    assert (f.query("quantity == 'orthogonal'").value >= 0).all()


def test_image_level_values_shard_and_the_plain_run_reads_the_stores(tiny_model, tmp_path, monkeypatch):
    """Notebook 07's C.1 values: the sharded phase (2 processes, one of them killed and rerun) fills the stores
    of heatmaps.run_heatmaps without attention; the plain run reads them, computing nothing, and equals a
    one-process run bit for bit."""
    from infodecomp.experiments import heatmaps, image_level
    from shard_checks import Killed, assert_same_rows, counting

    data = {name: [twin(name, 5, 0)[i] for i in range(5)] for name in ("coco-wl", "coco-it")}
    kw = dict(n_samples=2, batch_size=2, seed=1, progress=False)
    one = image_level.run(tiny_model, data, store_root=tmp_path / "one", **kw)
    assert list(one.columns) == ["dataset", "id", "word", "word_type", "mi", "cmi", "mi_stderr", "cmi_stderr"]
    assert one["dataset"].tolist() == ["coco-wl"] * 5 + ["coco-it"] * 5
    for name, rows in data.items():
        with pytest.raises(KeyboardInterrupt):  # process 1 of 2 (batch [2, 3]) killed before writing it
            heatmaps.run_heatmaps(tiny_model, Killed(rows, 2), dataset=name, attention=False,
                                  store_root=tmp_path / "two", process_index=1, num_processes=2, **kw)
        for p in (1, 0):
            heatmaps.run_heatmaps(tiny_model, rows, dataset=name, attention=False, store_root=tmp_path / "two",
                                  process_index=p, num_processes=2, **kw)
    calls = counting(monkeypatch, heatmaps, "word_heatmaps")
    two = image_level.run(tiny_model, data, store_root=tmp_path / "two", **kw)
    assert calls == []
    assert_same_rows(one, two)
