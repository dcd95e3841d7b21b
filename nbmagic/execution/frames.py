"""Whose code is a frame running: nbmagic's (and its host shell's), a library's, or the user's?

The time limit raises again and again into code that swallows the interruption,
but only into *user* code: never into nbmagic's own machinery (which must finish
restoring the shell) nor into IPython formatting the traceback of the first
interruption. Library frames (the standard library, site-packages) are neither:
they count as the code that called them.
"""

from __future__ import annotations

import os
import sys
import sysconfig
from types import FrameType

_PACKAGE = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))  # .../nbmagic
_CORE = os.path.dirname(os.path.abspath(__file__))  # .../nbmagic/execution
_HOSTS = ("IPython", "ipykernel")  # the shell that runs cells and shows their tracebacks

CORE, NBMAGIC, HOST, LIBRARY, USER = "core", "nbmagic", "host", "library", "user"
_cache: dict[str, str] = {}


def _library_roots() -> tuple[str, ...]:
    roots = {sys.prefix, sys.base_prefix, sys.exec_prefix}
    for key in ("stdlib", "platstdlib", "purelib", "platlib"):
        try:
            roots.add(sysconfig.get_paths()[key])
        except KeyError:  # pragma: no cover - unusual installs
            pass
    return tuple(os.path.abspath(r) + os.sep for r in roots if r)


_LIB_ROOTS = _library_roots()


def _host_roots() -> tuple[str, ...]:
    roots = []
    for name in _HOSTS:
        module = sys.modules.get(name)
        path = getattr(module, "__file__", None)
        if path:
            roots.append(os.path.dirname(os.path.abspath(path)) + os.sep)
    return tuple(roots)


def classify(filename: str) -> str:
    """``CORE`` (this package), ``NBMAGIC``, ``HOST`` (IPython, ipykernel), ``LIBRARY`` or ``USER``."""
    kind = _cache.get(filename)
    if kind is not None:
        return kind
    if filename.startswith("<"):
        kind = LIBRARY if filename.startswith("<frozen") or filename == "<string>" else USER
    else:
        path = os.path.abspath(filename)
        if path.startswith(_CORE + os.sep):
            kind = CORE
        elif path.startswith(_PACKAGE + os.sep):
            kind = NBMAGIC
        elif path.startswith(_host_roots()):
            kind = HOST
        elif path.startswith(_LIB_ROOTS):
            kind = LIBRARY
        else:
            kind = USER
    if kind != USER or filename.startswith("<"):
        _cache[filename] = kind  # a host imported later could turn a "user" path into its own: re-check those
    return kind


def is_own_file(filename: str) -> bool:
    """A file of nbmagic itself (its frames are never shown to a model)."""
    return classify(filename) in (CORE, NBMAGIC)


def owner(frame: FrameType | None) -> str | None:
    """Whose code runs at ``frame``: walking outwards, the first frame that is not a library's decides.

    A frame of the execution core counts as such only as the innermost one (the limit's own
    set-up or take-down); further out it is just the caller of the code.
    """
    if frame is not None and classify(frame.f_code.co_filename) == CORE:
        return CORE
    while frame is not None:
        kind = classify(frame.f_code.co_filename)
        if kind in (NBMAGIC, HOST, USER):
            return kind
        frame = frame.f_back
    return None


def may_interrupt(frame: FrameType | None, *, first: bool) -> bool:
    """May the time limit raise into the code at ``frame``?

    Never inside the core itself. The first raise may land anywhere within the running code's
    extent: while a user frame is on the stack (also inside a library or a shell command it
    called, ``!pip install``) or in nbmagic's helpers it called (an RLM sub-call waiting on a
    server); not after the cell has returned (IPython's post-processing, its traceback of the
    error). Repeated raises only where user code itself runs.
    """
    who = owner(frame)
    if who == CORE:
        return False
    if not first:
        return who == USER
    if who in (USER, NBMAGIC):
        return True
    while frame is not None:
        if classify(frame.f_code.co_filename) == USER:
            return True
        frame = frame.f_back
    return False
