"""scripts/run_notebooks.py and its parameter files: notebooks/paper_parameters.yml covers every notebook at the
paper's sizes with parameters the notebooks have, each value citing the protocol; the runner's plan (variants,
--model, the sharded phase under a launcher) and its refusals; scripts/fetch_weights.py without the network."""

from __future__ import annotations

import hashlib
import json
import re
import shutil
import subprocess
import sys
import types
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts"))

import fetch_weights  # noqa: E402
import run_notebooks as rn  # noqa: E402

NOTEBOOKS = sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))
PAPER = ROOT / "notebooks" / "paper_parameters.yml"
CI = ROOT / "notebooks" / "ci_parameters.yml"


def paper_entries() -> dict:
    return yaml.safe_load(PAPER.read_text(encoding="utf-8"))


# ───────────────────────────────────────────── the parameter files ─────────────────────────────────────────────

def test_paper_preset_covers_every_notebook():
    assert set(paper_entries()) == {p.stem for p in NOTEBOOKS}


@pytest.mark.parametrize("file", [PAPER, CI], ids=lambda p: p.name)
def test_every_name_is_a_parameter_of_its_notebook(file):
    """Read independently of the runner: the names of each entry against the names assigned in the notebook's
    cell tagged 'parameters' (papermill would add an unknown one silently)."""
    by_stem = {p.stem: p for p in NOTEBOOKS}
    for stem, entry in (yaml.safe_load(file.read_text(encoding="utf-8")) or {}).items():
        nb = json.loads(by_stem[stem].read_text(encoding="utf-8"))
        (cell,) = [c for c in nb["cells"] if "parameters" in c.get("metadata", {}).get("tags", [])]
        names = set(re.findall(r"^([A-Z][A-Z0-9_]*) = ", "".join(cell["source"]), re.M))
        for run in entry if isinstance(entry, list) else [entry or {}]:
            given = {k for k in run if k not in rn.ENTRY_KEYS}
            assert given <= names, f"{file.name}: {stem}: {sorted(given - names)} are not parameters"
    rn.load_parameter_file(file, NOTEBOOKS)  # and the runner accepts it


def paper_block(stem: str) -> str:
    """The lines of notebook ``stem`` in paper_parameters.yml: the comment lines right above its key, the key, and
    its indented lines."""
    lines = PAPER.read_text(encoding="utf-8").splitlines()
    (i,) = [k for k, line in enumerate(lines) if line.startswith(f"{stem}:")]
    top = i
    while top > 0 and lines[top - 1].startswith("#"):
        top -= 1
    bottom = i + 1
    while bottom < len(lines) and (lines[bottom].startswith((" ", "-")) or not lines[bottom].strip()):
        bottom += 1
    return "\n".join(lines[top:bottom])


def test_every_paper_entry_cites_the_protocol():
    """Each notebook's block (its comment and values) cites docs/protocol.md (tests/test_docs.py resolves the
    anchors); 01 (no data, no model) and the skipped 00 say why instead."""
    for stem, entry in paper_entries().items():
        block = paper_block(stem)
        assert block.splitlines()[0].startswith("#"), f"{stem}: no comment above its entry"
        if entry and "skip" not in entry:
            assert "docs/protocol.md#" in block, f"{stem}: no citation of docs/protocol.md in its block"
            values = [line for line in block.splitlines() if re.match(r"\s+(- )?[A-Z_]+: ", line)]
            assert values, stem


