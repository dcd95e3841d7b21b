"""Per-run records: what one ``%%agent`` run changed, so ``%agent undo`` can take it back.

A run changes four kinds of things, and undo treats each the way it can:

* **cells** it put in the open notebook (their ids, sources and kinds as sent):
  removed through the frontend extension, unless the user edited them since;
* **variables** it created (deleted by undo) and user variables it rebound (their
  values from before the run are kept here and put back by undo). A variable the
  user changed *after* the run is left alone: undo never overwrites newer work;
* **files** it wrote or deleted: listed, never touched (a file may be the point of
  the run, and deleting is not undoable);
* **side effects** it cannot take back: ``%pip install``, cells in a ``-o``
  notebook, cells that ran in a ``--kernel new`` kernel that is gone.

Records live in the namespace as ``_nbmagic_runs`` (a :class:`RunLog`, hidden from
``%who``), newest last, at most :data:`KEEP` of them (older ones release the values
they hold). ``_nbmagic_saved`` (name -> value before the latest rebinding) keeps
working as before; each record holds its own copy of the values it rebound.

Plain Python, no IPython: the magic and the Python API both build records with
:func:`record_run`, and :func:`undo_namespace` is the namespace half of undo.
"""

from __future__ import annotations

import time
from collections.abc import MutableMapping, Sequence
from dataclasses import dataclass, field
from typing import Any

__all__ = ["KEEP", "LOG_NAME", "CellRef", "RunLog", "RunRecord", "UndoReport", "record_run", "run_log",
           "undo_namespace"]

#: where the records live in the user's namespace
LOG_NAME = "_nbmagic_runs"
#: records kept (the oldest is dropped, with the values it held, when a new run is recorded)
KEEP = 20
#: the dict of old values the agent fills (``nbmagic.agent.core.SAVED_NAME``)
SAVED_NAME = "_nbmagic_saved"


@dataclass(frozen=True)
class CellRef:
    """A cell a run put in the notebook, as it was sent (an edit since changes ``source`` there)."""

    id: str
    cell_type: str
    source: str


@dataclass
class RunRecord:
    """What one run changed (see the module docstring).

    ``left`` maps each created or rebound variable to the value the run left in it, so
    undo can tell whether the user changed it since.
    """

    run_id: str
    title: str
    where: str = "here"  # here: cells in this notebook | file: a -o notebook | collect: nowhere | next-input
    kernel: str = "here"  # here | new (cells ran in a kernel of their own, now gone)
    output_path: str | None = None
    cells: list[CellRef] = field(default_factory=list)
    created: list[str] = field(default_factory=list)
    rebound: dict[str, Any] = field(default_factory=dict)  # name -> value before the run
    left: dict[str, Any] = field(default_factory=dict)  # name -> value the run left
    files_written: list[str] = field(default_factory=list)
    files_deleted: list[str] = field(default_factory=list)
    installs: list[str] = field(default_factory=list)
    interrupted: bool = False
    started: float = field(default_factory=time.time)
    undone: bool = False
    #: cells undo did not remove (edited since, or no frontend): ``%agent undo --force`` retries them
    cells_left: list[CellRef] = field(default_factory=list)

    def line(self) -> str:
        """One line for ``%agent runs``."""
        when = time.strftime("%H:%M:%S", time.localtime(self.started))
        bits = [f"{len(self.cells)} cells" + (f" in {self.output_path}" if self.where == "file" else "")]
        if self.created:
            bits.append(f"{len(self.created)} new variables")
        if self.rebound:
            bits.append("rebound " + ", ".join(self.rebound))
        if self.files_written:
            bits.append(f"{len(self.files_written)} files written")
        if self.installs:
            bits.append("installed " + ", ".join(self.installs))
        state = " [undone]" if self.undone else (" [interrupted]" if self.interrupted else "")
        title = self.title if len(self.title) <= 60 else self.title[:59] + "…"
        return f"{self.run_id}  {when}  {title!r}: " + "; ".join(bits) + state


