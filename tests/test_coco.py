"""Tests of infodecomp.data.coco: the reference tables (read, never copied, from the folder that
INFODECOMP_SHARED_DATA names; those tests skip without it), the COCO-IT builder on a tiny annotation fixture in the
real COCO format, masks, the intervention view and COCO10."""

import json
import os
import re
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from infodecomp.data import coco as C

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "coco"
SHARED = Path(os.environ.get("INFODECOMP_SHARED_DATA", Path(__file__).resolve().parents[2] / "shared" / "data"))

#: Rows of the reference COCO-IT.csv that the fixture's images and captions must reproduce, in order.
FIXTURE_ROWS = [0, 1, 278, 279, 302, 303, 310, 345, 346, 347, 362, 363, 364, 1006]
W, H = 24, 16  # size of the fixture's stand-in images


@pytest.fixture(scope="module")
def shared_root() -> Path:
    """Data root whose coco/ holds the reference tables (env INFODECOMP_SHARED_DATA: the root or its coco/)."""
    for root in (SHARED, SHARED.parent):
        if (root / "coco" / "COCO-IT.csv").is_file():
            return root
    pytest.skip(f"shared reference tables not found under {SHARED} (set INFODECOMP_SHARED_DATA)")


def built_fixture() -> pd.DataFrame:
    return C.build_coco_it(FIXTURES / "instances_val2017.json", FIXTURES / "captions_val2017.json", progress=False)


def image_of(image_id: int) -> Image.Image:
    """A deterministic, smooth stand-in image for a fixture image id (smooth, so JPEG keeps it close)."""
    base = np.random.default_rng(image_id).integers(40, 200, size=3)
    yy, xx = np.mgrid[0:H, 0:W]
    img = base[None, None, :] + np.stack([2 * xx, 3 * yy, xx + yy], axis=-1)
    return Image.fromarray(img.clip(0, 255).astype(np.uint8), "RGB")


@pytest.fixture()
def coco_root(tmp_path) -> Path:
    """A data root in the download layout: coco/COCO-IT.csv (built from the fixture), val2017/, annotations/."""
    d = tmp_path / "coco"
    (d / "annotations").mkdir(parents=True)
    (d / "val2017").mkdir()
    shutil.copy(FIXTURES / "instances_val2017.json", d / "annotations")
    for im in json.loads((FIXTURES / "instances_val2017.json").read_text())["images"]:
        image_of(im["id"]).save(d / "val2017" / im["file_name"], quality=95)
    C.write_table(built_fixture(), d / "COCO-IT.csv")
    return tmp_path


# ------------------------------------------------------------------------------------------------ reference tables


def test_reference_tables_read_with_raw_and_clean_columns(shared_root):
    it, it100, wl = (C.read_table(n, shared_root) for n in ("coco-it", "coco100-it", "coco-wl"))
    assert (len(it), len(it100), len(wl)) == (6927, 100, 70)
    assert it.attrs["table"] == "coco-it" and it["image_id"].nunique() == 4550 and it["label"].nunique() == 79
    # raw values kept byte for byte, clean ones tidied
    r = it.iloc[347]
    assert r["raw:correct_obj+context"] == "a shop a car traffic lights and buildings\n"
    assert r["caption"] == "a shop a car traffic lights and buildings" and r["word"] == "traffic lights"
    assert r["raw:context"] == "a shop a car  and buildings\n" and r["context"] == "a shop a car and buildings"
    assert (it["raw:correct_obj+context"].str.endswith(" ")).sum() > 100
    assert not it["caption"].str.contains(r"\s\s|^\s|\s$").any()
    # the faithful context IS substring deletion of correct_obj, on every row (docs/protocol.md#coco-it)
    assert all(c.replace(w, "") == x for c, w, x in
               zip(it["raw:correct_obj+context"], it["raw:correct_obj"], it["raw:context"]))
    # COCO-WL: unnamed 7th column, "perp" typo, stray leading spaces
    assert "raw:word_type" in wl.columns and (wl["raw:word_type"] == "perp").sum() == 10
    assert list(dict.fromkeys(wl["word_type"])) == list(C.WORD_TYPES)
    assert wl["word_type"].value_counts().to_dict() == {t: 10 for t in C.WORD_TYPES}
    lead = wl[wl["raw:Label"].str.startswith(" ")]
    assert sorted(lead["label"]) == ["green and yellow", "in front of"]
    assert (wl["raw:correct_obj"] == " in front of").sum() == 1 and not wl["word"].str.startswith(" ").any()
    # COCO100-IT: 10 categories × 10 rows in block order, each row a COCO-IT row
    assert list(dict.fromkeys(it100["label"])) == list(C.COCO100_CATEGORIES)
    assert it100["label"].value_counts().eq(10).all()
    m = it100.merge(it, on=["image_id", "label"], suffixes=("", "_it"))
    assert len(m) == 100 and (m["caption"] == m["caption_it"]).all() and (m["word"] == m["word_it"]).all()
    # every word occurs as a whole word in its caption (so the corrected context and omit prompt are defined)
    for df in (it, it100, wl):
        assert all(C.contains_word(c, w, plural=False) for c, w in zip(df["caption"], df["word"]))


