"""What makes the agent work with real small models, each fault scripted through the loopback server.

Empty cells, missing imports, named files loaded and described, the closing answer (never an
invented number), a missing package (proposed, never installed silently), ``%agent fix``,
the open notebook not counted as a written file.
"""

from __future__ import annotations

import json

import nbformat
import pandas as pd
import pytest

from nbmagic.agent.core import NotebookAgent, invented_numbers
from nbmagic.agent.prompts import ANSWER_HEADING, CODE_HEADING, FIX_HEADING
from nbmagic.errors import ConfigError
from nbmagic.events import CellRun, EventRecorder, Notice
from nbmagic.magic_history import fix_last_error, last_error
from nbmagic.notebook.sinks import FileSink
from nbmagic.notebook.verify import verify_notebook
from nbmagic.testing.agent_scripts import write_sales_csv


def cell(code: str, note: str = "A step.") -> str:
    return f"{note}\n\n```python\n{code}\n```\n"


def _last_user(request) -> str:
    return [m["content"] for m in request["messages"] if m["role"] == "user"][-1]


def _users(server, heading):
    return [m["content"] for body in server.chat_requests() for m in body["messages"]
            if m["role"] == "user" and heading in m["content"]]


@pytest.fixture
def run(tmp_path, monkeypatch, openai_server, openai_model):
    """``run(responder, request, **agent options)`` in a plain namespace in tmp_path."""
    write_sales_csv(tmp_path / "sales.csv")
    monkeypatch.chdir(tmp_path)

    def go(responder, request="What is the total revenue in sales.csv?", ns=None, **kw):
        openai_server.set_responder(responder)
        kw.setdefault("planner", "none")
        kw.setdefault("cell_timeout", 20)
        events = EventRecorder()
        sink = kw.pop("sink", None)
        agent = NotebookAgent(openai_model, on_event=events, **kw)
        namespace = {} if ns is None else ns
        result = agent.run(request, namespace, base_dir=tmp_path, sink=sink)
        return result, events, namespace

    return go


def test_a_cell_of_comments_is_a_failed_attempt_and_is_retried(run, openai_server):
    def respond(request):
        last = _last_user(request)
        if FIX_HEADING in last:
            return cell("total = sales['revenue'].sum()\ntotal")
        if CODE_HEADING in last:
            return cell("# code for this step only\npass")  # the placeholder small models copy
        return "The total revenue is given above."

    result, events, ns = run(respond)
    runs = [e for e in events.of(CellRun) if e.step == 1]
    assert [r.ok for r in runs] == [False, True]
    assert runs[0].error == "the cell has no executable statement"
    assert "no executable statement" in _users(openai_server, FIX_HEADING)[0]
    assert result.ok and ns["total"] == pd.read_csv("sales.csv").revenue.sum()


def test_never_more_than_comments_fails_the_step(run):
    result, events, _ = run(lambda r: cell("# load the data\n# then sum it\n..."), max_fixes=1, answer=False)
    assert not result.ok and result.failed_steps == [2]
    assert "no executable statement" in result.summary
    assert all(not e.ok for e in events.of(CellRun) if e.step == 1)


def test_missing_standard_import_is_added_visibly(run):
    def respond(request):
        return cell("import numpy\nframe = pd.DataFrame({'x': np.arange(3)})\nframe.x.sum()")

    result, events, ns = run(respond, request="Make a small table of three numbers and add them up",
                             answer=False)
    code = [c for c in result.cells if c.cell_type == "code"][-1]
    assert code.source.startswith("import pandas as pd\nimport numpy as np\n\nimport numpy\n")
    assert result.ok and ns["frame"].x.sum() == 3
    assert [e.ok for e in events.of(CellRun)] == [True]  # one attempt: no NameError round trip
    assert any("added the missing import(s) import pandas as pd; import numpy as np" in e.message
               for e in events.of(Notice))


