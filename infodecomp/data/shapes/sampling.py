"""Random scenes with their captions: the natural mix of :func:`random_sample`, one caption kind (:func:`sample_kind`),
and the training stream (relation boost, counterfactual twins).

Part of :mod:`infodecomp.data.shapes`, whose docstring states the world's conventions.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from ...checks import count
from .captions import CAPTION_KINDS, Sample, caption_text, caption_words
from .scenes import BORDER, COLOURS, GAP, IMAGE_SIZE, NUMBERS, RELATIONS, SHAPES, SIZES, Object, Scene, relation, render

__all__ = [
    "P_OBJECTS", "P_SIZE_WORD", "place", "sample_kind", "random_sample", "NATURAL_RELATION_SHARE",
    "FLIPPED_RELATION", "relation_counterfactual", "training_samples", "training_batch",
]


#: Probabilities of the number of objects in :func:`random_sample`.
P_OBJECTS = {1: 0.3, 2: 0.45, 3: 0.25}
#: Probability that a mention writes its size adjective.
P_SIZE_WORD = 0.5


def _disjoint(a: Object, b: Object, gap: int = GAP) -> bool:
    ax0, ay0, ax1, ay1 = a.bbox
    bx0, by0, bx1, by1 = b.bbox
    return ax1 + gap <= bx0 or bx1 + gap <= ax0 or ay1 + gap <= by0 or by1 + gap <= ay0


def place(rng: np.random.Generator, specs: Sequence[tuple[str, str, str]], rel: str | None = None,
          max_tries: int = 10_000) -> Scene:
    """A scene of objects ``(colour, shape, size)`` placed uniformly at random among layouts with ``GAP``
    pixels between boxes and ``BORDER`` from the image edge; with ``rel``, only layouts where
    "object 0 rel object 1" holds by the strict rule (rejection sampling)."""
    if rel is not None and rel not in RELATIONS:
        raise ValueError(f"unknown relation {rel!r}; expected one of {RELATIONS}")
    for _ in range(max_tries):
        objs = []
        for colour, shape, size in specs:
            d = SIZES[size]
            x0, y0 = rng.integers(BORDER, IMAGE_SIZE - BORDER - d + 1, size=2)
            objs.append(Object(colour, shape, size, int(x0), int(y0)))
        if not all(_disjoint(a, b) for i, a in enumerate(objs) for b in objs[i + 1:]):
            continue
        if rel is not None and relation(objs[0], objs[1]) != rel:
            continue
        return Scene(tuple(objs))
    raise RuntimeError(f"could not place {list(specs)} (relation {rel}) in {max_tries} tries")


def _pick(rng: np.random.Generator, seq: Sequence):
    return seq[int(rng.integers(len(seq)))]


def _sizes(rng: np.random.Generator, k: int) -> list[str]:
    return [_pick(rng, tuple(SIZES)) for _ in range(k)]


def _distinct_specs(rng: np.random.Generator, n: int, both: bool = False) -> list[tuple[str, str, str]]:
    """``n`` objects with distinct (colour, shape) pairs; ``both``: distinct colours AND distinct shapes."""
    if both:
        cs = rng.choice(len(COLOURS), size=n, replace=False)
        ss = rng.choice(len(SHAPES), size=n, replace=False)
        pairs = [(tuple(COLOURS)[int(c)], SHAPES[int(s)]) for c, s in zip(cs, ss)]
    else:
        allp = [(c, s) for c in COLOURS for s in SHAPES]
        pairs = [allp[int(k)] for k in rng.choice(len(allp), size=n, replace=False)]
    return [(c, s, z) for (c, s), z in zip(pairs, _sizes(rng, n))]


def sample_kind(rng: np.random.Generator, kind: str, n: int, *, both_distinct: bool = False) -> Sample:
    """A sample whose caption has the given kind (see :func:`caption_words`) and ``n`` objects.

    single: n = 1. count: n ∈ {1, 2, 3} objects of one colour and shape (half the time one shared size).
    relation: n = 2, distinct (colour, shape), relation drawn uniformly and the layout drawn so that it
    holds. and: n ∈ {2, 3}, distinct (colour, shape) (``both_distinct``: distinct colours and shapes),
    mentioned in random order. Size words are written with probability ``P_SIZE_WORD`` per mention.
    """
    size_words = tuple(bool(b) for b in rng.random(n) < P_SIZE_WORD)
    order = None
    if kind == "single":
        if n != 1:
            raise ValueError(f"kind 'single' needs n = 1, got {n}")
        scene = place(rng, [(_pick(rng, tuple(COLOURS)), _pick(rng, SHAPES), _sizes(rng, 1)[0])])
    elif kind == "count":
        if n not in NUMBERS:
            raise ValueError(f"kind 'count' needs n in {tuple(NUMBERS)}, got {n}")
        c, s = _pick(rng, tuple(COLOURS)), _pick(rng, SHAPES)
        sz = _sizes(rng, n) if rng.random() < 0.5 else [_pick(rng, tuple(SIZES))] * n
        scene = place(rng, [(c, s, z) for z in sz])
    elif kind == "relation":
        if n != 2:
            raise ValueError(f"kind 'relation' needs n = 2, got {n}")
        scene = place(rng, _distinct_specs(rng, 2, both_distinct), rel=_pick(rng, RELATIONS))
    elif kind == "and":
        if n not in (2, 3):
            raise ValueError(f"kind 'and' needs n in (2, 3), got {n}")
        scene = place(rng, _distinct_specs(rng, n, both_distinct))
        order = tuple(int(k) for k in rng.permutation(n))
    else:
        raise ValueError(f"unknown caption kind {kind!r}; expected one of {CAPTION_KINDS}")
    words = caption_words(scene, kind, order=order, sizes=size_words)
    return Sample(render(scene), caption_text(words), scene, words)


def random_sample(rng: np.random.Generator) -> Sample:
    """One training example from the ShapesWorld distribution (deterministic given ``rng``'s state).

    1 object (30%), 2 (45%) or 3 (25%); colours, shapes, sizes uniform; positions uniform among
    non-overlapping layouts (:func:`place`).
    - 1 object: "a [size] red circle" (75%) or "one [size] red circle" (25%).
    - 2 objects: 20% one colour+shape → "two [size] red circles"; else distinct (colour, shape) pairs and
      60% "a X left of / right of / above / below a Y" (relation uniform, layout drawn so that it holds),
      40% "a X and a Y".
    - 3 objects: 40% one colour+shape → "three ... circles"; else "a X and a Y and a Z".
    Each mention writes its size adjective with probability 1/2 (count captions: only when sizes agree).
    """
    if not isinstance(rng, np.random.Generator):
        raise TypeError(f"rng must be a numpy.random.Generator, got {type(rng).__name__}")
    n = int(rng.choice(list(P_OBJECTS), p=list(P_OBJECTS.values())))
    u = rng.random()
    if n == 1:
        kind = "count" if u < 0.25 else "single"
    elif u < (0.2 if n == 2 else 0.4):
        kind = "count"
    elif n == 2:
        kind = "relation" if rng.random() < 0.6 else "and"
    else:
        kind = "and"
    return sample_kind(rng, kind, n)


#: Share of two-object relational captions in :func:`random_sample`'s mix: P(2 objects) · P(not a count) ·
#: P(relation) = 0.45 · 0.8 · 0.6.
NATURAL_RELATION_SHARE = 0.45 * 0.8 * 0.6

#: A relation and the one that holds after mirroring the layout along the relation's axis.
FLIPPED_RELATION = {"left of": "right of", "right of": "left of", "above": "below", "below": "above"}


def relation_counterfactual(sample: Sample) -> Sample:
    """The counterfactual twin of a two-object relational sample: the same two objects, their positions
    mirrored along the relation's axis (``x0 → size − x0 − d`` for left/right, ``y0`` likewise for
    above/below; shapes are not mirrored, so triangles stay apex-up), and the relation word flipped
    ("a red circle left of a blue square" → "a red circle right of a blue square"). Everything but the
    relation word is the same in the two captions, so the word is the only explanation of the layout.

    The strict relation rule is symmetric under mirroring, so the flipped caption is strictly true of the
    mirrored scene. Raises ``ValueError`` for a sample that is not a relational caption.
    """
    rel_words = [w for w in sample.words if w.pos == "prep"]
    if not rel_words or len(sample.scene.objects) != 2:
        raise ValueError(f"relation_counterfactual needs a two-object relational caption, got {sample.caption!r}")
    i, j = rel_words[0].objects
    rel = " ".join(w.text for w in rel_words)
    horizontal = rel in ("left of", "right of")
    s = sample.scene.size
    objs = tuple(Object(o.colour, o.shape, o.size, s - o.x0 - o.d if horizontal else o.x0,
                        o.y0 if horizontal else s - o.y0 - o.d) for o in sample.scene.objects)
    scene = Scene(objs, s)
    sizes = [any(w.pos == "adj" and w.text in SIZES and w.objects == (k,) for w in sample.words) for k in (i, j)]
    words = caption_words(scene, "relation", order=(i, j), sizes=sizes)
    return Sample(render(scene), caption_text(words), scene, words)


def training_samples(n: int, rng: np.random.Generator, *, relation_boost: float = 0.0,
                     counterfactual: float = 0.0) -> list[Sample]:
    """``n`` training samples.

    relation_boost: probability that an example is a two-object relational caption (:func:`sample_kind`
        "relation") instead of a draw from :func:`random_sample`'s mix, which holds
        :data:`NATURAL_RELATION_SHARE` (r = 21.6 %) of them itself.
    counterfactual: probability ``c`` that a boosted relational example comes with its
        :func:`relation_counterfactual` twin right after it, in the same batch (the pair counts as two of ``n``).
    The relational share of the batch is ``(b(1 + c) + (1 − b) r) / (b(1 + c) + 1 − b)``: b = 0.2 and c = 1
    give 48 %, two thirds of them in counterfactual pairs.
    With both 0 the draws are exactly :func:`random_sample`'s (the stream of earlier trainings).
    """
    for name, p in (("relation_boost", relation_boost), ("counterfactual", counterfactual)):
        if not 0.0 <= float(p) <= 1.0:
            raise ValueError(f"{name} must be a probability in [0, 1], got {p!r}")
    if relation_boost == 0.0:
        return [random_sample(rng) for _ in range(int(n))]
    out: list[Sample] = []
    while len(out) < n:
        if rng.random() < relation_boost:
            s = sample_kind(rng, "relation", 2)
            out.append(s)
            if rng.random() < counterfactual and len(out) < n:
                out.append(relation_counterfactual(s))
        else:
            out.append(random_sample(rng))
    return out


def training_batch(n: int, rng: np.random.Generator, *, relation_boost: float = 0.0,
                   counterfactual: float = 0.0) -> tuple[torch.Tensor, list[str]]:
    """``n`` training examples: images float32 ``[n, 3, 32, 32]`` in [0, 1] and their ``n`` captions
    (the mix of :func:`training_samples`)."""
    n = count(n, "n")
    samples = training_samples(int(n), rng, relation_boost=relation_boost, counterfactual=counterfactual)
    images = np.stack([s.image for s in samples]).transpose(0, 3, 1, 2)
    return torch.from_numpy(images.astype(np.float32) / 255.0), [s.caption for s in samples]


def relational_edits(s: Sample, rng: np.random.Generator) -> dict[str, str]:
    """Three edits of a relational caption "a X rel a Y" (objects of distinct colours and shapes):
    ``relation_flip`` (left ↔ right, above ↔ below), ``attribute_swap`` (the two colour words exchanged) and
    ``colour_swap`` (the first object's colour replaced by a colour in neither object)."""
    toks = [w.text for w in s.words]
    rel = [k for k, w in enumerate(s.words) if w.pos == "prep"]
    phrase = " ".join(toks[k] for k in rel)
    flip = toks[:rel[0]] + FLIPPED_RELATION[phrase].split() + toks[rel[-1] + 1:]
    cols = [k for k, w in enumerate(s.words) if w.pos == "adj" and w.text in COLOURS]
    attr = list(toks)
    attr[cols[0]], attr[cols[1]] = toks[cols[1]], toks[cols[0]]
    others = [c for c in COLOURS if c not in (toks[cols[0]], toks[cols[1]])]
    colour = list(toks)
    colour[cols[0]] = others[int(rng.integers(len(others)))]
    return {"relation_flip": " ".join(flip), "attribute_swap": " ".join(attr), "colour_swap": " ".join(colour)}
