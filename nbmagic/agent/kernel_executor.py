"""Run generated cells in a fresh Jupyter kernel (``%%agent --kernel new``), not in the user's.

For work you do not trust: a cell that calls ``os._exit``, exhausts memory or
corrupts state ends or spoils that kernel, never the user's. The kernel is a
real ipykernel started through ``jupyter_client`` in the working folder; it
starts empty (none of the user's variables, no API keys in its environment), and the cells are delivered with
the outputs it produced, as a sibling notebook is (``-o`` keeps them as one
whose outputs match its kernel).

:class:`KernelExecutor` has the executors' interface (``run(code, timeout) ->
ExecResult``). Its time limit is the kernel's interrupt (SIGINT); code that
swallows the interrupt for longer than the execution core's grace gets the
kernel restarted (its variables are gone, and the cell's error says so). A
kernel that dies (``os._exit``) is restarted for the next cell the same way.
The local ``namespace`` is empty: the cells' variables live in that kernel.

The kernel records which files each cell wrote (:mod:`nbmagic.execution.file_audit`, its
source sent over at start, so the kernel needs no nbmagic of its own); after each cell a
silent request fetches the record into ``last_files`` (``audits_files``), which the
agent's file ledger folds in. A cell whose kernel died or was restarted reports no files.
"""

from __future__ import annotations

import ast
import os
import queue
import subprocess
import time
from collections.abc import MutableMapping
from pathlib import Path
from typing import Any

from nbmagic.agent.executor import ExecResult, OutputCollector, strip_ansi
from nbmagic.errors import NbmagicError
from nbmagic.execution import GRACE
from nbmagic.execution.file_audit import CellRecord
from nbmagic.secrets import env_without_secrets
from nbmagic.text import truncate

#: seconds to wait for the kernel to go idle after an interrupt before restarting it
INTERRUPT_WAIT = GRACE + 4.0

_AUDIT_MODULE = "_nbmagic_file_audit"
_TAKE = {"files": f"__import__({_AUDIT_MODULE!r}).take_json()"}


def _audit_setup(cwd: str) -> str:
    """Code that loads the file audit into the kernel as a private module and records its cells."""
    source = (Path(__file__).resolve().parents[1] / "execution" / "file_audit.py").read_text(encoding="utf-8")
    return (f"import sys as _s, types as _t\n_m = _t.ModuleType({_AUDIT_MODULE!r})\n_s.modules[{_AUDIT_MODULE!r}] = _m\n"
            f"exec(compile({source!r}, '<nbmagic file audit>', 'exec'), _m.__dict__)\n"
            f"_m.attach_to_shell(get_ipython(), {cwd!r})\ndel _s, _t, _m\n")


