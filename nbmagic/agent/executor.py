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

Both turn new matplotlib figures into ``image/png`` outputs. Time limits, the
exec-and-show-last-expression step, the capped stream buffer and the guard
against ``os._exit`` & co. come from the execution core (:mod:`nbmagic.execution`),
which the RLM shares.
"""

from __future__ import annotations

import io
import os
import re
import sys
import threading
import time
import traceback
import warnings
from collections.abc import Iterator, MutableMapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Protocol

from nbmagic.execution import (
    GRACE,
    CappedWriter,
    CellTimeout,
    compile_cell,
    deferred_interrupts,
    harden,
    process_guard,
    time_limit,
    trim_traceback,
    user_traceback,
)
from nbmagic.execution.figures import (
    FIGURE_KEY,
    describe_figure,
    descriptions_enabled,
    open_figures,
)
from nbmagic.text import truncate

__all__ = ["CellTimeout", "ExecResult", "Executor", "NamespaceExecutor", "ShellExecutor", "strip_ansi"]

_ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]|\x1b\][^\x07]*\x07")


def strip_ansi(text: str) -> str:
    return _ANSI.sub("", text)


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
                    parts.append(figure_text(out))
                else:
                    parts.append(str(data.get("text/plain", "")))
            elif kind == "error":
                parts.append(f"{out.get('ename')}: {out.get('evalue')}")
        return truncate("\n".join(p.rstrip("\n") for p in parts if p), limit, head=1 / 3)


def figure_text(out: dict[str, Any]) -> str:
    """What the model reads for an image output: the figure's description, when it has one."""
    if (out.get("metadata") or {}).get(FIGURE_KEY) and descriptions_enabled():
        return "[figure] " + str(out.get("data", {}).get("text/plain", "")).strip()
    return "[image/png figure]"


class Executor(Protocol):
    namespace: MutableMapping[str, Any]

    def run(self, code: str, timeout: float | None = None) -> ExecResult: ...


# --- capture plumbing -------------------------------------------------------------------------


#: stream text kept per stream output (head and tail); a cell printing in a loop until its
#: timeout must not eat the memory, and its last lines are the interesting ones
MAX_STREAM_CHARS = 1_000_000


class OutputCollector:
    """Ordered nbformat outputs; consecutive writes to one stream merge into one output.

    Stream text goes through the execution core's :class:`CappedWriter` (one per
    stream output), so the head and the tail of a flood are kept.
    """

    def __init__(self, max_stream_chars: int = MAX_STREAM_CHARS) -> None:
        self._outputs: list[dict[str, Any]] = []
        self._writers: dict[int, CappedWriter] = {}  # id(output) -> its text
        self.lock = threading.Lock()
        self.max_stream_chars = max_stream_chars

    @property
    def outputs(self) -> list[dict[str, Any]]:
        with self.lock:
            for out in self._outputs:
                writer = self._writers.get(id(out))
                if writer is not None:
                    out["text"] = writer.getvalue()
            return self._outputs

    def stream(self, name: str, text: str) -> None:
        if not text:
            return
        with self.lock:
            last = self._outputs[-1] if self._outputs else None
            if last is None or last["output_type"] != "stream" or last["name"] != name:
                last = {"output_type": "stream", "name": name, "text": ""}
                self._outputs.append(last)
                self._writers[id(last)] = CappedWriter(self.max_stream_chars)
            self._writers[id(last)].write(text)

    def display(self, data: dict[str, Any], metadata: dict[str, Any] | None = None, kind: str = "display_data") -> None:
        # nbformat loads with it: once, when a cell first displays something
        from nbmagic.notebook.cells import mime_bundle

        out: dict[str, Any] = {"output_type": kind, "data": mime_bundle(data or {}), "metadata": dict(metadata or {})}
        if kind == "execute_result":
            out["execution_count"] = None
        with self.lock:
            self._outputs.append(out)

    def error(self, ename: str, evalue: str, tb: list[str]) -> None:
        with self.lock:
            self._outputs.append({"output_type": "error", "ename": ename, "evalue": evalue, "traceback": list(tb)})

    def clear(self) -> None:
        with self.lock:
            self._outputs.clear()
            self._writers.clear()


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


_open_figures = open_figures


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
        else:  # the description is the figure's text/plain: what the model reads (figures.py)
            collector.display({"image/png": buf.getvalue(), "text/plain": describe_figure(fig)},
                              {FIGURE_KEY: True})
        finally:
            plt.close(fig)


# --- timeout messages ------------------------------------------------------------------------------


