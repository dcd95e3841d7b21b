"""Where accepted cells go: live into the notebook, into the next input, or to a file.

Every sink has the same two methods, so engines stay ignorant of the frontend:
``deliver(cell)`` as soon as a cell is accepted, ``close()`` at the end (returns a
one-line summary for the user). :func:`choose_sink` picks one:

1. ``output`` given → :class:`FileSink` (a new ``.ipynb``, written atomically after
   every cell, never overwriting without ``force``);
2. the nbmagic frontend extension is in the browser that ran the cell →
   :class:`LiveNotebookSink` (cells with outputs appear below the magic cell);
3. any other IPython frontend (VS Code, classic notebook, Colab, terminal) →
   :class:`NextInputSink` (one ``set_next_input`` code cell, markdown as comments);
4. no shell at all (plain Python) → :class:`CollectSink` (keeps the cells).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from nbmagic.errors import ConfigError, NbmagicError
from nbmagic.notebook.cells import cell_text, new_notebook, validate_cell
from nbmagic.notebook.files import (
    refuse_existing,
    resolve_output_path,
    write_notebook_atomic,
)
from nbmagic.notebook.live import LiveNotebookSink, _summary, frontend_present
from nbmagic.notebook.verify import VerifyResult, verify_notebook


@runtime_checkable
class CellSink(Protocol):
    """Receives finished nbformat cells, one at a time, in notebook order."""

    def deliver(self, cell: Any) -> None: ...

    def close(self) -> str: ...


class _Closing:
    """``with sink: ...`` closes the sink, or aborts it when the block raised."""

    def __enter__(self) -> Any:
        return self

    def __exit__(self, exc_type: object, *exc: object) -> None:
        if exc_type is None:
            self.close()  # type: ignore[attr-defined]
        else:
            self.abort()

    def abort(self) -> str:
        """End a run that failed: keep what was delivered, add nothing of its own."""
        return self.close()  # type: ignore[attr-defined,no-any-return]


class CollectSink(_Closing):
    """Keeps cells in :attr:`cells` and nothing else (scripts, tests, the CLI)."""

    def __init__(self) -> None:
        self.cells: list[Any] = []

    def deliver(self, cell: Any) -> None:
        self.cells.append(validate_cell(cell))

    def close(self) -> str:
        return _summary(self.cells, "collected")


#: Printed by :class:`NextInputSink` so users know how to get the full experience.
NEXT_INPUT_HINT = (
    "nbmagic: all cells went into one new code cell below (markdown as # comments, no outputs). "
    "For separate markdown and code cells with their outputs, inserted live, use JupyterLab 4 "
    "or Notebook 7 with nbmagic installed in the Jupyter server's environment "
    "(`pip install nbmagic`, then reload the page; `jupyter labextension list` shows it), "
    "or write a notebook file with -o FILE.ipynb."
)


def as_python(cells: list[Any]) -> str:
    """All cells as one code cell's text: code as is, markdown as ``#`` comments."""
    blocks: list[str] = []
    for cell in cells:
        text = cell_text(cell).rstrip()
        if not text:
            continue
        if cell.get("cell_type") == "code":
            blocks.append(text)
        else:
            blocks.append("\n".join(f"# {line}".rstrip() for line in text.splitlines()))
    return "\n\n".join(blocks) + ("\n" if blocks else "")


class NextInputSink(_Closing):
    """Fallback for frontends without the extension: one ``set_next_input`` cell.

    IPython keeps one next-input payload per execution (a later call replaces an
    earlier one), so every delivery re-sends the whole text so far; the frontend
    shows the final one as an unexecuted code cell below when the cell finishes.
    """

    def __init__(self, shell: Any = None, *, hint: bool = True) -> None:
        if shell is None:
            from IPython import get_ipython

            shell = get_ipython()
        if shell is None or not hasattr(shell, "set_next_input"):
            raise ConfigError(
                "There is no IPython shell to put the next input into; run inside Jupyter/IPython "
                "or write a notebook file with output='file.ipynb'."
            )
        self.shell = shell
        self.hint = hint
        self.cells: list[Any] = []
        self._closed = False

    @property
    def text(self) -> str:
        return as_python(self.cells)

    def deliver(self, cell: Any) -> None:
        self.cells.append(validate_cell(cell))
        self.shell.set_next_input(self.text, replace=False)

    def close(self) -> str:
        if self.cells and self.hint and not self._closed:
            print(NEXT_INPUT_HINT)
        self._closed = True
        return _summary(self.cells, "placed in one new code cell below")


class FileSink(_Closing):
    """Writes a new notebook, rewriting it atomically after every delivered cell.

    The path is checked when the sink is made, so a refusal comes before any work
    is done; the first write re-checks without a race (hard link), so a file that
    appeared meanwhile survives too. Later writes replace the sink's own file.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        force: bool = False,
        base_dir: str | os.PathLike[str] | None = None,
        metadata: Mapping[str, Any] | None = None,
        shell: Any = None,
    ) -> None:
        self.path: Path = resolve_output_path(path, base_dir, shell)
        self.force = force
        self.metadata = dict(metadata or {})
        if not force:
            refuse_existing(self.path)
        self.cells: list[Any] = []
        self._written = False

    def notebook(self) -> Any:
        """The notebook as it stands (what is on disk after the last delivery)."""
        return new_notebook(self.cells, self.metadata)

    def _write(self) -> None:
        try:
            write_notebook_atomic(self.notebook(), self.path, overwrite=self.force or self._written)
        except NbmagicError as exc:
            exc.partial = list(self.cells)
            raise
        self._written = True

    def deliver(self, cell: Any) -> None:
        self.cells.append(validate_cell(cell))
        self._write()

    def close(self) -> str:
        if not self._written:
            self._write()
        return _summary(self.cells, f"written to {self.path}") if self.cells else (
            f"Wrote an empty notebook to {self.path} (no cells were produced)."
        )

    def abort(self) -> str:
        """A failed run with no cells leaves no file, so rerunning it is not refused."""
        if not self._written:
            return f"Nothing was written to {self.path}."
        return self.close()


def choose_sink(
    shell: Any = None,
    output: str | os.PathLike[str] | None = None,
    force: bool = False,
    *,
    base_dir: str | os.PathLike[str] | None = None,
) -> CellSink:
    """The best sink for this run (see the module docstring for the order)."""
    if output is not None and os.fspath(output).strip():
        return FileSink(output, force=force, base_dir=base_dir, shell=shell)
    if output is not None:
        raise ConfigError("The output path is empty: give a file name such as `-o analysis.ipynb`.")
    if shell is None:
        from IPython import get_ipython

        shell = get_ipython()
    if shell is None:
        return CollectSink()
    if frontend_present(shell):
        return LiveNotebookSink(shell)
    return NextInputSink(shell)


__all__ = [
    "NEXT_INPUT_HINT",
    "CellSink",
    "CollectSink",
    "FileSink",
    "LiveNotebookSink",
    "NextInputSink",
    "VerifyResult",
    "as_python",
    "choose_sink",
    "verify_notebook",
]
