"""Text mode: the RecursiveMAS recursion with text messages (Recursive-TextMAS).

Every agent gets its role prompt, the question and the messages of the stage
before it (in round 1 the first stage gets the question alone; later it gets the
last agent's message of the previous round as feedback). Intermediate messages
are capped at ``message_tokens``; the last agent of the last round answers with
up to ``max_new_tokens``. Agents of one stage run concurrently when their models
are remote (mixture's specialists); in-process models run one after another.
The deliberation pattern stops early once the reflector agrees.

Ctrl-C while concurrent calls are in flight returns at once, as it does with one call:
the run is cancelled (the workers stop streaming at their next token, their events are
dropped) and nobody waits for the replies still on their way.
"""

from __future__ import annotations

import re
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING

from nbmagic.events import RoundFinished, RoundStarted, TextDelta, ToolCalled
from nbmagic.mas.deliberation import Done, Judgement, Move, Refine, Run, deliberate
from nbmagic.mas.pytool import ToolRun, program, run_python
from nbmagic.mas.roles import role_title

if TYPE_CHECKING:
    from nbmagic.mas.team import Bookkeeper, Member, Team

__all__ = ["Message", "agrees", "compose", "follow_tool_calls", "role_title", "run_text", "task_line"]

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


def run_text(team: Team, question: str, book: Bookkeeper, limit: int) -> tuple[str, int]:
    """Run every round in text mode; return (answer, rounds run)."""
    plan, members, total = team.plan, team.members, team.rounds
    feedback: list[Message] = []
    rounds_run = 0
    for r in range(1, total + 1):
        book.event(RoundStarted(r, total))
        incoming = feedback
        agreed = False
        for si, stage in enumerate(plan.stages):
            final = si == len(plan.stages) - 1 and r == total
            outs = _run_stage(team, book, [members[i] for i in stage], question, incoming, r, final, limit)
            if team.pattern == "deliberation" and members[stage[0]].role == "reflector" and r > 1 and agrees(outs[0].content):
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
    team: Team,
    book: Bookkeeper,
    stage: list[Member],
    question: str,
    incoming: list[Message],
    round_: int,
    final: bool,
    limit: int,
) -> list[Message]:
    def one(m: Member) -> Message:
        return _run_agent(team, book, m, question, incoming, round_, final, limit)

    if len(stage) > 1 and not any(m.local for m in stage):
        pool = ThreadPoolExecutor(max_workers=len(stage), thread_name_prefix="nbmagic-mas")
        futures = [pool.submit(one, m) for m in stage]
        try:
            return [f.result() for f in futures]
        except BaseException:  # Ctrl-C, or one call failed: stop the others, wait for none of them
            book.cancel()
            raise
        finally:
            pool.shutdown(wait=not book.cancelled, cancel_futures=True)
    return [one(m) for m in stage]


def _run_agent(
    team: Team,
    book: Bookkeeper,
    m: Member,
    question: str,
    incoming: list[Message],
    round_: int,
    final: bool,
    limit: int,
) -> Message:
    started = book.agent_started(m, round_)
    max_tokens = limit if final else team.message_tokens
    messages = [
        {"role": "system", "content": m.system},
        {"role": "user", "content": compose(question, incoming, task_line(final, team.message_tokens))},
    ]
    reply, tokens = _chat(team, book, m, messages, max_tokens)
    extra, more = follow_tool_calls(team, book, m, messages, reply, round_, final, max_tokens)
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
    team: Team,
    book: Bookkeeper,
    m: Member,
    messages: list[dict[str, str]],
    reply: str,
    round_: int,
    final: bool,
    max_tokens: int,
) -> tuple[str, int]:
    """Let a tool-caller run the Python in its reply and continue with the output.

    The deliberation loop (:func:`~nbmagic.mas.deliberation.deliberate`) with :class:`_ToolTurns`
    as its hooks, up to ``team.max_tool_calls`` runs: run the reply's python blocks, show the
    agent their output after the conversation so far (``messages`` then its reply), and take its
    next reply; a reply without a python block is its message. Returns the text to append to the
    agent's message and the tokens it spent; both modes use this (latent mode's final agent
    decodes its reply first, then follows here).
    """
    if m.role != "tool_caller":
        return "", 0
    turns = _ToolTurns(team, book, m, round_, final, max_tokens)
    deliberate(turns, list(messages), max_attempts=team.max_tool_calls, reply=reply, final_reply=True)
    return turns.extra, turns.tokens


class _ToolTurns:
    """RecursiveMAS's :class:`~nbmagic.mas.deliberation.ToolCaller`: a subprocess is the tool
    (:mod:`.pytool`), and the judge never accepts code: it shows the output and asks the agent to
    use it, so the agent's next reply (with no python block, or after the last run) is its message."""

    def __init__(self, team: Team, book: Bookkeeper, m: Member, round_: int, final: bool, max_tokens: int) -> None:
        self.team, self.book, self.m, self.round, self.final, self.max_tokens = team, book, m, round_, final, max_tokens
        self.extra, self.tokens, self.output = "", 0, ""

    def ask(self, messages: list[dict[str, str]], attempt: int) -> str:
        reply, more = _chat(self.team, self.book, self.m, messages, self.max_tokens)
        self.tokens += more
        self.extra += f"\n\nPython output:\n```text\n{self.output}\n```\n\n{reply}"
        return reply

    def prepare(self, reply: str, attempt: int, rerun: str | None) -> Move[str]:
        code = program(reply)
        return Done("answered") if code is None else Run(code)

    def run(self, draft: str) -> ToolRun:
        run = run_python(draft, timeout=self.team.tool_timeout)
        self.book.event(ToolCalled(self.m.name, run.code, run.output, run.ok, run.seconds, self.round))
        return run

    def judge(self, draft: str, result: ToolRun, attempt: int) -> Judgement:
        self.output = result.output
        use = "Use it and state the final answer." if self.final else "Use it in your message."
        return Refine(f"Python output:\n```text\n{result.output}\n```\n{use}")

    def exchange(self, messages: list[dict[str, str]], reply: str, refinement: str) -> list[dict[str, str]]:
        """The conversation grows: every reply and every output stay in the agent's prompt."""
        return [*messages, {"role": "assistant", "content": reply}, {"role": "user", "content": refinement}]


def _chat(
    team: Team, book: Bookkeeper, m: Member, messages: list[dict[str, str]], max_tokens: int
) -> tuple[str, int]:
    def on_token(piece: str) -> None:
        book.check()  # an interrupted run: a worker's stream ends at its next token
        book.event(TextDelta(m.name, piece))

    book.check()
    result = m.model.chat(messages, temperature=team.temperature, max_tokens=max_tokens, on_token=on_token)
    book.model_call(m, result.usage.prompt_tokens, result.usage.completion_tokens, result.seconds)
    return result.text, result.usage.completion_tokens
