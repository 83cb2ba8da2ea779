"""Relation testing on ARO by pointwise information (paper Sec. 3.1, Tables 1 and 2; docs/protocol.md#relation-testing).

Every candidate caption y_m of an image x is scored by its pointwise information against the null prompt ∅,

    s_m = i^o(x; y_m ‖ ∅) = ½ ∫ E_ε ‖ε̂(z_λ | y_m) − ε̂(z_λ | ∅)‖² dλ        (the paper's score, nats)

(or i^s = log p(x|y_m) − log p(x), an option), and the prediction is the best-scoring candidate. The baseline
row of Table 1 (DiffITM, Krojer et al. 2023; the Diffusion Classifier of Li et al. 2023) scores by the negative
denoising error −E‖ε − ε̂(z_λ | y_m)‖²; here it comes from the *same* denoiser evaluations. For every example
the log-SNR draws λ_k and the noise ε_k are shared by all candidates and the null prompt is evaluated once per
draw (docs/architecture.md#shared-noise); the estimates come from :func:`infodecomp.estimators.information_scores`.

Standard errors. The ``n_samples`` draws of an example are split into ``blocks`` independent replicate blocks
(each its own λ's and ε's, shared by every candidate inside the block). Each score's standard error pools the
per-block standard errors of the estimator core; the standard error of a *difference* of two candidates' scores
(``margin_*_se``: true caption minus its best rival) comes from the spread of the paired block differences, so
it includes the covariance that shared noise creates.

Protocols (docs/protocol.md#relation-testing-settings; docs/protocol.md#b2, docs/protocol.md#b16):

============  ===================================================  ==========================================
setting       ``faithful`` (what the reference ran)                 ``corrected``
============  ===================================================  ==========================================
clip          4 (the nll path's default, docs/protocol.md#b2):      3: λ ∈ [−5, 7], inside SD's trained range
              λ ∈ [−7, 9]
latent        one sample of the VAE posterior (seeded)              the posterior mean
exact ties    count against the true caption (docs/protocol.md#b16) count 1/k for a k-way tie (``fractional``)
============  ===================================================  ==========================================

Ties are always counted (``n_ties``). Identical candidate captions are evaluated once, so they tie exactly.

Typical use (a notebook does this)::

    model = load_model("shapes-tiny")
    data = relation_testing.load_dataset("vg-relation", 200, seed=0)
    frame = relation_testing.run(model, data, dataset="vg-relation", seed=0,
                                 settings=relation_testing.RelationSettings(protocol="faithful"))
    tables = relation_testing.accuracy_tables(frame, exclude_groups=my_symmetric_relations)

Shard across processes with ``accelerate launch --num_processes P script.py`` (each process writes its own
shard of the store; every process returns the merged table at the end). A killed run resumes.

The rows and their loaders are in :mod:`~infodecomp.experiments.relation_data`, the per-example table and the
accuracy tables in :mod:`~infodecomp.experiments.relation_tables` (both re-exported here); the OpenCLIP row of
Table 1 is :mod:`~infodecomp.experiments.clip_baseline`.
"""

from __future__ import annotations

import dataclasses
import math
import numbers
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from ..data.shapes import ShapesTwin
from ..estimators import information_scores
from ..logsnr import LogSNRSampling
from ..metrics import TIE_POLICIES
from ..models.identity import model_identity
from ..proposals import PILOT_ROWS, FittedLogSNRSampling, ProposalCache, fitted_proposal, resolve_sampling
from ..results import ResultStore, example_seed, markdown_table, run_sharded, save_tables
from . import stores
from .relation_data import ARO_DATASETS, _Head, check_rows, load_dataset, read_relation_list
from .relation_tables import (ARO_AGGREGATION, METHOD_LABELS, METHODS, PAPER_TABLE1, RelationTables, _check_method,
                              accuracy_tables, add_scores, compare_methods, example_frame, group_table,
                              min_group_size, paper_rows, table1)
from .sequential import SequentialRule, sequential_scores

__all__ = [
    "PROTOCOLS", "SCORES", "METHODS", "METHOD_LABELS", "ARO_DATASETS", "ARO_AGGREGATION", "RelationSettings",
    "CandidateScores", "RelationTables", "score_candidates", "score_rows", "run", "store_path", "store_identity",
    "example_frame", "accuracy_tables", "min_group_size", "add_scores", "compare_methods", "table1", "PAPER_TABLE1",
    "paper_rows", "group_table", "with_proposal",
    "load_dataset", "read_relation_list", "markdown_table", "save_tables", "check_rows", "default_blocks",
]

