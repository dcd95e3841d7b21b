"""REPL environments: where the root model's code runs, behind one interface.

``kernel``
    A :class:`~nbmagic.rlm.execution.LayeredNamespace` over the user's namespace,
    run in this process. Zero-copy: a 5 GB DataFrame is read where it lies. Writes
    stay in the RLM's layer; the user's names are never rebound. No isolation
    beyond that: code can mutate user objects in place, open files, or import
    anything (``os._exit`` and the like are refused, see :mod:`nbmagic.execution`).
    Per-turn time limits come from the execution core: ``SIGALRM`` in the main
    thread (a watchdog with an async exception elsewhere), raised again into code
    that swallows them.

``subprocess``
    A persistent separate Python worker (``python -m nbmagic.rlm.worker``) with
    its own temporary working directory, an address-space limit
    (``resource.setrlimit``), no API keys in its environment, and a per-turn time
    limit: a soft alarm inside the worker first (variables survive), then a kill
    and restart if it does not come back. Contexts are pickled once to a file the
    worker loads; helpers call back to this process over the pipe.

Both report a turn as a :class:`TurnOutput`.

The interface is :mod:`~nbmagic.rlm.repl_base`; the environments live in
:mod:`~nbmagic.rlm.repl_kernel`, :mod:`~nbmagic.rlm.repl_subprocess` and
:mod:`~nbmagic.rlm.repl_pipe` (the pipe protocol, and forks for sub-agents); this module
chooses one (:func:`make_environment`) and re-exports them.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from nbmagic.errors import ConfigError
from nbmagic.rlm.repl_base import Environment, Helper, TurnOutput, helpers_note, timeout_message
from nbmagic.rlm.repl_kernel import KernelEnvironment
from nbmagic.rlm.repl_pipe import ForkedWorker, PipedWorker
from nbmagic.rlm.repl_subprocess import SubprocessEnvironment
from nbmagic.rlm.settings import ENVIRONMENTS

__all__ = ["ENVIRONMENTS", "Environment", "ForkedWorker", "Helper", "KernelEnvironment", "PipedWorker",
           "SubprocessEnvironment", "TurnOutput", "helpers_note", "make_environment", "timeout_message"]


def make_environment(kind: str | Environment, namespace: Mapping[str, Any] | None = None, **kwargs: Any) -> Environment:
    """``"kernel"``, ``"subprocess"``, or an :class:`Environment` instance as is."""
    if isinstance(kind, Environment):
        return kind
    if kind == "kernel":
        return KernelEnvironment(namespace)
    if kind == "subprocess":
        return SubprocessEnvironment(**kwargs)
    raise ConfigError(f"Unknown RLM environment {kind!r}; use one of: {', '.join(ENVIRONMENTS)}.")
