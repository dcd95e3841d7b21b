"""Both REPL environments, including every kind of bad code; the user's namespace never changes."""

from __future__ import annotations

import copy
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from nbmagic.rlm.repl import KernelEnvironment, SubprocessEnvironment

USER = {"data": [1, 2, 3], "name": "alice"}
CALLS: list[tuple[str, Any]] = []


def _llm_query(prompt: str) -> tuple[str, None]:
    CALLS.append(("llm_query", prompt))
    return f"answer to {prompt}", None


def _submit(answer: Any) -> tuple[None, str]:
    CALLS.append(("submit", answer))
    return None, "Answer submitted."


def _broken(*_args: Any) -> tuple[str, None]:
    raise RuntimeError("helper bug")


def _slow(seconds: float) -> tuple[str, None]:
    time.sleep(seconds)
    return "slow done", None


HELPERS = {"llm_query": _llm_query, "submit": _submit, "slow_helper": _slow, "broken_helper": _broken}


@pytest.fixture(scope="module")
def user_ns() -> dict[str, Any]:
    return copy.deepcopy(USER)


@pytest.fixture(scope="module", params=["kernel", "subprocess"])
def env(request: pytest.FixtureRequest, user_ns: dict[str, Any]) -> Iterator[Any]:
    """One environment per kind for the whole module (the worker is shared: it is the slow part)."""
    e = KernelEnvironment(user_ns) if request.param == "kernel" else SubprocessEnvironment(memory_limit_mb=1024, grace=1.0)
    e.start({"context": "the context text", **({"data": user_ns["data"]} if request.param == "subprocess" else {})},
            HELPERS)
    yield e
    e.close()
    assert user_ns == USER  # nothing any test ran changed the user's variables


def run(env: Any, code: str, timeout: float | None = 5.0, max_chars: int = 2000) -> Any:
    return env.execute(code, timeout=timeout, max_output_chars=max_chars)


def test_state_persists_and_context_is_bound(env: Any) -> None:
    assert run(env, "total = sum(data)\nlen(context)").output == "16\n"
    assert run(env, "print(total * 2)").output == "12\n"


def test_helpers_answer_and_print_notices(env: Any) -> None:
    CALLS.clear()
    out = run(env, "r = llm_query('q1')\nprint(r)\nsubmit(r)").output
    assert out == "answer to q1\nAnswer submitted.\n"
    assert CALLS == [("llm_query", "q1"), ("submit", "answer to q1")]


def test_bad_helper_arguments_raise_the_same_way_in_both(env: Any) -> None:
    res = run(env, "llm_query(prompt=1, extra=2)")
    assert res.error.startswith("TypeError") and "extra" in res.output


def test_exception_gives_short_traceback_and_repl_survives(env: Any) -> None:
    res = run(env, "def f(x):\n    return x['missing']\nf({})")
    assert res.error.startswith("KeyError") and "line 2, in f" in res.output
    assert len(res.output) < 800
    assert run(env, "print('alive')").output == "alive\n"


def test_exit_is_caught(env: Any) -> None:
    res = run(env, "import sys\nsys.exit(1)")
    assert res.exited and "SystemExit(1)" in res.output
    res = run(env, "exit()")
    assert res.exited
    assert run(env, "print(total)").output == "6\n"  # same process, same variables


def test_megabytes_of_output_are_truncated(env: Any) -> None:
    res = run(env, "print('x' * 3_000_000)\nfor i in range(20_000):\n    print('row', i)", max_chars=300)
    assert res.output.startswith("xxx") and res.output.rstrip().endswith("row 19999")
    assert "(truncated," in res.output and len(res.output) < 400


def test_infinite_loop_is_stopped_and_state_kept(env: Any) -> None:
    run(env, "before = 'kept'")
    res = run(env, "while True:\n    pass", timeout=0.5)
    assert res.timed_out and "0.5 s limit" in res.output
    assert run(env, "print(before)").output == "kept\n"


def test_a_loop_that_swallows_the_limit_is_stopped_too(env: Any) -> None:
    # the case: a bare except around sleep ran 20.7 s under a 3 s limit in the kernel REPL
    run(env, "swallowed = 0")
    t0 = time.monotonic()
    res = run(env, "import time\nwhile True:\n    try:\n        time.sleep(0.2)\n    except:\n        swallowed += 1",
              timeout=0.5)
    assert res.timed_out and res.error == "TimeoutError" and not res.restarted  # stopped softly, state kept
    assert time.monotonic() - t0 < 5
    assert "nbmagic" not in res.output.replace("<rlm-turn", "")  # no frames of ours in what the model reads
    assert int(run(env, "print(swallowed)").output) >= 1


