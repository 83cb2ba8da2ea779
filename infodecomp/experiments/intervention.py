"""Prompt intervention / image editing (paper Sec. 3.3, Table 4, Figs. 1 and 3; docs/protocol.md#intervention).

For each row ``{"id", "image", "caption", "word", "omit_prompt", "swap_prompt", "swap_word", "mask"}`` of an
intervention dataset (COCO100-IT or its ShapesWorld twin):

1. encode the real image to a clean latent ``x [1, C, h, w]`` (VAE posterior mean);
2. invert it with the caption by the deterministic Heun ODE (``n_steps`` Karras σ values, 100 in the paper) and
   regenerate from the same noise with the caption (reconstruction), the omit prompt and the swap prompt, all three
   in ONE batch in the model's dtype (the reference ran the reconstruction in fp16 and the edits in fp32,
   docs/protocol.md#b19); cross-attention is recorded during the generation (the reconstruction's word map is kept);
3. information (nats), with the truncated logistic over exactly the trained log-SNR range
   (``loc = (λ_min+λ_max)/2``, ``scale = (λ_max−λ_min)/(2·clip)``, clip 3: docs/protocol.md#intervention-maps),
   ``n_logsnr`` points × ``n_noise`` noise draws each:

   * ``cmi_s`` = i^s(x; y*|c) (the paper's image-level CMI, docs/protocol.md#b23) and ``cmi_o`` = i^o(x; y*|c), both
     summed over latent pixels; ``cmi_map`` ``[h, w]`` the per-pixel i^o (channels summed);
   * ``cmi_swap_s`` = i^s(x; y|c) − i^s(x; y'|c) (caption vs swap prompt, both against the omit prompt);
   * ``swap_map`` ``[h, w]`` = ½E[w‖ε̂(swap) − ε̂(caption)‖²] per pixel — a non-negative divergence of the two
     prompts' predictions, NOT a difference of two CMI maps (docs/protocol.md#b21: the reference's figure calls it
     that);
   * ``mi_s`` = i^s(x; y*) (word alone vs null prompt) and ``mi_map`` ``[h, w]`` its per-pixel i^o;

4. the change caused by each edit: latent ``Δ_j = Σ_channels (recon − edit)²`` ``[h, w]`` (the reference's
   metric, docs/protocol.md#b23) and pixel space ``Σ_rgb (decode(recon) − decode(edit))²`` (images in [0, 1]) averaged
   onto the latent grid ``[h, w]``; plus the inversion's reconstruction error and, where the row has a ``mask``, the
   fraction of each change that lands inside it.

Every example's failure is caught, recorded with its error message (``ok = False``, ``error``) and counted by
:func:`summarise_failures` — never dropped silently (the reference printed and skipped, docs/protocol.md#b17).
:func:`table4` computes the correlations of Table 4 from the successful rows.
"""

from __future__ import annotations

import math
import traceback
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from torch import Tensor

from ..models.attention import word_map
from ..checks import count
from ..models.attention import record_cross_attention
from ..editing import generate, invert
from ..estimators import information_scores
from ..data import coco
from ..data.shapes import twin
from ..metrics import bootstrap, pearson, pearson_bootstrap, pixel_pearson, pixel_pearson_bootstrap
from ..precision import dtype_name
from ..models.identity import model_dtype, model_identity
from ..results import ResultStore, example_seed, run_sharded
from .stores import store_path as experiment_store_path

__all__ = [
    "InterventionSettings",
    "paper_sampling",
    "intervention_row",
    "run_intervention",
    "latent_change",
    "mask_fraction",
    "table4",
    "summarise_failures",
    "PAPER_TABLE4",
    "load_intervention_dataset",
    "table4_frame",
    "gallery_indices",
    "decode_row",
    "ignored_edit_auc",
    "per_image_pixel_correlation",
]

#: Table 4 of the paper: Pearson correlation with the change of the image under the omit intervention.
PAPER_TABLE4 = {
    "cmi": {"image": (0.34, 0.010), "pixel": (0.27, 0.002)},
    "attention": {"image": (0.24, 0.011), "pixel": (0.21, 0.002)},
}


