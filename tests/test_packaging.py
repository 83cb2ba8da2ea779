"""The house: environment.yml agrees with pyproject.toml, notebooks follow the notebook conventions, and the
repository's tooling (tools/, scripts/) imports normally and only the standard library."""

import json
import re
import tomllib
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))


def _norm(req: str) -> str:
    """'Pillow>=10' -> 'pillow>=10' (name normalised as PEP 503, specifier kept)."""
    m = re.match(r"^\s*([A-Za-z0-9_.\-]+)\s*(.*)$", req)
    assert m, f"cannot parse requirement {req!r}"
    return re.sub(r"[-_.]+", "-", m.group(1)).lower() + m.group(2).replace(" ", "")


def test_environment_yml_lists_the_same_dependencies_as_pyproject():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    declared = {_norm(r) for r in project["dependencies"]}
    for extra in project["optional-dependencies"].values():
        declared |= {_norm(r) for r in extra}
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    pip_section = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict) and "pip" in d)
    listed = {_norm(r) for r in pip_section if not r.startswith("-e")}
    assert listed == declared, f"only in pyproject: {declared - listed}; only in environment.yml: {listed - declared}"


def test_ci_parameters_name_existing_notebooks():
    params = yaml.safe_load((ROOT / "notebooks" / "ci_parameters.yml").read_text()) or {}
    stems = {p.stem for p in NOTEBOOKS}
    assert set(params) <= stems, f"ci_parameters.yml names notebooks that do not exist: {set(params) - stems}"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_conventions(path):
    nb = json.loads(path.read_text())
    assert nb["metadata"].get("kernelspec", {}).get("name"), "papermill needs kernelspec metadata"
    code = [c for c in nb["cells"] if c["cell_type"] == "code"]
    assert all(not c.get("outputs") and c.get("execution_count") is None for c in code), "commit without outputs"
    tagged = [c for c in code if "parameters" in c.get("metadata", {}).get("tags", [])]
    assert len(tagged) == 1, f"exactly one cell tagged 'parameters', found {len(tagged)}"
    for line in "".join(tagged[0]["source"]).splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            assert re.match(r"^[A-Z][A-Z0-9_]* = .+#", line), f"parameters are UPPER_CASE = value  # comment: {line!r}"
    for c in code:
        src = "".join(c["source"])
        assert not re.search(r"^\s*(def|class)\s", src, re.M), "notebooks hold no def or class (logic lives in infodecomp)"
    first = "".join(nb["cells"][0]["source"])
    assert nb["cells"][0]["cell_type"] == "markdown" and first.startswith("#"), "first cell: a title naming the paper section"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_output_folders_follow_one_convention(path):
    """Every notebook takes OUT_DIR (figures, tables, recorded numbers: OUT_DIR/<model>/) and STORE_DIR (result
    stores: STORE_DIR/<model>/<experiment>/) with the same defaults, so scripts/run_notebooks.py --out-dir /
    --store-dir (and CI's --small) redirect every notebook at once (docs/architecture.md#outputs)."""
    nb = json.loads(path.read_text())
    params = "".join(next(c for c in nb["cells"] if "parameters" in c.get("metadata", {}).get("tags", []))["source"])
    assert re.search(r'^OUT_DIR = "figures"  #', params, re.M), "parameters need OUT_DIR = \"figures\"  # …"
    assert re.search(r'^STORE_DIR = "runs"  #', params, re.M), "parameters need STORE_DIR = \"runs\"  # …"
    code = "\n".join("".join(c["source"]) for c in nb["cells"] if c["cell_type"] == "code")
    assert "OUT_DIR}/.." not in code and "Path(OUT_DIR).parent" not in code, "stores go under STORE_DIR, not beside OUT_DIR"


#: The longest source line of a notebook: the book shows cells in a column of about 100 characters.
LINE_LIMIT = 100


def _line_limit_cases():
    """Every notebook (a notebook still being rewrapped would be marked here as a strict expected failure)."""
    return list(NOTEBOOKS)


