"""The package's layers (docs/architecture.md#layer-map), checked against its imports.

The map is the ```layers block of docs/architecture.md: one line per layer, bottom-up, naming the modules and
subpackages in it. Every import of the package (read with ``ast``: module-level and inside functions, relative
and absolute) is an edge between two of its modules. The tests fail when a module imports a module of a higher
layer, when the imports form a circle, or when the map and the package disagree (a module in no layer, a name in
the map that does not exist), so the document cannot go stale.

Imports inside functions follow docs/architecture.md#layers: one defers a heavy optional dependency only, with a
comment saying so (on its line or the line above), and never imports the package's own modules (that would hide a
circle or an upward import from whoever reads the module's top).
"""

from __future__ import annotations

import ast
import io
import re
import sys
import tokenize
from functools import lru_cache
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = "infodecomp"
MAP = ROOT / "docs" / "architecture.md"

@lru_cache(maxsize=None)
def layer_map() -> tuple[tuple[str, tuple[str, ...]], ...]:
    """``((layer name, (module names relative to the package, …)), …)``, bottom-up, from the ```layers block."""
    blocks = re.findall(r"^```layers\n(.*?)^```$", MAP.read_text(), flags=re.M | re.S)
    assert len(blocks) == 1, f"expected one ```layers block in {MAP}, found {len(blocks)}"
    layers = []
    for line in blocks[0].splitlines():
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        name, _, names = line.partition(":")
        assert names.split(), f"layer line {line!r}: expected 'layer name: module module …'"
        layers.append((name.strip(), tuple(names.split())))
    return tuple(layers)


@lru_cache(maxsize=None)
def package_modules() -> dict[str, Path]:
    """``{dotted module name: file}`` of every module of the package (a package by its ``__init__.py``)."""
    out = {}
    for path in sorted((ROOT / PACKAGE).rglob("*.py")):
        parts = path.relative_to(ROOT).with_suffix("").parts
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = path
    return out


def _dotted(entry: str) -> str:
    return PACKAGE if entry == "__init__" else f"{PACKAGE}.{entry}"


def layer_of(module: str) -> tuple[int, str] | None:
    """``(index bottom-up, entry)`` of the longest map entry that is ``module`` or a package above it."""
    best = None
    for index, (_, entries) in enumerate(layer_map()):
        for entry in entries:
            dotted = _dotted(entry)
            covers = module == dotted or (entry != "__init__" and module.startswith(dotted + "."))
            if covers and (best is None or len(dotted) > len(_dotted(best[1]))):
                best = (index, entry)
    return best


@lru_cache(maxsize=None)
def import_edges() -> frozenset[tuple[str, str, int]]:
    """``{(importer, imported, line)}`` between the package's own modules, from every import statement."""
    modules = package_modules()
    edges = set()
    for module, path in modules.items():
        package = module if path.name == "__init__.py" else module.rpartition(".")[0]
        for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                if node.level:
                    base = package.split(".")[:len(package.split(".")) - (node.level - 1)]
                    source = ".".join(base + ([node.module] if node.module else []))
                else:
                    source = node.module or ""
                # `from pkg import name` imports the submodule pkg.name when there is one, else pkg itself
                targets = [f"{source}.{alias.name}" if f"{source}.{alias.name}" in modules else source
                           for alias in node.names]
            else:
                continue
            for target in targets:
                if target == PACKAGE or target.startswith(PACKAGE + "."):
                    # `import infodecomp.a.b` binds the package but runs a.b: the deepest module named counts
                    while target not in modules and "." in target:
                        target = target.rpartition(".")[0]
                    if target != module:
                        edges.add((module, target, node.lineno))
    return frozenset(edges)


def map_problems() -> set[str]:
    """Modules of the package in no layer, and names of the map that are no module of the package."""
    modules = package_modules()
    problems = {f"unlisted: {m}" for m in modules if layer_of(m) is None}
    seen: dict[str, str] = {}
    for name, entries in layer_map():
        for entry in entries:
            if _dotted(entry) not in modules:
                problems.add(f"missing: {entry} (layer {name!r}) is no module or subpackage of {PACKAGE}")
            if entry in seen:
                problems.add(f"twice: {entry} is in layers {seen[entry]!r} and {name!r}")
            seen[entry] = name
    return problems


