#!/usr/bin/env python
"""The cost plan: UNet evaluations of every notebook at the paper's scale, the evaluations on the critical path at a
number of GPUs (the largest shard of each sharded notebook plus what does not shard) and, at a measured throughput,
GPU-hours (infodecomp/experiments/costs.py, rendered by tools/cost_plan.py; counts verified against the
experiments' code in tests/test_costs.py).

    python scripts/cost_plan.py                                   # print the table (evaluations only)
    python scripts/cost_plan.py --evals-per-second 40             # … with GPU-hours at 40 evaluations/s
    python scripts/cost_plan.py --gpus 2 16                       # the critical path at 2 and 16 GPUs (default 1 4 8)
    python scripts/cost_plan.py --throughput-json benchmarks/results/sd21_throughput.json   # … measured
    python scripts/cost_plan.py --readme                          # rewrite docs/running.md's cost-plan block
    python scripts/cost_plan.py --check                           # exit 1 if that block is out of date
    python scripts/cost_plan.py --ratios-json other.json           # the corrected protocol's plan from other ratios

Below the faithful plan, the corrected protocol's (fitted log-SNR sampling, precision targets, adaptive relation
testing): the expected evaluations at the faithful run's accuracy, each saving a ratio measured on shapes-tiny read
from benchmarks/measured_ratios.json (written by benchmarks/estimator_efficiency.py and
benchmarks/adaptive_relation_testing.py with --ratios-json); without that file only the faithful plan is printed.

Without --evals-per-second or --throughput-json, the block uses benchmarks/results/sd21_throughput.json when it
exists (a GPU measurement of benchmarks/sd21_throughput.py) and shows evaluations only otherwise. --check
compares with what --readme would write given the same options (make readme / make cost-plan use the defaults).
Runs without torch: infodecomp.experiments.costs and tools import only the standard library.
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

from infodecomp.experiments import costs
from tools.cost_plan import (COST_END, COST_START, DEFAULT_GPUS, Throughput, corrected_markdown, plan_markdown,
                             read_ratios, read_throughput)
from tools.markers import replace_block, write_atomic

REPO = Path(__file__).resolve().parent.parent
#: The document that holds the cost-plan block (docs/running.md#costs).
DOCUMENT = REPO / "docs" / "running.md"
#: Where benchmarks/sd21_throughput.py's measurement is kept when one is committed.
DEFAULT_JSON = REPO / "benchmarks" / "results" / "sd21_throughput.json"
#: The ratios measured on shapes-tiny by the benchmarks (--ratios-json), for the corrected protocol's plan.
RATIOS_JSON = REPO / "benchmarks" / "measured_ratios.json"


def throughput(args) -> Throughput | None:
    if args.evals_per_second is not None:
        v = args.evals_per_second
        if not math.isfinite(v) or v <= 0:
            raise SystemExit(f"--evals-per-second must be a finite number > 0, got {v}")
        return Throughput(v, f"{v:,.1f} evaluations/s (given with --evals-per-second, not measured here)")
    path = args.throughput_json if args.throughput_json is not None else (DEFAULT_JSON if DEFAULT_JSON.is_file() else None)
    if path is None:
        return None
    try:
        return read_throughput(path, dtype=args.dtype)
    except (OSError, ValueError) as err:
        raise SystemExit(str(err)) from err


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    g = p.add_mutually_exclusive_group()
    g.add_argument("--evals-per-second", type=float, default=None, help="UNet evaluations per second on one GPU")
    g.add_argument("--throughput-json", type=Path, default=None,
                   help="a JSON of benchmarks/sd21_throughput.py (its fastest row of --dtype is used)")
    p.add_argument("--dtype", default="float32", choices=("float32", "float16", "bfloat16"),
                   help="which measured dtype to plan with (the paper ran float32)")
    p.add_argument("--gpus", type=int, nargs="+", default=list(DEFAULT_GPUS), metavar="N",
                   help="numbers of GPUs whose critical path to show (default: %(default)s)")
    p.add_argument("--readme", nargs="?", const=DOCUMENT, type=Path, default=None,
                   help="rewrite the block between the cost-plan markers of this file (default docs/running.md)")
    p.add_argument("--check", nargs="?", const=DOCUMENT, type=Path, default=None,
                   help="exit 1 if the block of this file (default docs/running.md) is out of date; write nothing")
    p.add_argument("--ratios-json", type=Path, default=None,
                   help="measured ratios for the corrected protocol's plan (default benchmarks/measured_ratios.json "
                        "when it exists)")
    a = p.parse_args(argv)
    if any(g < 1 for g in a.gpus):
        raise SystemExit(f"--gpus must be numbers >= 1, got {a.gpus}")
    rows = costs.paper_plan()
    body = plan_markdown(rows, throughput(a), gpus=a.gpus)
    ratios_path = a.ratios_json if a.ratios_json is not None else (RATIOS_JSON if RATIOS_JSON.is_file() else None)
    if ratios_path is not None:
        try:
            ratios = read_ratios(ratios_path)
        except (OSError, ValueError) as err:
            raise SystemExit(str(err)) from err
        body += ("\n\n**Under the corrected protocol** (fitted log-SNR sampling, precision targets at the faithful "
                 "run's standard error, adaptive relation testing): expected UNet evaluations at the accuracy of the "
                 "faithful run.\n\n" + corrected_markdown(rows, ratios))
    target = a.check or a.readme
    if target is None:
        print(body)
        return 0
    if not target.is_file():
        raise SystemExit(f"no file at {target}")
    old = target.read_text(encoding="utf-8")
    try:
        new = replace_block(old, COST_START, COST_END, body)
    except ValueError as err:
        raise SystemExit(f"{target}: {err}") from err
    if a.check:
        if new != old:
            print(f"{target}: the cost plan is out of date; run scripts/cost_plan.py --readme", file=sys.stderr)
            return 1
        print(f"{target}: the cost plan is up to date")
        return 0
    if new != old:
        write_atomic(target, new)
        print(f"updated {target}")
    else:
        print(f"{target} already up to date")
    return 0


if __name__ == "__main__":
    sys.exit(main())
