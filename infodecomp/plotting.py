"""Display only: figures from arrays, tables and result objects (docs/architecture.md#display-only). Never runs a model.

Every function returns a matplotlib ``Figure``; :func:`save_figure` writes it under ``figures/<model>/``.
Error bars are ±2 standard errors unless said otherwise. Information is in nats.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import matplotlib
import matplotlib.pyplot as plt
import numpy as np
from matplotlib.figure import Figure  # not pyplot for the probe's figures: the probe may draw from a worker thread
from matplotlib.patches import Patch
from PIL import Image

__all__ = ["convergence_plot", "variance_comparison", "pixel_maps", "mmse_curves", "save_figure"]

_RULE_STYLE = {"logistic": ("C0", "o"), "uniform": ("C1", "s"), "logistic_qmc": ("C2", "^"),
               "uniform_qmc": ("C3", "v")}


def _rows(table) -> list[dict]:
    """Accept a pandas DataFrame or a sequence of dicts."""
    if hasattr(table, "to_dict"):
        return table.to_dict("records")
    return [dict(r) for r in table]


def _np(a) -> np.ndarray:
    if hasattr(a, "detach"):
        a = a.detach().float().cpu().numpy()
    return np.asarray(a, dtype=float)


def convergence_plot(table, *, title: str | None = None, exact_label: str = "exact",
                     target_label: str = "on the clipped range") -> matplotlib.figure.Figure:
    """Estimate ± 2 SE against the number of log-SNR draws, one panel per estimator, one line per rule.

    table: rows with ``rule, n_samples, estimator, value, stderr`` and optionally ``target`` (the estimand on
    the clipped log-SNR range) and ``exact`` (the untruncated answer), drawn as horizontal lines (as from
    :func:`infodecomp.experiments.estimator_studies.convergence_study`).
    """
    rows = _rows(table)
    estimators = list(dict.fromkeys(r["estimator"] for r in rows))
    fig, axes = plt.subplots(1, len(estimators), figsize=(5.2 * len(estimators), 3.8), squeeze=False)
    for ax, est in zip(axes[0], estimators):
        sub = [r for r in rows if r["estimator"] == est]
        rules = list(dict.fromkeys(r["rule"] for r in sub))
        for i, rule in enumerate(rules):
            pts = sorted((r for r in sub if r["rule"] == rule), key=lambda r: r["n_samples"])
            n = np.array([r["n_samples"] for r in pts], dtype=float)
            n = n * (1 + 0.04 * (i - (len(rules) - 1) / 2))  # small offsets so error bars do not overlap
            v = np.array([r["value"] for r in pts])
            se = np.nan_to_num(np.array([r["stderr"] for r in pts]))
            color, marker = _RULE_STYLE.get(rule, (f"C{i + 4}", "o"))
            ax.errorbar(n, v, yerr=2 * se, color=color, marker=marker, ms=4, capsize=2, lw=1, label=rule)
        if "target" in sub[0]:
            ax.axhline(sub[0]["target"], color="k", lw=1, label=target_label)
        if "exact" in sub[0]:
            ax.axhline(sub[0]["exact"], color="k", lw=1, ls="--", label=exact_label)
        ax.set_xscale("log")
        ax.set_xlabel("log-SNR draws per example")
        ax.set_ylabel("nats")
        ax.set_title({"standard": "standard $i^s$", "orthogonal": "orthogonal $i^o$"}.get(est, est))
        ax.legend(fontsize=7)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig


def variance_comparison(table, *, value: str = "sd_ratio", title: str | None = None,
                        ylabel: str = "standard error / i.i.d. logistic") -> matplotlib.figure.Figure:
    """Grouped bars of ``value`` (default: standard error relative to the paper's rule) per rule and noise
    option, one bar per estimator; a dashed line at 1. table: rows as from
    :func:`infodecomp.experiments.estimator_studies.variance_study` (columns rule, noise, estimator and
    ``value``)."""
    rows = _rows(table)
    groups = list(dict.fromkeys((r["rule"], r.get("noise", "iid")) for r in rows))
    estimators = list(dict.fromkeys(r["estimator"] for r in rows))
    lookup = {(r["rule"], r.get("noise", "iid"), r["estimator"]): r[value] for r in rows}
    fig, ax = plt.subplots(figsize=(max(5.0, 0.9 * len(groups) + 1.5), 3.6))
    width = 0.8 / len(estimators)
    x = np.arange(len(groups))
    for i, est in enumerate(estimators):
        ax.bar(x + (i - (len(estimators) - 1) / 2) * width, [lookup.get((g[0], g[1], est), np.nan) for g in groups],
               width, label=est, color=f"C{i}")
    ax.axhline(1.0, color="k", lw=1, ls="--")
    ax.set_xticks(x, [f"{r}\n{n}" for r, n in groups], fontsize=7)
    ax.set_ylabel(ylabel)
    ax.set_yscale("log")
    ax.legend(fontsize=8)
    if title:
        ax.set_title(title)
    fig.tight_layout()
    return fig


def pixel_maps(maps: Sequence, titles: Sequence[str] | None = None, *, cmap: str = "magma",
               shared_scale: bool = False, colorbar: bool = True, ncols: int | None = None,
               suptitle: str | None = None) -> matplotlib.figure.Figure:
    """A row (or grid) of per-pixel maps [H, W] (tensors or arrays), each with its own colour scale unless
    ``shared_scale``. Values are shown as given (nats per pixel); no normalisation."""
    arrays = [_np(m) for m in maps]
    if any(a.ndim != 2 for a in arrays):
        raise ValueError(f"pixel_maps takes 2-D maps [H, W]; got shapes {[a.shape for a in arrays]}")
    n = len(arrays)
    ncols = ncols or n
    nrows = -(-n // ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(2.6 * ncols, 2.5 * nrows), squeeze=False)
    vmin = min(float(a.min()) for a in arrays) if shared_scale else None
    vmax = max(float(a.max()) for a in arrays) if shared_scale else None
    for i, ax in enumerate(axes.flat):
        if i >= n:
            ax.axis("off")
            continue
        im = ax.imshow(arrays[i], cmap=cmap, vmin=vmin, vmax=vmax)
        ax.set_xticks([])
        ax.set_yticks([])
        if titles is not None:
            ax.set_title(titles[i], fontsize=8)
        if colorbar:
            fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04)
    if suptitle:
        fig.suptitle(suptitle)
    fig.tight_layout()
    return fig


def mmse_curves(logsnr, curves: Mapping[str, tuple], *, title: str | None = None,
                ylabel: str = "integrand (nats; i = ½∫·dλ)") -> matplotlib.figure.Figure:
    """Per-log-SNR curves with ±2 SE bands (App. C.2). curves: label → (mean [L], stderr [L]) for estimates,
    or mean [L] alone for exact curves (drawn dashed)."""
    lam = _np(logsnr)
    fig, ax = plt.subplots(figsize=(5.5, 3.6))
    for i, (label, c) in enumerate(curves.items()):
        mean, se = (c if isinstance(c, tuple) else (c, None))
        mean = _np(mean)
        ax.plot(lam, mean, color=f"C{i}", label=label, lw=1.2, ls="-" if isinstance(c, tuple) else "--")
        if se is not None:
            se = np.nan_to_num(_np(se))
            ax.fill_between(lam, mean - 2 * se, mean + 2 * se, color=f"C{i}", alpha=0.25, lw=0)
    ax.axhline(0.0, color="k", lw=0.6)
    ax.set_xlabel("log-SNR λ")
    ax.set_ylabel(ylabel)
    ax.legend(fontsize=8)
    if title:
        ax.set_title(title)
    fig.tight_layout()
    return fig


def save_figure(fig: matplotlib.figure.Figure, path: str | Path, *, dpi: int = 120) -> Path:
    """Write ``fig`` to ``path`` (parent folders created), e.g. ``figures/analytic/01_convergence.png``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=dpi, bbox_inches="tight")
    return path


