"""nbmagic: recursive LLM agents in Jupyter.

``%load_ext nbmagic`` registers ``%%agent``, ``%rlm``/``%%rlm`` and ``%nbmagic``.
The engines are plain Python too: :func:`load_model`, :class:`RecursiveMAS`,
:class:`RLM`, :class:`NotebookAgent`. Importing this package is cheap: heavy
libraries (torch, transformers, llama_cpp, openai) load on first use only.
"""

from __future__ import annotations

import importlib
from typing import Any

from nbmagic.errors import NbmagicError

__version__ = "0.1.0"

#: public name -> (module, attribute), imported on first access
_LAZY = {
    "load_model": ("nbmagic.llm.specs", "load_model"),
    "resolve_default_model": ("nbmagic.llm.specs", "resolve_default"),
    "ChatModel": ("nbmagic.llm.base", "ChatModel"),
    "RecursiveMAS": ("nbmagic.mas.system", "RecursiveMAS"),
    "Agent": ("nbmagic.mas.system", "Agent"),
    "RLM": ("nbmagic.rlm.agent", "RLM"),
    "NotebookAgent": ("nbmagic.agent.core", "NotebookAgent"),
    "settings": ("nbmagic.config", "settings"),
}

__all__ = ["NbmagicError", "__version__", *_LAZY]


def __getattr__(name: str) -> Any:
    target = _LAZY.get(name)
    if target is None:
        raise AttributeError(f"module 'nbmagic' has no attribute {name!r}")
    module, attribute = target
    value = getattr(importlib.import_module(module), attribute)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)


def load_ipython_extension(ipython: Any) -> None:
    """``%load_ext nbmagic``."""
    from nbmagic.magics import load_ipython_extension as load

    load(ipython)


def unload_ipython_extension(ipython: Any) -> None:
    """``%unload_ext nbmagic``."""
    from nbmagic.magics import unload_ipython_extension as unload

    unload(ipython)


def _jupyter_labextension_paths() -> list[dict[str, str]]:
    """The prebuilt JupyterLab extension shipped in the package (live cell insertion)."""
    return [{"src": "labextension", "dest": "nbmagic"}]
