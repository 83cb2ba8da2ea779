"""Input checks at the API boundary: one place that says what a count, a number or a tensor must be.

Every public function checks what it is given with these helpers before any work, so that a bad input fails
at once with a message that names the argument, says what was given (value and type) and what is expected
(docs/architecture.md#input-checks) — never later, from deep inside torch, diffusers or PIL.

Counts and numbers are accepted in any of their usual types: Python ``int`` / ``float``, numpy scalars
(``np.int64(4)``, ``np.float32(1.0)``) and 0-d integer / float torch tensors are all fine; ``bool`` is not a
count. The helpers return the plain Python value.
"""

from __future__ import annotations

import math
import numbers
from typing import Any

__all__ = ["count", "real", "finite_tensor", "rgb_image"]


def _describe(value: Any) -> str:
    return f"{value!r} ({type(value).__module__}.{type(value).__qualname__})" \
        if type(value).__module__ != "builtins" else f"{value!r} ({type(value).__name__})"


def _scalar(value: Any) -> Any:
    """A 0-d torch tensor or numpy array → its Python item; anything else unchanged."""
    if hasattr(value, "ndim") and getattr(value, "ndim", None) == 0 and hasattr(value, "item"):
        try:
            return value.item()
        except (TypeError, ValueError, RuntimeError):
            return value
    return value


def count(value: Any, name: str, *, minimum: int = 1, maximum: int | None = None, hint: str = "") -> int:
    """``value`` as a Python int, or ``ValueError`` unless it is an integer in ``[minimum, maximum]``
    (``hint``: a few words on what it counts, shown in parentheses after the bound).

    >>> count(np.int64(4), "n_samples")      # doctest: +SKIP
    4
    """
    v = _scalar(value)
    bound = f"an integer >= {minimum}" + (f" and <= {maximum}" if maximum is not None else "") \
        + (f" ({hint})" if hint else "")
    if isinstance(v, bool) or not isinstance(v, numbers.Integral):
        raise ValueError(f"{name} must be {bound}; got {_describe(value)}")
    v = int(v)
    if v < minimum or (maximum is not None and v > maximum):
        raise ValueError(f"{name} must be {bound}; got {v}")
    return v


def real(value: Any, name: str, *, finite: bool = True) -> float:
    """``value`` as a Python float, or ``ValueError`` unless it is a real number (finite unless ``finite=False``)."""
    v = _scalar(value)
    if isinstance(v, bool) or not isinstance(v, numbers.Real):
        raise ValueError(f"{name} must be a {'finite ' if finite else ''}real number; got {_describe(value)}")
    v = float(v)
    if finite and not math.isfinite(v):
        raise ValueError(f"{name} must be a finite number; got {v!r}")
    return v


def finite_tensor(t: Any, name: str) -> None:
    """``ValueError`` if the floating-point tensor ``t`` holds NaN or ±inf, saying how many and which kinds."""
    import torch

    if not isinstance(t, torch.Tensor) or not (t.is_floating_point() or t.is_complex()):
        return
    bad = ~torch.isfinite(t)
    if bool(bad.any()):
        n_nan, n_bad = int(torch.isnan(t).sum()), int(bad.sum())
        raise ValueError(f"{name} contains {n_bad} non-finite values ({n_nan} NaN, {n_bad - n_nan} ±inf) of "
                         f"{t.numel()}; expected finite numbers")


#: PIL modes of more than 8 bits per sample, which ``Image.convert("RGB")`` clips instead of rescaling.
_HIGH_DEPTH = {"I;16": 65535, "I;16B": 65535, "I;16L": 65535, "I;16N": 65535, "I": None, "F": None}


def rgb_image(image, name: str = "image"):
    """An RGB ``PIL.Image`` (8 bits per channel) from any PIL image, rescaling deeper samples instead of clipping.

    ``Image.convert("RGB")`` clips 16-bit grayscale (``"I;16"``, ``"I"``) at 255, so a typical 16-bit image
    becomes almost all white; here 16-bit samples are scaled by 255/65535. A 32-bit integer image (``"I"``) is
    taken as 16-bit when its values lie in [0, 65535]; a float image (``"F"``) must lie in [0, 1]. Anything
    else raises ``ValueError`` naming ``name``, its mode and its value range. Alpha is dropped; palette, gray
    and CMYK images are converted as PIL does.
    """
    import numpy as np
    from PIL import Image

    if not isinstance(image, Image.Image):
        raise TypeError(f"{name} must be a PIL image; got {type(image).__name__}")
    if image.mode not in _HIGH_DEPTH:
        return image.convert("RGB")  # a loaded copy, also for an RGB image (so a closed file does not matter)
    a = np.asarray(image)
    if a.size == 0:
        raise ValueError(f"{name} is empty ({image.width}×{image.height} px)")
    lo, hi = float(a.min()), float(a.max())
    if image.mode == "F":
        if not (np.isfinite(a).all() and 0.0 <= lo and hi <= 1.0):
            raise ValueError(f"{name} is a floating-point image (mode 'F') with values in [{lo:.4g}, {hi:.4g}]; "
                             "expected values in [0, 1] (or an 8-bit RGB image)")
        scaled = a.astype(np.float64) * 255.0
    else:
        top = _HIGH_DEPTH[image.mode] or 65535
        if lo < 0 or hi > top:
            raise ValueError(f"{name} is a {image.mode!r} image with values in [{lo:.0f}, {hi:.0f}], outside the "
                             f"16-bit range [0, {top}]; convert it to 8-bit RGB yourself")
        scaled = a.astype(np.float64) * (255.0 / top)
    gray = np.clip(np.rint(scaled), 0, 255).astype(np.uint8)
    return Image.fromarray(np.ascontiguousarray(np.stack([gray] * 3, axis=-1)))
