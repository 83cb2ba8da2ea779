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

Modules (every public name is re-exported here): ``scenes`` (settings, scene graph, rendering), ``captions``
(annotated captions and word masks), ``sampling`` (random scenes and the training stream), ``parsing`` (reading
generated images and captions back), ``twins`` (ARO's order perturbations and the twins of the paper's datasets).
"""

from __future__ import annotations

from .scenes import (
    BORDER,
    COLOURS,
    DOMINANCE,
    GAP,
    IMAGE_SIZE,
    NUMBERS,
    PLURALS,
    POS_TAGS,
    RELATIONS,
    SHAPES,
    SINGULARS,
    SIZES,
    Object,
    Scene,
    object_masks,
    relation,
    render,
    shape_template,
)
from .captions import (
    CAPTION_KINDS,
    Sample,
    Word,
    caption_text,
    caption_words,
    phrases,
    word_masks,
)
from .sampling import (
    FLIPPED_RELATION,
    NATURAL_RELATION_SHARE,
    P_OBJECTS,
    P_SIZE_WORD,
    place,
    random_sample,
    relation_counterfactual,
    relational_edits,
    sample_kind,
    training_batch,
    training_samples,
)
from .parsing import (
    CaptionClaim,
    NounPhrase,
    ParsedObject,
    caption_matches,
    colour_labels,
    is_true_of,
    match_report,
    parse_caption,
    parse_scene,
)
from .twins import (
    IT100_GROUPS,
    ORDER_PERTURBATIONS,
    TWINS,
    WL_TYPES,
    ShapesTwin,
    coco100_it_twin,
    coco_it_twin,
    coco_wl_twin,
    order_negatives,
    order_twin,
    perturb_order,
    twin,
    vg_attribution_twin,
    vg_relation_twin,
)

# Used by infodecomp.experiments.word_reading to draw a size as the world does.
from .sampling import _pick  # noqa: F401

__all__ = [
    "BORDER",
    "CAPTION_KINDS",
    "caption_matches",
    "is_true_of",
    "caption_text",
    "caption_words",
    "CaptionClaim",
    "coco100_it_twin",
    "coco_it_twin",
    "coco_wl_twin",
    "colour_labels",
    "COLOURS",
    "DOMINANCE",
    "FLIPPED_RELATION",
    "GAP",
    "IMAGE_SIZE",
    "IT100_GROUPS",
    "match_report",
    "NATURAL_RELATION_SHARE",
    "NounPhrase",
    "NUMBERS",
    "Object",
    "object_masks",
    "order_negatives",
    "ORDER_PERTURBATIONS",
    "order_twin",
    "P_OBJECTS",
    "P_SIZE_WORD",
    "parse_caption",
    "parse_scene",
    "ParsedObject",
    "perturb_order",
    "phrases",
    "place",
    "PLURALS",
    "POS_TAGS",
    "random_sample",
    "relation",
    "relation_counterfactual",
    "relational_edits",
    "RELATIONS",
    "render",
    "Sample",
    "sample_kind",
    "Scene",
    "shape_template",
    "SHAPES",
    "ShapesTwin",
    "SINGULARS",
    "SIZES",
    "training_batch",
    "training_samples",
    "twin",
    "TWINS",
    "vg_attribution_twin",
    "vg_relation_twin",
    "WL_TYPES",
    "Word",
    "word_masks",
]
