"""Tests of ShapesWorld (infodecomp.data.shapes): the world, its annotations, the parser and the twins."""

from collections import Counter

import numpy as np
import pytest
import torch
from PIL import Image
from scipy import ndimage

from infodecomp.data import shapes as S
from infodecomp.data.shapes.parsing import is_true_of



def samples(n=300, seed=0):
    rng = np.random.default_rng(seed)
    return [S.random_sample(rng) for _ in range(n)]


# ----------------------------------------------------------------------------------------------- world


def test_random_sample_api_and_determinism():
    a = [S.random_sample(np.random.default_rng(7)) for _ in range(2)]
    assert a[0].image.dtype == np.uint8 and a[0].image.shape == (32, 32, 3)
    assert isinstance(a[0].caption, str) and a[0].caption == a[1].caption
    assert np.array_equal(a[0].image, a[1].image) and a[0].scene == a[1].scene
    assert len({S.random_sample(np.random.default_rng(seed)).caption for seed in range(20)}) > 5
    with pytest.raises(TypeError, match="numpy.random.Generator"):
        S.random_sample(7)


def test_training_batch_format():
    x, c = S.training_batch(16, np.random.default_rng(0))
    assert x.dtype == torch.float32 and x.shape == (16, 3, 32, 32)
    assert float(x.min()) >= 0.0 and float(x.max()) <= 1.0 and float(x.max()) > 0.5
    assert len(c) == 16 and all(isinstance(t, str) and t == t.lower() for t in c)
    y, d = S.training_batch(16, np.random.default_rng(0))
    assert torch.equal(x, y) and c == d
    for bad in (0, -3, 2.5, True):
        with pytest.raises(ValueError, match="n must be an integer >= 1"):
            S.training_batch(bad, np.random.default_rng(0))


def test_caption_distribution_covers_every_template():
    caps = [s.caption for s in samples(600)]
    kinds = Counter()
    for c in caps:
        w = c.split()
        kinds["count"] += w[0] in S.NUMBERS.values()
        kinds["relation"] += any(r in c for r in ("left of", "right of", " above ", " below "))
        kinds["and"] += " and " in c
        kinds["size"] += any(z in w for z in S.SIZES)
        kinds["no size"] += not any(z in w for z in S.SIZES)
        kinds["single"] += len(w) <= 4 and w[0] == "a"
    assert all(kinds[k] > 30 for k in ("count", "relation", "and", "size", "no size", "single")), kinds
    for phrase in ("left of", "right of", "above", "below", "one ", "two ", "three "):
        assert any(phrase in c for c in caps), phrase
    assert all(c == c.lower() and c.replace(" ", "").isalpha() for c in caps)


def test_masks_match_rendered_pixels_exactly():
    for s in samples(300):
        m = s.object_masks()
        assert m.shape == (len(s.scene.objects), 32, 32) and m.dtype == bool
        assert (m.sum(0) <= 1).all(), "objects overlap"
        assert np.array_equal(m.any(0), s.image.any(-1)), "mask union != non-black pixels"
        for o, mk in zip(s.scene.objects, m):
            assert (s.image[mk] == S.COLOURS[o.colour]).all()
            ys, xs = np.nonzero(mk)
            assert (xs.min(), ys.min(), xs.max() + 1, ys.max() + 1) == o.bbox, "bbox not tight"
            assert mk.sum() == S.shape_template(o.shape, o.d).sum()


def test_layout_rules_gap_and_border():
    for s in samples(300):
        objs = s.scene.objects
        assert 1 <= len(objs) <= 3
        for o in objs:
            x0, y0, x1, y1 = o.bbox
            assert x0 >= S.BORDER and y0 >= S.BORDER and x1 <= 32 - S.BORDER and y1 <= 32 - S.BORDER
        for i, a in enumerate(objs):
            for b in objs[i + 1:]:
                gx = max(b.bbox[0] - a.bbox[2], a.bbox[0] - b.bbox[2])
                gy = max(b.bbox[1] - a.bbox[3], a.bbox[1] - b.bbox[3])
                assert max(gx, gy) >= S.GAP


