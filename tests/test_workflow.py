"""The GPU runner's workflow (.github/workflows/paper-gpu.yml): valid against GitHub's workflow schema (linted by
check-jsonschema, from the dev extra; skipped, saying so, where it is not installed), and shaped as the README
says: a manual trigger with model id, revision and subset, a self-hosted GPU runner, the CUDA build, caches of
data and weights, checksummed downloads, the paper preset through a Makefile target that exists, and the figures
uploaded as an artifact."""

from __future__ import annotations

import importlib.util
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
WORKFLOW = ROOT / ".github" / "workflows" / "paper-gpu.yml"


def linter() -> list[str] | None:
    """The check-jsonschema command (installed in this Python, or on PATH), or None."""
    if importlib.util.find_spec("check_jsonschema") is not None:
        return [sys.executable, "-m", "check_jsonschema"]
    exe = shutil.which("check-jsonschema")
    return [exe] if exe else None


def lint(path: Path) -> subprocess.CompletedProcess:
    cmd = linter()
    if cmd is None:
        pytest.skip("check-jsonschema is not installed (it is in the dev extra: pip install -e '.[dev]')")
    return subprocess.run([*cmd, "--builtin-schema", "vendor.github-workflows", str(path)], capture_output=True,
                          text=True, timeout=120)


@pytest.fixture(scope="module")
def workflow() -> dict:
    data = yaml.safe_load(WORKFLOW.read_text(encoding="utf-8"))
    # YAML 1.1 reads the key `on` as True
    data["on"] = data.pop(True, data.get("on"))
    return data


def steps(workflow: dict) -> list[dict]:
    (job,) = workflow["jobs"].values()
    return job["steps"]


def uses(workflow: dict, action: str) -> list[dict]:
    return [s for s in steps(workflow) if s.get("uses", "").split("@")[0] == action]


def makefile_targets() -> set[str]:
    text = (ROOT / "Makefile").read_text(encoding="utf-8")
    return set(re.findall(r"^([A-Za-z][\w.-]*)\s*:(?!=)", text, re.M))


def test_every_workflow_passes_the_schema_lint():
    for path in sorted((ROOT / ".github" / "workflows").glob("*.y*ml")):
        out = lint(path)
        assert out.returncode == 0, f"{path.name}:\n{out.stdout}\n{out.stderr}"


def test_the_lint_rejects_a_broken_workflow(tmp_path):
    """The lint is not a no-op: a job without runs-on and a step with an unknown key fail it."""
    broken = yaml.safe_load(WORKFLOW.read_text(encoding="utf-8"))
    broken["on"] = broken.pop(True)  # dumped back as the key `on`, not `true`
    intact = tmp_path / "intact.yml"
    intact.write_text(yaml.safe_dump(broken), encoding="utf-8")
    assert lint(intact).returncode == 0, "the round trip through PyYAML alone must still pass"
    (job,) = broken["jobs"].values()
    del job["runs-on"]
    job["steps"][0]["usees"] = "actions/checkout@v4"
    path = tmp_path / "broken.yml"
    path.write_text(yaml.safe_dump(broken), encoding="utf-8")
    out = lint(path)
    assert out.returncode != 0, out.stdout


def test_manual_trigger_takes_model_revision_and_subset(workflow):
    inputs = workflow["on"]["workflow_dispatch"]["inputs"]
    assert set(inputs) == {"model_id", "revision", "subset"}
    assert inputs["model_id"]["required"] is True and "/" in inputs["model_id"]["default"]
    assert all(inputs[k]["type"] == "string" for k in inputs)
    assert set(workflow["on"]) == {"workflow_dispatch"}, "a paper-scale run is started by hand only"


def test_runs_on_a_self_hosted_gpu_runner(workflow):
    (job,) = workflow["jobs"].values()
    assert job["runs-on"] == ["self-hosted", "gpu"]


def test_installs_the_cuda_build_and_checks_it(workflow):
    run = "\n".join(s.get("run", "") for s in steps(workflow))
    assert "make TORCH_SPEC=torch install" in run
    assert "torch.cuda.is_available()" in run


