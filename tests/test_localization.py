"""Localization experiment: a toy model whose word information lives in a known region (exact answer: IoU 1)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from infodecomp.experiments.heatmaps import word_heatmaps
from infodecomp.experiments.localization import localization_table, miou_by, run_localization
from infodecomp.metrics import IoUSweep

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
