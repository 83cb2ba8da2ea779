"""The interactive probe, driven programmatically: controls are set, buttons clicked, and what the widget shows
is checked. On the embedded shapes-tiny model with a few log-SNR draws, so each click takes well under a second."""

from __future__ import annotations

import html
import io
import re
from datetime import datetime, timezone

import numpy as np
import pytest
import torch

pytest.importorskip("ipywidgets")

from infodecomp.experiments import probe as probe_exp  # noqa: E402
from infodecomp.experiments.heatmaps import word_heatmaps  # noqa: E402
from infodecomp.experiments.probe import ProbeSettings, check_word, probe_word, read_image  # noqa: E402
from infodecomp.logsnr import LogSNRSampling  # noqa: E402
from infodecomp.plotting import heat_overlay, probe_figure  # noqa: E402
from infodecomp.text import prompt_words  # noqa: E402
from infodecomp.widgets import Probe  # noqa: E402

FEW = ProbeSettings(n_samples=4)
NUMBER = re.compile(r"<span class='probe-number'>(-?\d+(?:\.\d+)?(?:e[+-]?\d+)?)</span>")


@pytest.fixture(scope="module")
def model():
    from infodecomp.models import load_model

    return load_model("shapes-tiny")


@pytest.fixture
def probe(model):
    return Probe(model, settings=FEW, background=False, intervention_steps=3, generation_steps=2)


def _png(b) -> bool:
    return bytes(b).startswith(b"\x89PNG")  # an Image widget's value is bytes or a memoryview


def _number(html: str) -> float:
    m = NUMBER.search(html)
    assert m, f"no number shown in {html!r}"
    return float(m.group(1))


def _message(p: Probe) -> str:
    """The message the widget shows, as text."""
    return html.unescape(p.message.value)


def _button(p: Probe, word: str):
    matches = [b for b in p.word_buttons if b.description == word]
    assert matches, f"no button for {word!r} among {[b.description for b in p.word_buttons]}"
    return matches[0]


def _png_bytes(image: np.ndarray) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(image).save(buf, format="PNG")
    return buf.getvalue()


# -- the text helper and drawing ----------------------------------------------------------------------------

def test_prompt_words_are_distinct_words_without_punctuation():
    assert prompt_words("A red circle, left of a red square.") == ["A", "red", "circle", "left", "of", "square"]
    assert prompt_words("the dog's x-ray") == ["the", "dog's", "x-ray"]
    assert prompt_words("") == []
    with pytest.raises(TypeError, match="prompt must be a str"):
        prompt_words(None)


def test_heat_overlay_colours_the_map_over_the_image():
    img = np.zeros((8, 8, 3), np.uint8)
    m = np.zeros((2, 2))
    m[0, 0] = 1.0
    out = heat_overlay(img, m, size=32, alpha=1.0, cmap="gray")
    assert out.shape == (32, 32, 3) and out.dtype == np.uint8
    assert out[0, 0].tolist() == [255, 255, 255]  # the hot corner
    assert out[-1, -1].tolist() == [0, 0, 0]      # a cold corner
    half = heat_overlay(np.full((8, 8, 3), 200, np.uint8), m, alpha=0.0)
    assert (half == 200).all()                     # alpha 0: the image alone
    with pytest.raises(ValueError, match="2-D map"):
        heat_overlay(img, np.zeros((2, 2, 2)))


# -- the experiment behind the probe ------------------------------------------------------------------------

