"""Partial information decomposition (PID) of what two words of a prompt tell about an image, per image and per
pixel, from the paper's pointwise estimators (beyond the paper: its Sec. 2 decomposes information over pixels,
not into redundant, unique and synergistic parts).

For an image x, a context c and two words (or word groups) y1, y2, the three pointwise conditional informations

    i1 = i(x; y1 | c),   i2 = i(x; y2 | c),   i12 = i(x; y1, y2 | c)

are estimated on the same (λ, ε) draws from the four denoiser conditions c, c+y1, c+y2, c+y1+y2 (one batch:
M = 3 candidates against the reference c, :func:`infodecomp.estimators.information_terms`), so that every
combination of them has a paired standard error. Their local co-information is ``co = i1 + i2 − i12`` (positive:
the words overlap in what they say about x; negative: together they say more than apart). A redundancy ``R``
fixes the four atoms (Williams & Beer 2010):

    R + U1 = i1,   R + U2 = i2,   R + U1 + U2 + S = i12   →   U1 = i1 − R,  U2 = i2 − R,  S = i12 − i1 − i2 + R.

Two redundancy definitions (:data:`REDUNDANCIES`):

- ``"mmi"``, minimum mutual information (Barrett 2015): ``R = min(i1, i2)``. Simple, and exact for Gaussian
  sources with a one-dimensional target, but it reports redundancy whenever both words are informative, also for
  independent words about disjoint parts of x, and then the same amount of synergy (``S = R`` when co = 0).
- ``"ccs"``, common change in surprisal (Ince 2017), pointwise by construction: ``R = co`` where ``i1``, ``i2``,
  ``i12`` and ``co`` all have the same sign, else 0. Independent words give co = 0 and so R = S = 0. Its local
  atoms may be negative (misinformation), as local informations can be.

Per pixel (``pixelwise``): the same definitions applied pixel by pixel to the maps of Eq. 6, which sum to the
image-level informations. The atoms' maps do NOT sum to the image-level atoms (a minimum or a sign test of sums is
not a sum of minima): a per-pixel MMI in particular is a heuristic picture, not a decomposition of the image's
redundancy. Both estimators work: i^s (``"standard"``) estimates local values log p(x|·) − log p(x|c); i^o
(``"orthogonal"``) has the same average over images drawn with the words but not the same local values, so local
atoms from i^o are not atoms of local log-ratios (its averages are).

Standard errors of the atoms are those of the linear combination of (i1, i2, i12) that the definition selects at
the point estimate (delta method): near a switch (a tie i1 ≈ i2 for MMI, a sign change for CCS) they understate the
uncertainty, and a minimum of two noisy estimates is biased low by up to about their standard error.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from .estimators import ESTIMATORS, InformationTerms, information_terms

__all__ = ["REDUNDANCIES", "ATOMS", "PIDEstimate", "redundancy_coefficients", "atoms", "pid", "pid_from_terms",
           "average_pid"]

REDUNDANCIES = ("mmi", "ccs")
#: The atoms, in the order of the lattice from bottom to top.
ATOMS = ("redundancy", "unique1", "unique2", "synergy")
# Each quantity as coefficients on (i1, i2, i12), before the redundancy's own coefficients are added.
_BASE = {"i1": (1.0, 0.0, 0.0), "i2": (0.0, 1.0, 0.0), "i12": (0.0, 0.0, 1.0), "coinformation": (1.0, 1.0, -1.0),
         "redundancy": (0.0, 0.0, 0.0), "unique1": (1.0, 0.0, 0.0), "unique2": (0.0, 1.0, 0.0),
         "synergy": (-1.0, -1.0, 1.0)}
# How much of R each quantity holds: U1 = i1 − R, U2 = i2 − R, S = i12 − i1 − i2 + R.
_R_SIGN = {"i1": 0.0, "i2": 0.0, "i12": 0.0, "coinformation": 0.0, "redundancy": 1.0, "unique1": -1.0,
           "unique2": -1.0, "synergy": 1.0}


def _check_definition(redundancy: str) -> None:
    if redundancy not in REDUNDANCIES:
        raise ValueError(f"unknown redundancy definition {redundancy!r}; expected one of {REDUNDANCIES}")


def redundancy_coefficients(i1: Tensor, i2: Tensor, i12: Tensor, redundancy: str = "ccs") -> Tensor:
    """The redundancy as a linear combination of (i1, i2, i12), chosen elementwise at these values:
    ``[..., 3]`` coefficients (any common shape of the inputs). ``"mmi"``: (1, 0, 0) where i1 ≤ i2, else
    (0, 1, 0). ``"ccs"``: (1, 1, −1) where i1, i2, i12 and co = i1 + i2 − i12 share a sign (all > 0 or all < 0),
    else (0, 0, 0)."""
    _check_definition(redundancy)
    i1, i2, i12 = torch.broadcast_tensors(torch.as_tensor(i1), torch.as_tensor(i2), torch.as_tensor(i12))
    zero, one = torch.zeros_like(i1, dtype=torch.float64), torch.ones_like(i1, dtype=torch.float64)
    if redundancy == "mmi":
        first = (i1 <= i2).to(torch.float64)
        return torch.stack([first, one - first, zero], -1)
    co = i1 + i2 - i12
    signs = torch.stack([torch.sign(i1), torch.sign(i2), torch.sign(i12), torch.sign(co)])
    agree = ((signs == signs[0]).all(0) & (signs[0] != 0)).to(torch.float64)
    return torch.stack([agree, agree, -agree], -1)


def _coefficients(i1: Tensor, i2: Tensor, i12: Tensor, redundancy: str) -> dict[str, Tensor]:
    """Every quantity of :data:`_BASE` as ``[..., 3]`` coefficients on (i1, i2, i12)."""
    r = redundancy_coefficients(i1, i2, i12, redundancy)
    return {k: torch.tensor(base, dtype=torch.float64) + _R_SIGN[k] * r for k, base in _BASE.items()}


def atoms(i1: Tensor, i2: Tensor, i12: Tensor, redundancy: str = "ccs") -> dict[str, Tensor]:
    """The co-information and the four atoms from values of (i1, i2, i12) of any common shape (exact values, point
    estimates or maps): ``{"coinformation", "redundancy", "unique1", "unique2", "synergy"}``, each that shape."""
    i1, i2, i12 = (torch.as_tensor(v, dtype=torch.float64) for v in (i1, i2, i12))
    coef = _coefficients(i1, i2, i12, redundancy)
    stacked = torch.stack(torch.broadcast_tensors(i1, i2, i12), -1)
    return {k: (coef[k] * stacked).sum(-1) for k in ("coinformation",) + ATOMS}


@dataclass(frozen=True)
class PIDEstimate:
    """Result of :func:`pid`: informations, co-information and atoms per example, with paired standard errors."""

    values: dict[str, Tensor]    # name → [B] nats, names: i1, i2, i12, coinformation, redundancy, unique1,
    #                              unique2, synergy
    stderrs: dict[str, Tensor]   # name → [B] nats (delta method for the atoms: see the module docstring)
    pixel: dict[str, Tensor] | None  # name → [B, *V] per-pixel maps (pixelwise=True), V = variable_shape(x)
    estimator: str               # "orthogonal" | "standard"
    redundancy: str              # "mmi" | "ccs"
    n_samples: int               # log-SNR draws per example (4 denoiser conditions each)

    def __getitem__(self, name: str) -> Tensor:
        return self.values[name]

    def table(self) -> list[dict]:
        """One row per (example, quantity): ``{"example", "quantity", "value", "stderr"}`` (for a DataFrame)."""
        return [{"example": b, "quantity": k, "value": float(v[b]), "stderr": float(self.stderrs[k][b])}
                for k, v in self.values.items() for b in range(v.shape[0])]


def pid_from_terms(terms: InformationTerms, *, estimator: str = "orthogonal", redundancy: str = "ccs"
                   ) -> PIDEstimate:
    """The decomposition from :class:`~infodecomp.estimators.InformationTerms` of the three candidates
    (c+y1, c+y2, c+y1+y2, in this order) against the reference c. Both estimators and both definitions can be read
    from one set of terms: the denoiser runs once."""
    if estimator not in ESTIMATORS:
        raise ValueError(f"unknown estimator {estimator!r}; expected one of {ESTIMATORS}")
    _check_definition(redundancy)
    M = terms.orthogonal.shape[-1]
    if M != 3:
        raise ValueError(f"a two-word decomposition needs the terms of 3 candidates (c+y1, c+y2, c+y1+y2) against "
                         f"the reference c, got {M}")
    eye = torch.eye(3, dtype=torch.float64)
    point = [terms.contrast(eye[j], estimator)[0] for j in range(3)]
    coef = _coefficients(*point, redundancy)  # name → [B, 3]
    values, stderrs = {}, {}
    for name, c in coef.items():
        values[name], stderrs[name] = terms.contrast(c, estimator)
    pixel = None
    maps = terms.pixel_orthogonal if estimator == "orthogonal" else terms.pixel_standard
    if maps is not None:  # [B, 3, *V]
        pixel = {"i1": maps[:, 0], "i2": maps[:, 1], "i12": maps[:, 2],
                 **atoms(maps[:, 0], maps[:, 1], maps[:, 2], redundancy)}
    return PIDEstimate(values=values, stderrs=stderrs, pixel=pixel, estimator=estimator, redundancy=redundancy,
                       n_samples=terms.n_samples)


def pid(denoiser, x: Tensor, context: Tensor, cond1: Tensor, cond2: Tensor, cond12: Tensor, *,
        estimator: str = "orthogonal", redundancy: str = "ccs", pixelwise: bool = False, n_samples: int = 100,
        generator: torch.Generator | None = None, **options) -> PIDEstimate:
    """Partial information decomposition of i(x; y1, y2 | c) for each example.

    x: [B, *X] clean data (latents); context, cond1, cond2, cond12: [B, *C] the denoiser conditions c, c+y1, c+y2
    and c+y1+y2 (for prompts: the embeddings of the prompt with both words deleted, with only y2 deleted, with only
    y1 deleted, and the whole prompt). ``options`` go to :func:`~infodecomp.estimators.information_terms`
    (sampling, chunk_size, noise_per_logsnr, …). Returns :class:`PIDEstimate`; to read the other estimator or
    definition from the same draws, call :func:`~infodecomp.estimators.information_terms` once and
    :func:`pid_from_terms` for each.
    """
    for name, t in (("cond1", cond1), ("cond2", cond2), ("cond12", cond12)):
        if not isinstance(t, Tensor):
            raise TypeError(f"{name} must be a tensor batch-aligned with x, got {type(t).__name__}")
        if t.shape != getattr(context, "shape", None):
            raise ValueError(f"{name} must have the context's shape {tuple(getattr(context, 'shape', ()))}, got "
                             f"{tuple(t.shape)}")
    conds = torch.stack([cond1, cond2, cond12], 1)
    terms = information_terms(denoiser, x, conds, context, n_samples=n_samples, pixelwise=pixelwise,
                              generator=generator, **options)
    return pid_from_terms(terms, estimator=estimator, redundancy=redundancy)


def average_pid(i1: Tensor, i2: Tensor, i12: Tensor, redundancy: str = "ccs") -> dict[str, dict[str, float]]:
    """Atoms of the averages: the decomposition of (mean i1, mean i2, mean i12) over ``[N]`` examples (images
    drawn with the words: their means estimate I(x; y1 | c), I(x; y2 | c), I(x; y1, y2 | c)), each with the
    standard error over examples of the linear combination the definition selects at the means.
    Returns ``{name: {"value", "stderr", "n"}}`` for i1, i2, i12, the co-information and the atoms."""
    v = torch.stack([torch.as_tensor(t, dtype=torch.float64).reshape(-1) for t in (i1, i2, i12)], -1)  # [N, 3]
    n = v.shape[0]
    if n < 2:
        raise ValueError(f"average_pid needs at least 2 examples for a standard error, got {n}")
    mean = v.mean(0)
    coef = _coefficients(mean[0], mean[1], mean[2], redundancy)
    out = {}
    for name, c in coef.items():
        per_example = v @ c
        out[name] = {"value": float(per_example.mean()), "stderr": float(per_example.std() / n ** 0.5), "n": n}
    return out
