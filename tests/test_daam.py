"""DDIM inversion / generation (infodecomp.editing) and the DAAM attention baseline of Table 3
(infodecomp.experiments.heatmaps.daam_maps; docs/protocol.md#daam)."""

from __future__ import annotations

import math
from types import SimpleNamespace

import pytest
import torch
import torch.nn.functional as F

from infodecomp.models.attention import cross_attention_layers
from infodecomp.editing import ddim_generate, ddim_integrate, ddim_invert, ddim_levels
from infodecomp.experiments.heatmaps import daam_maps
from infodecomp.logsnr import logsnr_from_alphas_cumprod, nearest_timestep
from infodecomp.models import Model
from infodecomp.testing import sd_scheduler
from infodecomp.text import token_positions

SD_AC = sd_scheduler().alphas_cumprod
C2 = 0.5 ** 2  # toy data x ~ N(0, c² I)


def gaussian_denoiser(z, logsnr, cond):
    """Exact ε̂ = E[ε | z] for x ~ N(0, c² I) under the VP channel: σ z / (α² c² + σ²)."""
    a2 = torch.sigmoid(logsnr).view(-1, *([1] * (z.ndim - 1))).to(z.dtype)
    s2 = torch.sigmoid(-logsnr).view(-1, *([1] * (z.ndim - 1))).to(z.dtype)
    return s2.sqrt() * z / (a2 * C2 + s2)


TOY = SimpleNamespace(denoiser=gaussian_denoiser, alphas_cumprod=SD_AC)
COND = torch.zeros(3, 1, 1)  # the toy ignores its condition


# -- DDIM ------------------------------------------------------------------------------------------------------


def test_ddim_grid_is_the_reference_schedulers():
    from diffusers import DDIMScheduler

    sched = DDIMScheduler(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear", clip_sample=False,
                          set_alpha_to_one=False, steps_offset=1, timestep_spacing="leading")
    for n, last in ((50, 981), (100, 991), (200, 996)):
        t, levels = ddim_levels(SD_AC, n)
        sched.set_timesteps(n)
        assert t.tolist() == sched.timesteps.flip(0).tolist()  # {1, 1 + Δ, …}
        assert int(t[0]) == 1 and int(t[-1]) == last and len(levels) == n + 1
        assert float(levels[0]) == pytest.approx(float(SD_AC[0]), rel=1e-12)  # set_alpha_to_one=False
        assert torch.allclose(levels[1:], SD_AC[t].to(torch.float64))
    for bad in (0, 1001, True, 2.5):
        with pytest.raises(ValueError, match="steps must be an int"):
            ddim_levels(SD_AC, bad)
    with pytest.raises(ValueError, match="offset"):
        ddim_levels(SD_AC, 10, offset=200)


