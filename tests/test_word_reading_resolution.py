"""Notebook 00's word-reading checks at a resolution other than ShapesWorld's 32 px (regressions found by make
dry-run on the SD 2.1-shaped pipeline at 512 px): the scenes are resized to the model's resolution before
encoding, and generated images are brought back to 32 px before they are parsed as scenes."""

from __future__ import annotations

import numpy as np
import torch

from infodecomp.data import shapes
from infodecomp.experiments import word_reading


def test_attention_mass_on_a_model_that_is_not_32_px(tiny_model):
    assert tiny_model.resolution == (16, 16)  # ShapesWorld scenes are 32 px: they used to be refused unresized
    out = word_reading.attention_mass(tiny_model, n=2, seed=0, logsnrs=(0.0,))
    assert out["n"] == 2 and abs(sum(out["overall"].values()) - 1) < 1e-4


def test_edit_sensitivity_on_a_model_that_is_not_32_px(tiny_model):
    res = word_reading.edit_sensitivity(tiny_model, n=2, seed=0, n_samples=1)
    assert np.isfinite(res["relation_flip"]["value"])


def test_a_512_px_image_of_a_scene_parses_as_the_scene():
    rng = np.random.default_rng(0)
    sample = shapes.random_sample(rng)
    small = sample.image
    big = torch.from_numpy(np.asarray(small)).permute(2, 0, 1)[None].float()
    big = torch.nn.functional.interpolate(big, size=(512, 512), mode="nearest")[0].permute(1, 2, 0).numpy() / 255
    want = [(o.colour, o.shape) for o in shapes.parse_scene(small)]
    assert want  # the scene has objects
    assert [(o.colour, o.shape) for o in shapes.parse_scene(word_reading._scene_size(big))] == want
    assert word_reading._scene_size(np.asarray(small)).shape == (32, 32, 3)
