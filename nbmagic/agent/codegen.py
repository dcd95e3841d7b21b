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


# --- checks on a drafted cell ----------------------------------------------------------------


def has_statement(code: str) -> bool:
    """Does the cell *do* anything? Comments, ``pass``, ``...`` and bare strings do not.

    Small models often answer with the prompt's own placeholder (``# code for this
    step only``); such a cell "runs" without error but finishes nothing, so it
    must count as a failed attempt, not as a finished step.
    """
    try:
        tree = ast.parse(code)
    except SyntaxError:
        return bool(code.strip())  # let it run: the SyntaxError is feedback for the fix

    def idle(node: ast.stmt) -> bool:
        if isinstance(node, ast.Pass):
            return True
        return isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant) and (
            node.value.value is Ellipsis or isinstance(node.value.value, str))

    return any(not idle(node) for node in tree.body)


#: conventional aliases a notebook uses without thinking, and the import that defines each
STANDARD_IMPORTS: dict[str, str] = {
    "pd": "import pandas as pd",
    "np": "import numpy as np",
    "plt": "import matplotlib.pyplot as plt",
    "sns": "import seaborn as sns",
    "mpl": "import matplotlib as mpl",
    "sp": "import scipy as sp",
    "stats": "from scipy import stats",
    "px": "import plotly.express as px",
    "go": "import plotly.graph_objects as go",
    "tf": "import tensorflow as tf",
    "torch": "import torch",
    "math": "import math",
    "os": "import os",
    "re": "import re",
    "json": "import json",
    "datetime": "import datetime",
    "random": "import random",
    "statistics": "import statistics",
    "Path": "from pathlib import Path",
    "Counter": "from collections import Counter",
    "defaultdict": "from collections import defaultdict",
}


def missing_imports(code: str, defined: set[str] | frozenset[str] = frozenset()) -> list[str]:
    """Import lines for standard aliases the cell uses but neither imports nor finds defined.

    ``defined`` holds the names that already exist where the cell will run (the
    kernel's namespace). Only names from :data:`STANDARD_IMPORTS` are added: a
    guess at anything else would hide a real mistake.
    """
    try:
        tree = ast.parse(code)
    except SyntaxError:
        return []
    bound: set[str] = set()
    used: list[str] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Name):
            if isinstance(node.ctx, ast.Load):
                used.append(node.id)
            else:
                bound.add(node.id)
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            bound.update((a.asname or a.name).split(".")[0] for a in node.names)
        elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            bound.add(node.name)
        elif isinstance(node, ast.arg):
            bound.add(node.arg)
    lines: list[str] = []
    for name in dict.fromkeys(used):
        if name in STANDARD_IMPORTS and name not in bound and name not in defined:
            lines.append(STANDARD_IMPORTS[name])
    return lines


def add_missing_imports(code: str, defined: set[str] | frozenset[str] = frozenset()) -> tuple[str, list[str]]:
    """The cell with its missing standard imports put on top (visible to the user), and those lines."""
    lines = missing_imports(code, defined)
    if not lines:
        return code, []
    return "\n".join(lines) + "\n\n" + code, lines


#: import name -> the PyPI distribution that provides it, where the two differ
PIP_NAMES: dict[str, str] = {
    "sklearn": "scikit-learn", "cv2": "opencv-python", "PIL": "pillow", "yaml": "pyyaml",
    "bs4": "beautifulsoup4", "skimage": "scikit-image", "dateutil": "python-dateutil",
    "Bio": "biopython", "docx": "python-docx", "pptx": "python-pptx", "dotenv": "python-dotenv",
}

_PKG_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")


def pip_package(missing_module: str) -> str | None:
    """The package to ``pip install`` for a ``ModuleNotFoundError`` name (None if it is not a plain name)."""
    top = (missing_module or "").split(".")[0].strip()
    if not _PKG_NAME.match(top):
        return None
    return PIP_NAMES.get(top, top)


def same_code(a: str, b: str) -> bool:
    """Equal once comments, blank lines and spacing are ignored."""
    def norm(code: str) -> list[str]:
        return [" ".join(line.split("#", 1)[0].split()) for line in code.splitlines()
                if line.split("#", 1)[0].strip()]

    return norm(a) == norm(b)