def test_relation_rule():
    a = S.Object("red", "circle", "small", 2, 10)
    b = S.Object("blue", "square", "small", 20, 11)
    assert S.relation(a, b) == "left of" and S.relation(b, a) == "right of"
    c = S.Object("blue", "square", "small", 12, 22)  # diagonal-ish: dx 10, dy 12 → no strict relation
    assert S.relation(a, c) is None and S.relation(a, c, strict=False) == "above"
    d = S.Object("green", "circle", "big", 3, 20)
    assert S.relation(a, d) == "above" and S.relation(d, a) == "below"


def test_captions_words_and_word_mask_rules():
    for s in samples(300):
        words, objs = s.words, s.scene.objects
        assert S.caption_text(words) == s.caption
        assert all(w.pos in S.POS_TAGS for w in words)
        om, wm = s.object_masks(), s.word_masks()
        assert wm.shape == (len(words), 32, 32)
        mentioned = set()
        for w, m in zip(words, wm):
            expected = om[list(w.objects)].any(0) if w.objects else np.zeros((32, 32), bool)
            assert np.array_equal(m, expected)
            if w.pos == "conj":
                assert w.text == "and" and not m.any()
            elif w.pos == "prep":
                i, j = w.objects
                phrase = " ".join(v.text for v in words if v.phrase == w.phrase)
                assert S.relation(objs[i], objs[j]) == phrase  # strict rule holds
                assert S.relation(objs[i], objs[j], strict=False) == phrase
                assert np.array_equal(m, om[i] | om[j])
            else:
                assert w.objects and m.any()
                for k in w.objects:
                    o = objs[k]
                    if w.pos == "noun":
                        assert S.SINGULARS.get(w.text, w.text) == o.shape
                        mentioned.add(k)
                    elif w.text in S.COLOURS:
                        assert o.colour == w.text
                    elif w.text in S.SIZES:
                        assert o.size == w.text
                if w.pos == "num":
                    assert S.NUMBERS[len(w.objects)] == w.text
        assert mentioned == set(range(len(objs))), "every object is described"
        left = [w for w in words if w.text in ("left", "right")]
        assert all(words[words.index(w) + 1].text == "of" and words[words.index(w) + 1].phrase == w.phrase
                   for w in left)


def test_caption_words_errors():
    sc = S.Scene((S.Object("red", "circle", "small", 2, 2), S.Object("blue", "square", "small", 12, 20)))
    with pytest.raises(ValueError, match="unknown caption kind"):
        S.caption_words(sc, "poem")
    with pytest.raises(ValueError, match="no clear relation"):
        S.caption_words(sc, "relation")
    with pytest.raises(ValueError, match="one colour and shape"):
        S.caption_words(sc, "count")
    with pytest.raises(ValueError, match="unknown object"):
        S.Object("purple", "circle", "small", 0, 0)


# ----------------------------------------------------------------------------------------------- parsing


def _key(objs):
    return sorted((o.colour, o.shape, o.size, tuple(o.bbox)) for o in objs)


def _corrupt(image, rng, sigma=0.7, noise=8.0, shift=20.0):
    x = np.stack([ndimage.gaussian_filter(image[..., c].astype(np.float64), sigma) for c in range(3)], -1)
    x = x + rng.normal(0, noise, x.shape) + rng.uniform(-shift, shift, 3)
    return np.clip(x, 0, 255).astype(np.uint8)


def test_parse_scene_recovers_every_rendered_scene_exactly():
    for s in samples(300, seed=1):
        parsed = S.parse_scene(s.image)
        assert _key(parsed) == _key(s.scene.objects), s.caption
        assert S.caption_matches(s.caption, parsed, strict_relation=True)


def test_parse_scene_input_types_agree():
    s = S.random_sample(np.random.default_rng(3))
    ref = _key(S.parse_scene(s.image))
    assert _key(S.parse_scene(Image.fromarray(s.image))) == ref
    assert _key(S.parse_scene(s.image / 255.0)) == ref
    assert _key(S.parse_scene(torch.from_numpy(s.image).permute(2, 0, 1) / 255.0)) == ref
    with pytest.raises(ValueError, match=r"\[H, W, 3\]"):
        S.parse_scene(np.zeros((32, 32), np.uint8))
    with pytest.raises(ValueError, match="NaN"):
        S.parse_scene(np.full((32, 32, 3), np.nan))
    assert S.parse_scene(np.zeros((32, 32, 3), np.uint8)) == []


