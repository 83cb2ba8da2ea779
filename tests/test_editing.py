"""Karras schedule, Heun ODE inversion / generation, prompt interventions (infodecomp.editing)."""

from __future__ import annotations

import math
from types import SimpleNamespace

import pytest
import torch

from infodecomp.editing import (
    generate,
    heun_integrate,
    intervene,
    invert,
    karras_denoiser_eps,
    karras_sigmas,
    model_sigmas,
    sigma_range,
)
from infodecomp.logsnr import logsnr_from_alphas_cumprod, nearest_timestep
from infodecomp.testing import sd_scheduler

SD_AC = sd_scheduler().alphas_cumprod


# -- the schedule ---------------------------------------------------------------------------------------------


def test_karras_end_points_for_sd():
    lo, hi = sigma_range(SD_AC)
    assert lo == pytest.approx(0.02917, abs=1e-5) and hi == pytest.approx(14.615, abs=1e-3)
    s = karras_sigmas(100, lo, hi)
    assert s.shape == (100,) and s.dtype == torch.float64
    assert float(s[0]) == pytest.approx(14.615, abs=1e-3) and float(s[-1]) == pytest.approx(0.0292, abs=1e-4)
    assert (s[1:] < s[:-1]).all() and (s > 0).all()  # no σ = 0
    i = 37  # Karras et al. (2022) Eq. 5, ρ = 7
    expected = (hi ** (1 / 7) + i / 99 * (lo ** (1 / 7) - hi ** (1 / 7))) ** 7
    assert float(s[i]) == pytest.approx(expected, rel=1e-12)
    # docs/protocol.md#intervention-solver: the 100 σ map to 95 distinct UNet timesteps, from 999 down to 0
    t = nearest_timestep(-2 * torch.log(s), logsnr_from_alphas_cumprod(SD_AC))
    assert int(t[0]) == 999 and int(t[-1]) == 0 and len(set(t.tolist())) == 95
    with pytest.raises(ValueError, match="n must be an integer >= 2"):
        karras_sigmas(1, lo, hi)
    with pytest.raises(ValueError, match="0 < sigma_min < sigma_max"):
        karras_sigmas(10, hi, lo)


# -- a toy world where the flow is known in closed form ---------------------------------------------------------

C2 = 0.5 ** 2  # data x ~ N(0, c² I)


def gaussian_denoiser(z, logsnr, cond):
    """Exact ε̂ = E[ε | z] for x ~ N(0, c² I) under the VP channel: σ z / (α² c² + σ²)."""
    a2 = torch.sigmoid(logsnr).view(-1, *([1] * (z.ndim - 1))).to(z.dtype)
    s2 = torch.sigmoid(-logsnr).view(-1, *([1] * (z.ndim - 1))).to(z.dtype)
    return s2.sqrt() * z / (a2 * C2 + s2)


def exact_flow(z0, s0, s1):
    """The probability-flow ODE dz/ds = s z / (c² + s²) in Karras space: z(s) = z0 sqrt((c² + s²)/(c² + s0²))."""
    return z0 * math.sqrt((C2 + s1 ** 2) / (C2 + s0 ** 2))


TOY = SimpleNamespace(denoiser=gaussian_denoiser, alphas_cumprod=SD_AC)
COND = torch.zeros(4, 1, 1)  # the toy ignores its condition


def test_karras_convention_matches_the_toy_derivative():
    # dz/ds = ε̂(z / sqrt(1 + s²), λ = −2 log s) must be the analytic s z / (c² + s²)
    z = torch.randn(4, 3, dtype=torch.float64)
    for s in (0.03, 1.0, 14.6):
        d = karras_denoiser_eps(gaussian_denoiser, z, s, COND)
        assert torch.allclose(d, s * z / (C2 + s * s), rtol=1e-10)


