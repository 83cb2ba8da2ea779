"""Worlds whose information is known exactly: ground truth for the estimators.

Each world gives (i) samples (x, condition) from its joint distribution, (ii) the exact MMSE ε-denoiser
``eps_hat = world.denoiser(z, logsnr, cond)`` under the variance-preserving channel
``z = sqrt(σ(λ))·x + sqrt(σ(−λ))·ε`` (docs/architecture.md#denoiser-interface; a world is itself callable as a
denoiser), and (iii) the exact answers the estimators target, in nats:

- the pointwise log-likelihood ratio ``log p(x|cond) − log p(x|ref)`` (what i^s estimates, paper Eq. 4);
- the per-log-SNR integrands of i^s and i^o for one example (``pointwise_integrands``), so the estimand on
  a clipped log-SNR range is known too: the information outside the range (the truncation error) is
  computed, not guessed;
- MI / CMI of the joint, and their integrand over log-SNR (I-MMSE: I = ½∫ (mmse_ref − mmse_cond) dλ).

Worlds
------
:class:`GaussianWorld`  x ~ N(μ, Σ) in R^d, y = A x + b + N(0, R) in R^k. A condition observes a subset of
    the coordinates of y: ``cond [N, 2k] = cat(y·mask, mask)`` (float, NaN-free); the null condition is all
    zeros (nothing observed → the unconditional denoiser). MI = I(x; y), CMI = I(x; y_O | y_G), closed form.
:class:`MixtureWorld`  x | component ~ N(μ_k, Σ_k), components indexed by factors (e.g. (a, b)); a condition
    fixes some factors: ``cond [N, F]`` integer, −1 = factor not given; null = all −1 (the marginal mixture).
    Log-likelihoods are exact; MI/CMI have no closed form and are computed by tensor-product Gauss–Hermite
    quadrature over x (a composite Gauss–Legendre box rule, error < 1e−12 nats for d ≤ 2), and independently
    through I-MMSE with Gauss–Hermite over z (24 nodes per dimension: error ≈ 3e−5 nats on the built-in
    two-factor world; the tests check the two routes agree).
:class:`GaussianImageWorld`  x [C, H, W] with independent entries, y = gain[h, w]·x + noise: per-pixel
    information (summed over channels, paper Eq. 6) is known in closed form, for testing pixel maps.
    ``cond [N, C+1, H, W] = cat(y·m, m)`` with m [N, 1, H, W] the observed-pixel mask; null = zeros.

Numerical integration over log-SNR (:func:`integrate_over_logsnr`): composite Gauss–Legendre on
[−cutoff, cutoff] (default ±30, panels of width 1 with 8 nodes). Every integrand here is smooth and decays
like e^{−|λ|}, so the cut costs ~1e−13 of the integrand's scale; the tests check that refining the rule
changes nothing above 1e−12 (panels of width 2 already agree to 1e−9 on the mixture world).

The estimators' studies on these worlds (notebook 01) are in :mod:`infodecomp.experiments.estimator_studies`.
"""

from __future__ import annotations

import math
from functools import lru_cache

import numpy as np
import torch
from torch import Tensor

__all__ = [
    "vp_coefficients", "gaussian_eps_denoiser", "gaussian_mmse", "integrate_over_logsnr",
    "gauss_hermite", "box_normal_rule", "GaussianWorld", "MixtureWorld", "GaussianImageWorld",
]

_LOG2PI = math.log(2 * math.pi)


# ───────────────────────────────────────────── helpers ──────────────────────────────────────────────

def vp_coefficients(logsnr: Tensor) -> tuple[Tensor, Tensor]:
    """``(alpha, sigma) = (sqrt(σ(λ)), sqrt(σ(−λ)))`` in float64, same shape as ``logsnr``."""
    lam = logsnr.to(torch.float64)
    return torch.sigmoid(lam).sqrt(), torch.sigmoid(-lam).sqrt()


def gaussian_eps_denoiser(z: Tensor, logsnr: Tensor, mean: Tensor, cov: Tensor) -> Tensor:
    """Exact E[ε | z] when x ~ N(mean, cov): ``σ (α²Σ + σ²I)⁻¹ (z − α·mean)``.

    z: [N, d]; logsnr: [N]; mean: [N, d] or [d]; cov: [d, d]. Returns [N, d] float64.
    Because Cov(ε, z) = σI and Cov(z) = α²Σ + σ²I.
    """
    v, U = torch.linalg.eigh(cov.to(torch.float64))
    a, s = vp_coefficients(logsnr)
    r = (z.to(torch.float64) - a[:, None] * mean.to(torch.float64)) @ U  # Uᵀ(z − αm), rows
    r = r / (a[:, None] ** 2 * v + s[:, None] ** 2)
    return s[:, None] * (r @ U.T)


def gaussian_mmse(cov_eigvals: Tensor, logsnr: Tensor) -> Tensor:
    """Matched MMSE ``E‖ε − ε̂‖² = Σ_i σ(λ + log v_i)`` for x ~ N(·, Σ), Σ with eigenvalues v: [d] → [L].

    Because per eigen-direction mmse = α²v/(α²v + σ²) = v·e^λ/(v·e^λ + 1).
    """
    lam = logsnr.to(torch.float64)
    return torch.sigmoid(lam[:, None] + cov_eigvals.to(torch.float64).log()[None, :]).sum(-1)


def _softplus_info(v_ref: Tensor, v_cond: Tensor, lo: float, hi: float) -> Tensor:
    """½∫_lo^hi Σ_i [σ(λ+log v_ref,i) − σ(λ+log v_cond,i)] dλ in closed form (∫σ(λ+c)dλ = softplus(λ+c)).

    v_ref, v_cond: [..., d] posterior variances (eigenvalues); lo/hi may be ±inf. Returns [...].
    """
    def F(lam, v):
        if lam == math.inf:
            return v.log()  # softplus(λ + c) − λ → c; the λ parts cancel between ref and cond
        if lam == -math.inf:
            return torch.zeros_like(v)
        return torch.nn.functional.softplus(lam + v.log()) - lam

    v_ref, v_cond = v_ref.to(torch.float64), v_cond.to(torch.float64)
    return 0.5 * ((F(hi, v_ref) - F(lo, v_ref)) - (F(hi, v_cond) - F(lo, v_cond))).sum(-1)


@lru_cache(maxsize=16)
def _legendre(nodes: int) -> tuple[np.ndarray, np.ndarray]:
    return np.polynomial.legendre.leggauss(nodes)


