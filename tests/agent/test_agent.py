"""The agent end to end: a real IPython shell, the loopback model server scripted by agent_scripts."""

from __future__ import annotations

import base64

import pandas as pd
import pytest

from nbmagic.agent.core import AgentResult, NotebookAgent
from nbmagic.agent.prompts import CODE_HEADING, FIX_HEADING, PLAN_HEADING
from nbmagic.errors import ConfigError, RunInterrupted
from nbmagic.events import (
    CellAccepted,
    CellRun,
    EventRecorder,
    Failed,
    Finished,
    Notice,
    RunStarted,
    StepFinished,
)
from nbmagic.testing.agent_scripts import make_responder, write_sales_csv

REQUEST = "Analyze sales.csv: the top 5 products by revenue and a monthly revenue trend plot"


@pytest.fixture
def env(tmp_path, monkeypatch, openai_server, openai_model, ipython_shell):
    write_sales_csv(tmp_path / "sales.csv")
    monkeypatch.chdir(tmp_path)

    class Env:
        server = openai_server
        model = openai_model
        shell = ipython_shell
        path = tmp_path
        events = EventRecorder()

        def agent(self, variant="works", **kw):
            self.server.set_responder(make_responder(variant))
            kw.setdefault("planner", "single")
            kw.setdefault("cell_timeout", 20)
            kw.setdefault("answer", False)  # the closing answer has its own tests
            kw.setdefault("load_files", False)  # so has the agent's own loading of named tables
            return NotebookAgent(self.model, on_event=self.events, **kw)

        def run(self, variant="works", **kw):
            return self.agent(variant, **kw).run(REQUEST, shell=self.shell)

    return Env()


def _code_cells(result: AgentResult):
    return [c for c in result.cells if c.cell_type == "code"]


def _user_prompts(server, heading):
    return [m["content"] for body in server.chat_requests() for m in body["messages"]
            if m["role"] == "user" and heading in m["content"]]


def test_works_first_time(env):
    result = env.run(answer=True)
    ns = env.shell.user_ns
    expected = pd.read_csv(env.path / "sales.csv").groupby("product")["revenue"].sum().nlargest(5)
    assert list(ns["top_products"].index) == list(expected.index)
    assert ns["monthly"].shape == (6,)
    assert result.ok and result.plan == [
        "Load the sales data from sales.csv into a DataFrame",
        "Compute the top 5 products by revenue",
        "Plot the monthly revenue trend",
    ]
    assert [c.cell_type for c in result.cells] == ["markdown", "code"] * 3 + ["markdown"]
    load, top, plot = _code_cells(result)
    assert load.outputs[0]["text"].startswith("84 rows")
    assert top.outputs[-1]["output_type"] == "execute_result" and "Whatsit" in top.outputs[-1]["data"]["text/plain"]
    pngs = [o for o in plot.outputs if "image/png" in o.get("data", {})]
    assert len(pngs) == 1 and base64.b64decode(pngs[0]["data"]["image/png"])[:4] == b"\x89PNG"
    # no counts of nbmagic's own: they would clash with the kernel's In[n] in JupyterLab
    assert [c.execution_count for c in (load, top, plot)] == [None, None, None]
    assert all(o.get("execution_count") is None for c in (load, top, plot) for o in c.outputs)
    meta = top.metadata["nbmagic"]
    assert meta == {"step": 2, "title": "Compute the top 5 products by revenue", "attempts": 1,
                    "model": "openai-compat:test-model", "mode": "text", "status": "ok"}
    assert result.cells[0].source.startswith("### Step 1: Load the sales data")
    # events: one agent run, every cell announced, finished last
    ev = env.events
    assert next(e for e in ev.of(RunStarted) if e.engine == "agent") is ev.events[0]
    assert len(ev.of(CellAccepted)) == 7 and isinstance(ev.events[-1], Finished)
    assert ev.events[-1].result is result
    kinds = ev.kinds()
    assert kinds.index("PlanReady") < kinds.index("StepStarted") < kinds.index("CellRun") < kinds.index("CellAccepted")
    # accounting and summary
    # plan, three cells, two plan revisions (remote model: refined by the model), the answer
    assert result.usage.calls == len(env.server.chat_requests()) == 7
    # the answer restates the top products the cell printed, in their order
    top_names = list(expected.index)
    assert result.answer == f"The top 5 products by revenue are {', '.join(top_names)}; {top_names[0]} leads."
    assert result.cells[-1].source == "### Answer\n\n" + result.answer
    assert result.cells[-1].metadata["nbmagic"]["source"] == "model"
    assert "Answer: The top 5 products" in result.summary
    assert "3 succeeded, 0 failed" in result.summary
    assert "top_products" in result.new_variables and "sales" in result.summary
    # the code prompt carried the CSV's columns
    code_prompt = _user_prompts(env.server, CODE_HEADING)[0]
    assert "columns: date, product, region, units, unit_price, revenue" in code_prompt
    # later steps see what earlier steps made
    third = _user_prompts(env.server, CODE_HEADING)[2]
    assert "Variables created by earlier steps:" in third
    assert "sales: DataFrame 84 rows × 6 columns" in third and "top_products: Series 5 values" in third


