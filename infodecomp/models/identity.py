"""The identity of a loaded model, as the data the results layer keeps: everything about a model that changes
its numbers (weights' version, dtype, device type, cross-attention tokens, denoiser settings).

It reads a model and knows nothing of files: it belongs with the models (it imports :mod:`infodecomp.models`),
and the results layer above stores what it returns.

:mod:`infodecomp.results` is given this identity (a plain dict) and never imports model code; the experiments
compute it here from the model they run: ``ResultStore(path, settings, model=model_identity(model), seed=seed)``.
"""

from __future__ import annotations

import hashlib
import weakref
from collections.abc import Mapping
from typing import Any

import torch

from .base import model_version
from ..precision import dtype_name

__all__ = ["model_dtype", "model_identity", "weights_fingerprint"]

#: The networks whose weights make a model's numbers (what exists of them: SD has a UNet, SD3 and Flux a
#: transformer; SDXL and SD3 have second and third text encoders).
_WEIGHTED_PARTS = ("unet", "transformer", "text_encoder", "text_encoder_2", "text_encoder_3", "vae")
#: Values of each tensor read into the fingerprint (evenly spaced over the flattened tensor; all of a smaller one).
_SAMPLE = 1024
#: model → (state of its tensors, fingerprint): computed once per model, again only when a tensor changes.
_FINGERPRINTS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


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


def _weighted_modules(model) -> list[tuple[str, Any]]:
    """``[(part name, torch module), …]`` of the networks a model (or its ``pipeline``) holds."""
    holders = [h for h in (getattr(model, "pipeline", None), model) if h is not None]
    out = []
    for part in _WEIGHTED_PARTS:
        module = next((getattr(h, part) for h in holders if isinstance(getattr(h, part, None), torch.nn.Module)),
                      None)
        if module is not None:
            out.append((part, module))
    return out


def _tensors(modules) -> list[tuple[str, torch.Tensor]]:
    return [(f"{part}.{name}", t) for part, module in modules
            for name, t in [*module.named_parameters(), *module.named_buffers()]]


def _state(tensors) -> tuple:
    """What changes when a tensor is replaced or edited in place: its storage, shape, dtype, device and
    autograd's version counter (bumped by every in-place operation: ``copy_``, ``load_state_dict``, ``add_``
    under ``no_grad``; not by writes through ``.data``, which bypass it)."""
    return tuple((name, t.data_ptr(), getattr(t, "_version", None), tuple(t.shape), t.dtype, t.device.type)
                 for name, t in tensors)


@torch.no_grad()
def _tensor_digest(h, name: str, t: torch.Tensor) -> None:
    h.update(f"{name}|{tuple(t.shape)}|{t.dtype}|".encode())
    flat = t.detach().reshape(-1)
    if flat.numel() == 0:
        return
    if flat.numel() > _SAMPLE:  # a deterministic sample: evenly spaced, the last element included
        idx = torch.linspace(0, flat.numel() - 1, _SAMPLE, device=flat.device).round().long()
        sample = flat.index_select(0, idx)
    else:
        sample = flat
    h.update(sample.to("cpu", torch.float64).numpy().tobytes())
    # and every value through two sums (float64, on the tensor's device), so that an edit outside the sample
    # shows too; rounded to 12 digits, so that the order of a device's reduction does not matter
    wide = flat.to(torch.float64)
    h.update(f"|{float(wide.sum()):.12g}|{float(wide.square().sum()):.12g}|".encode())


def weights_fingerprint(model) -> str | None:
    """``"params:<16 hex>"``: the identity of the weights a model holds in memory, for a model loaded without a
    pinned revision or a weights directory (a hub id without ``revision=``, a pipeline built in memory, weights
    edited in memory); ``None`` for a model-like object without torch networks.

    A SHA-256 over every parameter and buffer of the UNet (or transformer), the text encoders and the VAE: for
    each tensor its name, shape and dtype, a deterministic sample of :data:`_SAMPLE` values evenly spaced over it
    (all of a smaller tensor), and the float64 sum and sum of squares of all its values (rounded to 12 digits).
    So it reads every weight once, on the weights' own device (two reductions per tensor, each over a float64 copy
    of one tensor at a time), and copies only the samples to the CPU (about a thousand values per tensor: ~1 M for
    SD 2.1's 866 M parameters), instead of hashing 3.4 GB of bytes on the CPU; ~0.1 s for the tiny test model on
    one CPU core (measured), and it is cached. Two different
    trainings differ in it; an in-place edit of any weight changes a sum (an edit that keeps both sums of a tensor
    and misses its sample would not show: a fingerprint, not a checksum of every byte).

    Computed once per model and cached; computed again when a tensor is replaced or edited in place (see
    :func:`_state`).
    """
    tensors = _tensors(_weighted_modules(model))
    if not tensors:
        return None
    state = _state(tensors)
    try:
        cached = _FINGERPRINTS.get(model)
    except TypeError:  # not weak-referenceable: computed each time
        cached = None
    if cached is not None and cached[0] == state:
        return cached[1]
    h = hashlib.sha256()
    for name, t in tensors:
        _tensor_digest(h, name, t)
    fingerprint = f"params:{h.hexdigest()[:16]}"
    try:
        _FINGERPRINTS[model] = (state, fingerprint)
    except TypeError:
        pass
    return fingerprint


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

    ``{"name", "version"`` (:func:`infodecomp.models.model_version`: pinned revision or weights' SHA-256; for a
    model with neither, :func:`weights_fingerprint` of the weights in memory, so two models of one name with
    other weights never share a store),
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
    version = model_version(model)
    if version is None:
        version = weights_fingerprint(model)
    return {"name": getattr(model, "name", None), "version": version, "dtype": model_dtype(model),
            "device": None if device is None else str(device),
            "cross_attention_tokens": getattr(model, "cross_attention_tokens", "all"),
            "denoiser": _denoiser_identity(getattr(model, "denoiser", None))}
