"""Tests of infodecomp.results (headline records, resumable sharded result store) and of
scripts/update_readme_results.py."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from infodecomp import results as R
from infodecomp.models.identity import model_identity
from infodecomp.results.__main__ import main as results_main
from infodecomp.testing import free_port

REPO = Path(__file__).resolve().parent.parent


# ----------------------------------------------------------------------------------------------------------------
# record()


def test_record_round_trip_and_provenance(tmp_path):
    path = R.record("03_localization", "shapes-tiny", "miou_cmi", np.float32(0.25), torch.tensor(0.0125),
                    root=tmp_path, protocol="faithful", seed=7, n_samples=64, settings={"steps": (50, 100)})
    assert path == tmp_path / "shapes-tiny" / "03_localization.json"
    R.record("03_localization.ipynb", "shapes-tiny", "n_images", 500, root=tmp_path, protocol="faithful", seed=7)
    data = json.loads(path.read_text())
    assert data["miou_cmi"] == {"value": 0.25, "stderr": 0.0125}
    assert data["n_images"] == 500 and isinstance(data["n_images"], int)
    prov = data["_provenance"]
    assert prov["model"] == "shapes-tiny" and prov["model_id"] == "shapes-tiny"
    assert prov["protocol"] == "faithful" and prov["seed"] == 7 and prov["n_samples"] == 64
    assert prov["settings"] == {"steps": [50, 100]}
    assert prov["package_version"] and prov["date"].endswith("+00:00")
    assert R.load_record("03_localization", "shapes-tiny", root=tmp_path) == data
    # atomic writes leave no temporary files behind
    assert sorted(p.name for p in path.parent.iterdir()) == ["03_localization.json"]


def test_record_model_id_becomes_folder_slug(tmp_path):
    path = R.record("05_x", "stabilityai/stable-diffusion-2-1-base", "acc", 0.7, root=tmp_path, revision="abc123")
    assert path.parent.name == "stable-diffusion-2-1-base"
    prov = json.loads(path.read_text())["_provenance"]
    assert prov["model_id"] == "stabilityai/stable-diffusion-2-1-base" and prov["revision"] == "abc123"
    assert R.model_slug("/data/weights/sd21/") == "sd21"
    assert R.model_slug("sd21-base") == "sd21-base"


@pytest.mark.parametrize("value, stderr, exc, match", [
    (float("nan"), None, ValueError, "finite"),
    (float("inf"), None, ValueError, "finite"),
    (1.0, float("nan"), ValueError, "finite"),
    (1.0, -0.1, ValueError, ">= 0"),
    ("0.3", None, TypeError, "real number"),
    (True, None, TypeError, "real number"),
    (np.array([1.0, 2.0]), None, ValueError, "single number"),
    (None, None, TypeError, "real number"),
])
def test_record_rejects_bad_values(tmp_path, value, stderr, exc, match):
    with pytest.raises(exc, match=match):
        R.record("01_x", "shapes-tiny", "v", value, stderr, root=tmp_path)
    assert not (tmp_path / "shapes-tiny" / "01_x.json").exists()


def test_record_rejects_bad_names_and_provenance(tmp_path):
    with pytest.raises(ValueError, match="not starting with '_'"):
        R.record("01_x", "shapes-tiny", "_provenance", 1.0, root=tmp_path)
    with pytest.raises(ValueError, match="protocol"):
        R.record("01_x", "shapes-tiny", "v", 1.0, root=tmp_path, protocol="exact")
    with pytest.raises(ValueError, match="automatically"):
        R.record("01_x", "shapes-tiny", "v", 1.0, root=tmp_path, date="yesterday")
    with pytest.raises(TypeError, match="cannot store"):
        R.record("01_x", "shapes-tiny", "v", 1.0, root=tmp_path, settings={"f": object()})
    with pytest.raises(ValueError, match="notebook_stem"):
        R.record("", "shapes-tiny", "v", 1.0, root=tmp_path)
    with pytest.raises(ValueError, match="model"):
        R.record("01_x", "  ", "v", 1.0, root=tmp_path)
    # a notebook path is reduced to its stem
    assert R.record("notebooks/01_x.ipynb", "shapes-tiny", "v", 1.0, root=tmp_path).name == "01_x.json"


def test_record_new_run_replaces_results_of_other_run(tmp_path):
    R.record("02_x", "shapes-tiny", "a", 1.0, root=tmp_path, seed=0)
    R.record("02_x", "shapes-tiny", "b", 2.0, root=tmp_path, seed=0)  # same run: adds
    R.record("02_x", "shapes-tiny", "c", 3.0, root=tmp_path)          # no seed given: keeps the stored seed
    data = R.load_record("02_x", "shapes-tiny", root=tmp_path)
    assert {k for k in data if not k.startswith("_")} == {"a", "b", "c"} and data["_provenance"]["seed"] == 0
    with pytest.warns(UserWarning, match="dropping results of the earlier run: b, c"):
        R.record("02_x", "shapes-tiny", "a", 5.0, root=tmp_path, seed=1)
    data = R.load_record("02_x", "shapes-tiny", root=tmp_path)
    assert data["a"] == 5.0 and "b" not in data and data["_provenance"]["seed"] == 1


def test_recorder_record_many(tmp_path):
    rec = R.Recorder("04_edit", "shapes-tiny", root=tmp_path, protocol="corrected", seed=3, n_samples=20)
    rec.record("pearson_image", 0.31, 0.02)
    rec.record_many({"pearson_pixel": (0.27, 0.002), "n": 100, "other": {"value": 1.5, "stderr": 0.5}})
    data = json.loads(rec.path.read_text())
    assert data["pearson_image"] == {"value": 0.31, "stderr": 0.02}
    assert data["pearson_pixel"] == {"value": 0.27, "stderr": 0.002} and data["n"] == 100
    assert data["other"] == {"value": 1.5, "stderr": 0.5} and data["_provenance"]["protocol"] == "corrected"
    with pytest.raises(ValueError, match="finite"):
        rec.record_many({"x": (float("nan"), 0.1)})
    with pytest.raises(ValueError, match="protocol"):
        R.Recorder("04_edit", "shapes-tiny", root=tmp_path, protocol="bogus")


# ----------------------------------------------------------------------------------------------------------------
# ResultStore / run_sharded


def toy_rows(batch):
    """A deterministic per-example result, seeded by the example id: independent of batch and shard."""
    rows = []
    for ex in batch:
        rng = np.random.default_rng(R.example_seed(11, ex["id"]))
        rows.append({"score": float(rng.normal()), "label": ex["id"].upper(), "scores": rng.normal(size=3).tolist(),
                     "map": rng.normal(size=(4, 4)).astype(np.float16)})
    return rows


EXAMPLES = [{"id": f"ex{i:02d}", "payload": i} for i in range(23)]
SETTINGS = {"estimator": "orthogonal", "n_samples": 8, "clip": 3.0, "steps": (50, 100)}


def assert_same_table(a: pd.DataFrame, b: pd.DataFrame):
    assert list(a.columns) == list(b.columns)
    pd.testing.assert_frame_equal(a.drop(columns=["map"]), b.drop(columns=["map"]))
    for x, y in zip(a["map"], b["map"]):
        assert x.dtype == np.float16 and np.array_equal(x, y)


def reference_table(tmp_path) -> pd.DataFrame:
    store = R.ResultStore(tmp_path / "reference", SETTINGS, model_id="toy", seed=11)
    R.run_sharded(EXAMPLES, toy_rows, store, batch_size=4, process_index=0, num_processes=1, progress=False)
    return store.merge(len(EXAMPLES))


def test_store_round_trip_types_and_order(tmp_path):
    frame = reference_table(tmp_path)
    assert list(frame.columns) == ["index", "id", "score", "label", "scores", "map"]
    assert frame["index"].tolist() == list(range(23)) and frame["id"].tolist() == [e["id"] for e in EXAMPLES]
    assert frame["label"][5] == "EX05" and len(frame["scores"][0]) == 3
    assert frame["map"][0].shape == (4, 4) and frame["map"][0].dtype == np.float16
    store = R.ResultStore(tmp_path / "reference", SETTINGS, model_id="toy", seed=11)
    assert store.done_ids() == {e["id"] for e in EXAMPLES} and len(store) == 23
    assert store.array("map").shape == (23, 4, 4)
    assert "map" not in store.to_frame(arrays=False).columns
    # arrays are stored in .npz files beside the rows, not inline
    row = json.loads((tmp_path / "reference" / "rows-000-of-001.jsonl").read_text().splitlines()[0])
    assert "map" not in row and row["_npz"].startswith("arrays/")


def test_store_resumes_after_kill_without_recomputing(tmp_path):
    expected = reference_table(tmp_path)
    calls = []

    class Killed(Exception):
        pass

    def flaky(batch):
        if len(calls) == 3:
            raise Killed("simulated kill during the 4th batch")
        calls.append([ex["id"] for ex in batch])
        return toy_rows(batch)

    path = tmp_path / "resumed"
    with pytest.raises(Killed):
        R.run_sharded(EXAMPLES, flaky, R.ResultStore(path, SETTINGS, model_id="toy", seed=11), batch_size=4,
                      process_index=0, num_processes=1, progress=False)
    store = R.ResultStore(path, SETTINGS, model_id="toy", seed=11)
    assert store.done_indices() == set(range(12))  # three finished batches survived the kill
    n_before = len(calls)

    def counting(batch):
        calls.append([ex["id"] for ex in batch])
        return toy_rows(batch)

    computed = R.run_sharded(EXAMPLES, counting, store, batch_size=4, process_index=0, num_processes=1,
                             progress=False)
    assert computed == 23 - 12
    recomputed = [i for batch in calls[n_before:] for i in batch]
    assert sorted(recomputed) == [e["id"] for e in EXAMPLES[12:]]  # nothing finished was computed again
    assert_same_table(store.merge(len(EXAMPLES)), expected)
    # a third run has nothing left to do
    assert R.run_sharded(EXAMPLES, counting, store, batch_size=4, process_index=0, num_processes=1,
                         progress=False) == 0


def test_store_drops_a_row_cut_by_a_kill(tmp_path):
    expected = reference_table(tmp_path)
    path = tmp_path / "cut"
    store = R.ResultStore(path, SETTINGS, model_id="toy", seed=11)
    R.run_sharded(EXAMPLES[:8], toy_rows, store, batch_size=4, process_index=0, num_processes=1, progress=False)
    shard = path / "rows-000-of-001.jsonl"
    with open(shard, "ab") as f:
        f.write(b'{"index": 8, "id": "ex08", "sco')  # a write interrupted in the middle of a line
    store = R.ResultStore(path, SETTINGS, model_id="toy", seed=11)
    assert store.done_indices() == set(range(8))
    with pytest.warns(UserWarning, match="partial last row"):
        R.run_sharded(EXAMPLES, toy_rows, store, batch_size=4, process_index=0, num_processes=1, progress=False)
    assert_same_table(store.merge(len(EXAMPLES)), expected)


def test_store_settings_mismatch_raises(tmp_path):
    R.ResultStore(tmp_path / "s", SETTINGS, model_id="toy", seed=11)
    R.ResultStore(tmp_path / "s", dict(SETTINGS), model_id="toy", seed=11)  # equal settings reopen fine
    with pytest.raises(R.SettingsMismatchError, match=r"settings\['clip'\]: saved 3.0, now 4.0"):
        R.ResultStore(tmp_path / "s", {**SETTINGS, "clip": 4.0}, model_id="toy", seed=11)
    with pytest.raises(R.SettingsMismatchError, match="seed: saved 11, now 12"):
        R.ResultStore(tmp_path / "s", SETTINGS, model_id="toy", seed=12)
    with pytest.raises(R.SettingsMismatchError, match="revision"):
        R.ResultStore(tmp_path / "s", SETTINGS, model_id="toy", revision="v2", seed=11)
    with pytest.raises(R.SettingsMismatchError, match=r"settings\['extra'\]: saved '<missing>'"):
        R.ResultStore(tmp_path / "s", {**SETTINGS, "extra": 1}, model_id="toy", seed=11)


def test_store_settings_may_be_a_dataclass(tmp_path):
    import dataclasses

    @dataclasses.dataclass(frozen=True)
    class Sampling:
        loc: float = 1.0
        scale: float = 2.0
        clip: float = 3.0

    R.ResultStore(tmp_path / "dc", Sampling())
    R.ResultStore(tmp_path / "dc", {"loc": 1.0, "scale": 2.0, "clip": 3.0})  # the same settings as a dict
    with pytest.raises(R.SettingsMismatchError, match="clip"):
        R.ResultStore(tmp_path / "dc", Sampling(clip=4.0))
    with pytest.raises(TypeError, match="object array"):
        R.ResultStore(tmp_path / "dc", Sampling()).append([{"index": 0, "x": np.array([None, 1])}])


def test_store_rejects_duplicates_and_reports_incomplete(tmp_path):
    store = R.ResultStore(tmp_path / "d", {"a": 1})
    store.append([{"index": 0, "x": 1.0}, {"index": 2, "x": 3.0}])
    with pytest.raises(ValueError, match="already has a row"):
        store.append([{"index": 2, "x": 3.0}])
    with pytest.raises(ValueError, match="index"):
        store.append([{"x": 3.0}])
    with pytest.raises(ValueError, match="reserved|not starting with '_'"):
        store.append([{"index": 5, "_x": 3.0}])
    with pytest.raises(R.IncompleteResultsError, match=r"missing 1 \(first: \[1\]\)"):
        store.merge(3)
    assert store.merge()["id"].tolist() == ["0", "2"]


def test_fn_batch_must_return_one_row_per_example(tmp_path):
    store = R.ResultStore(tmp_path / "f", {"a": 1})
    with pytest.raises(ValueError, match="one row per example: got 1 rows for 2 examples"):
        R.run_sharded(4, lambda b: [{"x": 1}], store, 2, process_index=0, num_processes=1, progress=False)


def test_shards_in_process_merge_to_the_single_process_table(tmp_path):
    expected = reference_table(tmp_path)
    path = tmp_path / "sharded"
    for p in range(3):
        store = R.ResultStore(path, SETTINGS, model_id="toy", seed=11, process_index=p, num_processes=3)
        R.run_sharded(EXAMPLES, toy_rows, store, batch_size=2, process_index=p, num_processes=3, progress=False)
    assert sorted(f.name for f in path.glob("rows-*.jsonl")) == [
        "rows-000-of-003.jsonl", "rows-001-of-003.jsonl", "rows-002-of-003.jsonl"]
    assert_same_table(R.ResultStore(path, SETTINGS, model_id="toy", seed=11).merge(len(EXAMPLES)), expected)
    assert list(R.shard_indices(10, 1, 3)) == [1, 4, 7]


def test_resume_with_a_different_number_of_processes(tmp_path):
    expected = reference_table(tmp_path)
    path = tmp_path / "mixed"
    store = R.ResultStore(path, SETTINGS, model_id="toy", seed=11)
    R.run_sharded(EXAMPLES, toy_rows, store, batch_size=3, process_index=1, num_processes=2, progress=False)
    seen = []

    def counting(batch):
        seen.extend(ex["id"] for ex in batch)
        return toy_rows(batch)

    R.run_sharded(EXAMPLES, counting, store, batch_size=5, process_index=0, num_processes=1, progress=False)
    assert seen == [e["id"] for e in EXAMPLES[0::2]]  # only what shard 1 of 2 had not done
    assert_same_table(store.merge(len(EXAMPLES)), expected)


def test_example_seed_is_stable():
    assert R.example_seed(0, "abc") == R.example_seed(0, "abc")
    assert R.example_seed(0, "abc") != R.example_seed(1, "abc") != R.example_seed(0, "abd")
    # fixed value: the same on every machine and Python process (no salted hash())
    assert R.example_seed(0, 5) == int.from_bytes(__import__("hashlib").sha256(b"0:5").digest()[:8], "little") & (2**63 - 1)


TOY_SCRIPT = """
import sys
import numpy as np
sys.path.insert(0, {repo!r})
from infodecomp import results as R

