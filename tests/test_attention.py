"""Cross-attention recording (infodecomp.models.attention)."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from infodecomp.models.attention import (
    RecordingAttnProcessor,
    cross_attention_layers,
    cross_attention_probs,
    record_cross_attention,
    word_map,
)
from infodecomp.testing import sd21_unet, tiny_unet


@pytest.fixture(scope="module")
def unet():
    """A private tiny UNet (processors are swapped in these tests)."""
    return tiny_unet(seed=3)


def _inputs(B=2, L=77, D=32, hw=8, seed=0):
    g = torch.Generator().manual_seed(seed)
    return (torch.randn(B, 4, hw, hw, generator=g), torch.tensor([10, 600])[:B],
            torch.randn(B, L, D, generator=g))


def _forward(unet, z, t, cond):
    with torch.no_grad():
        return unet(z, t, encoder_hidden_states=cond, return_dict=False)[0]


def test_probabilities_are_the_layers_softmax():
    from diffusers.models.attention_processor import Attention, AttnProcessor2_0

    torch.manual_seed(0)
    attn = Attention(query_dim=16, cross_attention_dim=12, heads=2, dim_head=8).eval()
    got = []
    attn.set_processor(RecordingAttnProcessor(AttnProcessor2_0(), "layer", lambda n, p: got.append((n, p))))
    hs, ehs = torch.randn(3, 10, 16), torch.randn(3, 5, 12)
    with torch.no_grad():
        out = attn(hs, encoder_hidden_states=ehs)
        name, probs = got[0]
        assert name == "layer" and probs.shape == (3, 2, 10, 5) and probs.dtype == torch.float32
        assert torch.allclose(probs.sum(-1), torch.ones(3, 2, 10), atol=1e-6)
        # the layer's output is exactly attention(probs) @ V through to_out
        v = attn.to_v(ehs).view(3, 5, 2, 8).transpose(1, 2)
        manual = attn.to_out[0]((probs @ v).transpose(1, 2).reshape(3, 10, 16))
        assert torch.allclose(out, manual, atol=1e-5)
        assert torch.allclose(cross_attention_probs(attn, hs, ehs), probs)
    # self-attention calls are not recorded
    self_attn = Attention(query_dim=16, heads=2, dim_head=8).eval()
    self_attn.set_processor(RecordingAttnProcessor(AttnProcessor2_0(), "self", lambda n, p: got.append((n, p))))
    with torch.no_grad():
        self_attn(hs)
    assert len(got) == 1


def test_layer_listing(unet):
    names = cross_attention_layers(unet)
    assert len(names) == 7 and all(n.endswith("attn2") for n in names)
    assert sum(n.startswith("mid_block") for n in names) == 1
    assert len(cross_attention_layers(unet, include_mid=False)) == 6


@pytest.mark.parametrize("kwargs", [{}, {"include_mid": True}, {"faithful_half_heads": True},
                                    {"resolutions": {4}}])
def test_recording_is_bit_identical_and_restores(unet, kwargs):
    z, t, cond = _inputs()
    before = dict(unet.attn_processors)
    ref = _forward(unet, z, t, cond)
    with record_cross_attention(unet, **kwargs) as rec:
        out = _forward(unet, z, t, cond)
        assert any(isinstance(p, RecordingAttnProcessor) for p in unet.attn_processors.values())
    assert torch.equal(out, ref)
    after = unet.attn_processors
    assert after.keys() == before.keys() and all(after[k] is before[k] for k in before)
    assert rec.n_calls == 1 and rec.token_maps().shape == (2, 77, 8, 8)


def test_processors_restored_when_the_block_raises(unet):
    before = dict(unet.attn_processors)
    with pytest.raises(RuntimeError, match="boom"):
        with record_cross_attention(unet):
            _forward(unet, *_inputs())
            raise RuntimeError("boom")
    after = unet.attn_processors
    assert all(after[k] is before[k] for k in before)
    # no hook left behind: a later forward records nothing anywhere
    assert torch.equal(_forward(unet, *_inputs()), _forward(unet, *_inputs()))


def test_daam_aggregation_matches_a_manual_computation(unet):
    z, t, cond = _inputs()
    name = "down_blocks.1.attentions.0.transformer_blocks.0.attn2"  # 4×4 grid, 4 heads
    layer = unet.get_submodule(name)
    seen = []
    handle = layer.register_forward_hook(
        lambda m, args, kwargs, out: seen.append((args[0] if args else kwargs["hidden_states"],
                                                  kwargs["encoder_hidden_states"])), with_kwargs=True)
    try:
        with record_cross_attention(unet, layers=[name]) as rec:
            _forward(unet, z, t, cond)
            _forward(unet, z, t, cond)
    finally:
        handle.remove()
    assert rec.heads == {name: 4} and rec.grid == {name: (4, 4)} and rec.n_calls == 2
    manual = 0
    for hs, ehs in seen:  # per call: q kᵀ softmax by hand, bicubic to 8×8, clamp, mean over heads
        with torch.no_grad():
            q = layer.to_q(hs).view(2, 16, 4, -1).transpose(1, 2)
            k = layer.to_k(ehs).view(2, 77, 4, -1).transpose(1, 2)
            p = (q @ k.transpose(-1, -2) / q.shape[-1] ** 0.5).softmax(-1)  # [2, 4, 16, 77]
        m = p.permute(0, 1, 3, 2).reshape(2, 4 * 77, 4, 4)
        m = F.interpolate(m, size=(8, 8), mode="bicubic", align_corners=False).clamp(min=0)
        manual = manual + m.view(2, 4, 77, 8, 8).mean(1)
    assert torch.allclose(rec.token_maps(), manual, atol=1e-5)
    # summed over calls: two identical calls are twice one
    with record_cross_attention(unet, layers=[name]) as once:
        _forward(unet, z, t, cond)
    assert torch.allclose(rec.token_maps(), 2 * once.token_maps(), atol=1e-6)


def test_mean_over_every_layer_and_head(unet):
    z, t, cond = _inputs()
    with record_cross_attention(unet) as rec:
        _forward(unet, z, t, cond)
    per_layer = rec.layer_maps()
    total = sum(per_layer[n] * rec.heads[n] for n in per_layer) / sum(rec.heads.values())
    assert torch.allclose(rec.token_maps(), total, atol=1e-6)
    # the 8×8 layers are not resampled: their map is the probabilities themselves, ≥ 0, summing to 1 over tokens
    fine = [n for n, g in rec.grid.items() if g == (8, 8)]
    assert fine and torch.allclose(per_layer[fine[0]].sum(1), torch.ones(2, 8, 8), atol=1e-5)


def test_layer_and_resolution_selection(unet):
    z, t, cond = _inputs()
    with record_cross_attention(unet, resolutions={4}) as rec:
        _forward(unet, z, t, cond)
    assert set(rec.grid.values()) == {(4, 4)} and len(rec.sums) == 3  # mid-block excluded by default
    assert not any(n.startswith("mid_block") for n in rec.sums)
    with record_cross_attention(unet, resolutions={4}, include_mid=True) as rec:
        _forward(unet, z, t, cond)
    assert len(rec.sums) == 4
    with record_cross_attention(unet, layers=lambda n: n.startswith("up_blocks")) as rec:
        _forward(unet, z, t, cond)
    assert len(rec.sums) == 4 and all(n.startswith("up_blocks") for n in rec.sums)
    with pytest.raises(ValueError, match="unknown cross-attention layers.*down_blocks"):
        with record_cross_attention(unet, layers=["down_blocks.9.attn2"]):
            pass
    with pytest.raises(ValueError, match="matches no cross-attention layer"):
        with record_cross_attention(unet, layers=lambda n: False):
            pass
    with record_cross_attention(unet, resolutions={2}) as rec:
        _forward(unet, z, t, cond)
    with pytest.raises(RuntimeError, match="nothing was recorded"):
        rec.token_maps()


def test_faithful_half_heads(unet):
    z, t, cond = _inputs()
    with record_cross_attention(unet, faithful_half_heads=True) as rec:
        _forward(unet, z, t, cond)
    # 2 heads → keeps 1, 4 heads → keeps 2 (DAAM's second half, docs/protocol.md#b10)
    assert {g: h for g, h in zip(rec.grid.values(), rec.heads.values())} == {(8, 8): 1, (4, 4): 2}
    with record_cross_attention(unet) as full:
        _forward(unet, z, t, cond)
    assert not torch.allclose(rec.token_maps(), full.token_maps())


def test_batch_change_and_word_maps(unet, clip_tokenizer):
    z, t, cond = _inputs()
    with pytest.raises(ValueError, match="record each batch in its own"):
        with record_cross_attention(unet):
            _forward(unet, z, t, cond)
            _forward(unet, z[:1], t[:1], cond[:1])
    with record_cross_attention(unet) as rec:
        _forward(unet, z, t, cond)
    maps = rec.token_maps()
    prompts = ["a snowboarder and a dog", "a dog and a dog"]
    wm = rec.word_maps(clip_tokenizer, prompts, ["snowboarder", "dog"])
    assert wm.shape == (2, 8, 8)
    assert torch.allclose(wm[0], maps[0, [2, 3]].mean(0)) and torch.allclose(wm[1], maps[1, [2, 5]].mean(0))
    with pytest.raises(ValueError, match="outside the 77 recorded tokens"):
        word_map(maps, [80])
    with pytest.raises(ValueError, match="does not occur"):
        rec.word_maps(clip_tokenizer, prompts, "cat")


def test_sd21_architecture():
    # SD 2.1-base's exact layout (block types, 2 layers per block, 5/10/20 heads, cross-attention width 1024,
    # linear projections) with channels ÷ 8 and 16×16 latents instead of 64×64, to stay fast on a CPU.
    unet = sd21_unet(sample_size=16, width_divisor=8)
    names = cross_attention_layers(unet, include_mid=False)
    assert len(names) == 15 and len(cross_attention_layers(unet)) == 16
    g = torch.Generator().manual_seed(0)
    z, t, cond = torch.randn(1, 4, 16, 16, generator=g), torch.tensor([500]), torch.randn(1, 77, 1024, generator=g)
    ref = _forward(unet, z, t, cond)
    with record_cross_attention(unet) as rec:
        out = _forward(unet, z, t, cond)
    assert torch.equal(out, ref)
    assert sorted(set(rec.grid.values())) == [(4, 4), (8, 8), (16, 16)]
    by_grid = {}
    for n, gsz in rec.grid.items():
        by_grid.setdefault(gsz, set()).add(rec.heads[n])
    assert by_grid == {(16, 16): {5}, (8, 8): {10}, (4, 4): {20}}
    assert rec.token_maps().shape == (1, 77, 16, 16)
    with record_cross_attention(unet, faithful_half_heads=True) as half:
        _forward(unet, z, t, cond)
    assert sorted(set(half.heads.values())) == [3, 5, 10]  # DAAM keeps 3 of 5, 5 of 10, 10 of 20
