"""Data as text, records as fields, and filters from descriptions: the exact half of ``count_matching`` / ``sum_matching``.

A record is a dict, a JSON object line, ``key=value`` pairs (logs), ``key: value | …`` or a CSV
row under a header; :func:`as_records` reads any of them from a list, a text, a DataFrame or
a file. :func:`build_filter` turns a description into a :class:`Filter` when every content word
of it is accounted for: a field value (``Oslo``; ``lamps`` for ``lamp``), a field name
(``city``), a stop word (English, German, French, Spanish) or a comparison ``<field> <op>
<number>`` (``qty > 10``, ``at least 3``, ``mindestens 3``, ``plus de 3``). Values are
compared case-insensitively; several values of one field are alternatives (OR), fields and
comparisons all hold (AND). :func:`render_text` is how every context kind reads as one text
(the direct read, the helpers, the made-up-answer check).
"""

from __future__ import annotations

import csv
import io
import json
import re
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

_STOP_WORDS = (
    # English
    "a an the and or of in on at to for with by from is are was were be been what which who whom whose how many "
    "much does do did has have had that this these those there their its it as all any each every not no only "
    "answer number give tell me please records record rows row entries entry items item lines line total count "
    "sum where when than then into over under same both one ones value values find show list whole text data "
    "about should would could can will just also",
    # German
    "der die das den dem des ein eine einer eines und oder mit von im in am an auf für ist sind war wie viele "
    "viel welche welcher welches wer was hat haben nur alle jede jeder datensätze datensatz zeilen zeile "
    "einträge eintrag summe gesamt anzahl antwort nicht kein keine zu bei aus",
    # French
    "le la les un une des du de et ou avec dans en au aux pour par sur est sont était combien quel quelle "
    "quels quelles qui que quoi ont a tous toutes chaque seulement enregistrements enregistrement lignes "
    "ligne entrées entrée somme nombre réponse pas ne",
    # Spanish
    "el los las y o con en por para es son cuántos cuántas cuál que registros registro filas suma total",
)
_STOP = frozenset(w for words in _STOP_WORDS for w in words.split())
_WORD = re.compile(r"[^\W_](?:[\w.\-]*[^\W_])?", re.UNICODE)
_NUMBER = re.compile(r"-?\d+(?:[.,]\d+)?")
#: a folder is rendered file by file up to this many characters
MAX_RENDER_CHARS = 50_000_000


# --- data as text ---


