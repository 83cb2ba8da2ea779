"""The claims table: verdict rule, reading recorded numbers, and the generated Markdown block."""

import json

import pytest

from infodecomp import results as R
from tools import claims as C


def test_verdict_rule_uses_the_95_percent_interval():
    assert C.verdict(0.10, 0.05) == "holds"          # 0.10 − 1.96·0.05 = 0.002 > 0
    assert C.verdict(0.09, 0.05) == "inconclusive"   # the interval reaches below 0
    assert C.verdict(-0.10, 0.05) == "fails"
    assert C.verdict(None, None) == "inconclusive" and C.verdict(0.5, float("nan")) == "inconclusive"


def test_claims_read_paired_and_independent_differences(tmp_path):
    root = tmp_path / "figures"
    R.record("02_relation_testing", "shapes-tiny", "vg-relation_info_o_minus_mmse", 0.2, 0.05, root=root,
             protocol="faithful", seed=0, revision="sha256:abc")
    R.record("07_image_level_information", "shapes-tiny", "pearson_mi_cmi_noun", 0.8, 0.03, root=root, seed=0)
    R.record("07_image_level_information", "shapes-tiny", "pearson_mi_cmi_abstract", 0.2, 0.04, root=root, seed=0)
    v = {x.claim.key: x for x in C.evaluate_claims(root / "shapes-tiny")}
    assert v["vg-relation_info_o_minus_mmse"].verdict == "holds"
    c1 = v["pearson_mi_cmi_noun"]
    assert c1.value == pytest.approx(0.6) and c1.stderr == pytest.approx(0.05)  # sqrt(0.03² + 0.04²)
    assert c1.verdict == "holds"
    assert v["miou_cmi_minus_whole_image"].value is None and v["miou_cmi_minus_whole_image"].verdict == "inconclusive"
    md = C.claims_markdown(C.evaluate_claims(root / "shapes-tiny"), "shapes-tiny")
    assert "| Table 1 (Sec. 3.1), VG-Relation |" in md and "+20.0 ± 5.0 [+10.2, +29.8] points | **holds**" in md
    assert "sha256:abc, faithful, seed 0" in md and "not recorded" in md


def test_update_claims_script_rewrites_only_the_marked_block(tmp_path):
    import importlib.util
    from pathlib import Path

    spec = importlib.util.spec_from_file_location("update_claims", Path(__file__).parent.parent / "scripts" /
                                                  "update_claims.py")
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    readme = tmp_path / "README.md"
    readme.write_text(f"# T\n\nbefore\n{C.CLAIMS_START}\nstale block\n{C.CLAIMS_END}\nafter\n")
    root = tmp_path / "figures"
    R.record("06_prompt_intervention", "shapes-tiny", "pearson_pixel_cmi_minus_attention", -0.3, 0.05, root=root)
    args = [str(readme), "--figures", str(root)]
    assert script.main(args + ["--check"]) == 1
    assert script.main(args) == 0
    text = readme.read_text()
    assert text.startswith("# T\n\nbefore\n") and text.endswith(f"{C.CLAIMS_END}\nafter\n") and "stale block" not in text
    assert "-0.300 ± 0.050 [-0.398, -0.202] | **fails**" in text
    assert script.main(args + ["--check"]) == 0
    readme.write_text("no markers\n")
    assert script.main(args) == 0 and readme.read_text() == "no markers\n"  # files without markers are skipped
    readme.write_text(f"{C.CLAIMS_END}\n{C.CLAIMS_START}\n")
    with pytest.raises(SystemExit, match="exactly one"):
        script.main(args)


def test_rows_recorded_on_other_weights_than_the_committed_ones_are_marked(tmp_path):
    root = tmp_path / "figures"
    R.record("02_relation_testing", "shapes-tiny", "vg-relation_info_o_minus_mmse", 0.2, 0.05, root=root,
             protocol="faithful", seed=0, revision="sha256:old")
    verdicts = C.evaluate_claims(root / "shapes-tiny")
    md = C.claims_markdown(verdicts, "shapes-tiny", current="sha256:new")
    assert md.startswith("**Recorded on earlier weights** (sha256:old); the committed shapes-tiny is sha256:new.")
    assert next(line for line in md.splitlines() if "VG-Relation" in line).endswith(
        "sha256:old, faithful, seed 0 (*earlier weights*) |")
    same = C.claims_markdown(verdicts, "shapes-tiny", current="sha256:old")
    assert "earlier weights" not in same and same.startswith("| where |")
    text = C.updated_text(f"{C.CLAIMS_START}\n{C.CLAIMS_END}\n", root, current={"shapes-tiny": "sha256:new"})
    assert "**Recorded on earlier weights**" in text


