"""Input checks at the API boundary: one place that says what a count, a number or a tensor must be.

Every public function checks what it is given with these helpers before any work, so that a bad input fails
at once with a message that names the argument, says what was given (value and type) and what is expected
(docs/architecture.md#input-checks) — never later, from deep inside torch, diffusers or PIL.

Counts and numbers are accepted in any of their usual types: Python ``int`` / ``float``, numpy scalars
(``np.int64(4)``, ``np.float32(1.0)``) and 0-d integer / float torch tensors are all fine; ``bool`` is not a
count. The helpers return the plain Python value.

The checkers: :func:`count` and :func:`batch_size` (integers in a range), :func:`real` (finite numbers in a
range; a string such as ``"3"`` is refused, not parsed), :func:`flag` (a bool, not a truthy string),
:func:`generator` (a ``torch.Generator`` or ``None``, never a seed), :func:`string` and :func:`word` (a
non-empty word or phrase, any script), :func:`nonempty` and :func:`image_size` (no dimension of size 0),
:func:`box` (a box mostly inside its image), :func:`finite_tensor`, :func:`logsnr_range` (a log-SNR range
within ±32 nats and at least 0.001 nats wide) and :func:`logsnr_coverage` (draws that all fall outside a
model's trained log-SNR range are refused, mostly outside warned). A wrong type raises
:class:`ArgumentTypeError`, a ``ValueError`` that is also a ``TypeError``.
"""

from __future__ import annotations

import io
import math
import ntpath
import numbers
import os
import posixpath
import warnings
from pathlib import Path, PurePosixPath
from typing import Any

__all__ = ["count", "real", "finite_tensor", "rgb_image"]


class ArgumentTypeError(ValueError, TypeError):
    """An argument of the wrong type: a ``ValueError`` like every other refusal of these checks, and a
    ``TypeError`` for code that catches that."""


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
        raise ArgumentTypeError(f"{name} must be {bound}; got {_describe(value)}")
    v = int(v)
    if v < minimum or (maximum is not None and v > maximum):
        raise ValueError(f"{name} must be {bound}; got {v}")
    return v


def _g(v: float) -> str:
    return f"{v:g}"


def real(value: Any, name: str, *, finite: bool = True, minimum: float | None = None,
         maximum: float | None = None, above: float | None = None, below: float | None = None,
         hint: str = "") -> float:
    """``value`` as a Python float, or ``ValueError`` unless it is a real number (finite unless ``finite=False``)
    within the bounds given: ``minimum`` / ``maximum`` inclusive, ``above`` / ``below`` strict (``hint``: a few
    words on what the number is, shown in parentheses after the bound). A string such as ``"3"`` is not a
    number: it is refused, not parsed."""
    v = _scalar(value)
    parts = [f">= {_g(minimum)}" if minimum is not None else "", f"> {_g(above)}" if above is not None else "",
             f"<= {_g(maximum)}" if maximum is not None else "", f"< {_g(below)}" if below is not None else ""]
    bound = " and ".join(p for p in parts if p)
    note = f" ({hint})" if hint else ""
    if isinstance(v, bool) or not isinstance(v, numbers.Real):
        raise ArgumentTypeError(f"{name} must be a {'finite ' if finite else ''}real number"
                                f"{' ' + bound if bound else ''}{note}; got {_describe(value)}")
    try:
        v = float(v)
    except OverflowError:  # an int too large for a float
        v = math.inf if v > 0 else -math.inf
    if finite and not math.isfinite(v):
        raise ValueError(f"{name} must be a finite number{' ' + bound if bound else ''}{note}; got {v!r}")
    bad = math.isnan(v) and any(p for p in parts)
    bad = bad or (minimum is not None and v < minimum) or (maximum is not None and v > maximum)
    bad = bad or (above is not None and not v > above) or (below is not None and not v < below)
    if bad:
        raise ValueError(f"{name} must be {bound}{note}; got {v!r}")
    return v


def finite_tensor(t: Any, name: str) -> None:
    """``ValueError`` if the floating-point tensor ``t`` holds NaN or ±inf, saying how many and which kinds."""
    import torch  # deferred: checks imports only the standard library (data/download.py runs without torch)

    if not isinstance(t, torch.Tensor) or not (t.is_floating_point() or t.is_complex()):
        return
    bad = ~torch.isfinite(t)
    if bool(bad.any()):
        n_nan, n_bad = int(torch.isnan(t).sum()), int(bad.sum())
        raise ValueError(f"{name} contains {n_bad} non-finite values ({n_nan} NaN, {n_bad - n_nan} ±inf) of "
                         f"{t.numel()}; expected finite numbers")


# ─────────────────────── boundary checkers: batches, randomness, words, sizes, log-SNR ───────────────────────
# (issue 29, C). Each returns the checked value in its plain form or raises naming the argument, what was
# given and what is expected.

