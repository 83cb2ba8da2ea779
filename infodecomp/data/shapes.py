"""ShapesWorld: a procedural, seeded world of coloured shapes with exact ground truth.

Images are 32×32 RGB uint8 with a black background and 1–3 flat-coloured, non-overlapping shapes (no
anti-aliasing). Every image comes with its scene graph (objects; relations derived from the geometry),
per-object masks, and a caption whose every word carries a part-of-speech tag and a ground-truth mask.
Twins of the paper's datasets (ARO relation testing, COCO-IT / COCO-WL localisation, COCO100-IT
interventions) are built from the same world, with rows in the formats the real loaders use.

Conventions (documented rules, relied on by the tests)
------------------------------------------------------
Coordinates
    ``x`` is the column (grows rightwards), ``y`` the row (grows DOWNWARDS, image convention); pixel ``i``
    covers ``[i, i + 1)``. "above" means a smaller ``y``.
Relation rule (strict, for every caption the world writes; :func:`relation`)
    "A left of B" iff A's bounding box lies entirely left of B's (``A.x1 <= B.x0``) AND the centres satisfy
    ``|dx| >= 2 |dy|``. Likewise "right of", and "above" / "below" with the axes swapped. At most one relation
    holds per ordered pair; a 2-object scene gets a relation caption only when one holds.
    For generated images the loose rule (``strict=False``) is used instead: the dominant axis of the centre
    offset decides (|dx| >= |dy| → left/right, else above/below).
Part-of-speech tags (:class:`Word.pos`)
    "det" (``a``), "num" (``one two three``), "adj" (sizes ``small big`` and colours), "noun" (shapes,
    singular or plural), "prep" (relation phrases), "conj" (``and``). Tags are per word; the multi-word
    relation phrases "left of" / "right of" tag BOTH words "prep" and give them one shared ``Word.phrase``
    index, so they are shuffled as separate tokens (as ARO does) but localised / deleted / replaced as one
    phrase.
Word-mask rule (:func:`word_masks`)
    every word of a noun phrase (det, size, colour, noun) → the mask of its object; every word of a count
    phrase (number, adjectives, plural noun) → the union of all the objects it counts; a relation phrase →
    the union of the two related objects; "and" → all-False.
"""

from __future__ import annotations

import itertools
import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from PIL import Image

from ..checks import count

# ---------------------------------------------------------------------------------------------------------
# Settings of the world
# ---------------------------------------------------------------------------------------------------------

IMAGE_SIZE = 32  # pixels, square
#: Pure-ish, well-separated RGB colours (pairwise RGB distance ≥ 200, each ≥ 200 from black).
COLOURS: dict[str, tuple[int, int, int]] = {
    "red": (230, 25, 25),
    "green": (25, 205, 25),
    "blue": (40, 70, 255),
    "yellow": (240, 225, 20),
}
SHAPES: tuple[str, ...] = ("circle", "square", "triangle")
#: Side of the bounding box in pixels, by size word.
SIZES: dict[str, int] = {"small": 7, "big": 12}
PLURALS: dict[str, str] = {"circle": "circles", "square": "squares", "triangle": "triangles"}
SINGULARS: dict[str, str] = {v: k for k, v in PLURALS.items()}
NUMBERS: dict[int, str] = {1: "one", 2: "two", 3: "three"}
RELATIONS: tuple[str, ...] = ("left of", "right of", "above", "below")
POS_TAGS: tuple[str, ...] = ("det", "num", "adj", "noun", "prep", "conj")
#: Minimum number of background pixels between the bounding boxes of two objects.
GAP = 2
#: Minimum distance of a bounding box from the image border (pixels).
BORDER = 1
#: Strict relation rule: a horizontal relation needs |dx| >= DOMINANCE * |dy| (and vice versa).
DOMINANCE = 2.0


