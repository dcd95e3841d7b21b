"""A download's progress and its y/N question, drawn for where the code runs.

:mod:`nbmagic.llm.hub_default` reports ``update(done_bytes, total_bytes)`` and asks one
question; this module picks the form: an ipywidgets bar in a notebook whose frontend renders
widgets, a tqdm bar in a terminal, a line every 10 % elsewhere (logs, CI). The question is an
``input()`` where someone can answer it (a terminal, or a notebook kernel whose frontend accepts
input); anywhere else there is nobody to ask and the answer is None.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, TextIO

from nbmagic.ui.select import detect


def _shell() -> Any:
    try:
        from IPython import get_ipython
    except ImportError:  # pragma: no cover - IPython is a dependency
        return None
    return get_ipython()


def ask_yes_no(question: str, *, stdin: TextIO | None = None) -> bool | None:
    """True for y/yes, False for anything else, None when nobody can answer."""
    shell = _shell()
    in_kernel = type(shell).__name__ == "ZMQInteractiveShell"
    stream = stdin or sys.stdin
    if not in_kernel and not (stream is not None and stream.isatty()):
        return None
    try:
        answer = input(question)
    except (EOFError, OSError, RuntimeError):  # no stdin, or the frontend does not take input
        return None
    except Exception as exc:  # IPython's StdinNotImplementedError (nbclient, voila)
        if type(exc).__name__ == "StdinNotImplementedError":
            return None
        raise
    return answer.strip().lower() in ("y", "yes")


class _Lines:
    """One line at 0 %, every 10 %, and at the end: readable in logs."""

    def __init__(self, label: str, stream: TextIO) -> None:
        self.label, self.stream, self.shown, self.t0 = label, stream, -1, time.monotonic()

    def update(self, done: int, total: int | None) -> None:
        if not total:
            return
        tenth = min(10, done * 10 // total)
        if tenth > self.shown:
            self.shown = tenth
            rate = done / max(time.monotonic() - self.t0, 1e-3) / 1e6
            print(f"nbmagic: downloading {self.label}: {done / 1e6:.0f}/{total / 1e6:.0f} MB ({tenth * 10} %, "
                  f"{rate:.1f} MB/s)", file=self.stream, flush=True)

    def close(self) -> None:
        pass


class _Tqdm:
    """tqdm's bar in a terminal."""

    def __init__(self, label: str, stream: TextIO) -> None:
        from tqdm import tqdm

        self.bar = tqdm(desc=f"nbmagic: {label}", unit="B", unit_scale=True, unit_divisor=1024, file=stream,
                        leave=True)

    def update(self, done: int, total: int | None) -> None:
        if total and self.bar.total != total:
            self.bar.total = total
        self.bar.update(done - self.bar.n)

    def close(self) -> None:
        self.bar.close()


class _Widget:
    """An ipywidgets bar under the running cell; updates at most 5 times a second."""

    def __init__(self, label: str) -> None:
        import ipywidgets as w
        from IPython.display import display

        self.bar = w.FloatProgress(value=0.0, min=0.0, max=1.0, description="", bar_style="info")
        self.text = w.HTML(f"Downloading <b>{label}</b>")
        self.box = w.VBox([self.text, self.bar])
        self.label, self.last, self.t0 = label, 0.0, time.monotonic()
        display(self.box)

    def update(self, done: int, total: int | None) -> None:
        now = time.monotonic()
        if total and (now - self.last >= 0.2 or done >= total):
            self.last = now
            self.bar.value = done / total
            rate = done / max(now - self.t0, 1e-3) / 1e6
            self.text.value = (f"Downloading <b>{self.label}</b>: {done / 1e6:.0f} / {total / 1e6:.0f} MB "
                               f"({rate:.1f} MB/s)")

    def close(self) -> None:
        self.bar.bar_style = "success" if self.bar.value >= 1.0 else "warning"


def make_view(label: str, *, kind: str | None = None, stream: TextIO | None = None) -> Any:
    """The progress view for ``kind`` (widgets | tqdm | lines), guessed when None."""
    stream = stream or sys.stderr
    if kind is None:
        if detect(_shell()) == "widgets":
            kind = "widgets"
        elif stream.isatty():
            kind = "tqdm"
        else:
            kind = "lines"
    if kind == "widgets":
        try:
            return _Widget(label)
        except ImportError:  # pragma: no cover - ipywidgets is a dependency
            kind = "lines"
    if kind == "tqdm":
        try:
            return _Tqdm(label, stream)
        except ImportError:  # tqdm comes with huggingface_hub; without it, lines
            pass
    return _Lines(label, stream)


@contextmanager
def progress_view(label: str, **kwargs: Any) -> Iterator[Any]:
    """``with progress_view(label) as view: ... view.update(done, total)``; closed on the way out."""
    view = make_view(label, **kwargs)
    try:
        yield view
    finally:
        view.close()
