"""Time limits and Ctrl-C that hold against code that swallows them.

One engine for every place nbmagic runs generated code. :func:`time_limit` raises
:class:`CellTimeout` in the running thread once its seconds are up. Code may catch
that (a bare ``except:``, ``except BaseException``) and carry on, so the limit does
not stop at one raise:

1. the first :class:`CellTimeout` (or ``KeyboardInterrupt`` on Ctrl-C) is raised at
   once, and the code gets :data:`GRACE` seconds to clean up in its handlers;
2. after that, every :data:`REPEAT` seconds the interruption is raised again, but
   only while *user* code runs (never inside nbmagic restoring the shell, nor inside
   IPython formatting the traceback; see :mod:`~nbmagic.execution.frames`);
3. and every ``except`` handler of compiled generated code starts with a
   :func:`checkpoint` (:func:`~nbmagic.execution.cells.harden` puts it there), which
   re-raises once the grace is over: nested handlers cannot swallow it either.

In the main thread on POSIX the clock is ``SIGALRM`` (it also interrupts
``time.sleep``); an outer interval timer (pytest-timeout, an enclosing limit) is
honoured. Ctrl-C (``SIGINT``, what a Jupyter interrupt sends) is taken over for
the duration so that a swallowed ``KeyboardInterrupt`` is raised again too.
Elsewhere a watchdog thread injects the exception between bytecodes.

What no limit can stop: a long call inside C code (a regex on a huge string, a
BLAS routine, a blocking socket read without timeout) is interrupted only when it
returns to Python. Limits nest (a child RLM inside a turn).
"""

from __future__ import annotations

import builtins
import ctypes
import os
import signal
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType, TracebackType
from typing import Any

from nbmagic.execution.frames import may_interrupt

#: seconds code may spend in its handlers after the first interruption before it is raised again
GRACE = 1.0
#: seconds between repeated interruptions after the grace
REPEAT = 0.05


class CellTimeout(BaseException):
    """Raised inside runaway generated code. A BaseException so ``except Exception`` cannot swallow it."""

    def __init__(self, seconds: float | None = None, *, again: bool = False) -> None:
        self.seconds = seconds
        text = f"the cell ran longer than {seconds:g} s and was interrupted" if seconds else "the time limit was reached"
        if again:
            text += "; it caught the interruption and went on, so it was stopped again"
        super().__init__(text)
        self.__suppress_context__ = again  # the first interruption, which it swallowed, is not news


CellTimeout.__module__ = "builtins"  # tracebacks show the bare name, as for a built-in exception


class Limit:
    """One active limit: what :func:`time_limit` yields, and what happened under it."""

    def __init__(self, seconds: float | None) -> None:
        self.seconds = float(seconds or 0)
        self.start = time.monotonic()
        self.deadline = self.start + self.seconds if self.seconds > 0 else None
        self.armed = True
        self.timed_out = False  # the deadline passed while the code ran
        self.interrupted = False  # Ctrl-C arrived while the code ran
        self.stop: type[BaseException] | None = None  # what is being raised (a later Ctrl-C wins)
        self.stopped_at = 0.0
        self.raised = False  # the first raise of ``stop`` was delivered
        self.ended_at: float | None = None

    # what the handlers and the checkpoint consult
    def exception(self) -> BaseException:
        again = self.raised
        if self.stop is CellTimeout:
            return CellTimeout(self.seconds, again=again)
        exc = KeyboardInterrupt()
        exc.__suppress_context__ = again
        return exc

    def hard(self, now: float) -> bool:
        """Past the grace: raise again wherever user code runs."""
        return self.armed and self.stop is not None and now >= self.stopped_at + GRACE

    def _mark(self, kind: type[BaseException], now: float) -> None:
        if kind is KeyboardInterrupt:
            self.interrupted = True
        else:
            self.timed_out = True
        if self.stop is None or (kind is KeyboardInterrupt and self.stop is not KeyboardInterrupt):
            self.stop, self.stopped_at, self.raised = kind, now, False

    @property
    def overrun(self) -> float:
        """Seconds the code ran past its deadline (0 if it did not)."""
        if self.deadline is None or not self.timed_out:
            return 0.0
        return max(0.0, (self.ended_at or time.monotonic()) - self.deadline)

    # context manager
    def __enter__(self) -> Limit:
        _enter(self)
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.armed = False  # first: an alarm from here on raises nothing
        self.ended_at = time.monotonic()
        _exit(self)


