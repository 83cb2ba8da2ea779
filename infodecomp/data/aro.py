"""ARO relation-testing datasets (Yuksekgonul et al. 2023): VG-Relation, VG-Attribution, COCO-Order,
Flickr30k-Order (docs/protocol.md#aro-data, docs/protocol.md#relation-testing-procedure), as sequences of "Relation
testing" row dicts::

    {"id": str, "image": PIL.Image RGB, "captions": list[str], "true_index": int, "group": str,
     "image_path": str}          # image_path: relative to the dataset folder (extra key)

VG-Relation / VG-Attribution
    One test case per JSON entry (``image_path``, ``bbox_x/y/w/h``, ``true_caption``, ``false_caption``, and
    ``relation_name`` or ``attributes`` [a1, a2]). The image is cropped to the box, then resized (bicubic) to
    ``size`` × ``size`` (512, as the reference; None keeps the crop's size). Captions ``[false, true]``
    (true_index 1, the reference's order) or, with ``true_first=True``, ``[true, false]``. group = the
    relation name (VG-R) or "a1_a2" (VG-A).
COCO-Order / Flickr30k-Order
    One test case per caption of the Karpathy test JSON (``image``: path relative to the dataset folder,
    ``caption``: list). Options: the caption and ARO's four order perturbations of it (p1 shuffle nouns among
    nouns and adjectives among adjectives, p2 shuffle everything else, p3 shuffle within trigrams, p4 shuffle
    the trigrams), every one normalised by :func:`pre_caption`. Captions ``[p4, p3, p2, p1, true]``
    (true_index 4: the reference's ``true_caption_last`` order, where exact score ties resolve against the
    true caption, docs/protocol.md#b16) or, with ``true_first=True``, ARO's native ``[true, p1, p2, p3, p4]``
    (true_index 0). group = "coco-order" / "flickr-order".

Negatives are generated ONCE (numpy ``default_rng([seed, case_index])`` per test case) and saved to a JSON cache
beside the annotation file (:func:`order_cache_path`), so every run, process and shard sees the same negatives (the
reference re-drew them, unseeded, at every construction: docs/protocol.md#b15). The part-of-speech tagger is
pluggable: any callable ``words -> tags`` (Penn tags "NN", "NNS", "NNP", "NNPS" count as nouns and "JJ", "JJR",
"JJS" as adjectives, as in ARO; the coarse tags "noun"/"propn" and "adj" also work). The default is spaCy's
``en_core_web_sm`` (:func:`spacy_tagger`; imported only when a cache must be built). Captions are split into words
by :func:`tokenize` for all four perturbations (ARO used spaCy's tokens for p1/p2 and NLTK's for p3/p4; they agree
on ordinary captions). ``__getitem__`` builds a fresh caption list on every call; stored lists are never mutated
(the reference reversed them in place on each access, docs/protocol.md#b14).

Files (under the data root of :mod:`infodecomp.data.download`): ``ROOT/aro/vg/{visual_genome_relation.json,
visual_genome_attribution.json, images/}``, ``ROOT/aro/coco/{coco_karpathy_test.json, val2014/}``,
``ROOT/aro/flickr/{flickr30k_test.json, flickr30k-images/}``; the dataset folder itself may be passed instead.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import math
import numbers
import os
import re
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from ..checks import box, contained_path, count, load_image
from ..digest import file_sha256
from .shapes import ORDER_PERTURBATIONS, perturb_order

Tagger = Callable[[Sequence[str]], Sequence[str]]

#: Characters that ARO's caption normalisation turns into spaces.
_PRE_CAPTION_CHARS = re.compile(r'[.!"()*#:;~]')
NOUN_TAGS = frozenset({"NN", "NNS", "NNP", "NNPS", "noun", "propn"})
ADJ_TAGS = frozenset({"JJ", "JJR", "JJS", "adj"})
#: Cache file format version (bump when the cache's meaning changes).
CACHE_FORMAT = 1
DEFAULT_TAGGER = "spacy:en_core_web_sm"


# ---------------------------------------------------------------------------------------------------------
# Text
# ---------------------------------------------------------------------------------------------------------


def pre_caption(caption: str, max_words: int = 30) -> str:
    """ARO's caption normalisation: lower-case; ``. ! " ( ) * # : ; ~`` → spaces; whitespace runs → one space;
    ends stripped; at most ``max_words`` space-separated words. (The reference collapses only runs of two or
    more whitespace characters; here a lone tab or newline also becomes a space.)

    >>> pre_caption('A man (smiling) rides a horse.  ')
    'a man smiling rides a horse'
    """
    max_words = count(max_words, "max_words")
    words = _PRE_CAPTION_CHARS.sub(" ", caption.lower()).split()
    return " ".join(words[:max_words])


_CLITICS = ("n't", "'s", "'re", "'ve", "'ll", "'d", "'m")
_EDGE_PUNCT = re.compile(r"^([^\w]*)(.*?)([^\w]*)$", flags=re.DOTALL)


def tokenize(caption: str) -> list[str]:
    """Penn-Treebank-like tokens: whitespace-separated chunks with leading / trailing punctuation split off one
    character at a time and the clitics n't 's 're 've 'll 'd 'm split off ("dog's" → "dog", "'s"; "don't" →
    "do", "n't"). Inner hyphens and apostrophes stay ("t-shirt", "o'clock").

    >>> tokenize('A man, in a t-shirt, isn\\'t "happy".')
    ['A', 'man', ',', 'in', 'a', 't-shirt', ',', 'is', "n't", '"', 'happy', '"', '.']
    """
    out: list[str] = []
    for chunk in caption.split():
        lead, core, trail = _EDGE_PUNCT.match(chunk).groups()
        out.extend(lead)
        if core:
            low = core.lower()
            for c in _CLITICS:
                if low.endswith(c) and len(core) > len(c):
                    out += [core[:-len(c)], core[-len(c):]]
                    break
            else:
                out.append(core)
        out.extend(trail)
    return out


def coarse_tag(tag: str) -> str:
    """"noun", "adj" or "other" for a tagger's tag (Penn or coarse)."""
    t = tag if tag in NOUN_TAGS or tag in ADJ_TAGS else tag.lower()
    return "noun" if t in NOUN_TAGS else "adj" if t in ADJ_TAGS else "other"


def spacy_tagger(model: str = "en_core_web_sm") -> Tagger:
    """The default tagger: spaCy's fine-grained (Penn) tags for pre-split words, as ARO used them.

    Needs ``pip install spacy`` and ``python -m spacy download en_core_web_sm``; raises ``ImportError`` /
    ``OSError`` saying so when either is missing. The returned callable has ``.name`` ("spacy:<model>").
    """
    try:
        import spacy  # optional (the data extra): spaCy's tagger, only for the order sets' perturbations
        from spacy.tokens import Doc  # optional, with spaCy
    except ImportError as err:
        raise ImportError(f"the default part-of-speech tagger needs spaCy and its {model} model: "
                          f"`pip install spacy && python -m spacy download {model}` (or pass tagger=, any callable "
                          "words -> tags)") from err
    try:
        nlp = spacy.load(model, exclude=["parser", "ner", "lemmatizer"])
    except OSError as err:
        raise OSError(f"spaCy is installed but its model {model!r} is not: `python -m spacy download {model}`") \
            from err

    def tag(words: Sequence[str]) -> list[str]:
        doc = Doc(nlp.vocab, words=list(words))
        for _, proc in nlp.pipeline:
            doc = proc(doc)
        return [t.tag_ for t in doc]

    tag.name = f"spacy:{model}"
    tag.version = f"spacy {spacy.__version__}, {model} {nlp.meta.get('version', '?')}"
    return tag


def spacy_available(model: str = "en_core_web_sm") -> bool:
    """Whether spaCy and its ``model`` package are installed (nothing is loaded)."""
    return importlib.util.find_spec("spacy") is not None and importlib.util.find_spec(model) is not None


def lexicon_tagger(nouns: Sequence[str], adjectives: Sequence[str] = ()) -> Tagger:
    """A tagger from word lists (case-insensitive): "noun", "adj", else "other". For tests and small studies;
    ``.name`` identifies the lists (so caches built with different lists never mix)."""
    n = frozenset(w.lower() for w in nouns)
    a = frozenset(w.lower() for w in adjectives)
    if n & a:
        raise ValueError(f"words listed both as nouns and adjectives: {sorted(n & a)}")

    def tag(words: Sequence[str]) -> list[str]:
        return ["noun" if w.lower() in n else "adj" if w.lower() in a else "other" for w in words]

    digest = hashlib.sha256(json.dumps([sorted(n), sorted(a)]).encode()).hexdigest()[:12]
    tag.name = f"lexicon:{digest}"
    return tag


def order_negatives(caption: str, tagger: Tagger, rng: np.random.Generator, *, max_words: int = 30) -> list[str]:
    """ARO's four order perturbations ``[p1, p2, p3, p4]`` of a raw caption, each passed through
    :func:`pre_caption` (one random draw each; like ARO, a draw may equal the true caption)."""
    tokens = tokenize(caption)
    tags = list(tagger(tokens))
    if len(tags) != len(tokens):
        raise ValueError(f"tagger returned {len(tags)} tags for {len(tokens)} words: {tokens}")
    pos = [coarse_tag(t) for t in tags]
    return [pre_caption(" ".join(perturb_order(tokens, pos, kind, rng)), max_words) for kind in ORDER_PERTURBATIONS]


# ---------------------------------------------------------------------------------------------------------
# Files
# ---------------------------------------------------------------------------------------------------------


def _dataset_dir(root: str | os.PathLike, sub: str, marker: str, group: str) -> Path:
    """The folder of one ARO dataset: ``root/aro/<sub>``, ``root/<sub>`` or ``root``, whichever holds ``marker``."""
    root = Path(root)
    for d in (root / "aro" / sub, root / sub, root):
        if (d / marker).is_file():
            return d
    raise FileNotFoundError(f"{marker} not found under {root} (looked in aro/{sub}/, {sub}/ and the root); fetch it "
                            f"with `python -m infodecomp.data.download {group} --root {root}`")


def _read_json(path: Path):
    """A JSON file, or ``ValueError`` naming it (and the position) when it is not valid JSON."""
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise ValueError(f"{path} is not valid JSON ({err})") from err


def _finite(v) -> bool:
    return isinstance(v, numbers.Real) and not isinstance(v, bool) and math.isfinite(v)


def _check_vg_entry(path: Path, k: int, c, group_key: str) -> None:
    """Raise ``ValueError`` naming the file and the entry unless ARO's VG entry ``c`` has usable values."""
    where = f"{path}: entry {k}"
    if not isinstance(c, dict):
        raise ValueError(f"{where} is a JSON {type(c).__name__}, expected an object")
    need = ["image_path", "bbox_x", "bbox_y", "bbox_w", "bbox_h", "true_caption", "false_caption", group_key]
    missing = [n for n in need if n not in c]
    if missing:
        raise ValueError(f"{where} lacks {sorted(missing)}")
    if not isinstance(c["image_path"], str) or not c["image_path"].strip():
        raise ValueError(f"{where}: image_path is {c['image_path']!r}, expected a file name")
    contained_path(path.parent / "images", c["image_path"], f"{where}: image_path")  # never outside images/
    for n in ("bbox_x", "bbox_y", "bbox_w", "bbox_h"):
        if not _finite(c[n]):
            raise ValueError(f"{where}: {n} is {c[n]!r}, expected a finite number")
    for n in ("true_caption", "false_caption"):
        if not isinstance(c[n], str) or not c[n].strip():
            raise ValueError(f"{where}: {n} is {c[n]!r}, expected a non-empty caption")
    g = c[group_key]
    if group_key == "attributes":
        if not (isinstance(g, list) and len(g) == 2 and all(isinstance(a, str) and a for a in g)):
            raise ValueError(f"{where}: attributes is {g!r}, expected two attribute names")
    elif not isinstance(g, str) or not g:
        raise ValueError(f"{where}: {group_key} is {g!r}, expected a relation name")


def _slug(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9]+", "-", name).strip("-")[:48]


def tagger_name(tagger: Tagger | None) -> str:
    """The name that keys a cache of negatives: ``tagger.name``, else its function name; None → the default."""
    if tagger is None:
        return DEFAULT_TAGGER
    name = getattr(tagger, "name", None) or getattr(tagger, "__name__", None)
    if not isinstance(name, str) or not name or name == "<lambda>":
        raise ValueError("a custom tagger needs a .name (or a function name) to key the cache of negatives")
    return name


def order_cache_path(annotation: str | os.PathLike, seed: int, tagger_name: str,
                     cache_dir: str | os.PathLike | None = None) -> Path:
    """Where the negatives of an order dataset are cached: ``<annotation stem>.order-negatives.seed<seed>.
    <tagger>.json`` beside the annotation file (or in ``cache_dir``)."""
    annotation = Path(annotation)
    folder = Path(cache_dir) if cache_dir is not None else annotation.parent
    return folder / f"{annotation.stem}.order-negatives.seed{seed}.{_slug(tagger_name)}.json"


def build_order_cases(annotation: str | os.PathLike, *, seed: int = 0, tagger: Tagger | None = None,
                      max_words: int = 30, cache_dir: str | os.PathLike | None = None,
                      regenerate: bool = False, progress: bool = True) -> list[dict]:
    """The test cases of a Karpathy-format file with their negatives, from the cache or built and cached.

    Returns one dict per caption, in file order (images, then captions): ``{"image": str, "caption_index":
    int, "caption": pre_caption(true), "negatives": [p1, p2, p3, p4]}``. The cache is keyed by the annotation
    file's sha256, ``seed``, the tagger's name (``tagger.name``, else its ``__name__``; default spaCy
    ``en_core_web_sm`` — only loaded if the cache must be built) and ``max_words``; a cache whose key does not
    match raises ``ValueError`` unless ``regenerate=True`` (then it is rebuilt and overwritten).
    """
    annotation = Path(annotation)
    seed = count(seed, "seed", minimum=0)
    name = tagger_name(tagger)
    key = {"format": CACHE_FORMAT, "source": annotation.name, "source_sha256": file_sha256(annotation),
           "seed": int(seed), "tagger": name, "max_words": max_words, "perturbations": list(ORDER_PERTURBATIONS)}
    path = order_cache_path(annotation, int(seed), name, cache_dir)
    if path.is_file() and not regenerate:
        try:
            cached = _read_json(path)
        except ValueError as err:
            raise ValueError(f"{err}; it is a cache of negatives: delete it or pass regenerate=True to rebuild it "
                             "(the same seed gives the same negatives)") from err
        if not isinstance(cached, dict) or not isinstance(cached.get("cases"), list):
            raise ValueError(f"negatives cache {path} is not a cache file; delete it or pass regenerate=True")
        diff = {k: (cached.get(k), v) for k, v in key.items() if cached.get(k) != v}
        if diff:
            raise ValueError(f"negatives cache {path} does not match this request {diff} (cached, wanted); delete "
                             "it or pass regenerate=True to rebuild it (the negatives will change)")
        return cached["cases"]
    entries = _read_json(annotation)
    if not isinstance(entries, list):
        raise ValueError(f"{annotation} is not a Karpathy-format file (a list of {{'image', 'caption'}} entries)")
    for k, e in enumerate(entries):
        if not isinstance(e, dict) or "image" not in e or "caption" not in e:
            raise ValueError(f"{annotation}: entry {k} is not an {{'image', 'caption'}} object: {e!r:.120}")
        caps = e["caption"] if isinstance(e["caption"], list) else [e["caption"]]
        if not isinstance(e["image"], str) or not e["image"].strip():
            raise ValueError(f"{annotation}: entry {k}: image is {e['image']!r}, expected a file name")
        contained_path(annotation.parent, e["image"], f"{annotation}: entry {k}: image")  # never outside
        if not caps or not all(isinstance(c, str) and c.strip() for c in caps):
            raise ValueError(f"{annotation}: entry {k} (image {e['image']!r}): caption is {e['caption']!r:.120}, "
                             "expected a non-empty caption or a list of them")
    if tagger is None:
        tagger = spacy_tagger()
    cases = []
    for e in tqdm(entries, desc=f"order negatives ({annotation.name})", disable=not progress):
        caps = e["caption"] if isinstance(e["caption"], list) else [e["caption"]]
        for j, cap in enumerate(caps):
            rng = np.random.default_rng([int(seed), len(cases)])
            cases.append({"image": e["image"], "caption_index": j, "caption": pre_caption(cap, max_words),
                          "negatives": order_negatives(cap, tagger, rng, max_words=max_words)})
    payload = dict(key, tagger_version=getattr(tagger, "version", None), n_cases=len(cases), cases=cases)
    path.parent.mkdir(parents=True, exist_ok=True)
    part = path.with_name(path.name + ".part")
    with open(part, "w") as f:
        json.dump(payload, f)
    os.replace(part, path)
    return cases


# ---------------------------------------------------------------------------------------------------------
# Datasets
# ---------------------------------------------------------------------------------------------------------


def _size_wh(size) -> tuple[int, int] | None:
    if size is None:
        return None
    if isinstance(size, (int, np.integer)) and not isinstance(size, bool) and size > 0:
        return int(size), int(size)
    if isinstance(size, (tuple, list)) and len(size) == 2 and all(
            isinstance(s, (int, np.integer)) and not isinstance(s, bool) and s > 0 for s in size):
        return int(size[0]), int(size[1])
    raise ValueError(f"size must be None, a positive int or a (width, height) pair, got {size!r}")


_RESAMPLE = {"nearest": 0, "lanczos": 1, "bilinear": 2, "bicubic": 3, "box": 4, "hamming": 5}


class RelationDataset(Sequence):
    """Base of the four ARO datasets: a list of test cases, an image folder and the row format.

    size: output side (int), ``(width, height)`` or None (no resize); resample: "bicubic" (reference) or
    another PIL filter name; true_first: caption order (see the module docstring).
    """

    name = "aro"
    download_group = "aro"

    def __init__(self, cases: list[dict], base: Path, *, size=512, resample: str = "bicubic",
                 true_first: bool = False):
        if resample not in _RESAMPLE:
            raise ValueError(f"resample must be one of {sorted(_RESAMPLE)}, got {resample!r}")
        self._cases, self.base = cases, Path(base)
        self.size, self.resample, self.true_first = _size_wh(size), resample, bool(true_first)

    def __len__(self) -> int:
        return len(self._cases)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({str(self.base)!r}, cases={len(self)}, true_first={self.true_first})"

    def _case(self, i) -> tuple[int, dict]:
        if not isinstance(i, (int, np.integer)) or isinstance(i, bool):
            raise TypeError(f"index must be an int or slice, got {type(i).__name__}")
        if not -len(self) <= i < len(self):
            raise IndexError(f"index {i} out of range for {self!r}")
        i = int(i) % len(self)
        return i, self._cases[i]

    def _open(self, rel: str):
        path = contained_path(self.base, rel, f"image path {rel!r} of {self.name}")  # data names files in base
        if not path.is_file():
            raise FileNotFoundError(f"image {path} is missing; see `python -m infodecomp.data.download "
                                    f"{self.download_group} --list`")
        try:
            return load_image(path)  # size limit, EXIF orientation, 8-bit RGB
        except ValueError as err:  # truncated, corrupt, not an image, too large
            raise ValueError(f"image {path} cannot be read ({err}); fetch it again (see `python -m "
                             f"infodecomp.data.download {self.download_group} --list`)") from err

    def _finish(self, image):
        return image if self.size is None else image.resize(self.size, _RESAMPLE[self.resample])

    def _order(self, true: str, false: list[str]) -> tuple[list[str], int]:
        """Captions in scoring order: ``[*reversed(false), true]`` (faithful) or ``[true, *false]``."""
        if self.true_first:
            return [true, *false], 0
        return [*reversed(false), true], len(false)

    def text_row(self, i: int) -> dict:
        """The row without its image (``id``, ``captions``, ``true_index``, ``group``, ``image_path``)."""
        raise NotImplementedError

    def __getitem__(self, i):
        if isinstance(i, slice):
            return [self[k] for k in range(*i.indices(len(self)))]
        row = self.text_row(i)
        row["image"] = self._load_image(i)
        return row

    def _load_image(self, i):
        """The (cropped, resized) image of case ``i``."""
        raise NotImplementedError


class VGRelation(RelationDataset):
    """ARO's VG-Relation (23,937 cases; group = relation name). ``root``: data root or the ``vg`` folder."""

    name, download_group = "vg-relation", "vg-relation"
    annotation_file = "visual_genome_relation.json"

    def __init__(self, root: str | os.PathLike, **kwargs):
        base = _dataset_dir(root, "vg", self.annotation_file, self.download_group)
        path = base / self.annotation_file
        cases = _read_json(path)
        if not isinstance(cases, list):
            raise ValueError(f"{path}: expected a JSON list of test cases, got a {type(cases).__name__}")
        for k, c in enumerate(cases):
            _check_vg_entry(path, k, c, self._group_key)
        super().__init__(cases, base / "images", **kwargs)

    _group_key = "relation_name"

    def _group(self, c: dict) -> str:
        return c["relation_name"]

    def text_row(self, i: int) -> dict:
        i, c = self._case(i)
        captions, t = self._order(c["true_caption"], [c["false_caption"]])
        return {"id": f"{self.name}-{i:06d}", "captions": captions, "true_index": t, "group": self._group(c),
                "image_path": c["image_path"]}

    def _load_image(self, i):
        i, c = self._case(i)
        x, y, w, h = c["bbox_x"], c["bbox_y"], c["bbox_w"], c["bbox_h"]
        if w <= 0 or h <= 0:
            raise ValueError(f"{self.base.parent / self.annotation_file}: entry {i} ({self.name}) has an empty box "
                             f"{w}×{h} (bbox_w, bbox_h must be > 0)")
        image = self._open(c["image_path"])
        box((x, y, w, h), image.size, f"{self.base.parent / self.annotation_file}: entry {i} ({self.name}): the box")
        return self._finish(image.crop((x, y, x + w, y + h)))


class VGAttribution(VGRelation):
    """ARO's VG-Attribution (28,748 cases; group = "a1_a2"). ``root``: data root or the ``vg`` folder."""

    name, download_group = "vg-attribution", "vg-attribution"
    annotation_file = "visual_genome_attribution.json"
    _group_key = "attributes"

    def _group(self, c: dict) -> str:
        a = c["attributes"]
        if len(a) != 2:
            raise ValueError(f"{self.name}: expected two attributes, got {a!r}")
        return f"{a[0]}_{a[1]}"


class OrderDataset(RelationDataset):
    """COCO-Order / Flickr30k-Order over a Karpathy-format file, with cached negatives
    (:func:`build_order_cases`: ``seed``, ``tagger``, ``max_words``, ``cache_dir``, ``regenerate``)."""

    sub, annotation_file = "coco", "coco_karpathy_test.json"

    def __init__(self, root: str | os.PathLike, *, seed: int = 0, tagger: Tagger | None = None,
                 max_words: int = 30, cache_dir: str | os.PathLike | None = None, regenerate: bool = False,
                 progress: bool = True, **kwargs):
        base = _dataset_dir(root, self.sub, self.annotation_file, self.download_group)
        self.annotation = base / self.annotation_file
        cases = build_order_cases(self.annotation, seed=seed, tagger=tagger, max_words=max_words,
                                  cache_dir=cache_dir, regenerate=regenerate, progress=progress)
        self.cache_path = order_cache_path(self.annotation, seed, tagger_name(tagger), cache_dir)
        self.seed = seed
        super().__init__(cases, base, **kwargs)

    def text_row(self, i: int) -> dict:
        i, c = self._case(i)
        captions, t = self._order(c["caption"], list(c["negatives"]))
        return {"id": f"{self.name}-{i:06d}", "captions": captions, "true_index": t, "group": self.name,
                "image_path": c["image"], "caption_index": c["caption_index"]}

    def _load_image(self, i):
        _, c = self._case(i)
        return self._finish(self._open(c["image"]))


class COCOOrder(OrderDataset):
    """ARO's COCO-Order: Karpathy test captions of COCO (images in ``val2014/``). ``root``: data root or the
    ``coco`` folder of ARO."""

    name, download_group = "coco-order", "coco-order"
    sub, annotation_file = "coco", "coco_karpathy_test.json"


class FlickrOrder(OrderDataset):
    """ARO's Flickr30k-Order: Karpathy test captions of Flickr30k (images in ``flickr30k-images/``, fetched by
    hand: ``python -m infodecomp.data.download flickr-order --list``)."""

    name, download_group = "flickr-order", "flickr-order"
    sub, annotation_file = "flickr", "flickr30k_test.json"


DATASETS: dict[str, type[RelationDataset]] = {
    "vg-relation": VGRelation, "vg-attribution": VGAttribution, "coco-order": COCOOrder,
    "flickr-order": FlickrOrder,
}


def relation_dataset(name: str, root: str | os.PathLike, **kwargs) -> RelationDataset:
    """An ARO dataset by name ("vg-relation", "vg-attribution", "coco-order", "flickr-order")."""
    if name not in DATASETS:
        raise ValueError(f"unknown ARO dataset {name!r}; expected one of {sorted(DATASETS)}")
    return DATASETS[name](root, **kwargs)