EXAMPLES = [{{"id": f"ex{{i:02d}}", "payload": i}} for i in range(23)]
SETTINGS = {settings!r}

def toy_rows(batch):
    rows = []
    for ex in batch:
        rng = np.random.default_rng(R.example_seed(11, ex["id"]))
        rows.append({{"score": float(rng.normal()), "label": ex["id"].upper(), "scores": rng.normal(size=3).tolist(),
                     "map": rng.normal(size=(4, 4)).astype(np.float16)}})
    return rows

store = R.ResultStore(sys.argv[1], SETTINGS, model_id="toy", seed=11)
n = R.run_sharded(EXAMPLES, toy_rows, store, batch_size=4, progress=False)
from accelerate import PartialState
state = PartialState()
print(f"process {{state.process_index}} of {{state.num_processes}} computed {{n}}", flush=True)
if state.is_main_process:
    store.merge(len(EXAMPLES))
"""


@pytest.mark.slow
def test_accelerate_two_process_cpu_run_matches_one_process(tmp_path):
    """`accelerate launch --multi_gpu --num_processes 2` on a CPU-only machine (torchrun underneath; the state
    becomes MULTI_CPU/gloo because run_sharded asks for cpu=True when there is no CUDA)."""
    if torch.cuda.is_available():
        pytest.skip("this test exercises the CPU-only launch path")
    expected = reference_table(tmp_path)
    script = tmp_path / "toy_experiment.py"
    script.write_text(TOY_SCRIPT.format(repo=str(REPO), settings=SETTINGS))
    out = tmp_path / "two_process"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    cmd = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2",
           "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no",
           "--main_process_port", str(free_port()), str(script), str(out)]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "process 0 of 2 computed 12" in proc.stdout and "process 1 of 2 computed 11" in proc.stdout
    assert sorted(f.name for f in out.glob("rows-*.jsonl")) == ["rows-000-of-002.jsonl", "rows-001-of-002.jsonl"]
    assert_same_table(R.ResultStore(out, SETTINGS, model_id="toy", seed=11).merge(len(EXAMPLES)), expected)


def test_launcher_with_single_process_state_is_refused(tmp_path, monkeypatch):
    """Several launched processes that each see a one-process state would all compute everything: refuse."""

    class OneProcessState:
        process_index, num_processes, distributed_type = 0, 1, "NO"

    monkeypatch.setenv("WORLD_SIZE", "2")
    with pytest.raises(RuntimeError, match="sees only one"):
        R.run_sharded(4, lambda b: [{} for _ in b], R.ResultStore(tmp_path / "w", {}), 2, state=OneProcessState())


# ----------------------------------------------------------------------------------------------------------------
# scripts/update_readme_results.py


def _load_script():
    spec = importlib.util.spec_from_file_location("update_readme_results", REPO / "scripts" / "update_readme_results.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


README = textwrap.dedent("""\
    # Title

    Intro text | with a pipe.

    ## Results
    <!-- results:start -->
    stale content
    <!-- results:end -->

    ## After
    Footer.
    """)


def test_update_readme_results(tmp_path, capsys):
    script = _load_script()
    readme, figures = tmp_path / "README.md", tmp_path / "figures"
    readme.write_text(README)
    args = ["--doc", str(readme), "--figures", str(figures)]

    # no JSON files yet: a line saying so, nothing else touched
    assert script.main(args + ["--check"]) == 1
    assert readme.read_text() == README  # --check writes nothing
    assert script.main(args) == 0
    text = readme.read_text()
    assert "No results are recorded yet" in text and "stale content" not in text
    assert text.split("<!-- results:start -->")[0] == README.split("<!-- results:start -->")[0]
    assert text.split("<!-- results:end -->")[1] == README.split("<!-- results:end -->")[1]
    assert script.main(args + ["--check"]) == 0

    R.record("03_localization", "shapes-tiny", "miou_cmi", 0.34123, 0.0104, root=figures, protocol="faithful",
             seed=0, n_samples=64)
    R.record("03_localization", "shapes-tiny", "n_images", 500, root=figures, protocol="faithful", seed=0)
    R.record("01_information_estimators", "sd21-base", "mi_nats", 12.5, root=figures, protocol="corrected",
             revision="abc")
    assert script.main(args + ["--check"]) == 1
    assert script.main(args) == 0
    text = readme.read_text()
    block = text.split("<!-- results:start -->\n")[1].split("<!-- results:end -->")[0]
    assert block.index("`01_information_estimators` — `sd21-base`") < block.index("`03_localization` — `shapes-tiny`")
    assert "| miou_cmi | 0.341 ± 0.010 | model shapes-tiny, protocol faithful, seed 0, samples 64 |" in block
    assert "| n_images | 500 | model shapes-tiny, protocol faithful, seed 0, samples 64 |" in block
    assert "| mi_nats | 12.5 | model sd21-base, revision abc, protocol corrected |" in block
    assert text.startswith("# Title\n\nIntro text | with a pipe.") and text.endswith("## After\nFooter.\n")
    assert script.main(args + ["--check"]) == 0
    # a new date alone does not make the README stale (dates are not shown)
    R.record("03_localization", "shapes-tiny", "n_images", 500, root=figures, protocol="faithful", seed=0)
    assert script.main(args + ["--check"]) == 0
    # a notebook's own Markdown tables follow its numbers, their titles as captions
    (figures / "shapes-tiny" / "03_localization_table3.md").write_text("# Table 3 — mIoU\n\n| a | b |\n|---|---|\n| 1 | 2 |\n")
    assert script.main(args + ["--check"]) == 1 and script.main(args) == 0
    block = readme.read_text().split("<!-- results:start -->\n")[1].split("<!-- results:end -->")[0]
    assert "**Table 3 — mIoU**\n\n| a | b |" in block and "# Table 3" not in block
    assert block.index("`01_information") < block.index("| n_images | 500") < block.index("**Table 3")


def test_update_readme_results_needs_markers(tmp_path):
    script = _load_script()
    readme = tmp_path / "README.md"
    readme.write_text("# no markers\n")
    with pytest.raises(SystemExit, match="results:start"):
        script.main(["--doc", str(readme), "--figures", str(tmp_path)])
    assert readme.read_text() == "# no markers\n"


def test_format_value():
    script = _load_script()
    assert script.format_value(0.34123, 0.0104) == "0.341 ± 0.010"
    assert script.format_value(42.0, 3.0) == "42.0 ± 3.0"
    # a stderr far below the value's precision does not ask for a dozen decimals
    assert script.format_value(1.0, 4.5e-8) == "1.000 ± 0.000"
    assert script.format_value(0.0, 1.4e-7) == "0.000 ± 0.000"
    assert script.format_value(1234.5, 0.001) == "1234.500 ± 0.001"
    assert script.format_value(0.5) == "0.5"
    assert script.format_value(7) == "7"
    assert script.format_value(1 / 3) == "0.3333"


# ----------------------------------------------------------------------------------------------------------------
# issue 14: nothing mixes, nothing lies


class FakeModel:
    """What model_identity reads of a model, without diffusers: name, weights' version, dtype, device, tokens."""

    def __init__(self, dtype=torch.float32, tokens="all", name="toy", version="sha256:0123"):
        self.name, self.version, self.dtype = name, version, dtype
        self.device, self.cross_attention_tokens, self.denoiser = torch.device("cpu"), tokens, None


