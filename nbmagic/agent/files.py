"""Which files a run wrote: an mtime snapshot before, a comparison after.

Hook points for ``AgentResult.files_written`` (kept by name so the file-audit
work can replace the body): :func:`snapshot_files` before the first cell,
:func:`changed_files` at the end, :func:`open_notebooks` for the notebook the
kernel serves (its autosave is not the run's doing).
"""

from __future__ import annotations

import os
from collections.abc import MutableMapping
from pathlib import Path
from typing import Any

_SKIP_DIRS = {".git", ".venv", "venv", "node_modules", "__pycache__", ".ipynb_checkpoints", ".cache"}


def snapshot_files(base: Path, limit: int = 5000) -> dict[str, float]:
    """mtimes of files under ``base`` (two levels deep, bounded) to spot what a run wrote."""
    seen: dict[str, float] = {}

    def walk(folder: Path, depth: int) -> None:
        try:
            entries = list(os.scandir(folder))
        except OSError:
            return
        for e in entries:
            if len(seen) >= limit:
                return
            try:
                if e.is_file(follow_symlinks=False):
                    seen[os.path.relpath(e.path, base)] = e.stat().st_mtime_ns
                elif e.is_dir(follow_symlinks=False) and depth < 2 and e.name not in _SKIP_DIRS:
                    walk(Path(e.path), depth + 1)
            except OSError:
                continue

    walk(base, 0)
    return seen


def changed_files(base: Path, before: dict[str, float], skip: set[str] | None = None) -> list[str]:
    after = snapshot_files(base)
    skip = skip or set()
    return sorted(p for p, m in after.items()
                  if before.get(p) != m and str((base / p).resolve()) not in skip)


def open_notebooks(namespace: MutableMapping[str, Any], base: Path) -> list[str]:
    """The notebook this kernel serves (its autosave is not a file the run wrote).

    ipykernel puts the notebook's path in ``__session__`` and Jupyter Server in
    ``JPY_SESSION_NAME``; either may be relative to the server's root, so the name is
    also tried in the working folder.
    """
    out: list[str] = []
    for raw in (namespace.get("__session__"), os.environ.get("JPY_SESSION_NAME")):
        if not isinstance(raw, str) or not raw.endswith(".ipynb"):
            continue
        for cand in (Path(raw), base / raw, base / Path(raw).name):
            try:
                out.append(str(cand.resolve()))
            except OSError:
                continue
    return out
