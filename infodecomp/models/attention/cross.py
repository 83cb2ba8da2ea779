"""Recording cross-attention maps (DAAM-style) through diffusers attention processors.

Stable Diffusion's default attention processor (PyTorch SDPA) never materialises attention probabilities.
:func:`record_cross_attention` swaps, for the duration of a ``with`` block, each selected cross-attention
layer's processor for a :class:`RecordingAttnProcessor` that

1. calls the layer's **original** processor to compute the layer's output — so recording leaves the model's
   outputs bit-identical — and then
2. recomputes the softmax probabilities ``softmax(q kᵀ / sqrt(d))`` ``[B, heads, h·w, L]`` from the same
   inputs (in float32) and hands them to the recorder.

On exit (also on an exception) the original processors are restored. Only public diffusers API is used:
``unet.attn_processors``, ``unet.set_attn_processor`` (which pops entries out of the dict it is given, so it
always gets a copy) and the ``Attention`` module's projections.

Aggregation follows DAAM (Tang et al. 2023; docs/protocol.md#daam): at every UNet call, each layer's map of each
head is upsampled to the latent grid (bicubic) and clamped at ≥ 0; maps are averaged over all (layer, head)
pairs and summed over calls (denoising steps), giving per-token maps ``[B, L, h, w]`` at latent resolution.
A word's map is the mean over its token positions (:func:`infodecomp.text.token_positions`).

Differences from DAAM v0.1.0, as options: every head is kept by default; ``faithful_half_heads=True`` keeps
only the second half of the heads of every layer (DAAM assumed a classifier-free-guidance-doubled batch and so
dropped heads 0 … ⌊h/2⌋−1 when run without CFG, docs/protocol.md#b10). DAAM records the down- and up-block layers
and excludes the mid-block: ``include_mid=False`` is the default here too.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from contextlib import contextmanager

import torch
from torch import Tensor

from .joint import is_joint_attention_model, record_joint_attention
from .layers import select_layers
from .recorder import CrossAttentionRecorder

__all__ = [
    "cross_attention_probs",
    "RecordingAttnProcessor",
    "cross_attention_layers",
    "record_cross_attention",
    "capture_cross_attention",
]


def cross_attention_probs(attn, hidden_states: Tensor, encoder_hidden_states: Tensor,
                          attention_mask: Tensor | None = None, temb: Tensor | None = None) -> Tensor:
    """Attention probabilities ``[B, heads, N, L]`` (float32) of a diffusers ``Attention`` layer.

    The same steps as diffusers' ``AttnProcessor`` / ``AttnProcessor2_0`` up to the softmax: optional spatial
    and group norm, ``to_q`` on ``hidden_states [B, N, C]`` (or ``[B, C, h, w]``), the optional cross norm and
    ``to_k`` on ``encoder_hidden_states [B, L, D]``, optional q/k norms, scaled dot product with
    ``attn.scale``, the optional additive mask, softmax over the L keys.
    """
    if attn.spatial_norm is not None:
        hidden_states = attn.spatial_norm(hidden_states, temb)
    if hidden_states.ndim == 4:
        b, c, h, w = hidden_states.shape
        hidden_states = hidden_states.view(b, c, h * w).transpose(1, 2)
    if attn.group_norm is not None:
        hidden_states = attn.group_norm(hidden_states.transpose(1, 2)).transpose(1, 2)
    query = attn.to_q(hidden_states)
    if attn.norm_cross:
        encoder_hidden_states = attn.norm_encoder_hidden_states(encoder_hidden_states)
    key = attn.to_k(encoder_hidden_states)
    B, L = key.shape[0], key.shape[1]
    heads = attn.heads
    head_dim = key.shape[-1] // heads
    query = query.view(B, -1, heads, head_dim).transpose(1, 2)
    key = key.view(B, -1, heads, head_dim).transpose(1, 2)
    if getattr(attn, "norm_q", None) is not None:
        query = attn.norm_q(query)
    if getattr(attn, "norm_k", None) is not None:
        key = attn.norm_k(key)
    scores = torch.matmul(query.float(), key.float().transpose(-1, -2)) * attn.scale
    if attention_mask is not None:
        mask = attn.prepare_attention_mask(attention_mask, L, B)
        scores = scores + mask.view(B, heads, -1, mask.shape[-1]).float()
    return scores.softmax(dim=-1)


class RecordingAttnProcessor:
    """Wraps an attention processor: returns exactly what ``original`` returns, and for cross-attention calls
    also passes ``(name, probs [B, heads, N, L] float32)`` to ``sink``."""

    def __init__(self, original, name: str, sink: Callable[[str, Tensor], None]):
        self.original = original
        self.name = name
        self.sink = sink

    def __call__(self, attn, hidden_states: Tensor, encoder_hidden_states: Tensor | None = None,
                 attention_mask: Tensor | None = None, temb: Tensor | None = None, **kwargs) -> Tensor:
        if temb is not None:
            kwargs["temb"] = temb
        out = self.original(attn, hidden_states, encoder_hidden_states=encoder_hidden_states,
                            attention_mask=attention_mask, **kwargs)
        if encoder_hidden_states is not None:
            with torch.no_grad():
                probs = cross_attention_probs(attn, hidden_states, encoder_hidden_states, attention_mask, temb)
            self.sink(self.name, probs)
        return out


def _unet_of(model):
    """A UNet from a UNet, a pipeline (``.unet``) or an ``infodecomp.models.Model`` (``.pipeline.unet``)."""
    for path in ((), ("unet",), ("pipeline", "unet")):
        obj = model
        for attr in path:
            obj = getattr(obj, attr, None)
        if obj is not None and hasattr(obj, "attn_processors") and hasattr(obj, "set_attn_processor"):
            return obj
    raise TypeError(f"expected a diffusers UNet, a pipeline or an infodecomp Model, got {type(model).__name__}")


def cross_attention_layers(model, *, include_mid: bool = True) -> list[str]:
    """Names (``"down_blocks.0.attentions.0.transformer_blocks.0.attn2"``, …) of every cross-attention layer
    of a UNet (or pipeline / Model), in the UNet's order; ``include_mid=False`` leaves out ``mid_block``."""
    unet = _unet_of(model)
    names = []
    for key in unet.attn_processors:
        name = key.removesuffix(".processor")
        if getattr(unet.get_submodule(name), "is_cross_attention", False):
            if include_mid or not name.startswith("mid_block"):
                names.append(name)
    return names