def test_weights_version_is_the_models_version(tmp_path):
    from infodecomp.digest import weights_digest, weights_version

    (tmp_path / "unet").mkdir()
    (tmp_path / "unet" / "w.safetensors").write_bytes(b"abc")
    assert weights_version(tmp_path) == f"sha256:{weights_digest(tmp_path)[:16]}"
    before = weights_version(tmp_path)
    (tmp_path / "unet" / "w.safetensors").write_bytes(b"abd")
    assert weights_version(tmp_path) != before
    with pytest.raises(ValueError, match="holds no weight files"):
        weights_version(tmp_path / "unet" / "missing")


def test_the_clip_rows_read_the_paired_difference_and_name_the_clip(tmp_path):
    """Table 1's "SD vs the CLIP whose text encoder it shares": the recorded i^o − CLIP difference decides the row,
    and the "measured with" column says which CLIP it was (notebook 02's provenance ``clip_baseline_name``)."""
    root = tmp_path / "figures"
    R.Recorder("02_relation_testing", "shapes-tiny", root=root, protocol="faithful", seed=0, n_items=200,
               revision="sha256:abc", clip_baseline_name="ShapesCLIP").record_many(
        {"vg-relation_info_o_minus_clip": (0.15, 0.05), "coco-order_info_o_minus_clip": (-0.2, 0.05),
         "vg-relation_info_o_minus_mmse": (0.2, 0.05)})
    verdicts = C.evaluate_claims(root / "shapes-tiny")
    v = {x.claim.key: x for x in verdicts}
    assert {k for k in v if k.endswith("_minus_clip")} == {f"{d}_info_o_minus_clip" for d in
                                                            ("vg-attribution", "vg-relation", "coco-order",
                                                             "flickr-order")}
    assert v["vg-relation_info_o_minus_clip"].verdict == "holds"
    assert v["coco-order_info_o_minus_clip"].verdict == "fails"
    assert v["vg-attribution_info_o_minus_clip"].value is None  # not recorded for this set: inconclusive
    assert v["vg-attribution_info_o_minus_clip"].verdict == "inconclusive"
    md = C.claims_markdown(verdicts, "shapes-tiny").splitlines()
    row = next(line for line in md if "VG-Relation" in line and "CLIP" in line)
    assert "| 69.1 vs 51.4 % (+17.7) | +15.0 ± 5.0 [+5.2, +24.8] points | **holds** |" in row
    assert row.endswith("sha256:abc, faithful, seed 0, n = 200, against ShapesCLIP |")
    # only the CLIP rows name the CLIP
    assert "against" not in next(line for line in md if "VG-Relation" in line and "MMSE" in line)


def test_the_clip_rows_are_not_recorded_where_no_clip_ran(tmp_path):
    """A model with no CLIP to pair with (no shipped ShapesCLIP, no open_clip): notebook 02 records the rest with
    ``clip_baseline_name`` None, and every CLIP row is inconclusive, "not recorded", naming no CLIP."""
    root = tmp_path / "figures"
    R.Recorder("02_relation_testing", "shapes-tiny", root=root, protocol="faithful", seed=0,
               clip_baseline_name=None).record_many({"vg-relation_info_o_minus_mmse": (0.2, 0.05)})
    verdicts = [v for v in C.evaluate_claims(root / "shapes-tiny") if v.claim.key.endswith("_minus_clip")]
    assert len(verdicts) == 4 and all(v.value is None and v.verdict == "inconclusive" for v in verdicts)
    md = C.claims_markdown(verdicts, "shapes-tiny")
    assert md.count("| not recorded | inconclusive |") == 4 and "against" not in md
