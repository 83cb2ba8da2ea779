"""Attention maps of MMDiT transformers (infodecomp.models.attention.joint) and of the UNet families, on tiny pipelines.

The probabilities are checked against an explicit re-computation of each joint attention whose product with the
values reproduces the attention module's own output (so the reference is itself checked against diffusers)."""

from __future__ import annotations

import math

import pytest
import torch

from infodecomp.models.attention import (
    is_joint_attention_model,
    joint_attention_layers,
    joint_attention_probs,
    record_cross_attention,
    record_joint_attention,
)

PROMPTS = ["a red circle left of a blue square", "two small yellow triangles"]


def gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _softmax_reference(q, k, v):
    """Full joint softmax ``[B, H, S_q, S_k]`` and its output ``[B, S_q, H·D]`` from ``q, k, v [B, H, S, D]``."""
    p = (q.float() @ k.float().transpose(-1, -2) / math.sqrt(q.shape[-1])).softmax(-1)
    return p, (p @ v.float()).transpose(1, 2).flatten(2)


def test_sd3_probabilities_are_the_joint_softmax(family_models):
    tr = family_models("sd3").transformer
    attn = tr.transformer_blocks[0].attn
    B, N, L, C = 2, 16, 10, attn.to_q.in_features
    img = torch.randn(B, N, C, generator=gen(0))
    txt = torch.randn(B, L, C, generator=gen(1))
    H = attn.heads
    split = lambda x: x.view(B, -1, H, x.shape[-1] // H).transpose(1, 2)  # noqa: E731
    q, k, v = split(attn.to_q(img)), split(attn.to_k(img)), split(attn.to_v(img))
    eq, ek, ev = split(attn.add_q_proj(txt)), split(attn.add_k_proj(txt)), split(attn.add_v_proj(txt))
    if attn.norm_q is not None:
        q, k = attn.norm_q(q), attn.norm_k(k)
    p, out = _softmax_reference(torch.cat([q, eq], 2), torch.cat([k, ek], 2), torch.cat([v, ev], 2))
    with torch.no_grad():
        img_out, _ = attn(hidden_states=img, encoder_hidden_states=txt)
    torch.testing.assert_close(attn.to_out[0](out[:, :N]), img_out, rtol=1e-4, atol=1e-5)  # the reference is right
    probs = joint_attention_probs(attn, img, txt, layout="sd3")
    assert probs.shape == (B, H, N, L)
    torch.testing.assert_close(probs, p[:, :, :N, N:], rtol=1e-5, atol=1e-6)
    renorm = joint_attention_probs(attn, img, txt, layout="sd3", renormalize=True)
    torch.testing.assert_close(renorm.sum(-1), torch.ones(B, H, N), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("single", [False, True])
def test_flux_probabilities_are_the_joint_softmax_with_rotary(family_models, single):
    from diffusers.models.embeddings import apply_rotary_emb

    tr = family_models("flux").transformer
    block = tr.single_transformer_blocks[0] if single else tr.transformer_blocks[0]
    attn = block.attn
    B, N, L, C, d = 2, 16, 6, attn.to_q.in_features, attn.head_dim
    img = torch.randn(B, N, C, generator=gen(2))
    txt = torch.randn(B, L, C, generator=gen(3))
    grid = torch.arange(16.0)
    ids = torch.cat([torch.zeros(L, 3), torch.stack([torch.zeros(16), grid // 4, grid % 4], 1)])  # txt; 4×4 patches
    rotary = tr.pos_embed(ids)
    heads = lambda x: x.unflatten(-1, (-1, d))  # noqa: E731
    if single:
        seq = torch.cat([txt, img], 1)
        q, k, v = attn.norm_q(heads(attn.to_q(seq))), attn.norm_k(heads(attn.to_k(seq))), heads(attn.to_v(seq))
    else:
        q = torch.cat([attn.norm_added_q(heads(attn.add_q_proj(txt))), attn.norm_q(heads(attn.to_q(img)))], 1)
        k = torch.cat([attn.norm_added_k(heads(attn.add_k_proj(txt))), attn.norm_k(heads(attn.to_k(img)))], 1)
        v = torch.cat([heads(attn.add_v_proj(txt)), heads(attn.to_v(img))], 1)
    q, k = apply_rotary_emb(q, rotary, sequence_dim=1), apply_rotary_emb(k, rotary, sequence_dim=1)
    p, out = _softmax_reference(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2))
    with torch.no_grad():
        if single:
            ref_out = attn(hidden_states=seq, image_rotary_emb=rotary)
            torch.testing.assert_close(out, ref_out, rtol=1e-4, atol=1e-5)
            probs = joint_attention_probs(attn, seq, layout="flux_single", image_rotary_emb=rotary, text_len=L)
        else:
            img_out, _ = attn(hidden_states=img, encoder_hidden_states=txt, image_rotary_emb=rotary)
            torch.testing.assert_close(attn.to_out[0](out[:, L:]), img_out, rtol=1e-4, atol=1e-5)
            probs = joint_attention_probs(attn, img, txt, layout="flux_double", image_rotary_emb=rotary)
    assert probs.shape == (B, attn.heads, N, L)
    torch.testing.assert_close(probs, p[:, :, L:, :L], rtol=1e-5, atol=1e-6)


def test_layer_listing(family_models):
    sd3, flux = family_models("sd3"), family_models("flux")
    assert is_joint_attention_model(sd3) and is_joint_attention_model(flux.pipeline)
    assert not is_joint_attention_model(family_models("sdxl"))
    assert joint_attention_layers(sd3) == ["transformer_blocks.0.attn", "transformer_blocks.1.attn"]
    assert joint_attention_layers(flux) == ["transformer_blocks.0.attn", "single_transformer_blocks.0.attn"]
    assert joint_attention_layers(flux, include_single=False) == ["transformer_blocks.0.attn"]
    with pytest.raises(TypeError, match="SD3 / Flux"):
        joint_attention_layers(family_models("sdxl"))


@pytest.mark.parametrize("kind", ["sd3", "flux", "flux-dev"])
def test_recording_is_bit_identical_restores_and_gives_word_maps(kind, family_models):
    model = family_models(kind)
    tr = model.transformer
    before = dict(tr.attn_processors)
    cond = model.encode_prompts(PROMPTS)
    z = torch.randn(2, *model.latent_shape, generator=gen(4))
    lam = torch.tensor([0.5, 2.0])
    plain = model.denoiser(z, lam, cond)
    with record_cross_attention(model) as rec:  # dispatches to the joint recorder for transformers
        recorded = model.denoiser(z, lam, cond)
        model.denoiser(z, lam, cond)
    assert torch.equal(plain, recorded)
    assert all(tr.attn_processors[k] is v for k, v in before.items())
    L = model.layout.tokens
    maps = rec.token_maps()
    assert maps.shape == (2, L, 8, 8) and rec.n_calls == 2 and rec.text_len == L
    assert bool((maps >= 0).all())
    by_model = rec.word_maps(model, PROMPTS, ["circle", "triangles"])
    assert by_model.shape == (2, 8, 8)
    pos = model.token_positions(PROMPTS[0], "circle")
    torch.testing.assert_close(by_model[0], maps[0, pos].mean(0))
    if kind == "sd3":
        assert len(pos) == 2 and pos[1] >= 77  # a CLIP row and a T5 row
    by_tokenizer = rec.word_maps(model.tokenizer, PROMPTS, ["circle", "triangles"])
    first = model.token_positions(PROMPTS[0], "circle")[0]
    torch.testing.assert_close(by_tokenizer[0], maps[0, first])  # SD3: the CLIP row; Flux: the T5 row


def test_processors_restored_when_the_block_raises(family_models):
    tr = family_models("flux").transformer
    before = dict(tr.attn_processors)
    with pytest.raises(RuntimeError, match="boom"):
        with record_joint_attention(tr):
            raise RuntimeError("boom")
    assert all(tr.attn_processors[k] is v for k, v in before.items())


def test_layer_selection_and_renormalisation(family_models):
    model = family_models("flux")
    cond = model.encode_prompts(PROMPTS)
    z = torch.randn(2, *model.latent_shape, generator=gen(5))
    with record_joint_attention(model, layers=["single_transformer_blocks.0.attn"], renormalize=True) as rec:
        model.denoiser(z, 1.0, cond)
    assert list(rec.sums) == ["single_transformer_blocks.0.attn"] and rec.grid[rec.layers[0]] == (4, 4)
    # renormalised, every image query's text attention sums to 1: the head-mean map sums to 1 per pixel
    # before the (interpolating) upsampling; on the latent grid the total is preserved up to interpolation
    assert rec.token_maps().sum(1).mean().item() == pytest.approx(1.0, abs=0.1)
    with pytest.raises(ValueError, match="unknown joint-attention layers"):
        with record_joint_attention(model, layers=["transformer_blocks.7.attn"]):
            pass


@pytest.mark.parametrize("kind", ["sd15", "sdxl"])
def test_unet_families_record_cross_attention(kind, family_models):
    model = family_models(kind)
    cond = model.encode_prompts(PROMPTS)
    z = torch.randn(2, 4, 8, 8, generator=gen(6))
    plain = model.denoiser(z, 1.0, cond)
    with record_cross_attention(model) as rec:
        recorded = model.denoiser(z, 1.0, cond)
    assert torch.equal(plain, recorded)
    maps = rec.token_maps()
    assert maps.shape == (2, 77, 8, 8)  # SDXL's packed pooled/time-id row is never a key
    assert rec.word_maps(model.tokenizer, PROMPTS, ["circle", "triangles"]).shape == (2, 8, 8)
