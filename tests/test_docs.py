"""The repository explains itself: every citation of the project's documents resolves, nothing cites a file
outside the repository, the deviation ids B1 … B35 are stable, notebook titles cite the paper's sections as the
README does, the README is a front door whose moved sections each have a page in docs/ that the book shows, and
every generated block lives in the one document that holds it and is current.

Citation syntax (docs/architecture.md#conventions): ``docs/<file>.md#<anchor>`` in code, comments and parameter
comments; in Markdown (the README, docs/, notebook text) a link to that path, e.g. ``[B25](../docs/protocol.md#b25)``.
An anchor is an explicit ``<a id="...">`` of the document or the id of one of its headings (as GitHub and MkDocs
both spell it).
"""

from __future__ import annotations

import json
import re
import subprocess
import unicodedata
from functools import lru_cache
from pathlib import Path
from urllib.parse import unquote

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
N_DEVIATIONS = 35
TEXT_SUFFIXES = {".py", ".md", ".ipynb", ".yml", ".yaml", ".toml", ".sh", ".txt", ".cfg", ".ini", ".json"}
TEXT_NAMES = {"Makefile", "run", ".gitignore"}
# data and weights, not prose: tokenizer vocabularies, model weights, test fixtures, recorded numbers
SKIP_PREFIXES = ("infodecomp/assets/", "tests/fixtures/", "figures/")
KEEP = {"infodecomp/assets/shapes-tiny/README.md"}  # the model card is prose


# ───────────────────────────────────────────── Markdown links ─────────────────────────────────────────────
# (parsed here on their own, independently of scripts/build_book.py, which rewrites them for the book)

_LINK = re.compile(r"!?\[(?:[^\[\]]|\[[^\]]*\])*\]\(\s*(<[^>]*>|[^)\s]+)(?:\s+\"[^\"]*\")?\s*\)")
_HTML_ATTR = re.compile(r"""\b(?:href|src)=["']([^"']*)["']""")
_SCHEME = re.compile(r"^[a-zA-Z][a-zA-Z0-9+.-]*:")


def _prose(text: str) -> list[str]:
    """The parts of Markdown outside fenced code blocks and inline code spans."""
    out, fence = [], None
    for line in text.splitlines():
        marker = re.match(r"\s*(`{3,}|~{3,})", line)
        if fence is not None:
            if marker and marker.group(1)[0] == fence[0] and len(marker.group(1)) >= len(fence):
                fence = None
            continue
        if marker:
            fence = marker.group(1)
            continue
        out.append(re.sub(r"(`+).+?\1", " ", line))
    return out


def markdown_links(text: str) -> list[str]:
    """Every link and image target of Markdown ``text`` (``[t](target)``, ``![a](target)``, ``href=``/``src=``)."""
    targets = []
    for line in _prose(text):
        targets += [m.group(1).strip("<>") for m in _LINK.finditer(line)]
        targets += [m.group(1) for m in _HTML_ATTR.finditer(line)]
    return targets


def is_relative(target: str) -> bool:
    return bool(target) and not target.startswith(("#", "/")) and not _SCHEME.match(target)


@lru_cache(maxsize=1)
def repo_files() -> tuple[str, ...]:
    """Text files of the repository (tracked, or new and not ignored), as repository-relative paths."""
    try:
        out = subprocess.run(["git", "ls-files", "--cached", "--others", "--exclude-standard"], cwd=ROOT,
                             capture_output=True, text=True, check=True).stdout.split("\n")
    except (OSError, subprocess.CalledProcessError):  # not a git checkout: walk the tree
        ignored = {".git", ".venv", "build", "runs", ".cache", "datasets", "__pycache__", ".pytest_cache"}
        out = [str(p.relative_to(ROOT)) for p in ROOT.rglob("*")
               if p.is_file() and not ignored & set(p.relative_to(ROOT).parts)]
    files = []
    for f in sorted(set(out)):
        p = Path(f)
        if not f or not (ROOT / f).is_file():
            continue
        if f not in KEEP and f.startswith(SKIP_PREFIXES):
            continue
        if p.suffix in TEXT_SUFFIXES or p.name in TEXT_NAMES:
            files.append(f)
    return tuple(files)


def prose_of(path: str) -> str:
    """The text of a file in which citations are looked for (a notebook: all its cells' sources)."""
    text = (ROOT / path).read_text(encoding="utf-8")
    if path.endswith(".ipynb"):
        nb = json.loads(text)
        return "\n".join("".join(c["source"]) if isinstance(c["source"], list) else c["source"] for c in nb["cells"])
    return text


