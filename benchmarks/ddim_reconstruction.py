"""How closely DDIM inversion + regeneration reconstructs real latents (the DAAM baseline's trajectory,
docs/protocol.md#daam).

For ``--rows`` ShapesWorld COCO-IT twin images (or any localization dataset), encode the image (posterior mean,
[−1, 1] input), DDIM-invert it with its caption over N steps, regenerate over the same N steps, and print the
relative L2 error ‖x̂ − x‖ / ‖x‖ per row, the largest absolute error, and the wall time, for each N.

    OMP_NUM_THREADS=1 python benchmarks/ddim_reconstruction.py                    # shapes-tiny, 4 rows, ≈ 1 min
    python benchmarks/ddim_reconstruction.py --model sd21-base --device cuda --dtype float16 --steps 50 100 200
"""

from __future__ import annotations

import argparse
import time

import torch

from infodecomp.editing import ddim_generate, ddim_invert
from infodecomp.experiments.localization import load_dataset
from infodecomp.models import load_model


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="shapes-tiny")
    ap.add_argument("--dataset", default="coco-it", help="ShapesWorld twin name, or a COCO table with --data-dir")
    ap.add_argument("--data-dir", default=None)
    ap.add_argument("--rows", type=int, default=4)
    ap.add_argument("--steps", type=int, nargs="+", default=[10, 25, 50, 100, 200])
    ap.add_argument("--guidance", type=float, default=None, help="classifier-free guidance (default none, as DAAM)")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--dtype", default="float32")
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args(argv)
    model = load_model(a.model, device=a.device, dtype=getattr(torch, a.dtype))
    data = load_dataset(a.dataset, a.rows, seed=a.seed, data_dir=a.data_dir)
    rows = [data[i] for i in range(len(data))]
    x = model.encode_images([r["image"] for r in rows], resize="bicubic", size=model.resolution)
    caps = [r["caption"] for r in rows]
    print(f"{a.model}, {len(rows)} rows of {a.dataset}, latents {tuple(x.shape)}, guidance {a.guidance}")
    for steps in a.steps:
        t0 = time.perf_counter()
        noise = ddim_invert(model, x, caps, steps, guidance_scale=a.guidance, progress=False)
        back = ddim_generate(model, noise, caps, steps, guidance_scale=a.guidance, progress=False)
        rel = (back - x).flatten(1).norm(dim=1) / x.flatten(1).norm(dim=1)
        print(f"steps {steps:4d}: relative L2 error per row {', '.join(f'{float(v):.4f}' for v in rel)}; "
              f"max |error| {float((back - x).abs().max()):.3f}; {time.perf_counter() - t0:.1f} s", flush=True)


if __name__ == "__main__":
    main()
