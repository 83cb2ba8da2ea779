"""The read-along book in a real browser: the site that ``make book`` (or, in CI, ``make book-ci``) built from the
executed notebooks, served on localhost and opened in headless Chromium (Debian's ``chromium``, driven by
Playwright, as tests/test_browser.py does).

It checks that every notebook of ``notebooks/`` and every document of ``docs/`` is a page of the book, that each
notebook page shows its provenance note and renders every figure and table its executed notebook holds (and that
the book holds at least one of each), that every link and image of every page resolves (anchors included),
that no page loads anything from the network, and that the book reads like the paper (issue 28): every formula of
the sources typeset (as many MathML formulas as the sources have, no TeX command left as text), no transformers
fallback notice or progress bar at 0 %, no notebook code cell wider than the column at the default width, every
output figure with alt text, and the claims table on the home page. These checks are generic over the book they
are pointed at: CI's, or one built from ``make_fixture_notebooks``' hand-made outputs::

    python -c "import sys; sys.path.insert(0, 'tests'); import test_book, pathlib; \\
               test_book.make_fixture_notebooks(pathlib.Path('/tmp/fixture'))"
    python scripts/build_book.py --notebooks /tmp/fixture --out /tmp/fixture-book
    INFODECOMP_BOOK=/tmp/fixture-book pytest tests/test_book.py

The site is ``$INFODECOMP_BOOK`` (CI: ``build/ci/book``), else ``build/book``. Without a built book, Chromium or
Playwright the tests skip and say why, so ``make test`` alone passes; ``.ci/run`` builds the book after the
notebooks and then runs this file. The staging of the book (``scripts/build_book.py``) is tested here without a
browser.
"""

from __future__ import annotations

import contextlib
import functools
import http.server
import importlib.util
import json
import os
import re
import threading
import time
from pathlib import Path
from urllib.parse import urldefrag, urlparse

import pytest

from infodecomp.testing import free_port

ROOT = Path(__file__).resolve().parents[1]
_env = os.environ.get("INFODECOMP_BOOK")
BOOK = (Path(_env) if Path(_env).is_absolute() else ROOT / _env) if _env else ROOT / "build" / "book"
CHROMIUM = os.environ.get("INFODECOMP_CHROMIUM", "/usr/bin/chromium")
# Flags for Chromium on a closed network (see tests/test_browser.py).
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--disable-dev-shm-usage"]
PAGE_TIMEOUT_MS = 60_000


