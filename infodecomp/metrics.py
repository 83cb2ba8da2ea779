"""Metrics of the paper's tables: IoU threshold sweeps (Table 3), retrieval accuracy (Tables 1, 2), Pearson
correlation with bootstrap error bars (Table 4).

Each metric comes in the reference code's version (``faithful``) and, where that version is statistically
questionable, a ``corrected`` one (docs/protocol.md#protocol-flags):

* **IoU threshold** (docs/protocol.md#iou-threshold, docs/protocol.md#b25). Faithful: the threshold is the one that
  maximises mIoU on the evaluation set itself (oracle selection). Corrected: the threshold is fitted on a calibration
  subset and mIoU is reported on the remaining images.
* **Retrieval ties** (docs/protocol.md#relation-testing-procedure, step 5, docs/protocol.md#b16). The reference takes
  ``argmax`` (lowest index wins a tie) with the true caption last, so an exact tie counts against the true caption.
  Every example is tested for ties, they are counted, and a tie policy decides how they score.
* **Bootstrap "±"** (docs/protocol.md#intervention-pearson, docs/protocol.md#b31). Faithful: 100 resamples of 90 % of
  the items with replacement, ``± = std/10``. Corrected: full-size resamples, ``± = bootstrap std`` and a percentile
  confidence interval; always seeded.

Heat maps are torch tensors or numpy arrays; tables are numpy arrays. Numbers come back as Python floats and
numpy arrays (float64).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Hashable, Iterable, Sequence
from dataclasses import dataclass, field
from statistics import NormalDist
from typing import Any

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F

__all__ = [
    "TIE_POLICIES",
    "BootstrapEstimate",
    "Estimate",
    "IoUSweep",
    "RetrievalAccuracy",
    "RetrievalOutcomes",
    "ThresholdSelection",
    "bootstrap",
    "default_thresholds",
    "iou_per_threshold",
    "mean_pixel_pearson",
    "minmax_normalize",
    "pearson",
    "pearson_bootstrap",
    "pixel_pearson",
    "pixel_pearson_bootstrap",
    "retrieval_accuracy",
    "retrieval_outcomes",
    "select_threshold",
    "upsample_bilinear",
    "whole_image_iou",
    "wilson_interval",
]


# ==============================================================================================================
# IoU threshold sweep (Table 3, docs/protocol.md#iou-threshold)


def default_thresholds() -> np.ndarray:
    """The reference's 50 thresholds evenly spaced in [0.1, 0.5] (both ends included): ``[50]`` float64."""
    return np.linspace(0.1, 0.5, 50)


def _as_tensor(x: Any, name: str) -> torch.Tensor:
    if isinstance(x, torch.Tensor):
        return x
    if isinstance(x, np.ndarray):
        return torch.from_numpy(np.ascontiguousarray(x))
    raise TypeError(f"{name} must be a torch.Tensor or numpy.ndarray; got {type(x).__name__}")


def minmax_normalize(heatmap: torch.Tensor) -> torch.Tensor:
    """Min–max normalise each map to [0, 1] over its last two (spatial) dims, as the reference
    (docs/protocol.md#iou-threshold, step 1).

    Args:
        heatmap: ``[..., H, W]`` real values.
    Returns:
        ``[..., H, W]`` in [0, 1], float32 (float64 if the input is float64). A constant map becomes all zeros
        (the reference divides 0 by 0 and gets NaN, which also predicts nothing at any threshold > 0).
    """
    h = _as_tensor(heatmap, "heatmap")
    if h.dim() < 2:
        raise ValueError(f"heatmap must be [..., H, W]; got shape {tuple(h.shape)}")
    h = h.double() if h.dtype == torch.float64 else h.float()
    if not torch.isfinite(h).all():
        raise ValueError("heatmap contains NaN or inf")
    lo = h.amin(dim=(-2, -1), keepdim=True)
    span = h.amax(dim=(-2, -1), keepdim=True) - lo
    return torch.where(span > 0, (h - lo) / torch.where(span > 0, span, torch.ones_like(span)), torch.zeros_like(h))


