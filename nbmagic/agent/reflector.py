"""The Reflector: read what the kernel showed and judge it against what the part asked.

A cell that *ran* has not necessarily *answered*. The tool-caller's cell is judged
here from its outputs (and the state it left), before the step counts as done:

* a figure was asked for and none was drawn;
* a count came out negative or fractional;
* a table came out empty (``Empty DataFrame``, ``Series([], …)``) or the result is NaN;
* the request names an exact line to print (``Answer: <n>``) and the answering cell did not print it;
* the cell showed nothing at all although the part asks for a result.

Errors get the same treatment: a cell that reads a file that does not exist while the
table is already loaded is told exactly which DataFrame to use. Each finding is a
:class:`Verdict` whose ``fix`` is the refinement the tool-caller gets next (the
deliberation's reflector message). The judge is rules, not a model call: on a CPU
model every call costs seconds, and these checks are exact.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from nbmagic.agent.executor import ExecResult
from nbmagic.agent.hints import MONTHLY, TOP_PHRASE, column_named
from nbmagic.agent.parts import Part

_NUM = re.compile(r"(?<![\w.])-?\d+(?:\.\d+)?(?:[eE][-+]?\d+)?(?![\w.])")


@dataclass(frozen=True)
class Verdict:
    """The reflector's judgement of one attempt: ``ok``, or why not and what to do instead."""

    ok: bool
    why: str = ""
    fix: str = ""


OK = Verdict(True)


def _has_figure(run: ExecResult) -> bool:
    return any("image/png" in (o.get("data") or {}) or "image/svg+xml" in (o.get("data") or {})
               for o in run.outputs)


def _shows_text(run: ExecResult) -> bool:
    """Did the cell show anything besides figures (printed text, a table, a value)?"""
    for o in run.outputs:
        data = o.get("data") or {}
        if o.get("output_type") == "stream" and str(o.get("text", "")).strip():
            return True
        if data and "image/png" not in data and "image/svg+xml" not in data and not str(
                data.get("text/plain", "")).startswith("<Figure"):
            return True
    return False


def _last_numbers(text: str) -> list[str]:
    lines = [ln for ln in text.strip().splitlines() if ln.strip()]
    for line in reversed(lines[-3:]):
        nums = _NUM.findall(line)
        if nums:
            return nums
    return []


def _format_regex(line: str) -> re.Pattern[str]:
    """A pattern for a requested answer line: literal text, placeholders (``<n>``, ``{x}``, ``X``) as values."""
    pieces = re.split(r"(<[^>]{1,30}>|\{[^}]{0,30}\}|\.\.\.|\bX\b|\bN\b)", line.strip())
    out = []
    for i, piece in enumerate(pieces):
        if i % 2:
            out.append(r"[^\n]+?")
        elif piece:
            out.append(re.escape(piece.strip()) if piece.strip() else r"\s*")
    return re.compile(r"\s*".join(p for p in out if p) + r"[^\n]*", re.I)


_MONTH_CODE = re.compile(r"resample\(|to_period\(|\.dt\.month|\.month\b|Grouper\(|strftime\(|dt\.to_period|"
                         r"\.dt\.strftime|\.str\[\s*:\s*7\s*\]|\.str\.slice\(\s*0\s*,\s*7|['\"]M['\"]|['\"]MS['\"]|['\"]ME['\"]|['\"]\w*month\w*['\"]", re.I)


_PREVIEW = re.compile(r"\b(?:first|last)\s+(?:\d+\s+)?rows\b|\bhead\b|\btail\b|\bpreview\b|\bsample\b|"
                      r"\blook at\b|\bshow the (?:data|table)\b", re.I)


def only_previews(code: str, frames: Mapping[str, Any]) -> bool:
    """Is every statement of ``code`` an import, or a display of a loaded table as it is?

    ``print(sales.head())``, ``sales.head(10)``, ``sales``: the 0.5B coder answered "the top 5
    products by revenue" with exactly that, and it ran and showed a table.
    """
    names = "|".join(re.escape(n) for n in frames)
    shown = re.compile(rf"^(?:print\()?(?:{names})(?:\.(?:head|tail|sample)\(\s*\d*\s*\))?\)?;?$")
    lines = [ln.strip() for ln in code.splitlines() if ln.strip() and not ln.strip().startswith("#")]
    body = [ln for ln in lines if not re.match(r"(?:import|from)\s", ln)]
    return bool(body) and all(shown.match(ln) for ln in body)