def test_name_error_fix_prompt_says_what_exists(run, openai_server):
    def respond(request):
        last = _last_user(request)
        if FIX_HEADING in last:
            return cell("sales['revenue'].sum()")
        return cell("df_sales['revenue'].sum()")

    result, _, _ = run(respond, answer=False)
    fix = _users(openai_server, FIX_HEADING)[0]
    assert "`df_sales` does not exist in the kernel. Variables that exist: sales" in fix
    assert result.ok


def test_named_table_is_loaded_by_the_agent_and_described(run, openai_server):
    result, _, ns = run(lambda r: cell("sales.groupby('product').revenue.sum().idxmax()"), answer=False)
    load = result.cells[1]
    assert load.source == "import pandas as pd\n\nsales = pd.read_csv('sales.csv', parse_dates=['date'])\nsales.head()"
    assert str(ns["sales"].date.dtype).startswith("datetime64")
    assert result.plan[0] == "Load sales.csv into the DataFrame `sales`" and result.ok
    prompt = _users(openai_server, CODE_HEADING)[0]
    # the model sees the file's real shape and the DataFrame the agent made of it
    assert "sales.csv: CSV, 84 data rows, " in prompt and "product values: Widget, Gadget" in prompt
    assert "sales: DataFrame 84 rows × 6 columns" in prompt


def test_answer_uses_only_observed_numbers(run):
    total = round(float(pd.read_csv(write_sales_csv("sales.csv")).revenue.sum()), 2)

    def honest(request):
        if ANSWER_HEADING in _last_user(request):
            return f"The total revenue is {total:.2f}."
        return cell("round(sales['revenue'].sum(), 2)")

    result, _, _ = run(honest)
    assert result.answer == f"The total revenue is {total:.2f}."
    assert result.cells[-1].metadata["nbmagic"]["source"] == "model"

    def inventing(request):
        if ANSWER_HEADING in _last_user(request):
            return "The total revenue is 123456.78."
        return cell("round(sales['revenue'].sum(), 2)")

    result, _, _ = run(inventing)
    assert "123456.78" not in result.answer and f"{total}" in result.answer
    assert result.cells[-1].metadata["nbmagic"]["source"] == "outputs"
    assert result.trajectory[-1]["invented"] == ["123456.78"]


def test_invented_numbers_allows_roundings():
    assert invented_numbers("Total 1,234.57 (12%), top 5", "sum 1234.5678\n12.0 percent, top 5") == []
    assert invented_numbers("about 1300", "sum 1234.5678") == ["1300"]


def test_missing_package_is_proposed_not_installed(run, openai_server):
    def respond(request):
        if FIX_HEADING in _last_user(request):
            return cell("sales['revenue'].sum()")
        return cell("import nbmagic_no_such_pkg\nsales['revenue'].sum()")

    asked: list[str] = []

    def confirm(code):
        asked.append(code)
        return not code.startswith("%pip")

    result, events, _ = run(respond, answer=False, confirm=confirm)
    assert "%pip install nbmagic_no_such_pkg" in asked  # asked, and declined
    assert result.ok
    fix = _users(openai_server, FIX_HEADING)[0]
    assert "'nbmagic_no_such_pkg' is not installed and will not be installed now" in fix
    # without confirm and without allow_install: said, never done
    result, events, _ = run(respond, answer=False)
    notes = [e.message for e in events.of(Notice) if "nbmagic_no_such_pkg" in e.message]
    assert notes and "Run `%pip install nbmagic_no_such_pkg` yourself, or rerun with --allow-install" in notes[0]
    assert not any(t["type"] == "install" for t in result.trajectory)


def test_failed_cells_do_not_break_the_notebook(run, tmp_path):
    sink = FileSink(tmp_path / "out.ipynb", base_dir=tmp_path)
    result, _, _ = run(lambda r: cell("sales['no_such_column'].sum()"), max_fixes=1, answer=False, sink=sink)
    assert result.failed_steps == [2]
    nb = nbformat.read(tmp_path / "out.ipynb", as_version=4)
    assert nb.cells[3].metadata["tags"] == ["raises-exception"]
    assert all(c.get("execution_count") is None for c in nb.cells if c.cell_type == "code")
    assert verify_notebook(tmp_path / "out.ipynb", timeout=60).ok


