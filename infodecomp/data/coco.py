"""MS-COCO 2017 val caption tables of the paper: COCO-IT, COCO100-IT, COCO-WL (docs/protocol.md#coco).

Tables
    :func:`read_table` reads a table as the reference did (``pandas.read_csv``; here with every cell kept as the
    exact string of the file) and returns the **raw** columns unchanged — ``Image ID``, ``Label``,
    ``correct_obj+context``, ``context``, ``correct_obj``, ``context_`` (COCO100-IT, COCO-WL) and COCO-WL's
    unnamed 7th column (pandas calls it ``Unnamed: 6``) — beside **clean** ones: ``image_id`` (int), ``label`` and
    ``word`` (stripped: COCO-WL has " green and yellow", " in front of"), ``caption``, ``context``/``context_``
    text with whitespace runs collapsed and ends stripped (raw captions end in spaces or "\\n"), ``word_type``
    ("noun" for the IT tables; COCO-WL's column with its "perp" typo read as "prep"), and
    ``context_whole_word`` (the word deleted as a whole word, not as a substring: docs/protocol.md#b22).
Rows (:class:`CocoLocalization`)
    The "Localization / heat maps" dicts of the project's row contract, with the image read from
    ``val2017/`` via ``instances_val2017.json``'s ``file_name`` and the mask = union of every instance of the
    row's ``Label`` category in that image, crowd annotations included (as the reference's ``CocoDataset``).
    Both are squashed to ``size`` × ``size`` (bilinear image, nearest-neighbour mask; 512 as the reference;
    ``size=None`` keeps the original). Extra keys: ``image_id``, ``mask_valid``.
    **COCO-WL labels** ("run", "two", "behind", …) are not COCO categories; the reference then silently
    unions ALL objects of the image (docs/protocol.md#b24). Here such a row gets an all-False mask and
    ``mask_valid=False`` (``unknown_label="empty"``, default), or raises (``"raise"``), or — only when asked for by name
    — gets the reference's union of all objects, still flagged ``mask_valid=False`` (``"all_objects"``).
Intervention view (:func:`coco100_it_intervention`)
    COCO100-IT rows with the "Intervention" keys: ``omit_prompt`` (whole-word, case-insensitive ``word`` and
    ``word + "s"`` → "_", docs/protocol.md#prompts) and ``swap_prompt`` / ``swap_word`` from the swap table of
    docs/protocol.md#intervention-solver — ``swap="faithful"`` swaps EVERY listed word of the caption through the
    reference's two-way table (whose "monkeys" entry collides: "persons" → "monkeys" but "monkeys" → "people";
    replacements lower-cased); ``swap="corrected"`` swaps only the row's word (and its "+s" plural), keeping its
    capitalisation.
COCO10 (:func:`coco10`)
    The 10-row subset that the reference's MMSE-curve views need but do not ship (docs/protocol.md#coco10,
    docs/protocol.md#b28), defined here by a rule: the FIRST row of each COCO100-IT category, in the table's category
    order (airplane, bear, bed, cat, dog, elephant, horse, person, teddy bear, zebra).
Builder (:func:`build_coco_it`)
    Regenerates COCO-IT from ``instances_val2017.json`` + ``captions_val2017.json`` by the algorithm of
    docs/protocol.md#coco-it: ``python -m infodecomp.data.coco build-coco-it --root DATASETS``.

Files are looked up under a data root laid out as :mod:`infodecomp.data.download` writes it
(``ROOT/coco/{COCO-IT.csv, val2017/, annotations/}``); passing the ``coco`` folder itself also works.
"""

from __future__ import annotations

import argparse
import csv
import functools
import io
import json
import os
import re
import sys
import warnings
from collections import defaultdict
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image
from tqdm.auto import tqdm

from ..checks import contained_path, load_image
from ..text import contains_word, omit_word, swap_words

#: Known tables: name → file name under ``ROOT/coco``.
TABLES: dict[str, str] = {"coco-it": "COCO-IT.csv", "coco100-it": "COCO100-IT.csv", "coco-wl": "COCO-WL.csv"}
#: Raw columns common to the three tables, in file order.
RAW_COLUMNS = ("Image ID", "Label", "correct_obj+context", "context", "correct_obj")
#: Word types of COCO-WL in row-block order (after fixing the "perp" typo, docs/protocol.md#b35); the IT tables are all
#: "noun".
WORD_TYPES = ("verb", "num", "adj", "adv", "prep", "pronoun", "conj")
_WORD_TYPE_FIXES = {"perp": "prep"}
#: COCO100-IT's categories in row-block order (the plotting code of the reference relies on it).
COCO100_CATEGORIES = ("airplane", "bear", "bed", "cat", "dog", "elephant", "horse", "person", "teddy bear", "zebra")

