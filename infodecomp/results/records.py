"""Headline numbers of the notebooks (:func:`record`, :class:`Recorder`).

A notebook's last cell records a few numbers; they land in ``figures/<model>/<notebook-stem>.json``::

    {"miou_cmi": {"value": 0.3324, "stderr": 0.0031},
     "n_images": 6927,
     "_provenance": {"model": "shapes-tiny", "model_id": "shapes-tiny", "revision": null,
                     "protocol": "faithful", "seed": 0, "n_samples": 100, "settings": {...},
                     "date": "2026-11-22T10:00:00+00:00", "package_version": "0.1.0"}}

``scripts/update_readme_results.py`` turns these files into the README's results tables.

The model is given by its name, or by its identity as data (a mapping such as
:func:`infodecomp.models.identity.model_identity` makes of a loaded model): this module never looks inside a model.
"""

from __future__ import annotations

import json
import math
import numbers
import os
import re
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
from filelock import FileLock

from ..precision import REDUCED_PRECISION_NOTE, ReducedPrecisionWarning, dtype_name, is_reduced
from .files import atomic_write_json, canonical, now, package_version, to_jsonable
from .store import _nonfinite, identity_data

__all__ = ["PROTOCOLS", "PROVENANCE_KEY", "Recorder", "load_record", "model_slug", "record"]

PROVENANCE_KEY = "_provenance"
PROTOCOLS = ("faithful", "corrected")
_AUTO_PROVENANCE = ("model", "date", "package_version")
_SLUG_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")


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
    import torch  # heavy: only when a torch value is recorded

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


def _model_name(model: Any) -> str:
    """The name behind ``model``: the string itself, or the ``name`` of a model's identity."""
    if isinstance(model, (str, os.PathLike)):
        return os.fspath(model)
    ident = identity_data(model)
    name = None if ident is None else ident.get("name")
    if not isinstance(name, str) or not name:
        raise ValueError(f"model must be a name such as 'shapes-tiny' or a model's identity with a 'name' "
                         f"(infodecomp.models.identity.model_identity(model)); got {type(model).__name__} "
                         f"{model!r:.80}")
    return name


def _model_provenance(model: Any) -> dict:
    """Provenance a model's identity brings by itself: ``model_id``, ``revision``, ``dtype``, ``device``,
    ``cross_attention_tokens`` (see :func:`infodecomp.models.identity.model_identity`); nothing for a plain name."""
    if isinstance(model, (str, os.PathLike)):
        return {}
    ident = identity_data(model) or {}
    return {"model_id": ident.get("name"), "revision": ident.get("version"), "dtype": ident.get("dtype"),
            "device": ident.get("device"), "cross_attention_tokens": ident.get("cross_attention_tokens")}


def _record_path(notebook_stem: str, model: Any, root: str | os.PathLike) -> Path:
    return Path(root) / model_slug(_model_name(model)) / f"{_stem(notebook_stem)}.json"


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


def _normalise_dtype(value: Any) -> Any:
    """A provenance ``dtype`` as its canonical name (``torch.bfloat16`` → ``"bfloat16"``); a per-component
    string (``"unet=bfloat16,vae=float32"``) is checked part by part."""
    if value is None:
        return None
    if isinstance(value, str) and "=" in value:
        parts = [p.split("=", 1) for p in value.split(",")]
        return ",".join(f"{k.strip()}={dtype_name(v)}" for k, v in parts)
    return dtype_name(value)


def _dtype_is_reduced(value: str | None) -> bool:
    if value is None:
        return False
    return any(is_reduced(p.split("=", 1)[-1]) for p in value.split(","))


def _normalise_provenance(provenance: Mapping[str, Any]) -> dict:
    prov = {}
    for key, val in provenance.items():
        if key in _AUTO_PROVENANCE or key == "reduced_precision":
            raise ValueError(f"provenance key {key!r} is filled in automatically; do not pass it")
        prov[key] = _normalise_dtype(val) if key == "dtype" else to_jsonable(val)
        bad = _nonfinite(prov[key], f"provenance {key}")
        if bad is not None:  # JSON has no NaN: say which setting, not "Out of range float values"
            raise ValueError(f"{bad}: recorded provenance must hold finite numbers; pass a finite number or None")
    protocol = prov.get("protocol")
    if protocol is not None and protocol not in PROTOCOLS:
        raise ValueError(f"protocol must be one of {PROTOCOLS} (docs/protocol.md#protocol-flags); got {protocol!r}")
    return prov


def _read_record(path: Path) -> dict:
    try:
        stored = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise ValueError(f"{path} is not readable JSON ({err}); it holds recorded numbers of an earlier run. "
                         "Delete it and run the notebook again to rewrite it") from err
    if not isinstance(stored, dict):
        raise ValueError(f"{path} does not hold a JSON object; refusing to overwrite it")
    return stored


