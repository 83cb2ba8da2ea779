"""Execute the numbered notebooks with papermill.

    python scripts/run_notebooks.py                 # every notebooks/NN_*.ipynb with its own defaults
    python scripts/run_notebooks.py --small         # with the small CI parameters of notebooks/ci_parameters.yml
    python scripts/run_notebooks.py --paper --model OWNER/NAME --revision COMMIT   # the paper's scale, on a GPU
    python scripts/run_notebooks.py --parameters my.yml   # any parameter file in the format of those two
    python scripts/run_notebooks.py --only 01 04    # a subset, by number prefix
    python scripts/run_notebooks.py -p MODEL=sd21-base -p DEVICE=cuda   # override parameters where notebooks have them
    python scripts/run_notebooks.py --out-dir /tmp/figs --store-dir /tmp/runs   # other output folders
    accelerate launch --multi_gpu --num_processes 4 scripts/run_notebooks.py --paper --only 02 --model ...   # sharded
    accelerate launch ... scripts/run_notebooks.py --paper --only 05 --variant steps-100 ...   # one run of several
    python scripts/run_notebooks.py --list-sharded  # which notebooks shard (02-07, 09): the Makefile's list
    python scripts/run_notebooks.py --paper --only 05 --list-variants   # its runs in the preset: main steps-100 ...

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
parameter of that notebook's ``parameters`` cell (papermill would silently add an unknown one), and every value of
the type of the literal assigned there: an int where the cell has ``N_SAMPLES = 100`` (an int or a float where it
has a float), anything where it has ``None``, and None also where the parameter's comment says what None means.
``-p NAME=VALUE`` (the value read as YAML) is checked the same way (:func:`check_values`) against the notebooks to
run and goes to those that have ``NAME``; a name none of them has is refused with the nearest names. All of it is
checked before the first notebook (or download) starts. ``--model``
sets ``MODEL`` in every notebook that has it and whose entry does not; with a hub id it first fetches a verified
copy at ``--revision`` into ``--weights-dir`` (scripts/fetch_weights.py) and passes that folder.

Sharding: started by a multi-process launcher (``accelerate launch``, which sets ``WORLD_SIZE`` and
``LOCAL_RANK``), each process runs only the notebooks whose experiment splits its examples over the launch's
processes (:data:`SHARDED`; ``infodecomp.results.run_sharded``), on ``cuda:<LOCAL_RANK>``, with its figures and
executed copies under ``build/shards/rank-<r>/`` and the result stores shared: the stores fill in parallel. One
notebook run per launch (``--only NN``, and ``--variant NAME`` where the parameter file gives the notebook several
runs; ``--list-variants`` names them, ``main`` for the first): its kernel joins the launch's process group, which a
second kernel could not join again. A second, plain run then reads the complete stores and draws every figure
(``make reproduce-paper`` does both).
"""

from __future__ import annotations

import argparse
import ast
import difflib
import io
import json
import os
import re
import sys
import time
import tokenize
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
#: Notebooks whose experiment shards its per-example work over the processes of a launch (their experiments call
#: ``infodecomp.results.run_sharded`` with the launcher's state: relation_testing.run, heatmaps.run,
#: localization.run_localization, intervention.run_intervention, image_level.run, pid.run); under a multi-process
#: launch only these run. The one list: the Makefile's reproduce-paper asks for it (``--list-sharded``) instead of
#: writing it again. Not here: 00 (a check of the embedded model), 01 (analytic worlds, no model), 08 (the probe).
SHARDED = ("02_relation_testing", "03_relation_types", "04_mi_cmi_heatmaps", "05_word_localization",
           "06_prompt_intervention", "07_image_level_information", "09_pid_two_words")
#: The name ``--variant`` and ``--list-variants`` give the first run of a notebook (the one without a variant).
MAIN_VARIANT = "main"
#: Lower-case keys a parameter-file entry may hold besides the notebook's parameters.
ENTRY_KEYS = ("variant", "skip")
_VARIANT = re.compile(r"^[a-z0-9][a-z0-9._-]*$")
#: A default that is not a literal (the checker then accepts any value).
UNKNOWN = object()
#: Types of a parameter's default and how an error names what is expected, first match wins (bool before int).
_KINDS = ((bool, "a bool (True or False)"), (int, "an int"), (float, "a float (or an int)"), (str, "a string"),
          ((list, tuple), "a list"), (dict, "a mapping"), (object, "a literal like the default"))


@dataclass
class Run:
    """One execution of a notebook: its ``variant`` (None for the main run) and parameters."""

    path: Path
    params: dict = field(default_factory=dict)
    variant: str | None = None

    @property
    def executed_name(self) -> str:
        return self.path.name if self.variant is None else f"{self.path.stem}.{self.variant}.ipynb"