def test_parse_scene_is_robust_to_blur_noise_and_colour_cast():
    rng = np.random.default_rng(0)
    for s in samples(150, seed=2):
        parsed = S.parse_scene(_corrupt(s.image, rng))
        assert sorted((o.colour, o.shape, o.size) for o in parsed) == \
            sorted((o.colour, o.shape, o.size) for o in s.scene.objects), s.caption
        assert S.caption_matches(s.caption, parsed)
    # specks are dropped
    img = np.zeros((32, 32, 3), np.uint8)
    img[5:7, 5:7] = S.COLOURS["red"]
    assert S.parse_scene(img) == []


# ----------------------------------------------------------------------------------------------- captions


def test_parse_caption_and_matching():
    for s in samples(200, seed=3):
        claim = S.parse_caption(s.caption)
        assert sum(p.count for p in claim.phrases) == len(s.scene.objects)
        assert S.caption_matches(s.caption, s.scene, strict_relation=True)
    sc = S.Scene((S.Object("red", "circle", "small", 2, 10), S.Object("blue", "square", "big", 18, 9)))
    assert S.caption_matches("a red circle left of a big blue square", sc)
    assert not S.caption_matches("a big blue square left of a red circle", sc)
    assert not S.caption_matches("a red circle right of a blue square", sc)
    assert not S.caption_matches("a blue circle and a red square", sc)
    assert not S.caption_matches("a small blue square and a red circle", sc)
    assert S.caption_matches("a small blue square and a red circle", sc, check_size=False)
    assert not S.caption_matches("a red circle", sc)  # an object left undescribed
    r = S.match_report("a red circle", sc)
    assert r == {"objects": True, "count": False, "relation": True, "match": False}
    assert not S.caption_matches("two red circles", sc)
    two = S.Scene((S.Object("red", "circle", "small", 2, 10), S.Object("red", "circle", "big", 18, 9)))
    assert S.caption_matches("two red circles", two) and not S.caption_matches("three red circles", two)
    for bad in ("a red", "red circle", "two red circle", "a red circles", "a red circle or a blue square",
                "a red circle left of", "a red circle above a blue square and a green square"):
        with pytest.raises(ValueError, match="grammar"):
            S.parse_caption(bad)


# ----------------------------------------------------------------------------------------------- order


def test_perturb_order_kinds():
    rng = np.random.default_rng(0)
    toks = "a big red circle left of a small blue square".split()
    pos = ["det", "adj", "adj", "noun", "prep", "prep", "det", "adj", "adj", "noun"]
    for _ in range(20):
        p1 = S.perturb_order(toks, pos, "nouns_adjectives", rng)
        assert all(a == b for a, b, t in zip(p1, toks, pos) if t not in ("noun", "adj"))
        assert sorted(w for w, t in zip(p1, pos) if t == "noun") == ["circle", "square"]
        p2 = S.perturb_order(toks, pos, "all_but_nouns_adjectives", rng)
        assert all(a == b for a, b, t in zip(p2, toks, pos) if t in ("noun", "adj"))
        p3 = S.perturb_order(toks, pos, "within_trigrams", rng)
        assert all(sorted(p3[k:k + 3]) == sorted(toks[k:k + 3]) for k in range(0, len(toks), 3))
        p4 = S.perturb_order(toks, pos, "trigrams", rng)
        assert len(_trigram_starts(p4, toks)) == 4  # p4 is a concatenation of the 4 trigrams, reordered
    with pytest.raises(ValueError, match="unknown order perturbation"):
        S.perturb_order(toks, pos, "reverse", rng)
    with pytest.raises(ValueError, match="one tag per token"):
        S.perturb_order(toks, pos[:-1], "trigrams", rng)


