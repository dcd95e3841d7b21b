"""What stays in the output after a run: a compact summary, and the result object.

The live dashboard is replaced by :class:`RunSummary` (plain HTML and text, so a
saved notebook shows it without any widget state), and the magic returns a
:class:`MagicResult` that lands in ``_`` (and in ``--out VAR``): the answer or the
cells, the trajectory and the usage, whatever engine produced them.
"""

from __future__ import annotations

import html
from dataclasses import dataclass, field
from typing import Any

from nbmagic.ui.state import RunState

_STATUS_WORD = {"done": "done", "failed": "failed", "interrupted": "interrupted", "running": "running"}
_PLAN_MARK = {"done": "☑", "failed": "☒", "running": "▶", "pending": "☐"}
_CUT = 1200  # characters of code/output kept per iteration in the saved summary


def _n(x: int) -> str:
    return f"{x:,}"


def _cut(text: str, limit: int = _CUT) -> str:
    if len(text) <= limit:
        return text
    return text[:limit] + f"\n… ({len(text) - limit:,} more chars)"


def summary_parts(state: RunState) -> list[str]:
    """The facts of a run, short phrases in a fixed order."""
    word = _STATUS_WORD.get(state.status, state.status)
    parts = [f"{state.engine or 'run'} {word} in {state.elapsed:.1f} s"]
    if state.plan:
        parts.append(f"plan {state.plan_done()}/{len(state.plan)}")
    if state.cells or state.engine == "agent":
        parts.append(f"{len(state.cells)} cell{'s' if len(state.cells) != 1 else ''}")
    if state.grid:
        rounds = max(r for r, _ in state.grid)
        parts.append(f"{rounds} round{'s' if rounds != 1 else ''} × {len(state.agents)} agent{'s' if len(state.agents) != 1 else ''}")
    if state.iterations or state.engine == "rlm":
        parts.append(f"{len(state.iterations)} iteration{'s' if len(state.iterations) != 1 else ''}")
    if state.subcalls or state.budget_left is not None:
        budget = f"/{state.budget_total}" if state.budget_total is not None else ""
        parts.append(f"{state.subcalls}{budget} sub-calls")
    if state.tokens:
        parts.append(f"{_n(state.tokens)} tokens")
    if state.calls:
        parts.append(f"{state.calls} model call{'s' if state.calls != 1 else ''}")
    if state.models_line():  # a cheaper sub-model: its own share
        parts.append(state.models_line())
    files = _files(state)
    if files is not None and files.phrase():
        parts.append(files.phrase())
    return parts


def _files(state: RunState) -> Any:
    """The finished run's file changes (``FileChanges``: what its cells wrote, deleted, renamed), if any."""
    files = getattr(state.result, "files", None)
    return files if hasattr(files, "lines") and hasattr(files, "phrase") else None


def files_html(state: RunState) -> str:
    """One line per list (written, deleted, renamed, possibly written); "" when the run touched no file."""
    files = _files(state)
    if not files:
        return ""
    return "<ul class='nbm-files'>" + "".join(f"<li>{html.escape(line)}</li>" for line in files.lines()) + "</ul>"


def summary_text(state: RunState, *, message: bool = True) -> str:
    """One line: ``rlm done in 3.2 s · 4 iterations · 12/50 sub-calls · 1,234 tokens``.

    ``message=False`` leaves out a failure's message, for displays above the caller's error line.
    """
    line = " · ".join(summary_parts(state))
    if message and state.status in ("failed", "interrupted") and state.message:
        line += f" — {state.message}"
    return line


def grid_html(state: RunState) -> str:
    rows = state.grid_rows()
    if not rows:
        return ""
    n = len(rows[0][1])
    head = "".join(f"<th>round {r}</th>" for r in range(1, n + 1))
    body = []
    for agent, cells in rows:
        tds = "".join(
            f"<td class='nbm-{c.state if c else 'waiting'}'>{html.escape(c.label() if c else '·')}</td>"
            for c in cells
        )
        body.append(f"<tr><th>{html.escape(agent)}</th>{tds}</tr>")
    return f"<table class='nbm-grid'><tr><th>agent</th>{head}</tr>{''.join(body)}</table>"


def plan_html(state: RunState) -> str:
    if not state.plan:
        return ""
    items = []
    for s in state.plan:
        extra = f" <small>({s.attempts} attempts)</small>" if s.attempts > 1 else ""
        items.append(f"<li class='nbm-{s.status}'>{_PLAN_MARK[s.status]} {html.escape(s.title)}{extra}</li>")
    return f"<ul class='nbm-plan' style='list-style:none;padding-left:0.5em'>{''.join(items)}</ul>"


