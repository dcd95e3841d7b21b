"""nbformat v4 cells with outputs: the one cell model every sink understands.

Cells are plain ``nbformat.NotebookNode`` dicts (so they serialise to JSON for the
frontend comm and to ``.ipynb`` files unchanged). The helpers here build them and
their outputs the way a notebook would record them, and validate them against
nbformat's schema early, so a bad cell fails where it was made instead of when a
file is written or a browser renders it.
"""

from __future__ import annotations

import base64
from collections.abc import Iterable, Mapping
from typing import Any

import nbformat
from nbformat import v4

#: Binary mime types that nbformat stores base64-encoded.
_BINARY_PREFIXES = ("image/png", "image/jpeg", "image/gif", "image/webp", "application/pdf")


def mime_bundle(data: Mapping[str, Any]) -> dict[str, Any]:
    """Copy a mime bundle, base64-encoding raw bytes the way nbformat stores them.

    Binary types (PNG, JPEG, PDF, ...) become base64 text; bytes of text types
    (SVG, JSON, HTML) are decoded, as nbformat stores those as plain strings.
    """
    bundle: dict[str, Any] = {}
    for mime, value in data.items():
        if isinstance(value, (bytes, bytearray)):
            if mime.startswith(_BINARY_PREFIXES):
                value = base64.b64encode(bytes(value)).decode("ascii")
            else:
                value = bytes(value).decode("utf-8", "replace")
        bundle[mime] = value
    return bundle


def provenance(
    *,
    step: int | None = None,
    attempts: int | None = None,
    model: str | None = None,
    mode: str | None = None,
    **extra: Any,
) -> dict[str, Any]:
    """Cell metadata recording what produced a cell: ``{"nbmagic": {...}}``."""
    info: dict[str, Any] = {"step": step, "attempts": attempts, "model": model, "mode": mode}
    info.update(extra)
    return {"nbmagic": {k: v for k, v in info.items() if v is not None}}


def markdown_cell(text: str, metadata: Mapping[str, Any] | None = None) -> nbformat.NotebookNode:
    """A markdown cell."""
    if not isinstance(text, str):
        raise TypeError(f"markdown text must be str, not {type(text).__name__}")
    return v4.new_markdown_cell(text, metadata=dict(metadata or {}))


def code_cell(
    source: str,
    outputs: Iterable[Mapping[str, Any]] = (),
    execution_count: int | None = None,
    metadata: Mapping[str, Any] | None = None,
) -> nbformat.NotebookNode:
    """A code cell with the outputs it produced (build them with the output helpers)."""
    if not isinstance(source, str):
        raise TypeError(f"code source must be str, not {type(source).__name__}")
    return v4.new_code_cell(
        source,
        outputs=[nbformat.from_dict(dict(o)) for o in outputs],
        execution_count=execution_count,
        metadata=dict(metadata or {}),
    )


def stream(name: str, text: str) -> nbformat.NotebookNode:
    """A ``stream`` output: ``name`` is ``"stdout"`` or ``"stderr"``."""
    if name not in ("stdout", "stderr"):
        raise ValueError(f"stream name must be 'stdout' or 'stderr', not {name!r}")
    return v4.new_output("stream", name=name, text=text)


def display_data(
    data: Mapping[str, Any], metadata: Mapping[str, Any] | None = None
) -> nbformat.NotebookNode:
    """A ``display_data`` output from a mime bundle (bytes for images are encoded)."""
    return v4.new_output("display_data", data=mime_bundle(data), metadata=dict(metadata or {}))


def execute_result(
    data: Mapping[str, Any],
    execution_count: int | None = None,
    metadata: Mapping[str, Any] | None = None,
) -> nbformat.NotebookNode:
    """An ``execute_result`` output (the value of the cell's last expression)."""
    return v4.new_output(
        "execute_result",
        data=mime_bundle(data),
        execution_count=execution_count,
        metadata=dict(metadata or {}),
    )


def error(ename: str, evalue: str, traceback: Iterable[str] = ()) -> nbformat.NotebookNode:
    """An ``error`` output (traceback lines may hold ANSI colour codes, as in Jupyter)."""
    return v4.new_output("error", ename=ename, evalue=evalue, traceback=list(traceback))


def png(image: bytes, *, text: str = "<Figure>", width: int | None = None,
        height: int | None = None) -> nbformat.NotebookNode:
    """A ``display_data`` output holding a PNG image (e.g. a matplotlib figure)."""
    meta: dict[str, Any] = {}
    if width or height:
        meta["image/png"] = {k: v for k, v in (("width", width), ("height", height)) if v}
    return display_data({"image/png": image, "text/plain": text}, meta)


def new_notebook(
    cells: Iterable[Mapping[str, Any]] = (), metadata: Mapping[str, Any] | None = None
) -> nbformat.NotebookNode:
    """A v4 notebook for a Python kernel holding ``cells``."""
    import platform

    meta: dict[str, Any] = {
        "kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"},
        "language_info": {"name": "python", "version": platform.python_version()},
    }
    meta.update(metadata or {})
    return v4.new_notebook(cells=[nbformat.from_dict(dict(c)) for c in cells], metadata=meta)


def validate_cell(cell: Mapping[str, Any]) -> nbformat.NotebookNode:
    """Check a cell against the nbformat v4 schema; return it as a NotebookNode.

    Raises ``ValueError`` naming the problem: a bad cell is a bug in the code that
    built it, not something a user typed.
    """
    node = nbformat.from_dict(dict(cell))
    if "id" not in node:  # cells from older producers: give them one as nbformat 4.5 wants
        from nbformat.corpus.words import generate_corpus_id

        node["id"] = generate_corpus_id()
    try:
        nbformat.validate(new_notebook([node]))
    except nbformat.ValidationError as exc:
        raise ValueError(f"not a valid nbformat v4 cell: {exc.message}") from None
    return node


def validate_notebook(nb: Mapping[str, Any]) -> None:
    """Check a whole notebook; ``ValueError`` if it is not valid nbformat v4."""
    try:
        nbformat.validate(nbformat.from_dict(dict(nb)))
    except nbformat.ValidationError as exc:
        raise ValueError(f"not a valid nbformat v4 notebook: {exc.message}") from None


def cell_text(cell: Mapping[str, Any]) -> str:
    """A cell's source as one string (nbformat allows a list of lines)."""
    source = cell.get("source", "")
    return "".join(source) if isinstance(source, list) else str(source)


__all__ = [
    "cell_text",
    "code_cell",
    "display_data",
    "error",
    "execute_result",
    "markdown_cell",
    "mime_bundle",
    "new_notebook",
    "png",
    "provenance",
    "stream",
    "validate_cell",
    "validate_notebook",
]