def _timeout_message(seconds: float, overrun: float = 0.0) -> str:
    text = f"CellTimeout: the cell ran longer than {seconds:g} s (cell_timeout) and was interrupted."
    if overrun > GRACE + 1.0:
        text += (f" It went on {overrun:.0f} s past the limit: a long call into compiled code (C) cannot be "
                 "interrupted until it returns; split the work into smaller calls.")
    return text


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
        custom = (shell.custom_exceptions, shell.CustomTB)
        before = {id(f) for f in _open_figures()}
        result: Any = None
        limit = time_limit(timeout)
        t0 = time.perf_counter()
        with _redirect_std(collector):
            shell.display_pub = _capturing_publisher(collector)
            shell.displayhook = shell.display_trap.hook = sys.displayhook = hook
            shell._showtraceback = lambda etype, evalue, stb: tracebacks.append((etype, evalue, stb))
            shell.ask_exit = _refuse_exit  # `exit()` in generated code must not shut the kernel down
            shell.ast_transformers.append(_HARDEN)  # handlers get the time limit's checkpoint
            shell.set_custom_exc((CellTimeout,), _timeout_traceback)  # shown without nbmagic's frames
            # before the inline backend's own post_execute flush, which would show and close the
            # figures without their descriptions
            post = shell.events.callbacks.setdefault("post_execute", [])
            post.insert(0, grab := lambda: _capture_new_figures(before, collector))
            try:
                with process_guard(), limit:
                    result = shell.run_cell(code, store_history=False, silent=False)
            except CellTimeout:  # fired in the instant after the cell returned
                pass
            finally:
                with deferred_interrupts():
                    shell.display_pub, shell.displayhook, shell.display_trap.hook, sys.displayhook = saved[:4]
                    for name, own in (("_showtraceback", saved[4]), ("ask_exit", saved[5])):
                        if own is None:  # it was the class's method: drop the instance override
                            shell.__dict__.pop(name, None)
                        else:
                            setattr(shell, name, own)
                    while _HARDEN in shell.ast_transformers:
                        shell.ast_transformers.remove(_HARDEN)
                    shell.custom_exceptions, shell.CustomTB = custom
                    if grab in post:
                        post.remove(grab)
            _capture_new_figures(before, collector)
        seconds = time.perf_counter() - t0
        error = None if result is None else (result.error_before_exec or result.error_in_exec)
        if limit.interrupted or isinstance(error, KeyboardInterrupt):
            raise KeyboardInterrupt
        timed_out = limit.timed_out  # also when the cell swallowed the interruption and finished
        if error is None and not timed_out:
            return ExecResult(collector.outputs, True, seconds=seconds)
        message = _timeout_message(timeout or 0, limit.overrun)
        if timed_out and not isinstance(error, CellTimeout):
            error = CellTimeout(timeout)
        assert error is not None
        ename = type(error).__name__
        evalue = message.split(": ", 1)[1] if timed_out else str(error)
        shown = bool(tracebacks) and tracebacks[-1][1] is error
        stb = tracebacks[-1][2] if shown else traceback.format_exception_only(type(error), error)
        collector.error(ename, evalue, stb)
        text = strip_ansi(shell.InteractiveTB.stb2text(stb) if shown else "".join(stb))
        if timed_out:
            text += "\n" + message
        return ExecResult(collector.outputs, False, truncate(text, 3000, head=1 / 3), ename, evalue, timed_out, seconds)


def _timeout_traceback(shell: Any, etype: type, value: BaseException, tb: Any, tb_offset: int | None = None) -> Any:
    """IPython's custom-exception hook for :class:`CellTimeout`: its usual traceback, minus the
    frames of the time limit itself (the alarm handler, the checkpoint)."""
    return shell.InteractiveTB.structured_traceback(etype, value, trim_traceback(tb), tb_offset=tb_offset)


class _Harden:
    """The execution core's checkpoint transform as an IPython ``ast_transformer``."""

    def visit(self, node: Any) -> Any:
        return harden(node)


_HARDEN = _Harden()


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
        collector = OutputCollector()
        try:
            cell = compile_cell(code, filename)
        except SyntaxError as exc:
            tb = traceback.format_exception_only(type(exc), exc)
            collector.error(type(exc).__name__, str(exc), tb)
            return ExecResult(collector.outputs, False, "".join(tb), type(exc).__name__, str(exc), seconds=0.0)
        before = {id(f) for f in _open_figures()}
        old_cwd = os.getcwd() if self.cwd else None
        error: BaseException | None = None
        value: Any = None
        limit = time_limit(timeout)
        t0 = time.perf_counter()
        with _redirect_std(collector):
            try:
                if self.cwd:
                    os.chdir(self.cwd)
                with process_guard(), limit:
                    value = cell.run(self.namespace)  # type: ignore[arg-type]
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
        if limit.interrupted:
            raise KeyboardInterrupt
        if error is None and not limit.timed_out:
            return ExecResult(collector.outputs, True, seconds=seconds)
        timed_out = limit.timed_out
        message = _timeout_message(timeout or 0, limit.overrun)
        if timed_out and not isinstance(error, CellTimeout):
            error = CellTimeout(timeout)
        assert error is not None
        ename = type(error).__name__
        evalue = message.split(": ", 1)[1] if timed_out else str(error)
        text = user_traceback(error)
        collector.error(ename, evalue, text.splitlines(keepends=True))
        if timed_out:
            text += "\n" + message
        return ExecResult(collector.outputs, False, truncate(text, 3000, head=1 / 3), ename, evalue, timed_out, seconds)


def _drop_magics(code: str) -> str:
    """Plain Python has no ``%magic``/``!shell`` lines: comment them out instead of failing."""
    lines = []
    for line in code.splitlines():
        stripped = line.lstrip()
        lines.append(("# " + line) if stripped.startswith(("%", "!")) else line)
    return "\n".join(lines)