def judge_shape(part: Part, code: str, made: Mapping[str, Any], frames: Mapping[str, Any]) -> Verdict:
    """Checks of what the cell computed, from the values it left (not only what it printed).

    * ``top N <things> by <metric>``: a table whose <thing> column repeats a value was not
      grouped (it lists rows, not things);
    * a monthly series or plot: the code must aggregate by month somewhere.
    """
    base = next(iter(frames.values()), None)
    base_name = next(iter(frames), "df")
    m = TOP_PHRASE.search(part.text)
    columns = [str(c) for c in getattr(base, "columns", [])]
    if m and base is not None:
        entity = column_named(columns, m.group(3))
        metric = column_named(columns, m.group(4)) if m.group(4) else None
        for value in made.values():
            col = entity if entity is not None and entity in getattr(value, "columns", []) else None
            # a result, not a copy of the table: fewer rows than the table it came from
            if col is not None and 1 < len(value) < len(base) and value[col].duplicated().any():
                how = (f"`{base_name}.groupby('{col}')['{metric}'].sum().nlargest({m.group(2)})`" if metric
                       else f"`{base_name}.groupby('{col}')` and an aggregate")
                return Verdict(False, f"the top {m.group(2)} repeats a {col}",
                               f"The table lists rows, not {m.group(3).lower()}: `{col}` repeats. Group by `{col}` and "
                               f"add up first, e.g. {how}, and show that.")
    if MONTHLY.search(part.text) and base is not None and not _MONTH_CODE.search(code):
        date = next((str(c) for c in getattr(base, "columns", []) if "date" in str(c).lower()
                     or "time" in str(c).lower() or "month" in str(c).lower()), "date")
        return Verdict(False, "nothing was aggregated by month",
                       f"The part asks for a monthly series, but the cell does not aggregate by month. Sum by month "
                       f"first, e.g. `monthly = {base_name}.set_index('{date}')[<the column>].resample('MS').sum()`, "
                       "then show or plot `monthly`.")
    return OK


def judge(part: Part, run: ExecResult, *, answer_line: str | None = None, answering: bool = False,
          code: str = "", made: Mapping[str, Any] | None = None, frames: Mapping[str, Any] | None = None) -> Verdict:
    """Judge a cell that ran without error against its part (see the module docs).

    ``made``: the values the cell created or changed; ``frames``: the loaded DataFrames by name.
    """
    text = run.text(4000)
    shown = text.strip()
    if part.kind == "plot" and not _has_figure(run):
        return Verdict(False, "no figure was drawn",
                       "The part asks for a plot, but the cell drew no figure. Draw it with matplotlib "
                       "(`fig, ax = plt.subplots()`, plot on `ax`) and end the cell with `plt.show()`.")
    if re.search(r"^Empty DataFrame|Series\(\[\],|^\[\]$|^Index\(\[\]", shown, re.M):
        return Verdict(False, "the result is empty",
                       "The result came out empty (no rows). Check the filter values and column names against "
                       "the data summary above (exact spelling and case), then compute it again.")
    if shown and re.fullmatch(r"(?:[\w ]+:\s*)?(?:nan|NaN|None)", shown.splitlines()[-1].strip()):
        return Verdict(False, "the result is NaN/None",
                       "The result is NaN/None: a column is missing values or the operation returned nothing. "
                       "Drop missing values (`.dropna()`) or pick the right column, and show the value.")
    if part.kind == "count":
        nums = _last_numbers(shown)
        if nums:
            value = float(nums[-1])
            if value < 0 or value != int(value):
                return Verdict(False, f"a count came out as {nums[-1]}",
                               f"The part asks for a count (how many), but the cell showed {nums[-1]}: a count is "
                               "a whole number >= 0. Count rows (`len(...)`, `.sum()` of a True/False mask, "
                               "`.nunique()`), not a difference or an average.")
    if answering and answer_line and not _format_regex(answer_line).search(shown):
        return Verdict(False, "the requested answer line was not printed",
                       f"The request asks for the answer printed exactly in this form: `{answer_line}`. "
                       "End the cell with a `print(...)` of that line, with the computed value in place "
                       "of the placeholder.")
    if part.kind != "other" and frames and only_previews(code, frames) and not _PREVIEW.search(part.text):
        name = next(iter(frames))
        return Verdict(False, "the cell only shows the loaded table",
                       f"The cell only shows rows of `{name}` as loaded, which the notebook already shows. "
                       f"Compute what this part asks ({part.title}) from `{name}` and show that result.")
    if part.kind == "table" and _has_figure(run) and not _shows_text(run):
        return Verdict(False, "no table was shown",
                       "The part asks for a table, but the cell only drew a figure. Compute the table and end the "
                       "cell with it (its name on the last line) so its values are shown; plot in a later cell.")
    if not shown and part.kind != "other" and not _has_figure(run):
        return Verdict(False, "the cell showed nothing",
                       "The cell ran but showed nothing. End it with the expression that shows the result "
                       "(the table or the value), or `print(...)` it.")
    return judge_shape(part, code, made or {}, frames or {})


