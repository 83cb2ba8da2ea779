"""The cost plan as a document: ``infodecomp.experiments.costs.paper_plan()`` as a Markdown table of UNet
evaluations per notebook, the evaluations on the critical path at a few numbers of GPUs (the slowest process of
each sharded launch, :func:`infodecomp.experiments.costs.critical_path`) and, at a measured throughput,
GPU-hours and hours of wall time; written between the markers
``<!-- cost-plan:start -->`` and ``<!-- cost-plan:end -->`` of docs/running.md by ``scripts/cost_plan.py``.

The closed forms themselves stay in the package (tests/test_costs.py holds them equal to the experiments' code
paths); this module only reads a throughput measured by ``benchmarks/sd21_throughput.py`` and prints. Standard
library only (``infodecomp.experiments.costs`` imports nothing else at its top).

The corrected protocol's plan (issue 27 item 5) divides parts of the faithful cost by ratios measured on
shapes-tiny by the benchmarks. They live in one small JSON, ``benchmarks/measured_ratios.json``, written only by
the benchmarks (:func:`record_ratios`: ``--ratios-json`` of ``benchmarks/estimator_efficiency.py`` and
``benchmarks/adaptive_relation_testing.py``) with their provenance (command, date, sizes, machine, and whether the
sizes were below the benchmark's defaults), and read here (:func:`read_ratios`); no ratio is typed into code.
"""

from __future__ import annotations

import datetime
import json
import math
import os
import platform
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from infodecomp.experiments.costs import PlanRow, corrected_plan, critical_path, gpu_hours, plan_total

from .markers import write_atomic

__all__ = ["Throughput", "read_throughput", "plan_markdown", "COST_START", "COST_END", "DEFAULT_GPUS",
           "MeasuredRatio", "read_ratios", "record_ratios", "machine", "corrected_markdown", "RATIOS_FORMAT"]

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


#: The ``format`` field of benchmarks/measured_ratios.json.
RATIOS_FORMAT = "infodecomp-measured-ratios/1"


@dataclass(frozen=True)
class MeasuredRatio:
    """One ratio of benchmarks/measured_ratios.json: how many times fewer UNet evaluations a scheme needs than the
    faithful run for the same accuracy, measured on shapes-tiny (or another model) by a benchmark."""

    key: str              # e.g. "estimator_efficiency/shapes-tiny/pixel_info_o"
    ratio: float          # > 0; > 1: fewer evaluations
    what: str             # what was measured, in words (the scheme, the quantity, the data)
    benchmark: str        # the script, e.g. "benchmarks/estimator_efficiency.py"
    command: str          # the command line that measured it
    date: str             # ISO date (UTC) of the measurement
    machine: str          # where: CPU/GPU, threads, platform
    reduced_size: bool    # True: some size was below the benchmark's defaults (a quick, noisier measurement)
    sizes: dict           # the benchmark's size options as run

    @property
    def label(self) -> str:
        """How a table names it: ``"9.60× (<what>; reduced size)"``."""
        return f"{self.ratio:.2f}× ({self.what}{'; reduced size' if self.reduced_size else ''})"


def machine() -> str:
    """A line saying where a benchmark ran (no host name): the torch device when torch is loaded, the CPU count,
    the platform."""
    import sys

    torch = sys.modules.get("torch")  # only when the benchmark has imported it: this module imports no torch
    dev = "CPU"
    if torch is not None:
        dev = (f"GPU {torch.cuda.get_device_name(0)}" if torch.cuda.is_available()
               else f"CPU, {torch.get_num_threads()} torch threads")
    return f"{dev}; {os.cpu_count()} CPU cores visible; {platform.system()} {platform.machine()}, " \
           f"Python {platform.python_version()}"


def record_ratios(path: str | Path, ratios: Mapping[str, tuple[float, str]], *, benchmark: str, command: str,
                  sizes: Mapping, reduced_size: bool, machine_line: str | None = None,
                  date: str | None = None) -> None:
    """Add (or replace) ``ratios`` (``{key: (ratio, what)}``) in the JSON at ``path``, with the provenance of the
    run; the other keys of the file stay. Written atomically. A ratio that is not finite and > 0 is refused."""
    path = Path(path)
    data = {"format": RATIOS_FORMAT, "ratios": {}}
    if path.is_file():
        data = _load_ratios(path)
    for key, (ratio, what) in ratios.items():
        if isinstance(ratio, bool) or not isinstance(ratio, (int, float)) or not math.isfinite(ratio) or ratio <= 0:
            raise ValueError(f"ratio {key!r} must be a finite number > 0, got {ratio!r}")
        data["ratios"][key] = {
            "ratio": float(ratio), "what": str(what), "benchmark": benchmark, "command": command,
            "date": date or datetime.datetime.now(datetime.timezone.utc).date().isoformat(),
            "machine": machine_line or machine(), "reduced_size": bool(reduced_size), "sizes": dict(sizes)}
    data["ratios"] = dict(sorted(data["ratios"].items()))
    write_atomic(path, json.dumps(data, indent=1, ensure_ascii=False) + "\n")