def test_caches_data_and_weights(workflow):
    paths = [s["with"]["path"] for s in uses(workflow, "actions/cache")]
    assert any("datasets" in p.split() for p in paths), paths
    assert any("weights" in p.split() and ".cache/huggingface" in p.split() for p in paths), paths
    assert workflow["jobs"]["paper"]["env"]["HF_HOME"].endswith(".cache/huggingface")


def test_downloads_with_verification_of_groups_that_exist(workflow):
    from infodecomp.data.download import GROUPS, MANIFEST

    (step,) = [s for s in steps(workflow) if "infodecomp.data.download" in s.get("run", "")]
    assert "--verify" in step["run"]
    named = set(re.findall(r'groups="\$groups ([^"]+)"', step["run"]))
    names = {n for group in named for n in group.split()}
    assert names == {"aro", "vg-relation", "vg-attribution", "coco"}
    assert names <= set(GROUPS) | set(MANIFEST), names - set(GROUPS) - set(MANIFEST)
    # every notebook that reads real data is mapped to its data
    cases = dict(re.findall(r"^\s*([\d|]+)\) groups=\"\$groups ([^\"]+)\"", step["run"], re.M))
    numbers = {n for k in cases for n in k.split("|")}
    assert numbers == {"02", "03", "04", "05", "06", "07"}


def test_weights_are_fetched_at_the_revision(workflow):
    run = "\n".join(s.get("run", "") for s in steps(workflow))
    assert 'scripts/fetch_weights.py "$MODEL_ID"' in run and '--revision "$REVISION"' in run
    assert (ROOT / "scripts" / "fetch_weights.py").is_file()


def test_runs_the_preset_through_a_makefile_target(workflow):
    runs = [s["run"] for s in steps(workflow) if "reproduce-paper" in s.get("run", "")]
    assert len(runs) == 1
    m = re.search(r"\bmake\b(.*)", runs[0])
    words = m.group(1).split()
    targets = [w for w in words if "=" not in w]
    assert targets == ["reproduce-paper"], targets
    assert set(targets) <= makefile_targets(), f"{targets} not in the Makefile's targets"
    assert {'MODEL="$MODEL_ID"', 'REVISION="$REVISION"', 'SUBSET="$SUBSET"'} <= set(words), words
    env = workflow["jobs"]["paper"]["env"]
    assert env["MODEL_ID"] == "${{ inputs.model_id }}" and env["REVISION"] == "${{ inputs.revision }}"
    assert env["SUBSET"] == "${{ inputs.subset }}"


def test_the_makefile_target_runs_the_paper_preset():
    text = (ROOT / "Makefile").read_text(encoding="utf-8")
    assert "reproduce-paper" in makefile_targets()
    body = text.split("\nreproduce-paper:", 1)[1].split("\n\n", 1)[0]
    assert "scripts/run_notebooks.py $(PAPER_ARGS)" in body and "accelerate launch" in body
    args = re.search(r"^PAPER_ARGS = (.*)$", text, re.M).group(1)
    assert "--paper" in args and "$(MODEL)" in args and "$(REVISION)" in args and "$(SUBSET)" in args


def test_uploads_figures_and_tables(workflow):
    (up,) = uses(workflow, "actions/upload-artifact")
    paths = up["with"]["path"].split()
    assert "figures/" in paths and "build/paper/notebooks/" in paths
    assert up.get("if") == "always()", "a failed run still uploads what it made"


def test_every_sharded_notebook_runs_under_accelerate_on_all_the_runners_gpus(workflow):
    """Issue 30: the workflow passes the runner's GPU count to make, whose sharded phase launches every run of every
    notebook of run_notebooks.py's SHARDED (the one list) under accelerate before the plain run."""
    (run,) = [s["run"] for s in steps(workflow) if "reproduce-paper" in s.get("run", "")]
    assert "nvidia-smi -L" in run and 'NUM_GPUS="$gpus"' in run.split("reproduce-paper", 1)[1]
    text = (ROOT / "Makefile").read_text(encoding="utf-8")
    body = text.split("\nreproduce-paper:", 1)[1].split("\n\n", 1)[0]
    assert "for n in $(SHARDED_NOTEBOOKS)" in body and "--list-variants" in body
    assert "accelerate launch --multi_gpu --num_processes $(NUM_GPUS)" in body and "--variant $$v" in body
    assert body.index("accelerate launch") < body.rindex("scripts/run_notebooks.py $(PAPER_ARGS)")