def upward_imports() -> dict[str, list[str]]:
    """``{"up: importer (entry) imports imported (entry)": ["path:line", …]}`` for imports that run up a layer."""
    out: dict[str, list[str]] = {}
    names = [name for name, _ in layer_map()]
    for importer, imported, line in sorted(import_edges()):
        low, high = layer_of(importer), layer_of(imported)
        if low is None or high is None or high[0] <= low[0]:
            continue
        key = f"up: {importer} ({low[1]}) imports {imported} ({high[1]})"
        where = f"{package_modules()[importer].relative_to(ROOT)}:{line} ({names[low[0]]} -> {names[high[0]]})"
        out.setdefault(key, []).append(where)
    return out


def import_cycles() -> list[list[str]]:
    """The circles of the import graph: each strongly connected component of more than one module (Tarjan)."""
    graph: dict[str, set[str]] = {m: set() for m in package_modules()}
    for importer, imported, _ in import_edges():
        graph[importer].add(imported)
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    cycles = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                cycles.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return cycles



def function_imports(path: Path) -> list[tuple[int, str, bool, bool]]:
    """``[(line, statement, own, commented)]`` for every import statement inside a function of ``path`` (methods
    and nested functions included): ``own`` when it imports a module of the package (relative, or absolute by the
    package's name); ``commented`` when a comment stands on one of its lines or alone on the line above."""
    text = path.read_text()
    lines = text.splitlines()
    comments = {tok.start[0] for tok in tokenize.generate_tokens(io.StringIO(text).readline)
                if tok.type == tokenize.COMMENT}
    found: dict[int, tuple[int, str, bool, bool]] = {}
    for fn in ast.walk(ast.parse(text, filename=str(path))):
        if not isinstance(fn, (ast.FunctionDef, ast.AsyncFunctionDef)):
            continue
        for node in ast.walk(fn):
            if not isinstance(node, (ast.Import, ast.ImportFrom)) or node.lineno in found:
                continue
            if isinstance(node, ast.ImportFrom):
                own = bool(node.level) or (node.module or "").split(".")[0] == PACKAGE
            else:
                own = any(alias.name.split(".")[0] == PACKAGE for alias in node.names)
            above = node.lineno - 1
            commented = (any(n in comments for n in range(node.lineno, node.end_lineno + 1))
                         or (above >= 1 and lines[above - 1].lstrip().startswith("#")))
            found[node.lineno] = (node.lineno, lines[node.lineno - 1].strip(), own, commented)
    return sorted(found.values())


def function_import_problems() -> list[str]:
    """``"path:line: statement (why)"`` for each import inside a function that breaks the rule: one of the package's
    own modules, or any other import without a comment saying what it defers."""
    problems = []
    for path in package_modules().values():
        where = path.relative_to(ROOT)
        for line, statement, own, commented in function_imports(path):
            if own:
                problems.append(f"{where}:{line}: {statement} (the package's own module: import it at the top)")
            elif not commented:
                problems.append(f"{where}:{line}: {statement} (no comment on its line or the line above saying "
                                f"which heavy or optional dependency it defers; else import it at the top)")
    return problems

def test_the_map_lists_every_module_and_only_modules_that_exist():
    problems = map_problems()
    assert not problems, "docs/architecture.md's layer map and the package disagree:\n" + "\n".join(sorted(problems))


def test_no_import_runs_up_a_layer():
    found = upward_imports()
    assert not found, "imports that run up a layer (docs/architecture.md#layer-map):\n" + "\n".join(
        f"{k} at {', '.join(v)}" for k, v in sorted(found.items()))


def test_the_imports_form_no_circle():
    cycles = import_cycles()
    assert not cycles, "import circles (imports inside functions included):\n" + "\n".join(
        " <-> ".join(c) for c in cycles)


