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
