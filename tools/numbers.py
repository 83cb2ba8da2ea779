"""How a recorded estimate is read (:func:`read_record`) and written in the generated tables of the README and
docs/ (:func:`format_value`: ``value ± stderr`` with as many decimals as the standard error supports).

Standard library only, like the rest of tools/.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

__all__ = ["format_value", "read_record"]


def format_value(value: float, stderr: float | None = None) -> str:
    """``0.34123, 0.0104`` → ``"0.341 ± 0.010"`` (two significant digits of the stderr fix the decimals)."""
    if stderr is None:
        if isinstance(value, int) or (isinstance(value, float) and value.is_integer() and abs(value) < 1e15):
            return str(int(value))
        return f"{value:.4g}"
    if stderr > 0:
        decimals = max(0, 1 - math.floor(math.log10(stderr)))
        # A standard error far below the value's own precision (a proportion of 48/48, say) would ask for a
        # dozen decimals; four significant digits of the value are enough, and the stderr then reads as 0.000.
        if value != 0:
            decimals = min(decimals, max(3, 3 - math.floor(math.log10(abs(value)))))
        else:
            decimals = min(decimals, 3)
        return f"{value:.{decimals}f} ± {stderr:.{decimals}f}"
    return f"{value:.4g} ± 0"


def read_record(path: str | Path) -> dict:
    """A notebook's record (``figures/<model>/<notebook>.json``, written by ``infodecomp.results.Recorder``): a JSON
    object of name → value. ``ValueError`` naming the file when it is not valid JSON or not an object."""
    path = Path(path)
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as err:
        raise ValueError(f"{path}: not valid JSON ({err})") from err
    if not isinstance(record, dict):
        raise ValueError(f"{path}: expected a JSON object of name -> value, got {type(record).__name__}")
    return record
