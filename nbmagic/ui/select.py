"""Pick the renderer that fits where the code runs.

- a kernel whose frontend renders widgets (JupyterLab, Notebook 7, VS Code: they
  send the executing cell's id with each request) → the ipywidgets dashboard;
- terminal IPython → a rich live display;
- anything else (nbclient, a plain shell, scripts) → concise log lines.

An explicit choice (``--ui``, ``%config NbMagic.renderer``, ``NBMAGIC_RENDERER``)
overrides the guess; ``auto`` means guess.
"""

from __future__ import annotations

import os
from typing import Any

from nbmagic.errors import ConfigError
from nbmagic.ui.state import Renderer

RENDERERS = ("auto", "widgets", "rich", "plain")


def parent_metadata(shell: Any) -> dict[str, Any]:
    """Metadata of the execute request being handled ({} outside a kernel)."""
    kernel = getattr(shell, "kernel", None)
    if kernel is None:
        return {}
    try:
        parent = kernel.get_parent()
    except Exception:
        return {}
    return dict((parent or {}).get("metadata") or {})


def detect(shell: Any) -> str:
    """The renderer kind the environment supports best: widgets | rich | plain."""
    if shell is None:
        return "plain"
    cls = type(shell).__name__
    if cls == "ZMQInteractiveShell":
        meta = parent_metadata(shell)
        if meta.get("cellId") or meta.get("cell_id") or meta.get("nbmagic"):
            return "widgets"
        return "plain"
    if cls == "TerminalInteractiveShell":
        return "rich"
    return "plain"


def resolve(choice: str | None, shell: Any) -> tuple[str, str]:
    """(kind, why): an explicit choice wins over the environment variable and the guess."""
    for value, source in ((choice, "option"), (os.environ.get("NBMAGIC_RENDERER"), "NBMAGIC_RENDERER")):
        if value and value != "auto":
            if value not in RENDERERS:
                raise ConfigError(f"Unknown renderer {value!r} ({source}); use one of {', '.join(RENDERERS)}.")
            return value, source
    return detect(shell), "detected"


def make_renderer(kind: str, *, display: bool = True) -> Renderer:
    """Build the renderer ``kind``; widgets fall back to plain if ipywidgets is missing."""
    if kind == "widgets":
        try:
            from nbmagic.ui.dashboard import Dashboard
        except ImportError:  # pragma: no cover - ipywidgets is a dependency
            kind = "plain"
        else:
            return Dashboard(display=display)
    if kind == "rich":
        from nbmagic.ui.rich_live import RichLive

        return RichLive()
    from nbmagic.ui.plain import PlainLog

    return PlainLog()


def choose_renderer(shell: Any = None, choice: str | None = None) -> Renderer:
    """The renderer for this environment (or the one asked for)."""
    kind, _ = resolve(choice, shell)
    return make_renderer(kind)
