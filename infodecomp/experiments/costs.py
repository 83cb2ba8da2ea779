"""What the paper costs at full scale: UNet evaluations per notebook, and GPU-hours at a measured throughput.

One UNet *evaluation* is one row of a UNet batch: one latent ``[4, 64, 64]`` with one prompt at one timestep (a
call on a batch of B latents is B evaluations). Text encoding and the VAE are not counted (they are a few passes
per image, against hundreds of UNet rows).

Two ways to the same number, and the tests hold them equal (tests/test_costs.py):

* **closed forms** (``*_evaluations``), read off the experiment code: e.g. relation testing makes
  ``n_samples × (unique candidates + 1)`` evaluations per example (every candidate and the null prompt once per
  draw, docs/architecture.md#shared-noise);
* **counts** (``count_*`` of :mod:`infodecomp.experiments.cost_counts`), which run the experiments' own code
  paths (the functions the notebooks call) on a small model and dataset and count the rows that reach
  ``model.unet`` (``cost_counts.UNetCounter``, a forward pre-hook). A count at small sizes equals the closed
  form at those sizes, so the closed form at the paper's sizes is what the same code would spend on SD 2.1-base,
  without running it.

:func:`paper_plan` evaluates the closed forms at the paper's sizes (dataset sizes of docs/protocol.md#data,
draws and steps of each experiment's protocol section), and notebook 09's preset (beyond the paper). Each row also
says how its work splits over the processes of a launch (the examples of its sharded loops, and the aligned batch a
process takes whole); :func:`critical_path` is what the slowest process computes at a number of GPUs (the largest
shard of each sharded loop, plus what every process computes whole, plus that again in the plain run after the
sharded phase). Printing it is repository tooling, outside the package:
``tools/cost_plan.py`` renders it as a table with GPU-hours at an evaluations-per-second figure measured by
``benchmarks/sd21_throughput.py``, and ``scripts/cost_plan.py`` keeps docs/running.md's block up to date.

:func:`corrected_plan` is the same plan under the corrected protocol with the fitted log-SNR sampling, precision
targets and adaptive relation testing (issue 27): the expected evaluations at the accuracy of the faithful run.
Each row names the part of its cost a measured ratio divides (:attr:`PlanRow.savable`, :attr:`PlanRow.saving`): the
information estimates' draws by the variance reduction per evaluation of the best sampling scheme (with a precision
target at the faithful run's standard error, an estimate stops after 1/ratio of the draws), relation testing by the
adaptive rule's evaluations ratio at unchanged decisions. The ratios are data (measured on shapes-tiny by the
benchmarks, read from benchmarks/measured_ratios.json by ``tools/cost_plan.py``), never constants here; a part
without a measured ratio (attention passes, DAAM, the intervention's ODE solves, generation) keeps its count.

This module imports only the standard library (``scripts/cost_plan.py`` imports it without torch); the counts,
which import torch and the experiments, are in :mod:`infodecomp.experiments.cost_counts`.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

__all__ = [
    "PAPER_SIZES", "ARO_CANDIDATES", "LOCALIZATION_STEPS",
    "relation_testing_evaluations", "heatmap_evaluations", "localization_evaluations",
    "intervention_evaluations", "image_level_evaluations", "pid_evaluations", "generation_evaluations",
    "NOTEBOOK_BATCH", "PID_PRESET", "largest_shard",
    "PlanRow", "paper_plan", "plan_total", "critical_path", "gpu_hours",
    "SAVING_KEYS", "CorrectedRow", "corrected_plan", "corrected_total",
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
#: Rows per aligned batch of notebooks 04, 05, 07 and 09 (their ``BATCH_SIZE``): the unit a process of a launch
#: takes whole (their draws are seeded per batch).
NOTEBOOK_BATCH = 8
#: Notebook 09 in the paper preset (notebooks/paper_parameters.yml): 4 gender × occupation prompts, 25 images
#: generated per prompt (50 DDIM steps, guidance 7.5), 100 draws per image.
PID_PRESET = {"prompts": 4, "images_per_prompt": 25, "generation_steps": 50, "guidance": True, "n_samples": 100}
#: The measured ratios (keys of benchmarks/measured_ratios.json, in order of preference) that divide each kind of
#: saving: relation testing per dataset by the adaptive rule on its ShapesWorld twin (the fitted proposal's run
#: first), the heat maps' draws by the pixel CMI maps' best sampling, image-level values by image-level i^o's.
SAVING_KEYS: dict[str, tuple[str, ...]] = {
    **{f"relation_testing:{d}": (f"adaptive_relation_testing/fitted/{d}", f"adaptive_relation_testing/paper/{d}")
       for d in ("vg-relation", "vg-attribution", "coco-order", "flickr-order")},
    "pixel_maps": ("estimator_efficiency/shapes-tiny/pixel_info_o",),
    "image_level": ("estimator_efficiency/shapes-tiny/info_o",),
}

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


def pid_evaluations(n_rows: int, n_samples: int = 100) -> int:
    """PID of two words (``pid.run``, notebook 09): per row the 4 conditions (context, + word 1, + word 2, whole
    prompt) at each of ``n_samples`` shared draws."""
    return 4 * _n("n_samples", n_samples, 1) * _n("n_rows", n_rows)


def generation_evaluations(n_images: int, steps: int = 50, *, guidance: bool = True) -> int:
    """Images generated for notebook 09's ``CASES`` (``pid.prompt_cases``, ``editing.sample``): ``steps`` DDIM
    steps per image, each 2 rows with classifier-free guidance (unconditional and conditional)."""
    return _n("n_images", n_images) * _n("steps", steps, 1) * (2 if guidance else 1)


# ─────────────────────────────────────────────── the plan ───────────────────────────────────────────────

def largest_shard(n_rows: int, num_processes: int, block: int = 1) -> int:
    """Rows of the largest shard when ``n_rows`` rows are split over ``num_processes`` processes in aligned blocks
    of ``block`` rows, process ``p`` taking blocks ``p, p + P, …`` (``infodecomp.results.shard_indices``)."""
    n, P, block = _n("n_rows", n_rows), _n("num_processes", num_processes, 1), _n("block", block, 1)
    n_blocks = -(-n // block)
    best = 0
    for p in range(min(P, n_blocks)):
        blocks = range(p, n_blocks, P)
        rows = len(blocks) * block - ((n_blocks * block - n) if blocks[-1] == n_blocks - 1 else 0)
        best = max(best, rows)
    return best


@dataclass(frozen=True)
class PlanRow:
    """One line of the cost plan."""

    notebook: str       # e.g. "02_relation_testing"
    part: str           # what is computed, at which scale
    evaluations: int    # UNet evaluations (64×64 latents, 77 tokens)
    formula: str        # how the number is made up
    new: bool = True    # False: reuses another notebook's stores (not added to the total)
    loops: tuple[int, ...] = ()  # rows of each sharded loop of this part, run one after another (): none
    per_row: int = 0    # evaluations per row of those loops; the rest of ``evaluations`` does not shard
    block: int = 1      # rows per aligned batch: what one process takes whole
    savable: int = 0    # evaluations of this row that a measured ratio divides under the corrected protocol
    saving: str = ""    # which saving (a key of SAVING_KEYS); "": none measured, the faithful count stays

    def __post_init__(self):
        if self.per_row * sum(self.loops) > self.evaluations:
            raise ValueError(f"{self.notebook}: the sharded loops ({self.per_row} × {sum(self.loops)}) exceed the "
                             f"row's {self.evaluations} evaluations")
        if self.savable > self.evaluations or (self.savable > 0) != bool(self.saving):
            raise ValueError(f"{self.notebook}: savable {self.savable} must be ≤ the row's {self.evaluations} "
                             f"evaluations and come with a saving (got {self.saving!r})")
        if self.saving and self.saving not in SAVING_KEYS:
            raise ValueError(f"{self.notebook}: unknown saving {self.saving!r}; expected one of {list(SAVING_KEYS)}")

    @property
    def unsharded(self) -> int:
        """Evaluations every process computes whole (the remainder that does not shard)."""
        return self.evaluations - self.per_row * sum(self.loops)

    def critical_path(self, num_gpus: int) -> int:
        """Evaluations of the slowest process with ``num_gpus`` GPUs: one GPU computes everything; with more, the
        largest shard of each loop plus the unsharded remainder, twice (every process of the sharded launch
        computes it, and the plain run after it again). 0 for a row that reuses another's stores."""
        g = _n("num_gpus", num_gpus, 1)
        if not self.new:
            return 0
        if g == 1:
            return self.evaluations
        shards = sum(largest_shard(n, g, self.block) for n in self.loops)
        return self.per_row * shards + 2 * self.unsharded