PROTOCOLS = ("faithful", "corrected")
SCORES = ("orthogonal", "standard")
_PROTOCOL_DEFAULTS = {
    "faithful": {"clip": 4.0, "posterior": "sample", "tie_policy": "against_true"},
    "corrected": {"clip": 3.0, "posterior": "mean", "tie_policy": "fractional"},
}
_RESIZE = ("bicubic", "bilinear", "lanczos", "nearest")


# ──────────────────────────────────────────────── settings ────────────────────────────────────────────────

def default_blocks(n_samples: int) -> int:
    """The number of replicate blocks for ``n_samples`` draws when none is given: the divisor of ``n_samples``
    nearest to 10 (the reference's 10 blocks of 10 draws), the larger one on a tie. 100 → 10, 25 → 5, 32 → 8,
    48 → 12, 7 → 7 (blocks of one draw: the standard error then comes from the spread of the blocks), 1 → 1."""
    if isinstance(n_samples, bool) or not isinstance(n_samples, numbers.Integral) or n_samples < 1:
        raise ValueError(f"n_samples must be an integer >= 1, got {n_samples!r}")
    n = int(n_samples)
    divisors = [d for d in range(1, n + 1) if n % d == 0]
    return min(divisors, key=lambda d: (abs(d - 10), -d))