def markdown_sources() -> list[tuple[str, str]]:
    """``(path, markdown)`` of every Markdown document and every notebook's Markdown cells."""
    out = []
    for f in repo_files():
        if f.endswith(".md"):
            out.append((f, (ROOT / f).read_text(encoding="utf-8")))
        elif f.endswith(".ipynb"):
            nb = json.loads((ROOT / f).read_text(encoding="utf-8"))
            md = [("".join(c["source"]) if isinstance(c["source"], list) else c["source"])
                  for c in nb["cells"] if c["cell_type"] == "markdown"]
            out.append((f, "\n\n".join(md)))
    return out


# ────────────────────────────────────────────── anchors ──────────────────────────────────────────────

def _heading_text(line: str) -> str:
    text = re.sub(r"\s*\{[^}]*\}\s*$", "", line.lstrip("#").strip())
    text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", text)  # links → their text
    return re.sub(r"[`*_]", "", text)


def github_slug(heading: str) -> str:
    return re.sub(r" ", "-", re.sub(r"[^\w\- ]", "", heading.strip().lower()))


def mkdocs_slug(heading: str) -> str:
    value = unicodedata.normalize("NFKD", heading).encode("ascii", "ignore").decode("ascii")
    value = re.sub(r"[^\w\s-]", "", value).strip().lower()
    return re.sub(r"[-\s]+", "-", value)


def anchors(markdown: str) -> set[str]:
    """Ids a link into this document may use: explicit ``<a id>``/``<a name>`` ids and heading ids on which GitHub
    and MkDocs agree."""
    ids = set(re.findall(r"""<a\s+(?:id|name)=["']([^"']+)["']""", markdown))
    fence = False
    for line in markdown.splitlines():
        if re.match(r"\s*(```|~~~)", line):
            fence = not fence
        elif not fence and re.match(r"#{1,6}\s", line):
            text = _heading_text(line)
            if github_slug(text) == mkdocs_slug(text):
                ids.add(mkdocs_slug(text))
    return ids


@lru_cache(maxsize=None)
def anchors_of(path: str) -> frozenset[str]:
    p = ROOT / path
    if p.suffix == ".md":
        return frozenset(anchors(p.read_text(encoding="utf-8")))
    if p.suffix == ".ipynb":
        return frozenset(anchors(prose_of(path)))
    return frozenset()


CITATION = re.compile(r"(?<![\w/.-])(?:\.\./)*docs/([A-Za-z0-9_.-]+\.md)(?:#([A-Za-z0-9_-]+))?")


def test_the_documents_exist():
    for name in ("README.md", "protocol.md", "architecture.md", "results.md", "models.md", "running.md", "probe.md"):
        assert (DOCS / name).is_file(), f"docs/{name} is missing"


def test_no_citation_points_outside_the_repository():
    """The protocol, the design notes and the shared notes of the project's workspace are not in the repository:
    nothing may cite them (cite docs/protocol.md#… and docs/architecture.md#… instead), and "§" is not used."""
    forbidden = {
        "PROTOCOL.md or a PROTOCOL § / B-id": re.compile(r"PROTOCOL\.md|PROTOCOL\s*§|PROTOCOL\s+B\d"),
        "DESIGN.md": re.compile(r"\bDESIGN\.md\b|\bDESIGN notes\b"),
        "COMMON.md": re.compile(r"\bCOMMON\.md\b"),
        "a path outside the repository": re.compile(r"\.\./shared\b"),
        "the section sign (cite 'Sec. 3.1' for the paper, docs/…#anchor for this project)": re.compile("§"),
    }
    bad = []
    for f in repo_files():
        if f == "tests/test_docs.py":
            continue
        for lineno, line in enumerate(prose_of(f).splitlines(), 1):
            for what, pattern in forbidden.items():
                if pattern.search(line):
                    bad.append(f"{f}:{lineno}: cites {what}: {line.strip()[:120]}")
    assert not bad, "\n".join(bad)


def test_citations_of_the_documents_resolve():
    """Every ``docs/<file>.md#<anchor>`` anywhere in the repository names an existing document and anchor."""
    bad, n = [], 0
    for f in repo_files():
        for lineno, line in enumerate(prose_of(f).splitlines(), 1):
            for m in CITATION.finditer(line):
                n += 1
                doc, anchor = m.group(1), m.group(2)
                if not (DOCS / doc).is_file():
                    bad.append(f"{f}:{lineno}: docs/{doc} does not exist")
                elif anchor and anchor not in anchors_of(f"docs/{doc}"):
                    bad.append(f"{f}:{lineno}: docs/{doc} has no anchor #{anchor}")
    assert not bad, "\n".join(bad)
    assert n > 100, f"only {n} citations found: is the pattern still right?"


