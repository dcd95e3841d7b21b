"""A Ctrl-C that reaches only the kernel process stops the subprocess REPL's worker too.

A front-end that signals the kernel process rather than its group (or ``kill -INT <kernel>``)
used to leave ``nbmagic.rlm.worker`` running the interrupted code, and the next turn queued
behind it. Real worker, real busy loops, a real SIGINT to this process only.
"""

from __future__ import annotations

import os
import signal
import threading
from collections.abc import Iterator
from typing import Any

import pytest

from nbmagic.rlm.repl import SubprocessEnvironment


@pytest.fixture
def worker() -> Iterator[SubprocessEnvironment]:
    env = SubprocessEnvironment(memory_limit_mb=None, grace=1.0)
    env.start({"context": "text"}, {})
    yield env
    env.close()


def _interrupted(env: SubprocessEnvironment, code: str) -> None:
    """Run ``code`` (no turn limit) and Ctrl-C this process only, once the worker is in the loop."""
    timer = threading.Timer(0.8, os.kill, (os.getpid(), signal.SIGINT))
    timer.start()
    try:
        with pytest.raises(KeyboardInterrupt):
            env.execute(code, timeout=None, max_output_chars=1000)
    finally:
        timer.cancel()


def _next_turn(env: SubprocessEnvironment, code: str) -> Any:
    """The follow-up turn, in a thread so a worker still stuck in the old loop fails the test instead of hanging it."""
    box: list[Any] = []
    t = threading.Thread(target=lambda: box.append(env.execute(code, timeout=None, max_output_chars=1000)), daemon=True)
    t.start()
    t.join(60)
    if t.is_alive():
        env._kill()
        t.join(5)
        pytest.fail("the next turn waited behind the interrupted one")
    return box[0]


def test_ctrl_c_reaches_the_worker_and_keeps_its_variables(worker: SubprocessEnvironment) -> None:
    worker.execute("kept = 41", timeout=10, max_output_chars=1000)
    pid = worker.pid
    _interrupted(worker, "while True:\n    pass")
    out = _next_turn(worker, "print(kept + 1)")
    assert out.output.strip() == "42" and out.error is None
    assert worker.pid == pid and worker.restarts == 0  # stopped, not killed


def test_a_loop_that_swallows_ctrl_c_gets_the_worker_restarted_and_the_model_told(worker: SubprocessEnvironment) -> None:
    worker.execute("kept = 41", timeout=10, max_output_chars=1000)
    pid = worker.pid
    _interrupted(worker, "while True:\n    try:\n        while True:\n            pass\n    except BaseException:\n        pass")
    assert worker.restarts == 1 and worker.pid != pid
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)  # the stuck worker is gone, not left burning a core
    out = _next_turn(worker, "print('kept' in globals(), context)")
    assert out.output.strip() == "False text"
    assert any("interrupted turn did not stop" in n and "variables from earlier turns are gone" in n for n in out.notes)


def test_a_session_follow_up_after_ctrl_c_runs_at_once(openai_server: Any, models: Any) -> None:
    """%rlm --continue after an interrupted subprocess turn: the follow-up's code runs in the same REPL."""
    from nbmagic.errors import RunInterrupted
    from nbmagic.rlm.agent import RLM
    from nbmagic.testing.rlm_scripts import ScriptedRoot, code

    root, sub = models
    openai_server.set_responder(ScriptedRoot({
        "busy": [code("n = 5\nwhile True:\n    pass")],
        "follow": [code("submit(n * 2)")],
    }))
    rlm = RLM(root, sub_model=sub, environment="subprocess", native_tools=False, turn_timeout=0)
    with rlm.session() as session:
        timer = threading.Timer(2.0, os.kill, (os.getpid(), signal.SIGINT))
        timer.start()
        try:
            with pytest.raises(RunInterrupted):
                session.query("busy question")
        finally:
            timer.cancel()
        box: list[Any] = []
        t = threading.Thread(target=lambda: box.append(session.query("follow-up")), daemon=True)
        t.start()
        t.join(60)
        assert not t.is_alive(), "the follow-up waited behind the interrupted turn"
        assert box[0].answer == 10
