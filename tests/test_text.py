"""Words ↔ tokens and prompt edits (infodecomp.text)."""

from __future__ import annotations

import pytest

from infodecomp.text import (
    check_prompt_length,
    contains_word,
    delete_substring,
    omit_word,
    prompt_token_ids,
    swap_word,
    swap_words,
    token_positions,
)


# -- token positions -----------------------------------------------------------------------------------------


def test_first_word_is_at_position_one(clip_tokenizer):
    # position 0 is <|startoftext|>: DAAM's "+1"
    assert token_positions(clip_tokenizer, "dog on a bed", "dog") == [1]
    ids = clip_tokenizer("dog on a bed").input_ids
    assert clip_tokenizer.convert_ids_to_tokens(ids[1]) == "dog</w>"


def test_repeated_word_gives_every_occurrence(clip_tokenizer):
    prompt = "a dog chasing a dog toy near a Dog"
    pos = token_positions(clip_tokenizer, prompt, "dog")
    toks = clip_tokenizer.convert_ids_to_tokens(clip_tokenizer(prompt.lower()).input_ids)
    assert pos == [i for i, t in enumerate(toks) if t == "dog</w>"]
    assert len(pos) == 3


def test_multi_token_word_gives_all_its_tokens(clip_tokenizer):
    # "snowboarder" is two BPE tokens: snow + boarder</w>
    assert clip_tokenizer.tokenize("snowboarder") == ["snow", "boarder</w>"]
    assert token_positions(clip_tokenizer, "a snowboarder in the air", "snowboarder") == [2, 3]
    # a phrase: both words, and a repeated multi-token word twice
    assert token_positions(clip_tokenizer, "a teddy bear on a bed", "teddy bear") == [2, 3]
    assert token_positions(clip_tokenizer, "snowboarder and snowboarder", "snowboarder") == [1, 2, 4, 5]


def test_match_must_start_a_word(clip_tokenizer):
    # "hydrant" = hydr + ant</w>: the word "ant" must not match its tail
    assert clip_tokenizer.tokenize("hydrant") == ["hydr", "ant</w>"]
    with pytest.raises(ValueError, match="'ant'.*does not occur"):
        token_positions(clip_tokenizer, "a fire hydrant", "ant")
    assert token_positions(clip_tokenizer, "an ant near a hydrant", "ant") == [2]


def test_word_not_in_prompt_raises_with_tokens(clip_tokenizer):
    with pytest.raises(ValueError, match=r"'cat'.*does not occur in prompt 'a dog'.*dog</w>"):
        token_positions(clip_tokenizer, "a dog", "cat")
    # a plural is a different token: no silent partial match
    with pytest.raises(ValueError):
        token_positions(clip_tokenizer, "two dogs", "dog")
    with pytest.raises(ValueError, match="non-empty"):
        token_positions(clip_tokenizer, "a dog", "  ")


def test_prompt_over_limit_raises_unless_truncate(clip_tokenizer):
    long = " ".join(["dog"] * 80)
    with pytest.raises(ValueError, match="82 tokens.*at most 77.*truncated"):
        prompt_token_ids(clip_tokenizer, long)
    with pytest.raises(ValueError, match="truncated"):
        check_prompt_length(clip_tokenizer, ["a cat", long])
    ids = prompt_token_ids(clip_tokenizer, long, truncate=True)
    assert len(ids) == 77 and ids[0] == clip_tokenizer.bos_token_id and ids[-1] == clip_tokenizer.eos_token_id
    # positions stop inside the encoder's window
    pos = token_positions(clip_tokenizer, long, "dog", truncate=True)
    assert pos == list(range(1, 76))
    check_prompt_length(clip_tokenizer, " ".join(["dog"] * 75))  # 77 with start/end: fits


# -- prompt edits ---------------------------------------------------------------------------------------------


def test_omit_word_is_whole_word_case_insensitive_with_plural():
    assert omit_word("Two Dogs and a dog near a hotdog stand", "dog") == "Two _ and a _ near a hotdog stand"
    assert omit_word("a teddy bear and two Teddy  Bears", "teddy bear") == "a _ and two _"
    assert omit_word("a cat", "cat", plural=False) == "a _"
    assert omit_word("two cats", "cat", plural=True) == "two _"
    with pytest.raises(ValueError, match="'cat' does not occur"):
        omit_word("two cats", "cat", plural=False)


def test_omit_word_deletion_tidies_spaces():
    assert omit_word("a dog on a bed, with a dog", "dog", placeholder="") == "a on a bed, with a"
    assert omit_word("Dog on a bed", "dog", placeholder="") == "on a bed"


def test_delete_substring_is_the_faithful_coco_it_context():
    # docs/protocol.md#b22: plain, case-sensitive replacement that clips other words and leaves double spaces
    assert delete_substring("a bed in a bedroom", "bed") == "a  in a room"
    with pytest.raises(ValueError, match="case-sensitively"):
        delete_substring("A Bed", "bed")


def test_swap_word_and_tables():
    assert swap_word("A dog and two dogs", "dog", "cat") == "A cat and two cats"
    assert swap_word("Dog on a bed", "dog", "cat") == "Cat on a bed"
    # two-way table swaps in one pass, longer keys first
    assert swap_words("a dog chases a cat", {"dog": "cat", "cat": "dog"}) == "a cat chases a dog"
    assert swap_words("a teddy bear and a bear", {"teddy bear": "robot", "bear": "elephant"}) == \
        "a robot and a elephant"
    # an explicit plural entry wins over the automatic "+s"
    assert swap_words("two people", {"person": "monkey", "people": "monkeys"}) == "two monkeys"
    with pytest.raises(ValueError, match="none of the words"):
        swap_word("a cat", "dog", "horse")
    with pytest.raises(ValueError, match="at least one"):
        swap_words("a cat", {})


def test_contains_word():
    assert contains_word("Two Dogs", "dog")
    assert not contains_word("Two Dogs", "dog", plural=False)
    assert not contains_word("a hotdog", "dog")
