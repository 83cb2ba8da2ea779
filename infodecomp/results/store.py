"""Per-example results (:class:`ResultStore`): a folder that grows one batch at a time, so a killed run resumes.

An experiment streams one row per example to disk after every batch, so a killed run resumes where it stopped and
loses at most the batch in flight. Layout of a store directory::

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

A store's identity (``manifest.json``) is everything that changes a number: the experiment's settings, the
seed, and the model's identity (weights' version, dtype, device type, cross-attention tokens, denoiser settings),
given as data: :func:`infodecomp.models.identity.model_identity` makes it of a loaded model, and this module never
looks inside a model. Opening a store whose saved identity differs from the current one raises
:class:`SettingsMismatchError` naming what differs: results that differ are never mixed.

**One writer per shard.** A process writing shard ``p`` of ``P`` holds a lock (``.locks/``, through
``filelock``) for the whole run; a second run whose examples overlap (the same notebook started twice, say)
refuses at once with :class:`StoreBusyError`, naming the other process, instead of writing every row twice.
The lock goes away when its process exits, even when it is killed, so a killed run still resumes.

**Damage.** Every read error names its file (and line) and raises :class:`StoreDamagedError`; ``python -m
infodecomp.results check|repair PATH`` (:mod:`infodecomp.results.check`) lists or moves aside what is damaged.
A folder with rows or array files but no ``manifest.json`` is damaged too (nothing says which settings its rows
came from): opening it raises instead of adopting the rows under the new identity. A row's ``_npz`` always names
a file in the store's own ``arrays/`` (:func:`infodecomp.checks.contained_path`); a row naming any other file is
damaged, and no read, merge or repair follows it. An append that fails half-way (a full disk) is cut back to the
last whole line, and every append first cuts a partial last line (a killed run), so rows never glue together.
"""

from __future__ import annotations

import contextlib
import dataclasses
import io
import json
import math
import numbers
import os
import re
import socket
import sys
import time
import warnings
import zipfile
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from filelock import FileLock, Timeout

from ..checks import contained_path
from .files import atomic_write_bytes, atomic_write_json, canonical, now, package_version, to_jsonable

__all__ = ["STORE_FORMAT", "IncompleteResultsError", "ResultStore", "SettingsMismatchError", "StoreBusyError",
           "StoreDamagedError", "check_shard", "identity_data"]

STORE_FORMAT = "infodecomp.result-store/2"
#: Formats whose identity left out the model's dtype, device and cross-attention tokens (refused, with a reason).
_LEGACY_FORMATS = ("infodecomp.result-store/1",)
_LOCK_DIR = ".locks"
_DAMAGED_DIR = "damaged"
_LOCK_RE = re.compile(r"^rows-(\d{3,})-of-(\d{3,})\.lock$")
_SHARD_RE = re.compile(r"^rows-(\d{3,})-of-(\d{3,})\.jsonl$")


class SettingsMismatchError(ValueError):
    """A result store on disk was made with other settings than the ones given now."""


class IncompleteResultsError(RuntimeError):
    """A merge was asked for ``n_examples`` rows but some example indices have no row yet."""


class StoreDamagedError(ValueError):
    """A file of a result store cannot be read; the message names it and the command that repairs the store."""


class StoreBusyError(RuntimeError):
    """Another process is writing the same examples of a result store (see :meth:`ResultStore.writing`)."""


def check_shard(process_index: int, num_processes: int) -> None:
    """Raise ``ValueError`` unless ``process_index`` names one of ``num_processes`` shards (``0 <= p < P``)."""
    if num_processes < 1 or not 0 <= process_index < num_processes:
        raise ValueError(f"need 0 <= process_index < num_processes; got {process_index} of {num_processes}")


def identity_data(model: Any) -> dict | None:
    """A model's identity as plain JSON, as the store and the records keep it: ``None`` stays ``None``; a mapping
    or a dataclass (e.g. what :func:`infodecomp.models.identity.model_identity` returns: ``name``, ``version``,
    ``dtype``, ``device``, ``cross_attention_tokens``, ``denoiser``) is taken as it is. A model object is refused:
    the results layer is given the identity, it does not compute it."""
    if model is None:
        return None
    if isinstance(model, Mapping) or (dataclasses.is_dataclass(model) and not isinstance(model, type)):
        return to_jsonable(model)
    raise TypeError(f"the results layer takes a model's identity as data (a mapping), not the model itself (got "
                    f"{type(model).__name__}); pass infodecomp.models.identity.model_identity(model)")


