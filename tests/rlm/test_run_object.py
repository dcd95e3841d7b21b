"""One run object per invocation, one turn at a time; prose answers marked; runs without sub-LMs."""

from __future__ import annotations

from typing import Any

import pytest

from nbmagic.errors import ConfigError
from nbmagic.events import EventRecorder, Finished, Notice, RunStarted
from nbmagic.rlm.agent import NOT_COMPUTED, RLM, RLMRun
from nbmagic.testing.openai_server import OpenAICompatServer
from nbmagic.testing.rlm_scripts import ScriptedRoot, code


def system_of(request: dict[str, Any]) -> str:
    return request["messages"][0]["content"]


def test_step_takes_one_turn_at_a_time(openai_server: OpenAICompatServer, models: Any) -> None:
    root, sub = models
    script = ScriptedRoot([code("x = 20"), code("y = x + 1"), code("submit(x + y)")])
    openai_server.set_responder(script)
    rec = EventRecorder()
    run = RLM(root, sub_model=sub, on_event=rec).start("q", context="abc")
    assert isinstance(run, RLMRun) and not run.done and script.root_requests == []  # nothing ran yet
    first = run.step()
    assert first is not None and first["code"] == "x = 20" and run.iterations == 1 and not run.done
    assert len(script.root_requests) == 1 and rec.kinds()[0] == "RunStarted"
    run.step()
    last = run.step()
    assert last is not None and last["submitted"] and run.done
    assert run.result is not None and run.result.answer == 41 and run.result.iterations == 3
    assert run.step() is None and run.run() is run.result  # over: no more calls
    assert len(script.root_requests) == 3
    assert len(rec.of(RunStarted)) == 1 and len(rec.of(Finished)) == 1


def test_a_failed_run_refuses_further_steps(openai_server: OpenAICompatServer, models: Any) -> None:
    root, sub = models
    openai_server.set_responder(ScriptedRoot([code("print('step')")]))
    run = RLM(root, sub_model=sub, max_tokens=30).start("q")
    with pytest.raises(Exception, match="token budget") as info:
        run.run()
    assert info.value.partial.complete is False and run.done and run.step() is None


def test_prose_answer_is_marked_not_computed(openai_server: OpenAICompatServer, models: Any) -> None:
    """The issue's case: a root model that only talks never gets its guess passed off as computed."""
    root, sub = models
    prose = "I would search the text for the word and count it. The answer is probably 3."
    openai_server.set_responder(ScriptedRoot([prose]))
    rec = EventRecorder()
    res = RLM(root, sub_model=sub, max_iterations=2, on_event=rec).query("How many whales?", context="a whale")
    assert res.answer == prose and res.final_step
    assert res.computed is False and NOT_COMPUTED in res.notes and "computed=False" in repr(res)
    warnings = [n for n in rec.of(Notice) if n.level == "warning"]
    assert len(warnings) == 1 and "not computed" in warnings[0].message


def test_code_that_only_fails_is_not_computed_but_code_that_works_is(
    openai_server: OpenAICompatServer, models: Any
) -> None:
    root, sub = models
    openai_server.set_responder(ScriptedRoot([code("1 / 0"), "It is 3."]))
    res = RLM(root, sub_model=sub, max_iterations=1).query("q")
    assert res.final_step and res.computed is False
    openai_server.set_responder(ScriptedRoot([code("n = 3\nprint(n)"), "It is 3."]))
    res = RLM(root, sub_model=sub, max_iterations=1).query("q")
    assert res.final_step and res.computed is True and res.notes == []


def test_no_sub_calls_leaves_only_submit(openai_server: OpenAICompatServer, models: Any) -> None:
    root, sub = models
    script = ScriptedRoot([
        code("print(sorted(n for n in ('llm_query', 'llm_query_batched', 'rlm_query', 'submit') if n in globals()))"),
        code("llm_query('hi')"),
        code("submit(sum(context))"),
    ])
    openai_server.set_responder(script)
    res = RLM(root, sub_model=sub, recursive=False).query("total?", context=[1, 2, 3])
    assert res.answer == 6 and res.llm_calls == 0 and script.sub_requests == []
    assert res.trajectory[0]["output"].strip() == "['submit']"
    assert "NameError" in res.trajectory[1]["output"] and "llm_query" in res.trajectory[1]["output"]
    prompt = system_of(script.root_requests[0])
    assert "llm_query" not in prompt and "no sub-models" in prompt and "submit(answer)" in prompt
    assert "Sub-calls left" not in script.root_requests[1]["messages"][-1]["content"]
    with pytest.raises(ConfigError, match="recursive must be True or False"):
        RLM(root, recursive="no")


def test_no_sub_calls_in_the_subprocess_repl(openai_server: OpenAICompatServer, models: Any) -> None:
    root, sub = models
    script = ScriptedRoot([code("submit(('llm_query' in globals(), len(context)))")])
    openai_server.set_responder(script)
    res = RLM(root, sub_model=sub, recursive=False, environment="subprocess").query("q", context="abcd")
    assert res.answer == (False, 4)