@dataclass(frozen=True)
class InterventionSettings:
    """Everything that changes the per-example results (the ResultStore's identity).

    n_steps: Karras σ values of the ODE (100 in the paper: 99 Heun steps each way).
    n_logsnr, n_noise: log-SNR points × noise draws per point of each information estimate (20 × 120 in the
    paper). clip: the truncated logistic's half-width in scales (3 in the paper); loc and scale are derived from
    the model's trained range (:func:`paper_sampling`). dtype: the model's dtype name (a ``torch.dtype`` or its name;
    stored canonical, e.g. ``"bfloat16"``), recorded for provenance; :func:`run_intervention` refuses a model in
    another dtype, so the settings never say float32 for numbers computed in bfloat16.
    """

    dataset: str = "shapes:coco100-it"
    n_steps: int = 100
    n_logsnr: int = 20
    n_noise: int = 120
    clip: float = 3.0
    dtype: str = "float32"

    def __post_init__(self):
        for name in ("n_steps", "n_logsnr", "n_noise"):
            object.__setattr__(self, name, count(getattr(self, name), name))
        object.__setattr__(self, "dtype", dtype_name(self.dtype))
        if self.n_steps < 2:
            raise ValueError(f"n_steps must be >= 2 (σ values of the ODE), got {self.n_steps}")
        if not self.clip > 0:
            raise ValueError(f"clip must be > 0, got {self.clip}")


def paper_sampling(logsnr_range: tuple[float, float], clip: float = 3.0) -> tuple[float, float, float]:
    """``(loc, scale, clip)`` of the truncated logistic covering exactly ``logsnr_range``
    (docs/protocol.md#intervention-solver):
    ``loc = (λ_min + λ_max)/2``, ``scale = (λ_max − λ_min)/(2·clip)``; (0.853, 2.072, 3) for SD 2.1."""
    lo, hi = float(logsnr_range[0]), float(logsnr_range[1])
    if not hi > lo:
        raise ValueError(f"need λ_min < λ_max, got {logsnr_range}")
    return (lo + hi) / 2, (hi - lo) / (2 * clip), float(clip)


def latent_change(a: Tensor, b: Tensor) -> Tensor:
    """``Σ_channels (a − b)²``: ``[B, C, h, w]`` × 2 → ``[B, h, w]`` float32 (squared latent units)."""
    if a.shape != b.shape or a.ndim != 4:
        raise ValueError(f"need two [B, C, h, w] tensors of one shape, got {tuple(a.shape)} and {tuple(b.shape)}")
    return (a.float() - b.float()).pow(2).sum(1)


def mask_fraction(change: np.ndarray, mask: np.ndarray) -> float:
    """Fraction of a non-negative ``change [h, w]`` inside a bool ``mask`` (any size; resized to ``change`` by
    area averaging, so a latent pixel half inside counts half). NaN for an all-zero change or an empty mask."""
    change = np.asarray(change, dtype=np.float64)
    m = torch.as_tensor(np.asarray(mask, dtype=np.float32))[None, None]
    m = F.adaptive_avg_pool2d(m, change.shape).numpy()[0, 0] if m.shape[-2:] != change.shape else m.numpy()[0, 0]
    total = change.sum()
    if total <= 0 or m.sum() <= 0:
        return float("nan")
    return float((change * m).sum() / total)


def _pool_to(t: Tensor, size: tuple[int, int]) -> Tensor:
    """``[B, H, W]`` → ``[B, h, w]`` by area averaging (identity when equal)."""
    if tuple(t.shape[-2:]) == tuple(size):
        return t
    return F.adaptive_avg_pool2d(t[:, None], size)[:, 0]


