"""Relation testing: the cost and the precision of scoring all candidates on shared noise.

Two ways to score the M candidate captions of one example against the null prompt:

* **shared** (:func:`infodecomp.experiments.relation_testing.score_candidates`, the reference's structure):
  K (λ, ε) draws, every candidate and the null prompt evaluated on the same noisy latent, the null once per draw
  → K·(M+1) denoiser rows per example.
* **naive**: each candidate scored on its own by ``pointwise_information(cond_m, null)`` with its own draws
  → 2·K·M rows (the null re-evaluated for every candidate).

Printed per setup and number of candidates M:

1. throughput at the same K: examples per second, denoiser calls and rows per example, and the ratios;
2. precision at EQUAL denoiser rows: the naive loop gets K·(M+1)/(2M) draws per candidate; over ``--repeats``
   independent runs per example, the spread (sd) of the score difference s_true − s_false (false = the first
   rival) for i^o and for −MMSE, and the ratio naive / shared (> 1: shared noise is more precise). Also the
   shared scorer's own paired standard error against that spread (calibration, ≈ 1 expected).

Setups: ``analytic`` (exact Gaussian-mixture denoiser, M = 2 and 4), ``tiny`` (random tiny Stable Diffusion on
ShapesWorld twins: meaningless numbers, real shapes), ``shapes-tiny`` (the embedded model, if present).

    OMP_NUM_THREADS=1 python benchmarks/relation_testing.py                        # analytic + tiny
    OMP_NUM_THREADS=1 python benchmarks/relation_testing.py --setups shapes-tiny --examples 4 --repeats 12
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
import torch

from infodecomp import analytic
from infodecomp.experiments import relation_testing as rt
from infodecomp.logsnr import LogSNRSampling


class Counter:
    """Counts denoiser calls and rows."""

    def __init__(self, inner):
        self.inner, self.calls, self.rows = inner, 0, 0

    def __call__(self, z, logsnr, cond):
        self.calls += 1
        self.rows += z.shape[0]
        return self.inner(z, logsnr, cond)


def naive_scores(denoiser, x, conds, null, *, n_samples, sampling, generator):
    """Each candidate scored alone on its own draws, the null prompt re-evaluated with it (2 rows per draw):
    returns (i^o [M], −MMSE [M]) as float arrays."""
    from infodecomp.estimators import information_scores

    io, mm = [], []
    for m in range(conds.shape[0]):
        s = information_scores(denoiser, x[None], conds[m][None, None], null[None], n_samples=n_samples,
                               sampling=sampling, generator=generator)
        io.append(float(s.orthogonal[0, 0]))
        mm.append(-float(s.mmse[0, 0]))
    return np.array(io), np.array(mm)


def examples_analytic(M: int, n: int, seed: int):
    world = analytic.MixtureWorld.two_factor()
    g = torch.Generator().manual_seed(seed)
    x, labels = world.sample(n, generator=g)
    out = []
    for b in range(n):
        true = labels[b]
        others = [c for c in world.component_labels if not torch.equal(c, true)][:M - 1]
        out.append((x[b], torch.stack([*others, true]), world.null(1)[0], M - 1))
    return world, out


def examples_model(model, dataset: str, n: int, seed: int):
    data = rt.load_dataset(dataset, n, seed=seed)
    null = model.encode_prompts([""])[0]
    out = []
    for i in range(n):
        r = data[i]
        x = model.encode_images([r["image"]], resize="bicubic", size=model.resolution)[0]
        out.append((x, model.encode_prompts(list(r["captions"])), null, int(r["true_index"])))
    return model.denoiser, out


def bench(name, denoiser, examples, *, n_samples, repeats, sampling):
    M = examples[0][1].shape[0]
    # 1. throughput at equal K
    timing = {}
    x0, c0, n0, _ = examples[0]  # warm-up (first-call overheads), not timed
    rt.score_candidates(denoiser, x0, c0, n0, n_samples=n_samples, blocks=10, sampling=sampling)
    naive_scores(denoiser, x0, c0, n0, n_samples=n_samples, sampling=sampling, generator=None)
    for kind in ("shared", "naive"):
        c = Counter(denoiser)
        t0 = time.perf_counter()
        for b, (x, conds, null, t) in enumerate(examples):
            g = torch.Generator().manual_seed(b)
            if kind == "shared":
                rt.score_candidates(c, x, conds, null, n_samples=n_samples, blocks=10, sampling=sampling, generator=g)
            else:
                naive_scores(c, x, conds, null, n_samples=n_samples, sampling=sampling, generator=g)
        dt = time.perf_counter() - t0
        timing[kind] = (len(examples) / dt, c.calls / len(examples), c.rows / len(examples))
    s, n_ = timing["shared"], timing["naive"]
    print(f"\n[{name}] M = {M} candidates, K = {n_samples} draws, {len(examples)} examples")
    print(f"  shared: {s[0]:8.2f} examples/s  {s[1]:6.1f} denoiser calls/example  {s[2]:7.0f} rows/example")
    print(f"  naive : {n_[0]:8.2f} examples/s  {n_[1]:6.1f} denoiser calls/example  {n_[2]:7.0f} rows/example")
    print(f"  speed-up shared/naive: {s[0] / n_[0]:.2f}x  (rows ratio naive/shared {n_[2] / s[2]:.2f} = 2M/(M+1) "
          f"= {2 * M / (M + 1):.2f})")

    # 2. precision of s_true − s_false at equal denoiser rows
    k_naive = max(1, round(n_samples * (M + 1) / (2 * M)))
    ratios = {"info_o": [], "mmse": []}
    calib = []
    for b, (x, conds, null, t) in enumerate(examples):
        rival = 0 if t != 0 else 1
        d = {("shared", m): [] for m in ratios} | {("naive", m): [] for m in ratios}
        ses = []
        for r in range(repeats):
            g = torch.Generator().manual_seed(10_000 * (b + 1) + r)
            sc = rt.score_candidates(denoiser, x, conds, null, n_samples=n_samples, blocks=10, sampling=sampling,
                                     generator=g)
            for m in ratios:
                v = sc.score(m)
                d[("shared", m)].append(float(v[t] - v[rival]))
            ses.append(sc.difference_stderr("info_o", t, rival))
            io, mm = naive_scores(denoiser, x, conds, null, n_samples=k_naive, sampling=sampling, generator=g)
            d[("naive", "info_o")].append(io[t] - io[rival])
            d[("naive", "mmse")].append(mm[t] - mm[rival])
        for m in ratios:
            sd_s, sd_n = np.std(d[("shared", m)], ddof=1), np.std(d[("naive", m)], ddof=1)
            ratios[m].append((sd_s, sd_n))
        calib.append(statistics.mean(ses) / np.std(d[("shared", "info_o")], ddof=1))
    print(f"  equal rows ({n_samples * (M + 1)} per example; naive gets {k_naive} draws per candidate), "
          f"{repeats} repeats per example:")
    for m, rows in ratios.items():
        sd_s = np.array([a for a, _ in rows])
        sd_n = np.array([b for _, b in rows])
        print(f"    {m:7s} sd(s_true − s_false): shared median {np.median(sd_s):.4g}, "
              f"naive median {np.median(sd_n):.4g}; "
              f"naive/shared per example: median {np.median(sd_n / sd_s):.2f} (min {np.min(sd_n / sd_s):.2f}, "
              f"max {np.max(sd_n / sd_s):.2f})")
    print(f"    shared scorer's reported paired stderr / observed sd (i^o): median {np.median(calib):.2f}")


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--setups", nargs="*", default=["analytic", "tiny"], choices=["analytic", "tiny", "shapes-tiny"])
    ap.add_argument("--examples", type=int, default=6)
    ap.add_argument("--n-samples", type=int, default=20, help="draws per example of the shared scorer (multiple of 10)")
    ap.add_argument("--repeats", type=int, default=20)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    torch.set_grad_enabled(False)
    sampling = LogSNRSampling()  # corrected: clip 3
    print(f"torch threads: {torch.get_num_threads()}; log-SNR: {sampling}")
    for setup in args.setups:
        if setup == "analytic":
            for M in (2, 4):
                den, ex = examples_analytic(M, args.examples, args.seed)
                bench("analytic mixture world", den, ex, n_samples=args.n_samples, repeats=args.repeats,
                      sampling=sampling)
            continue
        if setup == "tiny":
            from infodecomp.models import Model
            from infodecomp.testing import tiny_pipeline

            model = Model(tiny_pipeline(), name="tiny")
        else:
            from infodecomp.models import load_model

            model = load_model("shapes-tiny")
        for ds in ("vg-relation", "coco-order"):
            den, ex = examples_model(model, ds, args.examples, args.seed)
            bench(f"{setup} / {ds} twin", den, ex, n_samples=args.n_samples, repeats=args.repeats, sampling=sampling)


if __name__ == "__main__":
    main()
