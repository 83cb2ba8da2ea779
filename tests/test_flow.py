"""Rectified flow ↔ the VP channel (infodecomp.models.families.flow), and the analytic check through every parameterisation:
an exact Gaussian denoiser dressed up as an ε-, v- or flow-velocity network (UNet, SD3 and Flux call conventions)
and put back through the real adapters must give the VP denoiser's information, draw for draw."""

from __future__ import annotations

import math

import pytest
import torch

from infodecomp import estimators as E
from infodecomp.models.families.flow import (
    FlowDenoiser,
    alphas_cumprod_from_times,
    dynamic_shift,
    eps_from_velocity,
    flow_from_vp,
    flow_logsnr,
    flow_scale,
    flow_time,
    logsnr_shift,
    shift_time,
    training_times,
    v_prediction_from_denoiser,
    velocity_from_denoiser,
    velocity_from_eps,
    vp_from_flow,
)
from infodecomp.logsnr import logsnr_from_alphas_cumprod


def gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


LAM = torch.linspace(-20, 20, 161, dtype=torch.float64)


# ───────────────────────────────────────── the conversions ─────────────────────────────────────────

def test_logsnr_time_round_trips():
    t = flow_time(LAM)
    assert bool(((t > 0) & (t < 1)).all()) and bool((t[1:] < t[:-1]).all())  # more signal, less noise
    # t near 1 holds 1 − t to ~1e-16/|1 − t| relative precision: 4e-12 nats at λ = −20
    torch.testing.assert_close(flow_logsnr(t), LAM, rtol=0, atol=1e-10)
    tt = torch.linspace(1e-6, 1 - 1e-6, 1001, dtype=torch.float64)
    torch.testing.assert_close(flow_time(flow_logsnr(tt)), tt, rtol=0, atol=1e-15)
    # hand-worked points: t = 1/2 is log-SNR 0; t = 1/(1 + e) is log-SNR 2
    assert float(flow_logsnr(torch.tensor(0.5, dtype=torch.float64))) == 0.0
    assert float(flow_logsnr(torch.tensor(1 / (1 + math.e), dtype=torch.float64))) == pytest.approx(2.0, abs=1e-14)