#: The image-editing swap pairs of docs/protocol.md#intervention-solver (each works both ways, with "+s" plurals).
SWAP_PAIRS: tuple[tuple[str, str], ...] = (
    ("dog", "cat"), ("zebra", "horse"), ("bed", "table"), ("bear", "elephant"), ("airplane", "kite"),
    ("person", "monkey"), ("people", "monkeys"), ("teddy bear", "robot"),
)


# ---------------------------------------------------------------------------------------------------------
# Locating files
# ---------------------------------------------------------------------------------------------------------


def coco_dir(root: str | os.PathLike) -> Path:
    """The folder holding the tables, ``val2017/`` and ``annotations/``: ``root/coco`` when it exists, else
    ``root`` itself."""
    root = Path(root)
    return root / "coco" if (root / "coco").is_dir() else root


def _missing(what: Path, group: str, root) -> FileNotFoundError:
    return FileNotFoundError(f"{what} not found; fetch it with `python -m infodecomp.data.download {group} "
                             f"--root {root}` (see `--list`)")


def table_path(table: str | os.PathLike, root: str | os.PathLike | None = None) -> Path:
    """Path of a table given by name ("coco-it", "coco100-it", "coco-wl", under ``root``) or by path."""
    if isinstance(table, str) and table.lower() in TABLES:
        if root is None:
            raise ValueError(f"table {table!r} given by name needs root= (the data root of the download step)")
        path = coco_dir(root) / TABLES[table.lower()]
        if not path.is_file():
            raise _missing(path, "coco-tables", root)
        return path
    path = Path(table)
    if not path.is_file():
        raise FileNotFoundError(f"table {table!r} is neither a known name {sorted(TABLES)} nor an existing file")
    return path


def _table_name(path: Path) -> str:
    for name, fname in TABLES.items():
        if path.name == fname:
            return name
    return path.stem.lower()


# ---------------------------------------------------------------------------------------------------------
# Tables
# ---------------------------------------------------------------------------------------------------------


def clean_text(s: str) -> str:
    """Whitespace runs (including the raw captions' trailing "\\n") collapsed to one space, ends stripped."""
    return " ".join(s.split())


def context_placeholder(caption: str, word: str) -> str:
    """``caption`` with the whole word ``word`` (any case, no "+s") replaced by "_" — the ``context_`` column
    for a table that lacks one (COCO-IT). A word found only inside another word is replaced as a substring."""
    if contains_word(caption, word, plural=False):
        return omit_word(caption, word, plural=False)
    return caption.replace(word, "_")


def context_whole_word(caption: str, word: str) -> str:
    """``caption`` with the whole word ``word`` (any case, no "+s") deleted and the spaces tidied — the corrected
    context (the reference's ``context`` deletes substrings, case-sensitively: "bedroom" → "room", and keeps
    "Toilet" when the word is "toilet", docs/protocol.md#b22). A word found only inside another word is deleted as a
    substring (none of the three tables has such a row)."""
    if contains_word(caption, word, plural=False):
        return omit_word(caption, word, placeholder="", plural=False)
    return clean_text(caption.replace(word, ""))


#: The largest image id a table may hold: ids are read as int64 (COCO's are below 10**7).
_MAX_IMAGE_ID = 2 ** 63 - 1


def _read_csv_text(path: Path) -> str:
    """The text of the CSV at ``path``, checked record by record before pandas reads it: ``ValueError`` naming
    the file and the line for bytes that are not UTF-8 (a latin-1 file, say), a quote left open, or a row
    whose number of fields differs from the header's (pandas would fail on more fields with a message that
    names no file, and pad fewer fields with empty cells without a word)."""
    data = path.read_bytes()
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        line = data[:err.start].count(b"\n") + 1
        raise ValueError(f"{path}: line {line} is not UTF-8 (byte 0x{data[err.start]:02x} at offset {err.start}); "
                         "expected a UTF-8 CSV: re-save it as UTF-8 (e.g. `iconv -f latin1 -t utf-8`)") from None
    reader = csv.reader(io.StringIO(text, newline=""), strict=True)
    start, header = 1, None
    try:
        for k, row in enumerate(reader):
            if header is None:
                header = row
            elif row and len(row) != len(header):
                raise ValueError(f"{path}: line {start} (data row {k}) has {len(row)} fields, the header has "
                                 f"{len(header)}; expected one field per column (a caption with a comma must be "
                                 "quoted)")
            start = reader.line_num + 1
    except csv.Error as err:
        raise ValueError(f"{path}: the record starting at line {start}: {err} (a quote left open?); expected a CSV "
                         "with every quoted field closed") from None
    if header is None:
        raise ValueError(f"{path} is empty; expected a CSV whose header starts {list(RAW_COLUMNS)}")
    return text