def test_a_process_exit_is_refused_in_the_kernel_repl() -> None:
    env = KernelEnvironment({})
    env.start({}, HELPERS)
    for code in ("import os\nos._exit(0)", "import os, signal\nos.kill(os.getpid(), signal.SIGTERM)",
                 "import os\nos.abort()", "import signal\nsignal.raise_signal(signal.SIGTERM)"):
        res = run(env, code)
        assert res.error.startswith("ExitBlocked") and "would end the Python process" in res.output, code
    import os

    assert os._exit.__module__ == "posix"  # put back after the turn


def test_ctrl_c_ends_a_turn_that_swallows_it_in_the_kernel_repl() -> None:
    import signal
    import threading

    env = KernelEnvironment({})
    env.start({}, HELPERS)
    timer = threading.Timer(0.4, os.kill, (os.getpid(), signal.SIGINT))
    timer.start()
    t0 = time.monotonic()
    try:
        with pytest.raises(KeyboardInterrupt):
            run(env, "import time\nwhile True:\n    try:\n        time.sleep(0.1)\n    except:\n        pass",
                timeout=60)
    finally:
        timer.cancel()
    assert time.monotonic() - t0 < 5


def test_turn_limit_holds_while_a_helper_is_slow(env: Any) -> None:
    run(env, "kept_too = 1")
    res = run(env, "slow_helper(1.5)", timeout=0.4)
    assert res.timed_out and not res.restarted  # soft stop: the worker (if any) survives
    assert run(env, "print(kept_too, slow_helper(0))").output == "1 slow done\n"


def test_reassigned_helpers_are_refused_and_restored(env: Any) -> None:
    res = run(env, "llm_query = lambda p: 'fake'")
    assert "ReservedNameError" in res.output and "llm_query" in res.output
    res = run(env, "def sneaky():\n    global submit\n    submit = None\nsneaky()")
    assert any("submit is an RLM helper" in n for n in res.notes)
    assert run(env, "print(llm_query('x'))").output == "answer to x\n"
    CALLS.clear()
    run(env, "submit(1)")
    assert CALLS == [("submit", 1)]


def test_export_returns_only_the_models_variables(env: Any) -> None:
    run(env, "exported_value = [1, 2]")
    out = env.export()
    assert out["exported_value"] == [1, 2]
    assert "llm_query" not in out and "context" not in out


# --- subprocess only -------------------------------------------------------------------


@pytest.fixture(scope="module")
def worker(user_ns: dict[str, Any]) -> Iterator[SubprocessEnvironment]:
    e = SubprocessEnvironment(memory_limit_mb=1024, grace=1.0)
    e.start({"context": "x" * 3_000_000}, HELPERS)
    yield e
    e.close()


