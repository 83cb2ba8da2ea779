"""Word localization by thresholded heat maps (paper Table 3; docs/protocol.md#localization).

:func:`run_localization` computes, per (image, word) row, the CMI and MI maps, the Attention+Information map
(docs/protocol.md#attention-information) and, when ``daam_steps`` is given, the DAAM attention baseline (attention
along DDIM inversion + regeneration, docs/protocol.md#daam: :func:`~infodecomp.experiments.heatmaps.daam_maps`), all
on the latent grid, and stores them (float16) in a resumable :class:`~infodecomp.results.ResultStore`, sharded over
the processes of a launch by aligned batches.
:func:`localization_table` scores them in one streaming pass (:class:`~infodecomp.metrics.IoUSweep`, maps upsampled
bilinearly to the mask's size) with the threshold chosen on the evaluation set itself (faithful,
docs/protocol.md#b25) and on a held-out calibration split (corrected), next to the whole-image baseline (IoU = mask
fraction); :func:`miou_by` is the error analysis and :func:`threshold_curves` the IoU-vs-threshold curves.

Methods (:data:`METHODS`, the map names in the store): ``cmi``, ``mi``, ``daam`` ("Attention" of Table 3) and
``attn_info`` ("Attention+Information").

Data (:func:`load_dataset`): the ShapesWorld twin of a COCO table (exact masks), or the real COCO-IT /
COCO100-IT / COCO-WL / COCO10 rows of :mod:`infodecomp.data.coco` (fetch them with
``python -m infodecomp.data.download coco-tables coco-annotations2017 coco-val2017 --root DATA_DIR``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd
import torch

from ..checks import count
from ..data import coco
from ..data.shapes import twin
from ..metrics import IoUSweep, upsample_bilinear, whole_image_iou
from ..models.identity import model_identity
from ..results import ResultStore, run_sharded
from ..results.sharding import aligned_batch
from .heatmaps import (batch_generator, daam_maps, map_sampling, precision_columns, precision_settings,
                       protocol_settings, word_heatmaps)
from .stores import store_path

#: Map names a store can hold, in Table 3's order (CMI, MI, Attention = DAAM, Attention+Information).
METHODS = ("cmi", "mi", "daam", "attn_info")
#: Table 3's names of the methods (and of the whole-image baseline).
METHOD_LABELS = {"cmi": "CMI", "mi": "MI", "daam": "Attention (DAAM)", "attn_info": "Attention+Information",
                 "whole_image": "whole image"}
#: Table 3 of the paper (mIoU %, SD 2.1-base on COCO-IT, oracle thresholds) by number of steps
#: (docs/protocol.md#localization-expected).
PAPER_TABLE3 = {
    "whole_image": {50: 14.94, 100: 14.94, 200: 14.94},
    "daam": {50: 34.52, 100: 34.90, 200: 35.35},
    "cmi": {50: 32.31, 100: 33.24, 200: 33.63},
    "attn_info": {50: 42.46, 100: 42.71, 200: 42.84},
}
#: COCO datasets :func:`load_dataset` reads from ``data_dir``.
COCO_DATASETS = ("coco-it", "coco100-it", "coco-wl", "coco10")


def run_localization(model, dataset: Sequence[dict], store_dir: str | Path | None = None, *, n_samples: int = 32,
                     protocol: str = "corrected", mi_cond: str = "label", seed: int = 0, batch_size: int = 4,
                     indices: Sequence[int] | None = None, model_id: str | None = None,
                     attention: bool = True, attention_samples: int | None = None, daam_steps: int | None = None,
                     daam_guidance_scale: float | None = 1.0, dataset_name: str | None = None,
                     store_root: str | Path = "runs", target_stderr: float | None = None,
                     relative_stderr: float | None = None, block: int | None = None, sampling: str = "paper",
                     progress: bool = True, state=None, process_index: int | None = None,
                     num_processes: int | None = None) -> ResultStore:
    """Compute and store maps for ``dataset`` rows (all, or ``indices``); rows already stored are skipped.

    The store: ``store_dir``, or, when it is None, the folder :func:`~infodecomp.experiments.stores.store_path`
    names under ``store_root`` for the dataset ``dataset_name`` (then required), these settings, the seed and the
    model: ``<store_root>/<model>/localization/<dataset_name>-<protocol>-<hash>``.

    Each stored row: ``index``, ``id``, ``word_type``, ``mask_fraction``, ``cmi``/``mi`` float16 ``[h, w]`` maps,
    ``cmi_image``/``mi_image`` (nats); ``attn_info`` (float16 ``[h, w]``) when ``attention``, from
    ``attention_samples`` passes (default ``n_samples``); ``daam`` (float16 ``[h, w]``) when ``daam_steps`` is
    given: DDIM inversion + regeneration over ``daam_steps`` steps with guidance ``daam_guidance_scale`` (the
    paper: 50/100/200 steps, guidance 1), the image encoded as the protocol's other maps (posterior mean or
    sample), fed to the VAE in [−1, 1] and with every attention head kept (the reference did neither,
    docs/protocol.md#b10, docs/protocol.md#b11).

    Rows are computed in aligned batches of ``batch_size`` (batch ``b``: rows ``b·batch_size …``), each with the
    generator :func:`~infodecomp.experiments.heatmaps.batch_generator` ``(seed, b)``, so an interrupted run resumed
    with the same batch size gives the same maps (a partly stored batch is recomputed whole and only its missing
    rows are stored). Under a multi-process launch (``accelerate launch``; or ``state`` / ``process_index`` and
    ``num_processes``, see :func:`~infodecomp.results.run_sharded`) each process takes the aligned batches
    ``p, p + P, …``: the maps do not depend on the number of processes, and every process returns once all are
    done. The store's settings record ``attention_samples`` and the DAAM options only when they are used (not
    the defaults), so stores written before these options existed still resume.

    ``target_stderr`` (nats) / ``relative_stderr`` / ``block``: a precision target for the CMI and MI maps
    (corrected protocol only; ``n_samples`` is then the cap: :func:`~infodecomp.experiments.heatmaps.word_heatmaps`),
    recorded in the store's settings when given; each row then also keeps the draws each map used and whether it
    met the target (:data:`~infodecomp.experiments.heatmaps.PRECISION_COLUMNS`).

    ``sampling``: the maps' log-SNR draws, "paper", "fitted" or "auto" (corrected protocol: a stratified proposal
    fitted to the CMI map, :func:`~infodecomp.experiments.heatmaps.map_sampling`), recorded in the store's settings
    when fitted.
    """
    st = protocol_settings(protocol)
    n_samples = count(n_samples, "n_samples")
    batch_size = count(batch_size, "batch_size")
    precision = precision_settings(protocol, n_samples, target_stderr, relative_stderr, block)
    if daam_steps is not None:
        daam_steps = count(daam_steps, "daam_steps", hint="or None: no DAAM map")
    if attention_samples is not None:
        attention_samples = count(attention_samples, "attention_samples")
    settings = {"n_samples": int(n_samples), "protocol": protocol, "mi_cond": mi_cond, "batch_size": int(batch_size),
                "n_rows": len(dataset), "attention": bool(attention)}
    if attention and attention_samples is not None and int(attention_samples) != int(n_samples):
        settings["attention_samples"] = int(attention_samples)
    if daam_steps is not None:
        settings["daam_steps"] = int(daam_steps)
        settings["daam_guidance_scale"] = None if daam_guidance_scale is None else float(daam_guidance_scale)
    settings.update(precision)  # only under a target, so fixed-draw stores keep their identity
    proposal = map_sampling(model, dataset, sampling, protocol, dataset=dataset_name or "localization",
                            draws=precision["block"] if precision else n_samples, store_root=store_root, seed=seed)
    if proposal is not None:  # likewise a fitted sampling
        settings["sampling"] = proposal.to_dict()
    if store_dir is None:
        if not isinstance(dataset_name, str) or not dataset_name:
            raise ValueError("run_localization needs store_dir, or dataset_name (the dataset's name, e.g. 'coco-it') "
                             f"to name the store under store_root; got store_dir=None, dataset_name={dataset_name!r}")
        identity = {"experiment": "localization", "dataset": dataset_name, **settings}
        store_dir = store_path(store_root, model, "localization", dataset_name, identity, seed, protocol=protocol)
    store = ResultStore(store_dir, settings, model=model_identity(model), model_id=model_id, seed=seed)

    def fn_batch(given, todo):
        b, idx, rows = aligned_batch(dataset, todo, given, batch_size)
        return _localize(model, rows, idx, set(todo), st, generator=batch_generator(seed, b), n_samples=n_samples,
                         protocol=protocol, mi_cond=mi_cond, attention=attention,
                         attention_samples=attention_samples, daam_steps=daam_steps,
                         daam_guidance_scale=daam_guidance_scale, precision=precision, sampling=proposal)

    run_sharded(dataset, fn_batch, store, batch_size, state=state, process_index=process_index,
                num_processes=num_processes, with_indices=True, aligned=True, indices=indices, desc="localization",
                progress=progress)
    return store


def _localize(model, rows, idx, wanted, st, *, generator, n_samples, protocol, mi_cond, attention, attention_samples,
              daam_steps, daam_guidance_scale, precision=None, sampling=None) -> list[dict]:
    """The stored rows of the ``wanted`` indices of one aligned batch (``rows`` at the indices ``idx``), computed
    whole with the batch's ``generator`` (so a resumed or sharded run reproduces an uninterrupted one exactly)."""
    hm = word_heatmaps(model, rows, n_samples=n_samples, protocol=protocol, mi_cond=mi_cond, generator=generator,
                       attention=attention, attention_samples=attention_samples, sampling=sampling,
                       **(precision or {}))
    daam = None
    if daam_steps is not None:  # after the information maps, so their draws match a run without DAAM
        daam = daam_maps(model, [r["image"] for r in rows], [r["caption"] for r in rows],
                         [r["word"] for r in rows], steps=daam_steps, guidance_scale=daam_guidance_scale,
                         posterior=st["posterior"], generator=generator).word
    out = []
    for k, (i, r) in enumerate(zip(idx, rows)):
        if i not in wanted:
            continue
        row = {"id": r["id"], "word_type": r.get("word_type", ""),
               "mask_fraction": float(np.asarray(r["mask"]).mean()),
               "cmi": hm.cmi[k].detach().cpu().to(torch.float16),
               "mi": hm.mi[k].detach().cpu().to(torch.float16),
               "cmi_image": float(hm.cmi_image[k]), "mi_image": float(hm.mi_image[k]), **precision_columns(hm, k)}
        if attention:
            row["attn_info"] = hm.attention[k].detach().cpu().to(torch.float16)
        if daam is not None:
            row["daam"] = daam[k].detach().cpu().to(torch.float16)
        out.append(row)
    return out


