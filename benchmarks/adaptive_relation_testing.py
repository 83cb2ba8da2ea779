"""Adaptive relation testing against the fixed 100-draw run, side by side on the same draws.

For every example of each setup, three runs of :func:`infodecomp.experiments.sequential.sequential_scores` with the
same per-example generator seed, so they see the same (λ, ε) draws in the same order (common random numbers):

* **fixed**: the rule switched off (``SequentialRule.fixed()``): 100 i.i.d. draws, every candidate and the null
  prompt evaluated on each, 100·(M + 1) denoiser rows, the paper's cost. Its decisions by i^o, i^s and −MMSE are the
  fixed protocol's (corrected: clip 3, VAE posterior mean).
* **adaptive i^o**: the sequential rule deciding by i^o (the null is needed).
* **adaptive i^s**: the sequential rule deciding by i^s, without the null prompt (it cancels from every difference).

With ``--qmc`` or ``--antithetic`` the adaptive runs draw differently from the fixed one (same seed, other draws),
so the pairing is by example only and the decision-change rate includes the fixed run's own noise. The same holds
for ``--proposal fitted`` (issue 27 item 3): the adaptive runs then sample log-SNR from a proposal fitted to their
deciding margin (:func:`infodecomp.proposals.fitted_proposal`, quantity "margin_s" for the i^s run, "margin_o" for
the i^o run) by a pilot on ``--pilot-examples`` separate examples of each setup (their rows are counted and
reported, not charged to the examples); ``--qmc`` then stratifies the fitted density. The fixed run keeps the
paper's sampling: it is the faithful-cost baseline.

Each setup ends with an oracle bound: the rows an oracle that knows each rival's standardized i^s margin would
spend, with a single z-test per rival and no null prompt (:func:`oracle`), against the fixed run's rows. It is
computed on the fixed run's draws (the paper's i.i.d. sampling) and, when the adaptive runs draw otherwise (a fitted
proposal, ``--qmc``, ``--antithetic``), also on a fixed run drawn their way (extra rows, not charged to any run): a
ratio R above that second bound is out of reach for any stopping rule on that sampling.

``--resolution ρ`` gives the rule an indifference zone of ρ standard errors of the margin at 100 draws
(:class:`~infodecomp.experiments.sequential.SequentialRule` ``resolution``): near-ties stop early. The oracle bound
above assumes a significance test (ρ = 0) and does not bound such a rule; its price is measured instead, twice: the
accuracy against the fixed paper run (the bar), and against a fixed run on the adaptive run's own draws (the rule
alone, without the proposal's gain). Each setup also replays that fixed run under ρ = 0…4 at the same α
(:func:`~infodecomp.experiments.sequential.replay`: no denoiser evaluations), so the choice of ρ is shown, not hidden.

Denoiser rows are counted by a wrapper around the denoiser (not taken from the scorer's own bookkeeping). For each
setup and adaptive run: the evaluations ratio fixed / adaptive, the accuracies, and the paired accuracy difference
D ± S (adaptive minus fixed, in points; S = the standard error of the mean of the per-example differences), plus how
often the adaptive decision differs from the fixed one. The last line is the pooled result over all setups of the
``--primary`` run, in the form ``evaluations ratio R (fixed F, adaptive A); accuracy difference D ± S`` (F and A:
denoiser rows per example).

Setups: ``analytic`` (the exact two-factor Gaussian-mixture denoiser of infodecomp.analytic, M = 2 and 4 candidate
conditions, the true one among them) and ``shapes-tiny`` (the embedded model on the four ShapesWorld ARO twins).

    OMP_NUM_THREADS=1 python benchmarks/adaptive_relation_testing.py                           # both, defaults
    OMP_NUM_THREADS=1 python benchmarks/adaptive_relation_testing.py --setups analytic --examples 400
    OMP_NUM_THREADS=1 python benchmarks/adaptive_relation_testing.py --proposal fitted --resolution 3  # item 3

``--ratios-json benchmarks/measured_ratios.json`` records the ``--primary`` run's ratio on each ShapesWorld twin
and pooled over them (with the command, date, sizes and machine: tools/cost_plan.py's
:func:`~tools.cost_plan.record_ratios`), keyed by the proposal; the cost plan's corrected protocol reads them.

Measured here (2 CPU cores, 2026-12-02; the command above with its defaults, seed 0): see
docs/running.md#adaptive-relation-testing for the table and the reading of it.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import time

import numpy as np
import torch

from infodecomp import analytic
from infodecomp.experiments import relation_testing as rt
from infodecomp.experiments.sequential import SequentialRule, replay, sequential_scores
from infodecomp.logsnr import LogSNRSampling, logistic_weights
from infodecomp.proposals import fitted_proposal
from infodecomp.results import example_seed
from tools.cost_plan import record_ratios

RUNS = {"adaptive i^o": dict(method="info_o", evaluate_null=True),
        "adaptive i^s": dict(method="info_s", evaluate_null=False)}
FIXED_METHOD = {"adaptive i^o": "info_o", "adaptive i^s": "info_s"}
MARGIN = {"adaptive i^o": "margin_o", "adaptive i^s": "margin_s"}  # the quantity a fitted proposal is fitted to


class Counter:
    """Counts the denoiser rows it passes on."""

    def __init__(self, inner):
        self.inner, self.rows = inner, 0

    def __call__(self, z, logsnr, cond):
        self.rows += z.shape[0]
        return self.inner(z, logsnr, cond)


def analytic_examples(M: int, n: int, seed: int):
    """(denoiser, [(id, x, conds [M, F], null, true_index)]) from the two-factor mixture world."""
    world = analytic.MixtureWorld.two_factor()
    x, labels = world.sample(n, generator=torch.Generator().manual_seed(seed))
    out = []
    for b in range(n):
        others = [c for c in world.component_labels if not torch.equal(c, labels[b])][:M - 1]
        order = torch.randperm(M, generator=torch.Generator().manual_seed(seed * 1000 + b)).tolist()
        conds = torch.stack([*others, labels[b]])[order]
        out.append((f"analytic-{M}-{b}", x[b], conds, world.null(1)[0], order.index(M - 1)))
    return world, out


def twin_examples(model, dataset: str, n: int, seed: int):
    data = rt.load_dataset(dataset, n, seed=seed)
    null = model.encode_prompts([""], truncate=True)[0]
    out = []
    for i in range(len(data)):
        r = data[i]
        x = model.encode_images([r["image"]], posterior="mean", resize="bicubic", size=model.resolution)[0]
        # as relation testing scores them (rt.score_rows): each distinct caption once; a perturbation that equals
        # the true caption is the true caption (the order twins have a few: a shuffle can give back the original)
        caps = list(dict.fromkeys(r["captions"]))
        true = caps.index(r["captions"][int(r["true_index"])])
        out.append((r["id"], x, model.encode_prompts(caps, truncate=True), null, true))
    return model.denoiser, out


def proposals_for(denoiser, pilot, proposal: str, stratified: bool, seed: int) -> dict:
    """{run: the adaptive run's log-SNR sampling}: the paper's, or fitted to the run's margin on the ``pilot``
    examples (same M as the benchmarked ones; never the benchmarked examples themselves)."""
    if proposal == "paper":
        return {run: LogSNRSampling() for run in RUNS}
    M = max(p[2].shape[0] for p in pilot)
    pilot = [p for p in pilot if p[2].shape[0] == M]  # the few with a repeated caption have fewer candidates
    x = torch.stack([p[1] for p in pilot])
    conds = torch.stack([p[2] for p in pilot])
    null = torch.stack([p[3] for p in pilot])
    counter = Counter(denoiser)
    out = {run: fitted_proposal(counter, x, conds, null, quantity=MARGIN[run], stratified=stratified,
                                generator=torch.Generator().manual_seed(seed + 17)) for run in RUNS}
    print(f"  pilot: {len(pilot)} separate examples, {counter.rows} denoiser rows for {len(RUNS)} fitted proposals "
          f"(largest weight {max(q.max_weight for q in out.values()):.0f}, the paper's "
          f"{float(logistic_weights(torch.tensor([LogSNRSampling().support[0]]))):.0f})")
    return out


def bench(name: str, denoiser, examples, rule: SequentialRule, sampling: LogSNRSampling, seed: int, setup: str,
          adaptive: dict | None = None):
    """Per-example records {run: (evaluations, correct, prediction)} for the fixed and adaptive runs (``adaptive``:
    {run: its log-SNR sampling}, default ``sampling``)."""
    adaptive = adaptive or {run: sampling for run in RUNS}
    recs = []
    t0 = time.perf_counter()
    for ex_id, x, conds, null, t in examples:
        rec = {"setup": setup}
        counter = Counter(denoiser)
        fixed = SequentialRule.fixed(rule.max_samples)
        f = sequential_scores(counter, x, conds, null, method="info_o", rule=fixed,
                              sampling=sampling, evaluate_null=True,
                              generator=torch.Generator().manual_seed(example_seed(seed, ex_id)))
        for m in ("info_o", "info_s"):
            pred = int(np.argmax(f.mean(m)))
            rec[f"fixed {m}"] = (counter.rows, float(pred == t), pred)
        rec["z"], rec["oracle"] = oracle(f.units["info_s"])
        own = f  # the fixed run on the adaptive i^s run's draws (the same draws unless it samples otherwise)
        if adaptive["adaptive i^s"] != sampling or rule.qmc or rule.antithetic or rule.block != fixed.block:
            # the bound under the sampling the adaptive i^s run uses (its proposal, strata, antithetic pairs): a
            # fixed run drawn that way gives the per-unit spread that any stopping rule on those draws faces
            g = sequential_scores(Counter(denoiser), x, conds, null, method="info_s", evaluate_null=False,
                                  rule=SequentialRule.fixed(rule.max_samples, block=rule.block, qmc=rule.qmc,
                                                            antithetic=rule.antithetic),
                                  sampling=adaptive["adaptive i^s"],
                                  generator=torch.Generator().manual_seed(example_seed(seed, ex_id)))
            units = g.units["info_s"]
            rec["z adaptive"], rec["oracle adaptive"] = oracle(units, rule.max_samples // units.shape[0])
            own = g
        # the rule alone: against the fixed run on its own draws, and replayed there for other resolutions
        pred = int(np.argmax(own.mean("info_s")))
        rec["fixed own info_s"] = (own.n_evaluations, float(pred == t), pred)
        for rho in sweep(rule):
            r = replay(own.units["info_s"], dataclasses.replace(rule, resolution=rho))
            rec[f"replay {rho}"] = (r.n_evaluations, float(r.prediction == t), r.prediction)
        for run, kw in RUNS.items():
            counter = Counter(denoiser)
            a = sequential_scores(counter, x, conds, null, rule=rule, sampling=adaptive[run],
                                  generator=torch.Generator().manual_seed(example_seed(seed, ex_id)), **kw)
            if counter.rows != a.n_evaluations:
                raise AssertionError(f"{run}: counted {counter.rows} rows, the scorer says {a.n_evaluations}")
            rec[run] = (counter.rows, float(a.prediction == t), a.prediction)
        recs.append(rec)
    dt = time.perf_counter() - t0
    Ms = [e[2].shape[0] for e in examples]
    fewer = sum(m < max(Ms) for m in Ms)
    print(f"\n[{name}] {len(examples)} examples, M = {max(Ms)} candidates"
          f"{f' ({fewer} with fewer: repeated captions)' if fewer else ''}, {dt:.0f} s")
    for run in RUNS:
        report(run, recs, FIXED_METHOD[run])
    report_rule(recs, rule)
    report_oracle(recs)
    return recs


#: resolutions ρ replayed on the fixed run's draws at the rule's α (no denoiser evaluations), with the rule's own
SWEEP = (0.0, 1.0, 2.0, 3.0, 4.0)


def sweep(rule: SequentialRule) -> list[float]:
    return sorted({*SWEEP, rule.resolution})


def report_rule(recs, rule: SequentialRule):
    """The adaptive i^s rule against the fixed run on its own draws (the proposal's gain left out), and replays
    of that fixed run under other resolutions ρ."""
    _, _, acc_f, acc_a, D, S, changed = summary(recs, "adaptive i^s", "info_s", fixed="fixed own info_s")
    print(f"  the rule alone, against the fixed run on its own draws: accuracy {acc_f:5.1f}% -> {acc_a:5.1f}%; "
          f"difference {D:+.2f} ± {S:.2f} points; decision changed on {changed:.1f}%")
    F = np.mean([r["fixed info_s"][0] for r in recs])
    cells = []
    for rho in sweep(rule):
        _, A, _, _, D, S, _ = summary(recs, f"replay {rho}", "info_s")
        cells.append(f"ρ {rho:g}: {F / A:4.2f}x ({D:+.1f} ± {S:.1f})")
    print(f"  replayed at α {rule.alpha:g}; ratio and accuracy difference against the fixed paper run, as the bar: "
          + "; ".join(cells))
    same = np.mean([r[f"replay {rule.resolution}"][0::2] == r["adaptive i^s"][0::2] for r in recs])
    print(f"  the replay at ρ {rule.resolution:g} matches the live adaptive i^s run (rows and decision) on "
          f"{100 * same:.1f}% of examples")


def oracle(units: np.ndarray, draws_per_unit: int = 1, level: float = 0.05, first: int = 10) -> tuple[float, int]:
    """(|z| of the top-two i^s margin at all the fixed run's units, the rows an oracle would need).

    ``units [K, M]``: the i^s scores of a fixed run, one row per independent unit (a draw; or an antithetic pair, a
    stratified block: ``draws_per_unit`` draws each). The oracle knows each rival's standardized margin (taken as
    the fixed run's) and evaluates the rival only until a single one-sided z-test at ``level``, with no correction
    for repeated looks, would pass: n_j = K (z_level / z_j)² units, at least ``first`` draws, at most K units. The
    leader is evaluated until the last rival is decided, and no null prompt is evaluated. No valid sequential test
    on draws made this way can be much cheaper than this on average, so it bounds what any stopping rule can save
    on these margins with this sampling."""
    from scipy import stats

    K, M = units.shape
    order = np.argsort(-units.mean(0))
    zq = stats.norm.ppf(1 - level)
    first_units = -(-first // draws_per_unit)
    ns, zs = [], []
    for j in order[1:]:
        d = units[:, order[0]] - units[:, j]
        sd = d.std(ddof=1)
        z = d.mean() / (sd / np.sqrt(K)) if sd > 0 else np.inf
        zs.append(abs(z))
        ns.append(int(np.clip(np.ceil(K * (zq / max(z, 1e-12)) ** 2), first_units, K)))
    return float(zs[0]), draws_per_unit * (max(ns) + sum(ns))


def report_oracle(recs):
    F = np.mean([r["fixed info_s"][0] for r in recs])
    O = np.mean([r["oracle"] for r in recs])
    z = np.median([r["z"] for r in recs])
    print(f"  bound: median |z| of the top-two i^s margin at 100 draws {z:.1f}; an oracle stopping each rival at its "
          f"single-test draw count (i^s, no null) would need {O:.1f} rows/example: {F / O:.2f}x")
    if all("oracle adaptive" in r for r in recs):
        O = np.mean([r["oracle adaptive"] for r in recs])
        z = np.median([r["z adaptive"] for r in recs])
        print(f"  bound under the adaptive i^s run's sampling: median |z| {z:.1f} at 100 draws; the oracle would need "
              f"{O:.1f} rows/example: {F / O:.2f}x")


def summary(recs, run: str, method: str, fixed: str | None = None):
    fixed = fixed or f"fixed {method}"
    ev_f = np.array([r[fixed][0] for r in recs], float)
    ev_a = np.array([r[run][0] for r in recs], float)
    c_f = np.array([r[fixed][1] for r in recs])
    c_a = np.array([r[run][1] for r in recs])
    d = 100 * (c_a - c_f)
    s = float(d.std(ddof=1) / np.sqrt(d.size)) if d.size > 1 else float("nan")
    changed = np.mean([r[run][2] != r[fixed][2] for r in recs])
    return ev_f.mean(), ev_a.mean(), 100 * c_f.mean(), 100 * c_a.mean(), float(d.mean()), s, 100 * changed


def report(run: str, recs, method: str):
    F, A, acc_f, acc_a, D, S, changed = summary(recs, run, method)
    print(f"  {run:13s} evaluations/example fixed {F:6.0f}, adaptive {A:6.1f}: ratio {F / A:4.2f}x; accuracy fixed "
          f"{acc_f:5.1f}%, adaptive {acc_a:5.1f}%; difference {D:+.2f} ± {S:.2f} points; decision changed on "
          f"{changed:.1f}% of examples")


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--setups", nargs="*", default=["analytic", "shapes-tiny"], choices=["analytic", "shapes-tiny"])
    ap.add_argument("--examples", type=int, default=200, help="examples per analytic world (M = 2 and 4)")
    ap.add_argument("--twin-examples", type=int, default=40, help="examples per ShapesWorld ARO twin")
    ap.add_argument("--alpha", type=float, default=0.05)
    ap.add_argument("--block", type=int, default=10)
    ap.add_argument("--first-look", type=int, default=10)
    ap.add_argument("--resolution", type=float, default=0.0,
                    help="ρ: also drop rivals that cannot beat the leader by more than ρ standard errors at the cap")
    ap.add_argument("--qmc", action="store_true", help="randomized-QMC log-SNR blocks in the adaptive runs")
    ap.add_argument("--antithetic", action="store_true", help="antithetic noise pairs (ε, −ε) in the adaptive runs")
    ap.add_argument("--primary", default="adaptive i^s", choices=list(RUNS), help="the run of the last line")
    ap.add_argument("--proposal", default="paper", choices=["paper", "fitted"],
                    help="the adaptive runs' log-SNR proposal: the paper's, or fitted to their margin by a pilot")
    ap.add_argument("--pilot-examples", type=int, default=8, help="separate examples per setup for the pilot")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--ratios-json", default=None, metavar="PATH",
                    help="record the ratio on each twin and pooled in this JSON (benchmarks/measured_ratios.json)")
    args = ap.parse_args(argv)
    torch.set_grad_enabled(False)
    rule = SequentialRule(alpha=args.alpha, block=args.block, first_look=args.first_look, qmc=args.qmc,
                          antithetic=args.antithetic, resolution=args.resolution)
    sampling = LogSNRSampling()  # the corrected protocol: truncated logistic, loc 1, scale 2, clip 3
    print(f"torch threads {torch.get_num_threads()}; log-SNR {sampling}; adaptive runs' proposal {args.proposal}; "
          f"rule {rule}; seed {args.seed}")
    n_pilot = args.pilot_examples if args.proposal == "fitted" else 0  # the paper's runs keep their examples
    everything = []
    if "analytic" in args.setups:
        for M in (2, 4):
            den, ex = analytic_examples(M, args.examples + n_pilot, args.seed)
            ex, pilot = ex[:args.examples], ex[args.examples:]
            adaptive = proposals_for(den, pilot, args.proposal, args.qmc, args.seed)
            everything += bench(f"analytic mixture world, M = {M}", den, ex, rule, sampling, args.seed, "analytic",
                                adaptive)
    if "shapes-tiny" in args.setups:
        from infodecomp.models import load_model

        model = load_model("shapes-tiny")
        for ds in rt.ARO_DATASETS:
            den, ex = twin_examples(model, ds, args.twin_examples + n_pilot, args.seed)
            ex, pilot = ex[:args.twin_examples], ex[args.twin_examples:]
            adaptive = proposals_for(den, pilot, args.proposal, args.qmc, args.seed)
            recs = bench(f"shapes-tiny, {ds} twin", den, ex, rule, sampling, args.seed, "shapes-tiny", adaptive)
            everything += [dict(r, dataset=ds) for r in recs]
    groups = {"analytic": [r for r in everything if r["setup"] == "analytic"],
              "shapes-tiny": [r for r in everything if r["setup"] == "shapes-tiny"]}
    for setup, recs in groups.items():
        if recs:
            print(f"\n[{setup}, pooled, {len(recs)} examples]")
            for run in RUNS:
                report(run, recs, FIXED_METHOD[run])
            report_rule(recs, rule)
            report_oracle(recs)
    print(f"\n[pooled over every setup, {len(everything)} examples]")
    for run in RUNS:
        report(run, everything, FIXED_METHOD[run])
    F, A, _, _, D, S, _ = summary(everything, args.primary, FIXED_METHOD[args.primary])
    print(f"the last line: {args.primary}, pooled; F and A in denoiser rows per example, D ± S in accuracy points")
    print(f"evaluations ratio {F / A:.2f} (fixed {F:.0f}, adaptive {A:.1f}); accuracy difference {D:+.2f} ± {S:.2f}")
    if args.ratios_json:
        record(args, ap, everything, argv)


SIZES = ("twin_examples", "pilot_examples", "block", "first_look")


def record(args, ap, recs, argv):
    """The ``--primary`` run's evaluations ratio (fixed / adaptive, same decisions' accuracy) on each ShapesWorld
    twin and pooled over them, into ``--ratios-json``, keyed ``adaptive_relation_testing/<proposal>/<dataset>``."""
    twins = [r for r in recs if r["setup"] == "shapes-tiny"]
    if not twins:
        print("--ratios-json: the ShapesWorld twins were not run; nothing recorded")
        return
    how = (f"{args.primary} (α {args.alpha}{f', resolution {args.resolution:g}' if args.resolution else ''}, "
           f"{args.proposal} log-SNR proposal"
           f"{', stratified' if args.qmc else ''}{', antithetic' if args.antithetic else ''}) against the fixed "
           "100-draw run")
    ratios = {}
    for ds in [*rt.ARO_DATASETS, "pooled"]:
        part = [r for r in twins if ds == "pooled" or r["dataset"] == ds]
        if not part:
            continue
        F, A, _, _, D, S, _ = summary(part, args.primary, FIXED_METHOD[args.primary])
        where = "pooled over the ShapesWorld twins" if ds == "pooled" else f"the ShapesWorld {ds} twin"
        ratios[f"adaptive_relation_testing/{args.proposal}/{ds}"] = (
            F / A, f"{how}, shapes-tiny on {where} ({len(part)} cases; accuracy difference {D:+.2f} ± {S:.2f} "
                   "points)")
    sizes = {k: getattr(args, k) for k in SIZES}
    reduced = args.twin_examples < ap.get_default("twin_examples") or (
        args.proposal == "fitted" and args.pilot_examples < ap.get_default("pilot_examples"))
    command = "python benchmarks/adaptive_relation_testing.py " + " ".join(sys.argv[1:] if argv is None else argv)
    record_ratios(args.ratios_json, ratios, benchmark="benchmarks/adaptive_relation_testing.py",
                  command=command.strip(), sizes=sizes, reduced_size=reduced)
    print(f"recorded {len(ratios)} ratios in {args.ratios_json}" + (" (reduced size)" if reduced else ""))


if __name__ == "__main__":
    main()
