"""Run generated code where the user works, and keep what a notebook would show.

Two executors share one interface (``run(code, timeout) -> ExecResult``):

* :class:`ShellExecutor` runs through ``shell.run_cell`` in the user's IPython
  shell or kernel, so magics, the inline matplotlib backend and the user's
  variables behave as in a typed cell. Streams, display data, the last
  expression's result and tracebacks are *captured* (the shell's publisher,
  display hook and traceback printer are swapped for the duration), so nothing
  leaks into the cell that runs the agent.
* :class:`NamespaceExecutor` runs in a plain dict (the CLI): ``exec`` of the
  body and ``eval`` of a trailing expression, with the same capture.

Both turn new matplotlib figures into ``image/png`` outputs and enforce a
per-cell timeout by raising :class:`CellTimeout` in the main thread (SIGALRM
where available, else an asynchronous exception from a timer thread).
"""

from __future__ import annotations

import ast
import ctypes
import io
import linecache
import os
import re
import signal
import sys
import threading
import time
import traceback
import warnings
from collections.abc import Iterator, MutableMapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Protocol

from nbmagic.text import truncate

_ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]|\x1b\][^\x07]*\x07")


def strip_ansi(text: str) -> str:
    return _ANSI.sub("", text)


class CellTimeout(BaseException):
    """Raised inside runaway code. A BaseException so ``except Exception`` cannot swallow it."""


@dataclass
class ExecResult:
    """What one run produced: nbformat v4 outputs plus a plain-text error for the model."""

    outputs: list[dict[str, Any]] = field(default_factory=list)
    ok: bool = True
    error: str | None = None  # ANSI-free traceback text
    ename: str | None = None
    evalue: str | None = None
    timed_out: bool = False
    seconds: float = 0.0

    def text(self, limit: int = 1500) -> str:
        """A short plain-text rendering of the outputs, for later prompts and summaries."""
        parts: list[str] = []
        for out in self.outputs:
            kind = out.get("output_type")
            if kind == "stream":
                parts.append(out.get("text", ""))
            elif kind in ("execute_result", "display_data"):
                data = out.get("data", {})
                if "image/png" in data:
                    parts.append("[image/png figure]")
                else:
                    parts.append(str(data.get("text/plain", "")))
            elif kind == "error":
                parts.append(f"{out.get('ename')}: {out.get('evalue')}")
        return truncate("\n".join(p.rstrip("\n") for p in parts if p), limit, head=1 / 3)


class Executor(Protocol):
    namespace: MutableMapping[str, Any]

    def run(self, code: str, timeout: float | None = None) -> ExecResult: ...


# --- capture plumbing -------------------------------------------------------------------------


#: stream text kept per cell; a cell printing in a loop until its timeout must not eat the memory
MAX_STREAM_CHARS = 1_000_000


class OutputCollector:
    """Ordered outputs; consecutive writes to one stream merge into one output."""

    def __init__(self, max_stream_chars: int = MAX_STREAM_CHARS) -> None:
        self.outputs: list[dict[str, Any]] = []
        self.lock = threading.Lock()
        self.stream_chars = 0
        self.max_stream_chars = max_stream_chars

    def stream(self, name: str, text: str) -> None:
        if not text:
            return
        with self.lock:
            room = self.max_stream_chars - self.stream_chars
            if room <= 0:
                return
            if len(text) > room:
                text = text[:room] + f"\n… (output cut at {self.max_stream_chars} characters)\n"
            self.stream_chars += len(text)
            last = self.outputs[-1] if self.outputs else None
            if last and last["output_type"] == "stream" and last["name"] == name:
                last["text"] += text
            else:
                self.outputs.append({"output_type": "stream", "name": name, "text": text})

    def display(self, data: dict[str, Any], metadata: dict[str, Any] | None = None, kind: str = "display_data") -> None:
        # nbformat loads with it: once, when a cell first displays something
        from nbmagic.notebook.cells import mime_bundle

        out: dict[str, Any] = {"output_type": kind, "data": mime_bundle(data or {}), "metadata": dict(metadata or {})}
        if kind == "execute_result":
            out["execution_count"] = None
        with self.lock:
            self.outputs.append(out)

    def error(self, ename: str, evalue: str, tb: list[str]) -> None:
        with self.lock:
            self.outputs.append({"output_type": "error", "ename": ename, "evalue": evalue, "traceback": list(tb)})

    def clear(self) -> None:
        with self.lock:
            self.outputs.clear()
            self.stream_chars = 0  # the cap is on what is kept: a progress loop that clears stays visible


