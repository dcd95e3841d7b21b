"""`make run`'s job on real weights: the embedded model writes a notebook from the default request,
and the notebook runs top to bottom in a fresh kernel (--verify)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

pytestmark = pytest.mark.real_model

REPO = Path(__file__).resolve().parents[2]


def _makefile_request() -> str:
    for line in (REPO / "Makefile").read_text().splitlines():
        if line.startswith("REQUEST ?="):
            return line.split("=", 1)[1].strip()
    raise AssertionError("the Makefile has no default REQUEST")


@pytest.mark.timeout(900)  # the subprocess's own limit; a shared CPU can take minutes
def test_generate_with_the_embedded_model_writes_a_verified_notebook(embedded_gguf_path, tmp_path):
    (tmp_path / "examples").mkdir()
    shutil.copy(REPO / "examples" / "sales_data.csv", tmp_path / "examples" / "sales_data.csv")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OPENAI_", "NBMAGIC_", "OLLAMA_"))}
    env.update(PYTHONPATH=str(REPO), OLLAMA_HOST="127.0.0.1:9", MPLBACKEND="Agg",
               NBMAGIC_CACHE=str(REPO / ".cache" / "nbmagic-test"))
    proc = subprocess.run(
        [sys.executable, "-m", "nbmagic", "generate", _makefile_request(), "-o", "analysis.ipynb", "--verify",
         "--max-fixes", "1", "--quiet"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=900,
    )
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    assert "Verified: the notebook ran top to bottom" in proc.stdout
    nb = nbformat.read(tmp_path / "analysis.ipynb", as_version=4)
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert code and "read_csv" in code[0].source and "sales_data.csv" in code[0].source
    assert any(c.outputs for c in code)  # delivered with its outputs
    assert "Traceback" not in proc.stderr