def _repair_hint(store: Path) -> str:
    return (f"Run `python -m infodecomp.results repair {store}` to move the unreadable rows aside (into "
            f"{store / _DAMAGED_DIR}); the next run recomputes them.")


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


def _row_problem(row: Any) -> str | None:
    """Why a parsed JSON line is not a row of a store (None: it is one)."""
    if not isinstance(row, dict):
        return f"not a row (a JSON {type(row).__name__}, expected an object)"
    index = row.get("index")
    if isinstance(index, bool) or not isinstance(index, int) or index < 0:
        return f"row without a valid 'index' (got {index!r})"
    if not isinstance(row.get("id"), str):
        return f"row {index} without a str 'id' (got {row.get('id')!r})"
    arrays = row.get("_arrays")
    if arrays is not None and (not isinstance(arrays, list) or not isinstance(row.get("_npz"), str)):
        return f"row {index} with a bad array reference (_arrays {arrays!r}, _npz {row.get('_npz')!r})"
    if row.get("_npz") is not None:
        try:
            _npz_path(Path("STORE"), row["_npz"])
        except ValueError as err:
            return f"row {index} names an array file outside the store's arrays/ ({err})"
    return None


def _npz_path(store: Path, rel: Any) -> Path:
    """The array file a row names (``_npz``, e.g. ``"arrays/rows-000-of-001-000000000.npz"``): always a file in
    the store's own ``arrays/`` folder (:func:`infodecomp.checks.contained_path`), else ``ValueError``, so that
    no row can make a read, a merge or a repair touch a file elsewhere."""
    path = contained_path(store, rel, "its _npz")
    parts = path.relative_to(store).parts
    if len(parts) < 2 or parts[0] != "arrays":
        raise ValueError(f"its _npz is {rel!r}, not a file in the store's arrays/ folder")
    return path


def _nonfinite(value: Any, where: str) -> str | None:
    """Where a JSON-able value holds NaN or ±inf (``"settings['threshold'] is nan"``), or None."""
    if isinstance(value, float) and not math.isfinite(value):
        return f"{where} is {value!r}"
    if isinstance(value, dict):
        items = ((f"{where}[{k!r}]", v) for k, v in value.items())
    elif isinstance(value, list):
        items = ((f"{where}[{i}]", v) for i, v in enumerate(value))
    else:
        return None
    return next((w for k, v in items if (w := _nonfinite(v, k)) is not None), None)


def _check_folder(path: Path) -> None:
    """``NotADirectoryError`` unless ``path`` is a folder or can become one (a file, or a symbolic link whose
    target is missing, cannot)."""
    if path.is_symlink() and not path.exists():
        raise NotADirectoryError(f"the result store path {path} is a symbolic link to {os.readlink(path)!r}, "
                                 "which does not exist; create that folder, or remove the link")
    if path.exists() and not path.is_dir():
        raise NotADirectoryError(f"the result store path {path} is a file, not a folder; a result store is a "
                                 "folder (with a manifest.json and rows-*.jsonl): pass another path")


def _overlap(a: tuple[int, int], b: tuple[int, int]) -> bool:
    """Whether shards ``a = (p, P)`` and ``b = (q, Q)`` share example indices: ``p + kP = q + lQ`` has a solution
    exactly when ``p ≡ q (mod gcd(P, Q))``."""
    return (a[0] - b[0]) % math.gcd(a[1], b[1]) == 0


def _parse_manifest(path: Path) -> tuple[dict | None, str | None]:
    """``(manifest, None)``, or ``(None, why it is unreadable)``."""
    try:
        data = path.read_bytes()
    except OSError as err:
        return None, f"cannot be read ({err})"
    if not data.strip():
        return None, "it is empty"
    try:
        manifest = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        return None, f"not JSON ({err})"
    if not isinstance(manifest, dict):
        return None, f"a JSON {type(manifest).__name__}, not an object"
    return manifest, None


def _read_manifest(path: Path) -> dict:
    """The parsed ``manifest.json`` of a store, or :class:`StoreDamagedError` naming it."""
    manifest, why = _parse_manifest(path)
    if why is not None:
        raise StoreDamagedError(
            f"{path}: the store's manifest is unreadable ({why}), so nothing says which settings its rows came "
            f"from. Run `python -m infodecomp.results repair {path.parent}` to move the whole store aside (into "
            f"{path.parent / _DAMAGED_DIR}); the next run starts it afresh.")
    return manifest