def integrate_over_logsnr(fn, lo: float = -math.inf, hi: float = math.inf, *, panel_width: float = 1.0,
                          nodes: int = 8, cutoff: float = 30.0, chunk: int | None = None) -> Tensor:
    """``∫_lo^hi fn(λ) dλ`` by composite Gauss–Legendre (float64).

    fn: maps λ [L] (float64) → [..., L]. Infinite (or far) ends are cut at ±cutoff: the integrands of this
    module decay like e^{−|λ|}, so the cut error is ~e^{−cutoff} times their scale. ``chunk`` bounds the
    number of λ per call of fn. Returns [...].
    """
    lo, hi = max(lo, -cutoff), min(hi, cutoff)
    if not hi > lo:
        raise ValueError(f"empty integration range [{lo}, {hi}]")
    n_panels = max(1, math.ceil((hi - lo) / panel_width))
    t, w = _legendre(nodes)
    edges = np.linspace(lo, hi, n_panels + 1)
    half = (edges[1:] - edges[:-1])[:, None] / 2
    lam = torch.from_numpy(((edges[:-1] + edges[1:])[:, None] / 2 + half * t[None, :]).ravel())
    wts = torch.from_numpy((half * w[None, :]).ravel())
    chunk = chunk or lam.numel()
    total = None
    for i in range(0, lam.numel(), chunk):
        part = (fn(lam[i:i + chunk]).to(torch.float64) * wts[i:i + chunk]).sum(-1)
        total = part if total is None else total + part
    return total


@lru_cache(maxsize=32)
def _gauss_hermite_np(d: int, n: int) -> tuple[np.ndarray, np.ndarray]:
    t, w = np.polynomial.hermite_e.hermegauss(n)
    w = w / math.sqrt(2 * math.pi)
    grids = np.meshgrid(*([t] * d), indexing="ij")
    wgrids = np.meshgrid(*([w] * d), indexing="ij")
    nodes = np.stack([g.ravel() for g in grids], -1)
    weights = np.prod(np.stack([g.ravel() for g in wgrids], -1), -1)
    return nodes, weights


def gauss_hermite(d: int, n: int) -> tuple[Tensor, Tensor]:
    """Tensor-product Gauss–Hermite rule for E_{ξ~N(0, I_d)}[f(ξ)]: ``(nodes [n^d, d], weights [n^d])``.

    Exact for polynomials of degree ≤ 2n−1 in each coordinate; weights sum to 1. Only for small d.
    """
    if d > 3:
        raise ValueError(f"tensor-product Gauss–Hermite is only used for d <= 3 (n^d nodes), got d={d}")
    nodes, weights = _gauss_hermite_np(d, n)
    return torch.from_numpy(nodes), torch.from_numpy(weights)


@lru_cache(maxsize=8)
def _box_normal_np(d: int, half_width: float, panel_width: float, nodes: int) -> tuple[np.ndarray, np.ndarray]:
    t, w = _legendre(nodes)
    edges = np.arange(-half_width, half_width + 1e-9, panel_width)
    h = panel_width / 2
    pts = ((edges[:-1] + edges[1:])[:, None] / 2 + h * t[None, :]).ravel()
    wts = (h * np.broadcast_to(w, (edges.size - 1, nodes))).ravel() * np.exp(-pts ** 2 / 2) / math.sqrt(2 * math.pi)
    grids = np.meshgrid(*([pts] * d), indexing="ij")
    wgrids = np.meshgrid(*([wts] * d), indexing="ij")
    return np.stack([g.ravel() for g in grids], -1), np.prod(np.stack([g.ravel() for g in wgrids], -1), -1)


def box_normal_rule(d: int) -> tuple[Tensor, Tensor]:
    """A robust rule for E_{ξ~N(0, I_d)}[f(ξ)], d ≤ 2: composite Gauss–Legendre (panels 0.5, 8 nodes) on
    [−9, 9]^d times the normal density: ``(nodes [G, d], weights [G])``, G = 288^d.

    Unlike Gauss–Hermite it converges fast for integrands with sharp (logsumexp-like) transitions; the mass
    outside the box is < 1e−18.
    """
    if d > 2:
        raise ValueError(f"the box rule has 288^d nodes and is only used for d <= 2, got d={d}")
    nodes, weights = _box_normal_np(d, 9.0, 0.5, 8)
    return torch.from_numpy(nodes), torch.from_numpy(weights)


def _check_rows(name: str, t: Tensor, n: int, tail: tuple[int, ...]) -> None:
    if t.ndim != 1 + len(tail) or t.shape[0] != n or tuple(t.shape[1:]) != tail:
        raise ValueError(f"{name} must have shape [{n}, {', '.join(map(str, tail))}], got {tuple(t.shape)}")


def _check_logsnr(logsnr: Tensor, n: int) -> None:
    if logsnr.ndim != 1 or logsnr.shape[0] != n:
        raise ValueError(f"logsnr must have shape [{n}] (one per row of z), got {tuple(logsnr.shape)}")


# ─────────────────────────────────────────── Gaussian world ───────────────────────────────────────────