def test_store_identity_includes_dtype_and_cross_attention_tokens(tmp_path):
    """Item 1: a bfloat16 run resumed a float32 store; the identity now holds the dtype and the tokens."""
    path = tmp_path / "s"
    store = R.ResultStore(path, SETTINGS, model=model_identity(FakeModel()), seed=11)
    store.append([{"index": 0, "score": 1.0}])
    manifest = json.loads((path / "manifest.json").read_text())
    assert manifest["model"]["dtype"] == "float32" and manifest["model"]["cross_attention_tokens"] == "all"
    assert manifest["model_id"] == "toy" and manifest["revision"] == "sha256:0123"
    R.ResultStore(path, SETTINGS, model=model_identity(FakeModel()), seed=11)  # the same model reopens it
    with pytest.raises(R.SettingsMismatchError, match=r"model\['dtype'\]: saved 'float32', now 'bfloat16'"):
        R.ResultStore(path, SETTINGS, model=model_identity(FakeModel(torch.bfloat16)), seed=11)
    with pytest.raises(R.SettingsMismatchError, match="cross_attention_tokens"):
        R.ResultStore(path, SETTINGS, model=model_identity(FakeModel(tokens="words")), seed=11)
    # a store of the previous format (whose identity had no dtype) is refused, saying why
    manifest["format"] = "infodecomp.result-store/1"
    (path / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(R.SettingsMismatchError, match="left out the model's dtype"):
        R.ResultStore(path, SETTINGS, model=model_identity(FakeModel()), seed=11)


def test_model_identity_of_a_real_model(tiny_pipe):
    from infodecomp.models import Model

    ident = model_identity(Model(tiny_pipe, name="tiny"))
    # issue 29 A: a model without a pinned revision or weights directory is identified by its weights in memory
    # (this assertion said "version": None, which let two models of one name with other weights share a store)
    assert ident.pop("version").startswith("params:")
    assert ident == {"name": "tiny", "dtype": "float32", "device": "cpu",
                     "cross_attention_tokens": "all",
                     "denoiser": {"prediction_type": "epsilon", "timestep": "nearest", "v_logsnr": "timestep",
                                  "hide_zero_tokens": False}}


def test_every_record_says_its_dtype_and_warns_on_reduced_precision(tmp_path):
    """Items 1 and 6: a bfloat16 notebook run recorded numbers whose provenance did not mention bfloat16."""
    from infodecomp.precision import ReducedPrecisionWarning

    path = R.Recorder("02_x", "toy", root=tmp_path, seed=0).record("a", 1.0)  # a name only: dtype unknown
    assert json.loads(path.read_text())["_provenance"]["dtype"] is None
    path = R.Recorder("02_x", model_identity(FakeModel()), root=tmp_path, seed=0).record("a", 1.0)
    prov = json.loads(path.read_text())["_provenance"]
    assert prov["dtype"] == "float32" and prov["revision"] == "sha256:0123" and "reduced_precision" not in prov
    with pytest.warns(ReducedPrecisionWarning, match="bfloat16.*biases i\\^o upward"):
        path = R.Recorder("02_x", model_identity(FakeModel(torch.bfloat16)), root=tmp_path, seed=0).record("a", 1.1)
    data = json.loads(path.read_text())
    assert data["a"] == 1.1 and data["_provenance"]["dtype"] == "bfloat16"
    assert "biases i^o upward" in data["_provenance"]["reduced_precision"]
    with pytest.warns(ReducedPrecisionWarning):  # dtype= given by name or as a torch dtype
        R.record("02_y", "toy", "a", 1.0, root=tmp_path, dtype=torch.float16)
    assert json.loads((tmp_path / "toy" / "02_y.json").read_text())["_provenance"]["dtype"] == "float16"
    with pytest.raises(ValueError, match="unknown dtype 'float33'"):
        R.record("02_y", "toy", "a", 1.0, root=tmp_path, dtype="float33")


def _blocking_run(store, started, release):
    def fn(batch):
        started.set()
        assert release.wait(30)
        return toy_rows(batch)

    return R.run_sharded(EXAMPLES[:4], fn, store, batch_size=2, process_index=0, num_processes=1, progress=False)


def test_a_second_run_on_a_store_refuses_while_the_first_writes(tmp_path):
    """Item 2: a notebook started twice wrote duplicate rows and left the store broken for good."""
    import threading

    path = tmp_path / "busy"
    started, release, out = threading.Event(), threading.Event(), {}
    first = threading.Thread(target=lambda: out.setdefault("n", _blocking_run(
        R.ResultStore(path, SETTINGS, model_id="toy", seed=11), started, release)))
    first.start()
    assert started.wait(30)
    try:
        second = R.ResultStore(path, SETTINGS, model_id="toy", seed=11)
        with pytest.raises(R.StoreBusyError, match=f"pid {os.getpid()}.*Wait for the other run to finish"):
            R.run_sharded(EXAMPLES[:4], toy_rows, second, batch_size=2, process_index=0, num_processes=1,
                          progress=False)
        with pytest.raises(R.StoreBusyError):  # a plain append refuses too, and so does another shard layout
            second.append([{"index": 9, "score": 0.0}])
        with pytest.raises(R.StoreBusyError, match="shard 0 of 1"):
            R.run_sharded(EXAMPLES[:4], toy_rows, R.ResultStore(path, SETTINGS, model_id="toy", seed=11,
                                                                 process_index=1, num_processes=2),
                          batch_size=2, progress=False, process_index=1, num_processes=2)
    finally:
        release.set()
        first.join(30)
    assert out["n"] == 4
    # once the first run is done the second one resumes: nothing left to compute, no duplicate rows
    assert R.run_sharded(EXAMPLES[:4], toy_rows, second, batch_size=2, process_index=0, num_processes=1,
                         progress=False) == 0
    assert len(second) == 4 and R.check_store(path) == []


def test_shards_of_one_launch_write_at_once(tmp_path):
    """The lock is per set of examples: processes 0 and 1 of 2 do not block each other."""
    path = tmp_path / "shards"
    s0 = R.ResultStore(path, SETTINGS, process_index=0, num_processes=2)
    s1 = R.ResultStore(path, SETTINGS, process_index=1, num_processes=2)
    with s0.writing(), s1.writing():
        s0.append([{"index": 0}])
        s1.append([{"index": 1}])
    assert R.ResultStore(path, SETTINGS).done_indices() == {0, 1}


def _damaged_store(tmp_path):
    expected = reference_table(tmp_path)
    path = tmp_path / "damaged"
    R.run_sharded(EXAMPLES, toy_rows, R.ResultStore(path, SETTINGS, model_id="toy", seed=11), batch_size=4,
                  process_index=0, num_processes=1, progress=False)
    return expected, path


def _rerun(path):
    computed = []

    def counting(batch):
        computed.extend(ex["id"] for ex in batch)
        return toy_rows(batch)

    store = R.ResultStore(path, SETTINGS, model_id="toy", seed=11)
    R.run_sharded(EXAMPLES, counting, store, batch_size=4, process_index=0, num_processes=1, progress=False)
    return store, computed


def test_a_truncated_array_file_is_named_and_repaired(tmp_path):
    """Item 3: a truncated arrays/*.npz made every rerun die with a bare BadZipFile (no path)."""
    expected, path = _damaged_store(tmp_path)
    npz = sorted((path / "arrays").glob("*.npz"))[1]  # examples 4..7
    npz.write_bytes(npz.read_bytes()[:50])
    store = R.ResultStore(path, SETTINGS, model_id="toy", seed=11)
    with pytest.raises(R.StoreDamagedError, match=f"{npz}.*python -m infodecomp.results repair"):
        store.merge(len(EXAMPLES))
    problems = R.check_store(path)
    assert any(p.file == f"arrays/{npz.name}" for p in problems) and len(problems) == 5  # the file and its 4 rows
    assert R.repair_store(path) == problems
    assert (path / "damaged").is_dir() and not npz.exists()
    store, computed = _rerun(path)
    assert computed == ["ex04", "ex05", "ex06", "ex07"]  # exactly the rows whose arrays were lost
    assert_same_table(store.merge(len(EXAMPLES)), expected)
    assert R.check_store(path) == []


def test_an_empty_manifest_is_named_and_repaired(tmp_path):
    """Item 3: an empty manifest.json gave a bare JSONDecodeError."""
    expected, path = _damaged_store(tmp_path)
    (path / "manifest.json").write_bytes(b"")
    with pytest.raises(R.StoreDamagedError, match=r"manifest.json.*it is empty.*repair"):
        R.ResultStore(path, SETTINGS, model_id="toy", seed=11)
    assert [p.file for p in R.check_store(path)] == ["manifest.json"]
    R.repair_store(path)  # no manifest: nothing says which settings the rows came from, so all of it moves aside
    assert not list(path.glob("rows-*.jsonl")) and list((path / "damaged").rglob("rows-*.jsonl"))
    store, computed = _rerun(path)
    assert len(computed) == len(EXAMPLES)
    assert_same_table(store.merge(len(EXAMPLES)), expected)


def test_a_corrupt_row_and_duplicates_are_repaired_by_the_command(tmp_path, capsys):
    """Item 3: a corrupt complete line said "the store needs repair" with no way to repair it."""
    expected, path = _damaged_store(tmp_path)
    shard = path / "rows-000-of-001.jsonl"
    lines = shard.read_bytes().split(b"\n")
    lines[2] = lines[2][:20]  # example 2: a complete but corrupt line
    lines.insert(5, lines[4])  # example 4 twice (two runs at once)
    shard.write_bytes(b"\n".join(lines))
    with pytest.raises(R.StoreDamagedError, match=r"rows-000-of-001.jsonl:3: corrupt row.*repair"):
        R.ResultStore(path, SETTINGS, model_id="toy", seed=11)
    assert results_main(["check", str(tmp_path)]) == 1  # a folder of stores: each is found and checked
    out = capsys.readouterr().out
    assert "[DAMAGED]" in out and "rows-000-of-001.jsonl:3: corrupt row" in out and "two runs wrote it" in out
    assert "[ ok ]" in out  # the reference store beside it
    assert results_main(["repair", str(path)]) == 0 and "[REPAIRED]" in capsys.readouterr().out
    store, computed = _rerun(path)
    assert computed == ["ex02"]
    assert_same_table(store.merge(len(EXAMPLES)), expected)
    assert results_main(["check", str(path)]) == 0
    proc = subprocess.run([sys.executable, "-m", "infodecomp.results", "check", str(path)], capture_output=True,
                          text=True, cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)})
    assert proc.returncode == 0 and "[ ok ]" in proc.stdout


