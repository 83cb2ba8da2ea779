"""SD 1.x, SDXL, SD3 and Flux through the one Model / denoiser interface, on tiny random pipelines built from
config (infodecomp.testing_families): loading, conditioning packing and the null prompt, word positions, the
pipelines' own samplers reproduced through the denoiser, estimators, inversion, interventions and the probe."""

from __future__ import annotations

import math

import pytest
import torch

from infodecomp import estimators as E
from infodecomp.editing import generate, intervene, invert, karras_denoiser_eps, sample
from infodecomp.models.families.flux import FluxModel, pack_latents, unpack_latents
from infodecomp.models.families.rectified import FlowModel
from infodecomp.models.families.sd3 import SD3Model
from infodecomp.models.families.sdxl import SDXLModel
from infodecomp.models.families.flow import flow_logsnr, flow_scale
from infodecomp.models import MODELS, Model, load_model
from infodecomp.testing_families import TINY_T5_TOKENS, save_family_pipeline, tiny_family_model

KINDS = ["sd15", "sdxl", "sd3", "flux", "flux-dev"]
#: text keys of the attention per family: 77 CLIP tokens (UNets), 77 + T5 (SD3), T5 (Flux)
TEXT_KEYS = {"sd15": 77, "sdxl": 77, "sd3": 77 + TINY_T5_TOKENS, "flux": TINY_T5_TOKENS,
             "flux-dev": TINY_T5_TOKENS}
CLASSES = {"sd15": Model, "sdxl": SDXLModel, "sd3": SD3Model, "flux": FluxModel}
PROMPT = "a red circle left of a blue square"


def gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _image(seed: int = 0, n: int = 1) -> torch.Tensor:
    return torch.rand(n, 3, 16, 16, generator=gen(seed))


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    """``saved(kind, **kwargs)`` → a cached directory holding the tiny pipeline (save_pretrained)."""
    cache = {}

    def get(kind: str, **kwargs):
        key = (kind, tuple(sorted(kwargs.items())))
        if key not in cache:
            cache[key] = save_family_pipeline(kind, tmp_path_factory.mktemp(f"tiny-{kind}"), **kwargs)
        return cache[key]

    return get


# ───────────────────────────────────────────── loading ─────────────────────────────────────────────

def test_registry_has_every_family():
    assert MODELS["sd15"].family == "sd" and MODELS["sd15"].prediction_type == "epsilon"
    assert MODELS["sdxl-base"].family == "sdxl" and MODELS["sdxl-base"].resolution == 1024
    for name in ("sd3-medium", "sd35-medium", "sd35-large"):
        assert MODELS[name].family == "sd3" and MODELS[name].prediction_type == "flow"
    assert MODELS["flux-dev"].family == "flux" and "allow_distilled" in MODELS["flux-dev"].notes
    assert MODELS["flux-schnell"].family == "flux" and "distilled" in MODELS["flux-schnell"].description
    assert MODELS["sd21-base"].family == "sd"


@pytest.mark.parametrize("kind", ["sd15", "sdxl", "sd3", "flux"])
def test_load_model_dispatches_on_the_pipeline_class(kind, saved, family_models):
    d = saved(kind)
    # the tiny models encode 16 T5 tokens (the pipelines' defaults, 256 / 512, are what a real model loads with)
    model = load_model(d, **({"max_sequence_length": TINY_T5_TOKENS} if kind in ("sd3", "flux") else {}))
    assert type(model) is CLASSES[kind] and model.source == str(d) and model.version.startswith("sha256:")
    assert model.resolution == (16, 16) and model.latent_shape == family_models(kind).latent_shape
    # the same weights as the in-memory build: bit-identical conditioning and denoiser
    ref = family_models(kind)
    cond = model.encode_prompts([PROMPT, ""])
    assert torch.equal(cond, ref.encode_prompts([PROMPT, ""]))
    z = torch.randn(2, *model.latent_shape, generator=gen(0))
    lam = torch.tensor([-1.0, 3.0])
    assert torch.equal(model.denoiser(z, lam, cond), ref.denoiser(z, lam, cond))


