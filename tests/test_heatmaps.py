"""Heat maps: joint colour scale, protocol switch, Attention+Information on a tiny pipeline."""

from __future__ import annotations

import pytest
import torch

from infodecomp.data.shapes import twin
from infodecomp.experiments.heatmaps import (apply_scale, attention_information_maps, draw_logsnr, joint_scale,
                                             protocol_settings, word_heatmaps)


def test_joint_scale_is_one_min_max_over_both_maps():
    mi = torch.tensor([[[0.0, 1.0], [2.0, 3.0]], [[5.0, 5.0], [5.0, 5.0]]])
    cmi = torch.tensor([[[-1.0, 0.5], [0.5, 0.5]], [[4.0, 6.0], [5.0, 5.0]]])
    lo, hi = joint_scale(mi, cmi)
    assert lo.tolist() == [-1.0, 4.0] and hi.tolist() == [3.0, 6.0]
    s = apply_scale(mi, lo, hi)
    assert s[0, 0, 0] == pytest.approx(0.25) and s[0, 1, 1] == pytest.approx(1.0)
    assert apply_scale(cmi, lo, hi).min() == 0.0  # the CMI map's min is the joint min in both images
    flat = torch.ones(1, 2, 2)
    assert apply_scale(flat, *joint_scale(flat)).eq(0).all()  # constant maps → 0, not NaN
    with pytest.raises(ValueError, match="shape"):
        joint_scale(mi, cmi[:, :1])


def test_protocol_switch():
    assert protocol_settings("faithful") == {"clip": 4.0, "posterior": "sample"}
    assert protocol_settings("corrected") == {"clip": 3.0, "posterior": "mean"}
    with pytest.raises(ValueError, match="protocol"):
        protocol_settings("paper")


def test_draw_logsnr_stays_in_the_clipped_range():
    lam = draw_logsnr(2000, clip=3.0, generator=torch.Generator().manual_seed(0))
    assert lam.min() >= 1 - 6 - 1e-4 and lam.max() <= 1 + 6 + 1e-4
    assert abs(float(lam.median()) - 1.0) < 0.3  # logistic centred at loc


def test_attention_information_on_tiny_pipeline(tiny_model):
    rows = [twin("coco-it", 2, 0)[i] for i in range(2)]
    x = tiny_model.encode_images([r["image"] for r in rows], resize="bicubic", size=tiny_model.resolution)
    g = torch.Generator().manual_seed(0)
    maps = attention_information_maps(tiny_model, x, [r["caption"] for r in rows], [r["word"] for r in rows],
                                      n_samples=3, generator=g)
    assert maps.shape == (2, *x.shape[-2:])
    assert torch.isfinite(maps).all() and (maps >= 0).all() and (maps.flatten(1).sum(1) > 0).all()
    hm = word_heatmaps(tiny_model, rows, n_samples=2, attention_samples=2, generator=g)
    assert hm.cmi.shape == hm.mi.shape == hm.attention.shape == maps.shape
    with pytest.raises(ValueError, match="prompt"):
        attention_information_maps(tiny_model, x, ["a"], ["a"], n_samples=1)
    with pytest.raises(ValueError, match="mi_cond"):
        word_heatmaps(tiny_model, rows, mi_cond="lemma")


def test_a_word_absent_from_its_caption_is_refused_not_given_zero_cmi(tiny_model):
    """Issue 14, item 5: a word absent from the caption gave CMI = 0.0 when the context equals the caption."""
    from PIL import Image

    img = Image.new("RGB", (16, 16), (200, 30, 30))
    row = {"id": "r0", "image": img, "caption": "a red circle", "word": "square", "label": "square",
           "context": "a red circle"}
    with pytest.raises(ValueError, match=r"row 'r0': word 'square'.*does not occur in prompt 'a red circle'"):
        word_heatmaps(tiny_model, [row], n_samples=2, attention=False)
    row = {**row, "word": "circle", "label": "circle"}  # the word is there, but the context still is the caption
    with pytest.raises(ValueError, match=r"row 'r0': the context equals the caption.*CMI would be exactly 0"):
        word_heatmaps(tiny_model, [row], n_samples=2, attention=False)


# -- notebook 04's maps in a store, sharded over a launch's processes (issue 30) ----------------------------------