def word_heatmap_grid(images: Sequence, rows: Mapping[str, Sequence], titles: Sequence[str] | None = None, *,
                      joint: Sequence[str] = ("MI", "CMI"), cmap: str = "jet", alpha: float = 0.5):
    """Fig. 2 layout: one column per example; first row the image, then one row per named map, overlaid.

    images: N RGB images (PIL or ``[H, W, 3]`` arrays); rows: ``{name: N maps [h, w]}`` (upsampled to the
    image for display); maps named in ``joint`` share one min–max per example (the paper's joint colour scale),
    the others are min–max normalised alone. Returns the figure.
    """
    import torch  # deferred: plotting imports no torch (it draws arrays); torch only to resize a tensor map
    import torch.nn.functional as F  # deferred, with torch

    n = len(images)
    fig, axes = plt.subplots(len(rows) + 1, n, figsize=(2.0 * n, 2.0 * (len(rows) + 1)), squeeze=False)
    for j in range(n):
        img = np.asarray(images[j])
        H, W = img.shape[:2]
        joint_maps = [_np(rows[k][j]).astype(np.float64) for k in joint if k in rows]
        jlo = min(m.min() for m in joint_maps) if joint_maps else None
        jhi = max(m.max() for m in joint_maps) if joint_maps else None
        axes[0, j].imshow(img)
        if titles is not None:
            axes[0, j].set_title(titles[j], fontsize=8)
        for i, (name, maps) in enumerate(rows.items(), start=1):
            m = _np(maps[j]).astype(np.float64)
            up = F.interpolate(torch.as_tensor(m)[None, None], size=(H, W), mode="bilinear",
                               align_corners=False)[0, 0].numpy()
            lo, hi = (jlo, jhi) if name in joint else (m.min(), m.max())
            up = (up - lo) / (hi - lo) if hi > lo else np.zeros_like(up)
            axes[i, j].imshow(img)
            axes[i, j].imshow(np.clip(up, 0, 1), cmap=cmap, alpha=alpha, vmin=0, vmax=1)
            if j == 0:
                axes[i, j].set_ylabel(name)
    for ax in axes.flat:
        ax.set_xticks([])
        ax.set_yticks([])
    fig.tight_layout()
    return fig


# -- prompt intervention (notebook 06): edit panels over the image, correlation scatter ----------------------
def _overlay(ax, img, m, cmap="jet", alpha=0.5):
    import torch  # deferred: plotting imports no torch (it draws arrays); torch only to resize a tensor map
    import torch.nn.functional as F  # deferred, with torch

    img = np.asarray(img)
    m = _np(m).astype(np.float64)
    up = F.interpolate(torch.as_tensor(m)[None, None], size=img.shape[:2], mode="bilinear",
                       align_corners=False)[0, 0].numpy()
    lo, hi = up.min(), up.max()
    ax.imshow(img)
    ax.imshow((up - lo) / (hi - lo) if hi > lo else np.zeros_like(up), cmap=cmap, alpha=alpha, vmin=0, vmax=1)


