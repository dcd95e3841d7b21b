"""Compile a generated cell, run it, show its last expression; tracebacks without nbmagic's frames.

Both engines run cells the way a REPL does: the body is executed and a trailing
expression is evaluated, its value shown (an ``execute_result`` in the agent, its
``repr`` in the RLM's output). :func:`harden` adds the time limit's
:func:`~nbmagic.execution.limits.checkpoint` to every ``except`` handler, so a
handler cannot swallow the interruption once its grace is over. The cell's text is
registered with :mod:`linecache`, so tracebacks show its lines.
"""

from __future__ import annotations

import ast
import linecache
import traceback
from dataclasses import dataclass
from types import CodeType, TracebackType
from typing import Any

from nbmagic.execution.frames import is_own_file
from nbmagic.execution.limits import CHECKPOINT_NAME

__all__ = ["CompiledCell", "compile_cell", "harden", "is_own_file", "trim_traceback", "user_traceback"]


class _Checkpoints(ast.NodeTransformer):
    """Puts ``__nbmagic_checkpoint__()`` first in every ``except`` handler.

    Also usable as an IPython ``ast_transformer`` (it has ``visit``).
    """

    def visit_ExceptHandler(self, node: ast.ExceptHandler) -> ast.ExceptHandler:
        self.generic_visit(node)
        call = ast.Expr(ast.Call(ast.Name(CHECKPOINT_NAME, ast.Load()), [], []))
        node.body.insert(0, ast.copy_location(call, node.body[0] if node.body else node))
        return node


_HARDEN = _Checkpoints()


def harden(tree: ast.AST) -> ast.AST:
    """Add the checkpoint to every handler of ``tree`` (in place); returns the tree."""
    _HARDEN.visit(tree)
    return ast.fix_missing_locations(tree)


@dataclass
class CompiledCell:
    """A cell ready to run: its body, and its trailing expression if it has one."""

    body: CodeType
    expr: CodeType | None

    def run(self, namespace: dict[str, Any]) -> Any:
        """Execute in ``namespace``; the trailing expression's value (``None`` without one)."""
        exec(self.body, namespace)
        return eval(self.expr, namespace) if self.expr is not None else None


def compile_cell(code: str, filename: str) -> CompiledCell:
    """Parse, harden and compile ``code``; :class:`SyntaxError` if it is not valid Python.

    ``compile()`` also finds what ``parse()`` lets through (``return`` outside a function).
    """
    tree = ast.parse(code, filename, "exec")
    harden(tree)
    last = tree.body.pop() if tree.body and isinstance(tree.body[-1], ast.Expr) else None
    body = compile(tree, filename, "exec")
    expr = None
    if last is not None:
        expr = compile(ast.fix_missing_locations(ast.Expression(last.value)), filename, "eval")
    linecache.cache[filename] = (len(code), None, code.splitlines(keepends=True), filename)
    return CompiledCell(body, expr)


def trim_traceback(tb: TracebackType | None) -> TracebackType | None:
    """``tb`` without nbmagic's own entries (relinked in place), for shells that format it themselves."""
    kept = [t for t in _walk(tb) if not is_own_file(t.tb_frame.f_code.co_filename)]
    for a, b in zip(kept, [*kept[1:], None], strict=True):
        a.tb_next = b
    return kept[0] if kept else None


def _walk(tb: TracebackType | None) -> list[TracebackType]:
    out = []
    while tb is not None:
        out.append(tb)
        tb = tb.tb_next
    return out


def user_traceback(exc: BaseException, *, limit: int | None = None) -> str:
    """``exc`` formatted as Python would, without nbmagic's own frames (at any depth, in chained
    exceptions too): the model and the user see their code and the libraries it called."""
    te = traceback.TracebackException.from_exception(exc, limit=limit)
    seen: set[int] = set()
    todo = [te]
    while todo:
        t = todo.pop()
        if id(t) in seen:
            continue
        seen.add(id(t))
        t.stack = traceback.StackSummary.from_list([f for f in t.stack if not is_own_file(f.filename)])
        todo.extend(x for x in (t.__cause__, t.__context__) if x is not None)
    return "".join(te.format())
