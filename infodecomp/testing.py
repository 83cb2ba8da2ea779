"""Tiny Stable Diffusion pipelines built from config, for tests and benchmarks (never downloads anything).

Everything is built with a fixed seed inside ``torch.random.fork_rng``, so the global RNG is left untouched
and the same seed gives the same weights.

* :func:`tiny_pipeline` — a complete ``StableDiffusionPipeline`` of ~1.7 M parameters (most of them the CLIP
  token embedding) that runs in milliseconds on a CPU: 16×16 RGB images, 8×8×4 latents (VAE factor 2),
  a UNet with cross-attention at 8×8 and 4×4 plus the mid-block, a 2-layer CLIP text encoder of width 32, the
  bundled CLIP tokenizer, and SD 2.1-base's noise schedule (scaled-linear betas 0.00085 → 0.012, 1000 steps)
  with ε- or v-prediction.
* :func:`save_tiny_pipeline` — the same, written with ``save_pretrained`` to a directory (for ``load_model``).
* :data:`SD21_BASE_UNET_CONFIG` / :func:`sd21_unet` — the public SD 2.1-base UNet architecture (865 M
  parameters) with random weights, for benchmarks and for testing attention recording on SD's real layer
  layout (15 cross-attention layers in the down/up blocks, 5/10/20 heads, plus the mid-block).
* :func:`sd21_shaped_pipeline` / :func:`save_sd21_shaped_pipeline` — a complete random-weight pipeline with SD
  2.1's *shapes* (block structure, 512 px → 64×64 latents or 768 px → 96×96, [77, 1024] conditioning, ε- or
  v-prediction) but narrow channels, so every notebook can run on it on a CPU (``make dry-run``).
"""

from __future__ import annotations

import copy
import socket
import tempfile
from pathlib import Path

import torch

from .tokenizer import load_clip_tokenizer

__all__ = [
    "RecordingDenoiser",
    "free_port",
    "TINY_IMAGE_SIZE",
    "SD21_BETAS",
    "SD21_BASE_UNET_CONFIG",
    "SD21_UNET_CONFIG",
    "tiny_unet",
    "tiny_vae",
    "tiny_text_encoder",
    "sd_scheduler",
    "tiny_pipeline",
    "save_tiny_pipeline",
    "sd21_unet",
    "SD21_SHAPED_WIDTH_DIVISOR",
    "sd21_shaped_vae",
    "sd21_shaped_text_encoder",
    "sd21_shaped_pipeline",
    "save_sd21_shaped_pipeline",
]

#: Pixel size of :func:`tiny_pipeline`'s images (latents are 8×8).
TINY_IMAGE_SIZE = 16

