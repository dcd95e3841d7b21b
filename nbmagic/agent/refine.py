"""Revise the parts still to do after each step, when the plan came from a model.

Remote models are asked (``## Revise the plan``); local models get a cheap rule (a
remaining step that repeats a finished one is dropped). Parts read from the request
are not revised: they are the request's own words.
"""

from __future__ import annotations

import re
from typing import Any

from nbmagic.agent.codegen import parse_plan
from nbmagic.agent.parts import Part, part_kind
from nbmagic.agent.prompts import SYSTEM, refine_prompt
from nbmagic.agent.result import Step
from nbmagic.events import Notice, emit
from nbmagic.llm.base import ChatModel


def refine(run: Any, model: ChatModel, next_index: int) -> None:
    """Revise the steps still to do from what the finished ones showed (model plans only)."""
    a = run.agent
    mode = a.refine
    if mode == "off" or run.planner in ("none", "onecall", "parts") or a.dry_run:
        return
    if mode == "auto":
        mode = "rules" if model.backend in ("gguf", "hf") else "model"
    remaining = [s.title for s in run.steps[next_index:]]
    revised: list[str] | None
    if mode == "rules":
        revised = refine_by_rules(run.steps[:next_index], remaining)
    else:
        parts = {"done": "\n".join(run.observed[-4:])}

        def build(p: dict[str, str]) -> list[dict[str, str]]:
            return [{"role": "system", "content": SYSTEM},
                    {"role": "user", "content": refine_prompt(run.request, p["done"], remaining)}]

        messages, _ = run.budget.fit(build, parts, ("done",))
        reply = run.chat(model, messages, "planner", max_tokens=min(300, run.budget.reply_room(messages)))
        if re.search(r"^\s*0\s*[.)]", reply, re.M):
            revised = []
        else:
            revised = parse_plan(reply, max_steps=max(1, a.max_steps - next_index))
            if revised is None:
                return  # an unreadable revision keeps the plan
    if revised is None or revised == remaining:
        return
    run.trajectory.append({"type": "refine", "after_step": next_index, "mode": mode,
                            "before": remaining, "after": revised})
    emit(run.events, Notice("Plan revised after step "
                             f"{next_index}: " + ("nothing left to do" if not revised else
                                                  "; ".join(f"{next_index + k + 1}. {t}"
                                                            for k, t in enumerate(revised)))))
    run.steps[next_index:] = [Step(next_index + k, t, part=Part(t, t, part_kind(t)))
                               for k, t in enumerate(revised)]
    run.mark_answering()
    run.plan = [s.title for s in run.steps]


_WORDS = re.compile(r"[a-z]{3,}")
_STOP = frozenset({"the", "and", "for", "with", "into", "from", "data", "each", "show", "then", "them", "that"})


def refine_by_rules(done: list[Step], remaining: list[str]) -> list[str] | None:
    """The cheap revision small local models get: drop a remaining step that repeats a finished one
    (same key words, e.g. a second "load the CSV"), and a "fix"/"retry" step once its target ran."""
    finished = [set(_WORDS.findall(s.title.lower())) - _STOP for s in done if s.status in ("ok", "dry-run")]
    kept: list[str] = []
    for title in remaining:
        words = set(_WORDS.findall(title.lower())) - _STOP
        repeat = any(words and len(words & f) >= max(2, int(0.8 * len(words))) for f in finished)
        if not repeat:
            kept.append(title)
    return kept if kept != remaining else None