class _Tap(io.TextIOBase):
    """Stands in for sys.stdout/stderr: the running cell's writes go to the collector.

    Writes from other threads (a progress display refreshing in the background)
    go to the stream that was there before, so they never end up in a cell's output.
    """

    def __init__(self, collector: OutputCollector, name: str, original: Any) -> None:
        self._collector = collector
        self._original = original
        self._owner = threading.get_ident()
        self.name = name  # type: ignore[misc]

    def writable(self) -> bool:
        return True

    def write(self, text: str) -> int:  # type: ignore[override]
        if not isinstance(text, str):
            text = str(text)
        if threading.get_ident() != self._owner and self._original is not None:
            return self._original.write(text)
        self._collector.stream(self.name, text)
        return len(text)

    def flush(self) -> None:
        if threading.get_ident() != self._owner and self._original is not None:
            self._original.flush()

    def isatty(self) -> bool:
        return False

    @property
    def encoding(self) -> str:  # type: ignore[override]
        return "utf-8"


#: Agg's "cannot be shown" warnings: the figure is captured as PNG, so they are noise
_AGG_NOISE = re.compile(r"non-interactive.*cannot be shown|Matplotlib is currently using agg")


@contextmanager
def _redirect_std(collector: OutputCollector) -> Iterator[None]:
    """Writes from this thread go to ``collector``; Agg's warnings are dropped.

    The warnings are dropped through ``warnings.showwarning`` rather than a
    ``catch_warnings`` block, which would also undo the filters the cell itself
    sets (``warnings.filterwarnings("ignore")`` must last, as in a typed cell).
    """
    saved = sys.stdout, sys.stderr
    shown = warnings.showwarning

    def showwarning(message: Any, category: Any, filename: str, lineno: int, file: Any = None,
                    line: str | None = None) -> None:
        if not _AGG_NOISE.search(str(message)):
            shown(message, category, filename, lineno, file, line)

    sys.stdout, sys.stderr = _Tap(collector, "stdout", saved[0]), _Tap(collector, "stderr", saved[1])
    warnings.showwarning = showwarning
    try:
        yield
    finally:
        sys.stdout, sys.stderr = saved
        if warnings.showwarning is showwarning:
            warnings.showwarning = shown


# --- matplotlib figures --------------------------------------------------------------------------


def _open_figures() -> list[Any]:
    if "matplotlib.pyplot" not in sys.modules:
        return []
    try:
        from matplotlib._pylab_helpers import Gcf
    except Exception:  # pragma: no cover - odd matplotlib builds
        return []
    return [m.canvas.figure for m in Gcf.get_all_fig_managers()]


def _capture_new_figures(before: set[int], collector: OutputCollector) -> None:
    """Figures the cell left open become PNG display outputs, then are closed (like inline)."""
    new = [f for f in _open_figures() if id(f) not in before]
    if not new:
        return
    import matplotlib.pyplot as plt

    for fig in new:
        buf = io.BytesIO()
        try:
            fig.savefig(buf, format="png", bbox_inches="tight")
        except Exception as exc:  # a figure that cannot render is reported, not fatal
            collector.stream("stderr", f"could not render figure: {exc}\n")
        else:
            collector.display({"image/png": buf.getvalue(), "text/plain": repr(fig)})
        finally:
            plt.close(fig)


@contextmanager
def deferred_interrupts() -> Iterator[None]:
    """Hold SIGINT while the shell is being put back, so Ctrl-C cannot leave it half-restored.

    A Ctrl-C that arrives meanwhile is delivered right after, as a normal KeyboardInterrupt.
    """
    can = hasattr(signal, "pthread_sigmask") and threading.current_thread() is threading.main_thread()
    if can:
        signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
    try:
        yield
    finally:
        if can:
            signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})


# --- timeout ----------------------------------------------------------------------------------------


#: seconds a repeated timeout waits while the previous one is still being handled
REPEAT_GRACE = 2.0