def test_paper_sizes():
    """The paper's sizes (docs/protocol.md): every example of the real data, 100 draws for relation testing,
    N = 50 / 100 / 200 for Table 3 (the λ draws, the Attention+Information passes and DAAM's steps alike), the
    100 COCO100-IT images with 100 σ values and 20 × 120 draws for Table 4."""
    e = paper_entries()
    for stem in ("02_relation_testing", "03_relation_types"):
        assert e[stem]["N_ITEMS"] is None and e[stem]["N_SAMPLES"] == 100 and e[stem]["DATA_DIR"] == "datasets"
    runs = e["05_word_localization"]
    assert [r["N_SAMPLES"] for r in runs] == [50, 100, 200]
    assert all(r["N_SAMPLES"] == r["STEPS"] == r["DAAM_STEPS"] and r["N_ITEMS"] is None and
               r["DATASET"] == "coco-it" for r in runs)
    assert [r.get("variant") for r in runs] == [None, "steps-100", "steps-200"]
    iv = e["06_prompt_intervention"]
    assert (iv["DATASET"], iv["N_ITEMS"], iv["N_STEPS"], iv["N_LOGSNR"], iv["N_NOISE"]) == ("coco100-it", 100, 100,
                                                                                           20, 120)
    assert {e["04_mi_cmi_heatmaps"]["DATASET"], e["04_mi_cmi_heatmaps"]["ABSTRACT_DATASET"]} == {"coco100-it", "coco-wl"}
    assert {e["07_image_level_information"]["DATASET"], e["07_image_level_information"]["NOUN_DATASET"]} == \
        {"coco100-it", "coco-wl"}
    for stem, entry in e.items():  # real data, on the GPU, at the reference precision, faithful where it applies
        for run in entry if isinstance(entry, list) else [entry]:
            if "DATA_DIR" in run:
                assert run["DEVICE"] == "cuda" and run["DTYPE"] == "float32" and run["PROTOCOL"] == "faithful", stem


# ───────────────────────────────────────────── refusals of a bad file ─────────────────────────────────────────────

@pytest.mark.parametrize("text, message", [
    ("99_nothing: {}", "'99_nothing' is not a notebook"),
    ("02_relation_testing: {N_ITEM: 3}", "['N_ITEM'] are not parameters of 02_relation_testing.ipynb"),
    ("05_word_localization: [{N_ITEMS: 2}, {N_ITEMS: 3}]", "each further run needs its own variant name"),
    ("05_word_localization: [{N_ITEMS: 2}, {variant: a, N_ITEMS: 3}, {variant: a}]", "its own variant name"),
    ("05_word_localization: [{variant: a, N_ITEMS: 2}]", "the first run writes to OUT_DIR and has no variant"),
    ("05_word_localization: [{N_ITEMS: 2}, {variant: Big Name}]", "got 'Big Name'"),
    ("00_does_the_model_read_its_words: {skip: ''}", "a skipped entry is {skip: \"why\"} alone"),
    ("00_does_the_model_read_its_words: {skip: why, N: 3}", "a skipped entry is {skip: \"why\"} alone"),
    ("05_word_localization: []", "an empty list of runs"),
    ("- 1\n- 2", "expected a mapping of notebook stems, got list"),
])
def test_a_bad_parameter_file_is_refused_saying_what_and_where(tmp_path, text, message):
    f = tmp_path / "bad.yml"
    f.write_text(text, encoding="utf-8")
    with pytest.raises(ValueError) as err:
        rn.load_parameter_file(f, NOTEBOOKS)
    assert message in str(err.value) and str(f) in str(err.value)


def test_main_reports_a_bad_file_with_exit_status_2(tmp_path, capsys):
    f = tmp_path / "bad.yml"
    f.write_text("02_relation_testing: {N_ITEM: 3}", encoding="utf-8")
    assert rn.main(["--parameters", str(f), "--dry-run"]) == 2
    assert "N_ITEM" in capsys.readouterr().err
    assert rn.main(["--paper", "--revision", "abc", "--dry-run"]) == 2
    assert "--revision needs --model" in capsys.readouterr().err


# ─────────────────────────────── every parameter checked, from -p and from files ───────────────────────────────

