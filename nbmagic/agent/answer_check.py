"""Checks on the closing answer: every number must come from the outputs, and it must restate one.

A small model that "remembers" a total it never computed is caught here and its
sentence replaced by the outputs themselves.
"""

from __future__ import annotations

import re

_NUMBER = re.compile(r"(?<![\w.])-?\d[\d,]*(?:\.\d+)?(?:[eE][-+]?\d+)?%?")


def _numbers(text: str) -> list[float]:
    out = []
    for raw in _NUMBER.findall(text):
        raw = raw.rstrip("%").replace(",", "")
        try:
            out.append(float(raw))
        except ValueError:
            continue
    return out


def invented_numbers(answer: str, observed: str) -> list[str]:
    """Numbers in ``answer`` that appear nowhere in ``observed`` (also not as a rounding of one).

    The closing answer may only restate what the cells printed; a small model that
    "remembers" a total it never computed is caught here and its sentence replaced.
    """
    seen = _numbers(observed)
    bad = []
    for raw in _NUMBER.findall(answer):
        try:
            value = float(raw.rstrip("%").replace(",", ""))
        except ValueError:
            continue
        if any(value == v or any(round(v, d) == value for d in range(4)) or
               (abs(v) >= 1000 and abs(value - v) <= 0.5) for v in seen):
            continue
        bad.append(raw)
    return bad


_FACT = re.compile(r"-?\d[\d,.]*|[A-Za-z_][\w-]{2,}")


def shares_a_fact(answer: str, observed: str) -> bool:
    """An answer must restate something the outputs showed (a number, a name), not only talk around it."""
    seen = {t.lower().rstrip(".,") for t in _FACT.findall(observed)}
    common = {"the", "and", "are", "was", "were", "with", "from", "for", "step", "output", "outputs", "this",
              "that", "is", "of", "by", "in", "total", "value", "values", "name", "dtype", "none"}
    return any(t.lower().rstrip(".,") in seen - common for t in _FACT.findall(answer))


def clean_answer(reply: str) -> str:
    """The model's answer as plain sentences (no thinking, headings or code)."""
    from nbmagic.agent.codegen import strip_thinking

    text = strip_thinking(reply)
    text = re.sub(r"^#+\s*answer[^\n]*\n", "", text, flags=re.I).strip()
    return text[:1200]

