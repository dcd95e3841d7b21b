"""The one loop: parts done one by one, outputs judged against each part, the reflector's refinements,
no prompt text in markdown, the answer from the outputs, rounds x agents events, the spend cap.

Each behaviour is scripted through the loopback OpenAI-compatible server: the responder
reads the prompt the agent sent and answers the way a small model does (right, wrong,
or echoing its prompt).
"""

from __future__ import annotations

import re

import pytest

from nbmagic.agent.core import NotebookAgent
from nbmagic.agent.parts import split_request
from nbmagic.agent.prompts import ANSWER_HEADING, CODE_HEADING, FIX_HEADING
from nbmagic.errors import BudgetExceededError, ConfigError
from nbmagic.events import (
    AgentFinished,
    AgentStarted,
    CellRun,
    EventRecorder,
    ModelCall,
    Notice,
    RoundStarted,
)
from nbmagic.testing.agent_scripts import write_sales_csv

MULTI = "Analyze sales.csv: the top 5 products by revenue and a monthly revenue trend plot"


def cell(code: str, note: str = "We compute it.") -> str:
    return f"{note}\n\n```python\n{code}\n```\n"


def _users(server, heading):
    return [m["content"] for body in server.chat_requests() for m in body["messages"]
            if m["role"] == "user" and heading in m["content"]]


def _last_user(request) -> str:
    return [m["content"] for m in request["messages"] if m["role"] == "user"][-1]


def _step_title(request) -> str:
    first = next(m["content"] for m in request["messages"] if m["role"] == "user")
    m = re.search(r"^Step \d+ of \d+: (.+)$", first, re.M)
    return m.group(1) if m else ""


TOP = "top = sales.groupby('product')['revenue'].sum().nlargest(5)\ntop"
PLOT = ("import matplotlib.pyplot as plt\n\nmonthly = sales.set_index('date')['revenue'].resample('MS').sum()\n"
        "monthly.plot()\nplt.show()")


@pytest.fixture
def run(tmp_path, monkeypatch, openai_server, openai_model):
    """``run(responder, request, **options)``: the agent in a plain namespace, parts planner, no answer."""
    write_sales_csv(tmp_path / "sales.csv")
    monkeypatch.chdir(tmp_path)

    def go(responder, request=MULTI, **kw):
        openai_server.set_responder(responder)
        kw.setdefault("planner", "parts")
        kw.setdefault("cell_timeout", 20)
        kw.setdefault("answer", False)
        events = EventRecorder()
        agent = NotebookAgent(openai_model, on_event=events, **kw)
        ns: dict = {}
        return agent.run(request, ns, base_dir=tmp_path), events, ns

    return go


# --- the cheap plan ----------------------------------------------------------------------------


@pytest.mark.parametrize("request_, titles", [
    (MULTI, ["Top 5 products by revenue", "Monthly revenue trend plot"]),
    ("What is the total revenue in sales.csv?", ["What is the total revenue?"]),
    ("Load sales.csv; show the mean price per region and plot a histogram of units",
     ["Show the mean price per region", "Plot a histogram of units"]),
    ("In sales.csv: 1) total revenue per region 2) a bar chart of it", ["Total revenue per region", "Bar chart of it"]),
    ("From sales.csv make a table of total revenue per region, plot it as a bar chart, and tell me which region "
     "has the highest revenue.", ["Make a table of total revenue per region", "Plot it as a bar chart",
                                  "Tell me which region has the highest revenue"]),
    ("List the top 3 products by total revenue in sales.csv, highest first.",
     ["List the top 3 products by total revenue, highest first"]),
])
def test_request_is_split_into_parts_without_a_model(request_, titles):
    assert [p.title for p in split_request(request_).parts] == titles


def test_instructions_and_the_answer_line_are_kept_verbatim_not_made_parts():
    read = split_request("Using sales.csv, count the orders with more than 10 units. Use the units column. "
                         "Print the result as `Answer: <n>`.")
    assert [p.title for p in read.parts] == ["Count the orders with more than 10 units"]
    assert read.parts[0].kind == "count"
    assert read.instructions == ["Use the units column.", "Print the result as `Answer: <n>`."]
    assert read.answer_line == "Answer: <n>"


