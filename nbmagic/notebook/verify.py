"""Verify a written notebook: run it top to bottom in a fresh kernel (nbclient).

Cells that passed inside the user's live kernel may still depend on state the
user had (variables, imports from earlier cells, files): a fresh kernel is the
honest check that the notebook stands on its own.
"""

from __future__ import annotations

import contextlib
import os
import signal
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from nbmagic.errors import ConfigError


@dataclass(frozen=True)
class VerifyResult:
    """Outcome of :func:`verify_notebook`.

    ``failed_cell`` is the 0-based index into the notebook's cells (markdown
    included) of the first cell that failed, ``error`` a one-line reason.
    ``notebook`` is the executed notebook (outputs from the fresh kernel).
    """

    ok: bool
    failed_cell: int | None
    error: str | None
    seconds: float
    notebook: Any = None

    def summary(self) -> str:
        if self.ok:
            return f"Verified: the notebook ran top to bottom in a fresh kernel in {self.seconds:.1f} s."
        where = f"cell {self.failed_cell}" if self.failed_cell is not None else "the notebook"
        return f"Verification failed at {where}: {self.error}"

    def __str__(self) -> str:
        return self.summary()


def verify_notebook(
    path: str | os.PathLike[str],
    timeout: float = 600,
    *,
    kernel_name: str | None = None,
) -> VerifyResult:
    """Execute the notebook at ``path`` in a new kernel, in its own folder.

    ``timeout`` is per cell (seconds). The file itself is not modified. A missing
    or unreadable file raises :class:`ConfigError`; a failing, timing-out or
    crashing cell gives ``ok=False`` with the cell's index and the error.
    """
    import nbformat
    from nbclient import NotebookClient
    from nbclient.exceptions import CellExecutionError, CellTimeoutError, DeadKernelError

    target = Path(path).expanduser().resolve()
    try:
        nb = nbformat.read(target, as_version=4)
    except FileNotFoundError:
        raise ConfigError(f"Cannot verify {target}: no such file.") from None
    except Exception as exc:
        raise ConfigError(f"Cannot verify {target}: not a readable notebook ({exc}).") from None

    name = kernel_name or (nb.metadata.get("kernelspec") or {}).get("name") or "python3"
    current: dict[str, int] = {}

    def on_start(cell: Any, cell_index: int) -> None:
        current["index"] = cell_index

    client = NotebookClient(
        nb,
        timeout=timeout,
        kernel_name=name,
        resources={"metadata": {"path": str(target.parent)}},
        on_cell_start=on_start,
    )
    started = time.perf_counter()
    failed: int | None = None
    error: str | None = None
    # The fresh kernel's own stdout/stderr (start-up warnings) go to a temp file:
    # inherited, they would land in the output of the cell that called us.
    with tempfile.TemporaryFile() as log, _sigint_kept():
        try:
            client.execute(stdout=log, stderr=log)
        except CellExecutionError as exc:
            failed = current.get("index")
            error = f"{exc.ename}: {exc.evalue}" if getattr(exc, "ename", None) else str(exc).strip()
        except CellTimeoutError:
            failed = current.get("index")
            error = f"the cell did not finish within {timeout:g} s"
        except DeadKernelError as exc:
            failed = current.get("index")
            error = f"the kernel died ({exc}){_tail(log)}"
        except Exception as exc:  # e.g. no such kernel, kernel failed to start
            error = f"{type(exc).__name__}: {exc}{_tail(log)}"
    seconds = time.perf_counter() - started
    return VerifyResult(ok=error is None, failed_cell=failed, error=error, seconds=seconds, notebook=nb)


@contextlib.contextmanager
def _sigint_kept() -> Iterator[None]:
    """Put the caller's SIGINT handler back after nbclient's event loop.

    When the kernel fails to start, the loop nbclient runs exits without removing the
    signal handler it added, leaving asyncio's no-op handler on SIGINT: Ctrl-C would
    then do nothing in the process that called us (the CLI, or a test run).
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    saved = signal.getsignal(signal.SIGINT)
    try:
        yield
    finally:
        if signal.getsignal(signal.SIGINT) is not saved and saved is not None:
            signal.signal(signal.SIGINT, saved)


def _tail(log: Any, limit: int = 400) -> str:
    """The end of the kernel's own output, for errors where it explains something."""
    try:
        log.seek(0)
        text = log.read().decode("utf-8", "replace").strip()
    except (OSError, ValueError):
        return ""
    lines = [ln for ln in text.splitlines() if "running over TCP without encryption" not in ln]
    text = "\n".join(lines).strip()
    return f"; kernel output: {text[-limit:]}" if text else ""


__all__ = ["VerifyResult", "verify_notebook"]