#: SD 2.1's training schedule (both 2.1-base and 2.1 768): 1000 scaled-linear betas.
SD21_BETAS = dict(num_train_timesteps=1000, beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear")

#: The UNet of Stable Diffusion 2.1-base, written from its public architecture (the values of its
#: ``unet/config.json``). Note diffusers' legacy naming: ``attention_head_dim`` here is the number of heads
#: per block (5, 10, 20, 20: 64 channels per head).
SD21_BASE_UNET_CONFIG: dict = {
    "sample_size": 64,
    "in_channels": 4,
    "out_channels": 4,
    "center_input_sample": False,
    "flip_sin_to_cos": True,
    "freq_shift": 0,
    "down_block_types": ("CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"),
    "up_block_types": ("UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"),
    "only_cross_attention": False,
    "block_out_channels": (320, 640, 1280, 1280),
    "layers_per_block": 2,
    "downsample_padding": 1,
    "mid_block_scale_factor": 1,
    "act_fn": "silu",
    "norm_num_groups": 32,
    "norm_eps": 1e-5,
    "cross_attention_dim": 1024,
    "attention_head_dim": (5, 10, 20, 20),
    "dual_cross_attention": False,
    "use_linear_projection": True,
    "upcast_attention": False,
}

#: SD 2.1 (768 px, v-prediction): the same UNet at 96×96 latents, with attention upcast to fp32.
SD21_UNET_CONFIG: dict = {**SD21_BASE_UNET_CONFIG, "sample_size": 96, "upcast_attention": True}


class _seeded:
    """Context: fork the CPU RNG, seed it, and restore it on exit (library code never seeds globally)."""

    def __init__(self, seed: int):
        self.seed = seed
        self._fork = torch.random.fork_rng(devices=[])

    def __enter__(self):
        self._fork.__enter__()
        torch.manual_seed(self.seed)

    def __exit__(self, *exc):
        return self._fork.__exit__(*exc)


def tiny_unet(*, seed: int = 0, cross_attention_dim: int = 32, sample_size: int = 8):
    """A ``UNet2DConditionModel`` with channels (32, 64), 1 layer per block, cross-attention in both down
    blocks, both up blocks and the mid-block (2, 4 and 4 heads), linear projections as SD 2.x."""
    from diffusers import UNet2DConditionModel  # heavy: only when one is built

    with _seeded(seed):
        return UNet2DConditionModel(
            sample_size=sample_size,
            in_channels=4,
            out_channels=4,
            block_out_channels=(32, 64),
            layers_per_block=1,
            down_block_types=("CrossAttnDownBlock2D", "CrossAttnDownBlock2D"),
            up_block_types=("CrossAttnUpBlock2D", "CrossAttnUpBlock2D"),
            cross_attention_dim=cross_attention_dim,
            attention_head_dim=(2, 4),
            use_linear_projection=True,
            norm_num_groups=8,
        ).eval()


def tiny_vae(*, seed: int = 0):
    """An ``AutoencoderKL`` with channels (8, 16): 4 latent channels, downsampling factor 2."""
    from diffusers import AutoencoderKL  # heavy: only when one is built

    with _seeded(seed):
        return AutoencoderKL(
            in_channels=3,
            out_channels=3,
            down_block_types=("DownEncoderBlock2D",) * 2,
            up_block_types=("UpDecoderBlock2D",) * 2,
            block_out_channels=(8, 16),
            latent_channels=4,
            norm_num_groups=8,
            sample_size=TINY_IMAGE_SIZE,
        ).eval()


def tiny_text_encoder(*, seed: int = 0, hidden_size: int = 32):
    """A 2-layer ``CLIPTextModel`` of width ``hidden_size`` over CLIP's 49,408-token vocabulary, 77 positions."""
    from transformers import CLIPTextConfig, CLIPTextModel  # heavy: only when one is built

    config = CLIPTextConfig(
        vocab_size=49_408,
        hidden_size=hidden_size,
        intermediate_size=2 * hidden_size,
        num_hidden_layers=2,
        num_attention_heads=4,
        max_position_embeddings=77,
        projection_dim=hidden_size,
        bos_token_id=49_406,
        eos_token_id=49_407,
        pad_token_id=0,
    )
    with _seeded(seed):
        return CLIPTextModel(config).eval()


def sd_scheduler(prediction_type: str = "epsilon", kind: str = "ddim"):
    """A DDIM (or DDPM) scheduler with SD 2.1's schedule and the given ``prediction_type``
    (``"epsilon"`` or ``"v_prediction"``); trained log-SNR from +7.069 (t = 0) to −5.364 (t = 999)."""
    from diffusers import DDIMScheduler, DDPMScheduler  # heavy: only when one is built

    if kind == "ddim":
        return DDIMScheduler(**SD21_BETAS, prediction_type=prediction_type, clip_sample=False,
                             set_alpha_to_one=False, steps_offset=1)
    if kind == "ddpm":
        return DDPMScheduler(**SD21_BETAS, prediction_type=prediction_type, clip_sample=False)
    raise ValueError(f"kind must be 'ddim' or 'ddpm', got {kind!r}")


def tiny_pipeline(*, prediction_type: str = "epsilon", seed: int = 0, scheduler: str = "ddim"):
    """A complete tiny ``StableDiffusionPipeline`` (fp32, CPU) — see the module docstring."""
    return _assemble(tiny_vae(seed=seed), tiny_text_encoder(seed=seed + 1), tiny_unet(seed=seed + 2),
                     sd_scheduler(prediction_type, scheduler))


def _assemble(vae, text_encoder, unet, scheduler):
    """A ``StableDiffusionPipeline`` of these parts with the bundled CLIP tokenizer, no safety checker, no bar."""
    from diffusers import StableDiffusionPipeline  # heavy: only when one is built

    pipe = StableDiffusionPipeline(vae=vae, text_encoder=text_encoder, tokenizer=load_clip_tokenizer(), unet=unet,
                                   scheduler=scheduler, safety_checker=None, feature_extractor=None,
                                   requires_safety_checker=False)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def _save(pipe, directory: str | Path | None, prefix: str) -> Path:
    """``save_pretrained`` (safetensors) into ``directory``, or a new temporary one the caller owns."""
    out = Path(tempfile.mkdtemp(prefix=prefix)) if directory is None else Path(directory)
    pipe.save_pretrained(str(out), safe_serialization=True)
    return out


def save_tiny_pipeline(directory: str | Path | None = None, **kwargs) -> Path:
    """Build :func:`tiny_pipeline` (``**kwargs``) and ``save_pretrained`` it (safetensors) to ``directory``
    (a new temporary directory if ``None``, which the caller owns). Returns the directory."""
    return _save(tiny_pipeline(**kwargs), directory, "tiny-sd-")


def sd21_unet(*, config: dict | None = None, sample_size: int | None = None, width_divisor: int = 1,
              seed: int = 0, dtype: torch.dtype = torch.float32, device=None):
    """A random-weight UNet of SD 2.1-base's architecture (865 M parameters, 3.5 GB in fp32).

    Built on the meta device and filled quickly (default init would take ~15 s on one CPU core): weights
    ``W`` get N(0, 1/fan_in) values tiled from a seeded pool of 2²⁰+7 normals, biases 0, normalisation scales 1.
    Outputs are well-scaled numbers, not images: use it for speed and layout, never for quality.

    Args:
        config: a UNet config dict (default :data:`SD21_BASE_UNET_CONFIG`).
        sample_size: override the config's latent size (64) to run smaller latents.
        width_divisor: divide every block's channel count by this (and use 8 normalisation groups when it
            is > 1). The layout is unchanged — block types, layers, the 15 + 1 cross-attention layers, heads
            per block (5/10/20), cross-attention width 1024, linear projections — only each head gets narrower
            (64 / width_divisor channels). ``width_divisor=8`` is 15 M parameters: SD's layout in a CPU test.
    """
    from diffusers import UNet2DConditionModel  # heavy: only when one is built

    cfg = copy.deepcopy(SD21_BASE_UNET_CONFIG if config is None else config)
    if sample_size is not None:
        cfg["sample_size"] = sample_size
    if width_divisor != 1:
        if any(c % (width_divisor * 8) for c in cfg["block_out_channels"]):
            raise ValueError(f"width_divisor={width_divisor} must leave channel counts divisible by 8 groups: "
                             f"{cfg['block_out_channels']}")
        cfg["block_out_channels"] = tuple(c // width_divisor for c in cfg["block_out_channels"])
        cfg["norm_num_groups"] = 8
    with torch.device("meta"):
        unet = UNet2DConditionModel(**cfg)
    unet = unet.to_empty(device=torch.device("cpu") if device is None else device)
    gen = torch.Generator().manual_seed(seed)
    pool = torch.randn(2**20 + 7, generator=gen)
    offsets = torch.randint(0, pool.numel(), (len(list(unet.parameters())),), generator=gen).tolist()
    with torch.no_grad():
        for off, (name, p) in zip(offsets, unet.named_parameters()):
            if p.ndim == 1:
                p.fill_(0.0 if name.endswith("bias") else 1.0)
                continue
            n = p.numel()
            reps = (off + n) // pool.numel() + 1
            vals = pool.repeat(reps)[off:off + n] * (p[0].numel() ** -0.5)
            p.copy_(vals.view_as(p).to(p.device))
    return (unet if dtype == torch.float32 else unet.to(dtype=dtype)).eval()


class RecordingDenoiser:
    """Wraps a denoiser and records every call as ``(z, logsnr, cond)`` clones, for tests that check which
    evaluations an estimator makes (shared noise, the null prompt once per draw, chunking)."""

    def __init__(self, inner):
        self.inner, self.calls = inner, []

    def __call__(self, z, logsnr, cond):
        self.calls.append((z.clone(), logsnr.clone(), cond.clone()))
        return self.inner(z, logsnr, cond)


def free_port() -> int:
    """A TCP port on 127.0.0.1 that is free now (for test servers and ``accelerate launch --main_process_port``)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# ----------------------------------------------------------------------------------------------------------
# SD 2.1-shaped pipelines: SD 2.1's shapes, narrow channels (make dry-run)

#: Default ``width_divisor`` of :func:`sd21_shaped_pipeline`'s UNet: channels (40, 80, 160, 160), 8 channels
#: per head. 8 is the largest divisor that keeps SD's 5/10/20 heads and 8 normalisation groups integral.
SD21_SHAPED_WIDTH_DIVISOR = 8

#: The resolution and UNet config of each prediction type's SD 2.1 model.
_SD21_SHAPED = {"epsilon": (512, SD21_BASE_UNET_CONFIG), "v_prediction": (768, SD21_UNET_CONFIG)}


def sd21_shaped_vae(*, seed: int = 0, sample_size: int = 512, block_out_channels=(8, 16, 32, 32)):
    """An ``AutoencoderKL`` with SD's layout (4 down/up blocks, 2 ResNets per block, 4 latent channels,
    8× down-sampling, scaling factor 0.18215) but narrow channels (default 8/16/32/32 instead of 128/256/512/512)."""
    from diffusers import AutoencoderKL  # heavy: only when one is built

    if len(block_out_channels) != 4:
        raise ValueError(f"SD's VAE has 4 blocks (8× down-sampling); got block_out_channels={block_out_channels}")
    with _seeded(seed):
        return AutoencoderKL(
            in_channels=3,
            out_channels=3,
            down_block_types=("DownEncoderBlock2D",) * 4,
            up_block_types=("UpDecoderBlock2D",) * 4,
            block_out_channels=tuple(block_out_channels),
            layers_per_block=2,
            latent_channels=4,
            norm_num_groups=8,
            sample_size=sample_size,
            scaling_factor=0.18215,
        ).eval()


def sd21_shaped_text_encoder(*, seed: int = 0, num_hidden_layers: int = 2, intermediate_size: int = 1024):
    """A ``CLIPTextModel`` with SD 2.x's output shape — width 1024, 16 heads (64 channels each), 77 positions,
    GELU, over CLIP's 49,408-token vocabulary — but only ``num_hidden_layers`` layers (OpenCLIP ViT-H: 23 as
    diffusers ships it) and a narrow MLP. Conditioning is ``[N, 77, 1024]``."""
    from transformers import CLIPTextConfig, CLIPTextModel  # heavy: only when one is built

    config = CLIPTextConfig(
        vocab_size=49_408,
        hidden_size=1024,
        intermediate_size=intermediate_size,
        num_hidden_layers=num_hidden_layers,
        num_attention_heads=16,
        max_position_embeddings=77,
        hidden_act="gelu",
        projection_dim=512,
        bos_token_id=49_406,
        eos_token_id=49_407,
        pad_token_id=0,
    )
    with _seeded(seed):
        return CLIPTextModel(config).eval()


def sd21_shaped_pipeline(*, prediction_type: str = "epsilon", resolution: int | None = None, seed: int = 0,
                         width_divisor: int = SD21_SHAPED_WIDTH_DIVISOR, scheduler: str = "ddim"):
    """A complete random-weight ``StableDiffusionPipeline`` (fp32, CPU) with SD 2.1's shapes, narrow enough for a CPU.

    * UNet: :func:`sd21_unet` with SD 2.1-base's config (``prediction_type="epsilon"``) or SD 2.1's
      (``"v_prediction"``: the same layout with attention upcast), channels divided by ``width_divisor``: the
      block types, 2 layers per block, the 15 + 1 cross-attention layers, 5/10/20 heads, linear projections and
      cross-attention width 1024 are SD's. ``sample_size`` = ``resolution // 8``.
    * VAE: :func:`sd21_shaped_vae` (8× down-sampling): 512 px → 64×64×4 latents, 768 px → 96×96×4.
    * Text encoder: :func:`sd21_shaped_text_encoder` (width 1024, 77 tokens) over the bundled CLIP tokenizer
      (:func:`infodecomp.tokenizer.load_clip_tokenizer`), so ``encode_prompts`` gives ``[N, 77, 1024]``.
    * Scheduler: SD 2.1's (:func:`sd_scheduler`) with ``prediction_type``.

    ``resolution`` defaults to SD 2.1's for the prediction type (512 for ε, 768 for v); any multiple of 64 works.
    Weights are random: outputs are well-scaled numbers, never images. Use it for shapes, code paths and speed.

    Measured on one core of this project's CPU machine (``OMP_NUM_THREADS=1``, float32, torch 2.13, the machine's
    other core busy with another job; default ``width_divisor=8``: UNet 16.4 M parameters, VAE 0.33 M, text encoder
    63.3 M of which 50.6 M the token embedding): one UNet forward at 64×64 takes ≈ 1.2 s for one latent and ≈ 10 s
    for a batch of 8, at 96×96 ≈ 42 s for a batch of 8; encoding one 512-px image ≈ 0.17 s, decoding ≈ 0.37 s;
    building the ε pipeline 1.3–6 s. That is not "well under a second": 82 % of a UNet call is SD's self-attention
    over the 4,096 (9,216) latent positions with 5 heads per layer, whose softmax cost does not shrink with the
    channel width; only fewer heads or positions would make it cheaper, and both are what this pipeline must keep.
    """
    if prediction_type not in _SD21_SHAPED:
        raise ValueError(f"prediction_type must be one of {sorted(_SD21_SHAPED)} (SD 2.1-base: 'epsilon', "
                         f"SD 2.1 768: 'v_prediction'), got {prediction_type!r}")
    default_res, config = _SD21_SHAPED[prediction_type]
    resolution = default_res if resolution is None else resolution
    if not isinstance(resolution, int) or isinstance(resolution, bool) or resolution <= 0 or resolution % 64:
        raise ValueError(f"resolution must be a positive multiple of 64 pixels (8× VAE, 3 UNet down-samplings), "
                         f"got {resolution!r}")
    return _assemble(sd21_shaped_vae(seed=seed, sample_size=resolution), sd21_shaped_text_encoder(seed=seed + 1),
                     sd21_unet(config=config, sample_size=resolution // 8, width_divisor=width_divisor, seed=seed + 2),
                     sd_scheduler(prediction_type, scheduler))


def save_sd21_shaped_pipeline(directory: str | Path | None = None, **kwargs) -> Path:
    """Build :func:`sd21_shaped_pipeline` (``**kwargs``) and ``save_pretrained`` it (safetensors) to ``directory``
    (a new temporary directory if ``None``, which the caller owns), loadable with
    :func:`infodecomp.models.load_model`. Returns the directory."""
    return _save(sd21_shaped_pipeline(**kwargs), directory, "sd21-shaped-")
