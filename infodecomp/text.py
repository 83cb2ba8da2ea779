"""Words ↔ tokens, and the prompt edits the paper's experiments use (docs/protocol.md#prompts, docs/protocol.md#daam,
docs/protocol.md#intervention-solver).

Two families of functions:

* **token positions** (:func:`token_positions`): where a word or phrase sits in the tokenised prompt, for
  cross-attention word maps. As DAAM does: the prompt is lower-cased, every occurrence of the word's BPE
  token sequence is found, and positions are indices into the full token sequence, so the start-of-text token
  is position 0 and the first word starts at 1 (DAAM's "+1"). SentencePiece tokenizers (T5's, for SD3 and
  Flux: pieces mark a word's *start* with "▁", the vocabulary is cased, and there is no start token, so the
  first word starts at 0) are matched on the text instead: every whole-word, case-insensitive occurrence of the
  word in the prompt gives the tokens whose character spans overlap it (:func:`is_sentencepiece`).
* **prompt edits** (:func:`omit_word`, :func:`swap_word`, :func:`swap_words`, :func:`delete_substring`):
  string functions on captions. ``omit_word`` is the image-editing "omit prompt" of the reference (whole
  word, case-insensitive, the word and its "+s" plural replaced by ``_``); with ``placeholder=""`` it is a
  clean whole-word deletion (a *corrected* COCO-IT context). :func:`delete_substring` is the *faithful*
  COCO-IT context: plain, case-sensitive substring removal that can clip other words (docs/protocol.md#b22).
  Whole words are words not glued to another letter, digit or ``_`` ("c++" and "🐶" are words), matched in
  Unicode normal form C (a word typed with combining accents is found), and the edits return NFC text.

Prompt length: CLIP's text encoder sees at most ``tokenizer.model_max_length`` (77) tokens including the start
and end tokens. Longer prompts raise an error saying they would be truncated, unless ``truncate=True``. T5's
limit is the pipeline's ``max_sequence_length`` (256 for SD3, 512 for Flux), passed as ``max_length``.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable, Mapping

from .checks import string as check_string
from .checks import word as check_word

__all__ = [
    "prompt_token_ids",
    "check_prompt_length",
    "token_positions",
    "word_tokens",
    "omit_word",
    "delete_substring",
    "swap_word",
    "swap_words",
    "contains_word",
    "prompt_words",
    "word_token_mask",
    "is_sentencepiece",
]

_END_OF_WORD = "</w>"
_WORD_START = "\u2581"  # "▁", SentencePiece's word-start marker


def _limit(tokenizer, max_length: int | None) -> int:
    return int(tokenizer.model_max_length) if max_length is None else int(max_length)


def prompt_token_ids(tokenizer, prompt: str, *, truncate: bool = False, max_length: int | None = None) -> list[int]:
    """Token ids of ``prompt`` with the start and end tokens, unpadded.

    Raises ``ValueError`` if the prompt needs more than ``max_length`` tokens (default
    ``tokenizer.model_max_length``; it would be truncated by the text encoder) unless ``truncate=True``, in which
    case the ids are cut to the limit (keeping the end token), as the pipeline's ``encode_prompt`` would.
    """
    if not isinstance(prompt, str):
        raise TypeError(f"prompt must be a str, got {type(prompt).__name__}: {prompt!r}")
    ids = list(tokenizer(prompt, truncation=False, add_special_tokens=True).input_ids)
    limit = _limit(tokenizer, max_length)
    if len(ids) > limit:
        if not truncate:
            raise ValueError(
                f"prompt {prompt!r} is {len(ids)} tokens long with its start and end tokens; the text encoder "
                f"takes at most {limit}, so it would be truncated. Shorten it, or pass truncate=True to "
                "truncate it knowingly (the reference code truncated silently)."
            )
        ids = ids[: limit - 1] + [ids[-1]]
    return ids


def word_token_mask(input_ids, eos_token_id: int):
    """Which token positions a model that reads only its words lets cross-attention see: ``[N, L]`` bool,
    True for the start token and the word tokens, False from the first end token (``<|endoftext|>``) on, so
    the end token and the padding are hidden. ``input_ids``: ``[N, L]`` padded ids (tensor or array). A row
    with no end token (a truncated prompt) keeps every position."""
    import torch  # deferred: text is string work and imports no torch (data/coco.py reads its tables without it)

    ids = torch.as_tensor(input_ids)
    if ids.ndim != 2:
        raise ValueError(f"input_ids must be [N, L] token ids, got shape {tuple(ids.shape)}")
    is_eos = ids == int(eos_token_id)
    first = torch.where(is_eos.any(1), is_eos.int().argmax(1), torch.full_like(ids[:, 0], ids.shape[1]))
    return torch.arange(ids.shape[1])[None, :] < first[:, None]


def check_prompt_length(tokenizer, prompts: str | Iterable[str], *, truncate: bool = False,
                        max_length: int | None = None) -> None:
    """Raise ``ValueError`` for the first prompt over the tokenizer's limit (see :func:`prompt_token_ids`)."""
    for p in [prompts] if isinstance(prompts, str) else prompts:
        prompt_token_ids(tokenizer, p, truncate=truncate, max_length=max_length)


