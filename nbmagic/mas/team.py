"""A RecursiveMAS run's settings, members and bookkeeping: the leaf the modes work on.

:class:`Team` is everything a mode needs to know about the system (pattern, plan, resolved
members, bounds) and :class:`Bookkeeper` is the per-run tally that reports progress as
events. Text mode, latent mode, training and checkpoints take these as arguments, so no
module of :mod:`nbmagic.mas` imports :mod:`nbmagic.mas.system` (the public front door)
back. Pure Python: no torch.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from typing import Any

from nbmagic.errors import RunInterrupted
from nbmagic.events import AgentFinished, AgentStarted, EventHandler, ModelCall, emit
from nbmagic.llm.base import ChatModel, Usage
from nbmagic.mas.roles import Plan
from nbmagic.settings import EngineSettings, option

MODES = ("auto", "latent", "text")


@dataclass(frozen=True)
class MASSettings(EngineSettings):
    """RecursiveMAS's settings, declared once (see :mod:`nbmagic.settings`): ``RecursiveMAS(...)``,
    ``%config NbMagic.rounds`` / ``NBMAGIC_ROUNDS`` and the agent's planning options read these fields.
    ``pattern`` and ``mode`` are checked by the system itself (it normalises their spelling)."""

    pattern: str = option("sequential", "--pattern", config="pattern",
                          help="agent pattern: sequential | mixture | distillation | deliberation")
    rounds: int = option(3, "--rounds", low=1, high=100, config="rounds", help="RecursiveMAS recursion rounds")
    latent_steps: int = option(32, "--latent-steps", low=1, high=4096, config="latent_steps",
                               help="latent thoughts per agent per round")
    mode: str = option("auto", "--mode", config="mode", choices=MODES,
                       help="how agents talk: latent (hidden states, HF models), text, or auto")
    max_new_tokens: int = option(512, low=1, high=1_000_000, help="longest reply of the answering agent")
    message_tokens: int = option(256, low=1, high=1_000_000, help="longest message between agents in text mode")
    temperature: float = option(0.0, low=0, help="sampling temperature")
    tool_timeout: float = option(10.0, low=0.001, unit="seconds", help="seconds a deliberation tool call may run")
    max_tool_calls: int = option(2, low=0, high=20, help="tool calls per deliberation turn")
#: backends whose models run in this process (not safe to call from several threads at once)
LOCAL_BACKENDS = frozenset({"hf", "gguf", "llamacpp"})


@dataclass
class Agent:
    """One member of the team: a model (object or spec string) playing a role.

    ``model=None`` means the system's ``model``. ``instructions`` are appended to the
    role's prompt; with them a role may be any name (a custom role).
    """

    model: ChatModel | str | None
    role: str
    name: str | None = None
    instructions: str | None = None


@dataclass
class AgentStats:
    """What one agent did over the whole run."""

    name: str
    role: str
    tokens: int = 0  # generated (decoded) tokens
    seconds: float = 0.0
    latent_steps: int = 0
    calls: int = 0


@dataclass
class MASResult:
    """The answer and what it cost."""

    answer: str
    mode: str  # "latent" | "text"
    rounds: int  # rounds actually run (deliberation may stop early)
    agents: list[AgentStats]
    usage: Usage
    seconds: float
    transcript: list[dict[str, Any]] = field(default_factory=list)
    complete: bool = True  # False on a partial result carried by an error or an interrupt

    # the nbmagic.lifecycle.EngineResult protocol
    @property
    def total_usage(self) -> Usage:
        return self.usage

    @property
    def steps(self) -> list[dict[str, Any]]:
        return self.transcript

    @property
    def warnings(self) -> list[str]:
        return []

    @property
    def generated_tokens(self) -> int:
        return sum(a.tokens for a in self.agents)

    def __str__(self) -> str:
        return self.answer


@dataclass
class Member:
    """An agent resolved for a run: loaded model, normalised role, unique name, prompt."""

    index: int
    name: str
    role: str
    model: ChatModel
    system: str
    spec: str  # how the model was named (spec string or repr), for manifests and logs

    @property
    def local(self) -> bool:
        return str(getattr(self.model, "backend", "")) in LOCAL_BACKENDS


@dataclass
class Team:
    """The resolved system a mode runs: who plays, in which arrangement, within which bounds.

    Built (and validated) by :class:`~nbmagic.mas.system.RecursiveMAS`; the modes only read it.
    """

    pattern: str
    plan: Plan
    members: list[Member]
    mode: str  # "latent" | "text"
    rounds: int
    latent_steps: int
    max_new_tokens: int = 512
    message_tokens: int = 256
    temperature: float = 0.0
    tool_timeout: float = 10.0
    max_tool_calls: int = 2

    @property
    def final(self) -> Member:
        """The agent that writes the answer (last stage, last round)."""
        return self.members[self.plan.final]


def model_label(model: ChatModel | str | None) -> str:
    if isinstance(model, ChatModel):
        return f"{model.backend}:{model.name}"
    return str(model)


class Bookkeeper:
    """Per-run tallies and the events that report them (shared by both modes, thread-safe).

    :meth:`cancel` (on Ctrl-C) makes it drop later events and makes :meth:`check` raise in
    any worker still running, so calls in flight in other threads stop reporting and stop
    streaming at their next token instead of holding the run open.
    """

    def __init__(self, team: Team, handler: EventHandler) -> None:
        self.team = team
        self.handler = handler
        self.t0 = time.perf_counter()
        self.stats = [AgentStats(m.name, m.role) for m in team.members]
        self.usage = Usage()
        self.transcript: list[dict[str, Any]] = []
        self.partial_answer = ""
        self.rounds_done = 0
        self._lock = threading.Lock()
        self._cancelled = threading.Event()

    # -- cancellation ---------------------------------------------------------------------

    def cancel(self) -> None:
        self._cancelled.set()

    @property
    def cancelled(self) -> bool:
        return self._cancelled.is_set()

    def check(self) -> None:
        """Raise in a worker whose run was interrupted (called between tokens and calls)."""
        if self._cancelled.is_set():
            raise RunInterrupted("RecursiveMAS run interrupted.")

    # -- reporting ------------------------------------------------------------------------

    def event(self, ev: Any) -> None:
        if not self._cancelled.is_set():
            emit(self.handler, ev)

    def agent_started(self, m: Member, round_: int) -> float:
        self.event(AgentStarted(m.name, m.role, self.team.mode, round_))
        return time.perf_counter()

    def agent_finished(
        self, m: Member, round_: int, started: float, *, tokens: int, latent_steps: int = 0
    ) -> None:
        seconds = time.perf_counter() - started
        with self._lock:
            s = self.stats[m.index]
            s.tokens += tokens
            s.seconds += seconds
            s.latent_steps += latent_steps
        self.event(AgentFinished(m.name, tokens, seconds, latent_steps, round_))

    def model_call(self, m: Member, prompt_tokens: int, completion_tokens: int, seconds: float) -> None:
        with self._lock:
            self.usage = self.usage + Usage(prompt_tokens, completion_tokens, 1)
            self.stats[m.index].calls += 1
        self.event(ModelCall(m.model.name, prompt_tokens, completion_tokens, seconds, m.name))

    def record(self, entry: dict[str, Any]) -> None:
        with self._lock:
            self.transcript.append(entry)

    def result(self, answer: str, rounds: int, complete: bool = True) -> MASResult:
        with self._lock:
            return MASResult(
                complete=complete,
                answer=answer,
                mode=self.team.mode,
                rounds=rounds,
                agents=[AgentStats(**vars(s)) for s in self.stats],
                usage=Usage(self.usage.prompt_tokens, self.usage.completion_tokens, self.usage.calls),
                seconds=time.perf_counter() - self.t0,
                transcript=list(self.transcript),
            )
