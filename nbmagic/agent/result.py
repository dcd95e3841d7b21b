"""What a run produced (:class:`AgentResult`), one step's state (:class:`Step`), the summary text."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from nbmagic.agent import files as written
from nbmagic.execution.file_ledger import FileChanges
from nbmagic.llm.base import Usage

#: where the old values of user variables that generated cells rebound are kept (a dict)
SAVED_NAME = "_nbmagic_saved"


def cells_module() -> Any:
    """The notebook layer's cell constructors (imported on first use: nbformat is not light)."""
    from nbmagic.notebook import cells

    return cells


@dataclass
class AgentResult:
    """What a run produced. ``cells`` are nbformat v4 cells, outputs included.

    An :class:`~nbmagic.lifecycle.EngineResult` (and a :class:`~nbmagic.lifecycle.CellsResult`), so
    the magics and the CLI read it as they read the RLM's and RecursiveMAS's results.
    """

    cells: list[Any]
    summary: str
    plan: list[str]
    trajectory: list[dict[str, Any]]
    usage: Usage
    ok: bool
    failed_steps: list[int] = field(default_factory=list)  # 1-based
    skipped_steps: list[int] = field(default_factory=list)  # declined in confirm mode
    rebound: list[str] = field(default_factory=list)  # user variables given new values
    #: their values before the run, kept reachable (also in the namespace's ``_nbmagic_saved``)
    replaced: dict[str, Any] = field(default_factory=dict)
    new_variables: list[str] = field(default_factory=list)
    #: files the run's cells wrote, deleted, renamed (old, new) (see nbmagic.execution.file_ledger);
    #: ``files_possibly_written``: changed while a cell ran a process or compiled code, not seen written
    files_written: list[str] = field(default_factory=list)
    files_deleted: list[str] = field(default_factory=list)
    files_renamed: list[tuple[str, str]] = field(default_factory=list)
    files_possibly_written: list[str] = field(default_factory=list)
    files: FileChanges = field(default_factory=FileChanges)  # all of the above, and possibly_deleted
    interrupted: bool = False
    seconds: float = 0.0
    model: str = ""
    mode: str = ""  # planning mode: latent | text | none
    sink_summary: str = ""
    answer: str = ""  # the closing answer in words ("" when none was written)
    planner: str = ""  # the planner that ran (``auto`` resolved)
    first_cell_seconds: float | None = None  # from the start to the first code cell's first run
    complete: bool = True  # False on a partial result carried by an error or an interrupt

    @property
    def total_usage(self) -> Usage:
        """The run's tokens and calls (one model: the same as ``usage``)."""
        return self.usage

    @property
    def steps(self) -> list[dict[str, Any]]:
        """The trajectory (the :class:`~nbmagic.lifecycle.EngineResult` name for it)."""
        return self.trajectory

    @property
    def warnings(self) -> list[str]:
        """None: what went wrong is in the summary, step by step."""
        return []

    def __str__(self) -> str:
        return self.summary

    def notebook(self) -> Any:
        """The cells as a new nbformat v4 notebook."""
        return cells_module().new_notebook(self.cells)


@dataclass
class Step:
    index: int
    title: str
    status: str = "pending"  # ok | failed | skipped | dry-run | not-run
    attempts: int = 0
    error: str | None = None
    cells: list[Any] = field(default_factory=list)
    fixed: tuple[str, str] | None = None  # (code, explanation) of a cell the agent writes itself
    part: Any = None  # the :class:`~nbmagic.agent.parts.Part` this step answers (None: a loading step)
    answering: bool = False  # the step whose cell must print the request's exact answer line
    verdict: str = ""  # the reflector's last finding on an attempt that ran (why it was not accepted)


