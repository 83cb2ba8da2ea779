"""The probe in a real browser: notebook 08 served on localhost by Voilà and by JupyterLab, driven by headless
Chromium (Debian's ``chromium`` package) through Playwright. Click a word, wait for the heat maps, check them,
intervene, pick two words in the two-word mode and check the four atom maps and the atoms, see that a result of an
image replaced while it computed never appears, and see an error message for an over-long prompt. In JupyterLab the test first runs all cells from the
Run menu, as a user would.

Skipped, with the reason, only where Chromium, Playwright, Voilà or JupyterLab is not installed (``.ci/run`` and the
``browser`` extra install them). Screenshots go to ``tmp_path``; the README's screenshot is taken by the Voilà test
with ``INFODECOMP_PROBE_SCREENSHOT=figures/shapes-tiny/08_probe.png`` (then the notebook's default settings are
used). JupyterLab runs with its config, data, runtime, settings and workspaces in ``tmp_path``, so nothing of the
user's is read or written.
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import os
import re
import secrets
import shutil
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

import pytest

from infodecomp.testing import free_port

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
    return _missing_module("playwright")


def _missing_module(module: str) -> str | None:
    if importlib.util.find_spec(module) is None:
        return f"{module} is not installed (pip install -e '.[browser]')"
    return None


if (why := _missing()) is not None:
    pytest.skip(f"browser test skipped: {why}", allow_module_level=True)


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


@contextlib.contextmanager
def _server(name: str, cmd: list[str], probe_url: str, log_path: Path, *, env: dict | None = None,
            cwd: Path = ROOT, start_timeout: float = 180):
    """Run a web server (``cmd``) until the block ends; wait until ``probe_url`` answers with any HTTP status.

    The server runs in its own process group, so stopping it also stops the kernels it started.
    """
    env = {**os.environ, "MPLBACKEND": "Agg", "PYTHONUNBUFFERED": "1", **(env or {})}
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, cwd=cwd, env=env, start_new_session=True)
        try:
            deadline = time.monotonic() + start_timeout
            while True:
                if proc.poll() is not None:
                    pytest.fail(f"{name} exited with {proc.returncode}:\n{log_path.read_text()[-3000:]}")
                try:  # any HTTP answer means the server is up
                    with urllib.request.urlopen(probe_url, timeout=5):
                        break
                except urllib.error.HTTPError:
                    break
                except (urllib.error.URLError, OSError):
                    if time.monotonic() > deadline:
                        pytest.fail(f"{name} did not answer on {probe_url} within {start_timeout:.0f} s:\n"
                                    f"{log_path.read_text()[-3000:]}")
                    time.sleep(0.5)
            yield proc
        finally:  # stop the server (and its kernel) we started, by its own process group
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
                try:
                    proc.wait(timeout=20)
                except subprocess.TimeoutExpired:
                    os.killpg(proc.pid, signal.SIGKILL)
                    proc.wait(timeout=20)


@pytest.fixture
def voila_url(tmp_path):
    """Serve the probe notebook with Voilà on a free localhost port; the server is stopped afterwards."""
    if (why := _missing_module("voila")) is not None:
        pytest.skip(f"Voilà browser test skipped: {why}")
    nb = _parameterised_notebook(tmp_path)
    port = free_port()
    url = f"http://127.0.0.1:{port}/"
    cmd = [sys.executable, "-m", "voila", str(nb), "--no-browser", f"--port={port}", "--Voila.ip=127.0.0.1",
           "--VoilaConfiguration.show_tracebacks=True", f"--Voila.root_dir={nb.parent}"]
    # GET / would already start a kernel, so probe a missing static file
    with _server("voila", cmd, url + "voila/static/nothing", tmp_path / "voila.log"):
        yield url


# JupyterLab settings for the test: no news or update toasts (closed network), and every cell kept in the DOM
# (the default "contentVisibility" windowing skips rendering cells out of view).
LAB_SETTINGS = {
    "@jupyterlab/apputils-extension/notification": {"fetchNews": "false", "checkForUpdates": False},
    "@jupyterlab/notebook-extension/tracker": {"windowingMode": "none"},
}


@pytest.fixture
def lab_url(tmp_path):
    """Serve a copy of the probe notebook with JupyterLab on a free localhost port, with a token; its config,
    data, runtime, settings and workspaces live in ``tmp_path``. Yields the notebook's URL (token included)."""
    if (why := _missing_module("jupyterlab")) is not None:
        pytest.skip(f"JupyterLab browser test skipped: {why}")
    nb = _parameterised_notebook(tmp_path)  # the kernel's working directory is nb.parent, inside tmp_path
    home = tmp_path / "jupyter"
    dirs = {name: home / name for name in ("config", "data", "runtime", "ipython", "settings", "workspaces")}
    for d in dirs.values():
        d.mkdir(parents=True)
    for plugin, values in LAB_SETTINGS.items():
        f = dirs["settings"] / f"{plugin}.jupyterlab-settings"
        f.parent.mkdir(parents=True, exist_ok=True)
        f.write_text(json.dumps(values))
    env = {"JUPYTER_CONFIG_DIR": str(dirs["config"]), "JUPYTER_DATA_DIR": str(dirs["data"]),
           "JUPYTER_RUNTIME_DIR": str(dirs["runtime"]), "IPYTHONDIR": str(dirs["ipython"]),
           "JUPYTERLAB_SETTINGS_DIR": str(dirs["settings"]), "JUPYTERLAB_WORKSPACES_DIR": str(dirs["workspaces"])}
    port, token = free_port(), secrets.token_hex(16)
    cmd = [sys.executable, "-m", "jupyterlab", "--no-browser", "--allow-root", "--ServerApp.ip=127.0.0.1",
           f"--ServerApp.port={port}", "--ServerApp.port_retries=0", f"--IdentityProvider.token={token}",
           f"--ServerApp.root_dir={nb.parent}", f"--LabApp.user_settings_dir={dirs['settings']}",
           f"--LabApp.workspaces_dir={dirs['workspaces']}", "--LabApp.news_url=None",
           "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate", "--LabApp.extension_manager=readonly"]
    base = f"http://127.0.0.1:{port}/"
    with _server("jupyter lab", cmd, base + "api/status", tmp_path / "jupyterlab.log", env=env, cwd=nb.parent):
        yield f"{base}lab/tree/{urllib.parse.quote(nb.name)}?token={token}"


