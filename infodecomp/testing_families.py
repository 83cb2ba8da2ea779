"""Tiny random pipelines of every supported family, built from config (never downloads anything), for tests.

Each has its family's real layout and conventions — scheduler config, tokenizers and padding, which encoder
gives token states and which the pooled embedding, VAE channels and shift — at toy widths (a few hundred
thousand parameters besides CLIP's 49,408-token embedding), 16×16 RGB images and 8×8 latents (VAE factor 2):

* ``"sd15"``: ``StableDiffusionPipeline`` with SD 1.5's PNDM scheduler config, a CLIP text encoder with
  quick-GELU and SD 1.x's tokenizer that pads with ``<|endoftext|>`` (SD 2.x pads with ``!``), a UNet without
  linear projections (SD 1.x's ``use_linear_projection=False``).
* ``"sdxl"``: ``StableDiffusionXLPipeline``: CLIP (hidden states) + CLIP-with-projection (hidden states and the
  pooled embedding), a ``text_time`` UNet (6 time ids of 8 channels + the 32-wide pooled embedding), the Euler
  scheduler of SDXL-base, ``force_zeros_for_empty_prompt``.
* ``"sd3"``: ``StableDiffusion3Pipeline``: two CLIPs with projection (32 and 16 wide: the 48 channels are
  zero-padded to T5's 64), T5 (:func:`infodecomp.tokenizer.tiny_t5_tokenizer`), an ``SD3Transformer2DModel`` with
  patch 2, a 16-channel VAE with SD3's scaling and shift, ``FlowMatchEulerDiscreteScheduler(shift=3)``.
* ``"flux"``: ``FluxPipeline``: CLIP (pooled only) + T5 (token states), a ``FluxTransformer2DModel`` with one
  double- and one single-stream block, rotary axes (4, 6, 6), optional guidance embedding (``guidance_embeds``:
  FLUX.1-dev-shaped), a 16-channel VAE with Flux's scaling and shift, dynamic shifting as FLUX.1-dev.

Also the analytic stand-ins of the networks (:class:`AnalyticUNet`, :class:`AnalyticSD3Transformer`,
:class:`AnalyticFluxTransformer`): modules with the call signatures of a UNet / SD3 / Flux transformer whose
outputs are an exact Gaussian denoiser's, expressed in the network's parameterisation (ε, v, or flow velocity at
1000·t or t, packed into 2×2 patches for Flux), so the adapters' conversions are checked against exact answers.

transformers and diffusers are imported inside the builders (the imports marked ``# heavy``), so importing this
module costs no more than importing :mod:`infodecomp.models`.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

import torch
from torch import Tensor, nn

from .logsnr import logsnr_from_alphas_cumprod
from .models import Model
from .models.families.flow import v_prediction_from_denoiser, velocity_from_denoiser
from .models.families.flux import pack_latents, unpack_latents
from .models.loading import model_class
from .testing import SD21_BETAS, _seeded
from .tokenizer import BUNDLED_DIR, tiny_t5_tokenizer, tiny_t5_vocab

__all__ = [
    "FAMILY_KINDS", "TINY_FAMILY_IMAGE_SIZE", "tiny_family_pipeline", "save_family_pipeline", "tiny_family_model",
    "clip_tokenizer", "AnalyticUNet", "AnalyticSD3Transformer", "AnalyticFluxTransformer", "world_tokens",
]

FAMILY_KINDS = ("sd15", "sdxl", "sd3", "flux")
#: Pixel size of every tiny family pipeline (latents 8×8).
TINY_FAMILY_IMAGE_SIZE = 16
#: T5's token rows in the tiny SD3 / Flux models (the real pipelines use 256 / 512).
TINY_T5_TOKENS = 16


def clip_tokenizer(pad_token: str = "!"):
    """The bundled CLIP BPE tokenizer with the given padding token: ``"!"`` (SD 2.x, SDXL's second tokenizer,
    SD3's second) or ``"<|endoftext|>"`` (SD 1.x, and every CLIP ViT-L tokenizer of SDXL / SD3 / Flux)."""
    from transformers import CLIPTokenizer  # heavy


    return CLIPTokenizer.from_pretrained(str(BUNDLED_DIR), pad_token=pad_token)


def _clip(seed: int, width: int, *, projection: bool = False, hidden_act: str = "quick_gelu"):
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection  # heavy

    cfg = CLIPTextConfig(vocab_size=49_408, hidden_size=width, intermediate_size=2 * width, num_hidden_layers=2,
                         num_attention_heads=4, max_position_embeddings=77, projection_dim=width,
                         hidden_act=hidden_act, bos_token_id=49_406, eos_token_id=49_407, pad_token_id=49_407)
    with _seeded(seed):
        return (CLIPTextModelWithProjection if projection else CLIPTextModel)(cfg).eval()


def _t5(seed: int, d_model: int = 64):
    from transformers import T5Config, T5EncoderModel  # heavy


    cfg = T5Config(vocab_size=len(tiny_t5_vocab()), d_model=d_model, d_kv=16, d_ff=2 * d_model, num_layers=2,
                   num_heads=4, relative_attention_num_buckets=8, relative_attention_max_distance=32,
                   dropout_rate=0.0, feed_forward_proj="gated-gelu", is_encoder_decoder=False, use_cache=False)
    with _seeded(seed):
        return T5EncoderModel(cfg).eval()


def _vae(seed: int, latent_channels: int = 4, *, scaling_factor: float = 0.18215, shift_factor: float | None = None,
         quant_conv: bool = True):
    from diffusers import AutoencoderKL  # heavy

    with _seeded(seed):
        return AutoencoderKL(in_channels=3, out_channels=3, down_block_types=("DownEncoderBlock2D",) * 2,
                             up_block_types=("UpDecoderBlock2D",) * 2, block_out_channels=(8, 16),
                             latent_channels=latent_channels, norm_num_groups=8, sample_size=TINY_FAMILY_IMAGE_SIZE,
                             scaling_factor=scaling_factor, shift_factor=shift_factor, use_quant_conv=quant_conv,
                             use_post_quant_conv=quant_conv).eval()


def _sd15(seed: int):
    from diffusers import PNDMScheduler, StableDiffusionPipeline, UNet2DConditionModel  # heavy

    with _seeded(seed + 2):
        unet = UNet2DConditionModel(sample_size=8, in_channels=4, out_channels=4, block_out_channels=(32, 64),
                                    layers_per_block=1, down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
                                    up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"), cross_attention_dim=32,
                                    attention_head_dim=2, use_linear_projection=False, norm_num_groups=8).eval()
    # SD 1.5's scheduler/scheduler_config.json
    scheduler = PNDMScheduler(**SD21_BETAS, set_alpha_to_one=False, skip_prk_steps=True, steps_offset=1,
                              prediction_type="epsilon")
    return StableDiffusionPipeline(vae=_vae(seed), text_encoder=_clip(seed + 1, 32),
                                   tokenizer=clip_tokenizer("<|endoftext|>"), unet=unet, scheduler=scheduler,
                                   safety_checker=None, feature_extractor=None, requires_safety_checker=False)


def _sdxl(seed: int, prediction_type: str = "epsilon"):
    from diffusers import EulerDiscreteScheduler, StableDiffusionXLPipeline, UNet2DConditionModel  # heavy

    with _seeded(seed + 2):
        unet = UNet2DConditionModel(
            sample_size=8, in_channels=4, out_channels=4, block_out_channels=(32, 64), layers_per_block=1,
            down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
            up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
            attention_head_dim=(2, 4), use_linear_projection=True, transformer_layers_per_block=(1, 2),
            cross_attention_dim=64, addition_embed_type="text_time", addition_time_embed_dim=8,
            projection_class_embeddings_input_dim=8 * 6 + 32, norm_num_groups=8).eval()
    scheduler = EulerDiscreteScheduler(**SD21_BETAS, steps_offset=1, timestep_spacing="leading",
                                       prediction_type=prediction_type, interpolation_type="linear")
    return StableDiffusionXLPipeline(
        vae=_vae(seed, scaling_factor=0.13025), text_encoder=_clip(seed + 1, 32), text_encoder_2=_clip(
            seed + 3, 32, projection=True, hidden_act="gelu"), tokenizer=clip_tokenizer("<|endoftext|>"),
        tokenizer_2=clip_tokenizer("!"), unet=unet, scheduler=scheduler, force_zeros_for_empty_prompt=True,
        add_watermarker=False)


def _sd3(seed: int):
    from diffusers import FlowMatchEulerDiscreteScheduler, SD3Transformer2DModel, StableDiffusion3Pipeline  # heavy


    with _seeded(seed + 2):
        transformer = SD3Transformer2DModel(
            sample_size=8, patch_size=2, in_channels=16, num_layers=2, attention_head_dim=8, num_attention_heads=4,
            joint_attention_dim=64, caption_projection_dim=32, pooled_projection_dim=48, out_channels=16,
            pos_embed_max_size=8).eval()
    return StableDiffusion3Pipeline(
        transformer=transformer, scheduler=FlowMatchEulerDiscreteScheduler(shift=3.0),
        vae=_vae(seed, 16, scaling_factor=1.5305, shift_factor=0.0609, quant_conv=False),
        text_encoder=_clip(seed + 1, 32, projection=True), tokenizer=clip_tokenizer("<|endoftext|>"),
        text_encoder_2=_clip(seed + 3, 16, projection=True, hidden_act="gelu"), tokenizer_2=clip_tokenizer("!"),
        text_encoder_3=_t5(seed + 4), tokenizer_3=tiny_t5_tokenizer())


def _flux(seed: int, guidance_embeds: bool = False):
    from diffusers import FluxPipeline, FluxTransformer2DModel, FlowMatchEulerDiscreteScheduler  # heavy


    with _seeded(seed + 2):
        transformer = FluxTransformer2DModel(
            patch_size=1, in_channels=64, num_layers=1, num_single_layers=1, attention_head_dim=16,
            num_attention_heads=2, joint_attention_dim=64, pooled_projection_dim=32, guidance_embeds=guidance_embeds,
            axes_dims_rope=(4, 6, 6)).eval()
    scheduler = FlowMatchEulerDiscreteScheduler(shift=3.0, use_dynamic_shifting=True, base_shift=0.5, max_shift=1.15,
                                                base_image_seq_len=256, max_image_seq_len=4096)
    return FluxPipeline(scheduler=scheduler, vae=_vae(seed, 16, scaling_factor=0.3611, shift_factor=0.1159,
                                                      quant_conv=False),
                        text_encoder=_clip(seed + 1, 32), tokenizer=clip_tokenizer("<|endoftext|>"),
                        text_encoder_2=_t5(seed + 4), tokenizer_2=tiny_t5_tokenizer(), transformer=transformer)


def tiny_family_pipeline(kind: str, *, seed: int = 0, **kwargs):
    """A tiny random pipeline of ``kind`` (:data:`FAMILY_KINDS`), fp32, CPU, progress bars off. ``kwargs``:
    ``prediction_type`` (sdxl), ``guidance_embeds`` (flux: a guidance embedding, as FLUX.1-dev)."""
    builders = {"sd15": _sd15, "sdxl": _sdxl, "sd3": _sd3, "flux": _flux}
    if kind not in builders:
        raise ValueError(f"kind must be one of {FAMILY_KINDS}, got {kind!r}")
    pipe = builders[kind](seed, **kwargs)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def save_family_pipeline(kind: str, directory: str | Path | None = None, **kwargs) -> Path:
    """:func:`tiny_family_pipeline` written with ``save_pretrained`` (safetensors) to ``directory`` (a new
    temporary directory if ``None``), with an ``infodecomp.json`` giving Flux its 16 px ``image_size`` (the
    pipeline's default would be 128 × the VAE factor). Returns the directory."""
    out = Path(tempfile.mkdtemp(prefix=f"tiny-{kind}-")) if directory is None else Path(directory)
    tiny_family_pipeline(kind, **kwargs).save_pretrained(str(out), safe_serialization=True)
    if kind == "flux":
        (out / "infodecomp.json").write_text(json.dumps({"image_size": [TINY_FAMILY_IMAGE_SIZE] * 2}))
    return out


def tiny_family_model(kind: str, *, seed: int = 0, name: str | None = None, pipeline=None, **kwargs):
    """The family's :class:`~infodecomp.models.Model` around :func:`tiny_family_pipeline` (or ``pipeline``):
    ``kwargs`` go to the pipeline builder (``prediction_type``, ``guidance_embeds``) or the Model (e.g.
    ``allow_distilled``, ``guidance``, ``max_sequence_length``). T5 sees :data:`TINY_T5_TOKENS` tokens."""
    build = {k: kwargs.pop(k) for k in ("prediction_type", "guidance_embeds") if k in kwargs}
    pipe = pipeline if pipeline is not None else tiny_family_pipeline(kind, seed=seed, **build)
    name = name or f"tiny-{kind}"
    if kind == "sd15":
        return Model(pipe, name=name, **kwargs)
    cls = model_class(kind)
    if kind in ("sd3", "flux"):
        kwargs.setdefault("max_sequence_length", TINY_T5_TOKENS)
    if kind == "flux":
        kwargs.setdefault("image_size", (TINY_FAMILY_IMAGE_SIZE, TINY_FAMILY_IMAGE_SIZE))
    return cls(pipe, name=name, **kwargs)


# ----------------------------------------------------------------------------------------------------------
# Exact denoisers in each network's clothes


def world_tokens(cond: Tensor, width: int) -> Tensor:
    """An analytic world's condition ``[N, *S]`` flattened into token rows ``[N, ceil(prod S / width), width]``
    (zero-padded), so it can travel as a family's token states; :func:`_world_cond` undoes it."""
    flat = cond.reshape(cond.shape[0], -1)
    pad = (-flat.shape[1]) % width
    return torch.cat([flat, flat.new_zeros(flat.shape[0], pad)], 1).view(flat.shape[0], -1, width)


def _world_cond(tokens: Tensor, shape: tuple[int, ...]) -> Tensor:
    n = 1
    for s in shape:
        n *= s
    return tokens.reshape(tokens.shape[0], -1)[:, :n].reshape(tokens.shape[0], *shape)


class _Config(dict):
    __getattr__ = dict.get


class AnalyticUNet(nn.Module):
    """A UNet-shaped module (``unet(sample, timestep, encoder_hidden_states=…, return_dict=False)``) whose output is
    an exact VP ``denoiser``'s ε̂ (``prediction_type="epsilon"``) or v = (ε̂ − σz)/α (``"v_prediction"``) at the
    log-SNR of the (fractional) timestep on the schedule ``alphas_cumprod`` (linear in log-SNR between integer
    timesteps, the inverse of :func:`infodecomp.logsnr.interpolated_timestep`). ``encoder_hidden_states`` are
    :func:`world_tokens` of the world's condition of shape ``cond_shape``."""

    def __init__(self, denoiser, alphas_cumprod: Tensor, cond_shape: tuple[int, ...], prediction_type: str = "epsilon"):
        super().__init__()
        self.denoiser, self.cond_shape, self.prediction_type = denoiser, tuple(cond_shape), prediction_type
        self.register_buffer("trained", logsnr_from_alphas_cumprod(torch.as_tensor(alphas_cumprod)))
        self.anchor = nn.Parameter(torch.zeros((), dtype=torch.float64))  # device and dtype for the adapter

    def logsnr_of(self, timestep: Tensor) -> Tensor:
        t = torch.as_tensor(timestep, dtype=torch.float64)
        lo = t.floor().clamp(0, self.trained.numel() - 1).long()
        hi = (lo + 1).clamp(max=self.trained.numel() - 1)
        frac = t - lo.to(torch.float64)
        return self.trained[lo] * (1 - frac) + self.trained[hi] * frac

    def forward(self, sample, timestep, encoder_hidden_states, return_dict=False, **kwargs):
        lam = self.logsnr_of(timestep.expand(sample.shape[0]) if timestep.ndim == 0 else timestep)
        cond = _world_cond(encoder_hidden_states, self.cond_shape)
        model = self.denoiser if self.prediction_type == "epsilon" else v_prediction_from_denoiser(self.denoiser)
        return (model(sample.to(torch.float64), lam, cond),)


class AnalyticSD3Transformer(nn.Module):
    """An ``SD3Transformer2DModel``-shaped module: ``(hidden_states [B, C, h, w], timestep = 1000·t,
    encoder_hidden_states, pooled_projections)`` → the exact flow velocity ``(ε̂ − z_t)/(1 − t)`` of a VP
    ``denoiser`` (the world's condition read back from :func:`world_tokens` rows)."""

    def __init__(self, denoiser, cond_shape: tuple[int, ...], *, joint_attention_dim: int, pooled_projection_dim: int):
        super().__init__()
        self.denoiser, self.cond_shape = denoiser, tuple(cond_shape)
        self.config = _Config(patch_size=1, joint_attention_dim=joint_attention_dim,
                              pooled_projection_dim=pooled_projection_dim)
        self.anchor = nn.Parameter(torch.zeros((), dtype=torch.float64))

    def forward(self, hidden_states, timestep, encoder_hidden_states, pooled_projections, return_dict=False):
        t = timestep.to(torch.float64) / 1000.0
        v = velocity_from_denoiser(self.denoiser)(hidden_states.to(torch.float64), t,
                                                  _world_cond(encoder_hidden_states, self.cond_shape))
        return (v,)


class AnalyticFluxTransformer(nn.Module):
    """A ``FluxTransformer2DModel``-shaped module: packed ``hidden_states [B, N, 4C]`` with ``img_ids``,
    ``timestep`` = t, optional ``guidance`` → the exact packed flow velocity of a VP ``denoiser``. Unpacks and
    packs with ``unpack`` / ``pack`` (give diffusers' own ``FluxPipeline._unpack_latents`` / ``_pack_latents``
    to check the adapter's packing independently); the latent size comes from ``img_ids``."""

    def __init__(self, denoiser, cond_shape: tuple[int, ...], *, joint_attention_dim: int, pooled_projection_dim: int,
                 guidance_embeds: bool = False, pack=None, unpack=None):
        super().__init__()
        self.denoiser, self.cond_shape = denoiser, tuple(cond_shape)
        self.config = _Config(joint_attention_dim=joint_attention_dim, pooled_projection_dim=pooled_projection_dim,
                              guidance_embeds=guidance_embeds)
        self.pack = pack or pack_latents
        self.unpack = unpack or unpack_latents
        self.seen_guidance: list[Tensor | None] = []
        self.anchor = nn.Parameter(torch.zeros((), dtype=torch.float64))

    def forward(self, hidden_states, timestep, encoder_hidden_states, pooled_projections, txt_ids, img_ids,
                guidance=None, return_dict=False):
        self.seen_guidance.append(guidance)
        h, w = 2 * (int(img_ids[:, 1].max()) + 1), 2 * (int(img_ids[:, 2].max()) + 1)
        z_t = self.unpack(hidden_states.to(torch.float64), h, w)
        v = velocity_from_denoiser(self.denoiser)(z_t, timestep.to(torch.float64),
                                                  _world_cond(encoder_hidden_states, self.cond_shape))
        return (self.pack(v),)
