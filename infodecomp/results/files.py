"""Plain files of the results layer: values made JSON-able, their canonical form, and atomic writes.

Every file the result store and the records write goes through :func:`atomic_write_bytes` (temporary file in the same
folder, fsync, rename), so a killed process leaves either the old file or the new one, never half of one.
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import enum
import json
import numbers
import os
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from .. import __version__

__all__ = ["atomic_write_bytes", "atomic_write_json", "canonical", "now", "package_version", "to_jsonable"]


def package_version() -> str:
    """The version of infodecomp that writes a file (recorded beside every result)."""
    return __version__


def now() -> str:
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


def canonical(obj: Any) -> str:
    """A canonical JSON string of ``obj`` (sorted keys): equal settings give equal strings."""
    return json.dumps(to_jsonable(obj), sort_keys=True, allow_nan=True)


def _umask() -> int:
    """The process's umask, read without changing it where the system allows (Linux: /proc/self/status)."""
    try:
        with open("/proc/self/status", encoding="ascii") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    mask = os.umask(0o022)  # elsewhere: read it by setting it, and put it back at once
    os.umask(mask)
    return mask


def _file_mode(path: Path) -> int:
    """The permission bits a new file at ``path`` gets from ``open()``: an existing file keeps its own, a new one
    gets ``0o666`` less the umask (``mkstemp`` alone would give ``0o600``)."""
    try:
        return path.stat().st_mode & 0o7777
    except FileNotFoundError:
        return 0o666 & ~_umask()


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` through a temporary file in the same folder and an atomic rename. The file gets
    the permissions a plain ``open()`` would give it (the umask is respected; an existing file keeps its mode)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    mode = _file_mode(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        if hasattr(os, "fchmod"):
            os.fchmod(fd, mode)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def atomic_write_json(path: Path, obj: Any) -> None:
    atomic_write_bytes(path, (json.dumps(obj, indent=2, allow_nan=False) + "\n").encode("utf-8"))
