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

   A store's identity (``manifest.json``) is everything that changes a number: the experiment's settings, the
   seed, and the model's :func:`model_identity` (weights' version, dtype, device type, cross-attention tokens,
   denoiser settings). Opening a store whose saved identity differs from the current one raises
   :class:`SettingsMismatchError` naming what differs: results that differ are never mixed.

   **One writer per shard.** A process writing shard ``p`` of ``P`` holds a lock (``.locks/``, through
   ``filelock``) for the whole run; a second run whose examples overlap (the same notebook started twice, say)
   refuses at once with :class:`StoreBusyError`, naming the other process, instead of writing every row twice.
   The lock goes away when its process exits, even when it is killed, so a killed run still resumes.

   **Damage.** Every read error names its file (and line) and raises :class:`StoreDamagedError`. ``python -m
   infodecomp.results check PATH`` lists what is damaged; ``python -m infodecomp.results repair PATH`` moves
   unreadable rows, rows whose arrays are unreadable, and duplicate rows into ``PATH/damaged/`` (nothing is
   deleted), so that the next run recomputes exactly those examples. A store whose manifest is unreadable
   cannot say which settings its rows came from: repair moves all of it aside.

Sharding: :func:`run_sharded` gives process ``p`` of ``P`` (from ``accelerate.PartialState``) the example
indices ``p, p + P, p + 2P, ...``; each process writes its own ``rows-p-of-P.jsonl``; :meth:`ResultStore.merge`
reads all shard files and returns one table sorted by example index, identical to a one-process run as long as
each example's result depends only on the example (seed per example: :func:`example_seed`).
"""

from __future__ import annotations

import argparse
import contextlib
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
import shutil
import socket
import sys
import tempfile
import time
import warnings
import zipfile
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
    "StoreBusyError",
    "StoreDamagedError",
    "StoreProblem",
    "check_store",
    "example_seed",
    "load_record",
    "model_dtype",
    "model_identity",
    "model_slug",
    "repair_store",
    "record",
    "run_sharded",
    "shard_indices",
    "to_jsonable",
]

PROVENANCE_KEY = "_provenance"
PROTOCOLS = ("faithful", "corrected")
STORE_FORMAT = "infodecomp.result-store/2"
#: Formats whose identity left out the model's dtype, device and cross-attention tokens (refused, with a reason).
_LEGACY_FORMATS = ("infodecomp.result-store/1",)
_LOCK_DIR = ".locks"
_DAMAGED_DIR = "damaged"
_LOCK_RE = re.compile(r"^rows-(\d{3,})-of-(\d{3,})\.lock$")
_AUTO_PROVENANCE = ("model", "date", "package_version")
_SLUG_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
_SHARD_RE = re.compile(r"^rows-(\d{3,})-of-(\d{3,})\.jsonl$")


class SettingsMismatchError(ValueError):
    """A result store on disk was made with other settings than the ones given now."""


class IncompleteResultsError(RuntimeError):
    """A merge was asked for ``n_examples`` rows but some example indices have no row yet."""


class StoreDamagedError(ValueError):
    """A file of a result store cannot be read; the message names it and the command that repairs the store."""


class StoreBusyError(RuntimeError):
    """Another process is writing the same examples of a result store (see :meth:`ResultStore.writing`)."""


def _repair_hint(store: Path) -> str:
    return (f"Run `python -m infodecomp.results repair {store}` to move the unreadable rows aside (into "
            f"{store / _DAMAGED_DIR}); the next run recomputes them.")


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


def _atomic_write_bytes(path: Path, data: bytes) -> None:
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


def _component_dtypes(model) -> dict[str, str]:
    """``{"unet": "float32", "vae": ..., "text_encoder": ...}`` of a pipeline-backed model (what exists)."""
    from .precision import dtype_name

    pipe = getattr(model, "pipeline", None)
    out = {}
    for part in ("unet", "vae", "text_encoder"):
        module = getattr(pipe, part, None) if pipe is not None else None
        params = getattr(module, "parameters", None)
        if params is None:
            continue
        first = next(iter(params()), None)
        if first is not None:
            out[part] = dtype_name(first.dtype)
    return out


def model_dtype(model) -> str | None:
    """The dtype a model computes in, as a name: ``"float32"``, ``"bfloat16"``, …; ``"unet=bfloat16,vae=float32,
    text_encoder=float32"`` when its components differ; ``None`` for a model-like object without a dtype."""
    from .precision import dtype_name

    parts = _component_dtypes(model)
    if parts:
        names = set(parts.values())
        return names.pop() if len(names) == 1 else ",".join(f"{k}={v}" for k, v in parts.items())
    dtype = getattr(model, "dtype", None)
    return None if dtype is None else dtype_name(dtype)


