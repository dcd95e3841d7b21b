"""Concise log lines, for places with no widget frontend and no terminal (nbclient, CI, logs).

One line per milestone (a round, an agent finished, a plan step, a cell run, an
RLM iteration, a notice) and one summary line at the end. Streamed text and
single latent steps are not printed: they would flood a saved notebook.
"""

from __future__ import annotations

import sys
from typing import IO

from nbmagic import events as ev
from nbmagic.ui.state import Renderer
from nbmagic.ui.summary import summary_text

PREFIX = "[nbmagic] "


def _one_line(text: str, limit: int = 80) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"


class PlainLog(Renderer):
    """Writes milestone lines to ``stream`` (``sys.stdout`` at the time of writing)."""

    kind = "plain"

    def __init__(self, stream: IO[str] | None = None, *, hz: float = 10.0) -> None:
        super().__init__(hz=hz)
        self._stream = stream
        self.lines: list[str] = []
        self._subcall_mark = 0

    def write(self, line: str) -> None:
        self.lines.append(line)
        stream = self._stream or sys.stdout
        print(PREFIX + line, file=stream, flush=True)

    def on_event(self, e: ev.Event) -> None:
        if isinstance(e, ev.RunStarted):
            model = f" (model {e.model})" if e.model else ""
            self.write(f"{e.engine}: {_one_line(e.title)}{model}")
        elif isinstance(e, ev.Notice):
            self.write(f"{e.level}: {e.message}" if e.level != "info" else e.message)
        elif isinstance(e, ev.RoundStarted):
            self.write(f"round {e.round}/{e.total}")
        elif isinstance(e, ev.AgentFinished):
            latent = f", {e.latent_steps} latent steps" if e.latent_steps else ""
            self.write(f"  {e.agent} done: {e.tokens} tokens{latent}, {e.seconds:.1f} s")
        elif isinstance(e, ev.PlanReady):
            steps = " ".join(f"{i}) {_one_line(t, 40)}" for i, t in enumerate(e.steps, 1))
            self.write(f"plan: {steps}")
        elif isinstance(e, ev.StepStarted):
            self.write(f"step {e.index + 1}/{e.total}: {_one_line(e.title)}")
        elif isinstance(e, ev.CellRun):
            if e.ok:
                self.write(f"  cell ran (attempt {e.attempt}, {e.seconds:.1f} s)")
            else:
                self.write(f"  cell failed (attempt {e.attempt}): {_one_line(e.error or 'error')}")
        elif isinstance(e, ev.StepFinished):
            if not e.ok:
                self.write(f"step {e.index + 1} failed after {e.attempts} attempts")
        elif isinstance(e, ev.RlmIteration):
            code = _one_line(e.code.strip().splitlines()[0] if e.code.strip() else "", 60)
            lines = len(e.code.strip().splitlines())
            more = f" (+{lines - 1} lines)" if lines > 1 else ""
            indent = "  " * e.depth
            self.write(f"{indent}iteration {e.i}: {code}{more} → {len(e.output):,} chars output, {e.seconds:.1f} s")
        elif isinstance(e, ev.SubCall):
            if not e.ok:
                self.write(f"  sub-call {e.n} failed")
            elif e.budget_left is not None and e.budget_left == 0:
                self.write(f"  sub-call budget spent ({e.n} calls)")
            elif e.n >= self._subcall_mark + 10:
                self._subcall_mark = e.n
                left = f", {e.budget_left} left" if e.budget_left is not None else ""
                self.write(f"  {e.n} sub-calls{left}")

    def draw(self, final: bool) -> None:
        # a failure is reported once, by the caller, as the error message itself
        if final and self.state.status != "failed":
            self.write(summary_text(self.state))
