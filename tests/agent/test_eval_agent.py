"""``python -m nbmagic.eval agent``: the suites' answers, part judging, the frozen external suite, runs end to end."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pandas as pd
import pytest

from nbmagic.eval.__main__ import main
from nbmagic.eval.agent_cli import select_tasks
from nbmagic.eval.agent_judge import (
    AnswerLine,
    FigurePart,
    FigureRecorder,
    RunView,
    StatedPart,
    TablePart,
    answer_matches,
    is_load_cell,
    last_answer_line,
    view_of,
)
from nbmagic.eval.agent_suite import check, make_tables, make_tasks
from nbmagic.eval.agent_tasklist import external_hash, external_tasks, make_suite, multipart_tasks

ROOT = Path(__file__).resolve().parents[2]


# --- the single questions (the suite as before) ---------------------------------------------------


def test_suite_has_thirty_tasks_with_exact_answers(tmp_path):
    tables = make_tables()
    tasks = make_tasks(tables)
    assert len(tasks) >= 30 and len({t.id for t in tasks}) == len(tasks)
    assert {t.kind for t in tasks} == {"number", "name", "list"}
    # the expected answers are what pandas says about the written files
    tables.write(tmp_path, ("sales.csv", "inventory.csv"))
    sales = pd.read_csv(tmp_path / "sales.csv")
    by_id = {t.id: t for t in tasks}
    assert by_id["sales_total"].expected == pytest.approx(sales.revenue.sum())
    assert by_id["sales_best_product"].expected == sales.groupby("product").revenue.sum().idxmax()
    inv = pd.read_csv(tmp_path / "inventory.csv")
    assert by_id["inv_low3"].expected == list(inv.sort_values("stock").item[:3])
    assert make_tasks(make_tables()) == tasks  # deterministic


def test_check_reads_the_answer_not_a_dump_of_everything():
    by_id = {t.id: t for t in make_tasks()}
    total = by_id["sales_total"]
    assert check(total, f"The total revenue is {total.expected:,.2f}.")
    assert not check(total, f"The total revenue is {total.expected + 1:.2f}.")
    best = by_id["sales_best_product"]
    others = [p for p in best.candidates if p != best.expected]
    assert check(best, f"{best.expected} has the highest revenue, then {others[0]}")
    assert not check(best, "product revenue\n" + "\n".join(f"{p} 1.0" for p in [*others, best.expected]))
    top3 = by_id["sales_top3"]
    assert check(top3, ", ".join(top3.expected))
    assert not check(top3, ", ".join(reversed(top3.expected)))
    assert not check(total, "")


# --- the external suite ---------------------------------------------------------------------------


def test_external_suite_is_frozen_and_its_hash_is_recorded():
    digest = external_hash()
    assert re.fullmatch(r"[0-9a-f]{64}", digest)
    # the docs name the hash of the questions the figures were measured on; an edit to the
    # frozen file shows up here (a new question set needs a new name and new figures)
    assert digest in (ROOT / "docs" / "agent.md").read_text()
    tasks = external_tasks()
    assert len(tasks) >= 20 and len({t.id for t in tasks}) == len(tasks)
    for t in tasks:
        assert "Answer: <" in t.request and len(t.files) == 1 and len(t.parts) == 1
        assert isinstance(t.parts[0], AnswerLine)
    assert external_tasks() == tasks  # deterministic


def test_external_answers_are_computed_from_the_written_csv(tmp_path):
    by_id = {t.id: t for t in external_tasks()}
    cars = by_id["cars_mpg_usa"]
    cars.prepare(tmp_path)
    d = pd.read_csv(tmp_path / "cars.csv")
    want = d.loc[d.Origin == "USA", "Miles_per_Gallon"].mean()
    assert cars.parts[0].expected == pytest.approx(want) and cars.parts[0].decimals == 2
    barley = by_id["barley_top3_1932"]
    barley.prepare(tmp_path)
    b = pd.read_csv(tmp_path / "barley.csv")
    top = b[b.year == 1932].groupby("variety")["yield"].mean().nlargest(3).index.tolist()
    assert barley.parts[0].expected == top


def test_answer_line_parsing():
    texts = ["step 1\nAnswer: 3.1", "noise\n**Answer:** `20.08`\n", "The answer cell has no line"]
    assert last_answer_line(texts) == "20.08"  # the last line in notebook order wins
    assert last_answer_line(["Answer: Trebi."]) == "Trebi"
    assert last_answer_line(["'Answer: 42'"]) == "42"  # a string echoed by the REPL
    assert last_answer_line(["the answer is 42"]) is None
    assert answer_matches("20.08", "number", 20.0833, 2)
    assert answer_matches("20.1", "number", 20.0999, 2) and answer_matches("20.10", "number", 20.0999, 2)
    assert not answer_matches("20.083", "number", 20.0833, 2)  # more decimals than asked
    assert not answer_matches("20.07", "number", 20.0833, 2)
    assert answer_matches("96", "number", 96, 0) and answer_matches("96.0", "number", 96, 0)
    assert not answer_matches("96 cars", "number", 96, 0) and not answer_matches("-96", "number", 96, 0)
    assert answer_matches("1,139.2", "number", 1139.2, 1)
    assert answer_matches("waseca", "text", "Waseca", 0) and not answer_matches("Morris", "text", "Waseca", 0)
    assert answer_matches("Trebi, Peatland", "list", ["Trebi", "Peatland"])
    assert not answer_matches("Peatland, Trebi", "list", ["Trebi", "Peatland"])
    part = AnswerLine("answer line", "number", 20.0833, 2)
    assert part.judge(RunView(outputs=["Answer: 20.08"]))
    assert not part.judge(RunView(outputs=["20.08"], answer="The mean is 20.08."))  # the format is the task


# --- parts: tables, figures, stated answers ---------------------------------------------------------


def test_table_part_needs_the_exact_values():
    top = pd.Series({"Cedar Desk": 158578.0, "Ember Kettle": 93888.0, "Drift Chair": 81270.0})
    part = TablePart("top 3", tuple(top.index), tuple(top.values), ordered=True)
    assert part.judge(RunView(namespace={"top3": top}))
    assert part.judge(RunView(namespace={"t": top.rename_axis("product").reset_index()}))  # a column of labels
    assert not part.judge(RunView(namespace={"top3": top.sort_values()}))  # wrong order
    assert not part.judge(RunView(namespace={"top3": top + 1}))  # wrong values
    assert not part.judge(RunView(namespace={"top3": pd.concat([top, pd.Series({"Fjord Rug": 1.0})])}))
    assert part.judge(RunView(outputs=[top.to_string()]))  # printed
    assert not part.judge(RunView(outputs=[top.sort_values().to_string()]))
    months = pd.Series([1.5, 2.5], index=pd.PeriodIndex(["2024-01", "2024-02"], freq="M"))
    assert TablePart("m", ("2024-01", "2024-02"), (1.5, 2.5), True).judge(RunView(namespace={"m": months}))
    unordered = TablePart("regions", ("East", "North"), (3.0, 4.0))
    assert unordered.judge(RunView(namespace={"r": pd.Series({"North": 4.0, "East": 3.0})}))


def _draw(code: str, tmp_path) -> FigureRecorder:
    from nbmagic.agent.executor import NamespaceExecutor

    rec = FigureRecorder(NamespaceExecutor({}, cwd=tmp_path))
    assert rec.run(code, 30).ok
    return rec


def test_figure_part_checks_the_plotted_series(tmp_path):
    import matplotlib.pyplot as plt

    plt.close("all")  # figures an earlier test left open in this process are not this test's
    setup = "import pandas as pd\nimport matplotlib.pyplot as plt\ns = pd.Series([3.0, 1.0, 2.0], index=list('abc'))\n"
    line = FigurePart("trend", (3.0, 1.0, 2.0), "line")
    right = _draw(setup + "s.plot()\nplt.title('x')\nplt.show()", tmp_path)
    assert not plt.get_fignums()  # the executor closed it; the recorder kept its data
    assert line.judge(RunView(figures=right.series))
    assert not line.judge(RunView(figures=_draw(setup + "(s * 2).plot()", tmp_path).series))  # wrong series
    assert not line.judge(RunView(figures=_draw(setup + "s.sort_values().plot()", tmp_path).series))
    bars = _draw(setup + "fig, ax = plt.subplots()\ns.sort_values().plot.barh(ax=ax)\nplt.close(fig)", tmp_path)
    assert FigurePart("bars", (3.0, 1.0, 2.0), "bar", ordered=False).judge(RunView(figures=bars.series))
    assert not FigurePart("bars", (3.0, 1.0, 2.0), "line").judge(RunView(figures=bars.series))
    assert not FigurePart("bars", (3.0, 1.0, 4.0), "bar", ordered=False).judge(RunView(figures=bars.series))
    # a failed cell's figure is not in the notebook, so it does not count
    from nbmagic.agent.executor import NamespaceExecutor

    rec = FigureRecorder(NamespaceExecutor({}, cwd=tmp_path))
    assert not rec.run(setup + "s.plot()\n1 / 0", 30).ok
    assert rec.series == []


def test_stated_part_reads_the_closing_answer_first():
    part = StatedPart("top region", "name", "West", ("North", "South", "East", "West"))
    assert part.judge(RunView(answer="West has the most revenue.", outputs=["North 1\nWest 2"]))
    assert not part.judge(RunView(answer="", outputs=["North 1\nWest 2"]))


def test_the_agents_load_cell_is_not_an_answer():
    """The load cell's head() shows raw rows; the first region there must not count as the stated answer."""
    from types import SimpleNamespace

    def cell(source, text):
        return {"cell_type": "code", "source": source, "metadata": {"nbmagic": {"status": "ok"}},
                "outputs": [{"output_type": "stream", "name": "stdout", "text": text}]}

    load = cell("import pandas as pd\n\nsales = pd.read_csv('sales.csv')\nsales.head()", "0 West 10\n1 North 3")
    plot = cell("sales.groupby('region').revenue.sum().plot.bar()", "<Figure>")
    part = StatedPart("top region", "name", "West", ("North", "South", "East", "West"))
    assert not part.judge(view_of(SimpleNamespace(cells=[load, plot], answer="")))
    said = cell("print('West has the most revenue')", "West has the most revenue")
    assert part.judge(view_of(SimpleNamespace(cells=[load, said, plot], answer="")))