def intervention_panels(examples: Sequence[Mapping], *, edit: str = "omit", title: str | None = None):
    """Figs. 1 / 3 style rows: real | reconstruction | edit | CMI overlay | attention overlay | change.

    Each example is a mapping with images ``real``, ``reconstruction``, ``omit``/``swap`` (``[H, W, 3]`` in
    [0, 1]), maps ``cmi_map``, ``attention_map``, ``change_map`` (any size, upsampled bilinearly), scalars
    ``cmi`` (nats) and ``change``, and strings ``caption``, ``edit_prompt``. The CMI overlay's inset is the
    image-level CMI in nats ("nats total"; the paper's figures say bits). ``edit``: which image is the edit.
    """
    n = len(examples)
    if n == 0:
        raise ValueError("no examples to draw")
    cols = ["real", "reconstruction", edit, "CMI", "attention", "change"]
    fig, axes = plt.subplots(n, len(cols), figsize=(1.9 * len(cols), 2.1 * n), squeeze=False)
    for i, ex in enumerate(examples):
        axes[i, 0].imshow(np.clip(ex["real"], 0, 1))
        axes[i, 1].imshow(np.clip(ex["reconstruction"], 0, 1))
        axes[i, 2].imshow(np.clip(ex[edit], 0, 1))
        _overlay(axes[i, 3], np.clip(ex["reconstruction"], 0, 1), ex["cmi_map"])
        axes[i, 3].text(0.02, 0.02, f"{ex['cmi']:.2f} nats total", transform=axes[i, 3].transAxes, fontsize=7,
                        color="white", bbox=dict(facecolor="black", alpha=0.6, pad=1))
        _overlay(axes[i, 4], np.clip(ex["reconstruction"], 0, 1), ex["attention_map"])
        axes[i, 5].imshow(_np(ex["change_map"]), cmap="magma")
        axes[i, 5].text(0.02, 0.02, f"Σ {ex['change']:.3g}", transform=axes[i, 5].transAxes, fontsize=7,
                        color="white", bbox=dict(facecolor="black", alpha=0.6, pad=1))
        axes[i, 0].set_ylabel(ex.get("caption", ""), fontsize=7)
        axes[i, 2].set_xlabel(ex.get("edit_prompt", ""), fontsize=7)
    for j, c in enumerate(cols):
        axes[0, j].set_title(c, fontsize=8)
    for ax in axes.flat:
        ax.set_xticks([])
        ax.set_yticks([])
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return fig


def correlation_scatter(x, y, *, xlabel: str, ylabel: str, ax=None, title: str | None = None):
    """Scatter of per-image ``x [N]`` against ``y [N]`` with the Pearson r in the title."""
    x, y = _np(x).astype(np.float64), _np(y).astype(np.float64)
    fig = None
    if ax is None:
        fig, ax = plt.subplots(figsize=(3.2, 3.0))
    ax.scatter(x, y, s=10)
    r = np.corrcoef(x, y)[0, 1] if len(x) > 1 and x.std() > 0 and y.std() > 0 else float("nan")
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(f"{title + ': ' if title else ''}r = {r:.2f}", fontsize=9)
    return fig if fig is not None else ax.figure


# -- relation testing (notebooks 02, 03): Table 1's accuracy bars, Table 2's per-group plot -------------------
def accuracy_bars(table, *, chance: Mapping[str, float] | None = None, title: str | None = None,
                  ylabel: str = "accuracy (%)"):
    """Table 1 as grouped bars: one group per dataset, one bar per method, with confidence intervals.

    table: rows with ``method``, ``dataset``, ``accuracy``, ``ci_low``, ``ci_high`` (fractions in [0, 1], as the
    long table of :func:`infodecomp.experiments.relation_testing.table1`). chance: ``{dataset: 1/M}`` drawn as a
    dashed line over the dataset's group. Error bars are the given intervals (not ±2 SE).
    """
    rows = _rows(table)
    if not rows:
        raise ValueError("no rows to draw")
    datasets = list(dict.fromkeys(r["dataset"] for r in rows))
    methods = list(dict.fromkeys(r["method"] for r in rows))
    lookup = {(r["dataset"], r["method"]): r for r in rows}
    width = 0.8 / len(methods)
    fig, ax = plt.subplots(figsize=(1.6 + 1.5 * len(datasets), 3.4))
    for j, m in enumerate(methods):
        xs, ys, lo, hi = [], [], [], []
        for i, d in enumerate(datasets):
            r = lookup.get((d, m))
            if r is None:
                continue
            xs.append(i - 0.4 + width * (j + 0.5))
            ys.append(100 * r["accuracy"])
            lo.append(100 * (r["accuracy"] - r["ci_low"]))
            hi.append(100 * (r["ci_high"] - r["accuracy"]))
        # rows without an interval (the paper's numbers) are drawn hatched and pale, and get no error bar
        has_ci = [np.isfinite(a) and np.isfinite(b) for a, b in zip(lo, hi)]
        ax.bar(xs, ys, width=width * 0.95, color=f"C{j}", label=m, alpha=1.0 if all(has_ci) else 0.45,
               hatch=None if all(has_ci) else "//", edgecolor="white" if all(has_ci) else f"C{j}")
        keep = [k for k, ok in enumerate(has_ci) if ok]
        if keep:
            ax.errorbar([xs[k] for k in keep], [ys[k] for k in keep], yerr=[[lo[k] for k in keep], [hi[k] for k in keep]],
                        fmt="none", ecolor="k", capsize=2, lw=1)
    for i, d in enumerate(datasets):
        if chance and d in chance:
            ax.hlines(100 * chance[d], i - 0.45, i + 0.45, colors="grey", linestyles="--", lw=1)
    ax.set_xticks(range(len(datasets)))
    ax.set_xticklabels(datasets)
    ax.set_ylim(0, 100)
    ax.set_ylabel(ylabel)
    ax.legend(fontsize=7, loc="upper right")
    if title:
        ax.set_title(title, fontsize=10)
    fig.tight_layout()
    return fig


