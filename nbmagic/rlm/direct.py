"""Read the data directly when it fits, or recurse: the ``strategy`` of an RLM run.

An RLM pays for its REPL: a system prompt with the helpers and examples, several
root turns, sub-calls. When the data and the question fit the root model's window
with room to answer, one plain call that reads everything can be cheaper and, for a
small root that cannot write the REPL loop, more accurate. ``strategy``:

``auto`` (default)
    ``direct`` when the data fits **and** the estimated cost of reading it directly
    is below the estimated cost of recursing; else ``repl``. A root whose first turn is
    a helper call (:mod:`nbmagic.rlm.first_turn`: local roots by default) recurses even
    when the data fits: measured on the 0.5B coder inside its window, the helper call was
    right 3/3 and reading directly 0/3, and the helper run took less time.
``direct``
    always one call that reads the data (cut to the window, with a warning, when it
    does not fit).
``repl``
    always the REPL loop.

The cost model counts prefill-token equivalents (on a local CPU, prefill speed is what
a run waits for; a decoded token costs about ``DECODE_WEIGHT`` prefilled ones)::

    direct = T_data + T_question + OVERHEAD + DECODE_WEIGHT * REPLY_GUESS
    repl   = sum_{t=1..TURNS} (T_prompt + GROWTH * (t - 1))       # root prompts, growing
             + DECODE_WEIGHT * COMPLETION * TURNS                   # root replies
             + min(T_data, SUB_READ)                                # what the helpers read

with ``T_prompt`` the run's real first root prompt (system prompt + question +
summaries, counted with the root's tokenizer). The data is rendered as text the way
the direct read shows it (:func:`nbmagic.rlm.strategies.render_text`: records as JSON
lines, DataFrames as CSV, folders file by file), so every context kind gets the same
choice from its rendered size. A run with no context recurses (there is nothing to
read; the REPL computes). The choice, its reason and both estimates go to a
:class:`~nbmagic.events.Notice` (the dashboard), the JSONL trajectory's metadata line
(``strategy``), ``RLMResult.strategy``, and a direct read's trajectory record (``kind: "direct"``).
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any

from nbmagic.events import Notice, RlmIteration, emit
from nbmagic.rlm import first_turn
from nbmagic.rlm.records import render_text

#: the run these functions work on: an :class:`nbmagic.rlm.run.RLMRun` (named, not imported: the run imports this)
RLMRun = Any

#: a decoded token costs about this many prefilled ones (llama.cpp on a CPU)
DECODE_WEIGHT = 4
#: tokens a direct reply is expected to take, and the most it may take
REPLY_GUESS = 32
DIRECT_REPLY_TOKENS = 256
#: tokens of the direct prompt's frame (instructions, separators, chat template)
OVERHEAD = 80
#: root turns a recursive run is expected to take (look, compute with a helper, submit)
TURNS = 3
#: prompt tokens each turn adds (reply + REPL output), and the tokens of one root reply
GROWTH = 400
COMPLETION = 150
#: tokens the helpers' sub-calls are expected to read (a few passages or chunks)
SUB_READ = 2000
#: at most this many characters per token: a text longer than window * this cannot fit
MAX_CHARS_PER_TOKEN = 8

DIRECT_SYSTEM = "You answer questions about the data the user gives you. Read it carefully and answer exactly."
DIRECT_USER = "{data}\n\n---\nQuestion: {question}\n{form}"


@dataclass(frozen=True)
class Choice:
    """What a run does and why (``costs`` in prefill-token equivalents, ``None`` where not estimated)."""

    strategy: str  # "direct" | "repl"
    why: str
    requested: str = "auto"
    data_tokens: int | None = None
    window: int | None = None
    direct_cost: int | None = None
    repl_cost: int | None = None
    fits: bool | None = None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def data_text(contexts: Mapping[str, Any], limit: int | None = None) -> str:
    """The run's contexts as one text; several get a ``=== name ===`` line each (aliases once)."""
    seen: list[Any] = []
    parts: list[tuple[str, str]] = []
    for name, value in contexts.items():
        if any(value is s for s in seen):
            continue
        if name == "context" and isinstance(value, Mapping) and len(contexts) > 1 and all(
            k in contexts for k in value
        ):
            continue  # the dict of the named contexts: each is rendered on its own
        seen.append(value)
        parts.append((name, render_text(value, limit)))
    if len(parts) == 1:
        return parts[0][1]
    return "\n\n".join(f"=== {name} ===\n{text}" for name, text in parts)


