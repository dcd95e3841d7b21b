"""A rich ``Live`` display for terminal IPython: the dashboard, drawn in text.

Redraws are driven by events (throttled by :class:`~nbmagic.ui.state.Renderer`),
not by rich's refresh thread, so nothing reads the state from another thread.
The live area is transient: at the end it gives way to one summary line.
"""

from __future__ import annotations

from typing import Any

from rich.console import Console, Group, RenderableType
from rich.live import Live
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from nbmagic.ui.state import Renderer, RunState
from nbmagic.ui.summary import summary_text

_MARK = {"done": "[green]✔[/]", "failed": "[red]✘[/]", "running": "[yellow]▶[/]", "pending": "☐"}
_STYLE = {"latent": "cyan", "decoding": "yellow", "running": "magenta", "done": "green", "waiting": "dim"}


def _tail_lines(text: str, lines: int) -> str:
    return "\n".join(text.rstrip().splitlines()[-lines:])


def build_renderable(state: RunState, *, stream_lines: int = 8) -> RenderableType:
    """The whole live view as one rich renderable (also used by tests to read it as text)."""
    parts: list[RenderableType] = []
    head = Text()
    head.append(state.engine or "nbmagic", style="bold")
    if state.title:
        head.append("  " + (state.title if len(state.title) < 100 else state.title[:99] + "…"))
    info = [f"{state.elapsed:.1f} s"]
    if state.model:
        info.insert(0, state.model)
    if state.tokens:
        info.append(f"{state.tokens:,} tokens")
    head.append("  (" + " · ".join(info) + ")", style="dim")
    parts.append(head)

    rows = state.grid_rows()
    if rows:
        table = Table(show_edge=False, pad_edge=False, box=None)
        table.add_column("agent", style="bold")
        for r in range(1, len(rows[0][1]) + 1):
            table.add_column(f"round {r}")
        for agent, cells in rows:
            table.add_row(
                agent,
                *[Text(c.label(), style=_STYLE.get(c.state, "")) if c else Text("·", style="dim") for c in cells],
            )
        parts.append(table)

    if state.stream_text and state.status == "running":
        parts.append(
            Panel(_tail_lines(state.stream_text, stream_lines), title=state.stream_agent or "output", title_align="left")
        )

    if state.plan:
        plan = Text.from_markup(
            "\n".join(f"{_MARK[s.status]} {_escape(s.title)}" + (f" [dim]({s.attempts} attempts)[/]" if s.attempts > 1 else "") for s in state.plan)
        )
        parts.append(Panel(plan, title="plan", title_align="left"))

    if state.iterations:
        it = state.iterations[-1]
        body = Text(_tail_lines(it.code, 12), style="cyan")
        body.append("\n" + _tail_lines(it.output, 6), style="dim")
        parts.append(Panel(body, title=f"iteration {it.i} of {len(state.iterations)}", title_align="left"))

    if state.subcalls or state.budget_left is not None:
        left = f" · {state.budget_left} left" if state.budget_left is not None else ""
        parts.append(Text(f"sub-calls: {state.subcalls} used{left}", style="dim"))

    for level, msg in state.notices[-3:]:
        parts.append(Text(msg, style="red" if level == "error" else "yellow" if level == "warning" else "dim"))
    return Group(*parts)


def _escape(text: str) -> str:
    from rich.markup import escape

    return escape(text)


class RichLive(Renderer):
    """Terminal renderer; ``console`` defaults to rich's console on stdout."""

    kind = "rich"

    def __init__(self, console: Console | None = None, *, hz: float = 10.0, transient: bool = True) -> None:
        super().__init__(hz=hz)
        self.console = console or Console()
        self.live: Live | None = None
        self._transient = transient
        self.last: Any = None

    def start(self, title: str = "", *, engine: str = "", model: str = "") -> None:
        self.live = Live(
            build_renderable(self.state),
            console=self.console,
            auto_refresh=False,
            transient=self._transient,
            redirect_stdout=False,
            redirect_stderr=False,
        )
        self.live.start()
        super().start(title, engine=engine, model=model)

    def draw(self, final: bool) -> None:
        self.last = build_renderable(self.state)
        if self.live is not None:
            self.live.update(self.last, refresh=True)
        if final:
            if self.live is not None:
                self.live.stop()
                self.live = None
            if self.state.status == "failed":
                return  # the caller prints the error message: one line, not two
            style = {"done": "green", "interrupted": "yellow"}.get(self.state.status, "")
            self.console.print(Text("nbmagic: " + summary_text(self.state), style=style))