@dataclass
class _Guard:
    seconds: float
    fired: bool = False
    armed: bool = True
    fired_at: float = 0.0


@contextmanager
def timeout_guard(seconds: float | None) -> Iterator[_Guard]:
    """Raise :class:`CellTimeout` in the calling thread after ``seconds``, then every 0.5 s.

    Repeating matters: code that catches the first interrupt (``except BaseException``)
    gets another; while that first one is still being handled (the shell formatting its
    traceback) repeats wait up to :data:`REPEAT_GRACE` s, so they do not break the
    handling itself (main-thread guard). In the main thread on POSIX this is SIGALRM (it also interrupts
    ``time.sleep``); an outer itimer (e.g. pytest-timeout) is honoured and restored.
    Elsewhere a timer thread injects the exception between bytecodes.
    """
    guard = _Guard(float(seconds or 0))
    if not seconds or seconds <= 0:
        guard.armed = False
        yield guard
        return
    if hasattr(signal, "setitimer") and threading.current_thread() is threading.main_thread():
        with _signal_guard(guard) as g:
            yield g
    else:
        with _thread_guard(guard) as g:
            yield g


@contextmanager
def _signal_guard(guard: _Guard) -> Iterator[_Guard]:
    start = time.monotonic()
    deadline = start + guard.seconds
    old_handler = signal.getsignal(signal.SIGALRM)
    old_delay, old_interval = signal.getitimer(signal.ITIMER_REAL)
    outer_deadline = start + old_delay if old_delay > 0 else None

    def handler(signum: int, frame: Any) -> None:
        now = time.monotonic()
        if outer_deadline is not None and now >= outer_deadline and callable(old_handler):
            old_handler(signum, frame)
        if guard.armed and now >= deadline - 1e-3:
            if guard.fired and isinstance(sys.exc_info()[1], CellTimeout) and now < guard.fired_at + REPEAT_GRACE:
                return  # the last one is still being handled (the shell showing its traceback): let it finish
            if not guard.fired:
                guard.fired, guard.fired_at = True, now
            raise CellTimeout(f"the cell ran longer than {guard.seconds:g} s and was interrupted")

    first = guard.seconds if outer_deadline is None else max(1e-3, min(guard.seconds, old_delay))
    signal.signal(signal.SIGALRM, handler)
    signal.setitimer(signal.ITIMER_REAL, first, 0.5)
    try:
        yield guard
    finally:
        # Disarm before any call: a handler runs only at calls and loop edges, so a timer
        # firing as the cell ends can no longer skip the restore below (and then raise
        # CellTimeout into the user's kernel every 0.5 s).
        guard.armed = False
        with deferred_interrupts():
            signal.setitimer(signal.ITIMER_REAL, 0)
            # None: the old handler was not set from Python and cannot be put back
            signal.signal(signal.SIGALRM, signal.SIG_DFL if old_handler is None else old_handler)
            if outer_deadline is not None:
                signal.setitimer(signal.ITIMER_REAL, max(1e-3, outer_deadline - time.monotonic()), old_interval)


@contextmanager
def _thread_guard(guard: _Guard) -> Iterator[_Guard]:
    target = threading.get_ident()
    lock = threading.Lock()
    done = threading.Event()
    set_async = ctypes.pythonapi.PyThreadState_SetAsyncExc

    def fire() -> None:
        if done.wait(guard.seconds):
            return
        while not done.is_set():
            with lock:
                if not guard.armed:
                    return
                guard.fired = True
                set_async(ctypes.c_ulong(target), ctypes.py_object(CellTimeout))
            if done.wait(0.5):
                return

    timer = threading.Thread(target=fire, name="nbmagic-cell-timeout", daemon=True)
    timer.start()
    try:
        yield guard
    finally:
        while True:  # an injected exception may land on the way in here: disarm until it sticks
            try:
                with lock:
                    guard.armed = False
                    set_async(ctypes.c_ulong(target), None)  # drop an exception not yet delivered
                break
            except CellTimeout:
                continue
        done.set()
        timer.join(timeout=1)


def _timeout_message(seconds: float) -> str:
    return f"CellTimeout: the cell ran longer than {seconds:g} s (cell_timeout) and was interrupted."


# --- IPython shell ----------------------------------------------------------------------------------