def _denoiser_identity(denoiser) -> Any:
    if denoiser is None:
        return None
    keys = ("prediction_type", "timestep", "v_logsnr", "hide_zero_tokens")
    if all(hasattr(denoiser, k) for k in keys[:3]):
        return {k: to_jsonable(getattr(denoiser, k)) for k in keys if hasattr(denoiser, k)}
    return f"{type(denoiser).__module__}.{type(denoiser).__qualname__}"


def model_identity(model) -> dict | None:
    """Everything about a model that changes its numbers, as plain JSON: the identity every result store keeps
    (and :class:`Recorder` records) beside the experiment's settings and seed.

    ``{"name", "version"`` (:func:`infodecomp.models.model_version`: pinned revision or weights' SHA-256),
    ``"dtype"`` (:func:`model_dtype`), ``"device"`` (the device type: ``"cpu"``, ``"cuda"``, …: kernels differ in
    their rounding), ``"cross_attention_tokens"`` (``"all"`` or ``"words"``: which tokens the UNet attends to) and
    ``"denoiser"`` (prediction type, timestep rule, v-conversion, token hiding; or the class of another
    denoiser)``}``. Works on any model-like object (missing attributes give ``None``); a mapping is taken as an
    identity already made; ``None`` stays ``None``.
    """
    if model is None:
        return None
    if isinstance(model, Mapping):
        return to_jsonable(dict(model))
    from .models import model_version

    device = getattr(model, "device", None)
    device = getattr(device, "type", device)
    return {"name": getattr(model, "name", None), "version": model_version(model), "dtype": model_dtype(model),
            "device": None if device is None else str(device),
            "cross_attention_tokens": getattr(model, "cross_attention_tokens", "all"),
            "denoiser": _denoiser_identity(getattr(model, "denoiser", None))}


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
    """The name behind ``model``: the string itself, or a model object's ``name``."""
    if isinstance(model, (str, os.PathLike)):
        return os.fspath(model)
    name = getattr(model, "name", None)
    if not isinstance(name, str) or not name:
        raise ValueError(f"model must be a name such as 'shapes-tiny' or a loaded model with a .name; got "
                         f"{type(model).__name__} {model!r:.80}")
    return name


def _model_provenance(model: Any) -> dict:
    """Provenance a model object brings by itself: ``model_id``, ``revision``, ``dtype``, ``device``,
    ``cross_attention_tokens`` (:func:`model_identity`); nothing for a plain name."""
    if isinstance(model, (str, os.PathLike)):
        return {}
    ident = model_identity(model)
    return {"model_id": ident["name"], "revision": ident["version"], "dtype": ident["dtype"],
            "device": ident["device"], "cross_attention_tokens": ident["cross_attention_tokens"]}


def _record_path(notebook_stem: str, model: Any, root: str | os.PathLike) -> Path:
    return Path(root) / model_slug(_model_name(model)) / f"{_stem(notebook_stem)}.json"


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


def _normalise_dtype(value: Any) -> Any:
    """A provenance ``dtype`` as its canonical name (``torch.bfloat16`` → ``"bfloat16"``); a per-component
    string (``"unet=bfloat16,vae=float32"``) is checked part by part."""
    from .precision import dtype_name

    if value is None:
        return None
    if isinstance(value, str) and "=" in value:
        parts = [p.split("=", 1) for p in value.split(",")]
        return ",".join(f"{k.strip()}={dtype_name(v)}" for k, v in parts)
    return dtype_name(value)


def _dtype_is_reduced(value: str | None) -> bool:
    from .precision import is_reduced

    if value is None:
        return False
    return any(is_reduced(p.split("=", 1)[-1]) for p in value.split(","))


