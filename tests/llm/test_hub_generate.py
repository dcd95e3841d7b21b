"""`make run` with nothing configured and a hub that answers: the default model is downloaded once
and writes the notebook. In CI the loopback hub serves the embedded model's GGUF as if it were the
hub default (the real ~1.1 GB coder is never fetched); the manual check in the report does the
same with the 0.5B coder."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

from nbmagic.testing.hub_server import HubServer
from tests.fixtures.hub import FILE, REPO, cached_path

pytestmark = [pytest.mark.real_model, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[2]


def _makefile_request() -> str:
    for line in (ROOT / "Makefile").read_text().splitlines():
        if line.startswith("REQUEST ?="):
            return line.split("=", 1)[1].strip()
    raise AssertionError("the Makefile has no default REQUEST")


def test_make_run_downloads_the_default_once_and_its_cells_come_from_it(embedded_gguf_path, hub_env, tmp_path):
    (tmp_path / "examples").mkdir()
    shutil.copy(ROOT / "examples" / "sales_data.csv", tmp_path / "examples" / "sales_data.csv")
    with HubServer() as hub:
        entry = hub.add(REPO, FILE, embedded_gguf_path)
        env = {k: v for k, v in os.environ.items()
               if not k.startswith(("OPENAI_", "NBMAGIC_ALLOW", "NBMAGIC_MODEL", "HF_HUB_OFFLINE"))}
        env.update(PYTHONPATH=str(ROOT), OLLAMA_HOST="127.0.0.1:9", MPLBACKEND="Agg", HF_ENDPOINT=hub.endpoint,
                   NBMAGIC_DEFAULT_GGUF_SHA256=entry.sha256)
        # the Makefile's run recipe, after its bootstrap line
        recipe = (f'NBMAGIC_ALLOW_DOWNLOAD="${{NBMAGIC_ALLOW_DOWNLOAD-1}}" "{sys.executable}" -m nbmagic generate '
                  f'"{_makefile_request()}" -o analysis.ipynb --verify --max-fixes 1')
        proc = subprocess.run(["bash", "-c", recipe], cwd=tmp_path, env=env, capture_output=True, text=True,
                              timeout=900)
        assert len(hub.gets()) == 1
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    path = cached_path(hub_env["cache"])
    assert f"downloading it once from {hub.endpoint}" in proc.stderr and "(100 %" in proc.stderr
    assert f"gguf:{path}" in proc.stdout.splitlines()[0]  # the summary names the model
    nb = nbformat.read(tmp_path / "analysis.ipynb", as_version=4)
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert code and all(c.metadata["nbmagic"]["model"] == f"gguf:{path}" for c in code)
    assert "Verified: the notebook ran top to bottom" in proc.stdout