@dataclass(frozen=True)
class RelationSettings:
    """Settings of relation testing, with the paper's defaults (docs/protocol.md#relation-testing-procedure).

    protocol: "faithful" or "corrected" (see the module docstring); it supplies ``clip``, ``posterior`` and
        ``tie_policy`` unless those are given explicitly (``None`` = the protocol's value).
    score: the information score that makes the prediction of the "Info" row: "orthogonal" (i^o, the paper) or
        "standard" (i^s). Both, and the −MMSE baseline, are always computed from the same evaluations.
    n_samples: (λ, ε) draws per example (paper: 100), split into ``blocks`` replicate blocks (must divide it).
        ``blocks=None`` (default) derives them from ``n_samples`` (:func:`default_blocks`: the divisor of
        ``n_samples`` nearest to 10, the larger one on a tie): 10 for 100 draws as the reference, 5 for 25, 8 for
        32, 7 for 7 (blocks of one draw), so any ``n_samples`` works.
    loc, scale: the truncated logistic over log-SNR (paper: 1, 2); clip: its half-width in scales.
    posterior: "sample" (one VAE posterior draw, seeded per example) or "mean".
    tie_policy: how an exact tie of the true caption for the top score counts (:data:`metrics.TIE_POLICIES`).
    resize: interpolation that resizes images to the model's resolution (the reference: bicubic to 512²).
    adaptive: a :class:`~infodecomp.experiments.sequential.SequentialRule` (corrected protocol only): score each
        example in blocks of shared draws and stop once the ``score``'s leader is significantly ahead of every
        rival (a sequential test with error rate ``adaptive.alpha``), dropping rivals that are significantly
        behind. ``n_samples`` is then the cap and must equal ``adaptive.max_samples``. None (default): the fixed
        ``n_samples`` draws of the paper. The i^o, i^s and −MMSE rows all come from the same evaluations, but only
        the ``score``'s row is decided by the test (the others use each candidate's draws until it was dropped).
    proposal: a log-SNR proposal fitted to the model and the deciding margin (:func:`fitted_settings`, corrected
        protocol only): the draws come from it instead of the truncated logistic, with exact importance weights,
        so every score stays unbiased for the same range (loc ± clip·scale, which must be the proposal's). It is
        part of a store's identity. None (default): the paper's truncated logistic.
    """

    protocol: str = "faithful"
    score: str = "orthogonal"
    n_samples: int = 100
    blocks: int | None = None
    loc: float = 1.0
    scale: float = 2.0
    clip: float | None = None
    posterior: str | None = None
    tie_policy: str | None = None
    resize: str = "bicubic"
    adaptive: SequentialRule | None = None
    proposal: FittedLogSNRSampling | None = None

    def __post_init__(self):
        if self.protocol not in PROTOCOLS:
            raise ValueError(f"protocol must be one of {PROTOCOLS}, got {self.protocol!r}")
        if self.score not in SCORES:
            raise ValueError(f"score must be one of {SCORES} (i^o or i^s), got {self.score!r}")
        for name in ("n_samples", "blocks"):
            v = getattr(self, name)
            if v is None and name == "blocks":
                continue
            if isinstance(v, bool) or not isinstance(v, numbers.Integral) or v < 1:
                raise ValueError(f"{name} must be an integer >= 1{' or None' if name == 'blocks' else ''}, "
                                 f"got {v!r} ({type(v).__name__})")
            object.__setattr__(self, name, int(v))  # numpy integers become ints (JSON, hashing)
        if self.blocks is not None and self.n_samples % self.blocks:
            raise ValueError(f"blocks ({self.blocks}) must divide n_samples ({self.n_samples}): each replicate "
                             "block gets n_samples / blocks draws")
        if self.posterior is not None and self.posterior not in ("sample", "mean"):
            raise ValueError(f"posterior must be 'sample', 'mean' or None (the protocol's), got {self.posterior!r}")
        if self.tie_policy is not None and self.tie_policy not in TIE_POLICIES:
            raise ValueError(f"tie_policy must be one of {TIE_POLICIES} or None, got {self.tie_policy!r}")
        if self.resize not in _RESIZE:
            raise ValueError(f"resize must be one of {_RESIZE}, got {self.resize!r}")
        if self.adaptive is not None:
            if not isinstance(self.adaptive, SequentialRule):
                raise TypeError(f"adaptive must be a SequentialRule or None, got {type(self.adaptive).__name__}")
            if self.protocol != "corrected":
                raise ValueError("adaptive relation testing is an option of the corrected protocol; the faithful "
                                 "protocol keeps the paper's fixed draws (set protocol='corrected')")
            if self.adaptive.max_samples != self.n_samples:
                raise ValueError(f"with adaptive, n_samples is the cap: it must equal adaptive.max_samples "
                                 f"({self.adaptive.max_samples}), got n_samples={self.n_samples}")
        if self.proposal is not None:
            if not isinstance(self.proposal, FittedLogSNRSampling):
                raise TypeError(f"proposal must be a FittedLogSNRSampling (rt.fitted_settings) or None, got "
                                f"{type(self.proposal).__name__}")
            if self.protocol != "corrected":
                raise ValueError("a fitted log-SNR proposal is an option of the corrected protocol; the faithful "
                                 "protocol keeps the paper's truncated logistic (set protocol='corrected')")
            if self.proposal.rule != "fitted":
                raise ValueError(f"proposal must be i.i.d. (rule 'fitted'), got {self.proposal.rule!r}; stratify "
                                 "with SequentialRule(qmc=True)")
            want = (float(self.loc), float(self.scale), self.effective_clip)
            have = (self.proposal.loc, self.proposal.scale, self.proposal.clip)
            if not np.allclose(want, have):
                raise ValueError(f"the proposal covers loc, scale, clip = {have}, the settings {want}: fit it for "
                                 "these settings (rt.fitted_settings)")
        self.sampling  # validates loc / scale / clip

    @property
    def effective_blocks(self) -> int:
        """``blocks``, or :func:`default_blocks` of ``n_samples`` when it is None."""
        return int(self.blocks) if self.blocks is not None else default_blocks(self.n_samples)

    @property
    def effective_clip(self) -> float:
        return float(self.clip if self.clip is not None else _PROTOCOL_DEFAULTS[self.protocol]["clip"])

    @property
    def effective_posterior(self) -> str:
        return self.posterior or _PROTOCOL_DEFAULTS[self.protocol]["posterior"]

    @property
    def effective_tie_policy(self) -> str:
        return self.tie_policy or _PROTOCOL_DEFAULTS[self.protocol]["tie_policy"]

    @property
    def sampling(self) -> LogSNRSampling:
        """The log-SNR rule: the fitted ``proposal`` when there is one, else the truncated logistic, loc ± clip·scale
        (faithful clip 4 = ``LogSNRSampling.faithful()``)."""
        if self.proposal is not None:
            return self.proposal
        return LogSNRSampling(rule="logistic", loc=float(self.loc), scale=float(self.scale), clip=self.effective_clip)

    def resolved(self) -> dict:
        """Every field with the protocol's choices filled in (what is stored as provenance)."""
        return {**dataclasses.asdict(self), "blocks": self.effective_blocks, "clip": self.effective_clip,
                "posterior": self.effective_posterior, "tie_policy": self.effective_tie_policy}

    @property
    def method(self) -> str:
        """The METHODS name of ``score``: "info_o" (orthogonal) or "info_s" (standard)."""
        return "info_o" if self.score == "orthogonal" else "info_s"


# ───────────────────────────────────────────── scoring (pure) ─────────────────────────────────────────────

