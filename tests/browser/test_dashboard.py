"""%%agent and %rlm in a real JupyterLab (headless Chromium): the live dashboard, then the summary.

The kernel talks to the loopback OpenAI-compatible server of this test process; replies
are slowed a little so the dashboard can be watched while it updates.
"""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path

import nbformat
import pytest

from nbmagic.testing import agent_scripts, examples_responder
from nbmagic.testing.openai_server import Reply

pytestmark = [pytest.mark.browser, pytest.mark.slow]

REPO = Path(__file__).resolve().parents[2]
SCREENSHOT = REPO / "docs" / "img" / "dashboard.png"
OUTPUT = ".jp-OutputArea"


def _slow(request):
    """The examples' scripted model, answering like a (fast) real server: a pause, then streamed words."""
    return Reply(examples_responder.respond(request), delay=0.25, chunk_delay=0.015)


def _text(locator) -> str:
    return locator.inner_text().replace("\u200b", "")


def _wait_text(locator, *needles: str, timeout: float = 60.0) -> str:
    """The locator's text once it holds every needle (the dashboard re-renders as events arrive)."""
    deadline = time.monotonic() + timeout
    while True:
        text = _text(locator)
        if all(n in text for n in needles) or time.monotonic() > deadline:
            return text
        time.sleep(0.1)


def _log_source() -> str:
    return (
        "lines = [f'day {i // 24 + 1:03d} {i % 24:02d}:00  routine entry {i}' for i in range(4000)]\n"
        "lines.insert(2440, 'security: The access code for vault QX-7731 is 640219.')\n"
        "log = '\\n'.join(lines)"
    )


def test_agent_and_rlm_dashboards_in_jupyterlab(lab, jupyterlab, openai_server, tmp_path):
    openai_server.set_responder(_slow)
    agent_scripts.write_sales_csv(jupyterlab.root / "sales.csv")
    cells = [
        nbformat.v4.new_code_cell(
            f'%load_ext nbmagic\n%config NbMagic.model = "openai-compat:test-model@{openai_server.url}"'
        ),
        nbformat.v4.new_code_cell(
            "%%agent --rounds 2\nAnalyze sales.csv: the top 5 products by revenue and a monthly revenue trend plot"
        ),
        nbformat.v4.new_code_cell(_log_source()),
        nbformat.v4.new_code_cell("%rlm --context log --out found What is the access code for vault QX-7731?"),
    ]
    jupyterlab.write_notebook("dashboard.ipynb", cells)
    lab.open_notebook("dashboard.ipynb")
    lab.run_cell(0)
    lab.wait_executed(0)

    # --- %%agent: the dashboard while it runs ---------------------------------------------------
    lab.run_cell(1)
    agent_out = lab.cells().nth(1).locator(OUTPUT)
    agent_out.locator(".nbm-grid").wait_for(timeout=60_000)  # rounds × agents grid (a widget)
    # the plan checklist, with the first step ticked while later ones are still to come
    agent_out.get_by_text("☑ Load sales.csv into the DataFrame").wait_for(timeout=60_000)
    # the agent's own load step runs before planning; the planned steps join the checklist after,
    # while the widget re-renders: read it until the checklist shows them
    during = _wait_text(agent_out, "Compute the top 5 products by revenue", "round 2")
    assert "round 1" in during and "round 2" in during
    assert "planner" in during and "critic" in during and "solver" in during
    assert "plan" in during and "Compute the top 5 products by revenue" in during
    lab.screenshot(tmp_path / "dashboard.png")

    # --- at the end: the summary replaces the widget; the cells are inserted below ---------------
    lab.wait_executed(1, timeout=120)
    agent_out.locator(".nbm-summary").wait_for(timeout=30_000)
    summary = _text(agent_out.locator(".nbm-summary"))
    assert "agent done in" in summary and "plan 3/3" in summary and "7 cells" in summary
    assert agent_out.locator(".widget-vbox").count() == 0  # no dead widget left behind
    assert "7 cells inserted below" in _text(agent_out)
    assert lab.cells().count() == 4 + 7  # three steps (the first the agent's own load) and the answer
    inserted = [lab.cells().nth(i) for i in range(2, 9)]
    assert "Step 1: Load sales.csv" in _text(inserted[0])
    assert "read_csv" in _text(inserted[1].locator(".jp-InputArea"))
    assert "top_products" in _text(inserted[3].locator(".jp-InputArea"))
    assert inserted[5].locator(".jp-OutputArea img").count() == 1  # the plot came with the cell
    assert "Answer" in _text(inserted[6])

    # --- %rlm: iterations as a collapsible accordion, then the answer -----------------------------
    log_cell, rlm_cell = 9, 10
    lab.run_cell(log_cell)
    lab.wait_executed(log_cell)
    lab.run_cell(rlm_cell)
    rlm_out = lab.cells().nth(rlm_cell).locator(OUTPUT)
    rlm_out.get_by_text("iteration 2").first.wait_for(timeout=60_000)
    assert "sub-calls" in _text(rlm_out) or "iteration" in _text(rlm_out)
    lab.wait_executed(rlm_cell, timeout=120)
    rlm_out.locator(".nbm-summary").wait_for(timeout=30_000)
    final = _text(rlm_out)
    assert "rlm done in" in final and "3 iterations" in final and "1/50 sub-calls" in final
    assert "640219" in final
    lab.cells().nth(rlm_cell).scroll_into_view_if_needed()
    lab.screenshot(tmp_path / "after.png")  # the end state, for a person looking at a failure

    shot = tmp_path / "dashboard.png"
    assert shot.stat().st_size > 10_000
    if os.environ.get("NBMAGIC_UPDATE_SCREENSHOTS") == "1" or not SCREENSHOT.exists():
        SCREENSHOT.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(shot, SCREENSHOT)