def _npz_keys(path: Path) -> set[str]:
    """Load every array of an ``.npz`` (so that a damaged member is found too) and return its keys; any failure
    raises :class:`StoreDamagedError` naming the file."""
    try:
        with np.load(path, allow_pickle=False) as f:
            for k in f.files:
                f[k]
            return set(f.files)
    except (OSError, ValueError, EOFError, KeyError, zipfile.BadZipFile, zipfile.LargeZipFile) as err:
        raise StoreDamagedError(f"{path}: unreadable array file ({type(err).__name__}: {err})") from err


def _write_all(fd: int, data: bytes) -> None:
    """``os.write`` until every byte of ``data`` is written (a write may take only part of it)."""
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


def _append_all_or_nothing(file: Path, payload: bytes) -> None:
    """Append ``payload`` (whole lines) to ``file`` and fsync; when the write fails half-way (a full disk, a
    signal), the file is cut back to where it was, so a retry starts on a clean line."""
    fd = os.open(file, os.O_WRONLY | os.O_APPEND | os.O_CREAT, _NEW_FILE_MODE)
    try:
        start = os.fstat(fd).st_size
        try:
            _write_all(fd, payload)
            os.fsync(fd)
        except BaseException:
            with contextlib.suppress(OSError):
                os.ftruncate(fd, start)  # the next append also cuts a partial line, should this fail too
            raise
    finally:
        os.close(fd)


_NEW_FILE_MODE = 0o666  # less the umask, as open() gives