def test_load_model_dtype_and_options(saved):
    model = load_model(saved("sd3"), dtype=torch.bfloat16, max_sequence_length=8)
    assert model.dtype == torch.bfloat16 and next(model.pipeline.text_encoder_3.parameters()).dtype == torch.bfloat16
    assert model.encode_prompts("a red circle").shape == (1, 77 + 8 + 1, 64)
    with pytest.raises(TypeError, match=r"\['guidance'\].*does not take"):
        load_model(saved("sd3"), guidance=2.0)
    with pytest.raises(TypeError, match="only SDXL, SD3 and Flux"):
        load_model(saved("sd15"), image_size=(16, 16))
    with pytest.raises(ValueError, match="revision.*only applies to hub ids"):
        load_model(saved("sdxl"), revision="abc")


def test_distilled_flux_needs_the_documented_opt_in(saved):
    d = saved("flux", guidance_embeds=True)
    with pytest.raises(ValueError, match=r"guidance-distilled.*not defined.*allow_distilled=True"):
        load_model(d)
    with pytest.warns(UserWarning, match="guidance-distilled"):
        model = load_model(d, allow_distilled=True, guidance=3.5)
    assert model.distillation == "guidance" and not model.information_defined
    assert model.denoiser.velocity.guidance == 3.5
    with pytest.raises(ValueError, match="timestep-distilled"):
        tiny_family_model("flux", name="my-flux-schnell")
    assert tiny_family_model("flux").information_defined


def test_unet_families_refuse_hidden_tokens(family_models):
    with pytest.raises(ValueError, match="cross_attention_tokens must be 'all'"):
        SDXLModel(family_models("sdxl").pipeline, cross_attention_tokens="words")
    with pytest.raises(ValueError, match="cross_attention_tokens must be 'all'"):
        SD3Model(family_models("sd3").pipeline, cross_attention_tokens="words")


# ─────────────────────────────────── conditioning and the null prompt ───────────────────────────────────

def test_sd15_conventions(family_models):
    model = family_models("sd15")
    tok = model.tokenizer
    assert tok.pad_token == "<|endoftext|>" and tok.pad_token_id == tok.eos_token_id  # SD 1.x pads with EOS
    assert type(model.pipeline.scheduler).__name__ == "PNDMScheduler"
    lo, hi = model.logsnr_range
    assert lo == pytest.approx(-5.364, abs=1e-3) and hi == pytest.approx(7.069, abs=1e-3)
    cond = model.encode_prompts([PROMPT, ""])
    with torch.no_grad():
        emb, _ = model.pipeline.encode_prompt([PROMPT, ""], "cpu", 1, False)
    assert torch.equal(cond, emb)
    assert model.token_positions(PROMPT, "circle") == [3]


def test_sdxl_packs_states_pooled_and_time_ids(family_models):
    model = family_models("sdxl")
    cond = model.encode_prompts([PROMPT, ""])
    assert cond.shape == (2, 77 + 1, 64) and model.layout.vectors == (("text_embeds", 32), ("time_ids", 6))
    tokens, vec = model.layout.unpack(cond)
    with torch.no_grad():
        emb, _, pooled, _ = model.pipeline.encode_prompt(prompt=[PROMPT], device="cpu", num_images_per_prompt=1,
                                                         do_classifier_free_guidance=False)
    close = lambda a, b: torch.testing.assert_close(a, b, rtol=1e-6, atol=1e-6)  # noqa: E731 (batch-size rounding)
    close(tokens[:1], emb)
    close(vec["text_embeds"][:1], pooled)
    # the null prompt is the pipeline's unconditional: zeros (force_zeros_for_empty_prompt), same time ids
    assert model.pipeline.config.force_zeros_for_empty_prompt
    assert not tokens[1].any() and not vec["text_embeds"][1].any()
    assert vec["time_ids"].tolist() == [[16, 16, 0, 0, 16, 16]] * 2
    # micro-conditioning: only the time ids change, and the UNet reads them
    other = SDXLModel(model.pipeline, original_size=(32, 24), crops_coords_top_left=(4, 0))
    cond2 = other.encode_prompts([PROMPT])
    t2, v2 = other.layout.unpack(cond2)
    assert torch.equal(t2, tokens[:1]) and v2["time_ids"].tolist() == [[32, 24, 4, 0, 16, 16]]
    z = torch.randn(1, 4, 8, 8, generator=gen(1))
    assert not torch.equal(model.denoiser(z, 1.0, cond[:1]), other.denoiser(z, 1.0, cond2))