@dataclass(frozen=True)
class CandidateScores:
    """Scores of the M candidate captions of ONE example (all from the same denoiser evaluations)."""

    orthogonal: Tensor          # [M] i^o(x; y_m ‖ ∅), nats (higher = better match in the paper)
    orthogonal_stderr: Tensor   # [M]
    standard: Tensor            # [M] i^s(x; y_m ‖ ∅) ≈ log p(x|y_m) − log p(x), nats
    standard_stderr: Tensor     # [M]
    mmse: Tensor                # [M] E_{λ~q, ε}‖ε − ε̂(z_λ|y_m)‖², summed over latent dims (lower = better)
    mmse_stderr: Tensor         # [M]
    null_mmse: Tensor           # [] the same for the null prompt
    null_mmse_stderr: Tensor    # []
    blocks: dict                # {"info_o" | "info_s" | "mmse": [R, M]} per-block estimates (for differences)
    n_samples: int              # (λ, ε) draws
    n_evaluations: int          # denoiser rows: n_samples × (unique candidates + 1)

    def score(self, method: str) -> Tensor:
        """[M] the score of ``method`` with higher = better: i^o, i^s, or −MMSE."""
        return {"info_o": self.orthogonal, "info_s": self.standard, "mmse": -self.mmse}[_check_method(method)]

    def stderr(self, method: str) -> Tensor:
        return {"info_o": self.orthogonal_stderr, "info_s": self.standard_stderr,
                "mmse": self.mmse_stderr}[_check_method(method)]

    def difference_stderr(self, method: str, i: int, j: int) -> float:
        """Standard error of score_i − score_j (paired: the blocks share noise), from the block spread.

        NaN with a single block."""
        b = self.blocks[_check_method(method)].to(torch.float64)
        d = b[:, i] - b[:, j]
        return float(d.std(correction=1) / math.sqrt(d.numel())) if d.numel() > 1 else math.nan


def score_candidates(denoiser, x: Tensor, conds: Tensor, null: Tensor, *, n_samples: int = 100, blocks: int = 10,
                     sampling: LogSNRSampling | None = None, chunk_size: int = 256,
                     generator: torch.Generator | None = None) -> CandidateScores:
    """i^o, i^s and the denoising error of M candidate conditions of one example, on shared draws.

    denoiser: ``eps_hat = denoiser(z, logsnr, cond)`` (docs/architecture.md#denoiser-interface). x: ``[*X]``
    (or ``[1, *X]``) the clean latent of the image; conds: ``[M, *C]`` the candidates' conditions (e.g. prompt
    embeddings ``[M, 77, D]``); null: ``[*C]`` the null prompt's condition. ``n_samples`` (λ, ε) draws from
    ``sampling`` (default: the paper's truncated logistic, loc 1, scale 2, clip 3), split into ``blocks``
    independent replicate blocks of ``n_samples / blocks`` draws; inside a block every draw is shared by all M
    candidates and the null condition, which is evaluated once per draw. ``chunk_size``: most rows per denoiser call (results do not depend on it).
    Returns :class:`CandidateScores` (nats; MMSE summed over latent dimensions).
    """
    if not isinstance(x, Tensor) or not x.is_floating_point():
        raise TypeError(f"x must be a floating-point tensor (one example's latent), got {type(x).__name__}")
    if not isinstance(conds, Tensor) or not isinstance(null, Tensor):
        raise TypeError(f"conds and null must be tensors, got {type(conds).__name__} and {type(null).__name__}")
    if conds.ndim != null.ndim + 1 or tuple(conds.shape[1:]) != tuple(null.shape):
        raise ValueError(f"conds must be [M, *C] with null [*C]; got conds {tuple(conds.shape)} and null "
                         f"{tuple(null.shape)}")
    M = conds.shape[0]
    if M < 1:
        raise ValueError("need at least one candidate condition")
    if x.ndim >= 2 and x.shape[0] == 1:
        x = x[0]
    for name, v in (("n_samples", n_samples), ("blocks", blocks)):
        if isinstance(v, bool) or not isinstance(v, numbers.Integral) or v < 1:
            raise ValueError(f"{name} must be an integer >= 1, got {v!r}")
    if n_samples % blocks:
        raise ValueError(f"blocks ({blocks}) must divide n_samples ({n_samples})")
    sampling = sampling if sampling is not None else LogSNRSampling()
    R, per_block = int(blocks), n_samples // blocks
    # The R blocks are R copies of the example in one call of the estimator core: each copy gets its own λ's
    # and ε's (share_logsnr=False), shared by all its conditions.
    xr = x.unsqueeze(0).expand(R, *x.shape)
    cr = conds.unsqueeze(0).expand(R, *conds.shape)
    nr = null.unsqueeze(0).expand(R, *null.shape)
    s = information_scores(denoiser, xr, cr, nr, n_samples=per_block, sampling=sampling, share_logsnr=False,
                           chunk_size=max(int(chunk_size), M + 1), generator=generator)

    def pooled(values: Tensor, ses: Tensor) -> tuple[Tensor, Tensor]:
        """block estimates [R, ...] → (mean, stderr): pooled within-block stderrs, or the block spread."""
        v = values.to(torch.float64)
        mean = v.mean(0)
        if per_block >= 2:
            se = ses.to(torch.float64).pow(2).sum(0).sqrt() / R
        elif R >= 2:
            se = v.std(0, correction=1) / math.sqrt(R)
        else:
            se = torch.full_like(mean, math.nan)
        return mean, se

    o, o_se = pooled(s.orthogonal, s.orthogonal_stderr)
    st, st_se = pooled(s.standard, s.standard_stderr)
    mm, mm_se = pooled(s.mmse, s.mmse_stderr)
    nm, nm_se = pooled(s.ref_mmse, s.ref_mmse_stderr)
    return CandidateScores(
        orthogonal=o, orthogonal_stderr=o_se, standard=st, standard_stderr=st_se, mmse=mm, mmse_stderr=mm_se,
        null_mmse=nm, null_mmse_stderr=nm_se,
        blocks={"info_o": s.orthogonal.to(torch.float64), "info_s": s.standard.to(torch.float64),
                "mmse": -s.mmse.to(torch.float64)},
        n_samples=n_samples, n_evaluations=n_samples * (M + 1))


