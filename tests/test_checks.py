"""The boundary checks (infodecomp.checks) and every case of issue 29, C that they stop: each bad argument is
refused before any work, with an error naming what was given and what is expected; valid input is accepted.

Sections: the checkers themselves; wrong numbers; deep crashes; valid input refused; further cases (the
helper's own audit: unicode words, huge and empty inputs).
"""

from __future__ import annotations

import json
import math
import shutil
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from infodecomp import checks
from infodecomp import estimators as E
from infodecomp import text as T
from infodecomp.logsnr import LogSNRSampling

FIXTURES = Path(__file__).resolve().parent / "fixtures"


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


@pytest.fixture(scope="module")
def triple(gworld):
    """(x [2, 3], cond [2, 4], ref [2, 4]) of the Gaussian world, for MI."""
    x, y = gworld.sample(2, generator=gen(1))
    return x, gworld.condition(y), gworld.null(2)


# ───────────────────────────────────────────── the checkers ─────────────────────────────────────────────

def test_real_bounds_and_types():
    assert checks.real(np.float32(1.5), "g") == 1.5 and type(checks.real(np.float32(1.5), "g")) is float
    assert checks.real(torch.tensor(2.0), "g", above=0) == 2.0
    with pytest.raises(ValueError, match=r"g must be a finite real number; got '3' \(str\)"):
        checks.real("3", "g")
    with pytest.raises(TypeError):  # a wrong type is a TypeError too (checks.ArgumentTypeError)
        checks.real("3", "g")
    with pytest.raises(ValueError, match=r"rho must be > 0 \(the exponent\); got 0.0"):
        checks.real(0, "rho", above=0, hint="the exponent")
    with pytest.raises(ValueError, match=r"p must be >= 0 and <= 1; got 1.5"):
        checks.real(1.5, "p", minimum=0, maximum=1)
    with pytest.raises(ValueError, match=r"p must be a finite number >= 0; got nan"):
        checks.real(math.nan, "p", minimum=0)
    with pytest.raises(ValueError, match=r"n must be a finite number; got inf"):
        checks.real(10 ** 400, "n")  # an int too large for a float


def test_batch_size_generator_word_size():
    assert checks.batch_size(np.int64(3)) == 3
    for bad in (0, -1):
        with pytest.raises(ValueError, match=rf"batch_size must be an integer >= 1 \(rows per network call\); "
                                             rf"got {bad}"):
            checks.batch_size(bad)
    g = gen()
    assert checks.generator(g) is g and checks.generator(None) is None
    with pytest.raises(ValueError, match=r"generator must be a torch.Generator or None; got 0 \(int\): for a seed, "
                                         r"pass torch.Generator\(\).manual_seed\(0\)"):
        checks.generator(0)
    assert checks.word("  dog ") == "dog" and checks.word("🐶") == "🐶"
    with pytest.raises(ValueError, match=r"new must be a non-empty string \(a word or phrase\); got 3 \(int\)"):
        checks.word(3, "new")
    with pytest.raises(ValueError, match=r"word must be a non-empty string \(a word or phrase\); got ' '"):
        checks.word(" ")
    assert checks.image_size((np.int64(4), 5)) == (4, 5)
    with pytest.raises(ValueError, match=r"size\[1\] \(the width W\) must be an integer >= 1 \(pixels\); got 0"):
        checks.image_size((4, 0))
    with pytest.raises(ValueError, match=r"size must be a pair \(H, W\)"):
        checks.image_size(16)
    checks.nonempty(torch.zeros(1, 2), "x", "[B, d]")
    with pytest.raises(ValueError, match=r"x has shape \(2, 4, 0, 0\), with an empty dimension; expected \[B, C"):
        checks.nonempty(torch.zeros(2, 4, 0, 0), "x", "[B, C, H, W] with every dimension >= 1")


def test_box():
    assert checks.box((8, 4, 16, 12), (32, 24)) == (8.0, 4.0, 16.0, 12.0)
    assert checks.box((20, 4, 16, 12), (32, 24))  # 75% inside: cropped as PIL does, as the reference
    with pytest.raises(ValueError, match=r"\(500, 500, 10, 10\) on a 60×40 \(W×H\) image lies entirely outside "
                                         r"the image; expected a box with at least 50% of its area inside"):
        checks.box((500, 500, 10, 10), (60, 40))
    with pytest.raises(ValueError, match=r"has only 10% of its area inside"):
        checks.box((-90, 0, 100, 10), (60, 40))
    with pytest.raises(ValueError, match=r"is empty; expected w > 0 and h > 0"):
        checks.box((1, 1, 0, 5), (60, 40))
    with pytest.raises(ValueError, match=r"box x must be a finite number; got nan"):
        checks.box((math.nan, 1, 5, 5), (60, 40))


