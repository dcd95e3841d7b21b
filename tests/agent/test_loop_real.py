"""The one loop on real weights: the embedded SmolLM2 does the README's two-part request part by part.

What a 135M model writes is often wrong; what must hold regardless is the loop's shape: no
planning call before the first cell, one round per part, every reply a code block (the GGUF
grammar), and no prompt text in any markdown cell.
"""

from __future__ import annotations

import pytest

from nbmagic.agent.core import NotebookAgent
from nbmagic.agent.markdown import PROMPT_PHRASES
from nbmagic.events import AgentStarted, EventRecorder, RoundStarted
from nbmagic.testing.agent_scripts import write_sales_csv

pytestmark = pytest.mark.real_model


@pytest.mark.timeout(1200)  # five CPU calls of a 135M model; minutes on a loaded 2-core machine
def test_the_embedded_model_does_the_request_part_by_part(embedded_gguf_model, tmp_path):
    write_sales_csv(tmp_path / "sales.csv")
    rec = EventRecorder()
    agent = NotebookAgent(embedded_gguf_model, max_fixes=1, cell_timeout=20, max_tokens=160, answer=False,
                          on_event=rec)
    result = agent.run("Analyze sales.csv: the top 5 products by revenue and a monthly revenue trend plot", {},
                       base_dir=tmp_path)
    assert result.planner == "parts" and result.mode == "parts"
    assert result.plan == ["Load sales.csv into the DataFrame `sales`", "Top 5 products by revenue",
                           "Monthly revenue trend plot"]
    assert [(e.round, e.total) for e in rec.of(RoundStarted)] == [(1, 2), (2, 2)]
    assert {e.agent for e in rec.of(AgentStarted)} == {"tool_caller", "reflector"}
    attempts = [t for t in result.trajectory if t["type"] == "attempt" and t["step"] > 1]
    assert attempts and all(t["code"] for t in attempts)  # the grammar: a code block every time
    assert "never answered with a code block" not in result.summary
    for c in result.cells:
        if c.cell_type == "markdown" and c.metadata["nbmagic"]["step"] != "answer":
            assert not PROMPT_PHRASES.search(c.source.split("\n", 1)[1] if "\n" in c.source else ""), c.source
