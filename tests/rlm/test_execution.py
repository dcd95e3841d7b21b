"""The turn runner: capped capture, the layered namespace, time limits."""

from __future__ import annotations

import threading
import time

import pytest

from nbmagic.execution import CappedWriter, CellTimeout, time_limit
from nbmagic.rlm.execution import LayeredNamespace, ReservedNameError, execute_code, truncate


def test_truncate_keeps_head_and_tail_with_marker() -> None:
    text = "A" * 500 + "B" * 1000 + "C" * 500
    out = truncate(text, 100)
    assert out.startswith("A" * 50) and out.endswith("C" * 50)
    assert "… (truncated, 1900 chars omitted) …" in out
    assert truncate("short", 100) == "short"


def test_capped_writer_bounded_and_counts_everything() -> None:
    w = CappedWriter(100)
    for i in range(10_000):
        w.write(f"line {i}\n")
    value = w.getvalue()
    assert value.startswith("line 0\nline 1\n")
    assert value.endswith("line 9999\n")
    assert f"(truncated, {w.total - 100} chars omitted)" in value
    assert len(value) < 200
    w2 = CappedWriter(100)
    w2.write("x" * 60)
    w2.write("y" * 30)
    assert w2.getvalue() == "x" * 60 + "y" * 30  # under the cap: untouched


def test_layered_namespace_reads_through_and_writes_stay_in_layer() -> None:
    user = {"df": [1, 2, 3], "x": 1}
    ns = LayeredNamespace(user, {"helper": print})
    out = CappedWriter(1000)
    execute_code("y = len(df) + x\nx = 99\ndef f():\n    return df[0]\nz = f()", ns, filename="<t>", out=out)
    assert ns["y"] == 4 and ns["z"] == 1 and ns["x"] == 99
    assert user == {"df": [1, 2, 3], "x": 1}  # never rebound
    assert "x" in ns.own_variables() and "helper" not in ns.own_variables()


def test_reserved_names_cannot_be_rebound_or_deleted() -> None:
    def helper() -> str:
        return "real"

    ns = LayeredNamespace({}, {"helper": helper})
    with pytest.raises(ReservedNameError):
        ns["helper"] = 5
    with pytest.raises(ReservedNameError):
        del ns["helper"]
    out = CappedWriter(2000)
    res = execute_code("def g():\n    global helper\n    helper = 1\ng()", ns, filename="<t>", out=out)
    assert res["error"] is None and dict.get(ns, "helper") == 1  # the global route bypasses __setitem__
    assert ns.restore() == ["helper"] and ns["helper"] is helper


def test_execute_code_reports_errors_exit_and_echoes_last_expression() -> None:
    ns = LayeredNamespace({}, {})
    out = CappedWriter(5000)
    assert execute_code("1 + 1", ns, filename="<a>", out=out)["error"] is None
    assert out.getvalue() == "2\n"
    out = CappedWriter(5000)
    res = execute_code("def f():\n    return 1/0\nf()", ns, filename="<b>", out=out)
    assert res["error"].startswith("ZeroDivisionError")
    assert 'File "<b>", line 2, in f' in out.getvalue()
    assert "execution.py" not in out.getvalue()  # no engine frames in what the model reads
    out = CappedWriter(5000)
    res = execute_code("import sys\nsys.exit(3)", ns, filename="<c>", out=out)
    assert res["exited"] and "SystemExit(3)" in out.getvalue()
    out = CappedWriter(5000)
    res = execute_code("def broken(:\n  pass", ns, filename="<d>", out=out)
    assert "SyntaxError" in res["error"]
    out = CappedWriter(5000)
    res = execute_code("input('name?')", ns, filename="<e>", out=out)
    assert "input() is not available" in out.getvalue()


def test_exit_never_reaches_the_users_exiter() -> None:
    """In a kernel the user's `exit` is IPython's exiter: calling it would shut the kernel down."""
    calls: list[str] = []
    ns = LayeredNamespace({"exit": lambda *a: calls.append("user exit"), "quit": None}, {})
    for code in ("exit()", "del exit\nexit()", "globals().pop('exit', None)\nexit()", "input = 5\ndel input\nquit(2)"):
        res = execute_code(code, ns, filename="<x>", out=CappedWriter(5000))
        assert res["exited"], code
    assert calls == [] and ns.own_variables() == {}


def test_time_limit_main_thread_stops_loops_even_with_bare_except() -> None:
    ns = LayeredNamespace({}, {})
    with pytest.raises(CellTimeout), time_limit(0.3):
        execute_code(
            "n = 0\nwhile True:\n    try:\n        n += 1\n    except:\n        pass",
            ns, filename="<loop>", out=CappedWriter(100),
        )
    assert ns["n"] > 0  # state before the interruption survives
    time.sleep(0.35)  # no stray alarm after the limit is gone


def test_time_limit_nested_limits_restore_the_outer_one() -> None:
    with pytest.raises(CellTimeout), time_limit(0.6):
        with time_limit(10):
            pass  # inner finished in time; the outer must still fire
        while True:
            pass


def test_time_limit_in_a_worker_thread_uses_async_exception() -> None:
    seen: list[str] = []

    def body() -> None:
        try:
            with time_limit(0.3):
                while True:
                    pass
        except CellTimeout:
            seen.append("timeout")

    t = threading.Thread(target=body)
    t.start()
    t.join(10)
    assert seen == ["timeout"]
