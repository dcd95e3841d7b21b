"""The notebook the kernel serves, left out of the files a run wrote (its autosave is not the run's doing).

What the cells themselves write is recorded by :mod:`nbmagic.execution.file_audit` and summed up
per run by :class:`nbmagic.execution.file_ledger.FileLedger`.
"""

from __future__ import annotations

import os
from collections.abc import MutableMapping
from pathlib import Path
from typing import Any


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
