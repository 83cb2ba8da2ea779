"""The base of the models layer: a Stable-Diffusion-family pipeline as a denoiser (:class:`Model`,
:class:`UNetDenoiser`).

The models layer (this subpackage) is where the package knows about timesteps, ε-, v- and flow
parameterisations, VAEs and prompt embeddings. The rest of the package sees the denoiser interface of
docs/architecture.md#denoiser-interface::

    eps_hat = model.denoiser(z, logsnr, cond)   # z [B, C, h, w], logsnr [B], cond [B, L, D] -> [B, C, h, w]

with the variance-preserving channel ``z = sqrt(sigmoid(logsnr)) * x + sqrt(sigmoid(-logsnr)) * eps``
(log-SNR in nats: ``logsnr = log(alpha² / sigma²)``, large is little noise).

Typical use (:func:`infodecomp.models.load_model` builds the Model)::

    model = load_model("shapes-tiny")                       # or "sd21-base", a hub id, a local directory
    x = model.encode_images(images)                          # [B, 4, h, w] float32 latents (× VAE scaling)
    cond = model.encode_prompts(["a red circle", ""])        # [2, 77, D]
    eps_hat = model.denoiser(z, logsnr, cond)

The model families beyond SD 1.x / 2.x (:mod:`infodecomp.models.families`) subclass :class:`Model` and import
only this module.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch import Tensor

from ..checks import batch_size as check_batch_size
from ..checks import count, finite_tensor, image_size, nonempty
from ..checks import generator as check_generator
from ..logsnr import interpolated_timestep, logsnr_from_alphas_cumprod, nearest_timestep, trained_range
from ..precision import as_dtype, dtype_name
from ..text import check_prompt_length, token_positions, word_token_mask

__all__ = ["CROSS_ATTENTION_TOKENS", "Model", "UNetDenoiser", "check_device", "model_version"]

#: ``Model.cross_attention_tokens`` values.
CROSS_ATTENTION_TOKENS = ("all", "words")


# ----------------------------------------------------------------------------------------------------------
# The denoiser


def check_device(z: Tensor, cond: Tensor, device: torch.device, network: str) -> None:
    """Raise ``ValueError`` unless the noisy latents ``z`` and the conditioning ``cond`` are on ``device``, the
    device of the ``network`` (``"UNet"``, ``"transformer"``) that a denoiser is about to call."""
    if z.device != device or cond.device != device:
        raise ValueError(f"z is on {z.device} and cond on {cond.device}, the {network} on {device}: move the inputs "
                         "(or the model, with model.to(device)) so they match")



class UNetDenoiser:
    """A diffusers UNet as a denoiser ``eps_hat = denoiser(z, logsnr, cond)`` (docs/architecture.md#denoiser-interface).

    Args:
        unet: a ``UNet2DConditionModel`` (or any module called as ``unet(z, t, encoder_hidden_states=cond,
            return_dict=False)[0]``).
        alphas_cumprod: ``[T]`` the scheduler's ``alphas_cumprod``; defines the trained log-SNR per timestep.
        prediction_type: the scheduler's ``prediction_type``: ``"epsilon"``, ``"v_prediction"`` or ``"sample"``.
        timestep: ``"nearest"`` (the reference: the integer timestep whose trained log-SNR is nearest,
            clamped to the ends of the schedule, docs/protocol.md#timesteps) or ``"interpolated"`` (a fractional
            timestep, linear in log-SNR, so the UNet's time embedding sees the applied noise level inside the
            trained range).
        v_logsnr: for v- and x-prediction, which log-SNR converts the output to ε̂: ``"timestep"`` (default)
            uses the log-SNR of the timestep the UNet was given, i.e. ε̂ = σ_t·z + α_t·v̂ exactly as diffusers'
            schedulers convert at timestep t, so ε̂ is the model's own noise estimate whatever its
            parameterisation; ``"applied"`` uses the log-SNR the noise was actually added at. The two agree for
            ``timestep="interpolated"`` inside the trained range and for log-SNRs exactly on the grid.
        max_batch: evaluate the UNet in chunks of at most this many rows (memory bound); ``None`` = one call.
        hide_zero_tokens: for a model that reads only its words (``Model.cross_attention_tokens == "words"``):
            token rows of ``cond`` that are exactly zero (how :meth:`Model.encode_prompts` marks the end token
            and the padding) are hidden from cross-attention with the UNet's ``encoder_attention_mask``, as in
            training. ``False`` (SD 2.1 and every model trained without the mask): every token is attended to.

    Call: ``z [B, C, h, w]`` noisy latents (any float dtype), ``logsnr [B]`` or a scalar, ``cond [B, L, D]``
    (or ``[1, L, D]``, broadcast) prompt embeddings → ``eps_hat [B, C, h, w]`` in ``z``'s dtype. The UNet runs
    in its own dtype (fp16/bf16 allowed; inputs are cast to it); the ε conversion is done in float32.
    ``z`` and ``cond`` must be on the UNet's device. Runs under ``torch.no_grad()``.
    """

    def __init__(self, unet, alphas_cumprod: Tensor, prediction_type: str = "epsilon", *,
                 timestep: str = "nearest", v_logsnr: str = "timestep", max_batch: int | None = None,
                 hide_zero_tokens: bool = False):
        if prediction_type not in ("epsilon", "v_prediction", "sample"):
            raise ValueError(
                f"prediction_type {prediction_type!r} is not supported; expected 'epsilon', 'v_prediction' or 'sample'"
            )
        if timestep not in ("nearest", "interpolated"):
            raise ValueError(f"timestep must be 'nearest' or 'interpolated', got {timestep!r}")
        if v_logsnr not in ("timestep", "applied"):
            raise ValueError(f"v_logsnr must be 'timestep' or 'applied', got {v_logsnr!r}")
        if max_batch is not None:
            max_batch = count(max_batch, "max_batch", hint="rows per UNet call, or None for one call")
        self.unet = unet
        self.prediction_type = prediction_type
        self.timestep = timestep
        self.v_logsnr = v_logsnr
        self.max_batch = max_batch
        self.hide_zero_tokens = bool(hide_zero_tokens)
        self.trained_logsnr = logsnr_from_alphas_cumprod(torch.as_tensor(alphas_cumprod))  # [T] float64, decreasing
        self._cache: dict[torch.device, Tensor] = {}

    def __repr__(self) -> str:
        lo, hi = float(self.trained_logsnr.min()), float(self.trained_logsnr.max())
        return (f"UNetDenoiser(prediction_type={self.prediction_type!r}, timestep={self.timestep!r}, "
                f"v_logsnr={self.v_logsnr!r}, hide_zero_tokens={self.hide_zero_tokens}, "
                f"trained logsnr [{lo:.3f}, {hi:.3f}])")

    @property
    def logsnr_range(self) -> tuple[float, float]:
        """``(logsnr_min, logsnr_max)`` of the trained schedule (nats)."""
        return float(self.trained_logsnr.min()), float(self.trained_logsnr.max())

    def _trained(self, device: torch.device) -> Tensor:
        if device not in self._cache:
            dtype = torch.float32 if device.type == "mps" else torch.float64
            self._cache[device] = self.trained_logsnr.to(device=device, dtype=dtype)
        return self._cache[device]

    def timesteps(self, logsnr: Tensor) -> Tensor:
        """The timestep ``[B]`` passed to the UNet for ``logsnr [B]``: int64 (nearest) or float32 (interpolated)."""
        lam = self._trained(logsnr.device)
        if self.timestep == "nearest":
            return nearest_timestep(logsnr, lam)
        return interpolated_timestep(logsnr, lam)

    def timestep_logsnr(self, logsnr: Tensor) -> Tensor:
        """The log-SNR ``[B]`` (float32) of the timestep the UNet sees for ``logsnr [B]``."""
        lam = self._trained(logsnr.device)
        if self.timestep == "nearest":
            return lam[nearest_timestep(logsnr, lam)].to(torch.float32)
        lo, hi = self.logsnr_range
        return logsnr.to(torch.float32).clamp(lo, hi)

    def _config(self, key: str):
        value = getattr(getattr(self.unet, "config", None), key, None)
        return value if isinstance(value, int) and not isinstance(value, bool) else None

    def __call__(self, z: Tensor, logsnr: Tensor | float, cond: Tensor) -> Tensor:
        channels, width = self._config("in_channels"), self._config("cross_attention_dim")
        want_z = f"[B, {channels if channels else 'C'}, h, w]"
        want_c = f"[B, L, {width if width else 'D'}]"
        if not isinstance(z, Tensor) or z.ndim != 4 or not z.is_floating_point():
            raise ValueError(f"z must be a float tensor {want_z} of noisy latents, got {type(z).__name__} "
                             f"{tuple(z.shape) if isinstance(z, Tensor) else ''}"
                             f"{' ' + str(z.dtype) if isinstance(z, Tensor) else ''}")
        if channels is not None and z.shape[1] != channels:
            raise ValueError(f"z has {z.shape[1]} channels (shape {tuple(z.shape)}); this UNet takes {want_z} "
                             "latents (encode images with Model.encode_images)")
        B = z.shape[0]
        if B == 0:
            raise ValueError(f"z is an empty batch (shape {tuple(z.shape)}); expected at least one latent")
        logsnr = torch.as_tensor(logsnr, device=z.device)
        if logsnr.ndim == 0:
            logsnr = logsnr.expand(B)
        if logsnr.shape != (B,):
            raise ValueError(f"logsnr must be [B] = [{B}] (or a scalar), got shape {tuple(logsnr.shape)}")
        if not isinstance(cond, Tensor) or cond.ndim != 3 or not cond.is_floating_point():
            raise ValueError(f"cond must be float prompt embeddings {want_c} (Model.encode_prompts), got "
                             f"{type(cond).__name__} {tuple(cond.shape) if isinstance(cond, Tensor) else ''}")
        if width is not None and cond.shape[-1] != width:
            raise ValueError(f"cond has width {cond.shape[-1]} (shape {tuple(cond.shape)}); this UNet's "
                             f"cross-attention takes {want_c} embeddings of this model's text encoder")
        if cond.shape[0] == 1 and B > 1:
            cond = cond.expand(B, *cond.shape[1:])
        if cond.shape[0] != B:
            raise ValueError(f"cond has batch {cond.shape[0]}, z has batch {B}; expected equal (or cond batch 1)")
        check_device(z, cond, next(self.unet.parameters()).device, "UNet")
        finite_tensor(z, "z given to the denoiser")
        finite_tensor(cond, "cond given to the denoiser")
        finite_tensor(logsnr.to(torch.float32), "logsnr given to the denoiser")  # ±inf is no noise level the UNet knows
        if self.max_batch is None or B <= self.max_batch:
            return self._eps(z, logsnr, cond)
        return torch.cat([self._eps(z[i:i + self.max_batch], logsnr[i:i + self.max_batch],
                                    cond[i:i + self.max_batch]) for i in range(0, B, self.max_batch)])

    def attention_mask(self, cond: Tensor) -> Tensor | None:
        """``[B, L]`` bool, True where cross-attention may look (see ``hide_zero_tokens``), or ``None``."""
        if not self.hide_zero_tokens:
            return None
        mask = cond.abs().amax(-1) > 0
        if not bool(mask.any(1).all()):
            raise ValueError("a conditioning row has every token hidden (all zero); expected at least the start "
                             "token, as Model.encode_prompts gives")
        return mask

    @torch.no_grad()
    def _eps(self, z: Tensor, logsnr: Tensor, cond: Tensor) -> Tensor:
        unet_dtype = next(self.unet.parameters()).dtype
        t = self.timesteps(logsnr)
        mask = self.attention_mask(cond)
        extra = {} if mask is None else {"encoder_attention_mask": mask}
        out = self.unet(z.to(unet_dtype), t, encoder_hidden_states=cond.to(unet_dtype), return_dict=False,
                        **extra)[0]
        if out.shape != z.shape:
            raise ValueError(f"the UNet returned shape {tuple(out.shape)} for input {tuple(z.shape)}; "
                             "expected the same (learned-variance UNets are not supported)")
        out = out.to(torch.float32)
        if self.prediction_type == "epsilon":
            return out.to(z.dtype)
        lam = self.timestep_logsnr(logsnr) if self.v_logsnr == "timestep" else logsnr.to(torch.float32)
        shape = (-1,) + (1,) * (z.ndim - 1)
        alpha = torch.sigmoid(lam).sqrt().view(shape)
        sigma = torch.sigmoid(-lam).sqrt().view(shape)
        zf = z.to(torch.float32)
        if self.prediction_type == "v_prediction":
            # v = α·ε − σ·x and z = α·x + σ·ε  ⇒  ε = σ·z + α·v  (α² + σ² = 1)
            eps = sigma * zf + alpha * out
        else:  # "sample": x̂ predicted; ε = (z − α·x̂)/σ
            eps = (zf - alpha * out) / sigma
        return eps.to(z.dtype)


# ----------------------------------------------------------------------------------------------------------
# The model wrapper

_RESAMPLE = {"nearest": 0, "lanczos": 1, "bilinear": 2, "bicubic": 3}  # PIL.Image.Resampling values


@dataclass(eq=False)
class Model:
    """A Stable Diffusion pipeline with the operations the experiments need. Build it with :func:`load_model`,
    or wrap an existing ``StableDiffusionPipeline`` directly: ``Model(pipe, name="mine")``.

    Attributes:
        pipeline: the diffusers ``StableDiffusionPipeline``.
        name: short name (used for ``figures/<name>/``), or the id/path it was loaded from.
        source: hub id or directory the weights came from; ``revision``: the pinned revision, if any.
        digest: for a local directory, ``sha256`` of its weight files (see :func:`weights_digest`), so two
            trainings of the same name are told apart. :attr:`version` is what result stores and records use.
        cross_attention_tokens: ``"all"`` (SD 2.1 and every stock pipeline: cross-attention sees all 77
            tokens, padding included) or ``"words"`` (shapes-tiny v2: trained with the end token and the
            padding hidden from cross-attention, so every UNet call must hide them too). Read by
            :func:`load_model` from the pipeline directory's ``infodecomp.json``; with ``"words"``,
            :meth:`encode_prompts` zeroes the hidden rows and :attr:`denoiser` masks zero rows.
        denoiser: :class:`UNetDenoiser` with nearest timesteps (the reference's choice); see
            :meth:`make_denoiser` for the alternatives.
    """

    pipeline: object
    name: str = "custom"
    source: str | None = None
    revision: str | None = None
    digest: str | None = None
    cross_attention_tokens: str = "all"
    denoiser: UNetDenoiser = field(init=False)

    def __post_init__(self):
        if self.cross_attention_tokens not in CROSS_ATTENTION_TOKENS:
            raise ValueError(f"cross_attention_tokens must be one of {CROSS_ATTENTION_TOKENS}, got "
                             f"{self.cross_attention_tokens!r}")
        sched = self.pipeline.scheduler
        if getattr(sched, "alphas_cumprod", None) is None:
            raise ValueError(f"the pipeline's scheduler {type(sched).__name__} has no alphas_cumprod; "
                             "expected a DDPM-family scheduler (DDIM, DDPM, PNDM, Euler, …)")
        self.denoiser = self.make_denoiser()

    def __repr__(self) -> str:
        return (f"Model(name={self.name!r}, source={self.source!r}, revision={self.revision!r}, "
                f"prediction_type={self.prediction_type!r}, resolution={self.resolution}, device={self.device}, "
                f"dtype={self.dtype})")

    @property
    def version(self) -> str | None:
        """Which weights these are: the pinned hub revision, else ``"sha256:<first 16 hex>"`` of a local
        directory's weight files, else ``None``. Part of every result store's identity, so results of a
        retrained model are never mixed with (or resumed from) those of the previous weights."""
        if self.revision is not None:
            return self.revision
        return None if self.digest is None else f"sha256:{self.digest[:16]}"

    # -- components and facts ------------------------------------------------------------------------------
    @property
    def unet(self):
        return self.pipeline.unet

    @property
    def vae(self):
        return self.pipeline.vae

    @property
    def tokenizer(self):
        return self.pipeline.tokenizer

    @property
    def text_encoder(self):
        return self.pipeline.text_encoder

    @property
    def device(self) -> torch.device:
        return next(self.unet.parameters()).device

    @property
    def dtype(self) -> torch.dtype:
        """The UNet's dtype."""
        return next(self.unet.parameters()).dtype

    @property
    def alphas_cumprod(self) -> Tensor:
        """``[T]`` float64 cumulative products ᾱ_t of the training schedule."""
        return torch.as_tensor(self.pipeline.scheduler.alphas_cumprod).to(torch.float64).cpu()

    @property
    def prediction_type(self) -> str:
        return self.pipeline.scheduler.config.prediction_type

    @property
    def logsnr_range(self) -> tuple[float, float]:
        """``(logsnr_min, logsnr_max)`` the model was trained on; (−5.364, 7.069) for SD 2.1 (nats)."""
        return trained_range(self.alphas_cumprod)

    @property
    def vae_scale_factor(self) -> int:
        return int(self.pipeline.vae_scale_factor)

    @property
    def latent_channels(self) -> int:
        return int(self.unet.config.in_channels)

    @property
    def resolution(self) -> tuple[int, int]:
        """``(H, W)`` image size in pixels the model was trained at: UNet ``sample_size`` × VAE factor."""
        s = self.unet.config.sample_size
        h, w = (s, s) if isinstance(s, int) else tuple(s)
        return h * self.vae_scale_factor, w * self.vae_scale_factor

    @property
    def latent_shape(self) -> tuple[int, int, int]:
        """``(C, h, w)`` of one latent at :attr:`resolution`."""
        H, W = self.resolution
        return self.latent_channels, H // self.vae_scale_factor, W // self.vae_scale_factor

    def make_denoiser(self, *, timestep: str = "nearest", v_logsnr: str = "timestep",
                      max_batch: int | None = None) -> UNetDenoiser:
        """A :class:`UNetDenoiser` for this model with the given settings (see its docstring)."""
        return UNetDenoiser(self.unet, self.alphas_cumprod, self.prediction_type, timestep=timestep,
                            v_logsnr=v_logsnr, max_batch=max_batch,
                            hide_zero_tokens=self.cross_attention_tokens == "words")

    def to(self, device=None, dtype: torch.dtype | str | None = None) -> "Model":
        """Move the pipeline (in place) and return ``self``. ``dtype``: a ``torch.dtype`` or its name
        (``"float32"``, ``"bfloat16"``, ``"fp16"``, …; see :func:`load_model` on reduced precision)."""
        self.pipeline.to(device=device, dtype=as_dtype(dtype))
        return self

    # -- text ----------------------------------------------------------------------------------------------
    def encode_prompts(self, prompts: str | Sequence[str], *, truncate: bool = False,
                       batch_size: int = 64, hide: bool = True) -> Tensor:
        """Text-encoder hidden states ``[N, L, D]`` (L = 77 for CLIP) for ``N`` prompts.

        Through the pipeline's public ``encode_prompt`` with classifier-free guidance off, one image per prompt
        (docs/protocol.md#encoding). The null prompt ``""`` gives exactly the pipeline's own unconditional embedding.
        Returned on the model's device, in the text encoder's dtype. A prompt over the tokenizer's limit raises
        ``ValueError`` (it would be truncated) unless ``truncate=True``.

        For a model with ``cross_attention_tokens == "words"`` the rows the model never attends to (the end
        token and the padding, :meth:`token_mask`) are set to exactly zero, which the denoiser reads as
        "hidden"; ``hide=False`` returns the text encoder's raw rows (to build hybrid embeddings, say; hide
        them with :meth:`hide_tokens` before a UNet call).
        """
        batch_size = check_batch_size(batch_size)
        prompts = [prompts] if isinstance(prompts, str) else list(prompts)
        if not prompts:
            raise ValueError("encode_prompts needs at least one prompt")
        check_prompt_length(self.tokenizer, prompts, truncate=truncate)
        out = []
        with torch.no_grad():
            for i in range(0, len(prompts), batch_size):
                emb, _ = self.pipeline.encode_prompt(prompts[i:i + batch_size], self.device, 1, False)
                out.append(emb)
        emb = torch.cat(out)
        return self.hide_tokens(emb, self.token_mask(prompts, truncate=truncate)) if hide else emb

    def token_mask(self, prompts: str | Sequence[str], *, truncate: bool = False) -> Tensor:
        """``[N, L]`` bool: the token positions cross-attention sees for each prompt: all of them for
        ``cross_attention_tokens == "all"``; the start and word tokens (not ``<|endoftext|>`` nor the padding)
        for ``"words"`` (:func:`infodecomp.text.word_token_mask`)."""
        prompts = [prompts] if isinstance(prompts, str) else list(prompts)
        L = int(self.tokenizer.model_max_length)
        if self.cross_attention_tokens == "all":
            return torch.ones(len(prompts), L, dtype=torch.bool)
        ids = self.tokenizer(prompts, padding="max_length", max_length=L, truncation=True,
                             return_tensors="pt").input_ids
        return word_token_mask(ids, self.tokenizer.eos_token_id)

    def hide_tokens(self, emb: Tensor, mask: Tensor) -> Tensor:
        """``emb [N, L, D]`` with the rows where ``mask [N, L]`` is False set to zero (hidden from the
        denoiser's cross-attention for a ``"words"`` model); ``emb`` unchanged for an ``"all"`` model."""
        if self.cross_attention_tokens == "all":
            return emb
        if mask.shape != emb.shape[:2]:
            raise ValueError(f"mask {tuple(mask.shape)} does not match embeddings {tuple(emb.shape)} ([N, L])")
        return emb * mask.to(emb.device, emb.dtype)[..., None]

    def token_positions(self, prompt: str, word: str, *, truncate: bool = False) -> list[int]:
        """Token positions of ``word`` in ``prompt`` (see :func:`infodecomp.text.token_positions`)."""
        return token_positions(self.tokenizer, prompt, word, truncate=truncate)

    # -- images --------------------------------------------------------------------------------------------
    def images_to_tensor(self, images, *, size: tuple[int, int] | None = None,
                         resize: str | None = None) -> Tensor:
        """Images → float32 ``[B, 3, H, W]`` in [0, 1] on the CPU, at ``size`` (default :attr:`resolution`).

        ``images``: a PIL image or a list of them (mode ``"RGB"``), a uint8 array ``[H, W, 3]`` /
        ``[B, H, W, 3]``, or a float tensor ``[3, H, W]`` / ``[B, 3, H, W]`` with values in [0, 1].
        An image of another size raises ``ValueError`` unless ``resize`` names an interpolation
        (``"bicubic"``, ``"bilinear"``, ``"lanczos"`` (PIL only), ``"nearest"``); aspect ratio is not preserved
        (the reference squashes, docs/protocol.md#encoding).
        """
        H, W = image_size(size, "size") if size is not None else self.resolution
        if resize is not None and resize not in _RESAMPLE:
            raise ValueError(f"resize must be None or one of {sorted(_RESAMPLE)}, got {resize!r}")
        if isinstance(images, Tensor):
            if not images.is_floating_point():
                raise ValueError(f"an image tensor must be float [B, 3, H, W] in [0, 1], got {images.dtype} "
                                 f"{tuple(images.shape)} (a uint8 tensor? divide it by 255)")
            x = images.detach().to("cpu", torch.float32)
            if x.ndim == 3:
                x = x[None]
            if x.ndim != 4 or x.shape[1] != 3:
                raise ValueError(f"image tensor must be [B, 3, H, W] (RGB), got shape {tuple(images.shape)}")
            if x.shape[0] == 0 or x.shape[2] == 0 or x.shape[3] == 0:
                raise ValueError(f"the image tensor is empty (shape {tuple(images.shape)}); expected at least one "
                                 "[3, H, W] image")
            finite_tensor(images, "the image tensor")
            lo, hi = float(x.min()), float(x.max())
            if lo < -1e-6 or hi > 1 + 1e-6:
                raise ValueError(f"image tensor values must lie in [0, 1], got [{lo:.3g}, {hi:.3g}] "
                                 "(a [-1, 1] or 0–255 tensor? rescale it first)")
            if tuple(x.shape[-2:]) != (H, W):
                if resize is None:
                    raise ValueError(f"images are {tuple(x.shape[-2:])} (H, W); the model expects {(H, W)}. "
                                     "Pass resize='bicubic' (or another interpolation) to resize them.")
                if resize == "lanczos":
                    raise ValueError("resize='lanczos' is only available for PIL images; use 'bicubic' for tensors")
                aa = resize in ("bilinear", "bicubic")
                x = F.interpolate(x, size=(H, W), mode=resize, antialias=aa,
                                  **({} if resize == "nearest" else {"align_corners": False})).clamp(0, 1)
            return x
        if isinstance(images, np.ndarray):
            arr = images[None] if images.ndim == 3 else images
            if arr.ndim != 4 or arr.shape[-1] != 3 or arr.dtype != np.uint8:
                raise ValueError(f"image arrays must be uint8 [H, W, 3] or [B, H, W, 3], got {arr.dtype} "
                                 f"{tuple(images.shape)} (a float array in [0, 1]? pass it as a tensor "
                                 "torch.from_numpy(a).permute(0, 3, 1, 2), or as (a * 255).round().astype('uint8'))")
            if arr.shape[0] == 0:
                raise ValueError(f"the image array is empty (shape {tuple(images.shape)}); expected at least one image")
            images = list(arr)
        if isinstance(images, Image.Image):
            images = [images]
        images = list(images)
        if not images:
            raise ValueError("no images given")
        arrays = []
        for i, im in enumerate(images):
            if isinstance(im, np.ndarray):
                if im.ndim != 3 or im.shape[-1] != 3 or im.dtype != np.uint8:
                    raise ValueError(f"image {i} is a {im.dtype} array of shape {tuple(im.shape)}; an image array "
                                     "must be uint8 [H, W, 3] (a float image goes in as a [3, H, W] tensor in [0, 1])")
                im = Image.fromarray(im)
            if not isinstance(im, Image.Image):
                raise TypeError(f"image {i} is a {type(im).__name__}; a list of images holds PIL images or uint8 "
                                "[H, W, 3] arrays (a batch of tensors goes in as one [B, 3, H, W] tensor)")
            if im.mode != "RGB":
                raise ValueError(f"image {i} has mode {im.mode!r}; expected 'RGB' (use "
                                 "infodecomp.checks.rgb_image(image), which also rescales 16-bit images)")
            if im.width == 0 or im.height == 0:
                raise ValueError(f"image {i} is empty ({im.width}×{im.height} px)")
            if im.size != (W, H):
                if resize is None:
                    raise ValueError(f"image {i} is {im.size[1]}×{im.size[0]} (H×W); the model expects {H}×{W}. "
                                     "Pass resize='bicubic' (or another interpolation) to resize it.")
                im = im.resize((W, H), resample=_RESAMPLE[resize])
            arrays.append(np.asarray(im, dtype=np.float32) / 255.0)
        return torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2).contiguous()

    def encode_images(self, images, *, posterior: str = "mean", generator: torch.Generator | None = None,
                      resize: str | None = None, size: tuple[int, int] | None = None, normalize: bool = True,
                      batch_size: int = 16) -> Tensor:
        """Images → VAE latents ``x [B, C, h, w]`` (float32, model device), multiplied by the scaling factor.

        Args:
            images: see :meth:`images_to_tensor` (PIL RGB, uint8 arrays, or [0, 1] float tensors).
            posterior: ``"mean"`` (deterministic; the corrected choice) or ``"sample"`` (one draw from the VAE
                posterior with ``generator``; what the reference did, docs/protocol.md#encoding).
            generator: randomness for ``posterior="sample"`` (``None``: torch's global RNG).
            resize, size: see :meth:`images_to_tensor`; wrong sizes raise unless ``resize`` is given.
            normalize: map [0, 1] → [−1, 1] before the VAE (correct). ``False`` reproduces the reference's DAAM
                scripts, which fed [0, 1] images to the VAE (docs/protocol.md#b11, faithful mode only).
        """
        if posterior not in ("mean", "sample"):
            raise ValueError(f"posterior must be 'mean' or 'sample', got {posterior!r}")
        batch_size = check_batch_size(batch_size)
        check_generator(generator)
        x = self.images_to_tensor(images, size=size, resize=resize)
        if normalize:
            x = 2.0 * x - 1.0
        vae = self.vae
        vae_dtype, vae_device = next(vae.parameters()).dtype, next(vae.parameters()).device
        scale = float(vae.config.scaling_factor)
        shift = getattr(vae.config, "shift_factor", None) or 0.0
        out = []
        with torch.no_grad():
            for i in range(0, x.shape[0], batch_size):
                dist = vae.encode(x[i:i + batch_size].to(vae_device, vae_dtype)).latent_dist
                lat = dist.mean if posterior == "mean" else dist.sample(generator=generator)
                out.append(((lat.to(torch.float32) - shift) * scale))
        latents = torch.cat(out)
        if not bool(torch.isfinite(latents).all()):
            bad = sorted({int(i) for i in (~torch.isfinite(latents)).flatten(1).any(1).nonzero().flatten()})
            raise ValueError(f"the VAE ({dtype_name(vae_dtype)}) gave non-finite latents for image(s) {bad[:10]}"
                             f"{' (reduced precision overflows: load the model in float32)' if vae_dtype != torch.float32 else ''}")
        return latents

    def decode(self, latents: Tensor, *, output_type: str = "pil", batch_size: int = 16):
        """Latents ``[B, C, h, w]`` (scaled as :meth:`encode_images` returns them) → images.

        ``output_type``: ``"pil"`` (list of RGB ``PIL.Image``), ``"pt"`` (float tensor ``[B, 3, H, W]`` in
        [0, 1], CPU) or ``"np"`` (float array ``[B, H, W, 3]`` in [0, 1]).
        """
        if output_type not in ("pil", "pt", "np"):
            raise ValueError(f"output_type must be 'pil', 'pt' or 'np', got {output_type!r}")
        if not isinstance(latents, Tensor) or latents.ndim != 4 or latents.shape[1] != self.latent_channels:
            raise ValueError(f"latents must be [B, {self.latent_channels}, h, w], got "
                             f"{tuple(latents.shape) if isinstance(latents, Tensor) else type(latents).__name__}")
        batch_size = check_batch_size(batch_size)
        nonempty(latents, "latents", f"[B, {self.latent_channels}, h, w] with B, h, w >= 1")
        finite_tensor(latents, "latents")  # the VAE would decode NaN to a black image without a word
        vae = self.vae
        vae_dtype, vae_device = next(vae.parameters()).dtype, next(vae.parameters()).device
        scale = float(vae.config.scaling_factor)
        shift = getattr(vae.config, "shift_factor", None) or 0.0
        imgs = []
        with torch.no_grad():
            for i in range(0, latents.shape[0], batch_size):
                lat = latents[i:i + batch_size].to(vae_device, torch.float32) / scale + shift
                imgs.append(vae.decode(lat.to(vae_dtype), return_dict=False)[0].to(torch.float32).cpu())
        img = torch.cat(imgs)
        proc = self.pipeline.image_processor
        return proc.postprocess(img, output_type=output_type, do_denormalize=[True] * img.shape[0])


def model_version(model) -> str | None:
    """The identity of a model's weights for result stores and records: :attr:`Model.version`, or the
    ``revision`` attribute of another model-like object, else ``None``."""
    return getattr(model, "version", getattr(model, "revision", None))