def error_hint(run: ExecResult, code: str, frames: Mapping[str, str], namespace: Mapping[str, Any]) -> str:
    """Exactly what to use instead, when a failed cell ignored the state it runs in.

    ``frames`` maps each DataFrame the agent loaded to the file it came from.
    """
    if not frames:
        return ""
    ename, evalue = run.ename or "", run.evalue or ""
    listing = "; ".join(f"`{name}` (from {path}{_columns(namespace.get(name))})" for name, path in frames.items())
    if ename in ("FileNotFoundError", "OSError", "IOError") or "No such file" in evalue:
        return (f"That file does not exist. The data is already loaded as the DataFrame {listing}. "
                "Do not read any file: use that DataFrame by its name.")
    if ename == "KeyError":
        # an earlier attempt may have changed the table in place (set_index(..., inplace=True))
        now = []
        for name in frames:
            frame = namespace.get(name)
            index = getattr(getattr(frame, "index", None), "name", None)
            now.append(f"`{name}`{_columns(frame)}" + (f"; its index is `{index}` (not a column)" if index else ""))
        return ("That key is not a column. As they are now: " + "; ".join(now) + ". Use these exact names, and "
                "do not change the loaded DataFrame in place (no inplace=True): make a new variable.")
    return ""


def _columns(frame: Any) -> str:
    cols = getattr(frame, "columns", None)
    if cols is None:
        return ""
    names = [str(c) for c in list(cols)[:15]]
    return "; columns: " + ", ".join(names)


_READ = re.compile(r"\bpd\.read_(?:csv|table|json|parquet|excel)\(\s*(?:r?['\"])([^'\"]+)['\"][^)]*\)")


def reuse_loaded_frames(code: str, frames: Mapping[str, str], exists: Any) -> tuple[str, list[str]]:
    """Replace ``pd.read_csv(...)`` that ignores a loaded table by that DataFrame.

    Small models invent paths (``/home/user/sales_data.csv``) or read the loaded table's file
    again into the loaded table's own name. A missing path whose file name is a loaded table's,
    any missing path while exactly one table is loaded, and ``<frame> = pd.read_csv(<its file>)``
    become ``<frame>.copy()``. Any other read of a file that exists is left alone: it reads the
    real data, parsed the way the cell's code expects (the loaded copy has parsed dates that
    code written for the raw file would treat as text). ``exists(path) -> bool`` says what is on disk.
    Returns the code and the replaced paths.
    """
    if not frames:
        return code, []
    by_name = {str(p).replace("\\", "/").rsplit("/", 1)[-1].lower(): f for f, p in frames.items()}
    replaced: list[str] = []

    def swap(m: re.Match[str]) -> str:
        path = m.group(1)
        frame = by_name.get(path.replace("\\", "/").rsplit("/", 1)[-1].lower())
        if exists(path):
            # the loaded table's own file read into the loaded table's name redefines what exists;
            # any other read of a real file reads real data, parsed as the cell's code expects
            line_start = code.rfind("\n", 0, m.start()) + 1
            target = re.match(r"\s*(\w+)\s*=\s*$", code[line_start:m.start()])
            if frame is None or target is None or target.group(1) != frame:
                return m.group(0)
        elif frame is None and len(frames) == 1:  # an invented path while one table is loaded
            frame = next(iter(frames))
        if frame is None:
            return m.group(0)
        replaced.append(path)
        return f"{frame}.copy()"

    code = _READ.sub(swap, code)
    for frame in frames:  # `sales = sales.copy()` after the swap does nothing: drop it
        code = re.sub(rf"^[ \t]*{re.escape(frame)}[ \t]*=[ \t]*{re.escape(frame)}\.copy\(\)[ \t]*\n?", "", code,
                      flags=re.M)
    return code, replaced


_PROMPT_COMMENT = re.compile(r"^[ \t]*#[ \t]*(?:Step \d+(?: of \d+)?\s*[:.]|Request:|Plan:).*\n?", re.M | re.I)


def drop_prompt_comments(code: str) -> str:
    """Comment lines that only echo the prompt (``# Step 2 of 3: …``) are not the user's analysis."""
    return _PROMPT_COMMENT.sub("", code).lstrip("\n")