def _load_build_book():
    spec = importlib.util.spec_from_file_location("build_book", ROOT / "scripts" / "build_book.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# ─────────────────────────────────────────── staging, no browser ───────────────────────────────────────────

def test_staging_rewrites_links_and_adds_provenance(tmp_path):
    """Staging from a folder with one executed notebook: every notebook of the repository is staged (the
    missing ones from their source, saying so), notebook links point at the built pages, linked figures are
    copied, and the provenance note names the papermill parameters."""
    import nbformat

    bb = _load_build_book()
    executed = tmp_path / "executed"
    executed.mkdir()
    src = sorted((ROOT / "notebooks").glob("*.ipynb"))
    nb = nbformat.read(str(src[0]), as_version=4)
    nb.metadata["papermill"] = {"parameters": {"OUT_DIR": "build/ci/figures"}, "start_time": "2026-12-01T10:00:00",
                                "duration": 12.3}
    nbformat.write(nb, str(executed / src[0].name))
    stage = tmp_path / "stage"
    nav = bb.stage(executed, stage, banner="A test banner")
    assert [path for _, path in nav] == [f"notebooks/{p.name}" for p in src]
    staged = nbformat.read(str(stage / "notebooks" / src[0].name), as_version=4)
    title, note = staged.cells[0].source.split("\n", 1)
    assert title == nb.cells[0].source.split("\n", 1)[0], "the note goes under the title"
    assert "Provenance" in note and "OUT_DIR = 'build/ci/figures'" in note and "in 12 s" in note
    assert "A test banner" in note
    assert len(staged.cells) == len(nb.cells)
    later = nbformat.read(str(stage / "notebooks" / src[-1].name), as_version=4)
    assert "Not executed in this build" in later.cells[0].source
    text = "\n".join(c.source for f in (stage / "notebooks").glob("*.ipynb")
                     for c in nbformat.read(str(f), as_version=4).cells if c.cell_type == "markdown")
    assert "../docs/protocol.html#" in text and "../docs/protocol.md" not in text
    assert (stage / "index.md").is_file() and (stage / "overview.md").is_file()
    assert all((stage / "docs" / p.name).is_file() for p in (ROOT / "docs").glob("*.md") if p.name != "README.md")
    assert (stage / "figures" / "shapes-tiny" / "04_mi_cmi_heatmaps.png").is_file()  # linked from docs/results.md
    index = (stage / "index.md").read_text()
    assert all(f"notebooks/{p.name}" in index for p in src), "the home page lists every notebook"
    with pytest.raises(SystemExit, match="no executed copy"):
        bb.stage(executed, tmp_path / "strict", strict=True)


def test_markdown_link_rewriting_skips_code():
    bb = _load_build_book()
    text = "a [x](y.md#z) `[no](n.md)`\n```\n[no](m.md)\n```\n<img src=\"p.png\">"
    assert bb.markdown_links(text) == ["y.md#z", "p.png"]
    assert bb.rewrite_links(text, str.upper) == "a [x](Y.MD#Z) `[no](n.md)`\n```\n[no](m.md)\n```\n<img src=\"P.PNG\">"



# ───────────────────────────────────── a book from hand-made outputs ─────────────────────────────────────

FALLBACK_NOTICE = ("`{0}` requires torchvision (not installed); falling back to `{0}Pil` for backward compatibility. "
                   "Install torchvision to use the default backend, or import `{0}Pil` directly to silence this "
                   "warning.\n")
LONG_LINE = "SETTING = 1  # " + "a parameter comment that a reader needs in full, " * 5


def _png(width: int, height: int) -> str:
    """A base64 PNG of a plain ``width`` × ``height`` figure (matplotlib, as the notebooks draw them)."""
    import base64
    import io

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(width / 100, height / 100), dpi=100)
    ax.plot([0, 1, 2], [0, 1, 0])
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    plt.close(fig)
    return base64.b64encode(buf.getvalue()).decode()