class ResultStore:
    """A folder of per-example results that grows one batch at a time (see the module docstring).

    Args:
        path: the store's folder (created if missing).
        settings: everything of the experiment that changes the results (dataset, estimator settings, protocol,
            ...): a dict or dataclass of JSON-able values.
        model: the identity of the model the rows come from, as data (a mapping or dataclass:
            :func:`infodecomp.models.identity.model_identity` of a loaded model: weights' version, dtype, device
            type, cross-attention tokens, denoiser), or None; it is part of the store's identity, and gives
            ``model_id`` and ``revision`` unless they are passed.
        model_id, revision, seed: provenance, part of the identity.
        process_index, num_processes: the shard this object writes to by default (``rows-p-of-P.jsonl``).
            :func:`run_sharded` passes the right shard itself.
        lock_timeout: seconds to wait for another writer of the same examples before
            :class:`StoreBusyError` (default 0: refuse at once, saying who holds the store).

    The identity (``settings``, ``model``, ``model_id``, ``revision``, ``seed``) is saved in ``manifest.json``;
    opening an existing store with a different identity raises :class:`SettingsMismatchError`. A store may be
    open in several processes at once as long as each writes its own shard (:meth:`writing`).
    """

    def __init__(
        self,
        path: str | os.PathLike,
        settings: Mapping[str, Any] | Any,
        *,
        model: Any = None,
        model_id: str | None = None,
        revision: str | None = None,
        seed: int | None = None,
        process_index: int = 0,
        num_processes: int = 1,
        lock_timeout: float = 0.0,
    ):
        check_shard(process_index, num_processes)  # validates the shard
        self.path = Path(path)
        self.shard = (int(process_index), int(num_processes))
        self.lock_timeout = float(lock_timeout)
        model_ident = identity_data(model)
        if model_ident is not None:
            model_id = model_ident["name"] if model_id is None else model_id
            revision = model_ident["version"] if revision is None else revision
        if seed is not None and (isinstance(seed, bool) or not isinstance(seed, numbers.Integral)):
            raise TypeError(f"seed must be an int or None; got {seed!r} ({type(seed).__name__})")
        identity = {"settings": to_jsonable(settings), "model": model_ident, "model_id": model_id,
                    "revision": revision, "seed": None if seed is None else int(seed)}
        if not isinstance(identity["settings"], dict):
            raise TypeError(f"settings must be a dict or dataclass; got {type(settings).__name__}")
        for key in ("settings", "model", "model_id", "revision"):
            bad = _nonfinite(identity[key], key)
            if bad is not None:  # JSON has no NaN, and NaN != NaN would make the store refuse itself
                raise ValueError(f"{bad}: a result store's identity must hold finite numbers (it is saved as JSON "
                                 "and compared on every open); pass a finite number or None")
        _check_folder(self.path)  # before anything is created
        self.identity = identity
        self.settings = identity["settings"]
        self.model_id, self.revision, self.seed = model_id, revision, identity["seed"]
        manifest_path = self.path / "manifest.json"
        if not manifest_path.exists():
            self.path.mkdir(parents=True, exist_ok=True)
            with self._guard():  # two processes creating one store at the same moment: one manifest
                if not manifest_path.exists():
                    self._refuse_orphans(manifest_path)
                    manifest = {"format": STORE_FORMAT, **identity, "created": now(),
                                "package_version": package_version()}
                    atomic_write_json(manifest_path, manifest)
        self.manifest = _read_manifest(manifest_path)
        self._check_identity(identity)
        self._held: dict[tuple[int, int], Any] = {}
        self._indices: set[int] = {row["index"] for row in self._iter_rows()}

    # -- identity ------------------------------------------------------------------------------------------
    def _refuse_orphans(self, manifest_path: Path) -> None:
        """A store without its manifest but with rows or array files is damaged: nothing says which settings
        those rows came from, so they are never adopted under this run's identity (``check`` says the same)."""
        rows = [p.name for p in self._shard_files() if p.stat().st_size > 0]
        arrays = self.path / "arrays"
        npz = sorted(p.name for p in arrays.glob("*.npz")) if arrays.is_dir() else []
        if rows or npz:
            raise StoreDamagedError(
                f"{manifest_path} is missing, but the store holds {'rows (' + ', '.join(rows) + ')' if rows else ''}"
                f"{' and ' if rows and npz else ''}{f'{len(npz)} array file(s)' if npz else ''}: nothing says "
                "which settings they came from, so this run will not adopt them as its own. "
                f"{_repair_hint(self.path)}")

    def _check_identity(self, identity: dict) -> None:
        fmt = self.manifest.get("format")
        if fmt in _LEGACY_FORMATS:
            raise SettingsMismatchError(
                f"the result store at {self.path} was written by an older infodecomp (format {fmt!r}) whose store "
                "identity left out the model's dtype, device and cross-attention tokens, so its rows cannot be "
                "told apart from those of another precision. Move or delete the folder to compute them again.")
        if fmt != STORE_FORMAT:
            raise SettingsMismatchError(f"{self.path}: not a result store of format {STORE_FORMAT!r} "
                                        f"(manifest format {fmt!r})")
        diffs = []
        for key in ("model_id", "revision", "seed"):
            if canonical(self.manifest.get(key)) != canonical(identity[key]):
                diffs.append(f"{key}: saved {self.manifest.get(key)!r}, now {identity[key]!r}")
        for group in ("model", "settings"):
            saved, now = self.manifest.get(group), identity[group]
            if not isinstance(saved, dict) or not isinstance(now, dict):
                if canonical(saved) != canonical(now):
                    diffs.append(f"{group}: saved {saved!r}, now {now!r}")
                continue
            for key in sorted(set(saved) | set(now)):
                a, b = saved.get(key, "<missing>"), now.get(key, "<missing>")
                if canonical(a) != canonical(b):
                    diffs.append(f"{group}[{key!r}]: saved {a!r}, now {b!r}")
        if diffs:
            raise SettingsMismatchError(
                f"the result store at {self.path} was made with other settings, so its rows cannot be mixed with "
                "this run's:\n  " + "\n  ".join(diffs)
                + "\nUse another path for these settings, or delete the folder to start over."
            )

    # -- locks ---------------------------------------------------------------------------------------------
    def _lock(self, name: str):
        folder = self.path / _LOCK_DIR
        folder.mkdir(parents=True, exist_ok=True)
        return FileLock(str(folder / name))

    @contextlib.contextmanager
    def _guard(self):
        """A short store-wide lock around creating the manifest and taking a writer's lock."""
        guard = self._lock("store.lock")
        guard.acquire(timeout=120)
        try:
            yield
        finally:
            guard.release()

    def _owner(self, name: str) -> str:
        try:
            info = json.loads((self.path / _LOCK_DIR / f"{name}.owner").read_text(encoding="utf-8"))
            return f"pid {info['pid']} on {info['host']}, since {info['since']}"
        except (OSError, ValueError, KeyError, TypeError):
            return "a process that did not say who it is"

    def _busy(self, shard: tuple[int, int]) -> str | None:
        """Who holds a writer's lock on examples that ``shard`` would write (None: nobody). Call under the guard."""
        folder = self.path / _LOCK_DIR
        for file in sorted(folder.glob("rows-*.lock")) if folder.is_dir() else []:
            m = _LOCK_RE.match(file.name)
            other = (int(m.group(1)), int(m.group(2))) if m else None
            if other is None or other in self._held or not _overlap(shard, other):
                continue
            probe = self._lock(file.name)
            try:
                probe.acquire(timeout=0)
            except Timeout:
                return f"shard {other[0]} of {other[1]}, written by {self._owner(file.stem)}"
            probe.release()
        return None

    def _acquire(self, shard: tuple[int, int], timeout: float | None):
        timeout = self.lock_timeout if timeout is None else float(timeout)
        name = _shard_name(*shard)
        deadline = time.monotonic() + timeout
        while True:
            with self._guard():
                who = self._busy(shard)
                if who is None:
                    own = self._lock(f"{name}.lock")
                    try:
                        own.acquire(timeout=0)
                    except Timeout:
                        who = f"shard {shard[0]} of {shard[1]}, written by {self._owner(name)}"
                    else:
                        owner = {"pid": os.getpid(), "host": socket.gethostname(), "since": now(),
                                 "argv": sys.argv[:3]}
                        with contextlib.suppress(OSError):
                            (self.path / _LOCK_DIR / f"{name}.owner").write_text(json.dumps(owner))
                        return own
            if time.monotonic() >= deadline:
                raise StoreBusyError(
                    f"{self.path} is being written by another run ({who}), which computes the same examples as "
                    f"this one (shard {shard[0]} of {shard[1]}). Two runs on one store would write every example "
                    "twice, so this one stops. Wait for the other run to finish and run again (it resumes from "
                    "the rows on disk), or stop it: its lock goes away when its process exits, even when killed.")
            time.sleep(min(1.0, max(0.05, deadline - time.monotonic())))

    @contextlib.contextmanager
    def writing(self, shard: tuple[int, int] | None = None, *, timeout: float | None = None):
        """Hold the writer's lock of ``shard`` (default: this object's) for a whole run.

        While it is held, no other process can write rows of the same examples (a shard that overlaps:
        ``p ≡ q mod gcd(P, Q)``); trying raises :class:`StoreBusyError` after ``timeout`` seconds (default:
        ``lock_timeout``). On entry the rows on disk are read again, so what another run wrote before is known
        (and skipped by :func:`run_sharded`). Re-entrant in one object; released on exit, or by the operating
        system when the process dies.
        """
        shard = self.shard if shard is None else (int(shard[0]), int(shard[1]))
        check_shard(*shard)
        if shard in self._held:
            yield self
            return
        lock = self._acquire(shard, timeout)
        self._held[shard] = lock
        try:
            self._indices = {row["index"] for row in self._iter_rows()}
            yield self
        finally:
            del self._held[shard]
            lock.release()

    # -- reading -------------------------------------------------------------------------------------------
    def _shard_files(self) -> list[Path]:
        return sorted(p for p in self.path.glob("rows-*.jsonl") if _SHARD_RE.match(p.name))

    def _iter_rows(self) -> Iterable[dict]:
        for file in self._shard_files():
            try:
                data = file.read_bytes()
            except OSError as err:
                raise StoreDamagedError(f"{file}: cannot be read ({err})") from err
            lines = data.split(b"\n")
            # A last piece without "\n" is a line cut by a kill (or being written by another process): skip it.
            for lineno, line in enumerate(lines[:-1], start=1):
                if not line.strip():
                    continue
                try:
                    row = json.loads(line)
                except (UnicodeDecodeError, json.JSONDecodeError) as err:
                    raise StoreDamagedError(f"{file}:{lineno}: corrupt row ({err}). {_repair_hint(self.path)}") \
                        from err
                why = _row_problem(row)
                if why:
                    raise StoreDamagedError(f"{file}:{lineno}: {why}. {_repair_hint(self.path)}")
                row["_file"] = file.name
                row["_line"] = lineno
                yield row

    def _rows_by_index(self) -> dict[int, dict]:
        by_index: dict[int, dict] = {}
        for row in self._iter_rows():
            i = row["index"]
            if i in by_index:
                first = by_index[i]
                raise StoreDamagedError(
                    f"{self.path}: example index {i} has two rows ({first['_file']}:{first['_line']} and "
                    f"{row['_file']}:{row['_line']}), written by two runs at once. {_repair_hint(self.path)}")
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

    def _arrays_of(self, row: dict, cache: dict) -> dict:
        rel = row["_npz"]
        if rel not in cache:
            path = _npz_path(self.path, rel)  # inside arrays/ (checked when the row was read, too)
            try:
                with np.load(path, allow_pickle=False) as f:
                    cache[rel] = {k: f[k] for k in f.files}
            except (OSError, ValueError, EOFError, KeyError, zipfile.BadZipFile) as err:
                raise StoreDamagedError(
                    f"{path}: unreadable array file ({type(err).__name__}: {err}), holding the arrays of the row at "
                    f"{row['_file']}:{row['_line']} (index {row['index']}). {_repair_hint(self.path)}") from err
        arrays = cache[rel]
        out = {}
        for col in row.get("_arrays", ()):
            key = f"{row['index']}/{col}"
            if key not in arrays:
                where = _npz_path(self.path, rel)
                raise StoreDamagedError(
                    f"{where}: has no array {key!r}, which the row at {row['_file']}:{row['_line']} "
                    f"points to. {_repair_hint(self.path)}")
            out[col] = arrays[key]
        return out

    def to_frame(self, *, arrays: bool = True):
        """All rows as a ``pandas.DataFrame`` sorted by example index.

        Columns: ``index``, ``id``, then the row fields in order of first appearance. Array fields hold one
        ``numpy.ndarray`` per row (dtype as stored); ``arrays=False`` leaves them out.
        """
        import pandas as pd  # heavy: only when a table is read

        by_index = self._rows_by_index()
        rows = [by_index[i] for i in sorted(by_index)]
        cache: dict[str, Any] = {}
        records, columns = [], {"index": None, "id": None}
        for row in rows:
            rec = {k: v for k, v in row.items() if not k.startswith("_")}
            if arrays and row.get("_npz"):
                rec.update(self._arrays_of(row, cache))
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
    def _cut_partial_line(self, file: Path) -> None:
        """Cut a partial last line (a run killed in the middle of a write) off this process's own shard file,
        so that the next row never glues onto it. Checked before every append (the writer's lock is held, so
        nobody else writes this file): one byte is read."""
        try:
            size = file.stat().st_size
        except FileNotFoundError:
            return
        if size == 0:
            return
        with open(file, "rb") as f:
            f.seek(size - 1)
            if f.read(1) == b"\n":
                return
        data = file.read_bytes()
        keep = data.rfind(b"\n") + 1
        with open(file, "r+b") as f:
            f.truncate(keep)
        warnings.warn(f"{file}: dropped a partial last row left by an interrupted run", stacklevel=4)

    def append(self, rows: Sequence[Mapping[str, Any]], *, shard: tuple[int, int] | None = None) -> None:
        """Write a batch of rows (one per example) to this process's shard file, then fsync.

        Each row needs ``index`` (int >= 0, the example's position in the dataset); ``id`` defaults to
        ``str(index)``. Other fields: JSON-able values inline; arrays (>= 1 dim) to the batch's ``.npz``.
        Field names starting with ``_`` are reserved. An index that already has a row on disk (written by this
        run or another) raises ``ValueError``. Outside :meth:`writing`, the writer's lock is taken for the
        duration of this call (:class:`StoreBusyError` while another run writes the same examples).
        """
        rows = list(rows)
        if not rows:
            return
        pi, n = shard if shard is not None else self.shard
        check_shard(pi, n)
        with self.writing((pi, n)):
            self._append(rows, pi, n)

    def _append(self, rows: list, pi: int, n: int) -> None:
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
            k = 0
            while (self.path / npz_rel).exists():  # never replace a file that other rows may point to
                k += 1
                npz_rel = f"arrays/{name}-{min(batch_indices):09d}-{k}.npz"
            buf = io.BytesIO()
            np.savez_compressed(buf, **arrays)
            atomic_write_bytes(self.path / npz_rel, buf.getvalue())  # arrays first, then the rows that point to them
            for out in inline_rows:
                if "_arrays" in out:
                    out["_npz"] = npz_rel
        file = self.path / f"{name}.jsonl"
        self._cut_partial_line(file)
        payload = "".join(json.dumps(r, allow_nan=True) + "\n" for r in inline_rows).encode("utf-8")
        _append_all_or_nothing(file, payload)
        self._indices |= batch_indices

    def __repr__(self) -> str:
        return f"ResultStore({str(self.path)!r}, rows={len(self._indices)}, shard={self.shard})"
