"""The package imports one way: no import cycle anywhere in nbmagic, and no module over ~600 lines.

Imports that run must form no cycle across the whole package: module-level ones and those
deferred into functions (the cycle the RLM's agent <-> sub-agents pair used to dodge with one);
``if TYPE_CHECKING:`` blocks never run and are left out.
"""

from __future__ import annotations

import ast
from pathlib import Path

import nbmagic

ROOT = Path(nbmagic.__file__).parent


def _module(path: Path) -> str:
    parts = path.relative_to(ROOT.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _targets(node: ast.AST, here: str, known: set[str]) -> set[str]:
    out: set[str] = set()
    names: list[str] = []
    if isinstance(node, ast.Import):
        names = [a.name for a in node.names]
    elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
        names = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
    for name in names:
        while name and name not in known:
            name = name.rpartition(".")[0]
        if name and name != here and name.startswith("nbmagic.") and not here.startswith(name + "."):
            out.add(name)
    return out


def _graph(deferred_in: str) -> dict[str, set[str]]:
    files = {_module(p): p for p in ROOT.rglob("*.py")}
    known = set(files)
    graph: dict[str, set[str]] = {}
    for name, path in files.items():
        tree = ast.parse(path.read_text(encoding="utf-8"))
        deps: set[str] = set()
        typing_only = {id(n) for stmt in ast.walk(tree) if isinstance(stmt, ast.If)
                       and "TYPE_CHECKING" in ast.unparse(stmt.test) for n in ast.walk(stmt)}
        top = [n for n in tree.body if id(n) not in typing_only]
        for stmt in top:  # module level, and `if TYPE_CHECKING:` / try blocks at module level
            for node in ast.walk(stmt) if not isinstance(stmt, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef) else []:
                deps |= _targets(node, name, known)
        if name.startswith(deferred_in):
            for node in ast.walk(tree):
                if id(node) not in typing_only:
                    deps |= {d for d in _targets(node, name, known) if d.startswith(deferred_in)}
        graph[name] = deps - {"nbmagic"}
    return graph


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}

    def visit(node: str, path: list[str]) -> list[str] | None:
        state[node] = 1
        for dep in sorted(graph.get(node, ())):
            if state.get(dep) == 1:
                return [*path, node, dep]
            if dep not in state and (found := visit(dep, [*path, node])):
                return found
        state[node] = 2
        return None

    for name in sorted(graph):
        if name not in state and (found := visit(name, [])):
            return found
    return None


def test_no_import_cycle_anywhere_in_the_package() -> None:
    """Every import counts, deferred ones inside functions too: a deferred import that runs at
    import time (a table built at module level) is as much a cycle as a top-level one."""
    graph = _graph("nbmagic")
    assert {"nbmagic.rlm.agent", "nbmagic.rlm.subagents", "nbmagic.magics"} <= set(graph)
    cycle = _cycle(graph)
    assert cycle is None, "import cycle: " + " -> ".join(cycle or [])


def test_the_rlm_leaves_import_nothing_of_the_loop() -> None:
    graph = _graph("nbmagic.rlm")
    for leaf in ("nbmagic.rlm.subagents", "nbmagic.rlm.session", "nbmagic.rlm.compaction", "nbmagic.rlm.settings"):
        assert "nbmagic.rlm.agent" not in graph[leaf], leaf
    assert graph["nbmagic.rlm.settings"] <= {"nbmagic.settings"}


def test_no_module_over_about_600_lines() -> None:
    """Split by job, not mechanically; agent/core.py is being reshaped by the agent-recursion work."""
    long = {str(p.relative_to(ROOT.parent)): n for p in ROOT.rglob("*.py")
            if (n := len(p.read_text(encoding="utf-8").splitlines())) > 620}
    assert set(long) <= {"nbmagic/agent/core.py"}, long