def test_open_notebook_is_not_a_written_file(run, tmp_path):
    (tmp_path / "Untitled.ipynb").write_text("{}")
    code = "from pathlib import Path\nPath('Untitled.ipynb').write_text('{ }')\nPath('out.csv').write_text('a')"
    result, _, _ = run(lambda r: cell(code), request="Write out.csv", ns={"__session__": "Untitled.ipynb"},
                       answer=False)
    assert result.files_written == ["out.csv"]


def test_fix_last_error_reads_the_failing_cell(ipython_shell, openai_server, openai_model, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    shell = ipython_shell
    shell.run_cell("import pandas as pd\nframe = pd.DataFrame({'a': [1, 2]})")
    failing = "frame['b'].sum()"
    shell.run_cell(failing)

    def respond(request):
        text = json.dumps(request)
        assert "KeyError" in text and "frame['b'].sum()" in text
        return cell("frame['a'].sum()", "Use the column that exists.")

    openai_server.set_responder(respond)
    code, error = last_error(shell)  # the magics layer reads the history; the agent gets plain text
    assert code == failing and "KeyError" in error
    result = NotebookAgent(openai_model, planner="auto").fix_error(code, error, shell.user_ns, shell=shell)
    assert result.ok
    code = [c for c in result.cells if c.cell_type == "code"]
    assert len(code) == 1 and code[0].source == "frame['a'].sum()"
    assert code[0].outputs[-1]["data"]["text/plain"] in ("3", "np.int64(3)")
    assert len(openai_server.chat_requests()) == 1  # no plan, no answer: the fix only


def test_fix_with_nothing_failed_is_one_message(ipython_shell, openai_model, monkeypatch):
    import sys

    monkeypatch.setattr(ipython_shell, "last_execution_result", None)
    monkeypatch.delattr(sys, "last_value", raising=False)
    assert last_error(ipython_shell) is None
    with pytest.raises(ConfigError, match="Nothing to fix"):
        fix_last_error(NotebookAgent(openai_model), ipython_shell, None)


def test_agent_fix_magic_writes_the_corrected_cell(ipython_shell, openai_server, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    shell = ipython_shell
    shell.run_line_magic("load_ext", "nbmagic")
    shell.run_cell("values = [3, 4]")
    shell.run_cell("total = sum(value)")  # NameError: value
    openai_server.set_responder(lambda r: cell("total = sum(values)\ntotal", "Use the list that exists.")
                                if "name 'value' is not defined" in json.dumps(r) else "no")
    shell.run_cell(f"%agent -m openai-compat:test-model@{openai_server.url} --ui plain --out fixed fix")
    res = shell.user_ns["fixed"]
    assert res.status == "done" and shell.user_ns["total"] == 7
    assert [c["source"] for c in res.cells if c["cell_type"] == "code"] == ["total = sum(values)\ntotal"]


def test_a_copy_of_an_earlier_cell_is_not_progress(run, openai_server):
    """Small models copy the load cell they were shown; that is an attempt to redo, not a finished step."""
    def respond(request):
        if FIX_HEADING in _last_user(request):
            return cell("sales['revenue'].sum()")
        return cell("import pandas as pd\n\nsales = pd.read_csv('sales.csv', parse_dates=['date'])  # again\nsales.head()")

    result, events, _ = run(respond, answer=False)
    runs = [e for e in events.of(CellRun) if e.step == 1]
    assert [r.ok for r in runs] == [False, True] and runs[0].error == "the cell repeats step 1"
    assert "only repeats step 1" in _users(openai_server, FIX_HEADING)[0]
    prompt = _users(openai_server, CODE_HEADING)[0]
    assert "Loaded DataFrames (use them by name; do not read the files again): `sales`" in prompt
    assert "pd.read_csv" not in prompt
    assert result.ok
