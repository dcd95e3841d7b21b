"""``python -m nbmagic.eval agent --model SPEC [--planner auto] [--tasks N]``: the agent on its own suite.

Each task (:mod:`nbmagic.eval.agent_suite`) runs in a fresh folder holding its
table, in a fresh namespace, with the cells written to a notebook there; the
answer is judged from what the run showed, and the notebook is re-run top to
bottom in a fresh kernel (:func:`nbmagic.notebook.verify.verify_notebook`). The
chosen planner and the ``onecall`` baseline (one reply, its cell run once, no
plan, no fixes, no answer) run the same tasks on the same model, side by side.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from nbmagic.agent.planner import PLANNERS
from nbmagic.errors import ConfigError, NbmagicError

HELP = "notebook-agent suite: share correct, notebooks that run, seconds, tokens; one-call baseline beside"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", required=True, help="model spec, e.g. gguf:/path/model.gguf (temperature 0)")
    p.add_argument("--planner", choices=PLANNERS, default="auto", help="the agent's planner (default auto)")
    p.add_argument("--tasks", default=None, metavar="N|ID,ID",
                   help="the first N tasks, or task ids comma-separated (default: all)")
    p.add_argument("--max-fixes", type=int, default=3, help="fix attempts per cell (default 3)")
    p.add_argument("--timeout", type=float, default=30.0, help="seconds one cell may run (default 30)")
    p.add_argument("--no-baseline", action="store_true", help="skip the onecall baseline")
    p.add_argument("--no-verify", action="store_true", help="do not re-run the notebooks in a fresh kernel")
    p.add_argument("--keep", default=None, metavar="DIR", help="keep each task's folder (notebook included) here")
    p.add_argument("--json", default=None, metavar="PATH", help="also write every run as JSON")
    p.add_argument("--quiet", action="store_true", help="no per-task progress lines")


@dataclass
class TaskRun:
    """One task under one planner."""

    task: str
    planner: str
    correct: bool
    verified: bool | None
    seconds: float
    tokens: int
    calls: int
    first_cell_seconds: float | None
    steps_ok: int
    steps: int
    shown: str
    error: str = ""


def select_tasks(tasks: list[Any], spec: str | None) -> list[Any]:
    if not spec:
        return tasks
    if spec.strip().isdigit():
        n = int(spec)
        if n < 1:
            raise ConfigError("--tasks must be at least 1.")
        return tasks[:n]
    ids = [t.strip() for t in spec.split(",") if t.strip()]
    known = {t.id: t for t in tasks}
    unknown = [i for i in ids if i not in known]
    if unknown:
        raise ConfigError(f"Unknown task id(s) {', '.join(unknown)}; known: {', '.join(known)}.")
    return [known[i] for i in ids]


def run_task(task: Any, tables: Any, model: Any, planner: str, *, max_fixes: int, timeout: float,
             verify: bool, folder: Path) -> TaskRun:
    """Run one task in ``folder`` (its table written there) and judge it."""
    from nbmagic.agent.core import NotebookAgent
    from nbmagic.eval.agent_suite import check, shown_text
    from nbmagic.notebook.sinks import FileSink

    folder.mkdir(parents=True, exist_ok=True)
    tables.write(folder, task.files)
    out = folder / f"{task.id}.ipynb"
    sink = FileSink(out, force=True, base_dir=folder)
    agent = NotebookAgent(model, planner=planner, max_fixes=max_fixes, cell_timeout=timeout)
    usage0 = model.usage
    t0 = time.perf_counter()
    error = ""
    result = None
    try:
        result = agent.run(task.request, {"__name__": "__main__"}, sink=sink, base_dir=folder)
    except NbmagicError as exc:
        error = exc.message
        result = exc.partial
    seconds = time.perf_counter() - t0
    used = model.usage - usage0
    shown = shown_text(result) if result is not None else ""
    verified: bool | None = None
    if verify:
        from nbmagic.notebook.verify import verify_notebook

        verified = out.exists() and verify_notebook(out, timeout=max(60.0, timeout * 2)).ok
    steps = [c for c in (result.cells if result is not None else []) if c.get("cell_type") == "code"]
    return TaskRun(
        task=task.id, planner=planner, correct=check(task, shown), verified=verified,
        seconds=round(seconds, 2), tokens=used.total_tokens, calls=used.calls,
        first_cell_seconds=None if result is None or result.first_cell_seconds is None
        else round(result.first_cell_seconds, 2),
        steps_ok=sum(c.metadata.get("nbmagic", {}).get("status") == "ok" for c in steps), steps=len(steps),
        shown=shown[:400], error=error,
    )


def summarize(runs: list[TaskRun]) -> dict[str, Any]:
    n = len(runs)
    verified = [r.verified for r in runs if r.verified is not None]
    firsts = sorted(r.first_cell_seconds for r in runs if r.first_cell_seconds is not None)
    return {
        "tasks": n,
        "correct": sum(r.correct for r in runs),
        "share_correct": round(sum(r.correct for r in runs) / n, 3) if n else 0.0,
        "share_run_top_to_bottom": round(sum(verified) / len(verified), 3) if verified else None,
        "seconds_per_task": round(sum(r.seconds for r in runs) / n, 1) if n else 0.0,
        "tokens_per_task": round(sum(r.tokens for r in runs) / n) if n else 0,
        "calls_per_task": round(sum(r.calls for r in runs) / n, 1) if n else 0.0,
        "median_first_cell_seconds": firsts[len(firsts) // 2] if firsts else None,
    }


def format_table(model: str, summaries: dict[str, dict[str, Any]]) -> str:
    lines = [f"model: {model}",
             f"{'planner':<10}{'correct':>12}{'runs':>8}{'s/task':>9}{'tokens/task':>13}{'calls':>7}{'1st cell s':>12}"]
    for planner, s in summaries.items():
        runs = "-" if s["share_run_top_to_bottom"] is None else f"{100 * s['share_run_top_to_bottom']:.0f}%"
        first = "-" if s["median_first_cell_seconds"] is None else f"{s['median_first_cell_seconds']:.1f}"
        lines.append(f"{planner:<10}{s['correct']:>4}/{s['tasks']:<3}{100 * s['share_correct']:>4.0f}%{runs:>8}"
                     f"{s['seconds_per_task']:>9.1f}{s['tokens_per_task']:>13}{s['calls_per_task']:>7.1f}{first:>12}")
    if len(summaries) == 2:
        (a, sa), (b, sb) = summaries.items()
        lines.append(f"{a} - {b}: {100 * (sa['share_correct'] - sb['share_correct']):+.0f} points correct")
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    from nbmagic.eval.agent_suite import make_tables, make_tasks
    from nbmagic.llm.specs import load_model

    if args.json and (Path(args.json).is_dir() or not Path(args.json).resolve().parent.is_dir()):
        raise ConfigError(f"--json {args.json!r}: not a file in an existing folder.")
    if not 0 <= args.max_fixes <= 20:
        raise ConfigError("--max-fixes must be from 0 to 20.")
    if not args.timeout > 0:
        raise ConfigError("--timeout must be a positive number of seconds.")
    os.environ.setdefault("MPLBACKEND", "Agg")
    tables = make_tables()
    tasks = select_tasks(make_tasks(tables), args.tasks)
    model = load_model(args.model, default_params={"temperature": 0.0})
    planners = [args.planner] + ([] if args.no_baseline or args.planner == "onecall" else ["onecall"])
    runs: dict[str, list[TaskRun]] = {p: [] for p in planners}
    keep = Path(args.keep).expanduser() if args.keep else None
    with tempfile.TemporaryDirectory(prefix="nbmagic-eval-agent-") as tmp:
        root = keep or Path(tmp)
        for task in tasks:
            for planner in planners:
                r = run_task(task, tables, model, planner, max_fixes=args.max_fixes, timeout=args.timeout,
                             verify=not args.no_verify, folder=root / planner / task.id)
                runs[planner].append(r)
                if args.json:  # after every task: a long run that is stopped keeps what it measured
                    _write_json(args.json, model, runs)
                if not args.quiet:
                    mark = "correct" if r.correct else "wrong"
                    ran = "" if r.verified is None else (", runs" if r.verified else ", does not run")
                    print(f"  {task.id:<20} {planner:<8} {mark}{ran}, {r.seconds:.1f} s, {r.tokens} tokens"
                          + (f" ({r.error[:80]})" if r.error else ""), file=sys.stderr, flush=True)
    summaries = {p: summarize(rs) for p, rs in runs.items()}
    print(format_table(_label(model), summaries))
    if args.json:
        _write_json(args.json, model, runs)
    return 0


def _label(model: Any) -> str:
    return f"{model.backend}:{Path(model.name).name}"


def _write_json(path: str, model: Any, runs: dict[str, list[TaskRun]]) -> None:
    summaries = {p: summarize(rs) for p, rs in runs.items() if rs}
    Path(path).write_text(json.dumps({"model": _label(model), "summary": summaries,
                                      "runs": {p: [asdict(r) for r in rs] for p, rs in runs.items()}}, indent=1))
