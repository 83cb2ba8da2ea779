"""The CLIP BPE tokenizer, built offline from the vocabulary file that ``open-clip-torch`` ships (and a tiny T5
tokenizer for the SD3 / Flux test pipelines, :func:`tiny_t5_tokenizer`).

Stable Diffusion 2.x uses OpenCLIP's tokenizer, which is OpenAI's CLIP byte-level BPE. Its only data is
``open_clip/bpe_simple_vocab_16e6.txt.gz`` inside the ``open-clip-torch`` wheel. We read that file straight
from the wheel (``import open_clip`` needs torchvision, which has no CPU build here) and write the two files
a Hugging Face ``CLIPTokenizer`` loads: ``vocab.json`` and ``merges.txt``.

The vocabulary is laid out as in OpenAI's CLIP: the 256 byte symbols, the same symbols with ``</w>``, one
symbol per merge (the first 48,894 merges of the file), then ``<|startoftext|>`` and ``<|endoftext|>``:
49,408 tokens in all.
"""

from __future__ import annotations

import argparse
import gzip
import inspect
import json
import zipfile
from pathlib import Path

BPE_MEMBER = "open_clip/bpe_simple_vocab_16e6.txt.gz"
N_MERGES = 48_894  # 49,408 tokens - 512 byte symbols - 2 special tokens
VOCAB_SIZE = 49_408
BOS, EOS = "<|startoftext|>", "<|endoftext|>"

#: Where the embedded copy lives inside the package.
BUNDLED_DIR = Path(__file__).parent / "assets" / "clip-tokenizer"


def byte_symbols() -> list[str]:
    """The 256 printable stand-ins GPT-2 / CLIP byte-level BPE uses for the bytes 0..255, in byte order.

    Printable Latin-1 bytes stand for themselves; every other byte is mapped, in order, to code points
    from 256 upward, so that no symbol is whitespace or a control character.
    """
    printable = set(range(ord("!"), ord("~") + 1)) | set(range(ord("¡"), ord("¬") + 1)) | set(range(ord("®"), ord("ÿ") + 1))
    symbols, extra = {}, 0
    for b in range(256):
        if b in printable:
            symbols[b] = chr(b)
        else:
            symbols[b] = chr(256 + extra)
            extra += 1
    # Vocabulary order is the printable bytes first, then the remapped ones (the CLIP convention).
    order = sorted(printable) + [b for b in range(256) if b not in printable]
    return [symbols[b] for b in order]


def read_merges(bpe_gz: str | Path | bytes) -> list[tuple[str, str]]:
    """The first ``N_MERGES`` merge rules of an OpenCLIP ``bpe_simple_vocab_16e6.txt.gz`` (path or bytes)."""
    raw = bpe_gz if isinstance(bpe_gz, bytes) else Path(bpe_gz).read_bytes()
    lines = gzip.decompress(raw).decode("utf-8").split("\n")
    body = lines[1 : N_MERGES + 1]  # line 0 is the "#version" header
    if len(body) != N_MERGES:
        raise ValueError(f"expected at least {N_MERGES} merge rules after the header, found {len(body)}")
    merges = []
    for i, line in enumerate(body, start=1):
        parts = line.split()
        if len(parts) != 2:
            raise ValueError(f"merge rule on line {i} should be two symbols, got {line!r}")
        merges.append((parts[0], parts[1]))
    return merges


def bpe_from_wheel(wheel: str | Path) -> bytes:
    """The gzipped BPE vocabulary read out of an ``open_clip_torch-*.whl`` without installing it."""
    with zipfile.ZipFile(wheel) as zf:
        try:
            return zf.read(BPE_MEMBER)
        except KeyError:
            raise ValueError(f"{wheel} has no {BPE_MEMBER}; is it an open-clip-torch wheel?") from None


def write_tokenizer_files(bpe_gz: str | Path | bytes, out_dir: str | Path, *, model_max_length: int = 77,
                          pad_token: str = "!") -> Path:
    """Write ``vocab.json``, ``merges.txt`` and a ``tokenizer_config.json`` loadable by ``CLIPTokenizer``.

    ``pad_token="!"`` is SD 2.x's choice (OpenCLIP pads with id 0, which is ``!``); SD 1.x pads with EOS.
    """
    merges = read_merges(bpe_gz)
    symbols = byte_symbols()
    vocab_list = symbols + [s + "</w>" for s in symbols] + ["".join(m) for m in merges] + [BOS, EOS]
    vocab = {tok: i for i, tok in enumerate(vocab_list)}
    if len(vocab) != VOCAB_SIZE:
        raise ValueError(f"built a vocabulary of {len(vocab)} distinct tokens, expected {VOCAB_SIZE}")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / "vocab.json").write_text(json.dumps(vocab, ensure_ascii=False), encoding="utf-8")
    (out / "merges.txt").write_text("#version: 0.2\n" + "\n".join(f"{a} {b}" for a, b in merges) + "\n", encoding="utf-8")
    config = {
        "tokenizer_class": "CLIPTokenizer",
        "model_max_length": model_max_length,
        "bos_token": BOS,
        "eos_token": EOS,
        "unk_token": EOS,
        "pad_token": pad_token,
        "do_lower_case": True,
    }
    (out / "tokenizer_config.json").write_text(json.dumps(config, indent=2), encoding="utf-8")
    return out