# ─────────────────────────────────────────── rows of a dataset ───────────────────────────────────────────


def _margin(scores: CandidateScores, method: str, true_index: int) -> tuple[float, float, int]:
    """(score_true − score_best_rival, its paired stderr, the rival's index)."""
    s = scores.score(method).to(torch.float64)
    others = [j for j in range(s.numel()) if j != true_index]
    rival = max(others, key=lambda j: float(s[j]))
    return float(s[true_index] - s[rival]), scores.difference_stderr(method, true_index, rival), rival


def _floats(t: Tensor) -> list[float]:
    return [float(v) for v in t.detach().cpu().to(torch.float64).reshape(-1)]


def score_rows(model, rows: Sequence[Mapping], settings: RelationSettings | None = None, *, seed: int = 0,
               chunk_size: int = 256) -> list[dict]:
    """Score relation-testing rows with a model; one result dict per row (what the store keeps).

    model: an :class:`infodecomp.models.Model` (``encode_images``, ``encode_prompts``, ``denoiser``,
    ``resolution``). rows: dataset rows (:func:`check_rows`). Per row the randomness (VAE posterior sample,
    λ and ε) comes from ``torch.Generator().manual_seed(example_seed(seed, row["id"]))`` (a CPU generator, so
    the numbers do not depend on the batch, the shard, or the device's RNG). Captions are encoded once per
    batch (truncated to the tokenizer's limit, as the reference, docs/protocol.md#encoding); identical captions of a row
    are evaluated once and tie exactly. Returned fields (lists are per candidate, in caption order):
    ``group, true_index, n_candidates, captions, info_o, info_o_se, info_s, info_s_se, mmse, mmse_se, null_mmse,
    null_mmse_se, margin_<method>, margin_<method>_se, n_evaluations`` and the per-block arrays
    ``blocks_<method>`` ``[R, M]`` (float32).
    """
    settings = settings if settings is not None else RelationSettings()
    rows = list(rows)
    check_rows(rows)
    if not rows:
        return []
    unique_caps = list(dict.fromkeys(c for r in rows for c in r["captions"]))
    emb = model.encode_prompts(unique_caps + [""], truncate=True)
    where = {c: i for i, c in enumerate(unique_caps)}
    null = emb[len(unique_caps)]
    out = []
    for r in rows:
        gen = torch.Generator().manual_seed(example_seed(seed, r["id"]))
        x = model.encode_images([r["image"]], posterior=settings.effective_posterior, generator=gen,
                                resize=settings.resize, size=model.resolution)
        caps = list(r["captions"])
        uniq = list(dict.fromkeys(caps))
        conds = emb[[where[c] for c in uniq]].to(x.device)
        if settings.adaptive is not None:
            out.append(_adaptive_row(model, r, x[0], conds, null.to(x.device), [uniq.index(c) for c in caps],
                                     settings, chunk_size, gen))
            continue
        s = score_candidates(model.denoiser, x[0], conds, null.to(x.device), n_samples=settings.n_samples,
                             blocks=settings.effective_blocks, sampling=settings.sampling, chunk_size=chunk_size,
                             generator=gen)
        s = _expand(s, [uniq.index(c) for c in caps])
        t = int(r["true_index"])
        row = {"id": r["id"], "group": r["group"], "true_index": t, "n_candidates": len(caps), "captions": caps,
               "info_o": _floats(s.orthogonal), "info_o_se": _floats(s.orthogonal_stderr),
               "info_s": _floats(s.standard), "info_s_se": _floats(s.standard_stderr),
               "mmse": _floats(s.mmse), "mmse_se": _floats(s.mmse_stderr),
               "null_mmse": float(s.null_mmse), "null_mmse_se": float(s.null_mmse_stderr),
               "n_evaluations": s.n_evaluations}
        for m in METHODS:
            row[f"margin_{m}"], row[f"margin_{m}_se"], _ = _margin(s, m, t)
            row[f"blocks_{m}"] = s.blocks[m].to(torch.float32).cpu().numpy()
        out.append(row)
    return out