def test_multipart_suite_checks_a_table_a_figure_and_more():
    tasks = multipart_tasks()
    assert len(tasks) >= 12
    readme = next(t for t in tasks if t.id == "mp_readme")
    assert readme.request == "Analyze sales_data.csv: the top 5 products by revenue and a monthly revenue trend plot"
    for t in tasks:
        kinds = {type(p) for p in t.parts}
        assert TablePart in kinds and FigurePart in kinds and len(t.parts) >= 2
    # expected values are the README's data, computed
    sales = pd.read_csv(ROOT / "examples" / "sales_data.csv")
    top = sales.groupby("product").revenue.sum().nlargest(5)
    assert readme.parts[0].labels == tuple(top.index) and readme.parts[0].values == pytest.approx(tuple(top))
    assert len(readme.parts[1].values) == sales.date.str[:7].nunique()


def test_load_cells_do_not_count_as_the_first_cell():
    assert is_load_cell("import pandas as pd\n\nsales = pd.read_csv('sales.csv', parse_dates=['date'])\nsales.head()")
    assert not is_load_cell("top = sales.groupby('product').revenue.sum()\ntop.head()")


# --- the command line ---------------------------------------------------------------------------------


@pytest.mark.parametrize("argv, message", [
    (["--suite", "nope"], "Unknown suite(s) nope"),
    (["--planner", "default,nope"], "--planner 'nope'"),
    (["--tasks", "nope", "--suite", "single"], "Unknown task id(s) nope"),
    (["--ci", "--tasks", "2"], "--ci picks its own tasks"),
    (["--planner", "none,none"], "names a value twice"),
])
def test_bad_options_are_one_message(argv, message, capsys):
    assert main(["agent", "--model", "openai-compat:x@http://127.0.0.1:9/v1", *argv]) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err


