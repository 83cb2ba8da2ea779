"""Relation testing's tables (paper Sec. 3.1, Tables 1 and 2): the per-example frame built from the stored scores,
the accuracy of every aggregate with its interval, paired method comparisons, Table 1 beside the paper's rows and
the per-relation table. Pure: no model, no store writes (:mod:`~infodecomp.experiments.relation_testing` scores the
rows and re-exports everything here).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from scipy.stats import binomtest

from ..metrics import TIE_POLICIES, bootstrap, retrieval_accuracy, retrieval_outcomes
from .relation_data import ARO_DATASETS

#: Scoring methods, all computed from the same denoiser evaluations: i^o, i^s, and the denoising error (−MMSE).
METHODS = ("info_o", "info_s", "mmse")
METHOD_LABELS = {"info_o": "Info i^o (the paper's score)", "info_s": "Info i^s", "mmse": "−MMSE (DiffITM)"}
#: The aggregate Table 1 shows per dataset (ARO's convention, docs/protocol.md#relation-testing-aggregation): VG-R macro
#: over relations without the symmetric ones, VG-A macro over attribute pairs, the order sets micro (Precision@1).
ARO_AGGREGATION = {"vg-relation": "macro_filtered", "vg-attribution": "macro", "coco-order": "micro",
                   "flickr-order": "micro"}


def _check_method(method: str) -> str:
    if method not in METHODS:
        raise ValueError(f"unknown method {method!r}; expected one of {METHODS}")
    return method


# ───────────────────────────────────────────── per-example table ─────────────────────────────────────────────

def example_frame(raw, *, tie_policy: str = "against_true", dataset: str | None = None,
                  settings: Mapping | None = None):
    """Per-example table from the scored rows: for each method in :data:`METHODS`, ``pred_<m>`` (argmax, lowest
    index on ties), ``correct_<m>`` (under ``tie_policy``; NaN if the policy excludes it), ``tied_<m>`` (the true
    caption shares the top score), ``margin_<m>`` ± ``margin_<m>_se`` (true minus best rival; > 0 = right).

    raw: a DataFrame or list of dicts as :func:`score_rows` returns / the store holds. The frame's ``attrs`` keep
    ``tie_policy``, ``dataset`` and ``settings``.
    """
    if tie_policy not in TIE_POLICIES:
        raise ValueError(f"tie_policy must be one of {TIE_POLICIES}, got {tie_policy!r}")
    frame = raw.copy() if isinstance(raw, pd.DataFrame) else pd.DataFrame(list(raw))
    need = {"true_index", "group", "info_o", "info_s", "mmse"}
    if not need <= set(frame.columns):
        raise ValueError(f"scored rows need the columns {sorted(need)}; got {list(frame.columns)}")
    if dataset is not None:
        frame.insert(0, "dataset", dataset)
    n = len(frame)
    for m in METHODS:
        pred = np.zeros(n, dtype=np.int64)
        correct = np.full(n, np.nan)
        tied = np.zeros(n, dtype=bool)
        sizes = frame["info_o"].map(len).to_numpy() if n else np.zeros(0, dtype=np.int64)
        for size in np.unique(sizes):  # examples with the same number of candidates together
            sel = np.flatnonzero(sizes == size)
            col = "mmse" if m == "mmse" else m
            s = np.array([frame[col].iloc[i] for i in sel], dtype=np.float64)
            s = -s if m == "mmse" else s
            if "adaptive_method" in frame.columns:  # the test's decision: only its survivors can win
                for row_i, i in enumerate(sel):
                    if frame["adaptive_method"].iloc[i] == m:
                        below = s[row_i].min() - 1.0 - (s[row_i].max() - s[row_i].min())  # under every survivor
                        s[row_i] = np.where(np.asarray(frame["survivors"].iloc[i], dtype=bool), s[row_i], below)
            out = retrieval_outcomes(s, frame["true_index"].to_numpy()[sel], tie_policy=tie_policy)
            pred[sel], correct[sel], tied[sel] = out.prediction, out.correct, out.tied
        frame[f"pred_{m}"] = pred
        frame[f"correct_{m}"] = correct
        frame[f"tied_{m}"] = tied
    frame.attrs.update(tie_policy=tie_policy, dataset=dataset, settings=dict(settings or {}))
    return frame


# ─────────────────────────────────────────────── the tables ───────────────────────────────────────────────

@dataclass(frozen=True, eq=False)
class RelationTables:
    """Accuracy tables of one dataset (all methods), with confidence intervals (:mod:`infodecomp.metrics`)."""

    summary: Any     # DataFrame: method, aggregate (micro | macro | macro_filtered), accuracy, ci_low, ci_high,
    #                  n (examples for micro, groups for the macros), n_ties, ci_method
    per_group: Any   # DataFrame: group, method, n, n_correct, accuracy, ci_low, ci_high, n_ties
    accuracy: dict   # method → metrics.RetrievalAccuracy
    tie_policy: str
    excluded_groups: tuple  # groups dropped from macro_filtered (those present in the data)

    def value(self, method: str, aggregate: str) -> dict:
        """One row of the summary as a dict (accuracy, ci_low, ci_high, n, n_ties)."""
        sel = self.summary[(self.summary["method"] == method) & (self.summary["aggregate"] == aggregate)]
        if len(sel) != 1:
            raise KeyError(f"no summary row for method {method!r}, aggregate {aggregate!r}; aggregates: "
                           f"{sorted(set(self.summary['aggregate']))}")
        return sel.iloc[0].to_dict()


def accuracy_tables(frame, *, methods: Sequence[str] = METHODS, tie_policy: str | None = None,
                    exclude_groups: Iterable[str] | None = None, min_group_size: int = 1, confidence: float = 0.95,
                    n_bootstrap: int = 2000, seed: int = 0) -> RelationTables:
    """Micro, macro and filtered-macro accuracy per method, and accuracy per group (Table 1, Table 2).

    frame: the per-example table (:func:`run` / :func:`example_frame`). tie_policy: default the frame's
    (``frame.attrs``), else "against_true". exclude_groups: groups (e.g. ARO's symmetric VG-R relations — supply
    the set yourself) left out of ``macro_filtered``; without it the filtered macro equals the plain macro.
    min_group_size: groups with fewer examples are dropped from every number (the reference keeps VG-A pairs
    with ≥ 25). Intervals: Wilson for micro and per group; stratified bootstrap for the macros.
    """
    tie_policy = tie_policy or frame.attrs.get("tie_policy") or "against_true"
    exclude = None if exclude_groups is None else {str(g) for g in exclude_groups}
    if len(frame) == 0:
        raise ValueError("the per-example table is empty")
    summary, per_group, acc = [], [], {}
    groups = frame["group"].astype(str).tolist()
    for m in methods:
        _check_method(m)
        col = "mmse" if m == "mmse" else m
        sizes = frame[col].map(len)
        if sizes.nunique() != 1:
            raise ValueError(f"accuracy_tables needs one number of candidates per dataset; got {sorted(set(sizes))}")
        s = np.array(frame[col].tolist(), dtype=np.float64)
        s = -s if m == "mmse" else s
        a = retrieval_accuracy(s, frame["true_index"].to_numpy(), groups, tie_policy=tie_policy,
                               exclude_groups=exclude if exclude is not None else (), min_group_size=min_group_size,
                               confidence=confidence, n_bootstrap=n_bootstrap, seed=seed)
        acc[m] = a
        for agg, est in (("micro", a.micro), ("macro", a.macro), ("macro_filtered", a.macro_filtered)):
            if est is None:
                continue
            summary.append({"method": m, "aggregate": agg, "accuracy": est.value, "ci_low": est.ci_low,
                            "ci_high": est.ci_high, "n": est.n, "n_ties": a.n_ties, "ci_method": est.method})
        per_group.append(a.per_group.assign(method=m))
    pg = pd.concat(per_group, ignore_index=True)[["group", "method", "n", "n_correct", "accuracy", "ci_low",
                                                    "ci_high", "n_ties"]]
    excluded = acc[methods[0]].excluded_groups if methods else ()
    return RelationTables(summary=pd.DataFrame(summary), per_group=pg, accuracy=acc, tie_policy=tie_policy,
                          excluded_groups=tuple(excluded))


def min_group_size(dataset: str, data_dir: str | Path | None) -> int:
    """The smallest group :func:`accuracy_tables` keeps for ``dataset``: 25 for VG-Attribution's attribute pairs on
    the real data (``data_dir`` given; ARO keeps the pairs with ≥ 25 examples,
    docs/protocol.md#relation-testing-aggregation), else 1: every group (the ShapesWorld twins have a few groups, all
    of them kept)."""
    return 25 if dataset == "vg-attribution" and data_dir is not None else 1


def add_scores(frame, name: str, scores) -> pd.DataFrame:
    """The per-example table with an external scorer's outcomes as one more method: ``pred_<name>``,
    ``correct_<name>`` and ``tied_<name>``, under the frame's tie policy, so that :func:`compare_methods` pairs it
    with i^o, i^s or −MMSE on the same examples (e.g. the CLIP whose text encoder the model shares,
    :mod:`~infodecomp.experiments.clip_baseline`).

    frame: the per-example table (:func:`run` / :func:`example_frame`) of ``N`` examples. name: the new method's
    name (not one of :data:`METHODS`, e.g. "clip"). scores: ``[N, M]`` one score per candidate caption, higher =
    better (e.g. cosine similarity), row ``i`` for the dataset's row ``i`` (the frame's ``index`` column, when it
    has one, says which row each example is). Returns a copy; raises ``ValueError`` on a shape that does not fit.
    """
    if not isinstance(name, str) or not name.isidentifier() or name in METHODS:
        raise ValueError(f"name must be an identifier other than {METHODS}; got {name!r}")
    s = np.asarray(scores, dtype=np.float64)
    n = len(frame)
    if s.ndim != 2 or s.shape[0] != n:
        raise ValueError(f"scores must be [N, M] with N = {n} (the frame's examples); got shape {s.shape}")
    order = np.arange(n)
    if "index" in frame.columns:
        order = frame["index"].to_numpy(np.int64)
        if sorted(order.tolist()) != list(range(n)):
            raise ValueError(f"the frame's index column is not a permutation of 0..{n - 1}: the scores' rows cannot "
                             "be matched to its examples")
    sizes = frame["info_o"].map(len).to_numpy() if n else np.zeros(0, dtype=np.int64)
    if n and np.any(sizes != s.shape[1]):
        raise ValueError(f"scores have {s.shape[1]} candidates per example; the frame's examples have "
                         f"{sorted(set(sizes.tolist()))}")
    tie_policy = frame.attrs.get("tie_policy") or "against_true"
    out = retrieval_outcomes(s[order], frame["true_index"].to_numpy(), tie_policy=tie_policy)
    f = frame.copy()
    f[f"pred_{name}"], f[f"correct_{name}"], f[f"tied_{name}"] = out.prediction, out.correct, out.tied
    return f


def compare_methods(frame, a: str = "info_o", b: str = "mmse", *, groups: Iterable[str] | None = None,
                    exclude_groups: Iterable[str] | None = None, n_bootstrap: int = 2000, seed: int = 0,
                    confidence: float = 0.95) -> dict:
    """Paired comparison of two methods on the same examples: accuracy difference a − b (micro) with a
    percentile bootstrap interval over examples, and McNemar's exact test on the discordant examples.

    a, b: names of :data:`METHODS`, or of an external scorer added by :func:`add_scores`.
    groups: restrict to these groups (e.g. the VG-R relations kept after the symmetric filter); exclude_groups:
    leave these out (the table's filter, e.g. ARO's symmetric relations).
    Returns ``{"a", "b", "n", "acc_a", "acc_b", "diff", "stderr", "ci_low", "ci_high", "a_only", "b_only",
    "p_mcnemar"}`` (stderr: the bootstrap standard deviation of the difference)
    (a_only = examples a gets right and b wrong; ties scored by the frame's tie policy).
    """
    for m in (a, b):
        if m not in METHODS and f"correct_{m}" not in frame.columns:
            raise ValueError(f"unknown method {m!r}; expected one of {METHODS} or a scorer added by add_scores "
                             f"(columns correct_*: {sorted(c[8:] for c in frame.columns if c.startswith('correct_'))})")
    f = frame if groups is None else frame[frame["group"].astype(str).isin({str(g) for g in groups})]
    if exclude_groups is not None:
        f = f[~f["group"].astype(str).isin({str(g) for g in exclude_groups})]
    ca, cb = f[f"correct_{a}"].to_numpy(np.float64), f[f"correct_{b}"].to_numpy(np.float64)
    keep = ~(np.isnan(ca) | np.isnan(cb))
    ca, cb = ca[keep], cb[keep]
    n = len(ca)
    if n < 2:
        raise ValueError(f"need at least 2 examples to compare methods, got {n}")
    d = ca - cb
    boot = bootstrap(lambda idx: float(d[idx].mean()), n, protocol="corrected", n_resamples=n_bootstrap, seed=seed,
                     confidence=confidence)
    a_only, b_only = float(np.clip(d, 0, None).sum()), float(np.clip(-d, 0, None).sum())
    k, m = int(round(a_only)), int(round(a_only + b_only))
    p = float(binomtest(k, m, 0.5).pvalue) if m > 0 else 1.0
    return {"a": a, "b": b, "n": n, "acc_a": float(ca.mean()), "acc_b": float(cb.mean()), "diff": float(d.mean()),
            "stderr": boot.std, "ci_low": boot.ci_low, "ci_high": boot.ci_high, "a_only": a_only, "b_only": b_only,
            "p_mcnemar": p}


#: Table 1 of the paper (accuracy, fractions): Stable Diffusion 2.1-base with the logistic rule, and the baselines
#: it copies from their papers (docs/protocol.md#relation-testing-expected). No intervals were published.
PAPER_TABLE1 = {
    "paper: Info (SD 2.1-base)": {"vg-attribution": 0.720, "vg-relation": 0.691, "coco-order": 0.401,
                                  "flickr-order": 0.493},
    "paper: DiffITM (SD 2.1)": {"vg-attribution": 0.629, "vg-relation": 0.500, "coco-order": 0.235,
                                "flickr-order": 0.332},
    "paper: HardNeg-DiffITM": {"vg-attribution": 0.676, "vg-relation": 0.523, "coco-order": 0.344,
                               "flickr-order": 0.486},
    "paper: OpenCLIP ViT-H/14": {"vg-attribution": 0.646, "vg-relation": 0.514, "coco-order": 0.328,
                                 "flickr-order": 0.405},
}


def paper_rows(datasets: Iterable[str] | None = None) -> dict[str, dict[str, tuple]]:
    """The paper's Table 1 as ``extra_rows`` for :func:`table1`: label → {dataset: (acc, nan, nan)}."""
    keep = set(ARO_DATASETS if datasets is None else datasets)
    return {label: {d: (acc, math.nan, math.nan) for d, acc in row.items() if d in keep}
            for label, row in PAPER_TABLE1.items()}


def _fmt(acc: float, lo: float, hi: float) -> str:
    if math.isnan(acc):
        return "–"
    if math.isnan(lo) or math.isnan(hi):
        return f"{100 * acc:.1f}"
    return f"{100 * acc:.1f} [{100 * lo:.1f}, {100 * hi:.1f}]"


def table1(tables: Mapping[str, RelationTables], *, aggregation: Mapping[str, str] | None = None,
           methods: Sequence[str] = METHODS, extra_rows: Mapping[str, Mapping[str, tuple]] | None = None):
    """Table 1: accuracy (%) per method (rows) and dataset (columns), as ``"acc [lo, hi]"`` strings, plus the
    long table behind it.

    tables: dataset → :class:`RelationTables`. aggregation: dataset → "micro" | "macro" | "macro_filtered"
    (default :data:`ARO_AGGREGATION`; "micro" for other names; "macro_filtered" falls back to "macro" when no
    exclusion set was given). extra_rows: label → {dataset: (acc, ci_low, ci_high)} for rows computed elsewhere
    (e.g. OpenCLIP). Returns ``(wide, long)`` DataFrames; ``long`` has method (label), method_key (a name of
    :data:`METHODS`, None for extra rows), dataset, aggregate, accuracy, ci_low, ci_high, n (fractions, not %).
    """
    aggregation = dict(ARO_AGGREGATION if aggregation is None else aggregation)
    long = []
    for ds, t in tables.items():
        agg = aggregation.get(ds, "micro")
        have = set(t.summary["aggregate"])
        if agg not in have:
            agg = "macro" if agg == "macro_filtered" and "macro" in have else "micro"
        for m in methods:
            row = t.value(m, agg)
            long.append({"method": METHOD_LABELS[m], "method_key": m, "dataset": ds, "aggregate": agg,
                         "accuracy": row["accuracy"],
                         "ci_low": row["ci_low"], "ci_high": row["ci_high"], "n": row["n"]})
    for label, per_ds in (extra_rows or {}).items():
        for ds, (acc, lo, hi) in per_ds.items():
            long.append({"method": label, "method_key": None, "dataset": ds, "aggregate": aggregation.get(ds, "micro"),
                         "accuracy": acc, "ci_low": lo, "ci_high": hi, "n": math.nan})
    long = pd.DataFrame(long)
    order = [d for d in ARO_DATASETS if d in set(long["dataset"])] + [d for d in dict.fromkeys(long["dataset"])
                                                                   if d not in ARO_DATASETS]
    wide = (long.assign(cell=[_fmt(a, l, h) for a, l, h in zip(long["accuracy"], long["ci_low"], long["ci_high"])])
            .pivot(index="method", columns="dataset", values="cell")
            .reindex(columns=order))
    wide = wide.reindex(list(dict.fromkeys(long["method"])))
    wide.columns.name = None
    return wide, long


def group_table(tables: RelationTables, *, method: str = "info_o", baseline: str = "mmse", threshold: float = 0.30,
                relative: bool = False, min_n: int = 1):
    """Table 2: per group (relation or attribute pair) the accuracy of ``method`` and ``baseline`` with Wilson
    intervals, the change, and the paper's highlighting: ``"▲"`` (green) when the method beats the baseline by more
    than ``threshold``, ``"▼"`` (magenta) when it is worse by more than that.

    relative: False (default) = ``threshold`` in absolute accuracy (0.30 = 30 percentage points); True = relative to
    the baseline's accuracy (undefined, so never highlighted, where the baseline is 0). Whether the paper meant
    relative or absolute is unknown (docs/protocol.md#relation-types). min_n: drop groups with fewer examples.
    Returns a DataFrame sorted by the change (largest gain first).
    """
    if threshold < 0:
        raise ValueError(f"threshold must be >= 0, got {threshold}")
    pg = tables.per_group
    a = pg[pg["method"] == method].set_index("group")
    b = pg[pg["method"] == baseline].set_index("group")
    if a.empty or b.empty:
        raise ValueError(f"no per-group rows for {method!r} or {baseline!r}; methods present: "
                         f"{sorted(set(pg['method']))}")
    out = pd.DataFrame({"n": a["n"], f"acc_{method}": a["accuracy"], f"ci_low_{method}": a["ci_low"],
                        f"ci_high_{method}": a["ci_high"], f"acc_{baseline}": b["accuracy"],
                        f"ci_low_{baseline}": b["ci_low"], f"ci_high_{baseline}": b["ci_high"]})
    out = out[out["n"] >= min_n]
    change = out[f"acc_{method}"] - out[f"acc_{baseline}"]
    if relative:
        base = out[f"acc_{baseline}"]
        change = (change / base).where(base > 0)
    out["change"] = change
    out["highlight"] = np.where(change > threshold, "▲", np.where(change < -threshold, "▼", ""))
    out.index.name = "group"
    return out.sort_values("change", ascending=False, na_position="last").reset_index()
