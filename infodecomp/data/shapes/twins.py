"""ARO's order perturbations, and the ShapesWorld twins of the paper's datasets (ARO relation testing, COCO-IT /
COCO-WL localisation, COCO100-IT interventions), with rows in the formats the real loaders use.

Part of :mod:`infodecomp.data.shapes`, whose docstring states the world's conventions.
"""

from __future__ import annotations

import zlib
from collections.abc import Callable, Sequence

import numpy as np
from PIL import Image

from ...checks import count
from .captions import Sample, Word, caption_text, phrases, word_masks
from .parsing import is_true_of
from .sampling import _pick, random_sample, sample_kind
from .scenes import COLOURS, PLURALS, SHAPES, SINGULARS, Scene, render

__all__ = [
    "ORDER_PERTURBATIONS", "perturb_order", "order_negatives", "ShapesTwin", "vg_relation_twin",
    "vg_attribution_twin", "order_twin", "coco_it_twin", "WL_TYPES", "coco_wl_twin", "IT100_GROUPS",
    "coco100_it_twin", "TWINS", "twin",
]


#: ARO's four order perturbations (Yuksekgonul et al. 2023), in ARO's order p1..p4.
ORDER_PERTURBATIONS = ("nouns_adjectives", "all_but_nouns_adjectives", "within_trigrams", "trigrams")


def _shuffle_positions(tokens: list[str], positions: list[int], rng: np.random.Generator) -> list[str]:
    out = list(tokens)
    for p, q in zip(positions, rng.permutation(positions)):
        out[p] = tokens[int(q)]
    return out


def perturb_order(tokens: Sequence[str], pos: Sequence[str], kind: str, rng: np.random.Generator) -> list[str]:
    """One ARO order perturbation of a tokenised caption (one random draw; may equal the input).

    tokens, pos: the words and their tags (nouns "noun", adjectives "adj"; other tags are free-form).
    kind: "nouns_adjectives" — shuffle the nouns among the noun positions and the adjectives among the
    adjective positions; "all_but_nouns_adjectives" — shuffle every other token among its positions;
    "within_trigrams" — shuffle the tokens inside each consecutive trigram (the last may be shorter);
    "trigrams" — shuffle the order of the trigrams.
    """
    tokens = list(tokens)
    if len(pos) != len(tokens):
        raise ValueError(f"need one tag per token, got {len(tokens)} tokens and {len(pos)} tags")
    if kind == "nouns_adjectives":
        out = _shuffle_positions(tokens, [k for k, p in enumerate(pos) if p == "noun"], rng)
        return _shuffle_positions(out, [k for k, p in enumerate(pos) if p == "adj"], rng)
    if kind == "all_but_nouns_adjectives":
        return _shuffle_positions(tokens, [k for k, p in enumerate(pos) if p not in ("noun", "adj")], rng)
    trigrams = [tokens[k:k + 3] for k in range(0, len(tokens), 3)]
    if kind == "within_trigrams":
        return [t[int(q)] for t in trigrams for q in rng.permutation(len(t))]
    if kind == "trigrams":
        return [w for q in rng.permutation(len(trigrams)) for w in trigrams[int(q)]]
    raise ValueError(f"unknown order perturbation {kind!r}; expected one of {ORDER_PERTURBATIONS}")


def order_negatives(words: Sequence[Word], scene: Scene, rng: np.random.Generator,
                    max_tries: int = 50) -> list[str] | None:
    """ARO's four perturbations ``[p1, p2, p3, p4]`` of an annotated caption, each a FALSE caption.

    A draw that equals the true caption, or that is a grammatical caption true of ``scene`` (e.g. "a blue
    square and a red circle" for "a red circle and a blue square"), is redrawn, up to ``max_tries`` times;
    if a perturbation cannot produce a false caption (e.g. a caption with one non-noun/adjective word),
    returns None so that the caller resamples the example.
    """
    tokens, pos = [w.text for w in words], [w.pos for w in words]
    true = " ".join(tokens)
    out = []
    for kind in ORDER_PERTURBATIONS:
        for _ in range(max_tries):
            text = " ".join(perturb_order(tokens, pos, kind, rng))
            if text != true and not is_true_of(text, scene):
                out.append(text)
                break
        else:
            return None
    return out


def _pil(scene: Scene) -> Image.Image:
    return Image.fromarray(render(scene), "RGB")