def _load_ratios(path: Path) -> dict:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as err:
        raise ValueError(f"{path} is not JSON ({err})") from err
    if not isinstance(data, dict) or data.get("format") != RATIOS_FORMAT or not isinstance(data.get("ratios"), dict):
        raise ValueError(f"{path} is not a measured-ratios file (expected an object with format={RATIOS_FORMAT!r} "
                         "and an object of ratios)")
    return data


def read_ratios(path: str | Path) -> dict[str, MeasuredRatio]:
    """The ratios of benchmarks/measured_ratios.json: ``{key: MeasuredRatio}``. Refuses a file of another format
    and an entry without its provenance."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no measured ratios at {path}; the benchmarks write them with --ratios-json")
    out = {}
    for key, e in _load_ratios(path)["ratios"].items():
        try:
            r = MeasuredRatio(key=key, ratio=float(e["ratio"]), what=str(e["what"]), benchmark=str(e["benchmark"]),
                              command=str(e["command"]), date=str(e["date"]), machine=str(e["machine"]),
                              reduced_size=bool(e["reduced_size"]), sizes=dict(e["sizes"]))
        except (KeyError, TypeError, ValueError) as err:
            raise ValueError(f"{path}: ratio {key!r} lacks its value or provenance ({err!r})") from None
        if not math.isfinite(r.ratio) or r.ratio <= 0:
            raise ValueError(f"{path}: ratio {key!r} must be a finite number > 0, got {r.ratio!r}")
        out[key] = r
    return out


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


def corrected_markdown(rows: Sequence[PlanRow], ratios: Mapping[str, MeasuredRatio]) -> str:
    """The plan under the corrected protocol (:func:`infodecomp.experiments.costs.corrected_plan`): per row the
    faithful evaluations, the expected ones at the faithful run's accuracy and the measured ratio used, the totals,
    and where each ratio comes from (benchmark, command, date, machine, reduced size or not)."""
    plan = corrected_plan(rows, {k: r.ratio for k, r in ratios.items()})
    lines = ["| notebook | what (paper scale) | faithful | corrected, expected | saving | measured on shapes-tiny |",
             "|---|---|---:|---:|---:|---|"]
    used: dict[str, MeasuredRatio] = {}
    for c in plan:
        r = c.row
        paren = (lambda t: t) if r.new else (lambda t: f"({t})")
        if c.ratio_key is None:
            source = "no saving measured: counted as faithful" if r.saving else "—"
        else:
            m = ratios[c.ratio_key]
            used[c.ratio_key] = m
            part = "all of it" if r.savable == r.evaluations else f"{r.savable:,} of it"
            source = f"{part} ÷ {m.ratio:.2f} (`{c.ratio_key}`{', reduced size' if m.reduced_size else ''})"
        saving = f"{r.evaluations / c.evaluations:.2f}×" if c.evaluations else "—"
        lines.append(f"| {r.notebook} | {r.part} | {paren(f'{r.evaluations:,}')} | {paren(f'{c.evaluations:,}')} | "
                     f"{saving} | {source} |")
    faithful = plan_total(rows)
    total = sum(c.evaluations for c in plan if c.row.new)
    lines.append(f"| **all** | every notebook once | **{faithful:,}** | **{total:,}** | "
                 f"**{faithful / total:.2f}×** | |")
    relation = [c for c in plan if c.row.new and c.row.saving.startswith("relation_testing")]
    rf, rc = sum(c.row.evaluations for c in relation), sum(c.evaluations for c in relation)
    gpu = [m for m in used.values() if "GPU" in m.machine]
    reduced = [m for m in used.values() if m.reduced_size]
    lines += ["", f"What a GPU user saves, by this plan: every notebook once at the paper's scale is expected to "
                  f"take {total:,} UNet evaluations instead of {faithful:,} ({faithful / total:.2f}× fewer)"
                  + (f"; relation testing alone {rf / rc:.2f}× fewer" if relation and rc else "")
                  + f". How sure: {len(used)} measured ratios, {len(reduced)} of them at reduced size, "
                  + (f"{len(gpu)} on a GPU" if gpu else "none on a GPU (shapes-tiny on a CPU; SD 2.1-base's "
                     "ratios were not measured)") + "."]
    lines += ["", "Measured ratios used (benchmarks/measured_ratios.json, written by the benchmarks):", ""]
    for key, m in sorted(used.items()):
        size = "reduced size" if m.reduced_size else "full size"
        lines.append(f"- `{key}`: {m.ratio:.2f}×, {m.what}. {size} "
                     f"({', '.join(f'{k} {v}' for k, v in m.sizes.items())}); `{m.command}`, {m.date}, {m.machine}.")
    if not used:
        lines.append("- none: every row counted as faithful.")
    return "\n".join(lines)
