"""``python -m nbmagic generate`` as a user runs it: a subprocess, a real server, a real file."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import nbformat

from nbmagic.testing.agent_scripts import make_responder, write_sales_csv

REQUEST = "Analyze sales.csv: the top 5 products by revenue and a monthly revenue trend plot"


def _env(**extra):
    env = {k: v for k, v in os.environ.items()
           if k not in ("NBMAGIC_MODEL", "OPENAI_API_KEY", "OPENAI_BASE_URL", "OLLAMA_HOST", "MPLBACKEND")}
    env.update(HF_HUB_OFFLINE="1", **extra)
    return env


def _generate(cwd, *args, **env):
    return subprocess.run([sys.executable, "-m", "nbmagic", "generate", *args], cwd=cwd, env=_env(**env),
                          capture_output=True, text=True, timeout=240)


def test_generate_writes_a_valid_notebook_and_verifies_it(tmp_path, openai_server):
    write_sales_csv(tmp_path / "sales.csv")
    openai_server.set_responder(make_responder("fix"))
    model = f"openai-compat:test-model@{openai_server.url}"
    p = _generate(tmp_path, REQUEST, "-o", "analysis.ipynb", "--model", model, "--planner", "single", "--verify")
    assert p.returncode == 0, p.stderr
    nb = nbformat.read(tmp_path / "analysis.ipynb", as_version=4)
    nbformat.validate(nb)
    assert [c.cell_type for c in nb.cells] == ["markdown", "code"] * 3 + ["markdown"]  # + the answer
    assert nb.cells[-1].source.startswith("### Answer")
    assert any("image/png" in o.get("data", {}) for o in nb.cells[5].outputs)
    assert nb.cells[3].metadata["nbmagic"]["attempts"] == 2
    assert "ok after 2 attempts" in p.stdout
    assert "Verified" in p.stdout
    assert "[nbmagic] step 3/3" in p.stderr  # progress lines go to stderr
    assert "Traceback" not in p.stderr


def test_generate_refuses_to_overwrite_then_force(tmp_path, openai_server):
    write_sales_csv(tmp_path / "sales.csv")
    target = tmp_path / "analysis.ipynb"
    target.write_text("precious")
    openai_server.set_responder(make_responder("works"))
    model = f"openai-compat:test-model@{openai_server.url}"
    p = _generate(tmp_path, REQUEST, "-o", "analysis.ipynb", "--model", model, "--planner", "none")
    assert p.returncode == 2
    assert "already exists" in p.stderr and "--force" in p.stderr and "Traceback" not in p.stderr
    assert target.read_text() == "precious"
    assert openai_server.chat_requests() == []  # refused before any model work

    p = _generate(tmp_path, REQUEST, "-o", "analysis.ipynb", "--model", model, "--planner", "none", "--force",
                  "--dry-run", "--quiet")
    assert p.returncode == 0, p.stderr
    nb = nbformat.read(target, as_version=4)
    assert all(c.get("outputs", []) == [] for c in nb.cells if c.cell_type == "code")
    assert p.stdout.startswith("Dry run") and p.stderr == ""


def test_generate_without_any_model_says_how_to_get_one(tmp_path):
    with socket.socket() as s:  # a port nobody listens on: no Ollama there
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    p = _generate(tmp_path, "Analyze sales.csv", "-o", "out.ipynb", OLLAMA_HOST=f"127.0.0.1:{port}")
    assert p.returncode == 2
    assert p.stderr.startswith("nbmagic: No model is available.")
    assert "OPENAI_API_KEY" in p.stderr and "Traceback" not in p.stderr
    assert not (tmp_path / "out.ipynb").exists()


def test_generate_refuses_an_empty_request_before_anything_else(tmp_path: Path) -> None:
    from nbmagic.cli import main

    assert main(["generate", "   ", "-o", str(tmp_path / "x.ipynb")]) == 2
    assert not (tmp_path / "x.ipynb").exists()