@pytest.fixture
def no_notebook_runs(monkeypatch):
    """papermill replaced by a stand-in that records the notebooks it is asked to run (none should be)."""
    calls = []
    monkeypatch.setitem(sys.modules, "papermill", types.SimpleNamespace(
        execute_notebook=lambda path, *a, **k: calls.append(path)))
    return calls


def test_a_misspelt_p_is_refused_before_any_notebook_runs(no_notebook_runs, capsys):
    """-p N_SAMPLE=1000 used to run 02 with N_SAMPLES = 100 and exit 0."""
    assert rn.main(["--only", "02", "-p", "N_SAMPLE=1000"]) == 2
    err = capsys.readouterr().err
    assert "-p N_SAMPLE: not a parameter of 02_relation_testing.ipynb (nearest: N_SAMPLES" in err
    assert rn.main(["--only", "02", "03", "-p", "N_SAMPLE=1000"]) == 2
    err = capsys.readouterr().err
    assert "any of 02_relation_testing.ipynb, 03_relation_types.ipynb" in err and "N_SAMPLES" in err
    assert rn.main(["--only", "02", "-p", "CLICK=true"]) == 2  # a parameter of 08 only
    assert "-p CLICK: not a parameter of 02_relation_testing.ipynb" in capsys.readouterr().err
    assert no_notebook_runs == []


@pytest.mark.parametrize("only, item, message", [
    ("02", "N_SAMPLES=1e3", "N_SAMPLES='1e3' (a string) does not fit 02_relation_testing.ipynb's parameters cell, "
                            "N_SAMPLES = 100: expected an int; YAML reads 1e3 as a string"),
    ("02", "N_SAMPLES=100.0", "N_SAMPLES=100.0 (a float) does not fit"),
    ("02", "N_SAMPLES=null", "N_SAMPLES=None (None) does not fit"),
    ("02", "DTYPE=32", "DTYPE=32 (an int) does not fit 02_relation_testing.ipynb's parameters cell, "
                       "DTYPE = 'float32': expected a string"),
    ("08", "CLICK=1", "CLICK=1 (an int) does not fit 08_interactive_probe.ipynb's parameters cell, CLICK = False: "
                      "expected a bool"),
    ("08", "LOC=true", "LOC=True (a bool) does not fit"),
    ("03", "N_ITEMS=many", "expected an int or None"),  # the comment says what None means
])
def test_a_p_of_the_wrong_type_is_refused_before_any_notebook_runs(no_notebook_runs, capsys, only, item, message):
    assert rn.main(["--only", only, "-p", item]) == 2
    assert message in capsys.readouterr().err and no_notebook_runs == []


@pytest.mark.parametrize("only, item, value", [
    ("02", "DTYPE=bf16", "bf16"),  # load_model reads the short names (the notebooks no longer call getattr(torch, …))
    ("02", "N_ITEMS=null", None),  # "None with DATA_DIR: all of them"
    ("02", "ADAPTIVE_ALPHA=0.05", 0.05),  # a None default takes anything
    ("03", "THRESHOLD=1", 1),  # an int where the cell has a float
    ("08", "CLICK=true", True),
])
def test_a_p_of_the_right_type_reaches_the_notebook(capsys, only, item, value):
    assert rn.main(["--only", only, "-p", item, "--dry-run"]) == 0
    (line,) = [ln for ln in capsys.readouterr().out.splitlines() if ln.startswith(only)]
    name = item.split("=")[0]
    assert json.loads(line.split(": ", 1)[1])[name] == value


def test_bf16_is_a_dtype_load_model_reads():
    precision = pytest.importorskip("infodecomp.precision")
    torch = pytest.importorskip("torch")
    assert precision.as_dtype("bf16") is torch.bfloat16