# ---------------------------------------------------------------------------------------------------------
# Scene graph
# ---------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Object:
    """One shape. ``x0, y0``: top-left pixel of its ``d × d`` bounding box (ints); ``d = SIZES[size]``."""

    colour: str
    shape: str
    size: str
    x0: int
    y0: int

    def __post_init__(self):
        if self.colour not in COLOURS or self.shape not in SHAPES or self.size not in SIZES:
            raise ValueError(f"unknown object {self.size!r} {self.colour!r} {self.shape!r}; expected a size in "
                             f"{tuple(SIZES)}, a colour in {tuple(COLOURS)} and a shape in {SHAPES}")

    @property
    def d(self) -> int:
        """Side of the bounding box (pixels)."""
        return SIZES[self.size]

    @property
    def bbox(self) -> tuple[int, int, int, int]:
        """``(x0, y0, x1, y1)`` in pixels, ``x1, y1`` exclusive."""
        return (self.x0, self.y0, self.x0 + self.d, self.y0 + self.d)

    @property
    def centre(self) -> tuple[float, float]:
        """``(x, y)`` centre of the bounding box (pixels, continuous coordinates)."""
        return (self.x0 + self.d / 2, self.y0 + self.d / 2)

    @property
    def name(self) -> str:
        """``"size colour shape"``, e.g. ``"big red circle"``."""
        return f"{self.size} {self.colour} {self.shape}"


@dataclass(frozen=True)
class Scene:
    """A scene graph: the objects and the (square) image size. Relations are derived from the geometry
    (:meth:`relations`), never stored, so they cannot disagree with it."""

    objects: tuple[Object, ...]
    size: int = IMAGE_SIZE

    def relations(self, strict: bool = True) -> list[tuple[int, str, int]]:
        """All relations ``(i, relation, j)`` between distinct objects, by :func:`relation`."""
        return [(i, r, j) for i, a in enumerate(self.objects) for j, b in enumerate(self.objects)
                if i != j and (r := relation(a, b, strict=strict)) is not None]


def _bbox_of(o) -> tuple[float, float, float, float]:
    return tuple(o.bbox)


def relation(a, b, strict: bool = True) -> str | None:
    """The spatial relation of object ``a`` to object ``b``, or ``None`` (strict rule only).

    a, b: anything with ``.centre`` ``(x, y)`` and ``.bbox`` ``(x0, y0, x1, y1)`` (:class:`Object`,
    :class:`ParsedObject`). strict=True: the rule of the module docstring (disjoint boxes along the axis and
    a 2:1 dominant axis) — may return ``None``. strict=False: the dominant axis of the centre offset decides
    (ties go to left/right); ``None`` only when the centres coincide.
    """
    (ax, ay), (bx, by) = a.centre, b.centre
    dx, dy = bx - ax, by - ay  # from a to b: dx > 0 means a is left of b
    if not strict:
        if dx == 0 and dy == 0:
            return None
        if abs(dx) >= abs(dy):
            return "left of" if dx > 0 else "right of"
        return "above" if dy > 0 else "below"
    ax0, ay0, ax1, ay1 = _bbox_of(a)
    bx0, by0, bx1, by1 = _bbox_of(b)
    if abs(dx) >= DOMINANCE * abs(dy):
        if ax1 <= bx0:
            return "left of"
        if bx1 <= ax0:
            return "right of"
    if abs(dy) >= DOMINANCE * abs(dx):
        if ay1 <= by0:
            return "above"
        if by1 <= ay0:
            return "below"
    return None


# ---------------------------------------------------------------------------------------------------------
# Rendering
# ---------------------------------------------------------------------------------------------------------

_TEMPLATES: dict[tuple[str, int], np.ndarray] = {}


def shape_template(shape: str, d: int) -> np.ndarray:
    """Binary ``[d, d]`` mask of ``shape`` in a ``d × d`` box (pixel-centre sampling, no anti-aliasing).

    circle: pixel centres within d/2 of the box centre; square: the whole box; triangle: apex-up isosceles,
    apex at the top middle, base along the bottom edge. Every template touches all four sides of its box.
    """
    key = (shape, int(d))
    if key not in _TEMPLATES:
        if shape not in SHAPES:
            raise ValueError(f"unknown shape {shape!r}; expected one of {SHAPES}")
        if int(d) < 1:
            raise ValueError(f"template side must be >= 1, got {d}")
        yy, xx = np.mgrid[0:d, 0:d] + 0.5
        if shape == "circle":
            m = (xx - d / 2) ** 2 + (yy - d / 2) ** 2 <= (d / 2) ** 2
        elif shape == "square":
            m = np.ones((d, d), dtype=bool)
        else:
            m = np.abs(xx - d / 2) <= (yy + 0.5) / 2  # + 0.5: the apex row is never empty (even d)
        m.setflags(write=False)
        _TEMPLATES[key] = m
    return _TEMPLATES[key]


