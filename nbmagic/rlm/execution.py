"""Running one turn of model-written code: namespace, capture, errors, time limits.

Both REPL environments (the in-kernel layer and the subprocess worker) run code
through :func:`execute_code`, so a turn behaves the same wherever it runs: the
last expression is echoed like a REPL, output is captured with a cap that keeps
the head and the tail, tracebacks are short, and ``exit()`` ends nothing.

This module is imported by the worker process, so it uses the standard library
only and must stay cheap to import.
"""

from __future__ import annotations

import ast
import builtins
import contextlib
import ctypes
import io
import linecache
import signal
import sys
import threading
import time
import traceback
from collections import deque
from collections.abc import Callable, Iterator, Mapping
from typing import Any

from nbmagic.text import TRUNCATION_MARKER, truncate

__all__ = ["TRUNCATION_MARKER", "truncate"]  # re-exported: the REPL's callers import them from here


class TurnTimeout(BaseException):
    """Raised inside model code when its turn ran past the time limit.

    A ``BaseException`` so that the model's own ``except Exception`` does not
    swallow it (a bare ``except:`` can; the alarm then repeats).
    """


class ReservedNameError(NameError):
    """The model tried to rebind one of the REPL helpers."""


ReservedNameError.__module__ = "builtins"  # tracebacks show the bare name to the model


# --- output capture ---------------------------------------------------------------


class CappedWriter(io.TextIOBase):
    """A text sink that keeps at most ``limit`` characters: the first and the last halves.

    Model code may print megabytes; holding all of it only to cut it later would
    cost memory (and, in the worker, a pipe transfer), so the middle is dropped
    as it arrives and only counted.
    """

    def __init__(self, limit: int) -> None:
        super().__init__()
        self.limit = max(2, int(limit))
        self._head_limit = self.limit // 2
        self._tail_limit = self.limit - self._head_limit
        self._head: list[str] = []
        self._head_len = 0
        self._tail: deque[str] = deque()
        self._tail_len = 0
        self.total = 0
        self._lock = threading.Lock()

    def writable(self) -> bool:
        return True

    def write(self, s: Any) -> int:
        if not isinstance(s, str):
            s = str(s)
        n = len(s)
        with self._lock:
            self.total += n
            room = self._head_limit - self._head_len
            if room > 0:
                self._head.append(s[:room])
                self._head_len += min(room, n)
                s = s[room:]
            if s:
                if len(s) >= self._tail_limit:
                    self._tail.clear()
                    s = s[-self._tail_limit :]
                    self._tail_len = 0
                self._tail.append(s)
                self._tail_len += len(s)
                while self._tail_len - len(self._tail[0]) >= self._tail_limit:
                    self._tail_len -= len(self._tail.popleft())
        return n

    def getvalue(self) -> str:
        """The captured text, with a truncation marker if anything was dropped."""
        with self._lock:
            head = "".join(self._head)
            tail = "".join(self._tail)
            if self.total <= self.limit:
                return head + tail
            tail = tail[-self._tail_limit :]
            omitted = self.total - len(head) - len(tail)
            return head + TRUNCATION_MARKER.format(n=omitted) + tail


# --- the layered namespace -----------------------------------------------------------


