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
   Markdown file) is copied in beside them, so every link resolves. For reading (issue 28): every formula
   (``$…$``, ``$$…$$``) of the notebooks' text, the documents and the README is typeset as MathML (a formula that
   cannot be typeset fails the build, naming the page and the formula); each output shows as it ended (a progress
   bar's last frame or final widget state, never its first; transformers' torchvision fallback notice dropped, as
   ``infodecomp.quiet`` does at the source); the claims table of ``docs/results.md`` goes on the home page; and
   ``docs/assets/book.css`` wraps notebook code at the column and fits figures to it.
2. **Builds** the site with MkDocs (Material theme, mkdocs-jupyter; the configuration is ``mkdocs.yml``) into
   ``--out``, strictly: a broken link or anchor in a document fails the build. Then every output figure of the
   notebook pages gets alt text: the heading it sits under.

The site loads nothing from the network. ``tests/test_book.py`` opens it in headless Chromium.
"""

from __future__ import annotations

import argparse
import datetime as dt
import html
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
#: The book's style sheet (mkdocs.yml ``extra_css``): code that wraps, figures and formulas sized for the column.
BOOK_CSS = "docs/assets/book.css"
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
        out.write_text(typeset_math(text + extra, repo_path), encoding="utf-8")

    def drain(self) -> None:
        while self.queue:
            self.markdown_page(self.queue.pop(0))

    def notebook_links(self, repo_path: str, nb: dict) -> None:
        for cell in nb["cells"]:
            if cell["cell_type"] == "markdown":
                src = "".join(cell["source"]) if isinstance(cell["source"], list) else cell["source"]
                cell["source"] = rewrite_links(src, lambda t: self._target_for(repo_path, repo_path, t,
                                                                               processed_by_mkdocs=False))


# ───────────────────────────────────────── mathematics, as MathML ─────────────────────────────────────────
# The formulas of the notebooks' text, the documents and the README are typeset when the book is built: each
# $…$ / $$…$$ becomes a MathML <math> element (latex2mathml), which Chromium and Firefox render natively, so the
# site needs no script and loads nothing. Detection follows pandoc's tex_math_dollars rules, so dollar amounts
# stay text: an opening $ is followed by a non-space, a closing $ follows a non-space and is not followed by a
# digit, \$ is a literal dollar, and nothing inside code spans or fenced code is looked at. One rule of our own:
# "$10 more" (a number, a space, a word) opens no formula, so "$10 more, or US$ 3" stays text.

_CODE_SLOT = "\x00{}\x00"
_MATH = re.compile(
    r"(?<![\\$])\$\$(?P<display>(?:[^$\x00\\]|\\.)+?)\$\$"  # $$…$$
    r"|(?<![\\$])\$(?![\s$])(?!\d[\d.,]*\s+[A-Za-z]{2})"  # an opening $: not "$ x", not "$10 more"
    r"(?P<inline>(?:[^$\x00\\\n]|\\.|\n(?![ \t]*\n))+?)"  # no blank line inside
    r"(?<![\s\\])\$(?![$\d])",  # a closing $: not "x $", not "$5"
    re.S)
#: A TeX command left in latex2mathml's output: it did not know it (it passes unknown commands through as text).
_TEX_LEFT = re.compile(r">[^<]*\\[A-Za-z]+[^<]*<")


class MathError(SystemExit):
    """A formula that cannot be typeset; the message names the page and the formula."""


def _with_code_slots(text: str) -> tuple[str, list[str]]:
    """``text`` with every code span and fenced block replaced by a numbered slot (so no formula is found in, or
    runs across, code), and the code pieces."""
    code, out = [], []
    for prose, seg in _prose_segments(text):
        if prose:
            out.append(seg)
        else:
            out.append(_CODE_SLOT.format(len(code)))
            code.append(seg)
    return "".join(out), code


def find_math(text: str) -> list[tuple[str, bool]]:
    """The formulas of Markdown ``text``, outside code: ``[(tex, display)]`` in order."""
    prose, _ = _with_code_slots(text)
    return [(m.group("display") if m.group("display") is not None else m.group("inline"),
             m.group("display") is not None) for m in _MATH.finditer(prose)]


def tex_to_mathml(tex: str, *, display: bool, where: str) -> str:
    """One formula as a one-line MathML element; :class:`MathError` naming ``where`` and the formula if
    latex2mathml fails, leaves a command it does not know, or the braces do not balance."""
    from latex2mathml.converter import convert  # the docs extra's converter; only the book build needs it

    shown = f"{'$$' if display else '$'}{tex}{'$$' if display else '$'}"
    unescaped = re.sub(r"\\.", "", tex)
    if unescaped.count("{") != unescaped.count("}"):
        raise MathError(f"{where}: cannot typeset the formula {shown}: unbalanced braces")
    try:
        mathml = convert(tex.strip(), display="block" if display else "inline")
    except Exception as exc:  # the converter's own errors are many types; each is this formula's fault
        raise MathError(f"{where}: cannot typeset the formula {shown}: {type(exc).__name__}: {exc}") from exc
    left = _TEX_LEFT.search(mathml)
    if left:
        command = re.search(r"\\[A-Za-z]+", left.group(0)).group(0)
        raise MathError(f"{where}: cannot typeset the formula {shown}: latex2mathml does not know {command}")
    return mathml.replace("\n", "")


def typeset_math(text: str, where: str) -> str:
    """Markdown ``text`` with every formula outside code replaced by its MathML (raw HTML, which Python-Markdown
    and nbconvert's Markdown both pass through)."""
    prose, code = _with_code_slots(text)
    if "$" not in prose:
        return text

    def one(m):
        display = m.group("display") is not None
        return tex_to_mathml(m.group("display") if display else m.group("inline"), display=display, where=where)

    prose = _MATH.sub(one, prose)
    return re.sub("\x00(\\d+)\x00", lambda m: code[int(m.group(1))], prose)


def typeset_notebook(nb, repo_path: str) -> None:
    """Typeset the formulas of a notebook's Markdown cells in place (see :func:`typeset_math`)."""
    for i, cell in enumerate(nb.cells):
        if cell.cell_type == "markdown":
            cell.source = typeset_math(cell.source, f"{repo_path}, cell {i}")


# ─────────────────────────────────────── outputs, as a reader sees them ───────────────────────────────────────
# An executed notebook keeps what a live front end would have redrawn: tqdm's stderr frames separated by carriage
# returns, and a tqdm.auto widget whose text form is its first frame ("…: 0%| | 0/5") while its final state is
# in the notebook's saved widget state. The book shows each bar's last state (or nothing when none was saved).

_WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"
_WIDGET_STATE = "application/vnd.jupyter.widget-state+json"
#: The text form of a tqdm bar: "desc: 40%|████      | 2/5 [...]".
_TQDM_TEXT = re.compile(r"\d+%\|[^|\n]*\|")


def last_frames(text: str) -> str:
    """A stream's text as a terminal leaves it: on each line, only what follows its last carriage return."""
    return "\n".join(line.rstrip("\r").rsplit("\r", 1)[-1] for line in text.split("\n"))


def _widget_bar_text(model_id: str, state: dict) -> str | None:
    """The final text of a tqdm widget (an HBox of HTML, a progress bar, HTML) from the saved widget state."""
    box = state.get(model_id, {}).get("state", {})
    kids = [state.get(str(ref).removeprefix("IPY_MODEL_"), {}).get("state", {}) for ref in box.get("children", [])]
    bars = [k for k in kids if k.get("_model_name") in ("FloatProgressModel", "IntProgressModel")]
    texts = [k for k in kids if k.get("_model_name") == "HTMLModel"]
    if len(bars) != 1 or len(texts) != 2:
        return None
    bar = bars[0]
    total = bar.get("max") or 0
    filled = round(10 * min(1.0, float(bar.get("value", 0)) / total)) if total else 0
    # tqdm.notebook escapes the text and pads it with en spaces (tqdm/notebook.py, display)
    left, right = (html.unescape(str(t.get("value", ""))).replace("\u2002", " ") for t in texts)
    return f"{left}|{'█' * filled}{' ' * (10 - filled)}| {right}".strip()


def settle_outputs(nb, *, is_noise=lambda line: False) -> None:
    """Show every output as it ended, in place: consecutive stream outputs merged and reduced to their last frames,
    the lines ``is_noise`` accepts dropped from stderr, and each tqdm widget replaced by its final text (or dropped
    when the notebook saved no widget state for it). Reads the saved widget state, so call it before that goes."""
    state = nb.metadata.get("widgets", {}).get(_WIDGET_STATE, {}).get("state", {})
    for cell in nb.cells:
        if cell.cell_type != "code":
            continue
        kept = []
        for out in cell.get("outputs", []):
            if out.output_type == "stream":
                if kept and kept[-1].output_type == "stream" and kept[-1].name == out.name:
                    kept[-1].text += out.text
                    continue
            elif _WIDGET_VIEW in out.get("data", {}) and _TQDM_TEXT.search(str(out.data.get("text/plain", ""))):
                final = _widget_bar_text(out.data[_WIDGET_VIEW].get("model_id", ""), state)
                if final is None:
                    continue
                out.data = {"text/plain": final}
            kept.append(out)
        for out in kept:
            if out.output_type == "stream":
                lines = last_frames(out.text).split("\n")
                if out.name == "stderr":
                    lines = [line for line in lines if not is_noise(line)]
                out.text = "\n".join(lines)
        cell.outputs = [out for out in kept if out.output_type != "stream" or out.text.strip()]


def _known_fallback(line: str) -> bool:
    """transformers' torchvision fallback notice, as infodecomp.quiet matches it: silenced at its source since
    issue 28; dropped here too, so that notebooks executed before that read the same."""
    from infodecomp.quiet import is_known_fallback  # the package's own matcher; light (standard library only)

    return is_known_fallback(line)


# ───────────────────────────────────────── figures, for the page ─────────────────────────────────────────

_DATA_IMG = re.compile(r"<img\b(?=[^>]*\bsrc=\"data:image/)[^>]*>")
#: The alt text nbconvert's lab template gives every output image.
_NO_ALT = re.compile(r'\s*\balt="(?:No description has been provided for this image)?"')


def figure_alt_texts(nb, title: str) -> list[str]:
    """One alt text per image output of ``nb``, in order: the heading the figure sits under, in the notebook."""
    heading, alts = title, []
    for cell in nb.cells:
        if cell.cell_type == "markdown":
            for line in cell.source.splitlines():
                if re.match(r"#{1,6} ", line):
                    heading = re.sub(r"<[^>]+>", "", line.lstrip("#").strip())
        for out in cell.get("outputs", []):
            if any(k.startswith("image/") for k in out.get("data", {})):
                alts.append(f"Figure {len(alts) + 1} of “{title}”: {heading}")
    return alts


def add_alt_texts(page_html: str, alts: list[str]) -> str:
    """``page_html`` with the i-th output image (a data: URL) given ``alts[i]`` as its alt text, in place of none or
    of nbconvert's "No description has been provided for this image"."""
    it = iter(alts)

    def one(m):
        alt = html.escape(next(it, "A figure of this notebook"))
        if re.search(r"\balt=", m.group(0)) and not _NO_ALT.search(m.group(0)):
            return m.group(0)
        return f'<img alt="{alt}"' + _NO_ALT.sub("", m.group(0))[len("<img"):]

    return _DATA_IMG.sub(one, page_html)


def claims_section(st: Stager) -> str:
    """The claims table of docs/results.md (between its ``claims-table`` markers), its links rewritten for the home
    page, as a section of the home page; "" when results.md has no such block."""
    text = (REPO / "docs" / "results.md").read_text(encoding="utf-8")
    m = re.search(r"<!-- claims-table:start -->\n(.*?)<!-- claims-table:end -->", text, re.S)
    if not m:
        return ""
    home = stage_path("docs/README.md")
    table = rewrite_links(m.group(1), lambda t: st._target_for("docs/results.md", home, t, processed_by_mkdocs=True))
    return ("\n\n## The paper's claims on the embedded model\n\nEach claim of the paper beside what the embedded "
            "model shows; every recorded number is on the [results page](docs/results.md#recorded-numbers).\n\n"
            + table)


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
        settle_outputs(nb, is_noise=_known_fallback)  # before the widget state goes (below)
        note = provenance_note(nb, src.stem, executed=executed, commit=commit, banner=banner)
        # Saved widget state makes the page load a widget manager from a CDN; a static page cannot run widgets
        # anyway, so drop it (widget outputs then show their text form) and keep the site offline.
        if nb.metadata.pop("widgets", None) is not None or _has_widgets(nb):
            note += ("\n>\n> Widgets (progress bars, the interactive probe) need a running kernel (JupyterLab, or "
                     "Voilà as an app) and show as text on this page.\n")
        st.notebook_links(repo_path, nb)
        typeset_notebook(nb, repo_path)
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

    listing = claims_section(st) + "\n\n## The notebooks in this book\n\n" + "".join(
        f"- [{title}]({posixpath.relpath(path, posixpath.dirname(stage_path('docs/README.md')) or '.')})\n"
        for title, path in nav)
    if banner:
        listing += f"\n**{banner}**\n"
    listing += f"\nBuilt from commit {commit}, from the executed notebooks in `{_shown(notebooks)}`.\n"
    st.markdown_page("docs/README.md", extra=listing)
    for doc in sorted((REPO / "docs").glob("*.md")):
        st.markdown_page(f"docs/{doc.name}")
    st.markdown_page("README.md")
    st.copy_file(BOOK_CSS)
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
    describe_figures(stage_dir, out, nav)


def describe_figures(stage_dir: Path, out: Path, nav: list[tuple[str, str]]) -> None:
    """Give every output image of the built notebook pages its alt text (nbconvert's lab template writes none)."""
    import nbformat

    for title, path in nav:
        page = out / page_url(path)
        nb = nbformat.read(str(stage_dir / path), as_version=4)
        page.write_text(add_alt_texts(page.read_text(encoding="utf-8"), figure_alt_texts(nb, title)),
                        encoding="utf-8")


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