def test_logsnr_range():
    assert checks.logsnr_range(1, 2, 3) == (-5.0, 7.0)
    with pytest.raises(ValueError, match=r"= \[-inf, inf\] nats must lie within \[−32, 32\]"):
        checks.logsnr_range(1e308, 1e308, 3.0)
    with pytest.raises(ValueError, match=r"= \[1, 1\] nats is 0 nats wide; expected at least 0.001 nats"):
        checks.logsnr_range(1.0, 2.0, 1e-300)
    with pytest.raises(ValueError, match=r"scale must be > 0"):
        checks.logsnr_range(1.0, 0.0, 3.0)


# ───────────────────────────────────────────── wrong numbers ─────────────────────────────────────────────

def test_huge_loc_and_scale_are_refused(gworld, triple):
    """Issue 29 C: loc=1e308, scale=1e308 returned [inf, inf]."""
    with pytest.raises(ValueError, match=r"log-SNR range loc ± clip·scale = 1e\+308 ± 3·1e\+308 = \[-inf, inf\] "
                                         r"nats must lie within \[−32, 32\]"):
        E.pointwise_information(gworld, *triple, n_samples=4, loc=1e308, scale=1e308)


def test_degenerate_clip_is_refused(gworld, triple):
    """Issue 29 C: clip=1e-300 returned 0 nats."""
    with pytest.raises(ValueError, match=r"\[1, 1\] nats is 0 nats wide; expected at least 0.001 nats"):
        E.pointwise_information(gworld, *triple, n_samples=4, clip=1e-300)


def test_probe_settings_far_from_any_schedule_are_refused():
    """Issue 29 C: ProbeSettings(loc=1e6) gave 1.66 nats from draws all clamped to t = 0."""
    from infodecomp.experiments.probe import ProbeSettings

    with pytest.raises(ValueError, match=r"= \[999994, 1.00001e\+06\] nats must lie within \[−32, 32\]"):
        ProbeSettings(loc=1e6)
    with pytest.raises(ValueError, match=r"loc must be a finite real number .*; got '3' \(str\)"):
        ProbeSettings(loc="3")
    assert ProbeSettings(loc=np.float32(2.0)).loc == 2.0


def test_sampling_outside_the_models_trained_range(tiny_model):
    """Issue 29 C: draws that all clamp to one timestep are refused (naming the trained range), mostly clamped
    draws warn."""
    from infodecomp.experiments.probe import ProbeSettings, probe_word

    lo, hi = tiny_model.logsnr_range
    image = np.zeros((16, 16, 3), np.uint8)
    with pytest.raises(ValueError, match=rf"covers \[17, 23\] nats, outside the range the model was trained on, "
                                         rf"\[{lo:.4g}, {hi:.4g}\] nats .*clamped to the least noisy timestep"):
        probe_word(tiny_model, image, "a red circle", "red", ProbeSettings(loc=20.0, scale=1.0, clip=3.0))
    x = torch.zeros(1, *tiny_model.latent_shape)
    cond = tiny_model.encode_prompts(["a red circle", ""])
    with pytest.raises(ValueError, match=r"clamped to the noisiest timestep \(t = T−1\)"):
        E.pointwise_information(tiny_model.denoiser, x, cond[:1], cond[1:], n_samples=2, loc=-20.0)
    with pytest.warns(UserWarning, match=r"only \d+% of its draws fall inside the range the model was trained on"):
        E.pointwise_information(tiny_model.denoiser, x, cond[:1], cond[1:], n_samples=2, loc=8.0, scale=1.0,
                                generator=gen())
    with pytest.raises(ValueError, match=r"the log-SNR grid of 3 points covers \[20, 22\] nats, outside"):
        E.mmse_curve(tiny_model.denoiser, x, cond[:1, None], cond[1:], torch.tensor([20.0, 21.0, 22.0]))
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the paper's and the reference's settings pass without a word
        for s in (LogSNRSampling(), LogSNRSampling.faithful()):
            E.pointwise_information(tiny_model.denoiser, x, cond[:1], cond[1:], n_samples=2, sampling=s,
                                    generator=gen())


