"""One-line strategies for the common long-context jobs, as REPL helpers.

A frontier root writes the loop of an RLM itself (split, ``llm_query_batched``,
combine). A 0.5B root does not: it writes one call or nothing. These helpers are
that loop, written once, so a small root's whole program can be::

    submit(find_answer(context, "What is the access code for vault QX-1234?"))
    submit(count_matching(context, "city Oslo and product lamp"))
    submit(sum_matching(context, "qty", "city Oslo"))
    submit(map_chunks(context, "List the people named.", combine="concat"))
    print(grep(context, r"ERROR", context_lines=1))

``data`` may be a string, a list of strings or dicts (records), a DataFrame, a
dict, or a file/folder ``Path``: everything is read as text or as records
(:mod:`nbmagic.rlm.records`: ``render_text``, ``as_records``, ``build_filter``). Every sub-model call goes through the
run's :class:`~nbmagic.rlm.tools.Toolbox` (``_batched``): it is counted against
``max_llm_calls`` and the token/time/cost budgets, recorded in the turn's
``sub_calls`` and emitted as events, exactly as ``llm_query_batched``.

How each one saves work:

* ``find_answer`` ranks passages by the question's rare words
  (``score(p) = sum over question keywords k in p of log((N + 1) / (df_k + 0.5))``,
  ``N`` passages, ``df_k`` passages holding ``k``), asks the sub-model only the
  passages scoring at least 3/4 of the best (at most ``top_k``), and takes a vote
  weighted by those scores. A needle in 1 MB costs one short sub-call.
* ``count_matching`` / ``sum_matching`` turn the description into a filter by
  code when every content word of it names a field value (``city Oslo``), a field,
  or a comparison (``qty > 10``): exact, no sub-call. Otherwise the records go to
  the sub-model in chunks and the per-chunk numbers are added.
* ``map_chunks`` sizes chunks so the whole text fits the calls left.

Each helper returns ``(value, notice)`` like the others in :mod:`nbmagic.rlm.tools`;
the notice says what was done (filter used, passages read), so the turn's output
shows how the value was computed.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Sequence
from typing import Any

from nbmagic.rlm.records import (
    _NUMBER,
    _STOP,
    _WORD,
    Filter,
    _field_index,
    _to_number,
    as_records,
    build_filter,
    numeric_field_named,
    render_text,
)

#: the helpers this module adds to the REPL (names are reserved like llm_query's)
STRATEGY_NAMES = ("find_answer", "count_matching", "sum_matching", "map_chunks", "grep")
#: characters of one passage find_answer shows the sub-model (about 400 tokens)
PASSAGE_CHARS = 1500
#: characters of one chunk map_chunks / the record fallback send per sub-call
CHUNK_CHARS = 6000

Ask = Callable[[list[str]], list[str]]

_NONE = re.compile(r"^\W*(none|not found|no answer|unknown|n/?a|nicht gefunden|introuvable)\b", re.I)


# --- chunks, prompts, votes ----------------------------------------------------------------


def chunk_text(text: str, size: int) -> list[str]:
    """Pieces of about ``size`` characters, cut at line ends (a longer line is cut where it must be)."""
    size = max(200, int(size))
    out: list[str] = []
    buf: list[str] = []
    n = 0
    for line in text.splitlines(keepends=True):
        while len(line) > size:
            if buf:
                out.append("".join(buf))
                buf, n = [], 0
            out.append(line[:size])
            line = line[size:]
        if n + len(line) > size and buf:
            out.append("".join(buf))
            buf, n = [], 0
        buf.append(line)
        n += len(line)
    if buf:
        out.append("".join(buf))
    return [c for c in out if c.strip()]


def keywords(question: str) -> list[str]:
    """The question's content words, lower-cased (codes like ``QX-1234`` kept whole)."""
    out: list[str] = []
    for m in _WORD.finditer(question.lower()):
        w = m.group(0)
        if w in _STOP or (len(w) < 3 and not any(c.isdigit() for c in w)):
            continue
        if w not in out:
            out.append(w)
    return out


def rank_passages(passages: Sequence[str], question: str) -> list[tuple[float, int]]:
    """``(score, index)`` best first; score = sum of the idf of the question's keywords in the passage."""
    kws = keywords(question)
    lows = [p.lower() for p in passages]
    n = len(passages)
    idf = {}
    for k in kws:
        df = sum(1 for p in lows if k in p)
        idf[k] = math.log((n + 1) / (df + 0.5)) if df else 0.0
    scored = [(sum(idf[k] for k in kws if k in p), i) for i, p in enumerate(lows)]
    return sorted(scored, key=lambda t: (-t[0], t[1]))


