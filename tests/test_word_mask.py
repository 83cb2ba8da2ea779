"""A model that reads only its words: the end token and the padding hidden from cross-attention.

shapes-tiny v2 is trained with ``<|endoftext|>`` and the padding masked out of every cross-attention layer,
and its pipeline directory says so in ``infodecomp.json``. These tests check the mechanism on tiny pipelines:
the mask rule, the settings file, ``encode_prompts`` marking hidden rows, the denoiser hiding them (so nothing
in those rows can change ε̂), the sampler honouring it, and attention recording seeing zero mass there.
"""

import json

import pytest
import torch

from infodecomp.models import Model, load_model, read_settings
from infodecomp.text import word_token_mask


@pytest.fixture(scope="module")
def words_model():
    from infodecomp.testing import tiny_pipeline

    return Model(tiny_pipeline(seed=0), name="tiny-words", cross_attention_tokens="words")


def test_word_token_mask_keeps_start_and_words_and_hides_end_and_padding(clip_tokenizer):
    ids = clip_tokenizer(["a red circle", ""], padding="max_length", max_length=12, return_tensors="pt").input_ids
    mask = word_token_mask(ids, clip_tokenizer.eos_token_id)
    assert mask[0].tolist() == [True] * 4 + [False] * 8  # start, a, red, circle | end, padding
    assert mask[1].tolist() == [True] + [False] * 11      # the null prompt: the start token alone
    no_end = torch.tensor([[49406, 320, 736]])
    assert word_token_mask(no_end, clip_tokenizer.eos_token_id).all()
    with pytest.raises(ValueError, match=r"\[N, L\]"):
        word_token_mask(ids[0], clip_tokenizer.eos_token_id)


def test_settings_file_is_read_and_checked(tiny_pipeline_dir, tmp_path):
    assert read_settings(tiny_pipeline_dir) == {"cross_attention_tokens": "all"}  # no file: a stock pipeline
    assert load_model(str(tiny_pipeline_dir)).cross_attention_tokens == "all"
    import shutil

    d = tmp_path / "pipe"
    shutil.copytree(tiny_pipeline_dir, d)
    (d / "infodecomp.json").write_text(json.dumps({"cross_attention_tokens": "words"}))
    model = load_model(str(d))
    assert model.cross_attention_tokens == "words" and model.denoiser.hide_zero_tokens
    (d / "infodecomp.json").write_text("{not json")
    with pytest.raises(ValueError, match="infodecomp.json is not valid JSON"):
        load_model(str(d))
    (d / "infodecomp.json").write_text(json.dumps({"cross_attention_tokens": "some"}))
    with pytest.raises(ValueError, match="cross_attention_tokens must be one of"):
        read_settings(d)
    (d / "infodecomp.json").write_text(json.dumps({"mask": "words"}))
    with pytest.raises(ValueError, match="keys among"):
        read_settings(d)


def test_encode_prompts_zeroes_exactly_the_hidden_rows(words_model, tiny_model):
    prompts = ["a red circle", "a big blue square left of a green triangle", ""]
    raw = words_model.encode_prompts(prompts, hide=False)
    torch.testing.assert_close(raw, tiny_model.encode_prompts(prompts), rtol=0, atol=0)  # same weights
    hidden = words_model.encode_prompts(prompts)
    mask = words_model.token_mask(prompts)
    assert torch.equal(hidden.abs().amax(-1) > 0, mask)
    torch.testing.assert_close(hidden[mask], raw[mask], rtol=0, atol=0)
    assert tiny_model.token_mask(prompts).all()  # an "all" model sees every token


def test_denoiser_calls_the_unet_as_training_did_raw_rows_and_the_mask(words_model, tiny_model):
    g = torch.Generator().manual_seed(0)
    z, lam = torch.randn(2, 4, 8, 8, generator=g), torch.tensor([0.5, 2.0])
    prompts = ["a red circle", "a blue square"]
    cond = words_model.encode_prompts(prompts)
    eps = words_model.denoiser(z, lam, cond)
    # training: the text encoder's raw rows with encoder_attention_mask (start and word tokens visible)
    raw, mask = words_model.encode_prompts(prompts, hide=False), words_model.token_mask(prompts)
    t = words_model.denoiser.timesteps(lam)
    trained = words_model.unet(z, t, raw, encoder_attention_mask=mask).sample
    torch.testing.assert_close(eps, trained, rtol=0, atol=1e-6)
    # the stock call (no mask) reads the end token and padding, and gets another ε̂
    assert (tiny_model.denoiser(z, lam, raw) - eps).abs().max() > 1e-3
    # a visible row does change ε̂
    moved = cond.clone()
    moved[:, 1] += 1.0
    assert (words_model.denoiser(z, lam, moved) - eps).abs().max() > 1e-4


def test_a_fully_hidden_conditioning_row_is_refused(words_model):
    with pytest.raises(ValueError, match="every token hidden"):
        words_model.denoiser(torch.zeros(1, 4, 8, 8), torch.tensor([0.0]), torch.zeros(1, 77, 32))


def test_sampler_matches_the_stock_pipeline_for_a_stock_model_and_hides_tokens_otherwise(tiny_model, words_model):
    from infodecomp.editing import sample

    prompts = ["a red circle", "a blue square"]
    ours = sample(tiny_model, prompts, steps=6, guidance_scale=3.0, generator=torch.Generator().manual_seed(1))
    stock = tiny_model.pipeline(prompts, num_inference_steps=6, guidance_scale=3.0, output_type="latent",
                                generator=torch.Generator().manual_seed(1)).images
    torch.testing.assert_close(ours, stock, rtol=1e-4, atol=1e-5)
    masked = sample(words_model, prompts, steps=6, guidance_scale=3.0, generator=torch.Generator().manual_seed(1))
    assert (masked - stock).abs().max() > 1e-3  # the stock pipeline attends to the end token and padding


def test_recorded_attention_gives_hidden_tokens_exactly_zero_mass(words_model, tiny_model):
    from infodecomp.diagnostics import attention_mass_table, token_attention_mass

    x = torch.randn(2, 4, 8, 8, generator=torch.Generator().manual_seed(2))
    prompts = ["a red circle", "a blue square left of a red circle"]
    for model, hidden in ((words_model, True), (tiny_model, False)):
        frame = token_attention_mass(model, x, prompts, [-2.0, 3.0], generator=torch.Generator().manual_seed(0))
        totals = frame.groupby(["image", "layer", "logsnr"])["mass"].sum()
        assert totals.sub(1).abs().max() < 1e-5  # a probability distribution over the tokens
        table = attention_mass_table(frame, by=())
        if hidden:
            assert table["end"].iloc[0] == 0 and table["padding"].iloc[0] == 0
        else:
            assert table["padding"].iloc[0] > 0.1
