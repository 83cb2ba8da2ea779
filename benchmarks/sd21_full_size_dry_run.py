"""One item per notebook on the full-size SD 2.1-base UNet (random weights, 865 M parameters), on a CPU.

    OMP_NUM_THREADS=1 PYTHONPATH=. python benchmarks/sd21_full_size_dry_run.py   # every notebook's item (~9 min here)
    python benchmarks/sd21_full_size_dry_run.py --only 02 06                # some of them
    python benchmarks/sd21_full_size_dry_run.py --device cuda               # on a GPU

``make dry-run`` runs the notebooks on pipelines of SD 2.1's *shapes* with channels ÷ 8; this runs the same code
paths — the functions of :mod:`infodecomp.experiments` that the notebooks call, most through the UNet counts of
:mod:`infodecomp.experiments.cost_counts` — once each with the fewest draws and steps they accept, on SD 2.1-base's
real UNet (:func:`infodecomp.testing.sd21_unet`: 320/640/1280/1280 channels, 64×64×4 latents, [77, 1024]
conditioning, ε-prediction, SD 2.1's scheduler). The VAE and the text encoder are the narrow ones of
:func:`infodecomp.testing.sd21_shaped_pipeline` (8× VAE, width-1024 encoder): the UNet is where the time goes.
Items are ShapesWorld twin rows (32-px images resized to 512 px). Prints, per notebook, the wall time and the
UNet evaluations (batch rows reaching the UNet, :class:`~infodecomp.experiments.cost_counts.UNetCounter`), and checks
every output is finite. Random weights: speed and code paths, never quality.

Measured once on this project's CPU machine (2 cores, the other one busy with another job; ``OMP_NUM_THREADS=1``,
``nice -n 10``, float32, torch 2.13, 2 December 2026), 9 min 18 s in all (UNet built in 21.8 s, 866 M parameters)::

    00 word reading (attention mass, 1 scene, 1 log-SNR)                               24.9 s    1 UNet evaluation
    02 relation testing (02/03: 1 VG-Attribution example, 1 draw)                       41.0 s    3
    04 MI/CMI heatmaps (1 COCO-IT row, 1 draw, 1 attention pass)                        52.3 s    5
    05 word localization (1 row, 1 draw, 1 attention pass, 1 DAAM step each way)        77.2 s    7
    06 prompt intervention (1 image, 2 Karras sigmas each way, 1 log-SNR x 1 noise)    164.5 s   15
    07 image-level information (1 row, 1 draw; denoising process 1 x 1)                 65.6 s    6
    08 interactive probe (1 click: maps at 2 draws, 2 attention passes)                107.2 s   10
    total                                                                              532.7 s   47 (11.3 s each)

About 11 s per evaluation at 64×64 on one core (the first call, in 00, 25 s); every output was finite.
"""

from __future__ import annotations

import argparse
import math
import sys
import time

#: The one run here (docstring): notebook -> (seconds, UNet evaluations).
MEASURED: dict[str, tuple[float, int]] = {"00": (24.9, 1), "02": (41.0, 3), "04": (52.3, 5), "05": (77.2, 7),
                                          "06": (164.5, 15), "07": (65.6, 6), "08": (107.2, 10)}

NOTEBOOKS = {
    "00": "word reading (attention mass, 1 scene, 1 log-SNR)",
    "02": "relation testing (02/03: 1 VG-Attribution example, 1 draw)",
    "04": "MI/CMI heatmaps (1 COCO-IT row, 1 draw, 1 attention pass)",
    "05": "word localization (1 row, 1 draw, 1 attention pass, 1 DAAM step each way)",
    "06": "prompt intervention (1 image, 2 Karras sigmas each way, 1 log-SNR x 1 noise)",
    "07": "image-level information (1 row, 1 draw; denoising process 1 grid point x 1 noise)",
    "08": "interactive probe (1 click: maps at 2 draws, 2 attention passes)",
}


def build_model(device: str = "cpu"):
    """A :class:`~infodecomp.models.Model` with the full-size random SD 2.1-base UNet and the narrow VAE / text
    encoder of the SD 2.1-shaped pipelines."""
    import torch
    from diffusers import StableDiffusionPipeline

    from infodecomp.models import Model
    from infodecomp.testing import sd21_shaped_text_encoder, sd21_shaped_vae, sd21_unet, sd_scheduler
    from infodecomp.tokenizer import load_clip_tokenizer

    pipe = StableDiffusionPipeline(vae=sd21_shaped_vae(seed=0), text_encoder=sd21_shaped_text_encoder(seed=1),
                                   tokenizer=load_clip_tokenizer(), unet=sd21_unet(seed=2),
                                   scheduler=sd_scheduler("epsilon"), safety_checker=None, feature_extractor=None,
                                   requires_safety_checker=False)
    pipe.set_progress_bar_config(disable=True)
    model = Model(pipe, name="sd21-base-random")
    if device != "cpu":
        model.to(torch.device(device))
    return model