class LayeredNamespace(dict):
    """Exec globals that read through to a base mapping without copying it.

    Names the model assigns land in this dict (the RLM's layer); names it only
    reads fall through to ``base`` (the user's namespace) via ``__missing__``.
    ``base`` is never written. Helper names are protected: rebinding or
    deleting one raises :class:`ReservedNameError`, and :meth:`restore` puts
    back any that were changed by routes that bypass ``__setitem__``
    (``global`` statements inside functions).

    Limits (CPython): a ``class`` body that reads a user variable looks it up
    with the plain-dict API and does not see ``base``; bind it first
    (``x = x``) in that case.
    """

    def __init__(self, base: Mapping[str, Any] | None = None, reserved: Mapping[str, Any] | None = None):
        super().__init__()
        self.base: Mapping[str, Any] = base if base is not None else {}
        self.reserved: dict[str, Any] = dict(reserved or {})
        dict.__setitem__(self, "__builtins__", builtins)
        dict.__setitem__(self, "__name__", "__rlm__")
        for name, fn in _SHADOWED.items():
            dict.__setitem__(self, name, fn)
        self.restore()

    def __missing__(self, key: str) -> Any:
        if key in _SHADOWED:  # even once deleted, never the user's (IPython's `exit` stops the kernel)
            return _SHADOWED[key]
        try:
            return self.base[key]
        except KeyError:
            raise KeyError(key) from None

    def __setitem__(self, key: str, value: Any) -> None:
        if key in self.reserved and value is not self.reserved[key]:
            raise ReservedNameError(
                f"{key!r} is an RLM helper and cannot be reassigned; pick another name."
            )
        super().__setitem__(key, value)

    def __delitem__(self, key: str) -> None:
        if key in self.reserved:
            raise ReservedNameError(f"{key!r} is an RLM helper and cannot be deleted.")
        super().__delitem__(key)

    def bind(self, name: str, value: Any) -> None:
        """Set a variable without the reserved-name check (used for contexts)."""
        dict.__setitem__(self, name, value)

    def restore(self) -> list[str]:
        """Put every helper back; return the names that had been changed."""
        changed = []
        for name, fn in self.reserved.items():
            if dict.get(self, name) is not fn:
                if name in self:
                    changed.append(name)
                dict.__setitem__(self, name, fn)
        return changed

    def own_variables(self, skip: set[str] | frozenset[str] = frozenset()) -> dict[str, Any]:
        """Variables the model created in this layer (not helpers, dunders or ``skip``)."""
        return {
            k: v
            for k, v in self.items()
            if not k.startswith("_") and k not in self.reserved and k not in skip and v is not _SHADOWED.get(k)
        }


def _no_input(*_args: Any, **_kwargs: Any) -> str:
    raise RuntimeError("input() is not available in the RLM REPL: nobody is there to type.")


def _exit(code: Any = None) -> None:
    raise SystemExit(code)


#: Names the layer always defines itself. ``exit``/``quit`` matter in a kernel: the
#: user's namespace holds IPython's exiter there, and calling it shuts the kernel down.
_SHADOWED: dict[str, Callable[..., Any]] = {"input": _no_input, "exit": _exit, "quit": _exit}


# --- running a turn ---------------------------------------------------------------------


def short_traceback(exc: BaseException, filename: str, max_chars: int = 2000) -> str:
    """The exception with only the frames that matter: the model's own code and below."""
    te = traceback.TracebackException.from_exception(exc, limit=-8)
    frames = list(te.stack)
    # drop our own wrapper frames above the model's code
    for i, fr in enumerate(frames):
        if fr.filename == filename:
            frames = frames[i:]
            break
    frames = [fr for fr in frames if fr.filename != __file__]  # our namespace internals
    te.stack = traceback.StackSummary.from_list(frames)
    text = "".join(te.format())
    if len(text) > max_chars:
        text = "…" + text[-max_chars:]
    return text


def execute_code(code: str, namespace: dict[str, Any], *, filename: str, out: CappedWriter) -> dict[str, Any]:
    """Run ``code`` in ``namespace`` with stdout/stderr going to ``out``.

    Returns ``{"error": str | None, "exited": bool}``. :class:`TurnTimeout` and
    ``KeyboardInterrupt`` propagate; everything else (``SystemExit`` included) is
    reported into ``out``.
    """
    result: dict[str, Any] = {"error": None, "exited": False}
    try:
        tree = ast.parse(code, filename=filename, mode="exec")
    except SyntaxError as exc:
        msg = "".join(traceback.format_exception_only(type(exc), exc))
        out.write(msg)
        result["error"] = msg.strip().splitlines()[-1]
        return result
    last: ast.Expression | None = None
    if tree.body and isinstance(tree.body[-1], ast.Expr):
        last = ast.Expression(tree.body.pop().value)
    lines = code.splitlines(keepends=True)
    linecache.cache[filename] = (len(code), None, lines, filename)
    _outer.append((sys.stdout, sys.stderr))
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(out):
        try:
            exec(compile(tree, filename, "exec"), namespace)
            if last is not None:
                value = eval(compile(last, filename, "eval"), namespace)
                if value is not None:
                    out.write(repr(value) + "\n")
        except SystemExit as exc:
            result["exited"] = True
            out.write(
                f"SystemExit({exc.code!r}): exit() and sys.exit() do not end the run; the REPL is "
                "still alive with your variables. Call submit(answer) to finish.\n"
            )
        except (TurnTimeout, KeyboardInterrupt):
            raise
        except BaseException as exc:
            tb = short_traceback(exc, filename)
            out.write(tb)
            result["error"] = "".join(traceback.format_exception_only(type(exc), exc)).strip()[-500:]
        finally:
            _outer.pop()
    return result


