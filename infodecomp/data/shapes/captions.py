"""Captions whose every word carries a part-of-speech tag and the objects it refers to (its ground-truth mask), by the
word-mask rule of :mod:`infodecomp.data.shapes`.

Part of :mod:`infodecomp.data.shapes`, whose docstring states the world's conventions.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from .scenes import NUMBERS, PLURALS, Object, Scene, object_masks, relation

__all__ = [
    "Word", "Sample", "CAPTION_KINDS", "caption_words", "caption_text", "word_masks", "phrases",
]


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
