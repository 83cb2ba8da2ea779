"""What the paper costs at full scale: UNet evaluations per notebook, and GPU-hours at a measured throughput.

One UNet *evaluation* is one row of a UNet batch: one latent ``[4, 64, 64]`` with one prompt at one timestep (a
call on a batch of B latents is B evaluations). Text encoding and the VAE are not counted (they are a few passes
per image, against hundreds of UNet rows).

Two ways to the same number, and the tests hold them equal (tests/test_costs.py):

* **closed forms** (``*_evaluations``), read off the experiment code: e.g. relation testing makes
  ``n_samples × (unique candidates + 1)`` evaluations per example (every candidate and the null prompt once per
  draw, docs/architecture.md#shared-noise);
* **counts** (``count_*``), which run the experiments' own code paths (the functions the notebooks call) on a
  small model and dataset and count the rows that reach ``model.unet`` (:class:`UNetCounter`, a forward
  pre-hook). A count at small sizes equals the closed form at those sizes, so the closed form at the paper's sizes
  is what the same code would spend on SD 2.1-base, without running it.

:func:`paper_plan` evaluates the closed forms at the paper's sizes (dataset sizes of docs/protocol.md#data,
draws and steps of each experiment's protocol section). Printing it is repository tooling, outside the package:
``tools/cost_plan.py`` renders it as a table with GPU-hours at an evaluations-per-second figure measured by
``benchmarks/sd21_throughput.py``, and ``scripts/cost_plan.py`` keeps docs/running.md's block up to date.

This module imports only the standard library at the top (``scripts/cost_plan.py`` imports it without torch);
the ``count_*`` functions import torch and the experiments when called (heavy, and only the tests count).
"""

from __future__ import annotations

import math
import numbers
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

__all__ = [
    "PAPER_SIZES", "ARO_CANDIDATES", "LOCALIZATION_STEPS",
    "relation_testing_evaluations", "heatmap_evaluations", "localization_evaluations",
    "intervention_evaluations", "image_level_evaluations",
    "UNetCounter", "count_relation_testing", "count_heatmaps", "count_localization", "count_intervention",
    "count_image_level",
    "PlanRow", "paper_plan", "plan_total", "gpu_hours",
]

#: Examples per dataset at the paper's scale (docs/protocol.md#data). The ARO counts are the ARO paper's test
#: cases (the protocol marks them inferred; the loaders in infodecomp/data/aro.py document the same numbers).
PAPER_SIZES: dict[str, int] = {
    "vg-relation": 23_937,
    "vg-attribution": 28_748,
    "coco-order": 25_010,
    "flickr-order": 5_000,
    "coco-it": 6_927,
    "coco100-it": 100,
    "coco-wl": 70,
}
#: Candidate captions per ARO example: VG [false, true]; COCO/Flickr the true caption and 4 perturbations.
ARO_CANDIDATES: dict[str, int] = {"vg-relation": 2, "vg-attribution": 2, "coco-order": 5, "flickr-order": 5}
#: Table 3's step settings N (λ draws of the CMI and MI maps, Attention+Information passes, DAAM DDIM steps).
LOCALIZATION_STEPS: tuple[int, ...] = (50, 100, 200)

def _n(name: str, value, minimum: int = 0) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r} ({type(value).__name__})")
    return int(value)


# ───────────────────────────────────────────── closed forms ─────────────────────────────────────────────

def relation_testing_evaluations(n_examples: int, n_candidates: int, n_samples: int = 100) -> int:
    """Relation testing (notebooks 02, 03): per example ``n_samples`` draws × (its distinct candidate captions +
    the null prompt). ``n_candidates`` counts *distinct* captions (identical ones are evaluated once)."""
    return _n("n_examples", n_examples) * _n("n_samples", n_samples, 1) * (_n("n_candidates", n_candidates, 1) + 1)


def heatmap_evaluations(n_rows: int, n_samples: int = 100, attention_samples: int | None = None, *,
                        attention: bool = True) -> int:
    """MI / CMI maps (``heatmaps.word_heatmaps``, notebooks 04, 05, 07): per row CMI (caption, context) and MI
    (word, null) at ``n_samples`` draws each, ``4·n_samples``, plus ``attention_samples`` (default ``n_samples``)
    single passes of the Attention+Information map when ``attention``."""
    n = _n("n_samples", n_samples, 1)
    a = n if attention_samples is None else _n("attention_samples", attention_samples, 1)
    return _n("n_rows", n_rows) * (4 * n + (a if attention else 0))


