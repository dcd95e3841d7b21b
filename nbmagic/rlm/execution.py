"""Running one turn of model-written code: namespace, capture, errors, time limits.

Both REPL environments (the in-kernel layer and the subprocess worker) run code
through :func:`execute_code`, so a turn behaves the same wherever it runs: the
last expression is echoed like a REPL, output is captured with a cap that keeps
the head and the tail, tracebacks are short, and ``exit()`` ends nothing.

The time limit, the capped output buffer and the compile-and-echo step are the
execution core's (:mod:`nbmagic.execution`, shared with the notebook agent); what
is RLM-specific (the layered namespace, the REPL's reporting) is here. This module
is imported by the worker process, so it uses the standard library only and must
stay cheap to import.
"""

from __future__ import annotations

import builtins
import contextlib
import sys
import traceback
from collections.abc import Callable, Iterator, Mapping
from typing import Any

from nbmagic.execution import CappedWriter, CellTimeout, compile_cell, user_traceback
from nbmagic.execution.figures import describe_new_figures, open_figures
from nbmagic.text import TRUNCATION_MARKER, truncate

# re-exported: the REPL's callers import them from here
__all__ = ["TRUNCATION_MARKER", "CappedWriter", "CellTimeout", "truncate"]


class ReservedNameError(NameError):
    """The model tried to rebind one of the REPL helpers."""


ReservedNameError.__module__ = "builtins"  # tracebacks show the bare name to the model


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


def short_traceback(exc: BaseException, max_chars: int = 2000) -> str:
    """The exception with only the frames that matter (the execution core's
    :func:`~nbmagic.execution.cells.user_traceback`: the model's code and the libraries it
    called, never nbmagic's), its last 8 frames, cut from the front to ``max_chars``."""
    text = user_traceback(exc, limit=-8)
    return text if len(text) <= max_chars else "…" + text[-max_chars:]


def execute_code(code: str, namespace: dict[str, Any], *, filename: str, out: CappedWriter) -> dict[str, Any]:
    """Run ``code`` in ``namespace`` with stdout/stderr going to ``out``.

    Returns ``{"error": str | None, "exited": bool}``. :class:`CellTimeout` and
    ``KeyboardInterrupt`` propagate; everything else (``SystemExit`` included) is
    reported into ``out``.
    """
    result: dict[str, Any] = {"error": None, "exited": False}
    try:
        cell = compile_cell(code, filename)
    except SyntaxError as exc:
        msg = "".join(traceback.format_exception_only(type(exc), exc))
        out.write(msg)
        result["error"] = msg.strip().splitlines()[-1]
        return result
    _outer.append((sys.stdout, sys.stderr))
    figures = {id(f) for f in open_figures()}
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(out):
        try:
            value = cell.run(namespace)
            if value is not None:
                out.write(repr(value) + "\n")
        except SystemExit as exc:
            result["exited"] = True
            out.write(
                f"SystemExit({exc.code!r}): exit() and sys.exit() do not end the run; the REPL is "
                "still alive with your variables. Call submit(answer) to finish.\n"
            )
        except (CellTimeout, KeyboardInterrupt):
            raise
        except BaseException as exc:
            tb = short_traceback(exc)
            out.write(tb)
            result["error"] = "".join(traceback.format_exception_only(type(exc), exc)).strip()[-500:]
        finally:
            _outer.pop()
            # a plot the turn made is read like any output (the agent's cells get the same text)
            for text in describe_new_figures(figures):
                out.write(f"[figure] {text}\n")
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