def stored_methods(store: ResultStore) -> tuple[str, ...]:
    """The :data:`METHODS` whose maps ``store`` holds, in Table 3's order (from its settings, no rows read)."""
    st = store.settings
    have = {"cmi", "mi"} | ({"attn_info"} if st.get("attention", True) else set()) \
        | ({"daam"} if st.get("daam_steps") is not None else set())
    return tuple(m for m in METHODS if m in have)


def _methods(store: ResultStore, methods: Sequence[str] | None) -> tuple[str, ...]:
    have = stored_methods(store)
    if methods is None:
        return have
    methods = tuple(methods)
    missing = [m for m in methods if m not in have]
    if missing:
        hint = " (run_localization(..., daam_steps=N) stores it)" if "daam" in missing else ""
        raise ValueError(f"methods {missing} are not in the store {store.path}, which holds {list(have)}{hint}")
    return methods


def score_store(store: ResultStore, dataset: Sequence[dict], *, methods: Sequence[str] | None = None,
                thresholds=None) -> tuple[dict[str, IoUSweep], pd.DataFrame]:
    """One streaming pass: ``{method: IoUSweep}`` plus the per-row frame with a ``whole_image`` IoU column.

    ``methods``: map names to score (default: every method the store holds, :func:`stored_methods`)."""
    methods = _methods(store, methods)
    frame = store.to_frame().sort_values("index").reset_index(drop=True)
    sweeps = {m: IoUSweep(thresholds) for m in methods}
    whole = []
    for _, row in frame.iterrows():
        # np.array copies: a mask read through PIL is a read-only array
        mask = torch.from_numpy(np.array(dataset[int(row["index"])]["mask"], dtype=bool))
        for m in methods:
            sweeps[m].update(torch.as_tensor(np.asarray(row[m], dtype=np.float32))[None], mask[None],
                             ids=[row["id"]], upsample=True)
        whole.append(float(whole_image_iou(mask)[0]))
    frame = frame.assign(whole_image=whole)
    return sweeps, frame


