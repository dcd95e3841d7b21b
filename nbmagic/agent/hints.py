"""Pandas idioms for one part of a request, spelled with the loaded table's real names.

Why: shown "the top 5 products by revenue", the 0.5B coder writes
``sales.sort_values('revenue').head(5)`` (five rows, one product repeated), and asked for a
monthly trend it calls ``.resample`` on a frame whose index is not a date; the reflector then
rejects the cell, and the model, told what is wrong, often writes the same cell again. Shown
the idiom up front, with the table's own column names, it adapts it. The idioms come from the
part's words and the table's columns only (no model call, nothing about a particular data
set), and they are offered, not run: the model still writes the cell and the reflector still
judges its output.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

#: "top 5 products by revenue": (top|bottom|...), n, the thing, the metric (the reflector reads it too)
TOP_PHRASE = re.compile(r"\b(top|bottom|best|worst|largest|smallest|highest|lowest)\s+(\d+)\s+([a-z_]+)"
                  r"(?:\s+by\s+(?:total\s+|average\s+|mean\s+)?([a-z_]+))?", re.I)
_PER = re.compile(r"\b(?:per|by|for each|of each|across)\s+([a-z_]+)", re.I)
MONTHLY = re.compile(r"\bmonth(?:ly)?\b", re.I)
_MEAN = re.compile(r"\b(?:average|mean)\b", re.I)
_COUNT = re.compile(r"\b(?:number of|how many|count of)\s+(?:orders|rows|records|sales|transactions|entries)\b", re.I)
_SMALL = ("bottom", "worst", "smallest", "lowest")


def column_named(columns: list[str], word: str) -> str | None:
    """The column a word names: exact, singular or plural, or contained ('price' -> 'unit_price')."""
    w = word.lower()
    stems = {w, w.rstrip("s"), w[:-2] if w.endswith("es") else w}
    for c in columns:
        if c.lower() in stems or c.lower().rstrip("s") in stems:
            return c
    return next((c for c in columns if len(w) > 3 and w.rstrip("s") in c.lower()), None)


def _named_columns(text: str, columns: list[str]) -> list[str]:
    """The columns the part's words name, in the order they appear."""
    found: list[tuple[int, str]] = []
    for c in columns:
        for form in {c, c.replace("_", " ")}:
            m = re.search(rf"\b{re.escape(form)}s?\b", text, re.I)
            if m:
                found.append((m.start(), c))
                break
    return [c for _, c in sorted(found)]


def pattern_hints(text: str, frames: Mapping[str, Any]) -> list[str]:
    """One line per idiom that fits ``text``, over the first loaded DataFrame in ``frames``.

    ``frames`` maps a DataFrame's name to the DataFrame. Returns ``[]`` when no table is
    loaded or nothing fits (a question the idioms do not cover gets no hint at all).
    """
    if not frames:
        return []
    name, frame = next(iter(frames.items()))
    columns = [str(c) for c in getattr(frame, "columns", [])]
    if not columns:
        return []
    numeric = [str(c) for c in getattr(frame.select_dtypes("number"), "columns", [])] if hasattr(
        frame, "select_dtypes") else []
    named = _named_columns(text, columns)
    metric = next((c for c in named if c in numeric), None)
    agg = "mean" if _MEAN.search(text) else "sum"
    hints: list[str] = []
    top = TOP_PHRASE.search(text)
    if top:
        thing = column_named(columns, top.group(3))
        after = _named_columns(text[top.end(3):], columns)  # "by unit price" names unit_price, not units
        by = next((c for c in after if c in numeric), None) or (
            column_named(columns, top.group(4)) if top.group(4) else metric)
        if thing and by and thing != by:
            pick = "nsmallest" if top.group(1).lower() in _SMALL else "nlargest"
            hints.append(f"top {top.group(2)} {top.group(3)} (grouped, each once): "
                         f"`{name}.groupby('{thing}')['{by}'].{agg}().{pick}({top.group(2)})`")
    if MONTHLY.search(text):
        date = next((c for c in columns if re.search(r"date|time|day", c, re.I)), None)
        if date:
            col = metric or "<column>"
            how = "size()" if _COUNT.search(text) else f"{agg}()"
            series = (f"{name}.set_index(pd.to_datetime({name}['{date}']))"
                      + ("" if how == "size()" else f"['{col}']") + f".resample('MS').{how}")
            hints.append(f"per month: `monthly = {series}` (a date index; "
                         "`monthly.index.strftime('%Y-%m')` gives YYYY-MM labels)")
    per = None if top else _PER.search(text)
    if per and not MONTHLY.search(per.group(0)):
        group = column_named(columns, per.group(1))
        if group and group != metric:
            if _COUNT.search(text):
                hints.append(f"per {group}: `{name}.groupby('{group}').size()`")
            elif metric:
                hints.append(f"per {group}: `{name}.groupby('{group}')['{metric}'].{agg}()`")
    if hints and re.search(r"\b(plot|chart|graph)\b", text, re.I):
        kind = "bar" if re.search(r"\bbar\b", text, re.I) else "line"
        hints.append(f"plot a Series `s`: `s.plot(kind='{kind}')`, then `plt.show()`")
    return hints


_REFERS = re.compile(r"\b(?:it|them|this|that|these|those)\b", re.I)


def hints_note(text: str, frames: Mapping[str, Any], before: list[str] | None = None) -> str:
    """The idioms as a note for the cell's prompt, or "" when none fits.

    ``before``: the earlier parts' words; a part that points back ("plot it as a bar chart")
    gets the idioms of the part it points to, read together with its own words.
    """
    if before and _REFERS.search(text):
        text = f"{before[-1]} {text}"
    hints = pattern_hints(text, frames)
    return "Pandas idioms that fit this part (adapt them):\n" + "\n".join(f"- {h}" for h in hints) if hints else ""