@dataclass(frozen=True)
class Parameter:
    """One assignment of a notebook's ``parameters`` cell: its ``default`` (the literal assigned; ``UNKNOWN`` where
    it is not a literal) and its ``comment`` (the comment on its line and the indented comment lines under it)."""

    name: str
    default: object
    comment: str

    @property
    def accepts_none(self) -> bool:
        """None is a value of this parameter: its default is None, or its comment says what None means."""
        return self.default is None or re.search(r"\bNone\b", self.comment) is not None

    def expected(self) -> str | None:
        """What a value must be, in words (None: anything, for a None or non-literal default)."""
        if self.default is None or self.default is UNKNOWN:
            return None
        kind = next(words for types, words in _KINDS if isinstance(self.default, types))
        return kind + (" or None" if self.accepts_none else "")

    def accepts(self, value) -> bool:
        """The parameters cell's literal decides the type: a bool takes a bool, an int an int, a float an int or a
        float (never a bool), a string a string, a list or tuple a list or tuple, a dict a dict; a None (or non-literal)
        default takes anything, and None is taken where :attr:`accepts_none`."""
        if self.default is None or self.default is UNKNOWN or (value is None and self.accepts_none):
            return True
        if isinstance(self.default, bool) or isinstance(value, bool):
            return isinstance(self.default, bool) and isinstance(value, bool)
        if isinstance(self.default, float):
            return isinstance(value, (int, float))
        if isinstance(self.default, (list, tuple)):
            return isinstance(value, (list, tuple))
        return isinstance(value, type(self.default))


def parameters_cell(path: Path) -> str:
    """The source of ``path``'s cell tagged ``parameters`` (exactly one)."""
    nb = json.loads(Path(path).read_text(encoding="utf-8"))
    cells = [c for c in nb["cells"] if "parameters" in c.get("metadata", {}).get("tags", [])]
    if len(cells) != 1:
        raise ValueError(f"{path.name}: expected exactly one cell tagged 'parameters', found {len(cells)}")
    return "".join(cells[0]["source"]) if isinstance(cells[0]["source"], list) else cells[0]["source"]


def notebook_parameter_specs(path: Path) -> dict[str, Parameter]:
    """``{name: Parameter}`` of ``path``'s ``parameters`` cell, in order."""
    source = parameters_cell(path)
    comments: dict[int, str] = {}
    for tok in tokenize.generate_tokens(io.StringIO(source).readline):
        if tok.type == tokenize.COMMENT:
            comments[tok.start[0]] = tok.string.lstrip("#").strip()
    body = [n for n in ast.parse(source).body if isinstance(n, ast.Assign) and len(n.targets) == 1
            and isinstance(n.targets[0], ast.Name)]
    out = {}
    for k, node in enumerate(body):
        last = body[k + 1].lineno - 1 if k + 1 < len(body) else len(source.splitlines())
        try:
            default = ast.literal_eval(node.value)
        except (ValueError, TypeError, SyntaxError):
            default = UNKNOWN
        comment = " ".join(comments[i] for i in range(node.lineno, last + 1) if i in comments)
        out[node.targets[0].id] = Parameter(node.targets[0].id, default, comment)
    return out


def notebook_parameters(path: Path) -> list[str]:
    """The names assigned in ``path``'s cell tagged ``parameters``, in order."""
    return re.findall(r"^([A-Z][A-Z0-9_]*) = ", parameters_cell(path), re.M)


def nearest(name: str, names) -> str:
    """`` (nearest: A, B)`` for the names most like ``name``, or ``""``."""
    close = difflib.get_close_matches(name, sorted(names), n=3, cutoff=0.6)
    return f" (nearest: {', '.join(close)})" if close else ""


def check_values(params: dict, path: Path, where: str) -> None:
    """Every value of ``params`` fits the type of its parameter in ``path``'s parameters cell
    (:meth:`Parameter.accepts`); raises ``ValueError`` naming ``where`` (the file or ``-p``), the parameter, the
    value given and what is expected. Names that are not parameters of ``path`` are left to the caller."""
    specs = notebook_parameter_specs(path)
    for name, value in params.items():
        spec = specs.get(name)
        if spec is None or spec.accepts(value):
            continue
        hint = ""
        if isinstance(value, str) and re.fullmatch(r"[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?", value.strip()):
            hint = f"; YAML reads {value} as a string: an int is plain digits (1000), a float has a dot (1.0e3)"
        raise ValueError(f"{where}: {name}={value!r} ({_kind(value)}) does not fit {path.name}'s parameters cell, "
                         f"{name} = {spec.default!r}: expected {spec.expected()}{hint}")


def _kind(value) -> str:
    """``value``'s type in words: "an int", "a string", "None", …"""
    if value is None:
        return "None"
    return next((w.split(" (")[0] for t, w in _KINDS[:-1] if isinstance(value, t)), f"a {type(value).__name__}")