def intervention_row(model, row: Mapping, settings: InterventionSettings, *, seed: int = 0,
                     progress: bool = False) -> dict:
    """All per-example results of one intervention row (module docstring); raises on failure.

    Returns a dict of scalars (nats, squared latent units) and float16 ``[h, w]`` maps on the latent grid,
    plus the three regenerated latents (float16 ``[C, h, w]``) for the figures.
    """
    for key in ("image", "caption", "word", "omit_prompt", "swap_prompt"):
        if key not in row:
            raise KeyError(f"intervention row {row.get('id', '?')!r} has no {key!r}; keys: {sorted(row)}")
    caption, word = row["caption"], row["word"]
    x = model.encode_images([row["image"]], resize="bicubic")  # [1, C, h, w] float32
    # the ODE state stays float32 (editing.heun_integrate); the UNet runs in the model's dtype for all three
    # generations, which share one batch
    prompts = [caption, row["omit_prompt"], row["swap_prompt"]]
    noise = invert(model, x, [caption], settings.n_steps, progress=progress)
    with record_cross_attention(model) as rec:
        gen_out = generate(model, noise.repeat(3, 1, 1, 1), prompts, settings.n_steps, progress=progress)
    token_maps = rec.token_maps()  # [3, L, h', w'] summed over all 2(n_steps − 1) UNet calls
    # one batch, one dtype for all three generations (docs/protocol.md#b19)
    dtypes = [f"state {gen_out.dtype}", f"unet {model.dtype}"]
    lat = dict(zip(("reconstruction", "omit", "swap"), gen_out.float().split(1)))
    h, w = x.shape[-2:]

    # attention: the reconstruction's word map (raw, summed over calls), [h, w]
    positions = model.token_positions(caption, word)
    attn = word_map(token_maps[0], positions).float()
    if tuple(attn.shape) != (h, w):
        attn = _pool_to(attn[None], (h, w))[0]

    # information
    loc, scale, clip = paper_sampling(model.logsnr_range, settings.clip)
    emb = model.encode_prompts([caption, row["omit_prompt"], row["swap_prompt"], word, ""])
    cap, omit, swap, wrd, null = (e[None] for e in emb)
    kw = dict(n_samples=settings.n_logsnr, noise_per_logsnr=settings.n_noise, rule="logistic", loc=loc,
              scale=scale, clip=clip, pixelwise=True)
    gen = torch.Generator(device="cpu").manual_seed(example_seed(seed, row.get("id", caption)))
    xf = x  # estimators accumulate in float32/64 themselves
    s_cmi = information_scores(model.denoiser, xf, torch.stack([cap, swap], 1), omit, generator=gen, **kw)
    s_swap = information_scores(model.denoiser, xf, swap[:, None], cap, generator=gen, **kw)
    s_mi = information_scores(model.denoiser, xf, wrd[:, None], null, generator=gen, **kw)

    change = {k: latent_change(lat["reconstruction"], lat[k])[0] for k in ("omit", "swap")}
    with torch.no_grad():
        imgs = model.decode(torch.cat([x.float(), lat["reconstruction"], lat["omit"], lat["swap"]]).to(model.dtype),
                            output_type="pt").float()
    real_px, recon_px, omit_px, swap_px = imgs
    pix_change = {k: _pool_to((recon_px - e).pow(2).sum(0)[None], (h, w))[0]
                  for k, e in (("omit", omit_px), ("swap", swap_px))}

    mask = row.get("mask")
    out = {
        "caption": caption, "word": word, "omit_prompt": row["omit_prompt"], "swap_prompt": row["swap_prompt"],
        "ok": True, "error": "", "generation_dtypes": ",".join(dtypes),
        "cmi_s": float(s_cmi.standard[0, 0]), "cmi_s_stderr": float(s_cmi.standard_stderr[0, 0]),
        "cmi_o": float(s_cmi.orthogonal[0, 0]), "cmi_o_stderr": float(s_cmi.orthogonal_stderr[0, 0]),
        "cmi_swap_s": float(s_cmi.standard[0, 0] - s_cmi.standard[0, 1]),
        "mi_s": float(s_mi.standard[0, 0]), "mi_o": float(s_mi.orthogonal[0, 0]),
        "swap_total": float(s_swap.orthogonal[0, 0]),
        "attention_total": float(attn.sum()),
        "change_omit": float(change["omit"].sum()), "change_swap": float(change["swap"].sum()),
        "pixel_change_omit": float(pix_change["omit"].sum()), "pixel_change_swap": float(pix_change["swap"].sum()),
        "recon_error_latent": float((lat["reconstruction"] - x.float()).pow(2).mean()),
        "recon_rel_error_latent": float((lat["reconstruction"] - x.float()).pow(2).sum() / x.float().pow(2).sum()),
        "recon_error_pixel": float((recon_px - real_px).pow(2).mean()),
        "cmi_map": s_cmi.pixel_orthogonal[0, 0].float().cpu().numpy().astype(np.float16),
        "swap_map": s_swap.pixel_orthogonal[0, 0].float().cpu().numpy().astype(np.float16),
        "mi_map": s_mi.pixel_orthogonal[0, 0].float().cpu().numpy().astype(np.float16),
        "attention_map": attn.cpu().numpy().astype(np.float16),
        "change_omit_map": change["omit"].cpu().numpy().astype(np.float32),
        "change_swap_map": change["swap"].cpu().numpy().astype(np.float32),
        "pixel_change_omit_map": pix_change["omit"].cpu().numpy().astype(np.float32),
        "pixel_change_swap_map": pix_change["swap"].cpu().numpy().astype(np.float32),
        "latent_real": x.float()[0].cpu().numpy().astype(np.float16),
        "latent_reconstruction": lat["reconstruction"][0].cpu().numpy().astype(np.float16),
        "latent_omit": lat["omit"][0].cpu().numpy().astype(np.float16),
        "latent_swap": lat["swap"][0].cpu().numpy().astype(np.float16),
    }
    if mask is not None and np.asarray(mask).any():
        for k in ("omit", "swap"):
            out[f"mask_fraction_{k}"] = mask_fraction(out[f"change_{k}_map"], mask)
            out[f"mask_fraction_pixel_{k}"] = mask_fraction(out[f"pixel_change_{k}_map"], mask)
        out["mask_area"] = float(np.asarray(mask, dtype=np.float64).mean())
    return out


