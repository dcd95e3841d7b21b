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
"""

from __future__ import annotations

import os
import pickle
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from abc import ABC, abstractmethod
from collections import ChainMap
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from nbmagic.errors import ConfigError, NbmagicError
from nbmagic.execution import GRACE, CappedWriter, CellTimeout, process_guard, time_limit
from nbmagic.rlm.execution import LayeredNamespace, execute_code
from nbmagic.rlm.settings import ENVIRONMENTS
from nbmagic.secrets import env_without_secrets

#: A helper as the engine defines it: returns (value for the code, notice to print or None).
Helper = Callable[..., tuple[Any, "str | None"]]

@dataclass
class TurnOutput:
    """What one turn of code produced."""

    output: str
    error: str | None = None
    seconds: float = 0.0
    timed_out: bool = False
    exited: bool = False
    restarted: bool = False
    notes: list[str] = field(default_factory=list)


def timeout_message(seconds: float, *, kept: bool) -> str:
    where = (
        "Variables assigned before that point are kept."
        if kept
        else "The worker was killed and restarted: variables from earlier turns are gone; contexts were reloaded."
    )
    return (
        f"\nTimeoutError: this turn ran past its {seconds:g} s limit and was stopped. {where} "
        "Work on smaller pieces, or use llm_query_batched for many sub-calls.\n"
    )


def helpers_note(names: list[str]) -> str:
    return (
        f"Note: {', '.join(sorted(names))} {'is an RLM helper' if len(names) == 1 else 'are RLM helpers'}; "
        "your reassignment was undone and the real helper is back."
    )


class Environment(ABC):
    """One persistent REPL for one RLM invocation."""

    name = "base"

    @abstractmethod
    def start(self, contexts: Mapping[str, Any], helpers: Mapping[str, Helper]) -> None:
        """Bind the contexts as variables and install the helpers."""

    @abstractmethod
    def execute(self, code: str, *, timeout: float | None, max_output_chars: int) -> TurnOutput:
        """Run one turn of code."""

    @abstractmethod
    def export(self) -> dict[str, Any]:
        """The variables the model created (for ``export=True``)."""

    def close(self) -> None:  # noqa: B027 - optional hook, nothing to release by default
        """Release the environment (processes, temporary files)."""

    # -- persistent sessions (a REPL that serves several queries) --

    def add_contexts(self, contexts: Mapping[str, Any]) -> None:
        """Bind more contexts into a started REPL (a follow-up question with new data)."""
        raise ConfigError(f"The {self.name!r} REPL cannot take new contexts after it started; reset the session.")

    def set_helpers(self, helpers: Mapping[str, Helper]) -> None:
        """Point the helper names at a new query's helpers (fresh budget, fresh submit)."""
        raise ConfigError(f"The {self.name!r} REPL cannot serve a second query; reset the session.")

    # -- sub-agents on forked state --

    #: whether forks run their turns in parallel (separate processes) or one after another
    parallel_forks = False

    def fork(self) -> Environment:
        """A started REPL with this one's variables, for a sub-agent."""
        raise ConfigError(f"The {self.name!r} REPL cannot be forked for sub-agents.")

    def adopt(self, values: Mapping[str, Any]) -> list[str]:
        """Bind a sub-agent's variables here (what ``adopt(i)`` merges); the names bound."""
        raise ConfigError(f"The {self.name!r} REPL cannot adopt a sub-agent's variables.")

    def __enter__(self) -> Environment:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


# --- kernel --------------------------------------------------------------------------


def _wrap_helper(name: str, fn: Helper) -> Callable[..., Any]:
    def helper(*args: Any, **kwargs: Any) -> Any:
        value, notice = fn(*args, **kwargs)
        if notice:
            print(notice)
        return value

    helper.__name__ = helper.__qualname__ = name
    helper.__doc__ = getattr(fn, "__doc__", None)
    return helper