def first_number(text: str) -> float | None:
    m = _NUMBER.search(text.replace("\u202f", "").replace("\u00a0", ""))
    if not m:
        return None
    try:
        return float(m.group(0).replace(",", "."))
    except ValueError:
        return None


def _clean_answer(text: str) -> str:
    t = text.strip().splitlines()[0] if text.strip() else ""
    t = re.sub(r"^(the\s+)?(final\s+)?answer\s*(is\s*:?|:)\s*", "", t, flags=re.I)
    return t.strip().strip("*`\"' ").rstrip(".").strip()


def _usable(text: str) -> bool:
    return bool(text.strip()) and not text.startswith("[error]") and not _NONE.match(text.strip())


def _number_out(x: float) -> int | float:
    return int(x) if float(x).is_integer() else x


def vote(answers: Sequence[tuple[str, float]]) -> tuple[str | None, dict[str, float]]:
    """The answer with the most weight (ties: the first given), and the tally."""
    tally: dict[str, float] = {}
    shown: dict[str, str] = {}
    for text, w in answers:
        a = _clean_answer(text)
        if not a or not _usable(a):
            continue
        key = a.lower()
        tally[key] = tally.get(key, 0.0) + max(w, 1e-6)
        shown.setdefault(key, a)
    if not tally:
        return None, {}
    best = max(tally, key=lambda k: tally[k])  # max keeps the first of equal weights
    return shown[best], {shown[k]: round(v, 3) for k, v in tally.items()}


FIND_PROMPT = (
    "Read the passage and answer the question from it.\n\nPassage:\n{passage}\n\nQuestion: {question}\n"
    "Reply with the answer only (a word, a number or a short phrase). If the passage does not answer "
    "the question, reply NONE."
)
MAP_PROMPT = "{chunk}\n\n---\n{question}"
COUNT_PROMPT = (
    "Records:\n{chunk}\n\nHow many of these records match this description: {description}?\n"
    "Reply with one number only."
)
SUM_PROMPT = (
    "Records:\n{chunk}\n\nAdd up the field {field} over the records that match this description: {description}.\n"
    "Reply with one number only."
)


# --- the strategies (plain functions over an ``ask`` that makes counted sub-calls) ------------


def find_answer(data: Any, question: str, ask: Ask, *, top_k: int = 3, passage_chars: int = PASSAGE_CHARS,
                calls_left: int | None = None, max_chars: int | None = None) -> tuple[str, str]:
    """``(answer, notice)``: read the passages that best match the question, vote on their answers."""
    _need_text("find_answer", question, "question")
    text = render_text(data)
    passages = chunk_text(text, passage_chars)
    if not passages:
        return "NONE", "find_answer: the data is empty."
    ranked = rank_passages(passages, question)
    best = ranked[0][0]
    picked = [(s, i) for s, i in ranked if best > 0 and s >= 0.75 * best][: max(1, top_k)]
    how = f"the {len(picked)} of {len(passages)} passages that best match {keywords(question)[:6]}"
    if not picked:  # no keyword occurs anywhere: read as many passages as the budget allows
        passages, _ = chunks_within(text, passage_chars, calls_left, max_chars)
        picked = [(1.0, i) for i in range(len(passages))]
        how = f"{len(passages)} passages in order (no keyword of the question occurs in the data)"
    if calls_left is not None and len(picked) > calls_left:
        picked = picked[: max(calls_left, 1)]
    replies = ask([FIND_PROMPT.format(passage=passages[i], question=question) for _, i in picked])
    answer, tally = vote([(r, s) for r, (s, _) in zip(replies, picked, strict=False)])
    errors = sum(1 for r in replies if r.startswith("[error]"))
    note = f"find_answer: read {how}; votes {tally or '(none answered)'}" + (f"; {errors} sub-call(s) failed" if errors else "")
    return (answer if answer is not None else "NONE"), note