def group_accuracy_plot(table, *, method: str, baseline: str, method_label: str | None = None,
                        baseline_label: str | None = None, title: str | None = None):
    """Table 2 as a dot plot: per group (relation or attribute pair) the accuracy of ``method`` and ``baseline``
    with their intervals; groups flagged ``"▲"`` / ``"▼"`` in the ``highlight`` column get a green / magenta
    background (the paper's highlighting).

    table: rows with ``group``, ``n``, ``acc_<m>``, ``ci_low_<m>``, ``ci_high_<m>`` for both methods and
    ``highlight`` (as :func:`infodecomp.experiments.relation_testing.group_table` returns).
    """
    rows = _rows(table)
    if not rows:
        raise ValueError("no groups to draw")
    fig, ax = plt.subplots(figsize=(5.2, 0.8 + 0.32 * len(rows)))
    ys = np.arange(len(rows))[::-1]
    for y, r in zip(ys, rows):
        colour = {"▲": "#c8f0c8", "▼": "#f3c6ef"}.get(r.get("highlight", ""))
        if colour:
            ax.axhspan(y - 0.45, y + 0.45, color=colour, zorder=0)
    for k, (m, label, dy, c) in enumerate(((method, method_label or method, 0.12, "C0"),
                                           (baseline, baseline_label or baseline, -0.12, "C1"))):
        acc = np.array([100 * r[f"acc_{m}"] for r in rows])
        lo = np.array([100 * r[f"ci_low_{m}"] for r in rows])
        hi = np.array([100 * r[f"ci_high_{m}"] for r in rows])
        ax.errorbar(acc, ys + dy, xerr=[acc - lo, hi - acc], fmt="o", color=c, ms=4, capsize=2, lw=1, label=label)
    ax.set_yticks(ys)
    ax.set_yticklabels([f"{r['group']} (n={int(r['n'])})" for r in rows], fontsize=7)
    ax.set_xlim(0, 100)
    ax.set_xlabel("accuracy (%)")
    ax.axvline(50, color="grey", ls="--", lw=1)
    ax.legend(fontsize=7, loc="lower right")
    if title:
        ax.set_title(title, fontsize=9)
    fig.tight_layout()
    return fig


# -- word localization (notebook 05) ---------------------------------------------------------------------------
def localization_plot(curves, table, *, labels: Mapping[str, str] | None = None, title: str | None = None):
    """Table 3 as a figure: left, mIoU against the threshold τ per method (±2 SE band; a dot at the oracle τ;
    the whole-image baseline dashed); right, mIoU ±2 SE per method with the oracle (faithful) and the held-out
    (corrected) threshold.

    curves: rows with ``method``, ``threshold``, ``miou``, ``stderr``, ``oracle`` (as
    :func:`infodecomp.experiments.localization.threshold_curves`). table: indexed by method with
    ``miou_faithful``, ``stderr_faithful``, ``miou_corrected``, ``stderr_corrected`` (as
    :func:`~infodecomp.experiments.localization.localization_table`; ``whole_image`` included). labels: display
    names by method.
    """
    rows = _rows(curves)
    if not rows or len(table) == 0:
        raise ValueError("no curves or no table rows to draw")
    labels = dict(labels or {})
    methods = list(dict.fromkeys(r["method"] for r in rows))
    colours = {m: f"C{i}" for i, m in enumerate(list(table.index))}
    fig, (ax, bx) = plt.subplots(1, 2, figsize=(9.0, 3.4), gridspec_kw={"width_ratios": [1.1, 1]})
    for m in methods:
        rs = [r for r in rows if r["method"] == m]
        tau, miou, se = (np.array([r[k] for r in rs], dtype=float) for k in ("threshold", "miou", "stderr"))
        c = colours.get(m, "k")
        ax.plot(tau, 100 * miou, color=c, lw=1.5, label=labels.get(m, m))
        ax.fill_between(tau, 100 * (miou - 2 * np.nan_to_num(se)), 100 * (miou + 2 * np.nan_to_num(se)),
                        color=c, alpha=0.15, lw=0)
        best = [i for i, r in enumerate(rs) if r["oracle"]]
        ax.plot(tau[best], 100 * miou[best], "o", color=c, ms=4)
    if "whole_image" in table.index:
        ax.axhline(100 * float(table.loc["whole_image", "miou_faithful"]), color=colours["whole_image"], ls="--",
                   lw=1, label=labels.get("whole_image", "whole_image"))
    ax.set_xlabel("threshold τ (min–max normalised map)")
    ax.set_ylabel("mIoU (%)")
    ax.legend(fontsize=7)
    names = list(table.index)
    x = np.arange(len(names))
    for j, (kind, hatch) in enumerate((("faithful", None), ("corrected", "//"))):
        ys = 100 * table[f"miou_{kind}"].to_numpy(dtype=float)
        err = 200 * np.nan_to_num(table[f"stderr_{kind}"].to_numpy(dtype=float))
        bx.bar(x - 0.2 + 0.4 * j, ys, width=0.38, color=[colours[m] for m in names], hatch=hatch,
               edgecolor="k", lw=0.5)
        bx.errorbar(x - 0.2 + 0.4 * j, ys, yerr=err, fmt="none", ecolor="k", capsize=2, lw=1)
    bx.set_xticks(x)
    bx.set_xticklabels([labels.get(m, m) for m in names], rotation=25, ha="right", fontsize=7)
    bx.set_ylabel("mIoU (%)")
    bx.legend(handles=[Patch(facecolor="white", edgecolor="k", lw=0.5, label="faithful (oracle τ)"),
                       Patch(facecolor="white", edgecolor="k", lw=0.5, hatch="//", label="corrected (held-out τ)")],
              fontsize=7)
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return fig


