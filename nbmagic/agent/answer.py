"""The closing answer cell: written from the outputs, as an answer, covering every part.

In order of preference:

1. the request asked for an exact answer line and a cell printed it: that line;
2. the model's one to three sentences, when every number in them is in the outputs
   (:func:`~nbmagic.agent.answer_check.invented_numbers`), they restate an observed fact,
   and they do not copy the request (:func:`copies_request`);
3. otherwise the outputs themselves, one short entry per part.
"""

from __future__ import annotations

import re
from typing import Any

from nbmagic.agent.answer_check import clean_answer, invented_numbers, shares_a_fact
from nbmagic.agent.executor import strip_ansi
from nbmagic.agent.markdown import _ngrams
from nbmagic.agent.prompts import SYSTEM, answer_prompt
from nbmagic.agent.reflector import _format_regex
from nbmagic.agent.result import cells_module
from nbmagic.execution.figures import figure_pngs
from nbmagic.llm.vision import accepts_images, with_images


def copies_request(sentence: str, request: str) -> bool:
    """Does the answer repeat the request rather than answer it?

    A copy: ten words in a row of the request, or most of the answer's three-word runs taken
    from it ("The top 5 products by revenue are Widget, …" restates the question's words once,
    and answers it).
    """
    if _ngrams(sentence, 10) & _ngrams(request, 10):
        return True
    mine = _ngrams(sentence, 3)
    return bool(mine) and len(mine & _ngrams(request, 3)) / len(mine) >= 0.6


_SERIES = re.compile(r'series "([^"]+)" \((\w+)\): (\d+) points, first \(([^,]+), ([^)]+)\), last \(([^,]+), ([^)]+)\)')


_BARS = re.compile(r"(\d+ bars: [^\n]+)")


def figure_summary(described: str) -> str:
    """A figure's series in words, from its description (see :mod:`nbmagic.execution.figures`).

    ``series "revenue" (line): 12 points, first (2024-01, 34541), last (2024-12, 59696)`` becomes
    ``revenue (line, 12 points): 34541 at 2024-01 to 59696 at 2024-12 (figure above)``; a figure
    described less fully is just pointed to.
    """
    found = [f"{name} ({kind}, {n} points): {y0} at {x0} to {y1} at {x1}"
             for name, kind, n, x0, y0, x1, y1 in _SERIES.findall(described)]
    found += [m.group(1).strip() for m in _BARS.finditer(described)]
    return ("; ".join(found[:3]) + " (figure above)") if found else "(see the figure above)"


def from_outputs(observed: list[str]) -> str:
    """One short entry per finished part, from what its cell showed."""
    entries = []
    for entry in observed:
        head, _, out = entry.partition("\n")
        if "FAILED" in head:
            continue
        title = re.sub(r"^Step \d+ \((.*)\) output:?$", r"\1", head.strip())
        out = out.strip()
        if out == "[image/png figure]" or out.startswith("[figure]") or not out or out == "(no output)":
            out = figure_summary(out) if "figure" in out else "(no output)"
            entries.append(f"**{title}**: {out}")
        elif "\n" not in out and len(out) <= 160:
            entries.append(f"**{title}**: {out}")
        else:
            entries.append(f"**{title}**:\n\n```text\n{out[:800]}\n```")
    return "\n\n".join(entries)


def write_answer(run: Any, model: Any) -> None:
    """Deliver the ``### Answer`` cell for ``run`` (a :class:`~nbmagic.agent.loop.Run`)."""
    ok_steps = [s for s in run.steps if s.status == "ok" and s.fixed is None]
    if not ok_steps or not any("output:\n(no output)" not in o and "FAILED" not in o.split("\n", 1)[0]
                               for o in run.observed):
        return  # nothing the model computed was shown: no answer rather than one made up
    observed = "\n\n".join(run.observed)
    line = run.read.answer_line
    printed = None
    if line:
        pattern = _format_regex(line)
        printed = next((m.group(0).strip() for o in reversed(run.observed) for m in [pattern.search(o)] if m), None)
    reply, invented = "", []
    if printed:
        sentence, source = printed, "answer-line"
    else:
        parts = {"observed": observed}

        def build(p: dict[str, str]) -> list[dict[str, str]]:
            return [{"role": "system", "content": SYSTEM},
                    {"role": "user", "content": answer_prompt(run.request, p["observed"])}]

        messages, _ = run.budget.fit(build, parts, ("observed",))
        if accepts_images(model):  # a vision model also sees the plots (every model reads their descriptions)
            messages = with_images(messages, figure_pngs(c for s in ok_steps for c in s.cells))
        reply = strip_ansi(run.chat(model, messages, "answer", max_tokens=min(200, run.budget.reply_room(messages))))
        sentence = clean_answer(reply)
        invented = invented_numbers(sentence, observed + "\n" + run.request)
        source = "model"
        if (not sentence or invented or "```" in reply or not shares_a_fact(sentence, observed)
                or copies_request(sentence, run.request)):
            sentence, source = from_outputs(run.observed), "outputs"
    if not sentence:
        return
    run.answer = sentence
    run.trajectory.append({"type": "answer", "text": sentence, "source": source, "raw": reply,
                           "invented": invented})
    cell = cells_module().markdown_cell(f"### Answer\n\n{sentence}", metadata={"nbmagic": {
        "step": "answer", "model": run.model_label, "source": source}})
    run.deliver(cell, len(run.steps))
