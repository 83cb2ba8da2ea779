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


# -- SentencePiece (T5) token positions ------------------------------------------------------------------------


@pytest.fixture(scope="module")
def t5_tokenizer():
    from infodecomp.tokenizer import tiny_t5_tokenizer

    return tiny_t5_tokenizer()


def test_sentencepiece_is_recognised(t5_tokenizer, clip_tokenizer):
    from infodecomp.text import is_sentencepiece

    assert is_sentencepiece(t5_tokenizer) and not is_sentencepiece(clip_tokenizer)
    # T5's conventions: "▁" starts a word, no start token, "</s>" ends, cased
    ids = t5_tokenizer("a red circle").input_ids
    assert t5_tokenizer.convert_ids_to_tokens(ids) == ["\u2581a", "\u2581red", "\u2581circle", "</s>"]
    assert t5_tokenizer.pad_token_id == 0 and t5_tokenizer.eos_token_id == 1


def test_sentencepiece_positions(t5_tokenizer):
    assert token_positions(t5_tokenizer, "a red circle", "a") == [0]  # no start token: the first word is at 0
    assert token_positions(t5_tokenizer, "a red circle", "circle") == [2]
    # cased vocabulary: "Dog" is "▁", "D", "o", "g"; matching is on the text, case-insensitively
    assert t5_tokenizer.tokenize("A Dog") == ["\u2581", "A", "\u2581", "D", "o", "g"]
    assert token_positions(t5_tokenizer, "A Dog chasing a dog toy, on the grass.", "dog") == [2, 3, 4, 5, 8]
    # several pieces per word, phrases, punctuation next to the word
    assert t5_tokenizer.tokenize("skateboards") == ["\u2581skate", "board", "s"]
    assert token_positions(t5_tokenizer, "two skateboards and a teddy bear", "skateboards") == [1, 2, 3]
    assert token_positions(t5_tokenizer, "two skateboards and a teddy bear", "teddy bear") == [6, 7]
    assert token_positions(t5_tokenizer, "a dog toy, on the grass", "toy") == [2]
    # whole words only: not the tail of a word, not a plural
    with pytest.raises(ValueError, match="'ball' does not occur"):
        token_positions(t5_tokenizer, "a football", "ball")
    with pytest.raises(ValueError, match="does not occur"):
        token_positions(t5_tokenizer, "two dogs", "dog")


def test_sentencepiece_length_limit_is_the_pipelines(t5_tokenizer):
    long = " ".join(["red"] * 20)  # 21 tokens with </s>
    check_prompt_length(t5_tokenizer, long)  # under the tokenizer's own 512
    with pytest.raises(ValueError, match="21 tokens.*at most 16"):
        check_prompt_length(t5_tokenizer, long, max_length=16)
    ids = prompt_token_ids(t5_tokenizer, long, truncate=True, max_length=16)
    assert len(ids) == 16 and ids[-1] == t5_tokenizer.eos_token_id
    assert token_positions(t5_tokenizer, long, "red", truncate=True, max_length=16) == list(range(15))


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