# -- the interactive probe (notebook 08, infodecomp.widgets) -------------------------------------------------
# These build figures with matplotlib.figure.Figure, not pyplot: the probe draws from a worker thread, and a
# pyplot figure made there would be registered with (and later shown by) the notebook's inline backend.
def _rgb_float(image) -> np.ndarray:
    """An image (PIL, uint8 ``[H, W, 3]`` or float ``[H, W, 3]`` in [0, 1]) → float ``[H, W, 3]`` in [0, 1]."""
    img = np.asarray(image)
    if img.ndim != 3 or img.shape[-1] != 3:
        raise ValueError(f"expected an RGB image [H, W, 3], got shape {img.shape}")
    return img.astype(np.float64) / 255.0 if img.dtype == np.uint8 else np.clip(img.astype(np.float64), 0, 1)


def _resize(a: np.ndarray, size: tuple[int, int], smooth: bool) -> np.ndarray:
    """Resize a float array ``[h, w]`` or ``[h, w, 3]`` to ``size = (H, W)``: bilinear (``smooth``) or nearest."""
    if a.shape[:2] == tuple(size):
        return a
    resample = Image.Resampling.BILINEAR if smooth else Image.Resampling.NEAREST
    chans = [a] if a.ndim == 2 else [a[..., c] for c in range(a.shape[-1])]
    out = [np.asarray(Image.fromarray(c.astype(np.float32), mode="F").resize(size[::-1], resample)) for c in chans]
    return out[0].astype(np.float64) if a.ndim == 2 else np.stack(out, -1).astype(np.float64)


def heat_overlay(image, m, *, lo: float | None = None, hi: float | None = None, size: int | None = None,
                 cmap: str = "jet", alpha: float = 0.5) -> np.ndarray:
    """``image`` with the map ``m [h, w]`` blended on top, as uint8 ``[S, S', 3]``.

    The map is upsampled bilinearly to the image, scaled by ``(m − lo)/(hi − lo)`` (default: its own min and max;
    pass a shared ``lo, hi`` for the paper's joint MI/CMI scale) and coloured with ``cmap``. ``size``: the
    longer side of the output in pixels (the image is enlarged with nearest neighbours, so small ShapesWorld
    images stay crisp); None keeps the image's size. No model is run.
    """
    img = _rgb_float(image)
    m = _np(m).astype(np.float64)
    if m.ndim != 2:
        raise ValueError(f"heat_overlay takes a 2-D map [h, w], got shape {m.shape}")
    H, W = img.shape[:2]
    if size is not None:
        f = size / max(H, W)
        H, W = max(1, round(H * f)), max(1, round(W * f))
        img = _resize(img, (H, W), smooth=f < 1)
    lo = float(m.min()) if lo is None else float(lo)
    hi = float(m.max()) if hi is None else float(hi)
    up = _resize(m, (H, W), smooth=True)
    norm = np.clip((up - lo) / (hi - lo), 0, 1) if hi > lo else np.zeros_like(up)
    colour = matplotlib.colormaps[cmap](norm)[..., :3]
    return np.clip(np.round(255 * ((1 - alpha) * img + alpha * colour)), 0, 255).astype(np.uint8)


def information_bars(values: Mapping[str, tuple[float, float]], *, title: str | None = None,
                     figsize: tuple[float, float] = (2.6, 2.2)) -> matplotlib.figure.Figure:
    """Image-level values with ±2 standard-error bars: ``{name: (value, stderr)}`` in nats."""
    fig = Figure(figsize=figsize)
    ax = fig.add_subplot()
    names = list(values)
    v = np.array([values[k][0] for k in names], dtype=float)
    se = np.nan_to_num(np.array([values[k][1] for k in names], dtype=float))
    ax.bar(range(len(names)), v, color=[f"C{i}" for i in range(len(names))], width=0.6)
    ax.errorbar(range(len(names)), v, yerr=2 * se, fmt="none", ecolor="k", capsize=4, lw=1)
    ax.axhline(0, color="k", lw=0.6)
    ax.set_xticks(range(len(names)), names)
    ax.set_ylabel("nats (± 2 s.e.)")
    if title:
        ax.set_title(title, fontsize=9)
    fig.tight_layout()
    return fig


