"""The live ipywidgets dashboard for JupyterLab / Notebook 7 / VS Code.

Layout, top to bottom, each part hidden until it has something to show:
a header (what runs, model, elapsed, tokens), the rounds × agents grid of
RecursiveMAS (state, latent step k of m, tokens, elapsed), the streaming text of
the agent that is decoding, the plan as a checklist, RLM iterations (code and
output in a collapsible Accordion) and the sub-call budget as a progress bar.

At the end the widget is replaced in place (``update_display_data``) by a plain
HTML summary, so a saved notebook shows the summary and no dead widget.
"""

from __future__ import annotations

import html
import threading
from typing import Any

import ipywidgets as widgets

from nbmagic.ui.state import Renderer
from nbmagic.ui.summary import RunSummary, grid_html, plan_html, summary_text

STREAM_SHOW = 1500  # characters of the decoding agent's text on screen
ITER_SHOW = 3000  # characters of one iteration's code/output on screen

_CSS = (
    "<style>.nbm-grid{border-collapse:collapse;font-size:12px}"
    ".nbm-grid td,.nbm-grid th{border:1px solid #ddd;padding:2px 8px;text-align:left;white-space:nowrap}"
    ".nbm-grid td.nbm-latent{background:#e3f2fd}.nbm-grid td.nbm-decoding{background:#fff8e1}"
    ".nbm-grid td.nbm-running{background:#f3e5f5}.nbm-grid td.nbm-done{background:#e8f5e9}"
    ".nbm-plan li.nbm-running{font-weight:bold}.nbm-plan li.nbm-failed{color:#c62828}"
    ".nbm-pre{white-space:pre-wrap;font-family:monospace;font-size:12px;margin:0;max-height:16em;overflow:auto}</style>"
)


def _pre(text: str, limit: int, *, tail: bool = False) -> str:
    if len(text) > limit:
        text = ("…" + text[-limit:]) if tail else (text[:limit] + "…")
    return f"<pre class='nbm-pre'>{html.escape(text)}</pre>"


def _show(widget: widgets.Widget, visible: bool) -> None:
    want = None if visible else "none"
    if widget.layout.display != want:
        widget.layout.display = want


