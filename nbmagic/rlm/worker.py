"""The subprocess REPL's worker: ``python -m nbmagic.rlm.worker FD CONTEXTS MEM_MB HELPERS``.

It loads the contexts once from the pickle file, binds them as variables, and
then serves turns over the socket ``FD`` (a ``multiprocessing`` connection):
``("exec", turn, code, timeout, max_chars)`` → ``("done", turn, payload)``.
Helpers are stubs that send ``("call", id, name, args, kwargs)`` to the parent
and wait for the matching ``("reply", id, value, notice)``; replies to calls a
timed-out turn abandoned are recognised by id and dropped.

Only the standard library, the execution core (:mod:`nbmagic.execution`) and
:mod:`nbmagic.rlm.execution` are imported, so the worker starts quickly.
"""

from __future__ import annotations

import builtins
import itertools
import os
import pickle
import sys
import time
from typing import Any

from nbmagic.execution import CappedWriter, CellTimeout, time_limit
from nbmagic.execution.file_audit import CellAudit
from nbmagic.rlm.execution import LayeredNamespace, execute_code


def _set_memory_limit(mb: int) -> None:
    if mb <= 0:
        return
    try:
        import resource

        limit = mb * 1024 * 1024
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    except (ImportError, ValueError, OSError):  # pragma: no cover - not on this platform
        pass


def _die_with_parent() -> None:
    """Linux: the kernel kills this worker when its parent dies (a killed or restarted notebook
    kernel), even mid-turn in a loop that ignores the soft alarm. Elsewhere EOF on the socket
    ends it at the next read."""
    if not sys.platform.startswith("linux"):
        return
    try:
        import ctypes
        import signal

        ctypes.CDLL(None, use_errno=True).prctl(1, int(signal.SIGKILL))  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):  # pragma: no cover - no prctl in this libc
        pass


