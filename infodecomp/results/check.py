"""Checking and repairing a result store (``python -m infodecomp.results check|repair PATH``).

:func:`check_store` lists what is damaged; :func:`repair_store` moves unreadable rows, rows whose arrays are
unreadable, and duplicate rows into ``PATH/damaged/`` (nothing is deleted), so that the next run recomputes exactly
those examples. A store whose manifest is unreadable cannot say which settings its rows came from: repair moves all
of it aside.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as _dt
import json
import os
from pathlib import Path

from filelock import FileLock, Timeout

from .files import atomic_write_bytes
from .store import (_DAMAGED_DIR, _LOCK_DIR, _LOCK_RE, _SHARD_RE, STORE_FORMAT, StoreBusyError, StoreDamagedError,
                    _npz_keys, _npz_path, _parse_manifest, _row_problem)

__all__ = ["StoreProblem", "check_store", "find_stores", "repair_store"]


@dataclasses.dataclass(frozen=True)
class StoreProblem:
    """One thing wrong with a result store: where (``file`` relative to the store, ``line`` or None), what, and
    what :func:`repair_store` does about it."""

    file: str
    line: int | None
    what: str
    fix: str

    def __str__(self) -> str:
        where = self.file if self.line is None else f"{self.file}:{self.line}"
        return f"{where}: {self.what} -> {self.fix}"


@dataclasses.dataclass
class _Scan:
    problems: list = dataclasses.field(default_factory=list)
    manifest_ok: bool = True
    keep: dict = dataclasses.field(default_factory=dict)      # shard file -> [line bytes kept]
    drop: dict = dataclasses.field(default_factory=dict)      # shard file -> [line bytes dropped]
    bad_npz: set = dataclasses.field(default_factory=set)     # relative paths of unreadable array files
    n_rows: int = 0


def _scan_store(path: Path) -> _Scan:
    scan = _Scan()
    manifest = path / "manifest.json"
    files = sorted(p for p in path.glob("rows-*.jsonl") if _SHARD_RE.match(p.name))
    aside = "move the whole store aside; the next run starts afresh"
    if manifest.exists():
        m, why = _parse_manifest(manifest)
        if why is not None:
            scan.manifest_ok = False
            scan.problems.append(StoreProblem("manifest.json", None, f"unreadable ({why}), so nothing says which "
                                              "settings the rows came from", aside))
        elif m.get("format") != STORE_FORMAT:
            scan.problems.append(StoreProblem("manifest.json", None, f"format {m.get('format')!r}, not "
                                              f"{STORE_FORMAT!r} (an older or foreign store)",
                                              "none: move or delete the folder to compute it again"))
    elif files:
        scan.manifest_ok = False
        scan.problems.append(StoreProblem("manifest.json", None, "missing, so nothing says which settings the rows "
                                          "came from", aside))
    npz_keys: dict[str, set | None] = {}
    seen: dict[int, str] = {}
    for file in files:
        data = file.read_bytes()
        lines = data.split(b"\n")
        keep, drop = [], []
        for lineno, line in enumerate(lines[:-1], start=1):
            if not line.strip():
                continue
            where = (file.name, lineno)
            try:
                row = json.loads(line)
                why = _row_problem(row)
            except (UnicodeDecodeError, json.JSONDecodeError) as err:
                row, why = None, f"corrupt row ({err})"
            if why is None and row.get("_npz"):
                rel = row["_npz"]
                if rel not in npz_keys:
                    try:
                        npz_keys[rel] = _npz_keys(_npz_path(path, rel))  # inside arrays/ (_row_problem)
                    except StoreDamagedError as err:
                        npz_keys[rel] = None
                        scan.bad_npz.add(rel)
                        file_at = _npz_path(path, rel)
                        if file_at.exists():
                            scan.problems.append(StoreProblem(rel, None, str(err).replace(f"{file_at}: ", ""),
                                                              f"move it to {_DAMAGED_DIR}/ with the rows that use it"))
                keys = npz_keys[rel]
                if keys is None:
                    why = (f"row {row['index']}: its arrays are in {rel}, which is "
                           f"{'unreadable' if _npz_path(path, rel).exists() else 'missing'}")
                else:
                    missing = [c for c in row["_arrays"] if f"{row['index']}/{c}" not in keys]
                    if missing:
                        why = f"row {row['index']}: {rel} lacks its arrays {missing}"
            if why is None and row["index"] in seen:
                why = f"row {row['index']} again (first at {seen[row['index']]}): two runs wrote it"
            if why is None:
                seen[row["index"]] = f"{file.name}:{lineno}"
                keep.append(line)
                scan.n_rows += 1
            else:
                drop.append(line)
                scan.problems.append(StoreProblem(where[0], where[1], why, f"move the row to {_DAMAGED_DIR}/; "
                                                                           "the next run recomputes it"))
        if lines[-1]:
            drop.append(lines[-1])
            scan.problems.append(StoreProblem(file.name, len(lines), "a partial last row (a run killed while "
                                              "writing)", f"move it to {_DAMAGED_DIR}/; the next run recomputes it"))
        scan.keep[file] = keep
        scan.drop[file] = drop
    return scan


def check_store(path: str | os.PathLike) -> list[StoreProblem]:
    """What is wrong with the result store at ``path`` (empty list: nothing). Reads every row and every array
    file; changes nothing. ``python -m infodecomp.results check PATH`` prints it."""
    path = Path(path)
    if not path.is_dir():
        raise FileNotFoundError(f"{path} is not a folder (a result store is a folder with a manifest.json)")
    return _scan_store(path).problems


@contextlib.contextmanager
def _all_writer_locks(path: Path):
    """Every writer's lock of a store (and the guard), so that nothing writes while it is repaired."""
    folder = path / _LOCK_DIR
    folder.mkdir(parents=True, exist_ok=True)
    guard = FileLock(str(folder / "store.lock"))
    guard.acquire(timeout=120)
    held = []
    try:
        names = {p.stem for p in path.glob("rows-*.jsonl") if _SHARD_RE.match(p.name)}
        names |= {p.stem for p in folder.glob("rows-*.lock") if _LOCK_RE.match(p.name)}
        for name in sorted(names):
            lock = FileLock(str(folder / f"{name}.lock"))
            try:
                lock.acquire(timeout=0)
            except Timeout:
                raise StoreBusyError(f"{path}: a run is writing {name} right now; repair the store after it "
                                     "has finished (or stop it)") from None
            held.append(lock)
        yield
    finally:
        for lock in reversed(held):
            lock.release()
        guard.release()