def _check_table(path: Path, raw) -> None:
    """Raise ``ValueError`` naming the file and the rows whose cells cannot be right: an ``Image ID`` that is not
    an integer, an empty label / word / caption, a word that does not occur in its caption (its context would be
    the caption itself and its CMI exactly 0), or a context that equals the caption."""
    problems = []
    for k, (img, label, caption, context, word) in enumerate(zip(*(raw[c] for c in RAW_COLUMNS))):
        where = f"row {k} (data row {k + 1} after the header, Image ID {img!r})"
        if not re.fullmatch(r"\s*\d+\s*", img) or int(img) > _MAX_IMAGE_ID:
            problems.append(f"{where}: 'Image ID' is {img!r}, expected a non-negative integer below 2**63")
        for col, v in (("Label", label), ("correct_obj", word), ("correct_obj+context", caption)):
            if not v.strip():
                problems.append(f"{where}: {col!r} is empty")
        w, c = word.strip(), clean_text(caption)
        if w and c and w.lower() not in c.lower():
            problems.append(f"{where}: the word {w!r} does not occur in the caption {c!r}, so its context would be "
                            "the caption itself and its CMI exactly 0")
        elif w and c and clean_text(context) == c:
            problems.append(f"{where}: 'context' equals the caption {c!r}: the word {w!r} was not deleted")
    if problems:
        more = f" (and {len(problems) - 5} more)" if len(problems) > 5 else ""
        raise ValueError(f"{path}: {len(problems)} bad cell(s){more}:\n  " + "\n  ".join(problems[:5]))


def read_table(table: str | os.PathLike, root: str | os.PathLike | None = None):
    """A caption table as a ``pandas.DataFrame``: the raw columns (exact strings of the file) and clean ones.

    table: "coco-it" | "coco100-it" | "coco-wl" (read from ``coco_dir(root)``) or a path to a CSV in one of
    these formats. Returns one row per CSV row, index 0..N-1; ``df.attrs["table"]`` holds the table name and
    ``df.attrs["path"]`` the file.

    Raw columns, prefixed "raw:" (``raw:Image ID``, ``raw:Label``, ``raw:correct_obj+context``,
    ``raw:context``, ``raw:correct_obj``, ``raw:context_`` where the file has it, and ``raw:word_type`` for
    COCO-WL's unnamed 7th column): the file's cells as strings, untouched.
    Every row is checked first (:func:`_check_table`): a bad cell raises ``ValueError`` naming the file and the
    row. Clean columns: ``image_id`` int; ``label``, ``word`` (= correct_obj) stripped; ``caption``, ``context``,
    ``context_`` through :func:`clean_text` (``context_`` made by :func:`context_placeholder` for COCO-IT, which
    has none); ``context_whole_word`` (:func:`context_whole_word`); ``word_type`` ("noun" for the IT tables,
    COCO-WL's column with "perp" read as "prep"). Raises ``ValueError`` for a file whose first five columns are
    not COCO-IT's.
    """
    path = table_path(table, root)
    # dtype=str + keep_default_na=False: every cell is the file's exact string (no NaN, no numeric parsing);
    # for the three reference files this equals the reference's pd.read_csv(...).fillna("") cell by cell.
    raw = pd.read_csv(io.StringIO(_read_csv_text(path)), dtype=str, keep_default_na=False)
    if tuple(raw.columns[:5]) != RAW_COLUMNS:
        raise ValueError(f"{path}: expected the columns {list(RAW_COLUMNS)} first, got {list(raw.columns)}")
    _check_table(path, raw)
    names = {c: f"raw:{c}" for c in raw.columns}
    if len(raw.columns) > 6:  # COCO-WL: the 7th column has no header (pandas: "Unnamed: 6") and holds the type
        names[raw.columns[6]] = "raw:word_type"
    out = raw.rename(columns=names)
    out["image_id"] = raw["Image ID"].astype(int)
    out["label"] = raw["Label"].str.strip()
    out["word"] = raw["correct_obj"].str.strip()
    out["caption"] = raw["correct_obj+context"].map(clean_text)
    out["context"] = raw["context"].map(clean_text)
    if "context_" in raw.columns:
        out["context_"] = raw["context_"].map(clean_text)
    else:
        out["context_"] = [context_placeholder(c, w) for c, w in zip(out["caption"], out["word"])]
    out["context_whole_word"] = [context_whole_word(c, w) for c, w in zip(out["caption"], out["word"])]
    if "raw:word_type" in out.columns:
        out["word_type"] = out["raw:word_type"].str.strip().map(lambda t: _WORD_TYPE_FIXES.get(t, t))
    else:
        out["word_type"] = "noun"
    out.attrs["table"] = _table_name(path)
    out.attrs["path"] = str(path)
    return out


def coco10_indices(df) -> list[int]:
    """Row positions of COCO10 in a COCO100-IT frame: the first row of each category, in the table's order of
    first appearance (the reference leaves COCO10 undefined; this is the project's rule, docs/protocol.md#coco10)."""
    seen, out = set(), []
    for i, label in enumerate(df["label"]):
        if label not in seen:
            seen.add(label)
            out.append(i)
    return out