def test_word_heatmaps_sampling_defaults_to_the_protocol_and_moves_with_loc(model):
    row = dict(probe_exp.default_dataset()[0])
    row["label"] = row["word"]
    kw = dict(n_samples=2, attention_samples=2)
    a = word_heatmaps(model, [row], generator=torch.Generator().manual_seed(0), **kw)
    b = word_heatmaps(model, [row], generator=torch.Generator().manual_seed(0), sampling=LogSNRSampling(clip=3.0),
                      **kw)
    assert torch.equal(a.cmi, b.cmi) and torch.equal(a.attention, b.attention)
    c = word_heatmaps(model, [row], generator=torch.Generator().manual_seed(0), attention=False,
                      sampling=LogSNRSampling(loc=-2.0, clip=1.0), n_samples=2)
    assert not torch.allclose(a.cmi_image, c.cmi_image)
    with pytest.raises(TypeError, match="LogSNRSampling"):
        word_heatmaps(model, [row], n_samples=2, sampling={"loc": 1.0})


def test_probe_word_maps_and_errors(model):
    row = probe_exp.default_dataset()[0]
    res = probe_word(model, row["image"], row["caption"], row["word"], FEW)
    assert res.cmi.shape == res.mi.shape == res.attention.shape == (16, 16)
    assert res.image.shape == (32, 32, 3) and res.image.dtype == np.uint8
    assert res.cmi_image == pytest.approx(float(res.cmi.sum()), rel=1e-4)
    assert res.mi_image == pytest.approx(float(res.mi.sum()), rel=1e-4)
    assert res.cmi_stderr > 0 and res.mi_stderr > 0
    assert res.word not in res.context.split() and res.context  # the CMI's reference: the word deleted
    with pytest.raises(ValueError, match="does not occur"):
        probe_word(model, row["image"], row["caption"], "dog", FEW)
    with pytest.raises(ValueError, match="prompt is empty"):
        check_word(model.tokenizer, "  ", "a")
    with pytest.raises(ValueError, match="at most 24"):
        check_word(model.tokenizer, "a red circle " * 10, "red")
    with pytest.raises(ValueError, match="n_samples must be an integer >= 2"):
        ProbeSettings(n_samples=1)
    with pytest.raises(ValueError, match="scale must be > 0"):
        ProbeSettings(scale=0.0)