def test_p_goes_only_to_the_notebooks_that_have_it(capsys):
    assert rn.main(["-p", "CLICK=true", "-p", "DEVICE=cuda", "--dry-run"]) == 0
    params = {line.split(": ", 1)[0]: json.loads(line.split(": ", 1)[1])
              for line in capsys.readouterr().out.splitlines() if line.endswith("}")}
    assert [name for name, p in params.items() if "CLICK" in p] == ["08_interactive_probe.ipynb"]
    with_device = {p.name for p in NOTEBOOKS if "DEVICE" in rn.notebook_parameters(p)}
    assert {name for name, p in params.items() if p.get("DEVICE") == "cuda"} == with_device


@pytest.mark.parametrize("text, message", [
    ("02_relation_testing: {N_SAMPLES: '100'}",
     "02_relation_testing: N_SAMPLES='100' (a string) does not fit 02_relation_testing.ipynb's parameters cell"),
    ("02_relation_testing: {N_SAMPLES: 1e3}", "N_SAMPLES='1e3' (a string)"),
    ("08_interactive_probe: {CLICK: 'yes please'}", "CLICK='yes please' (a string)"),
    ("05_word_localization: [{N_ITEMS: 2}, {variant: big, N_SAMPLES: 1.5}]",
     "05_word_localization run 1 (big): N_SAMPLES=1.5 (a float) does not fit"),
    ("02_relation_testing: {N_ITEM: 3}", "(nearest: N_ITEMS)"),
])
def test_a_parameter_file_is_checked_by_the_same_checker(tmp_path, no_notebook_runs, capsys, text, message):
    f = tmp_path / "bad.yml"
    f.write_text(text, encoding="utf-8")
    with pytest.raises(ValueError) as err:
        rn.load_parameter_file(f, NOTEBOOKS)
    assert message in str(err.value) and str(f) in str(err.value)
    assert rn.main(["--parameters", str(f)]) == 2 and message in capsys.readouterr().err
    assert no_notebook_runs == []


def test_the_parameters_cells_literals_give_the_types():
    specs = rn.notebook_parameter_specs(ROOT / "notebooks" / "02_relation_testing.ipynb")
    assert specs["N_SAMPLES"].default == 100 and specs["DATA_DIR"].default is None
    assert specs["N_ITEMS"].accepts_none and not specs["N_SAMPLES"].accepts_none
    assert "ties 1/k" in specs["PROTOCOL"].comment  # the comment's continuation lines belong to it
    P = rn.Parameter
    assert P("X", 1.0, "").accepts(2) and not P("X", 1.0, "").accepts(True) and not P("X", 1, "").accepts(2.0)
    assert not P("X", 1, "").accepts(False) and not P("X", False, "").accepts(0) and P("X", False, "").accepts(True)
    assert P("X", None, "").accepts("anything") and P("X", None, "").accepts([1])
    assert P("X", 3, "count (None: all)").accepts(None) and not P("X", 3, "count").accepts(None)
    assert P("X", (1, 2), "").accepts([3]) and P("X", rn.UNKNOWN, "").accepts(object())


# ───────────────────────────────────────────────── the plan ─────────────────────────────────────────────────

def paper_plan(**kw):
    return rn.plan(NOTEBOOKS, rn.load_parameter_file(PAPER, NOTEBOOKS), **{"folders": {}, "overrides": {}, **kw})


def test_paper_plan_runs_every_notebook_once_and_localization_three_times():
    runs, skipped = paper_plan()
    assert [r.executed_name for r in runs] == [
        "01_information_estimators.ipynb", "02_relation_testing.ipynb", "03_relation_types.ipynb",
        "04_mi_cmi_heatmaps.ipynb", "05_word_localization.ipynb", "05_word_localization.steps-100.ipynb",
        "05_word_localization.steps-200.ipynb", "06_prompt_intervention.ipynb", "07_image_level_information.ipynb",
        "08_interactive_probe.ipynb", "09_pid_two_words.ipynb"]
    assert [name for name, _ in skipped] == ["00_does_the_model_read_its_words.ipynb"]
    out = {r.executed_name: r.params.get("OUT_DIR") for r in runs}
    assert out["05_word_localization.ipynb"] is None  # the notebook's own: figures/<model>/
    assert out["05_word_localization.steps-100.ipynb"] == "figures/steps-100"
    assert out["05_word_localization.steps-200.ipynb"] == "figures/steps-200"