class GaussianWorld:
    """x ~ N(mean, cov) in R^d; y = obs_matrix·x + obs_offset + N(0, obs_cov) in R^k (jointly Gaussian).

    Conditions observe a subset O of y's coordinates: ``cond [N, 2k] = cat(y·mask, mask)`` with mask ∈ {0,1}
    (:meth:`condition`); null (nothing observed) = zeros (:meth:`null`). Posterior given y_O:
    Σ_O = (Σ⁻¹ + A_Oᵀ R_OO⁻¹ A_O)⁻¹, m_O = Σ_O(Σ⁻¹μ + A_Oᵀ R_OO⁻¹ (y_O − b_O)).
    Exact: log p(x | y_O) (Gaussian), I(x; y_O | y_G) = ½ log det Σ_G − ½ log det Σ_{O∪G}.
    All computations are float64; the denoiser returns z's dtype.
    """

    def __init__(self, mean: Tensor, cov: Tensor, obs_matrix: Tensor, obs_offset: Tensor, obs_cov: Tensor):
        self.mean = mean.to(torch.float64)
        self.cov = cov.to(torch.float64)
        self.obs_matrix = obs_matrix.to(torch.float64)
        self.obs_offset = obs_offset.to(torch.float64)
        self.obs_cov = obs_cov.to(torch.float64)
        d, k = self.mean.shape[0], self.obs_offset.shape[0]
        if self.cov.shape != (d, d) or self.obs_matrix.shape != (k, d) or self.obs_cov.shape != (k, k):
            raise ValueError(f"inconsistent shapes: mean [{d}], cov {tuple(self.cov.shape)} (want [{d},{d}]), "
                             f"obs_matrix {tuple(self.obs_matrix.shape)} (want [{k},{d}]), obs_cov "
                             f"{tuple(self.obs_cov.shape)} (want [{k},{k}])")
        self.d, self.k = d, k
        self._chol = torch.linalg.cholesky(self.cov)  # raises if cov is not SPD
        self._obs_chol = torch.linalg.cholesky(self.obs_cov)
        self._cache: dict[tuple[bool, ...], tuple[Tensor, Tensor, Tensor, Tensor]] = {}

    @classmethod
    def random(cls, d: int = 3, k: int = 2, *, generator: torch.Generator | None = None,
               obs_noise: float = 0.5) -> "GaussianWorld":
        """A random world with non-trivially correlated x (eigenvalues of Σ in [0.3, 2]) and y."""
        g = generator
        q, _ = torch.linalg.qr(torch.randn(d, d, generator=g, dtype=torch.float64))
        eig = 0.3 + 1.7 * torch.rand(d, generator=g, dtype=torch.float64)
        cov = q @ torch.diag(eig) @ q.T
        mean = torch.randn(d, generator=g, dtype=torch.float64)
        A = torch.randn(k, d, generator=g, dtype=torch.float64)
        b = 0.5 * torch.randn(k, generator=g, dtype=torch.float64)
        L = obs_noise * (torch.eye(k, dtype=torch.float64) + 0.3 * torch.randn(k, k, generator=g,
                                                                             dtype=torch.float64).tril(-1))
        return cls(mean, cov, A, b, L @ L.T)

    # conditions
    def condition(self, y: Tensor, observed=None) -> Tensor:
        """Encode y [N, k] with observed coordinates ``observed`` (bool [k] or [N, k]; default all) → [N, 2k]."""
        _check_rows("y", y, y.shape[0], (self.k,))
        mask = torch.ones_like(y, dtype=torch.float64) if observed is None else \
            torch.as_tensor(observed, dtype=torch.float64).expand(y.shape).clone()
        return torch.cat([y.to(torch.float64) * mask, mask], -1)

    def null(self, n: int) -> Tensor:
        """The null condition (nothing observed): zeros [n, 2k]."""
        return torch.zeros(n, 2 * self.k, dtype=torch.float64)

    def _split(self, cond: Tensor) -> tuple[Tensor, Tensor]:
        _check_rows("cond", cond, cond.shape[0], (2 * self.k,))
        y, mask = cond[:, :self.k].to(torch.float64), cond[:, self.k:].to(torch.float64)
        if not bool(((mask == 0) | (mask == 1)).all()):
            raise ValueError("GaussianWorld cond must be cat(y·mask, mask) with mask in {0, 1}; see condition()")
        return y, mask > 0.5

    def _posterior_params(self, obs: tuple[bool, ...]):
        """(cov_O [d,d], eigvals [d], eigvecs [d,d], gain [d,k], offset [d]) with m_O = offset + gain·y."""
        if obs not in self._cache:
            o = torch.tensor(obs, dtype=torch.bool)
            prec = torch.linalg.inv(self.cov)
            h0 = prec @ self.mean
            gain = torch.zeros(self.d, self.k, dtype=torch.float64)
            if o.any():
                A, R = self.obs_matrix[o], self.obs_cov[o][:, o]
                RinvA = torch.linalg.solve(R, A)  # R⁻¹A [|O|, d]
                prec = prec + A.T @ RinvA
                h0 = h0 - RinvA.T @ self.obs_offset[o]
            cov = torch.linalg.inv(prec)
            cov = (cov + cov.T) / 2
            if o.any():
                gain[:, o] = cov @ RinvA.T
            v, U = torch.linalg.eigh(cov)
            self._cache[obs] = (cov, v, U, gain, cov @ h0)
        return self._cache[obs]

    def posterior(self, cond: Tensor) -> tuple[Tensor, Tensor]:
        """Exact posterior of x: ``(mean [N, d], cov [N, d, d])`` (cov depends only on the observed set)."""
        y, mask = self._split(cond)
        means = torch.empty(y.shape[0], self.d, dtype=torch.float64)
        covs = torch.empty(y.shape[0], self.d, self.d, dtype=torch.float64)
        for pattern, rows in _groups(mask):
            cov, _, _, gain, off = self._posterior_params(pattern)
            means[rows] = off + y[rows] @ gain.T
            covs[rows] = cov
        return means, covs

    # sampling
    def sample(self, n: int, *, generator: torch.Generator | None = None) -> tuple[Tensor, Tensor]:
        """``(x [n, d], y [n, k])`` from the joint (float64)."""
        x = self.mean + torch.randn(n, self.d, generator=generator, dtype=torch.float64) @ self._chol.T
        noise = torch.randn(n, self.k, generator=generator, dtype=torch.float64) @ self._obs_chol.T
        return x, x @ self.obs_matrix.T + self.obs_offset + noise

    # the denoiser
    def denoiser(self, z: Tensor, logsnr: Tensor, cond: Tensor) -> Tensor:
        """Exact ε̂(z, λ | cond) = E[ε | z, y_O]: z [N, d], logsnr [N], cond [N, 2k] → [N, d] (z's dtype)."""
        _check_rows("z", z, z.shape[0], (self.d,))
        _check_logsnr(logsnr, z.shape[0])
        _check_rows("cond", cond, z.shape[0], (2 * self.k,))
        y, mask = self._split(cond.cpu())
        a, s = vp_coefficients(logsnr.cpu())
        z64 = z.to(torch.float64).cpu()
        out = torch.empty_like(z64)
        for pattern, rows in _groups(mask):
            _, v, U, gain, off = self._posterior_params(pattern)
            m = off + y[rows] @ gain.T
            r = (z64[rows] - a[rows, None] * m) @ U
            r = r / (a[rows, None] ** 2 * v + s[rows, None] ** 2)
            out[rows] = s[rows, None] * (r @ U.T)
        return out.to(device=z.device, dtype=z.dtype)

    __call__ = denoiser

    # exact answers
    def log_prob(self, x: Tensor, cond: Tensor) -> Tensor:
        """Exact log p(x | y_O) [N] nats (x [N, d]; null cond → log p(x))."""
        m, S = self.posterior(cond)
        dist = torch.distributions.MultivariateNormal(m, covariance_matrix=S)
        return dist.log_prob(x.to(torch.float64))

    def log_ratio(self, x: Tensor, cond: Tensor, ref: Tensor) -> Tensor:
        """Exact pointwise ``log p(x|cond) − log p(x|ref)`` [N] nats: what i^s estimates (Eq. 4)."""
        return self.log_prob(x, cond) - self.log_prob(x, ref)

    def pointwise_integrands(self, x: Tensor, cond: Tensor, ref: Tensor, logsnr: Tensor) -> tuple[Tensor, Tensor]:
        """Exact per-λ integrands of i^s and i^o for each example, ``(standard [N, L], orthogonal [N, L])``.

        standard(λ)   = ½ E_ε[‖ε − ε̂(z|ref)‖² − ‖ε − ε̂(z|cond)‖²],
        orthogonal(λ) = ½ E_ε‖ε̂(z|cond) − ε̂(z|ref)‖²,   z = αx + σε,
        so the estimands are ∫ standard dλ (= log_ratio over the real line) and ∫ orthogonal dλ.
        """
        m1, S1 = self.posterior(cond)
        m0, S0 = self.posterior(ref)
        mse1, mse0, orth = _gaussian_integrands_dense(x.to(torch.float64), m1, S1, m0, S0, logsnr.to(torch.float64))
        return 0.5 * (mse0 - mse1), 0.5 * orth

    def pointwise_mmse(self, x: Tensor, cond: Tensor, logsnr: Tensor) -> Tensor:
        """Exact denoising error of one example, E_ε‖ε − ε̂(αx + σε | cond)‖² [N, L] (closed form)."""
        m1, S1 = self.posterior(cond)
        return _gaussian_integrands_dense(x.to(torch.float64), m1, S1, m1, S1, logsnr.to(torch.float64))[0]

    def truncated_pointwise(self, x: Tensor, cond: Tensor, ref: Tensor, lo: float = -math.inf,
                            hi: float = math.inf) -> tuple[Tensor, Tensor]:
        """``(∫_lo^hi standard dλ [N], ∫_lo^hi orthogonal dλ [N])``: what the estimators estimate on [lo, hi]."""
        both = integrate_over_logsnr(
            lambda lam: torch.stack(self.pointwise_integrands(x, cond, ref, lam)), lo, hi, chunk=256)
        return both[0], both[1]

    def _obs_tuple(self, idx) -> tuple[bool, ...]:
        o = [False] * self.k
        for i in idx:
            if not 0 <= i < self.k:
                raise ValueError(f"y coordinate {i} out of range 0..{self.k - 1}")
            o[i] = True
        return tuple(o)

    def information(self, observed=None, given=()) -> float:
        """Exact I(x; y_observed | y_given) in nats (observed: coordinate indices, default all of y)."""
        obs = range(self.k) if observed is None else observed
        G = self._obs_tuple(given)
        OG = self._obs_tuple(list(obs) + list(given))
        vG, vOG = self._posterior_params(G)[1], self._posterior_params(OG)[1]
        return float(0.5 * (vG.log().sum() - vOG.log().sum()))

    def information_integrand(self, logsnr: Tensor, observed=None, given=()) -> Tensor:
        """½(mmse_given(λ) − mmse_{observed∪given}(λ)) [L]: d I/dλ (I-MMSE), expected over the joint."""
        obs = range(self.k) if observed is None else observed
        vG = self._posterior_params(self._obs_tuple(given))[1]
        vOG = self._posterior_params(self._obs_tuple(list(obs) + list(given)))[1]
        return 0.5 * (gaussian_mmse(vG, logsnr) - gaussian_mmse(vOG, logsnr))

    def truncated_information(self, lo: float, hi: float, observed=None, given=()) -> float:
        """∫_lo^hi of :meth:`information_integrand` in closed form (softplus): the estimand on [lo, hi]."""
        obs = range(self.k) if observed is None else observed
        vG = self._posterior_params(self._obs_tuple(given))[1]
        vOG = self._posterior_params(self._obs_tuple(list(obs) + list(given)))[1]
        return float(_softplus_info(vG, vOG, lo, hi))


