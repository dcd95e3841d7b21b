"""Live insertion: the kernel half of the comm protocol with the frontend extension.

The pitfall this module is shaped around: while a cell runs, the kernel's shell
channel is busy, so anything the browser sends (a comm reply, an ack) is read
only after the cell ends. The kernel can therefore never wait for the frontend
inside ``%%agent``. What does arrive live is everything the kernel publishes on
iopub (``comm_open`` / ``comm_msg``). So:

* Presence is known without asking. The extension adds
  ``metadata["nbmagic"] = {"frontend": version, "protocol": 1}`` to every execute
  request a notebook sends, next to JupyterLab's ``metadata["cellId"]``; the
  running cell reads both from ``kernel.get_parent()``. As a second signal,
  :func:`announce` (called by ``%load_ext nbmagic``) opens a ``hello`` comm;
  each extension instance replies ``ready``, and the kernel reads those replies
  once that cell has finished, remembering the client sessions that answered.
* Delivery never waits. :class:`LiveNotebookSink` opens a comm on target
  ``"nbmagic"`` with ``{"type": "deliver", "cell_id", "session"}``, sends one
  ``{"type": "cell", "cell": <nbformat cell>}`` per accepted cell as soon as it is
  ready, and ``{"type": "done"}`` at the end; the extension inserts each cell after
  the previous one, starting below the cell with ``cell_id``, and closes the
  comm with ``{"inserted": n}`` (read by the kernel when it is idle again).
* Removal (``%agent undo``): :func:`remove_cells` opens a comm with ``{"type":
  "remove", "cells": [{"id", "source"}], "force"}``; the extension deletes the
  cells still as sent and answers which it removed, which the user edited since
  (kept) and which it could not find. Cells are addressed by the ids the kernel
  gave them (the extension inserts each cell under its nbformat ``id``).

See docs/notebook-delivery.md for the full protocol.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from nbmagic.errors import ConfigError

#: Comm target name registered by the frontend extension on every kernel.
TARGET = "nbmagic"
#: Protocol version spoken by this module (the frontend reports its own).
PROTOCOL = 1


@dataclass
class _Presence:
    """What the kernel learnt from frontends (read between cells)."""

    ready: dict[str, dict[str, Any]] = field(default_factory=dict)  # client session -> reply
    hello: Any = None  # the comm opened by announce()
    acks: list[dict[str, Any]] = field(default_factory=list)  # closing messages of deliveries
    lock: threading.Lock = field(default_factory=threading.Lock)


_presence = _Presence()


def _shell(shell: Any) -> Any:
    if shell is not None:
        return shell
    try:
        from IPython import get_ipython
    except ImportError:  # pragma: no cover - IPython is a dependency
        return None
    return get_ipython()


def _kernel(shell: Any) -> Any:
    """The ipykernel Kernel behind ``shell``, or ``None`` (plain IPython, no shell)."""
    kernel = getattr(_shell(shell), "kernel", None)
    return kernel if hasattr(kernel, "get_parent") else None


def parent_request(shell: Any = None) -> dict[str, Any]:
    """The execute request being handled (``{}`` outside a kernel)."""
    kernel = _kernel(shell)
    if kernel is None:
        return {}
    try:
        parent = kernel.get_parent("shell")
    except Exception:  # an ipykernel without channel-aware get_parent
        parent = kernel.get_parent()
    return parent if isinstance(parent, Mapping) else {}


def executing_cell_id(shell: Any = None) -> str | None:
    """Id of the notebook cell being executed, from the execute request's metadata."""
    metadata = parent_request(shell).get("metadata") or {}
    cell_id = metadata.get("cellId") if isinstance(metadata, Mapping) else None
    return cell_id if isinstance(cell_id, str) and cell_id else None


def frontend_info(shell: Any = None) -> dict[str, Any] | None:
    """What the extension said about itself for the running request, or ``None``.

    The execute request's own marker wins (it is live); otherwise the ``ready``
    reply from the same client session to an earlier :func:`announce`.
    """
    parent = parent_request(shell)
    metadata = parent.get("metadata") or {}
    mark = metadata.get("nbmagic") if isinstance(metadata, Mapping) else None
    if isinstance(mark, Mapping) and mark.get("frontend"):
        return dict(mark)
    session = (parent.get("header") or {}).get("session")
    with _presence.lock:
        info = _presence.ready.get(session) if session else None
    return dict(info) if info else None


def frontend_present(shell: Any = None) -> bool:
    """True when cells can be inserted live below the running cell.

    Needs both the running cell's id and a sign that the extension is in the
    frontend that sent this request (see :func:`frontend_info`).
    """
    return executing_cell_id(shell) is not None and frontend_info(shell) is not None


def _on_ready(msg: Mapping[str, Any]) -> None:
    data = (msg.get("content") or {}).get("data") or {}
    session = (msg.get("header") or {}).get("session")
    if isinstance(data, Mapping) and data.get("type") == "ready" and session:
        with _presence.lock:
            _presence.ready[session] = dict(data)