def test_failing_cell_is_fixed(env):
    result = env.run("fix")
    runs = [e for e in env.events.of(CellRun) if e.step == 1]
    assert [r.ok for r in runs] == [False, True]
    assert "KeyError" in runs[0].error
    fix = _user_prompts(env.server, FIX_HEADING)
    assert len(fix) == 1 and "KeyError" in fix[0] and "Revenue_1" in fix[0] and "\x1b[" not in fix[0]
    top = _code_cells(result)[1]
    assert top.metadata["nbmagic"]["attempts"] == 2
    assert all(o["output_type"] != "error" for o in top.outputs)
    assert result.ok and "ok after 2 attempts" in result.summary


def test_never_fixed_is_reported_and_run_continues(env):
    result = env.run("never", max_fixes=2)
    assert not result.ok and result.failed_steps == [2]
    assert len([e for e in env.events.of(CellRun) if e.step == 1]) == 3
    md, code = result.cells[2], result.cells[3]
    assert "This step failed" in md.source and "3 attempt(s)" in md.source and "KeyError" in md.source
    assert code.outputs[-1]["output_type"] == "error" and code.outputs[-1]["ename"] == "KeyError"
    assert code.metadata["nbmagic"]["status"] == "failed"
    assert len(result.cells) == 6  # step 3 still ran
    assert "FAILED after 3 attempt(s): KeyError" in result.summary
    assert [e.ok for e in env.events.of(StepFinished)] == [True, False, True]


def test_stop_on_failure(env):
    result = env.run("never", max_fixes=0, stop_on_failure=True)
    assert len(result.cells) == 4 and result.failed_steps == [2]
    assert "3. Plot the monthly revenue trend — not run" in result.summary


def test_runaway_cell_times_out(env):
    # the limit holds for every cell of the run, and a process's first captured display (nbformat)
    # and first figure take about a second of one-off imports: done here, so only the runaway step
    # can pass the limit
    env.shell.run_cell("import nbmagic.notebook.cells, pandas, matplotlib.pyplot as plt\n"
                       "plt.subplots()\nplt.show()\npandas.DataFrame({'warm': [1]})")
    # 5 s, not less: the runaway loop never ends, and on a loaded CPU reading the CSV alone took 2-4 s
    result = env.run("loop", max_fixes=1, cell_timeout=5)
    assert result.failed_steps == [2]
    runs = [e for e in env.events.of(CellRun) if e.step == 1]
    assert len(runs) == 2 and all("CellTimeout" in (r.error or "") for r in runs)
    assert any("longer than 5 s" in n.message for n in env.events.of(Notice))
    assert "ran longer than 5 s" in _user_prompts(env.server, FIX_HEADING)[0]
    md = result.cells[2]
    assert "timed out" in md.source
    assert _code_cells(result)[1].outputs[-1]["ename"] == "CellTimeout"
    assert env.shell.user_ns["total"] > 0  # it really ran, and was stopped


def test_dry_run_executes_nothing(env):
    result = env.run(dry_run=True)
    assert "sales" not in env.shell.user_ns
    assert not env.events.of(CellRun)
    codes = _code_cells(result)
    assert len(codes) == 3 and all(c.outputs == [] and c.execution_count is None for c in codes)
    assert all(c.metadata["nbmagic"]["status"] == "dry-run" for c in codes)
    assert result.summary.startswith("Dry run")


def test_confirm_declines_one_cell(env):
    asked = []

    def confirm(code):
        asked.append(code)
        return "groupby" not in code

    result = env.run(confirm=confirm)
    assert len(asked) == 3
    assert result.skipped_steps == [2] and "top_products" not in env.shell.user_ns
    assert "monthly" in env.shell.user_ns  # the run went on
    assert len(result.cells) == 4
    assert "skipped (not approved)" in result.summary
    assert any("not approved" in n.message for n in env.events.of(Notice))


def test_interrupt_keeps_partial_cells(env):
    agent = env.agent()

    def interrupt_at_step_two(event):
        env.events(event)
        if type(event).__name__ == "StepStarted" and event.index == 1:
            raise KeyboardInterrupt

    agent.on_event = interrupt_at_step_two
    with pytest.raises(RunInterrupted) as info:
        agent.run(REQUEST, shell=env.shell)
    partial = info.value.partial
    assert isinstance(partial, AgentResult) and partial.interrupted and not partial.ok
    assert len(partial.cells) == 2 and partial.cells[1].outputs
    assert "sales" in env.shell.user_ns and "top_products" not in env.shell.user_ns
    assert env.events.of(Failed)[-1].partial is partial