def count_matching(data: Any, description: str, ask: Ask, *, chunk_chars: int = CHUNK_CHARS,
                   calls_left: int | None = None, strict: bool = True,
                   max_chars: int | None = None) -> tuple[int, str]:
    """``(count, notice)``: records matching ``description``, by code when it can, else by the sub-model.

    ``strict=False`` (the description is the whole question): words that name no value
    (``orders``, ``placed``) are ignored when some field value was named, and the notice
    lists them; ``strict=True``: any such word sends the records to the sub-model.
    """
    _need_text("count_matching", description, "description")
    records, lines = as_records(data)
    flt, left = build_filter(description, records, strict=strict)
    parsed = sum(1 for r in records if r)
    if flt is not None and parsed >= 0.9 * max(1, len(records)):
        n = sum(1 for r in records if r and flt(r))
        return n, (f"count_matching: filtered {len(records):,} records by code: {flt.describe()} -> {n:,}"
                   + _ignored(left))
    chunks = _record_chunks(lines, chunk_chars, calls_left, max_chars)
    covered = _coverage(chunks, lines)
    replies = ask([COUNT_PROMPT.format(chunk=c, description=description) for c in chunks])
    total, bad = _add_numbers(replies)
    why = f"words not found as field values: {left[:5]}" if left else "records not parsed as fields"
    return int(total), (f"count_matching: {why}; the sub-model counted {len(chunks)} chunk(s) of records"
                        + (f"; {bad} chunk(s) gave no number" if bad else "") + covered + f" -> {int(total):,}")


def sum_matching(data: Any, field: str | None, description: str = "", ask: Ask | None = None, *,
                 chunk_chars: int = CHUNK_CHARS, calls_left: int | None = None,
                 strict: bool = True, max_chars: int | None = None) -> tuple[int | float, str]:
    """``(total, notice)``: ``field`` added up over the records matching ``description`` (all when empty).

    ``field=None``: the numeric field the description names (the first one it names).
    """
    if field is not None:
        _need_text("sum_matching", field, "field")
    if not isinstance(description, str):
        raise TypeError("sum_matching(data, field, description): description is a string (\"\" for all records).")
    records, lines = as_records(data)
    fields, _ = _field_index(records)
    name = fields.get(field.lower()) if field else numeric_field_named(description, records)
    if name is None and field:
        import difflib

        close = difflib.get_close_matches(field.lower(), list(fields), n=1, cutoff=0.75)
        name = fields[close[0]] if close else None
    field = field or name or "(a numeric field)"
    parsed = sum(1 for r in records if r)
    flt, left = (Filter({}, []), []) if not description.strip() else build_filter(description, records, strict=strict)
    if name is not None and flt is not None and parsed >= 0.9 * max(1, len(records)):
        total = 0.0
        n = 0
        for r in records:
            if r and flt(r):
                x = _to_number(r.get(name))
                if x is not None:
                    total += x
                    n += 1
        value = _number_out(total)
        return value, (f"sum_matching: added {name} over {n:,} records by code ({flt.describe()}) -> {value:,}"
                       + _ignored(left))
    if ask is None:
        raise ValueError("sum_matching needs the sub-model for this description")
    chunks = _record_chunks(lines, chunk_chars, calls_left, max_chars)
    covered = _coverage(chunks, lines)
    replies = ask([SUM_PROMPT.format(chunk=c, field=field, description=description or "every record")
                   for c in chunks])
    total, bad = _add_numbers(replies)
    why = (f"no field named {field!r} (fields: {sorted(fields.values())[:8]})" if name is None
           else f"words not found as field values: {left[:5]}" if left else "records not parsed as fields")
    value = _number_out(total)
    return value, (f"sum_matching: {why}; the sub-model added {len(chunks)} chunk(s)"
                   + (f"; {bad} chunk(s) gave no number" if bad else "") + covered + f" -> {value:,}")


COMBINES = ("concat", "sum", "majority", "list")