# ---------------------------------------------------------------------------------------------------------
# Prompt interventions (docs/protocol.md#prompts, docs/protocol.md#intervention-solver)
# ---------------------------------------------------------------------------------------------------------


def faithful_swap_table(pairs: Sequence[tuple[str, str]] = SWAP_PAIRS) -> dict[str, str]:
    """The reference's swap dictionary: for each pair (a, b), in order, a→b, b→a, a+"s"→b+"s", b+"s"→a+"s".

    A later pair overwrites an earlier entry's value (keeping its position), so "monkeys" first maps to
    "persons" (from person/monkey) and is then overwritten to "people" (from people/monkeys): the table is not
    an involution ("persons" → "monkeys" → "people"). It also holds junk keys ("peoples", "monkeyss").
    """
    table: dict[str, str] = {}
    for a, b in pairs:
        for k, v in ((a, b), (b, a), (a + "s", b + "s"), (b + "s", a + "s")):
            table[k] = v
    return table


#: Plurals that are not "+s" (for the corrected table).
IRREGULAR_PLURALS: dict[str, str] = {"person": "people"}


def _plural(word: str) -> str:
    return IRREGULAR_PLURALS.get(word, word + "s")


def corrected_swap_table(pairs: Sequence[tuple[str, str]] = SWAP_PAIRS) -> dict[str, str]:
    """A one-to-one swap table: each pair (a, b) both ways, and their plurals both ways (person → people, else
    "+s"), for pairs of singular words. So person ↔ monkey and people ↔ monkeys, with no "persons" and no
    collision. Raises ``ValueError`` if a word would get two different partners."""
    table: dict[str, str] = {}

    def put(k: str, v: str) -> None:
        if table.get(k, v) != v:
            raise ValueError(f"swap table collision: {k!r} → {table[k]!r} and → {v!r}")
        table[k] = v

    plurals = set(IRREGULAR_PLURALS.values())
    for a, b in pairs:
        put(a, b)
        put(b, a)
    for a, b in pairs:
        if a not in plurals and b not in plurals:
            put(_plural(a), _plural(b))
            put(_plural(b), _plural(a))
    return table


def swap_faithful(caption: str, table: Mapping[str, str] | None = None) -> str:
    """Every whole-word, case-insensitive occurrence of any key of ``table`` replaced by its value, the way the
    reference's image-editing script does it: one regex alternation in table order, replacement looked up by the
    matched text lower-cased (so "Dog" → "cat": capitalisation is lost). Default table:
    :func:`faithful_swap_table`. Unchanged if nothing matches."""
    table = faithful_swap_table() if table is None else dict(table)
    if any(k != k.lower() for k in table):
        raise ValueError("swap table keys must be lower case (the match is looked up lower-cased)")
    pattern = re.compile(r"\b(?:" + "|".join(re.escape(k) for k in table) + r")\b", flags=re.IGNORECASE)
    return pattern.sub(lambda m: table[m.group(0).lower()], caption)


def omit_prompt(caption: str, word: str) -> str:
    """The omit prompt of Table 4: whole-word, case-insensitive ``word`` and ``word + "s"`` → "_"
    (docs/protocol.md#prompts)."""
    return omit_word(caption, word, placeholder="_", plural=True)


def swap_prompt(caption: str, word: str, swap: str = "faithful") -> tuple[str, str]:
    """(swap prompt, swap word) for a COCO100-IT row.

    swap="faithful": every listed word of the caption is swapped by :func:`swap_faithful`; the swap word is
    the faithful table's entry for ``word`` (``word`` itself when absent, as in the reference).
    swap="corrected": only ``word`` (whole word, any case, and its "+s" plural) is replaced by its partner in
    :func:`corrected_swap_table`, keeping its capitalisation; raises ``ValueError`` if ``word`` has no partner.
    """
    if swap == "faithful":
        table = faithful_swap_table()
        return swap_faithful(caption, table), table.get(word, word)
    if swap == "corrected":
        table = corrected_swap_table()
        key = word.lower()
        if key not in table:
            raise ValueError(f"no swap partner for {word!r}; the table covers {sorted(table)}")
        mapping = {key: table[key]}
        if _plural(key) in table and _plural(key) != key:  # a singular word: its plural goes with it
            mapping[_plural(key)] = table[_plural(key)]
        return swap_words(caption, mapping, plural=False), table[key]
    raise ValueError(f"swap must be 'faithful' or 'corrected', got {swap!r}")


# ---------------------------------------------------------------------------------------------------------
# COCO instance annotations → masks
# ---------------------------------------------------------------------------------------------------------


