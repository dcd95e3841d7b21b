"""What the model is told about the user's world, within hard size limits.

The agent writes code for a live kernel, so the model must know which
variables exist (a DataFrame's columns and dtypes matter more than its values),
what the files the request names look like, and what the user ran recently.
Every part has a cap: a huge DataFrame, a long CSV line or a chatty history
cannot blow up the prompt.
"""

from __future__ import annotations

import csv
import inspect
import os
import re
import types
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from nbmagic.describe import is_table, table_facts
from nbmagic.describe import short_repr as _short_repr
from nbmagic.text import shown_name

#: names IPython puts in every user namespace; never summarised, never "user variables"
IPYTHON_NAMES = frozenset(
    {"In", "Out", "get_ipython", "exit", "quit", "open", "display", "_ih", "_oh", "_dh", "_ii", "_iii",
     "_i", "_", "__", "___", "__builtins__", "__builtin__", "__name__", "__doc__", "__spec__",
     "__loader__", "__package__"}
)

DATA_SUFFIXES = (".csv", ".tsv", ".json", ".jsonl", ".parquet", ".xlsx", ".xls", ".txt", ".feather")


@dataclass(frozen=True)
class ContextLimits:
    """Hard caps on each part of the context (characters unless named otherwise)."""

    max_vars: int = 25
    namespace_chars: int = 4000
    var_chars: int = 700
    max_files: int = 4
    file_chars: int = 1500
    file_rows: int = 5
    history_cells: int = 3
    cell_chars: int = 600
    listing_files: int = 12
    total_chars: int = 9000


@dataclass
class AgentContext:
    """The gathered pieces; :meth:`render` gives the text the prompts embed."""

    namespace: str = ""
    files: str = ""
    listing: str = ""
    history: str = ""
    cwd: str = ""
    user_names: list[str] = field(default_factory=list)
    limits: ContextLimits = field(default_factory=ContextLimits)

    def render(self) -> str:
        parts = [f"Working folder: {self.cwd}"] if self.cwd else []
        parts.append("Variables in the kernel:\n" + (self.namespace or "(none)"))
        if self.files:
            parts.append("Files named in the request:\n" + self.files)
        if self.listing:
            parts.append("Data files in the working folder: " + self.listing)
        if self.history:
            parts.append("Recent cells:\n" + self.history)
        return _cap("\n\n".join(parts), self.limits.total_chars)


def _cap(text: str, limit: int) -> str:
    if len(text) <= limit:
        return text
    return text[: max(0, limit - 40)].rstrip() + f"\n… ({len(text) - limit + 40} chars omitted)"


# --- namespace ----------------------------------------------------------------------------


def user_names(namespace: Mapping[str, Any], hidden: Mapping[str, Any] | Iterable[str] = ()) -> list[str]:
    """Names the user made: no private names, modules, IPython internals or startup names.

    ``hidden`` is IPython's ``user_ns_hidden``: a name counts as the user's again
    once the user rebinds it to a new object.
    """
    hidden_map = hidden if isinstance(hidden, Mapping) else None
    hidden_set = set() if hidden_map is not None else set(hidden)
    out = []
    for name, value in list(namespace.items()):
        if name.startswith("_") or name in IPYTHON_NAMES or name in hidden_set:
            continue
        if hidden_map is not None and name in hidden_map and hidden_map[name] is value:
            continue
        if isinstance(value, types.ModuleType):
            continue
        out.append(name)
    return out


def _kind_rank(value: Any) -> int:
    mod = type(value).__module__ or ""
    if mod.startswith("pandas") and hasattr(value, "dtypes"):
        return 0
    if mod.startswith(("pandas", "numpy")):
        return 1
    if callable(value):
        return 3
    return 2