def test_contexts_faithful_vs_whole_word(shared_root):
    it = C.read_table("coco-it", shared_root)
    bed = it.iloc[310]
    # "bedroom" clipped (docs/protocol.md#b22)
    assert bed["context"] == "A room with a large sitting next to a black dresser."
    assert bed["context_whole_word"] == "A bedroom with a large sitting next to a black dresser."
    assert bed["context_"] == "A bedroom with a large _ sitting next to a black dresser."
    def tidy(s):
        return re.sub(r" ([,.;:!?])", r"\1", s)

    differ = [tidy(a) != tidy(b) for a, b in zip(it["context"], it["context_whole_word"])]
    # beyond spacing before punctuation, they differ on the 37 rows whose word also occurs inside another word
    # (docs/protocol.md#coco-it) and where the word also occurs capitalised ("Toilet … toilet": whole-word is any case)
    assert 37 <= sum(differ) <= 45
    assert it.iloc[543]["context_whole_word"] == "with a black lid and rolls of tissue in a bathroom"
    wl = C.read_table("coco-wl", shared_root)
    assert (wl["context_"] == wl["raw:context_"].map(C.clean_text)).all()  # hand-made column kept


def test_coco10_rule(shared_root):
    df = C.read_table("coco100-it", shared_root)
    idx = C.coco10_indices(df)
    assert idx == list(range(0, 100, 10))
    assert list(df["label"].iloc[idx]) == list(C.COCO100_CATEGORIES)
    toy = pd.DataFrame({"label": ["b", "b", "a", "c", "a", "c"]})
    assert C.coco10_indices(toy) == [0, 2, 3]
    ds = C.coco10(shared_root)
    assert len(ds) == 10 and ds.text_row(1)["id"] == C.coco100_it(shared_root).text_row(10)["id"]


# ------------------------------------------------------------------------------------------------ builder


def test_builder_follows_the_algorithm_on_the_fixture():
    df = built_fixture()
    assert list(df.columns) == list(C.RAW_COLUMNS) and len(df) == 14
    by = {(r["Image ID"], r["Label"]): r for _, r in df.iterrows()}
    # first matching caption, case-sensitive: "Person at work …" (capital P) is skipped
    assert by[(397133, "person")]["correct_obj+context"] == "A person standing by a stove in a kitchen."
    assert (397133, "chair") not in by  # annotated, but no caption names it
    assert not {k for k in by if k[0] in (311303, 70254, 139)}  # annotations without captions / neither
    # plural preferred; inflect's plural of "skis" is "ski"; substring deletion clips other words
    assert by[(541055, "person")]["correct_obj"] == "people"
    assert by[(541055, "skis")]["correct_obj"] == "ski"
    assert by[(541055, "skis")]["context"] == "A group of people on the  slope in their s. "
    assert by[(414170, "skis")]["context"] == "3 people separated by a short distance ing on a  slope"
    assert by[(371677, "mouse")]["correct_obj"] == "mice"
    assert by[(555050, "traffic light")]["correct_obj+context"].endswith("\n")  # raw caption kept
    # whole-word match: "skier" does not contain the word "ski"
    assert "skier" not in by[(541055, "skis")]["correct_obj+context"]
    # rows per image follow the order of first annotation of each category
    assert list(df[df["Image ID"] == 555050]["Label"]) == ["cow", "car", "traffic light"]


