"""Which files a generated cell wrote, deleted or renamed: PEP 578 audit events, per thread.

Why not compare the folder before and after a run: another program writing beside the
notebook meanwhile (a screenshot tool, a data pipeline, a second notebook, an autosave)
would be counted as the run's. Here a file is the cell's only when **the thread that runs
the generated cell** asked Python to write it. CPython raises these audit events before
doing the work, with the arguments the call was given:

=====================  =========================  ==========================================
event                  arguments                  counted as
=====================  =========================  ==========================================
``open``               path, mode, flags          written when ``flags & (O_WRONLY | O_RDWR |
                                                  O_CREAT | O_TRUNC | O_APPEND)``: ``'w'``,
                                                  ``'a'``, ``'x'``, ``'r+'``, ``os.open``
``os.rename``          src, dst, src_fd, dst_fd   ``os.rename``/``os.replace``/``shutil.move``:
                                                  src gone, dst written (or renamed src → dst)
``os.remove``          path, dir_fd               ``os.remove``/``os.unlink``/``Path.unlink``
``os.truncate``        path, length               written
``shutil.rmtree``      path, dir_fd               a folder removed
``sqlite3.connect``    database                   maybe written: left to the folder comparison
``subprocess.Popen``,  …                          the cell started a process: the folder
``os.system``,                                    comparison below runs for every file
``os.fork``, …
``os.chdir``           path                       later relative paths use the new folder
=====================  =========================  ==========================================

(``shutil.copyfile``/``copy``/``move`` and pandas' ``to_csv``, matplotlib's ``savefig``,
``Path.write_text`` … all end in ``open``.)

What the hook cannot see (a child process, ``!cp``, compiled code that writes without
Python's ``open`` such as pyarrow's parquet writer, a thread the cell starts) is found by
comparing the working folder's files (mtime, size) just before and just after **that
cell's own run**, and kept apart as *possibly* written or deleted: every change in that
window when the cell started a process, else only files whose name appears in the cell's
source (or that it opened as a SQLite database). Another program writing during such a cell
can therefore land in the "possibly" lists, never in the written ones.

Cost: audit hooks cannot be removed, so :func:`install` adds one hook per process, the
first time a cell is recorded. For every audit event in the process it then costs one
Python call that returns after one global check when no cell is being recorded; while one is,
a read's ``open`` leaves at its flags and the events it does not watch (``builtins.id``,
``exec``, ``import``, ``sys._getframe``…) after a set lookup, both before the thread lookup;
paths are made absolute when the cell ends, not in the hook. See ``benchmarks/file_audit.py``.

Standard library only: the RLM worker imports it, and ``--kernel new`` sends this file's
source to the fresh kernel (:func:`attach_to_shell`), which may not have nbmagic installed.
"""

from __future__ import annotations

import json
import os
import sys
import threading
from dataclasses import dataclass, field
from typing import Any

__all__ = ["CellAudit", "CellRecord", "Scan", "attach_to_shell", "here", "install", "scan", "take_json"]

#: open() flags that mean the file may be changed
WRITE_FLAGS = (os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_TRUNC | getattr(os, "O_APPEND", 0))
#: the cell started a process: what it writes is only visible to the folder comparison
SPAWN_EVENTS = frozenset({"subprocess.Popen", "os.system", "os.posix_spawn", "os.spawn", "os.fork",
                          "os.forkpty", "os.exec", "pty.spawn"})
WATCHED = frozenset({"open", "os.rename", "os.remove", "os.truncate", "shutil.rmtree", "sqlite3.connect",
                     "os.chdir"}) | SPAWN_EVENTS

#: folders the comparison does not enter (tools' caches and environments, not the user's files)
SKIP_DIRS = frozenset({".git", ".hg", ".svn", ".venv", "venv", "env", "node_modules", "__pycache__",
                       ".ipynb_checkpoints", ".cache", ".mypy_cache", ".pytest_cache", ".ruff_cache", ".tox",
                       "site-packages"})
