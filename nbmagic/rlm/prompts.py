"""The words the root model reads: instructions, the first message, turn feedback.

Kept apart from the loop so they can be read (and tuned) in one place. The
system prompt says the context is *not* in the prompt, lists the helpers and
the budgets, and asks for ```python blocks; every later message is the REPL's
(truncated) output plus what is left of the budget.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

#: A line every root system prompt starts with (scripted test models look for it).
ROOT_MARKER = "You are the root model of a Recursive Language Model (RLM)."


def system_prompt(
    *,
    max_iterations: int,
    max_llm_calls: int | None,
    max_output_chars: int,
    max_concurrency: int,
    depth: int,
    max_depth: int,
    schema: Mapping[str, Any] | None,
    turn_timeout: float | None,
    recursive: bool = True,
    tools: Sequence[str] = (),
    native: bool = False,
    subagents: tuple[int, int, bool] | None = None,
) -> str:
    calls = "unlimited" if max_llm_calls is None else str(max_llm_calls)
    child = (
        "rlm_query(prompt, context=None) -> str: hand a sub-problem and its data to a child RLM "
        "(it gets its own REPL with `context` bound); use it for sub-problems that need code over data."
        if depth + 1 <= max_depth
        else "rlm_query(prompt, context=None) -> str: at this depth the same as llm_query(prompt + context)."
    )
    answer_form = (
        "submit(answer) must receive a value matching this JSON schema (a dict/list, or a JSON string):\n"
        + json.dumps(dict(schema), indent=1)
        if schema
        else "submit(answer) takes any value: a string, a number, a list, a dict."
    )
    limit = f" Each turn may run at most {turn_timeout:g} s." if turn_timeout else ""
    call = (
        "\nYou can also run code by calling the run_python_code tool with the code as its argument; "
        "it runs in the same REPL, and its output comes back as the tool's result."
        if native
        else ""
    )
    forks = ""
    if subagents is not None:
        levels, most, parallel = subagents
        forks = (
            "\n- spawn_agents(tasks: list[str]) -> list[dict]: hand up to "
            f"{most} independent sub-tasks to sub-agents at once ({'in parallel' if parallel else 'one after another'}); "
            "each works in a copy (fork) of this REPL with all your variables and returns a dict with id, task, "
            "ok, answer, error and changed (the variables it created or changed: name -> type). Nothing they do "
            "reaches this REPL until you call adopt(id) (merges that sub-agent's changed variables here); "
            "discard(id) drops a fork."
            if levels > 0
            else "\n- spawn_agents, adopt, discard: not available at this depth (do the work yourself)."
        )
    user_tools = "".join(f"\n- {t}" for t in tools)
    if tools:
        user_tools = "\nTools the user gave you (plain functions in the REPL; call them from code):" + user_tools
    intro = f"""{ROOT_MARKER}
You answer a question about data you cannot see directly. The data (the context) is held in \
variables of a persistent Python REPL; you see only a summary of it. Explore it by writing Python: \
the REPL runs your code and shows you what it prints. Output longer than {max_output_chars:,} \
characters is cut in the middle, so print summaries, counts and small slices, never whole contexts.

Reply with your reasoning and one or more ```python code blocks. All blocks of a reply run in order; \
variables, imports and functions persist between turns. The value of a final bare expression is shown.{call}
"""
    if not recursive:
        return f"""{intro}
There are no sub-models in this run: compute the answer with code alone.
Helper in the REPL (it cannot be reassigned):
- submit(answer): give the final answer; the run ends after this turn. {answer_form}{forks}{user_tools}

Budget: {max_iterations} turns.{limit}
Plan: look at the data's shape, compute exactly with code (counting, searching, parsing), check \
your result, then submit()."""
    from nbmagic.rlm.strategies import WORKED_EXAMPLES, prompt_section

    return f"""{intro}
{prompt_section()}

Other helpers in the REPL (none of them can be reassigned):
- llm_query(prompt: str) -> str: ask a sub-model (it reads about 100k characters well); use it for \
meaning-level work on slices of the data.
- llm_query_batched(prompts: list[str]) -> list[str]: many prompts at once, up to {max_concurrency} \
concurrently; answers come back in order; a failed one is a string starting with "[error]".
- {child}
- submit(answer): give the final answer; the run ends after this turn. {answer_form}{forks}{user_tools}

Budget: {max_iterations} turns; {calls} sub-calls in all (llm_query, each prompt of a batch, \
rlm_query).{limit} When a budget is spent, helpers return "[error] …" strings instead of answers.
Plan: look at the data's shape, compute exactly with code where you can (counting, searching, \
parsing), use sub-calls for what needs reading comprehension, check your result, then submit().

{WORKED_EXAMPLES}"""


#: the exact line a helper call on the asked question takes (the helpers read the run's question by default)
HELPER_HINT = (
    "A helper called with only the data answers the question above; for this question the call is one of:\n"
    "```python\nanswer = find_answer(context)   # or count_matching(context), sum_matching(context), "
    "map_chunks(context, combine=\"sum\")\nprint(answer)\n```"
)