def test_worker_runs_in_its_own_directory_without_keys(worker: SubprocessEnvironment, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MY_SERVICE_API_KEY", "sk-review-0123456789")
    monkeypatch.setenv("NBMAGIC_HARMLESS_SETTING", "kept")
    worker._restart()  # the environment is read when the worker starts
    out = run(worker, "import os\nprint(os.getcwd())\nprint(sorted(k for k in os.environ if 'KEY' in k))\n"
                      "print(os.getpid(), os.environ.get('NBMAGIC_HARMLESS_SETTING'))")
    cwd, keys, pid_and_setting = out.output.splitlines()
    assert os.path.realpath(cwd) == os.path.realpath(worker.workdir) and keys == "[]"
    pid, setting = pid_and_setting.split()
    assert int(pid) != os.getpid() and setting == "kept"


def test_large_context_goes_through_a_file(worker: SubprocessEnvironment) -> None:
    assert worker.context_file is not None and worker.context_file.stat().st_size > 3_000_000
    assert run(worker, "len(context)").output == "3000000\n"


def test_hard_timeout_kills_and_restarts_the_worker(worker: SubprocessEnvironment) -> None:
    run(worker, "gone_after_restart = 1")
    pid = worker.pid
    res = run(worker, "import signal\nsignal.signal(signal.SIGALRM, signal.SIG_IGN)\nwhile True:\n    pass", timeout=0.5)
    assert res.timed_out and res.restarted and "restarted" in res.output
    assert worker.pid != pid
    assert "NameError" in run(worker, "gone_after_restart").output
    assert run(worker, "len(context)").output == "3000000\n"  # contexts reloaded


def test_worker_death_is_reported_and_recovered(worker: SubprocessEnvironment) -> None:
    res = run(worker, "import os\nos._exit(7)")
    assert res.restarted and "exit status 7" in res.output
    assert run(worker, "print('back')").output == "back\n"


def test_worker_closing_its_connection_is_a_restart_not_a_traceback(worker: SubprocessEnvironment) -> None:
    pid = worker.pid
    res = run(worker, "import os, sys, time\nos.close(int(sys.argv[1]))\ntime.sleep(60)")
    assert res.restarted and "connection to this process was closed" in res.output
    assert worker.pid != pid and run(worker, "print('back')").output == "back\n"


def test_a_failing_helper_is_an_error_string_not_a_lost_run(worker: SubprocessEnvironment) -> None:
    res = run(worker, "print(broken_helper())\nprint('after')")
    assert res.output == "[error] broken_helper failed: RuntimeError: helper bug\nafter\n"


def test_close_reaps_every_worker_and_removes_the_temp_dir() -> None:
    e = SubprocessEnvironment(memory_limit_mb=1024, grace=0.5)
    e.start({"context": "abc"}, HELPERS)
    first = e.pid
    run(e, "import os\nos._exit(3)")  # dies: restarted
    second = e.pid
    res = run(e, "import signal\nsignal.signal(signal.SIGALRM, signal.SIG_IGN)\nwhile True:\n    pass", timeout=0.3)
    assert res.restarted  # killed: restarted again
    workdir, third = e.workdir, e.pid
    assert workdir is not None and workdir.is_dir() and len({first, second, third}) == 3
    e.close()
    assert not workdir.exists() and e.pid is None
    assert not any(_zombie(pid) for pid in (first, second, third))


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="parent-death signal is Linux-only")
def test_worker_dies_with_its_parent_even_mid_loop(tmp_path: Path) -> None:
    """A killed notebook kernel leaves no worker spinning in a loop that ignores the soft alarm."""
    script = tmp_path / "parent.py"
    script.write_text(
        "import os, sys\n"
        "from nbmagic.rlm.repl import SubprocessEnvironment\n"
        "e = SubprocessEnvironment(memory_limit_mb=512)\n"
        "e.start({}, {})\n"
        "print(e.pid, flush=True)\n"
        "e.conn.send(('exec', 1, 'import signal\\nsignal.signal(signal.SIGALRM, signal.SIG_IGN)\\n"
        "while True:\\n    pass', None, 100))\n"
        "import time; time.sleep(0.5)\n"
        "os._exit(0)\n"
    )
    out = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=60,
                         cwd=Path(__file__).resolve().parents[2], env={**os.environ, "TMPDIR": str(tmp_path)})
    pid = int(out.stdout.split()[0])
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and os.path.exists(f"/proc/{pid}") and not _zombie(pid):
        time.sleep(0.05)
    assert not os.path.exists(f"/proc/{pid}") or _zombie(pid)


def _zombie(pid: int | None) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().split()[2] == "Z"
    except OSError:  # gone: reaped
        return False


def test_unpicklable_context_is_a_clear_error_and_leaves_no_temp_dir(tmp_path: Path,
                                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    from nbmagic.errors import ConfigError

    monkeypatch.setattr("tempfile.tempdir", str(tmp_path))
    e = SubprocessEnvironment()
    with pytest.raises(ConfigError, match="'gen' cannot be sent to the subprocess REPL"):
        e.start({"ok": [1], "gen": (i for i in range(3))}, HELPERS)
    assert list(tmp_path.iterdir()) == [] and e.proc is None


def test_a_worker_that_cannot_start_is_one_clear_error(tmp_path: Path) -> None:
    from nbmagic.errors import NbmagicError

    e = SubprocessEnvironment(python=str(tmp_path / "no-python"))
    with pytest.raises(NbmagicError, match="Could not start the RLM worker process"):
        e.start({"context": "x"}, HELPERS)
    e.close()
    assert e.workdir is None


def test_memory_limit_raises_memory_error(worker: SubprocessEnvironment) -> None:
    res = run(worker, "big = bytearray(3 * 1024**3)")
    assert res.error and "MemoryError" in res.error
    assert run(worker, "print('still here')").output == "still here\n"


def test_unpicklable_helper_argument_is_a_clear_error(worker: SubprocessEnvironment) -> None:
    res = run(worker, "llm_query(lambda: 1)")
    assert "plain data" in res.output