def test_two_processes_store_the_maps_of_one_and_a_killed_shard_resumes(tiny_model, tmp_path, monkeypatch):
    from infodecomp.experiments import heatmaps
    from shard_checks import Killed, assert_same_rows, counting

    ds = twin("coco-it", 7, 0)
    rows = [ds[i] for i in range(7)]  # aligned batches of 2: [0, 1] [2, 3] [4, 5] [6]
    kw = dict(dataset="coco-it", n_samples=2, attention_samples=2, batch_size=2, seed=3, progress=False)
    one = heatmaps.run_heatmaps(tiny_model, rows, store=tmp_path / "one", process_index=0, num_processes=1, **kw)
    # process 0 of 2 (batches [0, 1] and [4, 5]) is killed in its second batch, then run again
    with pytest.raises(KeyboardInterrupt):
        heatmaps.run_heatmaps(tiny_model, Killed(rows, 4), store=tmp_path / "two", process_index=0,
                              num_processes=2, **kw)
    calls = counting(monkeypatch, heatmaps, "word_heatmaps")
    two = heatmaps.run_heatmaps(tiny_model, rows, store=tmp_path / "two", process_index=0, num_processes=2, **kw)
    assert calls == [2] and two.done_indices() == {0, 1, 4, 5}  # only the batch it had not written
    heatmaps.run_heatmaps(tiny_model, rows, store=tmp_path / "two", process_index=1, num_processes=2, **kw)
    assert calls == [2, 2, 1] and sorted(p.name for p in (tmp_path / "two").glob("rows-*.jsonl")) == [
        "rows-000-of-002.jsonl", "rows-001-of-002.jsonl"]
    assert_same_rows(one.merge(7), two.merge(7))
    # the plain run after the sharded phase reads the complete store and computes nothing
    maps = heatmaps.run(tiny_model, rows, store=tmp_path / "two", **kw)
    assert calls == [2, 2, 1] and maps.cmi.shape == (7, *tiny_model.latent_shape[1:])
    assert maps.attention is not None and maps.cmi.dtype == torch.float32


def test_the_corrected_maps_draw_from_a_stratified_proposal_fitted_to_the_cmi_map(tiny_model, tmp_path, monkeypatch):
    from infodecomp.experiments import heatmaps
    from infodecomp.proposals import FittedLogSNRSampling

    ds = twin("coco-it", 3, 0)
    rows = [ds[i] for i in range(3)]
    kw = dict(dataset="coco-it", n_samples=4, attention=False, batch_size=3, seed=1, store_root=tmp_path,
              progress=False)
    seen = []
    real_maps = heatmaps.word_heatmaps
    monkeypatch.setattr(heatmaps, "word_heatmaps", lambda *a, **k: seen.append(k["sampling"]) or real_maps(*a, **k))
    fitted = heatmaps.run_heatmaps(tiny_model, rows, sampling="auto", **kw)
    q = seen[-1]
    assert isinstance(q, FittedLogSNRSampling) and q.quantity == "pixel_info_o"
    assert (q.rule, q.replicates, q.support) == ("fitted_qmc", 2, (-5.0, 7.0))  # 4 draws: 2 lattices of 2
    assert fitted.settings["sampling"] == q.to_dict() and (tmp_path / "proposals.json").exists()
    frame = fitted.merge(3, arrays=False)
    assert frame["cmi_stderr"].notna().all() and (frame["cmi_stderr"] > 0).all()
    paper = heatmaps.run_heatmaps(tiny_model, rows, sampling="paper", **kw)
    assert seen[-1] is None and "sampling" not in paper.settings and paper.path != fitted.path
    # the cached proposal is reused: a second run finds its store complete and computes nothing
    n = len(seen)
    heatmaps.run_heatmaps(tiny_model, rows, sampling="fitted", **kw)
    assert len(seen) == n
    with pytest.raises(ValueError, match="corrected protocol"):
        heatmaps.run_heatmaps(tiny_model, rows, sampling="fitted", **{**kw, "protocol": "faithful"})
    with pytest.raises(ValueError, match="sampling must be one of"):
        heatmaps.run_heatmaps(tiny_model, rows, sampling="mmg", **kw)