def test_model_goes_to_every_notebook_that_has_one_and_overrides_win():
    runs, _ = paper_plan(model="weights/sd21-base", folders={"OUT_DIR": "out"}, overrides={"N_SAMPLES": 7})
    with_model = {r.path.stem for r in runs if "MODEL" in rn.notebook_parameters(r.path)}
    assert {r.path.stem for r in runs if r.params.get("MODEL") == "weights/sd21-base"} == with_model
    assert "01_information_estimators" not in with_model and len(with_model) == 8
    assert all(r.params["N_SAMPLES"] == 7 for r in runs if "N_SAMPLES" in r.params)
    out = {r.executed_name: r.params["OUT_DIR"] for r in runs}
    assert out["05_word_localization.steps-200.ipynb"] == "out/steps-200" and out["06_prompt_intervention.ipynb"] == "out"


def test_under_a_launch_only_the_sharded_notebooks_run_each_on_its_gpu():
    runs, skipped = paper_plan(world=(3, 1, 4))
    # every run of each sharded notebook (05 has three: each goes to its own launch with --variant)
    assert list(dict.fromkeys(r.path.stem for r in runs)) == list(rn.SHARDED)
    assert all(r.params["DEVICE"] == "cuda:1" for r in runs)
    assert len(skipped) == len(NOTEBOOKS) - len(rn.SHARDED)
    assert all("not sharded" in why for name, why in skipped if not name.startswith("00"))


#: The call through which each sharded notebook's experiment reaches run_sharded (issue 30: every notebook whose
#: cost is per example).
SHARDED_CALLS = {"02_relation_testing": "rt.run(", "03_relation_types": "rt.run(",
                 "04_mi_cmi_heatmaps": "heatmaps.run(", "05_word_localization": "localization.run_localization(",
                 "06_prompt_intervention": "iv.run_intervention(", "07_image_level_information": "image_level.run(",
                 "09_pid_two_words": "pid.run("}


def test_the_sharded_notebooks_shard_through_the_launcher():
    """SHARDED is what it claims: those notebooks call their experiment's run without a fixed shard, so that
    run_sharded takes the process index and count from the launch."""
    assert set(rn.SHARDED) == set(SHARDED_CALLS)
    for stem in rn.SHARDED:
        nb = json.loads((ROOT / "notebooks" / f"{stem}.ipynb").read_text(encoding="utf-8"))
        code = "\n".join("".join(c["source"]) for c in nb["cells"] if c["cell_type"] == "code")
        assert SHARDED_CALLS[stem] in code and "process_index" not in code and "state=" not in code, stem
        if stem.startswith(("02", "03")):
            assert "rt.run(" in code


def test_every_notebook_that_runs_a_model_per_example_shards():
    """Issue 30: only the notebooks without per-example model work stay out of the sharded phase (00 checks the
    embedded model and is not run at paper scale, 01 has no model, 08 is the interactive probe)."""
    assert sorted({p.stem for p in NOTEBOOKS} - set(rn.SHARDED)) == [
        "00_does_the_model_read_its_words", "01_information_estimators", "08_interactive_probe"]


def test_one_launch_per_run_of_a_notebook_with_several(monkeypatch, capsys):
    """05 has three runs in the paper preset: --list-variants names them and --variant picks one per launch."""
    assert rn.main(["--paper", "--only", "05", "--list-variants"]) == 0
    assert capsys.readouterr().out.split() == ["main", "steps-100", "steps-200"]
    assert rn.main(["--paper", "--only", "02", "--list-variants"]) == 0
    assert capsys.readouterr().out.split() == ["main"]
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "0")
    monkeypatch.setenv("LOCAL_RANK", "0")
    assert rn.main(["--paper", "--dry-run", "--only", "05"]) == 2
    assert "--variant" in capsys.readouterr().err
    for variant, name in (("main", "05_word_localization.ipynb"), ("steps-200", "05_word_localization.steps-200.ipynb")):
        assert rn.main(["--paper", "--dry-run", "--only", "05", "--variant", variant]) == 0
        lines = [line for line in capsys.readouterr().out.splitlines() if line.startswith("05_")]
        assert len(lines) == 1 and lines[0].startswith(name + ":")


