"""The cost plan as a document: ``infodecomp.experiments.costs.paper_plan()`` as a Markdown table of UNet
evaluations per notebook, the evaluations on the critical path at a few numbers of GPUs (the slowest process of
each sharded launch, :func:`infodecomp.experiments.costs.critical_path`) and, at a measured throughput,
GPU-hours and hours of wall time; written between the markers
``<!-- cost-plan:start -->`` and ``<!-- cost-plan:end -->`` of docs/running.md by ``scripts/cost_plan.py``.

The closed forms themselves stay in the package (tests/test_costs.py holds them equal to the experiments' code
paths); this module only reads a throughput measured by ``benchmarks/sd21_throughput.py`` and prints. Standard
library only (``infodecomp.experiments.costs`` imports nothing else at its top).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from infodecomp.experiments.costs import PlanRow, critical_path, gpu_hours, plan_total

__all__ = ["Throughput", "read_throughput", "plan_markdown", "COST_START", "COST_END", "DEFAULT_GPUS"]

COST_START = "<!-- cost-plan:start -->"
COST_END = "<!-- cost-plan:end -->"
#: The GPU counts whose critical path the document shows.
DEFAULT_GPUS = (1, 4, 8)


@dataclass(frozen=True)
class Throughput:
    """A measured UNet throughput (one configuration of benchmarks/sd21_throughput.py)."""

    evals_per_second: float
    source: str          # a line saying where the number comes from (device, dtype, batch, SDPA, compile)


def read_throughput(path: str | Path, *, dtype: str = "float32") -> Throughput:
    """The fastest configuration of ``dtype`` in a JSON written by ``benchmarks/sd21_throughput.py``.

    Refuses a file that is not such a JSON, a CPU smoke run (it proves the script runs, it measures nothing
    worth planning with), and one without a measured row of ``dtype``."""
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise FileNotFoundError(f"no throughput file at {path}; write one with benchmarks/sd21_throughput.py on a "
                                "GPU") from None
    except json.JSONDecodeError as err:
        raise ValueError(f"{path} is not JSON ({err})") from err
    if not isinstance(data, dict) or data.get("benchmark") != "sd21_throughput" or not isinstance(data.get("rows"), list):
        raise ValueError(f"{path} is not a benchmarks/sd21_throughput.py result (expected an object with "
                         f"benchmark='sd21_throughput' and a list of rows)")
    if data.get("smoke"):
        raise ValueError(f"{path} is a CPU smoke run (--cpu-smoke), not a throughput measurement; run the benchmark "
                         "on a GPU")
    ok = [r for r in data["rows"] if isinstance(r, dict) and r.get("dtype") == dtype
          and isinstance(r.get("evals_per_second"), (int, float)) and r["evals_per_second"] > 0]
    if not ok:
        have = sorted({str(r.get("dtype")) for r in data["rows"] if isinstance(r, dict) and r.get("evals_per_second")})
        raise ValueError(f"{path} has no measured row of dtype {dtype!r}; measured dtypes: {have or 'none'}")
    best = max(ok, key=lambda r: r["evals_per_second"])
    src = (f"{best['evals_per_second']:,.1f} evaluations/s measured on {data.get('device', '?')}: {dtype}, batch "
           f"{best.get('batch', '?')}, SDPA {'on' if best.get('sdpa') else 'off'}, torch.compile "
           f"{'on' if best.get('compile') else 'off'} (torch {data.get('torch', '?')}, {path.name})")
    return Throughput(float(best["evals_per_second"]), src)


def _millions(n: int) -> str:
    if n == 0:
        return "0"
    return f"{n / 1e6:.2f} M" if n >= 1_000_000 else f"{n / 1e3:.1f} k"


def _gpus(n: int) -> str:
    return f"{n} GPU" + ("s" if n != 1 else "")


def plan_markdown(rows: Sequence[PlanRow], throughput: Throughput | None = None,
                  gpus: Sequence[int] = DEFAULT_GPUS) -> str:
    """The plan as a markdown table (evaluations; GPU-hours when a throughput is given; the evaluations on the
    critical path at each number of ``gpus``) with a line on the critical path and where the throughput comes
    from."""
    gpus = tuple(dict.fromkeys(int(g) for g in gpus))
    if any(g < 1 for g in gpus):
        raise ValueError(f"numbers of GPUs must be >= 1, got {list(gpus)}")
    hours = throughput is not None
    head = "| notebook | what (paper scale) | UNet evaluations | ≈ |" + (" GPU-hours |" if hours else "") \
        + "".join(f" critical path, {_gpus(g)} |" for g in gpus)
    sep = "|---|---|---:|---:|" + ("---:|" if hours else "") + "---:|" * len(gpus)
    lines = [head, sep]
    for r in rows:
        ev = f"{r.evaluations:,}" if r.new else f"({r.evaluations:,})"
        line = f"| {r.notebook} | {r.part} | {ev} | {_millions(r.evaluations)} |"
        if hours:
            h = gpu_hours(r.evaluations, throughput.evals_per_second)
            line += f" {h:,.1f} |" if r.new else f" ({h:,.1f}) |"
        line += "".join(f" {_millions(r.critical_path(g))} |" for g in gpus)
        lines.append(line)
    total = plan_total(rows)
    line = f"| **all** | every notebook once (rows in parentheses not added) | **{total:,}** | {_millions(total)} |"
    if hours:
        line += f" **{gpu_hours(total, throughput.evals_per_second):,.1f}** |"
    line += "".join(f" **{_millions(critical_path(rows, g))}** |" for g in gpus)
    lines.append(line)
    lines.append("")
    paths = [f"{critical_path(rows, g):,} evaluations at {_gpus(g)}"
             + (f" (≈ {gpu_hours(critical_path(rows, g), throughput.evals_per_second):,.1f} h)" if hours else "")
             for g in gpus]
    lines.append("Critical path (the slowest process of each sharded launch, notebooks one after another): "
                 + "; ".join(paths) + ".")
    lines.append("")
    if hours:
        lines.append(f"GPU-hours at {throughput.source}.")
    else:
        lines.append("GPU-hours: no measured throughput yet; `benchmarks/sd21_throughput.py` measures it on a GPU "
                     "(hours = evaluations / (3600 × evaluations per second)).")
    return "\n".join(lines)
