"""Model families beyond SD 1.x / 2.x: SDXL, SD3 / SD3.5 and FLUX.1, as :class:`~infodecomp.models.Model` s.

:func:`infodecomp.models.load_model` reads a pipeline's ``model_index.json`` (``_class_name``) and hands every
class of :data:`FAMILIES` to :func:`load_family`; ``StableDiffusionPipeline`` (SD 1.x, SD 2.x, shapes-tiny) stays
with :mod:`infodecomp.models`. Each family keeps the one denoiser interface (docs/architecture.md#the-denoiser-interface) and packs everything its
network reads into the one ``cond`` tensor (:mod:`~infodecomp.families.packing`):

======================  ==========================  ==================================================
family                  network / parameterisation  cond = Model.encode_prompts(prompts)
======================  ==========================  ==================================================
SD 1.x, SD 2.x          UNet, ε or v (DDPM)         ``[N, 77, D]`` CLIP states (models.py)
SDXL (:mod:`.sdxl`)     UNet, ε or v (DDPM)         ``[N, 77 + 1, 2048]`` states | pooled, time ids
SD3 (:mod:`.sd3`)       MMDiT, rectified flow       ``[N, 77 + T + 1, 4096]`` CLIP | T5 | pooled
Flux (:mod:`.flux`)     MMDiT, rectified flow       ``[N, T + 1, 4096]`` T5 | pooled
======================  ==========================  ==================================================

Family options (keyword arguments of ``load_model``, or fields of the Model classes): SDXL ``original_size``,
``crops_coords_top_left``, ``target_size``; SD3 ``max_sequence_length``, ``image_size``; Flux
``max_sequence_length``, ``image_size``, ``guidance``, ``allow_distilled``. A pipeline directory may hold an
``infodecomp.json`` with ``{"image_size": [H, W]}`` (and ``"cross_attention_tokens": "all"``).
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

__all__ = ["FAMILIES", "FAMILY_OPTIONS", "pipeline_class_name", "family_of", "load_family", "model_class"]

#: ``model_index.json`` ``_class_name`` → family name.
FAMILIES = {
    "StableDiffusionXLPipeline": "sdxl",
    "StableDiffusion3Pipeline": "sd3",
    "FluxPipeline": "flux",
}

#: Options each family accepts (keyword arguments of :func:`infodecomp.models.load_model`).
FAMILY_OPTIONS = {
    "sdxl": ("original_size", "crops_coords_top_left", "target_size"),
    "sd3": ("max_sequence_length", "image_size"),
    "flux": ("max_sequence_length", "image_size", "guidance", "allow_distilled"),
}

_PIPELINES = {"sdxl": "StableDiffusionXLPipeline", "sd3": "StableDiffusion3Pipeline", "flux": "FluxPipeline"}
_SETTINGS_KEYS = ("cross_attention_tokens", "image_size")


def model_class(family: str):
    """The :class:`~infodecomp.models.Model` subclass of a family name."""
    if family == "sdxl":
        from .sdxl import SDXLModel
        return SDXLModel
    if family == "sd3":
        from .sd3 import SD3Model
        return SD3Model
    if family == "flux":
        from .flux import FluxModel
        return FluxModel
    raise ValueError(f"unknown family {family!r}; expected one of {sorted(FAMILY_OPTIONS)}")


def pipeline_class_name(where: str, *, local: bool, revision: str | None = None,
                        local_files_only: bool = False) -> str | None:
    """``_class_name`` of a pipeline's ``model_index.json`` (a local directory or a hub id); ``None`` when it
    cannot be read (the caller's loader then reports the real error)."""
    try:
        if local:
            path = Path(where) / "model_index.json"
        else:
            from huggingface_hub import hf_hub_download

            path = hf_hub_download(where, "model_index.json", revision=revision, local_files_only=local_files_only)
        name = json.loads(Path(path).read_text()).get("_class_name")
    except Exception:  # unreadable / unreachable: load_model's own loader raises the informative error
        return None
    return name if isinstance(name, str) else None


def family_of(class_name: str | None) -> str | None:
    """The family of a pipeline class name, ``None`` for ``StableDiffusionPipeline`` and unknown names."""
    return FAMILIES.get(class_name) if class_name else None


def _settings(where: str) -> dict:
    """A family pipeline directory's ``infodecomp.json``: ``{"image_size": [H, W]}`` at most (and
    ``"cross_attention_tokens": "all"``)."""
    path = Path(where) / "infodecomp.json"
    if not path.exists():
        return {}
    try:
        given = json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise ValueError(f"{path} is not valid JSON ({err})") from err
    if not isinstance(given, dict) or set(given) - set(_SETTINGS_KEYS):
        raise ValueError(f"{path}: expected a JSON object with keys among {list(_SETTINGS_KEYS)}, got {given!r}")
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


def load_family(family: str, spec, where: str, local: bool, *, name: str, revision: str | None = None,
                device=None, dtype: torch.dtype | None = None, local_files_only: bool = False, **options):
    """Load the pipeline at ``where`` as the family's Model (called by :func:`infodecomp.models.load_model`,
    which resolved ``where`` and checked the arguments). ``options``: :data:`FAMILY_OPTIONS` of the family."""
    import diffusers

    from ..models import weights_digest

    allowed = FAMILY_OPTIONS.get(family)
    if allowed is None:
        raise ValueError(f"unknown family {family!r}; expected one of {sorted(FAMILY_OPTIONS)}")
    unknown = sorted(set(options) - set(allowed))
    if unknown:
        raise TypeError(f"load_model got options {unknown} that a {family} pipeline does not take; it takes "
                        f"{list(allowed)}")
    settings = _settings(where) if local else {}
    if "image_size" in settings and "image_size" in allowed:
        options.setdefault("image_size", settings["image_size"])
    dtype = torch.float32 if dtype is None else dtype
    pipe_cls = getattr(diffusers, _PIPELINES[family])
    try:
        pipe = pipe_cls.from_pretrained(where, revision=revision, dtype=dtype, local_files_only=local_files_only)
    except OSError as err:
        hint = f" {spec.notes}" if spec is not None and spec.notes else ""
        raise OSError(f"could not load {where!r} (revision {revision!r}) as a {_PIPELINES[family]}.{hint}") from err
    modules = [m for m in pipe.components.values() if isinstance(m, torch.nn.Module)]
    if any(next(m.parameters()).dtype != dtype for m in modules if any(True for _ in m.parameters())):
        pipe.to(dtype=dtype)
    if device is not None:
        pipe.to(device)
    pipe.set_progress_bar_config(disable=True)
    cls = model_class(family)
    out = cls(pipe, name=name, source=where, revision=revision, digest=weights_digest(where) if local else None,
              **options)
    if spec is not None:
        if spec.prediction_type is not None and out.prediction_type != spec.prediction_type:
            raise ValueError(f"{where!r} was loaded as {spec.name!r} but predicts {out.prediction_type!r}; "
                             f"{spec.name!r} predicts {spec.prediction_type!r}")
        if spec.resolution is not None and out.resolution != (spec.resolution, spec.resolution):
            raise ValueError(f"{where!r} was loaded as {spec.name!r} but works at {out.resolution} px; "
                             f"{spec.name!r} works at {spec.resolution}×{spec.resolution}")
    return out