def paper_steps(daam_steps: int | None) -> int:
    """The column of the paper's Table 3 to show beside a run with ``daam_steps`` DAAM steps: the same number where
    the paper has it (50, 100, 200), else 50 (the paper's first column; e.g. a short CI run, or no DAAM map)."""
    return daam_steps if daam_steps in (50, 100, 200) else 50


def table3_frame(table: pd.DataFrame, paper_steps: int = 50) -> pd.DataFrame:
    """Table 3 for reading beside the paper: :func:`localization_table`'s mIoU (in %, ± stderr) with the oracle
    (faithful) and held-out (corrected) thresholds, and the paper's mIoU at ``paper_steps`` (50, 100 or 200;
    "–" where the paper has no row, e.g. MI)."""
    if paper_steps not in (50, 100, 200):
        raise ValueError(f"the paper reports 50, 100 and 200 steps; got paper_steps={paper_steps!r}")
    pct = lambda v: f"{100 * v:.1f}" if np.isfinite(v) else "–"  # noqa: E731
    rows = []
    for method, r in table.iterrows():
        paper = PAPER_TABLE3.get(method, {}).get(paper_steps)
        rows.append({"method": r["label"],
                     "mIoU % (oracle τ)": f"{pct(r.miou_faithful)} ± {pct(r.stderr_faithful)}",
                     "mIoU % (held-out τ)": f"{pct(r.miou_corrected)} ± {pct(r.stderr_corrected)}",
                     "n": int(r["n"]),
                     f"paper % ({paper_steps} steps)": "–" if paper is None else f"{paper:.2f}"})
    return pd.DataFrame(rows).set_index("method")