class _CapturingHook:
    """Stands in for the shell's display hook: the last expression's value becomes an execute_result."""

    is_active = False
    exec_result: Any = None

    def __init__(self, shell: Any, collector: OutputCollector) -> None:
        self.shell = shell
        self.collector = collector

    def __call__(self, result: Any = None) -> None:
        if result is None:
            return
        data, metadata = self.shell.display_formatter.format(result)
        if data:
            self.collector.display(data, metadata, kind="execute_result")


def _capturing_publisher(collector: OutputCollector) -> Any:
    from IPython.core.displaypub import DisplayPublisher

    class CapturingPublisher(DisplayPublisher):
        def publish(self, data: Any, metadata: Any = None, source: Any = None, *, transient: Any = None,
                    update: bool = False, **kwargs: Any) -> None:
            collector.display(data, metadata)

        def clear_output(self, wait: bool = False) -> None:
            collector.clear()

    return CapturingPublisher()


def _refuse_exit(*_args: Any, **_kwargs: Any) -> None:
    """Stands in for the shell's ``ask_exit`` while generated code runs: in a kernel the real one
    shuts the kernel down, losing every variable; here ``exit()`` is an error the fix loop sees."""
    raise SystemExit("exit() and quit() are not allowed in generated cells: they would stop your kernel")


class ShellExecutor:
    """Runs code with ``shell.run_cell`` in the user's namespace, capturing everything."""

    kind = "ipython"

    def __init__(self, shell: Any) -> None:
        self.shell = shell

    @property
    def namespace(self) -> MutableMapping[str, Any]:
        return self.shell.user_ns

    def run(self, code: str, timeout: float | None = None) -> ExecResult:
        shell = self.shell
        collector = OutputCollector()
        hook = _CapturingHook(shell, collector)
        tracebacks: list[tuple[type, BaseException, list[str]]] = []
        saved = (shell.display_pub, shell.displayhook, shell.display_trap.hook, sys.displayhook,
                 shell.__dict__.get("_showtraceback"), shell.__dict__.get("ask_exit"))
        before = {id(f) for f in _open_figures()}
        result: Any = None
        timed_out = False
        t0 = time.perf_counter()
        with _redirect_std(collector):
            shell.display_pub = _capturing_publisher(collector)
            shell.displayhook = shell.display_trap.hook = sys.displayhook = hook
            shell._showtraceback = lambda etype, evalue, stb: tracebacks.append((etype, evalue, stb))
            shell.ask_exit = _refuse_exit  # `exit()` in generated code must not shut the kernel down
            try:
                with timeout_guard(timeout) as guard:
                    result = shell.run_cell(code, store_history=False, silent=False)
            except CellTimeout:  # fired in the instant after the cell returned
                timed_out = True
            finally:
                with deferred_interrupts():
                    shell.display_pub, shell.displayhook, shell.display_trap.hook, sys.displayhook = saved[:4]
                    for name, own in (("_showtraceback", saved[4]), ("ask_exit", saved[5])):
                        if own is None:  # it was the class's method: drop the instance override
                            shell.__dict__.pop(name, None)
                        else:
                            setattr(shell, name, own)
            _capture_new_figures(before, collector)
        seconds = time.perf_counter() - t0
        error = None if result is None else (result.error_before_exec or result.error_in_exec)
        if isinstance(error, KeyboardInterrupt):
            raise KeyboardInterrupt
        timed_out = timed_out or (guard.fired and error is not None)
        if error is None and not timed_out:
            return ExecResult(collector.outputs, True, seconds=seconds)
        if timed_out and not isinstance(error, CellTimeout):
            error = CellTimeout(_timeout_message(timeout or 0))
        ename = type(error).__name__
        evalue = _timeout_message(timeout or 0).split(": ", 1)[1] if timed_out else str(error)
        stb = tracebacks[-1][2] if tracebacks else traceback.format_exception_only(type(error), error)
        collector.error(ename, evalue, stb)
        text = strip_ansi(shell.InteractiveTB.stb2text(stb) if tracebacks else "".join(stb))
        if timed_out:
            text += "\n" + _timeout_message(timeout or 0)
        return ExecResult(collector.outputs, False, truncate(text, 3000, head=1 / 3), ename, evalue, timed_out, seconds)


# --- plain namespace ---------------------------------------------------------------------------------


