"""Fast start: ``import nbmagic`` and ``%load_ext nbmagic`` load none of the heavy libraries.

Checked in a fresh interpreter, since this test process has long imported them all.
(How long loading takes is measured by ``benchmarks/startup.py``, not asserted here.)
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
HEAVY = ("torch", "transformers", "llama_cpp", "openai", "ipywidgets", "numpy", "pandas")
#: ipywidgets/numpy/pandas are not forbidden by the design, but nothing at load time needs them
MUST_NOT_LOAD = ("torch", "transformers", "llama_cpp", "openai")

_SCRIPT = """
import json, sys
import nbmagic
after_import = sorted(m for m in {heavy!r} if m in sys.modules)
from IPython.core.interactiveshell import InteractiveShell
shell = InteractiveShell.instance()
before = set(sys.modules)
shell.run_line_magic("load_ext", "nbmagic")
loaded = "nbmagic" in shell.extension_manager.loaded
magics = sorted(shell.magics_manager.magics["line"]) + sorted(shell.magics_manager.magics["cell"])
print(json.dumps({{
    "after_import": after_import,
    "after_load": sorted(m for m in {heavy!r} if m in sys.modules),
    "loaded": loaded,
    "has_magics": [n for n in ("agent", "rlm", "nbmagic") if n in magics],
}}))
"""


def _probe(code: str) -> dict:
    proc = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, timeout=120
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def startup() -> dict:
    return _probe(_SCRIPT.format(heavy=HEAVY))


def test_import_nbmagic_is_light(startup):
    assert not set(startup["after_import"]) & set(MUST_NOT_LOAD), startup


def test_load_ext_is_light_and_registers_the_magics(startup):
    assert startup["loaded"]
    assert startup["has_magics"] == ["agent", "rlm", "nbmagic"]
    heavy = set(startup["after_load"]) & set(MUST_NOT_LOAD)
    assert not heavy, f"%load_ext nbmagic imported {sorted(heavy)}"


@pytest.mark.parametrize(
    "module",
    [
        "nbmagic.cli",
        "nbmagic.llm.specs",
        "nbmagic.llm.base",
        "nbmagic.llm.doctor",
        "nbmagic.llm.llamacpp",
        "nbmagic.llm.openai_compat",
        "nbmagic.llm.devices",
    ],
)
def test_modules_import_light(module):
    code = (
        f"import json, sys, {module}\n"
        f"print(json.dumps(sorted(m for m in {MUST_NOT_LOAD!r} if m in sys.modules)))"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert json.loads(proc.stdout.strip().splitlines()[-1]) == []


def test_building_the_cli_parser_is_light():
    """``nbmagic --help`` imports every subcommand module to add its arguments."""
    code = (
        "import json, sys, nbmagic.cli as cli\n"
        "parser = cli.build_parser()\n"
        f"print(json.dumps([sorted(cli.COMMANDS), sorted(m for m in {MUST_NOT_LOAD!r} if m in sys.modules)]))"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    commands, heavy = json.loads(proc.stdout.strip().splitlines()[-1])
    assert "doctor" in commands and len(commands) >= 4
    assert heavy == [], f"building the CLI parser imported {heavy}"


def test_every_public_name_resolves() -> None:
    """The lazy re-exports of ``nbmagic`` all point at real objects."""
    import nbmagic

    for name in nbmagic.__all__:
        assert getattr(nbmagic, name) is not None, name