def test_read_image_accepts_images_and_explains_bad_files():
    rgba = np.zeros((5, 7, 4), np.uint8)
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(rgba, "RGBA").save(buf, format="PNG")
    img = read_image(buf.getvalue(), "a.png")
    assert img.mode == "RGB" and img.size == (7, 5)
    with pytest.raises(ValueError, match=r"could not read 'b.png' \(4 bytes\)"):
        read_image(b"junk", "b.png")
    noisy = np.random.default_rng(0).integers(0, 256, (64, 64, 3), dtype=np.uint8)
    data = _png_bytes(noisy)
    with pytest.raises(ValueError, match="truncated"):
        read_image(data[: len(data) // 2], "c.png")
    with pytest.raises(ValueError, match="empty"):
        read_image(b"", "d.png")


# -- the widget ---------------------------------------------------------------------------------------------

def test_starts_on_a_dataset_item_with_one_button_per_word(probe):
    row = probe.dataset[0]
    assert probe.prompt.value == row["caption"]
    assert [b.description for b in probe.word_buttons] == prompt_words(row["caption"])
    assert _png(probe.views["image"].value) and bytes(probe.views["cmi"].value) == b""
    assert probe.values["cmi"].value == "—" and probe.result is None
    assert probe.swap.value == row["swap_word"]


def test_clicking_a_word_shows_three_maps_and_image_level_values(probe):
    word = probe.dataset[0]["word"]
    _button(probe, word).click()
    for key in ("mi", "cmi", "attention", "intervention_cmi"):
        assert _png(probe.views[key].value), key
    assert _png(probe.bars.value)
    res = probe.result
    assert res is not None and res.word == word and res.prompt == probe.prompt.value
    assert _number(probe.values["cmi"].value) == pytest.approx(res.cmi_image, abs=1e-3)
    assert _number(probe.values["mi"].value) == pytest.approx(res.mi_image, abs=1e-3)
    assert f"{res.cmi_stderr:.3f}" in probe.values["cmi"].value  # the error bar
    assert probe.message.value == "" and "probe-done" in probe.status.value
    assert _button(probe, word).button_style == "info"
    assert all(b.button_style == "" for b in probe.word_buttons if b.description != word)
    assert probe.progress.bar_style == "success" and not probe.busy
    assert probe.last_latency is not None and probe.n_computed == 1


def test_values_change_when_settings_change(probe):
    probe.show_word(probe.dataset[0]["word"])
    first = probe.result
    probe.n_samples.value = 8  # the shown word is recomputed with the new settings
    assert probe.result is not first and probe.result.settings.n_samples == 8
    assert probe.result.cmi_image != first.cmi_image
    assert _number(probe.values["cmi"].value) == pytest.approx(probe.result.cmi_image, abs=1e-3)
    before = probe.result
    probe.loc.value = -1.0
    assert "[-7.00, 5.00]" in probe.range_label.value
    assert probe.result.settings.loc == -1.0 and probe.result.cmi_image != before.cmi_image
    before = probe.result
    probe.seed.value = 1
    assert probe.result.cmi_image != before.cmi_image
    assert probe.n_computed == 4


def test_a_precision_target_is_a_control_and_the_status_says_what_a_click_took(probe):
    word = probe.dataset[0]["word"]
    probe.show_word(word)
    assert probe.target.value == "off" and probe.n_samples.description == "samples"
    assert "4 draws per map; 20 denoiser evaluations" in html.unescape(probe.status.value)
    probe.target.value = "1e6"  # met after one block (of 2 draws): the shown word is recomputed to the target
    res = probe.result
    assert res.settings.target_stderr == 1e6 and res.settings.relative_stderr is None
    assert (res.mi_samples, res.cmi_samples) == (2, 2) and res.target_met and probe.n_computed == 2
    assert probe.n_samples.description == "max draws"
    cost = html.unescape(probe.status.value)
    assert "target s.e. 1e+06: MI 2 ✓, CMI 2 ✓ of at most 4 draws; 12 denoiser evaluations" in cost, cost
    probe.target.value = "1e-9 nats"  # never met: the cap, said
    assert (probe.result.mi_samples, probe.result.cmi_samples) == (4, 4) and probe.result.target_met is False
    assert "(target not met)" in html.unescape(probe.status.value) and probe.n_computed == 3
    shown = probe.result
    probe.target.value = "ten percent"  # refused with a message; the maps shown stay, nothing runs
    assert "precision target 'ten percent' not understood" in _message(probe) and "such as 10%" in _message(probe)
    assert probe.result is shown and probe.n_computed == 3
    _button(probe, word).click()  # a click with the bad target is refused too
    assert "not understood" in _message(probe) and probe.n_computed == 3
    probe.target.value = "10%"  # fixed: the message goes, the word is recomputed
    assert probe.message.value == "" and probe.result.settings.relative_stderr == 0.1 and probe.n_computed == 4
    probe.target.value = "off"
    assert probe.n_samples.description == "samples" and probe.result.settings.precision == {}
    assert probe.result.cmi_samples == 4 and probe.n_computed == 4  # the fixed draws again: from the cache
    probe.mode.value = "two"
    probe.target.value = "1e6"
    probe.show_pair("blue", "circle")
    assert probe.pair_result.n_samples == 2 and probe.pair_result.target_met
    assert "2 of at most 4 draws ✓; 8 denoiser evaluations" in html.unescape(probe.status.value)


def test_a_cache_hit_does_not_recompute(probe, monkeypatch):
    calls = []
    real = probe_exp.probe_word

    def counting(*args, **kwargs):
        calls.append(args[3])
        return real(*args, **kwargs)

    monkeypatch.setattr(probe_exp, "probe_word", counting)
    a, b = probe.word_buttons[-1], probe.word_buttons[-2]
    a.click()
    shown = probe.values["cmi"].value
    b.click()
    assert probe.values["cmi"].value != shown
    a.click()
    assert calls == [a.description, b.description]
    assert probe.n_computed == 2 and probe.n_cache_hits == 1
    assert probe.values["cmi"].value == shown and "from the cache" in probe.status.value
    probe.clear_cache()
    a.click()
    assert calls[-1] == a.description and probe.n_computed == 3


def test_a_word_not_in_the_prompt_is_a_message(probe, monkeypatch):
    monkeypatch.setattr(probe_exp, "probe_word", lambda *a, **k: pytest.fail("the model must not run"))
    probe.show_word("dog")
    assert "probe-error" in probe.message.value
    assert "word 'dog'" in _message(probe) and "does not occur in prompt 'a small blue circle'" in _message(probe)
    assert probe.result is None and probe.word is None
    assert probe.progress.bar_style == "danger"


def test_an_over_long_prompt_is_a_message(probe, monkeypatch):
    probe.prompt.value = "a small red circle left of a big blue square " * 4
    assert "probe-error" in probe.message.value and "at most 24" in probe.message.value
    monkeypatch.setattr(probe_exp, "probe_word", lambda *a, **k: pytest.fail("the model must not run"))
    probe.word_buttons[0].click()
    assert "at most 24" in probe.message.value and probe.result is None
    probe.prompt.value = "a small red circle"  # a good prompt clears the message
    assert probe.message.value == ""


def test_uploads_good_and_bad(probe):
    old = bytes(probe.views["image"].value)
    probe.upload.value = ({"name": "bad.png", "type": "image/png", "size": 4, "content": memoryview(b"junk"),
                           "last_modified": datetime.now(timezone.utc)},)
    assert "could not read 'bad.png' (4 bytes)" in _message(probe) and "probe-error" in probe.message.value
    assert bytes(probe.views["image"].value) == old  # the image is kept
    img = np.zeros((48, 40, 3), np.uint8)
    img[10:30, 5:25] = (255, 0, 0)
    data = _png_bytes(img)
    probe.upload.value = ({"name": "red.png", "type": "image/png", "size": len(data), "content": memoryview(data),
                           "last_modified": datetime.now(timezone.utc)},)
    assert "uploaded 'red.png'" in _message(probe)
    assert bytes(probe.views["image"].value) != old and probe.image.shape == (32, 32, 3)
    assert probe.image[..., 0].max() == 255 and probe.image[..., 2].max() < 30
    probe.prompt.value = "a big red square"
    _button(probe, "red").click()
    assert probe.result.word == "red" and np.array_equal(probe.result.image, probe.image)


def test_dataset_items_and_generation_change_the_image(probe):
    probe.item.value = 2
    row = probe.dataset[2]
    assert probe.prompt.value == row["caption"] and probe.swap.value == row["swap_word"]
    with pytest.raises(ValueError, match="does not exist"):
        probe.load_item(len(probe.dataset))
    before = probe.image.copy()
    probe.generate_button.click()  # 2 sampler steps: fast, and a different image
    assert probe.message.value.count("generated from") == 1
    assert probe.prompt.value == row["caption"] and not np.array_equal(probe.image, before)
    probe.prompt.value = "a red circle " * 10
    probe.generate()
    assert "at most 24" in probe.message.value


def test_intervene_omits_or_swaps_the_word_and_shows_the_change(probe):
    probe.swap.value = ""
    probe.intervene()
    assert "click a word" in probe.message.value
    word = probe.dataset[0]["word"]
    probe.show_word(word)
    probe.intervene()
    iv = probe.intervention
    assert iv.kind == "omit" and "_" in iv.edit_prompt and word not in iv.edit_prompt.split()
    for key in ("reconstruction", "edited", "change", "intervention_cmi"):
        assert _png(probe.views[key].value), key
    assert _number(probe.values["change"].value) == pytest.approx(iv.change_total, rel=1e-2)
    assert iv.change.shape == (16, 16) and iv.change_total > 0
    probe.swap.value = "square"
    probe.intervene()
    assert probe.intervention.kind == "swap" and "square" in probe.intervention.edit_prompt.split()
    assert probe.n_intervened == 2 and probe.n_computed == 1  # the CMI map came from the cache
    fig = probe.figure()
    assert len(fig.axes) == 7
    assert len(probe_figure(probe.result).axes) == 4


def test_background_mode_runs_in_a_thread_and_wait_returns(model):
    p = Probe(model, settings=FEW, background=True)
    p.show_word(p.dataset[0]["word"])
    assert p.wait(300), "the probe did not finish within 300 s"
    assert not p.busy and p.result is not None and _png(p.views["cmi"].value)
    assert "probe-busy" not in p.widget._dom_classes
    p.show_word("dog")  # errors are found before any work is queued
    assert "does not occur" in p.message.value and not p.busy


def test_a_16_bit_grayscale_upload_is_rescaled_not_saturated():
    """Issue 14, item 5: a 16-bit grayscale upload was saturated (99.6 % of its pixels became 255)."""
    from PIL import Image

    ramp = np.linspace(0, 65535, 32 * 32).round().astype(np.uint16).reshape(32, 32)
    buf = io.BytesIO()
    Image.fromarray(ramp).save(buf, format="PNG")  # a 16-bit grayscale PNG (mode I;16)
    img = read_image(buf.getvalue(), "depth.png")
    a = np.asarray(img)
    assert img.mode == "RGB" and a.shape == (32, 32, 3)
    assert (a == 255).mean() < 0.01 and abs(float(a.mean()) - 127.5) < 1.0  # the ramp, at 8 bits
    np.testing.assert_array_equal(a[..., 0], np.rint(ramp / 257.0).astype(np.uint8))
    f = Image.fromarray(np.full((4, 4), 3.0, np.float32))  # a float image outside [0, 1] is refused, saying so
    buf = io.BytesIO()
    f.save(buf, format="TIFF")
    with pytest.raises(ValueError, match=r"'f.tif'.*mode 'F'.*values in \[3, 3\]; expected values in \[0, 1\]"):
        read_image(buf.getvalue(), "f.tif")


# -- the two-word mode (issue 26, item 6) -------------------------------------------------------------------

def test_probe_pair_decomposes_two_words_on_shared_draws(model):
    row = probe_exp.default_dataset()[0]  # "a small blue circle"
    res = probe_exp.probe_pair(model, row["image"], row["caption"], "blue", "circle", FEW)
    assert res.conditions == ("a small", "a small blue", "a small circle", "a small blue circle")
    assert res.image.shape == (32, 32, 3) and res.image.dtype == np.uint8
    for key, v in res.values.items():
        (i1, _), (i2, _), (i12, _) = v["i1"], v["i2"], v["i12"]
        R, U1, U2, S = (v[a][0] for a in ("redundancy", "unique1", "unique2", "synergy"))
        assert R + U1 == pytest.approx(i1) and R + U2 == pytest.approx(i2), key  # the lattice's identities
        assert R + U1 + U2 + S == pytest.approx(i12), key
        assert min(v[q][1] for q in ("i1", "i2", "i12", "coinformation")) > 0, key  # paired standard errors
        assert res.maps[key]["i1"].shape == (16, 16)
        assert float(res.maps[key]["i12"].sum()) == pytest.approx(i12, rel=1e-4)  # Eq. 6: the map sums to it
    mmi = res.values[("orthogonal", "mmi")]
    assert mmi["redundancy"][0] == pytest.approx(min(mmi["i1"][0], mmi["i2"][0]))
    assert res.values[("orthogonal", "ccs")]["i1"] == mmi["i1"]  # one set of draws for both definitions
    assert res.atoms("mmi") == {a: mmi[a] for a in ("redundancy", "unique1", "unique2", "synergy")}
    again = probe_exp.probe_pair(model, row["image"], row["caption"], "blue", "circle", FEW)
    assert again.values == res.values  # seeded by the settings
    with pytest.raises(ValueError, match="must differ"):
        probe_exp.check_pair(model.tokenizer, row["caption"], "blue", "Blue")
    with pytest.raises(ValueError, match="does not occur"):
        probe_exp.check_pair(model.tokenizer, row["caption"], "blue", "dog")


def test_two_word_mode_shows_four_maps_and_the_atoms_with_their_errors(probe, monkeypatch):
    assert probe.pair_maps.layout.display == "none"  # the one-word mode first
    probe.mode.value = "two"
    assert probe.pair_maps.layout.display is None and probe.word_maps.layout.display == "none"
    _button(probe, "blue").click()
    assert probe.pair == ("blue",) and "now click word 2" in _message(probe) and probe.n_pairs == 0
    assert _button(probe, "blue").button_style == "info"
    _button(probe, "circle").click()
    res = probe.pair_result
    assert res is not None and (res.word1, res.word2) == ("blue", "circle") and probe.n_pairs == 1
    assert _button(probe, "circle").button_style == "success"
    for atom in ("redundancy", "unique1", "unique2", "synergy"):
        key = f"pid_{atom}"
        assert _png(probe.views[key].value), key
        value, stderr = res.values[("orthogonal", "ccs")][atom]
        assert _number(probe.values[key].value) == pytest.approx(value, abs=1e-3), atom
        assert f"{stderr:.3f}" in probe.values[key].value  # the error bar
    assert _png(probe.pid_bars.value) and "c = “a small”" in html.unescape(probe.pair_info.value)
    assert "CCS" in probe.pair_info.value
    assert "only “blue” tells" in html.unescape(probe.titles["pid_unique1"].value)
    assert probe.result is None and bytes(probe.views["cmi"].value) == b""  # nothing of the other mode
    assert len(probe.figure().axes) == 5

    # the redundancy toggle redraws from the same draws: no model call
    monkeypatch.setattr(probe_exp, "probe_pair", lambda *a, **k: pytest.fail("the model must not run"))
    probe.redundancy.value = "mmi"
    mmi = res.values[("orthogonal", "mmi")]
    assert _number(probe.values["pid_redundancy"].value) == pytest.approx(mmi["redundancy"][0], abs=1e-3)
    assert "MMI" in probe.pair_info.value and probe.n_pairs == 1
    probe.estimator.value = "standard"
    std = res.values[("standard", "mmi")]
    assert _number(probe.values["pid_synergy"].value) == pytest.approx(std["synergy"][0], abs=1e-3)

    _button(probe, "circle").click()  # unpick word 2: the pair's maps go
    assert probe.pair == ("blue",) and probe.pair_result is None and bytes(probe.views["pid_synergy"].value) == b""
    with pytest.raises(RuntimeError, match="click two words"):
        probe.figure()
    probe.show_pair("blue", "circle")  # the cache answers
    assert probe.pair_result is res and "from the cache" in probe.status.value
    probe.show_pair("blue", "blue")
    assert "must differ" in _message(probe) and probe.pair == ()
    probe.show_word("circle")  # back to one word
    assert probe.mode.value == "one" and probe.pair_result is None and _png(probe.views["cmi"].value)


# -- jobs carry their state: only results of what is on screen are shown (issue 29, mechanism E) -------------

def _blocked(monkeypatch, name: str):
    """Make ``probe_exp.<name>`` wait for ``release`` after setting ``started``: a computation in flight."""
    import threading

    started, release, calls = threading.Event(), threading.Event(), []
    real = getattr(probe_exp, name)

    def slow(*args, **kwargs):
        calls.append(args[2:4])
        started.set()
        assert release.wait(120), "the test never released the computation"
        return real(*args, **kwargs)

    monkeypatch.setattr(probe_exp, name, slow)
    return started, release, calls


def _red_square() -> bytes:
    img = np.zeros((32, 32, 3), np.uint8)
    img[8:24, 8:24] = (255, 0, 0)
    return _png_bytes(img)


def test_maps_of_an_image_replaced_while_they_compute_are_discarded(model, monkeypatch):
    p = Probe(model, settings=FEW, background=True)
    started, release, calls = _blocked(monkeypatch, "probe_word")
    p.show_word("blue")
    assert started.wait(120)
    p.load_image_bytes(_red_square(), "red.png")  # another image while the maps of the first compute
    new = p.image.copy()
    release.set()
    assert p.wait(300)
    assert p.result is None and bytes(p.views["cmi"].value) == b"" and p.values["cmi"].value == "—"
    assert p.n_discarded == 1 and "discarded: the image" in html.unescape(p.status.value)
    with pytest.raises(RuntimeError, match="click a word"):
        p.figure()  # nothing of the old image can be saved
    p.prompt.value = "a big red square"
    p.show_word("red")
    assert p.wait(300) and np.array_equal(p.result.image, new) and p.result.word == "red"
    assert len(p.figure().axes) == 4
    assert calls == [("a small blue circle", "blue"), ("a big red square", "red")]


def test_a_queued_job_of_an_old_state_is_skipped_and_a_new_word_wins(model, monkeypatch):
    p = Probe(model, settings=FEW, background=True)
    started, release, calls = _blocked(monkeypatch, "probe_word")
    p.show_word("blue")
    assert started.wait(120)
    p.show_word("small")   # queued behind "blue"; "blue" is no longer what is on screen
    p.show_word("circle")  # replaces the queued "small"
    release.set()
    assert p.wait(300)
    assert p.result.word == "circle" and p.n_discarded == 1  # "blue" discarded, "small" never queued
    assert [w for _, w in calls] == ["blue", "circle"]
    assert _button(p, "circle").button_style == "info"


def test_a_decomposition_of_an_edited_prompt_is_discarded(model, monkeypatch):
    p = Probe(model, settings=FEW, background=True)
    started, release, _ = _blocked(monkeypatch, "probe_pair")
    p.show_pair("blue", "circle")
    assert started.wait(120)
    p.prompt.value = "a small blue square"
    release.set()
    assert p.wait(300)
    assert p.pair_result is None and bytes(p.views["pid_redundancy"].value) == b"" and p.n_discarded == 1
    assert "discarded: the prompt" in html.unescape(p.status.value)
    assert p.mode.value == "two" and p.pair == ()


def test_new_settings_while_computing_discard_the_old_maps_and_figure_waits(model, monkeypatch):
    p = Probe(model, settings=FEW, background=True)
    p.show_word("circle")
    assert p.wait(300) and p.result.settings.n_samples == 4
    started, release, _ = _blocked(monkeypatch, "probe_word")
    p.seed.value = 5  # recomputes "circle"; meanwhile the old maps stay, but figure() will not save them
    assert started.wait(120)
    with pytest.raises(RuntimeError, match="the settings changed"):
        p.figure()
    p.loc.value = 0.0  # and again, while the seed-5 maps compute: those are discarded
    release.set()
    assert p.wait(300)
    assert p.result.settings.seed == 5 and p.result.settings.loc == 0.0 and p.n_discarded == 1
    assert len(p.figure().axes) == 4


def test_an_image_generated_for_an_old_state_does_not_replace_the_new_one(model, monkeypatch):
    p = Probe(model, settings=FEW, background=True, generation_steps=2)
    started, release, _ = _blocked(monkeypatch, "generate_image")
    p.generate()
    assert started.wait(120)
    p.item.value = 2  # the user chose a dataset item meanwhile
    chosen = p.image.copy()
    release.set()
    assert p.wait(300)
    assert np.array_equal(p.image, chosen) and p.prompt.value == p.dataset[2]["caption"]
    assert p.n_discarded == 1 and "discarded" in p.status.value
