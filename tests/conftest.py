"""Shared fixtures: tiny Stable Diffusion pipelines built from config (seeded, offline, < 1 s each).

Session-scoped, so every test module shares one build. Tests must not modify these objects in place
(move them, cast them, change their processors without restoring); build a fresh one with
``infodecomp.testing.tiny_pipeline()`` for that.
"""

from __future__ import annotations

import pytest
import torch


@pytest.fixture(scope="session")
def tiny_pipe():
    """A tiny ε-prediction ``StableDiffusionPipeline`` (16×16 images, 8×8×4 latents, fp32, CPU)."""
    from infodecomp.testing import tiny_pipeline

    return tiny_pipeline(prediction_type="epsilon", seed=0)


@pytest.fixture(scope="session")
def tiny_pipe_v():
    """The same tiny pipeline with a v-prediction scheduler (same weights as ``tiny_pipe``)."""
    from infodecomp.testing import tiny_pipeline

    return tiny_pipeline(prediction_type="v_prediction", seed=0)


@pytest.fixture(scope="session")
def tiny_model(tiny_pipe):
    """``infodecomp.models.Model`` wrapping ``tiny_pipe``: ``.denoiser``, ``.encode_prompts``, … ."""
    from infodecomp.models import Model

    return Model(tiny_pipe, name="tiny")


@pytest.fixture(scope="session")
def tiny_pipeline_dir(tmp_path_factory):
    """A directory holding a saved tiny pipeline (``save_pretrained``, safetensors) for ``load_model``."""
    from infodecomp.testing import save_tiny_pipeline

    return save_tiny_pipeline(tmp_path_factory.mktemp("tiny-sd"))


@pytest.fixture(scope="session")
def clip_tokenizer():
    """The bundled CLIP tokenizer."""
    from infodecomp.tokenizer import load_clip_tokenizer

    return load_clip_tokenizer()


# ── analytic worlds shared by the estimator and analytic tests ──
@pytest.fixture(scope="module")
def gworld():
    """A jointly Gaussian world: x in R^3, a 2-factor condition y."""
    from infodecomp import analytic

    return analytic.GaussianWorld.random(3, 2, generator=torch.Generator().manual_seed(0))


@pytest.fixture(scope="module")
def mworld():
    """A two-factor Gaussian-mixture world (CMI known)."""
    from infodecomp import analytic

    return analytic.MixtureWorld.two_factor()


@pytest.fixture(scope="module")
def iworld():
    """An image-shaped Gaussian world (per-pixel information known)."""
    from infodecomp import analytic

    return analytic.GaussianImageWorld.shapes(channels=3, size=8)


# ── tiny random pipelines of every family (infodecomp.testing_families), built on first use ──
@pytest.fixture(scope="session")
def family_models():
    """``family_models(kind, **kwargs)`` → a cached tiny Model of ``kind`` ("sd15", "sdxl", "sd3", "flux",
    "flux-dev": Flux with a guidance embedding, loaded with ``allow_distilled=True``). Do not modify them."""
    import warnings

    from infodecomp.testing_families import tiny_family_model

    cache = {}

    def get(kind: str):
        if kind not in cache:
            if kind == "flux-dev":
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore", UserWarning)
                    cache[kind] = tiny_family_model("flux", guidance_embeds=True, allow_distilled=True,
                                                    name="tiny-flux-dev")
            else:
                cache[kind] = tiny_family_model(kind)
        return cache[kind]

    return get