_outer: list[tuple[Any, Any]] = []  # the streams each running turn replaced (nested for child RLMs)


@contextlib.contextmanager
def outer_streams() -> Iterator[None]:
    """Print to the streams that were current before the first running turn redirected them.

    Progress renderers called from a helper (a sub-call event, a child RLM's
    iteration) must write to the notebook, not into the output the model reads.
    """
    if not _outer:
        yield
        return
    saved = sys.stdout, sys.stderr
    sys.stdout, sys.stderr = _outer[0]
    try:
        yield
    finally:
        sys.stdout, sys.stderr = saved


# --- time limits -----------------------------------------------------------------------

_deadlines: list[float] = []  # nested limits of the main thread (child RLMs run inside a turn)
_REPEAT = 0.1  # seconds between repeated alarms after the deadline (defeats bare `except:`)


def _on_alarm(signum: int, frame: Any) -> None:
    if _deadlines and time.monotonic() >= min(_deadlines) - 1e-3:
        raise TurnTimeout()


def _arm_signal() -> None:
    if _deadlines:
        left = max(min(_deadlines) - time.monotonic(), 0.001)
        signal.setitimer(signal.ITIMER_REAL, left, _REPEAT)
    else:
        signal.setitimer(signal.ITIMER_REAL, 0)


def _retry(fn: Callable[[], None]) -> None:
    """Run a disarm step even if a late alarm interrupts it."""
    while True:
        try:
            fn()
            return
        except TurnTimeout:
            continue


@contextlib.contextmanager
def time_limit(seconds: float | None) -> Iterator[None]:
    """Raise :class:`TurnTimeout` in this thread once ``seconds`` have passed.

    In the main thread (where IPython runs cells) a ``SIGALRM`` interval timer
    interrupts pure-Python loops and blocking sleeps alike; nested limits share
    it. In other threads a watchdog injects the exception with
    ``PyThreadState_SetAsyncExc``: that lands between bytecodes only, so a long
    call into C code is interrupted when it returns.
    """
    if not seconds or seconds <= 0:
        yield
        return
    if threading.current_thread() is threading.main_thread() and hasattr(signal, "setitimer"):
        with _signal_limit(seconds):
            yield
    else:
        with _async_limit(seconds):
            yield


@contextlib.contextmanager
def _signal_limit(seconds: float) -> Iterator[None]:
    outermost = not _deadlines
    previous = signal.getsignal(signal.SIGALRM) if outermost else None
    if outermost:
        signal.signal(signal.SIGALRM, _on_alarm)
    _deadlines.append(time.monotonic() + seconds)
    _arm_signal()
    try:
        yield
    finally:

        def disarm() -> None:
            signal.setitimer(signal.ITIMER_REAL, 0)
            if _deadlines:
                _deadlines.pop()
            if outermost:
                signal.signal(signal.SIGALRM, previous or signal.SIG_DFL)
            else:
                _arm_signal()

        _retry(disarm)


@contextlib.contextmanager
def _async_limit(seconds: float) -> Iterator[None]:
    tid = threading.get_ident()
    lock = threading.Lock()
    state = {"armed": True}

    def fire() -> None:
        deadline = time.monotonic() + 60.0  # keep poking for a while, then give up
        while time.monotonic() < deadline:
            with lock:
                if not state["armed"]:
                    return
                ctypes.pythonapi.PyThreadState_SetAsyncExc(ctypes.c_ulong(tid), ctypes.py_object(TurnTimeout))
            time.sleep(_REPEAT)

    timer = threading.Timer(seconds, fire)
    timer.daemon = True
    timer.start()
    try:
        yield
    finally:

        def disarm() -> None:
            with lock:
                state["armed"] = False
            timer.cancel()
            ctypes.pythonapi.PyThreadState_SetAsyncExc(ctypes.c_ulong(tid), None)  # clear a pending one

        _retry(disarm)
