"""Scripted models for the notebook agent, served by the loopback OpenAI server.

A responder reads the chat request the agent sent (its prompts carry fixed
headings, see :mod:`nbmagic.agent.prompts`) and answers like a competent model
doing a small sales analysis: load the CSV, top 5 products by revenue, a
monthly revenue plot. It reads the CSV's columns from the context the agent
put in the prompt, so it works on any sales-like file.

Variants (``make_responder(variant)``), applied to one step (``faulty``,
default the top-products step):

* ``works``  – correct code first time;
* ``fix``    – the first attempt raises a KeyError, the fix works;
* ``never``  – every attempt raises;
* ``loop``   – every attempt is ``while True: pass`` (only a timeout ends it);
* ``noplan`` – the plan is prose, not a list (the agent falls back to one step);
* ``nocode`` – the first answer for the step has no code block.

Use from a shell: ``python -m nbmagic.testing.openai_server --responder
nbmagic.testing.agent_scripts:respond`` (or ``:respond_fix`` …).
"""

from __future__ import annotations

import csv
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

from nbmagic.agent.prompts import (
    ANSWER_HEADING,
    CODE_HEADING,
    FIX_HEADING,
    PLAN_HEADING,
    REFINE_HEADING,
)

VARIANTS = ("works", "fix", "never", "loop", "noplan", "nocode")

PLAN = [
    "Load the sales data from {path} into a DataFrame",
    "Compute the top 5 products by revenue",
    "Plot the monthly revenue trend",
]


def _messages(request: dict[str, Any]) -> list[dict[str, str]]:
    """The request's messages with string contents (a vision request's parts folded to their text)."""
    from nbmagic.llm.vision import text_only

    return [{**m, "content": text_only(m["content"])} for m in request.get("messages", [])
            if isinstance(m.get("content"), (str, list))]


def _find(pattern: str, text: str, default: str = "") -> str:
    m = re.search(pattern, text, re.M | re.I)
    return m.group(1).strip() if m else default


class _Columns:
    """Which CSV columns play date, product, revenue (or units × price), read from the prompt."""

    def __init__(self, text: str) -> None:
        self.path = _find(r"^(\S[^\n]*?\.(?:csv|tsv)): CSV", text) or _find(r"([\w./-]+\.csv)", text, "sales.csv")
        cols = [c.strip() for c in _find(r"\.(?:csv|tsv): CSV[^\n]*?; columns: ([^\n]*)", text).split(",") if c.strip()]
        self.columns = cols
        # the DataFrame already in the kernel (the agent loads named tables itself), else the one step 1 makes
        self.frame = _find(r"Loaded DataFrames[^`\n]*`(\w+)`", text) or _find(r"into the DataFrame `(\w+)`", text, "sales")

        def pick(*words: str, default: str = "") -> str:
            for w in words:
                for c in cols:
                    if w in c.lower():
                        return c
            return default

        self.date = pick("date", "month", "day", "time", default="date")
        self.product = pick("product", "item", "sku", "name", default="product")
        self.revenue = pick("revenue", "sales", "amount", "total")
        self.units = pick("units", "quantity", "qty", default="units")
        self.price = pick("price", default="unit_price")

    @property
    def rev(self) -> str:
        return self.revenue or "revenue"


def plan_text(cols: _Columns) -> str:
    return "Here is the plan:\n\n" + "\n".join(f"{i + 1}. {s.format(path=cols.path)}" for i, s in enumerate(PLAN))


def _which(title: str) -> str:
    t = title.lower()
    if "load" in t or "read" in t:
        return "load"
    if "top" in t or "product" in t:
        return "top"
    if "month" in t or "trend" in t or "plot" in t:
        return "plot"
    return "other"


def good_code(kind: str, c: _Columns) -> str:
    if kind == "load":
        extra = "" if c.revenue else f'sales["revenue"] = sales["{c.units}"] * sales["{c.price}"]\n'
        return (
            "import pandas as pd\n\n"
            f'sales = pd.read_csv("{c.path}", parse_dates=["{c.date}"])\n'
            f"{extra}"
            'print(f"{len(sales)} rows, {sales.shape[1]} columns")\n'
            "sales.head()"
        )
    if kind == "top":
        return (
            f'top_products = {c.frame}.groupby("{c.product}")["{c.rev}"].sum().sort_values(ascending=False).head(5)\n'
            "top_products"
        )
    if kind == "plot":
        return (
            "import matplotlib.pyplot as plt\n\n"
            f'monthly = {c.frame}.set_index("{c.date}")["{c.rev}"].resample("MS").sum()\n'
            "fig, ax = plt.subplots(figsize=(7, 3.5))\n"
            'monthly.plot(ax=ax, marker="o")\n'
            'ax.set_title("Monthly revenue")\n'
            'ax.set_ylabel("revenue")\n'
            "plt.show()"
        )
    return 'print("step done")'


def bad_code(kind: str, c: _Columns, attempt: int) -> str:
    if kind == "top":
        return (
            f'top_products = {c.frame}.groupby("{c.product}")["Revenue_{attempt}"].sum().nlargest(5)\n'
            "top_products"
        )
    return f'raise ValueError("broken attempt {attempt}")'


LOOP_CODE = "total = 0\nwhile True:\n    total += 1"

EXPLAIN = {
    "load": "We read the CSV into a DataFrame `sales` and look at the first rows.",
    "top": "Group by product, add up revenue and keep the five largest totals.",
    "plot": "Resample revenue by month and draw the trend as a line chart.",
    "other": "A small step.",
}


