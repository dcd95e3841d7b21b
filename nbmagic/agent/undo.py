"""``%agent undo`` and ``%agent runs``: take a run back, as far as it can be taken back.

Each ``%%agent`` run is recorded (:func:`run_recorded`, records in
:mod:`nbmagic.execution.run_records`). :func:`undo` takes the last one (or a
named one) back:

1. the cells it inserted into the open notebook are removed through the frontend
   extension (:func:`nbmagic.notebook.live.remove_cells`); cells the user edited
   since stay unless ``--force``; where no extension answers, the message names
   the cells to delete by hand;
2. rebound variables get their old values back, created ones are deleted (both
   only where the user did not change them after the run);
3. files it wrote or deleted are listed, never touched; ``%pip install``, ``-o``
   notebooks and ``--kernel new`` runs say what undo cannot take back.

A second undo of the same run says there is nothing to undo (``--force`` retries
only the cells it kept).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from nbmagic.errors import ConfigError, NbmagicError
from nbmagic.execution.run_records import CellRef, RunRecord, record_run, run_log, undo_namespace

__all__ = ["SUBCOMMANDS", "run_recorded", "runs_text", "subcommand", "undo"]

T = TypeVar("T")

#: the words ``%agent <word>`` treats as commands rather than as a request
SUBCOMMANDS = ("undo", "runs")


def _where(sink: Any) -> tuple[str, str | None]:
    kind = type(sink).__name__
    if kind == "LiveNotebookSink":
        return "here", None
    if kind == "FileSink":
        return "file", str(getattr(sink, "path", "") or "") or None
    if kind == "NextInputSink":
        return "next-input", None
    return "collect", None


def run_recorded(go: Callable[[], T], shell: Any, sink: Any, title: str, *, kernel: str = "here") -> T:
    """Run ``go()`` (an agent run) and record what it changed, also when it ends early with a partial result."""
    where, path = _where(sink)
    ns = shell.user_ns
    hidden = getattr(shell, "user_ns_hidden", None)

    def remember(result: Any) -> None:
        if result is None:
            return
        cells = list(getattr(sink, "cells", None) or []) if where == "here" else None
        record_run(ns, result, title=title, where=where, kernel=kernel, output_path=path, cells=cells,
                   hidden=hidden)

    try:
        result = go()
    except NbmagicError as exc:
        remember(exc.partial)
        raise
    remember(result)
    return result


def subcommand(line: str) -> Callable[[Any], str] | None:
    """``%agent undo [RUN] [--force]`` / ``%agent runs``: the command, or ``None`` for a request.

    Anything else after ``undo`` is refused, so ``%agent undo`` never becomes a request.
    """
    words = line.split()
    if not words or words[0] not in SUBCOMMANDS:
        return None
    if words[0] == "runs":
        if len(words) > 1:
            raise ConfigError("%agent runs takes no arguments; it lists the runs %agent undo can take back.")
        return runs_text
    force = "--force" in words
    rest = [w for w in words[1:] if w != "--force"]
    if len(rest) > 1 or any(w.startswith("-") for w in rest):
        raise ConfigError("%agent undo [RUN_ID] [--force]: RUN_ID is one of those %agent runs lists "
                          "(default: the last run). To ask the agent for something, use %%agent.")
    run_id = rest[0] if rest else None
    return lambda shell: undo(shell, run_id, force=force)


def runs_text(shell: Any) -> str:
    log = run_log(shell.user_ns, getattr(shell, "user_ns_hidden", None))
    return repr(log)


def _names(refs: list[CellRef], record: RunRecord) -> str:
    """Cells as a person finds them: their first line."""
    out = []
    for ref in refs:
        first = next((line.strip() for line in ref.source.splitlines() if line.strip()), "(empty)")
        out.append(f"  - {ref.cell_type} cell {ref.id}: {first[:70]}")
    return "\n".join(out)


def _remove_cells(shell: Any, record: RunRecord, refs: list[CellRef], force: bool) -> list[str]:
    from nbmagic.notebook.live import frontend_present, remove_cells

    if not frontend_present(shell):
        record.cells_left = refs
        return [f"Could not remove its {len(refs)} cells: the nbmagic extension is not in this frontend "
                "(it needs JupyterLab 4 or Notebook 7). Delete them yourself:", _names(refs, record)]
    answer = remove_cells([{"id": r.id, "source": r.source} for r in refs], force=force, shell=shell)
    if answer is None:
        record.cells_left = []
        return [f"Asked the notebook to remove its {len(refs)} cells (cells you edited since stay; "
                "no answer came back in time, so check the notebook)."]
    by_id = {r.id: r for r in refs}
    removed, edited, missing = (answer.get(k) or [] for k in ("removed", "edited", "missing"))
    lines = [f"Removed {len(removed)} of its {len(refs)} cells from the notebook."]
    kept = [by_id[i] for i in edited if i in by_id]
    record.cells_left = kept
    if kept:
        lines += [f"Kept {len(kept)} cell{'s' if len(kept) != 1 else ''} you edited since (remove them too with `%agent undo "
                  f"{record.run_id} --force`, or delete them yourself):", _names(kept, record)]
    if missing:
        lines.append(f"{len(missing)} cells were no longer in the notebook.")
    return lines


def undo(shell: Any, run_id: str | None = None, *, force: bool = False) -> str:
    """Take back the run ``run_id`` (default: the last one not yet undone); returns the report."""
    ns = shell.user_ns
    log = run_log(ns, getattr(shell, "user_ns_hidden", None))
    if run_id is not None:
        try:
            record = log[run_id]
        except KeyError:
            known = ", ".join(r.run_id for r in log.records) or "none yet"
            raise ConfigError(f"%agent undo {run_id}: no such run (runs: {known}; see %agent runs).") from None
    else:
        record = log.last()
        if record is None:
            return "Nothing to undo: no %%agent run in this kernel is left to take back (see %agent runs)."
    if record.undone:
        if force and record.cells_left:
            return "\n".join(_remove_cells(shell, record, record.cells_left, True))
        return f"Nothing to undo: {record.run_id} was undone already."
    lines = [f"Undo {record.run_id} ({record.title[:60]!r}):"]
    # 1. cells
    if record.where == "here" and record.cells:
        lines += _remove_cells(shell, record, record.cells, force)
    elif record.where == "file":
        lines.append(f"Its cells went to {record.output_path}; undo leaves that notebook alone "
                     "(delete it yourself if you do not want it).")
    elif record.where == "next-input":
        lines.append("Its code was offered as the next cell (no extension here): delete that cell yourself "
                     "if you kept it.")
    # 2. variables
    report = undo_namespace(ns, record)
    if report.restored:
        lines.append("Restored your variables: " + ", ".join(report.restored) + ".")
    if report.deleted:
        lines.append("Deleted the variables it created: " + ", ".join(report.deleted) + ".")
    if report.changed_since:
        lines.append("Left alone (you changed them after the run): " + ", ".join(report.changed_since) + ".")
    if record.kernel == "new":
        lines.append("Its cells ran in a kernel of their own (--kernel new), which is gone: no variable here "
                     "changed.")
    # 3. what undo cannot take back
    if record.files_written:
        lines.append("Files it wrote (not deleted; remove them yourself if unwanted): "
                     + ", ".join(record.files_written[:20]) + ".")
    if record.files_deleted:
        lines.append("Files it deleted (undo cannot bring them back): " + ", ".join(record.files_deleted[:20]) + ".")
    if record.installs:
        lines.append("Packages it installed stay installed (`%pip uninstall " + " ".join(record.installs)
                     + "` removes them).")
    record.undone = True
    if len(lines) == 1:
        lines.append("It changed nothing that undo can take back.")
    return "\n".join(lines)