def test_atomic_writes_respect_the_umask(tmp_path):
    """Item 9: atomic writes created 0600 files beside 0644 ones."""
    old = os.umask(0o022)
    try:
        rec = R.record("01_x", "toy", "a", 1.0, root=tmp_path)
        store = R.ResultStore(tmp_path / "s", SETTINGS)
        store.append([{"index": 0, "map": np.zeros(3)}])
        for f in (rec, tmp_path / "s" / "manifest.json", *(tmp_path / "s" / "arrays").glob("*.npz"),
                  tmp_path / "s" / "rows-000-of-001.jsonl"):
            assert oct(f.stat().st_mode & 0o777) == oct(0o644), f
        os.umask(0o077)
        assert R.record("01_z", "toy", "a", 1.0, root=tmp_path).stat().st_mode & 0o777 == 0o600
        os.chmod(rec, 0o640)  # a file that exists keeps its mode
        R.record("01_x", "toy", "b", 2.0, root=tmp_path)
        assert rec.stat().st_mode & 0o777 == 0o640
    finally:
        os.umask(old)


def test_the_three_experiment_stores_keep_one_identity(tiny_model, tmp_path):
    """Item 1: the relation-testing, localization and intervention stores recorded different things."""
    from infodecomp.data.shapes import twin
    from infodecomp.experiments import intervention, localization, relation_testing as rt

    rt.run(tiny_model, rt.load_dataset("vg-relation", 1, seed=0), dataset="vg-relation",
           settings=rt.RelationSettings(n_samples=2), store=tmp_path / "rt", progress=False)
    rows = twin("coco-it", 1, seed=0)
    localization.run_localization(tiny_model, rows, tmp_path / "loc", n_samples=2, attention=False)
    rows = twin("coco100-it", 1, seed=0, groups=("circle",))
    intervention.run_intervention(tiny_model, rows, tmp_path / "iv",
                                  intervention.InterventionSettings(n_steps=2, n_logsnr=1, n_noise=2),
                                  progress=False)
    want = model_identity(tiny_model)
    assert want["dtype"] == "float32" and want["cross_attention_tokens"] == "all"
    for name in ("rt", "loc", "iv"):
        m = json.loads((tmp_path / name / "manifest.json").read_text())
        assert m["format"] == R.STORE_FORMAT and m["model"] == want, name
        # issue 29 A: the revision of an in-memory model is its weights' fingerprint (it was None)
        assert (m["model_id"], m["revision"], m["seed"]) == ("tiny", want["version"], 0), name
        assert want["version"].startswith("params:")
    with pytest.raises(ValueError, match=r"settings.dtype is 'bfloat16' but the model runs in float32"):
        intervention.run_intervention(tiny_model, rows, tmp_path / "iv2",
                                      intervention.InterventionSettings(n_steps=2, n_logsnr=1, n_noise=2,
                                                                        dtype="bf16"), progress=False)


