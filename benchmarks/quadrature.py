"""Standard error of each log-SNR quadrature rule at equal denoiser evaluations, on the analytic worlds.

For one example of each world (``infodecomp.experiments.estimator_studies.standard_cases``) and each rule × noise
option, the estimator is run ``--repeats`` times independently with the same number of denoiser evaluations per
condition (``--evaluations`` = log-SNR draws × noise draws per λ). Printed side by side, per estimator:

* ``sd/paper``  — the actual standard error (spread of the repeats) relative to the paper's rule, i.i.d.
  truncated logistic with one noise draw per λ (< 1: better);
* ``calib``     — reported stderr (root-mean-square) / actual spread (≈ 1: the reported error is honest);
* ``s/o``       — actual standard error of i^s over that of i^o (same rule and noise): > 1 means the
  orthogonal estimator is the less noisy one;
* ``bias z``    — (mean of the repeats − exact estimand) / its standard error (|z| < ~3 expected).

Noise options: ``iid`` (one ε per λ) and ``antithetic`` (ε and −ε at the same λ, half as many λ).

    OMP_NUM_THREADS=1 python benchmarks/quadrature.py                      # all worlds, ≈ 1–2 minutes
    OMP_NUM_THREADS=1 python benchmarks/quadrature.py --cases gaussian_cmi --repeats 1000
"""

from __future__ import annotations

import argparse
import time

import torch
from tqdm.auto import tqdm

from infodecomp.experiments import estimator_studies

RULES = ("logistic", "uniform", "logistic_qmc", "uniform_qmc")
NOISE = ("iid", "antithetic")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--cases", nargs="+", default=["gaussian_mi", "gaussian_cmi", "mixture_mi", "mixture_cmi",
                                                  "image_mi"], help="analytic cases (standard_cases names)")
    p.add_argument("--evaluations", type=int, default=200, help="denoiser evaluations per condition and estimate")
    p.add_argument("--repeats", type=int, default=400, help="independent estimates of the example")
    p.add_argument("--image-size", type=int, default=16, help="side of the image-shaped world (4 channels)")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args()

    cases = estimator_studies.standard_cases(args.seed, image_size=args.image_size)
    gen = torch.Generator().manual_seed(args.seed)
    print(f"evaluations per condition per estimate: {args.evaluations}; repeats: {args.repeats}; "
          f"log-SNR loc 1, scale 2, clip 3 (paper defaults); one example per world (seed {args.seed})\n")
    for name in tqdm(args.cases, desc="cases"):
        case = cases[name]
        x, cond, ref = case.sample(1, generator=gen)
        t0 = time.perf_counter()
        rows = estimator_studies.variance_study(case, x, cond, ref, evaluations=args.evaluations, rules=RULES,
                                                noise=NOISE, n_repeats=args.repeats, generator=gen)
        elapsed = time.perf_counter() - t0
        by = {(r["rule"], r["noise"], r["estimator"]): r for r in rows}
        paper = by[("logistic", "iid", "standard")], by[("logistic", "iid", "orthogonal")]
        dims = int(x[0].numel())
        print(f"== {name} (d = {dims}; paper's rule: sd(i^s) = {paper[0]['sd']:.4f}, sd(i^o) = {paper[1]['sd']:.4f} "
              f"nats; {elapsed:.1f} s)")
        print(f"{'rule':>13} {'noise':>10} | {'i^s sd/paper':>12} {'calib':>6} {'bias z':>6} | "
              f"{'i^o sd/paper':>12} {'calib':>6} {'bias z':>6} | {'s/o':>5}")
        for rule in RULES:
            for nz in NOISE:
                s, o = by[(rule, nz, "standard")], by[(rule, nz, "orthogonal")]
                print(f"{rule:>13} {nz:>10} | {s['sd_ratio']:12.3f} {s['stderr'] / s['sd']:6.2f} {s['bias_z']:6.2f} | "
                      f"{o['sd_ratio']:12.3f} {o['stderr'] / o['sd']:6.2f} {o['bias_z']:6.2f} | {s['s_over_o']:5.2f}")
        print()


if __name__ == "__main__":
    main()
