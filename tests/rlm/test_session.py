"""A REPL that lives across queries (RLM.session(), %rlm --continue) in both environments."""

from __future__ import annotations

from typing import Any

import pytest

from nbmagic.errors import BudgetExceededError, ConfigError
from nbmagic.rlm.agent import RLM
from nbmagic.testing.openai_server import OpenAICompatServer
from nbmagic.testing.rlm_scripts import ScriptedRoot, code


@pytest.mark.parametrize("environment", ["kernel", "subprocess"])
def test_follow_up_sees_earlier_variables_and_new_contexts(
    openai_server: OpenAICompatServer, models: Any, environment: str
) -> None:
    root, sub = models
    script = ScriptedRoot({
        "first": [code("import math\nwords = context.split()\nsubmit(len(words))")],
        "second": [code("submit((len(words), math.floor(2.5), len(extra)))")],
    })
    openai_server.set_responder(script)
    ns: dict[str, Any] = {"extra": [1, 2, 3], "text": "a b c d"}
    rlm = RLM(root, sub_model=sub, namespace=ns, environment=environment)
    with rlm.session() as session:
        assert session.query("first question", context="text").answer == 4
        pid = getattr(session.env, "pid", None)
        res = session.query("second question", context={"extra": "extra"})
        assert res.answer == (4, 2, 3) and session.runs == 2
        assert getattr(session.env, "pid", None) == pid  # the same worker served both
        first_msg = script.root_requests[-1]["messages"][1]["content"]
        assert "continues an earlier session" in first_msg and "Q: first question" in first_msg and "A: 4" in first_msg
        assert "`text`" in first_msg and "`extra`" in first_msg  # every context bound so far is listed
    assert session.closed and session.env is None
    with pytest.raises(ConfigError, match="session was closed"):
        session.query("third question")
    assert ns == {"extra": [1, 2, 3], "text": "a b c d"}  # the user's namespace is untouched


def test_each_query_has_its_own_budget_and_a_failure_keeps_the_repl(
    openai_server: OpenAICompatServer, models: Any
) -> None:
    root, sub = models
    script = ScriptedRoot({
        "spend": [code("kept = 'still here'\nrs = [llm_query(str(i)) for i in range(3)]\nprint(rs)")],
        "again": [code("submit((kept, llm_query('fresh budget')))")],
        "fails": [code("print(kept)")],
    })
    openai_server.set_responder(script)
    session = RLM(root, sub_model=sub, max_llm_calls=3, max_iterations=1, max_tokens=None).session()
    res = session.query("spend it")  # final step after one turn: answered in prose
    assert res.llm_calls == 3
    res2 = session.query("again")
    assert res2.answer == ("still here", "sub: fresh budget") and res2.llm_calls == 1
    # a query that fails (token budget) leaves the REPL for the next one
    limited = RLM(root, sub_model=sub, max_tokens=10)
    session.rlm = limited
    with pytest.raises(BudgetExceededError):
        session.query("this one fails")
    session.rlm = RLM(root, sub_model=sub)
    assert session.query("again").answer[0] == "still here"
    session.close()


def test_a_session_cannot_switch_environment(openai_server: OpenAICompatServer, models: Any) -> None:
    root, sub = models
    openai_server.set_responder(ScriptedRoot([code("submit(1)")]))
    session = RLM(root, sub_model=sub).session()
    session.query("q")
    session.rlm = RLM(root, sub_model=sub, environment="subprocess")
    with pytest.raises(ConfigError, match="cannot switch to 'subprocess'"):
        session.query("q")
    session.close()


def test_step_through_a_session_run(openai_server: OpenAICompatServer, models: Any) -> None:
    root, sub = models
    openai_server.set_responder(ScriptedRoot([code("n = 5"), code("submit(n * 2)")]))
    with RLM(root, sub_model=sub).session() as session:
        run = session.start("q")
        assert run.step()["code"] == "n = 5" and not run.done
        assert run.step()["submitted"] and run.result.answer == 10
        assert session.runs == 1 and session.env is not None  # the REPL stays for a follow-up
