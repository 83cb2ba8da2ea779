"""Word localization by thresholded heat maps (paper Table 3; PROTOCOL §5).

:func:`run_localization` computes, per (image, word) row, the CMI map and the Attention+Information map on the
latent grid and stores them (float16) in a resumable :class:`~infodecomp.results.ResultStore`;
:func:`localization_table` scores them in one streaming pass (:class:`~infodecomp.metrics.IoUSweep`, maps
upsampled bilinearly to the mask's size) with the threshold chosen on the evaluation set itself (faithful,
B25) and on a held-out calibration split (corrected), next to the whole-image baseline (IoU = mask fraction).

Not implemented here: DAAM attention collected along DDIM inversion + regeneration (PROTOCOL §5.2).
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd
import torch
from tqdm.auto import tqdm

from ..metrics import IoUSweep, whole_image_iou
from ..results import ResultStore, example_seed
from .heatmaps import protocol_settings, word_heatmaps

METHODS = ("cmi", "mi", "attn_info")


def run_localization(model, dataset: Sequence[dict], store_dir: str | Path, *, n_samples: int = 32,
                     protocol: str = "corrected", mi_cond: str = "label", seed: int = 0, batch_size: int = 4,
                     indices: Sequence[int] | None = None, model_id: str | None = None,
                     attention: bool = True) -> ResultStore:
    """Compute and store maps for ``dataset`` rows (all, or ``indices``); rows already stored are skipped.

    Each stored row: ``index``, ``id``, ``word_type``, ``cmi``/``mi``/``attn_info`` float16 ``[h, w]`` maps,
    ``cmi_image``/``mi_image`` (nats). Each batch uses a generator seeded from ``(seed, first index)``, so an
    interrupted run resumed with the same batch size gives the same maps (a partly stored batch is recomputed
    whole and only its missing rows are stored).
    """
    protocol_settings(protocol)
    settings = {"n_samples": int(n_samples), "protocol": protocol, "mi_cond": mi_cond, "batch_size": int(batch_size),
                "n_rows": len(dataset), "attention": bool(attention)}
    store = ResultStore(store_dir, settings, model_id=model_id or getattr(model, "name", None), seed=seed)
    done = store.done_indices()
    todo = [i for i in (range(len(dataset)) if indices is None else indices) if i not in done]
    # batches aligned to multiples of batch_size so resumed runs see the same batches
    batches: dict[int, list[int]] = {}
    for i in todo:
        batches.setdefault(i // batch_size, []).append(i)
    for b, wanted in tqdm(sorted(batches.items()), desc="localization", leave=False):
        # always compute the whole aligned batch (same rows, same generator) so a resumed run reproduces the
        # maps of an uninterrupted one exactly; store only the wanted rows
        idx = list(range(b * batch_size, min((b + 1) * batch_size, len(dataset))))
        rows = [dataset[i] for i in idx]
        gen = torch.Generator().manual_seed(example_seed(seed, b))
        hm = word_heatmaps(model, rows, n_samples=n_samples, protocol=protocol, mi_cond=mi_cond, generator=gen,
                          attention=attention)
        out = []
        for k, (i, r) in enumerate(zip(idx, rows)):
            if i not in wanted:
                continue
            row = {"index": i, "id": r["id"], "word_type": r.get("word_type", ""),
                   "mask_fraction": float(np.asarray(r["mask"]).mean()),
                   "cmi": hm.cmi[k].detach().cpu().to(torch.float16),
                   "mi": hm.mi[k].detach().cpu().to(torch.float16),
                   "cmi_image": float(hm.cmi_image[k]), "mi_image": float(hm.mi_image[k])}
            if attention:
                row["attn_info"] = hm.attention[k].detach().cpu().to(torch.float16)
            out.append(row)
        store.append(out)
    return store


def score_store(store: ResultStore, dataset: Sequence[dict], *, methods: Sequence[str] = METHODS,
                thresholds=None) -> tuple[dict[str, IoUSweep], pd.DataFrame]:
    """One streaming pass: ``{method: IoUSweep}`` plus the per-row frame with a ``whole_image`` IoU column."""
    frame = store.to_frame().sort_values("index").reset_index(drop=True)
    sweeps = {m: IoUSweep(thresholds) for m in methods}
    whole = []
    for _, row in frame.iterrows():
        mask = torch.as_tensor(np.asarray(dataset[int(row["index"])]["mask"], dtype=bool))
        for m in methods:
            sweeps[m].update(torch.as_tensor(np.asarray(row[m], dtype=np.float32))[None], mask[None],
                             ids=[row["id"]], upsample=True)
        whole.append(float(whole_image_iou(mask)[0]))
    frame = frame.assign(whole_image=whole)
    return sweeps, frame


def localization_table(store: ResultStore, dataset: Sequence[dict], *, methods: Sequence[str] = METHODS,
                       calibration_fraction: float = 0.5, seed: int = 0) -> pd.DataFrame:
    """Table 3: one row per method, mIoU ± stderr with the faithful (oracle) and corrected (held-out) threshold.

    The whole-image baseline has no threshold; its corrected column is its mean over the same reported images.
    """
    sweeps, frame = score_store(store, dataset, methods=methods)
    out = []
    for m, sw in sweeps.items():
        f, c = sw.oracle(), sw.held_out(calibration_fraction=calibration_fraction, seed=seed)
        out.append({"method": m, "miou_faithful": f.miou, "stderr_faithful": f.stderr, "tau_faithful": f.threshold,
                    "miou_corrected": c.miou, "stderr_corrected": c.stderr, "tau_corrected": c.threshold,
                    "n": f.n, "n_reported_corrected": c.n})
    w = frame["whole_image"].to_numpy()
    n = len(w)
    k = int(round(calibration_fraction * n))
    report = np.ones(n, dtype=bool)
    report[np.random.default_rng(seed).permutation(n)[:k]] = False
    se = lambda v: float(v.std(ddof=1) / np.sqrt(len(v))) if len(v) > 1 else float("nan")  # noqa: E731
    out.append({"method": "whole_image", "miou_faithful": float(w.mean()), "stderr_faithful": se(w),
                "tau_faithful": np.nan, "miou_corrected": float(w[report].mean()), "stderr_corrected": se(w[report]),
                "tau_corrected": np.nan, "n": n, "n_reported_corrected": int(report.sum())})
    return pd.DataFrame(out).set_index("method")


def miou_by(store: ResultStore, dataset: Sequence[dict], by: str = "word_type", *,
            methods: Sequence[str] = METHODS) -> pd.DataFrame:
    """Error analysis: mean IoU ± stderr per group (``by`` a stored column, or ``"size"`` = mask-fraction tercile)
    at each method's oracle threshold, and the whole-image baseline."""
    sweeps, frame = score_store(store, dataset, methods=methods)
    cols = {}
    for m, sw in sweeps.items():
        cols[m] = sw.per_image[:, sw.oracle().threshold_index]
    cols["whole_image"] = frame["whole_image"].to_numpy()
    df = pd.DataFrame(cols)
    if by == "size":
        df["size"] = pd.qcut(frame["mask_fraction"], 3, labels=["small", "medium", "large"], duplicates="drop") \
            if frame["mask_fraction"].nunique() >= 3 else "all"
    else:
        df[by] = frame[by].to_numpy()
    g = df.groupby(by, observed=True)
    mean, sem, count = g.mean(), g.sem(), g.size()
    res = mean.add_suffix("_miou").join(sem.add_suffix("_stderr"))
    return res.assign(n=count)


def load_dataset(name: str, n: int, *, seed: int = 0, data_dir: str | None = None) -> Sequence[dict]:
    """Localization-format rows: the ShapesWorld twin of ``name`` ("coco-it", "coco-wl", "coco100-it") when
    ``data_dir`` is None. Real COCO (``data_dir`` given) needs ``infodecomp.data.coco``, not available yet."""
    if data_dir is None:
        from ..data.shapes import twin

        return twin(name, n, seed)
    raise NotImplementedError(f"real COCO data ({name!r} from {data_dir!r}) needs infodecomp.data.coco, which does "
                              "not exist yet; use DATA_DIR=None for the ShapesWorld twin")