def announce(shell: Any = None) -> bool:
    """Say hello to every frontend connected to this kernel; ``False`` outside a kernel.

    Call it at ``%load_ext nbmagic`` time. The replies are read after the cell
    finishes, so from the next cell on :func:`frontend_present` also knows about
    frontends that answered (the per-request marker covers the same cell).
    """
    if _kernel(shell) is None:
        return False
    import comm

    from nbmagic import __version__

    old = _presence.hello
    hello = comm.create_comm(
        target_name=TARGET,
        data={"type": "hello", "protocol": PROTOCOL, "version": __version__},
    )
    hello.on_msg(_on_ready)
    _presence.hello = hello
    if old is not None:
        try:
            old.close()
        except Exception:
            pass
    return True


class LiveNotebookSink:
    """Sends each cell to the frontend extension, which inserts it below the running cell.

    Cells travel as soon as :meth:`deliver` is called; nothing waits for the
    browser. :attr:`cells` keeps what was sent (for a file or a summary), and
    :attr:`acknowledged` becomes the count the extension reports once the kernel
    is idle again.
    """

    def __init__(self, shell: Any = None, *, cell_id: str | None = None) -> None:
        self.shell = _shell(shell)
        if _kernel(self.shell) is None:
            raise ConfigError(
                "Live cell insertion needs a Jupyter kernel (JupyterLab 4 or Notebook 7 with "
                "the nbmagic extension); use output='file.ipynb' or the next-input fallback."
            )
        parent = parent_request(self.shell)
        self.cell_id = cell_id or executing_cell_id(self.shell)
        self.session: str | None = (parent.get("header") or {}).get("session")
        self.cells: list[Any] = []
        self.acknowledged: int | None = None
        self._comm: Any = None
        self._closed = False

    def _open(self) -> None:
        import comm

        self._comm = comm.create_comm(
            target_name=TARGET,
            data={
                "type": "deliver",
                "protocol": PROTOCOL,
                "cell_id": self.cell_id,
                "session": self.session,
            },
        )
        self._comm.on_close(self._on_close)

    def _on_close(self, msg: Mapping[str, Any]) -> None:
        data = (msg.get("content") or {}).get("data") or {}
        if isinstance(data, Mapping) and isinstance(data.get("inserted"), int):
            self.acknowledged = data["inserted"]
            with _presence.lock:
                _presence.acks.append(dict(data))

    def deliver(self, cell: Mapping[str, Any]) -> None:
        """Validate ``cell`` and send it now (it appears while the run continues)."""
        if self._closed:
            raise RuntimeError("this sink is closed")
        from nbmagic.notebook.cells import validate_cell  # nbformat: seconds to import, so late

        node = validate_cell(cell)
        if self._comm is None:
            self._open()
        self._comm.send({"type": "cell", "index": len(self.cells), "cell": node})
        self.cells.append(node)

    def close(self) -> str:
        """Tell the frontend the run is over; return a one-line summary."""
        if not self._closed and self._comm is not None:
            self._comm.send({"type": "done", "count": len(self.cells)})
        self._closed = True
        return _summary(self.cells, "inserted below the running cell")

    def __enter__(self) -> LiveNotebookSink:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def remove_cells(cells: list[Mapping[str, Any]], *, force: bool = False, shell: Any = None,
                 wait: float = 5.0) -> dict[str, Any] | None:
    """Ask the extension to remove cells by id (``%agent undo``); its answer, or ``None``.

    ``cells``: ``{"id", "source"}`` as the cells were sent. The extension removes
    each cell it finds whose source is still what was sent; a cell the user edited
    since is kept (reported as ``edited``) unless ``force``; ids it cannot find are
    ``missing``. It answers ``{"type": "removed", "removed": [...], "edited": [...],
    "missing": [...]}``. That answer arrives on the shell channel, which is busy
    with this very cell, so it is read with :class:`~nbmagic.notebook.ui_events.UiEvents`
    for up to ``wait`` seconds; where that is not possible (or nothing answers) the
    result is ``None`` and the request still takes effect in the browser.
    """
    if _kernel(shell) is None:
        raise ConfigError("Removing cells needs a Jupyter kernel with the nbmagic extension in the frontend.")
    import comm

    from nbmagic.notebook.ui_events import UiEvents

    parent = parent_request(shell)
    answer: dict[str, Any] = {}

    def on_msg(msg: Mapping[str, Any]) -> None:
        data = (msg.get("content") or {}).get("data") or {}
        if isinstance(data, Mapping) and data.get("type") == "removed":
            answer.update(data)

    channel = comm.create_comm(
        target_name=TARGET,
        data={"type": "remove", "protocol": PROTOCOL, "force": bool(force),
              "session": (parent.get("header") or {}).get("session"),
              "cells": [{"id": str(c["id"]), "source": str(c.get("source", ""))} for c in cells]},
    )
    channel.on_msg(on_msg)
    events = UiEvents(_shell(shell))
    if events.available:
        events.wait(lambda: bool(answer), timeout=wait)
    return dict(answer) if answer else None


def _summary(cells: list[Any], where: str) -> str:
    code = sum(1 for c in cells if c.get("cell_type") == "code")
    md = len(cells) - code
    if not cells:
        return "No cells were produced."
    noun = "cell" if len(cells) == 1 else "cells"
    return f"{len(cells)} {noun} {where} ({code} code, {md} markdown)."


__all__ = [
    "PROTOCOL",
    "TARGET",
    "LiveNotebookSink",
    "announce",
    "executing_cell_id",
    "frontend_info",
    "frontend_present",
    "parent_request",
    "remove_cells",
]
