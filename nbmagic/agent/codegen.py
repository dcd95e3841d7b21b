"""Turn model text into a plan and into cells.

Models wrap answers in many ways: numbered or bulleted lists, ``Step 1:``
prefixes, bold markers, ``<think>`` blocks, fences tagged ``python``/``py``/
nothing, unterminated fences when the token budget ran out, or bare code.
Parsing lives here, apart from the agent loop, so each shape has a test.
"""

from __future__ import annotations

import ast
import re
from dataclasses import dataclass

from nbmagic.errors import MalformedOutputError

_THINK = re.compile(r"<think>.*?(</think>|$)", re.S | re.I)
_NUMBERED = re.compile(r"^\s*(?:#{1,6}\s*)?(?:\*\*)?(?:step\s*)?(\d{1,2})\s*[.):\-]\s*(.+)$", re.I)
_BULLET = re.compile(r"^\s*[-*•]\s+(.+)$")
_FENCE = re.compile(r"^[ \t]*```[ \t]*([\w+-]*)[^\n]*\n(.*?)(?:^[ \t]*```[ \t]*$|\Z)", re.S | re.M)
_PY_LANGS = {"", "python", "py", "python3", "ipython", "ipython3", "pycon"}
_LABEL = re.compile(r"^\s*(?:\*\*)?(markdown|explanation|code|python)(?:\*\*)?\s*:\s*", re.I)


def strip_thinking(text: str) -> str:
    """Drop ``<think>…</think>`` reasoning some local models emit before answering."""
    return _THINK.sub("", text or "").strip()


def _clean_step(text: str) -> str:
    text = re.sub(r"\*\*(.+?)\*\*", r"\1", text.strip())
    text = text.strip("*").strip()
    text = re.sub(r"`([^`]+)`", r"\1", text)
    return text.rstrip(" :").strip()


def parse_plan(text: str, max_steps: int = 8) -> list[str] | None:
    """Steps from a numbered (preferred) or bulleted list; ``None`` when there is no list.

    Numbered items win over bullets so nested sub-bullets are not taken as steps.
    Lines outside the list (preambles, closing remarks) are ignored.
    """
    body = strip_thinking(text)
    body = re.sub(r"```.*?(```|$)", "", body, flags=re.S)  # code has no business in a plan
    numbered: list[str] = []
    bullets: list[str] = []
    for line in body.splitlines():
        if m := _NUMBERED.match(line):
            step = _clean_step(m.group(2))
            if step:
                numbered.append(step)
        elif (m := _BULLET.match(line)) and not line.startswith((" ", "\t")):
            step = _clean_step(m.group(1))
            if step:
                bullets.append(step)
    steps = numbered or bullets
    # a single "list item" that is really prose is not a plan
    if not steps:
        return None
    seen: set[str] = set()
    unique = [s for s in steps if not (s.lower() in seen or seen.add(s.lower()))]
    return unique[:max_steps]


@dataclass(frozen=True)
class CellDraft:
    """One step's answer: the explanation and the code to run."""

    markdown: str
    code: str


def parse_cell(text: str) -> CellDraft:
    """Markdown + one python block. Several python blocks are joined in order.

    Raises :class:`MalformedOutputError` when no code can be found; the agent
    feeds that back to the model as a failed attempt.
    """
    body = strip_thinking(text)
    blocks = [(m.group(1).lower(), m.group(2), m.start(), m.end()) for m in _FENCE.finditer(body)]
    py = [b for b in blocks if b[0] in _PY_LANGS and b[1].strip()]
    if py:
        code = "\n\n".join(b[1].strip("\n") for b in py).strip("\n")
        prose = body[: py[0][2]] + "\n" + body[py[-1][3] :]
        return CellDraft(_clean_markdown(prose), _dedent_code(code))
    if not blocks and _looks_like_code(body):
        return CellDraft("", _dedent_code(body))
    raise MalformedOutputError(
        "The model's answer had no ```python code block; asked it again."
    )


def _clean_markdown(text: str) -> str:
    lines = [_LABEL.sub("", line) for line in text.strip().splitlines()]
    return re.sub(r"\n{3,}", "\n\n", "\n".join(lines)).strip()


def _dedent_code(code: str) -> str:
    import textwrap

    return textwrap.dedent(code).strip("\n") + ""


def _looks_like_code(text: str) -> bool:
    """Bare code without fences: it must parse and do something (not a prose sentence)."""
    if not text.strip():
        return False
    try:
        tree = ast.parse(text)
    except SyntaxError:
        return False
    return any(not isinstance(node, ast.Expr) or not isinstance(getattr(node, "value", None), ast.Name)
               for node in tree.body) and ("\n" in text.strip() or "(" in text or "=" in text)
