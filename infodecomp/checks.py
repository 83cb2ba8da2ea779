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


# ---------------------------------------------------------------------------------------------------------
# Paths read from data, and image files (issue 29 B): one helper each, used by every reader
# ---------------------------------------------------------------------------------------------------------

__all__ += ["MAX_IMAGE_PIXELS", "contained_path", "load_image"]


def contained_path(root, rel: Any, what: str = "path"):
    """``root / rel`` for a path ``rel`` read from data (an annotation's image name, a store row's array file),
    or ``ValueError`` unless it stays inside ``root``.

    The check is lexical: ``rel`` must be a non-empty relative path (no leading ``/``, no drive, no NUL) whose
    ``..`` parts never climb above ``root``. Symbolic links under ``root`` are followed as usual (a data folder
    may be a link to another disk); what is refused is data that names a place outside its own root. ``what``
    names the field in the message, e.g. ``"image_path of entry 3 in visual_genome_relation.json"``.
    """
    import ntpath
    import posixpath
    from pathlib import Path, PurePosixPath

    if not isinstance(rel, str) or not rel.strip():
        raise ValueError(f"{what} must be a non-empty relative path (a str); got {_describe(rel)}")
    if "\0" in rel:
        raise ValueError(f"{what} contains a NUL character ({rel!r}); expected a file name")
    if posixpath.isabs(rel) or ntpath.isabs(rel) or ntpath.splitdrive(rel)[0]:
        raise ValueError(f"{what} is the absolute path {rel!r}; expected a path relative to {root} (data may "
                         f"only name files inside its own folder)")
    norm = posixpath.normpath(rel.replace("\\", "/"))
    if norm == ".." or norm.startswith("../"):
        raise ValueError(f"{what} is {rel!r}, which leads outside {root}; expected a path inside it")
    if norm == ".":
        raise ValueError(f"{what} is {rel!r}, which names the folder {root} itself; expected a file inside it")
    return Path(root) / PurePosixPath(norm)


#: The most pixels an image file may have (8192 × 8192): a larger image is refused before it is decoded, so a
#: small file that decompresses into gigabytes (a "decompression bomb") fails with a clear error instead.
MAX_IMAGE_PIXELS = 8192 * 8192


def load_image(source, name: str | None = None, *, max_pixels: int = MAX_IMAGE_PIXELS):
    """The one way an image file is read: bytes or a path → an RGB ``PIL.Image`` (8 bits per channel).

    - refuses an image of more than ``max_pixels`` pixels (width × height, read from the header before any
      pixel is decoded), naming its size and the limit;
    - applies the EXIF orientation (a phone photo stored sideways with orientation 6 is turned upright), so
      that "left of" is judged on the image as it is seen;
    - converts to 8-bit RGB with :func:`rgb_image` (16-bit and float images rescaled, not clipped).

    Raises ``ValueError`` naming the file (``name``, default: the path or ``"image"``) for empty bytes, a file
    that is not an image, a truncated one, or one too large.
    """
    import io
    import os
    import warnings

    from PIL import Image, ImageOps, UnidentifiedImageError

    max_pixels = count(max_pixels, "max_pixels")
    if isinstance(source, (bytes, bytearray, memoryview)):
        data = bytes(source)
        name = "image" if name is None else name
        if not data:
            raise ValueError(f"{name!r} is empty (0 bytes); expected an image file (PNG, JPEG, …)")
        opened, size = io.BytesIO(data), f"{len(data):,} bytes"
    elif isinstance(source, (str, os.PathLike)):
        opened = os.fspath(source)
        name = opened if name is None else name
        if not os.path.isfile(opened):
            raise FileNotFoundError(f"image {name!r} does not exist (or is not a file)")
        size = f"{os.path.getsize(opened):,} bytes"
        if size == "0 bytes":
            raise ValueError(f"{name!r} is empty (0 bytes); expected an image file (PNG, JPEG, …)")
    else:
        raise TypeError(f"an image file is read from bytes or a path; got {type(source).__name__}")
    try:
        with warnings.catch_warnings():
            # PIL's own bomb warning fires at 89 M pixels, after the limit here, which says more
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(opened) as im:
                w, h = im.size
                if w * h <= max_pixels:
                    im.load()
                    upright = ImageOps.exif_transpose(im)  # EXIF orientation 2–8: the pixels as the photo is seen
                    image = upright if upright is not None else im.copy()
    except UnidentifiedImageError:
        why = "its contents are not in an image format PIL can read"
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as err:  # truncated, corrupt, huge
        why = f"{type(err).__name__}: {err}"
    else:
        if w * h > max_pixels:
            raise ValueError(f"{name!r} is an image of {w}×{h} = {w * h:,} pixels, over the limit of "
                             f"{max_pixels:,} pixels (decoding it would take {3 * w * h / 2**20:,.0f} MiB or more); "
                             "scale it down first, or pass a larger max_pixels")
        return rgb_image(image, repr(name))  # quoted, as in the messages above
    raise ValueError(f"could not read {name!r} ({size}) as an image: {why}. Expected an image file such as PNG "
                     "or JPEG")
