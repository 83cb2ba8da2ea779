"""Diagnostics of whether a model reads its words (infodecomp.diagnostics), on tiny pipelines and by hand."""

import numpy as np
import pytest
import torch

from infodecomp import diagnostics as D
from infodecomp.models import Model


@pytest.fixture(scope="module")
def words_model():
    from infodecomp.testing import tiny_pipeline

    return Model(tiny_pipeline(seed=0), name="tiny-words", cross_attention_tokens="words")


def test_token_kinds_follow_the_token_sequence(clip_tokenizer):
    kinds = D.token_kinds(clip_tokenizer, "a red circle")
    assert kinds[:5] == ["start", "word", "word", "word", "end"] and set(kinds[5:]) == {"padding"}
    assert len(kinds) == clip_tokenizer.model_max_length
    assert D.token_kinds(clip_tokenizer, "")[:2] == ["start", "end"]


def test_pixel_auroc_against_hand_counts():
    score = np.array([[0.9, 0.8], [0.1, 0.8]])
    pos = np.array([[True, True], [False, False]])
    neg = ~pos
    # positive scores {0.9, 0.8}, negative {0.1, 0.8}: pairs (0.9>0.1, 0.9>0.8, 0.8>0.1, 0.8=0.8 → ½) = 3.5/4
    assert D.pixel_auroc(score, pos, neg) == pytest.approx(3.5 / 4)
    assert D.pixel_auroc(score, neg, pos) == pytest.approx(0.5 / 4)
    assert D.pixel_auroc(np.ones((2, 2)), pos, neg) == pytest.approx(0.5)
    rng = np.random.default_rng(0)
    s, p = rng.random((8, 8)), rng.random((8, 8)) < 0.3
    brute = np.mean([(a > b) + 0.5 * (a == b) for a in s[p] for b in s[~p]])
    assert D.pixel_auroc(torch.from_numpy(s), p, ~p) == pytest.approx(brute)
    with pytest.raises(ValueError, match="non-empty"):
        D.pixel_auroc(score, np.zeros((2, 2), bool), neg)
    with pytest.raises(ValueError, match="one shape"):
        D.pixel_auroc(np.ones((4, 4)), pos, neg)


def test_hybrid_takes_words_of_one_prompt_and_padding_of_the_other(tiny_model, words_model):
    a, b = ["a red circle"], ["a blue square"]
    hyb = D.hybrid_embeddings(tiny_model, a, b)
    ea, eb = tiny_model.encode_prompts(a), tiny_model.encode_prompts(b)
    torch.testing.assert_close(hyb[0, :4], ea[0, :4], rtol=0, atol=0)  # start + 3 words
    torch.testing.assert_close(hyb[0, 4:], eb[0, 4:], rtol=0, atol=0)  # end + padding
    # a model that hides end and padding sees only A's tokens
    torch.testing.assert_close(D.hybrid_embeddings(words_model, a, b), words_model.encode_prompts(a), rtol=0, atol=0)
    with pytest.raises(ValueError, match="equal token length"):
        D.hybrid_embeddings(tiny_model, ["a red circle"], ["a big blue square"])


def test_swap_distances_read_the_padding_or_the_words(tiny_model, words_model):
    x = torch.randn(3, 4, 8, 8, generator=torch.Generator().manual_seed(0))
    a, b = ["a red circle", "a green square", "two blue squares"], ["a blue square", "a red triangle", "two red circles"]
    d = D.swap_distances(words_model, x, a, b, n_samples=2, generator=torch.Generator().manual_seed(1))
    assert np.all(d["d_words"] < 1e-9) and np.all(d["d_padding"] > 0) and d["follows_words"].all()
    d = D.swap_distances(tiny_model, x, a, b, n_samples=2, generator=torch.Generator().manual_seed(1))
    assert np.all(d["d_words"] > 0) and np.all(d["d_padding"] > 0)


def test_epsilon_change_is_zero_for_an_identical_edit_and_shares_noise(tiny_model):
    x = torch.randn(2, 4, 8, 8, generator=torch.Generator().manual_seed(0))
    prompts = ["a red circle left of a blue square", "a green square above a red circle"]
    edited = {"same": prompts, "other": ["a red circle right of a blue square", "a blue square above a red circle"]}
    d = D.epsilon_change(tiny_model, x, prompts, edited, n_samples=3, generator=torch.Generator().manual_seed(2))
    assert np.all(d["same"] == 0) and np.all(d["other"] > 0)
    with pytest.raises(ValueError, match="one prompt and one edit"):
        D.epsilon_change(tiny_model, x, prompts[:1], edited)
