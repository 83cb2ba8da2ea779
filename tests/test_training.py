"""Training smoke test: a few steps of both stages run, and a killed run resumes to the identical state.

CI never trains the embedded model; this checks the training code on a handful of steps (tiny batches).
"""

import json
import math
from dataclasses import replace

import pytest
import torch

from infodecomp.training import TrainConfig, Trainer

TINY = TrainConfig(seed=3, vae_steps=2, vae_batch=4, unet_steps=3, unet_batch=4, warmup=2, checkpoint_every=1,
                   threads=1)


def _state(trainer):
    return {**{"vae." + k: v for k, v in trainer.vae.state_dict().items()},
            **{"unet." + k: v for k, v in trainer.unet.state_dict().items()},
            **{"text." + k: v for k, v in trainer.text_encoder.state_dict().items()},
            **{"ema." + k: v for k, v in trainer.ema.items()}}


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    return Trainer(TINY, tmp_path_factory.mktemp("full")).train()


def test_both_stages_run_with_finite_losses(uninterrupted):
    losses = uninterrupted.state["losses"]
    assert [name for name, *_ in losses] == ["vae"] * 2 + ["unet"] * 3
    assert all(math.isfinite(loss) for *_, loss in losses)
    assert uninterrupted.state["scaling_factor"] > 0


def test_losses_decrease_on_a_fixed_batch(tmp_path):
    # Repeating step 0 repeats its batch, noise and timesteps (all drawn from the (seed, stage, step)
    # generator), so both stages must fit that one batch: the loss falls over sixteen steps (measured at seed 3:
    # VAE 1.03 → 0.83, UNet 1.14 → 0.14; the bounds leave room for platform differences).
    trainer = Trainer(replace(TINY, vae_lr=3e-3, unet_lr=3e-3), tmp_path)
    vae_losses = [trainer._vae_step(0) for _ in range(16)]
    assert all(math.isfinite(v) for v in vae_losses)
    assert vae_losses[-1] < 0.9 * vae_losses[0], vae_losses
    trainer.vae.eval().requires_grad_(False)
    trainer.state["scaling_factor"] = trainer._latent_scale()
    unet_losses = [trainer._unet_step(0) for _ in range(16)]
    assert all(math.isfinite(v) for v in unet_losses)
    assert unet_losses[-1] < 0.5 * unet_losses[0], unet_losses


def test_resume_after_a_kill_reproduces_the_uninterrupted_run(uninterrupted, tmp_path):
    # "kill" after the first UNet step: a run that stops there, then the same run resumed to the end
    Trainer(replace(TINY, unet_steps=1), tmp_path).train()
    resumed = Trainer(TINY, tmp_path)
    assert resumed.state["stage"] == "unet" and resumed.state["step"] == 1
    resumed.train()
    a, b = _state(uninterrupted), _state(resumed)
    assert a.keys() == b.keys()
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=0, atol=0, msg=k)


def test_other_settings_refuse_to_resume(uninterrupted, tmp_path):
    Trainer(replace(TINY, unet_steps=1), tmp_path).train()
    with pytest.raises(ValueError, match="other settings"):
        Trainer(replace(TINY, unet_lr=1e-2), tmp_path)


def test_export_refuses_a_run_that_is_missing_or_unfinished(tmp_path):
    """A reproduction once lost its last phase's checkpoint and exported its initial weights as the trained model:
    export now refuses both a run with no checkpoint and one stopped before its last step."""
    with pytest.raises(FileNotFoundError, match="no checkpoint"):
        Trainer(TINY, tmp_path / "never").export(tmp_path / "pipe")
    Trainer(replace(TINY, unet_steps=1), tmp_path / "run").train()
    with pytest.raises(RuntimeError, match="step 1 of 3"):
        Trainer(TINY, tmp_path / "run").export(tmp_path / "pipe")
    assert not (tmp_path / "pipe").exists()
    Trainer(replace(TINY, unet_steps=1), tmp_path / "run").export(tmp_path / "pipe")  # as it is, when asked
    assert (tmp_path / "pipe" / "model_index.json").exists()


