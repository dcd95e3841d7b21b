"""Widget clicks while the cell runs: read comm messages from inside the busy kernel.

While ``%%agent`` runs, the kernel's main thread is inside that cell, so the
shell messages the browser sends (a button's click is a ``comm_msg``) wait
unread until the cell ends: a review panel would be dead exactly when it is
needed. The way out (the idea of the ``jupyter-ui-poll`` package, written anew
here for ipykernel 7) is to read the main shell's socket from inside the cell:

* ``comm_open`` / ``comm_msg`` / ``comm_close`` are handled on the spot by the
  kernel's own handlers (the widget's ``on_click`` runs, its output lands in the
  running cell, whose parent header is left as it was);
* anything else (the next cell's ``execute_request``, a completion request) is
  handed back to the kernel's own dispatcher, which queues it behind the running
  cell, in arrival order: nothing is lost or run early.

ipykernel 7 routes shell messages through its shell-channel thread to the main
thread over an in-process socket (``shell_channel_thread.manager``); without that
thread the main thread reads the shell ROUTER socket itself. Both are read the same
way. Where neither exists (plain IPython, another kernel, an older ipykernel),
:attr:`UiEvents.available` is ``False`` and callers fall back to a text prompt.
"""

from __future__ import annotations

import inspect
import threading
import time
from collections.abc import Callable
from typing import Any

__all__ = ["UiEvents"]

_COMM = frozenset({"comm_open", "comm_msg", "comm_close"})


def _drive(result: Any) -> None:
    """Run a handler's coroutine to its end without the (blocked) event loop.

    The comm handlers are synchronous in ipykernel 7; should one ever await a
    real future, the rest of it is left to the loop.
    """
    if not inspect.isawaitable(result):
        return
    coro = result.__await__() if not inspect.iscoroutine(result) else result
    try:
        while True:
            coro.send(None)
    except StopIteration:
        return


class UiEvents:
    """Process the frontend's comm messages from inside the running cell (see the module docstring)."""

    def __init__(self, shell: Any = None) -> None:
        if shell is None:
            try:
                from IPython import get_ipython

                shell = get_ipython()
            except ImportError:  # pragma: no cover - IPython is a dependency
                shell = None
        self.kernel = getattr(shell, "kernel", None)
        self.socket, self.stream = self._sockets(self.kernel)
        self.handled = 0  # comm messages processed
        self.deferred = 0  # other messages handed back for after the cell

    @staticmethod
    def _sockets(kernel: Any) -> tuple[Any, Any]:
        if kernel is None or not hasattr(kernel, "shell_main") or not hasattr(kernel, "session"):
            return None, None
        thread = getattr(kernel, "shell_channel_thread", None)
        if thread is not None:
            manager = getattr(thread, "manager", None)
            pair = getattr(manager, "_shell_channel_to_main", None)
            sock = getattr(pair, "to_socket", None)
            try:
                reply = manager.get_subshell_to_shell_channel_socket(None)
            except Exception:
                reply = None
            return sock, reply
        stream = getattr(kernel, "shell_stream", None)
        return getattr(stream, "socket", None), stream

    @property
    def available(self) -> bool:
        """True in an ipykernel whose shell socket this thread can read (the kernel's main thread)."""
        return self.socket is not None and threading.current_thread() is threading.main_thread()

    def poll(self) -> int:
        """Handle the comm messages waiting now; returns how many. Never blocks."""
        if not self.available:
            return 0
        import zmq

        kernel, session = self.kernel, self.kernel.session
        n = 0
        while True:
            try:
                frames = self.socket.recv_multipart(zmq.NOBLOCK, copy=False)
            except zmq.Again:
                return n
            try:
                idents, rest = session.feed_identities(frames, copy=False)
                header = session.deserialize(list(rest), content=False, copy=False)["header"]
            except Exception:
                continue  # not a message (ipykernel logs and drops these too)
            kind = header.get("msg_type")
            if kind not in _COMM:
                # back to the kernel's own dispatcher: it waits for the running cell, then runs in order
                kernel.io_loop.add_callback(kernel.shell_main, None, frames)
                self.deferred += 1
                continue
            try:
                msg = session.deserialize(list(rest), content=True, copy=False)
            except Exception:
                continue
            handler = kernel.shell_handlers.get(kind)
            if handler is None:
                continue
            try:
                _drive(handler(self.stream, idents, msg))
            except Exception:  # a widget callback's bug must not end the run (ipykernel logs it too)
                kernel.log.error("nbmagic: error in a comm handler", exc_info=True)
            self._acknowledge(msg)
            n += 1
            self.handled += 1

    def _acknowledge(self, msg: Any) -> None:
        """Say "idle" for the handled message, as the kernel's dispatcher would.

        ipywidgets keeps at most one state update in flight per widget until the
        kernel reports idle for it: without this, a text field typed into while the
        cell runs would send its first keystroke only. The running cell's own "busy"
        is said again right after, so the notebook still shows the kernel busy.
        """
        kernel = self.kernel
        try:
            kernel._publish_status("idle", "shell", parent=msg)
            kernel._publish_status("busy", "shell", parent=kernel.get_parent("shell"))
        except Exception:  # an ipykernel without these: clicks still work, typing may lag
            pass

    def wait(self, done: Callable[[], bool], timeout: float | None = None, interval: float = 0.05) -> bool:
        """Poll until ``done()`` is true (``True``) or ``timeout`` seconds pass (``False``).

        Ctrl-C (the kernel's interrupt) ends the wait with ``KeyboardInterrupt``, as any
        cell would.
        """
        end = None if timeout is None else time.monotonic() + timeout
        while True:
            self.poll()
            if done():
                return True
            if end is not None and time.monotonic() >= end:
                return False
            time.sleep(interval)
