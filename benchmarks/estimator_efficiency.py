"""Variance per denoiser evaluation of each log-SNR sampling scheme, relative to the paper's (issue 27, item 4).

Side by side in one run, per case (a model or exact world, and a quantity) and per scheme:

* ``paper``       — i.i.d. truncated logistic (loc 1, scale 2, clip 3), one ε per λ: the reference;
* ``stratified``  — the same density, randomly shifted lattices of ``--lattice`` points (``logistic_qmc``);
* ``fitted``      — i.i.d. from a proposal fitted to the model and the quantity (:mod:`infodecomp.proposals`), by a
  pilot on separate examples;
* ``fitted+strat``— the fitted density, stratified (``fitted_qmc``);
* ``4 eps/λ``     — the paper's λ with 4 noise draws each (4× the evaluations per λ);
* ``control var.``— the paper's draws with a control variate of known mean: w(λ)·ĝ(λ) − ∫ĝ, ĝ the pilot's mean
  integrand (piecewise constant, so ∫ĝ is exact), coefficient fitted per example (scalar quantities only).

For each scheme the estimate of every example is split into independent units (one draw, or one lattice), and
``var/eval`` = Var(unit) × evaluations per unit. The printed ratio is the paper's var/eval over the scheme's, pooled
over examples (sums: the variance of the batch's total; for maps, summed over pixels): > 1 is better, and is how
many times fewer denoiser evaluations the scheme needs for the paper's standard error. ``bias z`` = the scheme's
estimate minus the reference answer over their joint standard error, as the largest |z| over examples and the mean
z² (≈ 1 when unbiased): the reference is the exact truncated answer on the analytic worlds, and a long paper run
(``--reference-draws``, separate draws) on shapes-tiny.

Cases: the analytic worlds (Gaussian: i^o, i^s; mixture: i^o, i^s, a margin between two candidate conditions;
the image world: pixel i^o maps) and shapes-tiny (image-level i^o and i^s of a caption against the null prompt,
pixel CMI maps of one word — caption against the caption without it — and the i^s margin between a twin's true
and perturbed caption, the quantity relation testing decides by).

The last line reads ``variance reduction per evaluation R (…)``: R is the smallest, over shapes-tiny's pixel CMI
maps, image-level i^o and image-level i^s, of the best scheme's ratio for that quantity.

    OMP_NUM_THREADS=1 python benchmarks/estimator_efficiency.py                      # full size (CPU: ~1 hour)
    OMP_NUM_THREADS=1 python benchmarks/estimator_efficiency.py --examples 4 --twin-examples 4 --units 40 \\
        --reference-draws 200                                                       # a small check (~5 minutes)

``--ratios-json benchmarks/measured_ratios.json`` records shapes-tiny's best ratio per quantity there, with the
command, date, sizes and machine (tools/cost_plan.py's :func:`~tools.cost_plan.record_ratios`): the cost plan's
corrected protocol reads them (scripts/cost_plan.py).
"""

from __future__ import annotations

import argparse
import math
import sys
import time

import numpy as np
import torch

from infodecomp import analytic
from infodecomp.estimators import mmse_curve
from infodecomp.logsnr import LogSNRSampling
from infodecomp.proposals import fit_proposal, pilot_second_moment
from tools.cost_plan import record_ratios

PAPER = LogSNRSampling()
SCHEMES = ("paper", "stratified", "fitted", "fitted+strat", "4 eps/λ", "control var.")


def gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def integrand(curve, quantity: str) -> torch.Tensor:
    """The quantity's per-λ integrand from an :class:`~infodecomp.estimators.MMSECurve` of ONE candidate:
    [B, L] (scalars) or [B, L, *V] (maps), nats per unit log-SNR."""
    if quantity in ("info_o", "info_s"):
        return 0.5 * (curve.orthogonal if quantity == "info_o" else curve.standard)[:, 0].double()
    if quantity == "margin_s":  # cond = candidate 0, ref = candidate 1: i^s(c0 ‖ c1) is the margin itself
        return 0.5 * curve.standard[:, 0].double()
    return 0.5 * curve.pixel_orthogonal[:, 0].double()  # pixel_info_o


