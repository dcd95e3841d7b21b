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
from dataclasses import dataclass

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


def _limits(cpu_seconds: int, memory_bytes: int) -> None:  # pragma: no cover - runs in the child
    try:
        import resource

        resource.setrlimit(resource.RLIMIT_CPU, (cpu_seconds, cpu_seconds + 1))
        resource.setrlimit(resource.RLIMIT_AS, (memory_bytes, memory_bytes))
    except (ImportError, ValueError, OSError):
        pass


def truncate(text: str, max_chars: int) -> str:
    """Keep head and tail of long output, saying how much was cut."""
    if len(text) <= max_chars:
        return text
    half = max(1, max_chars // 2)
    return f"{text[:half]}\n… (truncated, {len(text) - 2 * half} chars omitted)\n{text[-half:]}"


def run_python(
    code: str, *, timeout: float = 10.0, max_chars: int = 4000, memory_mb: int = 1024
) -> ToolRun:
    """Run ``code`` in a fresh interpreter; return its stdout+stderr (truncated) and success."""
    import time

    t0 = time.perf_counter()
    env = {"PATH": os.environ.get("PATH", ""), "PYTHONIOENCODING": "utf-8"}
    preexec = None
    if os.name == "posix":
        cpu, mem = int(timeout) + 1, memory_mb * 1024 * 1024
        preexec = lambda: _limits(cpu, mem)  # noqa: E731
    with tempfile.TemporaryDirectory(prefix="nbmagic-tool-") as cwd:
        try:
            proc = subprocess.run(
                [sys.executable, "-I", "-c", code],
                capture_output=True,
                text=True,
                timeout=timeout,
                cwd=cwd,
                env=env,
                preexec_fn=preexec,
                stdin=subprocess.DEVNULL,
            )
        except subprocess.TimeoutExpired as exc:
            out = (exc.stdout or "") if isinstance(exc.stdout, str) else ""
            msg = f"{out}\nError: the code ran longer than {timeout:g} s and was stopped."
            return ToolRun(code, truncate(msg.strip(), max_chars), False, time.perf_counter() - t0)
    output = (proc.stdout or "") + (proc.stderr or "")
    if proc.returncode != 0 and not proc.stderr:
        output += f"\nError: exit status {proc.returncode}"
    return ToolRun(code, truncate(output.strip() or "(no output)", max_chars), proc.returncode == 0,
                   time.perf_counter() - t0)


def run_blocks(text: str, *, timeout: float = 10.0, max_chars: int = 4000) -> ToolRun | None:
    """Run all python blocks of ``text`` as one program (later blocks see earlier names)."""
    blocks = code_blocks(text)
    if not blocks:
        return None
    return run_python("\n\n".join(blocks), timeout=timeout, max_chars=max_chars)