def localization_table(store: ResultStore, dataset: Sequence[dict], *, methods: Sequence[str] | None = None,
                       calibration_fraction: float = 0.5, seed: int = 0) -> pd.DataFrame:
    """Table 3: one row per method (index: the map name; ``label``: Table 3's name), mIoU ± stderr with the
    faithful (oracle) and corrected (held-out) threshold. ``methods``: default every method the store holds.

    The whole-image baseline has no threshold; its corrected column is its mean over the same reported images.
    """
    sweeps, frame = score_store(store, dataset, methods=methods)
    out = []
    for m, sw in sweeps.items():
        f, c = sw.oracle(), sw.held_out(calibration_fraction=calibration_fraction, seed=seed)
        out.append({"method": m, "label": METHOD_LABELS[m],
                    "miou_faithful": f.miou, "stderr_faithful": f.stderr, "tau_faithful": f.threshold,
                    "miou_corrected": c.miou, "stderr_corrected": c.stderr, "tau_corrected": c.threshold,
                    "n": f.n, "n_reported_corrected": c.n})
    w = frame["whole_image"].to_numpy()
    n = len(w)
    k = int(round(calibration_fraction * n))
    report = np.ones(n, dtype=bool)
    report[np.random.default_rng(seed).permutation(n)[:k]] = False
    se = lambda v: float(v.std(ddof=1) / np.sqrt(len(v))) if len(v) > 1 else float("nan")  # noqa: E731
    out.append({"method": "whole_image", "label": METHOD_LABELS["whole_image"],
                "miou_faithful": float(w.mean()), "stderr_faithful": se(w), "tau_faithful": np.nan,
                "miou_corrected": float(w[report].mean()), "stderr_corrected": se(w[report]),
                "tau_corrected": np.nan, "n": n, "n_reported_corrected": int(report.sum())})
    return pd.DataFrame(out).set_index("method")


