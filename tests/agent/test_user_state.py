"""A user variable that a generated cell rebinds stays reachable (issue 13): its old value is kept
in ``_nbmagic_saved`` and ``AgentResult.replaced``, and the summary says where."""

from __future__ import annotations

import re

import pandas as pd

from nbmagic.agent.core import SAVED_NAME, NotebookAgent
from nbmagic.testing.agent_scripts import make_responder, write_sales_csv

REQUEST = "Analyze sales.csv: the top 5 products by revenue and a monthly revenue trend plot"


def test_a_rebound_user_variable_is_kept_and_the_summary_says_where(tmp_path, monkeypatch, openai_server,
                                                                     openai_model, ipython_shell):
    write_sales_csv(tmp_path / "sales.csv")
    monkeypatch.chdir(tmp_path)
    works = make_responder("works")

    def rebinds(request):  # the first code block the model writes ends with `df = None`
        reply = works(request)
        text = reply if isinstance(reply, str) else reply.text
        return re.sub(r"```python\n(.*?)```", lambda m: f"```python\n{m.group(1)}df = None\n```", text,
                      count=1, flags=re.S)

    mine = pd.DataFrame({"a": [1, 2, 3]})
    ipython_shell.user_ns["df"] = mine
    openai_server.set_responder(rebinds)
    result = NotebookAgent(openai_model, planner="single", cell_timeout=20).run(REQUEST, shell=ipython_shell)
    assert ipython_shell.user_ns["df"] is None  # the cell's assignment stands (it may be what was asked)
    assert ipython_shell.user_ns[SAVED_NAME]["df"] is mine  # but the user's object is not lost
    assert result.replaced == {"df": mine} and result.rebound == ["df"]
    assert "_nbmagic_saved['df']" in str(result)