class _Instances:
    """Index of an ``instances_*.json``: images by id, annotations by image id (file order), category ids."""

    def __init__(self, path: Path):
        data = _read_json(path)
        if not isinstance(data, dict):
            raise ValueError(f"{path} is not a COCO instances file (a JSON {type(data).__name__}, not an object)")
        for key in ("images", "annotations", "categories"):
            if not isinstance(data.get(key), list):
                raise ValueError(f"{path} is not a COCO instances file (no {key!r} list)")
        _check_entries(path, "images", data["images"], {"id": int, "file_name": str, "height": int, "width": int})
        _check_entries(path, "annotations", data["annotations"],
                       {"image_id": int, "category_id": int, "segmentation": (list, dict)})
        _check_entries(path, "categories", data["categories"], {"id": int, "name": str})
        self.path = path
        self.images = {im["id"]: im for im in data["images"]}
        self.anns = defaultdict(list)
        for a in data["annotations"]:
            self.anns[a["image_id"]].append(a)
        self.cat_ids = {c["name"]: c["id"] for c in data["categories"]}


def _read_json(path: Path):
    """A JSON file, or ``ValueError`` naming it (and the position) when it is not valid JSON."""
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise ValueError(f"{path} is not valid JSON ({err}); fetch it again (python -m infodecomp.data.download "
                         "--list)") from err


def _check_entries(path: Path, key: str, entries: list, fields: dict) -> None:
    """Raise ``ValueError`` naming the file and the entry unless every entry of ``entries`` (the list ``key``) is
    an object with ``fields`` of the given types (ints must not be bools; sizes must be positive)."""
    for k, e in enumerate(entries):
        if not isinstance(e, dict):
            raise ValueError(f"{path}: {key}[{k}] is a JSON {type(e).__name__}, expected an object")
        for name, kind in fields.items():
            v = e.get(name)
            ok = isinstance(v, kind) and not isinstance(v, bool)
            if ok and name in ("height", "width"):
                ok = v > 0
            if not ok:
                want = kind.__name__ if isinstance(kind, type) else " or ".join(t.__name__ for t in kind)
                raise ValueError(f"{path}: {key}[{k}] (id {e.get('id')!r}) has {name} = {v!r}; expected {want}"
                                 f"{' > 0' if name in ('height', 'width') else ''}")


@functools.lru_cache(maxsize=2)
def _load_instances(path: str, mtime: float) -> _Instances:
    return _Instances(Path(path))


def instances_index(path: str | os.PathLike) -> _Instances:
    """The parsed instances file (cached per path and modification time)."""
    path = Path(path)
    return _load_instances(str(path.resolve()), path.stat().st_mtime)


def annotation_mask(ann: Mapping, height: int, width: int) -> np.ndarray:
    """Binary mask ``[height, width]`` bool of one COCO annotation (polygons, uncompressed or compressed RLE)."""
    from pycocotools import mask as mask_utils  # deferred: a compiled extension, only for COCO's masks

    seg = ann["segmentation"]
    if isinstance(seg, list):  # polygons
        rle = mask_utils.merge(mask_utils.frPyObjects(seg, height, width))
    elif isinstance(seg, dict) and isinstance(seg.get("counts"), list):  # uncompressed RLE (crowd)
        rle = mask_utils.frPyObjects(seg, height, width)
    elif isinstance(seg, dict):
        rle = seg
    else:
        raise ValueError(f"annotation {ann.get('id')}: unknown segmentation type {type(seg).__name__}")
    with warnings.catch_warnings():  # pycocotools 2.0.x under numpy 2 warns about __array__(copy=) on every call
        warnings.filterwarnings("ignore", message=".*__array__ implementation doesn't accept a copy keyword",
                                category=DeprecationWarning)
        return mask_utils.decode(rle).astype(bool)


def category_mask(index: _Instances, image_id: int, category: str | None) -> np.ndarray:
    """Union ``[H, W]`` bool of every instance (crowd included) of ``category`` in the image; ``None``: of every
    object of the image (what the reference does for a non-category label, docs/protocol.md#b24)."""
    im = index.images[image_id]
    h, w = im["height"], im["width"]
    mask = np.zeros((h, w), dtype=bool)
    cat_id = None if category is None else index.cat_ids[category]
    for a in index.anns.get(image_id, ()):
        if cat_id is None or a["category_id"] == cat_id:
            try:
                m = annotation_mask(a, h, w)
            except Exception as err:  # pycocotools' own errors say nothing of the file
                raise ValueError(f"{index.path}: annotation {a.get('id')!r} of image {image_id} has an unreadable "
                                 f"segmentation ({type(err).__name__}: {err})") from err
            if m.shape != mask.shape:
                raise ValueError(f"{index.path}: annotation {a.get('id')!r} of image {image_id} decodes to a "
                                 f"{m.shape} mask, but the image is {h}×{w}")
            mask |= m
    return mask


_RESAMPLE = {"nearest": 0, "lanczos": 1, "bilinear": 2, "bicubic": 3, "box": 4, "hamming": 5}