def paper_plan() -> list[PlanRow]:
    """The cost of every notebook that runs the UNet, at the paper's scale (closed forms above, the settings of
    docs/protocol.md), and notebook 09 in its paper preset (:data:`PID_PRESET`). Notebook 03 re-reads notebook
    02's VG stores (same settings → the same store), so it adds nothing when run after 02; its own cost is listed
    with ``new=False``. Notebooks 00, 01 and 08 are not part of the paper's protocol (the embedded model's sanity
    check, the analytic estimators, the interactive probe)."""
    s = PAPER_SIZES
    B = NOTEBOOK_BATCH
    rows = []
    for d in ("vg-relation", "vg-attribution", "coco-order", "flickr-order"):
        m = ARO_CANDIDATES[d]
        rows.append(PlanRow("02_relation_testing", f"{d}: {s[d]:,} examples × {m} captions, 100 draws",
                            relation_testing_evaluations(s[d], m, 100), f"{s[d]:,} × 100 × ({m} + 1)",
                            loops=(s[d],), per_row=relation_testing_evaluations(1, m, 100),
                            savable=relation_testing_evaluations(s[d], m, 100), saving=f"relation_testing:{d}"))
    vg = sum(relation_testing_evaluations(s[d], 2, 100) for d in ("vg-relation", "vg-attribution"))
    rows.append(PlanRow("03_relation_types", "VG-R + VG-A: the stores of notebook 02 (0 new evaluations after it)",
                        vg, f"({s['vg-relation']:,} + {s['vg-attribution']:,}) × 100 × 3", new=False,
                        loops=(s["vg-relation"], s["vg-attribution"]), per_row=300))
    n04 = s["coco100-it"] + s["coco-wl"]
    rows.append(PlanRow("04_mi_cmi_heatmaps", f"COCO100-IT + COCO-WL: {n04} rows, 100 draws, 100 attention passes",
                        heatmap_evaluations(n04, 100, 100), f"{n04} × (4 × 100 + 100)",
                        loops=(s["coco100-it"], s["coco-wl"]), per_row=heatmap_evaluations(1, 100, 100), block=B,
                        savable=n04 * 4 * 100, saving="pixel_maps"))
    for n in LOCALIZATION_STEPS:
        rows.append(PlanRow("05_word_localization",
                            f"COCO-IT: {s['coco-it']:,} rows, N = {n} (CMI + MI draws, Attn+Info passes, DAAM steps)",
                            localization_evaluations(s["coco-it"], n, n, n), f"{s['coco-it']:,} × (4N + N + 2N)",
                            loops=(s["coco-it"],), per_row=localization_evaluations(1, n, n, n), block=B,
                            savable=s["coco-it"] * 4 * n, saving="pixel_maps"))
    rows.append(PlanRow("06_prompt_intervention", f"COCO100-IT: {s['coco100-it']} images, 100 σ, 20 λ × 120 noise",
                        intervention_evaluations(s["coco100-it"], 100, 20, 120),
                        f"{s['coco100-it']} × (4 × 2 × 99 + 7 × 20 × 120)",
                        loops=(s["coco100-it"],), per_row=intervention_evaluations(1, 100, 20, 120)))
    rows.append(PlanRow("07_image_level_information",
                        f"COCO100-IT + COCO-WL: {n04} rows, 200 draws; C.2: 200 λ × 50 noise, one row",
                        image_level_evaluations(n04, 200, 200, 50), f"{n04} × 4 × 200 + 2 × 200 × 50",
                        loops=(s["coco-wl"], s["coco100-it"]), per_row=heatmap_evaluations(1, 200, attention=False),
                        block=B, savable=n04 * 4 * 200, saving="image_level"))
    p = PID_PRESET
    n09 = p["prompts"] * p["images_per_prompt"]
    rows.append(PlanRow("09_pid_two_words",
                        f"beyond the paper: {p['prompts']} prompts × {p['images_per_prompt']} generated images, "
                        f"{p['n_samples']} draws, 4 conditions",
                        pid_evaluations(n09, p["n_samples"]), f"{n09} × 4 × {p['n_samples']}",
                        loops=(n09,), per_row=pid_evaluations(1, p["n_samples"]), block=B,
                        savable=pid_evaluations(n09, p["n_samples"]), saving="image_level"))
    rows.append(PlanRow("09_pid_two_words",
                        f"generating those {n09} images: {p['generation_steps']} DDIM steps, guidance (every "
                        "process generates all)",
                        generation_evaluations(n09, p["generation_steps"], guidance=p["guidance"]),
                        f"{n09} × {p['generation_steps']} × 2"))
    return rows


