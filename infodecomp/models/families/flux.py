"""FLUX.1: a rectified-flow transformer (double- and single-stream blocks) conditioned on T5 and a pooled CLIP.

What ``FluxTransformer2DModel`` reads (diffusers' ``FluxPipeline``):

* ``hidden_states [B, (h/2)(w/2), 4C]``: the latent ``[B, C, h, w]`` cut into 2×2 patches (:func:`pack_latents`),
  with ``img_ids`` (row, column) of each patch for the rotary embedding;
* ``encoder_hidden_states [B, T, 4096]``: T5-XXL states of T = ``max_sequence_length`` (512) tokens, with
  ``txt_ids`` = 0; the only text the attention sees;
* ``pooled_projections [B, 768]``: CLIP ViT-L's pooled output (CLIP's token states are not used);
* ``timestep`` = t ∈ (0, 1) (the transformer multiplies by 1000) and, for guidance-distilled checkpoints,
  ``guidance`` = the guidance scale g.

Packed as ``cond [B, T + 1, 4096] = [ T5 rows (T) | pooled (768), zeros ]`` (:class:`CondLayout`); the latent is
kept as ``[B, C, h, w]`` everywhere (pixel maps on the latent grid) and packed into patches only for the
transformer call. ``model.tokenizer`` is T5's: its positions index the rows of ``cond`` and the text keys.

**Where information is not defined.** FLUX.1-dev is *guidance-distilled*: its transformer takes g and was trained
to output its teacher's classifier-free-guided velocity ``v_∅ + g·(v_c − v_∅)``. No unconditional denoiser was
trained, and a guided prediction is not the MMSE denoiser of any distribution, so the MI and CMI of the paper
(½∫ of differences between ε̂(z|c) and ε̂(z|∅) of one model of p(x|c)) are not defined for it. At ``guidance=1``
(the default here) the model imitates its teacher's conditional prediction and ``""`` gives (approximately) the
teacher's unconditional one, so an estimate approximates the teacher's information only as far as the
distillation is faithful, which cannot be checked from outside: not trustworthy. FLUX.1-schnell is
*timestep-distilled* (adversarial distillation for 1–4 steps): not an MMSE denoiser either. Both are refused by
:class:`FluxModel` unless ``allow_distilled=True`` (a ``UserWarning`` then says so, and
:attr:`FluxModel.information_defined` is False); attention maps and interventions still run. A Flux-architecture
model trained without distillation (no guidance embedding, not "schnell") is treated like SD3.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from ...text import check_prompt_length, token_positions
from ..base import check_device
from .flow import dynamic_shift
from .packing import CondLayout
from .rectified import FlowModel

__all__ = ["FluxModel", "FluxVelocity", "pack_latents", "unpack_latents", "latent_image_ids", "DISTILLED_MESSAGE"]

DISTILLED_MESSAGE = {
    "guidance": (
        "this Flux transformer is guidance-distilled (guidance_embeds=True, as FLUX.1-dev): it was trained to output "
        "its teacher's classifier-free-guided velocity, no unconditional denoiser was trained, and a guided "
        "prediction is not the MMSE denoiser of any distribution, so MI and CMI are not defined for it; at "
        "guidance=1 estimates only approximate the teacher's information, as far as the distillation holds "
        "(not trustworthy)."
    ),
    "timestep": (
        "this Flux model is timestep-distilled (FLUX.1-schnell: adversarial distillation for 1-4 steps): its "
        "denoiser is not an MMSE estimator, so MI and CMI estimates from it are not trustworthy."
    ),
}


def pack_latents(z: Tensor) -> Tensor:
    """``[B, C, h, w]`` → ``[B, (h/2)(w/2), 4C]``: 2×2 patches in row-major order, each patch's channels ordered
    (c, dy, dx) — Flux's token layout. h and w must be even."""
    B, C, h, w = z.shape
    if h % 2 or w % 2:
        raise ValueError(f"Flux packs 2×2 latent patches: h and w must be even, got {h}×{w}")
    return z.view(B, C, h // 2, 2, w // 2, 2).permute(0, 2, 4, 1, 3, 5).reshape(B, (h // 2) * (w // 2), C * 4)


def unpack_latents(tokens: Tensor, h: int, w: int) -> Tensor:
    """Inverse of :func:`pack_latents`: ``[B, (h/2)(w/2), 4C]`` → ``[B, C, h, w]``."""
    B, N, D = tokens.shape
    if N != (h // 2) * (w // 2) or D % 4:
        raise ValueError(f"{N} tokens of {D} channels do not unpack to a {h}×{w} latent")
    return tokens.view(B, h // 2, w // 2, D // 4, 2, 2).permute(0, 3, 1, 4, 2, 5).reshape(B, D // 4, h, w)


def latent_image_ids(rows: int, cols: int, *, device=None, dtype=torch.float32) -> Tensor:
    """``[rows·cols, 3]`` position ids of the packed patches: ``(0, row, column)``, row-major."""
    r = torch.arange(rows, device=device, dtype=dtype)[:, None].expand(rows, cols)
    c = torch.arange(cols, device=device, dtype=dtype)[None, :].expand(rows, cols)
    return torch.stack([torch.zeros_like(r), r, c], -1).reshape(rows * cols, 3)


class FluxVelocity:
    """``v = velocity(z_t, t, cond)`` of a ``FluxTransformer2DModel``: packs the latent into 2×2 patches, unpacks
    ``cond``, calls the transformer with ``timestep = t`` (it scales by 1000 itself), ``img_ids``/``txt_ids`` and
    ``guidance`` (when the model has a guidance embedding), and unpacks the velocity to ``[B, C, h, w]``."""

    def __init__(self, transformer, layout: CondLayout, guidance: float | None):
        self.transformer = transformer
        self.layout = layout
        self.guidance = None if guidance is None else float(guidance)

    def __repr__(self) -> str:
        return f"FluxVelocity(guidance={self.guidance}, layout={self.layout})"

    def __call__(self, z_t: Tensor, t: Tensor, cond: Tensor) -> Tensor:
        p = next(self.transformer.parameters())
        check_device(z_t, cond, p.device, "transformer")
        if z_t.ndim != 4:
            raise ValueError(f"latents must be [B, C, h, w], got {tuple(z_t.shape)}")
        B, _, h, w = z_t.shape
        tokens, vec = self.layout.unpack(cond)
        extra = {}
        if getattr(self.transformer.config, "guidance_embeds", False):
            if self.guidance is None:
                raise ValueError("this Flux transformer has a guidance embedding: give guidance= (e.g. 1.0)")
            extra["guidance"] = torch.full((B,), self.guidance, device=p.device, dtype=torch.float32)
        out = self.transformer(
            hidden_states=pack_latents(z_t.to(p.dtype)), timestep=t.to(p.dtype),
            encoder_hidden_states=tokens.to(p.dtype), pooled_projections=vec["pooled"].to(p.dtype),
            txt_ids=torch.zeros(tokens.shape[1], 3, device=p.device, dtype=p.dtype),
            img_ids=latent_image_ids(h // 2, w // 2, device=p.device, dtype=p.dtype), return_dict=False, **extra)[0]
        return unpack_latents(out, h, w).to(torch.promote_types(z_t.dtype, torch.float32))


@dataclass(eq=False, repr=False)
class FluxModel(FlowModel):
    """A ``FluxPipeline`` as a :class:`~infodecomp.models.Model` (module docstring: packing, distillation).

    Extra attributes: ``guidance`` (the guidance embedding's g for guidance-distilled models; default 1.0, the
    model's imitation of its teacher's unguided prediction), ``allow_distilled`` (load a distilled model despite
    MI/CMI not being defined or trustworthy; see the module docstring), ``max_sequence_length`` (T5 tokens,
    default 512 as the pipeline), ``image_size``.
    """

    guidance: float = 1.0
    allow_distilled: bool = False
    family = "flux"
    default_max_sequence_length = 512
    latent_multiple = 2

    def __post_init__(self):
        kind = self.distillation
        if kind is not None:
            if not self.allow_distilled:
                raise ValueError(f"{self.source or self.name!r}: {DISTILLED_MESSAGE[kind]} Pass allow_distilled=True "
                                 "(load_model option) to load it anyway, e.g. for attention maps and interventions.")
            warnings.warn(f"{self.source or self.name!r}: {DISTILLED_MESSAGE[kind]} Loaded because "
                          "allow_distilled=True.", UserWarning, stacklevel=3)
        super().__post_init__()

    @property
    def distillation(self) -> str | None:
        """``"guidance"`` (a guidance embedding, as FLUX.1-dev), ``"timestep"`` (FLUX.1-schnell, recognised by
        its name or source), or ``None``."""
        if getattr(self.transformer.config, "guidance_embeds", False):
            return "guidance"
        if "schnell" in f"{self.name} {self.source}".lower():
            return "timestep"
        return None

    @property
    def information_defined(self) -> bool:
        return self.distillation is None

    def _layout(self) -> CondLayout:
        cfg = self.transformer.config
        return CondLayout(tokens=self.max_sequence_length, width=int(cfg.joint_attention_dim),
                          vectors=(("pooled", int(cfg.pooled_projection_dim)),))

    def _velocity(self, guidance: float | None = None):
        g = self.guidance if guidance is None else guidance
        return FluxVelocity(self.transformer, self.layout,
                            g if getattr(self.transformer.config, "guidance_embeds", False) else None)

    @property
    def tokenizer(self):
        """T5's tokenizer (``pipeline.tokenizer_2``): the tokens of ``cond``'s rows and of the attention's keys."""
        return self.pipeline.tokenizer_2

    @property
    def resolution(self) -> tuple[int, int]:
        """``(H, W)`` pixels: ``image_size``, else the pipeline's default (``default_sample_size`` × VAE factor:
        1024 for FLUX.1)."""
        if self.image_size is not None:
            return self.image_size
        s = int(getattr(self.pipeline, "default_sample_size", 128)) * self.vae_scale_factor
        return s, s

    @property
    def schedule_shift(self) -> float:
        """``exp(mu)`` at :attr:`resolution` with dynamic shifting (FLUX.1-dev: 3.16 at 1024 px), else ``shift``."""
        cfg = self.pipeline.scheduler.config
        if getattr(cfg, "use_dynamic_shifting", False):
            _, h, w = self.latent_shape
            return dynamic_shift((h // 2) * (w // 2), base_seq_len=getattr(cfg, "base_image_seq_len", 256),
                                 max_seq_len=getattr(cfg, "max_image_seq_len", 4096),
                                 base_shift=getattr(cfg, "base_shift", 0.5), max_shift=getattr(cfg, "max_shift", 1.15),
                                 time_shift_type=getattr(cfg, "time_shift_type", "exponential"))
        return float(cfg.shift)

    # -- text ----------------------------------------------------------------------------------------------
    def encode_prompts(self, prompts: str | Sequence[str], *, truncate: bool = False, batch_size: int = 64,
                       hide: bool = True) -> Tensor:
        """Packed conditioning ``[N, T + 1, D]`` through the pipeline's public ``encode_prompt``; ``""`` is the
        null prompt (see the module docstring for what it means for a distilled model). A prompt over CLIP's 77
        tokens (the pooled embedding) or T5's ``max_sequence_length`` raises unless ``truncate=True``."""
        prompts = [prompts] if isinstance(prompts, str) else list(prompts)
        if not prompts:
            raise ValueError("encode_prompts needs at least one prompt")
        check_prompt_length(self.pipeline.tokenizer, prompts, truncate=truncate)
        check_prompt_length(self.tokenizer, prompts, truncate=truncate, max_length=self.max_sequence_length)
        out = []
        with torch.no_grad():
            for i in range(0, len(prompts), batch_size):
                emb, pooled, _ = self.pipeline.encode_prompt(prompt=prompts[i:i + batch_size], prompt_2=None,
                                                             device=self.device, num_images_per_prompt=1,
                                                             max_sequence_length=self.max_sequence_length)
                out.append(self.layout.pack(emb, pooled=pooled))
        return torch.cat(out)

    def token_positions(self, prompt: str, word: str, *, truncate: bool = False) -> list[int]:
        """T5 positions of ``word`` (first word = 0: T5 has no start token): rows of ``cond``, text keys."""
        return token_positions(self.tokenizer, prompt, word, truncate=truncate, max_length=self.max_sequence_length)