def units(denoiser, case, quantity, sampling, *, n_units, lattice, noise, seed):
    """Independent unit estimates ``[B, U(, *V)]`` of the case's quantity under one scheme, and the log-SNRs and
    weights of each unit's points ``([U, P], [U, P])``. λ is shared by the batch (ε is not)."""
    x, cond, ref = case
    P = lattice if sampling.is_qmc else 1
    s = sampling.with_(replicates=n_units) if sampling.is_qmc else sampling
    lam, w = s.sample(n_units * P, generator=gen(seed), dtype=torch.float64)
    c = mmse_curve(denoiser, x, cond[:, None], ref, lam.to(torch.float32), n_noise=noise,
                   pixelwise=quantity.startswith("pixel"), generator=gen(seed + 1))
    f = integrand(c, quantity)  # [B, L, ...]
    wf = f * w.view(1, -1, *([1] * (f.ndim - 2)))
    return wf.reshape(f.shape[0], n_units, P, *f.shape[2:]).mean(2), lam.view(n_units, P), w.view(n_units, P)


def pilot_mean_curve(denoiser, case, quantity, *, n_points, bins, seed):
    """A piecewise-constant mean integrand ĝ on PAPER's range, from a pilot's shifted lattice: (edges, heights)."""
    x, cond, ref = case
    lo, hi = PAPER.support
    lam = lo + (hi - lo) * (torch.arange(n_points, dtype=torch.float64) + 0.5) / n_points
    f = integrand(mmse_curve(denoiser, x, cond[:, None], ref, lam.float(), n_noise=1, generator=gen(seed)),
                  quantity).mean(0)
    edges = torch.linspace(lo, hi, bins + 1, dtype=torch.float64)
    j = (torch.searchsorted(edges, lam, right=True) - 1).clamp(0, bins - 1)
    heights = torch.zeros(bins, dtype=torch.float64).index_add_(0, j, f) / torch.bincount(j, minlength=bins)
    return edges, heights


def control_variate(u, lam, w, edges, heights):
    """Units u [B, U] of the paper's draws → u − β_b (w·ĝ(λ) − ∫ĝ) per unit, β_b by least squares per example."""
    j = (torch.searchsorted(edges, lam.reshape(-1), right=True) - 1).clamp(0, len(heights) - 1)
    g = (w.reshape(-1) * heights[j]).view(lam.shape).mean(1) - float((heights * edges.diff()).sum())  # [U]
    gc = g - g.mean()
    beta = ((u - u.mean(1, keepdim=True)) * gc).sum(1) / (gc ** 2).sum().clamp_min(1e-300)
    return u - beta[:, None] * g[None]


def summarize(u):
    """(estimate [B], its variance [B], Var(unit) [B]) from units [B, U(, *V)]. For maps the estimate and its
    variance are those of the map's sum (for the bias check) and Var(unit) is summed over pixels (the trace: what
    the efficiency ratio compares)."""
    U = u.shape[1]
    if u.ndim > 2:
        total = u.flatten(2).sum(-1)
        return total.mean(1), total.var(1, unbiased=True) / U, u.var(1, unbiased=True).flatten(1).sum(-1)
    v = u.var(1, unbiased=True)
    return u.mean(1), v / U, v


