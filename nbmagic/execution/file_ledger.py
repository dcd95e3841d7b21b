"""A run's files: the cells' records (:mod:`.file_audit`) folded into what the user is told.

One :class:`FileLedger` per run (an agent run, an RLM query) collects each cell's
:class:`~.file_audit.CellRecord`, whichever process ran the cell (this one, a ``--kernel
new`` kernel, the RLM worker), and :meth:`FileLedger.changes` folds them, in order, into
a :class:`FileChanges`:

* ``written``: files that exist at the end and that the run's cells opened for writing
  (created, overwritten, appended to, ``r+``) or moved into place; a scratch file the run
  wrote and moved (``os.replace(tmp, "out.csv")``) shows as its final name only;
* ``deleted``: files that existed before the run and that its cells removed (a scratch
  file the run made and removed is neither written nor deleted);
* ``renamed``: ``(old, new)`` for a file that existed before the run and that a cell moved;
* ``possibly_written`` / ``possibly_deleted``: what changed in the folder during a cell
  that started a process or named the file, and that no cell's own ``open``/``rename``/
  ``remove`` explains (see :mod:`.file_audit`). Never mixed into the lists above.

Paths inside the working folder are relative to it; paths outside it are absolute; files
under the temporary folder, Python's own folders (the interpreter, site-packages,
``__pycache__``) and the user's cache folders (``~/.cache``, matplotlib's font cache) are
left out (a working folder that is itself under one, a project in /tmp say, keeps its own
files), as are the notebook the run writes into and the one it serves (``skip``).
"Existed before the run" comes from a scan of the working folder when the ledger is made;
outside it (or past the scan's depth) a file the run wrote first counts as the run's own.
"""

from __future__ import annotations

import os
import sys
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from nbmagic.execution.file_audit import CellAudit, CellRecord, Scan, here, scan

__all__ = ["FileChanges", "FileLedger"]

#: names shown per list in a summary line
SHOWN = 20


@dataclass
class FileChanges:
    """What a run did to files (paths relative to its working folder, absolute outside it)."""

    written: list[str] = field(default_factory=list)
    deleted: list[str] = field(default_factory=list)
    renamed: list[tuple[str, str]] = field(default_factory=list)
    possibly_written: list[str] = field(default_factory=list)
    possibly_deleted: list[str] = field(default_factory=list)

    def __bool__(self) -> bool:
        return bool(self.written or self.deleted or self.renamed or self.possibly_written or self.possibly_deleted)

    def lines(self, limit: int = SHOWN) -> list[str]:
        """The summary's lines, one per non-empty list."""
        def names(paths: list[str]) -> str:
            more = f" (+{len(paths) - limit} more)" if len(paths) > limit else ""
            return ", ".join(paths[:limit]) + more

        out = []
        if self.written:
            out.append("Files written: " + names(self.written))
        if self.deleted:
            out.append("Files deleted: " + names(self.deleted))
        if self.renamed:
            out.append("Files renamed: " + names([f"{a} -> {b}" for a, b in self.renamed]))
        if self.possibly_written:
            out.append("Possibly written (by a process the cell started, or compiled code): "
                       + names(self.possibly_written))
        if self.possibly_deleted:
            out.append("Possibly deleted (by a process the cell started): " + names(self.possibly_deleted))
        return out

    def phrase(self) -> str:
        """``2 files written · 1 deleted``: the counts, for a one-line summary ("" when nothing)."""
        parts = []
        if self.written:
            parts.append(f"{len(self.written)} file{'s' if len(self.written) != 1 else ''} written")
        for label, items in (("deleted", self.deleted), ("renamed", self.renamed)):
            if items:
                parts.append(f"{len(items)} {label}" if parts else
                             f"{len(items)} file{'s' if len(items) != 1 else ''} {label}")
        possible = len(self.possibly_written) + len(self.possibly_deleted)
        if possible:
            parts.append(f"{possible} possibly changed")
        return " · ".join(parts)


def _noise_roots() -> tuple[str, ...]:
    """Folders whose files are tools' business, not the user's."""
    home = os.path.expanduser("~")
    roots = {tempfile.gettempdir(), sys.prefix, sys.base_prefix, sys.exec_prefix,
             os.environ.get("XDG_CACHE_HOME") or os.path.join(home, ".cache"),
             os.path.join(home, ".ipython"), os.path.join(home, ".jupyter"), os.path.join(home, ".matplotlib"),
             os.path.join(home, ".config", "matplotlib"), os.path.join(home, ".local", "share", "jupyter")}
    if os.environ.get("MPLCONFIGDIR"):
        roots.add(os.environ["MPLCONFIGDIR"])
    out = set()
    for r in roots:
        if r:
            out.add(os.path.realpath(r))
            out.add(os.path.normpath(r))
    return tuple(sorted(r.rstrip(os.sep) + os.sep for r in out))


