"""JupyterLab in a real (headless) Chromium, as a person uses it.

A ``.py`` notebook double-clicked in the file browser opens as a notebook (the
project's Lab settings in ``lab/``); notebook 03 runs in Lab on the quick profile
and its token explorer draws, redraws and refuses bad tokens; opening and saving
every notebook leaves its committed ``.py`` unchanged (``jupytext.toml``).

Needs Chromium (``apt-get install chromium-headless-shell``; Playwright drives it
through ``executable_path``, it never downloads a browser) and the ``dev`` extra
(jupyterlab, playwright). Skipped when no Chromium is found.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from contextlib import contextmanager
from pathlib import Path

import pytest

from omnijet_lib.notebooks import read_profile, run_notebook

pytestmark = pytest.mark.browser

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.py"))
LAB_SETTINGS = ROOT / "lab"  # a Jupyter config dir: labconfig/default_setting_overrides.json (as `make lab`)
CHROMIUM_NAMES = ("chromium-headless-shell", "chromium")
CHROMIUM_PATHS = (
    "/usr/bin/chromium-headless-shell",
    "/usr/lib/chromium/chromium-headless-shell",
    "/usr/lib/chromium-headless-shell/chromium-headless-shell",
    "/usr/bin/chromium",
    "/usr/lib/chromium/chromium",
)
CHROMIUM_ARGS = [
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
]
# Settings of the throw-away user of this test only (its own JUPYTER_CONFIG_DIR): no news
# toast over the page, and no autosave that could write the inserted parameters cell to disk.
TEST_USER_SETTINGS = {
    "@jupyterlab/apputils-extension/notification": {"fetchNews": "false", "checkForUpdates": False},
    "@jupyterlab/docmanager-extension/plugin": {"autosave": False},
}
RUN_TIMEOUT = 300  # s: notebook 03 on the quick profile takes ~20 s here
UI_TIMEOUT = 30_000  # ms, for one step in the page


def find_chromium() -> str | None:
    for name in CHROMIUM_NAMES:
        if path := shutil.which(name):
            return path
    return next((p for p in CHROMIUM_PATHS if os.access(p, os.X_OK)), None)


CHROMIUM = find_chromium()
if CHROMIUM is None:
    pytest.skip("no Chromium found (apt-get install chromium-headless-shell)", allow_module_level=True)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def quick_parameters(stem: str, shared: Path) -> dict:
    """The quick profile's parameters of a notebook (what `make demo` runs), every folder in ``shared``."""
    from test_notebooks import in_shared_folders

    return in_shared_folders(stem, read_profile("quick", stem), shared)


@pytest.fixture(scope="module")
def workdir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("browser")


@pytest.fixture(scope="module")
def notebook_files():
    """Leave notebooks/ as found: the .ipynb Lab pairs and its checkpoints are git-ignored, but may be a user's."""
    folder, checkpoints = ROOT / "notebooks", ROOT / "notebooks" / ".ipynb_checkpoints"

    def ignored():
        return [*folder.glob("*.ipynb"), *checkpoints.glob("*")]

    before = {path: path.read_bytes() for path in ignored()}
    had_checkpoints = checkpoints.exists()
    yield
    for path in ignored():
        if path not in before:
            path.unlink()
    for path, content in before.items():
        path.write_bytes(content)
    if not had_checkpoints and checkpoints.exists() and not any(checkpoints.iterdir()):
        checkpoints.rmdir()