def test_sdxl_denoiser_is_the_unet_with_added_conditioning(family_models):
    model = family_models("sdxl")
    cond = model.encode_prompts([PROMPT, "a blue square"])
    tokens, vec = model.layout.unpack(cond)
    z = torch.randn(2, 4, 8, 8, generator=gen(2))
    lam = torch.tensor([-2.0, 4.0])
    t = model.denoiser.timesteps(lam)
    with torch.no_grad():
        direct = model.unet(z, t, encoder_hidden_states=tokens, return_dict=False,
                            added_cond_kwargs={"text_embeds": vec["text_embeds"], "time_ids": vec["time_ids"]})[0]
    assert torch.equal(model.denoiser(z, lam, cond), direct)
    with pytest.raises(ValueError, match=r"packed conditioning tensor \[B, 78, 64\]"):
        model.denoiser(z, lam, tokens)


def test_sd3_packs_clip_t5_and_pooled(family_models):
    model = family_models("sd3")
    cond = model.encode_prompts([PROMPT, ""])
    assert cond.shape == (2, 77 + TINY_T5_TOKENS + 1, 64)
    tokens, vec = model.layout.unpack(cond)
    assert not tokens[:, :77, 48:].any()  # CLIP-L (32) + CLIP-G (16) zero-padded to T5's width
    assert tokens[:, 77:].abs().amax() > 0 and vec["pooled"].shape == (2, 48)
    with torch.no_grad():
        emb, neg, pooled, neg_pooled = model.pipeline.encode_prompt(
            prompt=[PROMPT], prompt_2=None, prompt_3=None, device="cpu", do_classifier_free_guidance=True,
            max_sequence_length=TINY_T5_TOKENS)
    close = lambda a, b: torch.testing.assert_close(a, b, rtol=1e-6, atol=1e-6)  # noqa: E731 (batch-size rounding)
    close(tokens[:1], emb)
    close(vec["pooled"][:1], pooled)
    # "" is the pipeline's default negative prompt (its classifier-free-guidance unconditional)
    close(tokens[1:], neg)
    close(vec["pooled"][1:], neg_pooled)


def test_flux_packs_t5_and_pooled_clip(family_models):
    model = family_models("flux")
    cond = model.encode_prompts([PROMPT, ""])
    assert cond.shape == (2, TINY_T5_TOKENS + 1, 64)
    tokens, vec = model.layout.unpack(cond)
    with torch.no_grad():
        emb, pooled, text_ids = model.pipeline.encode_prompt(prompt=[PROMPT, ""], prompt_2=None, device="cpu",
                                                             max_sequence_length=TINY_T5_TOKENS)
    assert torch.equal(tokens, emb) and torch.equal(vec["pooled"], pooled) and not text_ids.any()
    assert model.tokenizer is model.pipeline.tokenizer_2  # T5: the tokens of cond's rows


