"""The modules of nbmagic.mas import one way: no cycles, and nothing imports the front door back."""

from __future__ import annotations

import ast
from pathlib import Path

import nbmagic.mas

MAS = Path(nbmagic.mas.__file__).parent


def _imports(path: Path) -> set[str]:
    """Every nbmagic.mas module ``path`` imports, at any level (function bodies and TYPE_CHECKING included)."""
    out: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.module:
            if node.module == "nbmagic.mas":
                out.update(a.name for a in node.names)
            elif node.module.startswith("nbmagic.mas."):
                out.add(node.module.split(".")[2])
        elif isinstance(node, ast.Import):
            out.update(a.name.split(".")[2] for a in node.names if a.name.startswith("nbmagic.mas."))
    return out - {path.stem}


def test_mas_modules_import_each_other_without_cycles():
    graph = {p.stem: _imports(p) for p in MAS.glob("*.py") if p.stem != "__init__"}
    assert {"team", "agent_pass", "latent_mode", "text", "links", "checkpoint", "system"} <= set(graph)
    # only the entry point (train-links) builds systems; engines take a Team
    assert {name for name, deps in graph.items() if "system" in deps} <= {"cli"}
    assert graph["team"] <= {"roles"}  # the leaf: settings, members, bookkeeping

    seen: dict[str, int] = {}  # 1 = on the current path, 2 = done

    def visit(node: str, path: list[str]) -> None:
        seen[node] = 1
        for dep in sorted(graph.get(node, ())):
            assert seen.get(dep) != 1, f"import cycle: {' -> '.join([*path, node, dep])}"
            if dep not in seen:
                visit(dep, [*path, node])
        seen[node] = 2

    for name in sorted(graph):
        if name not in seen:
            visit(name, [])