def test_readme_tables_say_a_reduced_precision():
    script = _load_script()
    assert script.provenance_summary({"model_id": "m", "dtype": "float32", "seed": 0}) == "model m, seed 0"
    assert script.provenance_summary({"model_id": "m", "dtype": "bfloat16", "reduced_precision": "…"}) == \
        "model m, dtype bfloat16 (reduced precision: biased, see docs/models.md#precision)"
    assert script.provenance_summary({"model_id": "m", "protocol": "corrected", "sampling": "fitted"}) == \
        "model m, protocol corrected, fitted log-SNR proposal"
    assert script.provenance_summary({"model_id": "m", "sampling": "paper"}) == "model m"


def test_a_resumed_run_refuses_rows_of_other_examples_at_the_same_indices(tmp_path):
    """Found by the audit beyond issue 14's list: a store resumed with other data under the same settings (another
    subset or version of a dataset) kept the old rows for indices 0-3 and computed only the new indices 4-5."""
    from infodecomp.results import ResultStore, SettingsMismatchError, run_sharded

    first = [{"id": f"a{i}", "v": i} for i in range(4)]
    other = [{"id": f"b{i}", "v": 10 + i} for i in range(6)]
    def fn(batch):
        return [{"y": e["v"]} for e in batch]
    run_sharded(first, fn, ResultStore(tmp_path / "s", {"k": 1}, seed=0), 2, progress=False)
    store = ResultStore(tmp_path / "s", {"k": 1}, seed=0)
    with pytest.raises(SettingsMismatchError, match=r"index 0: row of 'a0', example now 'b0'"):
        run_sharded(other, fn, store, 2, progress=False)
    assert store.done_indices() == {0, 1, 2, 3}  # nothing was computed or written
    grown = first + [{"id": "a4", "v": 4}]  # the same examples and one more: resumes
    assert run_sharded(grown, fn, ResultStore(tmp_path / "s", {"k": 1}, seed=0), 2, progress=False) == 1


