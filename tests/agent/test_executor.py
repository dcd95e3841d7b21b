"""Both executors capture what a notebook shows, keep errors off the user's screen, and time out."""

from __future__ import annotations

import base64
import threading

import pytest

from nbmagic.agent.executor import NamespaceExecutor, ShellExecutor, strip_ansi


@pytest.fixture(params=["namespace", "shell"])
def executor(request, ipython_shell):
    if request.param == "shell":
        return ShellExecutor(ipython_shell)
    return NamespaceExecutor({})


def _kinds(res):
    return [o["output_type"] for o in res.outputs]


def test_streams_result_and_namespace(executor, capsys):
    res = executor.run("import sys\nx = 21\nprint('hello')\nprint('warn', file=sys.stderr)\nx * 2")
    assert res.ok
    assert executor.namespace["x"] == 21
    assert res.outputs[0] == {"output_type": "stream", "name": "stdout", "text": "hello\n"}
    assert res.outputs[1]["name"] == "stderr"
    assert res.outputs[2]["output_type"] == "execute_result"
    assert res.outputs[2]["data"]["text/plain"] == "42"
    out = capsys.readouterr()
    assert "hello" not in out.out and "warn" not in out.err and "42" not in out.out


def test_dataframe_result_has_html(executor):
    res = executor.run("import pandas as pd\npd.DataFrame({'a': [1, 2]})")
    assert res.ok and "text/html" in res.outputs[-1]["data"]


def test_error_is_captured_with_traceback(executor, capsys):
    res = executor.run("a = 1\nb = {}\nb['missing']")
    assert not res.ok
    assert res.ename == "KeyError" and "missing" in res.evalue
    assert _kinds(res) == ["error"]
    assert "KeyError" in res.error and "\x1b[" not in res.error
    assert "b['missing']" in strip_ansi("".join(res.outputs[0]["traceback"]))
    assert executor.namespace["a"] == 1  # code before the error ran
    out = capsys.readouterr()
    assert "KeyError" not in out.out + out.err


def test_syntax_error(executor):
    res = executor.run("def broken(:\n    pass")
    assert not res.ok and res.ename == "SyntaxError"


def test_matplotlib_figure_becomes_png(executor):
    res = executor.run(
        "import matplotlib\nimport matplotlib.pyplot as plt\nfig, ax = plt.subplots()\nax.plot([1, 2, 3])\nplt.show()"
    )
    assert res.ok, res.error
    pngs = [o for o in res.outputs if "image/png" in o.get("data", {})]
    assert len(pngs) == 1
    assert base64.b64decode(pngs[0]["data"]["image/png"]).startswith(b"\x89PNG")
    assert not any("cannot be shown" in o.get("text", "") for o in res.outputs)  # Agg's noise is dropped
    import matplotlib.pyplot as plt

    assert plt.get_fignums() == []  # closed, like the inline backend


def test_display_call_is_captured_in_shell(ipython_shell, capsys):
    res = ShellExecutor(ipython_shell).run("from IPython.display import display, HTML\ndisplay(HTML('<b>hi</b>'))\n1")
    assert _kinds(res) == ["display_data", "execute_result"]
    assert res.outputs[0]["data"]["text/html"] == "<b>hi</b>"
    assert "hi" not in capsys.readouterr().out


def test_loop_times_out(executor):
    res = executor.run("n = 0\nwhile True:\n    n += 1", timeout=0.5)
    assert not res.ok and res.timed_out
    assert res.ename == "CellTimeout"
    assert "longer than 0.5 s" in res.error
    assert executor.namespace["n"] > 0


def test_timeout_cannot_be_swallowed_and_sleep_is_interrupted(executor):
    code = "import time\ntry:\n    time.sleep(30)\nexcept Exception:\n    pass\nwhile True:\n    try:\n        pass\n    except Exception:\n        pass"
    res = executor.run(code, timeout=0.4)
    assert res.timed_out


def test_timeout_from_a_worker_thread():
    box = {}

    def work():
        box["res"] = NamespaceExecutor({}).run("while True:\n    pass", timeout=0.4)

    t = threading.Thread(target=work)
    t.start()
    t.join(20)
    assert not t.is_alive()
    assert box["res"].timed_out


def test_no_timeout_leaves_fast_code_alone(executor):
    res = executor.run("sum(range(1000))", timeout=5)
    assert res.ok and res.outputs[-1]["data"]["text/plain"] == "499500"


def test_keyboard_interrupt_propagates(executor):
    with pytest.raises(KeyboardInterrupt):
        executor.run("raise KeyboardInterrupt")