def summarize(result: AgentResult, steps: list[Step], *, dry_run: bool = False) -> str:
    """A few lines: what was done, what failed, what changed."""
    n = len(steps)
    ok = sum(s.status == "ok" for s in steps)
    head = "Dry run" if dry_run else ("Interrupted" if result.interrupted else "Done")
    planner = f"{result.mode} planning" if result.mode not in ("none", "parts") else (
        "parts read from the request" if result.mode == "parts" else "no planning")
    lines = [f"{head}: {n} step(s) ({planner}, {result.model})"
             + ("" if dry_run else f", {ok} succeeded, {len(result.failed_steps)} failed") + "."]
    for s in steps:
        if s.status == "ok":
            note = "ok" if s.attempts == 1 else f"ok after {s.attempts} attempts"
            if s.verdict:  # kept when the attempts ran out: it runs, but does not answer its part
                note = f"kept after {s.attempts} attempts, but {s.verdict}"
        elif s.status == "failed":
            note = f"FAILED after {s.attempts} attempt(s): {s.error}"
        elif s.status == "skipped":
            note = "skipped (not approved)"
        elif s.status == "dry-run":
            note = "code written, not run"
        else:
            note = "not run"
        lines.append(f"  {s.index + 1}. {s.title} — {note}")
    if result.new_variables:
        lines.append("New variables: " + ", ".join(result.new_variables[:20]))
    if result.rebound:
        lines.append("Your variables given new values: " + ", ".join(result.rebound)
                     + " (the old values are in " + ", ".join(f"{SAVED_NAME}[{n!r}]" for n in result.rebound) + ")")
    lines.extend(result.files.lines())
    if result.answer:
        first = result.answer.strip().splitlines()[0]
        lines.append("Answer: " + (first if len(first) <= 200 else first[:199] + "…"))
    if result.sink_summary:
        lines.append(result.sink_summary)
    return "\n".join(lines)



def done_entry(step: Step, draft: Any, run: Any) -> str:
    """A finished step as the next prompts see it: its title and a short output, no code.

    Shown earlier cells' code, a small model writes it again (the 0.5B coder answered "top 5
    products" with the load cell's ``print(sales.head())``, comments and all); what those cells
    made is listed with names, shapes and columns in the prompt's variables section instead.
    """
    out = run.text(300).strip() if run is not None else "(not run)"
    status = "done" if step.status in ("ok", "dry-run") else "FAILED"
    return f"- Step {step.index + 1} ({status}): {step.title}. It showed:\n{out or '(nothing)'}"


def observed_entry(step: Step, run: Any) -> str:
    """What a finished step showed, for the refine and answer prompts (plain text, capped)."""
    out = run.text(700).strip() or "(no output)"
    return f"Step {step.index + 1} ({step.title}) output:\n{out}"


def run_result(run: Any, *, interrupted: bool = False, complete: bool = True) -> AgentResult:
    """The result of the :class:`~nbmagic.agent.loop.Run` ``run`` so far (finished, or partial
    with ``complete=False`` when the run stopped early)."""
    model = run.agent._model
    usage = (model.usage - run.usage0) if model is not None else Usage()
    user = getattr(run, "user", None)
    new_vars = user.new_names() if user is not None else []
    skip = {p for p in (run.sink_path, *written.open_notebooks(run.ns, run.base)) if p}
    ledger = getattr(run, "files", None)
    files = ledger.changes(skip=skip) if ledger is not None else FileChanges()
    failed = [s.index + 1 for s in run.steps if s.status == "failed"]
    skipped = [s.index + 1 for s in run.steps if s.status == "skipped"]
    result = AgentResult(
        cells=list(run.cells),
        summary="",
        plan=[s.title for s in run.steps],
        trajectory=list(run.trajectory),
        usage=usage,
        ok=not failed and not interrupted,
        failed_steps=failed,
        skipped_steps=skipped,
        rebound=list(user.rebound) if user is not None else [],
        replaced=dict(user.replaced) if user is not None else {},
        new_variables=new_vars,
        files_written=files.written,
        files_deleted=files.deleted,
        files_renamed=files.renamed,
        files_possibly_written=files.possibly_written,
        files=files,
        interrupted=interrupted,
        seconds=time.perf_counter() - run.t0,
        model=run.model_label,
        mode=run.mode,
        sink_summary=run.sink_summary,
        answer=run.answer,
        planner=run.planner,
        first_cell_seconds=run.first_cell,
        complete=complete,
    )
    result.summary = summarize(result, run.steps, dry_run=run.agent.dry_run)
    if getattr(run, "cap", ""):  # before the sink's line, which stays last
        lines = result.summary.split("\n")
        at = len(lines) - 1 if run.sink_summary and lines[-1] == run.sink_summary else len(lines)
        lines.insert(at, f"Spend cap: {run.cap} ({run.spent:,} tokens spent).")
        result.summary = "\n".join(lines)
    return result