def load_clip_tokenizer(path: str | Path | None = None, *, model_max_length: int | None = None):
    """A ``transformers.CLIPTokenizer`` from ``path`` (default: the copy bundled with the package)."""
    from transformers import CLIPTokenizer  # heavy (transformers): tokenizer.py builds its files without it

    directory = Path(path) if path is not None else BUNDLED_DIR
    if not (directory / "vocab.json").exists():
        raise FileNotFoundError(
            f"no CLIP tokenizer at {directory} (expected vocab.json and merges.txt); build one with "
            "`python -m infodecomp.tokenizer OPEN_CLIP_WHEEL OUT_DIR`"
        )
    kwargs = {} if model_max_length is None else {"model_max_length": model_max_length}
    return CLIPTokenizer.from_pretrained(str(directory), **kwargs)


# ----------------------------------------------------------------------------------------------------------
# A tiny T5 tokenizer (SentencePiece-style Unigram), for the SD3 / Flux test pipelines

#: Whole words of the tiny T5 vocabulary: ShapesWorld's caption words and a few COCO-style ones.
T5_TINY_WORDS = (
    "a", "above", "and", "below", "big", "blue", "circle", "circles", "green", "left", "of", "one", "red", "right",
    "small", "square", "squares", "three", "triangle", "triangles", "two", "yellow",
    "the", "an", "on", "in", "with", "near", "is", "dog", "cat", "toy", "bed", "table", "man", "woman", "tree",
    "grass", "street", "riding", "chasing", "teddy", "bear", "photo",
)
#: Sub-word pieces, so that some words take several tokens (``skateboards`` = ▁skate + board + s).
T5_TINY_PIECES = ("\u2581skate", "board", "\u2581foot", "ball", "\u2581snow", "boarder", "s", "es", "ing", "ed")
_T5_CHARS = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789,.;:!?'-_()"


def tiny_t5_vocab() -> list[tuple[str, float]]:
    """``[(piece, log-probability)]`` of the tiny T5 tokenizer: ``<pad>`` = 0, ``</s>`` = 1, ``<unk>`` = 2 (T5's
    layout), ``"▁"``, the words of :data:`T5_TINY_WORDS` as ``"▁word"``, :data:`T5_TINY_PIECES`, then single
    characters. Scores make whole words win over pieces, and pieces over characters (Unigram's Viterbi)."""
    vocab = [("<pad>", 0.0), ("</s>", 0.0), ("<unk>", 0.0), ("\u2581", -10.0)]
    vocab += [("\u2581" + w, -8.0) for w in T5_TINY_WORDS]
    vocab += [(p, -9.0) for p in T5_TINY_PIECES if p not in dict(vocab)]
    vocab += [(c, -12.0) for c in _T5_CHARS if c not in dict(vocab)]
    return vocab


def tiny_t5_tokenizer(*, model_max_length: int = 512):
    """A ``T5TokenizerFast`` built offline over :func:`tiny_t5_vocab` (a few hundred pieces): T5's conventions —
    whitespace split, "▁" word-start marker (Metaspace, prepended always), cased, no start token, ``</s>`` appended,
    ``<pad>`` = 0 — without downloading T5's 32k SentencePiece model. For tests and tiny pipelines only."""
    from transformers import T5TokenizerFast  # heavy (transformers): only when the tiny T5 tokenizer is built

    vocab = tiny_t5_vocab()
    if "vocab" in inspect.signature(T5TokenizerFast.__init__).parameters:  # transformers >= 5
        return T5TokenizerFast(vocab=vocab, extra_ids=0, model_max_length=model_max_length)
    from tokenizers import Tokenizer, decoders, pre_tokenizers, processors  # transformers 4: wrap a backend
    from tokenizers.models import Unigram  # the same backend, for transformers 4 only

    tok = Tokenizer(Unigram(vocab, unk_id=2, byte_fallback=False))
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.WhitespaceSplit(), pre_tokenizers.Metaspace(replacement="\u2581", prepend_scheme="always")])
    tok.decoder = decoders.Metaspace(replacement="\u2581", prepend_scheme="always")
    tok.post_processor = processors.TemplateProcessing(single=["$A", "</s>"], special_tokens=[("</s>", 1)])
    return T5TokenizerFast(tokenizer_object=tok, eos_token="</s>", unk_token="<unk>", pad_token="<pad>",
                           extra_ids=0, model_max_length=model_max_length)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description="Build the CLIP tokenizer files from an open-clip-torch wheel or its BPE .gz")
    p.add_argument("source", help="open_clip_torch-*.whl, or bpe_simple_vocab_16e6.txt.gz")
    p.add_argument("out_dir")
    p.add_argument("--model-max-length", type=int, default=77)
    args = p.parse_args(argv)
    src = Path(args.source)
    data = bpe_from_wheel(src) if src.suffix == ".whl" else src.read_bytes()
    out = write_tokenizer_files(data, args.out_dir, model_max_length=args.model_max_length)
    print(f"wrote {out}/vocab.json, merges.txt, tokenizer_config.json")


if __name__ == "__main__":
    main()
