"""The execution core on its own: limits against swallowing code, in and off the main thread,
nesting, the process guard, and tracebacks without nbmagic's frames."""

from __future__ import annotations

import os
import signal
import threading
import time

import pytest

from nbmagic.execution import (
    CellTimeout,
    ExitBlocked,
    compile_cell,
    process_guard,
    time_limit,
    user_traceback,
)

SWALLOW = "import time\nn = 0\nwhile True:\n    try:\n        time.sleep(0.1)\n    except:\n        n += 1"


def test_a_swallowing_loop_is_stopped_in_the_main_thread_and_no_alarm_is_left() -> None:
    ns: dict = {}
    outer = signal.getitimer(signal.ITIMER_REAL)[0]  # pytest-timeout's, if any
    sigint_before = signal.getsignal(signal.SIGINT)  # not always the default: earlier tests' event loops set their own
    t0 = time.monotonic()
    with pytest.raises(CellTimeout) as info, time_limit(0.3) as lim:
        compile_cell(SWALLOW, "<c1>").run(ns)
    assert lim.timed_out and not lim.interrupted and ns["n"] >= 1 and time.monotonic() - t0 < 4
    assert "stopped again" in str(info.value)  # the model is told it swallowed the first one
    left = signal.getitimer(signal.ITIMER_REAL)[0]
    assert left == 0.0 if outer == 0 else outer - 10 < left < outer  # ours gone, an outer one kept
    assert signal.getsignal(signal.SIGINT) is sigint_before


def test_a_swallowing_loop_is_stopped_in_a_worker_thread() -> None:
    box: dict = {}

    def body() -> None:
        ns: dict = {}
        try:
            with time_limit(0.3):
                compile_cell(SWALLOW, "<c2>").run(ns)
        except CellTimeout:
            box["stopped"] = ns["n"]

    t = threading.Thread(target=body)
    t.start()
    t.join(10)
    assert not t.is_alive() and box["stopped"] >= 1


def test_nested_limits_the_outer_fires_through_the_inner() -> None:
    with pytest.raises(CellTimeout), time_limit(0.3) as outer, time_limit(30) as inner:
        compile_cell(SWALLOW, "<c3>").run({})
    assert outer.timed_out and not inner.timed_out


def test_user_traceback_drops_nbmagic_frames() -> None:
    try:
        with time_limit(0.2):
            compile_cell("while True:\n    pass", "<c4>").run({})
    except CellTimeout as exc:
        text = user_traceback(exc)
    assert '"<c4>", line' in text and "limits.py" not in text and "cells.py" not in text


@pytest.mark.parametrize(
    "call",
    [
        lambda: os._exit(0),
        lambda: os.kill(os.getpid(), signal.SIGTERM),
        lambda: os.kill(0, signal.SIGKILL),
        lambda: os.abort(),
        lambda: signal.raise_signal(signal.SIGTERM),
        lambda: os.execv("/bin/true", ["true"]),
    ],
    ids=["_exit", "kill-self", "kill-group", "abort", "raise_signal", "execv"],
)
def test_process_guard_refuses_what_would_end_this_process(call) -> None:
    with process_guard(), pytest.raises(ExitBlocked, match="would end the Python process"):
        call()
    assert os._exit.__module__ == "posix" and os.kill.__module__ == "posix"  # restored


def test_process_guard_leaves_other_threads_children_and_harmless_calls_alone() -> None:
    with process_guard():
        os.kill(os.getpid(), 0)  # a liveness check, not a kill
        seen = []
        t = threading.Thread(target=lambda: seen.append(os._exit is not None and os.getpid()))
        t.start()
        t.join()
        pid = os.fork()
        if pid == 0:  # the child may end itself as usual (multiprocessing does)
            os._exit(7)
        _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 7 and seen


def test_the_core_imports_only_the_standard_library() -> None:
    import subprocess
    import sys

    code = ("import sys, nbmagic.execution, nbmagic.rlm.execution\n"
            "print(sorted({m.split('.')[0] for m in sys.modules} & {'IPython', 'numpy', 'pandas', 'openai', 'torch',"
            " 'traitlets', 'jupyter_client', 'nbformat'}))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True)
    assert out.stdout.strip() == "[]"  # the RLM worker imports it: it must start fast


def test_a_fork_inside_a_limit_starts_without_the_parents_deadline() -> None:
    with time_limit(0.3):
        pid = os.fork()
        if pid == 0:  # the child outlives the parent's deadline without being interrupted
            try:
                time.sleep(0.6)
                with time_limit(5):  # its own limit: the parent's (past) deadline must not fire in it
                    compile_cell("import time\nt = time.monotonic()\nwhile time.monotonic() - t < 0.3:\n    pass",
                                 "<child>").run({})
            except BaseException:
                os._exit(3)
            os._exit(0)
    _, status = os.waitpid(pid, 0)  # the parent left its limit at once
    assert os.waitstatus_to_exitcode(status) == 0