def test_the_training_script_refuses_an_out_that_holds_a_training_run(tmp_path):
    """scripts/train_shapes_tiny.sh empties OUT before exporting into it: an OUT holding a run is refused first."""
    import subprocess
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    work = tmp_path / "work"
    for out in (work, work / "shapes-tiny-phase4", tmp_path):
        r = subprocess.run(["bash", "scripts/train_shapes_tiny.sh"], cwd=root, capture_output=True, text=True,
                           env={"PATH": "/usr/bin:/bin", "WORK": str(work), "OUT": str(out), "PY": "false"})
        assert r.returncode == 2 and "which step 4 would delete" in r.stderr, (out, r.stderr)
    assert not work.exists()  # refused before writing anything
    # a separate OUT passes the check (and then fails at the first training command, PY=false)
    r = subprocess.run(["bash", "scripts/train_shapes_tiny.sh"], cwd=root, capture_output=True, text=True,
                       env={"PATH": "/usr/bin:/bin", "WORK": str(work), "OUT": str(tmp_path / "out"), "PY": "false"})
    assert r.returncode != 2 and "would delete" not in r.stderr


def test_export_writes_a_loadable_pipeline(uninterrupted, tmp_path):
    from infodecomp.models import load_model

    uninterrupted.export(tmp_path / "pipe")
    model = load_model(str(tmp_path / "pipe"))
    assert model.dtype == torch.float32 and model.latent_shape == (4, 16, 16)
    assert model.prediction_type == "epsilon"
    lo, hi = model.logsnr_range
    assert lo == pytest.approx(-5.364, abs=1e-3) and hi == pytest.approx(7.069, abs=1e-3)
    assert model.encode_prompts(["a red circle", ""]).shape == (2, TINY.max_length, TINY.text_hidden)