# --- part by part ----------------------------------------------------------------------------


def test_a_multi_part_request_is_done_part_by_part_after_the_agents_own_load(run, openai_server):
    def respond(request):
        title = _step_title(request)
        return cell(PLOT if "plot" in title.lower() else TOP)

    result, _events, ns = run(respond)
    assert result.plan == ["Load sales.csv into the DataFrame `sales`", "Top 5 products by revenue",
                           "Monthly revenue trend plot"]
    assert result.ok and result.mode == "parts"
    prompts = _users(openai_server, CODE_HEADING)
    assert len(prompts) == 2  # no planning call: the first model call writes the first cell
    assert "This cell does only this part of the request: the top 5 products by revenue" in prompts[0]
    assert "This cell does only this part of the request: a monthly revenue trend plot" in prompts[1]
    assert "Loaded DataFrames (use them by name; do not read the files again): `sales`" in prompts[0]
    code = [c for c in result.cells if c.cell_type == "code"]
    assert any("image/png" in o.get("data", {}) for o in code[2].outputs)
    assert list(ns["top"].index) == list(ns["sales"].groupby("product").revenue.sum().nlargest(5).index)


def test_rounds_and_agents_are_emitted_with_token_counts(run):
    result, events, _ = run(lambda r: cell(PLOT if "plot" in _step_title(r).lower() else TOP))
    rounds = events.of(RoundStarted)
    assert [(e.round, e.total) for e in rounds] == [(1, 2), (2, 2)]
    agents = [(e.agent, e.round) for e in events.of(AgentStarted)]
    assert agents == [("tool_caller", 1), ("reflector", 1), ("tool_caller", 2), ("reflector", 2)]
    calls = events.of(ModelCall)
    assert len(calls) == 2 and all(c.agent == "tool_caller" and c.completion_tokens > 0 for c in calls)
    finished = [e for e in events.of(AgentFinished) if e.agent == "tool_caller"]
    assert [e.tokens for e in finished] == [c.prompt_tokens + c.completion_tokens for c in calls]
    assert result.usage.calls == 2


# --- observe: the reflector judges outputs ---------------------------------------------------------------


def test_a_negative_count_is_not_accepted_and_the_refinement_says_why(run, openai_server):
    def respond(request):
        if FIX_HEADING in _last_user(request):
            return cell("n = int((sales['units'] > 10).sum())\nprint(n)")
        return cell("n = sales['units'].sum() - 10 ** 6\nprint(n)")

    result, events, ns = run(respond, "How many orders in sales.csv have more than 10 units?")
    runs = [e for e in events.of(CellRun) if e.step == 1]
    assert [r.ok for r in runs] == [True, True]  # both ran; the first did not answer
    fix = _users(openai_server, FIX_HEADING)[0]
    assert "a count is a whole number >= 0" in fix and "The cell ran, but its output does not answer" in fix
    assert ns["n"] == int((ns["sales"]["units"] > 10).sum())
    judged = [t for t in result.trajectory if t["type"] == "attempt" and t["step"] == 2]
    assert judged[0]["judged"].startswith("a count came out as -")


def test_an_empty_table_and_a_missing_plot_are_not_ok(run, openai_server):
    def respond(request):
        title = _step_title(request).lower()
        fixing = FIX_HEADING in _last_user(request)
        if "plot" in title:
            return cell(PLOT) if fixing else cell("monthly = sales.groupby('date')['revenue'].sum()\nmonthly")
        return cell(TOP) if fixing else cell("top = sales[sales['product'] == 'widget']\ntop")

    result, _events, _ = run(respond)
    fixes = _users(openai_server, FIX_HEADING)
    assert any("came out empty" in f for f in fixes)
    assert any("the cell drew no figure" in f for f in fixes)
    assert result.ok


