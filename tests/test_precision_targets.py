"""Precision targets in the corrected protocol's experiments (issue 27 item 2): notebooks 04, 05, 07 and 09 draw each
estimate in blocks until a target standard error or the cap ``n_samples``. On the tiny pipeline: a loose target stops
early and spends fewer UNet rows than the fixed run; a tight one hits the cap and says so; the faithful protocol
refuses a target; the stores are the same for one and two simulated processes, and the target names the store."""

from __future__ import annotations

import pytest
import torch

from infodecomp.data.shapes import twin
from infodecomp.experiments import heatmaps, image_level, localization, pid
from infodecomp.experiments.cost_counts import UNetCounter
from shard_checks import assert_same_rows

LOOSE, TIGHT = 1e6, 1e-9  # nats: met after the first block / never met


@pytest.fixture(scope="module")
def rows():
    ds = twin("coco-it", 5, 0)
    return [ds[i] for i in range(5)]  # aligned batches of 2: [0, 1] [2, 3] [4]


def test_precision_block_divides_the_cap():
    assert [heatmaps.precision_block(n) for n in (2, 4, 32, 50, 64, 100, 200)] == [2, 2, 8, 10, 16, 25, 50]
    assert heatmaps.precision_settings("corrected", 32, None, None, None) == {}
    assert heatmaps.precision_settings("corrected", 32, 0.1, None, None) == {
        "target_stderr": 0.1, "relative_stderr": None, "block": 8}
    with pytest.raises(ValueError, match=r"n_samples \(32, the cap under a precision target\) must be a multiple "
                                         r"of block \(5\)"):
        heatmaps.precision_settings("corrected", 32, 0.1, None, 5)
    with pytest.raises(ValueError, match="target_stderr must be > 0"):
        heatmaps.precision_settings("corrected", 32, 0.0, None, None)
    with pytest.raises(ValueError, match="block .* is the block of a precision target"):
        heatmaps.precision_settings("corrected", 32, None, None, 8)


def test_the_faithful_protocol_refuses_a_target(tiny_model, rows, tmp_path):
    message = r"option of the corrected protocol; the 'faithful' protocol keeps the paper's fixed n_samples draws"
    with pytest.raises(ValueError, match=message):
        heatmaps.word_heatmaps(tiny_model, rows[:1], n_samples=4, protocol="faithful", target_stderr=0.1)
    with pytest.raises(ValueError, match=message):
        heatmaps.run_heatmaps(tiny_model, rows, dataset="coco-it", n_samples=4, protocol="faithful",
                              relative_stderr=0.2, store=tmp_path / "s", progress=False)
    with pytest.raises(ValueError, match=message):
        localization.run_localization(tiny_model, rows, tmp_path / "l", n_samples=4, protocol="faithful",
                                      target_stderr=0.1, progress=False)
    assert not (tmp_path / "s").exists() and not (tmp_path / "l").exists()  # refused before any store is made


def _maps(model, rows, tmp, **kw):
    with UNetCounter(model) as c:
        store = heatmaps.run_heatmaps(model, rows, dataset="coco-it", n_samples=8, attention=False, batch_size=2,
                                      seed=1, store=tmp, progress=False, **kw)
    return store, c.evaluations


def test_heatmaps_loose_target_stops_early_and_tight_target_hits_the_cap(tiny_model, rows, tmp_path):
    fixed, n_fixed = _maps(tiny_model, rows, tmp_path / "fixed")
    assert n_fixed == 5 * 4 * 8 and "cmi_samples" not in fixed.merge(5).columns  # fixed rows keep their columns
    assert "target_stderr" not in fixed.settings  # and their store's identity
    loose, n_loose = _maps(tiny_model, rows, tmp_path / "loose", target_stderr=LOOSE, block=2)
    frame = loose.merge(5, arrays=False)
    assert frame["cmi_samples"].tolist() == [2] * 5 and frame["mi_samples"].tolist() == [2] * 5
    assert frame["cmi_target_met"].all() and frame["mi_target_met"].all()
    assert n_loose == 5 * 4 * 2 < n_fixed
    assert heatmaps.map_evaluations(loose, 8) == {"evaluations": n_loose, "fixed": n_fixed, "rows": 5, "met": 5}
    assert loose.settings["target_stderr"] == LOOSE and loose.settings["block"] == 2
    tight, n_tight = _maps(tiny_model, rows, tmp_path / "tight", target_stderr=TIGHT, block=2)
    frame = tight.merge(5, arrays=False)
    assert frame["cmi_samples"].tolist() == [8] * 5 and not frame["cmi_target_met"].any()
    assert heatmaps.map_evaluations(tight, 8) == {"evaluations": n_fixed, "fixed": n_fixed, "rows": 5, "met": 0}
    assert n_tight == n_fixed
    maps = heatmaps.stored_heatmaps(tight, 5)
    assert maps.cmi_samples.tolist() == [8] * 5 and maps.mi_target_met.tolist() == [False] * 5
    assert heatmaps.map_evaluations(heatmaps.stored_heatmaps(fixed, 5), 8)["met"] is None