def choose(run: RLMRun) -> tuple[Choice, str | None]:
    """The strategy for ``run`` and, when it reads directly, the text it reads."""
    requested = run.rlm.settings.strategy
    if requested == "repl":
        return Choice("repl", "strategy='repl' was asked for", requested), None
    contexts = getattr(run, "bound", None) or run.contexts
    if not contexts and requested == "auto":
        return Choice("repl", "no context to read: the REPL computes the answer", requested), None
    root = run.root
    window = run.window()
    limit = window * MAX_CHARS_PER_TOKEN if window else None
    text = data_text(contexts, limit)
    if window is None:
        if requested == "direct":
            return Choice("direct", "strategy='direct' was asked for (the root's window is unknown)", requested), text
        return Choice("repl", "the root model's window is unknown (pass context_window= to let it read directly)",
                      requested), None
    reply = run.rlm.settings.root_max_tokens or DIRECT_REPLY_TOKENS
    q_tokens = root.count_tokens(run.question)
    too_long = limit is not None and len(text) > limit
    data_tokens = len(text) // 4 if too_long else root.count_tokens(text)
    need = data_tokens + q_tokens + OVERHEAD
    fits = not too_long and need + reply <= window
    direct_cost = need + DECODE_WEIGHT * REPLY_GUESS
    repl_cost = repl_estimate(run, data_tokens)
    base = dict(requested=requested, data_tokens=data_tokens, window=window, direct_cost=direct_cost,
                repl_cost=repl_cost, fits=fits)
    size = f"{'over ' if too_long else ''}{data_tokens:,} tokens of data + question in a {window:,}-token window"
    if requested == "direct":
        why = "strategy='direct' was asked for" + ("" if fits else f" ({size}: cut to fit)")
        return Choice("direct", why, **base), text
    if not fits:
        return Choice("repl", f"the data does not fit the root's window ({size}, {reply} kept for the answer)",
                      **base), None
    if requested == "auto" and first_turn.helper_plan(run).mode == "helper":
        return Choice("repl", f"the data fits ({size}), but the root gets the helper first turn: measured on the "
                              "0.5B coder inside its window, the helper call answered 3/3 where reading the data "
                              "directly answered 0/3, in less time (docs/rlm.md, run D)", **base), None
    if direct_cost > repl_cost:
        return Choice("repl", f"the data fits ({size}) but reading it (~{direct_cost:,} token-equivalents) costs "
                              f"more than recursing (~{repl_cost:,})", **base), None
    return Choice("direct", f"the data fits ({size}) and reading it (~{direct_cost:,} token-equivalents) costs "
                            f"less than recursing (~{repl_cost:,})", **base), text


def repl_estimate(run: RLMRun, data_tokens: int) -> int:
    """The cost model's ``repl`` line, with the run's real first prompt."""
    prompt = sum(run.root.count_tokens(m["content"]) for m in run.messages)
    roots = sum(prompt + GROWTH * t for t in range(TURNS))
    return roots + DECODE_WEIGHT * COMPLETION * TURNS + min(data_tokens, SUB_READ)


def announce(run: RLMRun, choice: Choice) -> None:
    """Say which strategy runs and why on the dashboard (the JSONL metadata and ``result.strategy`` hold it too)."""
    emit(run.rlm.on_event, Notice(message=f"RLM strategy: {choice.strategy} ({choice.why})."))


def _unfenced(text: str) -> str:
    """A reply without the code fence a model may wrap it in."""
    import re

    text = text.strip()
    m = re.fullmatch(r"```[A-Za-z0-9_+-]*\s*\n?(.*?)\n?```", text, re.S)
    return m.group(1).strip() if m else text


def read(run: RLMRun, text: str) -> dict[str, Any]:
    """The direct path: one root call that reads the data; the run concludes with its answer."""
    from nbmagic.rlm.compaction import fit_to_window
    from nbmagic.rlm.tools import check_schema

    rlm = run.rlm
    reply_tokens = rlm.settings.root_max_tokens or DIRECT_REPLY_TOKENS
    window = run.window()
    if run.choice.fits is False:  # strategy='direct' on data too long: head and tail, as a long prompt
        emit(rlm.on_event, Notice(message="RLM direct read: the data does not fit the window; its middle is cut "
                                  "(strategy='auto' would recurse).", level="warning"))
    form = ("Reply with only a JSON value matching this JSON schema:\n" + str(dict(run.schema))
            if run.schema else "Reply with the answer only.")
    messages: list[dict[str, Any]] = [
        {"role": "system", "content": DIRECT_SYSTEM},
        {"role": "user", "content": DIRECT_USER.format(data=text, question=run.question, form=form)},
    ]
    problems: list[str] = []
    answer: Any = None
    record: dict[str, Any] = {}
    for attempt in (1, 2):
        run._check_budget()
        messages = fit_to_window(run.root, messages, window, reply_tokens)
        m0 = time.monotonic()
        res = run.root.chat(messages, temperature=rlm.settings.temperature, max_tokens=reply_tokens)
        run._account(res.usage, res.seconds)
        reply = res.text or ""
        answer = _unfenced(reply)
        if run.schema is not None:
            answer, problems = check_schema(answer, run.schema)
        run.iterations = attempt
        seconds = time.monotonic() - m0
        record = run._log({"iteration": attempt, "depth": run.depth, "kind": "direct", "why": run.choice.why,
                           "response": reply,
                           "code": "", "output": "", "sub_calls": [], "problems": problems,
                           "data_chars": len(text), "model_seconds": round(seconds, 4), "exec_seconds": 0.0,
                           "root_tokens": run.last_prompt_tokens, "submitted": False})
        emit(rlm.on_event, RlmIteration(i=attempt, code="", output=f"(read {len(text):,} characters directly)",
                                        seconds=seconds, depth=run.depth))
        if not problems:
            run.worked = True  # read from the data itself, not guessed from a summary
            run._conclude(answer)
            return record
        messages += [{"role": "assistant", "content": reply},
                     {"role": "user", "content": "That does not match the schema:\n" + "\n".join(problems)
                      + "\nReply with only a corrected JSON value."}]
    from nbmagic.errors import MalformedOutputError

    raise MalformedOutputError("The RLM's direct answer did not match the schema after a retry: "
                               + "; ".join(problems), partial=run._result(False, answer))