def test_launch_reads_the_launchers_variables(monkeypatch):
    for key in ("WORLD_SIZE", "RANK", "LOCAL_RANK"):
        monkeypatch.delenv(key, raising=False)
    assert rn.launch() == (0, 0, 1)
    monkeypatch.setenv("WORLD_SIZE", "8")
    monkeypatch.setenv("RANK", "5")
    monkeypatch.setenv("LOCAL_RANK", "5")
    assert rn.launch() == (5, 5, 8)


def test_dry_run_under_a_launch_writes_out_of_the_way(monkeypatch, capsys):
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "1")
    monkeypatch.setenv("LOCAL_RANK", "1")
    assert rn.main(["--paper", "--dry-run", "--only", "02", "08"]) == 0
    out = capsys.readouterr().out
    lines = [line for line in out.splitlines() if line.startswith("02_")]
    assert len(lines) == 1 and "08_interactive_probe.ipynb" in out and "not sharded" in out
    params = json.loads(lines[0].split(": ", 1)[1])
    assert params["OUT_DIR"] == "build/shards/rank-1/figures" and params["DEVICE"] == "cuda:1"
    assert "STORE_DIR" not in params  # the stores are shared: the notebook's own runs/
    assert rn.main(["--paper", "--dry-run", "--only", "02", "03"]) == 2
    assert "run one notebook per launch" in capsys.readouterr().err


def test_the_makefile_shards_the_same_notebooks_as_the_runner(tmp_path, capsys):
    """One list of the sharded notebooks: the Makefile's reproduce-paper takes SHARDED_NOTEBOOKS from
    ``run_notebooks.py --list-sharded`` (SHARDED), so the two agree by construction; ``make -n`` shows the
    sharded phase looping over exactly SHARDED's prefixes."""
    assert rn.main(["--list-sharded"]) == 0
    prefixes = [stem[:2] for stem in rn.SHARDED]
    assert capsys.readouterr().out.split() == prefixes
    makefile = (ROOT / "Makefile").read_text(encoding="utf-8")
    assert re.findall(r"^SHARDED_NOTEBOOKS\s*[:?]?=.*$", makefile, re.M) == [
        "SHARDED_NOTEBOOKS = $(shell $(PY) scripts/run_notebooks.py --list-sharded)"]
    make = shutil.which("make")
    if make is None:
        pytest.skip("no make here to expand the recipe")
    out = subprocess.run([make, "-n", "-C", str(ROOT), "reproduce-paper", f"PY={sys.executable}", "NUM_GPUS=2",
                          f"VENV={tmp_path / 'venv'}"], capture_output=True, text=True, check=True).stdout
    assert f"for n in {' '.join(prefixes)}; do" in out, out
    # one launch per run of each notebook (05's three step settings), each picked with --variant
    assert "--list-variants" in out and "--only $n --variant $v" in out, out


# ───────────────────────────────────────────────── fetch_weights ─────────────────────────────────────────────────

def test_short_names_and_local_folders_are_passed_through(tmp_path):
    assert fetch_weights.fetch("sd21-base", None, tmp_path) == "sd21-base"
    assert fetch_weights.fetch(str(tmp_path), None, tmp_path) == str(tmp_path)
    with pytest.raises(ValueError, match="only applies to hub ids"):
        fetch_weights.fetch(str(tmp_path), "abc", tmp_path)
    with pytest.raises(ValueError, match="needs a hub id"):
        fetch_weights.fetch("sd21-base", "abc", tmp_path)
    with pytest.raises(ValueError, match="neither a local directory"):
        fetch_weights.classify("not a/model/id")


