"""llama.cpp's own log lines, captured instead of printed.

llama.cpp writes warnings to file descriptor 2 even with ``verbose=False``; in a notebook they
show up as red stderr noise, and a failed load's only explanation is in them. Both the chat
model (:mod:`nbmagic.llm.llamacpp`) and its latent context (:mod:`nbmagic.llm.latent_llamacpp`)
open native contexts, so the capture lives here, below both.
"""

from __future__ import annotations

import contextlib
import io
import os
import sys
import tempfile
from collections.abc import Iterator


@contextlib.contextmanager
def quiet_native_logs(sink: list[str]) -> Iterator[None]:
    """Capture what llama.cpp writes while loading, at the Python and the file-descriptor level.

    ``verbose=False`` still lets some warnings through (e.g. a context longer than the
    model was trained for); in a notebook they would show up as red stderr noise. The
    text is kept in ``sink`` so that load errors can quote llama.cpp's own reason.
    """
    py_err = io.StringIO()
    with tempfile.TemporaryFile(mode="w+b") as tmp, contextlib.redirect_stderr(py_err):
        saved: int | None = None
        try:
            sys.__stderr__.flush() if sys.__stderr__ else None
            saved = os.dup(2)
            os.dup2(tmp.fileno(), 2)
        except (OSError, ValueError):  # no usable fd 2 (some embedded interpreters)
            saved = None
        try:
            yield
        finally:
            if saved is not None:
                os.dup2(saved, 2)
                os.close(saved)
            tmp.seek(0)
            sink.append(tmp.read().decode("utf-8", "replace"))
            sink.append(py_err.getvalue())


def last_lines(log: list[str], n: int = 3) -> str:
    lines = [ln.strip() for ln in "".join(log).splitlines() if ln.strip()]
    return " | ".join(lines[-n:])
