#!/usr/bin/env python
"""Regenerate the results tables of docs/results.md and docs/pid.md from the notebooks' recorded numbers.

Reads every ``figures/<model>/<notebook-stem>.json`` (written by ``infodecomp.results.record``) and rewrites the
part of docs/results.md between the markers ``<!-- results:start -->`` and ``<!-- results:end -->``; nothing else
in the file changes. The results live only there: the README links to them. One table per notebook and model::

    #### `03_localization` — `shapes-tiny`

    | name | value ± stderr | provenance |
    |---|---|---|
    | miou_cmi | 0.412 ± 0.011 | model shapes-tiny, protocol faithful, seed 0, samples 64 |

followed by the Markdown tables the notebook wrote beside its numbers (``figures/<model>/<stem>*.md``).

docs/pid.md's block between ``<!-- pid-table:start -->`` and ``<!-- pid-table:end -->`` is notebook 09's
decomposition on the embedded model (``figures/shapes-tiny/09_pid_two_words.json``), one row per case and
estimator (tools/pid_table.py). A document may hold either block or both.

Usage::

    python scripts/update_readme_results.py            # rewrite docs/results.md and docs/pid.md
    python scripts/update_readme_results.py --check    # exit 1 if one is out of date
    python scripts/update_readme_results.py --doc D.md # another file with the markers (--doc repeats)

Standard library only (tools.markers, tools.numbers, tools.pid_table), so it runs without torch.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from tools import pid_table
from tools.markers import replace_block, write_atomic
from tools.numbers import format_value, read_record

START = "<!-- results:start -->"
END = "<!-- results:end -->"
EMPTY = "No results are recorded yet."  # the placeholder line, kept word for word
REPO = Path(__file__).resolve().parent.parent
#: The documents rewritten by default: the results page (the results block) and the PID page (its table).
DOCUMENTS = (REPO / "docs" / "results.md", REPO / "docs" / "pid.md")


def provenance_summary(prov: dict) -> str:
    """Model, protocol, seed and sample count, as one short line (no dates: the page changes only with
    the numbers)."""
    parts = [f"model {prov.get('model_id') or prov.get('model', '?')}"]
    if prov.get("revision"):
        parts.append(f"revision {prov['revision']}")
    if prov.get("dtype") not in (None, "float32"):  # float32 is the reference; say anything else
        parts.append(f"dtype {prov['dtype']}" + (" (reduced precision: biased, see docs/models.md#precision)"
                                                 if prov.get("reduced_precision") else ""))
    for key, label in (("protocol", "protocol"), ("seed", "seed"), ("n_samples", "samples")):
        if prov.get(key) is not None:
            parts.append(f"{label} {prov[key]}")
    if prov.get("sampling") == "fitted":  # the paper's truncated logistic otherwise
        parts.append("fitted log-SNR proposal")
    return ", ".join(parts)


def _cell(text: str) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def notebook_tables(json_path: Path) -> list[str]:
    """The Markdown tables a notebook wrote beside its numbers (``<stem>*.md`` in the same folder: Table 1 with
    the paper's rows, say), each with its ``# title`` line turned into a bold caption so the page's headings
    stay the page's."""
    out = []
    for md in sorted(json_path.parent.glob(f"{json_path.stem}*.md")):
        text = md.read_text(encoding="utf-8").strip()
        lines = [f"**{line.lstrip('#').strip()}**" if line.startswith("#") else line for line in text.splitlines()]
        out.append("\n".join(lines))
    return out


def render(figures: Path) -> str:
    """The markdown that goes between the markers (without them)."""
    files = sorted(figures.glob("*/*.json")) if figures.is_dir() else []
    tables = []
    for path in sorted(files, key=lambda p: (p.stem, p.parent.name)):
        try:
            data = read_record(path)
        except ValueError as err:
            raise SystemExit(str(err)) from err
        prov = data.get("_provenance", {})
        summary = _cell(provenance_summary({"model": path.parent.name, **prov}))
        lines = [f"#### `{path.stem}` — `{path.parent.name}`", "", "| name | value ± stderr | provenance |",
                 "|---|---|---|"]
        for name, entry in data.items():
            if name.startswith("_"):
                continue
            if isinstance(entry, dict):
                text = format_value(entry["value"], entry.get("stderr"))
            else:
                text = format_value(entry)
            lines.append(f"| {_cell(name)} | {text} | {summary} |")
        lines += [piece for md in notebook_tables(path) for piece in ("", md)]
        tables.append("\n".join(lines))
    if not tables:
        return EMPTY
    return "\n\n".join(tables)


def updated_text(text: str, figures: Path) -> str:
    """``text`` with the block between the markers replaced by :func:`render`."""
    try:
        return replace_block(text, START, END, render(figures))
    except ValueError as err:
        raise SystemExit(f"the file must contain exactly one {START!r} followed by one {END!r} ({err})") from err


def refreshed(text: str, figures: Path) -> str:
    """``text`` with each generated block it holds (the results block, the PID table) rendered anew; a text
    with neither is refused."""
    blocks = [(START, END, updated_text), (pid_table.PID_START, pid_table.PID_END, pid_table.updated_text)]
    present = [(start, end, update) for start, end, update in blocks if start in text or end in text]
    if not present:
        raise SystemExit("the file must contain " + " or ".join(f"{start!r} … {end!r}" for start, end, _ in blocks))
    for start, end, update in present:
        try:
            text = update(text, figures)
        except ValueError as err:  # the PID table's malformed markers or incomplete record
            raise SystemExit(f"{start} … {end}: {err}") from err
    return text


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--doc", type=Path, action="append", default=None,
                        help="a file with the markers to update (repeatable; default: docs/results.md and "
                             "docs/pid.md)")
    parser.add_argument("--figures", type=Path, default=REPO / "figures", help="folder of <model>/<stem>.json")
    parser.add_argument("--check", action="store_true", help="exit 1 if a file is out of date; write nothing")
    args = parser.parse_args(argv)
    docs = args.doc if args.doc is not None else list(DOCUMENTS)
    for doc in docs:
        if not doc.is_file():
            raise SystemExit(f"no file at {doc}")
    stale = []
    for path in docs:
        old = path.read_text(encoding="utf-8")
        try:
            new = refreshed(old, args.figures)
        except SystemExit as err:
            raise SystemExit(f"{path}: {err}") from err
        if args.check:
            if new != old:
                stale.append(path)
            continue
        if new != old:
            write_atomic(path, new)
            print(f"updated {path}")
        else:
            print(f"{path} already up to date")
    if args.check:
        for path in stale:
            print(f"{path} results tables are out of date; run scripts/update_readme_results.py", file=sys.stderr)
        if stale:
            return 1
        print("results tables are up to date: " + ", ".join(str(p) for p in docs))
    return 0


if __name__ == "__main__":
    sys.exit(main())
