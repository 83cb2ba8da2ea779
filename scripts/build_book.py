#!/usr/bin/env python
"""Build the read-along book: a static site of the executed notebooks with the documents of docs/ beside them.

    python scripts/build_book.py                                   # build/notebooks/ -> build/book/
    python scripts/build_book.py --notebooks build/ci/notebooks --out build/ci/book --banner "CI smoke run"
    python scripts/build_book.py --stage-only                      # stage build/book-src/ without building

What it does (docs/architecture.md#book):

1. **Stages** the site's sources in ``build/book-src/``: ``docs/README.md`` as the home page ``index.md`` (with a
   generated list of the notebooks appended), every other ``docs/*.md``, the project ``README.md`` as
   ``overview.md``, and every ``notebooks/*.ipynb`` of the repository — taken from the folder of executed copies
   (``--notebooks``; ``build/notebooks/`` is where ``make reproduce`` puts them), or, where a notebook has no
   executed copy, its source with a note saying so (``--strict`` makes that an error). Below each notebook's title
   a provenance note says when papermill ran it, for how long, from which commit and with which parameters, and
   where its recorded numbers are. Every relative link and image of the staged Markdown and notebooks is rewritten
   for the site; a repository file that they link to and that is not a page (a figure, a source file, another
   Markdown file) is copied in beside them, so every link resolves.
2. **Builds** the site with MkDocs (Material theme, mkdocs-jupyter; the configuration is ``mkdocs.yml``) into
   ``--out``, strictly: a broken link or anchor in a document fails the build.

The site loads nothing from the network. ``tests/test_book.py`` opens it in headless Chromium.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import posixpath
import re
import shutil
import subprocess
import sys
from pathlib import Path
from urllib.parse import quote, unquote

REPO = Path(__file__).resolve().parent.parent
DEFAULT_NOTEBOOKS = REPO / "build" / "notebooks"
DEFAULT_STAGE = REPO / "build" / "book-src"
DEFAULT_OUT = REPO / "build" / "book"

#: The pages of docs/ in the book's navigation, in reading order, with their titles (a page not listed here is
#: still shown, after these, under its file name).
DOCUMENTS = {"protocol.md": "Protocol", "models.md": "Models", "running.md": "Running at scale",
             "probe.md": "The interactive probe", "pid.md": "Beyond the paper: PID of two words",
             "architecture.md": "Architecture", "results.md": "Results"}
#: Repository files that become pages at another path in the site (all others keep their repository path).
RENAMED = {"docs/README.md": "index.md", "README.md": "overview.md"}

_LINK = re.compile(r"(!?\[(?:[^\[\]]|\[[^\]]*\])*\])\(\s*(<[^>]*>|[^)\s]+)(\s+\"[^\"]*\")?\s*\)")
_HTML_ATTR = re.compile(r"""\b(href|src)=(["'])([^"']*)\2""")
_SCHEME = re.compile(r"^[a-zA-Z][a-zA-Z0-9+.-]*:")


# ───────────────────────────────────────────── Markdown links ─────────────────────────────────────────────

def _prose_segments(text: str):
    """Split Markdown into ``(is_prose, segment)`` pieces: fenced code blocks and inline code spans are not prose
    (links inside them are not links)."""
    out, fence = [], None
    for line in text.splitlines(keepends=True):
        stripped = line.lstrip()
        marker = re.match(r"(`{3,}|~{3,})", stripped)
        if fence is not None:
            out.append((False, line))
            if marker and marker.group(1)[0] == fence[0] and len(marker.group(1)) >= len(fence):
                fence = None
            continue
        if marker:
            fence = marker.group(1)
            out.append((False, line))
            continue
        pos = 0
        for m in re.finditer(r"(`+)(.+?)\1", line):
            out.append((True, line[pos:m.start()]))
            out.append((False, m.group(0)))
            pos = m.end()
        out.append((True, line[pos:]))
    return out


def markdown_links(text: str) -> list[str]:
    """Every link and image target of Markdown ``text`` (``[t](target)``, ``![a](target)``, ``href=``/``src=``),
    outside code."""
    targets = []
    for prose, seg in _prose_segments(text):
        if prose:
            targets += [m.group(2).strip("<>") for m in _LINK.finditer(seg)]
            targets += [m.group(3) for m in _HTML_ATTR.finditer(seg)]
    return targets


def rewrite_links(text: str, fn) -> str:
    """``text`` with every link target (outside code) replaced by ``fn(target)``."""
    def md(m):
        return f"{m.group(1)}({fn(m.group(2).strip('<>'))}{m.group(3) or ''})"

    def html(m):
        return f"{m.group(1)}={m.group(2)}{fn(m.group(3))}{m.group(2)}"

    return "".join(_HTML_ATTR.sub(html, _LINK.sub(md, seg)) if prose else seg for prose, seg in _prose_segments(text))


def is_relative(target: str) -> bool:
    return bool(target) and not target.startswith(("#", "/")) and not _SCHEME.match(target)


def split_target(target: str) -> tuple[str, str]:
    """``"a/b.md#x"`` → ``("a/b.md", "#x")``."""
    path, sep, frag = target.partition("#")
    return unquote(path), (sep + frag)


# ──────────────────────────────────────────────── staging ────────────────────────────────────────────────

def stage_path(repo_path: str) -> str:
    """Where a repository file lives in the staged site sources."""
    return RENAMED.get(repo_path, repo_path)


def page_url(staged: str) -> str:
    """The built page's URL path for a staged page (``use_directory_urls: false``)."""
    stem, ext = posixpath.splitext(staged)
    if ext in (".md", ".ipynb"):
        if posixpath.basename(stem).lower() in ("index", "readme"):
            return posixpath.join(posixpath.dirname(stem), "index.html")
        return stem + ".html"
    return staged


class Stager:
    """Copies pages and the files they link to into ``stage``, rewriting links on the way."""

    def __init__(self, stage: Path):
        self.stage = stage
        self.copied: set[str] = set()
        self.queue: list[str] = []

    def _target_for(self, src_repo: str, dst_staged: str, target: str, *, processed_by_mkdocs: bool) -> str:
        if not is_relative(target):
            return target
        path, frag = split_target(target)
        if not path:
            return target
        repo_target = posixpath.normpath(posixpath.join(posixpath.dirname(src_repo), path))
        if repo_target.startswith("..") or not (REPO / repo_target).exists():
            raise SystemExit(f"{src_repo}: link to {target!r} points outside the repository or at nothing "
                             f"({repo_target})")
        if (REPO / repo_target).is_dir():
            raise SystemExit(f"{src_repo}: link to the folder {target!r}; link to a file")
        staged_target = stage_path(repo_target)
        if repo_target.endswith(".md") or repo_target.startswith("notebooks/") and repo_target.endswith(".ipynb"):
            if repo_target not in self.copied and repo_target.endswith(".md"):
                self.queue.append(repo_target)
            if not processed_by_mkdocs:  # a notebook: link to the built page itself
                staged_target = page_url(staged_target)
                rel = posixpath.relpath(staged_target, posixpath.dirname(page_url(dst_staged)))
                return quote(rel) + frag
        else:
            self.copy_file(repo_target)
        rel = posixpath.relpath(staged_target, posixpath.dirname(dst_staged) or ".")
        return quote(rel) + frag

    def copy_file(self, repo_path: str) -> None:
        if repo_path in self.copied:
            return
        self.copied.add(repo_path)
        dst = self.stage / stage_path(repo_path)
        dst.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(REPO / repo_path, dst)

    def markdown_page(self, repo_path: str, extra: str = "") -> None:
        """Stage a Markdown file (and, through the queue, the Markdown files it links to)."""
        if repo_path in self.copied:
            return
        self.copied.add(repo_path)
        dst = stage_path(repo_path)
        text = (REPO / repo_path).read_text(encoding="utf-8")
        text = rewrite_links(text, lambda t: self._target_for(repo_path, dst, t, processed_by_mkdocs=True))
        out = self.stage / dst
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(text + extra, encoding="utf-8")

    def drain(self) -> None:
        while self.queue:
            self.markdown_page(self.queue.pop(0))

    def notebook_links(self, repo_path: str, nb: dict) -> None:
        for cell in nb["cells"]:
            if cell["cell_type"] == "markdown":
                src = "".join(cell["source"]) if isinstance(cell["source"], list) else cell["source"]
                cell["source"] = rewrite_links(src, lambda t: self._target_for(repo_path, repo_path, t,
                                                                               processed_by_mkdocs=False))


# ─────────────────────────────────────────────── provenance ───────────────────────────────────────────────

def git_commit() -> str:
    try:
        sha = subprocess.run(["git", "rev-parse", "--short=12", "HEAD"], cwd=REPO, capture_output=True, text=True,
                             check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=REPO,
                               capture_output=True, text=True, check=True).stdout.strip()
        return sha + (" with uncommitted changes" if dirty else "")
    except (OSError, subprocess.CalledProcessError):
        return "unknown (not a git checkout)"


def _when(value) -> str:
    try:
        return dt.datetime.fromisoformat(str(value)).strftime("%Y-%m-%d %H:%M UTC")
    except ValueError:
        return str(value)


def _records(stem: str, out_dir: str) -> list[str]:
    """The recorded-numbers files of a notebook under its OUT_DIR, each with its model, revision and protocol."""
    root = Path(out_dir) if Path(out_dir).is_absolute() else REPO / out_dir
    lines = []
    for path in sorted(root.glob(f"*/{stem}.json")):
        try:
            prov = json.loads(path.read_text()).get("_provenance", {})
        except (OSError, json.JSONDecodeError):
            prov = {}
        what = ", ".join(f"{k} {prov[k]}" for k in ("model", "revision", "protocol", "seed") if prov.get(k) is not None)
        shown = path.relative_to(REPO) if path.is_relative_to(REPO) else path
        lines.append(f"`{shown}`" + (f" ({what})" if what else ""))
    return lines


def provenance_note(nb: dict, stem: str, *, executed: bool, commit: str, banner: str | None) -> str:
    """A Markdown note for the top of a notebook's page."""
    parts = []
    if banner:
        parts.append(f"**{banner}**")
    if not executed:
        parts.append("**Not executed in this build**: no executed copy was found, so this page shows the source "
                     "notebook without outputs. Run `make reproduce`, then `make book`.")
    else:
        pm = nb.get("metadata", {}).get("papermill", {})
        params = pm.get("parameters") or {}
        when = f"on {_when(pm['start_time'])}" if pm.get("start_time") else "at an unrecorded time"
        took = f" in {float(pm['duration']):.0f} s" if pm.get("duration") is not None else ""
        shown = ", ".join(f"`{k} = {v!r}`" for k, v in params.items()) or "none"
        parts.append(f"Executed by papermill {when}{took}, from `notebooks/{stem}.ipynb` (book built from commit "
                     f"{commit}). Parameters changed from the notebook's defaults: {shown}; every other value is "
                     "the default shown in the parameters cell.")
        if pm.get("exception"):
            parts.append("**The run raised an exception**: the failing cell shows it.")
        recs = _records(stem, str(params.get("OUT_DIR", "figures")))
        if recs:
            parts.append("Recorded numbers: " + "; ".join(recs) + ".")
    # a block quote: notebook Markdown is rendered by nbconvert, which knows no MkDocs admonitions
    return "\n>\n".join(f"> {'**Provenance.** ' if i == 0 else ''}{p}" for i, p in enumerate(parts)) + "\n"


def insert_note(nb, note: str) -> None:
    """Put ``note`` right under the notebook's title (the first line of a first Markdown cell that starts with
    "# "), or in a cell of its own at the top."""
    import nbformat

    first = nb.cells[0] if nb.cells else None
    if first is not None and first.cell_type == "markdown" and first.source.startswith("# "):
        title, _, rest = first.source.partition("\n")
        first.source = f"{title}\n\n{note}\n{rest.lstrip(chr(10))}" if rest.strip() else f"{title}\n\n{note}"
    else:
        nb.cells.insert(0, nbformat.v4.new_markdown_cell(note))


def _has_widgets(nb: dict) -> bool:
    return any("application/vnd.jupyter.widget-view+json" in out.get("data", {})
               for cell in nb["cells"] for out in cell.get("outputs", []))


def _title(nb: dict, fallback: str) -> str:
    for cell in nb["cells"]:
        if cell["cell_type"] == "markdown":
            src = "".join(cell["source"]) if isinstance(cell["source"], list) else cell["source"]
            for line in src.splitlines():
                if line.startswith("# "):
                    return line[2:].strip()
    return fallback


# ───────────────────────────────────────────────── main ─────────────────────────────────────────────────

def stage(notebooks: Path, stage_dir: Path, *, banner: str | None = None, strict: bool = False) -> list[tuple[str, str]]:
    """Stage the site sources in ``stage_dir`` (emptied first). Returns the nav entries of the notebooks,
    ``[(title, staged path)]``."""
    import nbformat

    if stage_dir.exists():
        shutil.rmtree(stage_dir)
    stage_dir.mkdir(parents=True)
    st = Stager(stage_dir)
    commit = git_commit()
    nav, missing = [], []
    for src in sorted((REPO / "notebooks").glob("*.ipynb")):
        repo_path = f"notebooks/{src.name}"
        executed = (notebooks / src.name).is_file()
        if not executed:
            missing.append(src.name)
        nb = nbformat.read(str(notebooks / src.name if executed else src), as_version=4)
        note = provenance_note(nb, src.stem, executed=executed, commit=commit, banner=banner)
        # Saved widget state makes the page load a widget manager from a CDN; a static page cannot run widgets
        # anyway, so drop it (widget outputs then show their text form) and keep the site offline.
        if nb.metadata.pop("widgets", None) is not None or _has_widgets(nb):
            note += ("\n>\n> Widgets (progress bars, the interactive probe) need a running kernel (JupyterLab, or "
                     "Voilà as an app) and show as text on this page.\n")
        st.notebook_links(repo_path, nb)
        insert_note(nb, note)
        out = stage_dir / repo_path
        out.parent.mkdir(parents=True, exist_ok=True)
        nbformat.write(nb, str(out))
        st.copied.add(repo_path)
        nav.append((_title(nb, src.stem), repo_path))
    if missing and strict:
        raise SystemExit(f"no executed copy in {notebooks} of: {', '.join(missing)} (run the notebooks first)")
    for name in missing:
        print(f"warning: {name} has no executed copy in {notebooks}; the book shows its source", file=sys.stderr)

    listing = "\n\n## The notebooks in this book\n\n" + "".join(
        f"- [{title}]({posixpath.relpath(path, posixpath.dirname(stage_path('docs/README.md')) or '.')})\n"
        for title, path in nav)
    if banner:
        listing += f"\n**{banner}**\n"
    listing += f"\nBuilt from commit {commit}, from the executed notebooks in `{_shown(notebooks)}`.\n"
    st.markdown_page("docs/README.md", extra=listing)
    for doc in sorted((REPO / "docs").glob("*.md")):
        st.markdown_page(f"docs/{doc.name}")
    st.markdown_page("README.md")
    st.drain()
    return nav


def _shown(path: Path) -> str:
    path = path.resolve()
    return str(path.relative_to(REPO)) if path.is_relative_to(REPO) else str(path)


def build(stage_dir: Path, out: Path, nav: list[tuple[str, str]]) -> None:
    from mkdocs.commands.build import build as mkdocs_build
    from mkdocs.config import load_config

    # The documents in reading order (DOCUMENTS), then any other page of docs/ by name: every page is shown.
    staged = {p.name for p in (stage_dir / "docs").glob("*.md")}
    docs = [d for d in DOCUMENTS if d in staged] + sorted(staged - set(DOCUMENTS))
    titles = DOCUMENTS
    config = load_config(str(REPO / "mkdocs.yml"), docs_dir=str(stage_dir), site_dir=str(out), strict=True,
                         nav=[{"Home": "index.md"}, {"Overview (README)": "overview.md"},
                              {"Notebooks": [{title: path} for title, path in nav]},
                              {"Documents": [{titles.get(d, d[:-3]): f"docs/{d}"} for d in docs]}])
    os.environ.setdefault("NO_MKDOCS_2_WARNING", "1")
    mkdocs_build(config)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--notebooks", type=Path, default=DEFAULT_NOTEBOOKS, help="folder of executed notebooks")
    ap.add_argument("--stage", type=Path, default=DEFAULT_STAGE, help="staging folder (emptied first)")
    ap.add_argument("--out", type=Path, default=DEFAULT_OUT, help="where the site goes")
    ap.add_argument("--banner", default=None, help="a line shown on the home page and every notebook page")
    ap.add_argument("--strict", action="store_true", help="fail if a notebook has no executed copy")
    ap.add_argument("--stage-only", action="store_true", help="stage the sources, do not build")
    args = ap.parse_args(argv)
    nav = stage(args.notebooks, args.stage, banner=args.banner, strict=args.strict)
    print(f"staged {len(nav)} notebooks and the documents in {_shown(args.stage)}")
    if args.stage_only:
        return 0
    build(args.stage, args.out, nav)
    print(f"built the book in {_shown(args.out)}: open {_shown(args.out)}/index.html "
          f"(or python -m http.server --directory {_shown(args.out)})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