class KernelExecutor:
    """Runs code in its own ipykernel; start it with :meth:`start` (or use it as a context manager)."""

    kind = "kernel"
    audits_files = True  # each run's file record is in ``last_files`` (see nbmagic.execution.file_ledger)

    def __init__(self, *, cwd: str | os.PathLike[str] | None = None, kernel_name: str = "python3",
                 startup_timeout: float = 60.0) -> None:
        self.cwd = os.fspath(cwd) if cwd is not None else os.getcwd()
        self.kernel_name = kernel_name
        self.startup_timeout = startup_timeout
        self.namespace: MutableMapping[str, Any] = {}  # the variables are in the kernel, not here
        self.km: Any = None
        self.kc: Any = None
        self.restarts = 0
        self.last_files: CellRecord | None = None

    # -- lifecycle ------------------------------------------------------------------------------

    def start(self) -> KernelExecutor:
        from jupyter_client import KernelManager

        try:
            self.km = KernelManager(kernel_name=self.kernel_name)
            # no API keys for code you do not trust; figures become PNG outputs, as in a notebook
            env = {**env_without_secrets(), "MPLBACKEND": "module://matplotlib_inline.backend_inline"}
            # its own log lines (the TCP warning, tracebacks of a crash) are not the user's output
            self.km.start_kernel(cwd=self.cwd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            self._connect()
        except NbmagicError:
            raise
        except Exception as exc:  # no such kernel spec, cannot spawn, did not answer
            self.close()
            raise NbmagicError(f"Could not start a new kernel ({self.kernel_name}) for --kernel new: "
                               f"{type(exc).__name__}: {exc}") from None
        return self

    def _connect(self) -> None:
        self.kc = self.km.blocking_client()
        self.kc.start_channels()
        try:
            self.kc.wait_for_ready(timeout=self.startup_timeout)
        except RuntimeError as exc:
            raise NbmagicError(f"The new kernel did not become ready within {self.startup_timeout:g} s: {exc}") from None
        # figures get their descriptions there too (what the model reads of a plot); silent, best effort
        self.kc.execute("try:\n    import nbmagic.execution.figures as _f; _f.install_kernel_hook(); del _f\n"
                        "except Exception:\n    pass", silent=True, store_history=False)
        self._silent(_audit_setup(self.cwd))

    def _silent(self, code: str, expressions: dict[str, str] | None = None) -> dict[str, Any]:
        """Run ``code`` silently (no outputs, no history, no cell events); its reply's user expressions."""
        try:
            reply = self.kc.execute(code, silent=True, store_history=False, user_expressions=expressions or {},
                                    allow_stdin=False, reply=True, timeout=30)
        except Exception:  # a kernel that does not answer: no file record, nothing worse
            return {}
        return reply.get("content", {}).get("user_expressions", {}) or {}

    def _take_files(self) -> CellRecord | None:
        """The kernel's record of the cell that just ran (None when it has none)."""
        value = self._silent("", _TAKE).get("files", {})
        try:
            text = ast.literal_eval(value.get("data", {}).get("text/plain", "''"))
        except (ValueError, SyntaxError, AttributeError):
            return None
        return CellRecord.from_json(text) if isinstance(text, str) else None

    def _restart(self) -> None:
        self.restarts += 1
        if self.kc is not None:
            self.kc.stop_channels()
        self.km.restart_kernel(now=True)
        self._connect()

    def close(self) -> None:
        """Shut the kernel down (idempotent)."""
        if self.kc is not None:
            try:
                self.kc.stop_channels()
            except Exception:  # pragma: no cover - channels already gone
                pass
            self.kc = None
        if self.km is not None:
            try:
                self.km.shutdown_kernel(now=True)
            except Exception:  # pragma: no cover - the process is gone already
                pass
            self.km = None

    def __enter__(self) -> KernelExecutor:
        return self.start() if self.km is None else self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- running a cell ---------------------------------------------------------------------------

    def run(self, code: str, timeout: float | None = None) -> ExecResult:
        if self.km is None:
            self.start()
        if not self.km.is_alive():
            self._restart()
        collector = OutputCollector()
        self.last_files = None
        t0 = time.perf_counter()
        msg_id = self.kc.execute(code, store_history=True, allow_stdin=False)
        deadline = time.monotonic() + timeout if timeout else None
        interrupted_at: float | None = None
        error: dict[str, Any] | None = None
        died = timed_out = restarted = False
        try:
            while True:
                wait = 0.5
                now = time.monotonic()
                if deadline is not None and now >= deadline and interrupted_at is None:
                    self.km.interrupt_kernel()
                    interrupted_at, timed_out = now, True
                if interrupted_at is not None and now >= interrupted_at + INTERRUPT_WAIT:
                    self._restart()  # it swallowed the interrupt: only a restart ends it
                    restarted = True
                    break
                try:
                    msg = self.kc.get_iopub_msg(timeout=wait)
                except queue.Empty:
                    if not self.km.is_alive():
                        died = True
                        self._restart()
                        restarted = True
                        break
                    continue
                if msg.get("parent_header", {}).get("msg_id") != msg_id:
                    continue
                kind, content = msg["msg_type"], msg["content"]
                if kind == "status" and content.get("execution_state") == "idle":
                    break
                if kind == "stream":
                    collector.stream(content.get("name", "stdout"), content.get("text", ""))
                elif kind in ("display_data", "execute_result", "update_display_data"):
                    collector.display(content.get("data", {}), content.get("metadata", {}),
                                      kind="execute_result" if kind == "execute_result" else "display_data")
                elif kind == "clear_output":
                    collector.clear()
                elif kind == "error":
                    error = content
                    collector.error(content.get("ename", "Error"), content.get("evalue", ""),
                                    content.get("traceback", []))
        except KeyboardInterrupt:  # Ctrl-C in the user's kernel: stop the cell there too
            self.km.interrupt_kernel()
            raise
        seconds = time.perf_counter() - t0
        if not restarted:
            self.last_files = self._take_files()
        if error is None and not (timed_out or died or restarted):
            return ExecResult(collector.outputs, True, seconds=seconds)
        if timed_out or died or restarted:
            ename = "CellTimeout" if timed_out else "KernelDied"
            if timed_out:
                evalue = f"the cell ran longer than {timeout:g} s (cell_timeout) and was interrupted."
            else:
                evalue = "the kernel running the cell died (os._exit, a crash, or out of memory)."
            if restarted:
                evalue += " The kernel was restarted: variables from earlier cells are gone; re-create them."
            if error is None or not timed_out:
                collector.error(ename, evalue, [f"{ename}: {evalue}"])
            text = strip_ansi("\n".join((error or {}).get("traceback", []))) + f"\n{ename}: {evalue}"
            return ExecResult(collector.outputs, False, truncate(text.strip(), 3000, head=1 / 3), ename, evalue,
                              timed_out, seconds)
        assert error is not None
        text = strip_ansi("\n".join(error.get("traceback", [])))
        return ExecResult(collector.outputs, False, truncate(text, 3000, head=1 / 3), error.get("ename"),
                          error.get("evalue"), False, seconds)
