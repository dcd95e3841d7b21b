"""A REPL in a worker process behind a pipe (:class:`PipedWorker`), and a fork of one (:class:`ForkedWorker`).

The pipe protocol (``exec``/``done`` turns, ``call``/``reply`` helper calls, ``export``, ``adopt``,
``fork``) is :mod:`nbmagic.rlm.worker`'s other end. A Ctrl-C that reaches only this process is
passed on to the worker (:meth:`PipedWorker.interrupt`).
"""

from __future__ import annotations

import os
import pickle
import signal
import subprocess
import sys
import time
from abc import abstractmethod
from collections.abc import Mapping
from typing import Any, Protocol

from nbmagic.errors import ConfigError, NbmagicError
from nbmagic.execution import GRACE
from nbmagic.execution.file_audit import CellRecord
from nbmagic.rlm.repl_base import Environment, Helper, TurnOutput, timeout_message


class ProcessHandle(Protocol):
    """What a piped REPL needs of its worker process: a ``Popen``, or a fork that is not our child."""

    pid: int

    def poll(self) -> int | None: ...

    def wait(self, timeout: float | None = None) -> int: ...

    def kill(self) -> None: ...


class PipedWorker(Environment):
    """A REPL in a worker process behind a pipe: turns, helper calls, interrupts, forks, export.

    :class:`~nbmagic.rlm.repl_subprocess.SubprocessEnvironment` starts (and restarts) its own
    worker; :class:`ForkedWorker` is a fork of one, which cannot be restarted. Each says what
    :meth:`_restart` means for it.
    """

    name = "subprocess"
    parallel_forks = True

    def __init__(self, *, memory_limit_mb: int | None = 4096, grace: float = 2.0, python: str | None = None) -> None:
        self.memory_limit_mb = memory_limit_mb
        self.grace = grace
        self.python = python or sys.executable
        self.helpers: dict[str, Helper] = {}
        self.proc: ProcessHandle | None = None
        self.conn: Any = None
        self.restarts = 0
        self._turn = 0
        self._notes_next: list[str] = []  # told to the model with the next turn (a restart after Ctrl-C)

    @abstractmethod
    def _restart(self) -> None:
        """Bring the REPL back after its worker died or hung (a fork cannot: it is gone)."""

    def set_helpers(self, helpers: Mapping[str, Helper]) -> None:
        if set(helpers) != set(self.helpers):  # the worker's stubs are named at its start
            raise ConfigError(
                "This session's subprocess REPL was started with other helpers or tools "
                f"({', '.join(sorted(self.helpers))}); reset the session to change them."
            )
        self.helpers = dict(helpers)

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc is not None else None

    def fork(self) -> ForkedWorker:
        """Fork the worker (also while it waits inside a helper call): a real copy of its state."""
        from multiprocessing import reduction
        from multiprocessing.connection import Connection

        if self.conn is None or self.proc is None or self.proc.poll() is not None:
            raise NbmagicError("The RLM worker is not running, so it cannot be forked for sub-agents.")
        self.conn.send(("fork",))
        if not self.conn.poll(30):
            raise NbmagicError("The RLM worker did not fork within 30 s.")
        msg = self.conn.recv()
        if msg[0] != "forked":
            raise NbmagicError(f"The RLM worker could not fork for a sub-agent: {msg[1] if len(msg) > 1 else msg}")
        conn = Connection(reduction.recv_handle(self.conn))
        if not conn.poll(30):
            conn.close()
            raise NbmagicError("The sub-agent's forked REPL did not start within 30 s.")
        ready = conn.recv()
        return ForkedWorker(self, int(ready[1]), conn)

    # -- turns --

    def execute(self, code: str, *, timeout: float | None, max_output_chars: int) -> TurnOutput:
        notes, self._notes_next = self._notes_next, []
        try:
            return self._execute(code, timeout, max_output_chars, notes)
        except KeyboardInterrupt:  # Ctrl-C reached this process: the worker must stop too
            self.interrupt()
            raise

    def interrupt(self) -> None:
        """Stop the turn the worker is running, after a Ctrl-C that reached only this process.

        The worker gets SIGINT (its turn ends with ``KeyboardInterrupt``, variables kept); code
        that swallows it and is still running after ``grace`` seconds gets the worker restarted,
        and the next turn tells the model its variables are gone. Either way the next turn does
        not wait behind the interrupted one.
        """
        if self.proc is None or self.conn is None or self.proc.poll() is not None:
            return
        deadline = time.monotonic() + self.grace
        signalled = False
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                break
            try:  # a Ctrl-C sent to the whole process group reached the worker already: wait a moment first
                if self.conn.poll(min(left, 0.2) if not signalled else left) and self.conn.recv()[0] == "done":
                    return
            except (EOFError, OSError):
                break
            if not signalled:
                signalled = True
                try:
                    os.kill(self.proc.pid, signal.SIGINT)
                except ProcessLookupError:
                    break
        self._restart()
        self._notes_next.append(
            "The interrupted turn did not stop, so the REPL worker was restarted: variables from earlier "
            "turns are gone; contexts were reloaded.")

    def _execute(self, code: str, timeout: float | None, max_output_chars: int, notes: list[str]) -> TurnOutput:
        if self.proc is None or self.proc.poll() is not None:
            self._restart()
            notes.append("The REPL worker had stopped and was restarted: earlier variables are gone.")
        self._turn += 1
        turn = self._turn
        t0 = time.monotonic()
        # the worker's own limit may take GRACE more to stop code that swallows it; then it is killed
        hard = t0 + timeout + GRACE + self.grace if timeout else None
        try:
            self.conn.send(("exec", turn, code, timeout, max_output_chars))
        except (OSError, BrokenPipeError):
            return self._died(t0, notes, "")
        while True:
            wait = None if hard is None else hard - time.monotonic()
            if wait is not None and wait <= 0 and not self._pending():
                self._restart()
                return TurnOutput(
                    output=timeout_message(timeout or 0, kept=False),
                    error="TimeoutError",
                    seconds=time.monotonic() - t0,
                    timed_out=True,
                    restarted=True,
                    notes=notes,
                )
            try:
                if not self.conn.poll(max(wait, 0) if wait is not None else None):
                    continue
                msg = self.conn.recv()
            except (EOFError, OSError):
                return self._died(t0, notes, "")
            kind = msg[0]
            if kind == "call":
                self._service(msg)
            elif kind == "done" and msg[1] == turn:
                payload = msg[2]
                return TurnOutput(
                    output=payload["output"],
                    error=payload["error"],
                    seconds=time.monotonic() - t0,
                    timed_out=payload["timed_out"],
                    exited=payload["exited"],
                    notes=notes + payload["notes"],
                    files=CellRecord.from_json(payload.get("files")),
                )

    def _pending(self) -> bool:
        """A message already waiting (say, the worker's own soft-timeout report)?"""
        try:
            return bool(self.conn.poll(0))
        except OSError:
            return False

    def _service(self, msg: tuple[Any, ...]) -> None:
        """Run a helper the worker asked for and send back its result."""
        _, cid, name, args, kwargs = msg
        fn = self.helpers.get(name)
        value: Any = None
        notice: str | None = None
        error: tuple[str, str] | None = None
        try:
            if fn is None:
                raise NameError(f"no helper {name!r}")
            value, notice = fn(*args, **kwargs)
        except (TypeError, ValueError, NameError) as exc:  # bad arguments: raised again in the worker
            error = (type(exc).__name__, str(exc))
        except NbmagicError as exc:
            value = f"[error] {name} failed: {exc.message}"
        except Exception as exc:  # a helper bug must not end the run (nor leave the worker waiting)
            if getattr(fn, "raises_in_repl", False):  # a user tool: its exception reaches the code, as in-kernel
                error = (type(exc).__name__, str(exc))
            else:
                value = f"[error] {name} failed: {type(exc).__name__}: {exc}"
        try:
            self.conn.send(("reply", cid, value, notice, error))
        except (pickle.PicklingError, TypeError, AttributeError):
            self.conn.send(("reply", cid, repr(value), notice, error))
        except OSError:
            pass  # the worker is gone; the caller notices on the next read

    def _died(self, t0: float, notes: list[str], output: str) -> TurnOutput:
        try:
            code = self.proc.wait(timeout=1) if self.proc is not None else None
        except subprocess.TimeoutExpired:  # alive but its connection is gone (code closed the socket)
            code = None
        if code is None:
            why = "its connection to this process was closed"
        elif code < 0:
            why = f"killed by signal {-code}" + (" (often: out of memory)" if code == -9 else "")
        else:
            why = f"exit status {code}"
        self._restart()
        return TurnOutput(
            output=output
            + f"\nThe REPL worker process died ({why}) and was restarted: variables from earlier turns "
            "are gone; contexts were reloaded.\n",
            error="WorkerDied",
            seconds=time.monotonic() - t0,
            restarted=True,
            notes=notes,
        )

    def export(self) -> dict[str, Any]:
        if self.conn is None or self.proc is None or self.proc.poll() is not None:
            return {}
        try:
            self.conn.send(("export",))
            while True:
                if not self.conn.poll(30):
                    return {}
                msg = self.conn.recv()
                if msg[0] == "exported":
                    break
        except (EOFError, OSError):  # the worker died: nothing to export, the answer still stands
            return {}
        out = {}
        for name, blob in msg[1].items():
            try:
                out[name] = pickle.loads(blob)
            except Exception:  # a class defined only in the worker, say
                continue
        return out


    def _kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:  # pragma: no cover
                pass
        if self.conn is not None:
            try:
                self.conn.close()
            except OSError:  # pragma: no cover
                pass
        self.conn = None