def map_chunks(data: Any, question: str, ask: Ask, *, combine: str = "concat", chunk_chars: int = CHUNK_CHARS,
               calls_left: int | None = None, max_chars: int | None = None) -> tuple[Any, str]:
    """``(combined, notice)``: ask ``question`` of every chunk, then concatenate, sum, vote or list the answers."""
    _need_text("map_chunks", question, "question")
    if combine not in COMBINES:
        raise ValueError(f"map_chunks: combine must be one of {', '.join(COMBINES)}, not {combine!r}.")
    text = render_text(data)
    chunks, size = chunks_within(text, chunk_chars, calls_left, max_chars)
    replies = ask([MAP_PROMPT.format(chunk=c, question=question) for c in chunks])
    read = sum(len(c) for c in chunks)
    note = f"map_chunks: asked {len(chunks)} chunk(s) of about {size:,} chars, combined by {combine}" + (
        f"; only the first {read / max(1, len(text)):.0%} of the data fit the sub-calls left" if read < 0.99 * len(text) else "")
    if combine == "list":
        return list(replies), note
    if combine == "sum":
        total, bad = _add_numbers(replies)
        return _number_out(total), note + (f"; {bad} gave no number" if bad else "")
    if combine == "majority":
        answer, tally = vote([(r, 1.0) for r in replies])
        return (answer if answer is not None else "NONE"), note + f"; votes {tally}"
    return "\n".join(r.strip() for r in replies if _usable(r)), note


def grep(data: Any, pattern: str, *, context_lines: int = 0, max_matches: int = 20, ignore_case: bool = True) -> str:
    """Matching lines as ``N: line`` (context lines as ``N- line``), after a ``K matches`` header."""
    _need_text("grep", pattern, "pattern")
    flags = re.I if ignore_case else 0
    try:
        rx = re.compile(pattern, flags)
    except re.error:
        rx = re.compile(re.escape(pattern), flags)
    lines = render_text(data).splitlines()
    hits = [i for i, ln in enumerate(lines) if rx.search(ln)]
    out = [f"{len(hits)} matching line(s)" + (f", first {max_matches} shown" if len(hits) > max_matches else "")]
    shown: set[int] = set()
    for i in hits[:max_matches]:
        lo, hi = max(0, i - context_lines), min(len(lines), i + context_lines + 1)
        if context_lines and shown and lo > max(shown) + 1:
            out.append("--")
        for j in range(lo, hi):
            if j not in shown:
                shown.add(j)
                out.append(f"{j + 1}{':' if j == i or j in hits else '-'} {lines[j]}")
    return "\n".join(out)


def _coverage(chunks: Sequence[str], lines: Sequence[str]) -> str:
    total = sum(len(x) + 1 for x in lines)
    read = sum(len(c) for c in chunks)
    return f"; only the first {read / max(1, total):.0%} of the records fit the sub-calls left" if read < 0.99 * total else ""


def _ignored(left: Sequence[str]) -> str:
    return f" (words taken as part of the question, not as conditions: {', '.join(left[:8])})" if left else ""


def _need_text(helper: str, value: Any, what: str) -> None:
    if not isinstance(value, str) or not value.strip():
        raise TypeError(f"{helper}: the {what} must be a non-empty string, got {value!r}.")