def time_limit(seconds: float | None) -> Limit:
    """A context manager raising :class:`CellTimeout` after ``seconds`` (none: Ctrl-C handling only)."""
    return Limit(seconds)


# --- the checkpoint compiled into every handler of generated code -----------------------------------

_stacks: dict[int, list[Limit]] = {}  # thread id -> active limits, outermost first


def checkpoint() -> None:
    """Raise the pending interruption again if its grace is over (else nothing)."""
    __tracebackhide__ = True
    stack = _stacks.get(threading.get_ident())
    if not stack:
        return
    now = time.monotonic()
    for lim in stack:
        if lim.hard(now):
            raise lim.exception()


#: the name :func:`~nbmagic.execution.cells.harden` compiles into handlers (a builtin, so cells and
#: the functions they define find it in any namespace, also after nbmagic's run)
CHECKPOINT_NAME = "__nbmagic_checkpoint__"
setattr(builtins, CHECKPOINT_NAME, checkpoint)


# --- main thread: SIGALRM and SIGINT ------------------------------------------------------------------


class _MainState:
    old_alarm: Any = None
    old_int: Any = None
    outer_deadline: float | None = None
    outer_interval = 0.0
    took_int = False


_main = _MainState()


def _main_stack() -> list[Limit]:
    return _stacks.get(threading.main_thread().ident or 0, [])


def _arm(now: float) -> None:
    """Set the one-shot alarm for the next thing any active limit waits for."""
    times: list[float] = []
    for lim in _main_stack():
        if not lim.armed:
            continue
        if lim.stop is None:
            if lim.deadline is not None:
                times.append(lim.deadline)
        elif not lim.raised:
            times.append(now + REPEAT)
        else:
            times.append(max(lim.stopped_at + GRACE, now + REPEAT))
    if _main.outer_deadline is not None:
        times.append(_main.outer_deadline)
    if times:
        signal.setitimer(signal.ITIMER_REAL, max(min(times) - now, 1e-3))
    else:
        signal.setitimer(signal.ITIMER_REAL, 0)


def _on_alarm(signum: int, frame: FrameType | None) -> None:
    __tracebackhide__ = True
    now = time.monotonic()
    try:
        if _main.outer_deadline is not None and now >= _main.outer_deadline - 1e-3:
            _main.outer_deadline = None
            if callable(_main.old_alarm):
                _main.old_alarm(signum, frame)  # pytest-timeout and the like: theirs comes first
        exc = _due(_main_stack(), now, frame)
    finally:
        _arm(now)
    if exc is not None:
        raise exc


def _due(stack: list[Limit], now: float, frame: FrameType | None) -> BaseException | None:
    """What to raise now in code at ``frame``, if anything (marks deadlines that passed)."""
    exc: BaseException | None = None
    for lim in stack:
        if not lim.armed:
            continue
        if lim.deadline is not None and now >= lim.deadline - 1e-3 and not lim.timed_out:
            lim._mark(CellTimeout, now)
        if lim.stop is None or exc is not None:
            continue
        if not lim.raised:
            if may_interrupt(frame, first=True):
                exc = lim.exception()
                lim.raised = True
        elif lim.hard(now) and may_interrupt(frame, first=False):
            exc = lim.exception()
    return exc


def _on_sigint(signum: int, frame: FrameType | None) -> None:
    __tracebackhide__ = True
    old = _main.old_int
    try:
        if callable(old) and old is not _on_sigint:
            old(signum, frame)
            return  # a handler that does not raise: it chose not to interrupt
        raise KeyboardInterrupt
    except KeyboardInterrupt:
        now = time.monotonic()
        for lim in _main_stack():
            if lim.armed:
                lim._mark(KeyboardInterrupt, now)
                lim.raised = True
        _arm(now)
        raise


def _use_signals() -> bool:
    return hasattr(signal, "setitimer") and threading.current_thread() is threading.main_thread()