SCAN_DEPTH = 3  # folder levels below the working folder the comparison looks at
SCAN_LIMIT = 5_000  # files; past that the comparison is partial (Scan.complete is False)

_lock = threading.Lock()
_recorders: dict[int, _Recorder] = {}  # thread id -> the innermost cell recorded in that thread
_active = 0  # how many cells are being recorded, all threads together (0: the hook returns at once)
_installed = False
_get_ident = threading.get_ident


def _hook(event: str, args: tuple[Any, ...], _watched: frozenset[str] = WATCHED, _flags: int = WRITE_FLAGS,
          _get: Any = _recorders.get, _tid: Any = _get_ident) -> None:
    # the cheapest test first: most of the time no cell is recorded anywhere (constants are
    # bound as defaults: a local costs less than a global lookup on every audit event)
    if not _active:
        return
    try:  # free in CPython 3.11+ unless something raises
        if event == "open":  # the most frequent watched event, inlined: no method call
            if not args[2] & _flags:
                return  # a read: gone before the thread lookup
            rec = _get(_tid())
            if rec is not None:
                path = args[0]
                if path not in rec.seen and not isinstance(path, int):  # once per path between other ops
                    rec.seen.add(path)
                    rec.ops.append(("w", path, rec.cwd or rec.folder(), None, None))
        elif event in _watched:
            rec = _get(_tid())
            if rec is not None:
                rec.note(event, args)
    except Exception:  # the audited call must never fail because of us
        pass


def install() -> None:
    """Add the audit hook to this process (once; it cannot be removed)."""
    global _installed
    with _lock:
        if not _installed:
            sys.addaudithook(_hook)
            _installed = True


def _text(path: Any) -> str | None:
    """A path argument as text; None for a file descriptor or something odd."""
    if isinstance(path, str):
        return path
    if isinstance(path, int):
        return None
    try:
        return os.fsdecode(os.fspath(path))
    except TypeError:
        return None


def _fd_folder(fd: Any) -> str | None:
    """The folder a ``dir_fd`` points at (Linux: /proc), else None."""
    if fd is None or fd == -1:
        return ""
    try:
        return os.readlink(f"/proc/self/fd/{int(fd)}")
    except (OSError, ValueError, TypeError):
        return None


def here() -> str:
    """The current folder ("" when it was deleted: relative paths then resolve against nothing)."""
    try:
        return os.getcwd()
    except OSError:
        return ""


def _exists(path: str, fd: Any) -> bool:
    try:
        os.lstat(path, dir_fd=None if fd is None or fd == -1 else fd)
        return True
    except (OSError, TypeError, ValueError, NotImplementedError):
        return False


class _Recorder:
    """The raw operations one cell's thread asked for, in order, cheap to append to."""

    __slots__ = ("cwd", "named", "ops", "outer", "seen", "spawned")

    def __init__(self, outer: _Recorder | None) -> None:
        # (kind, path, the folder it is relative to, dst, dst's folder): paths as the cell gave them,
        # made absolute when the cell ends (only a dir_fd's folder is looked up at once: it may be closed)
        self.ops: list[tuple[str, Any, str | None, Any, str | None]] = []
        self.seen: set[Any] = set()  # paths already recorded as written since the last other operation
        self.cwd: str | None = here()
        self.spawned = False
        self.named: set[str] = set()
        self.outer = outer

    def folder(self) -> str:
        if self.cwd is None:
            self.cwd = here()
        return self.cwd

    def note(self, event: str, args: tuple[Any, ...]) -> None:
        # "open" is handled in the hook itself
        if event == "os.rename":
            src, dst, sfd, dfd = args[:4]
            if _exists(src, sfd):  # a rename that is about to fail changes nothing
                self.seen.clear()
                self.ops.append(("mv", src, self._relative_to(sfd), dst, self._relative_to(dfd)))
        elif event == "os.remove":
            path, fd = args[:2]
            if _exists(path, fd):
                self.seen.clear()
                self.ops.append(("rm", path, self._relative_to(fd), None, None))
        elif event == "os.truncate":
            if not isinstance(args[0], int):
                self.ops.append(("w", args[0], self.folder(), None, None))
        elif event == "shutil.rmtree":
            self.seen.clear()
            self.ops.append(("rmtree", args[0], self._relative_to(args[1] if len(args) > 1 else None), None, None))
        elif event == "sqlite3.connect":
            name = _text(args[0])
            if name and name != ":memory:" and not name.startswith("file:"):
                self.named.add(os.path.join(self.folder(), name))
        elif event == "os.chdir":
            self.cwd = None  # asked again after the change
            self.seen.clear()
        else:  # SPAWN_EVENTS
            self.spawned = True

    def _relative_to(self, fd: Any) -> str | None:
        """The folder a path given with ``dir_fd=fd`` is relative to (the current one without)."""
        if fd is None or fd == -1:
            return self.cwd or self.folder()
        return _fd_folder(fd) or None