def is_sentencepiece(tokenizer) -> bool:
    """Whether ``tokenizer`` marks word starts with "▁" (SentencePiece / Unigram, as T5's) rather than word ends
    with "</w>" (CLIP's BPE)."""
    pieces = tokenizer.convert_ids_to_tokens(tokenizer("a b", add_special_tokens=False).input_ids)
    return any(str(p).startswith(_WORD_START) for p in pieces)


def word_tokens(tokenizer, word: str) -> list[int]:
    """The BPE ids of ``word`` (lower-cased) on its own, without start/end tokens."""
    return list(tokenizer(check_word(word).lower(), add_special_tokens=False).input_ids)


def token_positions(tokenizer, prompt: str, word: str, *, truncate: bool = False,
                    max_length: int | None = None) -> list[int]:
    """Positions of every occurrence of ``word``'s tokens in ``prompt``'s token sequence.

    Args:
        tokenizer: a CLIP tokenizer (``pipe.tokenizer``), or a SentencePiece one (T5's), see below.
        prompt: the caption, e.g. ``"a dog chasing a dog toy"``.
        word: a word or phrase of the caption, e.g. ``"dog"``, ``"teddy bear"``, ``"skateboard"``
            (multi-token words give all their token positions).

    Returns:
        sorted list of int positions into the full token sequence (start token = 0; so the first word of the
        prompt starts at 1, DAAM's "+1"). A repeated word contributes all its occurrences, as DAAM.

    Matching is on lower-cased text (CLIP lower-cases anyway) and on token boundaries: an occurrence must
    start a word (the previous token ends a word or is the start token), so ``"ball"`` does not match the end
    of a word that tokenises as ``foot`` + ``ball``. Raises ``ValueError`` if the word does not occur.

    SentencePiece tokenizers (:func:`is_sentencepiece`; T5 is cased and has no start token, so the first word
    is at 0): the prompt is tokenised as given (as the encoder sees it) and every whole-word, case-insensitive
    occurrence of ``word`` in the prompt text gives the tokens whose character spans overlap it (a word-start
    "▁" piece included). ``max_length``: the encoder's token limit (default ``tokenizer.model_max_length``).
    """
    if is_sentencepiece(tokenizer):
        return _sentencepiece_positions(tokenizer, prompt, word, truncate=truncate, max_length=max_length)
    ids = prompt_token_ids(tokenizer, prompt.lower(), truncate=truncate, max_length=max_length)
    target = word_tokens(tokenizer, word)
    strings = tokenizer.convert_ids_to_tokens(ids)
    k = len(target)
    found = []
    # Search the text part only: positions 1 … len-2 (0 is the start token, the last is the end token).
    for i in range(1, len(ids) - k):
        if ids[i : i + k] == target and (i == 1 or strings[i - 1].endswith(_END_OF_WORD)):
            found.extend(range(i, i + k))
    if not found:
        raise ValueError(
            f"word {word!r} (tokens {tokenizer.convert_ids_to_tokens(target)}) does not occur in prompt "
            f"{prompt!r} (tokens {strings[1:-1]})"
        )
    return found


def _sentencepiece_positions(tokenizer, prompt: str, word: str, *, truncate: bool, max_length: int | None) -> list[int]:
    """:func:`token_positions` for SentencePiece tokenizers, by character offsets (needs a fast tokenizer)."""
    ids = prompt_token_ids(tokenizer, prompt, truncate=truncate, max_length=max_length)  # raises if too long
    enc = tokenizer(prompt, add_special_tokens=True, truncation=True, max_length=_limit(tokenizer, max_length),
                    return_offsets_mapping=True)
    if list(enc.input_ids) != ids:
        raise RuntimeError("the tokenizer's offsets do not match its ids; expected a fast tokenizer")
    special = set(tokenizer.all_special_ids)
    spans = [(i, a, b) for i, (t, (a, b)) in enumerate(zip(ids, enc.offset_mapping)) if t not in special and b > a]
    found: list[int] = []
    for m in _word_regex(word, plural=False).finditer(prompt):
        found.extend(i for i, a, b in spans if a < m.end() and b > m.start() and i not in found)
    if not found:
        raise ValueError(
            f"word {word!r} does not occur as a whole word in prompt {prompt!r} (tokens "
            f"{tokenizer.convert_ids_to_tokens(ids)[:-1]}) within the encoder's {len(ids)} tokens"
        )
    return sorted(found)