def localization_evaluations(n_rows: int, n_samples: int, attention_samples: int | None = None,
                             daam_steps: int | None = None, *, attention: bool = True, guidance: bool = False) -> int:
    """Word localization (``localization.run_localization``, notebook 05): the maps of :func:`heatmap_evaluations`
    plus, with ``daam_steps``, DDIM inversion and regeneration, ``2·daam_steps`` passes (×2 with classifier-free
    guidance, which the paper does not use)."""
    daam = 0 if daam_steps is None else 2 * _n("daam_steps", daam_steps, 1) * (2 if guidance else 1)
    return heatmap_evaluations(n_rows, n_samples, attention_samples, attention=attention) + _n("n_rows", n_rows) * daam


def intervention_evaluations(n_images: int, n_steps: int = 100, n_logsnr: int = 20, n_noise: int = 120) -> int:
    """Prompt intervention (``intervention.intervention_row``, notebook 06), per image: Heun inversion with the
    caption and three regenerations (caption, omit, swap), each ``n_steps − 1`` steps of 2 passes; then three
    information estimates of ``n_logsnr × n_noise`` draws: CMI (caption, swap vs omit: 3 conditions), swap
    (swap vs caption: 2), MI (word vs null: 2), i.e. 7 conditions."""
    ode = 4 * 2 * (_n("n_steps", n_steps, 2) - 1)
    return _n("n_images", n_images) * (ode + 7 * _n("n_logsnr", n_logsnr, 1) * _n("n_noise", n_noise, 1))


def image_level_evaluations(n_rows: int, n_samples: int = 200, n_grid: int = 200, n_noise: int = 50) -> int:
    """Image-level information (notebook 07): MI and CMI maps without attention for every row (C.1,
    ``4·n_samples`` each), and the denoising process of one row (C.2, ``image_level.denoising_process``: caption
    and context at ``n_grid`` log-SNRs × ``n_noise`` draws)."""
    return heatmap_evaluations(n_rows, n_samples, attention=False) + 2 * _n("n_grid", n_grid, 1) * _n("n_noise", n_noise, 1)


# ─────────────────────────────────────── counts on the real code paths ───────────────────────────────────────

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
    from .relation_testing import RelationSettings, score_rows

    settings = RelationSettings(protocol=protocol, n_samples=n_samples)
    with UNetCounter(model) as c:
        score_rows(model, rows, settings, seed=seed)
    return c.evaluations


def count_heatmaps(model, rows: Sequence[Mapping], *, n_samples: int, attention_samples: int | None = None,
                   attention: bool = True, protocol: str = "corrected", seed: int = 0) -> int:
    """UNet evaluations of ``heatmaps.word_heatmaps`` (notebooks 04 and 07) on ``rows``."""
    import torch

    from .heatmaps import word_heatmaps

    with UNetCounter(model) as c:
        word_heatmaps(model, list(rows), n_samples=n_samples, attention_samples=attention_samples,
                      attention=attention, protocol=protocol, generator=torch.Generator().manual_seed(seed))
    return c.evaluations


def count_localization(model, rows: Sequence[Mapping], *, n_samples: int, attention_samples: int | None = None,
                       daam_steps: int | None = None, protocol: str = "corrected", batch_size: int = 8,
                       seed: int = 0) -> int:
    """UNet evaluations of ``localization.run_localization`` (notebook 05) on ``rows``, its store in a temporary
    folder that is deleted afterwards."""
    from .localization import run_localization

    with tempfile.TemporaryDirectory(prefix="infodecomp-costs-") as tmp, UNetCounter(model) as c:
        run_localization(model, rows, Path(tmp) / "store", n_samples=n_samples, attention_samples=attention_samples,
                         daam_steps=daam_steps, protocol=protocol, seed=seed, batch_size=batch_size)
    return c.evaluations


def count_intervention(model, rows: Sequence[Mapping], *, n_steps: int, n_logsnr: int, n_noise: int,
                       seed: int = 0) -> int:
    """UNet evaluations of ``intervention.intervention_row`` (what ``run_intervention`` calls per image) on
    ``rows``. A row that fails raises (a count of a failed row would be too low)."""
    from .intervention import InterventionSettings, intervention_row

    settings = InterventionSettings(n_steps=n_steps, n_logsnr=n_logsnr, n_noise=n_noise)
    with UNetCounter(model) as c:
        for row in rows:
            intervention_row(model, row, settings, seed=seed)
    return c.evaluations