def test_markdown_links_resolve():
    """Every relative link and image in the Markdown documents and the notebooks' text points at an existing file
    of the repository, and an anchor into a document (or the same document) exists."""
    bad = []
    for f, md in markdown_sources():
        here = Path(f).parent
        for target in markdown_links(md):
            if target.startswith("#"):
                if target[1:] not in anchors(md):
                    bad.append(f"{f}: no anchor {target} in the same document")
                continue
            if not is_relative(target):
                continue
            path, _, frag = target.partition("#")
            path, frag = unquote(path), "#" + frag if frag else ""
            resolved = (ROOT / here / path).resolve()
            if not resolved.is_relative_to(ROOT):
                bad.append(f"{f}: {target} points outside the repository")
            elif not resolved.exists():
                bad.append(f"{f}: {target} does not exist")
            elif frag and resolved.suffix in (".md", ".ipynb") and frag[1:] not in anchors_of(
                    str(resolved.relative_to(ROOT))):
                bad.append(f"{f}: {target}: no such anchor")
    assert not bad, "\n".join(bad)


def test_deviation_ids_are_stable():
    """docs/protocol.md defines B1 … B35, each once, in order, each with its entry right after its anchor."""
    text = (DOCS / "protocol.md").read_text(encoding="utf-8")
    ids = re.findall(r'<a id="(b\d+)"></a>', text)
    assert ids == [f"b{i}" for i in range(1, N_DEVIATIONS + 1)], ids
    for i in range(1, N_DEVIATIONS + 1):
        assert re.search(rf'<a id="b{i}"></a>\s*\n\s*\*\*B{i} \((S|M|m|S/M|S for users|M, from DAAM)\)\.', text), \
            f"B{i}: its anchor must be followed by its entry '**B{i} (severity). …**'"


def test_deviations_are_cited_with_the_syntax():
    """A deviation id outside docs/protocol.md is written as ``docs/protocol.md#b25`` (code) or as a Markdown link
    ``[B25](../docs/protocol.md#b25)``, never bare, so a reader can follow it."""
    bare = re.compile(r"(?<![#\w])B(\d{1,2})\b")
    bad = []
    for f in repo_files():
        if f in ("docs/protocol.md", "tests/test_docs.py"):
            continue
        for lineno, line in enumerate(prose_of(f).splitlines(), 1):
            for m in bare.finditer(line):
                linked = re.match(rf"\]\((?:\.\./)*(?:docs/)?protocol\.md#b{m.group(1)}\)", line[m.end():])
                if not (line[m.start() - 1:m.start()] == "[" and linked):
                    bad.append(f"{f}:{lineno}: bare deviation id B{m.group(1)}: {line.strip()[:120]}")
    assert not bad, "\n".join(bad)


# ───────────────────────────────────────── the paper's numbering ─────────────────────────────────────────

_NUM = r"(?:[A-Z]\.)?\d+(?:\.\d+)?"  # 3, 3.1, C.1
_REF = re.compile(rf"(Secs?\.|Tables?|Figs?\.|Apps?\.|Eqs?\.)\s*({_NUM}(?:\s*(?:,|and|–)\s*{_NUM})*)")
_KIND = {"Sec.": "Sec", "Secs.": "Sec", "Table": "Table", "Tables": "Table", "Fig.": "Fig", "Figs.": "Fig",
         "App.": "App", "Apps.": "App", "Eq.": "Eq", "Eqs.": "Eq"}


def paper_refs(text: str) -> set[str]:
    """``"Secs. 3.2–3.3, Figs. 1–3, Table 4"`` → {"Sec 3.2", "Sec 3.3", "Fig 1", "Fig 2", "Fig 3", "Table 4"}."""
    refs = set()
    for m in _REF.finditer(text):
        kind = _KIND[m.group(1)]
        for part in re.split(r"\s*(?:,|and)\s*", m.group(2)):
            ends = [e.strip() for e in part.split("–")]
            if len(ends) == 2 and ends[0].isdigit() and ends[1].isdigit():
                refs |= {f"{kind} {k}" for k in range(int(ends[0]), int(ends[1]) + 1)}
            else:
                refs |= {f"{kind} {e}" for e in ends if e}
    return refs


