"""Stable Diffusion 3 / 3.5: a rectified-flow MMDiT conditioned on two CLIP encoders and T5.

What ``SD3Transformer2DModel`` reads (Esser et al. 2024, Sec. 5; diffusers' ``StableDiffusion3Pipeline``):

* ``encoder_hidden_states [B, 77 + T, D]``: CLIP ViT-L and OpenCLIP bigG penultimate states concatenated along
  channels (768 + 1280), zero-padded to T5's width D = 4096, for the 77 CLIP positions; then T5-XXL's T =
  ``max_sequence_length`` (256) token states (zeros if the pipeline has no T5);
* ``pooled_projections [B, 2048]``: both CLIP pooled embeddings;
* ``timestep``: 1000·t, with t the noise fraction actually applied (after any shift).

Packed as one tensor (:class:`~.packing.CondLayout`)::

    cond [B, 77 + T + 1, D] = [ CLIP rows (77) | T5 rows (T) | pooled (2048), zeros ]

The velocity is converted to ε̂ by :class:`~.flow.FlowDenoiser`. The null prompt ``""`` is encoded
by all three encoders, exactly the pipeline's default negative prompt (its classifier-free-guidance
unconditional). A word occupies CLIP rows and T5 rows: :meth:`SD3Model.token_positions` gives both
(``model.tokenizer``, CLIP, gives the first 77 only, which index the same rows).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from ...text import check_prompt_length, token_positions
from ..base import check_device
from .flow import dynamic_shift
from .packing import CondLayout
from .rectified import FlowModel

__all__ = ["SD3Model", "SD3Velocity"]


class SD3Velocity:
    """``v = velocity(z_t, t, cond)`` of an ``SD3Transformer2DModel`` (see :class:`~.flow.FlowDenoiser`):
    unpacks ``cond``, calls ``transformer(hidden_states=z_t, timestep=1000·t, encoder_hidden_states=tokens,
    pooled_projections=pooled)`` in the transformer's dtype, returns ``v [B, C, h, w]`` in float32 (or ``z_t``'s
    dtype when wider)."""

    def __init__(self, transformer, layout: CondLayout):
        self.transformer = transformer
        self.layout = layout

    def __repr__(self) -> str:
        return f"SD3Velocity(layout={self.layout})"

    def __call__(self, z_t: Tensor, t: Tensor, cond: Tensor) -> Tensor:
        p = next(self.transformer.parameters())
        check_device(z_t, cond, p.device, "transformer")
        patch = int(getattr(self.transformer.config, "patch_size", 1))
        if z_t.ndim != 4 or z_t.shape[-1] % patch or z_t.shape[-2] % patch:
            raise ValueError(f"latents must be [B, C, h, w] with h, w divisible by the patch size {patch}, "
                             f"got {tuple(z_t.shape)}")
        tokens, vec = self.layout.unpack(cond)
        out = self.transformer(hidden_states=z_t.to(p.dtype), timestep=(1000.0 * t).to(torch.float32),
                               encoder_hidden_states=tokens.to(p.dtype),
                               pooled_projections=vec["pooled"].to(p.dtype), return_dict=False)[0]
        return out.to(torch.promote_types(z_t.dtype, torch.float32))


@dataclass(eq=False, repr=False)
class SD3Model(FlowModel):
    """A ``StableDiffusion3Pipeline`` as a :class:`~infodecomp.models.Model` (module docstring)."""

    family = "sd3"
    default_max_sequence_length = 256

    @property
    def latent_multiple(self) -> int:
        return int(getattr(self.transformer.config, "patch_size", 1))

    @property
    def clip_tokens(self) -> int:
        """77: the CLIP rows at the start of ``cond``."""
        return int(self.pipeline.tokenizer.model_max_length)

    @property
    def has_t5(self) -> bool:
        return getattr(self.pipeline, "text_encoder_3", None) is not None

    def _layout(self) -> CondLayout:
        cfg = self.transformer.config
        return CondLayout(tokens=self.clip_tokens + self.max_sequence_length, width=int(cfg.joint_attention_dim),
                          vectors=(("pooled", int(cfg.pooled_projection_dim)),))

    def _velocity(self, guidance: float | None = None):
        if guidance is not None:
            raise ValueError("SD3 has no guidance embedding; guidance= does not apply")
        return SD3Velocity(self.transformer, self.layout)

    @property
    def resolution(self) -> tuple[int, int]:
        """``(H, W)`` pixels: ``image_size``, else the transformer's ``sample_size`` × the VAE factor (1024 for
        SD3-medium)."""
        if self.image_size is not None:
            return self.image_size
        s = int(self.transformer.config.sample_size) * self.vae_scale_factor
        return s, s

    @property
    def schedule_shift(self) -> float:
        cfg = self.pipeline.scheduler.config
        if getattr(cfg, "use_dynamic_shifting", False):  # SD3.5 with a dynamic schedule: as the pipeline computes it
            _, h, w = self.latent_shape
            patch = self.latent_multiple
            return dynamic_shift((h // patch) * (w // patch), base_seq_len=getattr(cfg, "base_image_seq_len", 256),
                                 max_seq_len=getattr(cfg, "max_image_seq_len", 4096),
                                 base_shift=getattr(cfg, "base_shift", 0.5), max_shift=getattr(cfg, "max_shift", 1.16),
                                 time_shift_type=getattr(cfg, "time_shift_type", "exponential"))
        return float(cfg.shift)

    # -- text ----------------------------------------------------------------------------------------------
    def _check_lengths(self, prompts: list[str], truncate: bool) -> None:
        check_prompt_length(self.pipeline.tokenizer, prompts, truncate=truncate)
        if self.has_t5:
            check_prompt_length(self.pipeline.tokenizer_3, prompts, truncate=truncate,
                                max_length=self.max_sequence_length)

    def encode_prompts(self, prompts: str | Sequence[str], *, truncate: bool = False, batch_size: int = 64,
                       hide: bool = True) -> Tensor:
        """Packed conditioning ``[N, 77 + T + 1, D]`` (module docstring) through the pipeline's public
        ``encode_prompt`` without guidance; ``""`` is the pipeline's unconditional. A prompt over CLIP's 77 or
        T5's ``max_sequence_length`` tokens raises unless ``truncate=True``. ``hide`` has no effect."""
        prompts = [prompts] if isinstance(prompts, str) else list(prompts)
        if not prompts:
            raise ValueError("encode_prompts needs at least one prompt")
        self._check_lengths(prompts, truncate)
        out = []
        with torch.no_grad():
            for i in range(0, len(prompts), batch_size):
                emb, _, pooled, _ = self.pipeline.encode_prompt(
                    prompt=prompts[i:i + batch_size], prompt_2=None, prompt_3=None, device=self.device,
                    num_images_per_prompt=1, do_classifier_free_guidance=False,
                    max_sequence_length=self.max_sequence_length)
                out.append(self.layout.pack(emb, pooled=pooled))
        return torch.cat(out)

    def token_positions(self, prompt: str, word: str, *, truncate: bool = False, encoder: str = "all") -> list[int]:
        """Rows of ``cond`` (= text keys of the joint attention) holding ``word``: its CLIP positions (start
        token = 0) and, with T5, ``77 +`` its T5 positions. ``encoder``: ``"all"``, ``"clip"`` or ``"t5"``."""
        if encoder not in ("all", "clip", "t5"):
            raise ValueError(f"encoder must be 'all', 'clip' or 't5', got {encoder!r}")
        if encoder == "t5" and not self.has_t5:
            raise ValueError("this SD3 pipeline has no T5 encoder (text_encoder_3 is None)")
        found = []
        if encoder in ("all", "clip"):
            found += token_positions(self.pipeline.tokenizer, prompt, word, truncate=truncate)
        if encoder in ("all", "t5") and self.has_t5:
            found += [self.clip_tokens + p for p in token_positions(
                self.pipeline.tokenizer_3, prompt, word, truncate=truncate, max_length=self.max_sequence_length)]
        return found