def test_empty_spatial_dimensions_are_refused():
    """Issue 29 C: x of shape [2, 4, 0, 0] returned 0 nats."""
    z = torch.zeros(2, 3)
    with pytest.raises(ValueError, match=r"x has shape \(2, 4, 0, 0\), with an empty dimension; expected \[B, d\] "
                                         r"or \[B, C, \*S\] with every dimension >= 1"):
        E.pointwise_information(lambda z, l, c: z, torch.zeros(2, 4, 0, 0), z, z, n_samples=4)


def test_decode_refuses_non_finite_latents(tiny_model):
    """Issue 29 C: decode(NaN latents) returned a black image."""
    lat = torch.zeros(2, *tiny_model.latent_shape)
    lat[1, 0, 0, 0] = math.nan
    with pytest.raises(ValueError, match=r"latents contains 1 non-finite values \(1 NaN, 0 ±inf\) of \d+; "
                                         r"expected finite numbers"):
        tiny_model.decode(lat)
    with pytest.raises(ValueError, match=r"latents has shape \(0, 4, 8, 8\), with an empty dimension"):
        tiny_model.decode(lat[:0])


def _vg_root(tmp_path: Path, box: tuple[int, int, int, int]) -> Path:
    shutil.copytree(FIXTURES / "aro", tmp_path / "aro")
    vg = tmp_path / "aro" / "vg"
    (vg / "images").mkdir()
    Image.new("RGB", (60, 40), (200, 30, 30)).save(vg / "images" / "2315375.jpg")
    cases = json.loads((vg / "visual_genome_relation.json").read_text())
    x, y, w, h = box
    (vg / "visual_genome_relation.json").write_text(json.dumps([{**cases[0], "bbox_x": x, "bbox_y": y,
                                                                  "bbox_w": w, "bbox_h": h}]))
    return tmp_path


def test_vg_box_outside_its_image_is_refused(tmp_path):
    """Issue 29 C: a VG box at (500, 500) on a 60×40 image was scored as a black crop."""
    from infodecomp.data.aro import VGRelation

    with pytest.raises(ValueError, match=r"visual_genome_relation.json: entry 0 \(vg-relation\): the box "
                                         r"\(x, y, w, h\) = \(500, 500, 16, 12\) on a 60×40 \(W×H\) image lies "
                                         r"entirely outside the image"):
        VGRelation(_vg_root(tmp_path, (500, 500, 16, 12)))[0]


def test_vg_box_inside_its_image_is_cropped(tmp_path):
    from infodecomp.data.aro import VGRelation

    assert VGRelation(_vg_root(tmp_path, (8, 4, 16, 12)), size=None)[0]["image"].size == (16, 12)


def test_swap_with_an_empty_word_is_refused():
    """Issue 29 C: swap_word("a red circle", "", "blue") returned 'blueablue blueredblue bluecircleblue'."""
    with pytest.raises(ValueError, match=r"word must be a non-empty string \(a word or phrase\); got ''"):
        T.swap_word("a red circle", "", "blue")
    with pytest.raises(ValueError, match=r"must be a non-empty string \(a word or phrase\); got ''"):
        T.swap_words("a red circle", {"": "blue"})
    with pytest.raises(ValueError, match=r"new must be a non-empty string"):
        T.swap_word("a red circle", "red", "  ")


def test_intervene_refuses_an_empty_word(tiny_model):
    """Issue 29 C: intervene generated from the prompt that swap_word(…, "", …) made."""
    from infodecomp.editing import intervene

    lat = torch.zeros(1, *tiny_model.latent_shape)
    with pytest.raises(ValueError, match=r"word 0 must be a non-empty string"):
        intervene(tiny_model, lat, "a red circle", "", swap="blue", steps=2, progress=False)


# ───────────────────────────────────────────── deep crashes ─────────────────────────────────────────────