def test_heun_generation_is_second_order_on_the_toy():
    lo, hi = sigma_range(SD_AC)
    noise = hi * torch.randn(4, 3, 8, 8, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    target = exact_flow(noise, hi, lo)
    errs = []
    for steps in (10, 20, 40, 80):
        out = generate(TOY, noise, COND, steps, progress=False)
        errs.append(float((out - target).abs().max() / target.abs().max()))
    assert errs[-1] < 2e-3
    for a, b in zip(errs, errs[1:]):  # halving the step size divides the error by ≈ 4
        assert b < a / 3


def test_inversion_then_generation_reconstructs_on_the_toy():
    lo, hi = sigma_range(SD_AC)
    x = 0.5 * torch.randn(4, 3, 8, 8, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    errs = []
    for steps in (10, 20, 40, 100):
        noise = invert(TOY, x, COND, steps, progress=False)
        if steps == 100:  # inversion lands where the exact flow does
            exact = exact_flow(x, lo, hi)
            assert float((noise - exact).abs().max() / exact.abs().max()) < 1e-3
        back = generate(TOY, noise, COND, steps, progress=False)
        errs.append(float((back - x).abs().max() / x.abs().max()))
    assert all(b < a for a, b in zip(errs, errs[1:]))
    assert errs[-1] < 1e-3


def test_heun_counts_and_errors():
    calls = []

    def counting(z, logsnr, cond):
        calls.append(float(logsnr[0]))
        return gaussian_denoiser(z, logsnr, cond)

    sig = karras_sigmas(6, 0.1, 10.0)
    z = torch.randn(4, 3, dtype=torch.float64)
    heun_integrate(counting, z, sig, COND, progress=False)
    assert len(calls) == 2 * 5  # n σ values → n − 1 Heun steps, 2 evaluations each
    assert calls[0] == pytest.approx(-2 * math.log(10.0)) and calls[-1] == pytest.approx(-2 * math.log(0.1))
    with pytest.raises(ValueError, match="> 0"):
        heun_integrate(counting, z, torch.tensor([1.0, 0.0]), COND)
    with pytest.raises(ValueError, match="cond batch 3"):
        heun_integrate(counting, z, sig, torch.zeros(3, 1, 1))
    with pytest.raises(ValueError, match="uncond"):
        karras_denoiser_eps(counting, z, 1.0, COND, guidance_scale=2.0)


def test_guidance_scale_one_is_no_guidance():
    def affine(z, logsnr, cond):  # the condition shifts the prediction
        return gaussian_denoiser(z, logsnr, cond) + cond.view(-1, *([1] * (z.ndim - 1)))

    z = torch.randn(4, 3, dtype=torch.float64)
    cond, uncond = torch.full((4, 1, 1), 0.3, dtype=torch.float64), torch.zeros(4, 1, 1, dtype=torch.float64)
    plain = karras_denoiser_eps(affine, z, 2.0, cond)
    assert torch.allclose(karras_denoiser_eps(affine, z, 2.0, cond, uncond=uncond, guidance_scale=1.0), plain)
    g3 = karras_denoiser_eps(affine, z, 2.0, cond, uncond=uncond, guidance_scale=3.0)
    assert torch.allclose(g3 - karras_denoiser_eps(affine, z, 2.0, uncond), torch.full_like(z, 0.9))


# -- the tiny pipeline ----------------------------------------------------------------------------------------


def test_tiny_pipeline_reconstruction_improves_with_steps(tiny_model):
    x = tiny_model.encode_images(torch.rand(2, 3, 16, 16, generator=torch.Generator().manual_seed(0)))
    prompts = ["a red circle", "a blue square"]
    errs = []
    for steps in (5, 10, 20):
        noise = invert(tiny_model, x, prompts, steps, progress=False)
        assert noise.shape == x.shape and noise.dtype == torch.float32
        back = generate(tiny_model, noise, prompts, steps, progress=False)
        errs.append(float((back - x).pow(2).mean().sqrt()))
    assert errs[1] < errs[0] and errs[2] < errs[1] and errs[2] < 0.5 * errs[0]
    assert model_sigmas(tiny_model, 20)[0] == pytest.approx(14.615, abs=1e-3)


def test_intervene_on_the_tiny_pipeline(tiny_model):
    x = tiny_model.encode_images(torch.rand(2, 3, 16, 16, generator=torch.Generator().manual_seed(1)))
    prompts = ["a dog on a bed", "two dogs and a cat"]
    res = intervene(tiny_model, x, prompts, "dog", swap={"dog": "cat", "cat": "dog"}, steps=4,
                    record_attention=True, progress=False)
    assert res.prompts == {
        "reconstruction": prompts,
        "omit": ["a _ on a bed", "two _ and a cat"],
        "swap": ["a cat on a bed", "two cats and a dog"],
    }
    assert set(res.latents) == {"reconstruction", "omit", "swap"}
    assert all(v.shape == x.shape for v in res.latents.values())
    assert res.noise.shape == x.shape
    assert all(v.shape == (2, 77, 8, 8) for v in res.attention.values())
    # the batched reconstruction is the plain generation from the same noise
    alone = generate(tiny_model, res.noise, prompts, 4, progress=False)
    assert torch.allclose(res.latents["reconstruction"], alone, atol=1e-4)
    change = res.change("omit")
    assert change.shape == (2,) and (change > 0).all()
    # with classifier-free guidance the recorded maps are those of the conditional half
    guided = intervene(tiny_model, x, prompts, "dog", steps=2, guidance_scale=3.0, record_attention=True,
                       progress=False)
    assert set(guided.attention) == {"reconstruction", "omit"}
    assert guided.attention["omit"].shape == (2, 77, 8, 8)
    assert not torch.allclose(guided.latents["reconstruction"],
                              generate(tiny_model, guided.noise, prompts, 2, progress=False))
    # a swap word for every row, and ready-made swap prompts
    res2 = intervene(tiny_model, x[:1], "a dog", "dog", omit=False, swap="horse", steps=2, progress=False)
    assert res2.prompts == {"reconstruction": ["a dog"], "swap": ["a horse"]}
    with pytest.raises(ValueError, match="does not occur"):
        intervene(tiny_model, x, prompts, "zebra", steps=2, progress=False)
    with pytest.raises(ValueError, match="1 swap prompts for 2 latents"):
        intervene(tiny_model, x, prompts, "dog", swap=["a cat"], steps=2, progress=False)
    with pytest.raises(ValueError, match="3 prompts/embeddings for a batch of 2"):
        invert(tiny_model, x, ["a", "b", "c"], 2, progress=False)