def _adaptive_row(model, r: Mapping, x: Tensor, conds: Tensor, null: Tensor, index: list[int],
                  settings: RelationSettings, chunk_size: int, gen: torch.Generator) -> dict:
    """One row scored under the sequential rule (``settings.adaptive``), with the fields of :func:`score_rows`
    plus ``adaptive_method``, ``survivors`` (per caption: still active when the example stopped), ``n_draws`` (per
    caption) and ``decided`` (the test left one caption). Scores are each caption's means over its draws."""
    method = settings.method
    t = int(r["true_index"])
    caps = list(r["captions"])
    if conds.shape[0] < 2:  # every caption the same text: an exact tie, nothing to decide
        rule = dataclasses.replace(settings.adaptive, alpha=0.0, first_look=settings.n_samples)
        conds = torch.cat([conds, conds])
        index = [0] * len(caps)
    else:
        rule = settings.adaptive
    s = sequential_scores(model.denoiser, x, conds, null, method=method, rule=rule, sampling=settings.sampling,
                          evaluate_null=True, chunk_size=chunk_size, generator=gen)
    ix = np.asarray(index)
    survivors = np.isin(np.arange(conds.shape[0]), [s.prediction]) | (s.dropped_at == 0)
    row = {"id": r["id"], "group": r["group"], "true_index": t, "n_candidates": len(caps), "captions": caps,
           "null_mmse": math.nan, "null_mmse_se": math.nan, "n_evaluations": s.n_evaluations,
           "adaptive_method": method, "survivors": [bool(v) for v in survivors[ix]],
           "n_draws": [int(v) for v in s.n_draws[ix]], "decided": s.decided}
    for m, col in (("info_o", "info_o"), ("info_s", "info_s"), ("mmse", "mmse")):
        sign = -1.0 if m == "mmse" else 1.0  # the store keeps MMSE itself (lower = better)
        row[col] = [sign * float(v) for v in s.mean(m)[ix]]
        row[f"{col}_se"] = [float(v) for v in s.stderr(m)[ix]]
        score = s.mean(m)[ix]
        rival = max((j for j in range(len(caps)) if j != t), key=lambda j: score[j])
        row[f"margin_{m}"], row[f"margin_{m}_se"] = s.difference(int(ix[t]), int(ix[rival]), m)
        if ix[t] == ix[rival]:
            row[f"margin_{m}"] = 0.0
        row[f"blocks_{m}"] = s.units[m][:, ix].astype(np.float32)
    return row


def _expand(s: CandidateScores, index: list[int]) -> CandidateScores:
    """Scores of unique captions → scores in caption order (duplicates copied: exact ties)."""
    ix = torch.as_tensor(index)
    pick = lambda t: t[ix]
    return dataclasses.replace(
        s, orthogonal=pick(s.orthogonal), orthogonal_stderr=pick(s.orthogonal_stderr), standard=pick(s.standard),
        standard_stderr=pick(s.standard_stderr), mmse=pick(s.mmse), mmse_stderr=pick(s.mmse_stderr),
        blocks={k: v[:, ix] for k, v in s.blocks.items()})


# ─────────────────────────────────────── the corrected protocol's sampling ───────────────────────────────────────

