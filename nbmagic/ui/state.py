"""What a run looks like so far, folded from engine events; shared by every renderer.

The three renderers (ipywidgets, rich, plain text) differ only in how they draw;
what they draw comes from one :class:`RunState`, so a dashboard, a terminal view
and a log line never disagree. :class:`Renderer` adds the throttling every live
view needs: structural events (an agent finished, a plan step started) redraw at
once, frequent ones (streamed text, latent steps, sub-calls) at most ``hz`` times a
second, and :meth:`Renderer.close` always draws the final state.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from typing import Any

from nbmagic import events as ev

#: events that arrive many times a second; redrawn at most ``hz`` times a second
FREQUENT: tuple[type[ev.Event], ...] = (ev.TextDelta, ev.LatentStep, ev.SubCall, ev.ModelCall)

STREAM_KEEP = 4000  # characters of streamed text kept for display


@dataclass
class AgentCell:
    """One agent in one round: the unit of the rounds × agents grid."""

    agent: str
    role: str = ""
    mode: str = ""
    round: int = 1
    state: str = "waiting"  # waiting | latent | decoding | done
    step: int = 0
    total: int = 0
    tokens: int = 0
    started: float | None = None
    seconds: float | None = None

    def label(self, now: float | None = None) -> str:
        """Short text for a grid cell: what the agent is doing and what it cost."""
        if self.state == "done":
            parts = ["done"]
            if self.total or self.step:
                parts.append(f"{self.step or self.total} latent")
            parts.append(f"{self.tokens} tok")
            if self.seconds is not None:
                parts.append(f"{self.seconds:.1f}s")
            return " · ".join(parts)
        elapsed = ""
        if self.started is not None:
            elapsed = f" · {(now or time.monotonic()) - self.started:.1f}s"
        if self.state == "latent":
            return f"latent {self.step}/{self.total}{elapsed}"
        if self.state == "decoding":
            return f"decoding · {self.tokens} tok{elapsed}"
        if self.state == "running":
            return f"{self.mode or 'running'}{elapsed}"
        return "·"


@dataclass
class PlanStep:
    title: str
    status: str = "pending"  # pending | running | done | failed
    attempts: int = 0
    error: str | None = None


@dataclass
class Iteration:
    i: int
    code: str
    output: str
    seconds: float = 0.0
    depth: int = 0


@dataclass
class RunState:
    """Everything the renderers show, updated by :meth:`apply`."""

    engine: str = ""
    title: str = ""
    model: str = ""
    started: float = field(default_factory=time.monotonic)
    ended: float | None = None
    status: str = "running"  # running | done | failed | interrupted
    message: str = ""
    # RecursiveMAS
    mas_runs: int = 0
    rounds_total: int = 0
    round: int = 0
    agents: list[str] = field(default_factory=list)
    grid: dict[tuple[int, str], AgentCell] = field(default_factory=dict)
    stream_agent: str = ""
    stream_text: str = ""
    stream_chars: int = 0
    # notebook agent
    plan: list[PlanStep] = field(default_factory=list)
    cells: list[dict[str, Any]] = field(default_factory=list)
    cell_runs: int = 0
    # RLM
    iterations: list[Iteration] = field(default_factory=list)
    subcalls: int = 0
    subcall_failures: int = 0
    budget_left: int | None = None
    tool_calls: int = 0
    # accounting
    prompt_tokens: int = 0
    completion_tokens: int = 0
    calls: int = 0
    model_tokens: dict[str, list[int]] = field(default_factory=dict)  # model -> [tokens, calls]
    notices: list[tuple[str, str]] = field(default_factory=list)
    result: Any = None
    events: int = 0

    # -- folding ------------------------------------------------------------------------

    def apply(self, event: ev.Event) -> None:
        self.events += 1
        handler = getattr(self, "_on_" + type(event).__name__, None)
        if handler is not None:
            handler(event)

    def _on_RunStarted(self, e: ev.RunStarted) -> None:
        if not self.engine:
            self.engine, self.title = e.engine, e.title
        if e.model and not self.model:
            self.model = e.model
        if e.engine == "mas":
            self._new_mas_run()

    def _new_mas_run(self) -> None:
        self.mas_runs += 1
        self.grid.clear()
        self.agents.clear()
        self.round = 0
        self.rounds_total = 0

    def _on_Notice(self, e: ev.Notice) -> None:
        self.notices.append((e.level, e.message))

    def _on_ModelCall(self, e: ev.ModelCall) -> None:
        self.prompt_tokens += e.prompt_tokens
        self.completion_tokens += e.completion_tokens
        self.calls += 1
        if not self.model:
            self.model = e.model
        per = self.model_tokens.setdefault(e.model, [0, 0])  # RLM root and sub-model apart
        per[0] += e.prompt_tokens + e.completion_tokens
        per[1] += 1

    def models_line(self) -> str:
        """``gpt-4o 1,234 tok (3 calls) · gpt-4o-mini 567 tok (9 calls)`` when more than one model ran."""
        if len(self.model_tokens) < 2:
            return ""
        return " · ".join(
            f"{name.split('@')[0]} {tok:,} tok ({n} call{'s' if n != 1 else ''})"
            for name, (tok, n) in self.model_tokens.items()
        )

    def _on_Finished(self, e: ev.Finished) -> None:
        if e.engine == self.engine:
            self.result = e.result

    def _on_Failed(self, e: ev.Failed) -> None:
        if e.engine == self.engine:
            self.message = e.message

    def _on_RoundStarted(self, e: ev.RoundStarted) -> None:
        if e.round == 1 and self.round >= 1 and self.grid:
            self._new_mas_run()  # a second MAS run without its own RunStarted
        if self.mas_runs == 0:
            self.mas_runs = 1
        self.round, self.rounds_total = e.round, e.total

    def _cell(self, agent: str, round_: int | None = None) -> AgentCell:
        r = round_ if round_ is not None else max(self.round, 1)
        key = (r, agent)
        if key not in self.grid:
            self.grid[key] = AgentCell(agent=agent, round=r)
            if agent not in self.agents:
                self.agents.append(agent)
        return self.grid[key]

    def _reset_stream(self) -> None:
        self.stream_agent, self.stream_text = "", ""

    def _on_AgentStarted(self, e: ev.AgentStarted) -> None:
        self._reset_stream()  # each agent's text is shown on its own
        if self.mas_runs == 0:
            self.mas_runs = 1
        self.round = max(self.round, e.round)
        self.rounds_total = max(self.rounds_total, e.round)
        c = self._cell(e.agent, e.round)
        c.role, c.mode, c.started = e.role, e.mode, e.t
        c.state = "latent" if e.mode == "latent" else "running"

    def _on_LatentStep(self, e: ev.LatentStep) -> None:
        c = self._cell(e.agent)
        c.state, c.step, c.total = "latent", e.step, e.total
        if c.started is None:
            c.started = e.t

    def _on_TextDelta(self, e: ev.TextDelta) -> None:
        if e.agent != self.stream_agent:
            self.stream_agent, self.stream_text = e.agent, ""
        self.stream_text = (self.stream_text + e.text)[-STREAM_KEEP:]
        self.stream_chars += len(e.text)
        c = self.grid.get((max(self.round, 1), e.agent))  # only agents of a MAS run are in the grid
        if c is not None and c.state != "done":
            c.state = "decoding"
            c.tokens += len(e.text.split()) or (1 if e.text.strip() else 0)
            if c.started is None:
                c.started = e.t

    def _on_AgentFinished(self, e: ev.AgentFinished) -> None:
        c = self._cell(e.agent, e.round)
        c.state, c.tokens, c.seconds = "done", e.tokens, e.seconds
        if e.latent_steps:
            c.step = c.total = e.latent_steps

    def _on_RoundFinished(self, e: ev.RoundFinished) -> None:
        self.round, self.rounds_total = e.round, e.total

    def _on_PlanReady(self, e: ev.PlanReady) -> None:
        # steps that ran before the plan was ready (the agent's own loading cells) keep their state
        earlier = {s.title: s for s in self.plan}
        self.plan = [earlier.get(s) or PlanStep(title=s) for s in e.steps]

    def _plan_step(self, index: int, title: str = "") -> PlanStep:
        while len(self.plan) <= index:
            self.plan.append(PlanStep(title=title or f"step {len(self.plan) + 1}"))
        return self.plan[index]

    def _on_StepStarted(self, e: ev.StepStarted) -> None:
        self._reset_stream()  # the coder's text of this step only
        step = self._plan_step(e.index, e.title)
        step.status = "running"
        if e.title:
            step.title = e.title

    def _on_CellRun(self, e: ev.CellRun) -> None:
        self.cell_runs += 1
        step = self._plan_step(e.step)
        step.attempts = max(step.attempts, e.attempt)
        step.error = None if e.ok else (e.error or "error")

    def _on_StepFinished(self, e: ev.StepFinished) -> None:
        step = self._plan_step(e.index)
        step.status = "done" if e.ok else "failed"
        step.attempts = max(step.attempts, e.attempts)

    def _on_CellAccepted(self, e: ev.CellAccepted) -> None:
        self.cells.append(e.cell)

    def _on_RlmIteration(self, e: ev.RlmIteration) -> None:
        self.iterations.append(Iteration(e.i, e.code, e.output, e.seconds, e.depth))

    def _on_SubCall(self, e: ev.SubCall) -> None:
        self.subcalls = max(self.subcalls, e.n)
        self.budget_left = e.budget_left
        if not e.ok:
            self.subcall_failures += 1

    def _on_ToolCalled(self, e: Any) -> None:
        self.tool_calls += 1
        first = (e.code.strip().splitlines() or [""])[0]
        self.notices.append(("info", f"{e.agent} ran Python: {first[:60]}" + ("" if e.ok else " (failed)")))

    # -- reading --------------------------------------------------------------------------

    @property
    def elapsed(self) -> float:
        return (self.ended or time.monotonic()) - self.started

    @property
    def tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens

    @property
    def budget_total(self) -> int | None:
        return None if self.budget_left is None else self.subcalls + self.budget_left

    def grid_rows(self) -> list[tuple[str, list[AgentCell | None]]]:
        """Rows of the rounds × agents grid: (agent, [cell for round 1..n])."""
        n = max([self.rounds_total, self.round, *[r for r, _ in self.grid]], default=0)
        return [(a, [self.grid.get((r, a)) for r in range(1, n + 1)]) for a in self.agents]

    def plan_done(self) -> int:
        return sum(1 for s in self.plan if s.status == "done")

    def finish(self, status: str, message: str = "") -> None:
        self.status = status
        if message:
            self.message = message
        self.ended = time.monotonic()


class Renderer:
    """Base of every renderer: folds events into :attr:`state` and redraws, throttled.

    Subclasses implement :meth:`draw` (and may override :meth:`on_event` to react to
    single events, as the plain log does). Use it as the engine's ``on_event``.
    """

    kind = "base"

    def __init__(self, *, hz: float = 10.0) -> None:
        self.state = RunState()
        self.interval = 1.0 / hz if hz > 0 else 0.0
        self._last_draw = 0.0
        self._dirty = False
        self.draws = 0
        self.closed = False
        #: held while the state changes or is drawn, so a ticker thread may draw too
        self.lock = threading.RLock()

    def __call__(self, event: ev.Event) -> None:
        with self.lock:
            self.state.apply(event)
            self.on_event(event)
            now = time.monotonic()
            if isinstance(event, FREQUENT) and now - self._last_draw < self.interval:
                self._dirty = True  # coalesced into the next draw
                return
            self._redraw(now)

    def _redraw(self, now: float | None = None) -> None:
        self._last_draw = now or time.monotonic()
        self._dirty = False
        self.draws += 1
        self.draw(final=False)

    def flush(self) -> None:
        """Draw now if coalesced updates are pending."""
        with self.lock:
            if self._dirty:
                self._redraw()

    def start(self, title: str = "", *, engine: str = "", model: str = "") -> None:
        """Show the (empty) view before the engine emits anything."""
        if title and not self.state.title:
            self.state.title = title
        if engine and not self.state.engine:
            self.state.engine = engine
        if model and not self.state.model:
            self.state.model = model
        self.draw(final=False)

    def close(self, status: str = "done", message: str = "") -> None:
        """End the live view and leave the compact summary in its place."""
        with self.lock:
            if self.closed:
                return
            self.closed = True
            self.state.finish(status, message)
            self.draw(final=True)

    def __enter__(self) -> Renderer:
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: Any) -> None:
        """``with`` closes the view however the block ends (and so stops the dashboard's ticker)."""
        if exc is None:
            self.close("done")
        elif isinstance(exc, KeyboardInterrupt):
            self.close("interrupted", "interrupted")
        else:
            self.close("failed", getattr(exc, "message", None) or str(exc) or type(exc).__name__)

    # -- for subclasses ------------------------------------------------------------------

    def on_event(self, event: ev.Event) -> None:
        """Hook for renderers that react to single events."""

    def draw(self, final: bool) -> None:
        """Redraw from :attr:`state`; ``final`` marks the last call."""