def iterations_html(state: RunState, limit: int = _CUT) -> str:
    out = []
    for it in state.iterations:
        out.append(
            f"<details><summary>iteration {it.i} ({it.seconds:.1f} s)</summary>"
            f"<pre>{html.escape(_cut(it.code, limit))}</pre>"
            f"<pre style='opacity:.8'>{html.escape(_cut(it.output, limit))}</pre></details>"
        )
    return "".join(out)


def summary_html(state: RunState, *, message: bool = True) -> str:
    """The compact HTML left in the notebook: one line, details folded."""
    color = {"done": "#2e7d32", "failed": "#c62828", "interrupted": "#ef6c00"}.get(state.status, "#555")
    parts = [
        f"<div class='nbm-summary'><span style='color:{color}'>●</span> "
        f"<b>nbmagic</b> {html.escape(summary_text(state, message=message))}"
    ]
    if state.plan:
        parts.append(f"<details><summary>plan</summary>{plan_html(state)}</details>")
    if state.grid:
        parts.append(f"<details><summary>agents</summary>{grid_html(state)}</details>")
    if state.iterations:
        parts.append(f"<details><summary>iterations</summary>{iterations_html(state)}</details>")
    files = files_html(state)
    if files:
        parts.append(f"<details><summary>files</summary>{files}</details>")
    if state.notices:
        notes = "".join(f"<li>{html.escape(m)}</li>" for _, m in state.notices)
        parts.append(f"<details><summary>notices ({len(state.notices)})</summary><ul>{notes}</ul></details>")
    parts.append("</div>")
    return "".join(parts)


class RunSummary:
    """Display object for the end of a run (replaces the live dashboard)."""

    def __init__(self, state: RunState, *, message: bool = True) -> None:
        self.state = state
        self.message = message  # False: the caller prints a failure's message itself, once

    def _repr_mimebundle_(self, include: Any = None, exclude: Any = None) -> dict[str, str]:
        return {"text/plain": "nbmagic: " + summary_text(self.state, message=self.message),
                "text/html": summary_html(self.state, message=self.message)}

    def __repr__(self) -> str:
        return "nbmagic: " + summary_text(self.state)


@dataclass
class MagicResult:
    """What ``%%agent`` and ``%rlm`` return (into ``_``) and store with ``--out VAR``.

    ``answer`` for RLM runs, ``cells`` (nbformat cells with outputs) for the
    notebook agent; ``trajectory`` and ``usage`` for both. ``status`` is ``done``,
    ``interrupted`` (``partial`` is true and only finished work is here) or
    ``failed``. ``raw`` is the engine's own result object when it finished.
    """

    kind: str
    answer: Any = None
    cells: list[Any] = field(default_factory=list)
    plan: list[str] = field(default_factory=list)
    trajectory: list[dict[str, Any]] = field(default_factory=list)
    usage: Any = None
    seconds: float = 0.0
    status: str = "done"
    message: str = ""
    summary: str = ""
    raw: Any = None

    @property
    def ok(self) -> bool:
        """Finished, and (for the agent) every step succeeded."""
        return self.status == "done" and getattr(self.raw, "ok", True) is not False

    @property
    def partial(self) -> bool:
        return self.status == "interrupted"

    def __str__(self) -> str:
        if self.answer is not None:
            return str(self.answer)
        return self.summary or self.message

    def view(self) -> Any:
        """The RLM trajectory as a collapsible HTML view (see :mod:`nbmagic.ui.trajectory_view`)."""
        from nbmagic.ui.trajectory_view import TrajectoryView

        return TrajectoryView(self)

    def __repr__(self) -> str:
        what = f"answer={_short(self.answer)!r}" if self.answer is not None else f"cells={len(self.cells)}"
        return f"<nbmagic {self.kind} result {self.status}: {what}, {self.seconds:.1f} s>"

    def _repr_mimebundle_(self, include: Any = None, exclude: Any = None) -> dict[str, str]:
        # the facts line (time, tokens, ...) is already in the output above, left by the
        # progress display; the result shows what was asked for: the answer, or what was done
        if self.answer is not None:
            text = str(self.answer)
            if getattr(self.raw, "computed", True) is False:  # an RLM answer given in prose, never computed
                warn = next((n for n in getattr(self.raw, "notes", None) or [] if n.startswith("not computed: the answer")),
                            "not computed: the model never ran code that worked; this is its guess in prose")
                return {"text/plain": f"{text}\n({warn})", "text/markdown": f"{text}\n\n**⚠ {warn}**"}
            return {"text/plain": text, "text/markdown": text}
        body = self.message or self.summary or f"{self.kind} {self.status}"
        html_body = html.escape(body).replace("\n", "<br>")
        return {"text/plain": body, "text/html": f"<div class='nbm-result'>{html_body}</div>"}


def _short(value: Any, limit: int = 60) -> str:
    text = str(value)
    return text if len(text) <= limit else text[: limit - 1] + "…"
