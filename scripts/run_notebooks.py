"""Execute the numbered notebooks with papermill.

    python scripts/run_notebooks.py                 # every notebooks/NN_*.ipynb with its own defaults
    python scripts/run_notebooks.py --small         # with the small CI parameters of notebooks/ci_parameters.yml
    python scripts/run_notebooks.py --paper --model OWNER/NAME --revision COMMIT   # the paper's scale, on a GPU
    python scripts/run_notebooks.py --parameters my.yml   # any parameter file in the format of those two
    python scripts/run_notebooks.py --only 01 04    # a subset, by number prefix
    python scripts/run_notebooks.py -p MODEL=sd21-base -p DEVICE=cuda   # override parameters in every notebook
    python scripts/run_notebooks.py --out-dir /tmp/figs --store-dir /tmp/runs   # other output folders
    accelerate launch --multi_gpu --num_processes 4 scripts/run_notebooks.py --paper --only 02 --model ...   # sharded
    python scripts/run_notebooks.py --list-sharded  # which notebooks shard (02 03): the Makefile's list

Every notebook takes the same two folder parameters (docs/architecture.md#outputs): ``OUT_DIR`` (figures, tables
and recorded numbers, ``OUT_DIR/<model>/``; default ``figures``) and ``STORE_DIR`` (resumable result stores,
``STORE_DIR/<model>/<experiment>/``; default ``runs``). ``--out-dir`` and ``--store-dir`` set them for every
notebook; ``--small`` defaults them to ``build/ci/figures`` and ``build/ci/runs`` so a smoke run never touches the
recorded results. Notebooks run with the repository root as working directory (relative paths resolve there);
executed copies go to ``build/notebooks/`` (``build/ci/notebooks/`` with ``--small``, ``build/paper/notebooks/``
with ``--paper``), from which ``make book`` builds the read-along book. Every notebook is attempted; the exit
status is non-zero if any failed, and the failures are listed at the end.

A parameter file (``notebooks/ci_parameters.yml``, ``notebooks/paper_parameters.yml``) maps notebook stems to
``{NAME: value}`` (one run), to a list of such mappings (several runs: the first writes to ``OUT_DIR``, each
further one, named by its ``variant`` key, to ``OUT_DIR/<variant>``), or to ``{skip: "why"}``. Every name must be a
parameter of that notebook's ``parameters`` cell (papermill would silently add an unknown one). ``--model``
sets ``MODEL`` in every notebook that has it and whose entry does not; with a hub id it first fetches a verified
copy at ``--revision`` into ``--weights-dir`` (scripts/fetch_weights.py) and passes that folder.

Sharding: started by a multi-process launcher (``accelerate launch``, which sets ``WORLD_SIZE`` and
``LOCAL_RANK``), each process runs only the notebooks whose experiment splits its examples over the launch's
processes (:data:`SHARDED`; ``infodecomp.results.run_sharded``), on ``cuda:<LOCAL_RANK>``, with its figures and
executed copies under ``build/shards/rank-<r>/`` and the result stores shared: the stores fill in parallel. One
notebook per launch (``--only NN``): its kernel joins the launch's process group, which a second kernel could not
join again. A second, plain run then reads the complete stores and draws every figure (``make reproduce-paper``
does both).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = ROOT / "notebooks"
#: Where executed copies and the two folder parameters go: (executed, OUT_DIR, STORE_DIR); None = the notebook's own
#: default (``figures``, ``runs``). Paths are relative to the repository root.
FOLDERS = {"default": ("build/notebooks", None, None),
           "small": ("build/ci/notebooks", "build/ci/figures", "build/ci/runs"),
           "paper": ("build/paper/notebooks", None, None)}
PARAMETER_FILES = {"small": NOTEBOOKS / "ci_parameters.yml", "paper": NOTEBOOKS / "paper_parameters.yml"}
#: Notebooks whose experiment shards its examples over the processes of a launch (relation_testing.run calls
#: run_sharded with the launcher's state); under a multi-process launch only these run. The one list: the
#: Makefile's reproduce-paper asks for it (``--list-sharded``) instead of writing it again.
SHARDED = ("02_relation_testing", "03_relation_types")
#: Lower-case keys a parameter-file entry may hold besides the notebook's parameters.
ENTRY_KEYS = ("variant", "skip")
_VARIANT = re.compile(r"^[a-z0-9][a-z0-9._-]*$")


@dataclass
class Run:
    """One execution of a notebook: its ``variant`` (None for the main run) and parameters."""

    path: Path
    params: dict = field(default_factory=dict)
    variant: str | None = None

    @property
    def executed_name(self) -> str:
        return self.path.name if self.variant is None else f"{self.path.stem}.{self.variant}.ipynb"


def notebook_parameters(path: Path) -> list[str]:
    """The names assigned in ``path``'s cell tagged ``parameters``, in order."""
    nb = json.loads(Path(path).read_text(encoding="utf-8"))
    cells = [c for c in nb["cells"] if "parameters" in c.get("metadata", {}).get("tags", [])]
    if len(cells) != 1:
        raise ValueError(f"{path.name}: expected exactly one cell tagged 'parameters', found {len(cells)}")
    source = "".join(cells[0]["source"]) if isinstance(cells[0]["source"], list) else cells[0]["source"]
    return re.findall(r"^([A-Z][A-Z0-9_]*) = ", source, re.M)