def chunks_within(text: str, chunk_chars: int, calls_left: int | None,
                  max_chars: int | None = None) -> tuple[list[str], int]:
    """Chunks of at least ``chunk_chars``, grown until the whole text takes no more than the calls left,
    but never past ``max_chars`` (what the sub-model can read): then only the first chunks are kept."""
    size = chunk_chars if max_chars is None else min(chunk_chars, max_chars)
    if calls_left is not None and calls_left > 0:
        size = max(size, -(-len(text) // calls_left))
    if max_chars is not None:
        size = min(size, max_chars)
    chunks = chunk_text(text, size)
    while calls_left is not None and calls_left > 0 and len(chunks) > calls_left:  # line ends rounded it up
        if max_chars is not None and size >= max_chars:
            return chunks[:calls_left], size  # the budget cannot cover it all: the caller says so
        size = int(size * 1.1) + 1 if max_chars is None else min(max_chars, int(size * 1.1) + 1)
        chunks = chunk_text(text, size)
    return chunks, size


def _record_chunks(lines: Sequence[str], chunk_chars: int, calls_left: int | None,
                   max_chars: int | None = None) -> list[str]:
    return chunks_within("\n".join(lines), chunk_chars, calls_left, max_chars)[0]


def _add_numbers(replies: Sequence[str]) -> tuple[float, int]:
    total, bad = 0.0, 0
    for r in replies:
        x = first_number(r) if not r.startswith("[error]") else None
        if x is None:
            bad += 1
        else:
            total += x
    return total, bad


# --- as REPL helpers ------------------------------------------------------------------------


def helpers_for(toolbox: Any) -> dict[str, Callable[..., tuple[Any, str | None]]]:
    """The strategies bound to one run's :class:`~nbmagic.rlm.tools.Toolbox`: its sub-model, budgets,
    records and events (``toolbox._batched``, ``.budget``, ``.sub_model``, ``.question``)."""

    def asker(name: str) -> Ask:
        return lambda prompts: toolbox._batched(prompts, name)

    def left() -> int | None:
        return toolbox.budget.calls_left

    def most() -> int | None:  # characters one sub-call can read: 3 a token, 512 tokens kept for the frame
        from nbmagic.llm.base import window_of

        window = window_of(toolbox.sub_model)
        return None if window is None else max(1000, (window - 512) * 3)

    def asked(text: str | None) -> str:  # None: the question the run was asked
        return toolbox.question if text is None else text

    def find_answer_(data: Any, question: str | None = None, top_k: int = 3) -> tuple[str, str]:
        return find_answer(data, asked(question), asker("find_answer"), top_k=top_k, calls_left=left(),
                           max_chars=most())

    def count_matching_(data: Any, description: str | None = None) -> tuple[int, str]:
        return count_matching(data, asked(description), asker("count_matching"), calls_left=left(),
                              strict=description is not None, max_chars=most())

    def sum_matching_(data: Any, field: str | None = None, description: str | None = None) -> tuple[int | float, str]:
        return sum_matching(data, field, asked(description), asker("sum_matching"), calls_left=left(),
                            strict=description is not None, max_chars=most())

    def map_chunks_(data: Any, question: str | None = None, combine: str = "concat",
                    chunk_chars: int = CHUNK_CHARS) -> tuple[Any, str]:
        return map_chunks(data, asked(question), asker("map_chunks"), combine=combine, chunk_chars=chunk_chars,
                          calls_left=left(), max_chars=most())

    def grep_(data: Any, pattern: str, context_lines: int = 0, max_matches: int = 20) -> tuple[str, None]:
        return grep(data, pattern, context_lines=context_lines, max_matches=max_matches), None

    out = {"find_answer": find_answer_, "count_matching": count_matching_, "sum_matching": sum_matching_,
           "map_chunks": map_chunks_, "grep": grep_}
    for name, fn in out.items():
        fn.__name__ = fn.__qualname__ = name
        fn.__doc__ = HELPER_DOCS[name]
    return out


#: one line per helper, for the root prompt and help() in the REPL
HELPER_DOCS = {
    "find_answer": "find_answer(data, question=None) -> str: the answer to a question whose answer is written "
                   "somewhere in the data (a code, a name, a date); reads only the best-matching passages.",
    "count_matching": "count_matching(data, description=None) -> int: how many records match the question "
                      "(or a description such as \"city Oslo and product lamp\" or \"qty > 10\").",
    "sum_matching": "sum_matching(data, field=None, description=None) -> number: the total of a numeric field "
                    "over the records matching the question (field: the one the question names, or say which).",
    "map_chunks": "map_chunks(data, question=None, combine=\"concat\") -> answer: ask the question of every chunk "
                  "of the data and combine the answers: \"concat\", \"sum\", \"majority\" or \"list\".",
    "grep": "grep(data, pattern, context_lines=0) -> str: the lines matching a regular expression, numbered, "
            "with context lines around them (print it).",
}


#: whole REPL turns for the root prompt. A small model copies a shape it has seen, so the examples hold no
#: question of their own (a 0.5B root copied an example's question into its code): a helper called with only
#: the data reads the run's question, and every line shown works as it is for any question.
WORKED_EXAMPLES = '''Examples of whole turns (call the helpers, never define them; with only `context`, a helper answers \
the question you were asked):

The answer is written somewhere in the data:
```python
answer = find_answer(context)
print(answer)
```
Records to count or add up:
```python
answer = count_matching(context)   # or: answer = sum_matching(context)
print(answer)
```
Once the REPL output shows the answer:
```python
submit(answer)
```
No helper fits: look at the data, then compute with code:
```python
rows = context if isinstance(context, list) else context.splitlines()
print(len(rows), rows[:3])
```

Submit a value your code computed (a variable), never a value you typed in.'''


def prompt_section() -> str:
    """The helpers, first and one per line, for the root's system prompt."""
    lines = "\n".join(f"- {HELPER_DOCS[n]}" for n in STRATEGY_NAMES)
    return ("One-line helpers (use these first: one call often answers the whole question; they use the "
            f"sub-model and count against its budget):\n{lines}")
