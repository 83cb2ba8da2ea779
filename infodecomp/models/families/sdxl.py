"""Stable Diffusion XL: a UNet with two text encoders, a pooled text embedding and size/crop micro-conditioning.

What the UNet reads besides the noisy latent (Podell et al. 2023, Sec. 2.2; diffusers' ``StableDiffusionXLPipeline``):

* ``encoder_hidden_states [B, 77, D]``: the penultimate hidden states of CLIP ViT-L (768) and OpenCLIP ViT-bigG
  (1280) concatenated along channels (D = 2048), both from the same 77 token positions;
* ``text_embeds [B, P]``: the pooled, projected embedding of the second encoder (P = 1280);
* ``time_ids [B, 6]``: ``(original_h, original_w, crop_top, crop_left, target_h, target_w)`` in pixels.

All three travel in one tensor (:class:`~.packing.CondLayout`)::

    cond [B, 77 + r, D] = [ token states (77 rows) | cat(text_embeds (P), time_ids (6), zeros) as r rows ]

(r = 1 for SDXL-base: 1286 ≤ 2048). :class:`PackedSDXLUNet` unpacks it before every UNet call, so the UNet and
:class:`~infodecomp.models.UNetDenoiser` (timesteps, ε/v conversion) are used unchanged.

The null prompt ``""``: with ``force_zeros_for_empty_prompt`` (SDXL-base's config) the pipeline's
classifier-free-guidance unconditional is all-zero token states and a zero pooled embedding (SDXL was trained
with dropped captions zeroed), and that is what :meth:`SDXLModel.encode_prompts` returns for ``""``; without the
flag, ``""`` is encoded like any prompt. The micro-conditioning is the same for every prompt (default: the
model's resolution, no crop, as the pipeline's default), so a word intervention (omit, swap, a CMI context)
changes the token states of both encoders and the pooled embedding, never the time ids; MI and CMI are
therefore information about the prompt at fixed size/crop conditioning. Set ``original_size``,
``crops_coords_top_left`` and ``target_size`` on the model (or as ``load_model`` options) to measure at other
micro-conditioning.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from ...text import check_prompt_length, token_positions
from ..base import CROSS_ATTENTION_TOKENS, Model, UNetDenoiser
from .packing import CondLayout

__all__ = ["SDXLModel", "PackedSDXLUNet", "sdxl_layout", "N_TIME_IDS"]

#: ``(original_h, original_w, crop_top, crop_left, target_h, target_w)``.
N_TIME_IDS = 6


def sdxl_layout(unet, text_encoder_2=None, tokens: int = 77) -> CondLayout:
    """The :class:`CondLayout` of an SDXL UNet: ``tokens`` rows of width ``cross_attention_dim``, then the pooled
    embedding (``add_embedding``'s input minus the time-id embeddings) and the 6 time ids. Raises ``ValueError``
    if the UNet is not a ``text_time`` UNet or its pooled size disagrees with ``text_encoder_2``'s projection."""
    cfg = unet.config
    if getattr(cfg, "addition_embed_type", None) != "text_time":
        raise ValueError(f"an SDXL UNet has addition_embed_type='text_time', this one has "
                         f"{getattr(cfg, 'addition_embed_type', None)!r}")
    width = cfg.cross_attention_dim
    if not isinstance(width, int):
        raise ValueError(f"expected one cross_attention_dim for every block, got {width!r}")
    total = int(cfg.projection_class_embeddings_input_dim)
    pooled = total - int(cfg.addition_time_embed_dim) * N_TIME_IDS
    if pooled < 1:
        raise ValueError(f"the UNet's add_embedding takes {total} inputs, fewer than {N_TIME_IDS} time ids × "
                         f"{cfg.addition_time_embed_dim}: not SDXL's micro-conditioning (a refiner with aesthetic "
                         "scores is not supported)")
    if text_encoder_2 is not None:
        proj = getattr(text_encoder_2.config, "projection_dim", None)
        if proj is not None and proj != pooled:
            raise ValueError(f"the UNet expects a pooled embedding of {pooled} values but text_encoder_2 projects to "
                             f"{proj}; with 6 time ids of {cfg.addition_time_embed_dim} the add_embedding needs "
                             f"{total}")
    return CondLayout(tokens=tokens, width=width, vectors=(("text_embeds", pooled), ("time_ids", N_TIME_IDS)))


class PackedSDXLUNet(nn.Module):
    """An SDXL UNet that takes the packed ``cond`` as ``encoder_hidden_states`` (see the module docstring), so
    :class:`~infodecomp.models.UNetDenoiser` can call it as it calls an SD UNet. Holds the pipeline's own UNet
    (no copy): ``forward(sample, timestep, encoder_hidden_states=cond, return_dict=False,
    encoder_attention_mask=None)`` unpacks and calls ``unet(sample, timestep, encoder_hidden_states=tokens,
    added_cond_kwargs={"text_embeds": …, "time_ids": …})``."""

    def __init__(self, unet, layout: CondLayout):
        super().__init__()
        self.unet = unet
        self.layout = layout

    @property
    def config(self):
        return self.unet.config

    def forward(self, sample: Tensor, timestep, encoder_hidden_states: Tensor, return_dict: bool = False,
                encoder_attention_mask: Tensor | None = None):
        tokens, vec = self.layout.unpack(encoder_hidden_states)
        extra = {}
        if encoder_attention_mask is not None:
            extra["encoder_attention_mask"] = encoder_attention_mask[:, :self.layout.tokens]
        return self.unet(sample, timestep, encoder_hidden_states=tokens,
                         added_cond_kwargs={"text_embeds": vec["text_embeds"], "time_ids": vec["time_ids"]},
                         return_dict=return_dict, **extra)


@dataclass(eq=False, repr=False)
class SDXLModel(Model):
    """A ``StableDiffusionXLPipeline`` as a :class:`~infodecomp.models.Model` (module docstring: the packing,
    the null prompt, the micro-conditioning). Build it with :func:`infodecomp.models.load_model` or directly:
    ``SDXLModel(pipe, name="sdxl")``.

    Extra attributes: ``original_size``, ``target_size`` (``(H, W)`` pixels; ``None`` = :attr:`resolution`),
    ``crops_coords_top_left`` ``(top, left)``: the micro-conditioning packed with every prompt. ``layout``: the
    :class:`~.packing.CondLayout` of ``cond``.
    """

    original_size: tuple[int, int] | None = None
    crops_coords_top_left: tuple[int, int] = (0, 0)
    target_size: tuple[int, int] | None = None
    family = "sdxl"

    def __post_init__(self):
        if self.cross_attention_tokens != "all":
            raise ValueError(f"SDXL attends to all 77 token positions; cross_attention_tokens must be 'all', got "
                             f"{self.cross_attention_tokens!r} (one of {CROSS_ATTENTION_TOKENS})")
        for name in ("original_size", "crops_coords_top_left", "target_size"):
            v = getattr(self, name)
            if v is not None and (len(tuple(v)) != 2 or any(int(a) != a or a < 0 for a in v)):
                raise ValueError(f"{name} must be a pair of non-negative ints (pixels), got {v!r}")
        tok = self.tokenizer
        self.layout = sdxl_layout(self.unet, getattr(self.pipeline, "text_encoder_2", None),
                                  tokens=int(tok.model_max_length))
        super().__post_init__()

    def __repr__(self) -> str:
        return (f"SDXLModel(name={self.name!r}, source={self.source!r}, revision={self.revision!r}, "
                f"prediction_type={self.prediction_type!r}, resolution={self.resolution}, time_ids={self.time_ids}, "
                f"device={self.device}, dtype={self.dtype})")

    @property
    def tokenizer(self):
        """The first CLIP tokenizer (both tokenize alike: one BPE, the same 77 positions)."""
        return self.pipeline.tokenizer if self.pipeline.tokenizer is not None else self.pipeline.tokenizer_2

    @property
    def time_ids(self) -> tuple[int, int, int, int, int, int]:
        """``(original_h, original_w, crop_top, crop_left, target_h, target_w)`` packed with every prompt."""
        H, W = self.resolution
        orig = tuple(self.original_size) if self.original_size is not None else (H, W)
        target = tuple(self.target_size) if self.target_size is not None else (H, W)
        return (*orig, *tuple(self.crops_coords_top_left), *target)

    def make_denoiser(self, *, timestep: str = "nearest", v_logsnr: str = "timestep",
                      max_batch: int | None = None) -> UNetDenoiser:
        """A :class:`~infodecomp.models.UNetDenoiser` over :class:`PackedSDXLUNet` (options as for SD)."""
        return UNetDenoiser(PackedSDXLUNet(self.unet, self.layout), self.alphas_cumprod, self.prediction_type,
                            timestep=timestep, v_logsnr=v_logsnr, max_batch=max_batch)

    def encode_prompts(self, prompts: str | Sequence[str], *, truncate: bool = False, batch_size: int = 64,
                       hide: bool = True) -> Tensor:
        """Packed conditioning ``[N, 77 + r, D]`` for ``N`` prompts (module docstring), in the text encoders'
        dtype, on the model's device: both encoders' token states, the pooled embedding and :attr:`time_ids`,
        through the pipeline's public ``encode_prompt`` without guidance. ``""`` is the pipeline's unconditional
        (zeros with ``force_zeros_for_empty_prompt``). ``hide`` has no effect (SDXL sees every token)."""
        prompts = [prompts] if isinstance(prompts, str) else list(prompts)
        if not prompts:
            raise ValueError("encode_prompts needs at least one prompt")
        check_prompt_length(self.tokenizer, prompts, truncate=truncate)
        states, pooled = [], []
        with torch.no_grad():
            for i in range(0, len(prompts), batch_size):
                emb, _, pool, _ = self.pipeline.encode_prompt(prompt=prompts[i:i + batch_size], device=self.device,
                                                              num_images_per_prompt=1,
                                                              do_classifier_free_guidance=False)
                states.append(emb)
                pooled.append(pool.to(emb.dtype))
        emb, pool = torch.cat(states), torch.cat(pooled)
        if getattr(self.pipeline.config, "force_zeros_for_empty_prompt", False):
            null = torch.tensor([p == "" for p in prompts], device=emb.device)
            emb = torch.where(null[:, None, None], torch.zeros_like(emb), emb)
            pool = torch.where(null[:, None], torch.zeros_like(pool), pool)
        ids = torch.tensor(self.time_ids, dtype=emb.dtype, device=emb.device).expand(len(prompts), N_TIME_IDS)
        return self.layout.pack(emb, text_embeds=pool, time_ids=ids)

    def token_mask(self, prompts: str | Sequence[str], *, truncate: bool = False) -> Tensor:
        """``[N, 77 + r]`` bool: True on the 77 token rows (all attended to), False on the packed rows."""
        n = 1 if isinstance(prompts, str) else len(list(prompts))
        mask = torch.zeros(n, self.layout.length, dtype=torch.bool)
        mask[:, :self.layout.tokens] = True
        return mask

    def token_positions(self, prompt: str, word: str, *, truncate: bool = False) -> list[int]:
        """Token positions of ``word`` in ``prompt``: rows of ``cond`` and keys of the UNet's cross-attention
        (both encoders share them)."""
        return token_positions(self.tokenizer, prompt, word, truncate=truncate)