class Worker:
    def __init__(self, conn: Any, contexts: dict[str, Any], helper_names: list[str]) -> None:
        self.conn = conn
        self._ids = itertools.count(1)
        helpers = {name: self._stub(name) for name in helper_names}
        self.ns = LayeredNamespace({}, helpers)
        for name, value in contexts.items():
            self.ns.bind(name, value)
        self.context_names = set(contexts)
        self.busy = False  # a turn is running (Ctrl-C interrupts it)

    def _stub(self, name: str) -> Any:
        def helper(*args: Any, **kwargs: Any) -> Any:
            return self.call_parent(name, args, kwargs)

        helper.__name__ = helper.__qualname__ = name
        return helper

    def call_parent(self, name: str, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        cid = next(self._ids)
        try:
            self.conn.send(("call", cid, name, args, kwargs))
        except (pickle.PicklingError, TypeError, AttributeError) as exc:
            raise TypeError(
                f"{name}() arguments must be plain data (str, numbers, lists, dicts, DataFrames): {exc}"
            ) from None
        while True:
            msg = self.conn.recv()
            if msg[0] == "reply" and msg[1] == cid:
                value, notice, error = msg[2], msg[3], msg[4]
                if notice:
                    print(notice)
                if error is not None:
                    kind = getattr(builtins, error[0], None)  # a user tool's own exception type, if builtin
                    if not (isinstance(kind, type) and issubclass(kind, Exception)):
                        raise RuntimeError(f"{error[0]}: {error[1]}")
                    raise kind(error[1])
                return value
            if msg[0] == "fork":  # spawn_agents, being served, forks this REPL as it is now
                self.fork()
            elif msg[0] == "adopt":  # adopt(), being served, merges a sub-agent's variables
                self.adopt(msg[1])
            # else a stale reply to a call an interrupted turn abandoned: drop it

    def run_turn(self, turn: int, code: str, timeout: float | None, max_chars: int) -> None:
        from nbmagic.rlm.repl_base import end_turn, restore_helpers

        notes = []
        restore_helpers(self.ns, notes)
        out = CappedWriter(max_chars)
        res: dict[str, Any] = {"error": None, "exited": False}
        t0 = time.monotonic()
        limit = time_limit(timeout)
        # files count against the user's folder (this process runs in a temporary one)
        audit = CellAudit(os.environ.get("NBMAGIC_AUDIT_DIR") or None, source=code)
        self.busy = True
        try:
            with audit, limit:
                res = execute_code(code, self.ns, filename=f"<rlm-turn-{turn}>", out=out)
        except CellTimeout:
            pass
        except KeyboardInterrupt:  # the kernel passed a Ctrl-C on (see SubprocessEnvironment.interrupt)
            out.write("\nKeyboardInterrupt\n")
            res["error"] = "KeyboardInterrupt"
        finally:
            self.busy = False
        timed_out = limit.timed_out  # also when the code caught the interruption and finished
        end_turn(out, self.ns, notes, timed_out=timed_out, timeout=timeout)
        payload = {
            "output": out.getvalue(),
            "error": "TimeoutError" if timed_out else res["error"],
            "timed_out": timed_out,
            "exited": res["exited"],
            "notes": notes,
            "seconds": time.monotonic() - t0,
            "files": audit.record.to_json() if audit.record is not None else "",
        }
        self.conn.send(("done", turn, payload))

    def export(self) -> None:
        blobs: dict[str, bytes] = {}
        base = getattr(self, "fork_base", None)  # a fork exports what it changed since the fork
        for name, value in self.ns.own_variables(skip=self.context_names).items():
            if base is not None and base.get(name) == id(value):
                continue
            try:
                blobs[name] = pickle.dumps(value, protocol=pickle.HIGHEST_PROTOCOL)
            except Exception:
                continue
        self.conn.send(("exported", blobs))

    def bind(self, path: str) -> None:
        with open(path, "rb") as f:
            contexts = pickle.load(f)
        for name, value in contexts.items():
            self.ns.bind(name, value)
        self.context_names |= set(contexts)
        self.conn.send(("bound",))

    def adopt(self, path: str) -> None:
        with open(path, "rb") as f:
            values = pickle.load(f)
        for name, value in values.items():
            self.ns.bind(name, value)
        self.conn.send(("adopted", sorted(values)))

    def fork(self) -> None:
        """A sub-agent's REPL: a process with this REPL's state (copied on write) and its own pipe.

        Double fork: the intermediate child exits at once, so the REPL process is reaped by
        the system and this worker keeps no zombies nor changes its SIGCHLD handling. The
        REPL's end of a new socket pair goes to the parent (SCM_RIGHTS); the REPL first sends
        its pid there, then serves turns until closed and exits without running anything else
        of this process (it forked from inside a helper call's wait).
        """
        import os
        import socket
        from multiprocessing import reduction
        from multiprocessing.connection import Connection

        mine, theirs = socket.socketpair()
        try:
            pid = os.fork()
        except OSError as exc:
            mine.close()
            theirs.close()
            self.conn.send(("fork-failed", f"{exc.strerror or exc}"))
            return
        if pid == 0:
            try:
                if os.fork() == 0:
                    code = 0
                    try:
                        mine.close()
                        self.conn.close()  # our copy of the first worker's pipe: never read here
                        self.conn = Connection(theirs.detach())
                        self._ids = itertools.count(1)
                        self.fork_base = {k: id(v) for k, v in dict.items(self.ns)}  # "changed" is from here
                        self.conn.send(("fork-ready", os.getpid()))
                        self.serve()
                    except BaseException:
                        code = 1
                    finally:
                        os._exit(code)
            finally:
                os._exit(0)
        os.waitpid(pid, 0)
        theirs.close()
        self.conn.send(("forked",))
        reduction.send_handle(self.conn, mine.fileno(), os.getppid())
        mine.close()

    def on_sigint(self, signum: int, frame: Any) -> None:
        """Ctrl-C stops a running turn; between turns (a late signal) it is ignored, so the REPL lives."""
        if self.busy:
            raise KeyboardInterrupt

    def serve(self) -> None:
        import signal

        signal.signal(signal.SIGINT, self.on_sigint)
        while True:
            try:
                msg = self.conn.recv()
            except (EOFError, OSError):
                return
            kind = msg[0]
            if kind == "exec":
                self.run_turn(*msg[1:])
            elif kind == "export":
                self.export()
            elif kind == "bind":  # a continued session's new contexts
                self.bind(msg[1])
            elif kind == "adopt":  # a sub-agent's variables, merged by the root
                self.adopt(msg[1])
            elif kind == "fork":  # a sub-agent's REPL: this state, copied on write
                self.fork()
            elif kind == "close":
                return
            # "reply" here is stale (its turn already ended): ignore


def main(argv: list[str]) -> int:
    from multiprocessing.connection import Connection

    fd, context_file, mem_mb, names = argv[:4]
    conn = Connection(int(fd))
    _die_with_parent()
    _set_memory_limit(int(mem_mb))
    try:
        with open(context_file, "rb") as f:
            contexts = pickle.load(f)
    except Exception as exc:
        conn.send(("error", f"could not load the contexts: {type(exc).__name__}: {exc}"))
        return 1
    worker = Worker(conn, contexts, [n for n in names.split(",") if n])
    conn.send(("ready", {"python": sys.version.split()[0]}))
    worker.serve()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