def test_shell_state_restored(ipython_shell):
    import sys

    hooks = (ipython_shell.display_pub, ipython_shell.displayhook, sys.displayhook, sys.stdout)
    ShellExecutor(ipython_shell).run("1/0")
    assert (ipython_shell.display_pub, ipython_shell.displayhook, sys.displayhook, sys.stdout) == hooks
    assert "_showtraceback" not in ipython_shell.__dict__


def test_other_threads_do_not_write_into_the_cell(executor, capsys):
    import sys as _sys

    def background():
        print("from the progress display", file=_sys.stdout)

    executor.namespace["background"] = background
    res = executor.run("import threading\nt = threading.Thread(target=background)\nt.start(); t.join()\nprint('cell')")
    assert res.outputs == [{"output_type": "stream", "name": "stdout", "text": "cell\n"}]
    assert "from the progress display" in capsys.readouterr().out


def test_endless_printing_is_cut_and_timed_out(executor):
    res = executor.run("while True:\n    print('x' * 1000)", timeout=0.5)
    assert res.timed_out
    text = res.outputs[0]["text"]
    # the head and the tail are kept (the last lines printed before the limit), the middle counted
    assert len(text) < 1_000_100 and "chars omitted" in text[400_000:600_000]
    assert text.startswith("x" * 1000 + "\n") and text.rstrip("\n").endswith("x" * 1000)


def test_magics_in_shell_and_commented_in_plain_namespace(ipython_shell):
    code = "%config InlineBackend.figure_format = 'png'\nvalue = 3\nvalue"
    assert ShellExecutor(ipython_shell).run(code).outputs[-1]["data"]["text/plain"] == "3"
    ns = {}
    res = NamespaceExecutor(ns).run(code)
    assert res.ok and ns["value"] == 3


@pytest.mark.parametrize("code", ["return 1", "x = 1\nbreak", "yield 3", "nonlocal q"])
def test_compile_time_syntax_errors_are_results_not_crashes(executor, code):
    res = executor.run(code)
    assert not res.ok and res.ename == "SyntaxError"
    assert [o["output_type"] for o in res.outputs] == ["error"]


def test_timeout_puts_back_the_alarm_handler_and_an_outer_timer(executor):
    import signal

    fired = []

    def outer(signum, frame):
        fired.append(signum)

    saved = signal.signal(signal.SIGALRM, outer)
    try:
        signal.setitimer(signal.ITIMER_REAL, 0)
        assert executor.run("while True:\n    pass", timeout=0.3).timed_out
        assert signal.getsignal(signal.SIGALRM) is outer
        assert signal.getitimer(signal.ITIMER_REAL) == (0.0, 0.0)  # no timer left running

        signal.setitimer(signal.ITIMER_REAL, 30)  # an outer deadline (pytest-timeout style)
        assert executor.run("while True:\n    pass", timeout=0.3).timed_out
        assert signal.getsignal(signal.SIGALRM) is outer
        assert 20 < signal.getitimer(signal.ITIMER_REAL)[0] <= 30  # still armed, not restarted
        assert fired == []
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, saved)


def test_svg_bytes_stay_text_and_png_bytes_become_base64(ipython_shell):
    code = ("from IPython.display import display\n"
            "display({'image/svg+xml': b'<svg/>', 'image/png': b'\\x89PNG', 'text/plain': 'pic'}, raw=True)")
    res = ShellExecutor(ipython_shell).run(code)
    data = res.outputs[0]["data"]
    assert data["image/svg+xml"] == "<svg/>"
    assert base64.b64decode(data["image/png"]) == b"\x89PNG"


def test_clear_output_progress_loop_keeps_its_last_line(ipython_shell):
    # 10,000 progress lines of ~110 characters pass the 1,000,000-character cap on kept output;
    # each clear_output empties what is kept, so the last line must still be there
    code = ("from IPython.display import clear_output\n"
            "for i in range(10_000):\n"
            "    clear_output(wait=True)\n"
            "    print('step', i, '.' * 100)")
    res = ShellExecutor(ipython_shell).run(code)
    assert res.ok
    assert len(res.outputs) == 1 and res.outputs[0]["text"].startswith("step 9999 ")