def test_the_requests_answer_line_reaches_the_answering_cell_and_is_checked(run, openai_server):
    request = ("Using sales.csv, count the orders with more than 10 units. Round nothing. "
               "Print the result as `Answer: <n>`.")

    def respond(request_):
        if ANSWER_HEADING in _last_user(request_):
            return "There are many orders."
        if FIX_HEADING in _last_user(request_):
            return cell("n = int((sales['units'] > 10).sum())\nprint(f'Answer: {n}')")
        return cell("n = int((sales['units'] > 10).sum())\nn")

    result, _events, ns = run(respond, request, answer=True)
    prompt = _users(openai_server, CODE_HEADING)[0]
    assert "This cell must end by printing the answer exactly in this form: Answer: <n>" in prompt
    assert "Instructions from the request (follow them exactly): Round nothing." in prompt
    assert any("printed exactly in this form: `Answer: <n>`" in f for f in _users(openai_server, FIX_HEADING))
    assert result.answer == f"Answer: {ns['n']}"
    assert not _users(openai_server, ANSWER_HEADING)  # the printed line is the answer: no extra call


def test_an_answer_that_copies_the_request_is_replaced_by_the_outputs(run):
    def respond(request):
        if ANSWER_HEADING in _last_user(request):
            return "Analyze sales.csv: the top 5 products by revenue and a monthly revenue trend plot."
        return cell(PLOT if "plot" in _step_title(request).lower() else TOP)

    result, _, ns = run(respond, answer=True)
    answer = result.cells[-1]
    assert answer.metadata["nbmagic"]["source"] == "outputs"
    assert "**Top 5 products by revenue**" in result.answer and "**Monthly revenue trend plot**" in result.answer
    assert str(ns["top"].index[0]) in result.answer


# --- the state: invented paths, prompt text -------------------------------------------------------------


def test_a_cell_reading_a_missing_file_uses_the_loaded_frame(run, openai_server):
    def respond(request):
        return cell("import pandas as pd\ndf = pd.read_csv('/home/user/sales.csv')\n"
                    "top = df.groupby('product')['revenue'].sum().nlargest(5)\ntop")

    result, events, _ns = run(respond, "What are the top 5 products by revenue in sales.csv?")
    code = [c for c in result.cells if c.cell_type == "code"][1].source
    assert "df = sales.copy()" in code and "read_csv" not in code
    assert any("'/home/user/sales.csv': the table is loaded already" in n.message for n in events.of(Notice))
    assert len(openai_server.chat_requests()) == 1 and result.ok


def test_a_file_error_gets_a_fix_prompt_naming_the_dataframe(run, openai_server):
    def respond(request):
        if FIX_HEADING in _last_user(request):
            return cell("total = sales['revenue'].sum()\ntotal")
        return cell("with open('data/sales_2024.csv') as fh:\n    text = fh.read()\ntext[:10]")

    result, _, _ = run(respond, "What is the total revenue in sales.csv?")
    fix = _users(openai_server, FIX_HEADING)[0]
    assert "That file does not exist. The data is already loaded as the DataFrame `sales` (from sales.csv" in fix
    assert "columns: date, product, region, units, unit_price, revenue" in fix
    assert result.ok


def test_markdown_never_shows_prompt_text(run):
    def respond(request):
        title = _step_title(request)
        echo = (f"Step 2 of 3: {title}\n"
                "Step 1: Load sales.csv — done; the DataFrame exists, use it (do not read the file again).\n"
                "Answer with one or two sentences of markdown explaining the step.")
        return f"{echo}\n\n```python\n{PLOT if 'plot' in title.lower() else TOP}\n```\n"

    result, _, _ = run(respond)
    md = [c.source for c in result.cells if c.cell_type == "markdown"]
    for text in md:
        assert "Step 2 of 3" not in text and "the DataFrame exists" not in text and "Answer with" not in text
    assert md[1] == "### Step 2: Top 5 products by revenue\n\nWe compute top 5 products by revenue from `sales`."
    assert md[2].startswith("### Step 3: Monthly revenue trend plot\n\nWe draw monthly revenue trend plot")


def test_the_models_own_explanation_is_kept(run):
    result, _, _ = run(lambda r: cell(TOP, "Group the orders by product and keep the five largest sums."),
                       "What are the top 5 products by revenue in sales.csv?")
    md = [c.source for c in result.cells if c.cell_type == "markdown"][1]
    assert md.endswith("Group the orders by product and keep the five largest sums.")


