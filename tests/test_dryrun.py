"""make dry-run: the SD 2.1-shaped pipelines (infodecomp.testing.sd21_shaped_pipeline) have SD 2.1's shapes — 64×64
latents at 512 px (ε) and 96×96 at 768 px (v, attention upcast), [77, 1024] conditioning, SD's 15 + 1
cross-attention layers and heads — load through load_model from a saved folder, and run one denoiser call with the
attention recorder; the dry run's parameter files name only real notebook parameters; make dry-run uses them."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import torch

from infodecomp.models.attention import cross_attention_layers, record_cross_attention
from infodecomp.models import load_model
from infodecomp.testing import save_sd21_shaped_pipeline, sd21_shaped_pipeline

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts"))

import build_dryrun_models  # noqa: E402
import run_notebooks as rn  # noqa: E402

NOTEBOOKS = sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))
FILES = [ROOT / "notebooks" / "dryrun_parameters.yml", ROOT / "notebooks" / "dryrun_v_parameters.yml"]


@pytest.fixture(scope="module")
def eps_dir(tmp_path_factory):
    return save_sd21_shaped_pipeline(tmp_path_factory.mktemp("sd21-base-shaped"), prediction_type="epsilon")


@pytest.fixture(scope="module")
def v_dir(tmp_path_factory):
    return save_sd21_shaped_pipeline(tmp_path_factory.mktemp("sd21-shaped"), prediction_type="v_prediction")


@pytest.mark.parametrize("kind, px, upcast", [("epsilon", 512, False), ("v_prediction", 768, True)])
def test_shapes_through_load_model(kind, px, upcast, request):
    model = load_model(request.getfixturevalue("eps_dir" if kind == "epsilon" else "v_dir"))
    assert model.prediction_type == kind
    assert model.resolution == (px, px) and model.vae_scale_factor == 8
    assert model.latent_shape == (4, px // 8, px // 8)
    assert model.unet.config.upcast_attention is upcast
    assert model.unet.config.cross_attention_dim == 1024
    assert tuple(model.unet.config.down_block_types) == (
        "CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D")
    assert len(cross_attention_layers(model, include_mid=False)) == 15 and len(cross_attention_layers(model)) == 16
    cond = model.encode_prompts(["a photo of a cat sitting on a red sofa", ""])
    assert cond.shape == (2, 77, 1024)
    # a prompt of more than 77 tokens is refused, as for SD 2.1
    with pytest.raises(ValueError):
        model.encode_prompts(["a cat " * 60])


def test_one_denoiser_call_with_attention_recorded(eps_dir):
    model = load_model(eps_dir)
    g = torch.Generator().manual_seed(0)
    x = model.encode_images(torch.rand(1, 3, 640, 480, generator=g), resize="bicubic")  # a COCO-sized image
    assert x.shape == (1, 4, 64, 64) and torch.isfinite(x).all()
    cond = model.encode_prompts(["a cat on a sofa"])
    z = torch.randn(x.shape, generator=g)
    with torch.no_grad(), record_cross_attention(model) as rec:
        eps = model.denoiser(z, torch.tensor([0.5]), cond)
    assert eps.shape == z.shape and torch.isfinite(eps).all() and 0.1 < float(eps.std()) < 10
    assert len(rec.grid) == 15  # the recorder's default: the down/up blocks' layers, not the mid-block (DAAM)
    by_grid = {}
    for name, grid in rec.grid.items():
        by_grid.setdefault(grid, set()).add(rec.heads[name])
    assert by_grid == {(64, 64): {5}, (32, 32): {10}, (16, 16): {20}}
    assert rec.token_maps().shape == (1, 77, 64, 64)


def test_v_prediction_denoiser_returns_eps_at_96(v_dir):
    model = load_model(v_dir)
    g = torch.Generator().manual_seed(0)
    z = torch.randn(1, 4, 96, 96, generator=g)
    with torch.no_grad():
        eps = model.denoiser(z, torch.tensor([0.0]), model.encode_prompts([""]))
    assert eps.shape == z.shape and torch.isfinite(eps).all()


def test_same_seed_same_weights_and_bad_input_refused():
    a, b = sd21_shaped_pipeline(seed=3), sd21_shaped_pipeline(seed=3)
    assert all(torch.equal(p, q) for p, q in zip(a.unet.parameters(), b.unet.parameters()))
    with pytest.raises(ValueError, match="prediction_type"):
        sd21_shaped_pipeline(prediction_type="flow")
    with pytest.raises(ValueError, match="multiple of 64"):
        sd21_shaped_pipeline(resolution=500)


def test_build_script_builds_what_the_makefile_runs():
    assert build_dryrun_models.MODELS == {"sd21-base-shaped": ("epsilon", 512), "sd21-shaped": ("v_prediction", 768)}


@pytest.mark.parametrize("file", FILES, ids=lambda p: p.name)
def test_dry_run_parameter_files_name_real_parameters(file):
    entries = rn.load_parameter_file(file, NOTEBOOKS)  # the runner's own check: every name a notebook parameter
    assert set(entries) == {p.stem for p in NOTEBOOKS}, "every notebook has an entry (a run or a skip, saying why)"


def test_the_epsilon_dry_run_runs_every_notebook_with_a_model():
    entries = rn.load_parameter_file(FILES[0], NOTEBOOKS)
    skipped = {stem for stem, e in entries.items() if isinstance(e, str)}
    assert skipped == {p.stem for p in NOTEBOOKS if "MODEL" not in rn.notebook_parameters(p)}
    v = rn.load_parameter_file(FILES[1], NOTEBOOKS)
    ran = {stem for stem, e in v.items() if not isinstance(e, str)}
    assert {"02_relation_testing", "04_mi_cmi_heatmaps"} <= ran


def test_make_dry_run_uses_the_parameter_files():
    out = subprocess.run(["make", "-n", "dry-run", "PY=python"], cwd=ROOT, capture_output=True, text=True, check=True)
    for file in FILES:
        assert f"notebooks/{file.name}" in out.stdout
    assert "scripts/build_dryrun_models.py" in out.stdout
    assert "sd21-base-shaped" in out.stdout and "sd21-shaped" in out.stdout


def test_ci_runs_the_dry_run_after_the_ci_notebooks():
    lines = [line.strip() for line in (ROOT / ".ci" / "run").read_text(encoding="utf-8").splitlines()]
    assert "make dry-run" in lines and lines.index("make notebooks-ci") < lines.index("make dry-run")