def _panel_row(panels: Sequence[tuple[str, np.ndarray, str]], *, height: float, title: str,
               fontsize: float) -> Figure:
    """One row of image panels under a title, as the probe's figures show them: ``panels`` = ``(name, uint8
    [H, W, 3] image, note under it)``, each 2.2 inches wide and ``height`` inches tall, without ticks."""
    fig = Figure(figsize=(2.2 * len(panels), height))
    axes = fig.subplots(1, len(panels), squeeze=False)[0]
    for ax, (name, img, note) in zip(axes, panels):
        ax.imshow(img, interpolation="nearest")
        ax.set_title(name, fontsize=9)
        ax.set_xlabel(note, fontsize=7)
        ax.set_xticks([])
        ax.set_yticks([])
    fig.suptitle(title, fontsize=fontsize)
    fig.tight_layout()
    return fig


def _draws_note(taken: Mapping[str, int], cap: int, met: Mapping[str, bool] | None) -> tuple[str, str]:
    """A probe title's account of its draws: ``(draws, verdict)``, e.g. ``("16 log-SNR draws", "")`` for fixed
    draws, ``("MI 8, CMI 32 of at most 32 log-SNR draws", ", target met by MI, not CMI")`` under a precision
    target, where ``cap`` (the settings' ``n_samples``) is only the maximum. ``taken``: {map: draws it took};
    ``met``: {map or maps: whether the target was met}, None without a target."""
    counts = set(taken.values())
    draws = str(counts.pop()) if len(counts) == 1 else ", ".join(f"{k} {n}" for k, n in taken.items())
    if met is None:
        return f"{draws} log-SNR draws", ""
    hit = [k for k, ok in met.items() if ok]
    miss = [k for k, ok in met.items() if not ok]
    verdict = ("target met" if not miss else "target not met at the cap" if not hit
               else f"target met by {', '.join(hit)}, not {', '.join(miss)}")
    return f"{draws} of at most {cap} log-SNR draws", f", {verdict}"


def probe_figure(result, intervention=None, *, size: int = 256) -> matplotlib.figure.Figure:
    """What the probe shows for one click, as a figure for saving: the image, MI, CMI (joint colour scale) and
    attention overlays with their image-level values, and, given an ``intervention``, the reconstruction, the
    edit and the latent change. ``result``: an :class:`infodecomp.experiments.probe.ProbeResult`;
    ``intervention``: a :class:`~infodecomp.experiments.probe.ProbeIntervention` of the same image."""
    lo = min(float(result.mi.min()), float(result.cmi.min()))
    hi = max(float(result.mi.max()), float(result.cmi.max()))
    panels = [("image", np.asarray(result.image), ""),
              ("MI", heat_overlay(result.image, result.mi, lo=lo, hi=hi, size=size),
               f"{result.mi_image:.2f} ± {result.mi_stderr:.2f} nats"),
              ("CMI", heat_overlay(result.image, result.cmi, lo=lo, hi=hi, size=size),
               f"{result.cmi_image:.2f} ± {result.cmi_stderr:.2f} nats"),
              ("attention", heat_overlay(result.image, result.attention, size=size), "")]
    if intervention is not None:
        panels += [("reconstruction", np.asarray(intervention.reconstruction), ""),
                   (intervention.kind, np.asarray(intervention.edited), intervention.edit_prompt),
                   ("change", heat_overlay(intervention.reconstruction, intervention.change, size=size),
                    f"Σ {intervention.change_total:.3g}")]
    s = result.settings
    lam_lo, lam_hi = s.logsnr_range
    met = None if result.target_met is None else {"MI": result.mi_target_met, "CMI": result.cmi_target_met}
    draws, verdict = _draws_note({"MI": result.mi_samples, "CMI": result.cmi_samples}, s.n_samples, met)
    return _panel_row(panels, height=2.6, fontsize=9,
                      title=f"“{result.prompt}”: word “{result.word}” ({draws} on [{lam_lo:.1f}, {lam_hi:.1f}]"
                            f"{verdict}, ± 1 s.e.)")


# -- does the model read its words? (notebook 00) ------------------------------------------------------------
_KIND_COLOURS = {"start": "0.6", "word": "C2", "end": "C1", "padding": "C3"}


def token_mass_plot(by_layer, by_logsnr, *, title: str | None = None) -> matplotlib.figure.Figure:
    """Where cross-attention looks: stacked bars of the attention mass per token kind (start, words, end,
    padding), one bar per layer (left) and per noise level (right). ``by_layer`` / ``by_logsnr``: DataFrames
    with those four columns (:func:`infodecomp.diagnostics.attention_mass_table`)."""
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.2), gridspec_kw={"width_ratios": [3, 2]})
    for ax, table, label in ((axes[0], by_layer, "layer"), (axes[1], by_logsnr, "log-SNR λ")):
        names = [str(i).replace(".transformer_blocks.0.attn2", "").replace("attentions.", "a")
                 for i in table.index]
        left = np.zeros(len(table))
        for kind, colour in _KIND_COLOURS.items():
            v = table[kind].to_numpy(dtype=float) if kind in table else np.zeros(len(table))
            ax.barh(range(len(table)), v, left=left, color=colour, label=kind)
            left += v
        ax.set_yticks(range(len(table)), names, fontsize=7)
        ax.set_xlim(0, 1)
        ax.invert_yaxis()
        ax.set_xlabel("attention mass (mean over heads and pixels)")
        ax.set_ylabel(label)
    axes[1].legend(loc="lower right", fontsize=7, framealpha=0.9)
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return fig