def test_ddim_generation_equals_diffusers_ddim_step():
    from diffusers import DDIMScheduler

    sched = DDIMScheduler(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear", clip_sample=False,
                          set_alpha_to_one=False, steps_offset=1, timestep_spacing="leading")
    sched.set_timesteps(20)
    lam = logsnr_from_alphas_cumprod(SD_AC)
    noise = torch.randn(3, 4, 5, 5, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    z = noise.clone()
    for t in sched.timesteps:
        eps = gaussian_denoiser(z, lam[int(t)].expand(3), COND)
        z = sched.step(eps, t, z, eta=0.0).prev_sample
    ours = ddim_generate(TOY, noise, COND, 20, progress=False)
    assert torch.allclose(ours, z, rtol=1e-5, atol=1e-6)


def test_ddim_evaluates_at_the_noisier_timestep():
    seen = []

    def counting(z, logsnr, cond):
        seen.append(nearest_timestep(logsnr, logsnr_from_alphas_cumprod(SD_AC))[0].item())
        return gaussian_denoiser(z, logsnr, cond)

    model = SimpleNamespace(denoiser=counting, alphas_cumprod=SD_AC)
    x = torch.randn(3, 2, 2, dtype=torch.float64)
    noise = ddim_invert(model, x, COND, 10, progress=False)
    assert seen == list(range(1, 1000, 100))  # inversion: ε̂ at the current latent and the TARGET timestep
    seen.clear()
    ddim_generate(model, noise, COND, 10, progress=False)
    assert seen == list(range(901, 0, -100))  # generation: the current timestep, down to t = 1 → ᾱ_0
    with pytest.raises(ValueError, match="levels"):
        ddim_integrate(counting, x, torch.tensor([0.5, 1.0]), COND)
    with pytest.raises(ValueError, match="cond batch 2"):
        ddim_integrate(counting, x, torch.tensor([0.9, 0.5]), torch.zeros(2, 1, 1))


def test_ddim_inversion_then_generation_on_the_toy_is_first_order():
    x = 0.5 * torch.randn(3, 3, 8, 8, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    errs = []
    for steps in (25, 50, 100, 200):
        back = ddim_generate(TOY, ddim_invert(TOY, x, COND, steps, progress=False), COND, steps, progress=False)
        errs.append(float((back - x).norm() / x.norm()))
    # DDIM is Euler in the Karras coordinates and the inversion evaluates one step late: error ∝ 1/steps
    for a, b in zip(errs, errs[1:]):
        assert 0.35 < b / a < 0.65
    assert errs[-1] < 0.02


@pytest.mark.slow
def test_ddim_reconstructs_shapes_tiny_latents():
    """Measured with ``benchmarks/ddim_reconstruction.py`` (4 twin images): relative L2 error of the regenerated
    latent 0.11–0.14 at 10 steps, 0.054–0.071 at 25, 0.029–0.044 at 50, 0.015–0.029 at 100, 0.008–0.018 at 200."""
    from infodecomp.experiments.localization import load_dataset
    from infodecomp.models import load_model

    model = load_model("shapes-tiny")
    rows = [load_dataset("coco-it", 2, seed=0)[i] for i in range(2)]
    x = model.encode_images([r["image"] for r in rows], resize="bicubic", size=model.resolution)
    caps = [r["caption"] for r in rows]
    errs = {}
    for steps in (25, 50):
        back = ddim_generate(model, ddim_invert(model, x, caps, steps, progress=False), caps, steps, progress=False)
        errs[steps] = (back - x).flatten(1).norm(dim=1) / x.flatten(1).norm(dim=1)
    assert (errs[50] < 0.07).all()  # measured ≤ 0.044
    assert (errs[50] < 0.75 * errs[25]).all()  # measured ratio ≈ 0.55–0.67


# -- DAAM ------------------------------------------------------------------------------------------------------


def _images(n: int, seed: int = 0) -> torch.Tensor:
    return torch.rand(n, 3, 16, 16, generator=torch.Generator().manual_seed(seed))


def test_daam_matches_a_manual_computation_over_all_heads(tiny_model):
    """Every down/up cross-attention layer, every head, every regeneration step: softmax(q kᵀ/√d) by hand."""
    unet = tiny_model.unet
    names = cross_attention_layers(tiny_model, include_mid=False)
    seen = {n: [] for n in names}
    hooks = [unet.get_submodule(n).register_forward_hook(
        (lambda n: lambda m, args, kwargs, out: seen[n].append(
            (args[0] if args else kwargs["hidden_states"], kwargs["encoder_hidden_states"])))(n), with_kwargs=True)
        for n in names]
    prompts, words, steps = ["a red circle", "a dog and a dog toy"], ["circle", "dog"], 3
    try:
        res = daam_maps(tiny_model, _images(2), prompts, words, steps=steps)
    finally:
        for h in hooks:
            h.remove()
    B, (C, h, w) = 2, tiny_model.latent_shape
    assert res.word.shape == (B, h, w) and res.tokens.shape == (B, 77, h, w)
    assert torch.isfinite(res.word).all() and (res.word >= 0).all() and res.word.sum() > 0
    total, pairs = 0, 0
    for n in names:
        layer = unet.get_submodule(n)
        calls = seen[n]
        assert len(calls) == 2 * steps  # inversion + regeneration; only the regeneration is DAAM's
        for hs, ehs in calls[steps:]:
            with torch.no_grad():
                heads = layer.heads
                q = layer.to_q(hs).view(B, hs.shape[1], heads, -1).transpose(1, 2)
                k = layer.to_k(ehs).view(B, 77, heads, -1).transpose(1, 2)
                p = (q @ k.transpose(-1, -2) / q.shape[-1] ** 0.5).softmax(-1)  # [B, heads, N, 77]
            side = int(math.isqrt(hs.shape[1]))
            m = p.permute(0, 1, 3, 2).reshape(B, heads * 77, side, side)
            if side != h:
                m = F.interpolate(m, size=(h, w), mode="bicubic", align_corners=False)
            total = total + m.clamp(min=0).view(B, heads, 77, h, w).sum(1)
        pairs += layer.heads
    manual = total / pairs  # mean over (layer, head), summed over the steps
    assert torch.allclose(res.tokens, manual, atol=1e-5)
    pos = [token_positions(tiny_model.tokenizer, p, wd) for p, wd in zip(prompts, words)]
    assert pos == [[3], [2, 5]]  # "dog" twice: both occurrences, as DAAM
    for i in range(B):
        assert torch.allclose(res.word[i], manual[i, pos[i]].mean(0), atol=1e-5)
    # dropping half of the heads (docs/protocol.md#b10) changes the map
    half = daam_maps(tiny_model, res.latents, prompts, words, steps=steps, faithful_half_heads=True)
    assert (half.word - res.word).abs().max() > 1e-3 * res.word.abs().max()


def test_daam_multi_token_word_and_early_errors(tiny_model):
    prompts = ["a xylograph next to a xylograph", "a teddy bear on a bed"]
    words = ["xylograph", "teddy bear"]
    res = daam_maps(tiny_model, _images(2, 1), prompts, words, steps=2)
    pos = [token_positions(tiny_model.tokenizer, p, wd) for p, wd in zip(prompts, words)]
    assert pos == [[2, 3, 4, 8, 9, 10], [2, 3]]  # xy·lo·graph twice; teddy·bear
    for i in range(2):
        assert torch.allclose(res.word[i], res.tokens[i, pos[i]].mean(0), atol=1e-6)
        assert not torch.allclose(res.word[i], res.tokens[i, pos[i][0]], atol=1e-6)
    calls = []
    model = Model(tiny_model.pipeline, name="tiny")
    inner = model.denoiser
    model.denoiser = lambda z, lam, c: calls.append(1) or inner(z, lam, c)
    with pytest.raises(ValueError, match="'cat'.*does not occur"):
        daam_maps(model, _images(2), prompts, ["xylograph", "cat"], steps=2)
    assert calls == []  # raised before any UNet call
    with pytest.raises(ValueError, match="2 prompts and 1 words"):
        daam_maps(model, _images(2), prompts, ["xylograph"], steps=2)
    with pytest.raises(ValueError, match="3 images/latents for 2 prompts"):
        daam_maps(model, _images(3), prompts, words, steps=2)


def test_daam_restores_processors_also_on_error(tiny_model):
    unet = tiny_model.unet
    before = dict(unet.attn_processors)
    daam_maps(tiny_model, _images(1), ["a red circle"], ["red"], steps=2)
    assert all(unet.attn_processors[k] is v for k, v in before.items())
    model = Model(tiny_model.pipeline, name="tiny")
    inner, calls = model.denoiser, []

    def failing(z, lam, c):  # fails during the recorded regeneration (after the 2 inversion calls)
        calls.append(1)
        if len(calls) == 3:
            raise RuntimeError("boom")
        return inner(z, lam, c)

    model.denoiser = failing
    with pytest.raises(RuntimeError, match="boom"):
        daam_maps(model, _images(1), ["a red circle"], ["red"], steps=2)
    assert all(unet.attn_processors[k] is v for k, v in before.items())


def test_daam_guidance(tiny_model):
    x = tiny_model.encode_images(_images(2, 3))
    prompts, words = ["a red circle", "a blue square"], ["red", "square"]
    plain = daam_maps(tiny_model, x, prompts, words, steps=2, guidance_scale=None)
    one = daam_maps(tiny_model, x, prompts, words, steps=2, guidance_scale=1.0)
    assert torch.equal(plain.word, one.word)  # 1 is no guidance (and runs no unconditional pass)
    batches = []
    hook = tiny_model.unet.register_forward_pre_hook(lambda m, args: batches.append(args[0].shape[0]))
    try:
        g = daam_maps(tiny_model, x, prompts, words, steps=2, guidance_scale=5.0)
    finally:
        hook.remove()
    assert batches == [4] * 4  # [uncond, cond] in one call, 2 steps each way
    assert g.word.shape == plain.word.shape and g.tokens.shape[0] == 2  # the conditional half only
    assert not torch.allclose(g.word, plain.word)
    assert torch.isfinite(g.word).all() and (g.word >= 0).all()