def upsample_bilinear(heatmap: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Upsample latent-resolution maps to image size, bilinear with ``align_corners=False``
    (docs/protocol.md#heatmap-normalisation).

    Args:
        heatmap: ``[h, w]``, ``[B, h, w]`` or ``[B, C, h, w]``; numpy or torch; any float dtype (half is
            computed in float32).
        size: ``(H, W)`` output size.
    Returns:
        ``[..., H, W]`` like the input's leading dims, float32 (float64 stays float64), on the input's device.
    """
    h = _as_tensor(heatmap, "heatmap")
    if h.dim() not in (2, 3, 4):
        raise ValueError(f"heatmap must be [h, w], [B, h, w] or [B, C, h, w]; got shape {tuple(h.shape)}")
    if len(size) != 2 or min(size) < 1:
        raise ValueError(f"size must be (H, W) with positive entries; got {size!r}")
    lead = h.shape[:-2]
    x = h.double() if h.dtype == torch.float64 else h.float()
    x = x.reshape(-1, 1, *h.shape[-2:])
    y = F.interpolate(x, size=tuple(int(s) for s in size), mode="bilinear", align_corners=False)
    return y.reshape(*lead, *y.shape[-2:])


def iou_per_threshold(
    heatmap: torch.Tensor,
    mask: torch.Tensor,
    thresholds: Sequence[float] | np.ndarray | None = None,
    *,
    normalize: bool = True,
    zero_division: float = 0.0,
) -> np.ndarray:
    """Per-image IoU of ``pred = (map > τ)`` with the mask, for every threshold τ at once.

    For each image the map values are sorted once; for every τ, ``|pred| = #(map > τ)`` and
    ``|pred ∩ mask| = #(map[mask] > τ)`` come from a binary search, and
    ``IoU = |pred ∩ mask| / (|pred| + |mask| - |pred ∩ mask|)``. Cost O(HW log HW) per image, independent of
    the number of thresholds, and no ``[T, H, W]`` array is built.

    Args:
        heatmap: ``[H, W]`` or ``[B, H, W]`` scores (same spatial size as the mask; see :func:`upsample_bilinear`).
        mask: bool (or 0/1) ``[H, W]`` or ``[B, H, W]`` ground truth.
        thresholds: ``[T]`` (default :func:`default_thresholds`). Compared in the map's precision, as
            ``map > τ`` in the reference.
        normalize: min–max normalise each map first (:func:`minmax_normalize`), as the reference does.
        zero_division: IoU when prediction and mask are both empty (union 0). Default 0.0, as torchmetrics'
            ``BinaryJaccardIndex`` (``zero_division=0``; torchmetrics before ``zero_division`` existed returned
            NaN). In the paper's setting it cannot happen: the normalised map reaches 1 > τ and COCO masks
            are non-empty.
    Returns:
        ``[B, T]`` float64 IoU in [0, 1] (``[1, T]`` for a single map).
    """
    h = _as_tensor(heatmap, "heatmap")
    m = _as_tensor(mask, "mask")
    if h.dim() == 2:
        h = h[None]
    if m.dim() == 2:
        m = m[None]
    if h.dim() != 3 or h.shape != m.shape:
        hint = " (upsample the map first: upsample_bilinear)" if h.dim() == 3 and m.dim() == 3 and h.shape[0] == m.shape[0] else ""
        raise ValueError(f"heatmap and mask must both be [H, W] or [B, H, W] of the same shape; got "
                         f"{tuple(heatmap.shape)} and {tuple(mask.shape)}{hint}")
    if m.dtype != torch.bool:
        if not ((m == 0) | (m == 1)).all():
            raise ValueError("mask must be boolean or 0/1")
        m = m.bool()
    if not 0.0 <= zero_division <= 1.0:
        raise ValueError(f"zero_division must be in [0, 1]; got {zero_division}")
    h = minmax_normalize(h) if normalize else (h.double() if h.dtype == torch.float64 else h.float())
    if not torch.isfinite(h).all():
        raise ValueError("heatmap contains NaN or inf")
    thr = torch.as_tensor(np.asarray(default_thresholds() if thresholds is None else thresholds, dtype=np.float64))
    if thr.dim() != 1 or len(thr) == 0:
        raise ValueError(f"thresholds must be a non-empty 1-d sequence; got shape {tuple(thr.shape)}")
    thr = thr.to(device=h.device, dtype=h.dtype)
    out = np.empty((h.shape[0], len(thr)), dtype=np.float64)
    for b in range(h.shape[0]):
        flat, mflat = h[b].reshape(-1), m[b].reshape(-1)
        all_sorted = torch.sort(flat).values
        in_sorted = torch.sort(flat[mflat]).values
        n_pred = len(all_sorted) - torch.searchsorted(all_sorted, thr, right=True)
        n_inter = len(in_sorted) - torch.searchsorted(in_sorted, thr, right=True)
        union = (n_pred + len(in_sorted) - n_inter).double()
        iou = torch.where(union > 0, n_inter.double() / union.clamp_min(1), torch.full_like(union, zero_division))
        out[b] = iou.cpu().numpy()
    return out


def whole_image_iou(mask: torch.Tensor) -> np.ndarray:
    """IoU of the whole-image prediction (all ones) with each mask: the object's area fraction
    (docs/protocol.md#iou-threshold, step 4).

    Args:
        mask: bool ``[H, W]`` or ``[B, H, W]``.
    Returns:
        ``[B]`` float64.
    """
    m = _as_tensor(mask, "mask")
    if m.dim() == 2:
        m = m[None]
    if m.dim() != 3:
        raise ValueError(f"mask must be [H, W] or [B, H, W]; got shape {tuple(m.shape)}")
    return m.reshape(m.shape[0], -1).bool().double().mean(dim=1).cpu().numpy()


@dataclass(frozen=True, eq=False)
class ThresholdSelection:
    """A threshold chosen on one set of images and the mIoU it gets on the reported set.

    ``protocol``: ``"faithful"`` (oracle: chosen and reported on the same images, docs/protocol.md#b25) or
    ``"corrected"`` (chosen on a calibration subset, reported on the rest).
    """

    protocol: str
    threshold: float            # chosen τ
    threshold_index: int        # its index in ``thresholds``
    miou: float                 # mean IoU over the reported images at τ
    stderr: float               # std(IoU) / sqrt(n) over the reported images at τ (std with ddof=1)
    std: float                  # std(IoU) over the reported images at τ (ddof=1; the reference's "variance",
    #                             docs/protocol.md#b34)
    n: int                      # number of reported images
    n_calibration: int          # images used to choose τ (= n for the oracle)
    thresholds: np.ndarray = field(repr=False)        # [T]
    miou_curve: np.ndarray = field(repr=False)        # [T] mIoU of the reported images per τ
    stderr_curve: np.ndarray = field(repr=False)      # [T]
    calibration_curve: np.ndarray = field(repr=False)  # [T] mIoU of the calibration images per τ


def _curve(per_image: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    n = per_image.shape[0]
    mean = per_image.mean(axis=0)
    std = per_image.std(axis=0, ddof=1) if n > 1 else np.full(per_image.shape[1], np.nan)
    return mean, std, std / math.sqrt(n)


def select_threshold(
    per_image_iou: np.ndarray,
    thresholds: Sequence[float] | np.ndarray | None = None,
    *,
    calibration: np.ndarray | Sequence[int] | None = None,
) -> ThresholdSelection:
    """Pick the threshold with the highest mIoU and report mIoU at it.

    Args:
        per_image_iou: ``[N, T]`` IoU per image and threshold (:func:`iou_per_threshold`).
        thresholds: ``[T]`` (default :func:`default_thresholds`).
        calibration: None → oracle selection on all images (faithful, docs/protocol.md#b25). Otherwise a boolean
            ``[N]`` mask or integer positions of the calibration images: τ is chosen on them, mIoU reported on the
            others (corrected).
    Ties in mIoU go to the lowest threshold (``argmax``).
    """
    iou = np.asarray(per_image_iou, dtype=np.float64)
    thr = np.asarray(default_thresholds() if thresholds is None else thresholds, dtype=np.float64)
    if iou.ndim != 2 or iou.shape[1] != len(thr):
        raise ValueError(f"per_image_iou must be [N, T] with T = {len(thr)} thresholds; got shape {iou.shape}")
    if iou.shape[0] == 0:
        raise ValueError("no images: per_image_iou is empty")
    if calibration is None:
        cal = report = np.ones(iou.shape[0], dtype=bool)
        protocol = "faithful"
    else:
        cal_arr = np.asarray(calibration)
        if cal_arr.dtype == bool:
            if cal_arr.shape != (iou.shape[0],):
                raise ValueError(f"a boolean calibration mask must have shape ({iou.shape[0]},); got {cal_arr.shape}")
            cal = cal_arr
        else:
            cal = np.zeros(iou.shape[0], dtype=bool)
            cal[cal_arr.astype(np.int64)] = True
        report = ~cal
        protocol = "corrected"
        if not cal.any() or not report.any():
            raise ValueError(f"a held-out selection needs images on both sides; got {int(cal.sum())} calibration "
                             f"and {int(report.sum())} reported of {iou.shape[0]}")
    cal_curve = iou[cal].mean(axis=0)
    best = int(np.argmax(cal_curve))
    mean, std, se = _curve(iou[report])
    return ThresholdSelection(
        protocol=protocol, threshold=float(thr[best]), threshold_index=best, miou=float(mean[best]),
        stderr=float(se[best]), std=float(std[best]), n=int(report.sum()), n_calibration=int(cal.sum()),
        thresholds=thr, miou_curve=mean, stderr_curve=se, calibration_curve=cal_curve,
    )


class IoUSweep:
    """Streaming IoU-vs-threshold accumulator: feed maps batch by batch, keep ``[N, T]`` per-image IoU only.

    >>> sweep = IoUSweep()
    >>> for maps, masks, ids in batches:          # doctest: +SKIP
    ...     sweep.update(maps, masks, ids=ids, upsample=True)
    >>> sweep.oracle().miou                       # faithful, docs/protocol.md#b25        # doctest: +SKIP
    >>> sweep.held_out(calibration_fraction=0.2, seed=0).miou   # corrected  # doctest: +SKIP

    Args:
        thresholds: ``[T]`` thresholds (default :func:`default_thresholds`: 50 in [0.1, 0.5]).
        normalize: min–max normalise each map (the reference does).
        zero_division: IoU of an empty prediction with an empty mask (see :func:`iou_per_threshold`).
    """

    def __init__(self, thresholds: Sequence[float] | np.ndarray | None = None, *, normalize: bool = True,
                 zero_division: float = 0.0):
        self.thresholds = np.asarray(default_thresholds() if thresholds is None else thresholds, dtype=np.float64)
        if self.thresholds.ndim != 1 or len(self.thresholds) == 0:
            raise ValueError(f"thresholds must be a non-empty 1-d sequence; got shape {self.thresholds.shape}")
        self.normalize = normalize
        self.zero_division = float(zero_division)
        self._rows: list[np.ndarray] = []
        self.ids: list[Hashable] = []

    def update(self, heatmap: torch.Tensor, mask: torch.Tensor, ids: Iterable[Hashable] | None = None, *,
               upsample: bool = False) -> np.ndarray:
        """Add images. ``heatmap``: ``[H, W]`` / ``[B, H, W]`` (or ``[B, h, w]`` with ``upsample=True``: bilinear
        to the mask's size before normalising, as the reference saved 512² bilinear maps); ``mask``: bool
        ``[H, W]`` / ``[B, H, W]``; ``ids``: one per image (default: running position). Returns ``[B, T]`` IoU."""
        h = _as_tensor(heatmap, "heatmap")
        m = _as_tensor(mask, "mask")
        if upsample and h.shape[-2:] != m.shape[-2:]:
            h = upsample_bilinear(h, tuple(m.shape[-2:]))
        iou = iou_per_threshold(h, m, self.thresholds, normalize=self.normalize, zero_division=self.zero_division)
        new_ids = list(range(len(self.ids), len(self.ids) + iou.shape[0])) if ids is None else list(ids)
        if len(new_ids) != iou.shape[0]:
            raise ValueError(f"got {len(new_ids)} ids for {iou.shape[0]} images")
        self._rows.append(iou)
        self.ids.extend(new_ids)
        return iou

    def __len__(self) -> int:
        return len(self.ids)

    @property
    def per_image(self) -> np.ndarray:
        """``[N, T]`` IoU of every image at every threshold."""
        if not self._rows:
            return np.zeros((0, len(self.thresholds)))
        return np.concatenate(self._rows, axis=0)

    def curve(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``(thresholds [T], miou [T], stderr [T])`` over all images."""
        mean, _, se = _curve(self.per_image)
        return self.thresholds, mean, se

    def oracle(self) -> ThresholdSelection:
        """Faithful (docs/protocol.md#b25): choose τ maximising mIoU on all images and report that mIoU."""
        return select_threshold(self.per_image, self.thresholds)

    def held_out(self, *, calibration_fraction: float = 0.5, seed: int = 0,
                 calibration_ids: Iterable[Hashable] | None = None) -> ThresholdSelection:
        """Corrected: choose τ on a calibration subset, report mIoU on the other images.

        The subset is ``calibration_ids`` if given, else ``round(calibration_fraction * N)`` images drawn by
        ``numpy.random.default_rng(seed)``.
        """
        n = len(self)
        if calibration_ids is not None:
            wanted = set(calibration_ids)
            unknown = wanted - set(self.ids)
            if unknown:
                raise ValueError(f"{len(unknown)} calibration ids are not among the images (e.g. {sorted(map(str, unknown))[:5]})")
            cal = np.array([i in wanted for i in self.ids], dtype=bool)
        else:
            if not 0.0 < calibration_fraction < 1.0:
                raise ValueError(f"calibration_fraction must be in (0, 1); got {calibration_fraction}")
            k = int(round(calibration_fraction * n))
            cal = np.zeros(n, dtype=bool)
            cal[np.random.default_rng(seed).permutation(n)[:k]] = True
        return select_threshold(self.per_image, self.thresholds, calibration=cal)


# ==============================================================================================================
# Confidence intervals


@dataclass(frozen=True)
class Estimate:
    """A proportion or mean with a confidence interval."""

    value: float
    ci_low: float
    ci_high: float
    n: int                 # examples (micro) or groups (macro) it averages
    method: str            # "wilson" or "bootstrap-percentile"
    confidence: float = 0.95


def wilson_interval(successes: float, n: int, confidence: float = 0.95) -> tuple[float, float]:
    """Wilson score interval for a binomial proportion ``successes / n`` (successes may be fractional).

    Returns ``(low, high)``; ``(nan, nan)`` for ``n = 0``.
    """
    if n < 0 or successes < 0 or successes > n:
        raise ValueError(f"need 0 <= successes <= n; got successes={successes}, n={n}")
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must be in (0, 1); got {confidence}")
    if n == 0:
        return math.nan, math.nan
    z = NormalDist().inv_cdf(0.5 + confidence / 2)
    p = successes / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    low = 0.0 if successes == 0 else max(0.0, centre - half)  # exact ends, no rounding residue
    high = 1.0 if successes == n else min(1.0, centre + half)
    return low, high


# ==============================================================================================================
# Retrieval accuracy (Tables 1, 2; docs/protocol.md#relation-testing-procedure)

TIE_POLICIES = ("against_true", "lowest_index", "in_favour", "fractional", "exclude")
"""How an example whose true caption ties for the top score counts.

* ``"against_true"`` — wrong. The reference's behaviour (docs/protocol.md#b16): its ``argmax`` takes the lowest index
  and the true caption is last, so every tie goes against it.
* ``"lowest_index"`` — literally ``argmax`` with the lowest index winning; equals ``"against_true"`` when the
  true caption is last (the reference's order), differs otherwise (e.g. ARO's native order, true first).
* ``"in_favour"`` — right (ARO's native order with true first resolves ties this way).
* ``"fractional"`` — ``1/k`` for a k-way tie: the expected score of a uniformly random tie-break
  (a two-way tie counts as half).
* ``"exclude"`` — the example is left out of every accuracy (and counted in ``n_excluded``).
"""


@dataclass(frozen=True, eq=False)
class RetrievalOutcomes:
    """Per-example outcome of picking the best-scoring candidate."""

    correct: np.ndarray      # [N] float64 in [0, 1]; NaN where the tie policy excludes the example
    tied: np.ndarray         # [N] bool: the true candidate shares the top score with >= 1 other candidate
    tie_size: np.ndarray     # [N] int: number of candidates at the top score (1 = no tie)
    prediction: np.ndarray   # [N] int: argmax with the lowest index winning ties (the reference's prediction)
    tie_policy: str

    @property
    def n_ties(self) -> int:
        return int(self.tied.sum())


def retrieval_outcomes(scores: np.ndarray, true_index: np.ndarray | int, *, tie_policy: str = "against_true",
                       tie_tol: float = 0.0) -> RetrievalOutcomes:
    """Score each example: is the true candidate the best one?

    Args:
        scores: ``[N, M]`` a score per candidate (higher = better match, e.g. i^o in nats).
        true_index: ``[N]`` ints or one int for all (VG: 1; order sets: 4 in the reference's caption order).
        tie_policy: see :data:`TIE_POLICIES`.
        tie_tol: candidates within ``tie_tol`` of the top score count as tied (default: exact equality).
    """
    if tie_policy not in TIE_POLICIES:
        raise ValueError(f"tie_policy must be one of {TIE_POLICIES}; got {tie_policy!r}")
    s = np.asarray(scores, dtype=np.float64)
    if s.ndim != 2 or s.shape[1] < 2:
        raise ValueError(f"scores must be [N, M] with M >= 2 candidates; got shape {s.shape}")
    if not np.isfinite(s).all():
        raise ValueError(f"scores contain {int((~np.isfinite(s)).sum())} NaN/inf values")
    t = np.broadcast_to(np.asarray(true_index), (s.shape[0],)).astype(np.int64)
    if ((t < 0) | (t >= s.shape[1])).any():
        raise ValueError(f"true_index must be in [0, {s.shape[1] - 1}]; got values {np.unique(t).tolist()[:10]}")
    top = s.max(axis=1, keepdims=True)
    at_top = s >= top - tie_tol
    tie_size = at_top.sum(axis=1)
    true_at_top = at_top[np.arange(len(t)), t]
    tied = true_at_top & (tie_size > 1)
    prediction = s.argmax(axis=1)
    if tie_policy == "lowest_index":
        correct = (np.argmax(at_top, axis=1) == t).astype(np.float64)
    else:
        correct = (true_at_top & (tie_size == 1)).astype(np.float64)
        if tie_policy == "in_favour":
            correct[tied] = 1.0
        elif tie_policy == "fractional":
            correct[tied] = 1.0 / tie_size[tied]
        elif tie_policy == "exclude":
            correct[tied] = np.nan
    return RetrievalOutcomes(correct=correct, tied=tied, tie_size=tie_size, prediction=prediction,
                             tie_policy=tie_policy)


@dataclass(frozen=True, eq=False)
class RetrievalAccuracy:
    """Accuracy of retrieval: micro, macro over groups, macro without excluded groups, and per group."""

    micro: Estimate                       # over examples; Wilson interval
    macro: Estimate | None                # mean of per-group accuracies; stratified bootstrap interval
    macro_filtered: Estimate | None       # macro over groups not in ``exclude_groups``
    per_group: Any                        # pandas.DataFrame: group, n, n_correct, accuracy, ci_low, ci_high, n_ties
    n_ties: int                           # examples whose true candidate ties for the top score
    n_excluded: int                       # examples left out by the "exclude" tie policy
    tie_policy: str
    excluded_groups: tuple[str, ...] = ()  # groups actually removed by ``exclude_groups``


def _group_bootstrap_means(values: np.ndarray, n_boot: int, rng: np.random.Generator) -> np.ndarray:
    """``[n_boot]`` means of size-n resamples with replacement of ``values`` (exact, via a multinomial over the
    distinct values: 0, 1, 1/k...)."""
    uniq, counts = np.unique(values, return_counts=True)
    draws = rng.multinomial(len(values), counts / counts.sum(), size=n_boot)
    return draws @ uniq / len(values)


def retrieval_accuracy(
    scores: np.ndarray,
    true_index: np.ndarray | int,
    groups: Sequence[str] | None = None,
    *,
    tie_policy: str = "against_true",
    exclude_groups: Iterable[str] | None = None,
    min_group_size: int = 1,
    confidence: float = 0.95,
    n_bootstrap: int = 2000,
    seed: int = 0,
    tie_tol: float = 0.0,
) -> RetrievalAccuracy:
    """Micro, macro and filtered-macro retrieval accuracy with confidence intervals
    (docs/protocol.md#relation-testing-aggregation, docs/protocol.md#b13).

    Args:
        scores, true_index, tie_policy, tie_tol: see :func:`retrieval_outcomes`.
        groups: ``[N]`` group name per example (VG-R relation, VG-A attribute pair); None → micro only.
        exclude_groups: names dropped from ``macro_filtered`` (e.g. ARO's symmetric relations, supplied by the
            caller). None → ``macro_filtered`` is None.
        min_group_size: groups with fewer (non-excluded) examples are dropped from every number.
        confidence: of the intervals (Wilson for micro and per group; percentile bootstrap for the macros,
            resampling examples within each group, ``numpy.random.default_rng(seed)``).
    """
    out = retrieval_outcomes(scores, true_index, tie_policy=tie_policy, tie_tol=tie_tol)
    n = len(out.correct)
    g = np.asarray(["<all>"] * n if groups is None else [str(x) for x in groups], dtype=object)
    if len(g) != n:
        raise ValueError(f"groups has {len(g)} entries for {n} examples")
    keep = ~np.isnan(out.correct)
    names, inverse = np.unique(g, return_inverse=True)
    sizes = np.bincount(inverse[keep], minlength=len(names))
    big = sizes >= min_group_size
    keep &= big[inverse]
    c = out.correct

    k_micro, n_micro = float(c[keep].sum()), int(keep.sum())
    lo, hi = wilson_interval(k_micro, n_micro, confidence)
    micro = Estimate(k_micro / n_micro if n_micro else math.nan, lo, hi, n_micro, "wilson", confidence)

    rows = []
    for j, name in enumerate(names):
        sel = keep & (inverse == j)
        if not sel.any():
            continue
        k, m = float(c[sel].sum()), int(sel.sum())
        lo, hi = wilson_interval(k, m, confidence)
        rows.append({"group": name, "n": m, "n_correct": k, "accuracy": k / m, "ci_low": lo, "ci_high": hi,
                     "n_ties": int((out.tied & (inverse == j)).sum())})
    per_group = pd.DataFrame(rows, columns=["group", "n", "n_correct", "accuracy", "ci_low", "ci_high", "n_ties"])

    macro = macro_filtered = None
    excluded: tuple[str, ...] = ()
    if groups is not None and len(per_group):
        rng = np.random.default_rng(seed)
        boot = {name: _group_bootstrap_means(c[keep & (g == name)], n_bootstrap, rng) for name in per_group["group"]}
        alpha = (1 - confidence) / 2

        def _macro(names_in: list[str]) -> Estimate:
            if not names_in:
                return Estimate(math.nan, math.nan, math.nan, 0, "bootstrap-percentile", confidence)
            acc = per_group.set_index("group").loc[names_in, "accuracy"].to_numpy()
            samples = np.mean([boot[x] for x in names_in], axis=0)
            return Estimate(float(acc.mean()), float(np.quantile(samples, alpha)),
                            float(np.quantile(samples, 1 - alpha)), len(names_in), "bootstrap-percentile", confidence)

        all_names = list(per_group["group"])
        macro = _macro(all_names)
        if exclude_groups is not None:
            drop = set(exclude_groups)
            excluded = tuple(x for x in all_names if x in drop)
            macro_filtered = _macro([x for x in all_names if x not in drop])
    return RetrievalAccuracy(micro=micro, macro=macro, macro_filtered=macro_filtered, per_group=per_group,
                             n_ties=out.n_ties, n_excluded=int(np.isnan(out.correct).sum()), tie_policy=tie_policy,
                             excluded_groups=excluded)


# ==============================================================================================================
# Pearson correlation with bootstrap (Table 4, docs/protocol.md#intervention-pearson)


def pearson(x: np.ndarray, y: np.ndarray) -> float:
    """Pearson correlation of two ``[n]`` vectors (float64). NaN if either is constant."""
    a = np.asarray(x, dtype=np.float64).reshape(-1)
    b = np.asarray(y, dtype=np.float64).reshape(-1)
    if a.shape != b.shape or a.size < 2:
        raise ValueError(f"need two vectors of the same length >= 2; got {np.shape(x)} and {np.shape(y)}")
    if not (np.isfinite(a).all() and np.isfinite(b).all()):
        raise ValueError("pearson inputs contain NaN or inf")
    a = a - a.mean()
    b = b - b.mean()
    denom = math.sqrt(float(a @ a) * float(b @ b))
    return float(a @ b) / denom if denom > 0 else math.nan


def pixel_pearson(maps_a: Any, maps_b: Any) -> np.ndarray:
    """Per-image Pearson correlation over pixels (docs/protocol.md#intervention-pearson, pixel level).

    Args:
        maps_a, maps_b: ``[N, ...]`` (e.g. ``[N, 64, 64]`` CMI map and latent change Δ); torch or numpy.
    Returns:
        ``[N]`` float64 correlations (NaN for an image whose map is constant).
    """
    a = (maps_a.detach().cpu().double().numpy() if isinstance(maps_a, torch.Tensor) else np.asarray(maps_a, np.float64))
    b = (maps_b.detach().cpu().double().numpy() if isinstance(maps_b, torch.Tensor) else np.asarray(maps_b, np.float64))
    if a.shape != b.shape or a.ndim < 2:
        raise ValueError(f"maps must be [N, ...] of the same shape; got {a.shape} and {b.shape}")
    return np.array([pearson(a[i], b[i]) for i in range(a.shape[0])])


def mean_pixel_pearson(maps_a: Any, maps_b: Any, *, nan_policy: str = "raise") -> float:
    """Mean over images of the per-image pixel correlation (the number in Table 4's pixel row).

    ``nan_policy``: ``"raise"`` (default) if an image's map is constant, ``"omit"`` to average the others.
    """
    r = pixel_pearson(maps_a, maps_b)
    return _mean_with_policy(r, nan_policy)


def _mean_with_policy(r: np.ndarray, nan_policy: str) -> float:
    if nan_policy not in ("raise", "omit"):
        raise ValueError(f"nan_policy must be 'raise' or 'omit'; got {nan_policy!r}")
    bad = np.isnan(r)
    if bad.any():
        if nan_policy == "raise":
            raise ValueError(f"{int(bad.sum())} images have a constant map (correlation undefined) at positions "
                             f"{np.flatnonzero(bad)[:10].tolist()}; pass nan_policy='omit' to skip them")
        r = r[~bad]
    return float(r.mean())


@dataclass(frozen=True, eq=False)
class BootstrapEstimate:
    """A statistic with bootstrap error bars."""

    value: float              # the statistic on all items
    error: float              # the reported "±": faithful std/10 (docs/protocol.md#b31), corrected the bootstrap std
    std: float                # std of the resampled statistics (faithful ddof=0 as np.std, corrected ddof=1)
    ci_low: float             # percentile interval of the resampled statistics
    ci_high: float
    protocol: str             # "faithful" | "corrected"
    n_items: int
    n_resamples: int
    resample_size: int        # items per resample
    seed: int | None
    confidence: float = 0.95
    samples: np.ndarray = field(default=None, repr=False)  # [n_resamples]


_BOOTSTRAP_DEFAULTS = {"faithful": (100, 0.9), "corrected": (1000, 1.0)}


def bootstrap(
    statistic: Callable[[np.ndarray], float],
    n_items: int,
    *,
    protocol: str = "corrected",
    n_resamples: int | None = None,
    fraction: float | None = None,
    seed: int | np.random.Generator | None = 0,
    confidence: float = 0.95,
) -> BootstrapEstimate:
    """Bootstrap a statistic of ``n_items`` items, resampling item indices with replacement.

    Args:
        statistic: ``f(indices [k] int) -> float``, the statistic of the items at those indices.
        protocol: ``"faithful"`` — the reference (docs/protocol.md#intervention-pearson, docs/protocol.md#b31): 100
        resamples of ``int(0.9 * n)`` items with
            replacement, ``error = np.std(samples) / 10``. ``"corrected"`` — 1000 full-size resamples,
            ``error`` = bootstrap std (ddof=1); both report a percentile interval.
        n_resamples, fraction: override the protocol's defaults.
        seed: int, ``numpy.random.Generator`` or None. The reference used unseeded ``np.random``: pass
            ``seed=None`` to reproduce that (non-reproducible) behaviour.
    """
    if protocol not in _BOOTSTRAP_DEFAULTS:
        raise ValueError(f"protocol must be 'faithful' or 'corrected'; got {protocol!r}")
    default_r, default_f = _BOOTSTRAP_DEFAULTS[protocol]
    r = default_r if n_resamples is None else int(n_resamples)
    f = default_f if fraction is None else float(fraction)
    if n_items < 2 or r < 2 or not 0 < f <= 1:
        raise ValueError(f"need n_items >= 2, n_resamples >= 2 and 0 < fraction <= 1; got {n_items}, {r}, {f}")
    k = max(1, int(f * n_items))  # [INFER] the reference's resample size for 90 %: int(0.9 * n)
    rng = seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)
    value = float(statistic(np.arange(n_items)))
    samples = np.array([float(statistic(rng.integers(0, n_items, size=k))) for _ in range(r)])
    alpha = (1 - confidence) / 2
    if protocol == "faithful":
        std = float(np.std(samples))
        error = std / 10.0  # docs/protocol.md#b31: the reference divides the bootstrap std by 10 (√100 resamples)
    else:
        std = float(np.std(samples, ddof=1))
        error = std
    return BootstrapEstimate(
        value=value, error=error, std=std, ci_low=float(np.quantile(samples, alpha)),
        ci_high=float(np.quantile(samples, 1 - alpha)), protocol=protocol, n_items=int(n_items), n_resamples=r,
        resample_size=k, seed=seed if isinstance(seed, (int, type(None))) else None, confidence=confidence,
        samples=samples,
    )


def pearson_bootstrap(x: np.ndarray, y: np.ndarray, **kwargs: Any) -> BootstrapEstimate:
    """Image-level Pearson correlation across items (e.g. CMI vs total change per image) with bootstrap error.

    ``x, y``: ``[N]``. Keyword arguments go to :func:`bootstrap` (``protocol``, ``seed``, ...).
    """
    a = np.asarray(x, dtype=np.float64).reshape(-1)
    b = np.asarray(y, dtype=np.float64).reshape(-1)
    if a.shape != b.shape:
        raise ValueError(f"x and y must have the same length; got {a.shape} and {b.shape}")
    pearson(a, b)  # validates
    return bootstrap(lambda idx: pearson(a[idx], b[idx]), len(a), **kwargs)


def pixel_pearson_bootstrap(maps_a: Any, maps_b: Any, *, nan_policy: str = "raise", **kwargs: Any) -> BootstrapEstimate:
    """Mean over images of the per-image pixel correlation, with bootstrap error over images.

    Each image's correlation does not depend on the others, so they are computed once and the bootstrap
    resamples images (as the reference, which recomputes the same per-image numbers on every resample).
    """
    r = pixel_pearson(maps_a, maps_b)
    _mean_with_policy(r, nan_policy)  # raises on constant maps unless "omit"
    r = r[~np.isnan(r)]
    return bootstrap(lambda idx: float(r[idx].mean()), len(r), **kwargs)


# ── summaries of a sample, as the reports print them ──

def mean_se(values) -> dict:
    """``{"value": mean, "stderr": std/sqrt(n), "n": n}`` of a 1-d sample (stderr NaN for n < 2)."""
    v = np.asarray(values, dtype=np.float64)
    n = int(v.size)
    return {"value": float(v.mean()), "stderr": float(v.std(ddof=1) / math.sqrt(n)) if n > 1 else float("nan"),
            "n": n}


def binomial(hits: int, n: int) -> dict:
    """``{"value": p, "stderr": sqrt(p(1 − p)/n), "n": n}`` for ``hits`` successes in ``n`` trials."""
    p = hits / n
    return {"value": p, "stderr": math.sqrt(max(p * (1 - p), 1e-12) / n), "n": n}