def run_case(name, denoiser, case, pilot_case, quantity, args, reference=None, rows_per_draw=2):
    """Print one case's table; return {scheme: ratio}."""
    t0 = time.perf_counter()
    lam_p, m2 = pilot_second_moment(denoiser, *pilot_case[:1], pilot_case[1][:, None], pilot_case[2],
                                    quantity=quantity if quantity != "margin_s" else "info_s",
                                    n_points=args.pilot_points, generator=gen(args.seed + 7))
    fitted = fit_proposal(lam_p, m2, bins=args.bins, floor=args.floor, quantity=quantity)
    samplings = {"paper": (PAPER, 1), "stratified": (PAPER.with_(rule="logistic_qmc"), 1),
                 "fitted": (fitted, 1), "fitted+strat": (fitted.with_(rule="fitted_qmc"), 1),
                 "4 eps/λ": (PAPER, 4), "control var.": (PAPER, 1)}
    if reference is None:  # a long paper run on separate draws
        ru, _, _ = units(denoiser, case, quantity, PAPER, n_units=args.reference_draws, lattice=1, noise=1,
                         seed=args.seed + 99)
        ref_value, ref_var, _ = summarize(ru)
    else:
        ref_value, ref_var = reference, torch.zeros_like(reference)
    out, lines = {}, []
    base = None
    for scheme, (sampling, noise) in samplings.items():
        if scheme == "control var." and quantity.startswith("pixel"):
            continue
        seed = args.seed + 1000 * (SCHEMES.index(scheme) + 1)
        lattice = args.lattice if sampling.is_qmc else 1
        n_units = max(2, args.units // lattice) if sampling.is_qmc else max(2, args.units // noise)
        u, lam, w = units(denoiser, case, quantity, sampling, n_units=n_units, lattice=lattice, noise=noise,
                          seed=seed)
        if scheme == "control var.":
            edges, heights = pilot_mean_curve(denoiser, pilot_case, quantity, n_points=args.pilot_points,
                                              bins=args.bins, seed=args.seed + 8)
            u = control_variate(u, lam, w, edges, heights)
        value, var, unit_var = summarize(u)
        cost = lattice * noise * rows_per_draw  # denoiser rows per unit
        per_eval = float(unit_var.sum()) * cost
        base = per_eval if scheme == "paper" else base
        ratio = base / per_eval if per_eval > 0 else math.inf
        z = (value - ref_value) / (var + ref_var).sqrt()
        out[scheme] = ratio
        lines.append(f"  {scheme:13s} var/eval ratio {ratio:6.2f}   bias z: max |z| {float(z.abs().max()):4.1f}, "
                     f"mean z² {float((z ** 2).mean()):4.2f}   ({n_units} units × {cost} rows)")
    B = case[0].shape[0]
    print(f"\n[{name}: {quantity}] {B} examples, {time.perf_counter() - t0:.0f} s; reference: "
          f"{'exact truncated' if reference is not None else f'paper run of {args.reference_draws} draws'}")
    print("\n".join(lines))
    return out


def analytic_cases(args):
    results = {}
    gw = analytic.GaussianWorld.random(3, 2, generator=gen(0))
    mw = analytic.MixtureWorld.two_factor()
    iw = analytic.GaussianImageWorld.shapes(channels=4, size=16)
    lo, hi = PAPER.support

    def mi(world, n, seed):
        if isinstance(world, analytic.GaussianImageWorld):
            x, y = world.sample(n, generator=gen(seed))
            return x, world.condition(y), world.null(n)
        x, lab = world.sample(n, generator=gen(seed))
        return x, world.condition(lab), world.null(n)

    for wname, world in (("analytic Gaussian", gw), ("analytic mixture", mw)):
        case, pilot = mi(world, args.examples, args.seed + 1), mi(world, args.pilot_examples, args.seed + 2)
        std, orth = world.truncated_pointwise(*case, lo, hi)
        for q, exact in (("info_o", orth), ("info_s", std)):
            results[(wname, q)] = run_case(wname, world.denoiser, case, pilot, q, args, reference=exact)
    # the margin between the true component and another one (mixture world): i^s(true ‖ other)
    x, lab = mw.sample(args.examples + args.pilot_examples, generator=gen(args.seed + 3))
    other = torch.stack([next(c for c in mw.component_labels if not torch.equal(c, r)) for r in lab])
    c0, c1 = mw.condition(lab), mw.condition(other)
    n = args.examples
    exact = mw.truncated_pointwise(x[:n], c0[:n], c1[:n], lo, hi)[0]
    results[("analytic mixture", "margin_s")] = run_case(
        "analytic mixture", mw.denoiser, (x[:n], c0[:n], c1[:n]), (x[n:], c0[n:], c1[n:]), "margin_s", args,
        reference=exact)
    case, pilot = mi(iw, args.examples, args.seed + 4), mi(iw, args.pilot_examples, args.seed + 5)
    results[("analytic image", "pixel_info_o")] = run_case("analytic image world", iw.denoiser, case, pilot,
                                                           "pixel_info_o", args)
    return results


def shapes_cases(args):
    """shapes-tiny on the vg-attribution twin: captions vs null, one word's CMI maps, the true-vs-perturbed margin."""
    from infodecomp.experiments import relation_testing as rt
    from infodecomp.models import load_model

    model = load_model("shapes-tiny")
    rows = rt.load_dataset("vg-attribution", args.twin_examples + args.pilot_examples, seed=args.seed)
    x = torch.cat([model.encode_images([r["image"]], posterior="mean", resize="bicubic", size=model.resolution)
                   for r in rows])
    true = [r["captions"][r["true_index"]] for r in rows]
    wrong = [r["captions"][1 - r["true_index"]] if len(r["captions"]) == 2 else
             next(c for i, c in enumerate(r["captions"]) if i != r["true_index"]) for r in rows]
    context = [" ".join(w for i, w in enumerate(c.split()) if i != 1) for c in true]  # drop the second word
    enc = lambda caps: model.encode_prompts(caps, truncate=True)
    c_true, c_wrong, c_ctx = enc(true), enc(wrong), enc(context)
    null = enc([""] * len(rows))
    n = args.twin_examples
    split = lambda *t: (tuple(a[:n] for a in t), tuple(a[n:] for a in t))
    den = model.denoiser
    results = {}
    for q, (case, pilot) in (("info_o", split(x, c_true, null)), ("info_s", split(x, c_true, null)),
                             ("pixel_info_o", split(x, c_true, c_ctx)), ("margin_s", split(x, c_true, c_wrong))):
        label = {"pixel_info_o": "pixel CMI maps (one word)", "margin_s": "caption margin"}.get(q, "image-level")
        results[("shapes-tiny", q)] = run_case(f"shapes-tiny, vg-attribution twin, {label}", den, case, pilot, q,
                                               args)
    return results


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--setups", nargs="*", default=["analytic", "shapes-tiny"], choices=["analytic", "shapes-tiny"])
    ap.add_argument("--examples", type=int, default=16, help="examples per analytic case")
    ap.add_argument("--twin-examples", type=int, default=16, help="shapes-tiny examples per case")
    ap.add_argument("--pilot-examples", type=int, default=4, help="separate examples for the pilot")
    ap.add_argument("--pilot-points", type=int, default=96, help="log-SNR points of the pilot's lattice")
    ap.add_argument("--units", type=int, default=400, help="draws per scheme and example (units × lattice)")
    ap.add_argument("--lattice", type=int, default=10, help="points per stratified lattice")
    ap.add_argument("--reference-draws", type=int, default=2000, help="draws of the long paper run (shapes-tiny)")
    ap.add_argument("--bins", type=int, default=24)
    ap.add_argument("--floor", type=float, default=0.1)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--ratios-json", default=None, metavar="PATH",
                    help="record shapes-tiny's best ratio per quantity in this JSON (benchmarks/measured_ratios.json)")
    args = ap.parse_args(argv)
    torch.set_grad_enabled(False)
    print(f"torch threads {torch.get_num_threads()}; {vars(args)}")
    results = {}
    if "analytic" in args.setups:
        results.update(analytic_cases(args))
    if "shapes-tiny" in args.setups:
        results.update(shapes_cases(args))
    print("\n[best scheme per case: ratio of var/eval, paper = 1]")
    for (setup, q), r in results.items():
        best = max((s for s in r if s != "paper"), key=r.get)
        print(f"  {setup:18s} {q:13s} {best:13s} {r[best]:6.2f}")
    bar = [k for k in (("shapes-tiny", "pixel_info_o"), ("shapes-tiny", "info_o"), ("shapes-tiny", "info_s"))
           if k in results]
    if bar:
        best = {k: max((s for s in results[k] if s != "paper"), key=results[k].get) for k in bar}
        R = min(results[k][best[k]] for k in bar)
        detail = ", ".join(f"{k[1]} {best[k]} {results[k][best[k]]:.2f}" for k in bar)
        print(f"variance reduction per evaluation {R:.2f} (shapes-tiny, min over {detail})")
    else:
        print("variance reduction per evaluation n/a (shapes-tiny not run)")
    if args.ratios_json:
        record(args, ap, results, argv)