def _enter(lim: Limit) -> None:
    tid = threading.get_ident()
    stack = _stacks.setdefault(tid, [])
    if not _use_signals():
        stack.append(lim)
        _Watchdog(lim, tid).start()
        return
    with deferred_interrupts():
        if not stack:  # outermost: take SIGALRM (and SIGINT) over, remember an outer timer
            now = time.monotonic()
            _main.old_alarm = signal.getsignal(signal.SIGALRM)
            delay, interval = signal.getitimer(signal.ITIMER_REAL)
            _main.outer_deadline = now + delay if delay > 0 else None
            _main.outer_interval = interval
            signal.signal(signal.SIGALRM, _on_alarm)
            _main.old_int = signal.getsignal(signal.SIGINT)
            _main.took_int = callable(_main.old_int)  # SIG_IGN / SIG_DFL / unknown: left alone
            if _main.took_int:
                signal.signal(signal.SIGINT, _on_sigint)
        stack.append(lim)
        _arm(time.monotonic())


def _exit(lim: Limit) -> None:
    tid = threading.get_ident()
    stack = _stacks.get(tid, [])
    watchdog = getattr(lim, "_watchdog", None)
    if watchdog is not None:
        watchdog.stop()
    if lim in stack:
        stack.remove(lim)
    if watchdog is not None or not _use_signals():
        if not stack:
            _stacks.pop(tid, None)
        return
    with deferred_interrupts():
        now = time.monotonic()
        if stack:
            _arm(now)
            return
        _stacks.pop(tid, None)
        signal.setitimer(signal.ITIMER_REAL, 0)
        # None: the old handler was not set from Python and cannot be put back
        signal.signal(signal.SIGALRM, signal.SIG_DFL if _main.old_alarm is None else _main.old_alarm)
        if _main.took_int:
            signal.signal(signal.SIGINT, _main.old_int)
        if _main.outer_deadline is not None:
            signal.setitimer(signal.ITIMER_REAL, max(1e-3, _main.outer_deadline - now), _main.outer_interval)
        _main.outer_deadline = None


def _after_fork_in_child() -> None:
    """A forked child (an RLM sub-agent's REPL) starts with no limits: the parent's deadlines, whose
    timer the child does not inherit, are not its own; it sets its own if it needs them."""
    _stacks.clear()
    _main.outer_deadline = None


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)


@contextmanager
def deferred_interrupts() -> Iterator[None]:
    """Hold SIGINT (and SIGALRM) while handlers are being swapped, so they cannot land half-way.

    A signal that arrives meanwhile is delivered right after, as usual.
    """
    can = hasattr(signal, "pthread_sigmask") and threading.current_thread() is threading.main_thread()
    held = {signal.SIGINT, signal.SIGALRM} if hasattr(signal, "SIGALRM") else {signal.SIGINT}
    if can:
        signal.pthread_sigmask(signal.SIG_BLOCK, held)
    try:
        yield
    finally:
        if can:
            signal.pthread_sigmask(signal.SIG_UNBLOCK, held)


# --- other threads: a watchdog with an asynchronous exception -------------------------------------------


def _set_async(tid: int, exc: type[BaseException] | None) -> None:
    """Schedule ``exc`` in thread ``tid`` (``None``: drop one scheduled and not yet raised)."""
    ctypes.pythonapi.PyThreadState_SetAsyncExc(ctypes.c_ulong(tid), None if exc is None else ctypes.py_object(exc))


class _Watchdog(threading.Thread):
    """Injects :class:`CellTimeout` into thread ``tid`` between bytecodes (no signals off the main thread)."""

    def __init__(self, lim: Limit, tid: int) -> None:
        super().__init__(name="nbmagic-time-limit", daemon=True)
        self.lim, self.tid = lim, tid
        self.done = threading.Event()
        self.lock = threading.Lock()
        lim._watchdog = self  # type: ignore[attr-defined]

    def run(self) -> None:
        lim = self.lim
        if lim.deadline is None or self.done.wait(max(0.0, lim.deadline - time.monotonic())):
            return
        while not self.done.wait(REPEAT if lim.raised else REPEAT / 5):
            with self.lock:
                if not lim.armed:
                    return
                now = time.monotonic()
                if not lim.timed_out:
                    lim._mark(CellTimeout, now)
                frame = sys._current_frames().get(self.tid)
                if frame is None:
                    return  # the thread is gone
                if may_interrupt(frame, first=not lim.raised) and (not lim.raised or lim.hard(now)):
                    lim.raised = True
                    _set_async(self.tid, CellTimeout)

    def stop(self) -> None:
        while True:  # an injected exception may land on the way in here: disarm until it sticks
            try:
                with self.lock:
                    self.lim.armed = False
                    _set_async(self.tid, None)  # drop one not yet delivered
                break
            except CellTimeout:
                continue
        self.done.set()