def _finite(obj, what: str) -> None:
    """Raise if any float tensor / array / number in ``obj`` (nested dicts, lists, dataclasses) is not finite."""
    import numpy as np
    import torch

    if isinstance(obj, dict):
        items = list(obj.values())
    elif isinstance(obj, (list, tuple)):
        items = list(obj)
    elif hasattr(obj, "__dataclass_fields__"):
        items = [getattr(obj, k) for k in obj.__dataclass_fields__]
    else:
        items = []
    for item in items:
        _finite(item, what)
    bad = ((isinstance(obj, torch.Tensor) and obj.is_floating_point() and not bool(torch.isfinite(obj).all()))
           or (isinstance(obj, np.ndarray) and obj.dtype.kind == "f" and not bool(np.isfinite(obj).all()))
           or (isinstance(obj, float) and not math.isfinite(obj)))
    if bad:
        raise RuntimeError(f"{what}: a non-finite output")


def run_item(number: str, model) -> int:
    """Run notebook ``number``'s item; return the UNet evaluations it made."""
    import torch

    from infodecomp.experiments import cost_counts, probe, word_reading
    from infodecomp.experiments.intervention import load_intervention_dataset
    from infodecomp.experiments.localization import load_dataset as word_rows
    from infodecomp.experiments.relation_testing import load_dataset as aro_rows

    if number == "00":
        with cost_counts.UNetCounter(model) as c:
            out = word_reading.attention_mass(model, n=1, seed=0, logsnrs=(0.0,))
        _finite(out["overall"], "attention mass")
        return c.evaluations
    if number == "02":
        return cost_counts.count_relation_testing(model, aro_rows("vg-attribution", 1, seed=0), n_samples=1)
    if number == "04":
        return cost_counts.count_heatmaps(model, word_rows("coco-it", 1, seed=0), n_samples=1, attention_samples=1)
    if number == "05":
        return cost_counts.count_localization(model, word_rows("coco-it", 1, seed=0), n_samples=1,
                                              attention_samples=1, daam_steps=1, batch_size=1)
    if number == "06":
        rows = load_intervention_dataset("shapes:coco100-it", 7, seed=0)[:1]
        return cost_counts.count_intervention(model, rows, n_steps=2, n_logsnr=1, n_noise=1)
    if number == "07":
        return cost_counts.count_image_level(model, word_rows("coco-wl", 4, seed=0)[:1], n_samples=1, n_grid=1,
                                             n_noise=1)
    if number == "08":
        row = probe.default_dataset(7, seed=0)[0]
        with cost_counts.UNetCounter(model) as c, torch.no_grad():
            res = probe.probe_word(model, row["image"], row["caption"], row["word"],
                                   probe.ProbeSettings(n_samples=2, attention_samples=2))
        _finite(res, "probe")
        return c.evaluations
    raise ValueError(f"no item for notebook {number!r}; expected one of {sorted(NOTEBOOKS)}")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--only", nargs="*", default=None, help=f"notebook numbers among {sorted(NOTEBOOKS)}")
    ap.add_argument("--device", default="cpu")
    args = ap.parse_args(argv)
    wanted = list(NOTEBOOKS) if not args.only else args.only
    unknown = [n for n in wanted if n not in NOTEBOOKS]
    if unknown:
        ap.error(f"unknown notebook numbers {unknown}; expected some of {sorted(NOTEBOOKS)} (01 has no model; 03 "
                 "runs 02's code)")
    import torch

    t0 = time.perf_counter()
    model = build_model(args.device)
    n_params = sum(p.numel() for p in model.unet.parameters())
    print(f"full-size SD 2.1-base UNet, random weights: {n_params / 1e6:.0f} M parameters, latents "
          f"{model.latent_shape}, built in {time.perf_counter() - t0:.1f} s; torch threads {torch.get_num_threads()}",
          flush=True)
    total_t, total_n = 0.0, 0
    for number in wanted:
        t = time.perf_counter()
        n = run_item(number, model)
        dt = time.perf_counter() - t
        total_t, total_n = total_t + dt, total_n + n
        print(f"{number} {NOTEBOOKS[number]}: {dt:.1f} s, {n} UNet evaluations ({dt / max(n, 1):.1f} s each)",
              flush=True)
    print(f"total: {total_t:.1f} s, {total_n} UNet evaluations ({total_t / max(total_n, 1):.1f} s each)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