def test_warning_filters_a_cell_sets_last_and_warnings_are_captured(executor, capsys, monkeypatch):
    import sys
    import warnings

    def to_stderr(message, category, filename, lineno, file=None, line=None):  # what plain Python does
        print(f"{category.__name__}: {message}", file=sys.stderr)

    monkeypatch.setattr(warnings, "showwarning", to_stderr)  # pytest records warnings instead
    before = list(warnings.filters)
    try:
        res = executor.run("import warnings\nwarnings.warn('heads up')\n"
                           "warnings.filterwarnings('ignore', message='nbmagic-test-filter')")
        assert res.ok and "heads up" in res.outputs[0]["text"] and res.outputs[0]["name"] == "stderr"
        assert any(f[1] is not None and f[1].pattern == "nbmagic-test-filter" for f in warnings.filters)
        assert "heads up" not in capsys.readouterr().err
        assert warnings.showwarning is to_stderr
    finally:
        warnings.filters[:] = before


def test_a_handler_gets_its_grace_to_clean_up(ipython_shell):
    # the first CellTimeout may be handled (cleanup in an except block) for up to GRACE seconds
    # before it is raised again: a handler shorter than that runs to its end
    from nbmagic.execution import GRACE

    code = ("import time\nhandled = False\ntry:\n    while True:\n        pass\n"
            f"except BaseException:\n    t = time.monotonic()\n    while time.monotonic() - t < {GRACE / 2}:\n"
            "        pass\n    handled = True\n    raise")
    res = ShellExecutor(ipython_shell).run(code, timeout=0.3)
    assert res.timed_out and res.ename == "CellTimeout"
    assert ipython_shell.user_ns["handled"] is True


SWALLOWING = {
    "bare except around sleep": "import time\nwhile True:\n    try:\n        time.sleep(0.5)\n    except:\n        pass",
    "nested handlers": ("import time\nwhile True:\n    try:\n        while True:\n            try:\n"
                        "                time.sleep(0.2)\n            except BaseException:\n                pass\n"
                        "    except:\n        pass"),
    "handler in a function": ("def step():\n    try:\n        sum(range(10_000))\n    except BaseException:\n"
                              "        return 0\nwhile True:\n    step()"),
}


@pytest.mark.parametrize("code", list(SWALLOWING.values()), ids=list(SWALLOWING))
def test_a_limit_holds_against_code_that_swallows_it(executor, code):
    import time

    t0 = time.monotonic()
    res = executor.run(code, timeout=0.5)
    took = time.monotonic() - t0
    assert res.timed_out and not res.ok and res.ename == "CellTimeout"
    assert took < 10  # it ended (the grace is 1 s); before the core it never did
    # the model sees its own code, not nbmagic's frames (the alarm handler, the checkpoint)
    for own in ("executor.py", "limits.py", "_on_alarm", "checkpoint", "nbmagic/"):
        assert own not in res.error


def test_a_bounded_loop_that_swallows_the_limit_is_reported_timed_out(executor):
    # it catches every interruption and would finish "fine" after 15 s: it is stopped and reported
    res = executor.run("import time\nfor i in range(30):\n    try:\n        time.sleep(0.5)\n"
                       "    except:\n        pass\nfinished = True", timeout=0.5)
    assert res.timed_out and not res.ok and res.seconds < 8
    assert "finished" not in executor.namespace


def test_sigint_ends_a_loop_that_swallows_it(executor):
    import os
    import signal

    code = ("import time\nwhile True:\n    try:\n        time.sleep(0.2)\n    except:\n        pass")
    sigint_before = signal.getsignal(signal.SIGINT)
    timer = threading.Timer(0.5, os.kill, (os.getpid(), signal.SIGINT))  # Ctrl-C, from outside the cell
    timer.start()
    try:
        with pytest.raises(KeyboardInterrupt):
            executor.run(code, timeout=60)
    finally:
        timer.cancel()
    assert signal.getsignal(signal.SIGINT) is sigint_before  # put back


def test_a_shell_command_in_a_cell_is_interrupted_by_the_limit(ipython_shell):
    # the first interruption lands inside IPython's `!` machinery too, since the cell is running
    import time

    t0 = time.monotonic()
    res = ShellExecutor(ipython_shell).run("!sleep 20", timeout=0.5)
    assert res.timed_out and time.monotonic() - t0 < 5


def test_what_the_limit_cannot_stop_is_said(executor):
    # a call that cannot be interrupted (here: one that holds the alarm off, as a long C call does)
    code = ("import signal, time\nsignal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGALRM})\ntime.sleep(3.2)\n"
            "signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGALRM})\nwhile True:\n    pass")
    res = executor.run(code, timeout=0.3)
    assert res.timed_out and "compiled code (C) cannot be interrupted" in res.evalue