_FORMATTER: Any = None


def format_object(value: Any) -> tuple[dict[str, Any], dict[str, Any]]:
    """Rich representations without a shell (DataFrames get text/html too)."""
    global _FORMATTER
    try:
        if _FORMATTER is None:
            from IPython.core.formatters import DisplayFormatter

            _FORMATTER = DisplayFormatter()
        data, metadata = _FORMATTER.format(value)
        if data:
            return data, metadata
    except Exception:
        pass
    return {"text/plain": repr(value)}, {}


class NamespaceExecutor:
    """Runs code in a plain dict (no IPython): for the CLI and scripts."""

    kind = "namespace"

    def __init__(self, namespace: MutableMapping[str, Any] | None = None, *, cwd: str | os.PathLike[str] | None = None) -> None:
        self.namespace = namespace if namespace is not None else {}
        self.namespace.setdefault("__name__", "__main__")
        self.cwd = os.fspath(cwd) if cwd is not None else None
        self._count = 0
        if "matplotlib.pyplot" not in sys.modules:
            os.environ.setdefault("MPLBACKEND", "Agg")  # no windows from a script: figures become PNGs

    def run(self, code: str, timeout: float | None = None) -> ExecResult:
        self._count += 1
        filename = f"<nbmagic-cell-{self._count}>"
        code = _drop_magics(code)
        linecache.cache[filename] = (len(code), None, code.splitlines(True), filename)
        collector = OutputCollector()
        t0 = time.perf_counter()
        try:  # compile() finds what parse() lets through: `return`/`await`/`break` outside their place
            tree = ast.parse(code, filename)
            last = tree.body.pop() if tree.body and isinstance(tree.body[-1], ast.Expr) else None
            body = compile(ast.Module(body=tree.body, type_ignores=[]), filename, "exec")
            expr = compile(ast.Expression(body=last.value), filename, "eval") if last is not None else None
        except SyntaxError as exc:
            tb = traceback.format_exception_only(type(exc), exc)
            collector.error(type(exc).__name__, str(exc), tb)
            return ExecResult(collector.outputs, False, "".join(tb), type(exc).__name__, str(exc), seconds=0.0)
        before = {id(f) for f in _open_figures()}
        old_cwd = os.getcwd() if self.cwd else None
        error: BaseException | None = None
        value: Any = None
        guard = None
        with _redirect_std(collector):
            try:
                if self.cwd:
                    os.chdir(self.cwd)
                with timeout_guard(timeout) as guard:
                    exec(body, self.namespace)
                    if expr is not None:
                        value = eval(expr, self.namespace)
            except KeyboardInterrupt:
                raise
            except BaseException as exc:  # the user's code may raise anything, SystemExit included
                error = exc
            finally:
                if old_cwd:
                    os.chdir(old_cwd)
            if error is None and value is not None:
                data, metadata = format_object(value)
                collector.display(data, metadata, kind="execute_result")
            _capture_new_figures(before, collector)
        seconds = time.perf_counter() - t0
        if error is None:
            return ExecResult(collector.outputs, True, seconds=seconds)
        timed_out = isinstance(error, CellTimeout)
        tb_lines = _user_traceback(error)
        ename = type(error).__name__
        evalue = _timeout_message(timeout or 0).split(": ", 1)[1] if timed_out else str(error)
        collector.error(ename, evalue, tb_lines)
        text = "".join(tb_lines)
        if timed_out:
            text += "\n" + _timeout_message(timeout or 0)
        del guard
        return ExecResult(collector.outputs, False, truncate(text, 3000, head=1 / 3), ename, evalue, timed_out, seconds)


def _user_traceback(exc: BaseException) -> list[str]:
    """The traceback without this module's own frames."""
    tb = exc.__traceback__
    while tb is not None and tb.tb_frame.f_code.co_filename == __file__:
        tb = tb.tb_next
    return traceback.format_exception(type(exc), exc, tb)


def _drop_magics(code: str) -> str:
    """Plain Python has no ``%magic``/``!shell`` lines: comment them out instead of failing."""
    lines = []
    for line in code.splitlines():
        stripped = line.lstrip()
        lines.append(("# " + line) if stripped.startswith(("%", "!")) else line)
    return "\n".join(lines)
