"""The Python tool of the deliberation pattern's tool-caller.

The tool-caller writes ```python blocks; they run here in a *separate* CPython
process (isolated mode, empty temporary working directory, scrubbed environment,
CPU-time and memory limits where the OS has them, a wall-clock timeout), and the
printed output comes back as text for the next turn. It is a fence against
accidents (runaway loops, memory blow-ups, stray files in the user's folder),
not a security sandbox against hostile code.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass

from nbmagic.text import truncate

_BLOCK = re.compile(r"```(?:python|py|python3)[ \t]*\n(.*?)```", re.DOTALL | re.IGNORECASE)


def code_blocks(text: str) -> list[str]:
    """The ```python blocks of a message, in order."""
    return [m.group(1).strip("\n") for m in _BLOCK.finditer(text or "") if m.group(1).strip()]


@dataclass(frozen=True)
class ToolRun:
    code: str
    output: str
    ok: bool
    seconds: float = 0.0


def _limiter(cpu_seconds: int, memory_bytes: int) -> Callable[[], None] | None:
    """The ``preexec_fn`` that sets the child's limits, or None where the OS has none.

    ``resource`` is imported here, in the parent: between fork and exec the child must not
    import (another thread of the parent, e.g. a kernel's, may have held the import lock at
    fork time, and the child would wait for it forever)."""
    try:
        import resource
    except ImportError:
        return None
    setrlimit, cpu, mem = resource.setrlimit, resource.RLIMIT_CPU, resource.RLIMIT_AS

    def limits() -> None:  # pragma: no cover - runs in the child
        try:
            setrlimit(cpu, (cpu_seconds, cpu_seconds + 1))
            setrlimit(mem, (memory_bytes, memory_bytes))
        except (ValueError, OSError):
            pass

    return limits


def run_python(
    code: str, *, timeout: float = 10.0, max_chars: int = 4000, memory_mb: int = 1024
) -> ToolRun:
    """Run ``code`` in a fresh interpreter; return its stdout+stderr (truncated) and success.

    The child leads its own process group, and the whole group is killed when the program
    ends or times out: processes it started in the background do not outlive the call (nor
    hold its output pipes open), and what it printed before a timeout is kept.
    """
    import time

    t0 = time.perf_counter()
    env = {"PATH": os.environ.get("PATH", ""), "PYTHONIOENCODING": "utf-8"}
    posix = os.name == "posix"
    preexec = _limiter(int(timeout) + 1, memory_mb * 1024 * 1024) if posix else None
    timed_out = False
    with tempfile.TemporaryDirectory(prefix="nbmagic-tool-") as cwd:
        proc = subprocess.Popen(
            [sys.executable, "-I", "-c", code],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            encoding="utf-8",
            errors="replace",
            cwd=cwd,
            env=env,
            preexec_fn=preexec,
            start_new_session=posix,
        )
        deadline = time.monotonic() + timeout
        try:
            while True:
                try:  # in slices: a program that exits while a background child holds its pipes open is done
                    out, err = proc.communicate(timeout=max(0.0, min(0.5, deadline - time.monotonic())))
                    break
                except subprocess.TimeoutExpired:
                    if proc.poll() is None and time.monotonic() < deadline:
                        continue
                    timed_out = proc.poll() is None
                    _kill_group(proc)
                    try:
                        out, err = proc.communicate(timeout=2)
                    except subprocess.TimeoutExpired:  # a descendant left the group and keeps the pipes
                        out, err = "", ""
                    break
        finally:
            _kill_group(proc)
            if proc.poll() is None:
                proc.kill()
            proc.wait()
    seconds = time.perf_counter() - t0
    output = (out or "") + (err or "")
    if timed_out:
        msg = f"{output}\nError: the code ran longer than {timeout:g} s and was stopped."
        return ToolRun(code, truncate(msg.strip(), max_chars), False, seconds)
    if proc.returncode != 0 and not err:
        output += f"\nError: exit status {proc.returncode}"
    return ToolRun(code, truncate(output.strip() or "(no output)", max_chars), proc.returncode == 0, seconds)


def _kill_group(proc: subprocess.Popen[str]) -> None:
    """SIGKILL the child's process group (POSIX); the child alone elsewhere."""
    if os.name == "posix":
        import signal

        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass  # the group is gone already
    elif proc.poll() is None:
        proc.kill()


def program(text: str) -> str | None:
    """All python blocks of ``text`` as one program (later blocks see earlier names); None without any."""
    blocks = code_blocks(text)
    return "\n\n".join(blocks) if blocks else None


def run_blocks(text: str, *, timeout: float = 10.0, max_chars: int = 4000) -> ToolRun | None:
    """Run all python blocks of ``text`` as one program; None when it has none."""
    code = program(text)
    return None if code is None else run_python(code, timeout=timeout, max_chars=max_chars)