def first_message(question: str, context_summary: str, earlier: Sequence[tuple[str, str]] = (),
                  *, hint: bool = False) -> str:
    """The question and the context summaries; in a continued session, the earlier questions too.

    ``hint``: the helpers are in the REPL and the data is ``context``: show the call line that
    answers this very question (a small root otherwise copies an example's question)."""
    before = ""
    if earlier:
        lines = "".join(f"\n- Q: {q}\n  A: {a}" for q, a in earlier)
        before = (
            "\n\nThis REPL continues an earlier session: the variables, imports and functions you made "
            f"then are still defined. Earlier questions and answers:{lines}"
        )
    return (
        f"Question: {question}\n\n"
        f"Variables in the REPL (summaries only; the data itself is not in this prompt):\n{context_summary}{before}\n\n"
        + (f"{HELPER_HINT}\n\n" if hint else "")
        + "Start by writing Python code."
    )


def turn_feedback(
    i: int,
    max_iterations: int,
    output: str,
    notes: list[str],
    calls_left: int | None,
) -> str:
    body = output if output.strip() else "(no output: print what you want to see)"
    extra = "".join(f"\n{n}" for n in notes)
    budget = "" if calls_left is None else f" Sub-calls left: {calls_left}."
    return (
        f"REPL output of turn {i}/{max_iterations}:\n```\n{body.rstrip()}\n```{extra}\n"
        f"Turns left: {max_iterations - i}.{budget} Continue, or call submit(answer) when sure."
    )


#: the first line of the system prompt of a first turn's helper choice (scripted test models look for it)
CHOICE_MARKER = "You pick the one helper call that answers a question about data."
#: the calls, with the question forms each answers (a 0.5B coder picked find_answer for every question
#: until the forms were named), then example pairs. The reply is held to the calls (a grammar) or only
#: parsed for a call, so an example's question cannot be copied into the run's code.
CHOICE_SYSTEM = CHOICE_MARKER + """ Reply with the call only.
- count_matching(context): a count of records. Questions like "How many ...?", "Wie viele ...?", "Combien de ...?"
- sum_matching(context): a total of a number field. Questions like "What is the total ...?", "the sum of ..."
- find_answer(context): one fact written in the data. Questions like "What is the code / name / date of ...?", \
"Who ...?", "When ...?"
- map_chunks(context, combine="majority"): what most parts of the data say (combine: "concat", "sum", \
"majority" or "list")
- grep(context, "word"): the lines that hold a word."""
CHOICE_SHOTS = (
    ("How many orders have status shipped and country Peru?", "count_matching(context)"),
    ("What is the phone number of the hotel in Rome?", "find_answer(context)"),
    ("What is the total price of the refunds in May?", "sum_matching(context)"),
    ("How many users live in Lyon?", "count_matching(context)"),
    ("Which topic do most of the reviews mention?", 'map_chunks(context, combine="majority")'),
    ("Wann wurde der Vertrag mit Firma Keller unterschrieben?", "find_answer(context)"),
    ("Wie viele Tickets haben Priorität hoch?", "count_matching(context)"),
)


def choice_messages(question: str) -> list[dict[str, str]]:
    """The short prompt of a constrained first turn: the root only picks a call. It is the same for
    every run up to the last message, so a local model's prompt cache makes it cheap."""
    messages = [{"role": "system", "content": CHOICE_SYSTEM}]
    for q, call in CHOICE_SHOTS:
        messages += [{"role": "user", "content": f"Question: {q}"}, {"role": "assistant", "content": call}]
    return [*messages, {"role": "user", "content": f"Question: {question}"}]


NO_CODE = (
    "I found no ```python code block in your reply, so nothing ran. Reply with Python code in a "
    "```python block; to give the final answer, run submit(answer) inside one."
)

EMPTY_REPLY = "Your reply was empty. Reply with Python code in a ```python block."


def final_request(max_iterations: int, schema: Mapping[str, Any] | None) -> str:
    form = (
        "Reply with only a JSON value that matches this JSON schema, no code:\n"
        + json.dumps(dict(schema), indent=1)
        if schema
        else "Reply with the final answer only, as plain text, no code."
    )
    return (
        f"You have used all {max_iterations} turns, so no more code will run. Based on everything "
        f"above, give your best final answer to the question now. {form}"
    )


COMPACT_REQUEST = (
    "The conversation is getting too long for your context window, so the older turns will be "
    "replaced by your summary. Write that summary now, no code: what you learned about the data, "
    "which variables hold intermediate results (by name), what is done and what is left to do. "
    "Be specific (numbers, names); the REPL and its variables stay as they are."
)


def after_compaction(dropped_turns: int, variables: str) -> str:
    """The user message that follows the summary of the compacted turns."""
    return (
        f"(Earlier turns, {dropped_turns} messages, were replaced by the summary above.) "
        f"Variables now in the REPL: {variables or '(none listed)'}. Continue from there."
    )


def subagent_task(task: str, agent_id: int, variables: str) -> str:
    """The question a sub-agent gets: its task, and that it works on a fork of the root's REPL."""
    return (
        f"{task}\n\n(You are sub-agent {agent_id}, working in a fork of the root's REPL: every variable, "
        f"function and import it made is defined here: {variables or '(none listed)'}. What you change stays "
        "in this fork unless the root adopts it. Submit your answer to the task.)"
    )
