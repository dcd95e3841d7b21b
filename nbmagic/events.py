"""The event vocabulary every engine speaks and every renderer understands.

Engines take an ``on_event`` callback and emit these small frozen records; the
UI layer (widgets, rich, plain log), the CLI and the tests subscribe to them.
Engines never import IPython or ipywidgets: this module is the whole contract.
Add new event types at the end of this file; never change an existing field.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, TypeVar

log = logging.getLogger("nbmagic.events")


@dataclass(frozen=True, kw_only=True)
class Event:
    """Base of all events; ``t`` is a monotonic timestamp taken at creation."""

    t: float = field(default_factory=time.monotonic, compare=False, repr=False)


# --- run lifecycle (all engines) ------------------------------------------------


@dataclass(frozen=True)
class RunStarted(Event):
    engine: str  # "agent" | "rlm" | "mas"
    title: str
    model: str = ""


@dataclass(frozen=True)
class Notice(Event):
    """A line worth showing the user (fallbacks taken, warnings)."""

    message: str
    level: str = "info"  # "info" | "warning" | "error"


@dataclass(frozen=True)
class ModelCall(Event):
    """One completed model call, for token and time accounting."""

    model: str
    prompt_tokens: int
    completion_tokens: int
    seconds: float
    agent: str = ""


@dataclass(frozen=True)
class Finished(Event):
    engine: str
    result: Any = None
    seconds: float = 0.0


@dataclass(frozen=True)
class Failed(Event):
    engine: str
    message: str
    partial: Any = None


# --- RecursiveMAS -----------------------------------------------------------------


@dataclass(frozen=True)
class RoundStarted(Event):
    round: int  # 1-based
    total: int


@dataclass(frozen=True)
class AgentStarted(Event):
    agent: str
    role: str
    mode: str  # "latent" | "text"
    round: int = 1


@dataclass(frozen=True)
class LatentStep(Event):
    agent: str
    step: int  # 1-based
    total: int


@dataclass(frozen=True)
class TextDelta(Event):
    """A piece of streamed text from the agent that is decoding."""

    agent: str
    text: str


@dataclass(frozen=True)
class AgentFinished(Event):
    agent: str
    tokens: int
    seconds: float
    latent_steps: int = 0
    round: int = 1


@dataclass(frozen=True)
class RoundFinished(Event):
    round: int
    total: int


# --- notebook agent ------------------------------------------------------------------


@dataclass(frozen=True)
class PlanReady(Event):
    steps: tuple[str, ...]


@dataclass(frozen=True)
class StepStarted(Event):
    index: int  # 0-based
    total: int
    title: str


@dataclass(frozen=True)
class CellRun(Event):
    """One execution attempt of generated code."""

    step: int
    attempt: int  # 1-based
    source: str
    ok: bool
    error: str | None = None
    seconds: float = 0.0


@dataclass(frozen=True)
class CellAccepted(Event):
    """A finished nbformat v4 cell (a dict, outputs included) ready to deliver."""

    cell: dict[str, Any]
    step: int = 0


@dataclass(frozen=True)
class StepFinished(Event):
    index: int
    ok: bool
    attempts: int = 1


# --- RLM -------------------------------------------------------------------------


@dataclass(frozen=True)
class RlmIteration(Event):
    i: int  # 1-based
    code: str
    output: str
    seconds: float = 0.0
    depth: int = 0


@dataclass(frozen=True)
class SubCall(Event):
    n: int  # calls used so far in this invocation
    budget_left: int | None
    prompt_chars: int = 0
    ok: bool = True
    depth: int = 0
    seconds: float = 0.0


# --- helpers ------------------------------------------------------------------------

EventHandler = Callable[[Event], None]
E = TypeVar("E", bound=Event)


def emit(handler: EventHandler | None, event: Event) -> None:
    """Deliver ``event``; a broken renderer is logged, never allowed to kill a run."""
    if handler is None:
        return
    try:
        handler(event)
    except KeyboardInterrupt:
        raise
    except Exception:  # pragma: no cover - defensive: UI bugs must not sink engines
        log.exception("event handler failed on %s", type(event).__name__)


def fanout(*handlers: EventHandler | None) -> EventHandler:
    """One handler that forwards to several (``None`` entries are skipped)."""
    live = [h for h in handlers if h is not None]

    def handle(event: Event) -> None:
        for h in live:
            emit(h, event)

    return handle


class EventRecorder:
    """Collects events in order; handy for tests and for trajectories."""

    def __init__(self) -> None:
        self.events: list[Event] = []

    def __call__(self, event: Event) -> None:
        self.events.append(event)

    def of(self, kind: type[E]) -> list[E]:
        return [e for e in self.events if isinstance(e, kind)]

    def kinds(self) -> list[str]:
        return [type(e).__name__ for e in self.events]

    def extend(self, events: Iterable[Event]) -> None:
        self.events.extend(events)


# --- RecursiveMAS tools (appended) -------------------------------------------------------


@dataclass(frozen=True)
class ToolCalled(Event):
    """An agent ran Python through its tool (deliberation's tool-caller); ``output`` is what it printed."""

    agent: str
    code: str
    output: str
    ok: bool = True
    seconds: float = 0.0
    round: int = 1