def render_text(data: Any, limit: int | None = None) -> str:
    """``data`` as one text; stops a little past ``limit`` characters when given (a size probe).

    Strings as they are; records (a list of dicts) as JSON lines; a list as one item
    per line; a DataFrame as CSV; a dict as ``key: value`` lines; a file's text; a
    folder as its text files, each under a ``=== relative/path ===`` line.
    """
    cap = MAX_RENDER_CHARS if limit is None else limit
    if isinstance(data, str):
        return data
    if isinstance(data, bytes | bytearray):
        return bytes(data[: cap + 1]).decode("utf-8", "replace")
    if isinstance(data, Path):
        return _render_path(data, cap)
    mod = type(data).__module__ or ""
    if mod.startswith("pandas") and hasattr(data, "to_csv"):
        frame = data.to_frame() if hasattr(data, "to_frame") and not hasattr(data, "columns") else data
        rows = max(1, min(len(frame), cap // 8 + 1))  # a cell is at least a few characters: cut before rendering
        return frame.head(rows).to_csv(index=False)
    if isinstance(data, Mapping):
        return _join((f"{k}: {_item_text(v)}" for k, v in data.items()), cap)
    if isinstance(data, list | tuple):
        return _join((_item_text(v) for v in data), cap)
    return str(data)


def _item_text(value: Any) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, Mapping):
        try:
            return json.dumps(value, ensure_ascii=False, default=str)
        except (TypeError, ValueError):
            return str(value)
    return str(value)


def _join(items: Any, cap: int) -> str:
    out: list[str] = []
    size = 0
    for text in items:
        out.append(text)
        size += len(text) + 1
        if size > cap:
            break
    return "\n".join(out)


def _render_path(path: Path, cap: int) -> str:
    if path.is_file():
        with open(path, encoding="utf-8", errors="replace") as f:
            return f.read(cap + 1)
    if not path.is_dir():
        return str(path)
    parts: list[str] = []
    size = 0
    for p in sorted(path.rglob("*")):
        if not p.is_file() or any(part.startswith(".") for part in p.relative_to(path).parts):
            continue
        try:
            with open(p, encoding="utf-8") as f:
                body = f.read(cap + 1 - size)
        except (OSError, UnicodeDecodeError):  # binary or unreadable: not text to read
            continue
        parts.append(f"=== {p.relative_to(path)} ===\n{body}")
        size += len(parts[-1]) + 1
        if size > cap:
            break
    return "\n".join(parts)


# --- records ---

_KV = re.compile(r"""([A-Za-z_\u00C0-\u024F][\w.\-]*)\s*=\s*("[^"]*"|'[^']*'|[^\s|,;]+)""")
_COLON = re.compile(r"""([A-Za-z_\u00C0-\u024F][\w.\- ]*?)\s*:\s*("[^"]*"|[^|,;]+)""")


def parse_record(item: Any) -> dict[str, str] | None:
    """One record as ``{field: value}``: a dict, a JSON object line, ``k=v`` pairs, or ``k: v | …``."""
    if isinstance(item, Mapping):
        return {str(k): _plain(v) for k, v in item.items()}
    if not isinstance(item, str):
        return None
    line = item.strip()
    if not line:
        return None
    if line.startswith("{"):
        try:
            obj = json.loads(line)
        except ValueError:
            obj = None
        if isinstance(obj, dict):
            return {str(k): _plain(v) for k, v in obj.items()}
    pairs = _KV.findall(line)
    if not pairs and re.search(r"[|,;]", line):
        pairs = _COLON.findall(line)
    if not pairs:
        return None
    return {k.strip(): v.strip().strip("\"'").strip() for k, v in pairs}


def _plain(v: Any) -> str:
    return v if isinstance(v, str) else json.dumps(v) if isinstance(v, list | dict) else str(v)


def as_records(data: Any) -> tuple[list[dict[str, str] | None], list[str]]:
    """``(records, lines)``: each item parsed (``None`` where it is not a record) and its text line.

    A text is split into lines; a text whose first line is a CSV header (commas, no
    ``=``) is read as CSV. A DataFrame gives its rows.
    """
    mod = type(data).__module__ or ""
    if mod.startswith("pandas") and hasattr(data, "columns"):
        rows = data.astype(str).to_dict("records")
        return [{str(k): v for k, v in r.items()} for r in rows], [json.dumps(r, ensure_ascii=False) for r in rows]
    if isinstance(data, Path):
        data = render_text(data)
    if isinstance(data, str):
        lines = [ln for ln in data.splitlines() if ln.strip()]
        if lines and _looks_like_csv(lines):
            reader = csv.DictReader(io.StringIO("\n".join(lines)))
            rows = [{k.strip(): (v or "").strip() for k, v in r.items() if k is not None} for r in reader]
            return list(rows), lines[1:]
        return [parse_record(ln) for ln in lines], lines
    if isinstance(data, Mapping):
        data = [{"key": k, "value": v} if not isinstance(v, Mapping) else {"key": k, **v} for k, v in data.items()]
    if isinstance(data, list | tuple):
        return [parse_record(x) for x in data], [_item_text(x) for x in data]
    return as_records(render_text(data))


def _looks_like_csv(lines: list[str]) -> bool:
    head = lines[0]
    if "=" in head or head.lstrip().startswith("{") or head.count(",") < 1:
        return False
    n = head.count(",")
    sample = lines[1:21]
    return bool(sample) and all(ln.count(",") >= n for ln in sample) and not any(ch.isdigit() for ch in head.split(",")[0][:1])


# --- the code filter -----------------------------------------------------------------------

_COMPARE = re.compile(
    r"([^\W\d_][\w.\-]*)\s*(?:is\s+|ist\s+|est\s+)?"
    r"(>=|<=|!=|==|>|<|=|greater than or equal to|less than or equal to|more than|greater than|over|above|"
    r"at least|less than|fewer than|below|under|at most|mehr als|über|unter|weniger als|mindestens|höchstens|"
    r"plus de|moins de|au moins|au plus|supérieur à|inférieur à)\s*(-?\d+(?:[.,]\d+)?)",
    re.I,
)
_OPS: dict[str, Callable[[float, float], bool]] = {
    ">": lambda a, b: a > b, ">=": lambda a, b: a >= b, "<": lambda a, b: a < b, "<=": lambda a, b: a <= b,
    "=": lambda a, b: a == b, "!=": lambda a, b: a != b,
}
_OP_WORDS = {
    "==": "=", "greater than or equal to": ">=", "less than or equal to": "<=", "more than": ">", "greater than": ">",
    "over": ">", "above": ">", "at least": ">=", "less than": "<", "fewer than": "<", "below": "<", "under": "<",
    "at most": "<=", "mehr als": ">", "über": ">", "unter": "<", "weniger als": "<", "mindestens": ">=",
    "höchstens": "<=", "plus de": ">", "moins de": "<", "au moins": ">=", "au plus": "<=", "supérieur à": ">",
    "inférieur à": "<",
}


class Filter:
    """``field in {values}`` for every named field, and numeric comparisons, all of them (AND)."""

    def __init__(self, equals: dict[str, set[str]], compares: list[tuple[str, str, float]]) -> None:
        self.equals = equals
        self.compares = compares

    def __call__(self, rec: dict[str, str]) -> bool:
        for f, values in self.equals.items():
            if str(rec.get(f, "")).strip().lower() not in values:
                return False
        for f, op, num in self.compares:
            x = _to_number(rec.get(f))
            if x is None or not _OPS[op](x, num):
                return False
        return True

    def describe(self) -> str:
        parts = [f"{f} in {sorted(v)}" if len(v) > 1 else f"{f} == {next(iter(v))!r}" for f, v in self.equals.items()]
        parts += [f"{f} {op} {num:g}" for f, op, num in self.compares]
        return " and ".join(parts) or "(every record)"


def _to_number(v: Any) -> float | None:
    if v is None:
        return None
    text = str(v).strip().replace(",", ".") if str(v).count(",") == 1 and "." not in str(v) else str(v).strip()
    try:
        return float(text.replace("_", ""))
    except ValueError:
        return None


def _field_index(records: Sequence[dict[str, str] | None]) -> tuple[dict[str, str], dict[str, dict[str, str]]]:
    """``(lower field name -> field, field -> {lower value -> value})`` over the parsed records."""
    fields: dict[str, str] = {}
    values: dict[str, dict[str, str]] = {}
    for rec in records:
        if not rec:
            continue
        for k, v in rec.items():
            fields.setdefault(k.lower(), k)
            vals = values.setdefault(k, {})
            if len(vals) < 5000:
                vals.setdefault(str(v).strip().lower(), str(v))
    return fields, values


def build_filter(description: str, records: Sequence[dict[str, str] | None], *,
                 strict: bool = True) -> tuple[Filter | None, list[str]]:
    """A :class:`Filter` for ``description`` if every content word of it is accounted for, and the words that are not.

    A word is accounted for when it is (part of) a field value (``Oslo``; a plural
    ``lamps`` for ``lamp``), a field name (``city``), a stop word, or part of a
    comparison ``<field> <op> <number>``. Anything else (``expensive``, ``late``)
    needs reading: ``(None, those words)``.
    """
    fields, values = _field_index(records)
    desc = description.lower()
    covered = [False] * len(desc)

    def cover(a: int, b: int) -> None:
        for i in range(a, b):
            covered[i] = True

    compares: list[tuple[str, str, float]] = []
    for m in _COMPARE.finditer(desc):
        name = fields.get(m.group(1)) or fields.get(m.group(1).rstrip("s"))
        if name is None:
            continue
        op = _OP_WORDS.get(m.group(2).lower(), m.group(2))
        compares.append((name, op, float(m.group(3).replace(",", "."))))
        cover(m.start(), m.end())
    equals: dict[str, set[str]] = {}
    for field_name, vals in values.items():
        for low in vals:
            if not low or low in _STOP or len(low) > 60:
                continue
            for m in re.finditer(rf"(?<![\w-]){re.escape(low)}(?:e?s)?(?![\w-])", desc):
                if any(covered[m.start():m.end()]):  # part of a comparison or of a longer value
                    continue
                equals.setdefault(field_name, set()).add(low)
                cover(m.start(), m.end())
    # a value found in several fields: keep the field the description names, if it names one
    named = {f for low, f in fields.items() if re.search(rf"(?<![\w-]){re.escape(low)}s?(?![\w-])", desc)}
    if named and len(equals) > 1:
        by_value: dict[str, list[str]] = {}
        for f, vals_ in equals.items():
            for v in vals_:
                by_value.setdefault(v, []).append(f)
        for v, fs in by_value.items():
            if len(fs) > 1 and any(f in named for f in fs):
                for f in fs:
                    if f not in named:
                        equals[f].discard(v)
        equals = {f: v for f, v in equals.items() if v}
    left: list[str] = []
    for m in _WORD.finditer(desc):
        if all(covered[m.start():m.end()]):
            continue
        w = m.group(0).strip(".-")
        if not w or w in _STOP or w in fields or w.rstrip("s") in fields or _NUMBER.fullmatch(w):
            continue
        left.append(w)
    if not (equals or compares) or (left and strict):
        return None, left
    return Filter(equals, compares), left


def numeric_field_named(description: str, records: Sequence[dict[str, str] | None]) -> str | None:
    """The first field named in ``description`` whose values are numbers."""
    fields, values = _field_index(records)
    desc = description.lower()
    hits = []
    for low, name in fields.items():
        m = re.search(rf"(?<![\w-]){re.escape(low)}s?(?![\w-])", desc)
        vals = [v for v in values.get(name, {}) if v]
        if m and vals and sum(_to_number(v) is not None for v in vals) >= 0.9 * len(vals):
            hits.append((m.start(), name))
    return min(hits)[1] if hits else None