def describe(name: str, value: Any, limits: ContextLimits) -> str:
    """One variable, in a few lines: structure first, values only as a sample."""
    tname = type(value).__name__
    try:
        if is_table(value):  # the facts from the shared describer (nbmagic.describe), phrased for this prompt
            facts = table_facts(value, max_columns=30, head_rows=limits.file_rows, colwidth=24)
            if hasattr(value, "columns"):
                dtypes = ", ".join(f"{c} ({t})" for c, t in facts.columns)
                if facts.more_columns:
                    dtypes += f", … {facts.more_columns} more"
                cols = len(facts.columns) + facts.more_columns
                text = f"{name}: DataFrame {facts.rows} rows × {cols} columns; columns: {dtypes}\n{facts.head}"
            else:
                text = f"{name}: Series {facts.rows} values, dtype {facts.dtype}, name {facts.name!r}\n{facts.head}"
        elif hasattr(value, "shape") and hasattr(value, "dtype"):
            text = f"{name}: {tname} shape {tuple(value.shape)} dtype {value.dtype}"
        elif isinstance(value, type):
            text = f"{name}: class {value.__name__}"
        elif inspect.isfunction(value) or inspect.isbuiltin(value):
            try:
                sig = str(inspect.signature(value))
            except (TypeError, ValueError):
                sig = "(…)"
            text = f"{name}: function {name}{sig}"
        elif isinstance(value, (list, tuple, set, frozenset, dict)):
            text = f"{name}: {tname} of {len(value)} items: {_short_repr(value, 120)}"
        elif isinstance(value, (str, bytes)):
            text = f"{name}: {tname} of length {len(value)}: {_short_repr(value, 120)}"
        else:
            text = f"{name}: {tname} = {_short_repr(value, 120)}"
    except Exception as exc:  # a broken __repr__ must not break the agent
        text = f"{name}: {tname} (could not describe: {type(exc).__name__})"
    return _cap(text, limits.var_chars)


def summarize_namespace(
    namespace: Mapping[str, Any], limits: ContextLimits, hidden: Mapping[str, Any] | Iterable[str] = ()
) -> str:
    names = user_names(namespace, hidden)
    ordered = sorted(names, key=lambda n: _kind_rank(namespace[n]))  # stable: tables first
    lines: list[str] = []
    used = 0
    for i, name in enumerate(ordered):
        if i >= limits.max_vars:
            lines.append(f"… and {len(ordered) - i} more variables")
            break
        entry = describe(name, namespace[name], limits)
        if used + len(entry) > limits.namespace_chars:
            lines.append(f"… and {len(ordered) - i} more variables (not shown: size limit)")
            break
        lines.append(entry)
        used += len(entry) + 1
    return "\n".join(lines)


# --- files -------------------------------------------------------------------------------------

_PATHLIKE = re.compile(r"""(?:"([^"]+)"|'([^']+)'|`([^`]+)`|([\w.~/\\-]+\.[A-Za-z0-9]{1,8}))""")


def named_files(request: str, base_dir: Path) -> list[Path]:
    """Existing files whose names appear in the request (quoted or with an extension)."""
    found: list[Path] = []
    for m in _PATHLIKE.finditer(request):
        raw = next(g for g in m.groups() if g).strip().rstrip(".,;:)")
        if not raw or len(raw) > 300:
            continue
        path = Path(raw).expanduser()
        if not path.is_absolute():
            path = base_dir / path
        try:
            if path.is_file() and path not in found:
                found.append(path)
        except OSError:
            continue
    return found


def describe_file(path: Path, base_dir: Path, limits: ContextLimits) -> str:
    """CSV: header and a few rows; other text: first lines; binary: size only."""
    try:
        shown = os.path.relpath(path, base_dir)
    except ValueError:
        shown = str(path)
    try:
        size = path.stat().st_size
        with open(path, "rb") as fh:
            head = fh.read(8192)
    except OSError as exc:
        return f"{shown}: cannot be read ({exc.strerror or exc})"
    if b"\x00" in head:
        return f"{shown}: binary file, {size} bytes"
    text = head.decode("utf-8", errors="replace")
    lines = text.splitlines()
    if len(head) == 8192 and lines:
        lines = lines[:-1]  # last line may be cut
    if path.suffix.lower() in (".csv", ".tsv"):
        delim = "\t" if path.suffix.lower() == ".tsv" else ","
        rows = list(csv.reader(lines[: limits.file_rows + 1], delimiter=delim))
        n_lines = _count_lines(path) if size < 50_000_000 else None
        body = "\n".join(",".join(c[:40] for c in row) for row in rows)
        total = f"{n_lines - 1} data rows, " if n_lines else ""
        header = f"{shown}: CSV, {total}{_size(size)}; columns: {', '.join(rows[0]) if rows else '(empty)'}"
        shape = _table_shape(path, delim, limits)
        return _cap(f"{header}\n{shape}first rows:\n{body}", limits.file_chars)
    first = "\n".join(line[:200] for line in lines[:10])
    return _cap(f"{shown}: text file, {size} bytes; first lines:\n{first}", limits.file_chars)


def _size(n: int) -> str:
    return f"{n} bytes" if n < 10_000 else f"{n / 1024:.0f} KB" if n < 10_000_000 else f"{n / 1048576:.0f} MB"