def _unique_spans(words: Sequence[Word], pos: set[str]) -> list[tuple[int, int]]:
    """Phrase spans whose first word has a tag in ``pos`` and whose text occurs once in the caption (so that
    deleting / replacing it is unambiguous)."""
    toks = [w.text for w in words]
    out = []
    for a, b in phrases(words):
        n_occ = sum(toks[k:k + (b - a)] == toks[a:b] for k in range(len(toks) - (b - a) + 1))
        if words[a].pos in pos and n_occ == 1:
            out.append((a, b))
    return out


def _edit(words: Sequence[Word], span: tuple[int, int], replacement: str | None) -> str:
    """The caption with the words of ``span`` deleted (``None``) or replaced by ``replacement``."""
    a, b = span
    toks = [w.text for w in words[:a]] + ([replacement] if replacement is not None else []) + [w.text for w in words[b:]]
    return " ".join(toks)


def _label(text: str) -> str:
    """COCO's ``Label`` for a surface word: the category (singular shape) for nouns, else the word itself."""
    return SINGULARS.get(text, text)


def _localization_row(sample: Sample, span: tuple[int, int], word_type: str, id_: str) -> dict:
    a, b = span
    word = " ".join(w.text for w in sample.words[a:b])
    mask = word_masks(sample.scene, sample.words[a:a + 1])[0]
    return {"id": id_, "image": _pil(sample.scene), "mask": mask, "caption": sample.caption, "word": word,
            "label": _label(word), "context": _edit(sample.words, span, None),
            "context_": _edit(sample.words, span, "_"), "word_type": word_type}


def _random_sample_where(rng: np.random.Generator, ok: Callable[[Sample], object], what: str,
                         max_tries: int = 1000) -> tuple[Sample, object]:
    """The first training sample ``s`` with a truthy ``ok(s)``, and that value (bounded rejection sampling)."""
    for _ in range(max_tries):
        s = random_sample(rng)
        if (r := ok(s)):
            return s, r
    raise RuntimeError(f"no sample with {what} in {max_tries} draws")


class ShapesTwin(Sequence):
    """A ShapesWorld twin of a dataset: ``n`` rows (plain dicts), row ``i`` drawn lazily and
    deterministically from ``numpy.random.default_rng([seed, crc32(name), i])`` — independent of the
    access order and of ``n`` except where rows are grouped in blocks (coco-wl, coco100-it)."""

    def __init__(self, name: str, n: int, seed: int, make_row: Callable[[np.random.Generator, int], dict]):
        self.name, self.n, self.seed = name, n, seed
        self._make_row = make_row
        self._salt = zlib.crc32(name.encode())

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i):
        if isinstance(i, slice):
            return [self[k] for k in range(*i.indices(self.n))]
        if not isinstance(i, (int, np.integer)):
            raise TypeError(f"index must be an int or slice, got {type(i).__name__}")
        if not -self.n <= i < self.n:
            raise IndexError(f"index {i} out of range for {self.name} twin of {self.n} rows")
        i = int(i) % self.n
        return self._make_row(np.random.default_rng([self.seed, self._salt, i]), i)

    def __repr__(self) -> str:
        return f"ShapesTwin({self.name!r}, n={self.n}, seed={self.seed})"


