"""ShapesCLIP (the frozen text encoder of shapes-tiny v3): hard negatives are false captions of their scene, the
contrastive loss is the symmetric InfoNCE with repeated captions masked, a killed run resumes to the identical
state, an export loads back, the text-change measure is the squared distance it says, and a UNet trained on a
frozen encoder leaves the encoder untouched."""

import json
import math
from dataclasses import replace

import numpy as np
import pytest
import torch

from infodecomp.training import shapesclip as sc
from infodecomp.data import shapes
from infodecomp.diagnostics import text_change

TINY = sc.ClipConfig(seed=2, steps=3, batch=6, warmup=2, checkpoint_every=1, threads=1)


def _samples(kind, n, seed):
    rng = np.random.default_rng(seed)
    return [shapes.sample_kind(rng, kind, 2, both_distinct=True) for _ in range(n)], rng


def test_hard_negatives_are_false_captions_of_their_own_scene():
    samples, rng = _samples("relation", 40, 0)
    seen = set()
    for s in samples:
        negs = sc.hard_negatives(s, sc.NEGATIVE_KINDS, rng)
        # objects of distinct colours and shapes in a relation: every kind applies
        assert set(negs) == set(sc.NEGATIVE_KINDS), (s.caption, negs)
        for kind, text in negs.items():
            assert text != s.caption
            assert not shapes.is_true_of(text, s.scene), (kind, s.caption, text)
            seen.add(kind)
        rel = " ".join(w.text for w in s.words if w.pos == "prep")
        assert negs["relation_flip"] == s.caption.replace(rel, shapes.FLIPPED_RELATION[rel])
        assert sorted(negs["swap"].split()) == sorted(s.caption.split())
    assert seen == set(sc.NEGATIVE_KINDS)


def test_hard_negatives_follow_the_caption_kind_and_the_chosen_kinds():
    ands, rng = _samples("and", 20, 1)
    for s in ands:  # no relation word: only the attribute swap and the shuffle apply
        assert set(sc.hard_negatives(s, sc.NEGATIVE_KINDS, rng)) <= {"attribute_swap", "shuffle"}
        assert "attribute_swap" in sc.hard_negatives(s, sc.NEGATIVE_KINDS, rng)
    single = shapes.sample_kind(np.random.default_rng(3), "single", 1)
    assert sc.hard_negatives(single, sc.NEGATIVE_KINDS, rng) == {}
    rel, _ = _samples("relation", 5, 4)
    assert all(set(sc.hard_negatives(s, ("relation_flip",), rng)) == {"relation_flip"} for s in rel)
    assert all(sc.hard_negatives(s, (), rng) == {} for s in rel)


def test_unknown_negative_kinds_and_bad_probabilities_are_refused():
    with pytest.raises(ValueError, match="unknown negative kinds"):
        sc.ClipConfig(negatives=("relation_flip", "colour"))
    with pytest.raises(ValueError, match="relation_boost"):
        sc.ClipConfig(relation_boost=1.5)


def test_batches_are_a_function_of_seed_and_step():
    a, b = sc.clip_batch(TINY, 5), sc.clip_batch(TINY, 5)
    assert torch.equal(a[0], b[0]) and a[1:] == b[1:]
    assert sc.clip_batch(TINY, 6)[1] != a[1]
    assert sc.clip_batch(replace(TINY, negatives=()), 5)[2] == []


def test_contrastive_loss_is_symmetric_infonce_with_repeated_captions_masked():
    e = torch.eye(3)
    # orthogonal unit embeddings, image i = text i: each direction's softmax puts e^s on the right pair and 1 on
    # each of the two others
    scale = 2.0
    expected = -math.log(math.exp(scale) / (math.exp(scale) + 2))
    assert sc.contrastive_loss(e, e, ["a", "b", "c"], scale).item() == pytest.approx(expected, rel=1e-6)
    # a hard negative adds one candidate (score 0) to each image's row, and nothing to the text → image direction
    neg = torch.cat([e, torch.tensor([[0.0, 0.0, 0.0]])])
    i2t = -math.log(math.exp(scale) / (math.exp(scale) + 3))
    assert sc.contrastive_loss(e, neg, ["a", "b", "c"], scale).item() == pytest.approx((i2t + expected) / 2, rel=1e-6)
    # the same caption twice: the other copy is not a negative (masked), so a perfect fit costs nothing extra
    same = torch.tensor([[1.0, 0.0], [1.0, 0.0]])
    masked = sc.contrastive_loss(same, same, ["a red circle"] * 2, 50.0).item()
    assert masked == pytest.approx(0.0, abs=1e-6)
    assert sc.contrastive_loss(same, same, ["a red circle", "a blue circle"], 50.0).item() == pytest.approx(
        math.log(2), rel=1e-4)


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    return sc.ClipTrainer(TINY, tmp_path_factory.mktemp("clip")).train(probe_every=10**9)


