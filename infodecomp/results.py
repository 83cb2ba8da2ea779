"""Where results live: headline numbers of the notebooks, and resumable, shardable per-example tables.

Two mechanisms, both plain files that a person can read:

1. **Headline numbers** (:func:`record`, :class:`Recorder`). A notebook's last cell records a few numbers;
   they land in ``figures/<model>/<notebook-stem>.json``::

       {"miou_cmi": {"value": 0.3324, "stderr": 0.0031},
        "n_images": 6927,
        "_provenance": {"model": "shapes-tiny", "model_id": "shapes-tiny", "revision": null,
                        "protocol": "faithful", "seed": 0, "n_samples": 100, "settings": {...},
                        "date": "2026-11-22T10:00:00+00:00", "package_version": "0.1.0"}}

   ``scripts/update_readme_results.py`` turns these files into the README's results tables.

2. **Per-example results** (:class:`ResultStore`, :func:`run_sharded`). An experiment streams one row per
   example to disk after every batch, so a killed run resumes where it stopped and loses at most the batch
   in flight. Layout of a store directory::

       manifest.json                         settings, model id, revision, seed (the store's identity)
       rows-000-of-002.jsonl                 one JSON object per example, written by process 0 of 2
       rows-001-of-002.jsonl                 ... by process 1 of 2
       arrays/rows-000-of-002-000000004.npz  the array-valued fields of one batch (first index 4)

   Every row has ``index`` (int, position of the example in the dataset: the order of the merged table) and
   ``id`` (str, the dataset's stable id). Scalars, strings and short lists go inline in the JSON line; arrays
   (``numpy.ndarray`` or ``torch.Tensor`` with at least one dimension, e.g. a 64 x 64 latent-resolution map)
   go into the batch's ``.npz`` file with their dtype kept, so store maps as ``float16``
   (docs/protocol.md#heatmap-normalisation, docs/protocol.md#storage: latent-resolution half-precision maps, upsampled
   only at evaluation time).

   Opening a store whose saved settings differ from the current ones raises :class:`SettingsMismatchError`:
   results from different settings are never mixed.

Sharding: :func:`run_sharded` gives process ``p`` of ``P`` (from ``accelerate.PartialState``) the example
indices ``p, p + P, p + 2P, ...``; each process writes its own ``rows-p-of-P.jsonl``; :meth:`ResultStore.merge`
reads all shard files and returns one table sorted by example index, identical to a one-process run as long as
each example's result depends only on the example (seed per example: :func:`example_seed`).
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import enum
import hashlib
import io
import json
import math
import numbers
import os
import re
import tempfile
import warnings
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

__all__ = [
    "markdown_table",
    "save_tables",
    "IncompleteResultsError",
    "Recorder",
    "ResultStore",
    "SettingsMismatchError",
    "example_seed",
    "load_record",
    "model_slug",
    "record",
    "run_sharded",
    "shard_indices",
    "to_jsonable",
]

PROVENANCE_KEY = "_provenance"
PROTOCOLS = ("faithful", "corrected")
STORE_FORMAT = "infodecomp.result-store/1"
_AUTO_PROVENANCE = ("model", "date", "package_version")
_SLUG_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
_SHARD_RE = re.compile(r"^rows-(\d{3,})-of-(\d{3,})\.jsonl$")


class SettingsMismatchError(ValueError):
    """A result store on disk was made with other settings than the ones given now."""


class IncompleteResultsError(RuntimeError):
    """A merge was asked for ``n_examples`` rows but some example indices have no row yet."""


# --------------------------------------------------------------------------------------------------------------
# small helpers


def _package_version() -> str:
    from infodecomp import __version__

    return __version__


def _now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).replace(microsecond=0).isoformat()


def to_jsonable(obj: Any) -> Any:
    """Convert settings / provenance / row values to plain JSON types.

    Dataclasses become dicts, tuples become lists, numpy and 0-d torch scalars become Python numbers, paths and
    enums become strings; small arrays become (nested) lists. Anything else raises ``TypeError``.
    """
    if obj is None or isinstance(obj, (bool, str)):
        return obj
    if isinstance(obj, numbers.Integral):
        return int(obj)
    if isinstance(obj, numbers.Real):
        return float(obj)
    if isinstance(obj, enum.Enum):
        return to_jsonable(obj.value)
    if isinstance(obj, os.PathLike):
        return os.fspath(obj)
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {f.name: to_jsonable(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, Mapping):
        out = {}
        for k, v in obj.items():
            if not isinstance(k, str):
                raise TypeError(f"mapping keys must be str to be stored as JSON; got key {k!r} ({type(k).__name__})")
            out[k] = to_jsonable(v)
        return out
    if isinstance(obj, (list, tuple)):
        return [to_jsonable(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return to_jsonable(obj.tolist())
    if isinstance(obj, np.generic):
        return to_jsonable(obj.item())
    if hasattr(obj, "detach") and hasattr(obj, "tolist"):  # torch.Tensor, without importing torch here
        return to_jsonable(obj.detach().cpu().tolist())
    raise TypeError(
        f"cannot store a value of type {type(obj).__module__}.{type(obj).__qualname__} as JSON ({obj!r:.80}); "
        "expected numbers, strings, bools, None, lists/tuples, dicts with str keys, dataclasses or arrays"
    )


def _canonical(obj: Any) -> str:
    """A canonical JSON string of ``obj`` (sorted keys): equal settings give equal strings."""
    return json.dumps(to_jsonable(obj), sort_keys=True, allow_nan=True)


def _atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` through a temporary file in the same folder and an atomic rename."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def _atomic_write_json(path: Path, obj: Any) -> None:
    _atomic_write_bytes(path, (json.dumps(obj, indent=2, allow_nan=False) + "\n").encode("utf-8"))


def _finite_number(value: Any, what: str) -> int | float:
    """Return ``value`` as a Python int/float, or raise if it is not one finite real number."""
    original = value
    short = False  # a float32/float16 value is written with its own shortest digits (0.0125, not 0.012500000186)
    if hasattr(value, "detach"):  # torch tensor
        value = value.detach().cpu()
        short = value.dtype in _torch_short_dtypes()
    if isinstance(value, np.ndarray) or (hasattr(value, "numel") and hasattr(value, "item")):
        size = value.size if isinstance(value, np.ndarray) else value.numel()
        if size != 1:
            raise ValueError(f"{what} must be a single number; got an array of shape {tuple(value.shape)}")
        short = short or (isinstance(value, np.ndarray) and value.dtype in (np.float32, np.float16))
        value = value.item()
    if isinstance(value, np.generic):
        short = short or value.dtype in (np.float32, np.float16)
        value = value.item()
    if short and isinstance(value, float) and math.isfinite(value):
        value = float(str(np.float32(value)))
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{what} must be a real number; got {original!r} of type {type(original).__name__}")
    if not math.isfinite(value):
        raise ValueError(f"{what} must be finite; got {value!r}")
    return int(value) if isinstance(value, numbers.Integral) else float(value)


def _torch_short_dtypes():
    import torch

    return (torch.float32, torch.float16, torch.bfloat16)


def model_slug(model: str) -> str:
    """The folder name under ``figures/`` for a model name, hub id or local path.

    ``"shapes-tiny"`` → ``"shapes-tiny"``; ``"stabilityai/stable-diffusion-2-1-base"`` → ``"stable-diffusion-2-1-base"``;
    ``"/data/weights/sd21/"`` → ``"sd21"``. Characters other than letters, digits, ``.``, ``_``, ``-`` become ``-``.
    """
    if not isinstance(model, str) or not model.strip():
        raise ValueError(f"model must be a non-empty string (a short name such as 'shapes-tiny'); got {model!r}")
    if _SLUG_RE.match(model):
        return model
    last = re.split(r"[/\\]+", model.strip().rstrip("/\\"))[-1]
    slug = re.sub(r"[^A-Za-z0-9._-]+", "-", last).strip("-.")
    if not slug:
        raise ValueError(f"cannot make a folder name out of model {model!r}; pass a short name like 'sd21-base'")
    return slug


def _stem(notebook_stem: str) -> str:
    if not isinstance(notebook_stem, str) or not notebook_stem.strip():
        raise ValueError(f"notebook_stem must be a non-empty string like '03_localization'; got {notebook_stem!r}")
    stem = Path(notebook_stem).name
    if stem.endswith(".ipynb"):
        stem = stem[: -len(".ipynb")]
    if not _SLUG_RE.match(stem):
        raise ValueError(f"notebook_stem {notebook_stem!r} is not a plain file stem (letters, digits, . _ -)")
    return stem


def _record_path(notebook_stem: str, model: str, root: str | os.PathLike) -> Path:
    return Path(root) / model_slug(model) / f"{_stem(notebook_stem)}.json"


# --------------------------------------------------------------------------------------------------------------
# headline numbers


def _entry(name: str, value: Any, stderr: Any) -> tuple[str, int | float | dict]:
    if not isinstance(name, str) or not name or name.startswith("_"):
        raise ValueError(f"result name must be a non-empty string not starting with '_'; got {name!r}")
    v = _finite_number(value, f"value of {name!r}")
    if stderr is None:
        return name, v
    s = _finite_number(stderr, f"stderr of {name!r}")
    if s < 0:
        raise ValueError(f"stderr of {name!r} must be >= 0; got {s}")
    return name, {"value": v, "stderr": s}


def _normalise_provenance(provenance: Mapping[str, Any]) -> dict:
    prov = {}
    for key, val in provenance.items():
        if key in _AUTO_PROVENANCE:
            raise ValueError(f"provenance key {key!r} is filled in automatically; do not pass it")
        prov[key] = to_jsonable(val)
    protocol = prov.get("protocol")
    if protocol is not None and protocol not in PROTOCOLS:
        raise ValueError(f"protocol must be one of {PROTOCOLS} (docs/protocol.md#protocol-flags); got {protocol!r}")
    return prov


def _write_entries(path: Path, model: str, entries: dict, provenance: Mapping[str, Any]) -> Path:
    new_prov = _normalise_provenance(provenance)
    new_prov.setdefault("model_id", model)
    stored: dict = {}
    if path.exists():
        stored = json.loads(path.read_text(encoding="utf-8"))
        if not isinstance(stored, dict):
            raise ValueError(f"{path} does not hold a JSON object; refusing to overwrite it")
    old_prov = stored.pop(PROVENANCE_KEY, {})
    conflicts = {k: (old_prov[k], v) for k, v in new_prov.items() if k in old_prov and _canonical(old_prov[k]) != _canonical(v)}
    if conflicts:
        # The stored numbers came from another run (other seed, settings, ...): never mix the two runs.
        dropped = sorted(set(stored) - set(entries))
        if dropped:
            warnings.warn(
                f"{path}: provenance changed ({', '.join(f'{k}: {a!r} -> {b!r}' for k, (a, b) in conflicts.items())}); "
                f"dropping results of the earlier run: {', '.join(dropped)}",
                stacklevel=3,
            )
        stored, old_prov = {}, {}
    merged = {k: v for k, v in {**old_prov, **new_prov}.items() if k not in _AUTO_PROVENANCE}
    order = ("model_id", "revision", "protocol", "seed", "n_samples", "settings")
    prov = {"model": path.parent.name, **{k: merged.pop(k) for k in order if k in merged}, **merged,
            "date": _now(), "package_version": _package_version()}
    stored.update(entries)
    _atomic_write_json(path, {**stored, PROVENANCE_KEY: prov})
    return path


def record(
    notebook_stem: str,
    model: str,
    name: str,
    value: Any,
    stderr: Any = None,
    *,
    root: str | os.PathLike = "figures",
    **provenance: Any,
) -> Path:
    """Record one headline number of a notebook in ``<root>/<model>/<notebook_stem>.json``.

    Args:
        notebook_stem: e.g. ``"03_localization"`` (a trailing ``.ipynb`` is dropped).
        model: the model's short name (``"shapes-tiny"``, ``"sd21-base"``) or hub id / path, which
            :func:`model_slug` turns into the folder name; the original goes to provenance ``model_id``
            unless ``model_id=`` is given.
        name: result name, e.g. ``"miou_cmi_100"``; names starting with ``_`` are reserved.
        value: one finite real number (Python, numpy or 1-element torch).
        stderr: its standard error (finite, >= 0), or None. With a stderr the entry is
            ``{"value": v, "stderr": s}``, without it the bare number.
        root: the figures folder.
        **provenance: what produced the number, stored once per file under ``"_provenance"``: by convention
            ``model_id``, ``revision``, ``protocol`` ("faithful" | "corrected"), ``seed``, ``n_samples``,
            ``settings`` (a dict or dataclass). ``date`` and ``package_version`` are added automatically.

    If a provenance key given here differs from the one stored in the file, the file's earlier numbers came from
    another run: they are dropped (with a warning) rather than mixed with this run's. Keys not given are kept.
    The file is replaced atomically (temporary file + rename).

    Returns:
        the path of the JSON file.
    """
    entry_name, entry = _entry(name, value, stderr)
    return _write_entries(_record_path(notebook_stem, model, root), model, {entry_name: entry}, provenance)


class Recorder:
    """:func:`record` with the notebook, model and provenance fixed once.

    >>> rec = Recorder("03_localization", "shapes-tiny", protocol="faithful", seed=0, n_samples=64)
    >>> rec.record("miou_cmi", 0.41, 0.01)            # doctest: +SKIP
    >>> rec.record_many({"miou_attn": (0.38, 0.01), "n_images": 500})   # doctest: +SKIP
    """

    def __init__(self, notebook_stem: str, model: str, *, root: str | os.PathLike = "figures", **provenance: Any):
        self.path = _record_path(notebook_stem, model, root)
        self.model = model
        self.provenance = dict(provenance)
        _normalise_provenance(self.provenance)  # fail early on bad provenance

    def record(self, name: str, value: Any, stderr: Any = None) -> Path:
        """Record one number (see :func:`record`)."""
        entry_name, entry = _entry(name, value, stderr)
        return _write_entries(self.path, self.model, {entry_name: entry}, self.provenance)

    __call__ = record

    def record_many(self, results: Mapping[str, Any]) -> Path:
        """Record several numbers in one write: ``{name: value | (value, stderr) | {"value", "stderr"}}``."""
        entries = {}
        for name, val in results.items():
            if isinstance(val, Mapping):
                unknown = set(val) - {"value", "stderr"}
                if unknown or "value" not in val:
                    raise ValueError(f"{name!r}: a mapping entry needs 'value' (and optionally 'stderr'); got keys {sorted(val)}")
                n, e = _entry(name, val["value"], val.get("stderr"))
            elif isinstance(val, tuple):
                if len(val) != 2:
                    raise ValueError(f"{name!r}: a tuple entry must be (value, stderr); got {len(val)} items")
                n, e = _entry(name, *val)
            else:
                n, e = _entry(name, val, None)
            entries[n] = e
        return _write_entries(self.path, self.model, entries, self.provenance)


def load_record(notebook_stem: str, model: str, *, root: str | os.PathLike = "figures") -> dict:
    """Read ``<root>/<model>/<notebook_stem>.json`` back (``{}`` if it does not exist)."""
    path = _record_path(notebook_stem, model, root)
    if not path.exists():
        return {}
    return json.loads(path.read_text(encoding="utf-8"))


# --------------------------------------------------------------------------------------------------------------
# per-example result store


def example_seed(seed: int, key: int | str) -> int:
    """A 63-bit seed for one example, stable across processes, runs and machines.

    Derived from ``sha256(f"{seed}:{key}")`` (Python's ``hash`` is salted per process, so it would not do).
    Use it as ``torch.Generator(device).manual_seed(example_seed(SEED, example_id))`` so that an example's
    result does not depend on its batch or shard.
    """
    digest = hashlib.sha256(f"{int(seed)}:{key}".encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "little") & ((1 << 63) - 1)


def shard_indices(n_examples: int, process_index: int, num_processes: int) -> range:
    """The example indices of process ``process_index`` of ``num_processes``: ``p, p + P, p + 2P, ...``.

    Strided (not contiguous) so that every shard sees a similar mix of examples.
    """
    if num_processes < 1 or not 0 <= process_index < num_processes:
        raise ValueError(f"need 0 <= process_index < num_processes; got {process_index} of {num_processes}")
    if n_examples < 0:
        raise ValueError(f"n_examples must be >= 0; got {n_examples}")
    return range(process_index, n_examples, num_processes)


def _is_array(value: Any) -> bool:
    if isinstance(value, np.ndarray):
        return value.ndim >= 1
    return hasattr(value, "detach") and hasattr(value, "dim") and value.dim() >= 1


def _to_numpy(value: Any) -> np.ndarray:
    if isinstance(value, np.ndarray):
        return value
    t = value.detach().cpu()
    if str(t.dtype) == "torch.bfloat16":  # numpy has no bfloat16
        t = t.float()
    return t.numpy()


def _shard_name(process_index: int, num_processes: int) -> str:
    return f"rows-{process_index:03d}-of-{num_processes:03d}"


class ResultStore:
    """A folder of per-example results that grows one batch at a time (see the module docstring).

    Args:
        path: the store's folder (created if missing).
        settings: everything that changes the results (dataset, estimator settings, protocol, ...): a dict or
            dataclass of JSON-able values. Together with ``model_id``, ``revision`` and ``seed`` it is the store's
            identity; opening an existing store with a different identity raises :class:`SettingsMismatchError`.
        model_id, revision, seed: provenance, part of the identity.
        process_index, num_processes: the shard this object writes to by default (``rows-p-of-P.jsonl``).
            :func:`run_sharded` passes the right shard itself.

    A store may be open in several processes at once as long as each writes its own shard.
    """

    def __init__(
        self,
        path: str | os.PathLike,
        settings: Mapping[str, Any] | Any,
        *,
        model_id: str | None = None,
        revision: str | None = None,
        seed: int | None = None,
        process_index: int = 0,
        num_processes: int = 1,
    ):
        shard_indices(0, process_index, num_processes)  # validates the shard
        self.path = Path(path)
        self.shard = (int(process_index), int(num_processes))
        identity = {"settings": to_jsonable(settings), "model_id": model_id, "revision": revision,
                    "seed": None if seed is None else int(seed)}
        if not isinstance(identity["settings"], dict):
            raise TypeError(f"settings must be a dict or dataclass; got {type(settings).__name__}")
        self.settings = identity["settings"]
        self.model_id, self.revision, self.seed = model_id, revision, identity["seed"]
        manifest_path = self.path / "manifest.json"
        if not manifest_path.exists():
            manifest = {"format": STORE_FORMAT, **identity, "created": _now(), "package_version": _package_version()}
            self.path.mkdir(parents=True, exist_ok=True)
            _atomic_write_json(manifest_path, manifest)
        # Re-read even after writing: another process may have created the store at the same moment.
        self.manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
        self._check_identity(identity)
        self._repaired: set[str] = set()
        self._indices: set[int] = {row["index"] for row in self._iter_rows()}

    # -- identity ------------------------------------------------------------------------------------------
    def _check_identity(self, identity: dict) -> None:
        if self.manifest.get("format") != STORE_FORMAT:
            raise SettingsMismatchError(f"{self.path}: not a result store of format {STORE_FORMAT!r} "
                                        f"(manifest format {self.manifest.get('format')!r})")
        diffs = []
        for key in ("model_id", "revision", "seed"):
            if _canonical(self.manifest.get(key)) != _canonical(identity[key]):
                diffs.append(f"{key}: saved {self.manifest.get(key)!r}, now {identity[key]!r}")
        saved, now = self.manifest.get("settings", {}), identity["settings"]
        for key in sorted(set(saved) | set(now)):
            a, b = saved.get(key, "<missing>"), now.get(key, "<missing>")
            if _canonical(a) != _canonical(b):
                diffs.append(f"settings[{key!r}]: saved {a!r}, now {b!r}")
        if diffs:
            raise SettingsMismatchError(
                f"the result store at {self.path} was made with other settings, so its rows cannot be mixed with "
                "this run's:\n  " + "\n  ".join(diffs)
                + "\nUse another path for these settings, or delete the folder to start over."
            )

    # -- reading -------------------------------------------------------------------------------------------
    def _shard_files(self) -> list[Path]:
        return sorted(p for p in self.path.glob("rows-*.jsonl") if _SHARD_RE.match(p.name))

    def _iter_rows(self) -> Iterable[dict]:
        for file in self._shard_files():
            data = file.read_bytes()
            lines = data.split(b"\n")
            # A last piece without "\n" is a line cut by a kill (or being written by another process): skip it.
            for lineno, line in enumerate(lines[:-1], start=1):
                if not line.strip():
                    continue
                try:
                    row = json.loads(line)
                except json.JSONDecodeError as err:
                    raise ValueError(f"{file}:{lineno}: corrupt row ({err}); the store needs repair") from err
                row["_file"] = file.name
                yield row

    def _rows_by_index(self) -> dict[int, dict]:
        by_index: dict[int, dict] = {}
        for row in self._iter_rows():
            i = row["index"]
            if i in by_index:
                raise ValueError(f"{self.path}: example index {i} has rows in both {by_index[i]['_file']} and "
                                 f"{row['_file']}; the store mixes two runs")
            by_index[i] = row
        return by_index

    def done_indices(self) -> set[int]:
        """Example indices that have a row on disk (all shards)."""
        return {row["index"] for row in self._iter_rows()}

    def done_ids(self) -> set[str]:
        """Example ids that have a row on disk (all shards)."""
        return {row["id"] for row in self._iter_rows()}

    def __len__(self) -> int:
        return sum(1 for _ in self._iter_rows())

    def to_frame(self, *, arrays: bool = True):
        """All rows as a ``pandas.DataFrame`` sorted by example index.

        Columns: ``index``, ``id``, then the row fields in order of first appearance. Array fields hold one
        ``numpy.ndarray`` per row (dtype as stored); ``arrays=False`` leaves them out.
        """
        import pandas as pd

        by_index = self._rows_by_index()
        rows = [by_index[i] for i in sorted(by_index)]
        cache: dict[str, Any] = {}
        records, columns = [], {"index": None, "id": None}
        for row in rows:
            rec = {k: v for k, v in row.items() if not k.startswith("_")}
            if arrays and row.get("_npz"):
                npz = cache.get(row["_npz"])
                if npz is None:
                    with np.load(self.path / row["_npz"]) as f:
                        npz = cache[row["_npz"]] = {k: f[k] for k in f.files}
                for col in row["_arrays"]:
                    rec[col] = npz[f"{row['index']}/{col}"]
            for k in rec:
                columns.setdefault(k, None)
            records.append(rec)
        return pd.DataFrame.from_records(records, columns=list(columns)).reset_index(drop=True)

    def array(self, column: str) -> np.ndarray:
        """One array field of all rows stacked in example order: ``[N, ...]`` (shapes must agree)."""
        frame = self.to_frame()
        if column not in frame.columns:
            raise KeyError(f"no field {column!r} in {self.path}; fields: {list(frame.columns)}")
        return np.stack(list(frame[column]))

    def merge(self, n_examples: int | None = None, *, arrays: bool = True):
        """The merged table of all shards (:meth:`to_frame`), checked for completeness.

        With ``n_examples``, raises :class:`IncompleteResultsError` unless every index ``0 .. n_examples-1`` has
        exactly one row and no other index is present.
        """
        frame = self.to_frame(arrays=arrays)
        if n_examples is not None:
            have = set(frame["index"].tolist()) if len(frame) else set()
            missing = sorted(set(range(n_examples)) - have)
            extra = sorted(have - set(range(n_examples)))
            if missing or extra:
                raise IncompleteResultsError(
                    f"{self.path}: expected rows for indices 0..{n_examples - 1}; missing {len(missing)} "
                    f"(first: {missing[:10]}), unexpected {len(extra)} (first: {extra[:10]}). "
                    "Run the experiment again to finish it (it resumes)."
                )
        return frame

    # -- writing -------------------------------------------------------------------------------------------
    def _repair(self, file: Path) -> None:
        """Cut a partial last line (a kill in the middle of a write) off this process's own shard file."""
        if file.name in self._repaired:
            return
        self._repaired.add(file.name)
        if not file.exists():
            return
        data = file.read_bytes()
        if data and not data.endswith(b"\n"):
            keep = data.rfind(b"\n") + 1
            with open(file, "r+b") as f:
                f.truncate(keep)
            warnings.warn(f"{file}: dropped a partial last row left by an interrupted run", stacklevel=3)

    def append(self, rows: Sequence[Mapping[str, Any]], *, shard: tuple[int, int] | None = None) -> None:
        """Write a batch of rows (one per example) to this process's shard file, then fsync.

        Each row needs ``index`` (int >= 0, the example's position in the dataset); ``id`` defaults to
        ``str(index)``. Other fields: JSON-able values inline; arrays (>= 1 dim) to the batch's ``.npz``.
        Field names starting with ``_`` are reserved. An index that already has a row raises ``ValueError``.
        """
        rows = list(rows)
        if not rows:
            return
        pi, n = shard if shard is not None else self.shard
        shard_indices(0, pi, n)
        name = _shard_name(pi, n)
        inline_rows, arrays = [], {}
        batch_indices = set()
        for row in rows:
            if not isinstance(row, Mapping):
                raise TypeError(f"each row must be a dict; got {type(row).__name__}")
            if "index" not in row:
                raise ValueError(f"each row needs an 'index' (the example's position); got keys {sorted(row)}")
            index = row["index"]
            if isinstance(index, bool) or not isinstance(index, numbers.Integral) or index < 0:
                raise ValueError(f"row 'index' must be an int >= 0; got {index!r}")
            index = int(index)
            if index in self._indices or index in batch_indices:
                raise ValueError(f"example index {index} already has a row in {self.path}; refusing to write it twice")
            batch_indices.add(index)
            out = {"index": index, "id": str(row.get("id", index))}
            array_cols = []
            for key, val in row.items():
                if key in ("index", "id"):
                    continue
                if not isinstance(key, str) or not key or key.startswith("_"):
                    raise ValueError(f"row field names must be non-empty str not starting with '_'; got {key!r}")
                if _is_array(val):
                    arr = _to_numpy(val)
                    if arr.dtype.hasobject:
                        raise TypeError(f"row field {key!r} is an object array; store numeric arrays or lists")
                    arrays[f"{index}/{key}"] = arr
                    array_cols.append(key)
                else:
                    out[key] = to_jsonable(val)
            if array_cols:
                out["_arrays"] = array_cols
            inline_rows.append(out)
        if arrays:
            npz_rel = f"arrays/{name}-{min(batch_indices):09d}.npz"
            buf = io.BytesIO()
            np.savez_compressed(buf, **arrays)
            _atomic_write_bytes(self.path / npz_rel, buf.getvalue())  # arrays first, then the rows that point to them
            for out in inline_rows:
                if "_arrays" in out:
                    out["_npz"] = npz_rel
        file = self.path / f"{name}.jsonl"
        self._repair(file)
        payload = "".join(json.dumps(r, allow_nan=True) + "\n" for r in inline_rows).encode("utf-8")
        with open(file, "ab") as f:
            f.write(payload)
            f.flush()
            os.fsync(f.fileno())
        self._indices |= batch_indices

    def __repr__(self) -> str:
        return f"ResultStore({str(self.path)!r}, rows={len(self._indices)}, shard={self.shard})"


# --------------------------------------------------------------------------------------------------------------
# sharded, resumable loop


def _env_world_size() -> int:
    for key in ("WORLD_SIZE", "PMI_SIZE", "OMPI_COMM_WORLD_SIZE", "MV2_COMM_WORLD_SIZE"):
        if os.environ.get(key, "").strip():
            return int(os.environ[key])
    return 1


def _partial_state():
    """``accelerate.PartialState()``, made to see a multi-process CPU launch.

    On a machine without CUDA, ``accelerate launch --multi_gpu --num_processes P`` starts P processes, but
    ``PartialState()`` (cpu=False) then reports one process each (index 0 of 1): every process would compute
    every example. If the launcher says there are several processes and there is no CUDA, ask for the
    multi-CPU (gloo) state instead. An already initialised state is used as it is.
    """
    from accelerate import PartialState

    if PartialState._shared_state != {}:  # initialised by the caller (or by an Accelerator): respect it
        return PartialState()
    import torch

    cpu = _env_world_size() > 1 and not torch.cuda.is_available()
    return PartialState(cpu=cpu)


def run_sharded(
    examples: Sequence[Any] | int,
    fn_batch: Callable[..., Sequence[Mapping[str, Any]]],
    store: ResultStore,
    batch_size: int,
    *,
    state: Any = None,
    process_index: int | None = None,
    num_processes: int | None = None,
    with_indices: bool = False,
    desc: str | None = None,
    progress: bool = True,
    wait: bool = True,
) -> int:
    """Run ``fn_batch`` over this process's share of ``examples``, streaming rows into ``store``; resumable.

    Args:
        examples: a sequence of examples (``len`` + ``__getitem__``, e.g. a dataset of dicts) or an int ``n``
            (then the examples are the indices ``0 .. n-1``).
        fn_batch: ``fn_batch(batch) -> rows`` (or ``fn_batch(batch, indices)`` with ``with_indices=True``), one
            row dict per example, in order. ``index`` is filled in; ``id`` defaults to ``example["id"]`` for dict
            examples, else ``str(index)``. For results that do not depend on the sharding, an example's result
            must depend only on that example (seed it with :func:`example_seed`, never share noise across a batch).
        store: where rows go; examples that already have a row (in any shard) are skipped.
        batch_size: examples per ``fn_batch`` call; rows are written (and fsynced) after every call.
        state: an ``accelerate.PartialState`` (default: :func:`_partial_state`), giving ``process_index`` and
            ``num_processes``; or give both ints explicitly.
        desc, progress: the tqdm bar (examples per second), shown on process 0 only.
        wait: with several processes, wait for all of them at the end (so process 0 can merge).

    Process ``p`` of ``P`` takes indices ``p, p+P, ...`` (:func:`shard_indices`) in fixed batches of its share;
    a resumed run recomputes only missing examples. Exceptions from ``fn_batch`` propagate; the batches written
    before stay on disk.

    Returns:
        the number of examples computed by this call in this process.
    """
    if isinstance(batch_size, bool) or not isinstance(batch_size, numbers.Integral) or batch_size < 1:
        raise ValueError(f"batch_size must be an int >= 1; got {batch_size!r}")
    if (process_index is None) != (num_processes is None):
        raise ValueError("give both process_index and num_processes, or neither (then accelerate decides)")
    if process_index is None:
        if state is None:
            state = _partial_state()
        process_index, num_processes = state.process_index, state.num_processes
        if num_processes == 1 and _env_world_size() > 1:
            raise RuntimeError(
                f"the launcher started {_env_world_size()} processes but accelerate's state sees only one "
                f"(distributed type {getattr(state, 'distributed_type', '?')}); every process would compute every "
                "example. On CPU, create accelerate.PartialState(cpu=True) before calling run_sharded."
            )
    elif state is not None:
        raise ValueError("give either state or process_index/num_processes, not both")
    if isinstance(examples, numbers.Integral) and not isinstance(examples, bool):
        n, get = int(examples), None
    else:
        n, get = len(examples), examples.__getitem__
    mine = shard_indices(n, process_index, num_processes)
    done = store.done_indices()
    batches = [list(mine[k:k + batch_size]) for k in range(0, len(mine), batch_size)]
    n_done = sum(1 for i in mine if i in done)
    computed = 0

    from tqdm.auto import tqdm

    with tqdm(total=len(mine), initial=n_done, unit="ex", desc=desc or store.path.name,
              disable=not progress or process_index != 0, smoothing=0.1) as bar:
        for batch_idx in batches:
            todo = [i for i in batch_idx if i not in done]
            if not todo:
                continue
            batch = todo if get is None else [get(i) for i in todo]
            rows = fn_batch(batch, todo) if with_indices else fn_batch(batch)
            rows = list(rows) if rows is not None else None
            if rows is None or len(rows) != len(todo):
                raise ValueError(f"fn_batch must return one row per example: got "
                                 f"{None if rows is None else len(rows)} rows for {len(todo)} examples")
            out = []
            for i, ex, row in zip(todo, batch, rows):
                if not isinstance(row, Mapping):
                    raise TypeError(f"fn_batch must return dicts; got {type(row).__name__} for example {i}")
                if "index" in row and row["index"] != i:
                    raise ValueError(f"fn_batch returned index {row['index']} for example {i}")
                default_id = ex["id"] if isinstance(ex, Mapping) and "id" in ex else i
                out.append({"index": i, "id": str(row.get("id", default_id)), **{k: v for k, v in row.items() if k not in ("index", "id")}})
            store.append(out, shard=(process_index, num_processes))
            computed += len(todo)
            bar.update(len(todo))
    if wait and state is not None and num_processes > 1:
        state.wait_for_everyone()
    return computed


def markdown_table(df, *, floatfmt: str = ".3f", index: bool = False) -> str:
    """A GitHub-flavoured Markdown table of a DataFrame (no extra dependency)."""
    d = df.reset_index() if index else df

    def cell(v) -> str:
        if isinstance(v, float):
            return "–" if math.isnan(v) else format(v, floatfmt)
        return str(v).replace("|", "\\|")

    head = "| " + " | ".join(str(c) for c in d.columns) + " |"
    sep = "|" + "|".join("---" for _ in d.columns) + "|"
    body = ["| " + " | ".join(cell(v) for v in row) + " |" for row in d.itertuples(index=False)]
    return "\n".join([head, sep, *body]) + "\n"


def save_tables(stem: str | Path, table, csv_table=None, *, title: str = "", notes: str = "") -> tuple[Path, Path]:
    """Write ``<stem>.md`` (``title``, ``table`` as Markdown, ``notes``) and ``<stem>.csv`` (``csv_table``, default
    ``table``); folders are created. Returns the two paths."""
    stem = Path(stem)
    stem.parent.mkdir(parents=True, exist_ok=True)
    md, csv = stem.with_suffix(".md"), stem.with_suffix(".csv")
    index = table.index.name is not None or not isinstance(table.index, type(table.reset_index().index))
    parts = [f"# {title}\n" if title else "", markdown_table(table, index=index), f"\n{notes}\n" if notes else ""]
    md.write_text("\n".join(p for p in parts if p), encoding="utf-8")
    (table if csv_table is None else csv_table).to_csv(csv, index=csv_table is None and index)
    return md, csv
