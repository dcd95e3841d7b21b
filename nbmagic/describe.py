"""Describing values for prompts, written once: what a DataFrame or Series is, in a bounded size.

The RLM's context summaries (:mod:`nbmagic.rlm.context`) and the notebook agent's namespace
summary (:mod:`nbmagic.agent.context`) both show a model what a variable holds without its
values: a table's shape, its columns and their dtypes, a few head rows. They phrase it for
their prompt; the facts come from here. Light: pandas is never imported (the value brings it).
"""

from __future__ import annotations

import reprlib
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class TableFacts:
    """A DataFrame (``columns`` set) or Series (``columns`` empty, ``name`` maybe set), bounded."""

    rows: int
    columns: list[tuple[str, str]]  # (name, dtype), at most ``max_columns``
    more_columns: int  # columns left out of ``columns``
    head: str  # the first rows as text ("" if the value cannot render them)
    dtype: str = ""  # a Series' dtype
    name: Any = None  # a Series' name
    nbytes: float | None = None  # shallow memory use, where pandas says


def is_table(value: Any) -> bool:
    """A pandas DataFrame or Series (by duck type: no pandas import)."""
    return (type(value).__module__ or "").startswith("pandas") and hasattr(value, "dtype" if not hasattr(
        value, "columns") else "dtypes") and hasattr(value, "shape")


def table_facts(value: Any, *, max_columns: int = 40, head_rows: int = 3, colwidth: int = 40,
                max_cols_shown: int = 12) -> TableFacts:
    """The facts of a DataFrame or Series; its head rendered with pandas' own limits."""
    if hasattr(value, "columns"):
        rows, cols = value.shape
        dtypes = [(str(c), str(t)) for c, t in list(value.dtypes.items())[:max_columns]]
        try:
            head = value.head(head_rows).to_string(max_colwidth=colwidth, max_cols=max_cols_shown)
        except Exception:
            head = ""
        try:
            nbytes: float | None = float(value.memory_usage(index=True, deep=False).sum())
        except Exception:
            nbytes = None
        return TableFacts(rows, dtypes, max(cols - max_columns, 0), head, nbytes=nbytes)
    try:
        head = value.head(head_rows).to_string(max_rows=head_rows)
    except Exception:
        head = ""
    return TableFacts(len(value), [], 0, head, dtype=str(value.dtype), name=getattr(value, "name", None))


def _bounded_repr() -> reprlib.Repr:
    r = reprlib.Repr()
    r.maxlevel, r.maxdict = 3, 10
    r.maxlist = r.maxtuple = r.maxset = r.maxfrozenset = r.maxdeque = r.maxarray = 20
    r.maxstring = r.maxlong = r.maxother = 200
    return r


#: builtin containers and strings are shown from their first items only: a million-line list
#: must not be rendered in full to keep 120 characters
_REPR = _bounded_repr()


def short_repr(value: Any, limit: int) -> str:
    """A one-line repr of at most ``limit`` characters (an ellipsis where cut), never raising."""
    try:
        text = _REPR.repr(value)
    except Exception:
        return f"<{type(value).__name__}>"
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def human_size(n: float) -> str:
    """Bytes as people read them: ``512 B``, ``1.5 KB``, ``3.2 GB``."""
    for unit in ("B", "KB", "MB", "GB"):
        if abs(n) < 1024 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} GB"  # pragma: no cover