def _size_wh(size) -> tuple[int, int] | None:
    if size is None:
        return None
    if isinstance(size, (int, np.integer)) and not isinstance(size, bool) and size > 0:
        return int(size), int(size)
    if isinstance(size, (tuple, list)) and len(size) == 2 and all(isinstance(s, (int, np.integer)) and s > 0
                                                                  for s in size):
        return int(size[0]), int(size[1])
    raise ValueError(f"size must be None, a positive int or a (width, height) pair, got {size!r}")


# ---------------------------------------------------------------------------------------------------------
# Datasets
# ---------------------------------------------------------------------------------------------------------


class CocoLocalization(Sequence):
    """Rows of a COCO caption table in the "Localization / heat maps" format (see the module docstring).

    table: "coco-it" | "coco100-it" | "coco-wl" or a CSV path. root: the data root (``ROOT`` or ``ROOT/coco``).
    image_dir, instances: override ``coco_dir(root)/val2017`` and ``.../annotations/instances_val2017.json``.
    size: output side in pixels (int), ``(width, height)``, or None for the original size; default 512 as
    the reference. image_resample: "bilinear" (reference) | "bicubic" | "lanczos" | …; masks are always
    nearest-neighbour. raw_text: rows carry the raw CSV strings instead of the clean ones.
    context: "faithful" (the CSV's substring deletion) | "whole-word" (the corrected deletion, docs/protocol.md#b22).
    unknown_label: what a row whose label is not a COCO category gets: "empty" (all-False mask,
    ``mask_valid=False``), "raise" (``ValueError``), or "all_objects" (the reference's union of every object,
    flagged ``mask_valid=False``). indices: a subset of table rows (positions), in the given order.

    Row: ``{"id", "image" (PIL RGB), "mask" (bool [H, W]), "caption", "word", "label", "context",
    "context_", "word_type", "image_id" (int), "mask_valid" (bool)}``; ``id`` = "<table>-<row:05d>-<image id>"
    (the row of the full table, so a subset keeps its ids). :meth:`text_row` gives the text keys without
    reading any image.
    """

    def __init__(self, table: str | os.PathLike = "coco-it", root: str | os.PathLike | None = None, *,
                 image_dir: str | os.PathLike | None = None, instances: str | os.PathLike | None = None,
                 size=512, image_resample: str = "bilinear", raw_text: bool = False, context: str = "faithful",
                 unknown_label: str = "empty", indices: Sequence[int] | None = None):
        if context not in ("faithful", "whole-word"):
            raise ValueError(f"context must be 'faithful' or 'whole-word', got {context!r}")
        if unknown_label not in ("empty", "raise", "all_objects"):
            raise ValueError(f"unknown_label must be 'empty', 'raise' or 'all_objects', got {unknown_label!r}")
        if image_resample not in _RESAMPLE:
            raise ValueError(f"image_resample must be one of {sorted(_RESAMPLE)}, got {image_resample!r}")
        self.size = _size_wh(size)
        self.df = read_table(table, root)
        self.name = self.df.attrs["table"]
        base = coco_dir(root) if root is not None else Path(self.df.attrs["path"]).parent
        self.image_dir = Path(image_dir) if image_dir is not None else base / "val2017"
        self.instances = Path(instances) if instances is not None else base / "annotations" / "instances_val2017.json"
        self.root = root
        self.image_resample, self.raw_text, self.context, self.unknown_label = \
            image_resample, raw_text, context, unknown_label
        n = len(self.df)
        idx = list(range(n)) if indices is None else [int(i) for i in indices]
        bad = [i for i in idx if not 0 <= i < n]
        if bad:
            raise IndexError(f"indices {bad[:5]} out of range for {self.name} ({n} rows)")
        self.indices = idx

    def __len__(self) -> int:
        return len(self.indices)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.name!r}, rows={len(self)}, size={self.size})"

    def _pos(self, i) -> int:
        if not isinstance(i, (int, np.integer)) or isinstance(i, bool):
            raise TypeError(f"index must be an int, got {type(i).__name__}")
        if not -len(self) <= i < len(self):
            raise IndexError(f"index {i} out of range for {self!r}")
        return self.indices[int(i) % len(self)]

    def text_row(self, i: int) -> dict:
        """The text keys of row ``i`` (``id``, ``caption``, ``word``, ``label``, ``context``, ``context_``,
        ``word_type``, ``image_id``) — no image is read."""
        k = self._pos(i)
        r = self.df.iloc[k]
        if self.raw_text:
            caption, word, label = r["raw:correct_obj+context"], r["raw:correct_obj"], r["raw:Label"]
            context = r["raw:context"] if self.context == "faithful" else r["context_whole_word"]
            context_ = r["raw:context_"] if "raw:context_" in r.index else r["context_"]  # COCO-IT: made
        else:
            caption, word, label = r["caption"], r["word"], r["label"]
            context = r["context"] if self.context == "faithful" else r["context_whole_word"]
            context_ = r["context_"]
        image_id = int(r["image_id"])
        return {"id": f"{self.name}-{k:05d}-{image_id}", "caption": caption, "word": word, "label": label,
                "context": context, "context_": context_, "word_type": r["word_type"], "image_id": image_id}

    def index(self) -> _Instances:
        if not self.instances.is_file():
            raise _missing(self.instances, "coco-annotations2017", self.root or "ROOT")
        return instances_index(self.instances)

    def image_and_mask(self, image_id: int, label: str):
        """(PIL RGB image, bool mask [H, W], mask_valid) for an image id and a (clean) label, resized."""
        index = self.index()
        if image_id not in index.images:
            raise KeyError(f"image id {image_id} is not in {self.instances}")
        info = index.images[image_id]
        path = contained_path(self.image_dir, info["file_name"],
                              f"file_name of image {image_id} in {self.instances}")  # never outside the folder
        if not path.is_file():
            raise _missing(path, "coco-val2017", self.root or "ROOT")
        try:
            image = load_image(path)  # size limit, EXIF orientation, 8-bit RGB
        except ValueError as err:  # truncated, corrupt, not an image, too large
            raise ValueError(f"image {path} (image id {image_id}) cannot be read ({err}); fetch it again: "
                             "python -m infodecomp.data.download coco-val2017") from err
        if label in index.cat_ids:
            mask = category_mask(index, image_id, label)
            valid = bool(mask.any())  # a category word with no annotated instance: nothing to localise
        elif self.unknown_label == "raise":
            raise ValueError(f"label {label!r} (image {image_id}) is not a COCO category, so it has no mask; "
                             "use unknown_label='empty' to get an all-False mask")
        elif self.unknown_label == "all_objects":
            mask, valid = category_mask(index, image_id, None), False
        else:
            mask, valid = np.zeros((info["height"], info["width"]), dtype=bool), False
        if mask.shape != (image.height, image.width):
            raise ValueError(f"{path}: image is {image.width}×{image.height} but its annotations say "
                             f"{info['width']}×{info['height']}")
        if self.size is not None:
            image = image.resize(self.size, _RESAMPLE[self.image_resample])
            mask = np.asarray(Image.fromarray(mask).resize(self.size, Image.NEAREST), dtype=bool)
        return image, mask, valid

    def __getitem__(self, i):
        if isinstance(i, slice):
            return [self[k] for k in range(*i.indices(len(self)))]
        row = self.text_row(i)
        label = row["label"].strip()
        row["image"], row["mask"], row["mask_valid"] = self.image_and_mask(row["image_id"], label)
        return row


