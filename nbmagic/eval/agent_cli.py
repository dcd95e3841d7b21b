"""``python -m nbmagic.eval agent --model SPEC [--suite S,S] [--planner P,P]``: the agent, judged part by part.

Three suites (:mod:`nbmagic.eval.agent_tasklist`): ``single`` (one question over
the project's tables), ``multipart`` (a table, a figure and an answer in one
request, each part checked exactly) and ``external`` (frozen benchmark-style
questions over data sets packages ship offline, with an exact ``Answer:`` line;
their hash is printed). Each task runs in a fresh folder holding its CSV, in a
fresh namespace, the cells written to a notebook there, under every planner
asked for (``default`` is whatever the agent does unasked), side by side on one
model at temperature 0. Reported per suite and planner: share of parts and of
whole requests correct, notebooks that re-run top to bottom in a fresh kernel,
seconds to the first cell the model wrote (the agent's own load cell does not
count; timed from the events), seconds, tokens and calls per request.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from nbmagic.errors import ConfigError, NbmagicError
from nbmagic.eval.agent_judge import is_load_cell

HELP = "notebook-agent suites (single, multipart, external): parts and requests correct per planner, side by side"
DEFAULT_PLANNERS = "default,none,onecall"
#: ``--ci``: the first task of each suite
CI_TASKS = 1


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", required=True, help="model spec, e.g. gguf:/path/model.gguf (temperature 0)")
    p.add_argument("--suite", default="single,multipart,external", metavar="S,S",
                   help="suites to run: single, multipart, external (default: all three)")
    p.add_argument("--planner", default=DEFAULT_PLANNERS, metavar="P,P",
                   help=f"planners side by side; 'default' is the agent's own choice (default {DEFAULT_PLANNERS})")
    p.add_argument("--tasks", default=None, metavar="N|ID,ID",
                   help="the first N tasks of each suite, or task ids comma-separated (default: all)")
    p.add_argument("--ci", action="store_true", help="a CI-sized subset: the first task of each suite")
    p.add_argument("--max-fixes", type=int, default=3, help="fix attempts per cell (default 3)")
    p.add_argument("--timeout", type=float, default=30.0, help="seconds one cell may run (default 30)")
    p.add_argument("--no-verify", action="store_true", help="do not re-run the notebooks in a fresh kernel")
    p.add_argument("--keep", default=None, metavar="DIR", help="keep each task's folder (notebook included) here")
    p.add_argument("--json", default=None, metavar="PATH", help="also write every run as JSON")
    p.add_argument("--quiet", action="store_true", help="no per-task progress lines")


@dataclass
class TaskRun:
    """One task under one planner."""

    task: str
    suite: str
    planner: str
    resolved: str  # the planner the agent ran ("default" resolved)
    parts: list[bool]
    part_names: list[str]
    correct: bool  # every part
    verified: bool | None
    seconds: float
    tokens: int
    calls: int
    first_cell_seconds: float | None  # the first model-written code cell accepted into the notebook
    first_run_seconds: float | None  # the first model-written code that ran (any attempt)
    steps_ok: int
    steps: int
    answer_line: bool  # an ``Answer:`` line was printed at all
    shown: str
    error: str = ""


# --- options ---------------------------------------------------------------------------------------


def parse_list(text: str, what: str) -> list[str]:
    items = [t.strip() for t in (text or "").split(",") if t.strip()]
    if not items:
        raise ConfigError(f"--{what} needs at least one value.")
    if len(set(items)) != len(items):
        raise ConfigError(f"--{what} names a value twice: {text!r}.")
    return items


def check_planners(planners: list[str]) -> None:
    """Each planner must be one the agent accepts (asked of the agent itself: one message)."""
    from nbmagic.agent.core import NotebookAgent

    for p in planners:
        if p != "default":
            try:
                NotebookAgent(None, planner=p)
            except ConfigError as exc:
                raise ConfigError(f"--planner {p!r}: {exc.message} ('default' is the agent's own choice)") from None


def select_tasks(tasks: list[Any], spec: str | None, suites: list[str]) -> list[Any]:
    """``spec``: None (all), N (the first N of each suite) or task ids."""
    if not spec:
        return tasks
    if spec.strip().isdigit():
        n = int(spec)
        if n < 1:
            raise ConfigError("--tasks must be at least 1.")
        return [t for s in suites for t in [t for t in tasks if t.suite == s][:n]]
    ids = parse_list(spec, "tasks")
    known = {t.id: t for t in tasks}
    unknown = [i for i in ids if i not in known]
    if unknown:
        shown = ", ".join(list(known)[:12]) + (", ..." if len(known) > 12 else "")
        raise ConfigError(f"Unknown task id(s) {', '.join(unknown)} in the suite(s) {', '.join(suites)}; "
                          f"known: {shown}.")
    return [known[i] for i in ids]


# --- one run ---------------------------------------------------------------------------------------

class FirstCellClock:
    """Event handler: when the first model-written code cell ran, and when it was accepted."""

    def __init__(self, t0: float) -> None:
        self.t0 = t0
        self.first_run: float | None = None
        self.first_cell: float | None = None

    def __call__(self, event: Any) -> None:
        name = type(event).__name__
        if name == "CellRun" and self.first_run is None and not is_load_cell(event.source):
            self.first_run = event.t - self.t0
        elif name == "CellAccepted" and self.first_cell is None:
            cell = event.cell
            if cell.get("cell_type") == "code" and not is_load_cell(str(cell.get("source", ""))):
                self.first_cell = event.t - self.t0


def run_task(task: Any, model: Any, planner: str, *, max_fixes: int, timeout: float, verify: bool,
             folder: Path) -> TaskRun:
    """Run one task in ``folder`` (its files written there) and judge every part."""
    import matplotlib.pyplot as plt

    from nbmagic.agent.core import NotebookAgent
    from nbmagic.agent.executor import NamespaceExecutor
    from nbmagic.eval.agent_judge import FigureRecorder, last_answer_line, view_of
    from nbmagic.notebook.sinks import FileSink

    task.prepare(folder)
    out = folder / f"{task.id}.ipynb"
    sink = FileSink(out, force=True, base_dir=folder)
    plt.close("all")
    namespace: dict[str, Any] = {"__name__": "__main__"}
    executor = FigureRecorder(NamespaceExecutor(namespace, cwd=folder))
    t0 = time.monotonic()
    clock = FirstCellClock(t0)
    kwargs: dict[str, Any] = {} if planner == "default" else {"planner": planner}
    agent = NotebookAgent(model, max_fixes=max_fixes, cell_timeout=timeout, on_event=clock, **kwargs)
    usage0 = model.usage
    error = ""
    result = None
    try:
        result = agent.run(task.request, executor, sink=sink, base_dir=folder)
    except NbmagicError as exc:
        error = exc.message
        result = getattr(exc, "partial", None)
    seconds = time.monotonic() - t0
    used = model.usage - usage0
    view = view_of(result, namespace, executor.series)
    parts = [bool(p.judge(view)) for p in task.parts]
    verified: bool | None = None
    if verify:
        from nbmagic.notebook.verify import verify_notebook

        verified = out.exists() and verify_notebook(out, timeout=max(60.0, timeout * 2)).ok
    plt.close("all")
    cells = result.cells if result is not None else []
    steps = [c for c in cells if c.get("cell_type") == "code"]
    shown = "\n".join(p for p in [view.answer, *view.outputs[-2:]] if p)
    return TaskRun(
        task=task.id, suite=task.suite, planner=planner,
        resolved=(getattr(result, "planner", "") or planner) if result is not None else planner,
        parts=parts, part_names=[p.name for p in task.parts], correct=all(parts), verified=verified,
        seconds=round(seconds, 2), tokens=used.total_tokens, calls=used.calls,
        first_cell_seconds=None if clock.first_cell is None else round(clock.first_cell, 2),
        first_run_seconds=None if clock.first_run is None else round(clock.first_run, 2),
        steps_ok=sum(c.get("metadata", {}).get("nbmagic", {}).get("status") == "ok" for c in steps),
        steps=len(steps), answer_line=last_answer_line([*view.outputs, view.answer]) is not None,
        shown=shown[:600], error=error,
    )


# --- report ----------------------------------------------------------------------------------------


@dataclass
class Summary:
    requests: int = 0
    requests_correct: int = 0
    parts: int = 0
    parts_correct: int = 0
    run_top_to_bottom: float | None = None
    median_first_cell_seconds: float | None = None
    first_cell_within_15s: float | None = None
    seconds_per_request: float = 0.0
    tokens_per_request: int = 0
    calls_per_request: float = 0.0
    answer_lines: int = 0
    resolved: list[str] = field(default_factory=list)


def summarize(runs: list[TaskRun]) -> Summary:
    n = len(runs)
    if not n:
        return Summary()
    verified = [r.verified for r in runs if r.verified is not None]
    firsts = sorted(r.first_cell_seconds for r in runs if r.first_cell_seconds is not None)
    return Summary(
        requests=n, requests_correct=sum(r.correct for r in runs),
        parts=sum(len(r.parts) for r in runs), parts_correct=sum(sum(r.parts) for r in runs),
        run_top_to_bottom=round(sum(verified) / len(verified), 3) if verified else None,
        median_first_cell_seconds=firsts[len(firsts) // 2] if firsts else None,
        first_cell_within_15s=round(sum(f <= 15 for f in firsts) / n, 3),
        seconds_per_request=round(sum(r.seconds for r in runs) / n, 1),
        tokens_per_request=round(sum(r.tokens for r in runs) / n),
        calls_per_request=round(sum(r.calls for r in runs) / n, 1),
        answer_lines=sum(r.answer_line for r in runs),
        resolved=sorted({r.resolved for r in runs}),
    )


def _share(k: int, n: int) -> str:
    return f"{k:>3}/{n:<3}{100 * k / n:>4.0f}%" if n else "-"


def format_table(model: str, suite_hash: str | None, table: dict[str, dict[str, Summary]]) -> str:
    """One table: a row per suite and planner."""
    head = f"model: {model}" + (f"   external suite sha256:{suite_hash[:16]}" if suite_hash else "")
    lines = [head, f"{'suite':<10}{'planner':<15}{'requests':>13}{'parts':>13}{'runs':>7}{'1st cell s':>11}"
                   f"{'<=15s':>7}{'s/req':>8}{'tokens':>8}{'calls':>6}"]
    for suite, by_planner in table.items():
        for planner, s in by_planner.items():
            label = planner if planner != "default" or not s.resolved else f"default={'/'.join(s.resolved)}"
            runs = "-" if s.run_top_to_bottom is None else f"{100 * s.run_top_to_bottom:.0f}%"
            first = "-" if s.median_first_cell_seconds is None else f"{s.median_first_cell_seconds:.1f}"
            within = "-" if s.first_cell_within_15s is None else f"{100 * s.first_cell_within_15s:.0f}%"
            lines.append(f"{suite:<10}{label[:14]:<15}{_share(s.requests_correct, s.requests):>13}"
                         f"{_share(s.parts_correct, s.parts):>13}{runs:>7}{first:>11}{within:>7}"
                         f"{s.seconds_per_request:>8.1f}{s.tokens_per_request:>8}{s.calls_per_request:>6.1f}")
    return "\n".join(lines)


def _tables(runs: list[TaskRun], suites: list[str], planners: list[str]) -> dict[str, dict[str, Summary]]:
    return {s: {p: summarize([r for r in runs if r.suite == s and r.planner == p]) for p in planners}
            for s in suites if any(r.suite == s for r in runs)}


def run(args: argparse.Namespace) -> int:
    from nbmagic.eval.agent_tasklist import SUITES, data_versions, external_hash, make_suite
    from nbmagic.llm.specs import load_model

    if args.json and (Path(args.json).is_dir() or not Path(args.json).resolve().parent.is_dir()):
        raise ConfigError(f"--json {args.json!r}: not a file in an existing folder.")
    if not 0 <= args.max_fixes <= 20:
        raise ConfigError("--max-fixes must be from 0 to 20.")
    if not args.timeout > 0:
        raise ConfigError("--timeout must be a positive number of seconds.")
    if args.ci and args.tasks:
        raise ConfigError("--ci picks its own tasks: leave out --tasks.")
    suites = parse_list(args.suite, "suite")
    bad = [s for s in suites if s not in SUITES]
    if bad:
        raise ConfigError(f"Unknown suite(s) {', '.join(bad)}: choose from {', '.join(SUITES)}.")
    planners = parse_list(args.planner, "planner")
    check_planners(planners)
    os.environ.setdefault("MPLBACKEND", "Agg")
    tasks = select_tasks([t for s in suites for t in make_suite(s)], str(CI_TASKS) if args.ci else args.tasks,
                         suites)
    suite_hash = external_hash() if "external" in suites else None
    model = load_model(args.model, default_params={"temperature": 0.0})
    runs: list[TaskRun] = []
    keep = Path(args.keep).expanduser() if args.keep else None
    label = f"{model.backend}:{Path(model.name).name}"
    meta = {"model": label, "external_sha256": suite_hash, "data_versions": data_versions() if suite_hash else {},
            "suites": suites, "planners": planners}
    with tempfile.TemporaryDirectory(prefix="nbmagic-eval-agent-") as tmp:
        root = keep or Path(tmp)
        for task in tasks:
            for planner in planners:
                r = run_task(task, model, planner, max_fixes=args.max_fixes, timeout=args.timeout,
                             verify=not args.no_verify, folder=root / planner / task.id)
                runs.append(r)
                if args.json:  # after every task: a long run that is stopped keeps what it measured
                    _write_json(args.json, meta, runs, suites, planners)
                if not args.quiet:
                    parts = "".join("+" if ok else "-" for ok in r.parts)
                    ran = "" if r.verified is None else (", runs" if r.verified else ", does not run")
                    print(f"  {task.id:<24} {planner:<8} [{parts}] {'correct' if r.correct else 'wrong'}{ran}, "
                          f"{r.seconds:.1f} s, {r.tokens} tokens" + (f" ({r.error[:80]})" if r.error else ""),
                          file=sys.stderr, flush=True)
    print(format_table(label, suite_hash, _tables(runs, suites, planners)))
    if args.json:
        _write_json(args.json, meta, runs, suites, planners)
    return 0


def _write_json(path: str, meta: dict[str, Any], runs: list[TaskRun], suites: list[str], planners: list[str]) -> None:
    summary = {s: {p: asdict(x) for p, x in by.items()} for s, by in _tables(runs, suites, planners).items()}
    Path(path).write_text(json.dumps({**meta, "summary": summary, "runs": [asdict(r) for r in runs]}, indent=1))