def plan_total(rows: Sequence[PlanRow]) -> int:
    """Evaluations of the rows that are new (``new=True``): what running every notebook once costs."""
    return sum(r.evaluations for r in rows if r.new)


def critical_path(rows: Sequence[PlanRow], num_gpus: int) -> int:
    """Evaluations on the critical path with ``num_gpus`` GPUs: the notebooks run one after another, each sharded
    loop split over the GPUs (:meth:`PlanRow.critical_path`). Equals :func:`plan_total` at one GPU."""
    return sum(r.critical_path(num_gpus) for r in rows)


def gpu_hours(evaluations: int, evals_per_second: float) -> float:
    """Hours at ``evals_per_second`` UNet evaluations per second on one GPU."""
    _n("evaluations", evaluations)
    if isinstance(evals_per_second, bool) or not isinstance(evals_per_second, numbers.Real) \
            or not math.isfinite(evals_per_second) or evals_per_second <= 0:
        raise ValueError(f"evals_per_second must be a finite number > 0, got {evals_per_second!r}")
    return evaluations / float(evals_per_second) / 3600.0


# ──────────────────────────────────────── the corrected protocol's plan ────────────────────────────────────────

@dataclass(frozen=True)
class CorrectedRow:
    """One line of the corrected protocol's plan: a :class:`PlanRow` and its expected evaluations."""

    row: PlanRow
    evaluations: int          # expected UNet evaluations at the accuracy of the faithful run
    ratio_key: str | None     # the measured ratio that divided ``row.savable`` (None: none measured)
    ratio: float | None


