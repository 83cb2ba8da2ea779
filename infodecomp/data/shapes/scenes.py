"""The world's settings, its scene graph (objects and the relation rule) and rendering: exact images and per-object
masks.

Part of :mod:`infodecomp.data.shapes`, whose docstring states the world's conventions.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = [
    "IMAGE_SIZE", "COLOURS", "SHAPES", "SIZES", "PLURALS", "SINGULARS", "NUMBERS", "RELATIONS", "POS_TAGS", "GAP",
    "BORDER", "DOMINANCE", "Object", "Scene", "relation", "shape_template", "object_masks", "render",
]


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
