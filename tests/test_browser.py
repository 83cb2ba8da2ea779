"""The probe in a real browser: notebook 08 served by Voilà on localhost, driven by headless Chromium (Debian's
``chromium`` package) through Playwright. Click a word, wait for the heat maps, check them, intervene, and see an
error message for an over-long prompt.

Skipped, with the reason, only where Chromium, Playwright or Voilà is not installed (``.ci/run`` installs them).
The screenshot goes to ``tmp_path``; the README's screenshot is taken by the same test with
``INFODECOMP_PROBE_SCREENSHOT=figures/shapes-tiny/08_probe.png`` (then the notebook's default settings are used).
"""

from __future__ import annotations

import importlib.util
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOK = ROOT / "notebooks" / "08_interactive_probe.ipynb"
CHROMIUM = os.environ.get("INFODECOMP_CHROMIUM", "/usr/bin/chromium")
SCREENSHOT = os.environ.get("INFODECOMP_PROBE_SCREENSHOT")  # also save the screenshot here (the README's)
# Flags for Chromium on a closed network: without the background-networking ones it waits on the network.
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--disable-dev-shm-usage"]
# Generous: the page executes the notebook (model load included) on a CPU that may be shared.
PAGE_TIMEOUT_MS = 600_000
CLICK_TIMEOUT_MS = 300_000

pytestmark = [pytest.mark.browser, pytest.mark.timeout(1800)]


def _missing() -> str | None:
    if not (os.path.isfile(CHROMIUM) and os.access(CHROMIUM, os.X_OK)):
        return (f"Chromium not found at {CHROMIUM} (install Debian's package: apt-get install -y chromium, as .ci/run "
                "does; or point INFODECOMP_CHROMIUM at a Chromium binary)")
    for module in ("playwright", "voila"):
        if importlib.util.find_spec(module) is None:
            return f"{module} is not installed (pip install -e '.[browser]')"
    return None


if (why := _missing()) is not None:
    pytest.skip(f"browser test skipped: {why}", allow_module_level=True)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _parameterised_notebook(tmp_path: Path) -> Path:
    """Notebook 08 with injected parameters (as papermill does): nothing clicked on start, outputs to tmp_path."""
    import nbformat
    from papermill.iorw import load_notebook_node
    from papermill.parameterize import parameterize_notebook

    params = {"CLICK": False, "OUT_DIR": str(tmp_path / "figures")}
    if not SCREENSHOT:  # a quick intervention for the test; the README's screenshot uses the defaults
        params.update(N_ITEMS=7, INTERVENTION_STEPS=6)
    nb = parameterize_notebook(load_notebook_node(str(NOTEBOOK)), params, kernel_name="python3",
                               language="python")
    out = tmp_path / "app" / NOTEBOOK.name
    out.parent.mkdir()
    nbformat.write(nb, out)
    return out


@pytest.fixture
def voila_url(tmp_path):
    """Serve the probe notebook with Voilà on a free localhost port; the server is stopped afterwards."""
    nb = _parameterised_notebook(tmp_path)
    port = _free_port()
    log = open(tmp_path / "voila.log", "wb")
    env = {**os.environ, "MPLBACKEND": "Agg", "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "voila", str(nb), "--no-browser", f"--port={port}", "--Voila.ip=127.0.0.1",
         "--VoilaConfiguration.show_tracebacks=True", f"--Voila.root_dir={nb.parent}"],
        stdout=log, stderr=subprocess.STDOUT, cwd=ROOT, env=env, start_new_session=True)
    url = f"http://127.0.0.1:{port}/"
    try:
        deadline = time.monotonic() + 120
        while True:
            if proc.poll() is not None:
                pytest.fail(f"voila exited with {proc.returncode}:\n{(tmp_path / 'voila.log').read_text()[-3000:]}")
            try:  # any HTTP answer means the server is up (GET / would already start a kernel)
                with urllib.request.urlopen(url + "voila/static/nothing", timeout=5):
                    break
            except urllib.error.HTTPError:
                break
            except (urllib.error.URLError, OSError):
                if time.monotonic() > deadline:
                    pytest.fail(f"voila did not answer on {url} within 120 s:\n"
                                f"{(tmp_path / 'voila.log').read_text()[-3000:]}")
                time.sleep(0.5)
        yield url
    finally:  # stop the server (and its kernel) we started, by its own process group
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=20)
        log.close()