def _normalise_provenance(provenance: Mapping[str, Any]) -> dict:
    prov = {}
    for key, val in provenance.items():
        if key in _AUTO_PROVENANCE or key == "reduced_precision":
            raise ValueError(f"provenance key {key!r} is filled in automatically; do not pass it")
        prov[key] = _normalise_dtype(val) if key == "dtype" else to_jsonable(val)
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
    from .precision import REDUCED_PRECISION_NOTE, ReducedPrecisionWarning

    new_prov = {**_normalise_provenance(_model_provenance(model)), **_normalise_provenance(provenance)}
    new_prov.setdefault("model_id", _model_name(model))
    new_prov.setdefault("dtype", None)  # always said, even when unknown (pass the model, or dtype=)
    if _dtype_is_reduced(new_prov["dtype"]):
        note = REDUCED_PRECISION_NOTE.format(dtype=new_prov["dtype"])
        new_prov["reduced_precision"] = note
        warnings.warn(f"{path}: {', '.join(entries)}: {note}", ReducedPrecisionWarning, stacklevel=3)
    stored: dict = _read_record(path) if path.exists() else {}
    old_prov = stored.pop(PROVENANCE_KEY, {})
    conflicts = {k: (old_prov[k], v) for k, v in new_prov.items() if k in old_prov and _canonical(old_prov[k]) != _canonical(v)}
    if old_prov and "dtype" not in old_prov:  # recorded before the dtype was: its precision is not known
        conflicts["dtype"] = ("<not recorded>", new_prov["dtype"])
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
    order = ("model_id", "revision", "dtype", "reduced_precision", "protocol", "seed", "n_samples", "settings")
    prov = {"model": path.parent.name, **{k: merged.pop(k) for k in order if k in merged}, **merged,
            "date": _now(), "package_version": _package_version()}
    stored.update(entries)
    _atomic_write_json(path, {**stored, PROVENANCE_KEY: prov})
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
        model: the loaded model (an :class:`infodecomp.models.Model`: then its name, weights' version, dtype,
            device type and cross-attention tokens are recorded by themselves, see :func:`model_identity`), or
            its short name (``"shapes-tiny"``, ``"sd21-base"``) / hub id / path. :func:`model_slug` of the name
            is the folder name; the name goes to provenance ``model_id`` unless ``model_id=`` is given.
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

    >>> rec = Recorder("03_localization", model, protocol="faithful", seed=0, n_samples=64)   # doctest: +SKIP
    >>> rec.record("miou_cmi", 0.41, 0.01)            # doctest: +SKIP
    >>> rec.record_many({"miou_attn": (0.38, 0.01), "n_images": 500})   # doctest: +SKIP

    ``model``: the loaded model (recommended: its dtype and weights' version are then recorded without being
    passed) or its name; see :func:`record`.
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
    return None


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