# ----------------------------------------------------------------------------------------------------------------
# issue 29 A: a store's identity is the weights; a store without its manifest is damaged; atomic appends and records


def test_a_store_refuses_rows_of_a_model_of_the_same_name_with_other_weights(tmp_path):
    """Model(pipe_a, name="mine") and Model(pipe_b, name="mine") shared a store: both had version None."""
    from infodecomp.models import Model
    from infodecomp.models.identity import weights_fingerprint
    from infodecomp.testing import tiny_pipeline

    a, b = Model(tiny_pipeline(seed=0), name="mine"), Model(tiny_pipeline(seed=1), name="mine")
    ident_a = model_identity(a)
    assert ident_a["version"].startswith("params:") and ident_a["version"] != model_identity(b)["version"]
    assert model_identity(Model(tiny_pipeline(seed=0), name="mine")) == ident_a  # the same weights: the same
    path = tmp_path / "s"
    R.ResultStore(path, SETTINGS, model=ident_a, seed=0).append([{"index": 0, "score": 1.0}])
    with pytest.raises(R.SettingsMismatchError, match=r"revision: saved 'params:.*', now 'params:"):
        R.ResultStore(path, SETTINGS, model=model_identity(b), seed=0)
    # weights edited in memory are other weights (the cache sees the in-place edit)
    with torch.no_grad():
        next(a.unet.parameters()).view(-1)[3] += 1e-3
    assert weights_fingerprint(a) != ident_a["version"]
    with pytest.raises(R.SettingsMismatchError, match="revision"):
        R.ResultStore(path, SETTINGS, model=model_identity(a), seed=0)
    # a pinned revision or a weights directory still names the weights
    assert model_identity(Model(tiny_pipeline(seed=0), name="mine", revision="abc"))["version"] == "abc"
    assert weights_fingerprint(FakeModel()) is None  # a model-like object without networks


