"""Precision targets in the probe's maps (issue 27 item 2): a click draws each map in blocks until the standard error
of its sum reaches the target, with ``n_samples`` as the cap, and says what it took. On the tiny random pipeline,
counting what reaches the UNet; the estimator's block loop itself is tested against exact answers in
tests/test_proposals.py (an easier map takes fewer draws than a harder one, met means met, the cap)."""

from __future__ import annotations

import numpy as np
import pytest

from infodecomp.experiments.cost_counts import UNetCounter
from infodecomp.experiments.probe import (DEFAULT_SAMPLES, ProbeSettings, probe_block, probe_pair, probe_word,
                                          target_from_text, target_text)

LOOSE, TIGHT = 1e6, 1e-9  # nats: met after the first block / never met
PROMPT = "a red circle left of a blue square"


@pytest.fixture(scope="module")
def image():
    rng = np.random.default_rng(0)
    return rng.integers(0, 256, (16, 16, 3), dtype=np.uint8)


def _word(model, image, settings):
    with UNetCounter(model) as c:
        res = probe_word(model, image, PROMPT, "circle", settings)
    return res, c.evaluations


def test_fixed_draws_are_unchanged_and_say_so(tiny_model, image):
    res, n = _word(tiny_model, image, ProbeSettings(n_samples=4))
    assert (res.mi_samples, res.cmi_samples) == (4, 4) and res.target_met is None and res.cmi_target_met is None
    assert res.evaluations == n == 2 * 4 + 2 * 4 + 4  # MI, CMI: 2 rows a draw; attention: 1 pass a draw


def test_a_loose_target_stops_after_one_block_and_a_tight_one_at_the_cap(tiny_model, image):
    loose, n_loose = _word(tiny_model, image, ProbeSettings(n_samples=16, target_stderr=LOOSE))
    assert probe_block(16) == 4 and (loose.mi_samples, loose.cmi_samples) == (4, 4) and loose.target_met
    # the attention map's passes do not grow with the cap: min(n_samples, DEFAULT_SAMPLES)
    assert loose.evaluations == n_loose == 2 * 4 + 2 * 4 + 16
    tight, n_tight = _word(tiny_model, image, ProbeSettings(n_samples=16, target_stderr=TIGHT, block=8))
    assert (tight.mi_samples, tight.cmi_samples) == (16, 16) and tight.target_met is False  # the cap, said
    assert tight.evaluations == n_tight == 2 * 16 + 2 * 16 + 16 and n_loose < n_tight
    assert tight.cmi_image == pytest.approx(float(tight.cmi.sum()), rel=1e-4)  # the map is of the draws taken
    cheap, n_cheap = _word(tiny_model, image, ProbeSettings(n_samples=64, target_stderr=LOOSE, attention_samples=2))
    assert cheap.evaluations == n_cheap == 2 * 8 + 2 * 8 + 2


def test_a_relative_target_is_met_when_it_says_so(tiny_model, image):
    res, _ = _word(tiny_model, image, ProbeSettings(n_samples=32, relative_stderr=0.1, seed=1))
    for name in ("mi", "cmi"):
        met, n = getattr(res, f"{name}_target_met"), getattr(res, f"{name}_samples")
        se, value = getattr(res, f"{name}_stderr"), getattr(res, f"{name}_image")
        assert n % 8 == 0
        if met:  # met ⇒ within the target (up to the float32 the maps are kept in)
            assert se <= 0.1 * abs(value) * (1 + 1e-5)
        else:    # not met ⇒ stopped at the cap
            assert n == 32


def test_the_pair_mode_draws_to_the_target(tiny_model, image):
    with UNetCounter(tiny_model) as c:
        loose = probe_pair(tiny_model, image, PROMPT, "red", "circle", ProbeSettings(n_samples=8, target_stderr=LOOSE))
    assert loose.n_samples == probe_block(8) == 2 and loose.target_met and loose.evaluations == c.evaluations == 8
    tight = probe_pair(tiny_model, image, PROMPT, "red", "circle", ProbeSettings(n_samples=8, target_stderr=TIGHT))
    assert tight.n_samples == 8 and tight.target_met is False and tight.evaluations == 32
    fixed = probe_pair(tiny_model, image, PROMPT, "red", "circle", ProbeSettings(n_samples=8))
    assert fixed.n_samples == 8 and fixed.target_met is None
    i12 = tight.values[("orthogonal", "ccs")]["i12"][0]
    assert i12 == pytest.approx(float(tight.maps[("orthogonal", "ccs")]["i12"].sum()), rel=1e-4, abs=1e-6)


def test_typed_targets_are_read_or_refused():
    assert target_from_text("off") == target_from_text(" ") == (None, None)
    assert target_from_text("10%") == (None, 0.1) and target_from_text("0.05 nats") == (0.05, None)
    assert target_from_text("10 %, 0.05") == (0.05, 0.1) and target_from_text("2e-2") == (0.02, None)
    for a, r in ((None, None), (None, 0.1), (0.05, None), (0.05, 0.25)):
        assert target_from_text(target_text(a, r)) == (a, r)
    for bad, why in (("abc", "'abc' is not a number > 0"), ("-5%", "is not a number > 0"),
                     ("0", "is not a number > 0"), ("nan", "is not a number > 0"),
                     ("10%, 5%", "gives two percentages"), ("0.1 or 0.2", "gives two values in nats")):
        with pytest.raises(ValueError, match=why):
            target_from_text(bad)
    with pytest.raises(ValueError, match="type off .* such as 10%"):
        target_from_text("ten percent")


def test_bad_settings_are_refused():
    assert ProbeSettings().precision == {} and not ProbeSettings().targeted
    assert ProbeSettings(relative_stderr=0.1).precision == {"target_stderr": None, "relative_stderr": 0.1, "block": 4}
    assert [probe_block(n) for n in (2, 4, 16, 32, 256, 100)] == [2, 2, 4, 8, 8, 5]
    assert ProbeSettings(n_samples=256, target_stderr=1.0).attention_passes == DEFAULT_SAMPLES
    with pytest.raises(ValueError, match="target_stderr must be > 0"):
        ProbeSettings(target_stderr=0.0)
    with pytest.raises(ValueError, match="relative_stderr must be"):
        ProbeSettings(relative_stderr=float("inf"))
    with pytest.raises(ValueError, match=r"n_samples \(16, the cap under a precision target\) must be a multiple "
                                         r"of block \(5\)"):
        ProbeSettings(relative_stderr=0.1, block=5)
    with pytest.raises(ValueError, match="block .* is the block of a precision target"):
        ProbeSettings(block=4)