def load_parameter_file(file: Path, paths: list[Path]) -> dict[str, list[dict] | str]:
    """``{stem: [entry, ...]}`` of a parameter file (or ``{stem: "why"}`` for a skipped notebook), checked against
    the notebooks ``paths``: every key a notebook stem, every name a parameter of that notebook, variants named
    and distinct. Raises ``ValueError`` saying what is wrong and where."""
    try:
        data = yaml.safe_load(Path(file).read_text(encoding="utf-8")) or {}
    except (OSError, yaml.YAMLError) as err:
        raise ValueError(f"cannot read the parameter file {file}: {err}") from err
    if not isinstance(data, dict):
        raise ValueError(f"{file}: expected a mapping of notebook stems, got {type(data).__name__}")
    by_stem = {p.stem: p for p in sorted(NOTEBOOKS.glob("[0-9][0-9]_*.ipynb"))} | {p.stem: p for p in paths}
    out: dict[str, list[dict] | str] = {}
    for stem, entry in data.items():
        if stem not in by_stem:
            raise ValueError(f"{file}: {stem!r} is not a notebook of {NOTEBOOKS} (stems: {', '.join(by_stem)})")
        if isinstance(entry, dict) and "skip" in entry:
            if set(entry) != {"skip"} or not isinstance(entry["skip"], str) or not entry["skip"].strip():
                raise ValueError(f"{file}: {stem}: a skipped entry is {{skip: \"why\"}} alone, got {entry!r}")
            out[stem] = entry["skip"]
            continue
        runs = [{} if entry is None else entry] if not isinstance(entry, list) else entry
        if not runs:
            raise ValueError(f"{file}: {stem}: an empty list of runs")
        names = set(notebook_parameters(by_stem[stem]))
        variants = []
        for k, run in enumerate(runs):
            if not isinstance(run, dict):
                raise ValueError(f"{file}: {stem} run {k}: expected a mapping of parameters, got {run!r}")
            unknown = sorted(n for n in run if n not in names and n != "variant")
            if unknown:
                raise ValueError(f"{file}: {stem}: {unknown} are not parameters of {by_stem[stem].name} "
                                 f"(it has {', '.join(sorted(names))})")
            variant = run.get("variant")
            if k == 0 and variant is not None:
                raise ValueError(f"{file}: {stem}: the first run writes to OUT_DIR and has no variant, got {variant!r}")
            if k > 0 and (not isinstance(variant, str) or not _VARIANT.match(variant) or variant in variants):
                raise ValueError(f"{file}: {stem} run {k}: each further run needs its own variant name (lower "
                                 f"case letters, digits, '.', '_', '-'), got {variant!r}")
            variants.append(variant)
        out[stem] = runs
    return out


