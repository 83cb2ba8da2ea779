"""The cost plan (infodecomp/experiments/costs.py and cost_counts.py, tools/cost_plan.py, scripts/cost_plan.py,
benchmarks/sd21_throughput.py).

The counts run the experiments' own code paths on the tiny test UNet and count the rows that reach it; they must
equal the closed forms that the plan evaluates at the paper's sizes."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from infodecomp.experiments import cost_counts as CC
from infodecomp.experiments import costs as C
from tools import cost_plan as T

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "scripts" / "cost_plan.py"
BENCH = ROOT / "benchmarks" / "sd21_throughput.py"


@pytest.fixture(scope="module")
def model():
    from infodecomp.models import Model
    from infodecomp.testing import tiny_pipeline

    return Model(tiny_pipeline(), name="tiny")


@pytest.fixture(scope="module")
def word_rows():
    from infodecomp.experiments.localization import load_dataset

    return load_dataset("coco-it", 2, seed=0)


# ── counts on the real code paths equal the closed forms ───────────────────────────────────────────────────

@pytest.mark.parametrize("dataset, n_candidates", [("vg-relation", 2), ("coco-order", 5)])
def test_relation_testing_count(model, dataset, n_candidates):
    from infodecomp.experiments.relation_testing import load_dataset

    rows = load_dataset(dataset, 2, seed=0)
    assert all(len(set(r["captions"])) == n_candidates for r in rows)
    assert CC.count_relation_testing(model, rows, n_samples=3) == C.relation_testing_evaluations(2, n_candidates, 3)
    assert C.relation_testing_evaluations(2, n_candidates, 3) == 2 * 3 * (n_candidates + 1)


def test_identical_captions_are_counted_once(model):
    from infodecomp.experiments.relation_testing import load_dataset

    row = dict(load_dataset("coco-order", 1, seed=0)[0])
    caps = list(row["captions"])
    caps[0] = caps[1]  # two identical candidates: 4 distinct
    row["captions"] = caps
    row["id"] = "dup"
    assert CC.count_relation_testing(model, [row], n_samples=2) == C.relation_testing_evaluations(1, 4, 2) == 10


def test_heatmap_count(model, word_rows):
    n = CC.count_heatmaps(model, word_rows, n_samples=3, attention_samples=2)
    assert n == C.heatmap_evaluations(2, 3, 2) == 2 * (4 * 3 + 2)
    assert CC.count_heatmaps(model, word_rows, n_samples=2, attention=False) == C.heatmap_evaluations(
        2, 2, attention=False) == 16


def test_localization_count_with_daam(model, word_rows):
    n = CC.count_localization(model, word_rows, n_samples=2, attention_samples=3, daam_steps=2, batch_size=1)
    assert n == C.localization_evaluations(2, 2, 3, 2) == 2 * (4 * 2 + 3 + 2 * 2)


def test_image_level_count(model, word_rows):
    n = CC.count_image_level(model, word_rows, n_samples=2, n_grid=3, n_noise=2)
    assert n == C.image_level_evaluations(2, 2, 3, 2) == 2 * 4 * 2 + 2 * 3 * 2


def test_intervention_count(model):
    from infodecomp.data.shapes import twin

    rows = twin("coco100-it", 2, seed=0, groups=("circle", "red"))
    n = CC.count_intervention(model, rows, n_steps=3, n_logsnr=2, n_noise=3)
    assert n == C.intervention_evaluations(2, 3, 2, 3) == 2 * (4 * 2 * 2 + 7 * 2 * 3)


def test_counter_counts_rows_and_removes_its_hook(model):
    unet = model.unet
    before = len(unet._forward_pre_hooks)
    z = torch.zeros(5, *model.latent_shape)
    cond = model.encode_prompts([""] * 5)
    with CC.UNetCounter(model) as c:
        model.denoiser(z, torch.zeros(5), cond)
        model.denoiser(z[:2], torch.zeros(2), cond[:2])
    assert (c.calls, c.evaluations) == (2, 7)
    assert len(unet._forward_pre_hooks) == before
    with pytest.raises(TypeError, match="torch-module .unet"):
        CC.UNetCounter(object())


# ── the plan at the paper's sizes ─────────────────────────────────────────────────────────────────────────────

def test_paper_plan_rows():
    rows = C.paper_plan()
    got = {(r.notebook, r.part.split(":")[0]): r.evaluations for r in rows}
    # worked by hand: examples × draws × (captions + null); rows × (4N + N [+ 2N]); 100 × (792 + 16,800)
    assert got[("02_relation_testing", "vg-relation")] == 23_937 * 300 == 7_181_100
    assert got[("02_relation_testing", "vg-attribution")] == 28_748 * 300 == 8_624_400
    assert got[("02_relation_testing", "coco-order")] == 25_010 * 600 == 15_006_000
    assert got[("02_relation_testing", "flickr-order")] == 5_000 * 600 == 3_000_000
    assert sum(r.evaluations for r in rows if r.notebook == "02_relation_testing") == 33_811_500
    assert got[("04_mi_cmi_heatmaps", "COCO100-IT + COCO-WL")] == 170 * 500 == 85_000
    loc = [r.evaluations for r in rows if r.notebook == "05_word_localization"]
    assert loc == [6_927 * 350, 6_927 * 700, 6_927 * 1_400] == [2_424_450, 4_848_900, 9_697_800]
    assert got[("06_prompt_intervention", "COCO100-IT")] == 100 * 17_592 == 1_759_200
    assert got[("07_image_level_information", "COCO100-IT + COCO-WL")] == 170 * 800 + 20_000 == 156_000
    reused = [r for r in rows if not r.new]
    assert [r.notebook for r in reused] == ["03_relation_types"] and reused[0].evaluations == 15_805_500
    assert C.plan_total([r for r in rows if r.notebook != "09_pid_two_words"]) == 52_782_850  # the paper's
    # notebook 09 (beyond the paper) in its preset: 100 generated images × 4 conditions × 100 draws, and generating
    # them (50 DDIM steps with guidance: 2 rows each)
    pid = [r.evaluations for r in rows if r.notebook == "09_pid_two_words"]
    assert pid == [100 * 4 * 100, 100 * 50 * 2] == [40_000, 10_000]
    assert C.plan_total(rows) == 52_782_850 + 50_000 == 52_832_850


def test_largest_shard_of_aligned_blocks():
    from infodecomp.results import shard_indices

    for n, g, block in [(7, 2, 2), (70, 8, 8), (6_927, 8, 8), (100, 4, 1), (5, 8, 1), (3, 2, 8), (0, 4, 8)]:
        want = max(len(shard_indices(n, p, g, block=block)) for p in range(g))
        assert C.largest_shard(n, g, block) == want, (n, g, block)
    assert C.largest_shard(6_927, 1, 8) == 6_927 and C.largest_shard(70, 8, 8) == 14  # blocks 0 and 8 (8 + 6 rows)


def test_the_critical_path_is_the_largest_shard_plus_what_does_not_shard():
    rows = C.paper_plan()
    assert C.critical_path(rows, 1) == C.plan_total(rows)
    by = {(r.notebook, r.part.split(":")[0]): r for r in rows}
    vg = by[("02_relation_testing", "vg-relation")]
    assert vg.critical_path(4) == -(-23_937 // 4) * 300 and vg.unsharded == 0  # per example
    loc = [r for r in rows if r.notebook == "05_word_localization"][0]
    assert loc.block == 8 and loc.critical_path(8) == C.largest_shard(6_927, 8, 8) * 350 == 872 * 350
    c2 = by[("07_image_level_information", "COCO100-IT + COCO-WL")]
    assert c2.unsharded == 2 * 200 * 50  # App. C.2's one row, computed by every process and by the plain run again
    assert c2.critical_path(8) == (C.largest_shard(70, 8, 8) + C.largest_shard(100, 8, 8)) * 800 + 2 * 20_000
    generation = [r for r in rows if r.notebook == "09_pid_two_words"][1]
    assert generation.loops == () and generation.critical_path(4) == 2 * 10_000
    assert by[("03_relation_types", "VG-R + VG-A")].critical_path(4) == 0  # reads 02's stores
    assert C.critical_path(rows, 8) < C.critical_path(rows, 4) < C.critical_path(rows, 1)
    assert C.critical_path(rows, 8) == sum(r.critical_path(8) for r in rows)
    with pytest.raises(ValueError, match="num_gpus must be an integer >= 1"):
        C.critical_path(rows, 0)


def test_pid_and_generation_counts(model):
    from infodecomp.experiments.pid import shapes_cases

    rows = shapes_cases(["colour-shape"], 3, seed=0)
    assert CC.count_pid(model, rows, n_samples=2, batch_size=2) == C.pid_evaluations(3, 2) == 3 * 4 * 2
    cases = [("a red circle", "red", "circle")]
    assert CC.count_generation(model, cases, n_images=2, steps=3) == C.generation_evaluations(2, 3) == 2 * 3 * 2
    assert CC.count_generation(model, cases, n_images=1, steps=2, guidance_scale=1.0) == C.generation_evaluations(
        1, 2, guidance=False) == 2


def test_gpu_hours_and_bad_input():
    assert C.gpu_hours(36_000, 10.0) == pytest.approx(1.0)
    for bad in (0, -1.0, float("nan"), float("inf"), True, "10"):
        with pytest.raises(ValueError, match="evals_per_second must be a finite number > 0"):
            C.gpu_hours(100, bad)
    with pytest.raises(ValueError, match=r"n_examples must be an integer >= 0, got -1"):
        C.relation_testing_evaluations(-1, 2)
    with pytest.raises(ValueError, match=r"n_steps must be an integer >= 2, got 1"):
        C.intervention_evaluations(1, 1)
    with pytest.raises(ValueError, match=r"n_samples must be an integer >= 1, got 2.5"):
        C.heatmap_evaluations(3, 2.5)


def _bench_json(path: Path, rows, **extra) -> Path:
    path.write_text(json.dumps({"benchmark": "sd21_throughput", "device": "Test GPU", "torch": "x", "rows": rows,
                                **extra}), encoding="utf-8")
    return path


def test_read_throughput_picks_the_fastest_row_of_the_dtype(tmp_path):
    p = _bench_json(tmp_path / "t.json", [
        {"dtype": "float32", "batch": 8, "sdpa": True, "compile": False, "evals_per_second": 30.0},
        {"dtype": "float32", "batch": 32, "sdpa": True, "compile": True, "evals_per_second": 45.5},
        {"dtype": "float16", "batch": 64, "sdpa": True, "compile": True, "evals_per_second": 120.0}])
    t = T.read_throughput(p)
    assert t.evals_per_second == 45.5 and "batch 32" in t.source and "torch.compile on" in t.source
    assert T.read_throughput(p, dtype="float16").evals_per_second == 120.0
    with pytest.raises(ValueError, match=r"no measured row of dtype 'bfloat16'; measured dtypes: \['float16', 'float32'\]"):
        T.read_throughput(p, dtype="bfloat16")
    with pytest.raises(ValueError, match="CPU smoke run"):
        T.read_throughput(_bench_json(tmp_path / "s.json", [], smoke=True))
    (tmp_path / "bad.json").write_text("{}", encoding="utf-8")
    with pytest.raises(ValueError, match="not a benchmarks/sd21_throughput.py result"):
        T.read_throughput(tmp_path / "bad.json")
    with pytest.raises(FileNotFoundError, match="no throughput file"):
        T.read_throughput(tmp_path / "missing.json")


def test_markdown_with_hours():
    md = T.plan_markdown(C.paper_plan(), T.Throughput(100.0, "100 evaluations/s on a test"))
    total = [line for line in md.splitlines() if line.startswith("| **all**")][0]
    assert "**52,832,850**" in total and f"**{52_832_850 / 100 / 3600:,.1f}**" in total
    assert "| (15,805,500) |" in md and "GPU-hours at 100 evaluations/s on a test." in md
    # the critical path at 1, 4 and 8 GPUs beside the total
    rows = C.paper_plan()
    assert "critical path, 1 GPU | critical path, 4 GPUs | critical path, 8 GPUs |" in md.splitlines()[0]
    assert total.endswith(" | **52.83 M** | **13.28 M** | **6.70 M** |")
    assert f"{C.critical_path(rows, 8):,} evaluations at 8 GPUs" in md
    assert T.plan_markdown(rows, gpus=(2,)).splitlines()[0].endswith("| critical path, 2 GPUs |")


# ── scripts/cost_plan.py ──────────────────────────────────────────────────────────────────────────────────────

def _run(*args):
    return subprocess.run([sys.executable, str(SCRIPT), *map(str, args)], capture_output=True, text=True, cwd=ROOT)


def test_the_running_page_block_is_current():
    r = _run("--check")
    assert r.returncode == 0, r.stderr


def test_the_readme_says_the_saving_the_plan_computes():
    """The README's front-door figure for the corrected protocol is the generated plan's, not a stale copy."""
    import re

    plan = (ROOT / "docs" / "running.md").read_text(encoding="utf-8")
    readme = " ".join((ROOT / "README.md").read_text(encoding="utf-8").split())
    saving = re.search(r"instead of ([\d,]+) \(([\d.]+)× fewer\)", plan)
    assert saving, "docs/running.md has no 'What a GPU user saves' line"
    faithful = int(saving.group(1).replace(",", ""))
    assert f"the faithful protocol is {faithful / 1e6:.1f} M UNet evaluations" in readme
    assert f"need {saving.group(2)}× fewer for the same accuracy" in readme


def test_the_running_page_says_which_notebooks_shard_and_the_critical_path():
    text = (ROOT / "docs" / "running.md").read_text(encoding="utf-8")
    rows = C.paper_plan()
    m = lambda g: f"{C.critical_path(rows, g) / 1e6:.1f} M"  # noqa: E731
    assert f"{m(1)} UNet evaluations on 1 GPU, {m(4)} on 4 and {m(8)} on 8" in " ".join(text.split())
    assert "02 and 03 (relation testing), 04 (heat maps), 05 (localization), 06 (intervention" in " ".join(text.split())


def test_check_detects_a_stale_block_and_readme_fixes_it(tmp_path):
    f = tmp_path / "README.md"
    f.write_text(f"# x\n\n{T.COST_START}\nold table\n{T.COST_END}\n\ntail\n", encoding="utf-8")
    r = _run("--check", f)
    assert r.returncode == 1 and "out of date" in r.stderr
    assert _run("--readme", f).returncode == 0
    text = f.read_text(encoding="utf-8")
    assert "old table" not in text and "52,832,850" in text and text.endswith("\ntail\n")
    assert _run("--check", f).returncode == 0
    # another throughput makes the same block stale
    p = _bench_json(tmp_path / "t.json", [{"dtype": "float32", "batch": 8, "evals_per_second": 50.0}])
    assert _run("--check", f, "--throughput-json", p).returncode == 1
    assert _run("--readme", f, "--throughput-json", p).returncode == 0
    assert f"**{52_832_850 / 50 / 3600:,.1f}**" in f.read_text(encoding="utf-8")


def test_script_bad_input(tmp_path):
    r = _run("--evals-per-second", "0")
    assert r.returncode != 0 and "--evals-per-second must be a finite number > 0, got 0.0" in r.stderr
    f = tmp_path / "no_markers.md"
    f.write_text("nothing here\n", encoding="utf-8")
    r = _run("--check", f)
    assert r.returncode != 0 and "expected exactly one" in r.stderr
    r = _run("--throughput-json", tmp_path / "missing.json")
    assert r.returncode != 0 and "no throughput file" in r.stderr
    out = _run("--evals-per-second", "36000")
    assert out.returncode == 0 and "| 02_relation_testing | vg-relation" in out.stdout
    assert "**0.4**" in out.stdout  # 52,832,850 / 36,000 / 3600 = 0.41 h
    out = _run("--gpus", "2", "16")
    assert out.returncode == 0 and "critical path, 2 GPUs | critical path, 16 GPUs |" in out.stdout
    r = _run("--gpus", "0")
    assert r.returncode != 0 and "--gpus must be numbers >= 1" in r.stderr


# ── benchmarks/sd21_throughput.py without a GPU ─────────────────────────────────────────────────────────────────

@pytest.fixture(scope="module")
def bench():
    import importlib.util

    spec = importlib.util.spec_from_file_location("sd21_throughput", BENCH)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_benchmark_without_cuda_says_so_and_measures_nothing(bench, tmp_path, capsys):
    if torch.cuda.is_available():
        pytest.skip("a GPU is present: the benchmark would measure")
    out = tmp_path / "t.json"
    assert bench.main(["--out", str(out)]) == 0
    assert "no CUDA GPU present" in capsys.readouterr().out and not out.exists()


def test_benchmark_cpu_smoke_writes_a_json_the_plan_refuses(bench, tmp_path, capsys):
    out = tmp_path / "smoke.json"
    assert bench.main(["--cpu-smoke", "--smoke-width-divisor", "8", "--smoke-sample-size", "16", "--out", str(out)]) == 0
    assert "CPU smoke step: one float32 call, batch 1, 16×16" in capsys.readouterr().out
    data = json.loads(out.read_text(encoding="utf-8"))
    assert data["smoke"] is True and data["benchmark"] == "sd21_throughput" and len(data["rows"]) == 1
    with pytest.raises(ValueError, match="CPU smoke run"):
        T.read_throughput(out)


@pytest.mark.parametrize("args, message", [
    (["--dtypes", "float64"], "['float64'] not in ['bfloat16', 'float16', 'float32']"),
    (["--batches", "8,0"], "--batches must list integers >= 1, got '8,0'"),
    (["--sdpa", "maybe"], "--sdpa: ['maybe'] not in ['off', 'on']"),
    (["--max-minutes", "0"], "--max-minutes and --min-time must be > 0"),
    (["--cpu-smoke", "--smoke-sample-size", "12"], "--smoke-sample-size must be a multiple of 8"),
])
def test_benchmark_bad_arguments(bench, args, message):
    with pytest.raises(SystemExit, match=__import__("re").escape(message)):
        bench.main(args)


# ── the corrected protocol's plan, from measured ratios (issue 27 item 5) ─────────────────────────────────────

RATIOS = ROOT / "benchmarks" / "measured_ratios.json"


def test_corrected_plan_divides_what_each_ratio_measures():
    rows = C.paper_plan()
    ratios = {"adaptive_relation_testing/paper/vg-relation": 3.0, "estimator_efficiency/shapes-tiny/pixel_info_o": 2.0,
              "estimator_efficiency/shapes-tiny/info_o": 4.0}
    plan = C.corrected_plan(rows, ratios)
    got = {(c.row.notebook, c.row.part.split(":")[0]): c for c in plan}
    # worked by hand: the savable part ÷ its ratio, the rest as faithful
    assert got[("02_relation_testing", "vg-relation")].evaluations == 7_181_100 // 3 == 2_393_700
    assert got[("02_relation_testing", "coco-order")].evaluations == 15_006_000  # no ratio measured for it
    assert got[("02_relation_testing", "coco-order")].ratio_key is None
    assert got[("04_mi_cmi_heatmaps", "COCO100-IT + COCO-WL")].evaluations == 85_000 - 68_000 + 34_000
    loc = [c.evaluations for c in plan if c.row.notebook == "05_word_localization"]
    assert loc[0] == 2_424_450 - 6_927 * 200 + 6_927 * 100 == 1_731_750
    assert got[("07_image_level_information", "COCO100-IT + COCO-WL")].evaluations == 156_000 - 136_000 + 34_000
    pid_rows = [c for c in plan if c.row.notebook == "09_pid_two_words"]
    assert [c.evaluations for c in pid_rows] == [10_000, 10_000]  # the draws ÷ 4; generation as faithful
    assert got[("06_prompt_intervention", "COCO100-IT")].evaluations == 1_759_200
    assert C.corrected_total(C.corrected_plan(rows, {})) == C.plan_total(rows)  # nothing measured: faithful
    # the fitted proposal's measurement is preferred to the paper's
    both = C.corrected_plan(rows, {"adaptive_relation_testing/paper/vg-relation": 3.0,
                                   "adaptive_relation_testing/fitted/vg-relation": 2.0})
    assert both[0].ratio_key == "adaptive_relation_testing/fitted/vg-relation" and both[0].evaluations == 3_590_550
    with pytest.raises(ValueError, match="ratio 'estimator_efficiency/shapes-tiny/info_o' must be a finite number"):
        C.corrected_plan(rows, {"estimator_efficiency/shapes-tiny/info_o": 0.0})
    with pytest.raises(ValueError, match="unknown saving 'nope'"):
        C.PlanRow("x", "y", 10, "z", savable=5, saving="nope")


def test_ratios_are_recorded_with_their_provenance_and_read_back(tmp_path):
    f = tmp_path / "ratios.json"
    kw = dict(benchmark="benchmarks/x.py", command="python benchmarks/x.py --n 2", sizes={"n": 2},
              reduced_size=True, machine_line="CPU, test", date="2026-01-02")
    T.record_ratios(f, {"estimator_efficiency/shapes-tiny/info_o": (4.0, "fitted, image-level i^o")}, **kw)
    T.record_ratios(f, {"adaptive_relation_testing/paper/vg-relation": (2.5, "adaptive i^s")},
                    **{**kw, "reduced_size": False})
    got = T.read_ratios(f)
    assert set(got) == {"estimator_efficiency/shapes-tiny/info_o", "adaptive_relation_testing/paper/vg-relation"}
    r = got["estimator_efficiency/shapes-tiny/info_o"]
    assert (r.ratio, r.command, r.date, r.machine, r.reduced_size, r.sizes) == (
        4.0, "python benchmarks/x.py --n 2", "2026-01-02", "CPU, test", True, {"n": 2})
    assert "reduced size" in r.label and not got["adaptive_relation_testing/paper/vg-relation"].reduced_size
    md = T.corrected_markdown(C.paper_plan(), got)
    assert "`estimator_efficiency/shapes-tiny/info_o`, reduced size" in md
    assert "none on a GPU" in md and "2 measured ratios, 1 of them at reduced size" in md
    assert "| 02_relation_testing | vg-relation: 23,937 examples × 2 captions, 100 draws | 7,181,100 | 2,872,440 |" in md
    with pytest.raises(ValueError, match="must be a finite number > 0"):
        T.record_ratios(f, {"k": (float("nan"), "x")}, **kw)
    data = json.loads(f.read_text(encoding="utf-8"))
    del data["ratios"]["estimator_efficiency/shapes-tiny/info_o"]["command"]
    f.write_text(json.dumps(data), encoding="utf-8")
    with pytest.raises(ValueError, match="lacks its value or provenance"):
        T.read_ratios(f)
    (tmp_path / "other.json").write_text('{"ratios": {}}', encoding="utf-8")
    with pytest.raises(ValueError, match="not a measured-ratios file"):
        T.read_ratios(tmp_path / "other.json")
    with pytest.raises(FileNotFoundError, match="the benchmarks write them with --ratios-json"):
        T.read_ratios(tmp_path / "missing.json")


def test_the_committed_ratios_come_from_the_benchmarks():
    """Every ratio in benchmarks/measured_ratios.json names a benchmark that writes such a file and the command
    that ran it; the cost plan's corrected protocol uses them (the running page's block shows both protocols)."""
    ratios = T.read_ratios(RATIOS)
    assert ratios
    for key, r in ratios.items():
        script = ROOT / r.benchmark
        assert script.is_file() and "--ratios-json" in script.read_text(encoding="utf-8"), key
        assert r.command.startswith(f"python {r.benchmark} ") and "--ratios-json" in r.command, key
    text = (ROOT / "docs" / "running.md").read_text(encoding="utf-8")
    assert "**Under the corrected protocol**" in text and "What a GPU user saves, by this plan" in text


def test_script_takes_other_ratios(tmp_path):
    f = tmp_path / "r.json"
    T.record_ratios(f, {"estimator_efficiency/shapes-tiny/info_o": (2.0, "x")}, benchmark="b", command="c",
                    sizes={}, reduced_size=True, machine_line="CPU", date="2026-01-01")
    out = _run("--ratios-json", f)
    assert out.returncode == 0 and "**Under the corrected protocol**" in out.stdout
    assert "| 09_pid_two_words | beyond the paper" in out.stdout and "| 40,000 | 20,000 | 2.00× |" in out.stdout
    r = _run("--ratios-json", tmp_path / "missing.json")
    assert r.returncode != 0 and "no measured ratios" in r.stderr
