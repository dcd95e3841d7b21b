"""The root's first REPL turn as one helper call that the root only picks: ``first_turn``.

Measured with the evaluation (docs/rlm.md, issue 21): given the whole RLM system prompt, a
0.5B coder root copied a worked example's question into its code instead of asking its
own, and the embedded 135M root redefined the helpers. Neither ever ran the one line that
answers the question. So for such roots the engine takes the first turn's code out of
the model's hands:

1. a short prompt (the helper calls with the question forms each answers, a few example
   pairs, the question) asks the root which call answers the question; a GGUF root is held to the calls by a llama.cpp grammar
   (:data:`CHOICE_GRAMMAR`: it can only pick the helper, a ``combine`` for ``map_chunks``
   and a pattern for ``grep``), other roots' replies are parsed (:func:`parse_choice`);
2. the engine writes the turn's code, ``answer = <call>`` and ``print(answer)``, and runs it
   through the run's normal turn (events, budgets, trajectory; the code is the root's
   turn in the conversation, so the root continues from the REPL output: check, submit);
3. if the root never submits, the helper's computed value is the answer
   (:func:`conclude_with_helper`), flagged in the trajectory (``kind: "helper_fallback"``),
   ``result.notes`` and ``result.strategy["first_turn"]``; the final step is not asked.

A reply that names no call (a model without a grammar) leaves the turn to the root as
before, with a :class:`~nbmagic.events.Notice` saying so. ``first_turn``: ``helper``
always; ``free`` never; ``auto`` (default) for local roots (backend ``gguf`` or ``hf``).
The choice is made for a run that recurses, has sub-calls (the helpers) and a ``context``.
"""

from __future__ import annotations

import re
import time
from dataclasses import asdict, dataclass
from typing import Any

from nbmagic.events import Notice, emit
from nbmagic.llm.grammar import grammar_params
from nbmagic.rlm import prompts
from nbmagic.rlm.records import as_records, numeric_field_named
from nbmagic.rlm.strategies import COMBINES, STRATEGY_NAMES
from nbmagic.text import clip

#: the run these functions work on: an :class:`nbmagic.rlm.run.RLMRun` (named, not imported: the run imports this)
RLMRun = Any

#: roots that run on this machine: small, slow to prefill, and the ones that copy examples
LOCAL_BACKENDS = ("gguf", "hf")
#: the grammar's alternative for each helper (GBNF); ``root`` is the alternatives of the calls that fit
CALL_RULES = {
    "find_answer": '"find_answer(context)"',
    "count_matching": '"count_matching(context)"',
    "sum_matching": '"sum_matching(context)"',
    "map_chunks": '"map_chunks(context, combine=\\"" combine "\\")"',
    "grep": '"grep(context, \\"" pattern "\\")"',
}
RULES = '''
combine ::= "concat" | "sum" | "majority" | "list"
pattern ::= [^"\\\\\\n]{1,60}
'''


def choice_grammar(names: tuple[str, ...] = STRATEGY_NAMES) -> str:
    """The GBNF grammar of a reply that is one of the ``names`` calls."""
    return "root ::= " + " | ".join(CALL_RULES[n] for n in names) + RULES


CHOICE_GRAMMAR = choice_grammar()
#: tokens the choice may take (the longest: a grep with a 60-character pattern)
CHOICE_TOKENS = 48

_CALL = re.compile(r"\b(find_answer|count_matching|sum_matching|map_chunks|grep)\b")
_COMBINE = re.compile(r"""combine\s*=\s*["'](\w+)["']""")
_QUOTED = re.compile(r"""r?(["'])(.+?)(?<!\\)\1""")

#: said after the helper turn's output: the one line a small root needs next
NEXT_STEP = ("The helper's value is in `answer`. If it answers the question, reply with\n```python\nsubmit(answer)\n```\n"
             "otherwise write code that checks or computes it.")
FALLBACK_NOTE = ("answer from the first turn's helper call {call}: the root did not submit within its "
                 "{turns} turn(s), so the value that call computed is the answer")


@dataclass
class FirstTurn:
    """How a run's first turn goes (``mode``: ``helper`` or ``free``) and, once taken, what ran."""

    mode: str
    why: str
    requested: str = "auto"
    choice: str | None = None  # the root's reply to the choice prompt
    call: str | None = None  # the helper call the engine ran, e.g. "count_matching(context)"
    grammar: bool = False  # the choice was held to the calls by a grammar
    left_out: str = ""  # helpers the data and question rule out, and why (fitting_calls)
    has_value: bool = False  # the call ran and returned a value
    fallback: bool = False  # the run's answer is that value (the root never submitted)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class Planned:
    """A constrained first turn, ready to run: the reply shown for the root, the code the engine wrote."""

    reply: str
    code: str
    helper: str


def plan(run: RLMRun) -> FirstTurn:
    """Whether ``run``'s first turn is a helper choice, and why."""
    if run.choice.strategy != "repl":
        return FirstTurn("free", "the data is read directly: no REPL turn", run.rlm.settings.first_turn)
    return helper_plan(run)