def with_proposal(model, rows: Sequence[Mapping], settings: RelationSettings, proposal: str = "auto", *,
                  dataset: str = "", n_rows: int = PILOT_ROWS, seed: int = 0, store_root: str | Path | None = None,
                  chunk_size: int = 256, verbose: bool = True) -> RelationSettings:
    """``settings`` with the log-SNR sampling of ``proposal`` (:data:`~infodecomp.proposals.SAMPLINGS`): "paper" (the
    truncated logistic, as given), "fitted" (corrected protocol only: a proposal fitted to the model and to the
    margin the settings decide by, i^s → "margin_s", i^o → "margin_o", by a pilot on the first ``n_rows`` rows with
    the most distinct captions), or "auto" (fitted under the corrected protocol, the paper's under the faithful one). The fitted proposal is the
    corrected protocol's sampling for relation testing because it is what measured cheapest on the ShapesWorld
    twins (docs/running.md#adaptive-relation-testing).

    The pilot's draws are not reused by the scores (the rows are scored afterwards with fresh draws): the weights
    are exact for the proposal however it was fitted, so the scores stay unbiased. With ``store_root`` the fitted
    proposal is cached in ``<store_root>/proposals.json`` (:class:`~infodecomp.proposals.ProposalCache`), keyed by
    the model's identity, the dataset, the pilot's rows and the settings, so a rerun reuses it and its stores.
    """
    if not isinstance(settings, RelationSettings):
        raise TypeError(f"settings must be RelationSettings, got {type(settings).__name__}")
    if resolve_sampling(proposal, settings.protocol) == "paper":
        return dataclasses.replace(settings, proposal=None)
    n_rows = int(n_rows)
    if n_rows < 1:
        raise ValueError(f"n_rows (the pilot's rows) must be >= 1, got {n_rows}")
    head = [rows[i] for i in range(min(len(rows), 4 * n_rows))]
    check_rows(head)
    distinct = [len(set(r["captions"])) for r in head]
    M = max(distinct, default=0)
    pilot = [r for r, m in zip(head, distinct) if m == M][:n_rows]
    if M < 2:
        raise ValueError(f"a proposal fitted to a margin needs rows with at least two distinct captions; the first "
                         f"{len(head)} rows of {dataset or 'the data'} have at most {M}")
    base = dataclasses.replace(settings, proposal=None).sampling
    quantity = "margin_s" if settings.method == "info_s" else "margin_o"
    cache = ProposalCache(Path(store_root) / "proposals.json") if store_root is not None else None
    pilot_setting = {"experiment": "relation_testing", "dataset": dataset, "rows": [str(r["id"]) for r in pilot],
                     "posterior": settings.effective_posterior, "resize": settings.resize, "seed": seed}
    gen = torch.Generator().manual_seed(example_seed(seed, f"proposal-pilot:{dataset}"))
    x = torch.cat([model.encode_images([r["image"]], posterior=settings.effective_posterior, generator=gen,
                                       resize=settings.resize, size=model.resolution) for r in pilot])
    conds = torch.stack([model.encode_prompts(list(dict.fromkeys(r["captions"])), truncate=True)
                         for r in pilot]).to(x.device)
    null = model.encode_prompts([""], truncate=True).to(x.device).expand(len(pilot), *conds.shape[2:])
    evaluations = 0

    def counted(z, logsnr, cond):
        nonlocal evaluations
        evaluations += int(z.shape[0])
        return model.denoiser(z, logsnr, cond)

    fitted = fitted_proposal(counted, x, conds, null, quantity=quantity, cache=cache,
                             identity=model_identity(model), setting=pilot_setting, base=base,
                             chunk_size=chunk_size, generator=gen)
    if verbose:
        how = (f"a pilot on {len(pilot)} rows, {evaluations:,} UNet evaluations" if evaluations
               else f"cached in {cache.path}")
        print(f"log-SNR proposal for {dataset or 'the data'}: fitted to {quantity} ({how}; largest weight "
              f"{fitted.max_weight:.0f})")
    return dataclasses.replace(settings, proposal=fitted)


# ─────────────────────────────────────────── the resumable loop ───────────────────────────────────────────

def _data_source(data) -> str:
    """A stable description of where rows come from (part of the store's identity): ShapesWorld twins by name
    and seed (not length: rows do not depend on it), ARO datasets by class, folder and caption order."""
    if isinstance(data, _Head):
        return _data_source(data.rows)
    if isinstance(data, ShapesTwin):
        return f"shapes-twin:{data.name}:seed={data.seed}"
    if hasattr(data, "base") and hasattr(data, "true_first"):
        extra = f":seed={data.seed}" if hasattr(data, "seed") else ""
        return (f"{type(data).__name__}:{Path(data.base).resolve()}:true_first={data.true_first}:"
                f"size={getattr(data, 'size', None)}{extra}")
    return f"custom:{type(data).__name__}"