def test_ci_subset_is_one_task_per_suite():
    tasks = [t for s in ("single", "multipart", "external") for t in make_suite(s)]
    picked = select_tasks(tasks, "1", ["single", "multipart", "external"])
    assert [t.suite for t in picked] == ["single", "multipart", "external"]
    assert picked[1].id == "mp_readme"


README_CODE = """import pandas as pd
import matplotlib.pyplot as plt
df = pd.read_csv('sales_data.csv')
top5 = df.groupby('product')['revenue'].sum().sort_values(ascending=False).head(5)
print(top5)
monthly = df.groupby(df['date'].str[:7])['revenue'].sum()
monthly.plot(title='Monthly revenue')
plt.show()
"""

CARS_CODE = """import pandas as pd
cars = pd.read_csv('cars.csv')
mpg = cars.loc[cars['Origin'] == 'USA', 'Miles_per_Gallon'].dropna().mean()
print(f"Answer: {mpg:.2f}")
"""


def _scripted(request):
    """A model that does the README request and the first external question right, reading the files itself."""
    text = "\n".join(m["content"] for m in request["messages"] if isinstance(m.get("content"), str))
    last = [m["content"] for m in request["messages"] if m["role"] == "user"][-1]
    if last.startswith("## Answer the request"):
        return "Cedar Desk leads the products; the monthly trend is plotted above."
    code = CARS_CODE if "cars.csv" in text else README_CODE
    return f"The analysis.\n\n```python\n{code}```\n"