class KernelEnvironment(Environment):
    """Code runs here, in a layer over ``namespace`` (the user's variables)."""

    name = "kernel"

    def __init__(self, namespace: Mapping[str, Any] | None = None) -> None:
        self.base: Mapping[str, Any] = namespace if namespace is not None else {}
        self.ns: LayeredNamespace | None = None
        self._context_names: set[str] = set()
        self._turn = 0

    def start(self, contexts: Mapping[str, Any], helpers: Mapping[str, Helper]) -> None:
        reserved = {name: _wrap_helper(name, fn) for name, fn in helpers.items()}
        self.ns = LayeredNamespace(self.base, reserved)
        for name, value in contexts.items():
            self.ns.bind(name, value)
        self._context_names = set(contexts)

    def execute(self, code: str, *, timeout: float | None, max_output_chars: int) -> TurnOutput:
        if self.ns is None:
            raise RuntimeError("start() the environment first")
        notes: list[str] = []
        changed = self.ns.restore()
        if changed:
            notes.append(helpers_note(changed))
        self._turn += 1
        out = CappedWriter(max_output_chars)
        t0 = time.monotonic()
        res: dict[str, Any] = {"error": None, "exited": False}
        limit = time_limit(timeout)
        try:
            with process_guard(), limit:  # os._exit & co. must not end the user's kernel
                res = execute_code(code, self.ns, filename=f"<rlm-turn-{self._turn}>", out=out)
        except CellTimeout:
            if not limit.timed_out:
                raise  # an enclosing turn's limit (a child RLM inside a helper call)
        if limit.interrupted:
            raise KeyboardInterrupt  # Ctrl-C, even one the model's code swallowed
        timed_out = limit.timed_out  # also when the code caught the interruption and finished
        if timed_out:
            out.write(timeout_message(timeout or 0, kept=True))
        changed = self.ns.restore()
        if changed:
            notes.append(helpers_note(changed))
        return TurnOutput(
            output=out.getvalue(),
            error="TimeoutError" if timed_out else res["error"],
            seconds=time.monotonic() - t0,
            timed_out=timed_out,
            exited=res["exited"],
            notes=notes,
        )

    def export(self) -> dict[str, Any]:
        if self.ns is None:
            return {}
        own = self.ns.own_variables(skip=self._context_names)
        inherited = getattr(self, "inherited", None)
        if inherited:  # a fork: only what it changed (an `import os` the root made too is no change)
            own = {k: v for k, v in own.items() if not (k in inherited and inherited[k] is v)}
        return own

    def add_contexts(self, contexts: Mapping[str, Any]) -> None:
        if self.ns is None:
            raise RuntimeError("start() the environment first")
        for name, value in contexts.items():
            self.ns.bind(name, value)
        self._context_names |= set(contexts)

    def set_helpers(self, helpers: Mapping[str, Helper]) -> None:
        if self.ns is None:
            raise RuntimeError("start() the environment first")
        for name in [n for n in self.ns.reserved if n not in helpers]:  # a helper this query does not offer
            self.ns.reserved.pop(name)
            dict.pop(self.ns, name, None)
        self.ns.reserved.update({name: _wrap_helper(name, fn) for name, fn in helpers.items()})
        self.ns.restore()

    def fork(self) -> KernelEnvironment:
        """A layer over a copy of this layer's variables (a shallow copy: objects are shared, so
        in-place mutation shows in both; names the fork assigns stay in the fork)."""
        if self.ns is None:
            raise RuntimeError("start() the environment first")
        layer = {k: v for k, v in dict.items(self.ns)
                 if k not in self.ns.reserved and not (k.startswith("__") and k.endswith("__"))}
        child = KernelEnvironment(ChainMap(layer, self.base))  # type: ignore[arg-type]
        child.ns = LayeredNamespace(child.base, dict(self.ns.reserved))
        child._context_names = set(self._context_names)
        child._turn = self._turn
        child.inherited = layer  # type: ignore[attr-defined]  # what the fork reads through (listed to it)
        return child

    def adopt(self, values: Mapping[str, Any]) -> list[str]:
        if self.ns is None:
            raise RuntimeError("start() the environment first")
        for name, value in values.items():
            self.ns.bind(name, value)
        return sorted(values)


# --- subprocess -------------------------------------------------------------------------

def _worker_env() -> dict[str, str]:
    """The worker's environment: ours minus anything that looks like a credential."""
    env = env_without_secrets()
    root = str(Path(__file__).resolve().parents[2])
    env["PYTHONPATH"] = os.pathsep.join(p for p in (root, env.get("PYTHONPATH", "")) if p)
    env["PYTHONUNBUFFERED"] = "1"
    return env