def test_interrupt_during_confirm(env):
    def confirm(code):
        if "matplotlib" in code:
            raise KeyboardInterrupt
        return True

    with pytest.raises(RunInterrupted) as info:
        env.run(confirm=confirm)
    assert len(info.value.partial.cells) == 4


def test_user_variables_rebinding_reported_and_deletion_undone(env):
    env.shell.user_ns["sales"] = "my own sales"
    env.shell.user_ns["keep"] = [1, 2]
    env.run()
    result = env.events.events[-1].result
    assert result.rebound == ["sales"]
    assert "Your variables given new values: sales" in result.summary
    assert any("rebinds your variable(s): sales" in n.message for n in env.events.of(Notice))
    assert env.shell.user_ns["keep"] == [1, 2]

    env.server.set_responder("Removing it.\n```python\ndel keep\nx_new = 1\n```")
    NotebookAgent(env.model, planner="none", on_event=env.events).run("clean up", shell=env.shell)
    assert env.shell.user_ns["keep"] == [1, 2] and env.shell.user_ns["x_new"] == 1
    assert any("deleted your variable 'keep'; it was restored" in n.message for n in env.events.of(Notice))


def test_unreadable_plan_falls_back_to_the_requests_parts(env):
    """No list from the planner: the parts read from the request (no model call) are the plan."""
    result = env.run("noplan", max_fixes=0)
    assert result.plan == ["Top 5 products by revenue", "Monthly revenue trend plot"]
    assert any("held no list" in n.message for n in env.events.of(Notice))
    assert result.trajectory[1]["fallback"] is True


def test_answer_without_code_is_asked_again(env):
    result = env.run("nocode")
    assert _code_cells(result)[1].metadata["nbmagic"]["attempts"] == 2
    assert any("no ```python code block" in p for p in _user_prompts(env.server, FIX_HEADING))
    assert result.ok


def test_mas_planner_three_agents(env):
    result = env.run(planner="mas", mas_options={"rounds": 1})
    plan_calls = _user_prompts(env.server, PLAN_HEADING)
    assert len(plan_calls) == 3  # planner, critic, solver
    assert len(result.plan) == 3 and result.mode == "text"
    assert result.trajectory[1]["pattern"] == "sequential"


def test_plain_namespace_and_sink(env):
    class ListSink:
        def __init__(self):
            self.cells, self.closed = [], False

        def deliver(self, cell):
            self.cells.append(cell)

        def close(self):
            self.closed = True
            return f"{len(self.cells)} cells delivered"

    sink, ns = ListSink(), {}
    result = env.agent().run(REQUEST, ns, sink=sink)
    assert "sales" in ns and "sales" not in env.shell.user_ns
    assert sink.cells == result.cells and sink.closed
    assert result.summary.endswith("6 cells delivered")
    nb = result.notebook()  # the cells as a notebook that nbformat accepts
    import nbformat

    nbformat.validate(nb)
    assert [c.source for c in nb.cells] == [c.source for c in result.cells]
    assert nb.metadata["kernelspec"]["name"] == "python3"


def test_files_written_are_reported(env):
    env.server.set_responder("Save it.\n```python\nopen('out.txt', 'w').write('x')\n```")
    result = NotebookAgent(env.model, planner="none").run("write out.txt", {})
    assert result.files_written == ["out.txt"] and "Files written: out.txt" in result.summary


def test_bad_options_are_config_errors(env):
    with pytest.raises(ConfigError):
        NotebookAgent(env.model, planner="magic")
    with pytest.raises(ConfigError):
        NotebookAgent(env.model, max_fixes=-1)
    with pytest.raises(ConfigError):
        NotebookAgent(env.model, mas_options={"bogus": 1})
    with pytest.raises(ConfigError):
        NotebookAgent(env.model).run("   ")
    for bad in ({"planner": 5}, {"mas_options": [("rounds", 2)]}, {"max_tokens": -5}, {"max_tokens": "many"},
                {"cell_timeout": True}, {"cell_timeout": float("nan")}, {"context_limits": {"max_vars": 3}}):
        with pytest.raises(ConfigError):
            NotebookAgent(env.model, **bad)


def test_fixed_cell_keeps_the_steps_explanation(env):
    result = env.run("fix")
    assert "Group by product, add up revenue" in result.cells[2].source
    assert "lowercase" not in result.cells[2].source


def test_a_run_failing_before_any_cell_leaves_no_output_file(env):
    """A server failure before the first cell must not leave an empty -o notebook behind
    (it would make the rerun refuse with 'already exists')."""
    from nbmagic.errors import NbmagicError
    from nbmagic.notebook.sinks import FileSink

    env.server.fail_next(500, times=10)
    sink = FileSink(env.path / "analysis.ipynb")
    with pytest.raises(NbmagicError) as info:
        env.agent().run(REQUEST, shell=env.shell, sink=sink)
    assert "HTTP 500" in info.value.message
    assert not (env.path / "analysis.ipynb").exists()
    FileSink(env.path / "analysis.ipynb")  # so the rerun is accepted