def _trigram_starts(perm, toks):
    """Segment ``perm`` into the trigrams of ``toks`` (each used once); raises StopIteration if impossible.
    Greedy matching suffices here: the test caption's trigrams share no prefix."""
    left, out, k = [toks[i:i + 3] for i in range(0, len(toks), 3)], [], 0
    while k < len(perm):
        t = next(c for c in left if perm[k:k + len(c)] == c)
        left.remove(t)
        out.append((k, t))
        k += len(t)
    return out


def test_order_negatives_reject_identical_and_true_perturbations():
    sc = S.Scene((S.Object("red", "circle", "small", 2, 10), S.Object("blue", "square", "small", 18, 9)))
    words = S.caption_words(sc, "and")
    assert S.caption_text(words) == "a red circle and a blue square"
    rng = np.random.default_rng(0)
    for _ in range(30):
        negs = S.order_negatives(words, sc, rng)
        assert len(negs) == 4 and all(n != "a red circle and a blue square" for n in negs)
        assert "a blue square and a red circle" not in negs  # true of the scene: must be rejected
        assert all(not is_true_of(n, sc) for n in negs)
    single = S.Scene((S.Object("red", "circle", "small", 2, 10),))
    assert S.order_negatives(S.caption_words(single, "single"), single, rng) is None  # lone "a"


# ----------------------------------------------------------------------------------------------- twins

RELATION_KEYS = {"id", "image", "captions", "true_index", "group"}
LOCALIZATION_KEYS = {"id", "image", "mask", "caption", "word", "label", "context", "context_", "word_type"}
INTERVENTION_KEYS = {"id", "image", "caption", "word", "omit_prompt", "swap_prompt", "swap_word", "mask"}


def _check_image(img):
    assert isinstance(img, Image.Image) and img.mode == "RGB" and img.size == (32, 32)


@pytest.mark.parametrize("name", sorted(S.TWINS))
def test_twins_are_deterministic_sequences(name):
    d1, d2 = S.twin(name, 21, seed=5), S.twin(name, 21, seed=5)
    assert len(d1) == 21
    r1, r2 = d1[3], d2[3]
    assert r1.keys() == r2.keys() and r1["id"] == r2["id"]
    assert np.array_equal(np.asarray(r1["image"]), np.asarray(r2["image"]))
    assert len({r["id"] for r in d1}) == 21
    assert d1[-1]["id"] == d1[20]["id"] and [r["id"] for r in d1[2:4]] == [d1[2]["id"], d1[3]["id"]]
    assert S.twin(name, 21, seed=6)[3]["id"] != r1["id"]
    with pytest.raises(IndexError):
        d1[21]


def _check_relation_rows(rows, n_captions, true_index):
    for r in rows:
        assert set(r) == RELATION_KEYS
        _check_image(r["image"])
        caps = r["captions"]
        assert len(caps) == n_captions and r["true_index"] == true_index
        true = caps[true_index]
        parsed = S.parse_scene(r["image"])
        assert S.caption_matches(true, parsed, strict_relation=True)
        for k, c in enumerate(caps):
            if k != true_index:
                assert c != true and sorted(c.split()) == sorted(true.split())
                try:
                    assert not S.caption_matches(c, parsed)
                except ValueError:  # ungrammatical shuffles cannot be true
                    pass


def test_vg_twins_format_order_and_truth():
    rel = S.twin("vg-relation", 40, seed=0)
    _check_relation_rows(rel, 2, 1)
    assert {r["group"] for r in rel} == set(S.RELATIONS)
    for r in rel:
        assert r["group"] in r["captions"][1]
    att = S.twin("vg-attribution", 40, seed=0)
    _check_relation_rows(att, 2, 1)
    for r in att:
        a1, a2 = r["group"].split("_")
        assert a1 in S.COLOURS and a2 in S.COLOURS and a1 != a2
        true_cols = [w for w in r["captions"][1].split() if w in S.COLOURS]
        assert true_cols == [a1, a2] and [w for w in r["captions"][0].split() if w in S.COLOURS] == [a2, a1]
    tf = S.twin("vg-relation", 10, seed=0, true_first=True)
    _check_relation_rows(tf, 2, 0)
    assert [r["captions"] for r in tf] == [r["captions"][::-1] for r in rel[:10]]