#: What each shapes-tiny quantity is, for the ratios file.
LABELS = {"info_o": "image-level i^o, caption vs null", "info_s": "image-level i^s, caption vs null",
          "pixel_info_o": "pixel CMI maps of one word", "margin_s": "i^s margin, true vs perturbed caption"}
SIZES = ("twin_examples", "pilot_examples", "pilot_points", "units", "lattice", "reference_draws")


def record(args, ap, results, argv):
    """shapes-tiny's best scheme per quantity (variance per evaluation, paper = 1) into ``--ratios-json``."""
    ratios = {}
    for (setup, q), r in results.items():
        if setup != "shapes-tiny":
            continue
        best = max((s for s in r if s != "paper"), key=r.get)
        ratios[f"estimator_efficiency/shapes-tiny/{q}"] = (
            r[best], f"{best} log-SNR sampling vs the paper's, variance per UNet evaluation, {LABELS[q]}, "
                     "shapes-tiny on the vg-attribution twin")
    if not ratios:
        print("--ratios-json: shapes-tiny was not run; nothing recorded")
        return
    sizes = {k: getattr(args, k) for k in SIZES}
    reduced = any(getattr(args, k) < ap.get_default(k) for k in SIZES)
    command = "python benchmarks/estimator_efficiency.py " + " ".join(sys.argv[1:] if argv is None else argv)
    record_ratios(args.ratios_json, ratios, benchmark="benchmarks/estimator_efficiency.py", command=command.strip(),
                  sizes=sizes, reduced_size=reduced)
    print(f"recorded {len(ratios)} ratios in {args.ratios_json}" + (" (reduced size)" if reduced else ""))


if __name__ == "__main__":
    main()