def _failure_row(row: Mapping, err: BaseException) -> dict:
    return {"caption": str(row.get("caption", "")) if isinstance(row, Mapping) else "",
            "ok": False, "error": f"{type(err).__name__}: {err}",
            "traceback": "".join(traceback.format_exception(type(err), err, err.__traceback__))[-2000:]}


def run_intervention(model, dataset: Sequence[Mapping], store_path=None, settings: InterventionSettings | None = None,
                     *, seed: int = 0, batch_size: int = 1, progress: bool = True,
                     process_index: int | None = None, num_processes: int | None = None, state=None,
                     store_root: str | Path = "runs") -> ResultStore:
    """Run :func:`intervention_row` over ``dataset`` into a resumable :class:`ResultStore` at ``store_path``.

    ``settings``: default the paper's (:class:`InterventionSettings`). ``store_path`` None: the folder
    :func:`~infodecomp.experiments.stores.store_path` names under ``store_root`` for ``settings.dataset``, the
    settings, the number of rows, the seed and the model: ``<store_root>/<model>/intervention/<dataset>-<hash>``.

    A failing example gets a row ``ok = False`` with ``error`` (type and message) and a traceback tail; the
    other examples go on. ``KeyboardInterrupt`` and ``SystemExit`` are not caught (a killed run resumes: rows
    already written are skipped). Returns the store.

    Sharding: each example's inversion, three regenerations and estimates depend only on the example (its noise
    is seeded by ``example_seed(seed, id)``), so under a multi-process launch (``accelerate launch``) each process
    takes the examples ``p, p + P, …`` into the shared store and returns once every process is done; ``state`` or
    ``process_index`` and ``num_processes`` name the shard explicitly (:func:`~infodecomp.results.run_sharded`).
    """
    settings = settings if settings is not None else InterventionSettings()
    if not isinstance(settings, InterventionSettings):
        raise TypeError(f"settings must be an InterventionSettings, got {type(settings).__name__}")
    actual = model_dtype(model)
    if actual is not None and actual != settings.dtype:
        raise ValueError(f"settings.dtype is {settings.dtype!r} but the model runs in {actual}; give "
                         f"InterventionSettings(dtype={actual!r}) (or load the model in {settings.dtype})")
    if store_path is None:
        identity = {"experiment": "intervention", "n_rows": len(dataset), **asdict(settings)}
        store_path = experiment_store_path(store_root, model, "intervention", settings.dataset, identity, seed)
    store = ResultStore(store_path, asdict(settings), model=model_identity(model), seed=seed,
                        process_index=process_index or 0, num_processes=num_processes or 1)

    def fn_batch(batch):
        rows = []
        for row in batch:
            try:
                rows.append(intervention_row(model, row, settings, seed=seed))
            except Exception as err:  # recorded per example, with its message, and summarised
                rows.append(_failure_row(row, err))
        return rows

    run_sharded(dataset, fn_batch, store, batch_size, state=state, process_index=process_index,
                num_processes=num_processes, desc="intervention", progress=progress)
    return store