def test_order_twins_format_order_and_truth():
    for name in ("coco-order", "flickr-order"):
        rows = S.twin(name, 30, seed=1)
        _check_relation_rows(rows, 5, 4)
        assert {r["group"] for r in rows} == {name}
        for r in rows:
            true = r["captions"][4].split()
            p1, p2 = r["captions"][3].split(), r["captions"][2].split()  # [p4, p3, p2, p1, true]
            content = set(S.COLOURS) | set(S.SIZES) | set(S.SHAPES)
            assert all(a == b or b in content for a, b in zip(p1, true)), "p1 moves only nouns/adjectives"
            assert all(a == b or b not in content for a, b in zip(p2, true)), "p2 keeps nouns/adjectives"
    tf = S.twin("coco-order", 5, seed=1, true_first=True)
    _check_relation_rows(tf, 5, 0)
    assert [r["captions"] for r in tf] == [r["captions"][::-1] for r in S.twin("coco-order", 5, seed=1)]


def _check_localization_row(r, word_types):
    assert LOCALIZATION_KEYS <= set(r)
    _check_image(r["image"])
    m = r["mask"]
    assert isinstance(m, np.ndarray) and m.dtype == bool and m.shape == (32, 32)
    cap, word = r["caption"].split(), r["word"].split()
    k = next(i for i in range(len(cap)) if cap[i:i + len(word)] == word)
    assert sum(cap[i:i + len(word)] == word for i in range(len(cap))) == 1
    assert r["context"] == " ".join(cap[:k] + cap[k + len(word):])
    assert r["context_"] == " ".join(cap[:k] + ["_"] + cap[k + len(word):])
    assert r["word_type"] in word_types
    parsed = S.parse_scene(r["image"])
    img = np.asarray(r["image"])
    if r["word_type"] == "conj":
        assert not m.any()
    else:
        assert m.any() and img[m].any(-1).all(), "the mask covers drawn pixels only"
    if r["word_type"] == "noun":
        assert r["label"] == S.SINGULARS.get(r["word"], r["word"])
        # the mask is every object of that shape (the COCO category-union mask)
        shape_pixels = np.zeros((32, 32), bool)
        for o in parsed:
            if o.shape == r["label"]:
                x0, y0, x1, y1 = o.bbox
                shape_pixels[y0:y1, x0:x1] |= img[y0:y1, x0:x1].any(-1)
        assert np.array_equal(m, shape_pixels)
    if r["word_type"] == "prep":
        assert r["word"] in S.RELATIONS and ndimage.label(m)[1] == 2


def test_localization_twins():
    for r in S.twin("coco-it", 40, seed=0):
        assert set(r) == LOCALIZATION_KEYS
        _check_localization_row(r, {"noun"})
    wl = S.twin("coco-wl", 40, seed=0)
    for r in wl:
        assert set(r) == LOCALIZATION_KEYS
        _check_localization_row(r, set(S.WL_TYPES))
    assert [r["word_type"] for r in wl] == [t for t in S.WL_TYPES for _ in range(10)]
    assert {r["word"] for r in wl if r["word_type"] == "adj"} & set(S.SIZES)
    assert {r["word"] for r in wl if r["word_type"] == "adj"} & set(S.COLOURS)
    assert [r["word_type"] for r in S.twin("coco-wl", 4, seed=0, word_types=("prep", "conj"))] == \
        ["prep", "prep", "conj", "conj"]


def test_coco100_it_twin_interventions():
    rows = S.twin("coco100-it", 35, seed=0)
    assert [r["label"] for r in rows] == [g for g in S.IT100_GROUPS for _ in range(5)]
    for r in rows:
        assert set(r) == LOCALIZATION_KEYS | INTERVENTION_KEYS
        _check_localization_row(r, {"noun", "adj"})
        assert r["omit_prompt"] == r["context_"]
        cap, swap = r["caption"].split(), r["swap_prompt"].split()
        diff = [(a, b) for a, b in zip(cap, swap) if a != b]
        assert len(cap) == len(swap) and diff == [(r["word"], r["swap_word"])]
        kind = S.SHAPES if r["label"] in S.SHAPES else tuple(S.COLOURS)
        assert S.SINGULARS.get(r["swap_word"], r["swap_word"]) in kind
        assert (r["word"] in S.SINGULARS) == (r["swap_word"] in S.SINGULARS)  # number agreement
        claim = S.parse_caption(r["swap_prompt"])  # the edit stays in the grammar …
        if not claim.phrases[0].exact:  # … and in the training distribution: distinct mentions
            assert len({(p.colour, p.shape) for p in claim.phrases}) == len(claim.phrases)


