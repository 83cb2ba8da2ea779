"""The probe's figures (infodecomp.plotting.probe_figure, probe_pair_figure) say the draws each map took: under a
precision target ``settings.n_samples`` is only the cap (issue 27 item 2). On the tiny random pipeline."""

from __future__ import annotations

import numpy as np
import pytest

from infodecomp.experiments.probe import ProbeSettings, probe_pair, probe_word
from infodecomp.plotting import _draws_note, probe_figure, probe_pair_figure

LOOSE, TIGHT = 1e6, 1e-9  # nats: met after the first block / never met
PROMPT = "a red circle left of a blue square"


@pytest.fixture(scope="module")
def image():
    return np.random.default_rng(0).integers(0, 256, (16, 16, 3), dtype=np.uint8)


def test_the_draws_note_reads_fixed_draws_and_targets():
    assert _draws_note({"MI": 16, "CMI": 16}, 16, None) == ("16 log-SNR draws", "")
    assert _draws_note({"MI": 8, "CMI": 32}, 32, {"MI": True, "CMI": False}) == (
        "MI 8, CMI 32 of at most 32 log-SNR draws", ", target met by MI, not CMI")
    assert _draws_note({"all": 4}, 16, {"i1, i2, i12": True}) == ("4 of at most 16 log-SNR draws", ", target met")
    assert _draws_note({"all": 16}, 16, {"i1, i2, i12": False})[1] == ", target not met at the cap"


def test_titles_say_the_draws_taken_not_the_cap(tiny_model, image):
    fixed = probe_word(tiny_model, image, PROMPT, "circle", ProbeSettings(n_samples=4))
    assert "(4 log-SNR draws on [" in probe_figure(fixed)._suptitle.get_text()
    loose = probe_word(tiny_model, image, PROMPT, "circle", ProbeSettings(n_samples=16, target_stderr=LOOSE))
    title = probe_figure(loose)._suptitle.get_text()
    assert "(4 of at most 16 log-SNR draws on [" in title and ", target met, ± 1 s.e." in title
    pair = probe_pair(tiny_model, image, PROMPT, "red", "circle", ProbeSettings(n_samples=8, target_stderr=TIGHT))
    title = probe_pair_figure(pair)._suptitle.get_text()
    assert "8 of at most 8 log-SNR draws on [" in title and "target not met at the cap;" in title
