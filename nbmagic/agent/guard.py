"""The user's state around generated cells: variables protected, missing names and packages explained.

* :class:`UserState` snapshots the user's variables before the run; a cell that rebinds one
  is announced before it runs, the old value stays in ``_nbmagic_saved[name]``, and a
  variable a cell deletes is put back.
* :func:`name_hint` says exactly what a ``NameError`` lacks (an import, or which names exist).
* :func:`missing_package` proposes a package for a ``ModuleNotFoundError`` and installs it only
  when allowed or approved: never silently.
"""

from __future__ import annotations

import ast
import re
import subprocess
import sys
from collections.abc import MutableMapping
from typing import Any

from nbmagic.agent import context as ctx
from nbmagic.agent.codegen import STANDARD_IMPORTS, pip_package
from nbmagic.agent.executor import ExecResult, ShellExecutor
from nbmagic.agent.result import SAVED_NAME
from nbmagic.events import EventHandler, Notice, emit


def assigned_names(code: str) -> set[str]:
    """Top-level names a cell binds (assignments, imports, defs, loop targets)."""
    try:
        tree = ast.parse(code)
    except SyntaxError:
        return set()
    names: set[str] = set()
    for node in tree.body:
        targets: list[ast.AST] = []
        if isinstance(node, ast.Assign):
            targets = list(node.targets)
        elif isinstance(node, (ast.AugAssign, ast.AnnAssign, ast.For, ast.AsyncFor)):
            targets = [node.target]
        elif isinstance(node, (ast.With, ast.AsyncWith)):
            targets = [i.optional_vars for i in node.items if i.optional_vars is not None]
        elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.add(node.name)
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            names.update((a.asname or a.name).split(".")[0] for a in node.names if a.name != "*")
        for t in targets:
            names.update(n.id for n in ast.walk(t) if isinstance(n, ast.Name))
    return names


class UserState:
    """The user's variables as they were before the run, and what the run did to them."""

    def __init__(self, ns: MutableMapping[str, Any], hidden: Any, events: EventHandler | None) -> None:
        self.ns, self.hidden, self.events = ns, hidden, events
        self.before = {n: ns[n] for n in ctx.user_names(ns, hidden)}
        self.rebound: list[str] = []
        self.replaced: dict[str, Any] = {}

    def warn_rebinding(self, index: int, code: str) -> None:
        clobber = sorted(assigned_names(code) & set(self.before))
        if clobber:
            emit(self.events, Notice(f"Step {index + 1} rebinds your variable(s): {', '.join(clobber)} "
                                     f"(the old values stay in {SAVED_NAME}).", level="warning"))

    def protect(self, index: int) -> None:
        """Report rebound user variables once; put back any a cell deleted."""
        for name, value in self.before.items():
            if name not in self.ns:
                self.ns[name] = value
                emit(self.events, Notice(f"Step {index + 1} deleted your variable {name!r}; it was restored.",
                                         level="warning"))
            elif self.ns[name] is not value and name not in self.rebound:
                self.rebound.append(name)
                self._keep_replaced(name, value)

    def _keep_replaced(self, name: str, old: Any) -> None:
        """A rebound user variable's old value stays reachable: ``_nbmagic_saved[name]`` in the
        namespace and ``AgentResult.replaced``; nothing the user made is lost without consent."""
        saved = self.ns.get(SAVED_NAME)
        if not isinstance(saved, dict):
            saved = self.ns[SAVED_NAME] = {}
        saved[name] = old
        self.replaced[name] = old

    def changed_names(self) -> list[str]:
        """Variables the run created or rebound (their summary goes into the next prompt)."""
        return [n for n in ctx.user_names(self.ns, self.hidden)
                if n not in self.before or self.ns[n] is not self.before[n]]

    def new_names(self) -> list[str]:
        return [n for n in ctx.user_names(self.ns, self.hidden) if n not in self.before]


def name_hint(ns: MutableMapping[str, Any], hidden: Any, evalue: str) -> str:
    """Say exactly what is missing: the import for a standard alias, or which names do exist."""
    m = re.search(r"name '(\w+)' is not defined", evalue)
    if not m:
        return ""
    name = m.group(1)
    if name in STANDARD_IMPORTS:
        return f"`{name}` is not imported: add `{STANDARD_IMPORTS[name]}` at the top of the cell."
    known = ", ".join(ctx.user_names(ns, hidden)[:20]) or "(none)"
    return (f"`{name}` does not exist in the kernel. Variables that exist: {known}. Define `{name}` "
            "in this cell or use one of those.")


def missing_package(run: Any, step: Any, result: ExecResult) -> tuple[bool, str]:
    """A ModuleNotFoundError: install the package when allowed (or approved), else say so. Never silent.

    ``run`` is the agent's :class:`~nbmagic.agent.loop.Run` (its options, events, executor).
    Returns (installed, the hint for the fix prompt).
    """
    m = re.search(r"No module named '([^']+)'", result.evalue or "")
    pkg = pip_package(m.group(1)) if m else None
    if pkg is None or m is None:
        return False, ""
    a = run.agent
    command = f"%pip install {pkg}"
    if pkg not in run.installed:
        allowed = a.allow_install or (a.confirm is not None and a.confirm(command))
        if allowed:
            run.installed.add(pkg)
            emit(run.events, Notice(f"Step {step.index + 1} needs {pkg!r}: running `{command}`.", level="warning"))
            ok, said = pip_install(run.executor, pkg)
            run.trajectory.append({"type": "install", "package": pkg, "ok": ok, "output": said[-800:]})
            if ok:
                return True, ""
            emit(run.events, Notice(f"`{command}` failed: {said.strip().splitlines()[-1] if said.strip() else ''}",
                                    level="warning"))
        else:
            emit(run.events, Notice(
                f"Step {step.index + 1} needs the package {pkg!r}, which is not installed. Run `{command}` "
                "yourself, or rerun with --allow-install (allow_install=True) to let the agent install it.",
                level="warning"))
    return False, (f"The module {m.group(1)!r} is not installed and will not be installed now: rewrite the "
                   "cell without it (pandas, numpy and matplotlib are available).")


def pip_install(executor: Any, pkg: str) -> tuple[bool, str]:
    """``%pip install`` in the kernel (IPython), ``python -m pip install`` elsewhere."""
    if isinstance(executor, ShellExecutor):
        res = executor.run(f"%pip install {pkg}", 600)
        return res.ok and "ERROR" not in res.text(4000), res.text(4000)
    try:
        proc = subprocess.run([sys.executable, "-m", "pip", "install", pkg], capture_output=True,
                              text=True, timeout=600)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return False, str(exc)
    return proc.returncode == 0, proc.stdout + proc.stderr