def test_cosine_schedule_warms_up_then_decays_to_the_final_fraction():
    from infodecomp.training import lr_at

    total, warmup = 100, 10
    lrs = [lr_at(s, 1e-3, warmup, total=total, decay="cosine", final=0.05) for s in range(total)]
    assert lrs[0] == pytest.approx(1e-4) and lrs[warmup - 1] == pytest.approx(1e-3)
    assert lrs[warmup] == pytest.approx(1e-3)  # the cosine starts at the peak
    assert all(a >= b for a, b in zip(lrs[warmup:], lrs[warmup + 1:]))  # then only falls
    assert lrs[-1] == pytest.approx(5e-5)
    assert lrs[(warmup + total - 1) // 2] == pytest.approx(1e-3 * (0.05 + 0.95 * 0.5), rel=0.05)  # half-way
    # the default stays constant after warm-up (how the first 3,250 steps of shapes-tiny were trained)
    assert {lr_at(s, 1e-3, warmup) for s in range(warmup, total)} == {1e-3}


def test_bad_schedule_settings_are_refused():
    with pytest.raises(ValueError, match="lr_decay"):
        TrainConfig(lr_decay="linear")
    with pytest.raises(ValueError, match="vae_steps=0"):
        TrainConfig(init_from="some/pipeline", vae_steps=10)


def test_init_from_continues_an_exported_pipeline(uninterrupted, tmp_path):
    uninterrupted.export(tmp_path / "pipe", use_ema=False)
    cont = Trainer(replace(TINY, vae_steps=0, unet_steps=2, lr_decay="cosine", init_from=str(tmp_path / "pipe")),
                   tmp_path / "cont")
    assert cont.state["stage"] == "unet" and cont.state["step"] == 0
    # the weights are the exported ones (float16 on disk), and the VAE's latent scale comes along
    assert cont.state["scaling_factor"] == pytest.approx(uninterrupted.state["scaling_factor"], rel=1e-3)
    for name in ("unet", "text_encoder", "vae"):
        a, b = getattr(uninterrupted, name).state_dict(), getattr(cont, name).state_dict()
        for k in a:
            torch.testing.assert_close(b[k], a[k].half().float(), rtol=0, atol=0, msg=k)
    cont.train()
    assert [name for name, *_ in cont.state["losses"]] == ["unet"] * 2
    cont.export(tmp_path / "pipe2")
    import json

    info = json.loads((tmp_path / "pipe2" / "training.json").read_text())
    assert info["config"]["init_from"] == str(tmp_path / "pipe")
    assert info["init_training"]["config"]["unet_steps"] == TINY.unet_steps  # the first phase's record travels along
    # the model card tells both phases and the commands that redo them; the quality record names the weights
    from infodecomp.training import record_quality, write_model_card

    b = {"value": 0.5, "stderr": 0.1, "n": 4}
    quality = {"seed": 0, "vae_recovery": b,
               "generation": {"single_object": b, "relational": b, "relational_objects_only": b, "steps": 5,
                              "guidance": 2.0},
               "cmi": {"mass_inside": b, "area_fraction": b, "rows_with_majority_inside": b, "n_samples": 8}}
    card = write_model_card(tmp_path / "pipe2", quality).read_text()
    assert "Phase 1 (seed 3)" in card and "Phase 2 (seed 3)" in card and "then a cosine down to" in card
    assert ("--init-from runs/train/shapes-tiny-phase1/pipeline" in card
            and "--no-ema --out runs/train/shapes-tiny-phase1/pipeline" in card)
    assert "--guidance 2.0 --seed 0" in card and "50.0% ± 10.0 (n = 4)" in card
    # a third phase carries both earlier records: the card tells three phases, each started from the one before
    third = Trainer(replace(TINY, vae_steps=0, unet_steps=1, seed=4, init_from=str(tmp_path / "pipe2")),
                    tmp_path / "third")
    third.train()
    third.export(tmp_path / "pipe3")
    card3 = write_model_card(tmp_path / "pipe3", quality).read_text()
    assert all(f"Phase {k} (seed {s})" in card3 for k, s in ((1, 3), (2, 3), (3, 4))) and "Phase 4" not in card3
    assert "--init-from runs/train/shapes-tiny-phase2/pipeline" in card3
    assert card3.count("The VAE, UNet and text encoder of phase") == 2
    rec = json.loads(record_quality(quality, tmp_path / "pipe2", root=tmp_path / "figures").read_text())
    prov = rec["_provenance"]
    assert prov["revision"].startswith("sha256:") and rec["generation_single_object"]["value"] == 0.5
    assert prov["n_samples"] == "4 scenes (VAE), 4 prompts per kind (generation), 4 images (CMI)"
    with pytest.raises(FileNotFoundError, match="safetensors there"):
        Trainer(replace(TINY, vae_steps=0, init_from=str(tmp_path)), tmp_path / "bad")


def test_sweep_prints_one_row_per_guidance_scale(uninterrupted, tmp_path, capsys):
    from infodecomp.training.__main__ import main

    uninterrupted.export(tmp_path / "pipe", use_ema=False)
    main(["sweep", str(tmp_path / "pipe"), "--guidance", "1.5", "3", "--n", "2", "--steps", "2"])
    lines = [line for line in capsys.readouterr().out.splitlines() if line.strip()]
    assert "single object" in lines[0] and "n = 2 each, seed 1, 2 DDIM steps" in lines[0]
    assert [line.split()[0] for line in lines[1:]] == ["1.5", "3.0"]
    assert all(line.count("%") == 3 for line in lines[1:])


def test_v2_recipe_options_train_export_and_load_with_the_mask(tmp_path):
    from infodecomp.models import load_model

    cfg = replace(TINY, text_mask="words", relation_boost=0.5, counterfactual=1.0, attention_16=True)
    trainer = Trainer(cfg, tmp_path / "work").train()
    assert all(math.isfinite(loss) for *_, loss in trainer.state["losses"])
    assert type(trainer.unet.down_blocks[0]).__name__ == "CrossAttnDownBlock2D"  # cross-attention at 16×16
    trainer.export(tmp_path / "pipe")
    assert json.loads((tmp_path / "pipe" / "infodecomp.json").read_text()) == {"cross_attention_tokens": "words"}
    model = load_model(str(tmp_path / "pipe"))
    assert model.cross_attention_tokens == "words"
    # the v1 recipe exports a stock pipeline ("all" tokens)
    Trainer(TINY, tmp_path / "v1").train().export(tmp_path / "v1pipe")
    assert load_model(str(tmp_path / "v1pipe")).cross_attention_tokens == "all"


def test_the_mask_changes_the_training_loss_only_through_the_hidden_tokens(tmp_path):
    # With the mask, the UNet cannot see the end token and padding: perturbing their embeddings leaves the loss
    # of a step unchanged; without it the loss moves.
    for mask, same in (("words", True), ("none", False)):
        t = Trainer(replace(TINY, text_mask=mask), tmp_path / mask)
        t.vae.eval().requires_grad_(False)
        t.state["scaling_factor"] = t._latent_scale()
        emb, m = t._encode_text(["a red circle", "a blue square"])
        z = torch.randn(2, 4, 16, 16, generator=torch.Generator().manual_seed(0))
        tt = torch.tensor([10, 500])
        with torch.no_grad():
            out = t.unet(z, tt, emb, encoder_attention_mask=m).sample
            hidden = ~m if m is not None else torch.zeros(emb.shape[:2], dtype=torch.bool).index_fill_(1, torch.tensor([10]), True)
            noisy = torch.where(hidden[..., None], torch.randn_like(emb), emb)
            out2 = t.unet(z, tt, noisy, encoder_attention_mask=m).sample
        assert torch.allclose(out, out2, atol=1e-6) is same


def test_vae_from_takes_only_the_vae(uninterrupted, tmp_path):
    uninterrupted.export(tmp_path / "pipe")
    t = Trainer(replace(TINY, vae_steps=0, vae_from=str(tmp_path / "pipe")), tmp_path / "work")
    assert t.state["stage"] == "unet" and t.state["scaling_factor"] > 0
    for k, v in t.vae.state_dict().items():
        torch.testing.assert_close(v, uninterrupted.vae.state_dict()[k].half().float(), msg=k)
    fresh = Trainer(replace(TINY, vae_steps=0, vae_from=str(tmp_path / "pipe")), tmp_path / "work2")
    for k, v in fresh.unet.state_dict().items():  # the UNet is a fresh initialisation, not the pipeline's
        torch.testing.assert_close(v, t.unet.state_dict()[k], msg=k)
    assert any(not torch.allclose(v, uninterrupted.unet.state_dict()[k].float(), atol=1e-3)
               for k, v in t.unet.state_dict().items() if v.is_floating_point())
    with pytest.raises(ValueError, match="vae_steps=0"):
        TrainConfig(vae_from="x", vae_steps=3)
    with pytest.raises(ValueError, match="exclusive"):
        TrainConfig(vae_from="x", init_from="y", vae_steps=0)
    with pytest.raises(ValueError, match="text_mask must be one of"):
        TrainConfig(text_mask="eos")


def test_a_checkpoint_is_read_without_running_code(uninterrupted, tmp_path):
    # A checkpoint that unpickles to a call of os.system must not run it: weights_only loading refuses it.
    import pickle

    marker = tmp_path / "ran"

    class Evil:
        def __reduce__(self):
            import os
            return (os.system, (f"touch {marker}",))

    Trainer(replace(TINY, unet_steps=1), tmp_path / "w").train()
    ckpt = tmp_path / "w" / "checkpoint.pt"
    blob = torch.load(ckpt, weights_only=True)
    blob["state"]["evil"] = Evil()
    with open(ckpt, "wb") as f:
        pickle.dump(blob, f, protocol=2)  # a plain pickle, the legacy torch.save format torch.load also reads
    with pytest.raises(ValueError, match="cannot be read as a training checkpoint"):
        Trainer(TINY, tmp_path / "w")
    assert not marker.exists()


def _full_quality(v=0.5):
    b = {"value": v, "stderr": 0.1, "n": 4}
    mass = {"overall": {"start": 0.1, "word": 0.9, "end": 0.0, "padding": 0.0}, "n": 4,
            "by_layer": {"up_blocks.1.attentions.0.transformer_blocks.0.attn2":
                         {"start": 0.1, "word": 0.9, "end": 0.0, "padding": 0.0}},
            "by_logsnr": {"0.0": {"start": 0.1, "word": 0.9, "end": 0.0, "padding": 0.0}}}
    return {"seed": 0, "vae_recovery": b, "cross_attention_tokens": "words",
            "generation": {"single_object": b, "relational": b, "relational_objects_only": b, "steps": 5,
                           "guidance": 2.0, "relational_relation_if_objects": b},
            "stock_pipeline": {"single_object": {"value": 0.1, "stderr": 0.05, "n": 4},
                               "relational": {"value": 0.0, "stderr": 0.0, "n": 4}},
            "cmi": {"mass_inside": b, "mass_inside_pixels": b, "area_fraction": b, "rows_with_majority_inside": b,
                    "n_samples": 8},
            "reading": {"attention_mass": mass,
                        "swap": {"follows_words": b, "follows_padding": b, "neither": b, "eps_follows_words": b,
                                 "d_words": b, "d_padding": b, "steps": 3, "guidance": 2.0, "examples": []},
                        "sensitivity": {"relation_flip": b, "attribute_swap": b, "colour_swap": b,
                                        "ratio_relation": {"value": 0.05, "stderr": 0.01, "n": 4},
                                        "ratio_attribute": b, "n_samples": 2},
                        "text_sensitivity": {"relation_flip": b, "attribute_swap": b, "colour_swap": b,
                                             "ratio_relation": {"value": 0.5, "stderr": 0.01, "n": 4},
                                             "ratio_attribute": b},
                        "word_maps": {"auroc": {t: {"background": b, "other": {"value": 0.8, "stderr": 0.02, "n": 4}}
                                                for t in ("colour", "shape")},
                                      "daam_miou": {"value": 0.3, "stderr": 0.02, "n": 4, "threshold": 0.2},
                                      "whole_image_miou": {"value": 0.1, "stderr": 0.01, "n": 4},
                                      "miou_ratio": 3.0, "steps": 4}}}


def test_model_card_states_every_bar_and_its_verdict(uninterrupted, tmp_path):
    from infodecomp.training import BARS, bar_rows, record_quality, write_model_card

    uninterrupted.export(tmp_path / "pipe", use_ema=False)
    quality = _full_quality()
    rows = {r["path"]: r for r in bar_rows(quality)}
    assert len(rows) == len(BARS)
    assert rows["reading.word_maps.miou_ratio"]["met"] and rows["reading.word_maps.auroc.colour.other"]["met"]
    assert not rows["generation.single_object"]["met"]          # 0.5 < 0.95
    assert not rows["reading.sensitivity.ratio_relation"]["met"]  # 0.05 < 0.10
    (tmp_path / "pipe" / "ablations.json").write_text(json.dumps(
        {"n": 4, "seed": 1, "steps": 5, "guidance": 2.0, "note": "Chosen: B.",
         "entries": [{"name": "B-mask", "config": {"text_mask": "words"}, "unet_steps": 10, "wall_seconds": 60,
                      "quality": quality}]}))
    card = write_model_card(tmp_path / "pipe", quality).read_text()
    for r in rows.values():
        assert f"| {r['name']} | {r['result']} | {r['bar']} | {'met' if r['met'] else '**not met**'} |" in card
    assert "| B-mask: end token and padding hidden | 10 | 1 |" in card and "Chosen: B." in card
    assert "a stock `pipe(prompt)` call passes no mask" in card and "10.0 ± 5.0" in card  # stock-pipeline numbers
    assert "| **all** | **10%** | **90%** | **0%** | **0%** |" in card
    rec = json.loads(record_quality(quality, tmp_path / "pipe", root=tmp_path / "figures").read_text())
    assert rec["word_maps_miou_ratio"] == 3.0 and rec["swap_follows_words"]["value"] == 0.5


def test_model_card_takes_a_transcribed_ablation_table_and_refuses_an_empty_record(uninterrupted, tmp_path):
    from infodecomp.training import write_model_card

    uninterrupted.export(tmp_path / "pipe", use_ema=False)
    record = tmp_path / "pipe" / "ablations.json"
    record.write_text(json.dumps({"n": 96, "seed": 1, "steps": 50, "guidance": 3.0, "note": "From the logs.",
                                  "entries": [], "table": "| recipe | single object % |\n|---|---|\n| A | 39.6 |"}))
    card = write_model_card(tmp_path / "pipe", _full_quality()).read_text()
    assert "From the logs." in card and "| A | 39.6 |" in card
    record.write_text(json.dumps({"n": 96, "seed": 1, "steps": 50, "guidance": 3.0, "entries": []}))
    with pytest.raises(ValueError, match="needs 'entries'.*or a 'table'"):
        write_model_card(tmp_path / "pipe", _full_quality())


def test_the_card_says_when_a_phase_swaps_in_a_frozen_text_encoder():
    from infodecomp.training.card import _phase_start

    base = {"init_from": "p", "vae_steps": 0}
    frozen = {**base, "text_encoder_from": "clip/export"}
    joint = _phase_start(base, {"config": {}}, 2)
    swap = _phase_start(frozen, {"config": {}}, 2)
    same = _phase_start(frozen, {"config": {"text_encoder_from": "clip/export"}}, 2)
    assert joint.startswith("The VAE, UNet and text encoder of phase 2")
    assert "its text encoder replaced by the text encoder of the ShapesCLIP in `clip/export`, frozen" in swap
    assert "on the same frozen text encoder" in same and "replaced" not in same
    scratch = _phase_start({"vae_steps": 0, "vae_from": "v1", "text_encoder_from": "clip/export"}, None, 0)
    assert "UNet from scratch on the text encoder of the ShapesCLIP in `clip/export`, frozen" in scratch