def _absolute(path: Any, folder: str | None) -> str | None:
    text = _text(path)
    if text is None or folder is None:
        return None
    return os.path.normpath(os.path.join(folder, text))


# --- the folder comparison ---------------------------------------------------------------------


@dataclass
class Scan:
    """``path -> (mtime_ns, size)`` for the files under ``base`` (absolute paths)."""

    base: str
    files: dict[str, tuple[int, int]] = field(default_factory=dict)
    complete: bool = True

    def covers(self, path: str) -> bool:
        """Whether this scan would have listed ``path`` had it existed."""
        if not self.complete or not path.startswith(self.base + os.sep):
            return False
        parts = path[len(self.base) + 1:].split(os.sep)
        return len(parts) <= SCAN_DEPTH + 1 and not any(p in SKIP_DIRS for p in parts[:-1])


def scan(base: str, depth: int = SCAN_DEPTH, limit: int = SCAN_LIMIT) -> Scan:
    """The files under ``base`` (``depth`` folder levels, ``SKIP_DIRS`` left out, at most ``limit``)."""
    out = Scan(base)
    files = out.files

    def walk(folder: str, level: int) -> None:
        try:
            entries = list(os.scandir(folder))
        except OSError:
            return
        for e in entries:
            if len(files) >= limit:
                out.complete = False
                return
            try:
                if e.is_file(follow_symlinks=False):
                    st = e.stat(follow_symlinks=False)
                    files[e.path] = (st.st_mtime_ns, st.st_size)
                elif e.is_dir(follow_symlinks=False) and level < depth and e.name not in SKIP_DIRS:
                    walk(e.path, level + 1)
            except OSError:
                continue

    walk(base, 0)
    return out


# --- one cell ------------------------------------------------------------------------------------


@dataclass
class CellRecord:
    """What one cell did to files: its own operations (absolute paths, in order) and what else
    changed in the folder while it ran that it may have caused."""

    ops: list[tuple[str, str, str | None]] = field(default_factory=list)  # ("w"|"rm"|"mv"|"rmtree", path, dst)
    spawned: bool = False
    possibly_written: list[str] = field(default_factory=list)
    possibly_deleted: list[str] = field(default_factory=list)

    def to_json(self) -> str:
        return json.dumps({"ops": self.ops, "spawned": self.spawned, "possibly_written": self.possibly_written,
                           "possibly_deleted": self.possibly_deleted})

    @classmethod
    def from_json(cls, text: str | dict[str, Any] | None) -> CellRecord | None:
        if not text:
            return None
        try:
            data = json.loads(text) if isinstance(text, str) else text
            return cls([tuple(op) for op in data["ops"]], bool(data["spawned"]),  # type: ignore[misc]
                       list(data["possibly_written"]), list(data["possibly_deleted"]))
        except (ValueError, KeyError, TypeError):
            return None