@pytest.mark.parametrize("bad", [0, -1])
def test_batch_sizes_are_checked(tiny_model, bad):
    """Issue 29 C: batch_size=0 or -1 crashed deep inside (range() step, torch.cat of nothing)."""
    from infodecomp.editing import sample

    msg = rf"batch_size must be an integer >= 1 \(rows per network call\); got {bad}"
    with pytest.raises(ValueError, match=msg):
        tiny_model.encode_prompts(["a red circle"], batch_size=bad)
    with pytest.raises(ValueError, match=msg):
        tiny_model.encode_images(np.zeros((16, 16, 3), np.uint8), batch_size=bad)
    with pytest.raises(ValueError, match=msg):
        tiny_model.decode(torch.zeros(1, *tiny_model.latent_shape), batch_size=bad)
    with pytest.raises(ValueError, match=msg):
        sample(tiny_model, ["a red circle"], steps=2, batch_size=bad)


def test_an_int_seed_is_not_a_generator(gworld, triple, tiny_model):
    """Issue 29 C: generator=0 crashed with AttributeError: 'int' object has no attribute 'device'."""
    from infodecomp.editing import sample

    msg = r"generator must be a torch.Generator or None; got 0 \(int\): for a seed, pass torch.Generator"
    with pytest.raises(ValueError, match=msg):
        E.pointwise_information(gworld, *triple, n_samples=4, generator=0)
    with pytest.raises(ValueError, match=msg):
        LogSNRSampling().sample(4, generator=0)
    with pytest.raises(ValueError, match=msg):
        sample(tiny_model, ["a red circle"], steps=2, generator=0)
    with pytest.raises(ValueError, match=msg):
        tiny_model.encode_images(np.zeros((16, 16, 3), np.uint8), posterior="sample", generator=0)


def test_scores_need_a_candidate(gworld, triple):
    """Issue 29 C: information_scores with no candidates crashed deep inside."""
    x, cond, ref = triple
    with pytest.raises(ValueError, match=r"the number of candidates M \(conds \[B, M, \.\.\.\] has shape "
                                         r"\(2, 0, 4\)\) must be an integer >= 1 .*; got 0"):
        E.information_scores(gworld, x, cond[:, None][:, :0], ref, n_samples=4)


def test_invert_checks_rho_and_guidance(tiny_model):
    """Issue 29 C: invert(rho=0) divided by zero; guidance_scale="3" failed inside the ODE loop."""
    from infodecomp.editing import generate, invert, sample

    lat = torch.zeros(1, *tiny_model.latent_shape)
    with pytest.raises(ValueError, match=r"rho must be > 0 \(the exponent of Karras et al.'s noise levels, 7 in "
                                         r"the paper\); got 0.0"):
        invert(tiny_model, lat, "a red circle", steps=3, rho=0, progress=False)
    msg = r"guidance_scale must be a finite real number .*; got '3' \(str\)"
    with pytest.raises(ValueError, match=msg):
        invert(tiny_model, lat, "a red circle", steps=3, guidance_scale="3", progress=False)
    with pytest.raises(ValueError, match=msg):
        generate(tiny_model, lat, "a red circle", steps=3, guidance_scale="3", progress=False)
    with pytest.raises(ValueError, match=msg):
        sample(tiny_model, ["a red circle"], steps=2, guidance_scale="3")
    with pytest.raises(ValueError, match=r"steps must be an integer >= 2 \(σ values of the ODE\); got 1"):
        invert(tiny_model, lat, "a red circle", steps=1, progress=False)
    with pytest.raises(ValueError, match=r"latents contains 256 non-finite values \(256 NaN, 0 ±inf\)"):
        invert(tiny_model, lat * math.nan, "a red circle", steps=3, progress=False)


def test_swap_must_be_a_word(tiny_model):
    """Issue 29 C: probe_intervention(swap=3) and swap_word(..., new=3) crashed (AttributeError, TypeError)."""
    from infodecomp.editing import intervene
    from infodecomp.experiments.probe import probe_intervention

    image = np.zeros((16, 16, 3), np.uint8)
    with pytest.raises(ValueError, match=r"swap must be a non-empty string \(a word or phrase: the word to put in "
                                         r"place of `word`, or None to omit it\); got 3 \(int\)"):
        probe_intervention(tiny_model, image, "a red circle", "red", swap=3)
    with pytest.raises(ValueError, match=r"new must be a non-empty string \(a word or phrase\); got 3 \(int\)"):
        T.swap_word("a red circle", "red", 3)
    with pytest.raises(ValueError, match=r"swap must be None, a replacement word, a table \{word: new\} or a list "
                                         r"of 1 swap prompts; got 3 \(int\)"):
        intervene(tiny_model, torch.zeros(1, *tiny_model.latent_shape), "a red circle", "red", swap=3, steps=2,
                  progress=False)


