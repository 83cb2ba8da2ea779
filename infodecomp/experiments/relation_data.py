"""The rows of relation testing (paper Sec. 3.1; docs/architecture.md#dataset-rows): their contract
(:func:`check_rows`), and where they come from (:func:`load_dataset`: the ShapesWorld twin, or ARO's four sets
read from disk). Used by :mod:`~infodecomp.experiments.relation_testing` and
:mod:`~infodecomp.experiments.clip_baseline`.
"""

from __future__ import annotations

import numbers
from collections.abc import Mapping, Sequence
from pathlib import Path

from PIL import Image

from ..data import aro
from ..data.shapes import twin

__all__ = ["ARO_DATASETS", "check_rows", "load_dataset", "read_relation_list"]

#: Table 1's columns, in the paper's order.
ARO_DATASETS = ("vg-attribution", "vg-relation", "coco-order", "flickr-order")
_ROW_KEYS = ("id", "image", "captions", "true_index", "group")


def check_rows(rows: Sequence[Mapping]) -> None:
    """Raise a clear error unless every row has the relation-testing contract (docs/architecture.md#dataset-rows):
    ``id`` str, ``image`` PIL RGB, ``captions`` ≥ 2 non-empty strings, ``true_index`` a valid int, ``group``."""
    if isinstance(rows, Mapping) or not isinstance(rows, Sequence):
        raise TypeError(f"rows must be a sequence of row dicts, got {type(rows).__name__}")
    for i, r in enumerate(rows):
        if not isinstance(r, Mapping):
            raise TypeError(f"row {i} is a {type(r).__name__}; expected a dict with keys {_ROW_KEYS}")
        missing = [k for k in _ROW_KEYS if k not in r]
        if missing:
            raise ValueError(f"row {i} (id {r.get('id')!r}) lacks {missing}; relation-testing rows need {_ROW_KEYS}")
        if not isinstance(r["id"], str) or not r["id"]:
            raise ValueError(f"row {i}: 'id' must be a non-empty str, got {r['id']!r}")
        if not isinstance(r["image"], Image.Image) or r["image"].mode != "RGB":
            raise ValueError(f"row {r['id']!r}: 'image' must be an RGB PIL image, got "
                             f"{type(r['image']).__name__} {getattr(r['image'], 'mode', '')}")
        caps = r["captions"]
        if isinstance(caps, str) or not isinstance(caps, Sequence) or len(caps) < 2:
            raise ValueError(f"row {r['id']!r}: 'captions' must be a list of >= 2 strings, got {caps!r}")
        if not all(isinstance(c, str) and c.strip() for c in caps):
            raise ValueError(f"row {r['id']!r}: every caption must be a non-empty string, got {list(caps)!r}")
        t = r["true_index"]
        if isinstance(t, bool) or not isinstance(t, numbers.Integral) or not 0 <= t < len(caps):
            raise ValueError(f"row {r['id']!r}: 'true_index' must be an int in [0, {len(caps) - 1}], got {t!r}")
        if not isinstance(r["group"], str):
            raise ValueError(f"row {r['id']!r}: 'group' must be a str, got {r['group']!r}")


def load_dataset(name: str, n: int | None = None, *, seed: int = 0, data_dir: str | Path | None = None,
                 **options) -> Sequence[dict]:
    """Relation-testing rows of ``name`` ("vg-relation", "vg-attribution", "coco-order", "flickr-order").

    data_dir None: the ShapesWorld twin with ``n`` rows (``seed`` draws them). Otherwise the real ARO data under
    ``data_dir`` through :func:`infodecomp.data.aro.relation_dataset` (first ``n`` rows, or all with ``n=None``;
    the order sets' negatives are drawn with ``seed``); ``options`` go to the loader (e.g. ``size``,
    ``true_first``, ``tagger``).
    """
    if name not in ARO_DATASETS:
        raise ValueError(f"unknown relation-testing dataset {name!r}; expected one of {ARO_DATASETS}")
    if n is not None and (isinstance(n, bool) or not isinstance(n, numbers.Integral) or n < 1):
        raise ValueError(f"n must be a positive int or None, got {n!r}")
    if data_dir is None:
        if n is None:
            raise ValueError("the ShapesWorld twin needs a number of rows n")
        return twin(name, int(n), seed, **options)
    if name in ("coco-order", "flickr-order"):
        options.setdefault("seed", seed)
    rows = aro.relation_dataset(name, data_dir, **options)
    if n is not None and n < len(rows):
        rows = _Head(rows, int(n))
    return rows


class _Head(Sequence):
    """The first n rows of a sequence (lazy)."""

    def __init__(self, rows: Sequence, n: int):
        self.rows, self.n = rows, n

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i):
        if isinstance(i, slice):
            return [self[k] for k in range(*i.indices(self.n))]
        if not -self.n <= i < self.n:
            raise IndexError(f"row {i} out of range for {self.n} rows")
        return self.rows[i % self.n]


def read_relation_list(path: str | Path | None) -> set[str] | None:
    """Relation names from a text file, one per line (blank lines and ``#`` comments ignored); None → None.

    For ARO's symmetric-relation exclusion list, which this project does not ship: supply your own file."""
    if path is None:
        return None
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"relation list {str(p)!r} does not exist (expected a text file, one name a line)")
    names = {ln.split("#", 1)[0].strip() for ln in p.read_text(encoding="utf-8").splitlines()}
    return {x for x in names if x}
