"""Markdown and CSV tables of results (no dependency beyond pandas, which the caller's DataFrame brings)."""

from __future__ import annotations

import math
from pathlib import Path

__all__ = ["markdown_table", "save_tables"]


def markdown_table(df, *, floatfmt: str = ".3f", index: bool = False) -> str:
    """A GitHub-flavoured Markdown table of a DataFrame (no extra dependency)."""
    d = df.reset_index() if index else df

    def cell(v) -> str:
        if isinstance(v, float):
            return "–" if math.isnan(v) else format(v, floatfmt)
        return str(v).replace("|", "\\|")

    head = "| " + " | ".join(str(c) for c in d.columns) + " |"
    sep = "|" + "|".join("---" for _ in d.columns) + "|"
    body = ["| " + " | ".join(cell(v) for v in row) + " |" for row in d.itertuples(index=False)]
    return "\n".join([head, sep, *body]) + "\n"


def save_tables(stem: str | Path, table, csv_table=None, *, title: str = "", notes: str = "") -> tuple[Path, Path]:
    """Write ``<stem>.md`` (``title``, ``table`` as Markdown, ``notes``) and ``<stem>.csv`` (``csv_table``, default
    ``table``); folders are created. Returns the two paths."""
    stem = Path(stem)
    stem.parent.mkdir(parents=True, exist_ok=True)
    md, csv = stem.with_suffix(".md"), stem.with_suffix(".csv")
    index = table.index.name is not None or not isinstance(table.index, type(table.reset_index().index))
    parts = [f"# {title}\n" if title else "", markdown_table(table, index=index), f"\n{notes}\n" if notes else ""]
    md.write_text("\n".join(p for p in parts if p), encoding="utf-8")
    (table if csv_table is None else csv_table).to_csv(csv, index=csv_table is None and index)
    return md, csv
