#!/usr/bin/env python
"""Regenerate the claims table (each claim of the paper, the embedded model's paired difference with its
interval, and the verdict; rules in tools/claims.py) in README.md and docs/results.md, between the
markers ``<!-- claims-table:start -->`` and ``<!-- claims-table:end -->``, from figures/<model>/*.json.

    python scripts/update_claims.py            # rewrite the files that have the markers
    python scripts/update_claims.py --check    # exit 1 if one is out of date

Standard library only (tools.claims and infodecomp.digest import nothing else), like
scripts/update_readme_results.py.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from infodecomp.digest import weights_version
from tools.claims import CLAIMS_START, updated_text
from tools.markers import write_atomic

REPO = Path(__file__).resolve().parent.parent

#: The embedded models whose committed weights the recorded numbers are compared with.
EMBEDDED = {"shapes-tiny": REPO / "infodecomp" / "assets" / "shapes-tiny"}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("files", nargs="*", type=Path, default=[REPO / "README.md", REPO / "docs" / "results.md"])
    p.add_argument("--figures", type=Path, default=REPO / "figures")
    p.add_argument("--check", action="store_true", help="exit 1 if a file is out of date; write nothing")
    a = p.parse_args(argv)
    stale = 0
    for f in a.files:
        if not f.is_file() or CLAIMS_START not in f.read_text(encoding="utf-8"):
            continue
        old = f.read_text(encoding="utf-8")
        try:
            new = updated_text(old, a.figures, current={m: weights_version(d) for m, d in EMBEDDED.items()})
        except ValueError as err:
            raise SystemExit(f"{f}: {err}") from err
        if new == old:
            continue
        if a.check:
            print(f"{f}: the claims table is out of date; run scripts/update_claims.py", file=sys.stderr)
            stale = 1
            continue
        write_atomic(f, new)
        print(f"updated {f}")
    return stale


if __name__ == "__main__":
    sys.exit(main())
