"""Training the embedded miniature Stable Diffusion ("shapes-tiny") on ShapesWorld, measuring it, and writing its
model card.

- :mod:`~infodecomp.training.train`: :class:`TrainConfig`, the components built from it, the resumable
  :class:`Trainer` and its export to a diffusers pipeline directory.
- :mod:`~infodecomp.training.evaluate`: what the model card reports (VAE recovery, generation accuracy, CMI
  mass inside the word's object, the word-reading battery), the project's :data:`BARS`, and their record.
- :mod:`~infodecomp.training.card`: the model card (``README.md`` beside the weights) and the ablation table.

Command line: ``python -m infodecomp.training train|export|evaluate|compare|sweep``
(:mod:`infodecomp.training.__main__`).
"""

from __future__ import annotations

from .card import ABLATION_COLUMNS, ablation_table, recipe_text, seed_of, write_model_card
from .evaluate import (
    BARS,
    bar_rows,
    cmi_mass_inside,
    compare_recipes,
    evaluate,
    generate_images,
    generation_accuracy,
    record_quality,
    vae_recovery,
    word_reading,
)
from .train import MODEL_SETTINGS_FILE, SD_BETAS, TEXT_MASKS, TrainConfig, Trainer, batch_rng, build_components, lr_at

__all__ = [
    "ABLATION_COLUMNS",
    "BARS",
    "MODEL_SETTINGS_FILE",
    "SD_BETAS",
    "TEXT_MASKS",
    "TrainConfig",
    "Trainer",
    "ablation_table",
    "bar_rows",
    "batch_rng",
    "build_components",
    "cmi_mass_inside",
    "compare_recipes",
    "evaluate",
    "generate_images",
    "generation_accuracy",
    "lr_at",
    "recipe_text",
    "record_quality",
    "seed_of",
    "vae_recovery",
    "word_reading",
    "write_model_card",
]
