"""Floating-point precision of a model: dtype names, and what reduced precision does to the estimates.

A model may run in float16 or bfloat16 (squared errors are still accumulated in float32:
docs/architecture.md#dtype). Two facts decide whether that is a good idea, both measured on shapes-tiny by
``benchmarks/precision_bias.py`` (docs/models.md#precision):

* **Reduced precision biases i^o upward.** i^o = ½ E w ‖ε̂(z|y) − ε̂(z|ref)‖² is a squared difference of two
  predictions; rounding noise in each prediction adds its own variance to the square, so the estimate grows.
  The bias is positive on every image, a few per cent of i^o, and enough to flip near-tie decisions of the
  relation test. float32 is the reference precision of every number in this repository.
* **float16 on a CPU is slow**: about 17× slower than float32 (no half-precision kernels); bfloat16 is no
  faster than float32 there. On a GPU both are faster.

:func:`dtype_name` and :func:`as_dtype` turn a ``torch.dtype`` or a string (``"float32"``, ``"fp16"``,
``"bf16"``, ``"half"``, …) into the canonical name / the torch dtype, with a clear error for anything else.
:func:`is_reduced` says whether a dtype is below float32; :data:`REDUCED_PRECISION_NOTE` is the sentence recorded
beside every number produced in reduced precision (:class:`infodecomp.results.Recorder`).
"""

from __future__ import annotations

import warnings
from typing import Any

__all__ = ["DTYPE_NAMES", "REDUCED", "REDUCED_PRECISION_NOTE", "ReducedPrecisionWarning", "as_dtype", "dtype_name",
           "is_reduced", "warn_reduced_precision"]

#: Accepted spellings → canonical dtype name.
DTYPE_NAMES: dict[str, str] = {
    "float32": "float32", "fp32": "float32", "float": "float32", "single": "float32",
    "float16": "float16", "fp16": "float16", "half": "float16",
    "bfloat16": "bfloat16", "bf16": "bfloat16",
    "float64": "float64", "fp64": "float64", "double": "float64",
}
#: Canonical names of the reduced-precision dtypes.
REDUCED = ("float16", "bfloat16")

#: Recorded beside a number produced in reduced precision (measured by ``benchmarks/precision_bias.py``).
REDUCED_PRECISION_NOTE = (
    "computed in reduced precision ({dtype}): rounding noise biases i^o upward (measured on shapes-tiny in "
    "bfloat16: +0.22 nats, +2.5 %, positive on 14 of 14 images; 6 of 24 i^s relation-testing decisions "
    "changed; docs/models.md#precision); float32 is the reference precision"
)


class ReducedPrecisionWarning(UserWarning):
    """A number was produced by a model in float16 or bfloat16 (biased; see :data:`REDUCED_PRECISION_NOTE`)."""


def dtype_name(dtype: Any) -> str:
    """The canonical name (``"float32"``, ``"bfloat16"``, …) of a ``torch.dtype``, a numpy dtype or a string.

    Raises ``ValueError`` for a name that is not a floating-point dtype, ``TypeError`` for other objects."""
    if isinstance(dtype, str):
        key = dtype.strip().lower()
        key = key[len("torch."):] if key.startswith("torch.") else key
        if key not in DTYPE_NAMES:
            raise ValueError(f"unknown dtype {dtype!r}; expected one of {sorted(set(DTYPE_NAMES.values()))} "
                             f"(or {', '.join(k for k in DTYPE_NAMES if k not in DTYPE_NAMES.values())})")
        return DTYPE_NAMES[key]
    text = str(dtype)
    if text.startswith("torch."):  # a torch.dtype, without importing torch here
        name = text[len("torch."):]
        if name not in DTYPE_NAMES.values():
            raise ValueError(f"dtype {dtype} is not a floating-point dtype; expected one of "
                             f"{sorted(set(DTYPE_NAMES.values()))}")
        return name
    name = getattr(dtype, "name", None)  # numpy dtype
    if isinstance(name, str) and name in DTYPE_NAMES.values():
        return name
    raise TypeError(f"dtype must be a torch.dtype or a name such as 'float32'; got {dtype!r} "
                    f"({type(dtype).__name__})")


def as_dtype(dtype: Any):
    """The ``torch.dtype`` for a ``torch.dtype`` or a name (:func:`dtype_name`); ``None`` stays ``None``."""
    if dtype is None:
        return None
    import torch  # deferred: precision names dtypes without importing torch (see dtype_name)

    return getattr(torch, dtype_name(dtype))


def is_reduced(dtype: Any) -> bool:
    """Whether ``dtype`` (torch dtype or name; ``None`` = unknown → False) is float16 or bfloat16."""
    return dtype is not None and dtype_name(dtype) in REDUCED


def warn_reduced_precision(dtype: Any, where: str, *, stacklevel: int = 3) -> None:
    """Warn (:class:`ReducedPrecisionWarning`) that ``where`` holds numbers computed in reduced precision."""
    if is_reduced(dtype):
        warnings.warn(f"{where}: {REDUCED_PRECISION_NOTE.format(dtype=dtype_name(dtype))}",
                      ReducedPrecisionWarning, stacklevel=stacklevel)
