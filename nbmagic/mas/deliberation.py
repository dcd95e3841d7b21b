"""The deliberation pattern's one loop: a tool-caller writes code, a tool runs it, a judge refines.

RecursiveMAS's deliberation pattern pairs a tool-caller (a model that writes Python)
with a reflector that reads what the code printed. nbmagic runs that pattern in two
engines, and both go through :func:`deliberate`, the only copy of the loop:

* ``%%agent`` (:mod:`nbmagic.agent.round`): the tool is the user's kernel, the judge the
  rules reflector (:mod:`nbmagic.agent.reflector`), the refinement a chat turn built by
  :func:`nbmagic.agent.exchange.exchange`;
* RecursiveMAS's tool-caller (:func:`nbmagic.mas.text.follow_tool_calls`): the tool is a
  subprocess (:mod:`nbmagic.mas.pytool`), the judge shows the output and asks for more, and
  a reply with no code block is the agent's message.

One attempt, for ``k = 1 .. max_attempts``::

    reply_k   = caller.ask(messages, k)                   (a given first reply is used instead)
    move_k    = caller.prepare(reply_k, k, rerun)         Run(draft) | FollowUp(text) | Done()
    Run:      result_k = caller.run(draft)
              caller.judge(draft, result_k, k)            Accept() | Refine(text) | Rerun()
    Refine / FollowUp, and another attempt follows:
              messages = caller.exchange(messages, reply_k, text)

``FollowUp`` is a refinement without running (a malformed reply, a cell that repeats an
earlier one): it costs an attempt, as a failed run does. ``Rerun`` runs the same draft
again without asking the model (a package was installed for it): an attempt too. With
``final_reply`` the refinement of the last attempt is still sent and the caller's answer
to it closes the loop without being run (the MAS tool-caller states what the output means);
without it the loop stops spent, and the caller decides what to keep.

The loop emits no events and calls no model itself: what the callers show (a cell ran, a
tool was called, tokens spent) differs, and stays in their hooks. It imports nothing heavy,
so ``import nbmagic`` stays fast.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Generic, Literal, Protocol, TypeVar

__all__ = ["Accept", "Done", "FollowUp", "Judgement", "Messages", "Move", "Outcome", "Refine", "Rerun", "Run", "ToolCaller",
           "deliberate"]

Messages = list[dict[str, str]]
D = TypeVar("D")  # what the tool runs: the agent's cell draft, the MAS program text
R = TypeVar("R")  # what the tool returns: the kernel's ExecResult, the subprocess's ToolRun


@dataclass(frozen=True)
class Run(Generic[D]):
    """The reply holds something to run."""

    draft: D


@dataclass(frozen=True)
class FollowUp:
    """Nothing to run; ``text`` goes back to the tool-caller instead (costs an attempt)."""

    text: str


@dataclass(frozen=True)
class Done:
    """The reply ends the loop without running (an answer, a dry run, a cell the user skipped)."""

    why: str = ""


@dataclass(frozen=True)
class Accept:
    """What the tool showed answers the task: the loop ends here."""


@dataclass(frozen=True)
class Refine:
    """What the tool showed does not answer yet; ``text`` is the refinement for the next reply."""

    text: str


@dataclass(frozen=True)
class Rerun:
    """Run the same draft again without a new reply (its environment changed, e.g. an install)."""


Move = Run[D] | FollowUp | Done
Judgement = Accept | Refine | Rerun


class ToolCaller(Protocol[D, R]):
    """The pieces an engine supplies; the loop only orders them."""

    def ask(self, messages: Messages, attempt: int) -> str:
        """Attempt ``attempt``'s reply of the tool-caller to ``messages`` (a model call)."""
        ...

    def prepare(self, reply: str, attempt: int, rerun: D | None) -> Move[D]:
        """What to do with attempt ``attempt``'s reply; ``rerun`` is the draft to run again, if any."""
        ...

    def run(self, draft: D) -> R:
        """The tool: run the draft, return what it showed."""
        ...

    def judge(self, draft: D, result: R, attempt: int) -> Judgement:
        """The reflector: accept the result, or say what the next reply must change."""
        ...

    def exchange(self, messages: Messages, reply: str, refinement: str) -> Messages:
        """The tool-caller's next prompt: ``messages``, its ``reply``, then the ``refinement``."""
        ...


@dataclass
class Outcome(Generic[D, R]):
    """How the loop ended: ``accepted`` (the judge said so), ``done`` (a reply ended it
    without running), or ``spent`` (``max_attempts`` used without either)."""

    status: Literal["accepted", "done", "spent"]
    attempts: int
    reply: str = ""
    draft: D | None = None  # the last draft that ran
    result: R | None = None  # and what it showed
    messages: Messages = field(default_factory=list)


def deliberate(caller: ToolCaller[D, R], messages: Messages, *, max_attempts: int,
               reply: str | None = None, final_reply: bool = False) -> Outcome[D, R]:
    """Run the deliberation loop (see the module docstring) for at most ``max_attempts`` attempts.

    ``reply`` is a first reply the caller already has (the MAS agent's message); otherwise the
    first attempt asks for one. The refinement after the last attempt is built only when
    ``final_reply`` sends it: no prompt is prepared that no model would read.
    """
    attempts = 0
    rerun: D | None = None
    last_draft: D | None = None
    last_result: R | None = None
    pending = ""  # a refinement the caller has not answered yet
    last_reply = reply or ""
    while attempts < max_attempts:
        attempts += 1
        if reply is None:
            reply = caller.ask(messages, attempts)
        last_reply = reply
        pending = ""
        move = caller.prepare(reply, attempts, rerun)
        rerun = None
        if isinstance(move, Done):
            return Outcome("done", attempts, reply, last_draft, last_result, messages)
        if isinstance(move, FollowUp):
            pending = move.text
        else:
            last_draft, last_result = move.draft, caller.run(move.draft)
            judged = caller.judge(move.draft, last_result, attempts)
            if isinstance(judged, Accept):
                return Outcome("accepted", attempts, reply, last_draft, last_result, messages)
            if isinstance(judged, Rerun):
                rerun = move.draft  # the same reply wrote it: keep ``reply``
                continue
            pending = judged.text
        if attempts < max_attempts or final_reply:
            messages = caller.exchange(messages, reply, pending)
        reply = None
    if final_reply and pending:
        reply = caller.ask(messages, attempts + 1)
        return Outcome("done", attempts, reply, last_draft, last_result, messages)
    return Outcome("spent", attempts, last_reply, last_draft, last_result, messages)
