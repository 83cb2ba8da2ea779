"""Tests of infodecomp.data.aro on tiny fixture files in ARO's formats (images drawn by the tests)."""

import json
import shutil
import sys
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from infodecomp.data import aro as A

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "aro"
ROW_KEYS = {"id", "image", "captions", "true_index", "group"}

NOUNS = ["rider", "helmet", "road", "scooter", "man", "bike", "motor", "person", "motorcycle", "girl", "candle",
         "cake", "hat", "glasses", "camera", "country"]
ADJS = ["red", "dusty", "small", "little", "young", "orange", "knitted"]


def tagger():
    return A.lexicon_tagger(NOUNS, ADJS)


def vg_image(size=(32, 24)) -> Image.Image:
    """Left half red, right half blue, a green box at x 8..24, y 4..16 (the first VG-R case's bbox)."""
    a = np.zeros((size[1], size[0], 3), np.uint8)
    a[:, : size[0] // 2] = (220, 30, 30)
    a[:, size[0] // 2:] = (30, 30, 220)
    a[4:16, 8:24] = (30, 200, 30)
    return Image.fromarray(a, "RGB")


@pytest.fixture()
def root(tmp_path) -> Path:
    """A data root in the download layout (aro/vg, aro/coco, aro/flickr) with the fixture files and images."""
    shutil.copytree(FIXTURES, tmp_path / "aro")
    (tmp_path / "aro/vg/images").mkdir()
    vg_image().save(tmp_path / "aro/vg/images/2315375.jpg", quality=95)
    vg_image((20, 16)).save(tmp_path / "aro/vg/images/498202.jpg", quality=95)
    (tmp_path / "aro/coco/val2014").mkdir()
    for name in ("COCO_val2014_000000391895.jpg", "COCO_val2014_000000060623.jpg"):
        vg_image((40, 30)).save(tmp_path / "aro/coco/val2014" / name)
    return tmp_path


# ------------------------------------------------------------------------------------------------ text


def test_pre_caption():
    assert A.pre_caption('A man (smiling) rides a horse.  ') == "a man smiling rides a horse"
    assert A.pre_caption('One: "two"; three! #four* ~five') == "one two three four five"
    assert A.pre_caption("Tabs\tand\nnewlines, kept commas ,") == "tabs and newlines, kept commas ,"
    long = " ".join(f"w{k}" for k in range(40))
    assert A.pre_caption(long).split() == [f"w{k}" for k in range(30)]
    assert A.pre_caption(long, max_words=3) == "w0 w1 w2"
    with pytest.raises(ValueError, match="max_words"):
        A.pre_caption("a", max_words=0)


def test_tokenize():
    assert A.tokenize("A dog's toy isn't (red).") == ["A", "dog", "'s", "toy", "is", "n't", "(", "red", ")", "."]
    assert A.tokenize("a t-shirt, o'clock -- ok") == ["a", "t-shirt", ",", "o'clock", "-", "-", "ok"]
    assert A.tokenize("  ") == []


def is_concatenation(words, pieces) -> bool:
    """Whether ``words`` is the concatenation of all ``pieces`` (lists) in some order."""
    if not pieces:
        return not words
    return any(words[:len(p)] == p and is_concatenation(words[len(p):], pieces[:k] + pieces[k + 1:])
               for k, p in enumerate(pieces))


def test_order_negatives_are_aro_perturbations():
    cap = "A little girl blows out the red candle on her small cake in a dusty road"
    true = A.pre_caption(cap)
    toks = true.split()
    kinds = [A.coarse_tag(t) for t in tagger()(toks)]
    p1, p2, p3, p4 = A.order_negatives(cap, tagger(), np.random.default_rng(0))
    for p in (p1, p2, p3, p4):  # every perturbation is a permutation of the caption's words
        assert Counter(p.split()) == Counter(toks) and p != true
    w1, w2, w3, w4 = p1.split(), p2.split(), p3.split(), p4.split()
    # p1: nouns among noun positions, adjectives among adjective positions, the rest in place
    assert all(a == b for a, b, k in zip(w1, toks, kinds) if k == "other")
    assert [A.coarse_tag(t) for t in tagger()(w1)] == kinds
    # p2: nouns and adjectives in place, the rest shuffled
    assert all(a == b for a, b, k in zip(w2, toks, kinds) if k != "other")
    # p3: shuffled within each trigram; p4: the trigrams shuffled as blocks
    tri = [toks[k:k + 3] for k in range(0, len(toks), 3)]
    assert [Counter(w3[k:k + 3]) for k in range(0, len(w3), 3)] == [Counter(t) for t in tri]
    assert is_concatenation(w4, tri)
    # punctuation is tokenised and then dropped by pre_caption; the same seed gives the same negatives
    assert A.order_negatives(cap + ".", tagger(), np.random.default_rng(0))[1].count(".") == 0
    assert A.order_negatives(cap, tagger(), np.random.default_rng(0)) == [p1, p2, p3, p4]
    assert A.coarse_tag("NNS") == "noun" and A.coarse_tag("JJR") == "adj" and A.coarse_tag("VBZ") == "other"
    assert A.coarse_tag("NOUN") == "noun" and A.coarse_tag("PROPN") == "noun" and A.coarse_tag("ADJ") == "adj"
    with pytest.raises(ValueError, match="tags"):
        A.order_negatives(cap, lambda w: ["x"], np.random.default_rng(0))


# ------------------------------------------------------------------------------------------------ VG


def test_vg_relation_rows(root):
    ds = A.VGRelation(root)
    assert len(ds) == 3
    row = ds[0]
    assert ROW_KEYS <= set(row) and row["id"] == "vg-relation-000000"
    assert row["captions"] == ["the table is on the cup", "the cup is on the table"] and row["true_index"] == 1
    assert row["group"] == "on" and ds[1]["group"] == "to the left of"
    assert row["image"].mode == "RGB" and row["image"].size == (512, 512)
    # cropped to the box: the crop of case 0 is the green rectangle only
    crop = np.asarray(A.VGRelation(root, size=None)[0]["image"], dtype=float)
    assert crop.shape == (12, 16, 3)
    assert np.abs(crop[2:-2, 2:-2] - [30, 200, 30]).max() < 40
    full = np.asarray(A.VGRelation(root, size=None)[1]["image"])
    assert full.shape == (24, 32, 3)  # box = whole image
    assert A.VGRelation(root, size=(10, 6))[2]["image"].size == (10, 6)  # float boxes work too
    # ARO's native order
    t = A.VGRelation(root, true_first=True)
    assert t.text_row(0)["captions"] == ["the cup is on the table", "the table is on the cup"]
    assert t.text_row(0)["true_index"] == 0


def test_rows_are_not_mutated_by_access(root):
    ds = A.VGRelation(root, size=None)
    first = ds.text_row(0)
    first["captions"].append("junk")
    assert ds.text_row(0)["captions"] == ds[0]["captions"] == ["the table is on the cup", "the cup is on the table"]
    # no flip on each access (docs/protocol.md#b14)
    assert [ds[0]["captions"] for _ in range(3)] == [ds[0]["captions"]] * 3


def test_vg_attribution_rows(root):
    ds = A.VGAttribution(root, size=16)
    assert len(ds) == 2 and ds[0]["group"] == "white_wooden" and ds[1]["group"] == "brown_young"
    assert ds[1]["captions"][ds[1]["true_index"]] == "the brown horse and the young man"
    assert ds[0]["image"].size == (16, 16) and ds[-1]["id"] == "vg-attribution-000001"
    assert isinstance(A.relation_dataset("vg-attribution", root / "aro" / "vg"), A.VGAttribution)  # the vg folder


# ------------------------------------------------------------------------------------------------ order sets


def test_coco_order_rows_and_cache(root, monkeypatch):
    tg = tagger()
    ds = A.COCOOrder(root, tagger=tg, seed=3, progress=False)
    assert len(ds) == 5  # one case per caption
    cache = root / "aro/coco" / f"coco_karpathy_test.order-negatives.seed3.{tg.name.replace(':', '-')}.json"
    assert ds.cache_path == cache and cache.is_file()
    raw = json.loads((root / "aro/coco/coco_karpathy_test.json").read_text())
    row = ds[2]
    assert ROW_KEYS <= set(row) and row["id"] == "coco-order-000002" and row["group"] == "coco-order"
    assert row["true_index"] == 4 and len(row["captions"]) == 5
    assert row["captions"][4] == A.pre_caption(raw[0]["caption"][2]) == "a person riding a motorcycle slowly"
    assert row["image"].size == (512, 512) and row["image_path"] == raw[0]["image"]
    negs = json.loads(cache.read_text())["cases"][2]["negatives"]
    assert row["captions"][:4] == negs[::-1]  # [p4, p3, p2, p1, true]
    native = A.COCOOrder(root, tagger=tg, seed=3, true_first=True, size=None)
    assert native.text_row(2)["captions"] == [row["captions"][4], *negs] and native.text_row(2)["true_index"] == 0

    # a second construction (another run, another shard) reads the cache and never calls the tagger
    def boom(words):
        raise AssertionError("the tagger must not run when the cache exists")

    boom.name = tg.name
    again = A.COCOOrder(root, tagger=boom, seed=3)
    assert [again.text_row(i) for i in range(5)] == [ds.text_row(i) for i in range(5)]
    # another seed gets its own cache and other negatives; the same seed is deterministic from scratch
    other = A.COCOOrder(root, tagger=tg, seed=4, progress=False)
    assert other.cache_path != cache
    assert [other.text_row(i)["captions"] for i in range(5)] != [ds.text_row(i)["captions"] for i in range(5)]
    fresh = A.COCOOrder(root, tagger=tg, seed=3, regenerate=True, progress=False)
    assert [fresh.text_row(i) for i in range(5)] == [ds.text_row(i) for i in range(5)]
    # a changed annotation file does not silently reuse stale negatives
    raw[0]["caption"][0] = "A different caption."
    (root / "aro/coco/coco_karpathy_test.json").write_text(json.dumps(raw))
    with pytest.raises(ValueError, match="does not match"):
        A.COCOOrder(root, tagger=tg, seed=3)


def test_flickr_order_and_missing_images(root):
    ds = A.FlickrOrder(root, tagger=tagger(), progress=False)
    assert len(ds) == 2 and ds.text_row(1)["group"] == "flickr-order"
    with pytest.raises(FileNotFoundError, match="flickr-order"):
        ds[0]
    (root / "aro/flickr/flickr30k-images").mkdir()
    vg_image().save(root / "aro/flickr/flickr30k-images/1007129816.jpg")
    assert ds[0]["image"].size == (512, 512)


def test_default_tagger_without_spacy(root, monkeypatch):
    monkeypatch.setitem(sys.modules, "spacy", None)  # as if spaCy were not installed
    with pytest.raises(ImportError, match="pip install spacy"):
        A.spacy_tagger()
    with pytest.raises(ImportError, match="en_core_web_sm"):
        A.COCOOrder(root)  # no cache yet: the default tagger is needed
    # a cache made under the default tagger's name is used without spaCy
    stand_in = A.lexicon_tagger(NOUNS, ADJS)
    stand_in.name = A.DEFAULT_TAGGER
    A.COCOOrder(root, tagger=stand_in, progress=False)
    assert len(A.COCOOrder(root)) == 5


def test_bad_inputs(root, tmp_path):
    with pytest.raises(FileNotFoundError, match="infodecomp.data.download vg-relation"):
        A.VGRelation(tmp_path / "nothing")
    with pytest.raises(ValueError, match="size"):
        A.VGRelation(root, size=-1)
    with pytest.raises(ValueError, match="unknown ARO dataset"):
        A.relation_dataset("aro-x", root)
    with pytest.raises(ValueError, match="name"):
        A.COCOOrder(root, tagger=lambda w: ["x"] * len(w))
    with pytest.raises(IndexError):
        A.VGRelation(root)[3]
    bad = root / "aro/vg/visual_genome_relation.json"
    bad.write_text(json.dumps([{"image_path": "x.jpg", "true_caption": "a", "false_caption": "b"}]))
    with pytest.raises(ValueError, match="lacks"):
        A.VGRelation(root)


@pytest.mark.skipif(not A.spacy_available(), reason="spaCy and en_core_web_sm not installed")
def test_spacy_tagger_tags_nouns_and_adjectives():
    tags = A.spacy_tagger()(["a", "red", "car", "drives", "fast"])
    assert [A.coarse_tag(t) for t in tags][1:3] == ["adj", "noun"]


def test_bad_values_in_annotation_files_name_the_file_and_the_entry(root):
    """Issue 14, item 7: bad values in annotation files must name the file and the row."""
    vgr = root / "aro/vg/visual_genome_relation.json"
    cases = json.loads(vgr.read_text())
    vgr.write_text(json.dumps([cases[0], {**cases[1], "bbox_w": "12"}]))
    with pytest.raises(ValueError, match=rf"{vgr}: entry 1: bbox_w is '12', expected a finite number"):
        A.VGRelation(root)
    vgr.write_text(json.dumps([cases[0], {**cases[1], "true_caption": None}]))
    with pytest.raises(ValueError, match=rf"{vgr}: entry 1: true_caption is None"):
        A.VGRelation(root)
    vgr.write_text(json.dumps([{**cases[0], "bbox_w": 0}]))
    with pytest.raises(ValueError, match=rf"{vgr}: entry 0 \(vg-relation\) has an empty box"):
        A.VGRelation(root)[0]
    vga = root / "aro/vg/visual_genome_attribution.json"
    vga.write_text(json.dumps([{**json.loads(vga.read_text())[0], "attributes": ["red"]}]))
    with pytest.raises(ValueError, match=rf"{vga}: entry 0: attributes is \['red'\], expected two"):
        A.VGAttribution(root)
    vgr.write_text("[{")
    with pytest.raises(ValueError, match=rf"{vgr} is not valid JSON"):
        A.VGRelation(root)
    kt = root / "aro/coco/coco_karpathy_test.json"
    entries = json.loads(kt.read_text())
    kt.write_text(json.dumps([entries[0], {**entries[1], "caption": ["a man", 7]}]))
    with pytest.raises(ValueError, match=rf"{kt}: entry 1 \(image .*\): caption is \['a man', 7\]"):
        A.COCOOrder(root, tagger=tagger(), progress=False, regenerate=True)
    (root / "aro/vg/images/2315375.jpg").write_bytes(b"\xff\xd8 truncated")
    vgr.write_text(json.dumps(cases))
    with pytest.raises(ValueError, match=r"image .*2315375.jpg cannot be read"):
        A.VGRelation(root)[0]


# ------------------------------------------------------------------------------------------------ issue 29 B


def test_image_paths_outside_the_data_root_are_refused(root, tmp_path):
    """A VG-Relation entry with image_path "../../../../outside.png" was read from outside the data root."""
    outside = tmp_path / "outside.png"
    vg_image().save(outside)
    vgr = root / "aro/vg/visual_genome_relation.json"
    cases = json.loads(vgr.read_text())
    for bad in ("../../../../outside.png", "../../../outside.png", str(outside), "images/../../../x.jpg"):
        vgr.write_text(json.dumps([cases[0], {**cases[1], "image_path": bad}]))
        with pytest.raises(ValueError, match=r"entry 1: image_path"):
            A.VGRelation(root)
    # a dataset made from in-memory cases is checked where the image is opened, too
    vgr.write_text(json.dumps(cases))
    ds = A.VGRelation(root)
    ds._cases[0] = {**ds._cases[0], "image_path": "../../../outside.png"}
    with pytest.raises(ValueError, match="leads outside"):
        ds[0]
    kt = root / "aro/coco/coco_karpathy_test.json"
    entries = json.loads(kt.read_text())
    kt.write_text(json.dumps([entries[0], {**entries[1], "image": "/etc/hostname"}]))
    with pytest.raises(ValueError, match=r"entry 1: image is the absolute path '/etc/hostname'"):
        A.COCOOrder(root, tagger=tagger(), progress=False, regenerate=True)


def test_images_are_read_upright_and_within_the_size_limit(root):
    """A JPEG with EXIF orientation 6 was scored sideways; a 10000×10000 PNG was decoded (+488 MB)."""
    vgr = root / "aro/vg/visual_genome_relation.json"
    case = json.loads(vgr.read_text())[0]
    upright = vg_image()  # 32×24: red left half, blue right half
    stored = upright.transpose(Image.Transpose.ROTATE_90)  # what a phone stores, with orientation 6
    exif = Image.Exif()
    exif[0x0112] = 6
    stored.save(root / "aro/vg/images/2315375.jpg", quality=95, exif=exif.tobytes())
    vgr.write_text(json.dumps([{**case, "bbox_x": 0, "bbox_y": 0, "bbox_w": 32, "bbox_h": 24}]))
    image = np.asarray(A.VGRelation(root, size=None)[0]["image"], dtype=float)
    assert image.shape == (24, 32, 3)
    assert image[12, 2, 0] > 150 > image[12, 2, 2] and image[12, 29, 2] > 150 > image[12, 29, 0]  # red | blue
    Image.new("L", (10000, 10000)).save(root / "aro/vg/images/2315375.jpg", format="PNG")
    with pytest.raises(ValueError, match=r"10000×10000 = 100,000,000 pixels, over the limit"):
        A.VGRelation(root)[0]