def _groups(mask: Tensor):
    """Yield (pattern tuple, row index tensor) for each distinct row of a bool mask [N, k]."""
    patterns, inverse = torch.unique(mask, dim=0, return_inverse=True)
    for i in range(patterns.shape[0]):
        yield tuple(bool(b) for b in patterns[i]), (inverse == i).nonzero().squeeze(1)


def _gaussian_integrands_dense(x, m1, S1, m0, S0, lam):
    """Closed-form per-λ i^s and i^o integrands for x [N,d] under models N(m1,S1) (cond), N(m0,S0) (ref).

    With M = (α²S + σ²I)⁻¹, ε̂ = σαM(x − m) + σ²Mε, and I − σ²M = α²SM:
      E‖ε − ε̂‖²      = tr((α²SM)²) + σ²α²‖M(x − m)‖²
      E‖ε̂₁ − ε̂₀‖²    = σ²α²‖M₁(x − m₁) − M₀(x − m₀)‖² + σ⁴ tr((M₁ − M₀)²).
    S1/S0: [N, d, d]. Returns (E‖ε − ε̂₁‖², E‖ε − ε̂₀‖², E‖ε̂₁ − ε̂₀‖²), each [N, L] (no ½).
    """
    a2, s2 = torch.sigmoid(lam), torch.sigmoid(-lam)  # [L]
    eye = torch.eye(x.shape[1], dtype=torch.float64)

    def M_of(S):  # [N, L, d, d]
        return torch.linalg.inv(a2[None, :, None, None] * S[:, None] + s2[None, :, None, None] * eye)

    M1, M0 = M_of(S1), M_of(S0)
    r1 = (M1 @ (x - m1)[:, None, :, None]).squeeze(-1)  # [N, L, d]
    r0 = (M0 @ (x - m0)[:, None, :, None]).squeeze(-1)
    P1 = a2[None, :, None, None] * (S1[:, None] @ M1)
    P0 = a2[None, :, None, None] * (S0[:, None] @ M0)
    tr1 = (P1 * P1.transpose(-1, -2)).sum((-1, -2))
    tr0 = (P0 * P0.transpose(-1, -2)).sum((-1, -2))
    sa = (s2 * a2)[None, :]
    mse1 = tr1 + sa * (r1 ** 2).sum(-1)
    mse0 = tr0 + sa * (r0 ** 2).sum(-1)
    D = M1 - M0
    orth = sa * ((r1 - r0) ** 2).sum(-1) + (s2 ** 2)[None, :] * (D * D.transpose(-1, -2)).sum((-1, -2))
    return mse1, mse0, orth