__all__ += ["ArgumentTypeError", "batch_size", "flag", "generator", "string", "word", "nonempty", "image_size", "box",
            "LOGSNR_LIMIT", "MIN_LOGSNR_WIDTH", "logsnr_range", "logsnr_coverage"]


def batch_size(value: Any, name: str = "batch_size") -> int:
    """``value`` as a Python int >= 1: how many rows one call of a network takes."""
    return count(value, name, minimum=1, hint="rows per network call")


def flag(value: Any, name: str) -> bool:
    """``value`` as a Python bool; only ``True``/``False`` (or a numpy bool) are flags, so ``"no"``, which is
    truthy, is refused rather than read as yes."""
    v = _scalar(value)
    if isinstance(v, bool) or type(v).__name__ == "bool_":
        return bool(v)
    raise ArgumentTypeError(f"{name} must be True or False; got {_describe(value)}")


def generator(value: Any, name: str = "generator"):
    """``value`` if it is ``None`` or a ``torch.Generator``; a seed or anything else is refused (randomness is
    an argument, and a seed is not a generator: pass ``torch.Generator().manual_seed(seed)``)."""
    import torch  # deferred: checks imports only the standard library (data/download.py runs without torch)

    if value is None or isinstance(value, torch.Generator):
        return value
    seed = isinstance(value, numbers.Integral) and not isinstance(value, bool)
    raise ArgumentTypeError(f"{name} must be a torch.Generator or None; got {_describe(value)}"
                            + (f": for a seed, pass torch.Generator().manual_seed({value})" if seed else ""))


def string(value: Any, name: str) -> str:
    """``value`` if it is a ``str`` (possibly empty, as the null prompt ``""``)."""
    if not isinstance(value, str):
        raise ArgumentTypeError(f"{name} must be a string; got {_describe(value)}")
    return value


def word(value: Any, name: str = "word", *, hint: str = "") -> str:
    """``value`` stripped of surrounding whitespace, or ``ValueError`` unless it is a string with at least one
    non-space character (a word or a phrase of a prompt; any script, emoji and punctuation included)."""
    want = "a non-empty string (a word or phrase" + (f": {hint}" if hint else "") + ")"
    if not isinstance(value, str):
        raise ArgumentTypeError(f"{name} must be {want}; got {_describe(value)}")
    if not value.strip():
        raise ValueError(f"{name} must be {want}; got {value!r}")
    return value.strip()


def nonempty(t: Any, name: str, layout: str) -> None:
    """``ValueError`` if the tensor (or array) ``t`` has a dimension of size 0, naming its shape and the
    ``layout`` expected (e.g. ``"[B, C, H, W] with B, C, H, W >= 1"``): an empty image has no information to
    measure, and a sum over it would be a silent 0."""
    shape = tuple(getattr(t, "shape", ()))
    if any(int(s) == 0 for s in shape):
        raise ValueError(f"{name} has shape {shape}, with an empty dimension; expected {layout}")


def image_size(value: Any, name: str = "size") -> tuple[int, int]:
    """``(H, W)`` in pixels as two Python ints >= 1, from a pair (tuple, list) of counts."""
    if isinstance(value, (str, bytes)) or not hasattr(value, "__len__") or len(value) != 2:
        raise ArgumentTypeError(f"{name} must be a pair (H, W) of pixel counts >= 1; got {_describe(value)}")
    return (count(value[0], f"{name}[0] (the height H)", hint="pixels"),
            count(value[1], f"{name}[1] (the width W)", hint="pixels"))


def box(xywh: Any, image_wh: tuple[int, int], name: str = "box", *, min_inside: float = 0.5
        ) -> tuple[float, float, float, float]:
    """``(x, y, w, h)`` as floats, or ``ValueError`` unless it is a box of positive size of which at least
    ``min_inside`` of the area lies in the image of size ``image_wh = (W, H)`` pixels. (A box partly over the
    edge is cropped as PIL crops, the outside black, as the reference did; a box mostly or wholly outside
    would score a black crop.)"""
    if isinstance(xywh, (str, bytes)) or not hasattr(xywh, "__len__") or len(xywh) != 4:
        raise ArgumentTypeError(f"{name} must be (x, y, w, h) in pixels; got {_describe(xywh)}")
    x, y, w, h = (real(v, f"{name} {k}") for v, k in zip(xywh, "xywh"))
    W, H = int(image_wh[0]), int(image_wh[1])
    where = f"{name} (x, y, w, h) = ({x:g}, {y:g}, {w:g}, {h:g}) on a {W}×{H} (W×H) image"
    if w <= 0 or h <= 0:
        raise ValueError(f"{where} is empty; expected w > 0 and h > 0")
    inside = max(0.0, min(x + w, W) - max(x, 0.0)) * max(0.0, min(y + h, H) - max(y, 0.0)) / (w * h)
    if inside < min_inside:
        share = "lies entirely outside the image" if inside == 0 else f"has only {inside:.0%} of its area inside"
        raise ValueError(f"{where} {share}; expected a box with at least {min_inside:.0%} of its area inside "
                         f"[0, {W}] × [0, {H}] (its crop would be mostly black padding)")
    return x, y, w, h