class Dashboard(Renderer):
    """Renders :class:`~nbmagic.ui.state.RunState` into widgets; pass as ``on_event``."""

    kind = "widgets"

    def __init__(self, *, display: bool = True, hz: float = 10.0) -> None:
        super().__init__(hz=hz)
        self._display = display
        self.handle: Any = None
        self.final: RunSummary | None = None
        self._stop = threading.Event()
        self._ticker: threading.Thread | None = None
        self.header = widgets.HTML()
        self.grid = widgets.HTML()
        self.stream_label = widgets.HTML()
        self.stream = widgets.HTML()
        self.plan = widgets.HTML()
        self.iterations = widgets.Accordion(children=())
        self.budget = widgets.IntProgress(value=0, min=0, max=1, description="sub-calls", bar_style="info")
        self.budget_label = widgets.HTML()
        self.notices = widgets.HTML()
        self.budget_box = widgets.HBox([self.budget, self.budget_label])
        self.box = widgets.VBox(
            [
                widgets.HTML(_CSS),
                self.header,
                self.grid,
                widgets.VBox([self.stream_label, self.stream]),
                self.plan,
                self.iterations,
                self.budget_box,
                self.notices,
            ],
            layout=widgets.Layout(border="1px solid #e0e0e0", padding="4px 8px"),
        )
        self._stream_box = self.box.children[3]
        self._shown_iterations = 0
        for w in (self.grid, self._stream_box, self.plan, self.iterations, self.budget_box, self.notices):
            _show(w, False)

    # -- lifecycle ----------------------------------------------------------------------

    def start(self, title: str = "", *, engine: str = "", model: str = "") -> None:
        super().start(title, engine=engine, model=model)
        if self._display:
            from IPython.display import display

            self.handle = display(self.box, display_id=True)
            self._ticker = threading.Thread(target=self._tick, name="nbmagic-dashboard", daemon=True)
            self._ticker.start()

    def _tick(self) -> None:
        """Once a second: flush coalesced updates and move the clocks, even while a model call blocks."""
        while not self._stop.wait(1.0):
            with self.lock:
                if self.closed:
                    return
                try:
                    self._dirty = True
                    self.flush()
                except Exception:  # pragma: no cover - a display problem must not kill the run
                    return

    def close(self, status: str = "done", message: str = "") -> None:
        if self.closed:
            return
        self._stop.set()
        super().close(status, message)
        # a failure's message is printed by the caller, right below: not a second time here
        summary = RunSummary(self.state, message=self.state.status != "failed")
        if self.handle is not None:
            s = self.state
            if s.status == "failed" and not (s.grid or s.plan or s.cells or s.iterations):
                from IPython.display import HTML

                self.handle.update(HTML(""))  # nothing done to show: the caller's error line says it all
            else:
                self.handle.update(summary)
        self.final = summary
        self._close_widgets()

    def _close_widgets(self) -> None:
        for w in [*self.iterations.children, self.box]:
            try:
                w.close()
            except Exception:  # pragma: no cover - the frontend may be gone already
                pass

    # -- drawing ---------------------------------------------------------------------------

    def draw(self, final: bool) -> None:
        s = self.state
        self._draw_header()
        g = grid_html(s)
        if g and g != self.grid.value:
            self.grid.value = g
        _show(self.grid, bool(g))
        if s.stream_agent or s.stream_text:
            self.stream_label.value = f"<b>{html.escape(s.stream_agent or 'output')}</b> writes:"
            self.stream.value = _pre(s.stream_text, STREAM_SHOW, tail=True)
        else:
            self.stream.value = ""
        _show(self._stream_box, bool(s.stream_text) and not final)
        p = plan_html(s)
        if p != self.plan.value:
            self.plan.value = "<b>plan</b>" + p if p else ""
        _show(self.plan, bool(p))
        self._draw_iterations()
        if s.budget_left is not None or s.subcalls:
            total = s.budget_total or max(s.subcalls, 1)
            self.budget.max = max(total, 1)
            self.budget.value = min(s.subcalls, self.budget.max)
            self.budget.bar_style = "warning" if s.budget_left == 0 else "info"
            left = f", {s.budget_left} left" if s.budget_left is not None else ""
            failed = f", {s.subcall_failures} failed" if s.subcall_failures else ""
            self.budget_label.value = f"{s.subcalls} used{left}{failed}"
            _show(self.budget_box, True)
        if s.notices:
            self.notices.value = "".join(
                f"<div style='color:{'#c62828' if lvl == 'error' else '#ef6c00' if lvl == 'warning' else '#555'}'>"
                f"{html.escape(msg)}</div>"
                for lvl, msg in s.notices[-5:]
            )
            _show(self.notices, True)

    def _draw_header(self) -> None:
        s = self.state
        if s.status == "running":
            bits = [f"<b>{html.escape(s.engine or 'nbmagic')}</b>"]
            if s.title:
                bits.append(html.escape(s.title if len(s.title) < 120 else s.title[:119] + "…"))
            if s.model:
                bits.append(f"<code>{html.escape(s.model.split('@')[0])}</code>")
            bits.append(f"{s.elapsed:.1f} s")
            if s.tokens:
                bits.append(f"{s.tokens:,} tokens")
            if s.models_line():  # root and sub-model apart
                bits.append(html.escape(s.models_line()))
            if s.round:
                bits.append(f"round {s.round}/{s.rounds_total or s.round}")
            value = " · ".join(bits)
        else:
            value = f"<b>nbmagic</b> {html.escape(summary_text(s))}"
        self.header.value = value

    def _draw_iterations(self) -> None:
        its = self.state.iterations
        if len(its) == self._shown_iterations:
            return
        new = []
        for it in its[self._shown_iterations :]:
            new.append(
                widgets.VBox(
                    [
                        widgets.HTML(_pre(it.code, ITER_SHOW)),
                        widgets.HTML("<small>output</small>" + _pre(it.output, ITER_SHOW)),
                    ]
                )
            )
        children = (*self.iterations.children, *new)
        self.iterations.children = children
        self.iterations.titles = tuple(
            f"{'  ' * it.depth}iteration {it.i} · {it.seconds:.1f} s · {len(it.output):,} chars out" for it in its
        )
        self.iterations.selected_index = len(children) - 1
        self._shown_iterations = len(its)
        _show(self.iterations, True)
