"""The committed embedded model, shapes-tiny: it loads from the package and does what its model card says.

Fixed seeds (apart from the model card's seed 0), small samples, so the test is fast and deterministic; the model
card (README.md beside the weights) holds the full measurement (`python -m infodecomp.training evaluate`).

Three kinds of check:
- the card is the measurement: every bar of ``training.BARS`` appears in the card with the value recorded in
  quality.json and the verdict (met / not met) that value gives;
- the project's bars that the committed model meets in its card, re-checked on a small held-out sample with a
  tolerance of two standard errors *at the bar* for that sample size (a model that meets the bar fails with
  probability ≲ 2.5 % per check);
- regression floors for what the committed model reaches below a bar: the full-sample measurement (quality.json)
  minus three standard errors of the small test sample; the bar itself is then reported as an expected failure
  (xfail) naming the card's value, so the suite records the shortfall openly. Which bars are checked and which
  are xfails follows the card's verdicts (``training.bar_rows``), not a list kept here.
And the mechanism the v2 recipe rests on: ``<|endoftext|>`` and the padding get exactly zero attention.
"""

import json
import math

import pytest
import torch

from infodecomp import training
from infodecomp.experiments import word_reading
from infodecomp.models import ASSETS_DIR, load_model

MODEL_DIR = ASSETS_DIR / "shapes-tiny"
N_GEN = 24  # prompts per generation check (each kind)
SEED = 2024  # held out: the card measures on seed 0


def _bar(p: float, n: int) -> float:
    return p - 2 * math.sqrt(p * (1 - p) / n)


def _floor(measured: float, n: int) -> float:
    return measured - 3 * math.sqrt(max(measured * (1 - measured), 0.01) / n)


def _ceiling(measured: float, n: int) -> float:
    return measured + 3 * math.sqrt(max(measured * (1 - measured), 0.01) / n)


@pytest.fixture(scope="module")
def quality():
    return json.loads((MODEL_DIR / "quality.json").read_text())


@pytest.fixture(scope="module")
def model():
    return load_model("shapes-tiny")


@pytest.fixture(scope="module")
def generation(model, quality):
    gen = quality["generation"]
    return training.generation_accuracy(model, n=N_GEN, steps=gen["steps"], guidance=gen["guidance"], seed=SEED)


def test_loads_as_the_documented_pipeline(model):
    assert model.dtype == torch.float32 and model.device.type == "cpu"
    assert model.prediction_type == "epsilon"
    assert model.resolution == (32, 32) and model.latent_shape == (4, 16, 16)
    assert model.cross_attention_tokens == "words"  # infodecomp.json beside the weights
    lo, hi = model.logsnr_range
    assert lo == pytest.approx(-5.364, abs=1e-3) and hi == pytest.approx(7.069, abs=1e-3)
    size = sum(p.stat().st_size for p in MODEL_DIR.rglob("*") if p.is_file())
    assert size <= 25 * 2**20, f"the embedded model must stay within 25 MB, it is {size / 2**20:.1f} MB"


def test_model_card_reports_every_bar_as_measured(quality):
    card = (MODEL_DIR / "README.md").read_text()
    assert "python -m infodecomp.training train" in card
    rows = training.bar_rows(quality)
    assert len(rows) == len(training.BARS)
    for row in rows:
        assert row["value"] is not None, f"the card's measurement lacks {row['path']}"
        verdict = "met" if row["value"] >= dict((p, b) for _, p, b, _ in training.BARS)[row["path"]] else "**not met**"
        assert f"| {row['name']} | {row['result']} | {row['bar']} | {verdict} |" in card, row


def test_null_prompt_is_the_pipelines_unconditional_embedding(model):
    # v2 hides <|endoftext|> and the padding: their rows are zero, the start token's row is the encoder's
    null = model.encode_prompts([""])
    ids = model.tokenizer([""], padding="max_length", max_length=model.tokenizer.model_max_length,
                          return_tensors="pt").input_ids
    raw = model.text_encoder(ids)[0]
    torch.testing.assert_close(null[:, :1], raw[:, :1])
    assert torch.count_nonzero(null[:, 1:]) == 0


def test_hidden_tokens_get_exactly_no_attention(model):
    mass = word_reading.attention_mass(model, n=8, seed=SEED, logsnrs=(0.0, 4.0), batch=8)["overall"]
    assert mass["end"] == 0.0 and mass["padding"] == 0.0, mass
    assert mass["word"] > 0.5, mass  # the words, not the start token, carry the prompt


