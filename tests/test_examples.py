"""The examples a new user opens first, executed against the loopback server."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

from nbmagic.testing import examples_responder

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


@pytest.fixture
def workdir(tmp_path, openai_server, monkeypatch):
    """A copy of examples/ and a model spec in the environment (inherited by kernels and scripts)."""
    for name in ("quickstart.ipynb", "sales_data.csv", "long_text.py", "api_example.py"):
        shutil.copy(EXAMPLES / name, tmp_path / name)
    openai_server.set_responder(examples_responder.respond)
    monkeypatch.setenv("NBMAGIC_MODEL", f"openai-compat:test-model@{openai_server.url}")
    monkeypatch.setenv("MPLBACKEND", "Agg")
    return tmp_path


def _text(cell) -> str:
    parts = []
    for o in cell.get("outputs", []):
        if o["output_type"] == "stream":
            parts.append(o["text"])
        elif "data" in o:
            parts.append(o["data"].get("text/plain", ""))
    return "".join(parts)


_EXECUTE = """
import sys, nbformat
from nbclient import NotebookClient
path, out = sys.argv[1], sys.argv[2]
nb = nbformat.read(path, as_version=4)
NotebookClient(nb, timeout=120, kernel_name="python3", resources={"metadata": {"path": sys.argv[3]}}).execute()
nbformat.write(nb, out)
"""


def test_quickstart_notebook_runs(workdir):
    # executed by nbclient in a fresh process, as `jupyter execute` would: the test process's event
    # loops and signal handlers, left by hundreds of earlier tests, are not what a user has
    executed = workdir / "executed.ipynb"
    proc = subprocess.run([sys.executable, "-c", _EXECUTE, str(workdir / "quickstart.ipynb"), str(executed),
                           str(workdir)], cwd=workdir, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    nb = nbformat.read(executed, as_version=4)
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert not any(o["output_type"] == "error" for c in code for o in c.outputs)
    by_source = {c.source.splitlines()[0]: c for c in code}
    status = _text(by_source["# %config NbMagic.model = \"openai:gpt-4o-mini\"          # needs OPENAI_API_KEY"])
    assert "set by env NBMAGIC_MODEL" in status
    agent = _text(by_source["%%agent --rounds 1 --out analysis"])
    assert "[nbmagic] plan: 1) Load sales_data.csv into the DataFrame" in agent and "[nbmagic] agent done in" in agent
    assert "plan 3/3 · 7 cells" in agent  # three steps (the first the agent's own load) and the answer
    assert _text(by_source["print(analysis.status, '·', len(analysis.cells), 'cells')"]).startswith("done · 7 cells")
    assert "top_products" in _text(by_source["print('new variables:', ', '.join(analysis.raw.new_variables))"])
    rlm = by_source["%rlm --context log What is the access code for vault QX-7731?"]
    result = next(o for o in rlm.outputs if o["output_type"] == "execute_result")
    assert result["data"]["text/plain"] == "640219"
    assert "[nbmagic] rlm done in" in _text(rlm)
    assert "answer: 640219" in _text(by_source["answer = _"])
    cell_rlm = by_source["%%rlm --context log --max-iterations 6"]
    assert "640219" in _text(cell_rlm)


def test_api_example_script_runs(workdir):
    env = {**os.environ, "PYTHONPATH": str(EXAMPLES.parent)}
    proc = subprocess.run([sys.executable, str(workdir / "api_example.py"), "--out-dir", str(workdir)],
                          cwd=workdir, env=env, capture_output=True, text=True, timeout=180)
    assert proc.returncode == 0, proc.stderr
    assert "answer: 640219" in proc.stdout and "3 succeeded, 0 failed" in proc.stdout
    nb = nbformat.read(workdir / "sales_analysis.ipynb", as_version=4)
    assert [c.cell_type for c in nb.cells] == ["markdown", "code"] * 3 + ["markdown"]  # + the answer
    assert nb.cells[-1].source.startswith("### Answer\n\nThe top 5 products by revenue are ")
    # a second run refuses to overwrite: one message, exit status 2
    again = subprocess.run([sys.executable, str(workdir / "api_example.py"), "--out-dir", str(workdir)],
                           cwd=workdir, env=env, capture_output=True, text=True, timeout=180)
    assert again.returncode == 2 and again.stderr.startswith("nbmagic: ") and "Traceback" not in again.stderr