def helper_plan(run: RLMRun) -> FirstTurn:
    """Whether a recursing ``run``'s first turn would be a helper choice, and why (the strategy
    choice asks this too: a local root that gets the helper turn recurses even when the data fits)."""
    settings = run.rlm.settings
    requested = settings.first_turn
    if requested == "free":
        return FirstTurn("free", "first_turn='free' was asked for", requested)
    if not settings.recursive:
        return FirstTurn("free", "no sub-calls in this run, so no helpers in the REPL", requested)
    if "context" not in (getattr(run, "bound", None) or {}):
        return FirstTurn("free", "no `context` to call a helper on", requested)
    if requested == "helper":
        return FirstTurn("helper", "first_turn='helper' was asked for", requested)
    backend = getattr(run.root, "backend", "")
    if backend not in LOCAL_BACKENDS:
        return FirstTurn("free", f"the root is a {backend} model, not a local one "
                                 "(first_turn='helper' would constrain it too)", requested)
    return FirstTurn("helper", f"the root is a local {backend} model: small local roots copy the examples' "
                               "shapes instead of calling a helper on their question, so it only picks the "
                               "helper and the engine writes the call", requested)


def announce(run: RLMRun, first: FirstTurn) -> None:
    """Say on the dashboard that the first turn is a constrained helper choice, and why."""
    if first.mode == "helper":
        emit(run.rlm.on_event, Notice(message=f"RLM first turn: a constrained helper choice ({first.why})."))


def parse_choice(reply: str) -> str | None:
    """The helper call a reply names (``count_matching(context)``), or ``None`` if it names none."""
    m = _CALL.search(reply or "")
    if m is None:
        return None
    name, rest = m.group(1), reply[m.end():]
    if name == "map_chunks":
        c = _COMBINE.search(rest)
        combine = c.group(1) if c and c.group(1) in COMBINES else "concat"
        return f"map_chunks(context, combine={combine!r})"
    if name == "grep":
        q = _QUOTED.search(rest.split("\n", 1)[0])
        if q is None or not q.group(2).strip():
            return None  # a grep needs its pattern
        return f"grep(context, {q.group(2)!r})"
    return f"{name}(context)"


def fitting_calls(data: Any, question: str) -> tuple[tuple[str, ...], str]:
    """The helpers that can answer ``question`` on ``data``, and why any is left out.

    ``sum_matching`` adds a number field the question names: on data that parses as records
    (fields) where the question names no number field it cannot be right (the 0.5B coder took it
    for "How many …? Answer with a number only.", and the sub-model then "added" chunks)."""
    try:
        records, _ = as_records(data)
    except Exception:  # data the helpers cannot read as records: they read it as text
        return STRATEGY_NAMES, ""
    parsed = sum(1 for r in records if r)
    if len(records) >= 2 and parsed >= 0.9 * len(records) and numeric_field_named(question, records) is None:
        return tuple(n for n in STRATEGY_NAMES if n != "sum_matching"), \
            "sum_matching left out: the records' number fields are not named in the question"
    return STRATEGY_NAMES, ""


def choose(run: RLMRun, first: FirstTurn) -> Planned | None:
    """Ask the root which call answers the question; ``None`` (and a notice) when the reply names none."""
    messages = prompts.choice_messages(run.question)
    names, left_out = fitting_calls(run.bound["context"], run.question)
    first.left_out = left_out
    extra = grammar_params(run.root, choice_grammar(names))
    first.grammar = bool(extra)
    res = run.root.chat(messages, temperature=run.rlm.settings.temperature, max_tokens=CHOICE_TOKENS, **extra)
    run._account(res.usage, res.seconds)
    first.choice = reply = res.text or ""
    call = parse_choice(reply)
    if call is None or call.split("(", 1)[0] not in names:
        first.mode = "free"
        first.why = (f"the root's helper choice named no helper call ({clip(reply.strip(), 80)!r}): it writes the turn"
                     if call is None else f"the root picked {call}, which does not fit ({left_out}): it writes the turn")
        emit(run.rlm.on_event, Notice(message=f"RLM first turn: {first.why}.", level="warning"))
        return None
    first.call = call
    code = f"answer = {call}\nprint(answer)"
    return Planned(reply=f"```python\n{code}\n```", code=code, helper=call.split("(", 1)[0])


def took(run: RLMRun, first: FirstTurn, planned: Planned, error: str | None, notes: list[str]) -> dict[str, Any]:
    """After the helper turn ran: keep its value (the fallback answer); the trajectory record's extra fields
    (``notes``: the turn's own, then one saying the turn was a constrained choice and why, for the viewer)."""
    last = run.toolbox.last_value
    if error is None and last is not None and last[0] == planned.helper:
        first.has_value = True
        run.first_value = last[1]
    how = "held to the calls by a grammar" if first.grammar else "its reply parsed for a call"
    said = (f"first turn: a constrained helper choice ({first.why}); the root replied {clip(first.choice or '', 80)!r} "
            f"({how}) and the engine wrote this code")
    return {"protocol": "helper_choice", "notes": [*notes, said],
            "first_turn": {"choice": first.choice, "call": first.call, "grammar": first.grammar, "why": first.why}}


def conclude_with_helper(run: RLMRun) -> dict[str, Any]:
    """Out of turns with no submit: the first turn's computed value is the answer, flagged as such."""
    first: FirstTurn = run.first
    first.fallback = True
    turns = run.rlm.settings.max_iterations
    note = FALLBACK_NOTE.format(call=first.call, turns=turns)
    value = run.first_value
    record = run._log({"iteration": turns + 1, "depth": run.depth, "kind": "helper_fallback", "response": "",
                       "code": "", "output": clip(str(value), 2000), "why": note, "notes": [note], "sub_calls": [],
                       "model_seconds": 0.0, "exec_seconds": 0.0, "root_tokens": run.last_prompt_tokens,
                       "submitted": False, "seconds": round(time.monotonic() - run.t0, 4)})
    emit(run.rlm.on_event, Notice(message=f"RLM {note}.", level="warning"))
    run._conclude(value, notes=[note])
    return record