def test_training_runs_with_finite_losses(uninterrupted):
    losses = [loss for _, loss in uninterrupted.state["losses"]]
    assert len(losses) == TINY.steps and all(math.isfinite(v) for v in losses)


def test_a_killed_run_resumes_to_the_uninterrupted_state(uninterrupted, tmp_path):
    sc.ClipTrainer(replace(TINY, steps=1), tmp_path).train(probe_every=10**9)
    resumed = sc.ClipTrainer(TINY, tmp_path)
    assert resumed.state["step"] == 1
    resumed.train(probe_every=10**9)
    a, b = uninterrupted.model.state_dict(), resumed.model.state_dict()
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    with pytest.raises(ValueError, match="other settings"):
        sc.ClipTrainer(replace(TINY, negatives=()), tmp_path)


def test_a_checkpoint_that_cannot_be_read_is_refused_with_what_to_do(tmp_path):
    (tmp_path / "checkpoint.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match=r"(?s)cannot be read as a ShapesCLIP checkpoint.*delete it to start over"):
        sc.ClipTrainer(TINY, tmp_path)


def test_export_loads_back_with_the_same_embeddings(uninterrupted, tmp_path):
    out = uninterrupted.export(tmp_path / "export")
    assert (out / "text_encoder" / "model.safetensors").is_file() and (out / sc.WEIGHTS_FILE).is_file()
    assert json.loads((out / sc.CONFIG_FILE).read_text())["steps"] == TINY.steps
    loaded = sc.load_shapesclip(out)
    captions = ["a red circle left of a blue square", "two green triangles"]
    images = sc.clip_batch(TINY, 0)[0][:2]
    model = uninterrupted.model.eval()
    with torch.no_grad():
        assert torch.allclose(loaded.embed_text(captions), model.embed_text(captions), atol=1e-6)
        assert torch.allclose(loaded.embed_images(images), model.embed_images(images), atol=1e-6)
    with pytest.raises(FileNotFoundError, match="shapesclip.json"):
        sc.load_shapesclip(tmp_path)


def test_text_change_is_the_squared_distance_summed_over_tokens():
    def encode(prompts):  # token states: the characters' codes at the first 4 positions, in 2 dimensions
        codes = torch.tensor([[float(ord(c)) for c in p[:4].ljust(4)] for p in prompts])
        return torch.stack([codes, 2 * codes], dim=-1)

    d = text_change(encode, ["abcd", "wxyz"], {"same": ["abcd", "wxyz"], "one": ["abce", "wxzz"]})
    np.testing.assert_allclose(d["same"], [0.0, 0.0])
    np.testing.assert_allclose(d["one"], [1 + 4, 1 + 4])
    with pytest.raises(ValueError, match="one edit of each kind per prompt"):
        text_change(encode, ["abcd"], {"one": []})


def test_evaluation_reports_retrieval_and_the_text_flip_ratio(uninterrupted):
    res = sc.evaluate(uninterrupted.model.eval(), n=4, seed=0)
    assert set(res["retrieval"]) == set(sc.RETRIEVAL_TWINS)
    assert all(0 <= r["value"] <= 1 and r["n"] == 4 for r in res["retrieval"].values())
    ratio = res["text_change"]["ratio_relation"]
    assert ratio["n"] == 4 and ratio["value"] > 0 and math.isfinite(ratio["stderr"])


def test_a_unet_trained_on_a_frozen_encoder_leaves_it_untouched(uninterrupted, tmp_path):
    from safetensors.torch import load_file

    from infodecomp.training import TrainConfig, Trainer

    clip_dir = uninterrupted.export(tmp_path / "clip")
    cfg = TrainConfig(seed=3, vae_steps=1, vae_batch=4, unet_steps=2, unet_batch=4, warmup=2, checkpoint_every=1,
                      threads=1, text_mask="words", text_encoder_from=str(clip_dir))
    trainer = Trainer(cfg, tmp_path / "unet")
    unet_before = {k: v.clone() for k, v in trainer.unet.state_dict().items()}
    trainer.train()
    frozen = load_file(str(clip_dir / "text_encoder" / "model.safetensors"))
    text = trainer.text_encoder.state_dict()
    assert all(torch.equal(text[k], frozen[k]) for k in frozen)
    assert any(not torch.equal(unet_before[k], v) for k, v in trainer.unet.state_dict().items())
    with pytest.raises(FileNotFoundError, match="text_encoder"):
        Trainer(replace(cfg, text_encoder_from=str(tmp_path / "nowhere")), tmp_path / "other")


def test_a_pipeline_ships_its_shapesclip_and_the_clip_row_scores_with_it(uninterrupted, tiny_pipeline_dir, tmp_path):
    import shutil

    from infodecomp.experiments import clip_baseline
    from infodecomp.models import load_model

    folder = tmp_path / "pipe"
    shutil.copytree(tiny_pipeline_dir, folder)
    assert clip_baseline.twin_clip(load_model(str(folder))) is None  # no shapesclip/ beside it: no CLIP row
    export = uninterrupted.export(tmp_path / "clip")
    with pytest.raises(ValueError, match="is not the text tower"):  # the tiny pipeline's encoder is another one
        sc.ship(export, folder)
    uninterrupted.model.text_encoder.to(torch.float16).save_pretrained(folder / "text_encoder")
    uninterrupted.model.text_encoder.float()
    (tmp_path / "eval.json").write_text(json.dumps(sc.evaluate(uninterrupted.model.eval(), n=2, seed=0)))
    shipped = sc.ship(export, folder, evaluation=tmp_path / "eval.json")
    assert not (shipped / "text_encoder").exists()  # the pipeline's text encoder is the only copy
    from infodecomp.training.card import _shapesclip_text

    section = _shapesclip_text(folder)  # the model card's section names the recipe and the shipped evaluation
    assert "## The text encoder: ShapesCLIP" in section and "relation flip, swap, attribute swap, shuffle" in section
    assert "| shipped | " in section and "seed 0, n = 2 rows each" in section
    clip = clip_baseline.twin_clip(load_model(str(folder)))
    shared, _ = clip_baseline.shared_encoder_clips(load_model(str(folder)))  # paired with i^o: the shipped one
    assert (shared[0].key, shared[0].name) == ("shapesclip", "ShapesCLIP")
    with torch.no_grad():  # loaded with the pipeline's float16 text encoder: the embeddings agree to its rounding
        caps = ["a red circle left of a blue square"]
        assert torch.allclose(clip.embed_text(caps), uninterrupted.model.eval().embed_text(caps), atol=2e-2)
    rows = shapes.twin("vg-relation", 5, seed=0)
    scores = clip_baseline.shapesclip_scores(clip, rows)
    assert scores.shape == (5, 2) and np.all(np.abs(scores) <= 1 + 1e-6)
    with torch.no_grad():  # the score is the cosine of the two embeddings
        want = float(clip.embed_text(rows[0]["captions"][:1])[0] @ clip.embed_images(
            sc.image_batch([rows[0]]))[0])
    assert scores[0, 0] == pytest.approx(want, abs=1e-6)
    np.testing.assert_allclose(shared[0].score(rows), scores)
    acc, lo, hi = clip_baseline.scores_accuracy(scores, rows)
    assert 0 <= lo <= acc <= hi <= 1


def test_export_refuses_an_unfinished_run(tmp_path):
    with pytest.raises(RuntimeError, match=f"step 0 of {TINY.steps}"):
        sc.ClipTrainer(TINY, tmp_path / "never").export(tmp_path / "export")
    assert not (tmp_path / "export").exists()


def test_evaluate_writes_its_json_into_a_folder_that_does_not_exist_yet(uninterrupted, tmp_path, capsys):
    """scripts/train_shapes_tiny.sh with a fresh OUT (a reproduction) writes OUT/ablations/shapesclip-hard.json."""
    out = uninterrupted.export(tmp_path / "export")
    target = tmp_path / "fresh" / "ablations" / "shapesclip-hard.json"
    sc.main(["evaluate", str(out), "--n", "4", "--seed", "0", "--out", str(target)])
    assert json.loads(target.read_text()) == json.loads(capsys.readouterr().out)