def test_the_checker_sees_every_kind_of_import(tmp_path, monkeypatch):
    """The reader finds relative, absolute, `from pkg import submodule` and function-level imports, and the
    checks catch an upward import, a circle and a stale map (on a toy package, not this one)."""
    pkg = tmp_path / PACKAGE
    (pkg / "low").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "low" / "__init__.py").write_text("")
    (pkg / "low" / "a.py").write_text("def f():\n    from ..high import g\n")  # function-level, up a layer
    (pkg / "low" / "b.py").write_text("from . import a\n")  # `from pkg import submodule`
    (pkg / "high.py").write_text("import infodecomp.low.b\n\ndef g():\n    pass\n")  # absolute
    (pkg / "stray.py").write_text("from .low.a import f\n")
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "architecture.md").write_text("```layers\nbottom: __init__ low\ntop: high gone\n```\n")
    for cached in (layer_map, package_modules, import_edges):
        cached.cache_clear()
    monkeypatch.setattr(sys.modules[__name__], "ROOT", tmp_path)
    monkeypatch.setattr(sys.modules[__name__], "MAP", docs / "architecture.md")
    try:
        assert {(a, b) for a, b, _ in import_edges()} == {
            ("infodecomp.low.a", "infodecomp.high"), ("infodecomp.low.b", "infodecomp.low.a"),
            ("infodecomp.high", "infodecomp.low.b"), ("infodecomp.stray", "infodecomp.low.a")}
        assert set(upward_imports()) == {"up: infodecomp.low.a (low) imports infodecomp.high (high)"}
        assert import_cycles() == [["infodecomp.high", "infodecomp.low.a", "infodecomp.low.b"]]
        assert map_problems() == {
            "unlisted: infodecomp.stray",
            "missing: gone (layer 'top') is no module or subpackage of infodecomp"}
    finally:
        for cached in (layer_map, package_modules, import_edges):
            cached.cache_clear()


def test_imports_inside_functions_only_defer_heavy_optional_dependencies():
    problems = function_import_problems()
    assert not problems, ("imports inside functions are for a heavy optional dependency only, with a comment "
                          "saying so (docs/architecture.md#layers):\n" + "\n".join(problems))


def test_the_function_import_rule_catches_a_violation(tmp_path, monkeypatch):
    """On a toy package: the package's own modules imported inside a function (relative, absolute, in a method
    or a nested function) and an uncommented import are caught; a commented deferral and module-level imports
    (also under ``try``) are not."""
    pkg = tmp_path / PACKAGE
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "low.py").write_text("import json\ntry:\n    import yaml\nexcept ImportError:\n    yaml = None\n")
    (pkg / "high.py").write_text(
        "def a():\n"
        "    from .low import json\n"                                # own, relative
        "\n"
        "def b():\n"
        "    import infodecomp.low  # heavy\n"                       # own, absolute: a comment does not excuse it
        "\n"
        "def c():\n"
        "    import csv\n"                                           # no comment
        "    s = '# not a comment'\n"
        "\n"
        "def d():\n"
        "    import torch  # heavy: only when d runs\n"              # fine
        "    # optional: spaCy, only here\n"
        "    import spacy\n"                                         # fine: comment above
        "    from PIL import (Image,\n"
        "                     ImageOps)  # deferred with the rest\n"  # fine: comment on its second line
        "\n"
        "class K:\n"
        "    def m(self):\n"
        "        def inner():\n"
        "            import os\n"                                    # no comment, nested in a method
        "        return inner\n")
    package_modules.cache_clear()
    monkeypatch.setattr(sys.modules[__name__], "ROOT", tmp_path)
    try:
        assert function_imports(pkg / "high.py") == [
            (2, "from .low import json", True, False), (5, "import infodecomp.low  # heavy", True, True),
            (8, "import csv", False, False), (12, "import torch  # heavy: only when d runs", False, True),
            (14, "import spacy", False, True), (15, "from PIL import (Image,", False, True),
            (21, "import os", False, False)]
        assert [p.split(" (")[0] for p in function_import_problems()] == [
            "infodecomp/high.py:2: from .low import json", "infodecomp/high.py:5: import infodecomp.low  # heavy",
            "infodecomp/high.py:8: import csv", "infodecomp/high.py:21: import os"]
    finally:
        package_modules.cache_clear()