class CellAudit:
    """Records one cell in the calling thread: ``with CellAudit(base, source=code) as audit: ...``;
    ``audit.record`` afterwards. Nests: an inner cell's operations also count for the outer one."""

    def __init__(self, base: str | os.PathLike[str] | None = None, *, source: str = "") -> None:
        self.base = os.path.realpath(os.fspath(base) if base is not None else here())
        self.source = source
        self.record: CellRecord | None = None
        self._rec: _Recorder | None = None
        self._before: Scan | None = None
        self._tid = 0

    def start(self) -> CellAudit:
        global _active
        install()
        self._before = scan(self.base)
        self._tid = _get_ident()
        with _lock:
            self._rec = _Recorder(_recorders.get(self._tid))
            _recorders[self._tid] = self._rec
            _active += 1
        return self

    def stop(self) -> CellRecord:
        global _active
        rec = self._rec
        if rec is None:  # never started, or stopped already
            return self.record or CellRecord()
        with _lock:
            if rec.outer is None:
                _recorders.pop(self._tid, None)
            else:
                _recorders[self._tid] = rec.outer
                rec.outer.ops.extend(rec.ops)
                rec.outer.spawned |= rec.spawned
                rec.outer.named |= rec.named
                rec.outer.seen.clear()
            _active -= 1
        self._rec = None
        self.record = self._finish(rec, scan(self.base))
        return self.record

    def _finish(self, rec: _Recorder, after: Scan) -> CellRecord:
        ops: list[tuple[str, str, str | None]] = []
        for kind, path, folder, dst, dst_folder in rec.ops:
            full = _absolute(path, folder)
            to = _absolute(dst, dst_folder) if kind == "mv" else None
            if full is not None and (kind != "mv" or to is not None):
                ops.append((kind, full, to))
        before = self._before or Scan(self.base)
        touched = {p for _, p, _ in ops} | {d for _, _, d in ops if d}
        trees = tuple(p + os.sep for k, p, _ in ops if k == "rmtree")
        changed = [p for p, st in after.files.items() if before.files.get(p) != st]
        gone = [p for p in before.files if p not in after.files] if before.complete and after.complete else []

        def unexplained(paths: list[str]) -> list[str]:
            left = [p for p in paths if p not in touched and not p.startswith(trees)]
            if rec.spawned:
                return sorted(left)
            # no process: only compiled code the cell named (pyarrow's to_parquet("x.parquet"), a database)
            return sorted(p for p in left if p in rec.named or os.path.basename(p) in self.source)

        return CellRecord(ops, rec.spawned, unexplained(changed), unexplained(gone))

    def __enter__(self) -> CellAudit:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


# --- a kernel that is not this process (--kernel new) -------------------------------------------

_shell_state: dict[str, Any] = {"audit": None, "last": None}


def attach_to_shell(shell: Any, base: str | None = None) -> None:
    """Record every cell ``shell`` runs (IPython's ``pre_run_cell``/``post_run_cell`` events, which
    fire in the thread that runs the cell); :func:`take_json` hands the last record over."""
    folder = base or os.getcwd()

    # IPython shows a callback's exception in the cell's output: nothing of ours may get there
    def pre_run_cell(info: Any = None) -> None:
        try:
            _shell_state["audit"] = CellAudit(folder, source=getattr(info, "raw_cell", "") or "").start()
        except Exception:
            _shell_state["audit"] = None

    def post_run_cell(result: Any = None) -> None:
        audit, _shell_state["audit"] = _shell_state["audit"], None
        try:
            _shell_state["last"] = audit.stop() if audit is not None else None
        except Exception:
            _shell_state["last"] = None

    install()
    shell.events.register("pre_run_cell", pre_run_cell)
    shell.events.register("post_run_cell", post_run_cell)


def take_json() -> str:
    """The last recorded cell as JSON ("" when none), forgotten once taken."""
    last, _shell_state["last"] = _shell_state["last"], None
    return last.to_json() if last is not None else ""