def repair_store(path: str | os.PathLike) -> list[StoreProblem]:
    """Make the result store at ``path`` readable again; returns what was wrong (and is now repaired).

    Nothing is deleted: unreadable rows, rows whose arrays are unreadable or missing, second copies of a row and
    partial last rows go to ``PATH/damaged/<time>/`` (rows appended to a file named after their shard, array
    files moved), and the shard files are rewritten without them, so the next run of the experiment recomputes
    exactly those examples. A store whose manifest is missing or unreadable cannot say which settings its rows
    came from, so all of it moves aside. Refuses (:class:`StoreBusyError`) while a run is writing the store.
    """
    path = Path(path)
    if not path.is_dir():
        raise FileNotFoundError(f"{path} is not a folder (a result store is a folder with a manifest.json)")
    with _all_writer_locks(path):
        scan = _scan_store(path)
        fixable = [p for p in scan.problems if not p.fix.startswith("none")]
        if not fixable:
            return scan.problems
        aside = path / _DAMAGED_DIR / _dt.datetime.now().strftime("%Y%m%dT%H%M%S%f")
        aside.mkdir(parents=True)
        if not scan.manifest_ok:
            for item in [path / "manifest.json", path / "arrays", *sorted(path.glob("rows-*.jsonl"))]:
                if item.exists():
                    os.replace(item, aside / item.name)
            return scan.problems
        for file, dropped in scan.drop.items():
            if not dropped:
                continue
            with open(aside / file.name, "ab") as f:
                f.write(b"".join(line + b"\n" for line in dropped))
            atomic_write_bytes(file, b"".join(line + b"\n" for line in scan.keep[file]))
        for rel in sorted(scan.bad_npz):
            src, dst = _npz_path(path, rel), _npz_path(aside, rel)  # never a file outside the store's arrays/
            if src.exists():
                dst.parent.mkdir(parents=True, exist_ok=True)
                os.replace(src, dst)
        return scan.problems


def find_stores(path: Path) -> list[Path]:
    """``path`` if it is a store, else every store under it (folders holding a manifest.json or shard files)."""
    def is_store(p: Path) -> bool:
        return (p / "manifest.json").exists() or any(_SHARD_RE.match(f.name) for f in p.glob("rows-*.jsonl"))

    if is_store(path):
        return [path]
    found = []
    seen = set()  # real paths walked: symbolic links to stores are followed (a store is often a link to a big
    for root, dirs, _files in os.walk(path, followlinks=True):  # disk), but a loop of links is walked once
        real = os.path.realpath(root)
        if real in seen:
            dirs[:] = []
            continue
        seen.add(real)
        # a store's own folders are never stores; a repaired store's "damaged/" may hold a whole moved-aside store
        quarantine = (Path(root) / _LOCK_DIR).is_dir()
        dirs[:] = sorted(d for d in dirs if d != _LOCK_DIR and not (quarantine and d == _DAMAGED_DIR))
        if is_store(Path(root)):
            found.append(Path(root))
            dirs[:] = []
    return found
