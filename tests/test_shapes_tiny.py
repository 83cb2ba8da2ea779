"""The committed embedded model, shapes-tiny: it loads from the package and does what its model card says.

Fixed seeds, small samples, so the test is fast and deterministic; the model card (README.md beside the
weights) holds the full measurement (`python -m infodecomp.training evaluate`).

Two kinds of check:
- the project's quality bars (VAE ≥ 98%, single-object generation ≥ 90%, relational ≥ 70%), each with a
  tolerance of two binomial standard errors *at the bar* for the sample size used here, so a model that meets
  the bar fails with probability ≲ 2.5% per check. The committed model meets the VAE and single-object bars but
  NOT the relational one (see the model card's measured numbers); that check is a strict xfail, so the suite
  records the shortfall openly and a retrained model that meets it turns the xfail into an error, asking for
  the marker's removal.
- regression floors for what the committed model does reach: the full-sample measurement (quality.json)
  minus three standard errors of the small test sample, and never below four times chance.
"""

import json
import math

import pytest
import torch

from infodecomp import training
from infodecomp.models import ASSETS_DIR, load_model

MODEL_DIR = ASSETS_DIR / "shapes-tiny"
N_GEN = 24  # prompts per generation check (each kind)


def _bar(p: float, n: int) -> float:
    return p - 2 * math.sqrt(p * (1 - p) / n)


def _floor(measured: float, n: int) -> float:
    return measured - 3 * math.sqrt(max(measured * (1 - measured), 0.01) / n)


@pytest.fixture(scope="module")
def quality():
    return json.loads((MODEL_DIR / "quality.json").read_text())


@pytest.fixture(scope="module")
def model():
    return load_model("shapes-tiny")


@pytest.fixture(scope="module")
def generation(model, quality):
    gen = quality["generation"]
    return training.generation_accuracy(model, n=N_GEN, steps=gen["steps"], guidance=gen["guidance"], seed=2024)


def test_loads_as_the_documented_pipeline(model):
    assert model.dtype == torch.float32 and model.device.type == "cpu"
    assert model.prediction_type == "epsilon"
    assert model.resolution == (32, 32) and model.latent_shape == (4, 16, 16)
    lo, hi = model.logsnr_range
    assert lo == pytest.approx(-5.364, abs=1e-3) and hi == pytest.approx(7.069, abs=1e-3)
    size = sum(p.stat().st_size for p in MODEL_DIR.rglob("*") if p.is_file())
    assert size <= 25 * 2**20, f"the embedded model must stay within 25 MB, it is {size / 2**20:.1f} MB"


def test_model_card_reports_the_committed_quality(quality):
    card = (MODEL_DIR / "README.md").read_text()
    assert "python -m infodecomp.training train" in card
    for value in (quality["vae_recovery"], quality["generation"]["single_object"],
                  quality["generation"]["relational"]):
        assert f"{100 * value['value']:.1f}%" in card


def test_null_prompt_is_the_pipelines_unconditional_embedding(model):
    null = model.encode_prompts([""])
    ids = model.tokenizer([""], padding="max_length", max_length=model.tokenizer.model_max_length,
                          return_tensors="pt").input_ids
    torch.testing.assert_close(null, model.text_encoder(ids)[0])


def test_vae_recovers_held_out_scenes(model):
    n = 100
    res = training.vae_recovery(model, n=n, seed=2024)
    assert res["value"] >= _bar(0.98, n), res


def test_generation_meets_the_single_object_bar(generation):
    assert generation["single_object"]["value"] >= _bar(0.90, N_GEN), generation


@pytest.mark.xfail(strict=True, reason="bar not reached by the committed model (3,250 + 6,000 UNet steps, about 2 h "
                                       "on 2 CPU cores): 11.5% ± 2.3 in the model card")
def test_generation_meets_the_relational_bar(generation):
    assert generation["relational"]["value"] >= _bar(0.70, N_GEN), generation


def test_generation_keeps_what_the_model_card_reports(generation, quality):
    # chance for a single-object prompt: 1 of 12 colour × shape pairs (and only if exactly one object is drawn)
    measured = quality["generation"]["single_object"]["value"]
    assert generation["single_object"]["value"] >= max(_floor(measured, N_GEN), 4 / 12), (generation, measured)
    measured = quality["generation"]["relational_objects_only"]["value"]
    assert generation["relational_objects_only"]["value"] >= _floor(measured, N_GEN), (generation, measured)


def test_cmi_of_a_word_concentrates_on_its_object(model):
    res = training.cmi_mass_inside(model, n=14, n_samples=32, seed=2024)
    inside, area = res["mass_inside"], res["area_fraction"]
    # far more of the information than the object's share of the image lies inside its mask
    assert inside["value"] - area["value"] > 4 * math.hypot(inside["stderr"], area["stderr"]), res