def _blocks(n: int, groups: Sequence[str], i: int) -> str:
    """Group of row ``i`` when ``n`` rows are split into consecutive, nearly equal blocks, one per group."""
    return groups[i * len(groups) // n]


def vg_relation_twin(n: int, seed: int = 0, *, true_first: bool = False) -> ShapesTwin:
    """VG-Relation twin: "a X rel a Y" (true) vs "a Y rel a X" (false: the noun phrases swapped, the relation
    kept). group = the relation. captions ``[false, true]`` (``true_first``: ``[true, false]``)."""
    name = "vg-relation"

    def row(rng, i):
        s = sample_kind(rng, "relation", 2)
        k = [w.pos for w in s.words].index("prep")
        rel_end = k + (2 if s.words[k].text in ("left", "right") else 1)
        x, r, y = s.words[:k], s.words[k:rel_end], s.words[rel_end:]
        false = caption_text(tuple(y) + tuple(r) + tuple(x))
        if false == s.caption or is_true_of(false, s.scene):
            raise RuntimeError(f"relation swap {false!r} is true of its scene; the world's rules are broken")
        caps = [s.caption, false] if true_first else [false, s.caption]
        return {"id": f"shapes-{name}-s{seed}-{i:06d}", "image": _pil(s.scene), "captions": caps,
                "true_index": 0 if true_first else 1, "group": caption_text(r)}

    return ShapesTwin(name, n, seed, row)


def vg_attribution_twin(n: int, seed: int = 0, *, true_first: bool = False) -> ShapesTwin:
    """VG-Attribution twin: "a red circle and a blue square" (true) vs "a blue circle and a red square"
    (false: the two colours swapped). Objects have distinct colours and distinct shapes. group = "a1_a2"
    (the colours in the order of the true caption). captions ``[false, true]`` (``true_first``: reversed)."""
    name = "vg-attribution"

    def row(rng, i):
        s = sample_kind(rng, "and", 2, both_distinct=True)
        cols = [k for k, w in enumerate(s.words) if w.pos == "adj" and w.text in COLOURS]
        toks = [w.text for w in s.words]
        toks[cols[0]], toks[cols[1]] = toks[cols[1]], toks[cols[0]]
        false = " ".join(toks)
        if false == s.caption or is_true_of(false, s.scene):
            raise RuntimeError(f"attribute swap {false!r} is true of its scene; the world's rules are broken")
        caps = [s.caption, false] if true_first else [false, s.caption]
        return {"id": f"shapes-{name}-s{seed}-{i:06d}", "image": _pil(s.scene), "captions": caps,
                "true_index": 0 if true_first else 1,
                "group": f"{s.words[cols[0]].text}_{s.words[cols[1]].text}"}

    return ShapesTwin(name, n, seed, row)


def order_twin(n: int, seed: int = 0, *, name: str = "coco-order", true_first: bool = False) -> ShapesTwin:
    """COCO-/Flickr-Order twin: a caption from the training distribution and ARO's four order perturbations
    (:func:`order_negatives`), each differing from the true caption and false of the scene. Captions whose
    perturbations cannot all be made false (1-object and count captions: a lone non-noun/adjective word)
    are redrawn, so the rows hold relation and "and" captions. captions ``[p4, p3, p2, p1, true]``
    (true_index 4), as the reference scores them; ``true_first``: ``[true, p1, p2, p3, p4]`` (true_index 0).
    group = ``name``."""

    def row(rng, i):
        s, negs = _random_sample_where(rng, lambda s: order_negatives(s.words, s.scene, rng),
                                       "four false order perturbations")
        caps = [s.caption] + negs if true_first else negs[::-1] + [s.caption]
        return {"id": f"shapes-{name}-s{seed}-{i:06d}", "image": _pil(s.scene), "captions": caps,
                "true_index": 0 if true_first else 4, "group": name}

    return ShapesTwin(name, n, seed, row)


def coco_it_twin(n: int, seed: int = 0) -> ShapesTwin:
    """COCO-IT twin: one noun per row (the shape word, singular or plural, occurring once in the caption);
    mask = its object(s) by the word-mask rule (for a noun that occurs once this is every object of that
    shape, like COCO's category-union mask); label = the singular shape; context = the caption with the noun
    deleted, context_ with it replaced by "_"; word_type "noun"."""
    name = "coco-it"

    def row(rng, i):
        s, spans = _random_sample_where(rng, lambda s: _unique_spans(s.words, {"noun"}), "a unique noun")
        return _localization_row(s, _pick(rng, spans), "noun", f"shapes-{name}-s{seed}-{i:06d}")

    return ShapesTwin(name, n, seed, row)


#: Word types of the COCO-WL twin, in row-block order (COCO-WL's order restricted to what the world has).
WL_TYPES = ("num", "adj", "prep", "conj")


def coco_wl_twin(n: int, seed: int = 0, *, word_types: Sequence[str] = WL_TYPES) -> ShapesTwin:
    """COCO-WL twin: rows in consecutive blocks by word type (default num, adj, prep, conj), each word / phrase
    occurring once in its caption: numbers ("two"), adjectives (colours and sizes), relation phrases
    ("left of", "above"), conjunctions ("and"). mask by the word-mask rule (num/adj → their objects, prep →
    both related objects, conj → all-False); label = the word; context / context_ as in COCO-IT."""
    name = "coco-wl"
    word_types = tuple(word_types)
    bad = [t for t in word_types if t not in WL_TYPES]
    if not word_types or bad:
        raise ValueError(f"word_types must be a non-empty subset of {WL_TYPES}, got {word_types}")
    if len(word_types) > n:
        raise ValueError(f"n = {n} rows cannot hold {len(word_types)} word-type blocks")

    def row(rng, i):
        t = _blocks(n, word_types, i)
        s, spans = _random_sample_where(rng, lambda s: _unique_spans(s.words, {t}), f"a unique {t}")
        return _localization_row(s, _pick(rng, spans), t, f"shapes-{name}-s{seed}-{i:06d}")

    return ShapesTwin(name, n, seed, row)


#: Groups of the COCO100-IT twin, in row-block order: the shape nouns, then the colour adjectives.
IT100_GROUPS = SHAPES + tuple(COLOURS)


def coco100_it_twin(n: int, seed: int = 0, *, groups: Sequence[str] = IT100_GROUPS) -> ShapesTwin:
    """COCO100-IT twin (heat maps and prompt interventions): rows in consecutive blocks by the word's
    category (default: circle, square, triangle, then red, green, blue, yellow), the word occurring once in
    its caption. Each row has BOTH the localisation keys and the intervention keys: omit_prompt = context_
    (word → "_"); swap_word = another word of its kind (circle → square, red → blue; plural kept), drawn so
    that the edited caption stays in the training distribution (no two mentions of one colour+shape);
    swap_prompt = the caption with it; mask = the word's object(s) (where an edit should act)."""
    name = "coco100-it"
    groups = tuple(groups)
    bad = [g for g in groups if g not in IT100_GROUPS]
    if not groups or bad:
        raise ValueError(f"groups must be a non-empty subset of {IT100_GROUPS}, got {groups}")
    if len(groups) > n:
        raise ValueError(f"n = {n} rows cannot hold {len(groups)} group blocks")

    def candidates(s: Sample, g: str):
        spans = [sp for sp in _unique_spans(s.words, {"noun", "adj"}) if _label(s.words[sp[0]].text) == g]
        if not spans:
            return None
        k = spans[0][0]
        objs = s.words[k].objects
        kind = SHAPES if g in SHAPES else tuple(COLOURS)
        out = []
        for alt in kind:
            if alt == g:
                continue
            new = [(o.colour, o.shape) for o in s.scene.objects]
            for j in objs:
                new[j] = (new[j][0], alt) if g in SHAPES else (alt, new[j][1])
            count_caption = s.words[0].pos == "num"
            if count_caption or len(set(new)) == len(new):
                out.append(alt)
        return (spans[0], out) if out else None

    def row(rng, i):
        g = _blocks(n, groups, i)
        s, (span, alts) = _random_sample_where(rng, lambda s: candidates(s, g), f"a unique swappable {g!r}")
        alt = _pick(rng, alts)
        word = s.words[span[0]].text
        swap_word = PLURALS[alt] if word in SINGULARS else alt
        r = _localization_row(s, span, s.words[span[0]].pos, f"shapes-{name}-s{seed}-{i:06d}")
        r.update(omit_prompt=r["context_"], swap_prompt=_edit(s.words, span, swap_word), swap_word=swap_word)
        return r

    return ShapesTwin(name, n, seed, row)


TWINS: dict[str, Callable[..., ShapesTwin]] = {
    "vg-relation": vg_relation_twin,
    "vg-attribution": vg_attribution_twin,
    "coco-order": lambda n, seed=0, **kw: order_twin(n, seed, name="coco-order", **kw),
    "flickr-order": lambda n, seed=0, **kw: order_twin(n, seed, name="flickr-order", **kw),
    "coco-it": coco_it_twin,
    "coco-wl": coco_wl_twin,
    "coco100-it": coco100_it_twin,
}


def twin(name: str, n: int, seed: int = 0, **options) -> ShapesTwin:
    """The ShapesWorld twin of a dataset: a sequence of ``n`` row dicts, deterministic given ``seed``.

    name: one of ``TWINS`` — "vg-relation", "vg-attribution", "coco-order", "flickr-order" (relation-testing
    rows), "coco-it", "coco-wl" (localisation rows), "coco100-it" (localisation + intervention rows).
    options: passed to the builder (e.g. ``true_first=True`` for the relation sets, ``word_types=`` for
    coco-wl, ``groups=`` for coco100-it).
    """
    if name not in TWINS:
        raise ValueError(f"unknown ShapesWorld twin {name!r}; expected one of {sorted(TWINS)}")
    n, seed = count(n, "n"), count(seed, "seed", minimum=0)
    return TWINS[name](n, seed, **options)