def test_a_store_without_its_manifest_is_damaged_not_adopted(tmp_path, capsys):
    """Deleting manifest.json, then opening with other settings and seed, adopted the old rows as the new run's."""
    path = tmp_path / "s"
    store = R.ResultStore(path, SETTINGS, model_id="toy", seed=11)
    store.append([{"index": 0, "score": 1.0, "map": np.ones((2, 2), np.float16)}])
    (path / "manifest.json").unlink()
    with pytest.raises(R.StoreDamagedError, match=r"manifest.json is missing, but the store holds rows "
                                                  r"\(rows-000-of-001.jsonl\) and 1 array file.*repair"):
        R.ResultStore(path, {**SETTINGS, "n_samples": 99}, model_id="toy", seed=12)
    assert not (path / "manifest.json").exists()
    assert results_main(["check", str(path)]) == 1 and "manifest.json: missing" in capsys.readouterr().out
    R.repair_store(path)
    assert len(R.ResultStore(path, {**SETTINGS, "n_samples": 99}, model_id="toy", seed=12)) == 0
    # an empty shard file (a run killed before its first row) is no rows
    empty = tmp_path / "e"
    empty.mkdir()
    (empty / "rows-000-of-001.jsonl").write_bytes(b"")
    assert len(R.ResultStore(empty, SETTINGS, model_id="toy", seed=11)) == 0


