"""The identity of a pipeline directory's weights (standard library only, so that scripts which only read
recorded results, such as ``scripts/update_claims.py``, can tell which weights are committed without torch)."""

from __future__ import annotations

import hashlib
from pathlib import Path

__all__ = ["file_sha256", "weights_digest", "weights_version"]


def file_sha256(path: str | Path, chunk: int = 1 << 20) -> str:
    """Hex SHA-256 of one file, read in ``chunk``-byte blocks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def weights_digest(directory: str | Path) -> str:
    """SHA-256 over a pipeline directory's weight files (``*.safetensors``, ``*.bin``), their relative paths
    in sorted order included: the identity of a local model's weights."""
    root = Path(directory)
    files = sorted(p for p in root.rglob("*") if p.is_file() and p.suffix in (".safetensors", ".bin"))
    if not files:
        raise ValueError(f"{directory!r} holds no weight files (*.safetensors, *.bin)")
    h = hashlib.sha256()
    for f in files:
        h.update(f.relative_to(root).as_posix().encode() + b"\0")
        with open(f, "rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 20), b""):
                h.update(chunk)
    return h.hexdigest()


def weights_version(directory: str | Path) -> str:
    """``"sha256:<first 16 hex>"`` of :func:`weights_digest`: the version a local model's results record
    (:attr:`infodecomp.models.Model.version`)."""
    return f"sha256:{weights_digest(directory)[:16]}"
