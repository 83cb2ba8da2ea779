"""Training checkpoints of shapes-tiny and ShapesCLIP: written atomically, read without running code.

A checkpoint is one ``torch.save`` blob of tensors, dicts, lists and numbers (``config``, ``state``, weights and
optimiser states). :func:`write_checkpoint` writes it to a temporary file and renames it over the old one, so a run
killed mid-write keeps its previous checkpoint; :func:`read_checkpoint` reads it with ``weights_only=True`` (no
pickled code runs) and turns any failure into an error that says what to do.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch

__all__ = ["read_checkpoint", "write_checkpoint"]


def write_checkpoint(path: str | os.PathLike, blob: dict) -> None:
    """Save ``blob`` at ``path`` atomically (a temporary file beside it, then a rename)."""
    path = Path(path)
    tmp = path.with_suffix(".tmp")
    torch.save(blob, tmp)
    os.replace(tmp, path)


def read_checkpoint(path: str | os.PathLike, what: str) -> dict:
    """The blob at ``path``; ``ValueError`` naming the file and ``what`` it should be when it cannot be read."""
    try:  # tensors, dicts, lists and numbers only: reading a checkpoint never runs code
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:
        raise ValueError(f"{path} cannot be read as {what} ({type(err).__name__}: {err}); delete it to start over, "
                         "or use another --work-dir") from err