def corrected_plan(rows: Sequence[PlanRow], ratios: Mapping[str, float]) -> list[CorrectedRow]:
    """Each row's expected evaluations under the corrected protocol: ``evaluations − savable + ⌈savable / r⌉``,
    r the first ratio of ``SAVING_KEYS[row.saving]`` present in ``ratios`` (``{key: ratio}``, measured; see the
    module's docstring), or the faithful count where none is. Ratios below 1 count as measured (a scheme that
    costs more is not hidden)."""
    out = []
    for r in rows:
        key = next((k for k in SAVING_KEYS.get(r.saving, ()) if k in ratios), None)
        if key is None:
            out.append(CorrectedRow(r, r.evaluations, None, None))
            continue
        ratio = ratios[key]
        if isinstance(ratio, bool) or not isinstance(ratio, numbers.Real) or not math.isfinite(ratio) or ratio <= 0:
            raise ValueError(f"ratio {key!r} must be a finite number > 0, got {ratio!r}")
        out.append(CorrectedRow(r, r.evaluations - r.savable + math.ceil(r.savable / float(ratio)), key,
                                float(ratio)))
    return out


def corrected_total(rows: Sequence[CorrectedRow]) -> int:
    """Expected evaluations of the rows that are new: every notebook once under the corrected protocol."""
    return sum(c.evaluations for c in rows if c.row.new)
