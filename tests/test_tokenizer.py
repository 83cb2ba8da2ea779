"""The bundled CLIP tokenizer: built offline from the open-clip-torch BPE file, equal to CLIP's."""

import json
import os
from pathlib import Path

import pytest

from infodecomp import tokenizer as tk


@pytest.fixture(scope="module")
def tok():
    return tk.load_clip_tokenizer()


def test_vocabulary_layout(tok):
    assert len(tok) == tk.VOCAB_SIZE == 49_408
    vocab = json.loads((tk.BUNDLED_DIR / "vocab.json").read_text(encoding="utf-8"))
    assert vocab["!"] == 0  # first byte symbol; SD 2.x pads with it
    assert vocab["<|startoftext|>"] == 49_406 and vocab["<|endoftext|>"] == 49_407
    assert vocab["a</w>"] == 256 + 64  # 'a' is the 65th printable byte symbol ('!' = 33 is the first)
    assert tok.pad_token == "!" and tok.pad_token_id == 0
    assert tok.model_max_length == 77


@pytest.mark.parametrize(
    "prompt, ids",
    [
        # ids of OpenAI's CLIP tokenizer for these prompts (the same vocabulary OpenCLIP and SD 2.x use)
        ("a photo of a cat", [49406, 320, 1125, 539, 320, 2368, 49407]),
        ("A photo of a cat.", [49406, 320, 1125, 539, 320, 2368, 269, 49407]),
        ("", [49406, 49407]),
    ],
)
def test_known_ids(tok, prompt, ids):
    assert tok(prompt).input_ids == ids


def test_lower_cases_and_pads_to_max_length(tok):
    out = tok("A RED Circle", padding="max_length", max_length=tok.model_max_length)
    assert out.input_ids[:5] == tok("a red circle").input_ids[:5]
    assert len(out.input_ids) == 77 and out.input_ids[-1] == 0


def test_byte_symbols_are_a_bijection():
    symbols = tk.byte_symbols()
    assert len(symbols) == len(set(symbols)) == 256
    assert all(not s.isspace() and s.isprintable() for s in symbols)


def test_read_merges_rejects_a_malformed_file(tmp_path):
    import gzip

    bad = gzip.compress(b"#version: 0.2\na b c\n")
    with pytest.raises(ValueError, match="expected at least"):
        tk.read_merges(bad)


def test_missing_tokenizer_dir_says_how_to_build(tmp_path):
    with pytest.raises(FileNotFoundError, match="python -m infodecomp.tokenizer"):
        tk.load_clip_tokenizer(tmp_path)


def _open_clip_wheel():
    folder = Path(os.environ.get("OPEN_CLIP_WHEEL_DIR", ".cache/wheels"))
    wheels = sorted(folder.glob("open_clip_torch-*.whl")) if folder.is_dir() else []
    return wheels[-1] if wheels else None


def test_rebuild_from_wheel_matches_bundled_files(tmp_path):
    wheel = _open_clip_wheel()
    if wheel is None:
        pytest.skip("no open_clip_torch wheel in $OPEN_CLIP_WHEEL_DIR (`make test` downloads it with --no-deps)")
    tk.write_tokenizer_files(tk.bpe_from_wheel(wheel), tmp_path)
    for name in ("vocab.json", "merges.txt", "tokenizer_config.json"):
        assert (tmp_path / name).read_bytes() == (tk.BUNDLED_DIR / name).read_bytes(), name