def readme_notebook_table() -> dict[str, str]:
    """``{notebook file: the paper column of the README's notebook table}``."""
    rows = {}
    for line in (ROOT / "README.md").read_text(encoding="utf-8").splitlines():
        m = re.match(r"\|\s*`(\d\d_[\w-]+\.ipynb)`\s*\|([^|]*)\|", line)
        if m:
            rows[m.group(1)] = m.group(2).strip()
    return rows


# The paper's numbering (arXiv:2310.07972): Sec. 2 the method; Sec. 3.1–3.3 the experiments; App. C.1, C.2, D.1.
PAPER_SECTIONS = {"Sec 2", "Sec 3", "Sec 3.1", "Sec 3.2", "Sec 3.3", "App C.1", "App C.2", "App C.5", "App D.1"}


def test_readme_notebook_table_lists_every_notebook():
    table = readme_notebook_table()
    notebooks = sorted(p.name for p in (ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))
    missing = [n for n in notebooks if n not in table]
    assert not missing, f"the README's notebook table lacks {missing}"


@pytest.mark.parametrize("path", sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb")), ids=lambda p: p.name)
def test_notebook_title_cites_the_papers_sections_as_the_readme(path):
    """The title's "(paper …)" names the same sections, tables, figures and appendices as the README's notebook
    table (the part before its colon), in the paper's numbering."""
    table = readme_notebook_table()
    if path.name not in table:
        pytest.skip(f"{path.name} is not in the README's notebook table (test_readme_notebook_table_lists_…)")
    nb = json.loads(path.read_text(encoding="utf-8"))
    title = "".join(nb["cells"][0]["source"]).splitlines()[0]
    if table[path.name].startswith("**Beyond the paper**"):  # an extension: said so in the title, cites nothing
        assert "Beyond the paper" in title and "(paper" not in title, title
        return
    m = re.search(r"\(paper ([^)]*)\)\s*$", title)
    assert m, f"the title must end with '(paper Sec. …)': {title!r}"
    in_title = paper_refs(m.group(1))
    in_readme = paper_refs(table[path.name].split(":")[0])
    assert in_title, f"no section, table or figure in the title {title!r}"
    assert in_title == in_readme, f"title {sorted(in_title)} vs README {sorted(in_readme)}"
    sections = {r for r in in_title if r.startswith(("Sec", "App"))}
    assert sections <= PAPER_SECTIONS, f"not a section of the paper: {sorted(sections - PAPER_SECTIONS)}"


def test_paper_refs_parser():
    assert paper_refs("Secs. 3.2–3.3, Figs. 1–3, interactively") == {"Sec 3.2", "Sec 3.3", "Fig 1", "Fig 2", "Fig 3"}
    assert paper_refs("Sec. 3.3, Figs. 1 and 3, Table 4") == {"Sec 3.3", "Fig 1", "Fig 3", "Table 4"}
    assert paper_refs("App. C.1, C.2") == {"App C.1", "App C.2"}
    assert paper_refs("Sec. 3.1, Table 2, App. D.1") == {"Sec 3.1", "Table 2", "App D.1"}


# ───────────────────────────────────────────── generated blocks ─────────────────────────────────────────────

def _block(text: str, start: str, end: str) -> str:
    assert text.count(start) == 1 and text.count(end) == 1, f"need exactly one {start} … {end}"
    return text[text.index(start) + len(start):text.index(end)]


def _script_check(script: str) -> subprocess.CompletedProcess:
    import sys

    return subprocess.run([sys.executable, str(ROOT / "scripts" / script), "--check"], cwd=ROOT, capture_output=True,
                          text=True)


def test_the_results_live_only_on_the_results_page():
    """docs/results.md holds the generated results block, and it is what scripts/update_readme_results.py renders
    from figures/<model>/*.json now; the README does not repeat it (it links there). docs/pid.md holds notebook
    09's table, rendered and checked by the same script. Both hold a claims block for the claims generator, and it
    is current."""
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    results = (DOCS / "results.md").read_text(encoding="utf-8")
    marks = ("<!-- results:start -->", "<!-- results:end -->")
    _block(results, *marks)
    _block((DOCS / "pid.md").read_text(encoding="utf-8"), "<!-- pid-table:start -->", "<!-- pid-table:end -->")
    assert not any(m in readme for m in marks), "the results block lives only in docs/results.md"
    assert "docs/results.md" in markdown_links(readme) or any(
        t.startswith("docs/results.md") for t in markdown_links(readme)), "the README links to the results"
    r = _script_check("update_readme_results.py")
    assert r.returncode == 0, ("docs/results.md or docs/pid.md is out of date: run python "
                               f"scripts/update_readme_results.py\n{r.stderr}")
    for text in (readme, results):
        _block(text, "<!-- claims-table:start -->", "<!-- claims-table:end -->")
    r = _script_check("update_claims.py")
    assert r.returncode == 0, f"a claims table is out of date: run python scripts/update_claims.py\n{r.stderr}"


def test_the_cost_plan_lives_on_the_running_page():
    """The cost-plan block is in docs/running.md only, and scripts/cost_plan.py --check (which checks that page by
    default) finds it current."""
    running = (DOCS / "running.md").read_text(encoding="utf-8")
    _block(running, "<!-- cost-plan:start -->", "<!-- cost-plan:end -->")
    for f, md in markdown_sources():
        if f != "docs/running.md":
            assert "<!-- cost-plan:start -->" not in md, f"{f} repeats the cost-plan block"
    r = _script_check("cost_plan.py")
    assert r.returncode == 0, r.stderr


# ──────────────────────────────────────────── the front door ────────────────────────────────────────────

README_MAX_LINES = 250
#: The README's sections that moved, and the page of docs/ that holds each now (heading text → document).
MOVED = {
    "Models": "models.md", "Model families: SD 1.x, SDXL, SD3, Flux": "models.md", "Precision": "models.md",
    "Data": "running.md", "Long runs: resuming and sharding": "running.md",
    "What the paper costs at full scale": "running.md", "Adaptive relation testing": "running.md",
    "The paper at full scale on a GPU runner": "running.md", "The SD 2.1-shaped dry run (CI)": "running.md",
    "Benchmarks": "running.md", "The interactive probe": "probe.md", "The read-along book": "README.md",
    "Recorded numbers, by notebook": "results.md", "The repository": "architecture.md",
}


def _headings(markdown: str) -> list[str]:
    return [_heading_text(line) for line in _prose(markdown) if re.match(r"#{1,6}\s", line)]


def test_the_readme_is_a_front_door():
    """At most 250 lines: what this is, the two commands, a Python example, the notebook table, the claims table,
    and links to every document; no Layout section (docs/architecture.md describes the layout, once)."""
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    assert len(text.splitlines()) <= README_MAX_LINES, f"README.md has {len(text.splitlines())} lines"
    headings = _headings(text)
    for h in ("Two commands", "Use it from Python", "Notebooks", "What the embedded model shows"):
        assert h in headings, f"the README lacks its section {h!r}"
    assert "Layout" not in headings and "Results" not in headings
    assert "make reproduce" in text and "make test" in text
    linked = {t.partition("#")[0] for t in markdown_links(text)}
    pages = sorted(p.name for p in DOCS.glob("*.md"))
    missing = [p for p in pages if f"docs/{p}" not in linked]
    assert not missing, f"the README does not link to {missing}"


def test_every_moved_section_has_a_home_that_the_book_shows():
    """Each section that left the README is a heading of its page in docs/, and scripts/build_book.py puts every
    page of docs/ in the book's navigation (its reading order names each of them)."""
    for heading, page in MOVED.items():
        assert heading in _headings((DOCS / page).read_text(encoding="utf-8")), f"docs/{page} lacks {heading!r}"
    book = (ROOT / "scripts" / "build_book.py").read_text(encoding="utf-8")
    order = re.search(r"^DOCUMENTS = \{(.*?)\}", book, re.M | re.S)
    assert order, "scripts/build_book.py names the documents' reading order in DOCUMENTS"
    listed = set(re.findall(r'"([\w-]+\.md)":', order.group(1)))
    pages = {p.name for p in DOCS.glob("*.md")} - {"README.md"}  # docs/README.md is the book's home page
    assert pages <= listed, f"not in the book's navigation: {sorted(pages - listed)}"


def test_the_layer_map_has_its_place_in_the_architecture():
    """docs/architecture.md holds one machine-readable layer-map block (filled and checked against the package's
    imports by the layering test) and describes the layout; the README has no copy of it."""
    text = (DOCS / "architecture.md").read_text(encoding="utf-8")
    _block(text, "<!-- layer-map:begin -->", "<!-- layer-map:end -->")
    for name in ("layout", "layers", "modules"):
        assert name in anchors(text), f"docs/architecture.md has no #{name}"
    assert "infodecomp/      the package" not in (ROOT / "README.md").read_text(encoding="utf-8")