# ----------------------------------------------------------------------------------------------------------
# Prompt edits (plain string functions)


def _phrase(word: str) -> str:
    """Regex body of a word or phrase: its parts escaped, the spaces between them matching any whitespace run."""
    return r"\s+".join(re.escape(part) for part in word.split())


# A whole word is not glued to another word character on either side. Lookarounds, not \b: \b needs a word
# character at the word's own edge, so it never matches "c++" or "🐶" (the edges are not word characters).
_NOT_AFTER_WORD, _NOT_BEFORE_WORD = r"(?<!\w)", r"(?!\w)"


def _nfc(text: str) -> str:
    """``text`` in Unicode normal form C: "café" typed with a combining accent (NFD) is the same word as the
    precomposed one, as CLIP's tokenizer (which normalises) and :func:`token_positions` see it."""
    return unicodedata.normalize("NFC", text)


def _word_regex(word: str, plural: bool, name: str = "word") -> re.Pattern:
    """Whole-word, case-insensitive pattern for ``word`` (a phrase's spaces match any whitespace run), in NFC:
    match it against :func:`_nfc` text."""
    body = _phrase(_nfc(check_word(word, name)))
    suffix = "(?:s)?" if plural else ""
    return re.compile(rf"{_NOT_AFTER_WORD}{body}{suffix}{_NOT_BEFORE_WORD}", flags=re.IGNORECASE)


# A word a user can click: letters and digits with inner ' or - ("dog's", "x-ray") and trailing "+" or "#"
# ("c++", "c#"), or a run of non-ASCII symbols such as an emoji (kept only if it holds a symbol, not just
# punctuation such as "—").
_CLICKABLE = re.compile(r"\w+(?:['\-]\w+)*[+#]*|[^\w\s\x00-\x7f]+")


def prompt_words(prompt: str) -> list[str]:
    """The distinct words of ``prompt`` in order of first occurrence, without punctuation (what a user can click
    on: letters, digits, ``'`` and ``-`` inside a word, a trailing ``+`` or ``#`` as in "c++", or an
    emoji). Distinct ignoring case, as CLIP lower-cases; a word
    keeps the spelling of its first occurrence.

    >>> prompt_words("A red circle, left of a red square.")
    ['A', 'red', 'circle', 'left', 'of', 'square']
    """
    if not isinstance(prompt, str):
        raise TypeError(f"prompt must be a str, got {type(prompt).__name__}: {prompt!r}")
    first: dict[str, str] = {}
    for w in _CLICKABLE.findall(_nfc(prompt)):
        if w[0].isalnum() or w[0] == "_" or any(unicodedata.category(ch).startswith("S") for ch in w):
            first.setdefault(w.lower(), w)
    return list(first.values())


def contains_word(prompt: str, word: str, *, plural: bool = True) -> bool:
    """Whether ``word`` (or its "+s" plural when ``plural``) occurs in ``prompt`` as a whole word, any case."""
    return _word_regex(word, plural).search(_nfc(check_string(prompt, "prompt"))) is not None


def _tidy(text: str) -> str:
    """Collapse whitespace runs and remove spaces left before punctuation by a deletion."""
    text = re.sub(r"\s+", " ", text).strip()
    return re.sub(r" ([,.;:!?])", r"\1", text)