class CocoIntervention(CocoLocalization):
    """COCO100-IT rows with the "Intervention" keys added to the localisation keys: ``omit_prompt``,
    ``swap_prompt``, ``swap_word`` (see :func:`swap_prompt`; ``swap`` = "faithful" | "corrected"). The
    prompts are built from the row's caption (raw or clean, as ``raw_text``). ``mask`` is the object's
    category mask (where an edit of the word should act)."""

    def __init__(self, table: str | os.PathLike = "coco100-it", root: str | os.PathLike | None = None, *,
                 swap: str = "faithful", **kwargs):
        if swap not in ("faithful", "corrected"):
            raise ValueError(f"swap must be 'faithful' or 'corrected', got {swap!r}")
        super().__init__(table, root, **kwargs)
        self.swap = swap

    def text_row(self, i: int) -> dict:
        row = super().text_row(i)
        word = row["word"].strip()
        row["omit_prompt"] = omit_prompt(row["caption"], word)
        row["swap_prompt"], row["swap_word"] = swap_prompt(row["caption"], word, self.swap)
        return row


def coco_it(root, **kwargs) -> CocoLocalization:
    """COCO-IT localisation rows (6,927)."""
    return CocoLocalization("coco-it", root, **kwargs)


def coco100_it(root, **kwargs) -> CocoLocalization:
    """COCO100-IT localisation rows (100)."""
    return CocoLocalization("coco100-it", root, **kwargs)


def coco_wl(root, **kwargs) -> CocoLocalization:
    """COCO-WL localisation rows (70; masks are all-False with ``mask_valid=False``, see ``unknown_label``)."""
    return CocoLocalization("coco-wl", root, **kwargs)


def coco10(root, **kwargs) -> CocoLocalization:
    """COCO10: the first COCO100-IT row of each category, in order (10 rows; ids as in COCO100-IT)."""
    df = read_table("coco100-it", root)
    return CocoLocalization("coco100-it", root, indices=coco10_indices(df), **kwargs)


def coco100_it_intervention(root, *, size=None, swap: str = "faithful", **kwargs) -> CocoIntervention:
    """COCO100-IT intervention rows (100). ``size=None`` by default: the reference hands the original image to
    the pipeline, which resizes it (pass ``size=512`` for a squashed copy); ``swap`` as :func:`swap_prompt`."""
    return CocoIntervention("coco100-it", root, size=size, swap=swap, **kwargs)