def size_terciles(mask_fraction) -> pd.Categorical:
    """``"small"`` / ``"medium"`` / ``"large"`` per row: the tercile of its mask fraction. When tied values make
    two tercile edges coincide (few rows, repeated fractions), the remaining two groups are ``"small"`` /
    ``"large"``; a single group (fewer than 3 distinct values) is ``"all"``."""
    values = pd.Series(np.asarray(mask_fraction, dtype=np.float64))
    if values.nunique() < 3:
        return pd.Categorical(["all"] * len(values), categories=["all"])
    codes = pd.qcut(values, 3, labels=False, duplicates="drop").to_numpy()
    names = {3: ["small", "medium", "large"], 2: ["small", "large"]}[int(np.nanmax(codes)) + 1]
    return pd.Categorical([names[int(c)] for c in codes], categories=names, ordered=True)


def miou_by(store: ResultStore, dataset: Sequence[dict], by: str = "word_type", *,
            methods: Sequence[str] | None = None) -> pd.DataFrame:
    """Error analysis: mean IoU ± stderr per group (``by`` a stored column, or ``"size"`` = mask-fraction tercile)
    at each method's oracle threshold, and the whole-image baseline."""
    sweeps, frame = score_store(store, dataset, methods=methods)
    cols = {}
    for m, sw in sweeps.items():
        cols[m] = sw.per_image[:, sw.oracle().threshold_index]
    cols["whole_image"] = frame["whole_image"].to_numpy()
    df = pd.DataFrame(cols)
    if by == "size":
        df["size"] = size_terciles(frame["mask_fraction"])
    else:
        df[by] = frame[by].to_numpy()
    g = df.groupby(by, observed=True)
    mean, sem, count = g.mean(), g.sem(), g.size()
    res = mean.add_suffix("_miou").join(sem.add_suffix("_stderr"))
    return res.assign(n=count)


def paired_differences(store: ResultStore, dataset: Sequence[dict],
                       pairs: Sequence[tuple[str, str]] = (("cmi", "whole_image"), ("attn_info", "daam"),
                                                           ("cmi", "mi"))) -> dict[str, dict]:
    """Paired comparisons of methods on the same rows: ``{"a_minus_b": {"value", "stderr", "n"}}`` of the
    per-row IoU of ``a`` minus that of ``b``, each method at its own oracle threshold (the faithful selection;
    ``"whole_image"`` has none), and the standard error of the mean difference over rows. Pairs whose
    methods the store lacks are left out."""
    have = set(stored_methods(store)) | {"whole_image"}
    wanted = [(a, b) for a, b in pairs if a in have and b in have]
    methods = sorted({m for p in wanted for m in p} - {"whole_image"})
    sweeps, frame = score_store(store, dataset, methods=methods)
    per = {m: sw.per_image[:, sw.oracle().threshold_index] for m, sw in sweeps.items()}
    per["whole_image"] = frame["whole_image"].to_numpy()
    out = {}
    for a, b in wanted:
        d = per[a] - per[b]
        out[f"{a}_minus_{b}"] = {"value": float(d.mean()), "stderr": float(d.std(ddof=1) / np.sqrt(len(d))),
                                 "n": int(len(d))}
    return out


def mass_inside(store: ResultStore, dataset: Sequence[dict], methods: Sequence[str] = ("cmi", "mi")) -> pd.DataFrame:
    """How object-focused each map is: per row, the fraction of the map's mass (clamped at 0, upsampled
    bilinearly to the mask) that lies inside the word's mask, one column per method, plus ``area`` (the mask's
    area fraction, what a map spread evenly would get). Rows of the store, in index order."""
    methods = _methods(store, methods)
    frame = store.to_frame().sort_values("index").reset_index(drop=True)
    rows = []
    for _, row in frame.iterrows():
        mask = torch.from_numpy(np.array(dataset[int(row["index"])]["mask"], dtype=bool))
        out = {"index": int(row["index"]), "area": float(mask.double().mean())}
        for m in methods:
            v = upsample_bilinear(torch.as_tensor(np.asarray(row[m], dtype=np.float32)), tuple(mask.shape))
            v = v.clamp_min(0)
            total = float(v.sum())
            out[m] = float(v[mask].sum()) / total if total > 0 else float("nan")
        rows.append(out)
    return pd.DataFrame(rows)