def _copy(tmp_path, files: dict[str, bytes], *, revision="v1", commit="c" * 40):
    folder = tmp_path / "weights" / "stable-diffusion-2-1-base"
    for rel, data in files.items():
        (folder / rel).parent.mkdir(parents=True, exist_ok=True)
        (folder / rel).write_bytes(data)
    record = {"repo_id": "someone/stable-diffusion-2-1-base", "revision": revision, "commit": commit,
              "files": {rel: {"size": len(d), "sha256": hashlib.sha256(d).hexdigest()} for rel, d in files.items()}}
    (folder / fetch_weights.RECORD).write_text(json.dumps(record), encoding="utf-8")
    return folder


def test_a_verified_copy_is_used_without_the_network(tmp_path, monkeypatch):
    folder = _copy(tmp_path, {"model_index.json": b"{}", "unet/diffusion_pytorch_model.safetensors": b"x" * 100})

    def offline(*a, **k):
        raise AssertionError("the network was asked")

    monkeypatch.setattr(fetch_weights, "hub_files", offline)
    for rev in ("v1", "c" * 40):  # the revision asked for, or the commit it resolved to
        assert fetch_weights.fetch("someone/stable-diffusion-2-1-base", rev, tmp_path / "weights", deep=True) == \
            str(folder)
    with pytest.raises(SystemExit, match="no verified copy"):
        fetch_weights.fetch("someone/stable-diffusion-2-1-base", "v2", tmp_path / "weights", verify_only=True)


def test_verify_finds_missing_truncated_and_altered_files(tmp_path):
    folder = _copy(tmp_path, {"a.json": b"{}", "unet/w.safetensors": b"x" * 100, "vae/w.safetensors": b"y" * 10})
    expected = json.loads((folder / fetch_weights.RECORD).read_text())["files"]
    assert fetch_weights.verify(folder, expected) == []
    (folder / "a.json").unlink()
    (folder / "unet/w.safetensors").write_bytes(b"x" * 99)
    (folder / "vae/w.safetensors").write_bytes(b"z" * 10)
    problems = fetch_weights.verify(folder, expected)
    assert problems == ["a.json: missing", "unet/w.safetensors: 99 bytes, expected 100",
                        f"vae/w.safetensors: sha256 {hashlib.sha256(b'z' * 10).hexdigest()}, expected "
                        f"{hashlib.sha256(b'y' * 10).hexdigest()}"]
    assert fetch_weights.verify(folder, expected, deep=False) == problems[:2]  # sizes only


def test_a_damaged_copy_is_not_used(tmp_path, monkeypatch):
    folder = _copy(tmp_path, {"model_index.json": b"{}", "unet/w.safetensors": b"x" * 100})
    (folder / "unet/w.safetensors").write_bytes(b"x")
    with pytest.raises(SystemExit, match="no verified copy"):
        fetch_weights.fetch("someone/stable-diffusion-2-1-base", "v1", tmp_path / "weights", verify_only=True)


@pytest.mark.parametrize("path, wanted", [
    ("model_index.json", True), ("unet/config.json", True), ("unet/diffusion_pytorch_model.safetensors", True),
    ("tokenizer/merges.txt", True), ("text_encoder/model.safetensors", True),
    ("unet/diffusion_pytorch_model.fp16.safetensors", False), ("unet/diffusion_pytorch_model.non_ema.safetensors", False),
    ("unet/diffusion_pytorch_model.bin", False), ("v2-1_512-ema-pruned.safetensors", False), ("README.md", False),
    ("a/b/config.json", False),
])
def test_only_what_load_model_reads_is_fetched(path, wanted):
    assert fetch_weights.selected(path) is wanted
