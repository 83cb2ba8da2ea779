"""Where an experiment keeps its resumable result store: one naming rule for every experiment.

``<root>/<model>/<experiment>/<dataset>[-<protocol>]-<hash>`` (docs/architecture.md#outputs): ``<model>`` is the
model's slug, and the hash covers what changes the stored rows — the experiment's settings (its store identity),
the seed and the model's :func:`~infodecomp.models.identity.model_identity` (weights, dtype, device type, attention
tokens) — so runs that differ in any of them never share a store, and a rerun with the same ones resumes it.
Notebooks pass ``STORE_DIR`` as the root and never build a store's path themselves.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from pathlib import Path

from ..models.identity import model_identity
from ..results import model_slug

__all__ = ["store_path"]


def store_path(root: str | Path, model, experiment: str, dataset: str, identity: Mapping, seed: int, *,
               protocol: str | None = None) -> Path:
    """The folder of one experiment's store.

    Args:
        root: the stores' root (the notebooks' ``STORE_DIR``).
        model: the model (anything :func:`~infodecomp.models.identity.model_identity` reads), or a name: then the hash has
            no model identity (the path of a store made without a model).
        experiment: the experiment module's name (``"relation_testing"``, ``"localization"``, ``"intervention"``).
        dataset: the dataset's name, shown in the folder name.
        identity: the settings that change the stored rows (JSON-serialisable).
        seed: the run's seed.
        protocol: shown in the folder name where the experiment has one.
    Returns: ``Path(root) / model_slug(name) / experiment / "<dataset>[-<protocol>]-<10 hex digits>"``.
    """
    ident = None if isinstance(model, str) else model_identity(model)
    name = model if isinstance(model, str) else (getattr(model, "name", None) or "model")
    key = {"identity": dict(identity), "seed": int(seed)}
    if ident is not None:
        key["model"] = ident
    digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:10]
    folder = "-".join([model_slug(dataset)] + ([protocol] if protocol else []) + [digest])
    return Path(root) / model_slug(name) / experiment / folder
