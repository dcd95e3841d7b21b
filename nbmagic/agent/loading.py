"""The agent's own first cells: read the tables the request names, no model call.

Each CSV/TSV/JSON/Parquet/Excel file the request names is read into a DataFrame
named after the file (``sales_data.csv`` -> ``sales_data``), with date columns
parsed. The model's code then starts from real data, and the reflector knows which
DataFrame to point at when a cell invents a path (:func:`loaded_frames`).
"""

from __future__ import annotations

import keyword
import os
import re
from pathlib import Path
from typing import Any

from nbmagic.agent import context as ctx
from nbmagic.agent.codegen import CellDraft
from nbmagic.agent.result import Step, done_entry
from nbmagic.events import CellRun, StepFinished, StepStarted, emit


def load_steps(request: str, base: Path, namespace: Any, max_files: int) -> list[Step]:
    """One step per table the request names, its code written here (``step.fixed``)."""
    steps: list[Step] = []
    taken = set(namespace)
    for path in ctx.named_files(request, base)[:max_files]:
        reader = READERS.get(path.suffix.lower())
        if reader is None:
            continue
        try:
            shown = os.path.relpath(path, base)
        except ValueError:
            shown = str(path)
        if shown.startswith(".."):
            shown = str(path)
        name = frame_name(path, taken)
        taken.add(name)
        call = reader.format(path=repr(shown))
        if path.suffix.lower() in (".csv", ".tsv"):
            dates = ctx.date_columns(path, "\t" if path.suffix.lower() == ".tsv" else ",")
            if dates:
                call = call[:-1] + f", parse_dates={dates!r})"
        code = f"import pandas as pd\n\n{name} = pd.{call}\n{name}.head()"
        step = Step(len(steps), f"Load {path.name} into the DataFrame `{name}`")
        step.fixed = (code, f"Read `{shown}`, the file the request names, and look at its first rows.")
        steps.append(step)
    return steps


def loaded_frames(steps: list[Step]) -> dict[str, str]:
    """``{DataFrame name: file}`` for the loading steps that ran."""
    out: dict[str, str] = {}
    for s in steps:
        if s.fixed is None or s.status != "ok":
            continue
        m = re.match(r"import pandas as pd\n\n(\w+) = pd\.read_\w+\(('[^']*'|\"[^\"]*\")", s.fixed[0])
        if m:
            out[m.group(1)] = m.group(2)[1:-1]
    return out


#: pandas reader per file suffix (``{path}`` is the quoted path)
READERS = {
    ".csv": "read_csv({path})",
    ".tsv": "read_csv({path}, sep='\\t')",
    ".json": "read_json({path})",
    ".jsonl": "read_json({path}, lines=True)",
    ".parquet": "read_parquet({path})",
    ".xlsx": "read_excel({path})",
}


def frame_name(path: Path, taken: set[str]) -> str:
    """A variable name for a file's DataFrame: its stem as an identifier, never one already in use."""
    stem = re.sub(r"\W+", "_", path.stem.lower()).strip("_") or "data"
    if stem[0].isdigit() or keyword.iskeyword(stem):
        stem = f"df_{stem}"
    name, n = stem, 1
    while name in taken:
        name = f"{stem}_df" if n == 1 else f"{stem}_df{n}"
        n += 1
    return name


def run_load_step(r: Any, step: Step) -> None:
    """Run a cell the agent wrote itself (loading a file) in the run ``r``: no model, no fixes."""
    a = r.agent
    code, note = step.fixed
    draft = CellDraft(note, code)
    emit(r.events, StepStarted(step.index, step.index + 1, step.title))
    step.attempts = 1
    if a.dry_run:
        step.status = "dry-run"
        r.record_attempt(step, draft, None)
        r.deliver_step(step, draft, None)
        return
    approved = True if a.confirm is None else a.confirm(code)
    if isinstance(approved, str) and approved.strip():  # edited in review
        code = approved
        draft = CellDraft(note, code)
    elif not approved:
        step.status = "skipped"
        r.record_attempt(step, draft, None, error="not approved")
        emit(r.events, StepFinished(step.index, False, step.attempts))
        return
    ran = r.executor.run(code, a.cell_timeout)
    r.user.protect(step.index)
    emit(r.events, CellRun(step.index, 1, code, ran.ok, None if ran.ok else f"{ran.ename}: {ran.evalue}",
                           ran.seconds))
    r.record_attempt(step, draft, ran)
    step.status = "ok" if ran.ok else "failed"
    step.error = None if ran.ok else f"{ran.ename}: {ran.evalue}"
    r.deliver_step(step, draft, ran)
    # described, not shown: small models copy a code block they are shown instead of going on
    if not ran.ok:  # a loaded table is named in the prompt's notes; its load line here was copied as code
        r.done.append(done_entry(step, draft, ran))
