"""Cells and where they go: the running notebook, the next input, or a new file.

``cells`` builds nbformat v4 cells with outputs; ``sinks`` delivers them
(``choose_sink`` picks live insertion, ``set_next_input`` or a file); ``live`` is
the kernel half of the comm protocol with the JupyterLab extension; ``files``
writes notebooks atomically; ``verify`` runs a notebook in a fresh kernel.
Names are loaded lazily so ``import nbmagic.notebook`` stays cheap.
"""

from __future__ import annotations

import importlib
from typing import Any

_LAZY = {
    "markdown_cell": "nbmagic.notebook.cells",
    "code_cell": "nbmagic.notebook.cells",
    "provenance": "nbmagic.notebook.cells",
    "CellSink": "nbmagic.notebook.sinks",
    "CollectSink": "nbmagic.notebook.sinks",
    "FileSink": "nbmagic.notebook.sinks",
    "NextInputSink": "nbmagic.notebook.sinks",
    "LiveNotebookSink": "nbmagic.notebook.live",
    "choose_sink": "nbmagic.notebook.sinks",
    "announce": "nbmagic.notebook.live",
    "frontend_present": "nbmagic.notebook.live",
    "verify_notebook": "nbmagic.notebook.verify",
    "VerifyResult": "nbmagic.notebook.verify",
}

__all__ = sorted(_LAZY)


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'nbmagic.notebook' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return __all__
