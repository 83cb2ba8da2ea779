"""The identity of a loaded model, as the data the results layer keeps: everything about a model that changes
its numbers (weights' version, dtype, device type, cross-attention tokens, denoiser settings).

It reads a model and knows nothing of files: it belongs with the models (it imports :mod:`infodecomp.models`),
and the results layer above stores what it returns.

:mod:`infodecomp.results` is given this identity (a plain dict) and never imports model code; the experiments
compute it here from the model they run: ``ResultStore(path, settings, model=model_identity(model), seed=seed)``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from .base import model_version
from ..precision import dtype_name

__all__ = ["model_dtype", "model_identity"]


def _component_dtypes(model) -> dict[str, str]:
    """``{"unet": "float32", "vae": ..., "text_encoder": ...}`` of a pipeline-backed model (what exists)."""
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
        return {k: getattr(denoiser, k) for k in keys if hasattr(denoiser, k)}  # str and bool settings
    return f"{type(denoiser).__module__}.{type(denoiser).__qualname__}"


def model_identity(model) -> dict | None:
    """Everything about a model that changes its numbers, as plain JSON: the identity every result store keeps
    (and :class:`~infodecomp.results.Recorder` records) beside the experiment's settings and seed.

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
        return dict(model)
    device = getattr(model, "device", None)
    device = getattr(device, "type", device)
    return {"name": getattr(model, "name", None), "version": model_version(model), "dtype": model_dtype(model),
            "device": None if device is None else str(device),
            "cross_attention_tokens": getattr(model, "cross_attention_tokens", "all"),
            "denoiser": _denoiser_identity(getattr(model, "denoiser", None))}
