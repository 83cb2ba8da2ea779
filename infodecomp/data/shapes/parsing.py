"""Reading generated images back (colour segmentation into objects: :func:`parse_scene`), parsing captions
(:func:`parse_caption`), and scoring a caption against a scene (:func:`match_report`).

Part of :mod:`infodecomp.data.shapes`, whose docstring states the world's conventions.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import numpy as np
import torch
from PIL import Image
from scipy import ndimage

from .scenes import COLOURS, NUMBERS, RELATIONS, SHAPES, SINGULARS, SIZES, Scene, relation, shape_template

__all__ = [
    "ParsedObject", "colour_labels", "parse_scene", "NounPhrase", "CaptionClaim", "parse_caption", "match_report",
    "caption_matches",
]


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


def is_true_of(text: str, scene: Scene) -> bool:
    """Whether ``text`` is a grammatical caption that is true of ``scene`` (loose relation rule)."""
    try:
        return caption_matches(text, scene)
    except ValueError:  # outside the grammar: a shuffled caption, never true by construction
        return False
