"""``%agent fix``: find the cell that last raised and its traceback in IPython's history.

The magics layer reads the shell (its last execution result, else ``sys.last_value`` and the cell
source IPython keeps in ``linecache``, else the input history); the agent is handed the code and
the error as plain text (:meth:`~nbmagic.agent.core.NotebookAgent.fix_error`), so nothing under
``agent/`` reads IPython's history.
"""

from __future__ import annotations

import linecache
import sys
from typing import Any

from nbmagic.agent.executor import strip_ansi
from nbmagic.errors import ConfigError


def fix_last_error(agent: Any, shell: Any, sink: Any, note: str = "") -> Any:
    """Hand the cell that last raised in ``shell`` to ``agent`` (a NotebookAgent) to fix.

    Raises :class:`~nbmagic.errors.ConfigError` when no cell has failed yet, aborting ``sink``
    first (no run: no empty notebook left behind).
    """
    found = last_error(shell)
    if found is None:
        if hasattr(sink, "abort"):
            sink.abort()
        raise ConfigError("Nothing to fix: no cell has raised an error in this kernel yet.")
    code, error = found
    return agent.fix_error(code, error, shell.user_ns, shell=shell, sink=sink, note=note)


def last_error(shell: Any) -> tuple[str, str] | None:
    """The code and traceback of the cell that last raised in ``shell`` (None if none did)."""
    if shell is None:
        return None
    last = getattr(shell, "last_execution_result", None)
    error = getattr(last, "error_in_exec", None) or getattr(last, "error_before_exec", None)
    if error is not None:
        code = getattr(getattr(last, "info", None), "raw_cell", "") or ""
        if code.strip() and not code.lstrip().startswith(("%agent", "%%agent")):
            return code, _format_error(error)
    error = getattr(sys, "last_value", None)
    if error is None:
        return None
    code = _cell_source(error)
    if not code:
        hist = getattr(getattr(shell, "history_manager", None), "input_hist_raw", None) or []
        code = next((str(c) for c in reversed(hist) if str(c).strip()
                     and not str(c).lstrip().startswith(("%agent", "%%agent"))), "")
    return (code, _format_error(error)) if code.strip() else None


def _format_error(error: BaseException) -> str:
    """The traceback as the execution core shows every engine's (without nbmagic's own frames)."""
    from nbmagic.execution import user_traceback
    from nbmagic.text import truncate

    return truncate(strip_ansi(user_traceback(error)), 3000, head=1 / 3)


def _cell_source(error: BaseException) -> str:
    """The source of the notebook cell in the traceback (IPython keeps each cell in linecache)."""
    filename = getattr(error, "filename", None) if isinstance(error, SyntaxError) else None
    tb = error.__traceback__
    while tb is not None:
        name = tb.tb_frame.f_code.co_filename
        if name.startswith("<ipython-input") or "ipykernel_" in name:
            filename = name
        tb = tb.tb_next
    if not filename:
        return ""
    return "".join(linecache.getlines(filename))