def test_the_straight_path_is_the_vp_channel_rescaled():
    x = torch.randn(161, 3, 4, 4, generator=gen(0), dtype=torch.float64)
    eps = torch.randn(161, 3, 4, 4, generator=gen(1), dtype=torch.float64)
    t = flow_time(LAM)
    col = (-1, 1, 1, 1)
    z_t = (1 - t).view(col) * x + t.view(col) * eps
    z_vp = torch.sigmoid(LAM).sqrt().view(col) * x + torch.sigmoid(-LAM).sqrt().view(col) * eps
    torch.testing.assert_close(flow_from_vp(z_vp, LAM), z_t, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(vp_from_flow(z_t, t), z_vp, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(flow_scale(LAM), ((1 - t) ** 2 + t ** 2).sqrt(), rtol=1e-14, atol=0)
    # the velocity is ε − x, and ε = z_t + (1 − t)·v exactly
    v = eps - x
    torch.testing.assert_close(eps_from_velocity(z_t, v, t), eps, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(velocity_from_eps(z_t, eps, t), v, rtol=1e-9, atol=1e-9)


def test_a_shift_is_a_translation_in_logsnr():
    t = torch.linspace(0.001, 0.999, 999, dtype=torch.float64)
    for s in (1.0, 3.0, math.exp(0.5), 0.25):
        torch.testing.assert_close(flow_logsnr(shift_time(t, s)), flow_logsnr(t) + logsnr_shift(s), rtol=0,
                                   atol=1e-11)
    assert logsnr_shift(3.0) == pytest.approx(-2.1972, abs=1e-4)
    with pytest.raises(ValueError, match="shift must be > 0"):
        shift_time(t, 0.0)


def test_shift_and_training_grid_match_diffusers_scheduler():
    from diffusers import FlowMatchEulerDiscreteScheduler

    sched = FlowMatchEulerDiscreteScheduler(shift=3.0)
    ours = training_times(1000, 3.0)
    theirs = sched.sigmas.to(torch.float64).flip(0)  # increasing noise; the last is t = 1
    assert float(theirs[-1]) == 1.0 and ours.numel() == 999
    torch.testing.assert_close(ours, theirs[:-1], rtol=0, atol=1e-6)  # the scheduler computes in float32
    # Flux's exponential time shift with mu is shift_time with exp(mu)
    dyn = FlowMatchEulerDiscreteScheduler(use_dynamic_shifting=True)
    t = torch.linspace(0.05, 0.95, 19, dtype=torch.float64)
    torch.testing.assert_close(shift_time(t, math.exp(0.8)), dyn.time_shift(0.8, 1.0, t), rtol=0, atol=1e-12)
    # the VP-equivalent schedule of the grid is sigmoid(λ)
    lam = logsnr_from_alphas_cumprod(alphas_cumprod_from_times(ours))
    torch.testing.assert_close(lam, flow_logsnr(ours), rtol=0, atol=1e-9)


def test_dynamic_shift_matches_the_flux_pipeline():
    from diffusers.pipelines.flux.pipeline_flux import calculate_shift

    for n in (16, 256, 1024, 4096):
        assert dynamic_shift(n) == pytest.approx(math.exp(calculate_shift(n)), rel=1e-12)
    assert dynamic_shift(4096, time_shift_type="linear") == pytest.approx(1.15)
    with pytest.raises(ValueError, match="time_shift_type"):
        dynamic_shift(16, time_shift_type="cubic")


# ───────────────────────────────────────── FlowDenoiser ─────────────────────────────────────────

def test_flow_denoiser_of_an_exact_velocity_is_the_vp_denoiser(iworld):
    x, y = iworld.sample(6, generator=gen(2))
    cond = iworld.condition(y)
    z = torch.randn(6, *iworld.shape, generator=gen(3), dtype=torch.float64)
    flow = FlowDenoiser(velocity_from_denoiser(iworld))
    for lam in (-12.0, -3.0, 0.0, 2.5, 12.0):
        lam = torch.full((6,), lam, dtype=torch.float64)
        torch.testing.assert_close(flow(z, lam, cond), iworld(z, lam, cond), rtol=1e-9, atol=1e-9)


def test_flow_denoiser_checks_and_chunks(iworld):
    _, y = iworld.sample(5, generator=gen(4))
    cond = iworld.condition(y)
    z = torch.randn(5, *iworld.shape, generator=gen(5), dtype=torch.float64)
    lam = torch.linspace(-4, 4, 5, dtype=torch.float64)
    whole = FlowDenoiser(velocity_from_denoiser(iworld))(z, lam, cond)
    chunked = FlowDenoiser(velocity_from_denoiser(iworld), max_batch=2)(z, lam, cond)
    torch.testing.assert_close(chunked, whole, rtol=0, atol=0)
    flow = FlowDenoiser(velocity_from_denoiser(iworld))
    torch.testing.assert_close(flow(z[:1], 1.0, cond[:1]), iworld(z[:1], torch.ones(1, dtype=torch.float64),
                                                                  cond[:1]), rtol=1e-9, atol=1e-9)
    with pytest.raises(ValueError, match="logsnr must be"):
        flow(z, lam[:2], cond)
    with pytest.raises(ValueError, match="cond has batch"):
        flow(z, lam, cond[:2])
    with pytest.raises(ValueError, match="NaN"):
        flow(z, torch.full((5,), float("nan"), dtype=torch.float64), cond)
    with pytest.raises(ValueError, match=r"logsnr given to the denoiser contains 1 non-finite values \(0 NaN, 1 ±inf"):
        flow(z, torch.cat([lam[:4], torch.tensor([float("inf")], dtype=torch.float64)]), cond)
    with pytest.raises(ValueError, match="z given to the denoiser contains"):
        flow(z * float("inf"), lam, cond)
    with pytest.raises(ValueError, match="returned"):
        FlowDenoiser(lambda z_t, t, c: z_t[:, :1])(z, lam, cond)
    with pytest.raises(TypeError, match="callable"):
        FlowDenoiser(3)
    with pytest.raises(ValueError, match="max_batch"):
        FlowDenoiser(velocity_from_denoiser(iworld), max_batch=0)


def test_v_prediction_of_an_exact_denoiser(iworld):
    x, y = iworld.sample(4, generator=gen(6))
    cond = iworld.condition(y)
    eps = torch.randn(4, *iworld.shape, generator=gen(7), dtype=torch.float64)
    lam = torch.tensor([-3.0, -0.5, 1.0, 4.0], dtype=torch.float64)
    a, s = torch.sigmoid(lam).sqrt().view(-1, 1, 1, 1), torch.sigmoid(-lam).sqrt().view(-1, 1, 1, 1)
    z = a * x + s * eps
    v = v_prediction_from_denoiser(iworld)(z, lam, cond)
    eps_hat = iworld(z, lam, cond)
    x_hat = (z - s * eps_hat) / a
    torch.testing.assert_close(v, a * eps_hat - s * x_hat, rtol=1e-10, atol=1e-10)  # v = α·ε̂ − σ·x̂


# ─────────────────────── the analytic check through every parameterisation ───────────────────────
# One image-shaped Gaussian world, one set of (λ, ε) draws (same generator seed): the information through each
# adapter must equal the VP denoiser's to rounding, and the VP one is checked against the exact answer.

SAMPLING = dict(loc=1.0, scale=1.0, clip=3.0)  # λ ∈ [−2, 4]: inside SD's trained range, for the UNet adapters


def _information(denoiser, x, cond, ref, seed=11):
    return E.information_scores(denoiser, x, cond[:, None], ref, n_samples=24, pixelwise=True,
                                generator=gen(seed), **SAMPLING)


def _assert_same_information(a, b, tol=1e-8):
    for field in ("orthogonal", "standard", "mmse", "pixel_orthogonal", "pixel_standard"):
        torch.testing.assert_close(getattr(a, field), getattr(b, field), rtol=tol, atol=tol)


@pytest.fixture(scope="module")
def draws(iworld):
    x, y = iworld.sample(16, generator=gen(10))
    return x, iworld.condition(y), iworld.null(16)


@pytest.fixture(scope="module")
def vp_scores(iworld, draws):
    return _information(iworld, *draws)


def test_the_vp_reference_is_right(iworld, draws, vp_scores):
    # the VP estimate itself agrees with the exact per-example i^s target on the clipped range (z < 5)
    x, cond, ref = draws
    lo, hi = 1.0 - 3.0, 1.0 + 3.0
    target = iworld.truncated_pixel_pointwise(x, cond, ref, lo, hi)[0].sum((-1, -2))
    z = (vp_scores.standard[:, 0] - target) / vp_scores.standard_stderr[:, 0]
    assert float(z.abs().max()) < 5


def test_flow_velocity_parameterisation_gives_the_vp_information(iworld, draws, vp_scores):
    flow = FlowDenoiser(velocity_from_denoiser(iworld))
    _assert_same_information(_information(flow, *draws), vp_scores)


@pytest.mark.parametrize("prediction_type", ["epsilon", "v_prediction"])
def test_unet_adapter_with_eps_and_v_prediction_gives_the_vp_information(iworld, draws, vp_scores,
                                                                          prediction_type):
    from infodecomp.models import UNetDenoiser
    from infodecomp.testing import sd_scheduler
    from infodecomp.testing_families import AnalyticUNet, world_tokens

    x, cond, ref = draws
    ac = sd_scheduler().alphas_cumprod
    unet = AnalyticUNet(iworld, ac, cond.shape[1:], prediction_type=prediction_type)
    den = UNetDenoiser(unet, ac, prediction_type, timestep="interpolated")
    tok = lambda c: world_tokens(c, 8)  # noqa: E731
    _assert_same_information(_information(den, x, tok(cond), tok(ref)), vp_scores, tol=1e-6)


def test_sd3_adapter_gives_the_vp_information(iworld, draws, vp_scores):
    from infodecomp.models.families.packing import CondLayout
    from infodecomp.models.families.sd3 import SD3Velocity
    from infodecomp.testing_families import AnalyticSD3Transformer, world_tokens

    x, cond, ref = draws
    L = world_tokens(cond, 16).shape[1]
    layout = CondLayout(tokens=L, width=16, vectors=(("pooled", 5),))
    pack = lambda c: layout.pack(world_tokens(c, 16), pooled=torch.zeros(c.shape[0], 5, dtype=c.dtype))  # noqa
    tr = AnalyticSD3Transformer(iworld, cond.shape[1:], joint_attention_dim=16, pooled_projection_dim=5)
    den = FlowDenoiser(SD3Velocity(tr, layout))
    # the adapter hands SD3 its timestep 1000·t in float32, as the pipeline does: 1e-7 relative in t
    _assert_same_information(_information(den, x, pack(cond), pack(ref)), vp_scores, tol=1e-6)


@pytest.mark.parametrize("guidance_embeds", [False, True])
def test_flux_adapter_gives_the_vp_information(iworld, draws, vp_scores, guidance_embeds):
    from diffusers import FluxPipeline

    from infodecomp.models.families.flux import FluxVelocity
    from infodecomp.models.families.packing import CondLayout
    from infodecomp.testing_families import AnalyticFluxTransformer, world_tokens

    x, cond, ref = draws
    L = world_tokens(cond, 16).shape[1]
    layout = CondLayout(tokens=L, width=16, vectors=(("pooled", 7),))
    pack = lambda c: layout.pack(world_tokens(c, 16), pooled=torch.zeros(c.shape[0], 7, dtype=c.dtype))  # noqa
    # diffusers' own packing inside the stand-in: the adapter's packing is checked independently
    C, H, W = iworld.shape
    tr = AnalyticFluxTransformer(
        iworld, cond.shape[1:], joint_attention_dim=16, pooled_projection_dim=7, guidance_embeds=guidance_embeds,
        pack=lambda v: FluxPipeline._pack_latents(v, v.shape[0], v.shape[1], v.shape[2], v.shape[3]),
        unpack=lambda p, h, w: FluxPipeline._unpack_latents(p, h, w, 1))
    den = FlowDenoiser(FluxVelocity(tr, layout, 3.5 if guidance_embeds else None))
    _assert_same_information(_information(den, x, pack(cond), pack(ref)), vp_scores)
    seen = tr.seen_guidance[-1]
    assert (seen is None) if not guidance_embeds else bool((seen == 3.5).all())


def test_flux_packing_is_diffusers_packing():
    from diffusers import FluxPipeline

    from infodecomp.models.families.flux import latent_image_ids, pack_latents, unpack_latents

    z = torch.randn(2, 16, 8, 6, generator=gen(12))
    packed = pack_latents(z)
    assert torch.equal(packed, FluxPipeline._pack_latents(z, 2, 16, 8, 6))
    assert torch.equal(unpack_latents(packed, 8, 6), z)
    assert torch.equal(latent_image_ids(4, 3), FluxPipeline._prepare_latent_image_ids(2, 4, 3, "cpu", torch.float32))
    with pytest.raises(ValueError, match="even"):
        pack_latents(torch.zeros(1, 4, 7, 8))
