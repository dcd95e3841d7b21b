"""The notebook agent behind ``%%agent``: plan, write, run, fix, deliver cells.

``from nbmagic.agent import NotebookAgent`` (loaded on first use: this package
stays light to import). See :mod:`nbmagic.agent.core`.
"""

from __future__ import annotations

import importlib
from typing import Any

_LAZY = {"NotebookAgent": "nbmagic.agent.core", "AgentResult": "nbmagic.agent.core"}
__all__ = list(_LAZY)


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'nbmagic.agent' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)
