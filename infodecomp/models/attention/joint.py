"""Attention maps of MMDiT transformers (SD3, Flux): image queries over the text keys of the joint attention.

An MMDiT block has no cross-attention layer: image and text tokens are concatenated and attend jointly
(Esser et al. 2024, Fig. 2). The analogue of a UNet cross-attention map is the block of the joint softmax where
image tokens query text tokens: ``P[b, head, image token n, text token l]`` — the share of image token n's
attention that goes to text token l (rows do not sum to 1 over the text keys; ``renormalize=True`` makes them).

:func:`record_joint_attention` swaps, for the duration of a ``with`` block, each selected attention module's
processor for a :class:`JointAttnRecordingProcessor`, which calls the **original** processor (so outputs are
bit-identical) and recomputes the probabilities from the same projections in float32:

* SD3 (``JointAttnProcessor2_0``, blocks ``transformer_blocks.i.attn``): sequence ``[image; text]``, RMS/LayerNorm
  q/k norms, no positional rotation (positions are in the patch embedding);
* Flux double-stream blocks (``transformer_blocks.i.attn``): sequence ``[text; image]``, q/k RMSNorms, rotary
  embedding over ``(txt_ids; img_ids)``;
* Flux single-stream blocks (``single_transformer_blocks.i.attn``): one stream that is already ``[text; image]``;
  the text length comes from the transformer's input (a forward pre-hook).

Aggregation is DAAM's, as :mod:`.cross` does for UNets (the recorder is a
:class:`~.recorder.CrossAttentionRecorder`): each layer's map per head is upsampled from the patch grid
to the latent grid, clamped at ≥ 0, averaged over (layer, head) pairs and summed over calls. Word maps take a
tokenizer (its positions must index the text keys: SD3's CLIP tokenizer for the first 77 keys, Flux's T5
tokenizer) or, better, the Model, whose ``token_positions`` knows every encoder's rows (SD3: CLIP and T5).
:func:`infodecomp.models.attention.record_cross_attention` dispatches here for transformer models, so the attention
baselines, the probe and :func:`infodecomp.editing.intervene` run unchanged.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Sequence
from contextlib import contextmanager

import torch
from torch import Tensor

from .layers import select_layers
from .recorder import CrossAttentionRecorder, word_map

__all__ = [
    "is_joint_attention_model", "joint_attention_layers", "joint_attention_probs", "JointAttnRecordingProcessor",
    "JointAttentionRecorder", "record_joint_attention",
]

_QUERY_CHUNK = 1024  # image queries per softmax (bounds memory: [B, heads, chunk, N + L] float32)


def _transformer_of(model):
    """An MMDiT transformer from itself, a pipeline (``.transformer``) or a Model (``.pipeline.transformer``)."""
    for path in ((), ("transformer",), ("pipeline", "transformer")):
        obj = model
        for attr in path:
            obj = getattr(obj, attr, None)
        if obj is not None and hasattr(obj, "attn_processors") and hasattr(obj, "transformer_blocks") \
                and hasattr(obj, "set_attn_processor"):
            return obj
    return None


def _kind(transformer) -> str:
    return "flux" if hasattr(transformer, "single_transformer_blocks") else "sd3"


def is_joint_attention_model(model) -> bool:
    """Whether ``model`` (a transformer, a pipeline or a Model) is an MMDiT (SD3 or Flux) transformer."""
    return _transformer_of(model) is not None


def joint_attention_layers(model, *, include_single: bool = True) -> list[str]:
    """Names of the attention modules whose image queries see text keys, in the transformer's order:
    ``transformer_blocks.i.attn`` (SD3's joint blocks; Flux's double-stream blocks; SD3.5's self-only ``attn2``
    is left out) and, for Flux with ``include_single``, ``single_transformer_blocks.i.attn``."""
    tr = _transformer_of(model)
    if tr is None:
        raise TypeError(f"expected an SD3 / Flux transformer, a pipeline or a Model, got {type(model).__name__}")
    names = []
    for key in tr.attn_processors:
        name = key.removesuffix(".processor")
        mod = tr.get_submodule(name)
        if name.startswith("transformer_blocks.") and getattr(mod, "add_k_proj", None) is not None:
            names.append(name)
        elif name.startswith("single_transformer_blocks.") and include_single:
            names.append(name)
    return names


def _heads(x: Tensor, head_dim: int) -> Tensor:
    """``[B, S, H·D]`` → ``[B, S, H, D]``."""
    return x.unflatten(-1, (-1, head_dim))


def _softmax_text(q: Tensor, k: Tensor, text: slice, renormalize: bool) -> Tensor:
    """``q [B, H, N, D]``, ``k [B, H, S, D]`` → softmax over the S keys, restricted to the ``text`` keys:
    ``[B, H, N, L]`` float32 (chunked over queries)."""
    scale = 1.0 / math.sqrt(q.shape[-1])  # scaled_dot_product_attention's default, as both processors use
    out = []
    kt = k.float().transpose(-1, -2)
    for i in range(0, q.shape[2], _QUERY_CHUNK):
        p = (torch.matmul(q[:, :, i:i + _QUERY_CHUNK].float(), kt) * scale).softmax(-1)[..., text]
        out.append(p / p.sum(-1, keepdim=True).clamp_min(1e-30) if renormalize else p)
    return torch.cat(out, 2)


def _rotate(x: Tensor, rotary, rows: slice) -> Tensor:
    """Apply Flux's rotary embedding ``(cos, sin) [S, D]`` restricted to sequence ``rows`` to ``x [B, S', H, D]``."""
    from diffusers.models.embeddings import apply_rotary_emb  # heavy (diffusers): only for a Flux recording

    cos, sin = rotary
    return apply_rotary_emb(x, (cos[rows], sin[rows]), sequence_dim=1)


def _projections(attn, hidden_states: Tensor, encoder_hidden_states: Tensor | None):
    if getattr(attn, "fused_projections", False):
        q, k, _ = attn.to_qkv(hidden_states).chunk(3, dim=-1)
        ek = attn.to_added_qkv(encoder_hidden_states).chunk(3, dim=-1)[1] if encoder_hidden_states is not None \
            else None
        return q, k, ek
    ek = attn.add_k_proj(encoder_hidden_states) if encoder_hidden_states is not None else None
    return attn.to_q(hidden_states), attn.to_k(hidden_states), ek


def joint_attention_probs(attn, hidden_states: Tensor, encoder_hidden_states: Tensor | None = None, *,
                          layout: str, image_rotary_emb=None, text_len: int | None = None,
                          renormalize: bool = False) -> Tensor:
    """Image-query × text-key probabilities ``[B, heads, N, L]`` (float32) of one joint-attention call.

    layout: ``"sd3"`` (``hidden_states [B, N, C]`` image, ``encoder_hidden_states [B, L, C]`` text, sequence
    ``[image; text]``), ``"flux_double"`` (the same inputs, sequence ``[text; image]``, rotary embedding) or
    ``"flux_single"`` (``hidden_states [B, L + N, C]`` = ``[text; image]``, ``text_len`` = L, rotary).
    """
    if layout == "sd3":
        heads = attn.heads
        q, k, ek = _projections(attn, hidden_states, encoder_hidden_states)
        d = k.shape[-1] // heads
        q, k, ek = (_heads(t, d).transpose(1, 2) for t in (q, k, ek))  # [B, H, S, D]
        if attn.norm_q is not None:
            q = attn.norm_q(q)
        if attn.norm_k is not None:
            k = attn.norm_k(k)
        if getattr(attn, "norm_added_k", None) is not None:
            ek = attn.norm_added_k(ek)
        N = q.shape[2]
        keys = torch.cat([k, ek], 2)
        return _softmax_text(q, keys, slice(N, None), renormalize)
    d = attn.head_dim
    if layout == "flux_double":
        q, k, ek = _projections(attn, hidden_states, encoder_hidden_states)
        q, k, ek = attn.norm_q(_heads(q, d)), attn.norm_k(_heads(k, d)), attn.norm_added_k(_heads(ek, d))
        L = ek.shape[1]
        keys = torch.cat([ek, k], 1)  # [B, L + N, H, D]
    elif layout == "flux_single":
        if text_len is None:
            raise ValueError("flux_single needs text_len (the transformer's text length)")
        q_all, k_all, _ = _projections(attn, hidden_states, None)
        L = int(text_len)
        q = attn.norm_q(_heads(q_all, d))[:, L:]
        keys = attn.norm_k(_heads(k_all, d))
    else:
        raise ValueError(f"layout must be 'sd3', 'flux_double' or 'flux_single', got {layout!r}")
    if image_rotary_emb is not None:
        q = _rotate(q, image_rotary_emb, slice(L, None))
        keys = _rotate(keys, image_rotary_emb, slice(None))
    return _softmax_text(q.transpose(1, 2), keys.transpose(1, 2), slice(0, L), renormalize)


class JointAttnRecordingProcessor:
    """Wraps an MMDiT attention processor: returns exactly what ``original`` returns, and passes
    ``(name, probs [B, heads, N, L] float32)`` (image queries × text keys) to ``sink``."""

    def __init__(self, original, name: str, sink: Callable[[str, Tensor], None], layout: str,
                 text_len: Callable[[], int | None], renormalize: bool = False):
        self.original = original
        self.name = name
        self.sink = sink
        self.layout = layout
        self.text_len = text_len
        self.renormalize = renormalize

    def __call__(self, attn, hidden_states: Tensor, encoder_hidden_states: Tensor | None = None,
                 attention_mask: Tensor | None = None, image_rotary_emb=None, **kwargs):
        extra = {} if image_rotary_emb is None else {"image_rotary_emb": image_rotary_emb}
        out = self.original(attn, hidden_states, encoder_hidden_states=encoder_hidden_states,
                            attention_mask=attention_mask, **extra, **kwargs)
        if self.layout == "flux_single" or encoder_hidden_states is not None:
            with torch.no_grad():
                probs = joint_attention_probs(attn, hidden_states, encoder_hidden_states, layout=self.layout,
                                              image_rotary_emb=image_rotary_emb, text_len=self.text_len(),
                                              renormalize=self.renormalize)
            self.sink(self.name, probs)
        return out


class JointAttentionRecorder(CrossAttentionRecorder):
    """What one :func:`record_joint_attention` block recorded (the state and aggregation of
    :class:`~.recorder.CrossAttentionRecorder`; L = the text keys of the joint attention)."""

    def __init__(self, layers: Sequence[str], *, kind: str, **kwargs):
        super().__init__(layers, **kwargs)
        self.kind = kind
        self.text_len: int | None = None

    def __repr__(self) -> str:
        return (f"JointAttentionRecorder({self.kind}: {len(self.sums)} layers recorded of {len(self.layers)} hooked, "
                f"calls={self.n_calls}, text keys={self.text_len})")

    def _capture_inputs(self, module, args, kwargs):
        hidden = kwargs.get("hidden_states", args[0] if args else None)
        text = kwargs.get("encoder_hidden_states", args[1] if len(args) > 1 else None)
        if not isinstance(hidden, Tensor) or not isinstance(text, Tensor):
            raise ValueError("joint-attention recording needs the transformer's hidden_states and "
                             "encoder_hidden_states")
        self.text_len = int(text.shape[1])
        if self.kind == "sd3":
            self.latent_hw = (int(hidden.shape[-2]), int(hidden.shape[-1]))
            return
        ids = kwargs.get("img_ids")
        if not isinstance(ids, Tensor):
            raise ValueError("Flux attention recording needs the transformer's img_ids")
        ids = ids[0] if ids.ndim == 3 else ids
        rows, cols = int(ids[:, 1].max()) + 1, int(ids[:, 2].max()) + 1
        self.latent_hw = (2 * rows, 2 * cols)  # 2×2 latent patches per token

    def word_maps(self, tokenizer, prompts: str | Sequence[str], words: str | Sequence[str], *,
                  rows: slice | None = None) -> Tensor:
        """``[B, h, w]`` word maps: row i is the mean of :meth:`token_maps` over the positions of ``words[i]`` in
        ``prompts[i]``. ``tokenizer``: a Model (its ``token_positions``, every encoder's rows: preferred) or a
        tokenizer whose positions index the text keys (SD3: CLIP → the first 77; Flux: T5). ``rows`` as
        :meth:`CrossAttentionRecorder.word_maps`."""
        if not hasattr(tokenizer, "token_positions"):
            return super().word_maps(tokenizer, prompts, words, rows=rows)
        maps = self.token_maps()
        if rows is not None:
            maps = maps[rows]
        B = maps.shape[0]
        prompts = [prompts] * B if isinstance(prompts, str) else list(prompts)
        words = [words] * B if isinstance(words, str) else list(words)
        if len(prompts) != B or len(words) != B:
            raise ValueError(f"{len(prompts)} prompts and {len(words)} words for a recorded batch of {B}")
        return torch.stack([word_map(maps[i], tokenizer.token_positions(p, w))
                            for i, (p, w) in enumerate(zip(prompts, words))])


@contextmanager
def record_joint_attention(model, *, layers: Iterable[str] | Callable[[str], bool] | None = None,
                           include_single: bool = True, resolutions: Iterable[int] | None = None,
                           faithful_half_heads: bool = False, upsample: str = "bicubic", renormalize: bool = False):
    """Record image-query × text-key attention maps of every transformer call made inside the block.

    Args:
        model: an SD3 / Flux transformer, its pipeline, or an ``infodecomp`` Model of either.
        layers: ``None`` (every layer of :func:`joint_attention_layers`), a list of its names, or a predicate.
        include_single: Flux: also the single-stream blocks (with ``layers=None``).
        resolutions, faithful_half_heads, upsample: as :func:`infodecomp.models.attention.record_cross_attention`
            (resolutions are patch-grid heights).
        renormalize: divide each image query's text probabilities by their sum (a cross-attention-like
            distribution over the text); default: the raw joint probabilities.

    Yields a :class:`JointAttentionRecorder` (``token_maps() [B, L, h, w]``, ``word_maps(model, prompts,
    words)``). The processors in place before are restored on exit, also when an exception is raised.
    """
    if upsample not in ("bicubic", "bilinear"):
        raise ValueError(f"upsample must be 'bicubic' or 'bilinear', got {upsample!r}")
    tr = _transformer_of(model)
    if tr is None:
        raise TypeError(f"expected an SD3 / Flux transformer, a pipeline or a Model, got {type(model).__name__}")
    kind = _kind(tr)
    available = joint_attention_layers(tr, include_single=include_single or layers is not None)
    chosen = select_layers(available, layers, default=available, kind="joint-attention", owner="this transformer")
    rec = JointAttentionRecorder(chosen, kind=kind, resolutions=resolutions, faithful_half_heads=faithful_half_heads,
                                 upsample=upsample)
    originals = dict(tr.attn_processors)

    def layout(name: str) -> str:
        if kind == "sd3":
            return "sd3"
        return "flux_single" if name.startswith("single_transformer_blocks.") else "flux_double"

    wrapped = {}
    for key, proc in originals.items():
        name = key.removesuffix(".processor")
        wrapped[key] = (JointAttnRecordingProcessor(proc, name, rec, layout(name), lambda: rec.text_len, renormalize)
                        if name in chosen else proc)
    handle = tr.register_forward_pre_hook(rec._capture_inputs, with_kwargs=True)
    try:
        tr.set_attn_processor(dict(wrapped))  # set_attn_processor pops from its argument: give it a copy
        yield rec
    finally:
        handle.remove()
        tr.set_attn_processor(dict(originals))