#: The log-SNR range, in nats, that any sampling over log-SNR must stay within: at λ = ±32 the smaller of
#: signal and noise is e^−16 ≈ 1.1e−7 of the other, float32's resolution, so beyond it z equals x or ε to the
#: precision a model computes in. Every trained schedule lies far inside (SD 2.1: [−5.36, 7.07]).
LOGSNR_LIMIT = 32.0
#: The narrowest log-SNR range, in nats, an information estimate may integrate over: the estimate is the
#: integral over the range, so a narrower one (e.g. ``clip=1e-300``) measures ~0 nats whatever the data.
MIN_LOGSNR_WIDTH = 1e-3


def logsnr_range(loc: Any, scale: Any, clip: Any) -> tuple[float, float]:
    """``(lo, hi) = (loc − clip·scale, loc + clip·scale)`` in nats, or ``ValueError`` unless loc, scale > 0 and
    clip > 0 are finite numbers whose range lies within ±:data:`LOGSNR_LIMIT` and is at least
    :data:`MIN_LOGSNR_WIDTH` wide."""
    loc = real(loc, "loc", hint="the centre of the log-SNR range, in nats")
    scale = real(scale, "scale", above=0, hint="the logistic scale of log-SNR, in nats")
    clip = real(clip, "clip", above=0, hint="the range is loc ± clip·scale")
    lo, hi = loc - clip * scale, loc + clip * scale
    given = f"loc ± clip·scale = {loc:g} ± {clip:g}·{scale:g} = [{lo:.6g}, {hi:.6g}] nats"
    if not (math.isfinite(lo) and math.isfinite(hi)) or lo < -LOGSNR_LIMIT or hi > LOGSNR_LIMIT:
        raise ValueError(f"the log-SNR range {given} must lie within [−{LOGSNR_LIMIT:g}, {LOGSNR_LIMIT:g}]: "
                         "beyond it z is x or ε to float32 precision, and every trained schedule lies far inside "
                         "(SD 2.1: [−5.36, 7.07]; the paper: loc 1, scale 2, clip 3 → [−5, 7])")
    if not hi - lo >= MIN_LOGSNR_WIDTH:
        raise ValueError(f"the log-SNR range {given} is {hi - lo:.3g} nats wide; expected at least "
                         f"{MIN_LOGSNR_WIDTH:g} nats: the estimate is the integral over the range, so a "
                         "degenerate range measures ~0 nats whatever the data")
    return lo, hi


def logsnr_coverage(support: tuple[float, float], inside: float, trained: tuple[float, float], *,
                    what: str = "the log-SNR sampling", stacklevel: int = 3) -> None:
    """Refuse draws that all fall outside the model's trained log-SNR range ``trained`` (nats), and warn when
    most do. ``support``: the sampling's range; ``inside``: the share of its draws expected in ``trained``.

    A UNet sees a log-SNR outside its trained range at the nearest end timestep (t = 0 above, t = T−1 below),
    so draws that all lie outside measure one noise level, not the information; a flow model is evaluated
    where it was never trained."""
    lo, hi = (float(v) for v in support)
    t_lo, t_hi = (float(v) for v in trained)
    given = f"{what} covers [{lo:.4g}, {hi:.4g}] nats"
    expected = (f"the range the model was trained on, [{t_lo:.4g}, {t_hi:.4g}] nats (e.g. "
                "LogSNRSampling.from_range(*model.logsnr_range), or the paper's loc 1, scale 2, clip 3)")
    if not inside > 0:
        end = "the least noisy timestep (t = 0)" if lo >= t_hi else "the noisiest timestep (t = T−1)"
        raise ValueError(f"{given}, outside {expected}: every draw would be clamped to {end}, so the estimate "
                         "would measure one noise level, not the information. Expected a range overlapping it")
    if inside < 0.5:
        warnings.warn(f"{given}: only {inside:.0%} of its draws fall inside {expected}; the other "
                      f"{1 - inside:.0%} are clamped to the end timesteps, so the estimate is mostly of the two "
                      "end noise levels", UserWarning, stacklevel=stacklevel)


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
    import numpy as np  # deferred: checks imports only the standard library (data/download.py needs no numpy)
    from PIL import Image  # deferred, as numpy: only where an image is checked

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
    from PIL import Image, ImageOps, UnidentifiedImageError  # deferred: checks imports only the standard library

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