def test_scripted_run_judges_a_multipart_and_an_external_task_end_to_end(tmp_path, openai_server, capsys):
    openai_server.set_responder(_scripted)
    out = tmp_path / "runs.json"
    code = main(["agent", "--model", f"openai-compat:test-model@{openai_server.url}", "--planner", "none,onecall",
                 "--suite", "multipart,external", "--tasks", "mp_readme,cars_mpg_usa", "--json", str(out),
                 "--quiet", "--keep", str(tmp_path / "runs")])
    assert code == 0
    table = capsys.readouterr().out
    assert "external suite sha256:" + external_hash()[:16] in table
    assert re.search(r"multipart +none +1/1 +100% +2/2 +100% +100%", table), table
    data = json.loads(out.read_text())
    assert data["external_sha256"] == external_hash() and data["data_versions"]["vega_datasets"] != "missing"
    runs = {(r["task"], r["planner"]): r for r in data["runs"]}
    readme = runs[("mp_readme", "none")]
    assert readme["part_names"] == ["top 5 products by revenue", "monthly revenue trend plot"]
    assert readme["parts"] == [True, True] and readme["verified"] is True
    # the agent's own load cell ran first; the first model-written cell came after it
    assert readme["first_cell_seconds"] is not None and readme["first_run_seconds"] <= readme["first_cell_seconds"]
    assert runs[("cars_mpg_usa", "none")]["parts"] == [True] and runs[("cars_mpg_usa", "none")]["answer_line"]
    assert runs[("cars_mpg_usa", "onecall")]["correct"] and runs[("cars_mpg_usa", "onecall")]["calls"] == 1
    assert data["summary"]["multipart"]["none"]["parts_correct"] == 2
    assert (tmp_path / "runs" / "none" / "mp_readme" / "mp_readme.ipynb").is_file()


def test_a_wrong_plot_fails_its_part_end_to_end(tmp_path, openai_server):
    openai_server.set_responder(lambda req: "Plot.\n\n```python\n" + README_CODE.replace(
        "['revenue'].sum()\nmonthly", "['units'].sum()\nmonthly") + "```\n")
    out = tmp_path / "runs.json"
    assert main(["agent", "--model", f"openai-compat:test-model@{openai_server.url}", "--planner", "onecall",
                 "--suite", "multipart", "--tasks", "mp_readme", "--json", str(out), "--quiet", "--no-verify"]) == 0
    run = json.loads(out.read_text())["runs"][0]
    assert run["parts"] == [True, False] and not run["correct"]


@pytest.mark.real_model
@pytest.mark.timeout(900)  # four model calls on a 2-core CPU (the suite's default limit is 300 s)
def test_ci_sized_run_on_the_embedded_model(embedded_gguf_path, tmp_path, capsys):
    """The CI-sized external question on SmolLM2-135M: the pipeline end to end (figures are in the docs)."""
    out = tmp_path / "runs.json"
    code = main(["agent", "--model", f"gguf:{embedded_gguf_path}", "--ci", "--suite", "external",
                 "--planner", "default,onecall", "--max-fixes", "0", "--timeout", "20", "--json", str(out), "--quiet"])
    assert code == 0
    data = json.loads(out.read_text())
    assert [(r["suite"], r["planner"]) for r in data["runs"]] == [("external", "default"), ("external", "onecall")]
    for r in data["runs"]:
        assert r["tokens"] > 0 and r["calls"] >= 1 and len(r["parts"]) == 1
        if r["planner"] == "onecall":
            assert r["calls"] == 1
        # failed cells are tagged, so even a weak model's notebooks run top to bottom
        assert r["verified"] is True
    assert set(data["summary"]) == {"external"} and data["external_sha256"] == external_hash()