def check_overrides(overrides: dict, paths: list[Path]) -> None:
    """``-p NAME=VALUE`` against the notebooks to run: each name a parameter of at least one of them (it goes to
    those that have it), each value of the type their parameters cells give it. Raises ``ValueError`` naming the
    parameter, the notebooks and the nearest valid names, or the value and the expected type."""
    names = {p: notebook_parameters(p) for p in paths}
    for name in overrides:
        if not any(name in have for have in names.values()):
            where = paths[0].name if len(paths) == 1 else f"any of {', '.join(p.name for p in paths)}"
            valid = {n for have in names.values() for n in have}
            raise ValueError(f"-p {name}: not a parameter of {where}{nearest(name, valid)}")
    for path in paths:
        check_values({k: v for k, v in overrides.items() if k in names[path]}, path, "-p")


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
                near = "".join(nearest(n, names) for n in unknown)
                raise ValueError(f"{file}: {stem}: {unknown} are not parameters of {by_stem[stem].name}{near} "
                                 f"(it has {', '.join(sorted(names))})")
            check_values({n: v for n, v in run.items() if n != "variant"}, by_stem[stem],
                         f"{file}: {stem}" + (f" run {k} ({run.get('variant')})" if k else ""))
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
         world: tuple[int, int, int] = (0, 0, 1), variant: str | None = None
         ) -> tuple[list[Run], list[tuple[str, str]]]:
    """The runs to execute and the ``(notebook, why)`` of those left out. ``variant``: only the run of that name
    (:data:`MAIN_VARIANT` for the first run of an entry)."""
    rank, local_rank, size = world
    variant_filter = variant
    runs, skipped = [], []
    for path in paths:
        entry = entries.get(path.stem, [{}])
        if isinstance(entry, str):
            skipped.append((path.name, entry))
            continue
        if size > 1 and path.stem not in SHARDED:
            skipped.append((path.name, f"not sharded: run it without the {size}-process launch"))
            continue
        names = notebook_parameters(path)
        has_model = "MODEL" in names
        for run in entry:
            params = {k: v for k, v in run.items() if k != "variant"}
            variant = run.get("variant")
            if variant_filter is not None and (variant or MAIN_VARIANT) != variant_filter:
                continue
            local = dict(folders)
            if variant is not None:
                local["OUT_DIR"] = f"{local.get('OUT_DIR', 'figures')}/{variant}"
            if model is not None and has_model and "MODEL" not in params:
                params["MODEL"] = model
            params = {**local, **params, **{k: v for k, v in overrides.items() if k in names}}
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
    ap.add_argument("-p", "--param", action="append", default=[],
                    help="NAME=VALUE (VALUE read as YAML) for every notebook to run that has NAME; checked against "
                         "the notebooks' parameters cells")
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
    ap.add_argument("--variant", default=None, help=f"run only the run of this variant name of each notebook's "
                                                    f"entry ({MAIN_VARIANT!r}: the first run)")
    ap.add_argument("--list-variants", action="store_true",
                    help=f"print the variant names of the runs of the notebooks to run ({MAIN_VARIANT!r} for the first "
                         "run of each) under the chosen parameter file, and exit (one launch each)")
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
    overrides = parse_overrides(args.param)
    try:  # every parameter is checked before a notebook (or a download) starts
        entries = load_parameter_file(file, paths) if file is not None else {}
        check_overrides(overrides, paths)
    except ValueError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    if args.list_variants:
        names = []
        for path in paths:
            entry = entries.get(path.stem, [{}])
            if not isinstance(entry, str):
                names += [run.get("variant") or MAIN_VARIANT for run in entry]
        print(" ".join(dict.fromkeys(names)))
        return 0
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
    executed, out_default, store_default = FOLDERS[mode]
    if world[2] > 1:  # the sharded phase: figures and executed copies per process, out of the way
        executed, out_default = f"build/shards/rank-{rank}/notebooks", f"build/shards/rank-{rank}/figures"
    folders = {name: value for name, value in (("OUT_DIR", args.out_dir or out_default),
                                               ("STORE_DIR", args.store_dir or store_default)) if value}
    runs, skipped = plan(paths, entries, folders=folders, overrides=overrides, model=model, world=world,
                         variant=args.variant)
    for name, why in skipped:
        print(f"== {name}  skipped: {why}", flush=True)
    if world[2] > 1 and len(runs) > 1:
        print(f"error: under a {world[2]}-process launch, run one notebook per launch (each notebook's kernel joins "
              f"the launch's process group once); this would run {', '.join(r.executed_name for r in runs)}: "
              "pick one with --only NN, and one run of a notebook that has several with --variant NAME "
              "(--list-variants names them)", file=sys.stderr)
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
