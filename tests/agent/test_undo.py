"""Run records and ``%agent undo`` / ``%agent runs`` in a real IPython shell, the model on the loopback server.

No frontend extension here (a plain shell), so the cells part says what it could not do;
the browser tests remove cells in a real JupyterLab.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from nbmagic.agent.core import AgentResult
from nbmagic.agent.undo import undo
from nbmagic.execution.run_records import LOG_NAME, RunLog, record_run, undo_namespace
from nbmagic.llm.base import Usage
from nbmagic.testing.agent_scripts import make_responder, write_sales_csv

REQUEST = "Analyze sales.csv: the top 5 products by revenue and a monthly revenue trend plot"


@pytest.fixture
def shell(nbmagic_shell, openai_server):
    write_sales_csv("sales.csv")
    openai_server.set_responder(make_responder("works"))
    nbmagic_shell.user_ns["top_products"] = "mine"  # the run rebinds it
    return nbmagic_shell


def _agent(shell, options=""):
    shell.run_cell(f"%%agent --planner single --no-answer {options}\n{REQUEST}")


def _magic(shell, capsys, line):
    capsys.readouterr()
    shell.run_line_magic("agent", line)
    return capsys.readouterr()


def test_undo_takes_a_run_back_and_a_second_undo_has_nothing_to_do(shell, capsys):
    ns = shell.user_ns
    _agent(shell)
    assert ns["top_products"] is not None and not isinstance(ns["top_products"], str)
    assert "monthly" in ns and ns["_nbmagic_saved"]["top_products"] == "mine"  # still kept as before
    log = ns[LOG_NAME]
    assert isinstance(log, RunLog) and LOG_NAME in shell.user_ns_hidden
    (record,) = log.records
    assert record.run_id == "run1" and "monthly" in record.created and record.rebound == {"top_products": "mine"}
    assert "run1" in _magic(shell, capsys, "runs").out

    out = _magic(shell, capsys, "undo").out
    assert ns["top_products"] == "mine"  # restored
    assert "monthly" not in ns and "sales" not in ns  # created by the run: deleted
    assert "_nbmagic_saved" not in ns  # nothing left to keep
    assert "Restored your variables: top_products." in out
    assert "Deleted the variables it created:" in out and "monthly" in out
    # no extension in a plain shell: it says which cells to delete by hand
    assert "the nbmagic extension is not in this frontend" not in out  # cells went to the next input here
    assert "delete that cell yourself" in out
    assert "Nothing to undo" in _magic(shell, capsys, "undo").out
    assert "run1 was undone already" in _magic(shell, capsys, "undo run1").out
    assert "[undone]" in _magic(shell, capsys, "runs").out


def test_undo_is_never_a_request_and_bad_words_are_refused(shell, openai_server, capsys):
    before = len(openai_server.chat_requests())
    said = _magic(shell, capsys, "undo")
    assert "Nothing to undo" in said.out
    said = _magic(shell, capsys, "undo the last change please")
    assert "nbmagic:" in said.err and "RUN_ID" in said.err
    said = _magic(shell, capsys, "undo run9")
    assert "no such run" in said.err
    assert len(openai_server.chat_requests()) == before  # no model was asked anything


def test_a_variable_changed_after_the_run_is_left_alone(shell, capsys):
    ns = shell.user_ns
    _agent(shell)
    ns["monthly"] = "changed by me"
    out = _magic(shell, capsys, "undo").out
    assert ns["monthly"] == "changed by me"
    assert "Left alone (you changed them after the run): monthly." in out


def test_undo_of_an_earlier_run_by_id(shell, capsys):
    ns = shell.user_ns
    _agent(shell)
    shell.run_cell("extra = 1")
    _agent(shell)
    assert [r.run_id for r in ns[LOG_NAME].records] == ["run1", "run2"]
    # run2 rebound what run1 made: undoing run2 puts run1's values back
    run1_top = ns[LOG_NAME]["run1"].left["top_products"]
    out = _magic(shell, capsys, "undo run2").out
    assert "Undo run2" in out and ns["top_products"] is run1_top and ns["extra"] == 1
    assert ns[LOG_NAME].last().run_id == "run1"


def test_an_output_notebook_is_left_alone_and_said_so(shell, capsys, tmp_path):
    _agent(shell, "-o out.ipynb")
    out = _magic(shell, capsys, "undo").out
    assert "Its cells went to" in out and "out.ipynb" in out and "leaves that notebook alone" in out
    assert (tmp_path / "out.ipynb").is_file()


def test_files_and_installs_are_listed_never_touched(ipython_shell, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    Path("report.csv").write_text("a,b\n")
    ns = ipython_shell.user_ns
    ns["made"] = [1]
    result = AgentResult(cells=[], summary="", plan=[], usage=Usage(), ok=True, new_variables=["made"],
                         files_written=["report.csv"], files_deleted=["old.csv"],
                         trajectory=[{"type": "install", "package": "tabulate", "ok": True},
                                     {"type": "install", "package": "nothere", "ok": False}])
    record = record_run(ns, result, title="write a report", where="collect")
    assert record.installs == ["tabulate"]
    out = undo(ipython_shell)
    assert "Files it wrote (not deleted; remove them yourself if unwanted): report.csv." in out
    assert "Files it deleted (undo cannot bring them back): old.csv." in out
    assert "%pip uninstall tabulate" in out
    assert Path("report.csv").read_text() == "a,b\n" and "made" not in ns


def test_a_new_kernel_run_changed_no_variable_here(ipython_shell):
    ns = ipython_shell.user_ns
    ns["x"] = 1
    result = AgentResult(cells=[], summary="", plan=[], trajectory=[], usage=Usage(), ok=True, new_variables=["x"],
                         replaced={"x": 0})
    record = record_run(ns, result, title="t", kernel="new")
    assert record.created == [] and record.rebound == {}
    assert "kernel of their own (--kernel new)" in undo(ipython_shell) and ns["x"] == 1


def test_undo_namespace_alone():
    old, new = object(), object()
    ns = {"a": new, "b": 2, "_nbmagic_saved": {"a": old}}
    result = AgentResult(cells=[], summary="", plan=[], trajectory=[], usage=Usage(), ok=True, new_variables=["b"],
                         replaced={"a": old})
    record = record_run(ns, result, title="t")
    report = undo_namespace(ns, record)
    assert ns == {LOG_NAME: ns[LOG_NAME], "a": old}
    assert report.restored == ["a"] and report.deleted == ["b"]