def _number(page, selector: str) -> float:
    text = page.locator(f"{selector} .probe-number").first.inner_text(timeout=CLICK_TIMEOUT_MS)
    assert re.fullmatch(r"-?\d+(\.\d+)?(e[+-]?\d+)?", text.strip()), f"{selector} shows {text!r}, not a number"
    return float(text)


def test_probe_in_chromium_via_voila(voila_url, tmp_path):
    from playwright.sync_api import sync_playwright

    t0 = time.monotonic()
    with sync_playwright() as pw:
        context = pw.chromium.launch_persistent_context(
            str(tmp_path / "chromium-profile"), executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS,
            viewport={"width": 1300, "height": 1000})
        try:
            page = context.pages[0] if context.pages else context.new_page()
            page.goto(voila_url, wait_until="domcontentloaded", timeout=PAGE_TIMEOUT_MS)
            # Voilà executes the notebook, then renders its widgets: the word buttons appear.
            word = page.locator("button.probe-word", has_text=re.compile(r"^\s*circle\s*$"))
            word.wait_for(state="visible", timeout=PAGE_TIMEOUT_MS)
            words = [t.strip() for t in page.locator("button.probe-word").all_inner_texts()]
            assert words == ["a", "small", "blue", "circle"], words
            assert page.locator(".probe-value-cmi .probe-number").count() == 0  # nothing computed yet

            word.click()
            page.locator(".probe-value-cmi .probe-number").wait_for(timeout=CLICK_TIMEOUT_MS)
            cmi, mi = _number(page, ".probe-value-cmi"), _number(page, ".probe-value-mi")
            assert cmi == cmi and mi == mi  # finite numbers, not NaN
            stderr = float(page.locator(".probe-value-cmi .probe-stderr").inner_text())
            assert stderr > 0
            for key in ("mi", "cmi", "attention"):  # the three heat maps are drawn images
                img = page.locator(f"img.probe-map-{key}")
                size = img.evaluate("el => [el.complete, el.naturalWidth, el.naturalHeight]")
                assert size == [True, 192, 192], (key, size)
            assert page.locator(".probe-error").count() == 0
            assert "circle" in page.locator(".probe-status").inner_text()

            page.locator("button.probe-intervene").click()
            page.locator(".probe-value-change .probe-number").wait_for(timeout=CLICK_TIMEOUT_MS)
            assert _number(page, ".probe-value-change") >= 0
            for key in ("reconstruction", "edited", "change"):
                assert page.locator(f"img.probe-map-{key}").evaluate("el => el.naturalWidth") == 192, key

            page.wait_for_timeout(300)  # let the last images paint
            shot = tmp_path / "08_probe.png"
            page.locator(".infodecomp-probe").screenshot(path=str(shot))  # the widget, not the notebook's text
            assert shot.stat().st_size > 10_000
            if SCREENSHOT:
                target = Path(SCREENSHOT) if Path(SCREENSHOT).is_absolute() else ROOT / SCREENSHOT
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(shot, target)

            # an over-long prompt is a message in the page, not a traceback
            prompt = page.locator(".infodecomp-probe input[type=text]").first
            prompt.fill("a small red circle left of a big blue square " * 4)
            page.locator(".probe-message .probe-error").wait_for(timeout=60_000)
            assert "at most 24" in page.locator(".probe-message").inner_text()
            assert page.locator("text=Traceback").count() == 0
        finally:
            context.close()
    print(f"browser test: page, click, maps, intervention and error in {time.monotonic() - t0:.1f} s")
