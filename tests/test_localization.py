"""Localization experiment: a toy model whose word information lives in a known region (exact answer: IoU 1)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image

from infodecomp.experiments.heatmaps import word_heatmaps
from infodecomp.experiments import localization
from infodecomp.experiments.localization import localization_table, miou_by, run_localization
from infodecomp.metrics import IoUSweep
from test_coco import coco_root  # noqa: F401  (fixture: a COCO data root in the download layout, real formats)

H = 8  # latent grid


def region(k: int) -> torch.Tensor:
    """[H, H] bool: the k-th known region (a rectangle whose position depends on k)."""
    m = torch.zeros(H, H, dtype=torch.bool)
    r, c = k % 4, (k // 4) % 4
    m[r:r + 3 + k % 2, c:c + 4] = True
    return m


class ToyModel:
    """Latents are zeros; a prompt containing 'square' turns the denoiser's output up inside region(k) only,
    where k is read from a 'k<digit>' token of the prompt. So i(x; word | context) lives exactly in region(k)."""

    name = "toy"
    resolution = (32, 32)

    def encode_images(self, images, *, posterior="mean", generator=None, resize=None, size=None):
        return torch.zeros(len(images), 4, H, H)

    def encode_prompts(self, prompts):
        out = torch.zeros(len(prompts), 2)
        for i, p in enumerate(prompts):
            toks = p.split()
            out[i, 0] = 1.0 if "square" in toks else 0.0
            ks = [t for t in toks if t.startswith("k")]
            out[i, 1] = float(ks[0][1:]) if ks else 0.0
        return out

    def denoiser(self, z, logsnr, cond):
        masks = torch.stack([region(int(k)) for k in cond[:, 1]]).to(z.dtype)  # [B, H, H]
        return 0.5 * z + (cond[:, 0, None, None] * masks)[:, None] * torch.sigmoid(-logsnr).view(-1, 1, 1, 1)


def toy_rows(n: int) -> list[dict]:
    rows = []
    for k in range(n):
        mask = region(k).repeat_interleave(4, 0).repeat_interleave(4, 1).numpy()
        rows.append({"id": f"toy{k}", "image": Image.new("RGB", (32, 32)), "mask": mask,
                     "caption": f"k{k} a red square", "word": "square", "label": f"square k{k}",
                     "context": f"k{k} a red", "context_": f"k{k} a red _", "word_type": "noun" if k % 2 else "adj"})
    return rows


def test_cmi_map_mass_is_in_the_known_region():
    rows = toy_rows(4)
    hm = word_heatmaps(ToyModel(), rows, n_samples=16, attention=False, generator=torch.Generator().manual_seed(0))
    assert hm.cmi.shape == (4, H, H) and hm.attention is None
    for k in range(4):
        inside = hm.cmi[k][region(k)].sum()
        assert inside > 0
        assert torch.allclose(hm.cmi[k].sum(), inside, rtol=1e-6)  # no mass outside
        assert torch.allclose(hm.cmi_image[k], hm.cmi[k].sum(), rtol=1e-4)
        assert hm.mi[k][~region(k)].abs().max() == 0 and hm.mi[k].sum() > 0
    sweep = IoUSweep()
    sweep.update(hm.cmi, torch.stack([torch.as_tensor(r["mask"]) for r in rows]), upsample=True)
    assert sweep.oracle().miou > 0.8  # bilinear upsampling blurs the region's edge by < 1 latent cell


def test_table_iou_and_whole_image_baseline(tmp_path):
    rows = toy_rows(8)
    store = run_localization(ToyModel(), rows, tmp_path / "s", n_samples=8, batch_size=3, attention=False)
    table = localization_table(store, rows, methods=("cmi", "mi"))
    assert table.loc["cmi", "miou_faithful"] > 0.8
    assert table.loc["cmi", "miou_corrected"] > 0.8
    fractions = np.array([r["mask"].mean() for r in rows])
    assert table.loc["whole_image", "miou_faithful"] == pytest.approx(fractions.mean())
    assert table.loc["cmi", "miou_faithful"] > table.loc["whole_image", "miou_faithful"]
    by = miou_by(store, rows, "word_type", methods=("cmi",))
    assert set(by.index) == {"noun", "adj"} and by["n"].sum() == 8
    assert store.array("cmi").dtype == np.float16 and store.array("cmi").shape == (8, H, H)


def test_the_fitted_sampling_keeps_the_maps_where_the_word_is_and_is_recorded(tmp_path):
    rows = toy_rows(6)
    store = run_localization(ToyModel(), rows, tmp_path / "s", n_samples=8, batch_size=3, attention=False,
                             sampling="auto", store_root=tmp_path, dataset_name="toy")
    q = store.settings["sampling"]
    assert (q["rule"], q["replicates"], q["quantity"]) == ("fitted_qmc", 2, "pixel_info_o")
    assert (tmp_path / "proposals.json").exists()
    table = localization_table(store, rows, methods=("cmi", "mi"))
    assert table.loc["cmi", "miou_faithful"] > 0.8


def test_resume_gives_the_same_maps_and_table(tmp_path):
    rows = toy_rows(6)
    full = run_localization(ToyModel(), rows, tmp_path / "a", n_samples=4, batch_size=2, attention=False)
    part = run_localization(ToyModel(), rows, tmp_path / "b", n_samples=4, batch_size=2, attention=False,
                            indices=[0, 1, 2])  # "interrupted" mid-batch
    assert len(part) == 3
    resumed = run_localization(ToyModel(), rows, tmp_path / "b", n_samples=4, batch_size=2, attention=False)
    assert len(resumed) == 6
    np.testing.assert_array_equal(full.array("cmi"), resumed.array("cmi"))
    t1 = localization_table(full, rows, methods=("cmi",))
    t2 = localization_table(resumed, rows, methods=("cmi",))
    assert t1.equals(t2)


def test_bad_protocol_is_rejected(tmp_path):
    with pytest.raises(ValueError, match="protocol"):
        run_localization(ToyModel(), toy_rows(2), tmp_path / "c", protocol="paper")


# -- the DAAM method and real COCO rows --------------------------------------------------------------------------


def test_daam_is_stored_scored_and_resumed(tiny_model, tmp_path):
    from infodecomp.experiments.localization import load_dataset, stored_methods, threshold_curves

    rows = load_dataset("coco-it", 5, seed=0)  # ShapesWorld twin rows, resized to the tiny model's 16 px
    kw = dict(n_samples=2, batch_size=2, daam_steps=3, attention_samples=3)
    full = run_localization(tiny_model, rows, tmp_path / "a", **kw)
    assert full.settings["daam_steps"] == 3 and full.settings["daam_guidance_scale"] == 1.0
    assert full.settings["attention_samples"] == 3
    assert stored_methods(full) == ("cmi", "mi", "daam", "attn_info")
    daam = full.array("daam")
    h, w = tiny_model.latent_shape[1:]
    assert daam.dtype == np.float16 and daam.shape == (5, h, w)
    assert np.isfinite(daam).all() and (daam >= 0).all() and (daam.reshape(5, -1).max(1) > 0).all()
    # interrupted in the middle of a batch, then resumed: the same maps
    part = run_localization(tiny_model, rows, tmp_path / "b", indices=[0, 2], **kw)
    assert len(part) == 2
    resumed = run_localization(tiny_model, rows, tmp_path / "b", **kw)
    np.testing.assert_array_equal(resumed.array("daam"), daam)
    np.testing.assert_array_equal(resumed.array("cmi"), full.array("cmi"))
    table = localization_table(resumed, rows)
    assert list(table.index) == ["cmi", "mi", "daam", "attn_info", "whole_image"]
    assert table.loc["daam", "label"] == "Attention (DAAM)" and table.loc["daam", "n"] == 5
    assert 0 <= table.loc["daam", "miou_faithful"] <= 1 and table.equals(localization_table(full, rows))
    by = miou_by(resumed, rows, "word_type")
    assert {"daam_miou", "daam_stderr"} <= set(by.columns)
    curves = threshold_curves(resumed, rows, methods=["daam"])
    assert len(curves) == 50 and curves["oracle"].sum() == 1
    assert curves.loc[curves["oracle"], "miou"].item() == pytest.approx(table.loc["daam", "miou_faithful"])
    # the information maps do not depend on whether DAAM was asked for (DAAM draws after them)
    plain = run_localization(tiny_model, rows, tmp_path / "c", n_samples=2, batch_size=2, attention_samples=3)
    np.testing.assert_array_equal(plain.array("cmi"), full.array("cmi"))
    assert "daam_steps" not in plain.settings and stored_methods(plain) == ("cmi", "mi", "attn_info")
    with pytest.raises(ValueError, match=r"\['daam'\] are not in the store.*daam_steps"):
        localization_table(plain, rows, methods=("cmi", "daam"))
    with pytest.raises(ValueError, match="daam_steps"):
        run_localization(tiny_model, rows, tmp_path / "d", daam_steps=0)


def test_load_dataset_reads_real_coco_rows(tiny_model, coco_root, tmp_path):
    from infodecomp.data.coco import CocoLocalization
    from infodecomp.experiments.localization import load_dataset

    root = coco_root
    full = load_dataset("coco-it", None, data_dir=root, size=None)
    assert isinstance(full, CocoLocalization) and len(full) == 14
    assert load_dataset("coco-it", 100, data_dir=root).indices == list(range(14))
    sub = load_dataset("coco-it", 4, seed=1, data_dir=root / "coco")  # the coco/ folder itself also works
    assert len(sub) == 4 and sub.indices == sorted(sub.indices)
    assert [sub.text_row(i)["id"] for i in range(4)] == [full.text_row(k)["id"] for k in sub.indices]
    assert load_dataset("coco-it", 4, seed=1, data_dir=root).indices == sub.indices  # seeded
    assert load_dataset("coco-it", 4, seed=2, data_dir=root).indices != sub.indices
    row = sub[0]
    assert {"id", "image", "mask", "caption", "word", "label", "context", "context_", "word_type"} <= set(row)
    assert row["image"].size == (512, 512) and row["mask"].shape == (512, 512) and row["mask"].dtype == bool
    # the rows flow through the experiment unchanged
    store = run_localization(tiny_model, sub, tmp_path / "s", n_samples=2, batch_size=2, daam_steps=2)
    table = localization_table(store, sub)
    assert table.loc["whole_image", "miou_faithful"] == pytest.approx(np.mean([sub[i]["mask"].mean()
                                                                              for i in range(4)]))
    assert set(store.to_frame()["id"]) == {sub.text_row(i)["id"] for i in range(4)}
    # clear errors
    with pytest.raises(FileNotFoundError, match="python -m infodecomp.data.download coco-tables"):
        load_dataset("coco-it", 4, data_dir=tmp_path / "nowhere")
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="python -m infodecomp.data.download coco-tables"):
        load_dataset("coco-wl", 4, data_dir=tmp_path / "empty")
    with pytest.raises(ValueError, match="unknown COCO localization dataset 'coco-order'"):
        load_dataset("coco-order", 4, data_dir=root)
    with pytest.raises(ValueError, match="n must be"):
        load_dataset("coco-it", 0, data_dir=root)
    with pytest.raises(ValueError, match="needs a number of rows"):
        load_dataset("coco-it", None)


def test_table3_frame_sets_ours_beside_the_papers_numbers():
    table = pd.DataFrame(
        [{"method": "cmi", "label": "CMI", "miou_faithful": 0.3312, "stderr_faithful": 0.0123, "miou_corrected": 0.3,
          "stderr_corrected": 0.02, "n": 40},
         {"method": "mi", "label": "MI", "miou_faithful": 0.2, "stderr_faithful": 0.01, "miou_corrected": 0.19,
          "stderr_corrected": 0.01, "n": 40}]).set_index("method")
    t3 = localization.table3_frame(table, 100)
    assert t3.loc["CMI", "mIoU % (oracle τ)"] == "33.1 ± 1.2"
    assert t3.loc["CMI", "paper % (100 steps)"] == "33.24"
    assert t3.loc["MI", "paper % (100 steps)"] == "–"  # the paper has no MI row
    with pytest.raises(ValueError, match="50, 100 and 200"):
        localization.table3_frame(table, 75)


def test_paired_differences_and_mass_inside_on_the_toy_world(tmp_path):
    rows = toy_rows(8)
    store = run_localization(ToyModel(), rows, tmp_path / "s", n_samples=8, batch_size=4, attention=False)
    diffs = localization.paired_differences(store, rows, pairs=(("cmi", "whole_image"), ("cmi", "mi"),
                                                                ("attn_info", "daam")))
    assert set(diffs) == {"cmi_minus_whole_image", "cmi_minus_mi"}  # no attention maps in this store
    sweeps, frame = localization.score_store(store, rows, methods=("cmi",))
    per = sweeps["cmi"].per_image[:, sweeps["cmi"].oracle().threshold_index] - frame["whole_image"].to_numpy()
    assert diffs["cmi_minus_whole_image"]["value"] == pytest.approx(per.mean())
    assert diffs["cmi_minus_whole_image"]["stderr"] == pytest.approx(per.std(ddof=1) / np.sqrt(8))
    assert diffs["cmi_minus_whole_image"]["value"] > 0.5 and diffs["cmi_minus_whole_image"]["n"] == 8
    mass = localization.mass_inside(store, rows, methods=("cmi",))
    # all of the toy's CMI lives in the word's region; bilinear upsampling spills a little over its edge
    assert (mass["cmi"] > 0.8).all() and (mass["area"] < 0.5).all() and len(mass) == 8


def test_size_terciles_with_tied_edges():
    # regression (make dry-run, 4 rows): 3 distinct fractions whose tercile edges coincide made pd.qcut drop a bin
    # and then refuse the three labels
    from infodecomp.experiments.localization import size_terciles

    groups = size_terciles([0.1, 0.1, 0.1, 0.5, 0.9])
    assert list(groups.categories) == ["small", "large"] and len(groups) == 5
    assert list(size_terciles(np.linspace(0, 1, 9)).categories) == ["small", "medium", "large"]
    assert list(size_terciles([0.2, 0.2, 0.3])) == ["all"] * 3


# -- the store's name and Table 3's paper column: the experiment decides them, not the notebook ---------------------

def test_the_store_is_named_by_the_experiment_under_store_root(tmp_path):
    """Without store_dir, run_localization names the store under store_root (experiments.stores.store_path): a rerun
    with the same settings resumes the same folder, other settings get another one."""
    rows = toy_rows(4)
    kw = dict(n_samples=4, batch_size=2, attention=False, seed=0)
    store = run_localization(ToyModel(), rows, dataset_name="coco-it", store_root=tmp_path, protocol="corrected", **kw)
    assert store.path.parent == tmp_path / "toy" / "localization" and store.path.name.startswith("coco-it-corrected-")
    again = run_localization(ToyModel(), rows, dataset_name="coco-it", store_root=tmp_path, protocol="corrected", **kw)
    assert again.path == store.path and len(again) == 4
    other = run_localization(ToyModel(), rows, dataset_name="coco-it", store_root=tmp_path, protocol="corrected",
                             **{**kw, "n_samples": 8})
    assert other.path != store.path and other.path.parent == store.path.parent
    with pytest.raises(ValueError, match="dataset_name"):
        run_localization(ToyModel(), rows, store_root=tmp_path, **kw)


@pytest.mark.parametrize("daam_steps, column", [(50, 50), (100, 100), (200, 200), (2, 50), (None, 50)])
def test_paper_steps_is_the_daam_steps_where_the_paper_has_them(daam_steps, column):
    assert localization.paper_steps(daam_steps) == column


# -- sharded over a launch's processes (issue 30) -------------------------------------------------------------------

def test_two_processes_store_the_maps_of_one_and_a_killed_shard_resumes(tmp_path, monkeypatch):
    from shard_checks import Killed, assert_same_rows, counting

    rows = toy_rows(7)  # aligned batches of 2: [0, 1] [2, 3] [4, 5] [6]
    kw = dict(n_samples=4, batch_size=2, seed=5, attention=False, progress=False)
    one = run_localization(ToyModel(), rows, tmp_path / "one", process_index=0, num_processes=1, **kw)
    with pytest.raises(KeyboardInterrupt):  # process 1 of 2 (batches [2, 3] and [6]) killed in its second batch
        run_localization(ToyModel(), Killed(rows, 6), tmp_path / "two", process_index=1, num_processes=2, **kw)
    calls = counting(monkeypatch, localization, "word_heatmaps")
    run_localization(ToyModel(), rows, tmp_path / "two", process_index=1, num_processes=2, **kw)
    assert calls == [1]  # only the batch it had not written
    run_localization(ToyModel(), rows, tmp_path / "two", process_index=0, num_processes=2, **kw)
    assert calls == [1, 2, 2]
    two = run_localization(ToyModel(), rows, tmp_path / "two", **kw)  # the plain run: nothing left to compute
    assert calls == [1, 2, 2]
    assert_same_rows(one.merge(7), two.merge(7))
    methods = ("cmi", "mi")
    assert localization_table(one, rows, methods=methods).equals(localization_table(two, rows, methods=methods))