def test_twin_errors():
    with pytest.raises(ValueError, match="unknown ShapesWorld twin"):
        S.twin("vg-relations", 3)
    for bad in (0, -1, 1.5, True):
        with pytest.raises(ValueError, match="n must be an integer >= 1"):
            S.twin("coco-it", bad)
    with pytest.raises(ValueError, match="seed"):
        S.twin("coco-it", 3, seed=-1)
    with pytest.raises(TypeError):
        S.twin("coco-it", 3, true_first=True)
    with pytest.raises(ValueError, match="word_types"):
        S.twin("coco-wl", 3, word_types=("verb",))
    with pytest.raises(ValueError, match="cannot hold"):
        S.twin("coco100-it", 3)
    with pytest.raises(TypeError, match="int or slice"):
        S.twin("coco-it", 3)["0"]


# ── the v2 training mix: more relational captions, counterfactual pairs ──

def test_relation_counterfactual_flips_the_word_and_mirrors_the_layout():
    rng = np.random.default_rng(5)
    for _ in range(40):
        s = S.sample_kind(rng, "relation", 2)
        t = S.relation_counterfactual(s)
        a, b = s.caption.split(), t.caption.split()
        rel = next(w.text for w in s.words if w.pos == "prep")
        rel = "left of" if rel == "left" else "right of" if rel == "right" else rel
        assert t.caption == s.caption.replace(rel, S.FLIPPED_RELATION[rel], 1)
        assert len(a) == len(b) and sum(x != y for x, y in zip(a, b)) == 1  # only the relation word differs
        assert [(o.colour, o.shape, o.size) for o in t.scene.objects] == [(o.colour, o.shape, o.size)
                                                                           for o in s.scene.objects]
        i, j = next(w.objects for w in t.words if w.pos == "prep")
        assert S.relation(t.scene.objects[i], t.scene.objects[j]) == S.FLIPPED_RELATION[rel]  # strictly true
        assert S.caption_matches(t.caption, S.parse_scene(t.image), strict_relation=True)
        assert not np.array_equal(s.image, t.image)


def test_relation_counterfactual_refuses_other_captions():
    s = S.sample_kind(np.random.default_rng(0), "and", 2)
    with pytest.raises(ValueError, match="two-object relational caption"):
        S.relation_counterfactual(s)


def test_training_samples_default_stream_is_the_natural_mix():
    a = [s.caption for s in S.training_samples(20, np.random.default_rng(9))]
    rng = np.random.default_rng(9)
    b = [S.random_sample(rng).caption for _ in range(20)]
    assert a == b


def _is_relational(caption):
    return any(r in caption for r in (" left of ", " right of ", " above ", " below "))


def test_relation_boost_and_counterfactual_pairs_give_the_stated_share():
    b, c, n = 0.2, 1.0, 4000
    samples = S.training_samples(n, np.random.default_rng(1), relation_boost=b, counterfactual=c)
    assert len(samples) == n
    share = np.mean([_is_relational(s.caption) for s in samples])
    r = S.NATURAL_RELATION_SHARE
    expected = (b * (1 + c) + (1 - b) * r) / (b * (1 + c) + 1 - b)  # 0.477
    assert abs(share - expected) < 4 * np.sqrt(expected * (1 - expected) / n) + 0.01, (share, expected)
    pairs = sum(S.relation_counterfactual(x).caption == y.caption for x, y in zip(samples, samples[1:])
                if _is_relational(x.caption))
    assert pairs > 0.25 * n * b  # about b·n/(1 + b·c) boosted draws, each followed by its twin
    with pytest.raises(ValueError, match="relation_boost must be a probability"):
        S.training_samples(4, np.random.default_rng(0), relation_boost=1.5)