def test_builder_reproduces_the_reference_rows(shared_root, tmp_path):
    ref = pd.read_csv(shared_root / "coco" / "COCO-IT.csv", dtype=str, keep_default_na=False)
    expected = ref.iloc[FIXTURE_ROWS].reset_index(drop=True)
    got = built_fixture().astype(str)
    pd.testing.assert_frame_equal(got, expected)
    # written as the reference wrote it: same header, and it reads back to the same raw cells
    out = C.write_table(built_fixture(), tmp_path / "COCO-IT.csv")
    assert out.read_text().splitlines()[0] == (shared_root / "coco" / "COCO-IT.csv").read_text().splitlines()[0]
    back = C.read_table(out)
    assert list(back["raw:correct_obj+context"]) == list(expected["correct_obj+context"])
    assert not out.with_name("COCO-IT.csv.part").exists()


# ------------------------------------------------------------------------------------------------ rows, masks


KEYS = {"id", "image", "mask", "caption", "word", "label", "context", "context_", "word_type"}


def test_localization_rows_and_masks(coco_root):
    ds = C.coco_it(coco_root, size=None)
    assert len(ds) == 14
    row = ds[0]
    assert KEYS <= set(row) and row["id"] == "coco-it-00000-397133" and row["word_type"] == "noun"
    assert row["image"].mode == "RGB" and row["image"].size == (W, H)
    m = row["mask"]
    assert m.dtype == bool and m.shape == (H, W) and row["mask_valid"]
    # union of the person polygon (x 2..8, y 2..12) and the crowd RLE (x 16..22, y 10..14)
    assert m[3:11, 3:7].all() and m[10:14, 16:22].all()
    assert not m[1:6, 13:21].any()  # the oven
    assert not m[13:15, 10:11].any()  # the chair
    assert not m[:, 10:12].any()
    oven = ds[1]
    assert oven["label"] == "oven" and oven["mask"][2:6, 13:21].all() and not oven["mask"][3:11, 3:7].any()
    # the stand-in image is read from val2017/ via file_name
    ref = np.asarray(image_of(397133), dtype=float)
    assert np.abs(np.asarray(row["image"], dtype=float) - ref).mean() < 4  # JPEG, quality 95
    # squashed to size × size: bilinear image, nearest mask (still boolean, same layout)
    small = C.coco_it(coco_root, size=8)[0]
    assert small["image"].size == (8, 8) and small["mask"].shape == (8, 8) and small["mask"].dtype == bool
    assert small["mask"][2, 1] and not small["mask"][1, 6]
    assert C.coco_it(coco_root, size=(12, 6))[0]["mask"].shape == (6, 12)


def test_text_options(coco_root):
    ds = C.coco_it(coco_root, size=None)
    bed = next(ds.text_row(i) for i in range(len(ds)) if ds.text_row(i)["label"] == "bed")
    assert bed["context"] == "A room with a large sitting next to a black dresser."
    whole = C.coco_it(coco_root, context="whole-word")
    bed2 = next(whole.text_row(i) for i in range(len(ds)) if whole.text_row(i)["label"] == "bed")
    assert bed2["context"] == "A bedroom with a large sitting next to a black dresser."
    raw = C.coco_it(coco_root, raw_text=True)
    tl = next(raw.text_row(i) for i in range(len(raw)) if raw.text_row(i)["label"] == "traffic light")
    assert tl["caption"] == "a shop a car traffic lights and buildings\n" and tl["context"].endswith("  and buildings\n")
    sub = C.CocoLocalization("coco-it", coco_root, indices=[5, 2])
    assert len(sub) == 2 and sub.text_row(0)["id"] == ds.text_row(5)["id"] and sub.text_row(-1) == ds.text_row(2)


WL_CSV = ("Image ID,Label,correct_obj+context,context,correct_obj,context_,\r\n"
          "311303, in front of,A cup with soda in front of a panini.,A cup with soda  a panini.,"
          " in front of,A cup with soda _ a panini.,perp\r\n"
          "70254,travel,A green train travels past a platform. ,A green train  past a platform. ,travels,"
          "A green train _ past a platform. ,verb\r\n"
          "70254,train,A green train travels past a platform. ,A green  travels past a platform. ,train,"
          "A green _ travels past a platform. ,noun\r\n")