def _cell(kind: str, code: str, note: str | None = None) -> str:
    return f"{note or EXPLAIN[kind]}\n\n```python\n{code}\n```\n"


def make_responder(variant: str = "works", *, faulty: str = "top") -> Callable[[dict[str, Any]], str]:
    """A responder for :class:`~nbmagic.testing.openai_server.OpenAICompatServer`."""
    if variant not in VARIANTS:
        raise ValueError(f"unknown variant {variant!r}; choose from {', '.join(VARIANTS)}")
    seen: dict[str, int] = {}

    def respond(request: dict[str, Any]) -> str:
        msgs = _messages(request)
        users = [m["content"] for m in msgs if m["role"] == "user"]
        last = users[-1] if users else ""
        everything = "\n".join(m["content"] for m in msgs)
        cols = _Columns(everything)
        if CODE_HEADING in everything:
            code_prompt = next((u for u in users if CODE_HEADING in u), "")
            title = _find(r"^Step \d+ of \d+: (.+)$", code_prompt)
            kind = _which(title)
            attempt = seen[title] = seen.get(title, 0) + 1
            fixing = FIX_HEADING in last
            if kind != faulty or variant in ("works", "noplan"):
                return _cell(kind, good_code(kind, cols))
            if variant == "fix":
                return _cell(kind, good_code(kind, cols), "Use the lowercase column name.") if fixing else _cell(
                    kind, bad_code(kind, cols, attempt))
            if variant == "never":
                return _cell(kind, bad_code(kind, cols, attempt), "Try another column name." if fixing else None)
            if variant == "loop":
                return _cell(kind, LOOP_CODE, "Count until done.")
            if variant == "nocode":
                if attempt == 1:
                    return "I would group the data by product and sum the revenue."
                return _cell(kind, good_code(kind, cols))
        if ANSWER_HEADING in last:
            return answer_text(last)
        if REFINE_HEADING in last:
            planned = re.search(r"Steps still planned:\n(.*?)\n\n", last, re.S)
            return planned.group(1) if planned else "0. nothing left"
        if PLAN_HEADING in everything:
            if variant == "noplan":
                return "Sure! I will analyse the data carefully and show you the results."
            return plan_text(cols)
        return "I can only help with notebook requests."

    return respond


def answer_text(prompt: str) -> str:
    """The closing answer a competent model gives: the top products it saw in the outputs."""
    top = re.search(r"top 5 products by revenue\) output:\n(?:\S+\n)?((?:.+?\s+[\d.]+\n?)+)", prompt, re.I)
    if top:
        names = [re.sub(r"\s+[\d.]+$", "", line).strip() for line in top.group(1).strip().splitlines()]
        return f"The top 5 products by revenue are {', '.join(names)}; {names[0]} leads."
    return "The analysis ran; see the outputs above."


respond = make_responder("works")
respond_fix = make_responder("fix")
respond_never = make_responder("never")
respond_loop = make_responder("loop")
respond_noplan = make_responder("noplan")
respond_nocode = make_responder("nocode")


PRODUCTS = ["Widget", "Gadget", "Doohickey", "Gizmo", "Thingamajig", "Sprocket", "Whatsit"]


def write_sales_csv(path: str | Path, months: int = 6) -> Path:
    """A small deterministic sales file: date, product, region, units, unit_price, revenue."""
    path = Path(path)
    rows = []
    for m in range(months):
        for i, product in enumerate(PRODUCTS):
            for r, region in enumerate(("North", "South")):
                units = 3 + (i * 7 + m * 5 + r * 3) % 17
                price = 5.0 + i * 2.5
                rows.append([f"2024-{m + 1:02d}-{1 + (i * 3 + r * 11) % 27:02d}", product, region, units, price,
                             round(units * price, 2)])
    with open(path, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["date", "product", "region", "units", "unit_price", "revenue"])
        w.writerows(rows)
    return path


def make_cells_responder(steps: list[tuple[str, str]]) -> Callable[[dict[str, Any]], str]:
    """A model that plans ``steps`` (``(title, code)`` pairs) and writes each step's code as given.

    For tests that need the agent to run particular cells (files written, deleted, renamed …);
    a refine request keeps the plan, an answer request gets a one-line answer.
    """
    codes = dict(steps)

    def respond(request: dict[str, Any]) -> str:
        msgs = _messages(request)
        users = [m["content"] for m in msgs if m["role"] == "user"]
        everything = "\n".join(m["content"] for m in msgs)
        if CODE_HEADING in everything:
            code_prompt = next((u for u in users if CODE_HEADING in u), "")
            title = _find(r"^Step \d+ of \d+: (.+)$", code_prompt)
            code = codes.get(title, steps[0][1] if len(steps) == 1 else "print('no such step')")
            return f"{title}.\n\n```python\n{code}\n```\n"
        last = users[-1] if users else ""
        if ANSWER_HEADING in last:
            return "The cells ran; see the outputs above."
        if REFINE_HEADING in last:
            planned = re.search(r"Steps still planned:\n(.*?)\n\n", last, re.S)
            return planned.group(1) if planned else "0. nothing left"
        if PLAN_HEADING in everything:
            return "Plan:\n\n" + "\n".join(f"{i + 1}. {title}" for i, (title, _) in enumerate(steps))
        return "I can only help with notebook requests."

    return respond