class FileLedger:
    """The files of one run, in ``base`` (the working folder). Make it when the run starts."""

    def __init__(self, base: str | os.PathLike[str] | None = None) -> None:
        self.base = os.path.realpath(os.fspath(base) if base is not None else here())
        self.start: Scan = scan(self.base)
        self.records: list[CellRecord] = []
        self._noise = _noise_roots()

    def add(self, record: CellRecord | str | dict[str, Any] | None) -> None:
        """One cell's record (or its JSON, from another process); None is ignored."""
        if record is not None and not isinstance(record, CellRecord):
            record = CellRecord.from_json(record)
        if record is not None:
            self.records.append(record)

    def cell(self, source: str = "") -> _LedgerCell:
        """``with ledger.cell(code): ...``: record a cell run in this thread."""
        return _LedgerCell(self, source)

    def run(self, executor: Any, code: str, timeout: float | None = None) -> Any:
        """``executor.run(code, timeout)``, recorded. An executor that runs cells elsewhere records
        them there and says so (``audits_files``): its ``last_files`` record is taken instead."""
        if getattr(executor, "audits_files", False):
            try:
                return executor.run(code, timeout)
            finally:
                self.add(getattr(executor, "last_files", None))
        with self.cell(code):
            return executor.run(code, timeout)

    # -- folding --------------------------------------------------------------------------------

    def _existed(self, path: str) -> bool | None:
        """Whether ``path`` was there when the run started (None: the start scan cannot tell)."""
        if path in self.start.files:
            return True
        return False if self.start.covers(path) else None

    def changes(self, skip: Iterable[str] = ()) -> FileChanges:
        own: dict[str, None] = {}  # files whose content is the run's (ordered set)
        moved: dict[str, str] = {}  # where a file that existed before the run is now -> its old path
        removed: dict[str, None] = {}  # files that existed before the run, removed
        for kind, path, dst in (op for r in self.records for op in r.ops):
            if kind == "w":
                own[path] = None
                removed.pop(path, None)
            elif kind == "rm":
                if path in moved:
                    removed[moved.pop(path)] = None
                elif path not in own or self._existed(path):
                    removed[path] = None
                own.pop(path, None)
            elif kind == "mv" and dst is not None:
                self._move(path, dst, own, moved, removed)
            elif kind == "rmtree":
                self._remove_tree(path, own, moved, removed)
        exists = os.path.lexists
        # a folder "opened for writing" is O_TMPFILE's anonymous file, not a file of the folder's
        written = [p for p in own if exists(p) and not os.path.isdir(p)]
        renamed = [(old, new) for new, old in moved.items() if exists(new)]
        olds = {old for old, _ in renamed}
        deleted = [p for p in removed if not exists(p) and p not in olds]
        mine = set(written) | set(deleted) | olds | {new for _, new in renamed}
        maybe_w = {p for r in self.records for p in r.possibly_written if p not in mine and exists(p)}
        maybe_d = {p for r in self.records for p in r.possibly_deleted if p not in mine and not exists(p)}
        skipped = {os.path.realpath(s) for s in skip if s}
        shown = lambda paths: sorted(filter(None, (self._shown(p, skipped) for p in paths)))  # noqa: E731
        pairs = [(self._shown(a, skipped), self._shown(b, skipped)) for a, b in renamed]
        return FileChanges(shown(written), shown(deleted), sorted((a, b) for a, b in pairs if a and b),
                           shown(maybe_w), shown(maybe_d))

    def _move(self, src: str, dst: str, own: dict[str, None], moved: dict[str, str],
              removed: dict[str, None]) -> None:
        if src in moved:
            old: str | None = moved.pop(src)
        elif src in own and not self._existed(src):
            old = None  # the run's own file moved into place: the destination is written
        else:
            old = src  # a file that was there before: renamed
        was_own = src in own
        own.pop(src, None)
        if dst in moved:  # the destination held a moved file: that one is gone now
            removed[moved.pop(dst)] = None
        if old is not None and old != dst:
            moved[dst] = old
        if old is None or was_own or (self._existed(dst) and old != dst):
            own[dst] = None  # new content at dst (a replaced file is rewritten)
        removed.pop(dst, None)

    def _remove_tree(self, folder: str, own: dict[str, None], moved: dict[str, str],
                     removed: dict[str, None]) -> None:
        prefix = folder.rstrip(os.sep) + os.sep
        for p in [p for p in own if p.startswith(prefix)]:
            own.pop(p)
            if self._existed(p):
                removed[p] = None
        for p in [p for p in moved if p.startswith(prefix)]:
            removed[moved.pop(p)] = None
        for p in self.start.files:
            if p.startswith(prefix):
                removed[p] = None

    def _shown(self, path: str, skip: set[str]) -> str | None:
        """``path`` as the user sees it, or None when it is left out."""
        parts = path.split(os.sep)
        if "__pycache__" in parts or ".ipynb_checkpoints" in parts or path.endswith(".pyc"):
            return None
        if path in skip or os.path.realpath(path) in skip:
            return None
        base = self.base + os.sep
        inside = path.startswith(base)
        for p in {path, os.path.realpath(path)}:
            # a noise folder that holds the working folder (a project under /tmp) is the user's inside it
            if any(p.startswith(r) and not (inside and base.startswith(r)) for r in self._noise):
                return None
        return path[len(base):] if inside else path


class _LedgerCell(CellAudit):
    """A :class:`CellAudit` whose record goes into a ledger when it stops (also on an error)."""

    def __init__(self, ledger: FileLedger, source: str) -> None:
        super().__init__(ledger.base, source=source)
        self.ledger = ledger

    def stop(self) -> CellRecord:
        started = self._rec is not None
        record = super().stop()
        if started:
            self.ledger.add(record)
        return record
