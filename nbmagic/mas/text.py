"""Text mode: the RecursiveMAS recursion with text messages (Recursive-TextMAS).

Every agent gets its role prompt, the question and the messages of the stage
before it (in round 1 the first stage gets the question alone; later it gets the
last agent's message of the previous round as feedback). Intermediate messages
are capped at ``message_tokens``; the last agent of the last round answers with
up to ``max_new_tokens``. Agents of one stage run concurrently when their models
are remote (mixture's specialists); in-process models run one after another.
The deliberation pattern stops early once the reflector agrees.
"""

from __future__ import annotations

import re
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING

from nbmagic.events import RoundFinished, RoundStarted, TextDelta, ToolCalled
from nbmagic.mas.pytool import run_blocks

if TYPE_CHECKING:
    from nbmagic.mas.system import Bookkeeper, Member, RecursiveMAS

_AGREE = re.compile(r"VERDICT:\s*AGREE\b", re.IGNORECASE)


@dataclass(frozen=True)
class Message:
    """What one agent passed on."""

    agent: str
    role: str
    round: int
    content: str


def agrees(text: str) -> bool:
    """True when a reflector's message carries the agreement verdict."""
    return bool(_AGREE.search(text or ""))


def role_title(role: str) -> str:
    return role.replace("_", "-").title()


def compose(question: str, incoming: list[Message], task: str) -> str:
    """The user message of one agent turn."""
    parts = [f"Question:\n{question.strip()}"]
    for msg in incoming:
        parts.append(f"Message from the {role_title(msg.role)} ({msg.agent}, round {msg.round}):\n{msg.content.strip()}")
    parts.append(task)
    return "\n\n".join(parts)


def task_line(final: bool, message_tokens: int) -> str:
    if final:
        return "Now give the final answer to the question."
    return f"Write your message for the next agent: brief, at most about {message_tokens} tokens."


def run_text(mas: RecursiveMAS, question: str, book: Bookkeeper, limit: int) -> tuple[str, int]:
    """Run every round in text mode; return (answer, rounds run)."""
    plan, members, total = mas.plan, mas.members, mas.rounds
    feedback: list[Message] = []
    rounds_run = 0
    for r in range(1, total + 1):
        book.event(RoundStarted(r, total))
        incoming = feedback
        agreed = False
        for si, stage in enumerate(plan.stages):
            final = si == len(plan.stages) - 1 and r == total
            outs = _run_stage(mas, book, [members[i] for i in stage], question, incoming, r, final, limit)
            if mas.pattern == "deliberation" and members[stage[0]].role == "reflector" and r > 1 and agrees(outs[0].content):
                agreed = True
                break
            incoming = outs
        rounds_run = book.rounds_done = r
        book.event(RoundFinished(r, total))
        if agreed:  # the tool-caller's last answer stands
            break
        feedback = incoming
        book.partial_answer = feedback[-1].content
    return feedback[-1].content, rounds_run


def _run_stage(
    mas: RecursiveMAS,
    book: Bookkeeper,
    stage: list[Member],
    question: str,
    incoming: list[Message],
    round_: int,
    final: bool,
    limit: int,
) -> list[Message]:
    def one(m: Member) -> Message:
        return _run_agent(mas, book, m, question, incoming, round_, final, limit)

    if len(stage) > 1 and not any(m.local for m in stage):
        with ThreadPoolExecutor(max_workers=len(stage), thread_name_prefix="nbmagic-mas") as pool:
            return list(pool.map(one, stage))
    return [one(m) for m in stage]


def _run_agent(
    mas: RecursiveMAS,
    book: Bookkeeper,
    m: Member,
    question: str,
    incoming: list[Message],
    round_: int,
    final: bool,
    limit: int,
) -> Message:
    started = book.agent_started(m, round_)
    max_tokens = limit if final else mas.message_tokens
    messages = [
        {"role": "system", "content": m.system},
        {"role": "user", "content": compose(question, incoming, task_line(final, mas.message_tokens))},
    ]
    reply, tokens = _chat(mas, book, m, messages, max_tokens)
    extra, more = follow_tool_calls(mas, book, m, messages, reply, round_, final, max_tokens)
    content, tokens = reply + extra, tokens + more
    book.record(
        {
            "round": round_,
            "agent": m.name,
            "role": m.role,
            "sees": [f"{x.agent}@{x.round}" for x in incoming],
            "content": content,
            "tokens": tokens,
            "final": final,
        }
    )
    book.agent_finished(m, round_, started, tokens=tokens)
    return Message(m.name, m.role, round_, content)


def follow_tool_calls(
    mas: RecursiveMAS,
    book: Bookkeeper,
    m: Member,
    messages: list[dict[str, str]],
    reply: str,
    round_: int,
    final: bool,
    max_tokens: int,
) -> tuple[str, int]:
    """Let a tool-caller run the Python in its reply and continue with the output.

    Up to ``mas.max_tool_calls`` times: run the reply's python blocks, show the agent their
    output after the conversation so far (``messages`` then its reply), and take its next
    reply. Returns the text to append to the agent's message and the tokens it spent; both
    modes use this (latent mode's final agent decodes its reply first, then follows here).
    """
    extra, tokens, calls = "", 0, 0
    messages = list(messages)
    while m.role == "tool_caller" and calls < mas.max_tool_calls:
        run = run_blocks(reply, timeout=mas.tool_timeout)
        if run is None:
            break
        calls += 1
        book.event(ToolCalled(m.name, run.code, run.output, run.ok, run.seconds, round_))
        messages += [
            {"role": "assistant", "content": reply},
            {
                "role": "user",
                "content": f"Python output:\n```text\n{run.output}\n```\n"
                + ("Use it and state the final answer." if final else "Use it in your message."),
            },
        ]
        reply, more = _chat(mas, book, m, messages, max_tokens)
        tokens += more
        extra += f"\n\nPython output:\n```text\n{run.output}\n```\n\n{reply}"
    return extra, tokens


def _chat(
    mas: RecursiveMAS, book: Bookkeeper, m: Member, messages: list[dict[str, str]], max_tokens: int
) -> tuple[str, int]:
    result = m.model.chat(
        messages,
        temperature=mas.temperature,
        max_tokens=max_tokens,
        on_token=lambda piece: book.event(TextDelta(m.name, piece)),
    )
    book.model_call(m, result.usage.prompt_tokens, result.usage.completion_tokens, result.seconds)
    return result.text, result.usage.completion_tokens