def count_image_level(model, rows: Sequence[Mapping], *, n_samples: int, n_grid: int, n_noise: int,
                      protocol: str = "corrected", seed: int = 0) -> int:
    """UNet evaluations of notebook 07's two computations: ``word_heatmaps`` without attention on ``rows`` and
    ``image_level.denoising_process`` of ``rows[0]`` on a grid of ``n_grid`` log-SNRs (decoding is the VAE)."""
    import torch

    from .heatmaps import word_heatmaps
    from .image_level import denoising_process

    gen = torch.Generator().manual_seed(seed)
    with UNetCounter(model) as c:
        word_heatmaps(model, list(rows), n_samples=n_samples, protocol=protocol, attention=False, generator=gen)
        denoising_process(model, rows[0], torch.linspace(-5.0, 7.0, n_grid), n_noise=n_noise, protocol=protocol,
                          generator=gen, decode=False)
    return c.evaluations


# ─────────────────────────────────────────────── the plan ───────────────────────────────────────────────

@dataclass(frozen=True)
class PlanRow:
    """One line of the cost plan."""

    notebook: str       # e.g. "02_relation_testing"
    part: str           # what is computed, at which scale
    evaluations: int    # UNet evaluations (64×64 latents, 77 tokens)
    formula: str        # how the number is made up
    new: bool = True    # False: reuses another notebook's stores (not added to the total)


def paper_plan() -> list[PlanRow]:
    """The cost of every notebook that runs the UNet, at the paper's scale (closed forms above, the settings of
    docs/protocol.md). Notebook 03 re-reads notebook 02's VG stores (same settings → the same store), so it adds
    nothing when run after 02; its own cost is listed with ``new=False``. Notebooks 00, 01 and 08 are not part of
    the paper's protocol (the embedded model's sanity check, the analytic estimators, the interactive probe)."""
    s = PAPER_SIZES
    rows = []
    for d in ("vg-relation", "vg-attribution", "coco-order", "flickr-order"):
        m = ARO_CANDIDATES[d]
        rows.append(PlanRow("02_relation_testing", f"{d}: {s[d]:,} examples × {m} captions, 100 draws",
                            relation_testing_evaluations(s[d], m, 100), f"{s[d]:,} × 100 × ({m} + 1)"))
    vg = sum(relation_testing_evaluations(s[d], 2, 100) for d in ("vg-relation", "vg-attribution"))
    rows.append(PlanRow("03_relation_types", "VG-R + VG-A: the stores of notebook 02 (0 new evaluations after it)",
                        vg, f"({s['vg-relation']:,} + {s['vg-attribution']:,}) × 100 × 3", new=False))
    n04 = s["coco100-it"] + s["coco-wl"]
    rows.append(PlanRow("04_mi_cmi_heatmaps", f"COCO100-IT + COCO-WL: {n04} rows, 100 draws, 100 attention passes",
                        heatmap_evaluations(n04, 100, 100), f"{n04} × (4 × 100 + 100)"))
    for n in LOCALIZATION_STEPS:
        rows.append(PlanRow("05_word_localization",
                            f"COCO-IT: {s['coco-it']:,} rows, N = {n} (CMI + MI draws, Attn+Info passes, DAAM steps)",
                            localization_evaluations(s["coco-it"], n, n, n), f"{s['coco-it']:,} × (4N + N + 2N)"))
    rows.append(PlanRow("06_prompt_intervention", f"COCO100-IT: {s['coco100-it']} images, 100 σ, 20 λ × 120 noise",
                        intervention_evaluations(s["coco100-it"], 100, 20, 120),
                        f"{s['coco100-it']} × (4 × 2 × 99 + 7 × 20 × 120)"))
    rows.append(PlanRow("07_image_level_information",
                        f"COCO100-IT + COCO-WL: {n04} rows, 200 draws; C.2: 200 λ × 50 noise, one row",
                        image_level_evaluations(n04, 200, 200, 50), f"{n04} × 4 × 200 + 2 × 200 × 50"))
    return rows


def plan_total(rows: Sequence[PlanRow]) -> int:
    """Evaluations of the rows that are new (``new=True``): what running every notebook once costs."""
    return sum(r.evaluations for r in rows if r.new)


def gpu_hours(evaluations: int, evals_per_second: float) -> float:
    """Hours at ``evals_per_second`` UNet evaluations per second on one GPU."""
    _n("evaluations", evaluations)
    if isinstance(evals_per_second, bool) or not isinstance(evals_per_second, numbers.Real) \
            or not math.isfinite(evals_per_second) or evals_per_second <= 0:
        raise ValueError(f"evals_per_second must be a finite number > 0, got {evals_per_second!r}")
    return evaluations / float(evals_per_second) / 3600.0