@pytest.mark.parametrize("path", _line_limit_cases(), ids=lambda p: p.name)
def test_notebook_lines_fit_the_books_column(path):
    """No source line (code, parameter comments, Markdown) over LINE_LIMIT characters: a long parameter comment
    goes on indented comment lines under its first part, a long call breaks inside its brackets."""
    nb = json.loads(path.read_text())
    long = [(i, len(line)) for i, c in enumerate(nb["cells"]) for line in "".join(c["source"]).splitlines()
            if len(line) > LINE_LIMIT]
    assert not long, f"(cell, length) of the lines over {LINE_LIMIT} characters: {long}"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebooks_leave_dtypes_and_store_names_to_the_package(path):
    """DTYPE goes to load_model as the string it is (load_model reads "bf16", "float16", …; getattr(torch, DTYPE)
    fails on the short names), and the experiment names its result store: STORE_DIR is passed as store_root=,
    never joined into a path by the notebook (f-string, Path or os.path)."""
    nb = json.loads(path.read_text())
    code = ["".join(c["source"]) for c in nb["cells"]
            if c["cell_type"] == "code" and "parameters" not in c.get("metadata", {}).get("tags", [])]
    for src in code:
        assert "getattr(torch" not in src, "pass DTYPE to load_model as a string"
        assert "STORE_DIR" not in src.replace("store_root=STORE_DIR", ""), \
            f"STORE_DIR only as store_root=STORE_DIR (the experiment names the store): {src[:200]!r}"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_papermill_reads_every_parameter(path):
    """papermill parses each parameter line (a second "=" in a comment makes it skip the line with a warning)."""
    translators = pytest.importorskip("papermill.translators")
    import nbformat

    nb = nbformat.read(str(path), as_version=4)
    cell = next(c for c in nb.cells if "parameters" in c.metadata.get("tags", []))
    names = [p.name for p in translators.PythonTranslator.inspect(cell)]
    assigned = re.findall(r"^([A-Z][A-Z0-9_]*) = ", cell.source, re.M)
    assert names == assigned, f"papermill reads {names}, the cell assigns {assigned}"


# ───────────────────────────────────── tools/ and the scripts that use it ─────────────────────────────────────

#: The scripts that write the README's and docs/'s generated blocks: they must run without torch.
DOC_SCRIPTS = ("scripts/update_readme_results.py", "scripts/update_claims.py", "scripts/cost_plan.py")


def test_tools_and_the_document_scripts_import_only_the_standard_library():
    """tools/ (the block writers, the claims table, the cost-plan table) and the scripts that use it import the
    standard library, tools and the package's standard-library modules, nothing else (no torch, numpy, yaml)."""
    import subprocess
    import sys

    probe = (
        "import runpy, sys\n"
        "before = set(sys.modules)\n"
        "import tools, tools.markers, tools.numbers, tools.claims, tools.cost_plan, tools.pid_table\n"
        f"for path in {list(DOC_SCRIPTS)!r}:\n"
        "    runpy.run_path(path, run_name='not_main')\n"
        "new = {m.split('.')[0] for m in set(sys.modules) - before}\n"
        "print(' '.join(sorted(new - set(sys.stdlib_module_names) - {'tools', 'infodecomp'})))\n"
    )
    r = subprocess.run([sys.executable, "-c", probe], cwd=ROOT, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == [], f"not standard library: {r.stdout.split()}"
    assert tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"]["find"][
        "include"] == ["infodecomp*", "tools*"], "the install provides tools beside the package"


def test_scripts_and_benchmarks_import_normally():
    """No script or benchmark edits sys.path or loads a module by file path: the install provides infodecomp and
    tools, and a script's own folder is on sys.path when it runs."""
    bad = []
    for path in sorted((ROOT / "scripts").glob("*.py")) + sorted((ROOT / "benchmarks").glob("*.py")):
        for lineno, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            if re.search(r"sys\.path\.(insert|append)|sys\.path\s*(\[|\+?=)|spec_from_file_location", line):
                bad.append(f"{path.relative_to(ROOT)}:{lineno}: {line.strip()}")
    assert not bad, "\n".join(bad)