def dataset(name: str, root, **kwargs) -> CocoLocalization:
    """A COCO dataset by name: "coco-it", "coco100-it", "coco-wl", "coco10", "coco100-it-intervention"."""
    makers = {"coco-it": coco_it, "coco100-it": coco100_it, "coco-wl": coco_wl, "coco10": coco10,
              "coco100-it-intervention": coco100_it_intervention}
    if name not in makers:
        raise ValueError(f"unknown COCO dataset {name!r}; expected one of {sorted(makers)}")
    return makers[name](root, **kwargs)


# ---------------------------------------------------------------------------------------------------------
# Rebuilding COCO-IT (docs/protocol.md#coco-it)
# ---------------------------------------------------------------------------------------------------------


def _load_json(obj) -> dict:
    if isinstance(obj, Mapping):
        return obj
    with open(obj) as f:
        return json.load(f)


def build_coco_it(instances, captions, *, plural=None, progress: bool = True):
    """COCO-IT rebuilt from COCO annotation files (paths or parsed dicts), as a DataFrame with its 5 columns.

    Algorithm (docs/protocol.md#coco-it): for every image, in the instances file's image order, and every distinct
    category of its annotations, in order of first annotation: singular = the category name, plural =
    ``plural(name)`` (default ``inflect.engine().plural``: person → people, skis → ski); take the FIRST caption
    of the image (captions file order) that contains either as a whole word, case-sensitively (regex ``\\b``);
    ``correct_obj`` = the plural if it matches that caption, else the singular; ``context`` = the caption with
    every substring occurrence of ``correct_obj`` removed. At most one row per (image, category); a category
    with no matching caption gives no row. Captions are kept raw (trailing spaces / newlines included).
    """
    if plural is None:
        try:
            import inflect  # heavy (seconds to import): only when COCO-IT is rebuilt without a plural=
        except ImportError as err:
            raise ImportError("rebuilding COCO-IT needs inflect (`pip install inflect`)") from err
        plural = inflect.engine().plural
    inst, caps = _load_json(instances), _load_json(captions)
    names = {c["id"]: c["name"] for c in inst["categories"]}
    anns, texts = defaultdict(list), defaultdict(list)
    for a in inst["annotations"]:
        anns[a["image_id"]].append(a["category_id"])
    for a in caps["annotations"]:
        texts[a["image_id"]].append(a["caption"])
    forms = {}
    rows = []
    for im in tqdm(inst["images"], desc="COCO-IT", disable=not progress):
        img_id = im["id"]
        done = set()
        for cat in anns.get(img_id, ()):
            name = names[cat]
            if name in done:
                continue
            done.add(name)
            if name not in forms:
                pl = plural(name)
                forms[name] = (pl, re.compile(rf"\b{re.escape(name)}\b"), re.compile(rf"\b{re.escape(pl)}\b"))
            pl, sing_re, pl_re = forms[name]
            for caption in texts.get(img_id, ()):
                has_pl = pl_re.search(caption) is not None
                if has_pl or sing_re.search(caption):
                    word = pl if has_pl else name
                    rows.append((img_id, name, caption, caption.replace(word, ""), word))
                    break
    return pd.DataFrame(rows, columns=list(RAW_COLUMNS))


def write_table(df, path: str | os.PathLike) -> Path:
    """Write a COCO-IT-format frame as the reference wrote it (``to_csv(index=False)``, "\\n" line ends),
    atomically (``.part`` then rename)."""
    path = Path(path)
    part = path.with_name(path.name + ".part")
    df.to_csv(part, index=False, lineterminator="\n")
    os.replace(part, path)
    return path


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m infodecomp.data.coco", description=__doc__.split("\n")[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    b = sub.add_parser("build-coco-it", help="rebuild COCO-IT.csv from the COCO 2017 val annotations")
    b.add_argument("--root", default="datasets", help="data root (annotations under ROOT/coco/annotations)")
    b.add_argument("--instances", help="instances_val2017.json (default: under --root)")
    b.add_argument("--captions", help="captions_val2017.json (default: under --root)")
    b.add_argument("--out", help="output CSV (default: ROOT/coco/COCO-IT.rebuilt.csv)")
    a = p.parse_args(argv)
    ann = coco_dir(a.root) / "annotations"
    inst = Path(a.instances) if a.instances else ann / "instances_val2017.json"
    caps = Path(a.captions) if a.captions else ann / "captions_val2017.json"
    for f in (inst, caps):
        if not f.is_file():
            raise _missing(f, "coco-annotations2017", a.root)
    df = build_coco_it(inst, caps)
    out = write_table(df, a.out or coco_dir(a.root) / "COCO-IT.rebuilt.csv")
    print(f"wrote {len(df)} rows to {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