# --- options ----------------------------------------------------------------------------------------


def test_the_spend_cap_stops_the_run_and_keeps_the_cells(run):
    with pytest.raises(BudgetExceededError) as err:
        run(lambda r: cell(PLOT if "plot" in _step_title(r).lower() else TOP), max_run_tokens=1)
    assert "its cap of 1 (max_run_tokens" in err.value.message
    partial = err.value.partial
    assert len([c for c in partial.cells if c.cell_type == "code"]) == 2  # the load and the first part


def test_bad_caps_are_config_errors(openai_model):
    with pytest.raises(ConfigError, match="max_run_tokens"):
        NotebookAgent(openai_model, max_run_tokens=0)
    with pytest.raises(ConfigError, match="max_cost_usd"):
        NotebookAgent(openai_model, max_cost_usd=-1)


def test_the_remote_default_cap_is_shown(openai_model):
    agent = NotebookAgent(openai_model)
    assert agent.cap_text(openai_model) == "200,000 tokens"
    assert NotebookAgent(openai_model, max_cost_usd=0.5).cap_text(openai_model) == "200,000 tokens and $0.5"


def test_the_grammar_makes_a_gguf_model_answer_with_a_statement_in_a_code_block(tiny_gguf):
    """Random weights emit anything; under the grammar the reply is always a block the agent can run."""
    from nbmagic.agent.codegen import parse_cell
    from nbmagic.agent.constrain import code_block_params
    from nbmagic.llm.specs import load_model

    model = load_model(f"gguf:{tiny_gguf}")
    try:
        assert code_block_params(model, enabled=False) == {}
        forced = code_block_params(model)
        for seed_word in ("total", "plot", "count"):
            reply = model.chat([{"role": "user", "content": f"Write the {seed_word} cell."}], max_tokens=400,
                               temperature=0.0, **forced).text
            intro, fence, rest = reply.partition("```python\n")
            assert fence and "\n" not in intro.strip() and len(intro.strip()) <= 240
            first = next(line for line in rest.splitlines() if not line.startswith("#"))
            assert first[:1].isalpha() or first[:1] in "_(["  # a statement, not only comments
            if reply.endswith("```"):  # closed within the budget: the agent's parser takes it
                assert parse_cell(reply).code
    finally:
        model.close()


def test_top_rows_instead_of_top_products_and_an_unaggregated_monthly_plot_are_sent_back(run, openai_server):
    """What the 0.5B coder wrote for the README's request: the five largest rows, and those rows plotted."""
    rows = ("# Step 2 of 3: Top 5 products by revenue\n"
            "top_products = sales.sort_values(by='revenue', ascending=False).head(5)\nprint(top_products)")
    rows_plot = ("import matplotlib.pyplot as plt\n\nplt.plot(sales['date'], sales['revenue'])\nplt.show()")

    def respond(request):
        title = _step_title(request).lower()
        fixing = FIX_HEADING in _last_user(request)
        if "plot" in title:
            return cell(PLOT) if fixing else cell(rows_plot)
        return cell(TOP) if fixing else cell(rows)

    result, _, ns = run(respond)
    fixes = _users(openai_server, FIX_HEADING)
    assert any("The table lists rows, not products: `product` repeats" in f
               and "sales.groupby('product')['revenue'].sum().nlargest(5)" in f for f in fixes)
    assert any("does not aggregate by month" in f and "resample('MS')" in f for f in fixes)
    assert result.ok and list(ns["top"].index) == list(ns["sales"].groupby("product").revenue.sum().nlargest(5).index)


def test_prompt_comments_and_self_copies_are_dropped_from_code(run, tmp_path):
    """The table read again by its absolute path (it exists) is the loaded table: the line goes."""
    code = ("# Step 2 of 3: Top 5 products by revenue\nimport pandas as pd\n"
            f"sales = pd.read_csv('{tmp_path / 'sales.csv'}')\n" + TOP)
    result, _, _ = run(lambda r: cell(code), "What are the top 5 products by revenue in sales.csv?")
    source = [c for c in result.cells if c.cell_type == "code"][1].source
    assert "Step 2 of 3" not in source and "sales = " not in source and "read_csv" not in source
    assert source.startswith("import pandas as pd\ntop = sales.groupby")