def test_vae_recovers_held_out_scenes(model):
    n = 100
    res = training.vae_recovery(model, n=n, seed=SEED)
    assert res["value"] >= _bar(0.98, n), res


def _card_verdict(quality: dict, path: str) -> dict:
    return next(r for r in training.bar_rows(quality) if r["path"] == path)


def check_bar(quality: dict, path: str, value: float, bar: float, floor: float, context) -> None:
    """A bar the card says is met: re-checked at the bar (two standard errors of this sample). A bar it says is
    missed: the value must keep the card's level (``floor``), and the bar is an expected failure naming the card."""
    row = _card_verdict(quality, path)
    if row["met"]:
        assert value >= bar, (path, context)
        return
    assert value >= floor, (path, context)
    pytest.xfail(f"bar {row['bar']} not reached by the committed model: {row['result']} in its card "
                 "(infodecomp/assets/shapes-tiny/README.md)")


def test_generation_keeps_what_the_model_card_reports(generation, quality):
    # chance for a single-object prompt: 1 of 12 colour × shape pairs (and only if exactly one object is drawn)
    measured = quality["generation"]["relational_objects_only"]["value"]
    assert generation["relational_objects_only"]["value"] >= _floor(measured, N_GEN), (generation, measured)
    measured = quality["generation"]["single_object"]["value"]
    assert generation["single_object"]["value"] >= max(_floor(measured, N_GEN), 1 / 12), (generation, measured)
    check_bar(quality, "generation.single_object", generation["single_object"]["value"], _bar(0.95, N_GEN),
              _floor(measured, N_GEN), generation)


def test_generation_meets_the_relational_bar(generation, quality):
    measured = quality["generation"]["relational"]["value"]
    check_bar(quality, "generation.relational", generation["relational"]["value"], _bar(0.70, N_GEN),
              _floor(measured, N_GEN), generation)


def test_swap_test_the_image_follows_the_words(model, quality):
    n, sw = 24, quality["reading"]["swap"]
    res = word_reading.swap_test(model, n=n, seed=SEED, steps=sw["steps"], guidance=sw["guidance"], n_samples=2,
                                 batch=n)
    assert res["follows_padding"]["value"] <= _ceiling(sw["follows_padding"]["value"], n), res
    assert res["eps_follows_words"]["value"] >= _floor(sw["eps_follows_words"]["value"], n), res
    check_bar(quality, "reading.swap.follows_words", res["follows_words"]["value"], _bar(0.90, n),
              _floor(sw["follows_words"]["value"], n), res)


@pytest.mark.parametrize("word", ["colour", "shape"])
def test_word_maps_tell_their_object_from_the_other(model, quality, word):
    res = word_reading.word_map_quality(model, n=8, seed=SEED, steps=25, n_localization=8, batch=8)
    auc = res["auroc"][word]["other"]
    card = quality["reading"]["word_maps"]["auroc"][word]["other"]
    check_bar(quality, f"reading.word_maps.auroc.{word}.other", auc["value"], 0.75 - 2 * auc["stderr"],
              card["value"] - 3 * auc["stderr"], res["auroc"])


def test_a_relation_flip_moves_the_prediction(model, quality):
    res = word_reading.edit_sensitivity(model, n=16, seed=SEED, n_samples=4, batch=16)
    ratio = res["ratio_relation"]
    card = quality["reading"]["sensitivity"]["ratio_relation"]
    check_bar(quality, "reading.sensitivity.ratio_relation", ratio["value"], 0.10 - 2 * ratio["stderr"],
              card["value"] - 3 * ratio["stderr"], res)


def test_the_text_encoder_keeps_the_relation(model, quality):
    res = word_reading.text_sensitivity(model, n=16, seed=SEED)
    ratio = res["ratio_relation"]
    card = quality["reading"]["text_sensitivity"]["ratio_relation"]
    check_bar(quality, "reading.text_sensitivity.ratio_relation", ratio["value"], 0.10 - 2 * ratio["stderr"],
              card["value"] - 3 * ratio["stderr"], res)


def test_cmi_of_a_word_concentrates_on_its_object(model, quality):
    res = training.cmi_mass_inside(model, n=14, n_samples=32, seed=SEED)
    inside, area = res["mass_inside"], res["area_fraction"]
    # far more of the information than the object's share of the image lies inside its mask
    assert inside["value"] - area["value"] > 4 * math.hypot(inside["stderr"], area["stderr"]), res
    card = quality["cmi"]["mass_inside"]["value"]
    check_bar(quality, "cmi.mass_inside", inside["value"], 0.50 - 2 * inside["stderr"], card - 3 * inside["stderr"],
              res)