def parse_overrides(items: list[str]) -> dict:
    out = {}
    for item in items:
        if "=" not in item:
            raise SystemExit(f"-p expects NAME=VALUE, got {item!r}")
        name, value = item.split("=", 1)
        out[name.strip()] = yaml.safe_load(value)
    return out


def launch() -> tuple[int, int, int]:
    """``(rank, local_rank, world_size)`` of a multi-process launch (``accelerate launch``, torchrun), or
    ``(0, 0, 1)``."""
    world = int(os.environ.get("WORLD_SIZE", "1") or 1)
    return int(os.environ.get("RANK", "0") or 0), int(os.environ.get("LOCAL_RANK", "0") or 0), world


def plan(paths: list[Path], entries: dict, *, folders: dict, overrides: dict, model: str | None = None,
         world: tuple[int, int, int] = (0, 0, 1)) -> tuple[list[Run], list[tuple[str, str]]]:
    """The runs to execute and the ``(notebook, why)`` of those left out."""
    rank, local_rank, size = world
    runs, skipped = [], []
    for path in paths:
        entry = entries.get(path.stem, [{}])
        if isinstance(entry, str):
            skipped.append((path.name, entry))
            continue
        if size > 1 and path.stem not in SHARDED:
            skipped.append((path.name, f"not sharded: run it without the {size}-process launch"))
            continue
        has_model = "MODEL" in notebook_parameters(path)
        for run in entry:
            params = {k: v for k, v in run.items() if k != "variant"}
            variant = run.get("variant")
            local = dict(folders)
            if variant is not None:
                local["OUT_DIR"] = f"{local.get('OUT_DIR', 'figures')}/{variant}"
            if model is not None and has_model and "MODEL" not in params:
                params["MODEL"] = model
            params = {**local, **params, **overrides}
            if size > 1 and params.get("DEVICE") == "cuda":
                params["DEVICE"] = f"cuda:{local_rank}"
            runs.append(Run(path, params, variant))
    return runs, skipped


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    which = ap.add_mutually_exclusive_group()
    which.add_argument("--small", action="store_true", help="use notebooks/ci_parameters.yml (fast CI settings)")
    which.add_argument("--paper", action="store_true", help="use notebooks/paper_parameters.yml (the paper's scale)")
    which.add_argument("--parameters", default=None, metavar="FILE", help="a parameter file of that format")
    ap.add_argument("--only", nargs="*", default=None, help="number prefixes of the notebooks to run")
    ap.add_argument("-p", "--param", action="append", default=[], help="NAME=VALUE override for every notebook")
    ap.add_argument("--model", default=None, help="MODEL of every notebook that has one: short name, local "
                                                  "pipeline directory, or hub id (fetched, see --revision)")
    ap.add_argument("--revision", default=None, help="the hub commit of --model (a hub id) to fetch and run")
    ap.add_argument("--weights-dir", default="weights", help="where fetched weights go (default: %(default)s)")
    ap.add_argument("--out", default=None, help="folder for the executed copies (default build/notebooks; "
                                                "build/ci/notebooks with --small, build/paper/notebooks with --paper)")
    ap.add_argument("--out-dir", default=None, help="OUT_DIR of every notebook (default: the notebooks' own, "
                                                    "figures; build/ci/figures with --small)")
    ap.add_argument("--store-dir", default=None, help="STORE_DIR of every notebook (default: the notebooks' own, "
                                                      "runs; build/ci/runs with --small)")
    ap.add_argument("--dry-run", action="store_true", help="print the runs and their parameters, execute nothing")
    ap.add_argument("--kernel", default="python3")
    ap.add_argument("--list-sharded", action="store_true",
                    help="print the number prefixes of the notebooks that shard under a launch (SHARDED) and exit")
    args = ap.parse_args(argv)
    if args.list_sharded:
        print(" ".join(stem[:2] for stem in SHARDED))
        return 0

    paths = sorted(NOTEBOOKS.glob("[0-9][0-9]_*.ipynb"))
    if args.only:
        paths = [p for p in paths if p.name[:2] in set(args.only)]
    if not paths:
        print(f"no notebooks to run in {NOTEBOOKS} (only={args.only})", file=sys.stderr)
        return 1
    mode = "small" if args.small else "paper" if args.paper else "default"
    file = PARAMETER_FILES.get(mode) if args.parameters is None else Path(args.parameters)
    try:
        entries = load_parameter_file(file, paths) if file is not None else {}
    except ValueError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    if args.revision and not args.model:
        print("error: --revision needs --model (the hub id it pins)", file=sys.stderr)
        return 2
    world = launch()
    rank = world[0]
    model = args.model
    if model is not None:
        from fetch_weights import fetch  # scripts/fetch_weights.py, found beside this script

        try:  # under a launch, every process only checks the copy that the plain fetch made beforehand
            model = fetch(model, args.revision, args.weights_dir, verify_only=world[2] > 1)
        except ValueError as err:
            print(f"error: {err}", file=sys.stderr)
            return 2
    overrides = parse_overrides(args.param)
    executed, out_default, store_default = FOLDERS[mode]
    if world[2] > 1:  # the sharded phase: figures and executed copies per process, out of the way
        executed, out_default = f"build/shards/rank-{rank}/notebooks", f"build/shards/rank-{rank}/figures"
    folders = {name: value for name, value in (("OUT_DIR", args.out_dir or out_default),
                                               ("STORE_DIR", args.store_dir or store_default)) if value}
    runs, skipped = plan(paths, entries, folders=folders, overrides=overrides, model=model, world=world)
    for name, why in skipped:
        print(f"== {name}  skipped: {why}", flush=True)
    if world[2] > 1 and len(runs) > 1:
        print(f"error: under a {world[2]}-process launch, run one notebook per launch (each notebook's kernel joins "
              f"the launch's process group once); this would run {', '.join(r.executed_name for r in runs)}: "
              "pick one with --only NN", file=sys.stderr)
        return 2
    if args.dry_run:
        for run in runs:
            print(f"{run.executed_name}: {json.dumps(run.params, sort_keys=True)}")
        return 0
    if not runs:
        print("no notebook to run (all were skipped)", file=sys.stderr)
        return 1
    out_dir = Path(args.out) if args.out else ROOT / executed
    out_dir.mkdir(parents=True, exist_ok=True)
    # The kernels inherit this environment. A non-interactive backend exported for tests (MPLBACKEND=Agg, as CI
    # does) would keep every figure out of the executed notebooks, and so out of the book: use the inline backend.
    os.environ["MPLBACKEND"] = "module://matplotlib_inline.backend_inline"
    import papermill as pm

    failures = []
    for run in runs:
        print(f"== {run.executed_name}  parameters: {run.params or 'defaults'}", flush=True)
        t0 = time.perf_counter()
        try:
            pm.execute_notebook(str(run.path), str(out_dir / run.executed_name), parameters=run.params,
                                kernel_name=args.kernel, cwd=str(ROOT), progress_bar=False, log_output=False)
        except Exception as exc:  # report every notebook, then fail at the end
            failures.append((run.executed_name, f"{type(exc).__name__}: {exc}"))
            print(f"   FAILED after {time.perf_counter() - t0:.1f} s: {type(exc).__name__}", flush=True)
            continue
        print(f"   ok in {time.perf_counter() - t0:.1f} s -> {out_dir / run.executed_name}", flush=True)

    if failures:
        print(f"\n{len(failures)} of {len(runs)} notebook runs failed:", file=sys.stderr)
        for name, msg in failures:
            print(f"- {name}: {msg[:4000]}", file=sys.stderr)
        return 1
    print(f"\nall {len(runs)} notebook runs ran" + (f" ({len(skipped)} skipped)" if skipped else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