def make_fixture_notebooks(folder: Path) -> list[str]:
    """Two "executed" notebooks in ``folder`` (01 and 02, sources unchanged) whose outputs are made by hand as
    the executions leave them: transformers' torchvision fallback notices and a real warning on stderr, a tqdm bar
    on stderr drawn with carriage returns up to 100 %, a tqdm.auto widget whose text form is its first frame (its
    final state saved in the notebook's widget state), a widget whose state was not saved, a figure, a table, and a
    code cell
    with a line far wider than the page. Returns the notebooks' names. Build a book from it with
    ``scripts/build_book.py --notebooks FOLDER``."""
    import nbformat

    folder.mkdir(parents=True, exist_ok=True)
    names = ["01_information_estimators.ipynb", "02_relation_testing.ipynb"]
    for k, name in enumerate(names):
        nb = nbformat.read(str(ROOT / "notebooks" / name), as_version=4)
        nb.metadata["papermill"] = {"parameters": {}, "start_time": "2026-12-01T10:00:00", "duration": 1.0}
        code = [c for c in nb.cells if c.cell_type == "code"]
        bar = "localization: {:3d}%|{:<10}| {}/2 [00:0{}<00:00]"
        code[0].outputs = [
            nbformat.v4.new_output("stream", name="stderr", text=FALLBACK_NOTICE.format("CLIPImageProcessor")),
            nbformat.v4.new_output("stream", name="stderr", text=FALLBACK_NOTICE.format("SiglipImageProcessor")),
            nbformat.v4.new_output("stream", name="stderr", text="UserWarning: a warning a reader should act on\n"),
            nbformat.v4.new_output("stream", name="stderr", text="\r".join(
                bar.format(100 * i // 2, "█" * (5 * i), i, i) for i in range(3)) + "\n"),
            nbformat.v4.new_output("display_data", data={
                "text/plain": "Loading pipeline components...:   0%|          | 0/5 [00:00<?, ?it/s]",
                "application/vnd.jupyter.widget-view+json": {"version_major": 2, "version_minor": 0,
                                                             "model_id": f"box{k}"}}),
            nbformat.v4.new_output("display_data", data={
                "text/plain": "unsaved:   0%|          | 0/3 [00:00<?, ?it/s]",
                "application/vnd.jupyter.widget-view+json": {"version_major": 2, "version_minor": 0,
                                                             "model_id": "no-state"}}),
            nbformat.v4.new_output("display_data", data={"image/png": _png(900, 300), "text/plain": "<Figure>"}),
            nbformat.v4.new_output("execute_result", execution_count=1, data={
                "text/plain": "   n  value",
                "text/html": "<table class=\"dataframe\"><thead><tr><th>n</th><th>value</th></tr></thead>"
                             "<tbody><tr><td>10</td><td>0.5</td></tr></tbody></table>"}),
        ]
        code[-1].source += "\n" + LONG_LINE
        html = "@jupyter-widgets/controls"
        nb.metadata["widgets"] = {"application/vnd.jupyter.widget-state+json": {"version_major": 2, "version_minor": 0,
            "state": {
                f"box{k}": {"model_name": "HBoxModel", "model_module": html, "state": {
                    "_model_name": "HBoxModel", "children": [f"IPY_MODEL_l{k}", f"IPY_MODEL_p{k}", f"IPY_MODEL_r{k}"]}},
                f"l{k}": {"model_name": "HTMLModel", "model_module": html, "state": {
                    "_model_name": "HTMLModel", "value": "Loading\u2002pipeline\u2002components...:\u2002100%"}},
                f"p{k}": {"model_name": "FloatProgressModel", "model_module": html, "state": {
                    "_model_name": "FloatProgressModel", "value": 5, "max": 5}},
                f"r{k}": {"model_name": "HTMLModel", "model_module": html, "state": {
                    "_model_name": "HTMLModel", "value": "5/5\u2002[00:01&lt;00:00,\u2002\u20024.1it/s]"}}}}}
        nbformat.write(nb, str(folder / name))
    return names


def test_staged_outputs_read_as_they_ended(tmp_path):
    """Staging the hand-made outputs: the fallback notices are gone and the real warning stays, the stderr bar and
    the widget show their final state, the widget without saved state is dropped, and the formulas of the
    notebooks' text are MathML, as many as the sources have."""
    import nbformat

    bb = _load_build_book()
    names = make_fixture_notebooks(tmp_path / "executed")
    bb.stage(tmp_path / "executed", tmp_path / "stage")
    for name in names:
        staged = nbformat.read(str(tmp_path / "stage" / "notebooks" / name), as_version=4)
        first = next(c for c in staged.cells if c.cell_type == "code")
        text = "\n".join(o.get("text", "") or o.get("data", {}).get("text/plain", "") for o in first.outputs)
        assert "torchvision" not in text and "a warning a reader should act on" in text
        assert "localization: 100%|██████████| 2/2" in text and "\r" not in text and " 0%|" not in text
        assert "Loading pipeline components...: 100%|██████████| 5/5 [00:01<00:00,  4.1it/s]" in text
        assert "unsaved" not in text
        assert not any("application/vnd.jupyter.widget-view+json" in o.get("data", {}) for o in first.outputs)
        source = nbformat.read(str(ROOT / "notebooks" / name), as_version=4)
        want = sum(len(bb.find_math(c.source)) for c in source.cells if c.cell_type == "markdown")
        got = sum(c.source.count("<math ") for c in staged.cells if c.cell_type == "markdown")
        assert want > 0 and got == want, f"{name}: {got} MathML formulas, {want} in the source"
    index = (tmp_path / "stage" / "index.md").read_text()
    assert "claims-table" not in index and "| where | claim |" in index, "the claims table is on the home page"

# ───────────────────────────────────────────── the built site ─────────────────────────────────────────────

def _missing() -> str | None:
    if not (BOOK / "index.html").is_file():
        return (f"no built book at {BOOK} (run `make book` after `make reproduce`, or `make notebooks-ci book-ci` "
                "and INFODECOMP_BOOK=build/ci/book)")
    if not (os.path.isfile(CHROMIUM) and os.access(CHROMIUM, os.X_OK)):
        return (f"Chromium not found at {CHROMIUM} (install Debian's package: apt-get install -y chromium, as .ci/run "
                "does; or point INFODECOMP_CHROMIUM at a Chromium binary)")
    if importlib.util.find_spec("playwright") is None:
        return "playwright is not installed (pip install -e '.[browser]')"
    return None


def needs_book(test):
    """A browser test of the built book: marked ``browser``, skipped (saying why) without a book or a browser."""
    why = _missing()
    return pytest.mark.browser(pytest.mark.skipif(why is not None, reason=f"book browser test skipped: {why}")(test))


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):  # keep the test's output clean
        pass


class _Server(http.server.ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request, client_address):  # the browser dropping a connection is not an error
        import sys

        if not isinstance(sys.exc_info()[1], (BrokenPipeError, ConnectionResetError)):
            super().handle_error(request, client_address)


@pytest.fixture(scope="module")
def site():
    """The built book served on a free localhost port; yields its base URL."""
    port = free_port()
    handler = functools.partial(_QuietHandler, directory=str(BOOK))
    server = _Server(("127.0.0.1", port), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{port}/"
    finally:
        server.shutdown()
        server.server_close()


@contextlib.contextmanager
def _browser(tmp_path: Path):
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        context = pw.chromium.launch_persistent_context(
            str(tmp_path / "chromium-profile"), executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS,
            viewport={"width": 1300, "height": 1000})
        try:
            yield context
        finally:
            context.close()


@pytest.fixture(scope="module")
def crawl(site, tmp_path_factory):
    """Every page reachable from the home page, loaded in Chromium: ``{url: info}`` with the page's ids, its
    same-site links, its images (decoded size), its tables, and ``external`` (requests to other hosts)."""
    pages, todo, external = {}, [site + "index.html"], []
    with _browser(tmp_path_factory.mktemp("book")) as context:
        page = context.pages[0] if context.pages else context.new_page()
        page.on("request", lambda r: external.append(r.url) if not r.url.startswith((site, "data:", "blob:",
                                                                                          "about:")) else None)
        t0 = time.monotonic()
        while todo:
            url = todo.pop()
            if url in pages:
                continue
            resp = page.goto(url, wait_until="load", timeout=PAGE_TIMEOUT_MS)
            info = page.evaluate("""() => ({
                ids: Array.from(document.querySelectorAll('[id]')).map(e => e.id)
                       .concat(Array.from(document.querySelectorAll('a[name]')).map(e => e.name)),
                links: Array.from(document.querySelectorAll('a[href]')).map(a => a.href),
                resources: Array.from(document.querySelectorAll('img[src], link[href], script[src]'))
                             .map(e => e.src || e.href).filter(u => u),
                images: Array.from(document.querySelectorAll('article img')).map(
                            i => ({src: i.currentSrc.slice(0, 80), w: i.naturalWidth, ok: i.complete})),
                tables: Array.from(document.querySelectorAll('article table')).map(t => t.rows.length),
                text: document.querySelector('article') ? document.querySelector('article').innerText : '',
            })""")
            info.update(page.evaluate(_READING_JS, TEX_COMMAND.pattern))
            info["status"] = resp.status if resp else None
            pages[url] = info
            for link in info["links"]:
                target, _ = urldefrag(link)
                if target.startswith(site) and target.endswith(".html") and target not in pages:
                    todo.append(target)
        print(f"book crawl: {len(pages)} pages in {time.monotonic() - t0:.1f} s")
    return {"site": site, "pages": pages, "external": external}


#: A TeX command as a formula's source spells it (a backslash and a command name): never text a reader sees.
TEX_COMMAND = re.compile(r"\\(?:math[a-z]+|hat|tilde|bar|t?frac|dfrac|int|sum|prod|left|right|[lr][Vv]ert|"
                         r"(?:var)?epsilon|lambda|varnothing|sim|sqrt|text|cdot|alpha|beta|sigma|infty|partial|"
                         r"nabla|approx|leq|geq|mid|operatorname|quad)(?![A-Za-z])")
#: Noise no page may show: transformers' torchvision fallback notice, and a progress bar at its first frame.
NOISE = re.compile(r"requires torchvision \(not installed\)|falling back to `\w+Pil`|(?<![\d.])0%\|")
#: What a reader sees on a page (issue 28): its typeset formulas, any TeX left as text, its output images, and the
#: parts of notebook code cells that scroll sideways or stick out of the column.
_READING_JS = r"""(texPattern) => {
    const article = document.querySelector('article');
    if (!article) return {math: 0, tex: [], figures: [], scrolling: [], column: 0};
    const TEX = new RegExp(texPattern);
    const tex = [];
    const walker = document.createTreeWalker(article, NodeFilter.SHOW_TEXT, {acceptNode: n =>
        n.parentElement.closest('math, code, pre, kbd, script, style, .clipboard-copy-txt')
            ? NodeFilter.FILTER_REJECT : NodeFilter.FILTER_ACCEPT});
    for (let n = walker.nextNode(); n; n = walker.nextNode()) {
        if (TEX.test(n.nodeValue)) tex.push(n.nodeValue.trim().slice(0, 160));
    }
    const column = article.getBoundingClientRect();
    const figures = Array.from(article.querySelectorAll('.jp-OutputArea img')).map(i => ({
        alt: i.alt, width: i.getBoundingClientRect().width, natural: i.naturalWidth}));
    const scrolling = [];
    article.querySelectorAll('.jp-CodeCell:not(:has(.jp-CodeCell))').forEach((cell, k) => {  // the innermost
        // the code and its text outputs; HTML outputs (tables) may scroll on their own
        const text = '.jp-OutputArea-output:not(.jp-RenderedHTML)';
        const parts = cell.querySelectorAll(`.jp-InputArea, .jp-InputArea *, ${text}, ${text} pre`);
        for (const el of parts) {
            const style = getComputedStyle(el);
            const box = el.getBoundingClientRect();
            const scrolls = ['auto', 'scroll'].includes(style.overflowX) && el.scrollWidth > el.clientWidth + 1;
            if (scrolls || (box.width > 0 && box.right > column.right + 1)) {
                scrolling.push({cell: k, element: el.tagName + '.' + el.className, scrollWidth: el.scrollWidth,
                                clientWidth: el.clientWidth, right: Math.round(box.right),
                                column: Math.round(column.right),
                                widest: (el.innerText || '').split('\n')
                                          .sort((a, b) => b.length - a.length)[0].slice(0, 120)});
                break;
            }
        }
    });
    return {math: article.querySelectorAll('math').length, tex, figures, scrolling,
            column: Math.round(column.width)};
}"""


def _page(crawl, path: str) -> dict:
    url = crawl["site"] + path
    assert url in crawl["pages"], f"{path} is not reachable from the home page; pages: {sorted(crawl['pages'])}"
    return crawl["pages"][url]


@needs_book
def test_every_notebook_and_document_is_a_page(crawl):
    for nb in sorted((ROOT / "notebooks").glob("*.ipynb")):
        info = _page(crawl, f"notebooks/{nb.stem}.html")
        assert info["status"] == 200
        assert "Provenance." in info["text"], f"{nb.name}: no provenance note"
    for doc in sorted((ROOT / "docs").glob("*.md")):
        _page(crawl, "index.html" if doc.name == "README.md" else f"docs/{doc.stem}.html")
    protocol = _page(crawl, "docs/protocol.html")
    missing = [f"b{i}" for i in range(1, 36) if f"b{i}" not in protocol["ids"]]
    assert not missing, f"deviation anchors missing from the protocol page: {missing}"


def _outputs(nb_path: Path) -> tuple[int, int]:
    """(image outputs, HTML tables) of an executed notebook."""
    nb = json.loads(nb_path.read_text(encoding="utf-8"))
    images = tables = 0
    for cell in nb["cells"]:
        for out in cell.get("outputs", []):
            data = out.get("data", {})
            images += any(k.startswith("image/") for k in data)
            html = data.get("text/html", "")
            html = "".join(html) if isinstance(html, list) else html
            tables += html.count("<table")
    return images, tables


@needs_book
def test_figures_and_tables_render(crawl):
    """Each notebook page shows as many decoded images and tables as its executed notebook has outputs, and the
    book has at least one figure and one table."""
    total_images = total_tables = 0
    for nb in sorted((BOOK / "notebooks").glob("*.ipynb")):
        want_images, want_tables = _outputs(nb)
        info = _page(crawl, f"notebooks/{nb.stem}.html")
        shown = [i for i in info["images"] if i["ok"] and i["w"] > 0]
        broken = [i for i in info["images"] if not (i["ok"] and i["w"] > 0)]
        assert not broken, f"{nb.name}: images that do not decode: {broken}"
        assert len(shown) >= want_images, f"{nb.name}: {len(shown)} images shown, {want_images} in the notebook"
        assert len(info["tables"]) >= want_tables, f"{nb.name}: {len(info['tables'])} tables, {want_tables} in it"
        total_images += len([i for i in shown if i["w"] >= 100])
        total_tables += len([t for t in info["tables"] if t >= 2])
    assert total_images >= 1, "no figure renders in any notebook page"
    assert total_tables >= 1, "no table renders in any notebook page"
    results = _page(crawl, "docs/results.html")
    assert any(rows >= 2 for rows in results["tables"]), "the results page shows no table"


@needs_book
def test_every_link_resolves(crawl):
    """Every same-site link, image, stylesheet and script of every page answers 200, and every link's anchor is
    an id of its target page. Links to other sites are not followed (the machine may be offline)."""
    import urllib.error
    import urllib.request

    site, pages = crawl["site"], crawl["pages"]
    status, bad = {}, []
    for url, info in sorted(pages.items()):
        assert info["status"] == 200, f"{url}: HTTP {info['status']}"
        for link in info["links"] + info["resources"]:
            target, frag = urldefrag(link)
            if not target.startswith(site):
                continue
            if target not in status:
                try:
                    with urllib.request.urlopen(target, timeout=10) as resp:
                        status[target] = resp.status
                except urllib.error.HTTPError as err:
                    status[target] = err.code
            if status[target] != 200:
                bad.append(f"{url}: {link} → HTTP {status[target]}")
            elif frag and target.endswith(".html"):
                ids = pages[target]["ids"] if target in pages else None
                if ids is None:
                    bad.append(f"{url}: {link}: page not crawled")
                elif frag not in ids:
                    bad.append(f"{url}: {link}: no element with id {frag!r}")
    assert not bad, "\n".join(bad[:50]) + (f"\n… and {len(bad) - 50} more" if len(bad) > 50 else "")
    assert len(status) > 20, f"only {len(status)} distinct targets checked"


@needs_book
def test_nothing_loads_from_the_network(crawl):
    assert not crawl["external"], f"pages requested other hosts: {sorted(set(crawl['external']))[:20]}"
    hosts = {urlparse(u).netloc for p in crawl["pages"].values() for u in p["resources"]
             if urlparse(u).scheme in ("http", "https")}  # not the notebooks' data: images
    assert hosts <= {urlparse(crawl["site"]).netloc}, f"resources on other hosts: {hosts}"


# ───────────────────────────────────────── reading like the paper ─────────────────────────────────────────

def _source_formulas(path: str) -> int | None:
    """How many formulas the source of the book page ``path`` has (None: a page without a known source)."""
    import nbformat

    bb = _load_build_book()
    if path.startswith("notebooks/") and (ROOT / path).with_suffix(".ipynb").is_file():
        nb = nbformat.read(str((ROOT / path).with_suffix(".ipynb")), as_version=4)
        return sum(len(bb.find_math(c.source)) for c in nb.cells if c.cell_type == "markdown")
    if path == "index.html":  # docs/README.md with the claims table of docs/results.md
        results = (ROOT / "docs" / "results.md").read_text(encoding="utf-8")
        claims = re.search(r"<!-- claims-table:start -->(.*?)<!-- claims-table:end -->", results, re.S)
        text = (ROOT / "docs" / "README.md").read_text(encoding="utf-8") + (claims.group(1) if claims else "")
        return len(bb.find_math(text))
    source = ROOT / ("README.md" if path == "overview.html" else path[:-len(".html")] + ".md")
    return len(bb.find_math(source.read_text(encoding="utf-8"))) if source.is_file() else None


@needs_book
def test_formulas_are_typeset(crawl):
    """Every page shows as many typeset formulas (MathML) as its source has, and no TeX command as text outside
    formulas and code; the notebooks have formulas, so the book does too."""
    bad, total = [], 0
    for url, info in sorted(crawl["pages"].items()):
        path = url[len(crawl["site"]):]
        if info["tex"]:
            bad.append(f"{path}: TeX shown as text: {info['tex'][:3]}")
        want = _source_formulas(path)
        if want is not None and info["math"] != want:
            bad.append(f"{path}: {info['math']} typeset formulas, {want} in its source")
        total += info["math"]
    assert not bad, "\n".join(bad)
    assert total > 0, "no formula is typeset anywhere in the book"


@needs_book
def test_no_warning_noise_nor_frozen_progress_bars(crawl):
    """No page shows transformers' torchvision fallback notice or a progress bar stuck at 0 %."""
    bad = [f"{url[len(crawl['site']):]}: {m.group(0)!r} in …{info['text'][max(0, m.start() - 60):m.end() + 20]!r}"
           for url, info in sorted(crawl["pages"].items()) for m in [NOISE.search(info["text"])] if m]
    assert not bad, "\n".join(bad)


@needs_book
def test_code_and_figures_fit_the_column(crawl):
    """At the default width no notebook code cell scrolls sideways or sticks out of the column, and every output
    figure fits the column and has alt text of its own."""
    bad = []
    for url, info in sorted(crawl["pages"].items()):
        path = url[len(crawl["site"]):]
        bad += [f"{path}: code cell {s['cell']} is wider than the column ({s})" for s in info["scrolling"]]
        for fig in info["figures"]:
            if not fig["alt"].strip() or fig["alt"].startswith("No description"):
                bad.append(f"{path}: an output figure without alt text")
            if fig["width"] > info.get("column", fig["width"]) + 1:
                bad.append(f"{path}: a figure wider than the column ({fig})")
    assert not bad, "\n".join(bad[:30])


@needs_book
def test_home_page_shows_the_claims_table(crawl):
    """The paper's claims, beside what the embedded model shows, are on the book's home page."""
    results = (ROOT / "docs" / "results.md").read_text(encoding="utf-8")
    if "<!-- claims-table:start -->" not in results:
        pytest.skip("docs/results.md has no claims table")
    home = _page(crawl, "index.html")
    assert "The paper's claims on the embedded model" in home["text"] and home["tables"], "no claims table"


@needs_book
def test_from_disk_too(tmp_path):
    """Opened from disk (file://, no server), a notebook page with formulas typesets them all and wraps its code:
    nothing of either needs a server or the network."""
    pages = [p for p in sorted((ROOT / "notebooks").glob("*.ipynb")) if _source_formulas(f"notebooks/{p.stem}.html")]
    assert pages, "no notebook has a formula"
    path = f"notebooks/{pages[0].stem}.html"
    with _browser(tmp_path) as context:
        page = context.pages[0] if context.pages else context.new_page()
        page.goto((BOOK / path).resolve().as_uri(), wait_until="load", timeout=PAGE_TIMEOUT_MS)
        info = page.evaluate(_READING_JS, TEX_COMMAND.pattern)
        wrap = page.evaluate("() => Array.from(document.querySelectorAll('article .highlight-ipynb pre'))"
                             ".map(p => getComputedStyle(p).whiteSpace)")
    assert info["math"] == _source_formulas(path) and not info["tex"] and not info["scrolling"], info
    assert wrap and set(wrap) == {"pre-wrap"}, f"{path}: code cells' white-space {set(wrap)}"