def store_identity(settings: RelationSettings, dataset: str, source: str) -> dict:
    """The settings that change a store's rows. The tie policy is left out, and so is the prediction score unless
    the adaptive rule is on (it then decides which draws are taken): they are applied when the table is built, from
    the stored scores, so changing them needs no recomputation."""
    applied_later = ("tie_policy",) if settings.adaptive is not None else ("score", "tie_policy")
    ident = {k: v for k, v in settings.resolved().items() if k not in applied_later}
    return {"experiment": "relation_testing", "dataset": dataset, "source": source, **ident}


def store_path(root: str | Path, model, dataset: str, settings: RelationSettings, seed: int,
               source: str = "") -> Path:
    """Where :func:`run` keeps a dataset's per-example rows: ``<root>/<model>/relation_testing/<dataset>-<protocol>-
    <hash>``. The hash covers the settings, the data source, the seed and the model's
    :func:`~infodecomp.models.identity.model_identity` (weights, dtype, device type, cross-attention tokens), so runs
    that differ in any of them never share a store. ``model``: the model (as :func:`run` gets it), or a name
    (then the hash has no model identity: a path for a store made without a model). The naming rule of every
    experiment: :func:`infodecomp.experiments.stores.store_path`."""
    return stores.store_path(root, model, "relation_testing", dataset, store_identity(settings, dataset, source), seed,
                             protocol=settings.protocol)


def run(model, data: Sequence[Mapping], *, dataset: str, settings: RelationSettings | None = None, seed: int = 0,
        store: ResultStore | str | Path | None = None, store_root: str | Path = "runs", batch_size: int = 8,
        chunk_size: int = 256, progress: bool = True, state=None):
    """Score every row of ``data`` (resumable, shardable) and return the per-example table (:func:`example_frame`).

    Args:
        model: an :class:`infodecomp.models.Model` (or anything with ``encode_images``, ``encode_prompts``,
            ``denoiser``, ``resolution``, ``name``, ``revision``).
        data: a sequence of relation-testing rows (ShapesWorld twin or an ARO loader).
        dataset: the dataset's name (recorded in the store and the table; e.g. "vg-relation").
        settings: :class:`RelationSettings` (default: the paper's, faithful protocol).
        seed: per-example randomness is ``example_seed(seed, id)``: results do not depend on batches or shards.
        store: a :class:`~infodecomp.results.ResultStore`, a folder, or None for :func:`store_path` under
            ``store_root``. A store made with other settings raises ``SettingsMismatchError``.
        batch_size: examples per write to the store (a kill loses at most one batch); chunk_size: most rows per
            denoiser call. Neither changes the numbers.
        progress: a tqdm bar with examples per second (process 0). state: an ``accelerate.PartialState`` (default:
            from the launcher; see :func:`infodecomp.results.run_sharded`).
    Returns: the merged per-example DataFrame of all shards, rows in dataset order (every process gets it).
    """
    settings = settings if settings is not None else RelationSettings()
    if not isinstance(settings, RelationSettings):
        raise TypeError(f"settings must be a RelationSettings, got {type(settings).__name__}")
    if not isinstance(dataset, str) or not dataset:
        raise ValueError(f"dataset must be a non-empty name, got {dataset!r}")
    if isinstance(data, Mapping) or not hasattr(data, "__len__") or not hasattr(data, "__getitem__"):
        raise TypeError(f"data must be a sequence of rows (len + indexing), got {type(data).__name__}")
    if len(data) == 0:
        raise ValueError(f"dataset {dataset!r} has no rows")
    source = _data_source(data)
    identity = store_identity(settings, dataset, source)
    if not isinstance(store, ResultStore):
        path = store if store is not None else store_path(store_root, model, dataset, settings, seed, source)
        store = ResultStore(path, identity, model=model_identity(model), seed=seed)

    def fn_batch(batch):
        return score_rows(model, batch, settings, seed=seed, chunk_size=chunk_size)

    run_sharded(data, fn_batch, store, batch_size, state=state, desc=f"{dataset} ({settings.protocol})",
                progress=progress)
    raw = store.merge()
    raw = raw[raw["index"] < len(data)].reset_index(drop=True)
    if len(raw) != len(data):
        raise RuntimeError(f"{store.path}: {len(raw)} of {len(data)} rows after the run; another process may "
                           "still be writing (call with every process of the launch)")
    return example_frame(raw, tie_policy=settings.effective_tie_policy, dataset=dataset,
                         settings=settings.resolved())
