"""The text encoder's own relation-flip ratio beside ε̂'s (issue 24, item 5): measured by
:func:`infodecomp.experiments.word_reading.text_sensitivity`, put beside ε̂'s by ``sensitivity_ratios``, drawn by
``plotting.sensitivity_ratio_bars``, reported by the word-reading battery and by notebook 00."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from infodecomp import plotting
from infodecomp.experiments import word_reading

NOTEBOOK_00 = Path(__file__).resolve().parents[1] / "notebooks" / "00_does_the_model_read_its_words.ipynb"


def _reading(relation: float, attribute: float, n: int = 4) -> dict:
    return {"ratio_relation": {"value": relation, "stderr": relation / 10, "n": n},
            "ratio_attribute": {"value": attribute, "stderr": attribute / 10, "n": n}}


def test_text_sensitivity_measures_token_states_under_each_edit(tiny_model):
    res = word_reading.text_sensitivity(tiny_model, n=3, seed=0, batch=2)
    for edit in ("relation_flip", "attribute_swap", "colour_swap"):
        assert res[edit]["n"] == 3 and res[edit]["value"] > 0, (edit, res[edit])
    for key in ("ratio_relation", "ratio_attribute"):
        assert res[key]["n"] == 3 and np.isfinite(res[key]["value"]) and res[key]["value"] >= 0
    again = word_reading.text_sensitivity(tiny_model, n=3, seed=0, batch=3)  # the batch does not change it
    assert again["ratio_relation"]["value"] == pytest.approx(res["ratio_relation"]["value"], rel=1e-5)


def test_the_two_readings_side_by_side_and_their_figure():
    table = word_reading.sensitivity_ratios(_reading(0.2, 0.5), _reading(0.001, 0.3))
    assert list(table.columns[:5]) == ["reading", "edit", "ratio", "stderr", "n"]
    got = {(r.reading, r.edit): r.ratio for r in table.itertuples()}
    assert got == {("text encoder", "relation_flip"): 0.2, ("text encoder", "attribute_swap"): 0.5,
                   ("ε̂", "relation_flip"): 0.001, ("ε̂", "attribute_swap"): 0.3}
    fig = plotting.sensitivity_ratio_bars(table, title="t")
    ax = fig.axes[0]
    assert ax.get_yscale() == "log" and len(ax.patches) == 4  # two edits × two readings
    legend = [t.get_text() for t in ax.get_legend().get_texts()]
    assert {"text encoder", "ε̂", "bar: 0.1 × a colour change"} == set(legend)
    import matplotlib.pyplot as plt

    plt.close(fig)


def test_the_battery_reports_the_text_encoders_ratio(monkeypatch):
    import importlib

    evaluate = importlib.import_module("infodecomp.training.evaluate")  # the package re-exports evaluate()

    seen = {}

    def fake(name, value):
        def f(model, **kw):
            seen[name] = kw
            return value
        return f

    import pandas as pd

    mass = {"overall": {}, "by_layer": pd.DataFrame(), "by_logsnr": pd.DataFrame(), "n": 1}
    monkeypatch.setattr(word_reading, "attention_mass", fake("mass", mass))
    monkeypatch.setattr(word_reading, "swap_test", fake("swap", {}))
    monkeypatch.setattr(word_reading, "edit_sensitivity", fake("eps", _reading(0.001, 0.3)))
    monkeypatch.setattr(word_reading, "text_sensitivity", fake("text", _reading(0.2, 0.5)))
    monkeypatch.setattr(word_reading, "word_map_quality", fake("maps", {}))
    out = evaluate.word_reading(object(), n=8, seed=3)
    assert out["text_sensitivity"] == _reading(0.2, 0.5) and seen["text"] == {"n": 8, "seed": 3}
    assert seen["eps"]["seed"] == seen["text"]["seed"]  # the same captions and edits as ε̂'s


def test_notebook_00_draws_and_records_the_text_encoders_ratio():
    cells = ["".join(c["source"]) for c in json.loads(NOTEBOOK_00.read_text())["cells"]]
    code = "\n".join(cells)
    assert "word_reading.text_sensitivity(model" in code
    assert "plotting.sensitivity_ratio_bars(" in code
    assert 'f"text_{k}": text[k] for k in ("ratio_relation", "ratio_attribute")' in code
