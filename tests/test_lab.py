"""The learner's path: JupyterLab on a working copy of chapter 3, driven in headless Chromium.

The test makes the working copies as `make lab` does (``tools/lab_copies.py``, into a temporary directory),
starts JupyterLab on 127.0.0.1 with a token (``--allow-root`` when run as root, as on CI), opens chapter 3,
runs ONLY the explorer's cell (it must not need the chapter's other cells), and checks that:

* the explorer renders as real widgets (a slider, two dropdowns, an image), not as a text repr;
* moving the slider, changing the image and changing the model each change the picture, and so does
  deforming a test image that is not in the cache (the box below the explorer);
* the browser console shows no error;
* every committed notebook is byte-identical afterwards (the copies, not the chapters, are what Lab saves);
* every process the test started (the server, its kernels) is gone at the end.

Settings for the run only (a temporary ``JUPYTERLAB_SETTINGS_DIR``): every cell is kept in the page (no
windowed rendering, so the explorer's cell can be found), and no news pop-up.
"""

from __future__ import annotations

import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator

import pytest

from conftest import REPO_ROOT, notebook_digests

sys.path.insert(0, str(REPO_ROOT / "tools"))
import lab_copies

pytestmark = [pytest.mark.lab, pytest.mark.slow]

CHAPTER = "03_deformations.ipynb"
EXPLORER_CALL = "deformation_explorer()"
NEW_IMAGE = 1234  # deformed on demand in the browser
SETTINGS = {
    "@jupyterlab/notebook-extension/tracker.jupyterlab-settings": {"windowingMode": "none"},
    "@jupyterlab/apputils-extension/notification.jupyterlab-settings": {"fetchNews": "false"},
}
START_TIMEOUT_S = 90
KERNEL_TIMEOUT_MS = 180_000  # first run: kernel start, imports, loading the cache


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]



def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    return True


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    """JupyterLab serving fresh working copies; stopped (with every kernel) at the end."""
    work = tmp_path_factory.mktemp("lab")
    copies = work / "copies"
    lab_copies.make_copies(copies, reset=True)
    for rel, value in SETTINGS.items():
        path = work / "settings" / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(value))
    port, token = _free_port(), secrets.token_hex(16)
    cmd = [sys.executable, "-m", "jupyterlab", "--no-browser", "--ip=127.0.0.1", f"--port={port}",
           "--ServerApp.port_retries=0", f"--IdentityProvider.token={token}", f"--ServerApp.root_dir={copies}"]
    if os.geteuid() == 0:
        cmd.append("--allow-root")
    env = {**os.environ, "JUPYTERLAB_SETTINGS_DIR": str(work / "settings"),
           "JUPYTERLAB_WORKSPACES_DIR": str(work / "workspaces"), "JUPYTER_RUNTIME_DIR": str(work / "runtime"),
           "OMP_NUM_THREADS": "1"}
    log = work / "lab.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=env, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + START_TIMEOUT_S
        while True:
            try:
                with urllib.request.urlopen(f"{url}/api/status?token={token}", timeout=2) as r:
                    if r.status == 200:
                        break
            except OSError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"JupyterLab did not start ({' '.join(cmd)}):\n{log.read_text()[-3000:]}")
            time.sleep(0.5)
        yield {"url": url, "token": token, "copies": str(copies), "log": str(log)}
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)
        for _ in range(40):  # kernels leave a moment after the server
            if not _group_alive(proc.pid):
                break
            time.sleep(0.25)
        else:
            os.killpg(proc.pid, signal.SIGKILL)
            pytest.fail("processes started by JupyterLab were still running after it stopped")


def _changed(img, before: bytes, timeout_s: float = 20.0) -> bytes:
    """The image's new screenshot once it differs from ``before``; fails after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        now = img.screenshot()
        if now != before:
            return now
        time.sleep(0.2)
    pytest.fail("the explorer's image did not change")


def test_explorer_runs_alone_in_lab_and_leaves_the_book_untouched(lab: dict[str, str], browser) -> None:
    before = notebook_digests()
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    errors: list[str] = []
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: errors.append(str(e)))
    failed: list[str] = []
    page.on("response", lambda r: failed.append(f"{r.status} {r.url}") if r.status >= 400 else None)
    try:
        page.goto(f"{lab['url']}/lab/tree/{CHAPTER}?token={lab['token']}")
        cell = page.locator(".jp-CodeCell").filter(has_text=EXPLORER_CALL)
        cell.wait_for(timeout=KERNEL_TIMEOUT_MS)
        page.locator(".jp-Notebook-ExecutionIndicator[data-status='idle']").first.wait_for(timeout=KERNEL_TIMEOUT_MS)
        cell.scroll_into_view_if_needed()
        cell.locator(".jp-InputArea-editor").click()
        page.keyboard.press("Shift+Enter")

        out = cell.locator(".jp-OutputArea")
        slider = out.locator(".widget-slider")
        slider.wait_for(timeout=KERNEL_TIMEOUT_MS)
        selects = out.locator(".widget-dropdown select")
        img = out.locator("img.widget-image")
        assert selects.count() == 2, "the model and image dropdowns should render as <select> widgets"
        img.wait_for()
        assert out.locator(".jp-RenderedText").count() == 0, (
            f"the explorer printed text instead of (or beside) widgets: {out.inner_text()[:500]}")

        shot = img.screenshot()
        slider.locator(".noUi-handle").focus()
        for _ in range(5):
            page.keyboard.press("ArrowRight")
        shot = _changed(img, shot)
        selects.nth(1).select_option(index=1)  # another image
        shot = _changed(img, shot)
        selects.nth(0).select_option(index=len(selects.nth(0).locator("option").all()) - 1)  # another model
        shot = _changed(img, shot)
        new_option = selects.nth(1).locator("option", has_text=f"#{NEW_IMAGE}:")
        assert new_option.count() == 0, f"test image {NEW_IMAGE} is cached: choose another for this test"
        out.locator(".widget-text input").fill(str(NEW_IMAGE))  # a test image that is not cached
        out.locator("button", has_text="deform it").click()
        new_option.wait_for(state="attached", timeout=60_000)
        _changed(img, shot)
    finally:
        page.close()
    assert not errors, f"console errors in JupyterLab: {errors}; failed requests: {failed}"
    assert notebook_digests() == before, "a committed notebook changed while a working copy was used in Lab"