def threshold_curves(store: ResultStore, dataset: Sequence[dict], *,
                     methods: Sequence[str] | None = None) -> pd.DataFrame:
    """IoU-vs-threshold curves (the reference's ``iou_curves`` plots): one row per (method, threshold) with
    ``miou`` and ``stderr`` over all rows, and ``oracle`` True at each method's faithful threshold."""
    sweeps, _ = score_store(store, dataset, methods=methods)
    parts = []
    for m, sw in sweeps.items():
        tau, miou, se = sw.curve()
        parts.append(pd.DataFrame({"method": m, "threshold": tau, "miou": miou, "stderr": se,
                                   "oracle": np.arange(len(tau)) == sw.oracle().threshold_index}))
    return pd.concat(parts, ignore_index=True)


def load_dataset(name: str, n: int | None, *, seed: int = 0, data_dir: str | Path | None = None,
                 **coco_options) -> Sequence[dict]:
    """Localization-format rows (``id``, ``image``, ``mask``, ``caption``, ``word``, ``label``, ``context``,
    ``context_``, ``word_type``), as :func:`run_localization` consumes them.

    ``data_dir`` None: the ShapesWorld twin of ``name`` ("coco-it", "coco-wl", "coco100-it"), ``n`` rows drawn
    with ``seed`` (exact masks).

    ``data_dir`` given: the real COCO rows of :func:`infodecomp.data.coco.dataset` (``name`` one of
    :data:`COCO_DATASETS`; ``data_dir`` the download root or its ``coco/`` folder; ``coco_options`` go to
    :class:`~infodecomp.data.coco.CocoLocalization`, e.g. ``size``, ``context="whole-word"``). ``n`` None or
    at least the table's length: every row, in table order (the paper: all 6,927 COCO-IT rows); smaller: ``n``
    rows drawn without replacement by ``numpy.random.default_rng(seed)``, kept in table order (their ids are
    their rows in the full table). Rows also carry ``image_id`` and ``mask_valid``: COCO-WL words that are not
    COCO categories ("run", "two", …) get an all-False mask with ``mask_valid=False`` (the reference unioned
    every object instead, docs/protocol.md#b24), so only COCO-IT and COCO100-IT give meaningful localization scores.
    Missing files raise ``FileNotFoundError`` naming the ``python -m infodecomp.data.download`` command.
    """
    if n is not None:
        n = count(n, "n", hint="or None: all rows")
    if data_dir is None:
        if n is None:
            raise ValueError("a ShapesWorld twin needs a number of rows n (n=None means all rows of a real table)")
        if coco_options:
            raise TypeError(f"options {sorted(coco_options)} apply to real COCO data only (data_dir=None here)")
        return twin(name, n, seed)
    if name not in COCO_DATASETS:
        raise ValueError(f"unknown COCO localization dataset {name!r}; expected one of {list(COCO_DATASETS)} "
                         "(with data_dir=None: the ShapesWorld twins 'coco-it', 'coco-wl', 'coco100-it')")
    root = Path(data_dir)
    if not root.is_dir():
        raise FileNotFoundError(f"data_dir {str(data_dir)!r} is not a folder; fetch the COCO data with `python -m "
                                f"infodecomp.data.download coco-tables coco-annotations2017 coco-val2017 --root "
                                f"{data_dir}` (or pass data_dir=None for the ShapesWorld twin)")
    full = coco.dataset(name, root, **coco_options)
    if n is None or n >= len(full):
        return full
    pick = np.sort(np.random.default_rng(seed).choice(len(full), size=int(n), replace=False))
    table = "coco100-it" if name == "coco10" else name
    return coco.CocoLocalization(table, root, indices=[full.indices[int(k)] for k in pick], **coco_options)