def omit_word(prompt: str, word: str, *, placeholder: str = "_", plural: bool = True) -> str:
    """``prompt`` with every whole-word, case-insensitive occurrence of ``word`` replaced by ``placeholder``.

    The default is the reference's image-editing omit prompt (docs/protocol.md#prompts,
    docs/protocol.md#intervention-solver): ``word`` and, with ``plural=True``, ``word + "s"`` are replaced by
    ``"_"``. ``placeholder=""`` deletes the word and tidies the spaces: a whole-word version of COCO-IT's
    ``context`` column (for the faithful substring deletion, see :func:`delete_substring`). Raises ``ValueError`` if
    the word is not in the prompt.

    >>> omit_word("Two dogs and a dog", "dog")
    'Two _ and a _'
    >>> omit_word("a dog on a bed", "dog", placeholder="")
    'a on a bed'
    """
    prompt = _nfc(check_string(prompt, "prompt"))
    check_string(placeholder, "placeholder")
    pattern = _word_regex(word, plural)
    if pattern.search(prompt) is None:
        raise ValueError(f"word {word!r} does not occur as a whole word in prompt {prompt!r}")
    out = pattern.sub(lambda m: placeholder, prompt)
    return _tidy(out) if placeholder == "" else out


def delete_substring(prompt: str, word: str) -> str:
    """The faithful COCO-IT ``context``: every (case-sensitive) substring occurrence of ``word`` removed.

    This is what the reference's CSV holds (docs/protocol.md#prompts, docs/protocol.md#b22): plain ``str.replace``,
    which leaves double spaces and can clip other words (``"bedroom"`` minus ``"bed"`` → ``"room"``). Prefer
    ``omit_word(prompt, word, placeholder="")`` for a clean deletion. Raises ``ValueError`` if absent.
    """
    check_string(prompt, "prompt")
    check_word(word)  # a string with a non-space character; its exact text, spaces included, is deleted
    if word not in prompt:
        raise ValueError(f"{word!r} does not occur (case-sensitively) in prompt {prompt!r}")
    return prompt.replace(word, "")


def _match_case(replacement: str, matched: str) -> str:
    """Capitalise ``replacement`` like ``matched`` (all caps, or a capital first letter)."""
    if matched.isupper() and len(matched) > 1:
        return replacement.upper()
    if matched[:1].isupper():
        return replacement[:1].upper() + replacement[1:]
    return replacement


def swap_words(prompt: str, mapping: Mapping[str, str], *, plural: bool = True) -> str:
    """Replace every whole-word occurrence of any key of ``mapping`` by its value, in one pass.

    Case-insensitive matching; the replacement takes the matched word's capitalisation. With ``plural=True``
    a key followed by "s" becomes the value followed by "s" (``dogs`` → ``cats``), unless the plural form is
    itself a key. One simultaneous pass, so a two-way table (``{"dog": "cat", "cat": "dog"}``) swaps instead
    of chaining; longer keys win over their prefixes (``"teddy bear"`` before ``"bear"``). Raises
    ``ValueError`` if no key occurs.
    """
    prompt = _nfc(check_string(prompt, "prompt"))
    if not isinstance(mapping, Mapping) or not mapping:
        raise ValueError(f"mapping must be a dict {{word: replacement}} naming at least one word to swap; got "
                         f"{mapping!r}")
    table: dict[str, str] = {}  # normalised key (lower case, single spaces) → replacement
    for k, v in mapping.items():
        key = " ".join(_nfc(check_word(k, f"the word {k!r} of the mapping")).lower().split())
        new = check_word(v, f"the replacement of {k!r}")
        if table.get(key, new) != new:
            raise ValueError(f"the mapping gives two replacements for {key!r} ({table[key]!r} and {new!r}), which "
                             "differ only in case or spacing; expected one")
        table[key] = new
    if plural:
        for k, v in list(table.items()):
            table.setdefault(k + "s", v + "s")
    keys = sorted(table, key=len, reverse=True)
    # One named group per key, so a match names its key directly (no look-up of the matched text, whose case
    # or spacing may differ from the key's).
    body = "|".join(f"(?P<k{i}>{_phrase(k)})" for i, k in enumerate(keys))
    pattern = re.compile(rf"{_NOT_AFTER_WORD}(?:{body}){_NOT_BEFORE_WORD}", flags=re.IGNORECASE)
    if pattern.search(prompt) is None:
        raise ValueError(f"none of the words {sorted(mapping)} occurs as a whole word in prompt {prompt!r}")

    def repl(m: re.Match) -> str:
        return _match_case(table[keys[int(m.lastgroup[1:])]], m.group(0))

    return pattern.sub(repl, prompt)


def swap_word(prompt: str, word: str, new: str, *, plural: bool = True) -> str:
    """``prompt`` with whole-word occurrences of ``word`` (and "+s") replaced by ``new`` (and "+s").

    >>> swap_word("a dog and two dogs", "dog", "cat")
    'a cat and two cats'
    """
    return swap_words(prompt, {check_word(word): check_word(new, "new")}, plural=plural)
