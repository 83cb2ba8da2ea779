"""Generated blocks in markdown files: the text between a start and an end marker (HTML comments such as
``<!-- results:start -->``) is rewritten by a script and checked for staleness by the same script's ``--check``.

Standard library only, so that the scripts that write the README and docs/ (scripts/update_readme_results.py,
scripts/update_claims.py, scripts/cost_plan.py) run without torch.
"""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["replace_block", "write_atomic"]


def replace_block(text: str, start: str, end: str, body: str) -> str:
    """``text`` with everything between the markers ``start`` and ``end`` replaced by ``body`` (on its own lines;
    the markers are kept). Raises ``ValueError`` unless each marker occurs exactly once, ``start`` first."""
    i, j = text.find(start), text.find(end)
    if text.count(start) != 1 or text.count(end) != 1 or j < i:
        raise ValueError(f"expected exactly one {start!r} followed by one {end!r}; found {text.count(start)} "
                         f"and {text.count(end)}" + (" in the wrong order" if 0 <= j < i else ""))
    return f"{text[:i + len(start)]}\n{body}\n{text[j:]}"


def write_atomic(path: str | Path, text: str) -> None:
    """Write ``text`` (UTF-8) to ``path`` through a temporary file beside it and ``os.replace``, so that a reader
    never sees half a file."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)