def test_swap_words_with_irregular_spaces_in_a_key():
    """Issue 29 C: a double space in a key raised KeyError from inside the regex callback."""
    assert T.swap_words("a Teddy bear and two teddy   bears", {"teddy  bear": "robot"}) == \
        "a Robot and two robots"
    with pytest.raises(ValueError, match=r"two replacements for 'dog' \('cat' and 'horse'\)"):
        T.swap_words("a dog", {"dog": "cat", "Dog ": "horse"})


HEADER = "Image ID,Label,correct_obj+context,context,correct_obj,context_\n"
ROW = "1,dog,a dog on a bed,a  on a bed,dog,a _ on a bed\n"


@pytest.mark.parametrize("name, content, match", [
    ("latin1", (HEADER + ROW + "2,café,a café,a ,café,a _\n").encode("latin-1"),
     r"latin1.csv: line 3 is not UTF-8 \(byte 0xe9 at offset \d+\); expected a UTF-8 CSV"),
    ("seven", (HEADER + ROW + ROW[:-1] + ",extra\n").encode(),
     r"seven.csv: line 3 \(data row 2\) has 7 fields, the header has 6; expected one field per column"),
    ("short", (HEADER + ROW + "2,dog,a dog\n").encode(),
     r"short.csv: line 3 \(data row 2\) has 3 fields, the header has 6"),
    ("quote", (HEADER + ROW + '2,dog,"a dog,a ,dog,a _\n' + ROW).encode(),
     r"quote.csv: the record starting at line 3: .*expected a CSV with every quoted field closed"),
    ("bigid", (HEADER + "12345678901234567890" + ROW[1:]).encode(),
     r"bigid.csv: 1 bad cell\(s\):\n  row 0 .*'Image ID' is '12345678901234567890', expected a non-negative "
     r"integer below 2\*\*63"),
    ("empty", b"", r"empty.csv is empty; expected a CSV whose header starts"),
])
def test_read_table_names_the_file_and_row(tmp_path, name, content, match):
    """Issue 29 C: read_table crashed (UnicodeDecodeError, ParserError without the file, OverflowError) on a
    latin-1 CSV, a 7-field row, an unterminated quote, a 20-digit image id; a short row was padded silently."""
    from infodecomp.data.coco import read_table

    path = tmp_path / f"{name}.csv"
    path.write_bytes(content)
    with pytest.raises(ValueError, match=match):
        read_table(path)


def test_read_table_accepts_utf8_and_a_bom(tmp_path):
    from infodecomp.data.coco import read_table

    path = tmp_path / "ok.csv"
    path.write_bytes(("\ufeff" + HEADER + ROW + "2,café,a café au lait,a  au lait,café,a _ au lait\n\n").encode())
    df = read_table(path)
    assert list(df["word"]) == ["dog", "café"] and list(df["image_id"]) == [1, 2]


# ───────────────────────────────────────────── valid input refused ─────────────────────────────────────────────

def test_words_with_punctuation_and_emoji_are_found(clip_tokenizer):
    """Issue 29 C: omit_word said "c++" and "🐶" do not occur, while token_positions found both."""
    assert T.omit_word("write c++ code", "c++") == "write _ code"
    assert T.omit_word("a 🐶 on a bed", "🐶") == "a _ on a bed"
    assert T.omit_word("a 🐶 on a bed", "🐶", placeholder="") == "a on a bed"
    assert T.token_positions(clip_tokenizer, "write c++ code", "c++")
    assert T.token_positions(clip_tokenizer, "a 🐶 on a bed", "🐶")
    assert T.swap_word("write c++ code", "c++", "rust") == "write rust code"
    assert T.contains_word("a 🐶 on a bed", "🐶") and not T.contains_word("write c++11", "c++")
    # whole words still: not inside another word
    assert T.omit_word("a dog and a hotdog", "dog") == "a _ and a hotdog"


# ───────────────────────────────────────────── further cases ─────────────────────────────────────────────