@contextlib.contextmanager
def _chromium_page(tmp_path: Path, width: int = 1300, height: int = 1000):
    """A page of headless Chromium (a fresh profile in ``tmp_path``)."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        context = pw.chromium.launch_persistent_context(
            str(tmp_path / "chromium-profile"), executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS,
            viewport={"width": width, "height": height})
        try:
            yield context.pages[0] if context.pages else context.new_page()
        finally:
            context.close()


def _number(page, selector: str) -> float:
    text = page.locator(f"{selector} .probe-number").first.inner_text(timeout=CLICK_TIMEOUT_MS)
    assert re.fullmatch(r"-?\d+(\.\d+)?(e[+-]?\d+)?", text.strip()), f"{selector} shows {text!r}, not a number"
    return float(text)


def _wait_idle(page) -> None:
    """Wait until the probe's queued work is done (the widget drops its ``probe-busy`` class after the maps, the
    numbers and the status line are all set), so nothing is read half-drawn."""
    page.locator(".infodecomp-probe.probe-busy").wait_for(state="detached", timeout=CLICK_TIMEOUT_MS)


def _image_size(page, key: str) -> list:
    """[complete, naturalWidth, naturalHeight] of the probe's ``key`` panel, once its image has decoded (or after
    30 s, to report what is there)."""
    img = page.locator(f"img.probe-map-{key}")
    try:
        img.evaluate("el => el.complete && el.naturalWidth > 0 ? null : el.decode()", timeout=30_000)
    except Exception:  # an undecodable image: the assertion below shows its size
        pass
    return img.evaluate("el => [el.complete, el.naturalWidth, el.naturalHeight]")


def _word(page, text: str):
    return page.locator("button.probe-word", has_text=re.compile(rf"^\s*{re.escape(text)}\s*$"))


def _exercise_two_words(page, shot: Path) -> None:
    """The two-word mode (issue 26, item 6): pick "blue" and "circle", see the four atom maps and the atoms with
    their standard errors, switch the redundancy to MMI; screenshot the widget to ``shot``."""
    page.locator(".probe-mode button", has_text="two words").click()
    page.locator(".probe-map-pid_redundancy").wait_for(state="attached", timeout=60_000)
    _word(page, "blue").click()
    page.locator(".probe-message", has_text="now click word 2").wait_for(timeout=60_000)
    _word(page, "circle").click()
    page.locator(".probe-value-pid_synergy .probe-number").wait_for(timeout=CLICK_TIMEOUT_MS)
    _wait_idle(page)
    for atom in ("redundancy", "unique1", "unique2", "synergy"):
        value = _number(page, f".probe-value-pid_{atom}")
        assert value == value, atom  # a finite number, not NaN
        size = _image_size(page, f"pid_{atom}")
        assert size == [True, 192, 192], (atom, size)
    assert float(page.locator(".probe-value-pid_unique1 .probe-stderr").inner_text()) > 0  # the error bar
    info = page.locator(".probe-pid-info").inner_text()
    assert "c = “a small”" in info and "CCS" in info, info
    assert page.locator(".probe-error").count() == 0
    page.locator(".probe-redundancy button", has_text="MMI").click()  # redrawn from the same draws
    page.locator(".probe-pid-info", has_text="MMI").wait_for(timeout=60_000)
    page.wait_for_timeout(300)  # let the last images paint
    page.locator(".infodecomp-probe").screenshot(path=str(shot))


def _exercise_stale_result(page) -> None:
    """Issue 29, mechanism E: click a word, then choose another dataset item while its maps compute: the maps of
    the old image never appear beside the new one."""
    page.locator(".probe-mode button", has_text="one word").click()
    _word(page, "small").click()
    item = page.locator(".infodecomp-probe input[type=number]").first  # the dataset item
    item.fill("1")
    item.press("Enter")
    _word(page, "small").wait_for(state="detached", timeout=60_000)  # item 1's caption has no "small"
    _wait_idle(page)
    page.wait_for_timeout(500)  # a late result would be drawn by now
    assert page.locator(".probe-value-cmi .probe-number").count() == 0
    assert page.locator(".probe-value-mi .probe-number").count() == 0


def _exercise_probe(page, shot: Path) -> None:
    """Once the probe is on the page: click a word, check the maps and numbers, intervene, screenshot the widget to
    ``shot``; the two-word mode (screenshot beside ``shot``); a stale result is not shown; and an over-long prompt
    gives a message."""
    word = _word(page, "circle")
    word.wait_for(state="visible", timeout=PAGE_TIMEOUT_MS)
    words = [t.strip() for t in page.locator("button.probe-word").all_inner_texts()]
    assert words == ["a", "small", "blue", "circle"], words
    assert page.locator(".probe-value-cmi .probe-number").count() == 0  # nothing computed yet

    word.click()
    page.locator(".probe-value-cmi .probe-number").wait_for(timeout=CLICK_TIMEOUT_MS)
    _wait_idle(page)
    cmi, mi = _number(page, ".probe-value-cmi"), _number(page, ".probe-value-mi")
    assert cmi == cmi and mi == mi  # finite numbers, not NaN
    stderr = float(page.locator(".probe-value-cmi .probe-stderr").inner_text())
    assert stderr > 0
    for key in ("mi", "cmi", "attention"):  # the three heat maps are drawn images
        size = _image_size(page, key)
        assert size == [True, 192, 192], (key, size)
    assert page.locator(".probe-error").count() == 0
    assert "circle" in page.locator(".probe-status").inner_text()

    page.locator("button.probe-intervene").click()
    page.locator(".probe-value-change .probe-number").wait_for(timeout=CLICK_TIMEOUT_MS)
    _wait_idle(page)
    assert _number(page, ".probe-value-change") >= 0
    for key in ("reconstruction", "edited", "change"):
        assert _image_size(page, key)[1] == 192, key

    page.wait_for_timeout(300)  # let the last images paint
    page.locator(".infodecomp-probe").screenshot(path=str(shot))  # the widget, not the notebook's text
    assert shot.stat().st_size > 10_000

    _exercise_two_words(page, shot.with_name(shot.stem + "_two_words.png"))
    _exercise_stale_result(page)

    # an over-long prompt is a message in the page, not a traceback
    prompt = page.locator(".infodecomp-probe input[type=text]").first
    prompt.fill("a small red circle left of a big blue square " * 4)
    page.locator(".probe-message .probe-error").wait_for(timeout=60_000)
    assert "at most 24" in page.locator(".probe-message").inner_text()
    assert page.locator("text=Traceback").count() == 0


def test_probe_in_chromium_via_voila(voila_url, tmp_path):
    t0 = time.monotonic()
    with _chromium_page(tmp_path) as page:
        page.goto(voila_url, wait_until="domcontentloaded", timeout=PAGE_TIMEOUT_MS)
        # Voilà executes the notebook, then renders its widgets: the word buttons appear.
        shot = tmp_path / "08_probe.png"
        _exercise_probe(page, shot)
        if SCREENSHOT:
            target = Path(SCREENSHOT) if Path(SCREENSHOT).is_absolute() else ROOT / SCREENSHOT
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(shot, target)
    print(f"browser test (Voilà): page, click, maps, intervention and error in {time.monotonic() - t0:.1f} s")


def test_probe_in_chromium_via_jupyterlab(lab_url, tmp_path):
    t0 = time.monotonic()
    # large enough that JupyterLab's menus and toolbars do not cover the probe in its screenshot
    with _chromium_page(tmp_path, 1600, 1500) as page:
        try:
            page.goto(lab_url, wait_until="domcontentloaded", timeout=PAGE_TIMEOUT_MS)
            # the notebook is open and connected to a started kernel: the status bar says "Python 3 (ipykernel) |
            # Idle" (the toolbar's execution indicator already says idle while the status is "No Kernel |
            # Initializing", and running cells then asks for a kernel instead)
            page.locator(".jp-StatusBar-Widget").get_by_text(re.compile(r"^(?!No Kernel).+ \| Idle$")).first.wait_for(
                timeout=PAGE_TIMEOUT_MS)
            page.locator(".jp-NotebookPanel .jp-Cell").first.click()  # focus the notebook, not the file browser
            # Run → Run All Cells, from the menu bar
            page.locator("#jp-MainMenu .lm-MenuBar-item", has_text=re.compile(r"^\s*Run\s*$")).click()
            page.locator(".lm-Menu-item[data-command='runmenu:run-all']").click()
            first_prompt = page.locator(".jp-NotebookPanel .jp-CodeCell .jp-InputPrompt").first
            first_prompt.get_by_text(re.compile(r"\[(\*|\d+)\]")).wait_for(timeout=120_000)  # cells are running
            # the probe's cell has run and its widget is rendered in the output area
            page.locator(".jp-OutputArea-output button.probe-word").first.wait_for(state="visible",
                                                                                  timeout=PAGE_TIMEOUT_MS)
            _exercise_probe(page, tmp_path / "08_probe_jupyterlab.png")
        except Exception:
            page.screenshot(path=str(tmp_path / "jupyterlab_failure.png"))  # what the page showed, for the report
            raise
    print(f"browser test (JupyterLab): page, run all, click, maps, intervention and error in "
          f"{time.monotonic() - t0:.1f} s")