def object_masks(scene: Scene) -> np.ndarray:
    """Per-object masks: bool ``[n_objects, H, W]``, exactly the pixels each object colours."""
    n, s = len(scene.objects), scene.size
    masks = np.zeros((n, s, s), dtype=bool)
    for k, o in enumerate(scene.objects):
        x0, y0, x1, y1 = o.bbox
        masks[k, y0:y1, x0:x1] = shape_template(o.shape, o.d)
    return masks


def render(scene: Scene) -> np.ndarray:
    """The scene's image: uint8 ``[H, W, 3]``, black background, flat colours (objects never overlap)."""
    s = scene.size
    image = np.zeros((s, s, 3), dtype=np.uint8)
    for o, m in zip(scene.objects, object_masks(scene)):
        image[m] = COLOURS[o.colour]
    return image


# ---------------------------------------------------------------------------------------------------------
# Captions with per-word annotations
# ---------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Word:
    """One word of a caption.

    text: the word; pos: one of ``POS_TAGS``; objects: indices of the scene objects the word refers to (its
    ground-truth mask is their union; empty → all-False); phrase: index of the phrase the word belongs to —
    "left of" / "right of" are one phrase of two words, every other word is a phrase of its own.
    """

    text: str
    pos: str
    objects: tuple[int, ...]
    phrase: int


@dataclass(frozen=True)
class Sample:
    """One ShapesWorld example: ``image`` uint8 ``[32, 32, 3]``, ``caption`` str, its ``scene`` and its
    annotated ``words`` (``" ".join(w.text for w in words) == caption``)."""

    image: np.ndarray
    caption: str
    scene: Scene
    words: tuple[Word, ...]

    def object_masks(self) -> np.ndarray:
        """bool ``[n_objects, 32, 32]``."""
        return object_masks(self.scene)

    def word_masks(self) -> np.ndarray:
        """bool ``[n_words, 32, 32]`` by the word-mask rule."""
        return word_masks(self.scene, self.words)


Part = tuple[str, str, tuple[int, ...]]  # (text, pos, objects); text may be a multi-word phrase


def _noun_phrase(obj: Object, k: int, with_size: bool) -> list[Part]:
    """``a [size] colour shape`` referring to object ``k``."""
    out: list[Part] = [("a", "det", (k,))]
    if with_size:
        out.append((obj.size, "adj", (k,)))
    return out + [(obj.colour, "adj", (k,)), (obj.shape, "noun", (k,))]


def _assemble(parts: list[Part]) -> tuple[Word, ...]:
    """Split multi-word texts ("left of") into words that share one phrase index."""
    return tuple(Word(t, pos, tuple(objs), p) for p, (text, pos, objs) in enumerate(parts) for t in text.split())


CAPTION_KINDS = ("single", "count", "relation", "and")


def caption_words(
    scene: Scene,
    kind: str,
    *,
    order: Sequence[int] | None = None,
    sizes: Sequence[bool] | None = None,
) -> tuple[Word, ...]:
    """Annotated caption of ``scene``.

    kind: "single" — "a [size] red circle" (1 object); "count" — "one/two/three [size] red circle(s)" (all
    objects share colour and shape; the size word only if all their sizes agree); "relation" — "a X left of
    a Y" (2 objects; "order[0] rel order[1]" must hold by the strict rule); "and" — "a X and a Y [and a Z]".
    order: the order in which objects are mentioned (default scene order). sizes: per mention, whether the
    size adjective is written (default: never; "count" uses ``sizes[0]``).
    Raises ValueError when the scene does not fit the kind (e.g. no clear relation).
    """
    objs = scene.objects
    n = len(objs)
    order = tuple(range(n)) if order is None else tuple(int(k) for k in order)
    if sorted(order) != list(range(n)):
        raise ValueError(f"order must be a permutation of range({n}), got {order}")
    sizes = (False,) * n if sizes is None else tuple(bool(b) for b in sizes)
    if len(sizes) < n:
        raise ValueError(f"sizes needs one flag per object ({n}), got {sizes}")
    parts: list[Part] = []
    if kind == "single":
        if n != 1:
            raise ValueError(f"a 'single' caption needs 1 object, the scene has {n}")
        parts = _noun_phrase(objs[0], 0, sizes[0])
    elif kind == "count":
        if n not in NUMBERS or len({(o.colour, o.shape) for o in objs}) != 1:
            raise ValueError(f"a 'count' caption needs 1-3 objects of one colour and shape, got {[o.name for o in objs]}")
        allk = tuple(range(n))
        parts = [(NUMBERS[n], "num", allk)]
        if sizes[0] and len({o.size for o in objs}) == 1:
            parts.append((objs[0].size, "adj", allk))
        noun = objs[0].shape if n == 1 else PLURALS[objs[0].shape]
        parts += [(objs[0].colour, "adj", allk), (noun, "noun", allk)]
    elif kind == "relation":
        if n != 2:
            raise ValueError(f"a 'relation' caption needs 2 objects, the scene has {n}")
        i, j = order
        r = relation(objs[i], objs[j])
        if r is None:
            raise ValueError(f"no clear relation between {objs[i]} and {objs[j]}")
        parts = _noun_phrase(objs[i], i, sizes[0]) + [(r, "prep", (i, j))] + _noun_phrase(objs[j], j, sizes[1])
    elif kind == "and":
        if n < 2:
            raise ValueError(f"an 'and' caption needs at least 2 objects, the scene has {n}")
        for m, k in enumerate(order):
            if m:
                parts.append(("and", "conj", ()))
            parts += _noun_phrase(objs[k], k, sizes[m])
    else:
        raise ValueError(f"unknown caption kind {kind!r}; expected one of {CAPTION_KINDS}")
    return _assemble(parts)


