"""Generated code must not end the user's kernel by the usual means.

While :func:`process_guard` is active, the thread running generated code gets
:class:`ExitBlocked` (an error it can see and fix) instead of ending the process from:
``os._exit``, ``os.abort``, ``os.kill``/``os.killpg`` aimed at this process or its
group, ``signal.raise_signal``, ``signal.pthread_kill``, and the ``os.exec*`` family
(which replace the process). ``exit()``/``sys.exit()`` raise ``SystemExit``, which
the executors already report as an error.

This is not a sandbox: other threads, child processes (a fork's ``os._exit`` works as
usual), ``ctypes``, or code that saved ``os._exit`` before the run are not covered.
For code you do not trust, run it in a separate kernel (``%%agent --kernel new``) or
the RLM's subprocess REPL.
"""

from __future__ import annotations

import os
import signal
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any


class ExitBlocked(RuntimeError):
    """A generated cell tried to end the process that runs it."""


ExitBlocked.__module__ = "builtins"  # tracebacks show the bare name

_lock = threading.Lock()
_owners: dict[int, int] = {}  # thread id -> nesting depth
_pid = 0
_saved: dict[tuple[Any, str], Callable[..., Any]] = {}


def _applies() -> bool:
    return os.getpid() == _pid and threading.get_ident() in _owners


def _refuse(what: str) -> None:
    raise ExitBlocked(
        f"{what} would end the Python process that runs this code (your notebook kernel, with all its "
        "variables); nbmagic blocks it while generated code runs. Raise an exception to stop early."
    )


def _targets_self(pid: int) -> bool:
    me = os.getpid()
    group = os.getpgrp() if hasattr(os, "getpgrp") else None
    return pid in (me, 0, -1) or (group is not None and pid == -group)


def _wrap(module: Any, name: str, check: Callable[..., str | None]) -> None:
    original = getattr(module, name, None)
    if original is None:
        return
    _saved[(module, name)] = original

    def guarded(*args: Any, **kwargs: Any) -> Any:
        if _applies():
            what = check(*args, **kwargs)
            if what:
                _refuse(what)
        return original(*args, **kwargs)

    guarded.__name__ = guarded.__qualname__ = name
    guarded.__doc__ = original.__doc__
    guarded.__wrapped__ = original  # type: ignore[attr-defined]
    setattr(module, name, guarded)


def _always(what: str) -> Callable[..., str]:
    return lambda *a, **k: what


def _kill_check(pid: int = 0, sig: int = 0, *a: Any, **k: Any) -> str | None:
    return "os.kill() of this process" if sig != 0 and _targets_self(int(pid)) else None


def _killpg_check(pgid: int = 0, sig: int = 0, *a: Any, **k: Any) -> str | None:
    group = os.getpgrp() if hasattr(os, "getpgrp") else None
    return "os.killpg() of this process's group" if sig != 0 and int(pgid) in (0, group) else None


def _pthread_kill_check(tid: int = 0, sig: int = 0, *a: Any, **k: Any) -> str | None:
    return "signal.pthread_kill()" if sig != 0 else None


_EXECS = ("execl", "execle", "execlp", "execlpe", "execv", "execve", "execvp", "execvpe")


def _install() -> None:
    _wrap(os, "_exit", _always("os._exit()"))
    _wrap(os, "abort", _always("os.abort()"))
    _wrap(os, "kill", _kill_check)
    _wrap(os, "killpg", _killpg_check)
    _wrap(signal, "raise_signal", _always("signal.raise_signal()"))
    _wrap(signal, "pthread_kill", _pthread_kill_check)
    for name in _EXECS:
        _wrap(os, name, _always(f"os.{name}()"))


def _uninstall() -> None:
    for (module, name), original in _saved.items():
        setattr(module, name, original)
    _saved.clear()


@contextmanager
def process_guard() -> Iterator[None]:
    """Refuse the process-ending calls above in this thread until the block ends (nests)."""
    global _pid
    tid = threading.get_ident()
    with _lock:
        if not _owners:
            _pid = os.getpid()
            _install()
        _owners[tid] = _owners.get(tid, 0) + 1
    try:
        yield
    finally:
        with _lock:
            _owners[tid] -= 1
            if not _owners[tid]:
                del _owners[tid]
            if not _owners:
                _uninstall()