class ResultStore:
    """A folder of per-example results that grows one batch at a time (see the module docstring).

    Args:
        path: the store's folder (created if missing).
        settings: everything of the experiment that changes the results (dataset, estimator settings, protocol,
            ...): a dict or dataclass of JSON-able values.
        model: the model the rows come from (an :class:`infodecomp.models.Model` or any model-like object); its
            :func:`model_identity` (weights' version, dtype, device type, cross-attention tokens, denoiser) is part
            of the store's identity, and gives ``model_id`` and ``revision`` unless they are passed.
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
        shard_indices(0, process_index, num_processes)  # validates the shard
        self.path = Path(path)
        self.shard = (int(process_index), int(num_processes))
        self.lock_timeout = float(lock_timeout)
        model_ident = model_identity(model)
        if model_ident is not None:
            model_id = model_ident["name"] if model_id is None else model_id
            revision = model_ident["version"] if revision is None else revision
        if seed is not None and (isinstance(seed, bool) or not isinstance(seed, numbers.Integral)):
            raise TypeError(f"seed must be an int or None; got {seed!r} ({type(seed).__name__})")
        identity = {"settings": to_jsonable(settings), "model": model_ident, "model_id": model_id,
                    "revision": revision, "seed": None if seed is None else int(seed)}
        if not isinstance(identity["settings"], dict):
            raise TypeError(f"settings must be a dict or dataclass; got {type(settings).__name__}")
        self.identity = identity
        self.settings = identity["settings"]
        self.model_id, self.revision, self.seed = model_id, revision, identity["seed"]
        manifest_path = self.path / "manifest.json"
        if not manifest_path.exists():
            self.path.mkdir(parents=True, exist_ok=True)
            with self._guard():  # two processes creating one store at the same moment: one manifest
                if not manifest_path.exists():
                    manifest = {"format": STORE_FORMAT, **identity, "created": _now(),
                                "package_version": _package_version()}
                    _atomic_write_json(manifest_path, manifest)
        self.manifest = _read_manifest(manifest_path)
        self._check_identity(identity)
        self._repaired: set[str] = set()
        self._held: dict[tuple[int, int], Any] = {}
        self._indices: set[int] = {row["index"] for row in self._iter_rows()}

    # -- identity ------------------------------------------------------------------------------------------
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
            if _canonical(self.manifest.get(key)) != _canonical(identity[key]):
                diffs.append(f"{key}: saved {self.manifest.get(key)!r}, now {identity[key]!r}")
        for group in ("model", "settings"):
            saved, now = self.manifest.get(group), identity[group]
            if not isinstance(saved, dict) or not isinstance(now, dict):
                if _canonical(saved) != _canonical(now):
                    diffs.append(f"{group}: saved {saved!r}, now {now!r}")
                continue
            for key in sorted(set(saved) | set(now)):
                a, b = saved.get(key, "<missing>"), now.get(key, "<missing>")
                if _canonical(a) != _canonical(b):
                    diffs.append(f"{group}[{key!r}]: saved {a!r}, now {b!r}")
        if diffs:
            raise SettingsMismatchError(
                f"the result store at {self.path} was made with other settings, so its rows cannot be mixed with "
                "this run's:\n  " + "\n  ".join(diffs)
                + "\nUse another path for these settings, or delete the folder to start over."
            )

    # -- locks ---------------------------------------------------------------------------------------------
    def _lock(self, name: str):
        from filelock import FileLock

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
        from filelock import Timeout

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
        from filelock import Timeout

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
                        owner = {"pid": os.getpid(), "host": socket.gethostname(), "since": _now(),
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
        shard_indices(0, *shard)
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
            path = self.path / rel
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
                raise StoreDamagedError(
                    f"{self.path / rel}: has no array {key!r}, which the row at {row['_file']}:{row['_line']} "
                    f"points to. {_repair_hint(self.path)}")
            out[col] = arrays[key]
        return out

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
        Field names starting with ``_`` are reserved. An index that already has a row on disk (written by this
        run or another) raises ``ValueError``. Outside :meth:`writing`, the writer's lock is taken for the
        duration of this call (:class:`StoreBusyError` while another run writes the same examples).
        """
        rows = list(rows)
        if not rows:
            return
        pi, n = shard if shard is not None else self.shard
        shard_indices(0, pi, n)
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


def _example_id(examples: Any, i: int) -> str | None:
    """The id an example will be stored under, read cheaply where the dataset can (``text_row``: no image)."""
    text_row = getattr(examples, "text_row", None)
    ex = text_row(i) if callable(text_row) else examples[i]
    return str(ex["id"]) if isinstance(ex, Mapping) and "id" in ex else None


def _check_done_ids(store: "ResultStore", examples: Any, indices: list[int]) -> None:
    """A resumed run skips the examples that have a row; that is only right if each row is of the example now at
    its index. Other data under the same settings (another subset, order or version of a dataset) would otherwise
    keep the old rows beside new ones: refuse, naming the first rows that differ."""
    if not indices:
        return
    want = set(indices)
    stored = {row["index"]: row["id"] for row in store._iter_rows() if row["index"] in want}
    wrong = []
    for i in indices:
        given = _example_id(examples, i)
        if given is not None and i in stored and stored[i] != given:
            wrong.append((i, stored[i], given))
            if len(wrong) == 3:
                break
    if wrong:
        listed = "; ".join(f"index {i}: row of {s!r}, example now {g!r}" for i, s, g in wrong)
        raise SettingsMismatchError(
            f"the result store at {store.path} holds rows of other examples than those given at the same indices "
            f"({listed}): the data changed under the same settings (another subset, order or version of the "
            "dataset). Use another store folder for these examples, or move this one aside to recompute.")


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
        store: where rows go; examples that already have a row (in any shard) are skipped. The shard's writer's
            lock is held for the whole call (:meth:`ResultStore.writing`): while another run writes the same
            examples, this one raises :class:`StoreBusyError` before computing anything.
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
    computed = 0

    from tqdm.auto import tqdm

    # The writer's lock for the whole run: a second run on the same examples stops at once (StoreBusyError)
    # instead of computing and writing them twice; what is on disk is read under the lock.
    with store.writing((process_index, num_processes)):
        done = store.done_indices()
        if get is not None:
            _check_done_ids(store, examples, [i for i in mine if i in done])
        batches = [list(mine[k:k + batch_size]) for k in range(0, len(mine), batch_size)]
        n_done = sum(1 for i in mine if i in done)
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
                    out.append({"index": i, "id": str(row.get("id", default_id)),
                                **{k: v for k, v in row.items() if k not in ("index", "id")}})
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