def test_an_append_that_fails_half_way_leaves_no_partial_line(tmp_path, monkeypatch):
    """A disk-full failure in the middle of append, retried on the same object, glued the row onto the partial
    line; the next batch raised StoreDamagedError."""
    from infodecomp.results import store as S

    path = tmp_path / "s"
    store = R.ResultStore(path, SETTINGS, model_id="toy", seed=11)
    store.append([{"index": 0, "score": 0.0}])
    real = S._write_all

    def disk_full(fd, data):
        real(fd, data[: len(data) // 2])
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(S, "_write_all", disk_full)
    with pytest.raises(OSError, match="No space left"):
        store.append([{"index": 1, "score": 1.0}, {"index": 2, "score": 2.0}])
    monkeypatch.setattr(S, "_write_all", real)
    assert (path / "rows-000-of-001.jsonl").read_bytes().endswith(b"\n")
    store.append([{"index": 1, "score": 1.0}, {"index": 2, "score": 2.0}])  # the retry
    store.append([{"index": 3, "score": 3.0}])  # the next batch
    assert R.check_store(path) == []
    assert R.ResultStore(path, SETTINGS, model_id="toy", seed=11).merge(4)["score"].tolist() == [0, 1, 2, 3]
    # a partial line the truncation could not remove (a kill) is cut before the next append, on the same object
    with open(path / "rows-000-of-001.jsonl", "ab") as f:
        f.write(b'{"index": 4, "sco')
    with pytest.warns(UserWarning, match="dropped a partial last row"):
        store.append([{"index": 4, "score": 4.0}])
    assert R.check_store(path) == []


def _record_many(args):
    root, who, n = args
    for k in range(n):
        R.record("02_x", "toy", f"{who}_{k}", float(k), root=root, seed=0)


def test_two_processes_recording_into_one_file_keep_every_number(tmp_path):
    """Two processes that record() into one figures JSON kept 24–25 of 40 numbers, with no error."""
    import multiprocessing

    ctx = multiprocessing.get_context("fork")
    with ctx.Pool(2) as pool:
        pool.map(_record_many, [(tmp_path, "a", 20), (tmp_path, "b", 20)])
    stored = R.load_record("02_x", "toy", root=tmp_path)
    assert len([k for k in stored if not k.startswith("_")]) == 40


def test_nan_settings_and_bad_store_paths_are_named(tmp_path):
    """{"threshold": nan} failed with "Out of range float values are not JSON compliant" and left .locks/; a
    store path that is a dangling symlink or a file gave FileExistsError."""
    path = tmp_path / "s"
    with pytest.raises(ValueError, match=r"settings\['threshold'\] is nan: a result store's identity must hold "
                                         r"finite numbers"):
        R.ResultStore(path, {"threshold": float("nan")})
    with pytest.raises(ValueError, match=r"settings\['steps'\]\[1\] is inf"):
        R.ResultStore(path, {"steps": [1, float("inf")]})
    with pytest.raises(ValueError, match=r"model\['dtype'\] is nan"):
        R.ResultStore(path, {}, model={"name": "x", "version": None, "dtype": float("nan")})
    assert not path.exists()  # nothing created: no .locks/
    with pytest.raises(ValueError, match=r"provenance n_samples is nan"):
        R.record("02_x", "toy", "a", 1.0, root=tmp_path, n_samples=float("nan"))
    link = tmp_path / "link"
    link.symlink_to(tmp_path / "gone")
    with pytest.raises(NotADirectoryError, match=r"is a symbolic link to .*gone'?, which does not exist"):
        R.ResultStore(link, SETTINGS)
    file = tmp_path / "file"
    file.write_text("x")
    with pytest.raises(NotADirectoryError, match="is a file, not a folder"):
        R.ResultStore(file, SETTINGS)
    # a symlink to a folder is a store like any other
    (tmp_path / "real").mkdir()
    (tmp_path / "good").symlink_to(tmp_path / "real")
    R.ResultStore(tmp_path / "good", SETTINGS).append([{"index": 0}])
    assert (tmp_path / "real" / "manifest.json").is_file()


def test_check_follows_a_store_that_is_a_symlink(tmp_path, capsys):
    """`python -m infodecomp.results check DIR` skipped a store that is a symlink and exited 0 over its damage."""
    elsewhere = tmp_path / "big-disk" / "store"
    R.ResultStore(elsewhere, SETTINGS, model_id="toy", seed=11).append([{"index": 0}, {"index": 1}])
    shard = elsewhere / "rows-000-of-001.jsonl"
    shard.write_bytes(shard.read_bytes().replace(b'"index": 1', b'"index": "x"'))
    results = tmp_path / "results"
    results.mkdir()
    (results / "store").symlink_to(elsewhere)
    (results / "loop").symlink_to(results)  # a loop of links is walked once
    assert results_main(["check", str(results)]) == 1
    out = capsys.readouterr().out
    assert "[DAMAGED]" in out and "row without a valid 'index'" in out
    assert results_main(["check", str(results / "store")]) == 1


def _store_with_arrays(path):
    store = R.ResultStore(path, SETTINGS, model_id="toy", seed=11)
    store.append([{"index": 0, "map": np.ones((2, 2), np.float16)}])
    store.append([{"index": 1, "map": np.zeros((2, 2), np.float16)}])
    return store


def _point_row(path, index, npz):
    shard = path / "rows-000-of-001.jsonl"
    rows = [json.loads(line) for line in shard.read_text().splitlines()]
    for row in rows:
        if row["index"] == index:
            row["_npz"] = npz
    shard.write_text("".join(json.dumps(r) + "\n" for r in rows))


@pytest.mark.parametrize("npz", ["../outside/precious.txt", "../../../outside/precious.txt", "manifest.json",
                                 "rows-000-of-001.jsonl", "arrays/../manifest.json", "ABSOLUTE"])
def test_a_row_never_makes_repair_or_merge_touch_a_file_outside_the_stores_arrays(tmp_path, npz):
    """A row whose _npz is "../outside/precious.txt": repair moved that file into damaged/; deeper ../ moved and
    overwrote files elsewhere; an absolute _npz made merge read any .npz on disk."""
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "precious.txt").write_text("precious")
    other = _store_with_arrays(tmp_path / "other")  # an .npz elsewhere on disk, readable as arrays
    foreign = next((tmp_path / "other" / "arrays").glob("*.npz"))
    path = tmp_path / "deep" / "er" / "s"
    _store_with_arrays(path)
    before = {p: p.read_bytes() for p in (path / "manifest.json", outside / "precious.txt", foreign)}
    _point_row(path, 1, str(foreign) if npz == "ABSOLUTE" else npz)
    with pytest.raises(R.StoreDamagedError, match=r"names an array file outside the store's arrays/"):
        R.ResultStore(path, SETTINGS, model_id="toy", seed=11)
    problems = R.check_store(path)
    assert [(p.file, p.line) for p in problems] == [("rows-000-of-001.jsonl", 2)]
    R.repair_store(path)
    for p, data in before.items():
        assert p.read_bytes() == data, p  # nothing outside the store's arrays/ was moved or overwritten
    assert len(other) == 2
    store = R.ResultStore(path, SETTINGS, model_id="toy", seed=11)
    assert store.merge()["index"].tolist() == [0]  # the bad row moved aside; the next run recomputes it


def test_unicode_store_paths_and_values_round_trip(tmp_path):
    """Further case: a store under a non-ASCII folder, with non-ASCII ids and strings."""
    path = tmp_path / "résultats" / "猫 store"
    store = R.ResultStore(path, {"prompt": "un chat sur un lit 🐱"}, model_id="modèle", seed=0)
    store.append([{"index": 0, "id": "chat-é", "caption": "🐶 on a bed", "map": np.ones((2, 2), np.float16)}])
    frame = R.ResultStore(path, {"prompt": "un chat sur un lit 🐱"}, model_id="modèle", seed=0).merge(1)
    assert frame["id"].tolist() == ["chat-é"] and frame["caption"].tolist() == ["🐶 on a bed"]
    assert R.check_store(path) == []
