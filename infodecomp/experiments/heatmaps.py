"""Pixel-level MI / CMI heat maps of a word and its attention map (paper Sec. 3.2, Fig. 2; docs/protocol.md#heatmaps).

For an image x with caption y and a word y* of it:

* CMI map  i^o_j(x; y* | c): cond = the full caption, ref = the context c (caption with the word deleted);
* MI map   i^o_j(x; y*):     cond = the word alone (its ``label``, or the surface ``word``, docs/protocol.md#b24),
  ref = null "";
* attention ("Attention+Information", docs/protocol.md#attention-information): cross-attention of the word's tokens,
  summed over single denoiser passes on the real latent noised at log-SNRs drawn as for the information estimate;
* DAAM ("Attention", the baseline of Table 3, docs/protocol.md#daam; :func:`daam_maps`): the same cross-attention, but
  collected along a DDIM regeneration from the DDIM-inverted real latent, with the caption, as DAAM does —
  keeping every head (DAAM dropped half of them, docs/protocol.md#b10) and feeding the VAE [−1, 1] images
  (docs/protocol.md#b11).

All maps live on the latent grid ``[h, w]`` (nats per latent cell for MI/CMI; arbitrary units for attention).
The faithful/corrected switch: faithful = clip 4 and one VAE posterior sample (what the reference ran);
corrected = clip 3 and the posterior mean.

:func:`run_heatmaps` computes the maps of a dataset's rows into a resumable, shardable
:class:`~infodecomp.results.ResultStore` (notebooks 04 and 07): rows are computed in aligned batches of
``batch_size`` whose randomness is seeded by the batch's number (:func:`batch_generator`), and under a
multi-process launch each process takes its share of the batches (``run_sharded(..., aligned=True)``), so the
stored maps are the same whatever the number of processes. :func:`stored_heatmaps` reads them back.

Precision targets (issue 27, corrected protocol only): with ``target_stderr`` (nats) and/or ``relative_stderr`` (a
fraction of the image-level estimate), each map draws in blocks of ``block`` log-SNRs
(:func:`~infodecomp.estimators.information_to_precision`) until the standard error of its image-level value
reaches the target, or ``n_samples`` draws (then the cap) are spent; the draws each map used and whether it met
its target are kept per row (:func:`map_evaluations` sums them). The faithful protocol keeps the paper's fixed
draws and refuses a target.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from torch import Tensor

from ..models.attention import record_cross_attention
from ..editing import ddim_generate, ddim_invert
from ..estimators import information_to_precision, pointwise_information
from ..logsnr import LogSNRSampling
from ..checks import count, real
from ..models.identity import model_identity
from ..proposals import PILOT_ROWS, FittedLogSNRSampling, ProposalCache, fitted_proposal, resolve_sampling, stratified
from ..results import ResultStore, example_seed, run_sharded
from ..results.sharding import aligned_batch
from ..text import token_positions
from .stores import store_path

PROTOCOLS = ("faithful", "corrected")
MI_CONDS = ("label", "word")


def precision_block(n_samples: int) -> int:
    """Draws per block under a precision target when none is given: the largest divisor of ``n_samples`` that is
    at most ``max(2, n_samples // 4)`` (32 → 8, 50 → 10, 100 → 25, 200 → 50), so the cap ``n_samples`` is a whole
    number of blocks and the first look has a few draws to estimate a standard error from."""
    n = count(n_samples, "n_samples")
    return max(d for d in range(1, n + 1) if n % d == 0 and d <= max(2, n // 4))


def precision_settings(protocol: str, n_samples: int, target_stderr, relative_stderr, block) -> dict:
    """The checked precision-target settings ``{"target_stderr", "relative_stderr", "block"}`` (``{}`` without a
    target: the fixed draws), for a store's identity and :func:`word_heatmaps`. ``ValueError`` for a target under
    the faithful protocol (it keeps the paper's fixed draws), a target that is not a number > 0, or a block that
    does not divide ``n_samples`` (the cap)."""
    if target_stderr is None and relative_stderr is None:
        if block is not None:
            raise ValueError(f"block ({block!r}) is the block of a precision target; give target_stderr or "
                             "relative_stderr, or no block")
        return {}
    if protocol != "corrected":
        raise ValueError(f"a precision target (target_stderr={target_stderr!r}, relative_stderr={relative_stderr!r}) "
                         f"is an option of the corrected protocol; the {protocol!r} protocol keeps the paper's fixed "
                         "n_samples draws (set PROTOCOL = \"corrected\", or the target to None)")
    out = {}
    for name, v in (("target_stderr", target_stderr), ("relative_stderr", relative_stderr)):
        out[name] = None if v is None else real(v, name, above=0.0, hint="nats" if name == "target_stderr"
                                                else "a fraction of the estimate")
    n = count(n_samples, "n_samples")
    out["block"] = precision_block(n) if block is None else count(block, "block")
    if n % out["block"]:
        raise ValueError(f"n_samples ({n}, the cap under a precision target) must be a multiple of block "
                         f"({out['block']})")
    return out


def protocol_settings(protocol: str) -> dict:
    """Estimator/encoder settings of a protocol: ``{"clip", "posterior"}`` (docs/protocol.md#encoding,
    docs/protocol.md#estimators)."""
    if protocol not in PROTOCOLS:
        raise ValueError(f"protocol must be one of {PROTOCOLS}; got {protocol!r}")
    return {"clip": 4.0, "posterior": "sample"} if protocol == "faithful" else {"clip": 3.0, "posterior": "mean"}


@dataclass(frozen=True)
class WordHeatmaps:
    """Maps for a batch of B (image, word) rows, on the latent grid ``[B, h, w]``."""

    cmi: Tensor            # [B, h, w] nats, i^o_j(x; y*|c)
    mi: Tensor             # [B, h, w] nats, i^o_j(x; y*)
    cmi_image: Tensor      # [B] nats (sum of the map)
    mi_image: Tensor       # [B] nats
    cmi_stderr: Tensor     # [B] nats
    mi_stderr: Tensor      # [B] nats
    attention: Tensor | None  # [B, h, w] Attention+Information word map (None when not asked for)
    cmi_samples: Tensor | None = None     # [B] int64 log-SNR draws of each CMI map (n_samples without a target)
    mi_samples: Tensor | None = None      # [B] int64 log-SNR draws of each MI map
    cmi_target_met: Tensor | None = None  # [B] bool: the CMI's standard error reached the target (None: no target)
    mi_target_met: Tensor | None = None   # [B] bool: the MI's


def joint_scale(*maps: Tensor) -> tuple[Tensor, Tensor]:
    """The paper's joint colour scale: per image one min and max over all the given maps.

    maps: each ``[B, h, w]`` (or ``[h, w]``). Returns ``(lo [B], hi [B])`` (0-d tensors for 2-d maps)."""
    if not maps:
        raise ValueError("joint_scale needs at least one map")
    shapes = {tuple(m.shape) for m in maps}
    if len(shapes) != 1:
        raise ValueError(f"maps must share one shape; got {sorted(shapes)}")
    stacked = torch.stack([m.float() for m in maps], dim=-3)  # [..., K, h, w]
    flat = stacked.flatten(-3)
    return flat.min(dim=-1).values, flat.max(dim=-1).values


def apply_scale(m: Tensor, lo: Tensor, hi: Tensor) -> Tensor:
    """``(m − lo) / (hi − lo)`` per image (``[B, h, w]`` with ``lo, hi [B]``), 0 where hi == lo."""
    lo = lo.reshape(*lo.shape, 1, 1)
    hi = hi.reshape(*hi.shape, 1, 1)
    span = hi - lo
    return torch.where(span > 0, (m.float() - lo) / torch.where(span > 0, span, torch.ones_like(span)),
                       torch.zeros_like(m, dtype=torch.float32))


def draw_logsnr(n: int, *, loc: float = 1.0, scale: float = 2.0, clip: float = 3.0,
                generator: torch.Generator | None = None, device=None) -> Tensor:
    """``[n]`` log-SNRs from the truncated logistic used by the information estimate (loc ± clip·scale)."""
    lo, hi = torch.sigmoid(torch.tensor(-clip)), torch.sigmoid(torch.tensor(clip))
    u = lo + (hi - lo) * torch.rand(n, generator=generator, dtype=torch.float64)
    return (loc + scale * torch.logit(u)).float().to(device)


def attention_information_maps(model, x: Tensor, prompts: Sequence[str], words: Sequence[str], *,
                               n_samples: int = 8, clip: float = 3.0, generator: torch.Generator | None = None,
                               faithful_half_heads: bool = False, loc: float = 1.0, scale: float = 2.0) -> Tensor:
    """"Attention+Information" word maps (docs/protocol.md#attention-information): ``[B, h, w]``.

    x: ``[B, C, h, w]`` clean latents; prompts/words: B captions and the word of each. For each of
    ``n_samples`` log-SNRs drawn as for the information estimate (truncated logistic, loc ± clip·scale), x is
    noised once and the denoiser is run with the caption; the word's cross-attention is summed over these passes.
    """
    B = x.shape[0]
    if len(prompts) != B or len(words) != B:
        raise ValueError(f"need one prompt and one word per image: {B} images, {len(prompts)} prompts, "
                         f"{len(words)} words")
    if n_samples < 1:
        raise ValueError(f"n_samples must be >= 1; got {n_samples}")
    cond = model.encode_prompts(list(prompts)).to(x.device, x.dtype)
    with torch.no_grad(), record_cross_attention(model, faithful_half_heads=faithful_half_heads) as rec:
        for _ in range(n_samples):
            lam = draw_logsnr(B, loc=loc, scale=scale, clip=clip, generator=generator, device=x.device).to(x.dtype)
            eps = torch.randn(x.shape, generator=generator, dtype=x.dtype).to(x.device)
            a = torch.sigmoid(lam).sqrt().view(B, 1, 1, 1)
            s = torch.sigmoid(-lam).sqrt().view(B, 1, 1, 1)
            model.denoiser(a * x + s * eps, lam, cond)
        maps = rec.word_maps(model.tokenizer, list(prompts), list(words))
    if maps.shape[-2:] != x.shape[-2:]:
        raise RuntimeError(f"attention maps {tuple(maps.shape)} are not on the latent grid {tuple(x.shape[-2:])}")
    return maps


@dataclass(frozen=True)
class DAAMMaps:
    """The DAAM attention baseline for a batch of B (image, word) rows (docs/protocol.md#daam), on the latent grid."""

    word: Tensor            # [B, h, w] word maps: the mean of ``tokens`` over the word's token positions
    tokens: Tensor          # [B, L, h, w] per-token maps: sum over the regeneration's UNet calls of the mean over
                            # every recorded (layer, head) — DAAM's global heat map before truncation
    latents: Tensor         # [B, C, h, w] the clean latents x that were inverted
    noise: Tensor           # [B, C, h, w] x DDIM-inverted to the last timestep (VP state, ≈ unit variance)
    reconstruction: Tensor  # [B, C, h, w] the DDIM regeneration from ``noise`` (≈ ``latents``)


def daam_maps(model, x, prompts: Sequence[str], words: Sequence[str], *, steps: int = 100,
              guidance_scale: float | None = 1.0, posterior: str = "mean", generator: torch.Generator | None = None,
              normalize: bool = True, faithful_half_heads: bool = False, offset: int = 1,
              progress: bool = False) -> DAAMMaps:
    """DAAM word maps (Tang et al. 2023) collected along DDIM inversion + regeneration (docs/protocol.md#daam).

    1. ``x`` is DDIM-inverted with the caption over ``steps`` steps (:func:`infodecomp.editing.ddim_invert`,
       not recorded); 2. it is regenerated along DDIM from the inverted noise with the same caption
       (:func:`~infodecomp.editing.ddim_generate`) while :func:`~infodecomp.models.attention.record_cross_attention`
       records every down- and up-block cross-attention layer (the mid-block excluded, as DAAM) — all heads,
       upsampled bicubically to the latent grid, clamped at ≥ 0, averaged over (layer, head) and summed over the
       ``steps`` calls; 3. a word's map is the mean over all of its token positions (every occurrence, every BPE
       piece: :func:`infodecomp.text.token_positions`).

    Args:
        model: an ``infodecomp.models.Model``.
        x: ``[B, C, h, w]`` clean latents (shape ``model.latent_shape``), or images (PIL RGB / uint8 arrays /
            ``[B, 3, H, W]`` tensors in [0, 1], resized bicubically to the model's resolution) encoded with
            ``model.encode_images(posterior=posterior, generator=generator, normalize=normalize)``.
        prompts, words: B captions and the word of each (the surface word as it appears in the caption).
        steps: DDIM steps each way (the paper: 50, 100, 200): ``2·steps`` UNet calls (×2 with guidance).
        guidance_scale: classifier-free guidance for inversion and regeneration; 1 or ``None`` (the paper's
            setting) is none, and then no unconditional pass is run. With guidance, the maps are those of the
            conditional half of each batched call.
        normalize: images → [−1, 1] before the VAE (correct); ``False`` is the reference's [0, 1]
            (docs/protocol.md#b11).
        faithful_half_heads: keep only the second half of each layer's heads, as DAAM without CFG did
            (docs/protocol.md#b10).
        offset: the scheduler's ``steps_offset`` (1 for SD 2.1-base: timesteps 1, 1 + Δ, …).
    Returns :class:`DAAMMaps`. Every word is checked against its caption before any UNet call.
    """
    prompts, words = list(prompts), list(words)
    if len(prompts) != len(words):
        raise ValueError(f"{len(prompts)} prompts and {len(words)} words; expected one word per prompt")
    if not prompts:
        raise ValueError("no prompts given")
    for p, w in zip(prompts, words):
        token_positions(model.tokenizer, p, w)  # raises early, naming the word and the prompt's tokens
    B = len(prompts)
    if isinstance(x, Tensor) and x.ndim == 4 and tuple(x.shape[1:]) == tuple(model.latent_shape):
        latents = x.to(model.device, torch.float32)
    else:
        latents = model.encode_images(x, posterior=posterior, generator=generator, resize="bicubic",
                                      size=model.resolution, normalize=normalize)
    if latents.shape[0] != B:
        raise ValueError(f"{latents.shape[0]} images/latents for {B} prompts")
    g = None if guidance_scale is None or float(guidance_scale) == 1.0 else float(guidance_scale)
    cond = model.encode_prompts(prompts)
    kw = dict(guidance_scale=g, offset=offset, progress=progress)
    noise = ddim_invert(model, latents, cond, steps, **kw)
    with torch.no_grad(), record_cross_attention(model, faithful_half_heads=faithful_half_heads) as rec:
        reconstruction = ddim_generate(model, noise, cond, steps, **kw)
    rows = slice(B, None) if g is not None else slice(None)  # CFG batches are [uncond, cond]
    return DAAMMaps(word=rec.word_maps(model.tokenizer, prompts, words, rows=rows), tokens=rec.token_maps()[rows],
                    latents=latents, noise=noise, reconstruction=reconstruction)


def check_word_rows(tokenizer, rows: Sequence[dict]) -> None:
    """Raise ``ValueError`` naming the row unless every row's word occurs in its caption (among its tokens, with
    a ``tokenizer``; as text, with ``None``) and its context differs from the caption.

    A context equal to the caption makes the CMI exactly 0 (the estimator reuses the reference's prediction for
    an identical condition), which would read as "this word carries no information" instead of "this row is
    wrong": a word absent from its caption gives exactly such a row."""
    for k, r in enumerate(rows):
        rid = r.get("id", k) if isinstance(r, dict) else k
        missing = [key for key in ("caption", "word", "context") if not isinstance(r.get(key), str)]
        if missing:
            raise ValueError(f"row {rid!r}: needs str {missing} (the caption, the word and its context)")
        if tokenizer is not None:
            try:
                token_positions(tokenizer, r["caption"], r["word"])
            except ValueError as err:
                raise ValueError(f"row {rid!r}: {err}") from None
        elif not r["word"].strip() or r["word"].strip().lower() not in r["caption"].lower():
            raise ValueError(f"row {rid!r}: word {r['word']!r} does not occur in caption {r['caption']!r}")
        if " ".join(r["context"].split()) == " ".join(r["caption"].split()):
            raise ValueError(f"row {rid!r}: the context equals the caption {r['caption']!r}, so the word "
                             f"{r['word']!r} was not deleted from it and its CMI would be exactly 0; expected the "
                             "caption with the word deleted")


def word_heatmaps(model, rows: Sequence[dict], *, n_samples: int = 32, protocol: str = "corrected",
                  mi_cond: str = "label", attention: bool = True, attention_samples: int | None = None,
                  generator: torch.Generator | None = None, sampling: LogSNRSampling | None = None,
                  target_stderr: float | None = None, relative_stderr: float | None = None,
                  block: int | None = None) -> WordHeatmaps:
    """MI and CMI maps (and optionally the Attention+Information map) for localization-format rows.

    rows: dicts with ``image``, ``caption``, ``word``, ``label``, ``context`` (CONTRACT). ``mi_cond``: "label"
    (the reference's choice) or "word" (the surface word, docs/protocol.md#b24). ``sampling``: the log-SNR distribution
    of the maps and of the attention passes (default: the protocol's, loc 1, scale 2, clip 3 or 4; the interactive probe
    sets loc/scale/clip). ``target_stderr`` (nats) / ``relative_stderr`` (fraction of the image-level value): a
    precision target per map (corrected protocol only, :func:`precision_settings`), drawn in blocks of ``block``
    (default :func:`precision_block`) with ``n_samples`` as the cap. Returns :class:`WordHeatmaps` ``[B, h, w]``.
    """
    if mi_cond not in MI_CONDS:
        raise ValueError(f"mi_cond must be one of {MI_CONDS}; got {mi_cond!r}")
    if not rows:
        raise ValueError("no rows given")
    check_word_rows(getattr(model, "tokenizer", None), rows)
    st = protocol_settings(protocol)
    precision = precision_settings(protocol, n_samples, target_stderr, relative_stderr, block)
    x = model.encode_images([r["image"] for r in rows], posterior=st["posterior"], generator=generator,
                            resize="bicubic", size=model.resolution)
    caps = [r["caption"] for r in rows]
    enc = model.encode_prompts(caps + [r["context"] for r in rows] + [r[mi_cond] for r in rows] + [""])
    B = len(rows)
    full, ctx, word, null = enc[:B], enc[B:2 * B], enc[2 * B:3 * B], enc[3 * B:].expand(B, *enc.shape[1:])
    if sampling is None:
        sampling = LogSNRSampling(clip=st["clip"])
    if not isinstance(sampling, LogSNRSampling):
        raise TypeError(f"sampling must be an infodecomp.logsnr.LogSNRSampling or None, "
                        f"got {type(sampling).__name__}")
    if precision:
        kw = dict(target=precision["target_stderr"], relative=precision["relative_stderr"], block=precision["block"],
                  max_samples=n_samples, pixelwise=True, sampling=sampling, generator=generator)
        cmi = information_to_precision(model.denoiser, x, full, ctx, **kw)
        mi = information_to_precision(model.denoiser, x, word, null, **kw)
        counts = dict(cmi_samples=cmi.n_samples.cpu(), mi_samples=mi.n_samples.cpu(),
                      cmi_target_met=cmi.target_met.cpu(), mi_target_met=mi.target_met.cpu())
    else:
        kw = dict(n_samples=n_samples, pixelwise=True, sampling=sampling, generator=generator)
        cmi = pointwise_information(model.denoiser, x, full, ctx, **kw)
        mi = pointwise_information(model.denoiser, x, word, null, **kw)
        fixed = torch.full((B,), n_samples, dtype=torch.int64)
        counts = dict(cmi_samples=fixed, mi_samples=fixed.clone())
    att = None
    if attention:
        att = attention_information_maps(model, x, caps, [r["word"] for r in rows],
                                         n_samples=attention_samples or n_samples, loc=sampling.loc,
                                         scale=sampling.scale, clip=sampling.clip, generator=generator)
    return WordHeatmaps(cmi=cmi.value, mi=mi.value, cmi_image=cmi.image_value, mi_image=mi.image_value,
                        cmi_stderr=cmi.stderr, mi_stderr=mi.stderr, attention=att, **counts)


#: The per-row columns a store keeps under a precision target.
PRECISION_COLUMNS = ("cmi_samples", "mi_samples", "cmi_target_met", "mi_target_met")


def precision_columns(hm: WordHeatmaps, k: int) -> dict:
    """Row ``k``'s draws and target flags (:data:`PRECISION_COLUMNS`) when ``hm`` was computed to a target, else
    ``{}`` (a fixed run's rows keep the columns they had before targets existed, so old stores still resume)."""
    if hm.cmi_target_met is None:
        return {}
    return {"cmi_samples": int(hm.cmi_samples[k]), "mi_samples": int(hm.mi_samples[k]),
            "cmi_target_met": bool(hm.cmi_target_met[k]), "mi_target_met": bool(hm.mi_target_met[k])}


def map_evaluations(source, n_samples: int) -> dict:
    """What the CMI and MI maps of a run cost: ``{"evaluations": denoiser rows they used, "fixed": what
    ``n_samples`` fixed draws use, "rows", "met": rows whose two maps both met the target (None: no target)}``.

    source: :class:`WordHeatmaps`, a table with the columns of :data:`PRECISION_COLUMNS` (a merged store of
    :func:`run_heatmaps` or of :func:`~infodecomp.experiments.localization.run_localization`, or the frame of
    :func:`~infodecomp.experiments.image_level.run`), or a store; without those columns, a fixed run. Each draw
    of a map evaluates its condition and its reference: 2 rows (attention passes are not counted)."""
    n = count(n_samples, "n_samples")
    if hasattr(source, "merge") and hasattr(source, "settings"):
        source = source.merge(int(source.settings["n_rows"]), arrays=False)
    if isinstance(source, WordHeatmaps):
        rows = int(source.cmi_image.shape[0])
        draws = int(source.cmi_samples.sum() + source.mi_samples.sum()) if source.cmi_samples is not None \
            else 2 * n * rows
        met = None if source.cmi_target_met is None else int((source.cmi_target_met & source.mi_target_met).sum())
    elif isinstance(source, pd.DataFrame):
        rows = len(source)
        if all(c in source.columns for c in PRECISION_COLUMNS):
            draws = int(source["cmi_samples"].sum() + source["mi_samples"].sum())
            met = int((source["cmi_target_met"].astype(bool) & source["mi_target_met"].astype(bool)).sum())
        else:
            draws, met = 2 * n * rows, None
    else:
        raise TypeError(f"map_evaluations takes WordHeatmaps, a table or a store, got {type(source).__name__}")
    return {"evaluations": 2 * draws, "fixed": 4 * n * rows, "rows": rows, "met": met}


# ─────────────────────────────────────── a dataset's maps, sharded ───────────────────────────────────────

def batch_generator(seed: int, batch: int) -> torch.Generator:
    """The CPU generator of aligned batch ``batch`` (rows ``batch·batch_size …``): seeded by
    ``example_seed(seed, batch)``, so a batch draws the same numbers in every run and every process."""
    return torch.Generator().manual_seed(example_seed(seed, batch))


def _f16(t: Tensor) -> Tensor:
    return t.detach().cpu().to(torch.float16)


def map_proposal(model, data: Sequence[Mapping], *, dataset: str, store_root: str | Path | None = "runs",
                 seed: int = 0, n_rows: int = PILOT_ROWS) -> FittedLogSNRSampling:
    """The corrected protocol's log-SNR proposal for the maps of ``data`` (i.i.d. rule "fitted"; :func:`run_heatmaps`
    stratifies it): fitted to the squared integrand of the CMI map (caption against context, summed over pixels,
    :func:`~infodecomp.proposals.pilot_second_moment`) by a pilot on the first ``n_rows`` rows, and cached in
    ``<store_root>/proposals.json`` by the model's identity, the dataset, the rows and the seed. The MI maps use the
    same proposal (its weights are exact for any quantity). A pilot costs ``n_rows`` × 96 × 2 UNet evaluations."""
    rows = [data[i] for i in range(min(len(data), count(n_rows, "n_rows")))]
    st = protocol_settings("corrected")
    gen = torch.Generator().manual_seed(example_seed(seed, f"proposal-pilot:{dataset}"))
    x = model.encode_images([r["image"] for r in rows], posterior=st["posterior"], generator=gen, resize="bicubic",
                            size=model.resolution)
    enc = model.encode_prompts([r["caption"] for r in rows] + [r["context"] for r in rows]).to(x.device)
    cache = ProposalCache(Path(store_root) / "proposals.json") if store_root is not None else None
    setting = {"experiment": "heatmaps", "dataset": dataset, "rows": [str(r["id"]) for r in rows], "seed": seed}
    return fitted_proposal(model.denoiser, x, enc[:len(rows), None], enc[len(rows):], quantity="pixel_info_o",
                           cache=cache, identity=model_identity(model), setting=setting,
                           base=LogSNRSampling(clip=st["clip"]), generator=gen)


def map_sampling(model, data: Sequence[Mapping], sampling: str, protocol: str, *, dataset: str, draws: int,
                 store_root: str | Path | None = "runs", seed: int = 0) -> FittedLogSNRSampling | None:
    """The maps' log-SNR sampling for ``sampling`` (:data:`~infodecomp.proposals.SAMPLINGS`) under ``protocol``: None
    for the paper's truncated logistic, or :func:`map_proposal` stratified for estimates of ``draws`` draws per call
    (``n_samples``, or a precision target's block: :func:`~infodecomp.proposals.stratified`)."""
    if resolve_sampling(sampling, protocol) == "paper":
        return None
    return stratified(map_proposal(model, data, dataset=dataset, store_root=store_root, seed=seed), draws)


def run_heatmaps(model, data: Sequence[Mapping], *, dataset: str, n_samples: int = 32, protocol: str = "corrected",
                 mi_cond: str = "label", attention: bool = True, attention_samples: int | None = None, seed: int = 0,
                 batch_size: int = 8, store: ResultStore | str | Path | None = None, store_root: str | Path = "runs",
                 target_stderr: float | None = None, relative_stderr: float | None = None, block: int | None = None,
                 sampling: str = "paper", progress: bool = True, state=None, process_index: int | None = None,
                 num_processes: int | None = None) -> ResultStore:
    """The MI / CMI maps (and the Attention+Information map when ``attention``) of every row of ``data``, in a
    resumable store; shards over the processes of a launch (every process returns when all are done).

    Args:
        model: an ``infodecomp.models.Model``; data: localization-format rows (:func:`word_heatmaps`).
        dataset: the dataset's name (the store's folder name and identity, e.g. ``"coco-wl"``).
        n_samples, protocol, mi_cond, attention, attention_samples: as :func:`word_heatmaps`.
        target_stderr, relative_stderr, block: a precision target (corrected protocol only; ``n_samples`` is then
            the cap), as :func:`word_heatmaps`; part of the store's identity when given.
        sampling: the maps' log-SNR draws (:data:`~infodecomp.proposals.SAMPLINGS`): "paper" (the truncated
            logistic), "fitted" (corrected protocol: a proposal fitted to the CMI map's integrand by a pilot on the
            first :data:`~infodecomp.proposals.PILOT_ROWS` rows, stratified, cached in
            ``<store_root>/proposals.json``; part of the store's identity), or "auto" (fitted if corrected).
        seed: aligned batch ``b`` draws from :func:`batch_generator` ``(seed, b)``.
        batch_size: rows per :func:`word_heatmaps` call and per write; part of the store's identity (it decides
            which rows share a generator).
        store: a store or its folder; None: :func:`~infodecomp.experiments.stores.store_path` under
            ``store_root`` (``<store_root>/<model>/heatmaps/<dataset>-<protocol>-<hash>``).
        state, process_index, num_processes: the shard (default: from the launcher; see
            :func:`~infodecomp.results.run_sharded`).
    Each row: ``id``, ``word``, ``word_type``, ``cmi_image``, ``mi_image``, ``cmi_stderr``, ``mi_stderr`` (nats)
    and the float16 ``[h, w]`` maps ``cmi``, ``mi`` and (with ``attention``) ``attention``; under a target also
    :data:`PRECISION_COLUMNS`. Returns the store.
    """
    protocol_settings(protocol)  # validates
    if mi_cond not in MI_CONDS:
        raise ValueError(f"mi_cond must be one of {MI_CONDS}; got {mi_cond!r}")
    n_samples, batch_size = count(n_samples, "n_samples"), count(batch_size, "batch_size")
    precision = precision_settings(protocol, n_samples, target_stderr, relative_stderr, block)
    if attention_samples is not None:
        attention_samples = count(attention_samples, "attention_samples")
    if not isinstance(dataset, str) or not dataset:
        raise ValueError(f"dataset must be a non-empty name, got {dataset!r}")
    if len(data) == 0:
        raise ValueError(f"dataset {dataset!r} has no rows")
    proposal = map_sampling(model, data, sampling, protocol, dataset=dataset,
                            draws=precision["block"] if precision else n_samples, store_root=store_root, seed=seed)
    # other rows under the same name (a ShapesWorld twin and the real table, say) are refused by their ids
    # (run_sharded checks the stored rows' ids against the examples at their indices), never mixed
    settings = {"experiment": "heatmaps", "dataset": dataset, "n_rows": len(data), "n_samples": n_samples,
                "protocol": protocol, "mi_cond": mi_cond, "attention": bool(attention),
                "attention_samples": (attention_samples or n_samples) if attention else None,
                "batch_size": batch_size, **precision}  # the target only when given: older stores keep their name
    if proposal is not None:  # likewise the sampling
        settings["sampling"] = proposal.to_dict()
    if not isinstance(store, ResultStore):
        path = store if store is not None else store_path(store_root, model, "heatmaps", dataset, settings, seed,
                                                          protocol=protocol)
        store = ResultStore(path, settings, model=model_identity(model), seed=seed)

    def fn_batch(given, todo):
        b, idx, rows = aligned_batch(data, todo, given, batch_size)
        hm = word_heatmaps(model, rows, n_samples=n_samples, protocol=protocol, mi_cond=mi_cond,
                           attention=attention, attention_samples=attention_samples,
                           generator=batch_generator(seed, b), sampling=proposal, **precision)
        out = []
        for k, (i, r) in enumerate(zip(idx, rows)):
            if i not in todo:
                continue
            row = {"id": r["id"], "word": r["word"], "word_type": r.get("word_type", ""),
                   "cmi_image": float(hm.cmi_image[k]), "mi_image": float(hm.mi_image[k]),
                   "cmi_stderr": float(hm.cmi_stderr[k]), "mi_stderr": float(hm.mi_stderr[k]),
                   "cmi": _f16(hm.cmi[k]), "mi": _f16(hm.mi[k]), **precision_columns(hm, k)}
            if attention:
                row["attention"] = _f16(hm.attention[k])
            out.append(row)
        return out

    run_sharded(data, fn_batch, store, batch_size, state=state, process_index=process_index,
                num_processes=num_processes, with_indices=True, aligned=True, desc=f"heat maps ({dataset})",
                progress=progress)
    return store


def stored_heatmaps(store: ResultStore, n_rows: int) -> WordHeatmaps:
    """The maps of a complete store of :func:`run_heatmaps` as :class:`WordHeatmaps` (float32, rows in dataset
    order); :class:`~infodecomp.results.IncompleteResultsError` unless rows ``0 … n_rows − 1`` are all there."""
    frame = store.merge(n_rows)
    maps = lambda col: torch.from_numpy(np.stack([np.asarray(m, np.float32) for m in frame[col]]))  # noqa: E731
    scalars = lambda col: torch.tensor(frame[col].to_numpy(np.float64))  # noqa: E731
    col = lambda c, dt: torch.tensor(frame[c].to_numpy(dt)) if c in frame.columns else None  # noqa: E731
    n = int(store.settings["n_samples"])
    fixed = torch.full((len(frame),), n, dtype=torch.int64)
    return WordHeatmaps(cmi=maps("cmi"), mi=maps("mi"), cmi_image=scalars("cmi_image"),
                        mi_image=scalars("mi_image"), cmi_stderr=scalars("cmi_stderr"),
                        mi_stderr=scalars("mi_stderr"),
                        attention=maps("attention") if "attention" in frame.columns else None,
                        cmi_samples=col("cmi_samples", np.int64) if "cmi_samples" in frame.columns else fixed,
                        mi_samples=col("mi_samples", np.int64) if "mi_samples" in frame.columns else fixed.clone(),
                        cmi_target_met=col("cmi_target_met", bool), mi_target_met=col("mi_target_met", bool))


def run(model, data: Sequence[Mapping], *, dataset: str, **options) -> WordHeatmaps:
    """:func:`run_heatmaps` then :func:`stored_heatmaps`: the maps of every row of ``data`` (what notebook 04
    draws). Under a launch every process computes its share and returns all of them."""
    return stored_heatmaps(run_heatmaps(model, data, dataset=dataset, **options), len(data))
