"""Image-level information (App. C.1) and the denoising process (App. C.2).

C.1: per (image, word) row, the image-level MI i^o(x; y*) and CMI i^o(x; y*|c) (sums of the pixel maps of
:func:`~infodecomp.experiments.heatmaps.word_heatmaps`, nats; :func:`run` computes them into the resumable,
shardable store of :func:`~infodecomp.experiments.heatmaps.run_heatmaps`), their Pearson correlation with a
bootstrap interval, overall and by word type.
C.2: for one row, the per-log-SNR MMSE curves of the caption and of the context, the i^s and i^o integrands
(MMSE gap, ||ε̂(z|y) − ε̂(z|c)||²) with their pixel maps on a log-SNR grid, and the decoded noisy latents.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd
import torch
from torch import Tensor

from ..estimators import mmse_curve
from ..metrics import pearson_bootstrap
from .heatmaps import PRECISION_COLUMNS, protocol_settings, run_heatmaps


def run(model, datasets: Mapping[str, Sequence[Mapping]], **options) -> pd.DataFrame:
    """App. C.1's values: the image-level MI and CMI (nats) of every row of each dataset (``{name: rows}``),
    from the maps of :func:`~infodecomp.experiments.heatmaps.run_heatmaps` without attention (one resumable store
    per dataset, sharded over the processes of a launch; ``options``: its ``n_samples``, ``protocol``, ``seed``,
    ``batch_size``, ``store_root``, and under the corrected protocol a precision target ``target_stderr`` /
    ``relative_stderr``, ...). Columns: ``dataset``, ``id``, ``word``, ``word_type``, ``mi``, ``cmi``,
    ``mi_stderr``, ``cmi_stderr``, and under a target the draws each value used and whether it met the target
    (:data:`~infodecomp.experiments.heatmaps.PRECISION_COLUMNS`; ``heatmaps.map_evaluations`` sums them); rows in
    the order of ``datasets`` and of each dataset."""
    parts = []
    for name, data in datasets.items():
        frame = run_heatmaps(model, data, dataset=name, attention=False, **options).merge(len(data), arrays=False)
        parts.append(pd.DataFrame({"dataset": name, "id": frame["id"], "word": frame["word"],
                                   "word_type": frame["word_type"], "mi": frame["mi_image"],
                                   "cmi": frame["cmi_image"], "mi_stderr": frame["mi_stderr"],
                                   "cmi_stderr": frame["cmi_stderr"],
                                   **{c: frame[c] for c in PRECISION_COLUMNS if c in frame.columns}}))
    return pd.concat(parts, ignore_index=True)


def mi_cmi_correlation(frame: pd.DataFrame, *, by: str | None = "word_type", protocol: str = "corrected",
                       n_resamples: int | None = None, seed: int = 0) -> pd.DataFrame:
    """Pearson r between ``frame.mi`` and ``frame.cmi`` (nats per image) with bootstrap error, overall ("all") and
    per value of ``by`` (groups of < 3 rows are skipped). Columns: r, error, ci_low, ci_high, n, mean_mi, mean_cmi."""
    for col in ("mi", "cmi"):
        if col not in frame.columns:
            raise KeyError(f"frame needs a {col!r} column; has {list(frame.columns)}")
    groups = [("all", frame)] + (list(frame.groupby(by)) if by is not None else [])
    out = []
    for name, g in groups:
        if len(g) < 3:
            continue
        b = pearson_bootstrap(g["mi"].to_numpy(), g["cmi"].to_numpy(), protocol=protocol, n_resamples=n_resamples,
                              seed=seed)
        out.append({by or "group": name, "r": b.value, "error": b.error, "ci_low": b.ci_low, "ci_high": b.ci_high,
                    "n": len(g), "mean_mi": g["mi"].mean(), "mean_cmi": g["cmi"].mean()})
    return pd.DataFrame(out).set_index(by or "group")


def denoising_process(model, row: dict, logsnr: Tensor, *, n_noise: int = 8, protocol: str = "corrected",
                      generator: torch.Generator | None = None, decode: bool = True) -> dict:
    """App. C.2 for one localization row at the log-SNRs ``logsnr [L]``.

    Returns ``{"curve": MMSECurve (conds = [caption], ref = context; pixel integrands [1, 1, L, h, w]),
    "noisy": list of L decoded noisy images (one noise draw, PIL) or None}``.
    """
    st = protocol_settings(protocol)
    x = model.encode_images([row["image"]], posterior=st["posterior"], generator=generator, resize="bicubic",
                            size=model.resolution)
    enc = model.encode_prompts([row["caption"], row["context"]])
    curve = mmse_curve(model.denoiser, x, enc[:1][:, None], enc[1:2], logsnr.to(x.device), n_noise=n_noise,
                       pixelwise=True, generator=generator)
    noisy = None
    if decode:
        eps = torch.randn(x.shape, generator=generator, dtype=x.dtype).to(x.device)
        lam = logsnr.to(x.device, x.dtype).view(-1, 1, 1, 1)
        z = torch.sigmoid(lam).sqrt() * x + torch.sigmoid(-lam).sqrt() * eps  # [L, C, h, w]
        noisy = model.decode(z, output_type="pil")
    return {"curve": curve, "noisy": noisy}


def curve_frame(curve, which: Sequence[str] = ("standard", "orthogonal")) -> pd.DataFrame:
    """Long table of an MMSECurve of one example and condition: logsnr, quantity, value, stderr."""
    rows = []
    for q in which:
        v, s = getattr(curve, q)[0, 0], getattr(curve, f"{q}_stderr")[0, 0]
        rows += [{"logsnr": float(l), "quantity": q, "value": float(a), "stderr": float(b)}
                 for l, a, b in zip(curve.logsnr, v, s)]
    return pd.DataFrame(rows)