def _write_entries(path: Path, model: Any, entries: dict, provenance: Mapping[str, Any]) -> Path:
    new_prov = {**_normalise_provenance(_model_provenance(model)), **_normalise_provenance(provenance)}
    new_prov.setdefault("model_id", _model_name(model))
    new_prov.setdefault("dtype", None)  # always said, even when unknown (pass the model, or dtype=)
    if _dtype_is_reduced(new_prov["dtype"]):
        note = REDUCED_PRECISION_NOTE.format(dtype=new_prov["dtype"])
        new_prov["reduced_precision"] = note
        warnings.warn(f"{path}: {', '.join(entries)}: {note}", ReducedPrecisionWarning, stacklevel=3)
    # Two notebooks (or processes) recording into one file: each reads, merges and rewrites it under this lock,
    # so neither loses the other's numbers (the rewrite itself is atomic: a reader sees the old or the new file).
    with FileLock(str(_lock_path(path))):
        return _merge_entries(path, entries, new_prov)


def _lock_path(path: Path) -> Path:
    """The lock of ``<root>/<model>/<stem>.json``: ``<root>/.locks/<model>--<stem>.json.lock``, out of the
    model's folder (which holds only its figures and numbers)."""
    folder = path.parent.parent / ".locks"
    folder.mkdir(parents=True, exist_ok=True)
    return folder / f"{path.parent.name}--{path.name}.lock"


def _merge_entries(path: Path, entries: dict, new_prov: dict) -> Path:
    """The read-modify-write of :func:`_write_entries` (call it under the file's lock)."""
    stored: dict = _read_record(path) if path.exists() else {}
    old_prov = stored.pop(PROVENANCE_KEY, {})
    conflicts = {k: (old_prov[k], v) for k, v in new_prov.items() if k in old_prov and canonical(old_prov[k]) != canonical(v)}
    if old_prov and "dtype" not in old_prov:  # recorded before the dtype was: its precision is not known
        conflicts["dtype"] = ("<not recorded>", new_prov["dtype"])
    if conflicts:
        # The stored numbers came from another run (other seed, settings, ...): never mix the two runs.
        dropped = sorted(set(stored) - set(entries))
        if dropped:
            warnings.warn(
                f"{path}: provenance changed ({', '.join(f'{k}: {a!r} -> {b!r}' for k, (a, b) in conflicts.items())}); "
                f"dropping results of the earlier run: {', '.join(dropped)}",
                stacklevel=4,
            )
        stored, old_prov = {}, {}
    merged = {k: v for k, v in {**old_prov, **new_prov}.items() if k not in _AUTO_PROVENANCE}
    order = ("model_id", "revision", "dtype", "reduced_precision", "protocol", "seed", "n_samples", "settings")
    prov = {"model": path.parent.name, **{k: merged.pop(k) for k in order if k in merged}, **merged,
            "date": now(), "package_version": package_version()}
    stored.update(entries)
    atomic_write_json(path, {**stored, PROVENANCE_KEY: prov})
    return path


def record(
    notebook_stem: str,
    model: Any,
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
        model: the model's identity (a mapping, e.g. :func:`infodecomp.models.identity.model_identity` of the
            loaded model: then its name, weights' version, dtype, device type and cross-attention tokens are
            recorded by themselves), or its short name (``"shapes-tiny"``, ``"sd21-base"``) / hub id / path.
            :func:`model_slug` of the name is the folder name; the name goes to provenance ``model_id`` unless
            ``model_id=`` is given.
        name: result name, e.g. ``"miou_cmi_100"``; names starting with ``_`` are reserved.
        value: one finite real number (Python, numpy or 1-element torch).
        stderr: its standard error (finite, >= 0), or None. With a stderr the entry is
            ``{"value": v, "stderr": s}``, without it the bare number.
        root: the figures folder.
        **provenance: what produced the number, stored once per file under ``"_provenance"``: by convention
            ``model_id``, ``revision``, ``dtype`` (a ``torch.dtype`` or its name), ``protocol`` ("faithful" |
            "corrected"), ``seed``, ``n_samples``, ``settings`` (a dict or dataclass). ``date`` and
            ``package_version`` are added automatically.

    Every file says ``dtype`` (``null`` when neither the model nor ``dtype=`` gave it). A number computed in
    float16 or bfloat16 is biased (:mod:`infodecomp.precision`): the file then also holds a
    ``reduced_precision`` note, and a :class:`~infodecomp.precision.ReducedPrecisionWarning` is issued.

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

    >>> rec = Recorder("03_localization", model_identity(model), protocol="faithful", seed=0, n_samples=64)   # doctest: +SKIP
    >>> rec.record("miou_cmi", 0.41, 0.01)            # doctest: +SKIP
    >>> rec.record_many({"miou_attn": (0.38, 0.01), "n_images": 500})   # doctest: +SKIP

    ``model``: the model's identity (recommended, :func:`infodecomp.models.identity.model_identity`: its dtype and
    weights' version are then recorded without being passed) or its name; see :func:`record`.
    """

    def __init__(self, notebook_stem: str, model: Any, *, root: str | os.PathLike = "figures", **provenance: Any):
        self.path = _record_path(notebook_stem, model, root)
        self.model = model
        self.provenance = dict(provenance)
        _normalise_provenance(self.provenance)  # fail early on bad provenance
        _model_provenance(model)

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


def load_record(notebook_stem: str, model: Any, *, root: str | os.PathLike = "figures") -> dict:
    """Read ``<root>/<model>/<notebook_stem>.json`` back (``{}`` if it does not exist)."""
    path = _record_path(notebook_stem, model, root)
    if not path.exists():
        return {}
    return _read_record(path)
