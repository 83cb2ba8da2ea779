"""Notebook 09's experiment (infodecomp.experiments.pid): the decomposition of two words streamed into a resumable
store, sharded over a launch's processes by aligned batches (issue 30), and read back as the notebook draws it."""

from __future__ import annotations

import pytest
import torch

from infodecomp import pid as P
from infodecomp.experiments import pid
from shard_checks import Killed, assert_same_rows, counting


@pytest.fixture(scope="module")
def rows():
    return pid.shapes_cases(["colour-shape", "count-plural"], 3, seed=0)  # 6 rows: aligned batches [0-1] [2-3] [4-5]


def test_two_processes_equal_one_bit_for_bit_and_a_killed_shard_resumes(tiny_model, rows, tmp_path, monkeypatch):
    kw = dict(n_samples=2, batch_size=2, seed=4, progress=False)
    one = pid.run_pid(tiny_model, rows, store=tmp_path / "one", process_index=0, num_processes=1, **kw)
    with pytest.raises(KeyboardInterrupt):  # process 0 of 2 (batches [0, 1] and [4, 5]) killed in its second batch
        pid.run_pid(tiny_model, Killed(rows, 4), store=tmp_path / "two", process_index=0, num_processes=2, **kw)
    calls = counting(monkeypatch, pid, "information_terms")
    pid.run_pid(tiny_model, rows, store=tmp_path / "two", process_index=0, num_processes=2, **kw)
    assert len(calls) == 1  # only the batch it had not written
    two = pid.run_pid(tiny_model, rows, store=tmp_path / "two", process_index=1, num_processes=2, **kw)
    assert len(calls) == 2
    assert_same_rows(one.merge(6), two.merge(6))
    # the plain run after the sharded phase reads the complete store and computes nothing
    run = pid.run(tiny_model, rows, store=tmp_path / "two", keep_maps=3, **kw)
    assert len(calls) == 2 and len(run.table) > 0 and len(run.images) == 3


def test_the_run_holds_every_estimate_and_the_maps_of_the_first_rows(tiny_model, rows, tmp_path):
    run = pid.run(tiny_model, rows, n_samples=2, batch_size=4, seed=0, keep_maps=3, store_root=tmp_path,
                  progress=False)
    quantities = {"i1", "i2", "i12", "coinformation", *P.ATOMS}
    assert set(run.table["quantity"]) == quantities
    assert len(run.table) == len(rows) * 2 * len(P.REDUNDANCIES) * len(quantities)
    assert run.evaluations == 4 * 2 * len(rows) and run.n_samples == 2 and len(run.images) == 3
    h, w = tiny_model.latent_shape[1:]
    for (estimator, redundancy), maps in run.maps.items():
        assert set(maps) == quantities and maps["i1"].shape == (3, h, w)
        # the atoms of the maps are those of the stored maps of i1, i2, i12
        torch.testing.assert_close(maps["redundancy"], P.atoms(maps["i1"], maps["i2"], maps["i12"],
                                                              redundancy)["redundancy"])
    # the image-level values and the maps agree: the maps of i1 sum to i1 (orthogonal estimator)
    first = run.table.query("estimator == 'orthogonal' and redundancy == 'ccs' and quantity == 'i1'")
    torch.testing.assert_close(run.maps[("orthogonal", "ccs")]["i1"].flatten(1).sum(1).double(),
                               torch.tensor(first["value"].to_numpy()[:3]), rtol=1e-4, atol=1e-5)
    summary = pid.summary(run.table)
    assert set(summary["kind"]) == {"colour-shape", "count-plural"}
    # the store is named by the experiment; a rerun resumes it, other cases get another one
    assert len(list(tmp_path.glob("*/pid/*"))) == 1
    other = [dict(r, prompt=r["prompt"] + " ") if k == 0 else r for k, r in enumerate(rows)]
    pid.run(tiny_model, other, n_samples=2, batch_size=4, seed=0, keep_maps=0, store_root=tmp_path,
            progress=False)
    assert len(list(tmp_path.glob("*/pid/*"))) == 2


def test_the_fitted_sampling_is_a_stratified_proposal_and_part_of_the_store(tiny_model, rows, tmp_path):
    kw = dict(n_samples=4, batch_size=6, seed=0, store_root=tmp_path, progress=False)
    fitted = pid.run_pid(tiny_model, rows, sampling="auto", **kw)
    q = fitted.settings["sampling"]
    assert (q["rule"], q["replicates"], q["quantity"]) == ("fitted_qmc", 2, "info_o")
    paper = pid.run_pid(tiny_model, rows, **kw)
    assert "sampling" not in paper.settings and paper.path != fitted.path
    a, b = fitted.merge(6, arrays=False), paper.merge(6, arrays=False)
    column = "orthogonal.mmi.i12"
    assert a[column].notna().all() and not a[column].equals(b[column])