def test_heatmaps_relative_target_gives_each_row_what_it_needs(tiny_model, rows):
    hm = heatmaps.word_heatmaps(tiny_model, rows, n_samples=16, attention=False, relative_stderr=0.3, block=4,
                                generator=torch.Generator().manual_seed(0))
    met = hm.cmi_target_met
    ratio = hm.cmi_stderr / hm.cmi_image.abs()
    assert bool((ratio[met] <= 0.3).all()) and bool((hm.cmi_samples[~met] == 16).all())
    assert set(hm.cmi_samples.tolist()) <= {4, 8, 12, 16}


def test_heatmaps_with_a_target_are_the_same_for_one_and_two_processes(tiny_model, rows, tmp_path):
    kw = dict(dataset="coco-it", n_samples=8, relative_stderr=0.3, block=2, attention=False, batch_size=2, seed=3,
              progress=False)
    one = heatmaps.run_heatmaps(tiny_model, rows, store=tmp_path / "one", process_index=0, num_processes=1, **kw)
    for p in (1, 0):
        heatmaps.run_heatmaps(tiny_model, rows, store=tmp_path / "two", process_index=p, num_processes=2, **kw)
    two = heatmaps.run_heatmaps(tiny_model, rows, store=tmp_path / "two", **kw)  # the plain run reads it
    assert_same_rows(one.merge(5), two.merge(5))
    # another target is another store under store_root
    kw.pop("relative_stderr")
    a = heatmaps.run_heatmaps(tiny_model, rows, store_root=tmp_path / "r", target_stderr=LOOSE, **kw)
    b = heatmaps.run_heatmaps(tiny_model, rows, store_root=tmp_path / "r", target_stderr=TIGHT, **kw)
    assert a.path != b.path


def test_localization_and_image_level_report_the_draws(tiny_model, rows, tmp_path):
    kw = dict(n_samples=8, batch_size=2, seed=0, attention=False, progress=False, target_stderr=LOOSE, block=4)
    one = localization.run_localization(tiny_model, rows, tmp_path / "one", process_index=0, num_processes=1, **kw)
    for p in (0, 1):
        localization.run_localization(tiny_model, rows, tmp_path / "two", process_index=p, num_processes=2, **kw)
    assert_same_rows(one.merge(5), localization.run_localization(tiny_model, rows, tmp_path / "two", **kw).merge(5))
    assert one.merge(5, arrays=False)["cmi_samples"].tolist() == [4] * 5 and one.settings["target_stderr"] == LOOSE
    assert heatmaps.map_evaluations(one, 8) == {"evaluations": 5 * 4 * 4, "fixed": 5 * 4 * 8, "rows": 5, "met": 5}
    frame = image_level.run(tiny_model, {"coco-it": rows}, n_samples=8, protocol="corrected", seed=0,
                            batch_size=2, store_root=tmp_path, progress=False, target_stderr=TIGHT, block=4)
    assert frame["mi_samples"].tolist() == [8] * 5 and not frame["mi_target_met"].any()
    assert heatmaps.map_evaluations(frame, 8)["met"] == 0


def test_pid_loose_and_tight_targets_and_two_processes(tiny_model, tmp_path):
    cases = pid.shapes_cases(["colour-shape"], 3, seed=0)
    kw = dict(n_samples=6, batch_size=2, seed=2, keep_maps=0, progress=False)
    with UNetCounter(tiny_model) as c:
        fixed = pid.run(tiny_model, cases, store_root=tmp_path / "f", **kw)
    assert fixed.target_met is None and fixed.evaluations == c.evaluations == 3 * 4 * 6
    with UNetCounter(tiny_model) as c:
        loose = pid.run(tiny_model, cases, store_root=tmp_path / "l", target_stderr=LOOSE, block=2, **kw)
    assert loose.target_met == 3 and loose.evaluations == c.evaluations == 3 * 4 * 2 < fixed.evaluations
    tight = pid.run(tiny_model, cases, store_root=tmp_path / "t", target_stderr=TIGHT, block=3, **kw)
    assert tight.target_met == 0 and tight.evaluations == fixed.evaluations and tight.n_samples == 6
    # the decomposition of a row stopped early is that of its draws: i1 + i2 + … as in the fixed path's table
    assert set(loose.table["quantity"]) == set(fixed.table["quantity"])
    kw.pop("keep_maps")
    kw.update(relative_stderr=0.5, block=2)
    one = pid.run_pid(tiny_model, cases, store=tmp_path / "one", process_index=0, num_processes=1, **kw)
    for p in (1, 0):
        pid.run_pid(tiny_model, cases, store=tmp_path / "two", process_index=p, num_processes=2, **kw)
    assert_same_rows(one.merge(3), pid.run_pid(tiny_model, cases, store=tmp_path / "two", **kw).merge(3))
    assert one.settings["relative_stderr"] == 0.5 and set(one.merge(3)["n_samples"]) <= {2, 4, 6}