def _table_shape(path: Path, delim: str, limits: ContextLimits) -> str:
    """Column dtypes and, for text columns with few values, those values (read from the first rows).

    The model must use the file's real column names and category spellings; guessing
    ``data.csv`` or ``Revenue`` is the commonest failure of small models. pandas is
    imported only here, and only if it is installed; a file it cannot parse is shown raw.
    """
    try:
        import pandas as pd

        frame = pd.read_csv(path, sep=delim, nrows=2000)
    except Exception:
        return ""
    if frame.shape[1] == 0:
        return ""
    cols = list(frame.columns)[:30]
    dtypes = ", ".join(f"{c} ({frame[c].dtype})" for c in cols)
    lines = [f"dtypes: {dtypes}"]
    for c in cols:
        col = frame[c]
        if col.dtype == object or pd.api.types.is_string_dtype(col.dtype):
            values = col.dropna().astype(str).unique()
            if 0 < len(values) <= 12:
                lines.append(f"{c} values: {', '.join(v[:30] for v in values)}")
    return _cap("\n".join(lines), max(200, limits.file_chars // 2)) + "\n"


_ISO_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}(?:[ T]\d{2}:\d{2}(?::\d{2})?)?$")


def date_columns(path: Path, delim: str = ",", rows: int = 50) -> list[str]:
    """Columns of a CSV whose first values are all ISO dates (``2024-03-01``, with an optional time).

    The agent parses these when it loads the file, so ``resample`` and ``.dt`` work on them.
    Only ISO dates: ``03/04/2024`` is ambiguous and stays text.
    """
    try:
        with open(path, newline="", encoding="utf-8", errors="replace") as fh:
            reader = csv.reader(fh, delimiter=delim)
            header = next(reader, [])
            sample = [row for _, row in zip(range(rows), reader, strict=False)]
    except OSError:
        return []
    out = []
    for i, name in enumerate(header):
        values = [r[i].strip() for r in sample if i < len(r) and r[i].strip()]
        if values and all(_ISO_DATE.match(v) for v in values):
            out.append(name)
    return out


def _count_lines(path: Path) -> int:
    with open(path, "rb") as fh:
        return sum(chunk.count(b"\n") for chunk in iter(lambda: fh.read(1 << 20), b"")) or 1


def data_listing(base_dir: Path, limits: ContextLimits) -> str:
    try:
        # a name that is not valid UTF-8 is shown escaped (caf\xe9.csv), never sent as a lone surrogate
        names = sorted(shown_name(p.name) for p in base_dir.iterdir() if p.is_file() and p.suffix.lower() in DATA_SUFFIXES)
    except OSError:
        return ""
    more = f" … and {len(names) - limits.listing_files} more" if len(names) > limits.listing_files else ""
    return ", ".join(names[: limits.listing_files]) + more


# --- history -----------------------------------------------------------------------------------


def recent_cells(shell: Any, namespace: Mapping[str, Any], limits: ContextLimits) -> str:
    """The last few inputs, without the agent's own magic cell and empty cells."""
    history: list[str] = []
    source = None
    if shell is not None:
        source = getattr(getattr(shell, "history_manager", None), "input_hist_raw", None)
    if source is None:
        source = namespace.get("In") if isinstance(namespace.get("In"), list) else None
    for cell in list(source or [])[::-1]:
        text = str(cell).strip()
        if not text or text.lstrip().startswith(("%%agent", "%agent", "get_ipython().run_cell_magic('agent'")):
            continue
        history.append(_cap(text, limits.cell_chars))
        if len(history) >= limits.history_cells:
            break
    return "\n---\n".join(reversed(history))


def gather(
    request: str,
    namespace: Mapping[str, Any],
    *,
    shell: Any = None,
    base_dir: str | os.PathLike[str] | None = None,
    limits: ContextLimits | None = None,
) -> AgentContext:
    """Collect the context for ``request`` from the namespace, the disk and the history."""
    limits = limits or ContextLimits()
    base = Path(base_dir or os.getcwd())
    hidden = getattr(shell, "user_ns_hidden", {}) if shell is not None else {}
    files = named_files(request, base)[: limits.max_files]
    return AgentContext(
        namespace=summarize_namespace(namespace, limits, hidden),
        files="\n\n".join(describe_file(p, base, limits) for p in files),
        listing=data_listing(base, limits),
        history=recent_cells(shell, namespace, limits),
        cwd=str(base),
        user_names=user_names(namespace, hidden),
        limits=limits,
    )