def test_word_positions_for_every_tokenizer(family_models):
    for kind in ("sd15", "sdxl"):
        assert family_models(kind).token_positions(PROMPT, "circle") == [3]
    sd3 = family_models("sd3")
    assert sd3.token_positions(PROMPT, "circle") == [3, 77 + 2]  # CLIP has a start token, T5 does not
    assert sd3.token_positions(PROMPT, "circle", encoder="t5") == [79]
    flux = family_models("flux")
    assert flux.token_positions(PROMPT, "square") == [7]
    assert flux.token_positions("A Dog chasing a dog", "dog") == [2, 3, 4, 5, 8]  # cased T5: "▁", "D", "o", "g"
    # T5's limit is the pipeline's max_sequence_length, not CLIP's 77
    long = " ".join(["red"] * 20)
    with pytest.raises(ValueError, match=f"at most {TINY_T5_TOKENS}"):
        flux.encode_prompts(long)
    with pytest.raises(ValueError, match=f"at most {TINY_T5_TOKENS}"):
        sd3.token_positions(long, "red")
    assert flux.token_positions(long, "red", truncate=True) == list(range(TINY_T5_TOKENS - 1))


# ─────────────────────────────── the pipelines' own samplers, reproduced ───────────────────────────────

@pytest.mark.parametrize("kind", ["sdxl", "sd3", "flux", "flux-dev"])
def test_denoiser_reproduces_the_pipeline_sampler(kind, family_models):
    """Three steps of the pipeline's own sampler (no classifier-free guidance) against the same steps through
    ``model.denoiser``: the packing, the micro-conditioning, the time conventions (1000·t for SD3, t for Flux,
    the guidance embedding), Flux's patch packing and the velocity sign must all be what the pipeline does."""
    model = family_models(kind)
    pipe = model.pipeline
    C, h, w = model.latent_shape
    lat = torch.randn(1, C, h, w, generator=gen(3))
    cond = model.encode_prompts([PROMPT])
    if kind == "sdxl":
        out = pipe(PROMPT, num_inference_steps=3, guidance_scale=1.0, output_type="latent", latents=lat,
                   height=16, width=16).images
        sig = pipe.scheduler.sigmas.tolist()
        x = lat * pipe.scheduler.init_noise_sigma
        for a, b in zip(sig[:-1], sig[1:]):  # Euler in Karras σ: dx/dσ = ε̂
            x = x + (b - a) * karras_denoiser_eps(model.denoiser, x, a, cond)
    else:
        g = 2.5 if kind == "flux-dev" else 1.0
        # σ = 1 (pure noise) has log-SNR −∞, where ε̂ says nothing about v: start below it
        out = pipe(PROMPT, num_inference_steps=3, sigmas=[0.9, 0.6, 0.3], guidance_scale=g, output_type="latent",
                   latents=pack_latents(lat) if kind.startswith("flux") else lat, height=16, width=16,
                   max_sequence_length=TINY_T5_TOKENS).images
        out = unpack_latents(out, h, w) if kind.startswith("flux") else out
        sig = pipe.scheduler.sigmas.tolist()
        assert sig[0] < 1.0 and sig[-1] == 0.0
        den = model.make_denoiser(guidance=g) if kind == "flux-dev" else model.denoiser
        x = lat
        for a, b in zip(sig[:-1], sig[1:]):  # Euler in t: dz/dt = v = (ε̂ − z_t)/(1 − t)
            lam = flow_logsnr(torch.tensor([a], dtype=torch.float64)).float()
            v = (den(x / flow_scale(lam), lam, cond) - x) / (1 - a)
            x = x + (b - a) * v
    torch.testing.assert_close(x, out, rtol=1e-4, atol=1e-4)


# ─────────────────────────────────────── estimators and editing ───────────────────────────────────────