def summarise_failures(frame) -> dict:
    """``{"n": rows, "n_ok": ..., "n_failed": ..., "errors": {message: count}}`` of a result table."""
    ok = frame["ok"].astype(bool) if "ok" in frame else np.ones(len(frame), bool)
    errors: dict[str, int] = {}
    for msg in frame.loc[~ok, "error"] if "error" in frame else []:
        errors[str(msg)] = errors.get(str(msg), 0) + 1
    return {"n": int(len(frame)), "n_ok": int(ok.sum()), "n_failed": int((~ok).sum()), "errors": errors}


def table4(frame, *, protocol: str = "faithful", seed: int | None = 0, change: str = "change_omit",
           nan_policy: str = "omit") -> dict:
    """Table 4 from a result table (:meth:`ResultStore.merge`): Pearson correlation with the omit change.

    ``{"cmi": {"image": BootstrapEstimate, "pixel": ...}, "attention": {...}}``; image level: across images,
    corr(``cmi_s``, Σ change) and corr(Σ attention, Σ change); pixel level: mean over images of the per-image
    correlation of ``cmi_map`` (resp. ``attention_map``) with the change map. ``change``: ``"change_omit"``
    (latent, the reference) or ``"pixel_change_omit"``. Failed rows are excluded (count them with
    :func:`summarise_failures`). Bootstrap per ``protocol`` (metrics.bootstrap): faithful = 100 resamples of 90 %
    of the images, ± = std/10 (docs/protocol.md#b31); corrected = 1000 full resamples, ± = std, seeded 95 % interval.
    """
    ok = frame[frame["ok"].astype(bool)] if "ok" in frame else frame
    if len(ok) < 2:
        raise ValueError(f"Table 4 needs at least 2 successful examples, got {len(ok)} of {len(frame)}")
    total = ok[change].to_numpy(np.float64)
    maps = np.stack([np.asarray(m, np.float64) for m in ok[f"{change}_map"]])
    out = {}
    for name, scalar, mapcol in (("cmi", "cmi_s", "cmi_map"), ("attention", "attention_total", "attention_map")):
        img = pearson_bootstrap(ok[scalar].to_numpy(np.float64), total, protocol=protocol, seed=seed)
        pm = np.stack([np.asarray(m, np.float64) for m in ok[mapcol]])
        pix = pixel_pearson_bootstrap(pm, maps, protocol=protocol, seed=seed, nan_policy=nan_policy)
        out[name] = {"image": img, "pixel": pix}
    return out


def cmi_minus_attention(frame, *, change: str = "change_omit", seed: int = 0) -> dict[str, dict]:
    """Does CMI predict what an edit changes better than attention? Paired on the same images (corrected
    protocol: 1000 full bootstrap resamples, seeded): ``{"image": ..., "pixel": ...}``, each ``{"value",
    "stderr", "ci_low", "ci_high", "n"}`` of corr(CMI, change) − corr(attention, change) — image level across
    images (``cmi_s`` and Σ attention vs Σ change), pixel level the mean over images of the per-image
    difference of the two map correlations (images where either map is constant are left out)."""
    ok = frame[frame["ok"].astype(bool)] if "ok" in frame else frame
    total = ok[change].to_numpy(np.float64)
    c, a = ok["cmi_s"].to_numpy(np.float64), ok["attention_total"].to_numpy(np.float64)
    img = bootstrap(lambda i: pearson(c[i], total[i]) - pearson(a[i], total[i]), len(ok), protocol="corrected",
                    seed=seed)
    d = per_image_pixel_correlation(ok, "cmi_map", change) - per_image_pixel_correlation(ok, "attention_map", change)
    d = d[~np.isnan(d)]
    pix = bootstrap(lambda i: float(d[i].mean()), len(d), protocol="corrected", seed=seed)
    return {k: {"value": b.value, "stderr": b.error, "ci_low": b.ci_low, "ci_high": b.ci_high, "n": b.n_items}
            for k, b in (("image", img), ("pixel", pix))}