class _ForkProcess:
    """What :class:`SubprocessEnvironment` needs of a ``Popen``, for a process that is not our child."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.returncode: int | None = None

    def poll(self) -> int | None:
        if self.returncode is None:
            try:
                os.kill(self.pid, 0)
                with open(f"/proc/{self.pid}/stat", "rb") as f:  # Linux: exited, not yet reaped by init
                    if f.read().rsplit(b")", 1)[-1].split()[0] == b"Z":
                        self.returncode = -1
            except (ProcessLookupError, PermissionError):
                self.returncode = -1
            except (OSError, IndexError):  # no /proc (macOS): kill(pid, 0) is the answer
                pass
        return self.returncode

    def wait(self, timeout: float | None = None) -> int:
        deadline = None if timeout is None else time.monotonic() + timeout
        while self.poll() is None:
            if deadline is not None and time.monotonic() > deadline:
                raise subprocess.TimeoutExpired(f"pid {self.pid}", timeout or 0)
            time.sleep(0.02)
        return self.returncode  # type: ignore[return-value]

    def kill(self) -> None:
        import signal

        try:
            os.kill(self.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


class ForkedWorker(PipedWorker):
    """A sub-agent's REPL: a fork of the worker, with its own pipe; it cannot be restarted
    (its state came from the root's REPL), so a fork that dies or is killed is gone."""

    def __init__(self, parent: PipedWorker, pid: int, conn: Any) -> None:
        super().__init__(memory_limit_mb=parent.memory_limit_mb, grace=parent.grace, python=parent.python)
        self.proc = _ForkProcess(pid)
        self.conn = conn
        self.helpers = dict(parent.helpers)
        self._turn = parent._turn
        self.gone = False

    def start(self, contexts: Mapping[str, Any], helpers: Mapping[str, Helper]) -> None:
        """Started by the fork already (its contexts came with the copy): it takes the helpers."""
        self.set_helpers(helpers)

    def _restart(self) -> None:
        self._kill()
        self.gone = True

    def close(self) -> None:
        """Ask the fork to exit and wait for its end of the pipe to close (it has no workdir of its own)."""
        ended = False
        if self.conn is not None:
            try:
                self.conn.send(("close",))
                while self.conn.poll(2):
                    self.conn.recv()  # a late message; EOF ends the loop
            except (EOFError, OSError):
                ended = True
        if not ended:
            self._kill()
        elif self.conn is not None:
            self.conn.close()
        self.conn = None
        self.gone = True

    def execute(self, code: str, *, timeout: float | None, max_output_chars: int) -> TurnOutput:
        if self.gone or self.proc is None or self.proc.poll() is not None:
            return TurnOutput(output="This sub-agent's forked REPL is gone (it died or was stopped). "
                              "Submit what you have.\n", error="WorkerDied")
        return super().execute(code, timeout=timeout, max_output_chars=max_output_chars)