def caption_text(words: Sequence[Word]) -> str:
    """The caption string of annotated words."""
    return " ".join(w.text for w in words)


def word_masks(scene: Scene, words: Sequence[Word]) -> np.ndarray:
    """Ground-truth mask of every word: bool ``[n_words, H, W]`` = union of the masks of ``word.objects``
    (the word-mask rule of the module docstring; "and" → all-False)."""
    om = object_masks(scene)
    out = np.zeros((len(words), scene.size, scene.size), dtype=bool)
    for k, w in enumerate(words):
        if w.objects:
            out[k] = om[list(w.objects)].any(axis=0)
    return out


def phrases(words: Sequence[Word]) -> list[tuple[int, int]]:
    """``(start, stop)`` word spans of the phrases of a caption (``Word.phrase``), in order."""
    spans: list[tuple[int, int]] = []
    for k, w in enumerate(words):
        if k and w.phrase == words[k - 1].phrase:
            spans[-1] = (spans[-1][0], k + 1)
        else:
            spans.append((k, k + 1))
    return spans


# ---------------------------------------------------------------------------------------------------------
# Sampling
# ---------------------------------------------------------------------------------------------------------

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


# ---------------------------------------------------------------------------------------------------------
# Parsing images (colour segmentation) and captions, and scoring a caption against a scene
# ---------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ParsedObject:
    """An object found in an image by :func:`parse_scene`.

    bbox ``(x0, y0, x1, y1)`` (pixels, exclusive ends) of the segmented component; centre = bbox centre
    ``(x, y)``; area: pixels in the component; mass: soft colour mass (sum of per-pixel colour intensities
    around it, ≈ the pixel area of the drawn shape, unchanged by blur).
    """

    colour: str
    shape: str
    size: str
    bbox: tuple[int, int, int, int]
    centre: tuple[float, float]
    area: int
    mass: float


def _as_rgb255(image) -> np.ndarray:
    """float ``[H, W, 3]`` in 0..255 from uint8/float HWC arrays, a PIL image or a CHW tensor in [0, 1]."""
    if isinstance(image, Image.Image):
        image = np.asarray(image.convert("RGB"))
    if isinstance(image, torch.Tensor):
        if image.ndim != 3 or image.shape[0] != 3:
            raise ValueError(f"a tensor image must be [3, H, W] in [0, 1], got shape {tuple(image.shape)}")
        image = image.detach().float().cpu().permute(1, 2, 0).numpy()
    image = np.asarray(image)
    if image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"image must be [H, W, 3] (or PIL RGB / tensor [3, H, W]), got shape {image.shape}")
    if image.dtype == np.uint8:
        return image.astype(np.float32)
    if not np.issubdtype(image.dtype, np.floating):
        raise ValueError(f"image must be uint8 or float in [0, 1], got dtype {image.dtype}")
    if not np.isfinite(image).all():
        raise ValueError("image contains NaN or inf")
    return np.clip(image.astype(np.float32), 0.0, 1.0) * 255.0