# ─────────────────────────────────────────── mixture world ───────────────────────────────────────────

class MixtureWorld:
    """Gaussian mixture x | k ~ N(means[k], covs[k]), P(k) = weights[k], components indexed by factors.

    ``factor_sizes`` (e.g. (A, B)) lays the K = A·B components out row-major: k = a·B + b. A condition
    gives some factors: ``cond [N, F]`` integer with −1 where a factor is not given; the denoiser for it is
    the exact MMSE denoiser of the sub-mixture of compatible components (weights renormalised):
    ε̂(z) = Σ_k r_k(z) σ C_k⁻¹(z − α μ_k), C_k = α²Σ_k + σ²I, r_k ∝ P(k) N(z; αμ_k, C_k).
    null = all −1 (the marginal mixture); a full condition picks one Gaussian component.
    Exact: log p(x | cond) by logsumexp. MI/CMI by Gauss–Hermite (see module docstring).
    """

    def __init__(self, means: Tensor, covs: Tensor, weights: Tensor, factor_sizes: tuple[int, ...] | None = None):
        self.means = means.to(torch.float64)
        self.covs = covs.to(torch.float64)
        w = weights.to(torch.float64)
        K, d = self.means.shape
        if self.covs.shape != (K, d, d) or w.shape != (K,):
            raise ValueError(f"means [K={K}, d={d}] need covs [{K}, {d}, {d}] and weights [{K}], got "
                             f"{tuple(self.covs.shape)} and {tuple(w.shape)}")
        if (w <= 0).any():
            raise ValueError("mixture weights must be > 0")
        self.weights = w / w.sum()
        self.factor_sizes = tuple(factor_sizes) if factor_sizes is not None else (K,)
        if math.prod(self.factor_sizes) != K:
            raise ValueError(f"factor_sizes {self.factor_sizes} do not multiply to K={K} components")
        self.K, self.d, self.F = K, d, len(self.factor_sizes)
        self._eigvals, self._eigvecs = torch.linalg.eigh(self.covs)
        if (self._eigvals <= 0).any():
            raise ValueError("component covariances must be positive definite")
        self._chol = torch.linalg.cholesky(self.covs)
        # factor index of each component: [K, F]
        idx = torch.arange(K)
        labels = []
        for size in reversed(self.factor_sizes):
            labels.append(idx % size)
            idx = idx // size
        self.component_labels = torch.stack(labels[::-1], -1)

    @classmethod
    def two_factor(cls) -> "MixtureWorld":
        """A 2-D world with factors (a, b) ∈ {0,1}×{0,1}: a moves x along one axis, b along the other,
        with an interaction and unequal covariances and weights, so that I(x; a | b) ≠ I(x; a)."""
        means = torch.tensor([[-1.2, -1.0], [-0.9, 1.1], [1.0, -0.8], [1.6, 1.2]], dtype=torch.float64)
        rot = lambda t: torch.tensor([[math.cos(t), -math.sin(t)], [math.sin(t), math.cos(t)]],
                                     dtype=torch.float64)
        scales = [(0.8, 0.5), (0.6, 0.9), (1.0, 0.6), (0.7, 0.7)]
        angles = [0.3, -0.5, 1.1, 0.0]
        covs = torch.stack([rot(t) @ torch.diag(torch.tensor(s, dtype=torch.float64) ** 2) @ rot(t).T
                            for s, t in zip(scales, angles)])
        weights = torch.tensor([0.3, 0.2, 0.15, 0.35], dtype=torch.float64)
        return cls(means, covs, weights, factor_sizes=(2, 2))

    @classmethod
    def one_factor(cls) -> "MixtureWorld":
        """A 1-D, three-component world (condition = component index)."""
        means = torch.tensor([[-2.0], [0.5], [2.2]], dtype=torch.float64)
        covs = torch.tensor([0.6, 0.4, 1.0], dtype=torch.float64).pow(2)[:, None, None]
        return cls(means, covs, torch.tensor([0.5, 0.3, 0.2], dtype=torch.float64))

    # conditions
    def condition(self, labels: Tensor, given=None) -> Tensor:
        """``labels [N, F]`` → cond [N, F] keeping the factors in ``given`` (indices; default all), −1 elsewhere."""
        _check_rows("labels", labels, labels.shape[0], (self.F,))
        keep = torch.zeros(self.F, dtype=torch.bool)
        keep[list(range(self.F)) if given is None else list(given)] = True
        return torch.where(keep, labels.long(), torch.full_like(labels.long(), -1))

    def null(self, n: int) -> Tensor:
        """The null condition (no factor given): ``[n, F]`` filled with −1."""
        return torch.full((n, self.F), -1, dtype=torch.long)

    def _log_prior(self, cond: Tensor) -> Tensor:
        """log P(k) for compatible components, −inf otherwise: [N, K]."""
        _check_rows("cond", cond, cond.shape[0], (self.F,))
        if cond.is_floating_point() or cond.is_complex():
            raise ValueError(f"MixtureWorld cond must be an integer tensor (factor index or −1), got {cond.dtype}")
        c = cond.long().cpu()
        for f, size in enumerate(self.factor_sizes):
            if bool(((c[:, f] < -1) | (c[:, f] >= size)).any()):
                raise ValueError(f"factor {f} must be in -1..{size - 1}, got values {c[:, f].unique().tolist()}")
        ok = ((c[:, None, :] == -1) | (c[:, None, :] == self.component_labels[None])).all(-1)
        return torch.where(ok, self.weights.log()[None, :], torch.full((c.shape[0], self.K), -math.inf,
                                                                         dtype=torch.float64))

    def sample(self, n: int, *, generator: torch.Generator | None = None) -> tuple[Tensor, Tensor]:
        """``(x [n, d] float64, labels [n, F] long)`` from the joint."""
        k = torch.multinomial(self.weights, n, replacement=True, generator=generator)
        xi = torch.randn(n, self.d, generator=generator, dtype=torch.float64)
        x = self.means[k] + (self._chol[k] @ xi[:, :, None]).squeeze(-1)
        return x, self.component_labels[k]

    def _eps_from_logprior(self, z64: Tensor, lam: Tensor, log_prior: Tensor) -> Tensor:
        a, s = vp_coefficients(lam)
        r = z64[:, None, :] - a[:, None, None] * self.means[None]  # [N, K, d]
        rot = torch.einsum("kij,nki->nkj", self._eigvecs, r)  # Uᵀr
        c = a[:, None, None] ** 2 * self._eigvals[None] + s[:, None, None] ** 2  # [N, K, d]
        sol = rot / c
        loglik = -0.5 * ((rot * sol).sum(-1) + c.log().sum(-1))
        resp = torch.softmax(log_prior + loglik, -1)  # [N, K]
        eps_k = torch.einsum("kij,nkj->nki", self._eigvecs, sol)
        return s[:, None] * (resp[..., None] * eps_k).sum(1)

    def denoiser(self, z: Tensor, logsnr: Tensor, cond: Tensor) -> Tensor:
        """Exact ε̂(z, λ | cond): z [N, d], logsnr [N], cond [N, F] (int, −1 = not given) → [N, d] (z's dtype)."""
        _check_rows("z", z, z.shape[0], (self.d,))
        _check_logsnr(logsnr, z.shape[0])
        _check_rows("cond", cond, z.shape[0], (self.F,))
        out = self._eps_from_logprior(z.to(torch.float64).cpu(), logsnr.to(torch.float64).cpu(),
                                      self._log_prior(cond))
        return out.to(device=z.device, dtype=z.dtype)

    __call__ = denoiser

    def log_prob(self, x: Tensor, cond: Tensor) -> Tensor:
        """Exact log p(x | cond) [N] nats (logsumexp over compatible components)."""
        x64 = x.to(torch.float64).cpu()
        lp = self._log_prior(cond)
        comp = torch.distributions.MultivariateNormal(self.means, covariance_matrix=self.covs)
        ll = comp.log_prob(x64[:, None, :])  # [N, K]
        return torch.logsumexp(lp + ll, -1) - torch.logsumexp(lp, -1)

    def log_ratio(self, x: Tensor, cond: Tensor, ref: Tensor) -> Tensor:
        """Exact pointwise ``log p(x|cond) − log p(x|ref)`` [N] nats (Eq. 4)."""
        return self.log_prob(x, cond) - self.log_prob(x, ref)

    def pointwise_integrands(self, x: Tensor, cond: Tensor, ref: Tensor, logsnr: Tensor, *,
                             nodes: int = 24) -> tuple[Tensor, Tensor]:
        """Per-λ integrands of i^s and i^o for each example: ``(standard [N, L], orthogonal [N, L])``.

        Same definitions as :meth:`GaussianWorld.pointwise_integrands`; the expectation over ε is a
        tensor-product Gauss–Hermite rule with ``nodes`` per dimension (d ≤ 3), written so no large terms
        cancel: ‖ε−ε̂₀‖² − ‖ε−ε̂₁‖² = ‖ε̂₀‖² − ‖ε̂₁‖² − 2ε·(ε̂₀ − ε̂₁).
        """
        xi, wq = gauss_hermite(self.d, nodes)  # [G, d], [G]
        x64 = x.to(torch.float64).cpu()
        N, L, G = x64.shape[0], logsnr.shape[0], xi.shape[0]
        lam = logsnr.to(torch.float64).cpu()
        a, s = vp_coefficients(lam)
        z = a[None, :, None, None] * x64[:, None, None, :] + s[None, :, None, None] * xi[None, None]
        lam_rows = lam[None, :, None].expand(N, L, G).reshape(-1)
        lp1 = self._log_prior(cond)[:, None, None, :].expand(N, L, G, self.K).reshape(-1, self.K)
        lp0 = self._log_prior(ref)[:, None, None, :].expand(N, L, G, self.K).reshape(-1, self.K)
        zr = z.reshape(-1, self.d)
        e1 = self._eps_from_logprior(zr, lam_rows, lp1).reshape(N, L, G, self.d)
        e0 = self._eps_from_logprior(zr, lam_rows, lp0).reshape(N, L, G, self.d)
        std = (e0 ** 2).sum(-1) - (e1 ** 2).sum(-1) - 2 * (xi[None, None] * (e0 - e1)).sum(-1)
        orth = ((e1 - e0) ** 2).sum(-1)
        return 0.5 * (std * wq).sum(-1), 0.5 * (orth * wq).sum(-1)

    def truncated_pointwise(self, x: Tensor, cond: Tensor, ref: Tensor, lo: float = -math.inf,
                            hi: float = math.inf, *, nodes: int = 24) -> tuple[Tensor, Tensor]:
        """``(∫_lo^hi standard dλ [N], ∫_lo^hi orthogonal dλ [N])`` (numerical; see class docstring)."""
        both = integrate_over_logsnr(
            lambda lam: torch.stack(self.pointwise_integrands(x, cond, ref, lam, nodes=nodes)), lo, hi,
            chunk=64)
        return both[0], both[1]

    def _restricted(self, given) -> Tensor:
        """cond [K, F] for each component with only the factors ``given`` kept."""
        return self.condition(self.component_labels, given=given)

    def information(self, target=None, given=()) -> float:
        """I(x; factors_target | factors_given) in nats, by quadrature over x within each component:
        Σ_k P(k) E_{x~N(μ_k,Σ_k)}[log p(x | target∪given of k) − log p(x | given of k)].

        target defaults to all factors not in ``given``. For d ≤ 2 the rule is :func:`box_normal_rule`
        (agrees with Gauss–Hermite of 250 nodes per dimension and with a box rule of half the panel width
        to < 1e−12 nats on the built-in worlds); for d = 3 Gauss–Hermite with 64 nodes per dimension
        (error ~1e−7: the logsumexp integrand converges slowly under Gauss–Hermite).
        """
        given = tuple(given)
        target = tuple(f for f in range(self.F) if f not in given) if target is None else tuple(target)
        xi, wq = box_normal_rule(self.d) if self.d <= 2 else gauss_hermite(self.d, 64)
        x = self.means[:, None, :] + (self._chol[:, None] @ xi[None, :, :, None]).squeeze(-1)  # [K, G, d]
        G = xi.shape[0]
        full = self._restricted(target + given).repeat_interleave(G, 0)
        ctx = self._restricted(given).repeat_interleave(G, 0)
        xr = x.reshape(-1, self.d)
        lr = (self.log_prob(xr, full) - self.log_prob(xr, ctx)).reshape(self.K, G)
        return float((self.weights * (lr * wq).sum(-1)).sum())

    def information_integrand(self, logsnr: Tensor, target=None, given=(), *, nodes: int = 24) -> Tensor:
        """d I(x; target | given)/dλ = ½ E‖ε̂(z | target∪given) − ε̂(z | given)‖² [L] (I-MMSE, orthogonal form),
        with z | k ~ N(αμ_k, α²Σ_k + σ²I) integrated by Gauss–Hermite per component."""
        given = tuple(given)
        target = tuple(f for f in range(self.F) if f not in given) if target is None else tuple(target)
        lam = logsnr.to(torch.float64).cpu()
        xi, wq = gauss_hermite(self.d, nodes)
        L, G = lam.shape[0], xi.shape[0]
        a, s = vp_coefficients(lam)
        C = a[:, None, None, None] ** 2 * self.covs[None] + s[:, None, None, None] ** 2 * torch.eye(self.d)
        Lc = torch.linalg.cholesky(C)  # [L, K, d, d]
        z = a[:, None, None, None] * self.means[None, :, None, :] + (Lc[:, :, None] @ xi[None, None, :, :, None]
                                                                     ).squeeze(-1)  # [L, K, G, d]
        lam_rows = lam[:, None, None].expand(L, self.K, G).reshape(-1)
        lp_full = self._log_prior(self._restricted(target + given))[None, :, None, :].expand(L, self.K, G, self.K)
        lp_ctx = self._log_prior(self._restricted(given))[None, :, None, :].expand(L, self.K, G, self.K)
        zr = z.reshape(-1, self.d)
        e1 = self._eps_from_logprior(zr, lam_rows, lp_full.reshape(-1, self.K))
        e0 = self._eps_from_logprior(zr, lam_rows, lp_ctx.reshape(-1, self.K))
        sq = ((e1 - e0) ** 2).sum(-1).reshape(L, self.K, G)
        return 0.5 * ((sq * wq).sum(-1) * self.weights).sum(-1)

    def mmse(self, logsnr: Tensor, given=(), *, nodes: int = 24) -> Tensor:
        """Expected matched MMSE E‖ε − ε̂(z | given)‖² [L] over the joint: d − Σ_k P(k) E_{z|k}‖ε̂(z|given)‖²."""
        lam = logsnr.to(torch.float64).cpu()
        xi, wq = gauss_hermite(self.d, nodes)
        L, G = lam.shape[0], xi.shape[0]
        a, s = vp_coefficients(lam)
        C = a[:, None, None, None] ** 2 * self.covs[None] + s[:, None, None, None] ** 2 * torch.eye(self.d)
        z = a[:, None, None, None] * self.means[None, :, None, :] + (
            torch.linalg.cholesky(C)[:, :, None] @ xi[None, None, :, :, None]).squeeze(-1)
        lam_rows = lam[:, None, None].expand(L, self.K, G).reshape(-1)
        lp = self._log_prior(self._restricted(tuple(given)))[None, :, None, :].expand(L, self.K, G, self.K)
        e = self._eps_from_logprior(z.reshape(-1, self.d), lam_rows, lp.reshape(-1, self.K))
        sq = (e ** 2).sum(-1).reshape(L, self.K, G)
        return self.d - ((sq * wq).sum(-1) * self.weights).sum(-1)

    def truncated_information(self, lo: float, hi: float, target=None, given=(), *, nodes: int = 24) -> float:
        """∫_lo^hi of :meth:`information_integrand` (numerical): the MI/CMI estimand on [lo, hi]."""
        return float(integrate_over_logsnr(
            lambda lam: self.information_integrand(lam, target, given, nodes=nodes), lo, hi, chunk=128))