class SubprocessEnvironment(Environment):
    """Code runs in a persistent worker process with time and memory limits."""

    name = "subprocess"

    def __init__(
        self,
        *,
        memory_limit_mb: int | None = 4096,
        grace: float = 2.0,
        startup_timeout: float = 60.0,
        python: str | None = None,
    ) -> None:
        if os.name == "nt":
            raise ConfigError(
                "environment='subprocess' needs a POSIX system (Linux, macOS); use environment='kernel'."
            )
        self.memory_limit_mb = memory_limit_mb
        self.grace = grace
        self.startup_timeout = startup_timeout
        self.python = python or sys.executable
        self.workdir: Path | None = None
        self.context_file: Path | None = None
        self.helpers: dict[str, Helper] = {}
        self.proc: subprocess.Popen[bytes] | None = None
        self.conn: Any = None
        self.restarts = 0
        self._turn = 0
        self._log: Any = None
        self._extra_files: list[Path] = []
        self._notes_next: list[str] = []  # told to the model with the next turn (a restart after Ctrl-C)

    # -- lifecycle --

    def start(self, contexts: Mapping[str, Any], helpers: Mapping[str, Helper]) -> None:
        self.helpers = dict(helpers)
        self.workdir = Path(tempfile.mkdtemp(prefix="nbmagic-rlm-"))
        self.context_file = self.workdir / ".contexts.pkl"
        try:  # straight to the file: a 5 GB context is not held a second time as bytes
            with open(self.context_file, "wb") as f:
                pickle.dump(dict(contexts), f, protocol=pickle.HIGHEST_PROTOCOL)
        except OSError as exc:
            self.close()
            raise ConfigError(
                f"Could not write the contexts for the subprocess REPL to {tempfile.gettempdir()!r}: "
                f"{exc.strerror or exc}. Free some space there (or set TMPDIR), or use environment='kernel'."
            ) from None
        except Exception:
            bad = [n for n, v in contexts.items() if not _picklable(v)]
            self.close()
            raise ConfigError(
                f"Context {', '.join(map(repr, bad)) or '?'} cannot be sent to the subprocess REPL "
                "(it cannot be pickled). Use environment='kernel', or pass plain data "
                "(str, list, dict, DataFrame, a path)."
            ) from None
        self._spawn()

    def _spawn(self) -> None:
        from multiprocessing.connection import Connection

        assert self.workdir is not None and self.context_file is not None
        parent_sock, child_sock = socket.socketpair()
        if self._log is None:
            self._log = open(self.workdir / ".worker.log", "ab")  # noqa: SIM115 - lives as long as the env
        cmd = [
            self.python,
            "-m",
            "nbmagic.rlm.worker",
            str(child_sock.fileno()),
            str(self.context_file),
            str(self.memory_limit_mb or 0),
            ",".join(self.helpers),
        ]
        try:
            self.proc = subprocess.Popen(
                cmd,
                cwd=self.workdir,
                pass_fds=[child_sock.fileno()],
                stdin=subprocess.DEVNULL,
                stdout=self._log,
                stderr=subprocess.STDOUT,
                env=_worker_env(),
            )
        except OSError as exc:  # no such interpreter, out of processes or file descriptors
            parent_sock.close()
            raise NbmagicError(f"Could not start the RLM worker process ({self.python}): {exc.strerror or exc}") from None
        finally:
            child_sock.close()
        self.conn = Connection(parent_sock.detach())
        if not self.conn.poll(self.startup_timeout):
            self._kill()
            raise NbmagicError(f"The RLM worker process did not start within {self.startup_timeout:g} s.")
        try:
            msg = self.conn.recv()
        except (EOFError, OSError):
            msg = ("error", f"the worker exited during startup ({self._log_tail()})")
        if msg[0] != "ready":
            self._kill()
            raise NbmagicError(f"The RLM worker process failed to start: {msg[1]}")

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

    def _restart(self) -> None:
        self._kill()
        self.restarts += 1
        self._spawn()
        for path in self._extra_files:  # contexts a continued session added
            self._bind(path)

    def _log_tail(self) -> str:
        try:
            assert self.workdir is not None
            return (self.workdir / ".worker.log").read_text(errors="replace")[-500:].strip()
        except OSError:
            return ""

    def close(self) -> None:
        if self.conn is not None and self.proc is not None and self.proc.poll() is None:
            try:
                self.conn.send(("close",))
                self.proc.wait(timeout=2)
            except (OSError, subprocess.TimeoutExpired, BrokenPipeError):
                pass
        self._kill()
        self.proc = None
        if self._log is not None:
            self._log.close()
            self._log = None
        if self.workdir is not None:
            shutil.rmtree(self.workdir, ignore_errors=True)
            self.workdir = None

    def add_contexts(self, contexts: Mapping[str, Any]) -> None:
        """Pickle the new contexts to a file of their own that the worker binds (a restart binds it again)."""
        assert self.workdir is not None
        extra = self.workdir / f".contexts-{len(self._extra_files) + 1}.pkl"
        try:
            with open(extra, "wb") as f:
                pickle.dump(dict(contexts), f, protocol=pickle.HIGHEST_PROTOCOL)
        except OSError as exc:
            raise ConfigError(f"Could not write the new contexts for the subprocess REPL: {exc.strerror or exc}.") from None
        except Exception:
            bad = [n for n, v in contexts.items() if not _picklable(v)]
            raise ConfigError(
                f"Context {', '.join(map(repr, bad)) or '?'} cannot be sent to the subprocess REPL (it cannot be pickled)."
            ) from None
        self._extra_files.append(extra)
        if self.proc is None or self.proc.poll() is not None:
            self._restart()  # binds every file
        else:
            self._bind(extra)

    def _bind(self, path: Path) -> None:
        self.conn.send(("bind", str(path)))
        if not self.conn.poll(60) or self.conn.recv()[0] != "bound":
            raise NbmagicError("The RLM worker did not take the new contexts.")

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

    parallel_forks = True

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

    def adopt(self, values: Mapping[str, Any]) -> list[str]:
        assert self.workdir is not None
        path = self.workdir / f".adopt-{self._turn}-{len(values)}.pkl"
        try:
            with open(path, "wb") as f:
                pickle.dump(dict(values), f, protocol=pickle.HIGHEST_PROTOCOL)
        except Exception as exc:
            raise ConfigError(f"The sub-agent's variables could not be passed on: {exc}") from None
        self.conn.send(("adopt", str(path)))
        if not self.conn.poll(60):
            raise NbmagicError("The RLM worker did not take the sub-agent's variables.")
        msg = self.conn.recv()
        path.unlink(missing_ok=True)
        return list(msg[1])

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