def test_wl_labels_that_are_not_categories(coco_root):
    path = coco_root / "coco" / "COCO-WL.csv"
    path.write_bytes(WL_CSV.encode())
    ds = C.coco_wl(coco_root, size=None)
    a, b, c = ds[0], ds[1], ds[2]
    assert a["word_type"] == "prep" and a["label"] == "in front of" and a["word"] == "in front of"
    assert a["context_"] == "A cup with soda _ a panini." and a["id"] == "coco-wl-00000-311303"
    # "in front of" is not a COCO category: all-False mask, flagged (the reference unions all objects,
    # docs/protocol.md#b24)
    assert not a["mask"].any() and a["mask"].shape == (H, W) and a["mask_valid"] is False
    assert not b["mask"].any() and b["mask_valid"] is False
    assert c["mask_valid"] and c["mask"][4:12, 1:23].all()  # "train" is a category
    with pytest.raises(ValueError, match="not a COCO category"):
        C.coco_wl(coco_root, unknown_label="raise")[0]
    ref = C.coco_wl(coco_root, unknown_label="all_objects", size=None)[0]
    assert ref["mask_valid"] is False and ref["mask"][6:11, 6:9].all() and ref["mask"].sum() < H * W


def test_bad_inputs_get_clear_errors(coco_root, tmp_path):
    with pytest.raises(ValueError, match="size"):
        C.coco_it(coco_root, size=0)
    with pytest.raises(ValueError, match="context"):
        C.coco_it(coco_root, context="deleted")
    with pytest.raises(ValueError, match="root"):
        C.read_table("coco-it")
    with pytest.raises(FileNotFoundError, match="infodecomp.data.download coco-tables"):
        C.read_table("coco-wl", tmp_path / "nothing")
    with pytest.raises(IndexError):
        C.CocoLocalization("coco-it", coco_root, indices=[99])
    bad = tmp_path / "bad.csv"
    bad.write_text("a,b\n1,2\n")
    with pytest.raises(ValueError, match="expected the columns"):
        C.read_table(bad)
    (coco_root / "coco" / "val2017" / "000000397133.jpg").unlink()
    with pytest.raises(FileNotFoundError, match="coco-val2017"):
        C.coco_it(coco_root)[0]


# ------------------------------------------------------------------------------------------------ interventions


def test_swap_tables():
    f = C.faithful_swap_table()
    assert f["dog"] == "cat" and f["cats"] == "dogs" and f["teddy bears"] == "robots"
    assert f["persons"] == "monkeys" and f["monkeys"] == "people"  # the collision: not an involution
    assert C.swap_faithful("Two persons and three monkeys", f) == "Two monkeys and three people"
    assert C.swap_faithful("A Dog near a teddy bear and a bear.") == "A cat near a robot and a elephant."
    c = C.corrected_swap_table()
    assert all(c[c[k]] == k for k in c)  # an involution
    assert c["person"] == "monkey" and c["people"] == "monkeys" and "persons" not in c
    assert C.swap_prompt("A Dog chases a cat.", "Dog", "corrected") == ("A Cat chases a cat.", "cat")
    assert C.swap_prompt("Two dogs and a dog.", "dog", "corrected") == ("Two cats and a cat.", "cat")
    assert C.swap_prompt("A Dog chases a cat.", "dog", "faithful") == ("A cat chases a dog.", "cat")
    assert C.omit_prompt("Two dogs and a Dog.", "dog") == "Two _ and a _."
    with pytest.raises(ValueError, match="swap"):
        C.swap_prompt("a dog", "dog", "random")
    with pytest.raises(ValueError, match="no swap partner"):
        C.swap_prompt("a giraffe", "giraffe", "corrected")


def test_intervention_view_on_the_reference_table(shared_root):
    fa = C.coco100_it_intervention(shared_root)
    co = C.coco100_it_intervention(shared_root, swap="corrected")
    table = C.faithful_swap_table()
    n_diff = 0
    for i in range(len(fa)):
        r, s = fa.text_row(i), co.text_row(i)
        assert {"omit_prompt", "swap_prompt", "swap_word"} <= set(r)
        assert "_" in r["omit_prompt"] and not re.search(rf"\b{re.escape(r['word'])}s?\b", r["omit_prompt"], re.I)
        assert r["swap_word"] == table[r["word"]] and s["swap_word"] == r["swap_word"]
        assert r["swap_prompt"] != r["caption"] and s["swap_prompt"] != r["caption"]
        assert C.contains_word(s["swap_prompt"], s["swap_word"], plural=False)
        n_diff += r["swap_prompt"] != s["swap_prompt"]
    # captions naming two listed words ("a dog on a bed") are swapped twice by the faithful table
    assert n_diff == 10
    bed_dog = next(fa.text_row(i) for i in range(len(fa)) if fa.text_row(i)["caption"].startswith("a dog laying on a bed"))
    assert bed_dog["swap_prompt"] == "a cat laying on a table with a tv in the background"


