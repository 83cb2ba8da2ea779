"""Display only: figures from arrays, tables and result objects (DESIGN.md §4.12). Never runs a model.

Every function returns a matplotlib ``Figure``; :func:`save_figure` writes it under ``figures/<model>/``.
Error bars are ±2 standard errors unless said otherwise. Information is in nats.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import matplotlib
import matplotlib.pyplot as plt
import numpy as np

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
    :func:`infodecomp.analytic.convergence_study`).
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
    :func:`infodecomp.analytic.variance_study` (columns rule, noise, estimator and ``value``)."""
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