def per_image_pixel_correlation(frame, mapcol: str, change: str = "change_omit") -> np.ndarray:
    """``[N]`` per-image Pearson correlation of ``mapcol`` with the ``change`` map (successful rows; NaN where a
    map is constant)."""
    ok = frame[frame["ok"].astype(bool)] if "ok" in frame else frame
    a = np.stack([np.asarray(m, np.float64) for m in ok[mapcol]])
    b = np.stack([np.asarray(m, np.float64) for m in ok[f"{change}_map"]])
    return pixel_pearson(a, b)


def load_intervention_dataset(dataset: str, n_items: int, *, data_dir: str | None = None, seed: int = 0):
    """Rows of an intervention dataset: ``"shapes:coco100-it"`` (the ShapesWorld twin, ``n_items`` ≥ 7 rows, one
    block per word group) or ``"coco100-it"`` (the real COCO100-IT view of ``infodecomp.data.coco``, first
    ``n_items`` rows, images under ``data_dir``)."""
    if dataset.startswith("shapes:"):
        return twin(dataset.split(":", 1)[1], n_items, seed=seed)
    if dataset == "coco100-it":
        rows = coco.coco100_it_intervention(data_dir)
        return [rows[i] for i in range(min(n_items, len(rows)))]
    raise ValueError(f"unknown dataset {dataset!r}; expected 'shapes:coco100-it' or 'coco100-it'")


def table4_frame(t4: Mapping, protocol: str) -> "pandas.DataFrame":
    """Table 4 as a DataFrame beside the paper's numbers: one row per (map, level)."""
    recs = []
    for name, levels in t4.items():
        for level, est in levels.items():
            paper, paper_err = PAPER_TABLE4[name][level]
            recs.append({"map": name, "level": level, "pearson": est.value, "±": est.error,
                         "ci95_low": est.ci_low, "ci95_high": est.ci_high, "n_images": est.n_items,
                         "protocol": protocol, "paper": paper, "paper ±": paper_err})
    return pd.DataFrame(recs)


def gallery_indices(frame, kind: str = "omit", n: int = 3) -> dict[str, list[int]]:
    """Row positions (successful rows) of the ``n`` largest ("success": the edit changed the image) and ``n``
    smallest ("failure": the edit was ignored) latent changes of ``kind`` ("omit" or "swap")."""
    ok = frame[frame["ok"].astype(bool)]
    order = ok[f"change_{kind}"].sort_values(ascending=False).index.tolist()
    n = min(n, len(order) // 2) if len(order) > 1 else len(order)
    return {"success": order[:n], "failure": order[::-1][:n]}


def decode_row(model, row: Mapping) -> dict[str, np.ndarray]:
    """Decoded images (float ``[H, W, 3]`` in [0, 1]) of a stored row's latents: real, reconstruction, omit,
    swap."""
    keys = ("real", "reconstruction", "omit", "swap")
    lat = torch.stack([torch.as_tensor(np.asarray(row[f"latent_{k}"], np.float32)) for k in keys])
    imgs = model.decode(lat.to(model.device, model.dtype), output_type="np")
    return dict(zip(keys, imgs))


def ignored_edit_auc(frame, score: str, *, kind: str = "omit", quantile: float = 0.5) -> float:
    """How well a low ``score`` (e.g. ``cmi_s`` or ``attention_total``) predicts an ignored intervention.

    An edit counts as ignored when its latent change is below the ``quantile`` of the changes. Returns the ROC
    AUC of ``−score`` for "ignored" (0.5 = no better than chance; ties count half). NaN when one class is empty.
    """
    ok = frame[frame["ok"].astype(bool)]
    change = ok[f"change_{kind}"].to_numpy(np.float64)
    s = ok[score].to_numpy(np.float64)
    ignored = change < np.quantile(change, quantile)
    a, b = -s[ignored], -s[~ignored]
    if len(a) == 0 or len(b) == 0:
        return float("nan")
    return float(((a[:, None] > b[None]).sum() + 0.5 * (a[:, None] == b[None]).sum()) / (len(a) * len(b)))