class RunLog:
    """The records of this namespace's runs, newest last; ``log[run_id]``, ``log.last()``."""

    def __init__(self) -> None:
        self.records: list[RunRecord] = []
        self._count = 0

    def new_id(self) -> str:
        self._count += 1
        return f"run{self._count}"

    def add(self, record: RunRecord) -> RunRecord:
        self.records.append(record)
        del self.records[:-KEEP]
        return record

    def last(self) -> RunRecord | None:
        """The newest run that is not undone yet."""
        return next((r for r in reversed(self.records) if not r.undone), None)

    def __getitem__(self, run_id: str) -> RunRecord:
        for r in self.records:
            if r.run_id == run_id:
                return r
        raise KeyError(run_id)

    def __len__(self) -> int:
        return len(self.records)

    def __repr__(self) -> str:
        if not self.records:
            return "No %%agent runs recorded yet."
        return "\n".join(r.line() for r in self.records)


def run_log(ns: MutableMapping[str, Any], hidden: MutableMapping[str, Any] | None = None) -> RunLog:
    """The namespace's :class:`RunLog`, created (and hidden from ``%who``) on first use."""
    log = ns.get(LOG_NAME)
    if not isinstance(log, RunLog):
        log = ns[LOG_NAME] = RunLog()
        if hidden is not None:
            hidden[LOG_NAME] = log
    return log


def _source(cell: Any) -> str:
    src = cell.get("source", "")
    return "".join(src) if isinstance(src, list) else str(src)


def record_run(
    ns: MutableMapping[str, Any],
    result: Any,
    *,
    title: str,
    where: str = "here",
    kernel: str = "here",
    output_path: str | None = None,
    cells: Sequence[Any] | None = None,
    hidden: MutableMapping[str, Any] | None = None,
) -> RunRecord:
    """Record what ``result`` (an :class:`~nbmagic.agent.core.AgentResult`, possibly partial) changed.

    ``cells``: the cells as the sink sent them (their ids are the notebook's); the
    result's cells otherwise. Call it right after the run, before other code runs:
    the values the run left are read from ``ns`` now.
    """
    log = run_log(ns, hidden)
    sent = list(cells if cells is not None else getattr(result, "cells", []) or [])
    refs = [CellRef(str(c.get("id", "")), str(c.get("cell_type", "code")), _source(c)) for c in sent if c.get("id")]
    created = [n for n in getattr(result, "new_variables", []) or [] if n in ns and n != LOG_NAME]
    rebound = dict(getattr(result, "replaced", {}) or {})
    if kernel == "new":  # the variables lived in the other kernel; nothing here changed
        created, rebound = [], {}
    left = {n: ns[n] for n in [*created, *rebound] if n in ns}
    installs = [t.get("package", "") for t in getattr(result, "trajectory", []) or []
                if isinstance(t, dict) and t.get("type") == "install" and t.get("ok")]
    record = RunRecord(
        run_id=log.new_id(), title=title, where=where, kernel=kernel, output_path=output_path,
        cells=refs, created=created, rebound=rebound, left=left,
        files_written=list(getattr(result, "files_written", []) or []),
        files_deleted=list(getattr(result, "files_deleted", []) or []),
        installs=[p for p in installs if p], interrupted=bool(getattr(result, "interrupted", False)),
    )
    return log.add(record)


@dataclass
class UndoReport:
    """What the namespace half of an undo did, and what it left for the user."""

    restored: list[str] = field(default_factory=list)
    deleted: list[str] = field(default_factory=list)
    changed_since: list[str] = field(default_factory=list)  # left alone: the user changed them after the run
    already_gone: list[str] = field(default_factory=list)


def undo_namespace(ns: MutableMapping[str, Any], record: RunRecord) -> UndoReport:
    """Put rebound variables back and delete created ones, unless the user changed them since.

    ``_nbmagic_saved`` loses the entries this undo put back (their values are live again).
    """
    report = UndoReport()
    missing = object()
    for name, old in record.rebound.items():
        now = ns.get(name, missing)
        if name in record.left and now is not record.left[name]:
            report.changed_since.append(name)
            continue
        ns[name] = old
        report.restored.append(name)
        saved = ns.get(SAVED_NAME)
        if isinstance(saved, dict) and saved.get(name, missing) is old:
            del saved[name]
    for name in record.created:
        now = ns.get(name, missing)
        if now is missing:
            report.already_gone.append(name)
        elif name in record.left and now is not record.left[name]:
            report.changed_since.append(name)
        else:
            del ns[name]
            report.deleted.append(name)
    saved = ns.get(SAVED_NAME)
    if isinstance(saved, dict) and not saved:
        del ns[SAVED_NAME]
    return report
