"""Helpers of the sharding tests of the experiments (issue 30): a launch's processes simulated in one process by
giving each run its shard (``process_index``, ``num_processes``: ``run_sharded`` then needs no accelerate), a kill
in the middle of a run, and the bit-for-bit comparison of two stores' merged tables."""

from __future__ import annotations

import math

import numpy as np


class Killed(list):
    """Rows whose row ``at`` cannot be read: the run stops there as a killed process would (``KeyboardInterrupt``
    is never caught), after writing the batches before it."""

    def __init__(self, rows, at: int):
        super().__init__(rows)
        self.at = at

    def __getitem__(self, i):
        if i == self.at:
            raise KeyboardInterrupt(f"killed at row {i}")
        return super().__getitem__(i)


def counting(monkeypatch, module, name: str) -> list:
    """Replace ``module.name`` by a wrapper that records the number of rows (its second argument's length, or 1)
    of every call; returns the record."""
    calls: list[int] = []
    inner = getattr(module, name)

    def wrapper(*args, **kwargs):
        arg = args[1] if len(args) > 1 else None
        calls.append(len(arg) if isinstance(arg, (list, tuple)) else 1)
        return inner(*args, **kwargs)

    monkeypatch.setattr(module, name, wrapper)
    return calls


def _same(a, b) -> bool:
    if isinstance(a, np.ndarray) or isinstance(b, np.ndarray):
        a, b = np.asarray(a), np.asarray(b)
        return a.dtype == b.dtype and a.shape == b.shape and a.tobytes() == b.tobytes()
    if isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b):
        return True
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b))
    return a == b


def assert_same_rows(a, b) -> None:
    """Two merged store tables hold the same rows, bit for bit (arrays by dtype, shape and bytes)."""
    assert list(a.columns) == list(b.columns), (list(a.columns), list(b.columns))
    assert len(a) == len(b), (len(a), len(b))
    for col in a.columns:
        for i, (x, y) in enumerate(zip(a[col], b[col])):
            assert _same(x, y), f"row {i}, column {col!r}: {x!r} != {y!r}"