def test_intervention_rows_with_images(coco_root):
    df = C.read_table("coco-it", coco_root)
    keep = df[df["label"].isin(["person", "bed", "dog"])]
    out = keep[[c for c in df.columns if c.startswith("raw:")]].rename(columns=lambda c: c[4:])
    out["context_"] = keep["context_"]
    C.write_table(out, coco_root / "coco" / "COCO100-IT.csv")
    ds = C.coco100_it_intervention(coco_root)
    row = ds[0]
    assert {"id", "image", "caption", "word", "omit_prompt", "swap_prompt", "swap_word", "mask"} <= set(row)
    assert row["image"].size == (W, H) and row["mask"].shape == (H, W)  # original size by default
    assert row["omit_prompt"] == "A _ standing by a stove in a kitchen."
    assert row["swap_prompt"] == "A monkey standing by a stove in a kitchen." and row["swap_word"] == "monkey"
    assert ds[0]["caption"] == ds[0]["caption"]  # repeatable
    assert C.dataset("coco100-it-intervention", coco_root, size=8)[1]["image"].size == (8, 8)


# ------------------------------------------------------------------------------------------------ issue 14


def _table_with(coco_root, k: int, **cells) -> Path:
    """The fixture's COCO-IT.csv with row ``k``'s raw cells replaced."""
    path = coco_root / "coco" / "COCO-IT.csv"
    df = pd.read_csv(path, dtype=str, keep_default_na=False)
    for col, v in cells.items():
        df.loc[k, col] = v
    C.write_table(df, path)
    return path


def test_a_word_absent_from_its_caption_is_refused_by_the_loader(coco_root):
    """Item 5: the loader built a row whose context equals its caption (word absent): CMI exactly 0."""
    path = _table_with(coco_root, 1, correct_obj="giraffe")
    with pytest.raises(ValueError, match=rf"(?s){path}: 1 bad cell.*row 1 \(data row 2.*the word 'giraffe' does not "
                                         r"occur in the caption.*CMI exactly 0"):
        C.coco_it(coco_root)


def test_bad_cells_of_a_table_name_the_file_and_the_row(coco_root):
    """Item 7: bad values in annotation files must name the file and the row."""
    path = _table_with(coco_root, 2, **{"Image ID": "39713x", "Label": " "})
    with pytest.raises(ValueError, match=rf"(?s){path}: 2 bad cell.*row 2 \(data row 3 after the header, Image ID "
                                         r"'39713x'\): 'Image ID' is '39713x'.*row 2 .*'Label' is empty"):
        C.read_table(path)


def test_bad_instances_files_name_the_file_and_the_entry(coco_root):
    inst = coco_root / "coco" / "annotations" / "instances_val2017.json"
    data = json.loads(inst.read_text())
    del data["images"][1]["file_name"]
    inst.write_text(json.dumps(data))
    with pytest.raises(ValueError, match=rf"{inst}: images\[1\] \(id \d+\) has file_name = None; expected str"):
        C.coco_it(coco_root)[0]
    inst.write_text("{not json")
    with pytest.raises(ValueError, match=rf"{inst} is not valid JSON"):
        C.instances_index(inst)


# ------------------------------------------------------------------------------------------------ issue 29 B


def test_file_names_outside_the_image_folder_are_refused(coco_root, tmp_path):
    inst = coco_root / "coco" / "annotations" / "instances_val2017.json"
    data = json.loads(inst.read_text())
    for bad in ("../../../outside.jpg", "/etc/hostname"):
        for im in data["images"]:
            im["file_name"] = bad
        inst.write_text(json.dumps(data))
        with pytest.raises(ValueError, match=r"file_name of image \d+ in .*instances_val2017.json"):
            C.coco_it(coco_root)[0]


def test_coco_images_are_read_through_the_one_image_reader(coco_root):
    """The size limit of infodecomp.checks.load_image applies to COCO images too."""
    data = json.loads((coco_root / "coco/annotations/instances_val2017.json").read_text())
    name = next(im["file_name"] for im in data["images"] if im["id"] == 397133)
    Image.new("L", (10000, 10000)).save(coco_root / "coco/val2017" / name, format="PNG")
    with pytest.raises(ValueError, match=r"over the limit of .* pixels"):
        C.coco_it(coco_root)[0]