@pytest.fixture(scope="module")
def lab(workdir, notebook_files):
    """JupyterLab from this environment on a free port, with the project's settings and its own Jupyter dirs."""
    pytest.importorskip("jupyterlab", reason="jupyterlab not installed: pip install -e '.[dev]'")
    jupyter = {name: workdir / "jupyter" / name for name in ("config", "data", "runtime")}
    for name, content in TEST_USER_SETTINGS.items():
        path = jupyter["config"] / "lab" / "user-settings" / f"{name}.jupyterlab-settings"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(content))
    env = {k: v for k, v in os.environ.items() if not k.startswith("JUPYTER") and k != "MPLBACKEND"}
    env.update(
        JUPYTER_CONFIG_DIR=str(jupyter["config"]),
        JUPYTER_DATA_DIR=str(jupyter["data"]),
        JUPYTER_RUNTIME_DIR=str(jupyter["runtime"]),
        JUPYTER_CONFIG_PATH=str(LAB_SETTINGS),
        JUPYTER_PLATFORM_DIRS="1",
        PYTHONUNBUFFERED="1",
    )
    port, token = free_port(), os.urandom(16).hex()
    command = [
        sys.executable, "-m", "jupyterlab", "--no-browser", "--ServerApp.ip=127.0.0.1", f"--ServerApp.port={port}",
        "--ServerApp.port_retries=0", f"--IdentityProvider.token={token}", f"--ServerApp.root_dir={ROOT}",
        "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate",
    ]  # fmt: skip
    if os.geteuid() == 0:
        command.append("--allow-root")
    log_path = workdir / "jupyterlab.log"
    with open(log_path, "wb") as log:
        process = subprocess.Popen(
            command, env=env, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while True:
        try:
            with urllib.request.urlopen(f"{base}/api/status?token={token}", timeout=2):
                break
        except OSError:
            if process.poll() is not None or time.monotonic() > deadline:
                process.kill()
                process.wait()
                pytest.fail(f"JupyterLab did not start:\n{log_path.read_text()[-3000:]}")
            time.sleep(0.3)
    yield {"url": f"{base}/lab?reset&token={token}", "log": log_path}
    process.send_signal(signal.SIGTERM)  # the server shuts its kernels down
    try:
        process.wait(timeout=20)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()


@pytest.fixture(scope="module")
def browser(workdir):
    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright not installed: pip install -e '.[dev]'")
    args = [*CHROMIUM_ARGS, *(["--no-sandbox"] if os.geteuid() == 0 else [])]
    with sync_api.sync_playwright() as playwright:
        context = playwright.chromium.launch_persistent_context(
            workdir / "chromium-profile", executable_path=CHROMIUM, headless=True, args=args,
            viewport={"width": 1400, "height": 900},
        )  # fmt: skip
        context.set_default_timeout(UI_TIMEOUT)
        yield context
        context.close()


@pytest.fixture
def page(browser, lab, workdir, request):
    """A fresh Lab page (workspace reset); on failure a screenshot in the tmp dir and the end of Lab's log."""
    page = browser.new_page()
    page.goto(lab["url"])
    page.locator(".jp-DirListing-item").first.wait_for()
    yield page
    if getattr(getattr(request.node, "rep_call", None), "failed", False):  # conftest's pytest_runtest_makereport
        shot = workdir / f"{request.node.name}-failure.png"
        page.screenshot(path=shot, full_page=True)
        print(f"screenshot of the failure: {shot}")
        print(f"JupyterLab log ({lab['log']}):\n{lab['log'].read_text()[-3000:]}")
    page.close()


# --- steps in the page -------------------------------------------------------------------------------------------


def open_in_file_browser(page, name: str):
    """Double-click ``notebooks/name`` in the file browser; return the main-area widget it opened."""
    listing = page.locator(".jp-FileBrowser .jp-DirListing-content")
    crumbs = page.locator(".jp-FileBrowser .jp-BreadCrumbs")
    if not re.search(r"notebooks\s*/?\s*$", crumbs.inner_text().strip()):
        listing.locator(".jp-DirListing-item", has=page.get_by_text("notebooks", exact=True)).dblclick()
        page.wait_for_function("() => document.querySelector('.jp-FileBrowser .jp-BreadCrumbs')"
                               ".innerText.includes('notebooks')")  # fmt: skip
    tab = page.locator(".jp-mod-current.lm-TabBar-tab", has_text=name)
    for attempt in range(3):  # once more if the listing refreshed under the mouse (rows move when files appear)
        listing.locator(".jp-DirListing-item", has=page.get_by_text(name, exact=True)).dblclick()
        try:
            tab.wait_for(timeout=UI_TIMEOUT / 3)
            break
        except Exception:
            if attempt == 2:
                raise
    widget_id = tab.get_attribute("data-id")
    widget = page.locator(f"#{widget_id}")
    widget.wait_for()
    return widget


def wait_kernel_idle(page, timeout=UI_TIMEOUT):
    """Wait until the current notebook's kernel is connected and idle: "Python 3 (ipykernel) | Idle" in the
    status bar (the toolbar's execution indicator says idle before there is a kernel)."""
    status = page.locator("#jp-main-statusbar").get_by_text(re.compile(r"^(?!No Kernel).+ \| Idle$"))
    status.wait_for(timeout=timeout)


def close_current_tab(page, *, answer: str):
    """Close the current tab; answer Lab's "Save your work" dialog, if it comes, with ``answer`` (Discard or Save)."""
    tab = page.locator(".lm-DockPanel-tabBar .lm-TabBar-tab.jp-mod-current")
    widget, dialog = page.locator(f"#{tab.get_attribute('data-id')}"), page.locator(".jp-Dialog")
    tab.locator(".lm-TabBar-tabCloseIcon").click()
    wait_until(lambda: widget.count() == 0 or dialog.count() > 0, "the tab did not close")
    if dialog.count():
        dialog.locator("button", has_text=answer).click()
        dialog.wait_for(state="detached")
    widget.wait_for(state="detached")


def run_all(page):
    page.get_by_role("menuitem", name="Run", exact=True).click()
    page.get_by_role("menuitem", name="Run All Cells", exact=True).click()


def wait_until(condition, message: str, timeout: float = UI_TIMEOUT / 1000):
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, message
        time.sleep(0.1)


@contextmanager
def step(name: str):
    """Name the step that failed in the error (the screenshot shows where)."""
    try:
        yield
    except Exception as err:
        raise AssertionError(f"{name}: {err}") from err


# --- the tests ---------------------------------------------------------------------------------------------------


def test_token_space_runs_in_lab(page, workdir):
    """03 opens as a notebook, runs with the quick profile injected, and its token explorer works."""
    shared = workdir / "shared"
    prerequisite = "02_tokenization_quality"
    run_notebook(ROOT / "notebooks" / f"{prerequisite}.py", parameters=quick_parameters(prerequisite, shared),
                 progress=False)  # fmt: skip
    parameters = quick_parameters("03_token_space", shared)
    out = Path(parameters["output_dir"])

    with step("double-click opens 03 as a notebook"):
        panel = open_in_file_browser(page, "03_token_space.py")
        assert "jp-NotebookPanel" in panel.get_attribute("class")
        assert panel.locator(".jp-FileEditor").count() == 0
        panel.locator(".jp-Notebook .jp-Cell").first.wait_for()

    with step("insert the parameters after the 'parameters' cell and run all"):
        import jupytext
        from papermill.translators import translate_parameters

        cells = jupytext.read(ROOT / "notebooks" / "03_token_space.py").cells
        index = next(i for i, c in enumerate(cells) if "parameters" in c.metadata.get("tags", []))
        injected = translate_parameters("python3", "python", parameters, "Parameters")
        wait_kernel_idle(page, timeout=60_000)
        panel.locator(".jp-Notebook .jp-Cell").nth(index).locator(".jp-InputPrompt").click()
        page.keyboard.press("Escape")
        page.keyboard.press("b")  # a new code cell below, selected
        new_cell = panel.locator(".jp-Notebook .jp-Cell").nth(index + 1)
        new_cell.locator(".cm-content").click()
        page.keyboard.insert_text(injected.strip())
        page.keyboard.press("Escape")
        assert "n_contexts = " in new_cell.locator(".cm-content").inner_text()
        run_all(page)

    with step("notebook 03 runs to its end"):
        errors = panel.locator(".jp-OutputArea-output[data-mime-type='application/vnd.jupyter.stderr']",
                               has_text="Traceback")  # fmt: skip
        deadline = time.monotonic() + RUN_TIMEOUT
        while not (out / "metrics.json").exists():
            assert errors.count() == 0, errors.first.inner_text()[-3000:]
            assert time.monotonic() < deadline, f"not done in {RUN_TIMEOUT} s"
            page.wait_for_timeout(500)
        wait_kernel_idle(page)
        metrics = json.loads((out / "metrics.json").read_text())

    explorer = panel.locator(".jp-OutputArea-output", has=page.locator(".widget-dropdown")).first
    picture = explorer.locator("img")
    message = explorer.locator(".widget-html")
    invalid = re.compile(r"tokens must be integers in 1\.\.\d+")

    def draw(tokens: str):
        explorer.locator(".widget-text input").fill(tokens)
        explorer.get_by_role("button", name="draw").click()

    def redrawn(old: bytes) -> bytes:
        wait_until(lambda: message.inner_text().strip() == "" and picture.screenshot() != old, "no new picture")
        return picture.screenshot()

    with step("the token explorer renders: dropdown, text box, draw button, a picture"):
        explorer.scroll_into_view_if_needed()  # Lab skips rendering what is out of view
        assert explorer.locator(".widget-dropdown select").count() == 1
        assert explorer.locator(".widget-text input").count() == 1
        assert explorer.get_by_role("button", name="draw").count() == 1
        picture.wait_for()
        shown = picture.screenshot()

    with step("a token typed and draw pressed: a new picture"):
        draw("7")
        shown = redrawn(shown)

    for bad in ("abc", "0"):
        with step(f"token {bad!r}: the message"):
            draw(bad)
            wait_until(lambda: invalid.search(message.inner_text()), "no message")
            draw("9" if bad == "abc" else "7")  # and it draws again after
            shown = redrawn(shown)

    with step("the figures saved are shown inline too"):
        inline = panel.locator(".jp-RenderedImage img")  # image outputs; the explorer's picture is a widget
        assert inline.count() >= len(metrics["figures"]), (
            f"{inline.count()} figures inline, {len(metrics['figures'])} saved"
        )

    with step("close 03 without saving"):
        before = (ROOT / "notebooks" / "03_token_space.py").read_bytes()
        close_current_tab(page, answer="Discard")
        assert (ROOT / "notebooks" / "03_token_space.py").read_bytes() == before


def git_status_notebooks() -> str:
    return subprocess.run(
        ["git", "status", "--porcelain", "--", "notebooks"], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout


def test_saving_from_lab_leaves_notebooks_unchanged(page):
    """Open every notebook, save it (Ctrl+S), close it: the committed .py stay as they are."""
    status = git_status_notebooks()  # empty on a clean checkout; others' uncommitted edits stay as they are
    for notebook in NOTEBOOKS:
        content, mtime = notebook.read_bytes(), notebook.stat().st_mtime_ns
        with step(f"open, save and close {notebook.name}"):
            panel = open_in_file_browser(page, notebook.name)
            assert "jp-NotebookPanel" in panel.get_attribute("class")
            wait_kernel_idle(page, timeout=60_000)  # Lab writes the kernel's spec into the metadata
            panel.locator(".jp-Notebook .jp-Cell").first.locator(".jp-InputPrompt").click()
            page.keyboard.press("Control+s")
            wait_until(lambda: notebook.stat().st_mtime_ns != mtime, "not saved")  # noqa: B023 - called here
            # Lab may still change the notebook's metadata (the kernel's language_info) after the save: if it
            # asks on closing, save again, as a user would; the file on disk must not change either way
            close_current_tab(page, answer="Save")
            # the paired .ipynb appears in the listing: wait, so the next double-click hits a row that stays put
            listing = page.locator(".jp-FileBrowser .jp-DirListing-content")
            listing.get_by_text(f"{notebook.stem}.ipynb", exact=True).wait_for()
        assert notebook.read_bytes().decode() == content.decode(), f"saving from Lab changed {notebook.name}"
    assert git_status_notebooks() == status
