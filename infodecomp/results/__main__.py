"""``python -m infodecomp.results check|repair PATH...``: check or repair the result stores at or under each PATH."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from .check import check_store, find_stores, repair_store
from .store import StoreBusyError


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m infodecomp.results check|repair PATH...``: check (exit 1 if anything is damaged) or repair
    the result stores at or under each PATH."""
    p = argparse.ArgumentParser(prog="python -m infodecomp.results",
                                description="Check or repair resumable result stores (see infodecomp.results).")
    p.add_argument("command", choices=("check", "repair"),
                   help="check: report damage, change nothing; repair: move damaged rows aside to be recomputed")
    p.add_argument("paths", nargs="+", help="a result store, or a folder holding stores (e.g. build/results)")
    a = p.parse_args(argv)
    status = 0
    for given in map(Path, a.paths):
        if not given.is_dir():
            print(f"[MISSING] {given}: no such folder", file=sys.stderr)
            status = 2
            continue
        stores = find_stores(given)
        if not stores:
            print(f"[NONE] {given}: no result store here (no manifest.json or rows-*.jsonl)", file=sys.stderr)
            status = max(status, 2)
        for store in stores:
            try:
                problems = check_store(store) if a.command == "check" else repair_store(store)
            except StoreBusyError as err:
                print(f"[BUSY] {store}: {err}")
                status = max(status, 1)
                continue
            if not problems:
                print(f"[ ok ] {store}")
                continue
            unfixable = [q for q in problems if q.fix.startswith("none")]
            tag = "[DAMAGED]" if a.command == "check" else ("[REPAIRED]" if len(unfixable) < len(problems)
                                                             else "[CANNOT REPAIR]")
            print(f"{tag} {store}: {len(problems)} problem(s)")
            for q in problems:
                print(f"    {q}")
            if a.command == "check" or unfixable:
                status = max(status, 1)
    return status


if __name__ == "__main__":
    sys.exit(main())