class ForkedWorker(SubprocessEnvironment):
    """A sub-agent's REPL: a fork of the worker, with its own pipe; it cannot be restarted
    (its state came from the root's REPL), so a fork that dies or is killed is gone."""

    def __init__(self, parent: SubprocessEnvironment, pid: int, conn: Any) -> None:
        super().__init__(memory_limit_mb=parent.memory_limit_mb, grace=parent.grace, python=parent.python)
        self.proc = _ForkProcess(pid)  # type: ignore[assignment]
        self.conn = conn
        self.helpers = dict(parent.helpers)
        self._turn = parent._turn
        self.gone = False

    def start(self, contexts: Mapping[str, Any], helpers: Mapping[str, Helper]) -> None:
        raise RuntimeError("a forked REPL is started by its fork")

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


def _picklable(value: Any) -> bool:
    try:
        pickle.dumps(value, protocol=pickle.HIGHEST_PROTOCOL)
        return True
    except Exception:
        return False


def make_environment(kind: str | Environment, namespace: Mapping[str, Any] | None = None, **kwargs: Any) -> Environment:
    """``"kernel"``, ``"subprocess"``, or an :class:`Environment` instance as is."""
    if isinstance(kind, Environment):
        return kind
    if kind == "kernel":
        return KernelEnvironment(namespace)
    if kind == "subprocess":
        return SubprocessEnvironment(**kwargs)
    raise ConfigError(f"Unknown RLM environment {kind!r}; use one of: {', '.join(ENVIRONMENTS)}.")