def test_unicode_words():
    assert T.omit_word("un CAFÉ et un café", "café") == "un _ et un _"
    assert T.swap_word("Ein Hund, zwei Hunde", "hund", "Katze", plural=False) == "Ein Katze, zwei Hunde"
    assert T.swap_words("один кот и кот", {"кот": "пёс"}) == "один пёс и пёс"
    assert T.omit_word("猫 と 犬", "犬") == "猫 と _"


def test_non_string_prompts_and_words_are_refused():
    with pytest.raises(ValueError, match=r"prompt must be a string; got None"):
        T.omit_word(None, "dog")
    with pytest.raises(ValueError, match=r"placeholder must be a string; got 0 \(int\)"):
        T.omit_word("a dog", "dog", placeholder=0)
    with pytest.raises(ValueError, match=r"word must be a non-empty string"):
        T.delete_substring("a dog", 3)
    with pytest.raises(ValueError, match=r"prompt must be a string"):
        T.contains_word(b"a dog", "dog")
    with pytest.raises(ValueError, match=r"naming at least one word"):
        T.swap_words("a dog", [("dog", "cat")])


def test_huge_and_empty_counts(gworld, triple):
    with pytest.raises(ValueError, match=r"n_samples must be an integer >= 1; got 1e\+20 \(float\)"):
        E.pointwise_information(gworld, *triple, n_samples=1e20)
    with pytest.raises(ValueError, match=r"the number of log-SNR points must be an integer >= 1; got 0"):
        LogSNRSampling().sample(0)
    with pytest.raises(ValueError, match=r"offset must be an integer >= 0"):
        from infodecomp.editing import ddim_levels

        ddim_levels(torch.linspace(0.99, 0.01, 10), 5, offset=-1)


def test_image_sizes_and_max_batch_are_checked(tiny_model):
    from infodecomp.models import UNetDenoiser

    with pytest.raises(ValueError, match=r"size\[0\] \(the height H\) must be an integer >= 1 \(pixels\); got 0"):
        tiny_model.images_to_tensor(np.zeros((16, 16, 3), np.uint8), size=(0, 16), resize="bicubic")
    with pytest.raises(ValueError, match=r"max_batch must be an integer >= 1 .*; got 0"):
        UNetDenoiser(tiny_model.unet, tiny_model.alphas_cumprod, max_batch=0)


def test_every_clickable_word_is_found(clip_tokenizer):
    """prompt_words offered "c" for "c++" (and nothing for an emoji), which token_positions then refused."""
    prompt = "a 🐶 writes c++ and c# code — (red) x-ray dog's «toy»"
    words = T.prompt_words(prompt)
    assert words == ["a", "🐶", "writes", "c++", "and", "c#", "code", "red", "x-ray", "dog's", "toy"]
    for w in words:
        assert T.token_positions(clip_tokenizer, prompt, w)
        assert T.omit_word(prompt, w, placeholder="", plural=False) != prompt


def test_combining_accents_are_the_same_word(clip_tokenizer):
    import unicodedata

    nfd = unicodedata.normalize("NFD", "café")
    assert T.token_positions(clip_tokenizer, "un café noir", nfd) == [2]
    assert T.omit_word("un café noir", nfd) == "un _ noir"
    assert T.swap_words("un café noir", {nfd: "thé"}) == "un thé noir"


def test_flags_seeds_ranges_and_coefficients(gworld, triple):
    from infodecomp.experiments.probe import ProbeSettings
    from infodecomp.logsnr import nearest_timestep

    with pytest.raises(ValueError, match=r"pixelwise must be True or False; got 'no' \(str\)"):
        E.pointwise_information(gworld, *triple, n_samples=2, pixelwise="no")
    with pytest.raises(ValueError, match=r"seed must be an integer >= 0 and <= 18446744073709551615"):
        ProbeSettings(seed=2 ** 70)
    with pytest.raises(ValueError, match=r"logsnr_max must be a finite real number; got 'b' \(str\)"):
        LogSNRSampling.from_range(-5.0, "b")
    with pytest.raises(ValueError, match=r"trained_logsnr has shape \(0,\), with an empty dimension"):
        nearest_timestep(torch.tensor([1.0]), torch.tensor([]))
    terms = E.information_terms(gworld, triple[0], triple[1][:, None], triple[2], n_samples=4, generator=gen())
    with pytest.raises(ValueError, match=r"coef contains 1 non-finite values \(1 NaN"):
        terms.contrast(torch.tensor([math.nan]))