# ───────────────────────────────────────── image-shaped world ─────────────────────────────────────────

class GaussianImageWorld:
    """x [C, H, W], independent entries x_chw ~ N(0, var[c]); y = gain[h, w]·x + noise_std·n.

    A condition observes y on a set of pixels: ``cond [N, C+1, H, W] = cat(y·m, m)``, m [N, 1, H, W] ∈ {0,1}
    (:meth:`condition`); null = zeros (:meth:`null`). Per entry the posterior is
    v' = 1/(1/v + g²/τ²), m' = v'·g·y/τ² where observed, (0, v) elsewhere, so everything factorises over
    entries and the per-pixel information (summed over channels, Eq. 6) is exact:
    I(x_hw; y_hw) = Σ_c ½ log(v_c/v'_chw).
    """

    def __init__(self, var: Tensor, gain: Tensor, noise_std: float = 1.0):
        self.var = var.to(torch.float64)
        self.gain = gain.to(torch.float64)
        if self.var.ndim != 1 or self.gain.ndim != 2 or (self.var <= 0).any() or noise_std <= 0:
            raise ValueError("var must be [C] > 0, gain [H, W], noise_std > 0")
        self.noise_std = float(noise_std)
        self.C = self.var.shape[0]
        self.H, self.W = self.gain.shape

    @classmethod
    def shapes(cls, channels: int = 4, size: int = 16) -> "GaussianImageWorld":
        """A world whose information sits on a disc (strong) and a square (weak), zero elsewhere."""
        yy, xx = torch.meshgrid(torch.arange(size, dtype=torch.float64), torch.arange(size, dtype=torch.float64),
                                indexing="ij")
        gain = torch.zeros(size, size, dtype=torch.float64)
        disc = (yy - size * 0.35) ** 2 + (xx - size * 0.35) ** 2 <= (size * 0.22) ** 2
        square = (yy >= size * 0.6) & (yy < size * 0.9) & (xx >= size * 0.55) & (xx < size * 0.85)
        gain[disc] = 2.0
        gain[square] = 0.7
        var = torch.linspace(0.5, 1.5, channels, dtype=torch.float64)
        return cls(var, gain, noise_std=1.0)

    @property
    def shape(self) -> tuple[int, int, int]:
        return self.C, self.H, self.W

    def sample(self, n: int, *, generator: torch.Generator | None = None) -> tuple[Tensor, Tensor]:
        """``(x [n, C, H, W], y [n, C, H, W])`` float64 from the joint."""
        x = torch.randn(n, *self.shape, generator=generator, dtype=torch.float64) * self.var.sqrt()[:, None, None]
        noise = torch.randn(n, *self.shape, generator=generator, dtype=torch.float64) * self.noise_std
        return x, self.gain * x + noise

    def condition(self, y: Tensor, region=None) -> Tensor:
        """Encode y [N, C, H, W] observed on ``region`` (bool [H, W] or [N, H, W]; default all) → [N, C+1, H, W]."""
        _check_rows("y", y, y.shape[0], self.shape)
        m = torch.ones(y.shape[0], 1, self.H, self.W, dtype=torch.float64) if region is None else \
            torch.as_tensor(region, dtype=torch.float64).expand(y.shape[0], self.H, self.W)[:, None].clone()
        return torch.cat([y.to(torch.float64) * m, m], 1)

    def null(self, n: int) -> Tensor:
        """The null condition (nothing observed): zeros [n, C+1, H, W]."""
        return torch.zeros(n, self.C + 1, self.H, self.W, dtype=torch.float64)

    def posterior(self, cond: Tensor) -> tuple[Tensor, Tensor]:
        """Elementwise posterior ``(mean [N, C, H, W], var [N, C, H, W])``."""
        _check_rows("cond", cond, cond.shape[0], (self.C + 1, self.H, self.W))
        y, m = cond[:, :self.C].to(torch.float64), cond[:, self.C:].to(torch.float64)
        if not bool(((m == 0) | (m == 1)).all()):
            raise ValueError("GaussianImageWorld cond must be cat(y·m, m) with m in {0, 1}; see condition()")
        tau2 = self.noise_std ** 2
        v = self.var[:, None, None]
        v_obs = 1.0 / (1.0 / v + self.gain ** 2 / tau2)  # [C, H, W]
        var = m * v_obs + (1 - m) * v
        mean = m * v_obs * self.gain * y / tau2
        return mean, var.expand(cond.shape[0], *self.shape)

    def denoiser(self, z: Tensor, logsnr: Tensor, cond: Tensor) -> Tensor:
        """Exact ε̂ = σ(z − α m')/(α² v' + σ²) elementwise: z [N, C, H, W], logsnr [N], cond [N, C+1, H, W]."""
        _check_rows("z", z, z.shape[0], self.shape)
        _check_logsnr(logsnr, z.shape[0])
        mean, var = self.posterior(cond.cpu())
        a, s = vp_coefficients(logsnr.cpu())
        a, s = a[:, None, None, None], s[:, None, None, None]
        out = s * (z.to(torch.float64).cpu() - a * mean) / (a ** 2 * var + s ** 2)
        return out.to(device=z.device, dtype=z.dtype)

    __call__ = denoiser

    def pixel_log_ratio(self, x: Tensor, cond: Tensor, ref: Tensor) -> Tensor:
        """Exact per-pixel ``log p(x_hw|cond) − log p(x_hw|ref)`` summed over channels: [N, H, W] nats."""
        def lp(c):
            m, v = self.posterior(c)
            return (-0.5 * ((x.to(torch.float64) - m) ** 2 / v + v.log() + _LOG2PI)).sum(1)
        return lp(cond) - lp(ref)

    def log_ratio(self, x: Tensor, cond: Tensor, ref: Tensor) -> Tensor:
        """Exact image-level log-likelihood ratio [N] nats."""
        return self.pixel_log_ratio(x, cond, ref).sum((-1, -2))

    def pixel_pointwise_integrands(self, x: Tensor, cond: Tensor, ref: Tensor, logsnr: Tensor
                                   ) -> tuple[Tensor, Tensor]:
        """Per-λ, per-pixel i^s and i^o integrands (summed over channels): ``([N, L, H, W], [N, L, H, W])``.

        The scalar case of :func:`_gaussian_integrands_dense`, elementwise.
        """
        m1, v1 = self.posterior(cond)
        m0, v0 = self.posterior(ref)
        lam = logsnr.to(torch.float64)
        a2, s2 = torch.sigmoid(lam)[None, :, None, None, None], torch.sigmoid(-lam)[None, :, None, None, None]
        x64 = x.to(torch.float64)[:, None]
        m1, v1, m0, v0 = m1[:, None], v1[:, None], m0[:, None], v0[:, None]
        M1, M0 = 1 / (a2 * v1 + s2), 1 / (a2 * v0 + s2)
        r1, r0 = M1 * (x64 - m1), M0 * (x64 - m0)
        mse1 = (a2 * v1 * M1) ** 2 + s2 * a2 * r1 ** 2
        mse0 = (a2 * v0 * M0) ** 2 + s2 * a2 * r0 ** 2
        orth = s2 * a2 * (r1 - r0) ** 2 + s2 ** 2 * (M1 - M0) ** 2
        return 0.5 * (mse0 - mse1).sum(2), 0.5 * orth.sum(2)

    def truncated_pixel_pointwise(self, x: Tensor, cond: Tensor, ref: Tensor, lo: float = -math.inf,
                                  hi: float = math.inf) -> tuple[Tensor, Tensor]:
        """``(∫_lo^hi standard dλ, ∫_lo^hi orthogonal dλ)`` per pixel: ``([N, H, W], [N, H, W])``."""
        both = integrate_over_logsnr(
            lambda lam: torch.stack(self.pixel_pointwise_integrands(x, cond, ref, lam)).movedim(2, -1),
            lo, hi, chunk=128)
        return both[0], both[1]

    def _post_var(self, region) -> Tensor:
        """Posterior variance [C, H, W] when y is observed on ``region`` (bool [H, W]; None = nowhere)."""
        m = torch.zeros(self.H, self.W, dtype=torch.float64) if region is None else \
            torch.as_tensor(region, dtype=torch.float64)
        v = self.var[:, None, None]
        v_obs = 1.0 / (1.0 / v + self.gain ** 2 / self.noise_std ** 2)
        return m * v_obs + (1 - m) * v

    def pixel_information(self, region=None, given=None, lo: float = -math.inf, hi: float = math.inf) -> Tensor:
        """Exact per-pixel I(x_hw; y_region | y_given) [H, W] nats, summed over channels; with ``lo``/``hi``
        the part of it on the log-SNR range [lo, hi] (closed form via softplus).

        region: bool [H, W] (default all pixels); given: bool [H, W] or None.
        """
        full = torch.ones(self.H, self.W, dtype=torch.bool) if region is None else torch.as_tensor(region).bool()
        g = torch.zeros(self.H, self.W, dtype=torch.bool) if given is None else torch.as_tensor(given).bool()
        v_ref, v_cond = self._post_var(g), self._post_var(full | g)
        return _softplus_info(v_ref.movedim(0, -1), v_cond.movedim(0, -1), lo, hi)