def _colour_evidence(image) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per-pixel colour evidence of an image: ``(hue [H, W] int, cosine [H, W], intensity [H, W, C])``.

    The background level (per-channel 20th percentile of the image: objects and their blurred halos cover
    well under 80% of it) is removed first. hue: the palette colour (order of ``COLOURS``) whose RGB direction is nearest; cosine: that
    direction's cosine similarity; intensity: ``<rgb - bg, c> / |c|^2`` for every palette colour ``c`` (a pixel
    of colour c blended with black at weight a has intensity a in c; 1 on a flat-coloured pixel).
    """
    x = _as_rgb255(image)
    x = x - np.percentile(x.reshape(-1, 3), 20, axis=0)
    palette = np.array(list(COLOURS.values()), dtype=np.float32)  # [C, 3]
    unit = palette / np.linalg.norm(palette, axis=1, keepdims=True)
    cos = x @ unit.T / np.maximum(np.linalg.norm(x, axis=-1, keepdims=True), 1e-6)  # [H, W, C]
    hue = cos.argmax(-1)
    return hue, np.take_along_axis(cos, hue[..., None], -1)[..., 0], x @ palette.T / (palette**2).sum(1)


def colour_labels(image, min_intensity: float = 0.5, min_cosine: float = 0.9) -> np.ndarray:
    """Per-pixel palette index (order of ``COLOURS``): int ``[H, W]``, ``-1`` for background.

    A pixel takes its hue (the palette colour of nearest RGB direction, :func:`_colour_evidence`) if the
    cosine is at least ``min_cosine`` and its intensity in that colour at least ``min_intensity`` (half the
    flat colour: a blurred edge is split at its middle). Hue-based, so darkened edges of yellow are not taken
    for green; tolerates the blur and colour shifts of a VAE.
    """
    return _labels(*_colour_evidence(image), min_intensity, min_cosine)


def _labels(hue, cos, inten, min_intensity: float, min_cosine: float) -> np.ndarray:
    ok = (cos >= min_cosine) & (np.take_along_axis(inten, hue[..., None], -1)[..., 0] >= min_intensity)
    return np.where(ok, hue, -1)


#: Shape classification thresholds (see :func:`_shape_features`): rendered triangles have the third
#: cumulant kappa3_y / mass**1.5 = -0.0156 (7 px) and -0.020 (12 px) (apex up), circles and squares 0;
#: squares have the 4th-cumulant ratio 0.5, circles 1.25 (7 px) and 1.03 (12 px), triangles ≈ 0.93-0.98.
_TRIANGLE_SKEW = -0.008
_SQUARE_RATIO = 0.75
#: Soft mass separating "small" from "big", per shape: the geometric mean of the two rendered areas.
_SIZE_MASS = {sh: float(np.sqrt(shape_template(sh, SIZES["small"]).sum() * shape_template(sh, SIZES["big"]).sum()))
              for sh in SHAPES}


def _shape_features(w: np.ndarray) -> tuple[float, float, float]:
    """``(mass, skew, ratio)`` of a soft mask ``w`` ``[h, w]`` (weights in [0, 1]).

    mass = Σw; skew = kappa3 along y / mass**1.5; ratio = (kappa4 along the two diagonals) / (kappa4 along
    the two axes). Cumulants of order 3 and 4 do not change under a symmetric Gaussian blur (a Gaussian's
    are 0), so both features survive the blur of a VAE; both are scale-free.
    """
    yy, xx = np.mgrid[0:w.shape[0], 0:w.shape[1]].astype(np.float64)
    m = float(w.sum())
    yy = yy - (w * yy).sum() / m
    xx = xx - (w * xx).sum() / m

    def k234(v):
        v2, v3, v4 = ((w * v**k).sum() / m for k in (2, 3, 4))
        return v2, v3, v4 - 3 * v2**2

    k4_axes = k234(xx)[2] + k234(yy)[2]
    k4_diag = k234((xx + yy) / np.sqrt(2))[2] + k234((xx - yy) / np.sqrt(2))[2]
    skew = k234(yy)[1] / m**1.5
    ratio = k4_diag / k4_axes if k4_axes < 0 else np.inf
    return m, float(skew), float(ratio)


def parse_scene(image, *, min_intensity: float = 0.5, min_cosine: float = 0.9, min_area: int = 8,
                floor: float = 0.1) -> list[ParsedObject]:
    """Objects in an image, by colour segmentation.

    image: uint8 ``[H, W, 3]``, float ``[H, W, 3]`` in [0, 1], PIL RGB, or tensor ``[3, H, W]`` in [0, 1].
    1. Each pixel gets its nearest palette colour or background (:func:`colour_labels`); 4-connected
       components per colour; components under ``min_area`` pixels are dropped as specks. bbox and centre
       come from the component.
    2. Soft mask around the component (within 2 px): the pixels' intensity in that colour
       (:func:`_colour_evidence`, background level removed) clipped to [0, 1], zeroed below ``floor``, on
       pixels of another hue (the blurred halo of a neighbour) and on pixels labelled another colour.
    3. Shape from blur-invariant cumulants of the soft mask (:func:`_shape_features`): triangle if its
       vertical third cumulant is clearly negative (apex up), else square if the diagonal/axis 4th-cumulant
       ratio is below 0.75, else circle. Size from the soft mass (≈ pixel area): "big" above the geometric
       mean of the shape's small and big areas.
    Returns objects sorted by (y0, x0). Exact (bbox, colour, shape, size) on every rendered scene.
    """
    from scipy import ndimage  # local: scipy is only needed for parsing

    hue, cos, inten = _colour_evidence(image)
    labels = _labels(hue, cos, inten, min_intensity, min_cosine)  # = colour_labels(image, ...)
    out = []
    for c, colour in enumerate(COLOURS):
        alpha = np.clip(inten[..., c], 0.0, 1.0)
        alpha[(alpha < floor) | (hue != c) | ((labels != c) & (labels != -1))] = 0.0
        comps, _ = ndimage.label(labels == c)
        for k, sl in enumerate(ndimage.find_objects(comps), start=1):
            comp = comps == k
            area = int(comp[sl].sum())
            if area < min_area:
                continue
            near = ndimage.binary_dilation(comp, structure=np.ones((3, 3), bool), iterations=2)
            m, skew, ratio = _shape_features(np.where(near, alpha, 0.0))
            shape = "triangle" if skew < _TRIANGLE_SKEW else ("square" if ratio < _SQUARE_RATIO else "circle")
            y0, x0, y1, x1 = sl[0].start, sl[1].start, sl[0].stop, sl[1].stop
            out.append(ParsedObject(colour, shape, "big" if m > _SIZE_MASS[shape] else "small",
                                    (x0, y0, x1, y1), ((x0 + x1) / 2, (y0 + y1) / 2), area, m))
    return sorted(out, key=lambda o: (o.bbox[1], o.bbox[0]))


@dataclass(frozen=True)
class NounPhrase:
    """A caption's claim about objects: ``count`` objects of ``colour`` and ``shape`` (and ``size`` if not
    None). ``exact``: the count is a number word ("two red circles": exactly two such objects)."""

    count: int
    colour: str
    shape: str
    size: str | None
    exact: bool


@dataclass(frozen=True)
class CaptionClaim:
    """A parsed caption: its noun phrases and, for "X rel Y" captions, the relation between phrase 0 and 1."""

    phrases: tuple[NounPhrase, ...]
    relation: str | None = None


def parse_caption(caption: str) -> CaptionClaim:
    """Parse a caption of the ShapesWorld grammar (ValueError for anything else).

    caption := count-np | np ("and" np)* | np relation np;  np := "a" [size] colour shape;
    count-np := number [size] colour shape(s) (plural iff number > 1).
    """
    toks = caption.split()
    pos = 0
    nums = {v: k for k, v in NUMBERS.items()}

    def err(msg: str) -> ValueError:
        return ValueError(f"caption {caption!r} is not in the ShapesWorld grammar: {msg} at word {pos}")

    def np_(allow_count: bool) -> NounPhrase:
        nonlocal pos
        if pos >= len(toks):
            raise err("expected a noun phrase")
        det = toks[pos]
        if det == "a":
            count, exact = 1, False
        elif det in nums and allow_count:
            count, exact = nums[det], True
        else:
            raise err(f"expected 'a' or a number, got {det!r}")
        pos += 1
        size = None
        if pos < len(toks) and toks[pos] in SIZES:
            size = toks[pos]
            pos += 1
        if pos >= len(toks) or toks[pos] not in COLOURS:
            raise err("expected a colour")
        colour = toks[pos]
        pos += 1
        if pos >= len(toks):
            raise err("expected a shape")
        noun = toks[pos]
        if count == 1 and noun in SHAPES:
            shape = noun
        elif count > 1 and noun in SINGULARS:
            shape = SINGULARS[noun]
        else:
            raise err(f"expected a {'singular' if count == 1 else 'plural'} shape, got {noun!r}")
        pos += 1
        return NounPhrase(count, colour, shape, size, exact)

    first = np_(allow_count=True)
    if first.exact:
        if pos != len(toks):
            raise err("a count phrase must be the whole caption")
        return CaptionClaim((first,))
    phrases_ = [first]
    rest = " ".join(toks[pos:])
    for r in RELATIONS:
        if rest.startswith(r + " "):
            pos += len(r.split())
            phrases_.append(np_(allow_count=False))
            if pos != len(toks):
                raise err("trailing words after a relation caption")
            return CaptionClaim(tuple(phrases_), r)
    while pos < len(toks):
        if toks[pos] != "and":
            raise err(f"expected 'and' or a relation, got {toks[pos]!r}")
        pos += 1
        phrases_.append(np_(allow_count=False))
    return CaptionClaim(tuple(phrases_))


def _fits(o, p: NounPhrase, check_size: bool) -> bool:
    return o.colour == p.colour and o.shape == p.shape and (not check_size or p.size is None or o.size == p.size)


def match_report(caption: str, objects, *, check_size: bool = True, strict_relation: bool = False) -> dict[str, bool]:
    """How a caption fares against a scene: ``{"objects", "count", "relation", "match"}`` (bools).

    objects: a :class:`Scene`, or a list of :class:`Object` / :class:`ParsedObject`.
    - objects: every noun phrase finds its own object(s) of its colour and shape (and size, if the phrase
      states one and ``check_size``); a number word needs EXACTLY that many such objects in the scene.
    - count: the scene has exactly as many objects as the caption describes.
    - relation: for "X rel Y", some assignment of distinct objects to X and Y satisfies the relation (loose
      rule by default, :func:`relation`); True for captions without a relation.
    - match: all three at once, under one assignment.
    """
    claim = parse_caption(caption)
    objs = list(objects.objects) if isinstance(objects, Scene) else list(objects)
    described = sum(p.count for p in claim.phrases)
    count_ok = len(objs) == described
    if claim.phrases[0].exact:
        p = claim.phrases[0]
        ok = sum(_fits(o, p, check_size) for o in objs) == p.count
        return {"objects": ok, "count": count_ok, "relation": True, "match": ok and count_ok}
    objects_ok = relation_ok = match = False
    for perm in itertools.permutations(range(len(objs)), len(claim.phrases)):
        if not all(_fits(objs[k], p, check_size) for k, p in zip(perm, claim.phrases)):
            continue
        objects_ok = True
        rel_here = claim.relation is None or relation(objs[perm[0]], objs[perm[1]], strict=strict_relation) == claim.relation
        relation_ok |= rel_here
        match |= rel_here and count_ok
    if claim.relation is not None and not objects_ok:
        # the relation alone: any two distinct objects that stand in it
        relation_ok = any(relation(a, b, strict=strict_relation) == claim.relation
                          for a, b in itertools.permutations(objs, 2))
    return {"objects": objects_ok, "count": count_ok, "relation": relation_ok or claim.relation is None,
            "match": match}


def caption_matches(caption: str, objects, *, check_size: bool = True, strict_relation: bool = False) -> bool:
    """Whether ``caption`` is exactly true of a scene (or of :func:`parse_scene`'s output): the right objects,
    the right counts, no extra objects, the relation true. See :func:`match_report`."""
    return match_report(caption, objects, check_size=check_size, strict_relation=strict_relation)["match"]


def _is_true_of(text: str, scene: Scene) -> bool:
    """Whether ``text`` is a grammatical caption that is true of ``scene`` (loose relation rule)."""
    try:
        return caption_matches(text, scene)
    except ValueError:  # outside the grammar: a shuffled caption, never true by construction
        return False


# ---------------------------------------------------------------------------------------------------------
# ARO order perturbations, driven by the world's part-of-speech tags
# ---------------------------------------------------------------------------------------------------------

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
            if text != true and not _is_true_of(text, scene):
                out.append(text)
                break
        else:
            return None
    return out


# ---------------------------------------------------------------------------------------------------------
# Twins of the paper's datasets
# ---------------------------------------------------------------------------------------------------------


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
        if false == s.caption or _is_true_of(false, s.scene):
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
        if false == s.caption or _is_true_of(false, s.scene):
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