# --------------------------------------------------------------------------------------------------------------
# checking and repairing a store


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
                        npz_keys[rel] = _npz_keys(path / rel)
                    except StoreDamagedError as err:
                        npz_keys[rel] = None
                        scan.bad_npz.add(rel)
                        if (path / rel).exists():
                            scan.problems.append(StoreProblem(rel, None, str(err).replace(f"{path / rel}: ", ""),
                                                              f"move it to {_DAMAGED_DIR}/ with the rows that use it"))
                keys = npz_keys[rel]
                if keys is None:
                    why = (f"row {row['index']}: its arrays are in {rel}, which is "
                           f"{'unreadable' if (path / rel).exists() else 'missing'}")
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
    from filelock import FileLock, Timeout

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
            _atomic_write_bytes(file, b"".join(line + b"\n" for line in scan.keep[file]))
        for rel in sorted(scan.bad_npz):
            if (path / rel).exists():
                (aside / rel).parent.mkdir(parents=True, exist_ok=True)
                os.replace(path / rel, aside / rel)
        return scan.problems


def _find_stores(path: Path) -> list[Path]:
    """``path`` if it is a store, else every store under it (folders holding a manifest.json or shard files)."""
    def is_store(p: Path) -> bool:
        return (p / "manifest.json").exists() or any(_SHARD_RE.match(f.name) for f in p.glob("rows-*.jsonl"))

    if is_store(path):
        return [path]
    found = []
    for root, dirs, _files in os.walk(path):
        # a store's own folders are never stores; a repaired store's "damaged/" may hold a whole moved-aside store
        quarantine = (Path(root) / _LOCK_DIR).is_dir()
        dirs[:] = sorted(d for d in dirs if d != _LOCK_DIR and not (quarantine and d == _DAMAGED_DIR))
        if is_store(Path(root)):
            found.append(Path(root))
            dirs[:] = []
    return found


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m infodecomp.results check|repair PATH...``: check (exit 1 if anything is damaged) or repair
    the result stores at or under each PATH."""
    p = argparse.ArgumentParser(prog="python -m infodecomp.results",
                                description="Check or repair resumable result stores (see infodecomp.results).")
    p.add_argument("command", choices=("check", "repair"),
                   help="check: report damage, change nothing; repair: move damaged rows aside to be recomputed")
    p.add_argument("paths", nargs="+", help="a result store, or a folder holding stores (e.g. build/results)")
    a = p.parse_args(argv)
    status = 0
    for given in map(Path, a.paths):
        if not given.is_dir():
            print(f"[MISSING] {given}: no such folder", file=sys.stderr)
            status = 2
            continue
        stores = _find_stores(given)
        if not stores:
            print(f"[NONE] {given}: no result store here (no manifest.json or rows-*.jsonl)", file=sys.stderr)
            status = max(status, 2)
        for store in stores:
            try:
                problems = check_store(store) if a.command == "check" else repair_store(store)
            except StoreBusyError as err:
                print(f"[BUSY] {store}: {err}")
                status = max(status, 1)
                continue
            if not problems:
                print(f"[ ok ] {store}")
                continue
            unfixable = [q for q in problems if q.fix.startswith("none")]
            tag = "[DAMAGED]" if a.command == "check" else ("[REPAIRED]" if len(unfixable) < len(problems)
                                                             else "[CANNOT REPAIR]")
            print(f"{tag} {store}: {len(problems)} problem(s)")
            for q in problems:
                print(f"    {q}")
            if a.command == "check" or unfixable:
                status = max(status, 1)
    return status


if __name__ == "__main__":
    sys.exit(main())
