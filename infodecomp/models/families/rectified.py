"""The common part of the rectified-flow transformer families (SD3, Flux): :class:`FlowModel`.

A flow model has no UNet and no ``alphas_cumprod``: its transformer predicts the velocity ``v = ε − x`` on
``z_t = (1 − t)·x + t·ε`` at a continuous noise fraction t (:mod:`.flow`). :class:`FlowModel` keeps the
:class:`~infodecomp.models.Model` interface by

* a :class:`~.flow.FlowDenoiser` as :attr:`denoiser` (VP state at log-SNR λ → t = sigmoid(−λ/2),
  z_t = s·z, ε̂ = z_t + (1 − t)·v̂), the velocity coming from the family's transformer call;
* :attr:`alphas_cumprod`: the VP-equivalent ᾱ = sigmoid(λ) of the scheduler's training grid (the shifted
  noise fractions, t = 1 left out: :func:`~.flow.training_times`), so :attr:`logsnr_range`, the
  Karras σ range of :mod:`infodecomp.editing` and its DDIM levels work unchanged. The range is wide (SD3 at shift
  3: about −16 … +11.6 nats) because the model was trained up to pure noise;
* :attr:`prediction_type` ``"flow"``.

Subclasses say how prompts are encoded and packed (:meth:`encode_prompts`, ``layout``), which rows a word
occupies (:meth:`token_positions`) and how the transformer is called (``_velocity``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from ...logsnr import trained_range
from ..base import CROSS_ATTENTION_TOKENS, Model
from .flow import FlowDenoiser, alphas_cumprod_from_times, logsnr_shift, training_times

__all__ = ["FlowModel"]


@dataclass(eq=False, repr=False)
class FlowModel(Model):
    """Base of :class:`~.sd3.SD3Model` and :class:`~.flux.FluxModel`.

    Extra attributes: ``max_sequence_length`` (T5 tokens; ``None`` = the family's pipeline default),
    ``image_size`` (``(H, W)`` pixels overriding :attr:`resolution`; ``None`` = the family default).
    """

    max_sequence_length: int | None = None
    image_size: tuple[int, int] | None = None
    family = "flow"
    default_max_sequence_length = 256

    def __post_init__(self):
        if self.cross_attention_tokens != "all":
            raise ValueError(f"flow transformers attend to every text token; cross_attention_tokens must be 'all', "
                             f"got {self.cross_attention_tokens!r} (one of {CROSS_ATTENTION_TOKENS})")
        sched = self.pipeline.scheduler
        if not hasattr(sched.config, "shift") or getattr(sched, "alphas_cumprod", None) is not None:
            raise ValueError(f"the pipeline's scheduler {type(sched).__name__} is not a flow-matching scheduler "
                             "(expected FlowMatchEulerDiscreteScheduler or another with a 'shift' setting)")
        if self.max_sequence_length is None:
            self.max_sequence_length = self.default_max_sequence_length
        if isinstance(self.max_sequence_length, bool) or not isinstance(self.max_sequence_length, int) \
                or not 1 <= self.max_sequence_length <= 512:
            raise ValueError(f"max_sequence_length must be an int in [1, 512], got {self.max_sequence_length!r}")
        if self.image_size is not None:
            H, W = (int(v) for v in self.image_size)
            unit = self.latent_multiple * self.vae_scale_factor
            if H < 1 or W < 1 or H % unit or W % unit:
                raise ValueError(f"image_size must be positive and divisible by {unit} (VAE factor × patch), "
                                 f"got {self.image_size!r}")
            self.image_size = (H, W)
        self.layout = self._layout()
        self.denoiser = self.make_denoiser()

    def __repr__(self) -> str:
        return (f"{type(self).__name__}(name={self.name!r}, source={self.source!r}, revision={self.revision!r}, "
                f"prediction_type='flow', shift={self.schedule_shift:.4g}, resolution={self.resolution}, "
                f"device={self.device}, dtype={self.dtype})")

    # -- what subclasses provide -----------------------------------------------------------------------------
    latent_multiple = 1  # latent h, w must be multiples of this (the transformer's patch)

    def _layout(self):
        raise NotImplementedError

    def _velocity(self, guidance: float | None = None):
        raise NotImplementedError

    # -- components and facts ----------------------------------------------------------------------------
    @property
    def unet(self):
        raise AttributeError(f"{type(self).__name__} has no UNet: its network is model.transformer")

    @property
    def transformer(self):
        return self.pipeline.transformer

    @property
    def device(self) -> torch.device:
        return next(self.transformer.parameters()).device

    @property
    def dtype(self) -> torch.dtype:
        """The transformer's dtype."""
        return next(self.transformer.parameters()).dtype

    @property
    def prediction_type(self) -> str:
        """``"flow"``: the network predicts the velocity ``v = ε − x`` of rectified flow."""
        return "flow"

    @property
    def information_defined(self) -> bool:
        """Whether ε̂(z|c) and ε̂(z|∅) come from one model of p(x|c) (False for distilled models)."""
        return True

    @property
    def schedule_shift(self) -> float:
        """The time shift of the scheduler at :attr:`resolution` (``shift``, or ``exp(mu)`` with dynamic
        shifting): the training grid is shifted by ``logsnr_shift(schedule_shift)`` nats in log-SNR."""
        return float(self.pipeline.scheduler.config.shift)

    @property
    def logsnr_offset(self) -> float:
        """``−2·log(schedule_shift)``: where the model's schedule puts the log-SNR of t = 1/2 (0 without shift).
        Add it to ``LogSNRSampling.loc`` to follow the model's own noise schedule."""
        return logsnr_shift(self.schedule_shift)

    @property
    def training_times(self) -> Tensor:
        """``[N − 1]`` float64 noise fractions of the scheduler's (shifted) training grid, increasing."""
        return training_times(int(self.pipeline.scheduler.config.num_train_timesteps), self.schedule_shift)

    @property
    def alphas_cumprod(self) -> Tensor:
        """``[N − 1]`` float64 VP-equivalent ᾱ = (1 − t)²/((1 − t)² + t²) of :attr:`training_times`."""
        return alphas_cumprod_from_times(self.training_times)

    @property
    def latent_channels(self) -> int:
        return int(self.vae.config.latent_channels)

    def make_denoiser(self, *, max_batch: int | None = None, guidance: float | None = None) -> FlowDenoiser:
        """A :class:`~.flow.FlowDenoiser` over this model's transformer. ``guidance``: Flux's guidance
        embedding (guidance-distilled models only; default: the model's ``guidance``)."""
        return FlowDenoiser(self._velocity(guidance), max_batch=max_batch,
                            logsnr_range=trained_range(self.alphas_cumprod))

    # -- text ----------------------------------------------------------------------------------------------
    def token_mask(self, prompts: str | Sequence[str], *, truncate: bool = False) -> Tensor:
        """``[N, length]`` bool: True on the token rows (all attended to), False on the packed rows."""
        n = 1 if isinstance(prompts, str) else len(list(prompts))
        mask = torch.zeros(n, self.layout.length, dtype=torch.bool)
        mask[:, :self.layout.tokens] = True
        return mask

    def hide_tokens(self, emb: Tensor, mask: Tensor) -> Tensor:
        """``emb`` unchanged: flow transformers attend to every token."""
        return emb
