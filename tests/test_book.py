"""The read-along book in a real browser: the site that ``make book`` (or, in CI, ``make book-ci``) built from the
executed notebooks, served on localhost and opened in headless Chromium (Debian's ``chromium``, driven by
Playwright, as tests/test_browser.py does).

It checks that every notebook of ``notebooks/`` and every document of ``docs/`` is a page of the book, that each
notebook page shows its provenance note and renders every figure and table its executed notebook holds (and that
the book holds at least one of each), that every link and image of every page resolves (anchors included), and
that no page loads anything from the network.

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
            info["status"] = resp.status if resp else None
            pages[url] = info
            for link in info["links"]:
                target, _ = urldefrag(link)
                if target.startswith(site) and target.endswith(".html") and target not in pages:
                    todo.append(target)
        print(f"book crawl: {len(pages)} pages in {time.monotonic() - t0:.1f} s")
    return {"site": site, "pages": pages, "external": external}


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
