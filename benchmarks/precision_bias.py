"""How much reduced precision moves the estimates: i^o per image and relation-testing decisions, per dtype.

The same images, prompts and (log-SNR, noise) draws go through shapes-tiny loaded in float32 (the reference),
bfloat16 and float16; every model encodes its own latents and prompts, as a run in that dtype would. Printed:

* **image-level MI, i^o** (the prompt against the null prompt) on ``--images`` images of the ShapesWorld twin of
  COCO-IT: the float32 mean, and per dtype the mean difference to float32, its range over images, the relative
  difference and on how many images it is positive. i^o = ½ E w ‖ε̂(z|y) − ε̂(z|∅)‖² is a squared difference of
  two predictions, so rounding noise in them adds a positive bias.
* **relation-testing decisions** (VG-Relation twin, ``--relation-rows`` rows, the notebooks' faithful
  settings with ``--relation-samples`` draws): how many of the i^o, i^s and −MMSE choices differ from float32.
* CPU seconds per dtype (float16 has no fast kernels on a CPU: it runs on ``--fp16-images`` images only, with
  ``--fp16-samples`` draws, and is left out of relation testing unless ``--fp16-relations``).

    PYTHONPATH=. OMP_NUM_THREADS=1 python benchmarks/precision_bias.py     # ≈ 2 minutes on one CPU thread

The numbers are quoted in docs/models.md#precision and in :mod:`infodecomp.precision`.
"""

from __future__ import annotations

import argparse
import copy
import time

import numpy as np
import torch


def _mi_o(model, rows, n_samples: int, seed: int) -> np.ndarray:
    """[N] image-level i^o(x; caption ‖ ∅) in nats, one seeded generator per image."""
    from infodecomp.estimators import pointwise_information

    x = model.encode_images([r["image"] for r in rows], resize="bicubic", size=model.resolution)
    cond = model.encode_prompts([r["caption"] for r in rows])
    null = model.encode_prompts([""] * len(rows))
    out = []
    for i in range(len(rows)):
        g = torch.Generator().manual_seed(seed + i)
        est = pointwise_information(model.denoiser, x[i:i + 1], cond[i:i + 1], null[i:i + 1], n_samples=n_samples,
                                    generator=g)
        out.append(float(est.value[0]))
    return np.array(out)


def _decisions(model, rows, n_samples: int) -> dict[str, np.ndarray]:
    """The chosen caption per row for i^o, i^s and −MMSE (faithful settings, per-example seeds)."""
    from infodecomp.experiments import relation_testing as rt

    scored = rt.score_rows(model, rows, rt.RelationSettings(protocol="faithful", n_samples=n_samples), seed=0)
    return {m: np.array([int(np.argmax(np.asarray(r[m]) * (-1 if m == "mmse" else 1))) for r in scored])
            for m in ("info_o", "info_s", "mmse")}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--images", type=int, default=14)
    p.add_argument("--samples", type=int, default=64, help="log-SNR draws per image for i^o")
    p.add_argument("--relation-rows", type=int, default=24)
    p.add_argument("--relation-samples", type=int, default=50)
    p.add_argument("--fp16-images", type=int, default=3)
    p.add_argument("--fp16-samples", type=int, default=16)
    p.add_argument("--fp16-relations", action="store_true")
    p.add_argument("--seed", type=int, default=0)
    a = p.parse_args()

    from infodecomp.data.shapes import twin
    from infodecomp.experiments import relation_testing as rt
    from infodecomp.models import Model, load_model

    base = load_model("shapes-tiny")
    images = [twin("coco-it", a.images, seed=a.seed)[i] for i in range(a.images)]
    relation_rows = list(rt.load_dataset("vg-relation", a.relation_rows, seed=a.seed))
    print(f"shapes-tiny ({base.version}); {a.images} images × {a.samples} draws of i^o; "
          f"{a.relation_rows} VG-Relation twin rows × {a.relation_samples} draws; torch threads "
          f"{torch.get_num_threads()}")
    ref_mi, ref_dec, ref_mi16 = None, None, None
    print(f"{'dtype':>9} | {'mean i^o':>9} | {'Δ mean':>8} | {'Δ min':>7} | {'Δ max':>7} | {'Δ rel':>7} | "
          f"{'Δ > 0':>6} | flips i^o / i^s / −MMSE | CPU s")
    for dtype in (torch.float32, torch.bfloat16, torch.float16):
        model = base if dtype == torch.float32 else Model(copy.deepcopy(base.pipeline), name=base.name,
                                                          digest=base.digest,
                                                          cross_attention_tokens=base.cross_attention_tokens
                                                          ).to(dtype=dtype)
        t0 = time.process_time()
        fp16 = dtype == torch.float16
        rows = images[:a.fp16_images] if fp16 else images
        mi = _mi_o(model, rows, a.fp16_samples if fp16 else a.samples, a.seed)
        dec = _decisions(model, relation_rows, a.relation_samples) if (not fp16 or a.fp16_relations) else None
        secs = time.process_time() - t0
        if fp16:  # its own float32 reference on the same images and draws (not timed)
            ref = _mi_o(base, rows, a.fp16_samples, a.seed)
        else:
            ref = mi if ref_mi is None else ref_mi[:len(rows)]
        if dtype == torch.float32:
            ref_mi, ref_dec = mi, dec
        d = mi - ref
        flips = " / ".join(f"{int((dec[m] != ref_dec[m]).sum()):>2} of {len(relation_rows)}"
                           for m in ("info_o", "info_s", "mmse")) if dec is not None else "(not run)"
        print(f"{str(dtype).replace('torch.', ''):>9} | {mi.mean():9.3f} | {d.mean():+8.3f} | {d.min():+7.3f} | "
              f"{d.max():+7.3f} | {d.mean() / ref.mean():+7.2%} | {int((d > 0).sum()):>2} of {len(d):<2} | "
              f"{flips:>23} | {secs:7.1f}")
    print("Δ: the dtype's i^o minus float32's on the same images and draws (nats); float16 against float32 on its "
          f"first {a.fp16_images} images with {a.fp16_samples} draws. CPU s: process CPU time of the dtype's own "
          "work (not wall time, so other load on the machine does not count); float16 does less work than the "
          "others, see its row's images and draws.")


if __name__ == "__main__":
    main()
