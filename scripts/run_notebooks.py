"""Execute the numbered notebooks with papermill.

    python scripts/run_notebooks.py                 # every notebooks/NN_*.ipynb with its own defaults
    python scripts/run_notebooks.py --small         # with the small CI parameters of notebooks/ci_parameters.yml
    python scripts/run_notebooks.py --only 01 04    # a subset, by number prefix
    python scripts/run_notebooks.py -p MODEL=sd21-base -p DEVICE=cuda   # override parameters in every notebook
    python scripts/run_notebooks.py --out-dir /tmp/figs --store-dir /tmp/runs   # other output folders

Every notebook takes the same two folder parameters (docs/architecture.md#outputs): ``OUT_DIR`` (figures, tables
and recorded numbers, ``OUT_DIR/<model>/``; default ``figures``) and ``STORE_DIR`` (resumable result stores,
``STORE_DIR/<model>/<experiment>/``; default ``runs``). ``--out-dir`` and ``--store-dir`` set them for every
notebook; ``--small`` defaults them to ``build/ci/figures`` and ``build/ci/runs`` so a smoke run never touches the
recorded results. Notebooks run with the repository root as working directory (relative paths resolve there);
executed copies go to ``build/notebooks/`` (``build/ci/notebooks/`` with ``--small``), from which ``make book``
builds the read-along book. Every notebook is attempted; the exit status is non-zero if any failed, and the
failures are listed at the end.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = ROOT / "notebooks"
#: Where executed copies and the two folder parameters go: (executed, OUT_DIR, STORE_DIR); None = the notebook's own
#: default (``figures``, ``runs``). Paths are relative to the repository root.
FOLDERS = {"default": ("build/notebooks", None, None),
           "small": ("build/ci/notebooks", "build/ci/figures", "build/ci/runs")}


def parse_overrides(items: list[str]) -> dict:
    out = {}
    for item in items:
        if "=" not in item:
            raise SystemExit(f"-p expects NAME=VALUE, got {item!r}")
        name, value = item.split("=", 1)
        out[name.strip()] = yaml.safe_load(value)
    return out


def main(argv: list[str] | None = None) -> int:
    import papermill as pm

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--small", action="store_true", help="use notebooks/ci_parameters.yml (fast CI settings)")
    ap.add_argument("--only", nargs="*", default=None, help="number prefixes of the notebooks to run")
    ap.add_argument("-p", "--param", action="append", default=[], help="NAME=VALUE override for every notebook")
    ap.add_argument("--out", default=None, help="folder for the executed copies (default build/notebooks; "
                                                "build/ci/notebooks with --small)")
    ap.add_argument("--out-dir", default=None, help="OUT_DIR of every notebook (default: the notebooks' own, "
                                                    "figures; build/ci/figures with --small)")
    ap.add_argument("--store-dir", default=None, help="STORE_DIR of every notebook (default: the notebooks' own, "
                                                      "runs; build/ci/runs with --small)")
    ap.add_argument("--kernel", default="python3")
    args = ap.parse_args(argv)

    paths = sorted(NOTEBOOKS.glob("[0-9][0-9]_*.ipynb"))
    if args.only:
        paths = [p for p in paths if p.name[:2] in set(args.only)]
    if not paths:
        print(f"no notebooks to run in {NOTEBOOKS} (only={args.only})", file=sys.stderr)
        return 1
    small = yaml.safe_load((NOTEBOOKS / "ci_parameters.yml").read_text()) or {} if args.small else {}
    overrides = parse_overrides(args.param)
    executed, out_default, store_default = FOLDERS["small" if args.small else "default"]
    folders = {name: value for name, value in (("OUT_DIR", args.out_dir or out_default),
                                               ("STORE_DIR", args.store_dir or store_default)) if value}
    out_dir = Path(args.out) if args.out else ROOT / executed
    out_dir.mkdir(parents=True, exist_ok=True)
    # The kernels inherit this environment. A non-interactive backend exported for tests (MPLBACKEND=Agg, as CI
    # does) would keep every figure out of the executed notebooks, and so out of the book: use the inline backend.
    os.environ["MPLBACKEND"] = "module://matplotlib_inline.backend_inline"

    failures = []
    for path in paths:
        params = {**folders, **(small.get(path.stem) or {}), **overrides}
        print(f"== {path.name}  parameters: {params or 'defaults'}", flush=True)
        t0 = time.perf_counter()
        try:
            pm.execute_notebook(str(path), str(out_dir / path.name), parameters=params, kernel_name=args.kernel,
                                cwd=str(ROOT), progress_bar=False, log_output=False)
        except Exception as exc:  # report every notebook, then fail at the end
            failures.append((path.name, f"{type(exc).__name__}: {exc}"))
            print(f"   FAILED after {time.perf_counter() - t0:.1f} s: {type(exc).__name__}", flush=True)
            continue
        print(f"   ok in {time.perf_counter() - t0:.1f} s -> {out_dir / path.name}", flush=True)

    if failures:
        print(f"\n{len(failures)} of {len(paths)} notebooks failed:", file=sys.stderr)
        for name, msg in failures:
            print(f"- {name}: {msg[:4000]}", file=sys.stderr)
        return 1
    print(f"\nall {len(paths)} notebooks ran")
    return 0


if __name__ == "__main__":
    sys.exit(main())
