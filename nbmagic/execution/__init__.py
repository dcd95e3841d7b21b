"""The one execution core for generated code, shared by the notebook agent and the RLM.

Both engines run code a model wrote, in the user's process (the agent in the
user's kernel, the RLM's kernel REPL in a layer over the user's namespace) or in
the RLM's worker process. They need the same four things, and get them here once:

* :mod:`~nbmagic.execution.limits`: a time limit (and Ctrl-C) that holds against
  code that swallows the interruption (``while True: try: ... except: pass``);
* :mod:`~nbmagic.execution.cells`: compile a cell, show its last expression, and
  format a traceback without nbmagic's own frames;
* :mod:`~nbmagic.execution.output`: the capped output buffer (head and tail kept);
* :mod:`~nbmagic.execution.guards`: ``os._exit``, ``os.kill(os.getpid(), …)``,
  ``os.abort``, ``signal.raise_signal`` and ``os.exec*`` refused while generated
  code runs, so it cannot end the user's kernel by the usual means.

Standard library only and cheap to import: the RLM worker subprocess imports it.
It is not a sandbox: code can still do anything the process can (see docs/agent.md,
"Limits and safety").
"""

from __future__ import annotations

from nbmagic.execution.cells import (
    CompiledCell,
    compile_cell,
    harden,
    is_own_file,
    trim_traceback,
    user_traceback,
)
from nbmagic.execution.guards import ExitBlocked, process_guard
from nbmagic.execution.limits import (
    GRACE,
    REPEAT,
    CellTimeout,
    Limit,
    checkpoint,
    deferred_interrupts,
    time_limit,
)
from nbmagic.execution.output import CappedWriter

__all__ = [
    "GRACE",
    "REPEAT",
    "CappedWriter",
    "CellTimeout",
    "CompiledCell",
    "ExitBlocked",
    "Limit",
    "checkpoint",
    "compile_cell",
    "deferred_interrupts",
    "harden",
    "is_own_file",
    "process_guard",
    "time_limit",
    "trim_traceback",
    "user_traceback",
]