@pytest.mark.parametrize("kind", KINDS)
def test_estimators_on_every_family(kind, family_models):
    model = family_models(kind)
    x = model.encode_images(_image(4))
    enc = model.encode_prompts([PROMPT, "a red circle left of a square", ""])
    kw = dict(n_samples=4, pixelwise=True, generator=gen(5))
    mi = E.pointwise_information(model.denoiser, x, enc[:1], enc[2:], **kw)
    cmi = E.pointwise_information(model.denoiser, x, enc[:1], enc[1:2], **kw)
    for est in (mi, cmi):
        assert est.value.shape == (1, 8, 8) and bool(torch.isfinite(est.value).all())
        assert float(est.image_value) > 0
        torch.testing.assert_close(est.value.sum((-1, -2)), est.image_value, rtol=1e-5, atol=1e-5)
    same = E.pointwise_information(model.denoiser, x, enc[:1], enc[:1], **kw)
    assert float(same.image_value.abs().max()) == 0.0


@pytest.mark.parametrize("kind", ["sd3", "flux"])
def test_flow_models_keep_the_model_interface(kind, family_models):
    model = family_models(kind)
    assert isinstance(model, FlowModel) and model.prediction_type == "flow" and model.information_defined
    with pytest.raises(AttributeError, match="no UNet"):
        model.unet
    ac = model.alphas_cumprod
    assert ac.shape == (999,) and bool((ac[1:] < ac[:-1]).all()) and bool(((ac > 0) & (ac < 1)).all())
    shift = 3.0 if kind == "sd3" else math.exp(0.5 + 0.65 / 3840 * (16 - 256))  # Flux: dynamic, 16 tokens
    assert model.schedule_shift == pytest.approx(shift) and model.logsnr_offset == pytest.approx(-2 * math.log(shift))
    lo, hi = model.logsnr_range
    assert lo == pytest.approx(-2 * math.log(999) - 2 * math.log(shift), abs=1e-6)
    assert hi == pytest.approx(2 * math.log(999) - 2 * math.log(shift), abs=1e-6)
    assert model.latent_shape == (16, 8, 8) and model.latent_channels == 16
    assert "prediction_type='flow'" in repr(model)


@pytest.mark.parametrize("kind", ["sd3", "flux"])
def test_inversion_then_generation_reconstructs_through_the_flow_adapter(kind, family_models):
    model = family_models(kind)
    x = model.encode_images(_image(6, 2))
    prompts = ["a red circle", "a blue square"]
    errs = []
    for steps in (5, 10):
        noise = invert(model, x, prompts, steps, progress=False)
        errs.append(float((generate(model, noise, prompts, steps, progress=False) - x).pow(2).mean().sqrt()))
    assert errs[1] < 0.35 * errs[0]  # Heun is second order: ≈ 1/4 per halving of the step


@pytest.mark.parametrize("kind", KINDS)
def test_intervene_and_probe_on_every_family(kind, family_models):
    from infodecomp.experiments.probe import ProbeSettings, probe_word

    model = family_models(kind)
    x = model.encode_images(_image(7, 2))
    res = intervene(model, x, ["a red circle", "two red squares"], "red", swap="blue", steps=3,
                    record_attention=True, progress=False)
    assert set(res.latents) == {"reconstruction", "omit", "swap"}
    assert all(v.shape == x.shape for v in res.latents.values())
    assert all(v.shape == (2, TEXT_KEYS[kind], 8, 8) for v in res.attention.values())
    assert bool((res.change("omit") > 0).all())
    out = probe_word(model, (_image(8)[0] * 255).to(torch.uint8).permute(1, 2, 0).numpy(), PROMPT, "circle",
                     ProbeSettings(n_samples=2))
    assert out.cmi.shape == out.mi.shape == out.attention.shape == (8, 8)
    assert math.isfinite(out.cmi_image) and math.isfinite(out.mi_image)
    # fresh samples (DDIM with guidance through the denoiser, as the probe's generate_image)
    fresh = sample(model, ["a red circle"], steps=3, guidance_scale=2.0, generator=gen(9))
    assert fresh.shape == (1, *model.latent_shape) and bool(torch.isfinite(fresh).all())
