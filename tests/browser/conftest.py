"""Browser fixtures: a real JupyterLab server on loopback and headless Chromium.

Reusable by any browser test:

* ``jupyterlab`` (session): a JupyterLab 4 server in a temporary root folder with
  nbmagic's prebuilt extension loaded from the working tree; ``.url``, ``.token``,
  ``.root``, ``.api(method, path, body)``, ``.write_notebook(name, cells)``.
* ``browser`` (session): Debian's ``/usr/bin/chromium`` driven by playwright.
* ``lab`` (per test): a fresh page plus helpers: ``lab.open_notebook(name)``
  (JupyterLab, or ``ui="notebook"`` for Notebook 7; waits for the kernel),
  ``lab.cells()``, ``lab.run_cell(i)``, ``lab.wait_executed(i)``,
  ``lab.wait_idle(name)``, ``lab.screenshot(path)``; ``lab.page`` is the page.
"""

from __future__ import annotations

import json
import os
import secrets
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[2]
LABEXTENSION = REPO / "nbmagic" / "labextension"
CHROMIUM = os.environ.get("NBMAGIC_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class LabServer:
    """A running JupyterLab server (see the module docstring)."""

    def __init__(self, root: Path, port: int, token: str, proc: subprocess.Popen[bytes], log: Path):
        self.root, self.port, self.token, self.proc, self.log = root, port, token, proc, log
        self.url = f"http://127.0.0.1:{port}"

    def api(self, method: str, path: str, body: Any = None) -> Any:
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(
            f"{self.url}{path}",
            data=data,
            method=method,
            headers={"Authorization": f"token {self.token}", "Content-Type": "application/json"},
        )
        with urllib.request.urlopen(req, timeout=30) as resp:
            text = resp.read()
        return json.loads(text) if text else None

    def write_notebook(self, name: str, cells: list[Any]) -> str:
        """Create ``name`` in the server root holding ``cells`` (nbformat dicts)."""
        import nbformat

        nb = nbformat.v4.new_notebook(
            cells=[nbformat.from_dict(c) for c in cells],
            metadata={"kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}},
        )
        nbformat.validate(nb)
        self.api("PUT", f"/api/contents/{name}", {"type": "notebook", "format": "json", "content": nb})
        return name

    def lab_url(self, path: str = "") -> str:
        where = f"/lab/tree/{path}" if path else "/lab"
        return f"{self.url}{where}?reset&token={self.token}"

    def notebook7_url(self, path: str) -> str:
        """The same notebook in Notebook 7's UI (served by the same server)."""
        return f"{self.url}/notebooks/{path}?token={self.token}"

    def kernel_ready(self, path: str) -> bool:
        """A browser is connected to the notebook's kernel, and the kernel is idle."""
        for session in self.api("GET", "/api/sessions") or []:
            kernel = session.get("kernel") or {}
            if session.get("path") == path:
                return kernel.get("execution_state") == "idle" and kernel.get("connections", 0) > 0
        return False

    def shutdown_kernels(self) -> None:
        for kernel in self.api("GET", "/api/kernels") or []:
            try:
                self.api("DELETE", f"/api/kernels/{kernel['id']}")
            except urllib.error.URLError:
                pass


@pytest.fixture(scope="package")
def jupyterlab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LabServer]:
    base = tmp_path_factory.mktemp("jupyterlab")
    root, extdir = base / "root", base / "labextensions"
    root.mkdir()
    extdir.mkdir()
    if not (LABEXTENSION / "package.json").is_file():
        pytest.fail("nbmagic/labextension is not built: run scripts/build_labextension.sh")
    # The server finds extensions as <path>/<name>/package.json; point it at the
    # working tree so the test always runs the committed build.
    (extdir / "nbmagic").symlink_to(LABEXTENSION, target_is_directory=True)
    port, token = _free_port(), secrets.token_hex(16)
    env = {
        **os.environ,
        "JUPYTER_CONFIG_DIR": str(base / "config"),
        "JUPYTER_RUNTIME_DIR": str(base / "runtime"),
        "IPYTHONDIR": str(base / "ipython"),
        "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])),
    }
    # No news / update toasts over the notebook (they would also need the network).
    notification = base / "settings" / "@jupyterlab" / "apputils-extension"
    notification.mkdir(parents=True)
    (notification / "notification.jupyterlab-settings").write_text(
        json.dumps({"fetchNews": "false", "checkForUpdates": False})
    )
    log = base / "server.log"
    cmd = [
        sys.executable, "-m", "jupyterlab",
        "--allow-root", "--no-browser",
        "--ServerApp.ip=127.0.0.1", f"--ServerApp.port={port}", "--ServerApp.port_retries=0",
        f"--ServerApp.token={token}", f"--ServerApp.root_dir={root}",
        f"--LabServerApp.extra_labextensions_path={extdir}",  # JupyterLab and Notebook 7
        f"--LabApp.user_settings_dir={base / 'settings'}",
        f"--LabApp.workspaces_dir={base / 'workspaces'}",
        "--LabApp.news_url=None",
        "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate",
    ]  # fmt: skip
    with open(log, "wb") as fh:
        proc = subprocess.Popen(cmd, stdout=fh, stderr=subprocess.STDOUT, env=env, cwd=root)
    server = LabServer(root, port, token, proc, log)
    deadline = time.monotonic() + 60
    while True:
        try:
            server.api("GET", "/api/status")
            break
        except (urllib.error.URLError, ConnectionError, OSError):
            if proc.poll() is not None or time.monotonic() > deadline:
                proc.kill()
                pytest.fail(f"JupyterLab did not start:\n{log.read_text()[-3000:]}")
            time.sleep(0.2)
    try:
        yield server
    finally:
        try:
            server.shutdown_kernels()
        except Exception:
            pass
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()


# package scope: the sync Playwright API keeps an event loop running in the main thread while
# it is started, which would break asyncio.run() in every later test outside tests/browser
@pytest.fixture(scope="package")
def browser() -> Iterator[Any]:
    if not Path(CHROMIUM).exists():
        pytest.fail(
            f"{CHROMIUM} not found: install Debian's chromium (apt-get install -y chromium) "
            "or set NBMAGIC_CHROMIUM; never use playwright's browser installer here."
        )
    from playwright.sync_api import sync_playwright

    pw = sync_playwright().start()
    chromium = pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
    try:
        yield chromium
    finally:
        chromium.close()
        pw.stop()


class Lab:
    """A JupyterLab page with helpers for notebooks (see the module docstring)."""

    CELLS = ".jp-NotebookPanel:not(.lm-mod-hidden) .jp-Notebook .jp-Cell"

    def __init__(self, page: Any, server: LabServer):
        self.page, self.server = page, server

    def open_notebook(self, name: str, timeout: float = 60, *, ui: str = "lab") -> None:
        """Open ``name`` in JupyterLab (``ui="lab"``) or Notebook 7 (``ui="notebook"``);
        wait until its kernel is connected and idle."""
        url = self.server.lab_url(name) if ui == "lab" else self.server.notebook7_url(name)
        self.page.goto(url)
        self.page.wait_for_selector(self.CELLS, timeout=timeout * 1000)
        self.wait_idle(name, timeout)

    def wait_idle(self, name: str, timeout: float = 60) -> None:
        """Wait until the server says a browser is connected to ``name``'s idle kernel
        and the page agrees (right after load the page's indicator flashes "idle"
        before the kernel connects, so the page alone is not enough)."""
        deadline = time.monotonic() + timeout
        while not self.server.kernel_ready(name):
            if time.monotonic() > deadline:
                raise TimeoutError(f"the kernel of {name} did not become ready")
            time.sleep(0.2)
        self.page.wait_for_function(
            """() => {
                const s = document.querySelector(
                  '.jp-NotebookPanel:not(.lm-mod-hidden) .jp-Notebook-ExecutionIndicator');
                return !s || s.getAttribute('data-status') === 'idle';
            }""",
            timeout=max(1.0, deadline - time.monotonic()) * 1000,
        )

    def wait_executed(self, index: int, timeout: float = 60) -> None:
        """Wait until cell ``index`` shows an execution count (it finished running)."""
        self.page.wait_for_function(
            """([sel, i]) => {
                const c = document.querySelectorAll(sel)[i];
                const p = c && c.querySelector('.jp-InputPrompt');
                return p && /\\[\\d+\\]/.test(p.innerText);
            }""",
            arg=[self.CELLS, index],
            timeout=timeout * 1000,
        )

    def cells(self) -> Any:
        return self.page.locator(self.CELLS)

    def select_cell(self, index: int) -> None:
        self.cells().nth(index).locator(".jp-InputPrompt").click()

    def run_cell(self, index: int, *, advance: bool = True) -> None:
        """Select cell ``index`` and run it (Shift+Enter moves to the next cell)."""
        self.select_cell(index)
        self.page.keyboard.press("Shift+Enter" if advance else "Control+Enter")

    def screenshot(self, path: str | Path) -> None:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        self.page.screenshot(path=str(path))


@pytest.fixture
def lab(browser: Any, jupyterlab: LabServer) -> Iterator[Lab]:
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    page = context.new_page()
    page.set_default_timeout(30_000)
    try:
        yield Lab(page, jupyterlab)
    finally:
        context.close()
        jupyterlab.shutdown_kernels()

