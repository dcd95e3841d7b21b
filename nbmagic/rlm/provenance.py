"""Was the answer computed, or typed in? A check on where an RLM's final answer came from.

A small root that cannot find the answer may still ``submit("1234567890")``: code ran,
so the run looked computed. The rule here: an answer the model *wrote itself* (a literal
in the code that submitted it, or the prose of the forced final step) must appear in
something the run actually saw: a REPL output, a sub-call's reply, the question, or the
data. Only answers holding a digit (counts, sums, codes, dates) are judged: they are what a
small model makes up, and a number cannot be read from a text that does not hold it. An answer computed by code (``submit(n)`` where ``n`` came from the data) is never
flagged, whatever it is. Numbers are compared in their plain forms (``12,345`` =
``12345`` = ``12345.0``).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

#: contexts longer than this (rendered) are not searched; such an answer is not flagged
MAX_SEARCH_CHARS = 50_000_000

MADE_UP = (
    "not computed: the answer {answer!r} was typed by the model, and appears in no REPL output, sub-call "
    "reply or data it saw"
)


def _forms(answer: Any) -> list[str]:
    """The texts that count as the answer having been seen."""
    text = str(answer).strip().strip("`'\"").rstrip(".").strip()
    forms = {text}
    plain = text.replace(",", "").replace("_", "")
    if re.fullmatch(r"-?\d+(\.0+)?", plain):
        n = plain.split(".")[0]
        forms |= {n, f"{int(n):,}"}
    return [f for f in forms if f]


def _literal_in(code: str, answer: Any) -> bool:
    if isinstance(answer, bool) or answer is None:
        return False
    return any(re.search(rf"(?<![\w.]){re.escape(form)}(?![\w.])", code) for form in _forms(answer))


def made_up(answer: Any, trajectory: list[dict[str, Any]], contexts: Mapping[str, Any], question: str,
            *, final_step: bool) -> str | None:
    """A note when the answer is one the model wrote itself and nothing it saw contains; else ``None``."""
    if not isinstance(answer, str | int | float) or isinstance(answer, bool) or not any(c.isdigit() for c in str(answer)):
        return None  # only numbers and codes are judged: a word typed in cannot be told from a word read
    turns = [t for t in trajectory if t.get("kind") == "code"]
    typed = final_step or any(t.get("submitted") and _literal_in(t.get("code", ""), answer) for t in turns)
    if not typed:
        return None
    forms = _forms(answer)
    if final_step:  # prose: judge it by the numbers and codes it names
        forms = [f.rstrip(".,") for f in re.findall(r"[A-Za-z]*\d[\w,.-]*", str(answer))]
        forms += [f.replace(",", "") for f in forms if "," in f]
    seen = [question, *(t.get("output", "") for t in turns)]
    seen += [str(c.get("response", "")) for t in turns for c in t.get("sub_calls", [])]
    if any(f in s for s in seen for f in forms):
        return None
    from nbmagic.rlm.records import render_text

    for value in contexts.values():
        try:
            text = render_text(value, MAX_SEARCH_CHARS)
        except Exception:  # a context that cannot be read as text: cannot check, do not accuse
            return None
        if len(text) > MAX_SEARCH_CHARS or any(f in text for f in forms):
            return None
    return MADE_UP.format(answer=answer if len(str(answer)) <= 60 else str(answer)[:60] + "…")
