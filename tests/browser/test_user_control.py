"""The user stays in control, in a real JupyterLab 4 (headless Chromium) with the prebuilt extension:

* ``%agent undo`` removes the cells the run inserted, keeps one the user edited since;
* ``%%agent --confirm`` shows Run / Edit / Skip / Stop buttons that answer while the
  cell is still running; an edited cell runs as edited and lands as edited; Stop keeps
  what finished.

The kernel's model is the loopback OpenAI-compatible server of this test process.
"""

from __future__ import annotations

import time

import nbformat
import pytest

from nbmagic.testing import agent_scripts

pytestmark = [pytest.mark.browser, pytest.mark.slow]

REQUEST = "Analyze sales.csv: the top 5 products by revenue and a monthly revenue trend plot"
OUTPUT = ".jp-OutputArea"


def _text(locator) -> str:
    return locator.inner_text().replace("\u200b", "")


def _setup(jupyterlab, openai_server, name, cells):
    openai_server.set_responder(agent_scripts.make_responder("works"))
    agent_scripts.write_sales_csv(jupyterlab.root / "sales.csv")
    first = nbformat.v4.new_code_cell(
        f'%load_ext nbmagic\n%config NbMagic.model = "openai-compat:test-model@{openai_server.url}"')
    jupyterlab.write_notebook(name, [first, *cells])


def _wait_count(lab, n, timeout=90.0):
    try:
        lab.page.wait_for_function(f"document.querySelectorAll('{lab.CELLS}').length === {n}",
                                   timeout=timeout * 1000)
    except Exception:  # say what the notebook holds instead
        texts = [_text(lab.cells().nth(i))[:300] for i in range(lab.cells().count())]
        raise AssertionError(f"expected {n} cells, the notebook has {len(texts)}: {texts}") from None


@pytest.mark.parametrize("ui", ["lab", "notebook"], ids=["jupyterlab4", "notebook7"])
def test_undo_removes_the_inserted_cells_but_not_one_edited_since(lab, jupyterlab, openai_server, ui):
    name = f"undo-{ui}.ipynb"
    _setup(jupyterlab, openai_server, name, [
        nbformat.v4.new_code_cell(f"%%agent --planner single --no-answer\n{REQUEST}"),
        nbformat.v4.new_code_cell("%agent undo\nprint('sales' in dir(), 'monthly' in dir())"),
    ])
    lab.open_notebook(name, ui=ui)
    lab.run_cell(0)
    lab.wait_executed(0)
    lab.run_cell(1)
    _wait_count(lab, 3 + 6)  # 3 steps (the load, then the 2 planned), markdown + code each
    lab.wait_executed(1)
    cells = lab.cells()
    assert "Load sales.csv" in _text(cells.nth(2))
    # the user edits the last inserted code cell
    edited = cells.nth(7)
    assert "jp-CodeCell" in (edited.get_attribute("class") or "")
    edited.locator(".cm-content").click()
    lab.page.keyboard.press("Control+End")
    lab.page.keyboard.type("\n# my own note")
    time.sleep(0.5)  # the edit reaches the shared model
    # run the undo cell (now the last one)
    lab.run_cell(8, advance=False)
    _wait_count(lab, 3 + 1)
    lab.wait_executed(3)
    cells = lab.cells()
    assert "# my own note" in _text(cells.nth(2))  # the edited cell stayed, the other 5 went
    out = _text(cells.nth(3).locator(OUTPUT))
    assert "Removed 5 of its 6 cells from the notebook." in out
    assert "Kept 1 cell you edited since" in out and "--force" in out
    assert "Deleted the variables it created" in out
    assert "False False" in out  # `sales` and `monthly` are gone from the kernel


def test_review_buttons_answer_while_the_cell_runs(lab, jupyterlab, openai_server):
    _setup(jupyterlab, openai_server, "review.ipynb", [
        nbformat.v4.new_code_cell(f"%%agent --confirm --planner single --no-answer\n{REQUEST}"),
        nbformat.v4.new_code_cell("print('edited_marker =', edited_marker, '| plotted:', 'monthly' in dir())"),
    ])
    lab.open_notebook("review.ipynb")
    lab.run_cell(0)
    lab.wait_executed(0)
    lab.run_cell(1)
    out = lab.cells().nth(1).locator(OUTPUT)
    page = lab.page

    def panel(n):
        box = out.locator(".nbmagic-review").nth(n - 1)
        box.locator(".nbmagic-review-run:not([disabled])").wait_for(timeout=60_000)
        return box

    # 1: the agent's own load step: Run, clicked while the %%agent cell is running
    first = panel(1)
    assert "[*]" in _text(lab.cells().nth(1).locator(".jp-InputPrompt"))
    assert "pd.read_csv" in first.locator("textarea").input_value()
    first.locator(".nbmagic-review-run").click()
    # 2: Edit, change the code, run the edited code
    second = panel(2)
    second.locator(".nbmagic-review-edit").click()
    area = second.locator("textarea")
    page.wait_for_function("(el) => !el.disabled", arg=area.element_handle())
    area.click()
    # at the top: the step's table stays the cell's last expression, so the reflector accepts it
    page.keyboard.press("Control+Home")
    page.keyboard.type("edited_marker = 42\n")
    time.sleep(0.5)  # the widget syncs its value before the click
    assert area.input_value().startswith("edited_marker = 42\n")
    assert second.locator(".nbmagic-review-run").inner_text() == "Run edited"
    second.locator(".nbmagic-review-run").click()
    # 3: Stop: the run ends, what finished is kept
    third = panel(3)
    third.locator(".nbmagic-review-stop").click()
    lab.wait_executed(1, timeout=90)
    _wait_count(lab, 3 + 4)  # two finished steps, markdown + code each
    cells = lab.cells()
    said = _text(out)
    assert "edited_marker = 42" in _text(cells.nth(5))  # the edited code is what landed
    assert "edited and run" in said and "stopped here" in said
    # the cell after the inserted ones sees the edited code's variable, and no plot step ran
    lab.run_cell(6)
    lab.wait_executed(6)
    assert "edited_marker = 42 | plotted: False" in _text(lab.cells().nth(6).locator(OUTPUT))
