"""Counts of UNet evaluations on the experiments' own code paths, against the closed forms of :mod:`.costs`.

One UNet *evaluation* is one row of a UNet batch (:mod:`.costs`). :class:`UNetCounter` counts the rows that reach
``model.unet`` inside a ``with`` block (a forward pre-hook); each ``count_*`` function runs the very function a
notebook calls (``relation_testing.score_rows``, ``heatmaps.run_heatmaps``, ``localization.run_localization``,
``intervention.intervention_row``, ``image_level.run`` and ``image_level.denoising_process``, ``pid.run``,
``pid.prompt_cases``) on a model and rows and returns what it spent. A count at small sizes equals the closed form
at those sizes (tests/test_costs.py holds them equal), so the closed form at the paper's sizes is what the same
code would spend on SD 2.1-base, without running it.

Counting runs the experiments, so this module imports them (and torch with them) at its top; the closed forms
stay in :mod:`.costs`, which imports only the standard library so that ``scripts/cost_plan.py`` runs without
torch.
"""

from __future__ import annotations

import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path

import torch

from . import heatmaps, image_level, intervention, localization, pid, relation_testing

__all__ = [
    "UNetCounter", "count_relation_testing", "count_heatmaps", "count_localization", "count_intervention",
    "count_image_level", "count_pid", "count_generation",
]


class UNetCounter:
    """Counts what reaches ``model.unet`` inside a ``with`` block: ``evaluations`` (batch rows) and ``calls``.

    A forward pre-hook on the UNet module, removed on exit (also on error). Every path of the experiments
    (the denoiser adapter, DDIM, Heun, attention recording) calls the UNet module, so nothing is missed; a
    second, nested counter on the same UNet counts the same rows."""

    def __init__(self, model):
        unet = getattr(model, "unet", model)
        if not hasattr(unet, "register_forward_pre_hook"):
            raise TypeError(f"UNetCounter needs a model with a torch-module .unet (or the UNet itself), "
                            f"got {type(model).__name__}")
        self.unet, self.calls, self.evaluations, self._handle = unet, 0, 0, None

    def _hook(self, module, args, kwargs):
        sample = args[0] if args else kwargs.get("sample")
        if sample is None or not hasattr(sample, "shape"):
            raise RuntimeError("UNetCounter: a UNet call without a sample tensor (first argument or sample=)")
        self.calls += 1
        self.evaluations += int(sample.shape[0])

    def __enter__(self) -> "UNetCounter":
        if self._handle is not None:
            raise RuntimeError("this UNetCounter is already counting")
        self._handle = self.unet.register_forward_pre_hook(self._hook, with_kwargs=True)
        return self

    def __exit__(self, *exc) -> None:
        self._handle.remove()
        self._handle = None


def count_relation_testing(model, rows: Sequence[Mapping], *, n_samples: int = 100, protocol: str = "faithful",
                           seed: int = 0) -> int:
    """UNet evaluations of ``relation_testing.score_rows`` (what ``relation_testing.run`` calls per batch) on
    ``rows``."""
    settings = relation_testing.RelationSettings(protocol=protocol, n_samples=n_samples)
    with UNetCounter(model) as c:
        relation_testing.score_rows(model, rows, settings, seed=seed)
    return c.evaluations


def count_heatmaps(model, rows: Sequence[Mapping], *, n_samples: int, attention_samples: int | None = None,
                   attention: bool = True, protocol: str = "corrected", batch_size: int = 8, seed: int = 0) -> int:
    """UNet evaluations of ``heatmaps.run_heatmaps`` (notebook 04; 07 without attention) on ``rows``, its store in
    a temporary folder that is deleted afterwards."""
    with tempfile.TemporaryDirectory(prefix="infodecomp-costs-") as tmp, UNetCounter(model) as c:
        heatmaps.run_heatmaps(model, list(rows), dataset="count", n_samples=n_samples,
                              attention_samples=attention_samples, attention=attention, protocol=protocol,
                              batch_size=batch_size, seed=seed, store=Path(tmp) / "store", progress=False)
    return c.evaluations


def count_localization(model, rows: Sequence[Mapping], *, n_samples: int, attention_samples: int | None = None,
                       daam_steps: int | None = None, protocol: str = "corrected", batch_size: int = 8,
                       seed: int = 0) -> int:
    """UNet evaluations of ``localization.run_localization`` (notebook 05) on ``rows``, its store in a temporary
    folder that is deleted afterwards."""
    with tempfile.TemporaryDirectory(prefix="infodecomp-costs-") as tmp, UNetCounter(model) as c:
        localization.run_localization(model, rows, Path(tmp) / "store", n_samples=n_samples,
                                      attention_samples=attention_samples, daam_steps=daam_steps,
                                      protocol=protocol, seed=seed, batch_size=batch_size)
    return c.evaluations


def count_intervention(model, rows: Sequence[Mapping], *, n_steps: int, n_logsnr: int, n_noise: int,
                       seed: int = 0) -> int:
    """UNet evaluations of ``intervention.intervention_row`` (what ``run_intervention`` calls per image) on
    ``rows``. A row that fails raises (a count of a failed row would be too low)."""
    settings = intervention.InterventionSettings(n_steps=n_steps, n_logsnr=n_logsnr, n_noise=n_noise)
    with UNetCounter(model) as c:
        for row in rows:
            intervention.intervention_row(model, row, settings, seed=seed)
    return c.evaluations


def count_image_level(model, rows: Sequence[Mapping], *, n_samples: int, n_grid: int, n_noise: int,
                      protocol: str = "corrected", seed: int = 0) -> int:
    """UNet evaluations of notebook 07's two computations: ``image_level.run`` on ``rows`` (the maps without
    attention, in a temporary store) and ``image_level.denoising_process`` of ``rows[0]`` on a grid of ``n_grid``
    log-SNRs (decoding is the VAE)."""
    gen = torch.Generator().manual_seed(seed)
    with tempfile.TemporaryDirectory(prefix="infodecomp-costs-") as tmp, UNetCounter(model) as c:
        image_level.run(model, {"count": list(rows)}, n_samples=n_samples, protocol=protocol, seed=seed,
                        store_root=tmp, progress=False)
        image_level.denoising_process(model, rows[0], torch.linspace(-5.0, 7.0, n_grid), n_noise=n_noise,
                                      protocol=protocol, generator=gen, decode=False)
    return c.evaluations


def count_pid(model, rows: Sequence[Mapping], *, n_samples: int, batch_size: int = 8, seed: int = 0) -> int:
    """UNet evaluations of ``pid.run`` (notebook 09's decomposition) on ``rows``, in a temporary store."""
    with tempfile.TemporaryDirectory(prefix="infodecomp-costs-") as tmp, UNetCounter(model) as c:
        pid.run(model, list(rows), n_samples=n_samples, batch_size=batch_size, seed=seed, store_root=tmp,
                keep_maps=0, progress=False)
    return c.evaluations


def count_generation(model, cases: Sequence[Sequence[str]], *, n_images: int, steps: int,
                     guidance_scale: float = 7.5, seed: int = 0) -> int:
    """UNet evaluations of ``pid.prompt_cases`` (the images of notebook 09's ``CASES``)."""
    with UNetCounter(model) as c:
        pid.prompt_cases(model, cases, n_images=n_images, steps=steps, guidance_scale=guidance_scale, seed=seed)
    return c.evaluations