@contextmanager
def record_cross_attention(model, *, layers: Iterable[str] | Callable[[str], bool] | None = None,
                           resolutions: Iterable[int] | None = None, include_mid: bool = False,
                           faithful_half_heads: bool = False, upsample: str = "bicubic"):
    """Record cross-attention maps of every UNet call made inside the block.

    Args:
        model: a diffusers UNet, a pipeline, or an ``infodecomp.models.Model``.
        layers: which cross-attention layers: ``None`` (all of the down and up blocks, plus the mid-block if
            ``include_mid``), a list of names from :func:`cross_attention_layers`, or a predicate on the name.
        resolutions: keep only layers whose map is h′ latent cells high (e.g. ``{64, 32, 16}`` for SD at 64×64
            latents: all of DAAM's; ``{16}``: the coarsest). ``None``: all.
        include_mid: also record the mid-block (DAAM does not).
        faithful_half_heads: keep only the second half of each layer's heads, as DAAM did without CFG
            (docs/protocol.md#b10).
        upsample: interpolation to the latent grid (``"bicubic"`` as DAAM, or ``"bilinear"``).

    Yields a :class:`CrossAttentionRecorder`; read ``recorder.token_maps()`` after (or inside) the block.
    The processors in place before the block are restored on exit, also when an exception is raised.
    For an SD3 / Flux model (an MMDiT transformer, no cross-attention layers) this is
    :func:`infodecomp.models.attention.joint.record_joint_attention` with the same arguments (``include_mid`` does not
    apply): image-query × text-key maps of the joint attention.

    Example::

        with record_cross_attention(model) as rec:
            model.denoiser(z, logsnr, cond)
        maps = rec.word_maps(model.tokenizer, prompts, "dog")    # [B, h, w]
    """
    if upsample not in ("bicubic", "bilinear"):
        raise ValueError(f"upsample must be 'bicubic' or 'bilinear', got {upsample!r}")
    if is_joint_attention_model(model):  # SD3 / Flux: image-query × text-key maps of the joint attention
        with record_joint_attention(model, layers=layers, resolutions=resolutions,
                                    faithful_half_heads=faithful_half_heads, upsample=upsample) as rec:
            yield rec
        return
    chosen = _select(_unet_of(model), layers, include_mid)
    recorder = CrossAttentionRecorder(chosen, resolutions=resolutions, faithful_half_heads=faithful_half_heads,
                                      upsample=upsample)
    with capture_cross_attention(model, recorder, layers=chosen, pre_hook=recorder._capture_shape):
        yield recorder


@contextmanager
def capture_cross_attention(model, sink: Callable[[str, Tensor], None], *,
                            layers: Iterable[str] | Callable[[str], bool] | None = None, include_mid: bool = True,
                            pre_hook: Callable | None = None):
    """Inside the block, every call of a selected cross-attention layer also passes ``(layer name, probs)``
    to ``sink``: ``probs [B, heads, N, L]`` float32, the softmax over the L tokens (the UNet's own mask
    applied, so hidden tokens get exactly 0) for the N query positions. The layer outputs are unchanged; the
    processors in place before are restored on exit, also on an exception. ``layers`` as in
    :func:`record_cross_attention` (default: every cross-attention layer, the mid-block included);
    ``pre_hook``: an optional forward pre-hook (with kwargs) on the UNet for the same span."""
    unet = _unet_of(model)
    chosen = _select(unet, layers, include_mid)
    originals = dict(unet.attn_processors)
    wrapped = {key: (RecordingAttnProcessor(proc, key.removesuffix(".processor"), sink)
                     if key.removesuffix(".processor") in chosen else proc)
               for key, proc in originals.items()}
    handle = unet.register_forward_pre_hook(pre_hook, with_kwargs=True) if pre_hook is not None else None
    try:
        unet.set_attn_processor(dict(wrapped))  # set_attn_processor pops from its argument: give it a copy
        yield
    finally:
        if handle is not None:
            handle.remove()
        unet.set_attn_processor(dict(originals))


def _select(unet, layers, include_mid: bool) -> list[str]:
    """The cross-attention layers ``layers`` selects (:func:`~.layers.select_layers`); by default the down and
    up blocks, and the mid-block with ``include_mid``."""
    available = cross_attention_layers(unet, include_mid=True)
    default = [n for n in available if include_mid or not n.startswith("mid_block")]
    return select_layers(available, layers, default=default, kind="cross-attention", owner="this UNet")