def test_a_table_part_answered_with_a_figure_only_is_sent_back(run, openai_server):
    only_plot = ("import matplotlib.pyplot as plt\n\nby_region = sales.groupby('region')['revenue'].sum()\n"
                 "by_region.plot.bar()\nplt.show()")

    def respond(request):
        if FIX_HEADING in _last_user(request):
            return cell("by_region = sales.groupby('region')['revenue'].sum()\nby_region")
        return cell(only_plot)

    result, _, _ = run(respond, "Using sales.csv: make a table of total revenue per region.")
    assert any("only drew a figure" in f for f in _users(openai_server, FIX_HEADING))
    assert result.ok


def test_a_table_changed_in_place_is_put_back_and_the_key_error_names_the_columns(run, openai_server):
    def respond(request):
        if FIX_HEADING in _last_user(request):
            return cell("monthly = sales.set_index('date')['revenue'].resample('MS').sum()\nmonthly")
        return cell("sales.set_index('date', inplace=True)\nmonthly = sales.groupby(sales['date'].dt.month)"
                    "['revenue'].sum()\nmonthly")

    result, _, _ = run(respond, "What is the monthly revenue in sales.csv?")
    fix = _users(openai_server, FIX_HEADING)[0]
    assert "no inplace=True" in fix and "its index is" not in fix
    assert "date" in fix.split("As they are now:")[1]  # the table was put back: `date` is a column again
    assert result.ok


def test_a_parts_prompt_names_no_other_part_and_offers_the_idiom_with_real_columns(run, openai_server):
    # the 0.5B coder copied every plan line it was shown into one cell; the part's prompt lists none
    result, _events, _ns = run(lambda request: cell(PLOT if "plot" in _step_title(request).lower() else TOP))
    assert result.ok
    top_prompt, plot_prompt = _users(openai_server, CODE_HEADING)
    assert "Monthly revenue trend plot" not in top_prompt and "Plan:" not in top_prompt
    assert "`sales.groupby('product')['revenue'].sum().nlargest(5)`" in top_prompt
    assert "resample('MS').sum()" in plot_prompt and "(grouped, each once)" not in plot_prompt


def test_a_part_answered_with_the_loaded_tables_first_rows_is_sent_back(run, openai_server):
    # the 0.5B coder answered "top 5 products by revenue" with the load step's preview, which ran and showed a table
    def respond(request):
        if FIX_HEADING in _last_user(request):
            return cell(TOP)
        return cell("import pandas as pd\n\n# Load sales.csv into the DataFrame sales\nprint(sales.head())")

    result, _, ns = run(respond, "Using sales.csv: the top 5 products by revenue.")
    fixes = _users(openai_server, FIX_HEADING)
    assert len(fixes) == 1 and "only shows rows of `sales` as loaded" in fixes[0]
    assert result.ok and list(ns["top"].index) == list(ns["sales"].groupby("product").revenue.sum().nlargest(5).index)
    first_prompt = _users(openai_server, CODE_HEADING)[0]
    assert "(loaded)" not in first_prompt and "Loaded DataFrames" in first_prompt
    assert "print(sales.head())" not in "".join(c.source for c in result.cells if c.cell_type == "markdown")


def test_a_preview_is_fine_when_the_part_asks_for_one():
    from nbmagic.agent.reflector import only_previews

    frames = {"sales": object()}
    assert only_previews("import pandas as pd\nprint(sales.head())", frames)
    assert only_previews("sales.head(10)", frames) and only_previews("sales", frames)
    assert not only_previews("top = sales.nlargest(5, 'revenue')\ntop", frames)
    assert not only_previews("print(other.head())", frames)


def test_a_cell_kept_when_the_attempts_run_out_is_not_reported_as_a_success(run):
    # the embedded model printed a sentence for "a monthly revenue trend plot" until the attempts ran out
    result, _, _ = run(lambda request: cell("print('monthly revenue')"), "Using sales.csv: a monthly revenue plot.",
                       max_fixes=1)
    assert "kept after 2 attempts, but no figure was drawn" in result.summary
    assert "ok after" not in result.summary