def swap_gallery(images: Sequence, word_prompts: Sequence[str], padding_prompts: Sequence[str],
                 verdicts: Sequence[str], *, ncols: int = 8) -> matplotlib.figure.Figure:
    """Images generated from hybrid embeddings (the swap test), titled with the prompt whose words they got,
    the one whose end token and padding they got, and what the image follows ("words", "padding", "neither")."""
    n = len(images)
    ncols = min(ncols, n)
    nrows = -(-n // ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(1.6 * ncols, 1.9 * nrows), squeeze=False)
    colours = {"words": "C2", "padding": "C3", "neither": "0.4"}
    for i, ax in enumerate(axes.flat):
        ax.axis("off")
        if i >= n:
            continue
        ax.imshow(np.asarray(images[i]), interpolation="nearest")
        ax.set_title(f"w: {word_prompts[i][2:]}\np: {padding_prompts[i][2:]}\n→ {verdicts[i]}", fontsize=6,
                     color=colours.get(verdicts[i], "k"))
    fig.tight_layout()
    return fig


def sensitivity_bars(values: Mapping[str, tuple[float, float]], *, title: str | None = None) -> matplotlib.figure.Figure:
    """How far ε̂ moves under each prompt edit: ``{edit: (mean, stderr)}`` of E‖Δε̂‖², bars with ±2 s.e.
    on a log scale (a relation flip can be orders of magnitude below a colour change)."""
    fig, ax = plt.subplots(figsize=(4.2, 2.6))
    names = list(values)
    v = np.array([values[k][0] for k in names], dtype=float)
    se = np.nan_to_num(np.array([values[k][1] for k in names], dtype=float))
    ax.bar(range(len(names)), v, color=[f"C{i}" for i in range(len(names))], width=0.6)
    ax.errorbar(range(len(names)), v, yerr=np.minimum(2 * se, 0.999 * v), fmt="none", ecolor="k", capsize=4, lw=1)
    ax.set_yscale("log")
    ax.set_xticks(range(len(names)), [k.replace("_", " ") for k in names], fontsize=8)
    ax.set_ylabel("E‖Δε̂‖² (± 2 s.e.)")
    if title:
        ax.set_title(title, fontsize=9)
    fig.tight_layout()
    return fig


#: The four PID atoms, in lattice order, with the labels the figures use.
PID_ATOMS = {"redundancy": "R", "unique1": "U1", "unique2": "U2", "synergy": "S"}


def pid_bars(summary, *, title: str | None = None) -> matplotlib.figure.Figure:
    """Image-level PID atoms with ±2 standard-error bars, one panel per (estimator, redundancy) and one group of
    bars per case kind. ``summary``: a table with columns kind, estimator, redundancy, quantity, value, stderr
    (``infodecomp.experiments.pid.summary``)."""
    rows = _rows(summary)
    panels = list(dict.fromkeys((r["estimator"], r["redundancy"]) for r in rows))
    kinds = list(dict.fromkeys(r["kind"] for r in rows))
    fig, axes = plt.subplots(1, len(panels), figsize=(3.4 * len(panels), 3.0), squeeze=False, sharey=True)
    width = 0.8 / len(PID_ATOMS)
    for ax, (estimator, redundancy) in zip(axes[0], panels):
        for j, (atom, label) in enumerate(PID_ATOMS.items()):
            vals = {r["kind"]: (r["value"], r["stderr"]) for r in rows
                    if (r["estimator"], r["redundancy"], r["quantity"]) == (estimator, redundancy, atom)}
            v = np.array([vals.get(k, (np.nan, np.nan))[0] for k in kinds], dtype=float)
            se = np.nan_to_num(np.array([vals.get(k, (np.nan, np.nan))[1] for k in kinds], dtype=float))
            xs = np.arange(len(kinds)) + (j - 1.5) * width
            ax.bar(xs, v, width=width, color=f"C{j}", label=label)
            ax.errorbar(xs, v, yerr=2 * se, fmt="none", ecolor="k", capsize=2, lw=0.8)
        ax.axhline(0, color="k", lw=0.6)
        ax.set_xticks(range(len(kinds)), kinds, rotation=20, ha="right", fontsize=8)
        ax.set_title(f"{'i^o' if estimator == 'orthogonal' else 'i^s'}, {redundancy.upper()}", fontsize=9)
    axes[0, 0].set_ylabel("nats (± 2 s.e.)")
    axes[0, -1].legend(fontsize=7, frameon=False)
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return fig


def pid_maps(images: Sequence, maps: Mapping[str, Sequence], titles: Sequence[str] | None = None
             ) -> matplotlib.figure.Figure:
    """Per image (rows): the image, then the per-pixel maps of R, U1, U2 and S (``maps[atom][i]`` ``[h, w]``,
    nats per latent pixel) on ONE diverging colour scale per image, symmetric about 0 (red: positive, blue:
    negative), with a colour bar."""
    n = len(images)
    fig, axes = plt.subplots(n, 1 + len(PID_ATOMS), figsize=(1.9 * (1 + len(PID_ATOMS)) + 0.6, 1.9 * n),
                             squeeze=False)
    for i in range(n):
        arrays = {a: _np(maps[a][i]) for a in PID_ATOMS}
        bound = max(float(np.abs(m).max()) for m in arrays.values()) or 1.0
        axes[i, 0].imshow(_rgb_float(images[i]))
        axes[i, 0].set_ylabel(titles[i] if titles else "", fontsize=7)
        for j, (atom, label) in enumerate(PID_ATOMS.items(), start=1):
            im = axes[i, j].imshow(arrays[atom], cmap="RdBu_r", vmin=-bound, vmax=bound)
            if i == 0:
                axes[i, j].set_title(label, fontsize=9)
        fig.colorbar(im, ax=axes[i, 1:].tolist(), fraction=0.02, pad=0.01, label="nats")
        for ax in axes[i]:
            ax.set_xticks([])
            ax.set_yticks([])
    return fig


def sensitivity_ratio_bars(table, *, bar: float | None = 0.1, title: str | None = None) -> matplotlib.figure.Figure:
    """Where a relation is lost: per edit (groups) the ratio of its change to one colour changed, one bar per
    reading (the text encoder's token states, ε̂), with ±2 standard-error bars on a log scale, and a dashed line
    at ``bar`` (the project's bar: 10 % of a colour change). ``table``: rows with reading, edit, ratio, stderr
    (:func:`infodecomp.experiments.word_reading.sensitivity_ratios`)."""
    rows = _rows(table)
    readings = list(dict.fromkeys(r["reading"] for r in rows))
    edits = list(dict.fromkeys(r["edit"] for r in rows))
    fig, ax = plt.subplots(figsize=(4.6, 2.8))
    width = 0.8 / max(len(readings), 1)
    for j, reading in enumerate(readings):
        got = {r["edit"]: (r["ratio"], r["stderr"]) for r in rows if r["reading"] == reading}
        v = np.array([got.get(e, (np.nan, np.nan))[0] for e in edits], dtype=float)
        se = np.nan_to_num(np.array([got.get(e, (np.nan, np.nan))[1] for e in edits], dtype=float))
        xs = np.arange(len(edits)) + (j - (len(readings) - 1) / 2) * width
        ax.bar(xs, v, width=width, color=f"C{j}", label=reading)
        # the lower whisker stops above 0: a log axis cannot show a bar reaching below it
        ax.errorbar(xs, v, yerr=[np.minimum(2 * se, 0.999 * np.abs(v)), 2 * se], fmt="none", ecolor="k",
                    capsize=3, lw=0.8)
    if bar is not None:
        ax.axhline(bar, color="0.3", ls="--", lw=0.8, label=f"bar: {bar:g} × a colour change")
    ax.set_yscale("log")
    ax.set_xticks(range(len(edits)), [e.replace("_", " ") for e in edits], fontsize=8)
    ax.set_ylabel("change ÷ one colour changed (± 2 s.e.)", fontsize=8)
    ax.legend(fontsize=7, frameon=False)
    if title:
        ax.set_title(title, fontsize=9)
    fig.tight_layout()
    return fig


def probe_pair_figure(pair, *, redundancy: str = "ccs", estimator: str = "orthogonal",
                      size: int = 256) -> matplotlib.figure.Figure:
    """The probe's two-word mode as a figure for saving: the image, then R, U1, U2 and S over it on ONE colour
    scale symmetric about 0 (red positive, blue negative), each with its image-level value ± 1 standard error.
    ``pair``: an :class:`infodecomp.experiments.probe.ProbePair`; ``redundancy`` "ccs" or "mmi", ``estimator``
    "orthogonal" or "standard" (all four come from the same denoiser calls)."""
    maps, values = pair.maps[(estimator, redundancy)], pair.values[(estimator, redundancy)]
    bound = max(max(float(np.abs(_np(maps[a])).max()) for a in PID_ATOMS), 1e-12)
    panels = [("image", np.asarray(pair.image), "")]
    names = {"unique1": f"U1 (“{pair.word1}”)", "unique2": f"U2 (“{pair.word2}”)"}
    for atom, label in PID_ATOMS.items():
        v, se = values[atom]
        panels.append((names.get(atom, label),
                       heat_overlay(pair.image, maps[atom], lo=-bound, hi=bound, size=size, cmap="RdBu_r",
                                    alpha=0.75),
                       f"{v:.2f} ± {se:.2f} nats"))
    s = pair.settings
    lo, hi = s.logsnr_range
    est = "i^o" if estimator == "orthogonal" else "i^s"
    draws, verdict = _draws_note({"all": pair.n_samples}, s.n_samples,
                                 None if pair.target_met is None else {"i1, i2, i12": pair.target_met})
    return _panel_row(panels, height=2.7, fontsize=8,
                      title=f"“{pair.prompt}”: “{pair.word1}” + “{pair.word2}”, c = “{pair.conditions[0]}” "
                            f"({redundancy.upper()}, {est}, {draws} on [{lo:.1f}, {hi:.1f}]{verdict}; colour "
                            f"± {bound:.3g} nats per latent pixel)")
