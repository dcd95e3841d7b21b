"""The RLM loop end to end against the loopback server, with scripted root models."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from nbmagic.errors import BudgetExceededError, ConfigError, MalformedOutputError, RunInterrupted
from nbmagic.events import (
    EventRecorder,
    Failed,
    Finished,
    ModelCall,
    RlmIteration,
    RunStarted,
    SubCall,
)
from nbmagic.rlm.agent import RLM, extract_code
from nbmagic.rlm.trajectory import read_trajectory
from nbmagic.testing.openai_server import OpenAICompatServer, Reply
from nbmagic.testing.rlm_scripts import ScriptedRoot, code


def last_user(request: dict[str, Any]) -> str:
    return [m for m in request["messages"] if m["role"] == "user"][-1]["content"]


def test_extract_code_variants() -> None:
    assert extract_code("hi\n```python\nx = 1\n```\ntext\n```py\ny = 2\n```") == "x = 1\n\ny = 2"
    assert extract_code("```python\nsubmit(5)") == "submit(5)"  # unclosed fence
    assert extract_code("```\nprint(1)\n```") == "print(1)"  # bare block that parses
    assert extract_code("```\nThe answer is 42.\n```") == ""
    assert extract_code("no code at all") == ""


def test_submit_flow_root_sees_only_a_summary(openai_server: OpenAICompatServer, models: Any) -> None:
    root, sub = models
    script = ScriptedRoot([
        code("print(len(context))\nprint(context.count('needle'))"),
        code("hits = [i for i, line in enumerate(context.splitlines()) if 'needle' in line]\nsubmit(hits[0])"),
    ])
    openai_server.set_responder(script)
    text = "hay\n" * 50_000 + "needle\n" + "hay\n" * 10
    res = RLM(root, sub_model=sub).query("On which line is the needle?", context=text)
    assert res.answer == 50_000 and res.complete and not res.final_step
    assert res.iterations == 2 and len(res.trajectory) == 2
    first = script.root_requests[0]
    prompt_chars = sum(len(m["content"]) for m in first["messages"])
    assert prompt_chars < 6000 and f"{len(text):,} chars" in first["messages"][1]["content"]
    assert "REPL output of turn 1/20" in last_user(script.root_requests[1])
    assert str(len(text)) in last_user(script.root_requests[1])
    assert res.usage["test-model"].calls == 2


def test_no_code_and_empty_replies_are_answered_and_count(openai_server: OpenAICompatServer, models: Any) -> None:
    root, sub = models
    script = ScriptedRoot(["I think it is 42.", "", "```python\nsubmit(42)"])
    openai_server.set_responder(script)
    res = RLM(root, sub_model=sub).query("What is the answer?")
    assert res.answer == 42 and res.iterations == 3
    assert "no ```python code block" in last_user(script.root_requests[1])
    assert "Your reply was empty" in last_user(script.root_requests[2])
    assert [t["kind"] for t in res.trajectory] == ["no_code", "no_code", "code"]


def test_iteration_cap_triggers_final_step(openai_server: OpenAICompatServer, models: Any) -> None:
    root, sub = models
    script = ScriptedRoot([code("print('thinking')"), code("print('still thinking')"), "The answer is 7"])
    openai_server.set_responder(script)
    res = RLM(root, sub_model=sub, max_iterations=2).query("What?")
    assert res.answer == "The answer is 7" and res.final_step and res.iterations == 2
    assert "You have used all 2 turns" in last_user(script.root_requests[2])
    assert res.trajectory[-1]["kind"] == "final"


def test_final_step_with_schema_retries_once_then_fails_clearly(
    openai_server: OpenAICompatServer, models: Any
) -> None:
    root, sub = models
    schema = {"type": "object", "properties": {"n": {"type": "integer"}}, "required": ["n"]}
    openai_server.set_responder(ScriptedRoot([code("print(1)"), "not json", '```json\n{"n": 2}\n```']))
    res = RLM(root, sub_model=sub, max_iterations=1).query("q", schema=schema)
    assert res.answer == {"n": 2} and res.final_step
    openai_server.set_responder(ScriptedRoot([code("print(1)"), "still not json"]))
    with pytest.raises(MalformedOutputError) as info:
        RLM(root, sub_model=sub, max_iterations=1).query("q", schema=schema)
    assert info.value.partial.complete is False and len(info.value.partial.trajectory) == 3


def test_output_truncated_for_the_model(openai_server: OpenAICompatServer, models: Any) -> None:
    root, sub = models
    script = ScriptedRoot([code("print('A' * 50_000 + 'END')"), code("submit('done')")])
    openai_server.set_responder(script)
    RLM(root, sub_model=sub, max_output_chars=1000).query("q")
    fed = last_user(script.root_requests[1])
    assert "… (truncated, 49004 chars omitted) …" in fed and "END" in fed and len(fed) < 1500


def test_llm_call_budget_returns_error_strings(openai_server: OpenAICompatServer, models: Any) -> None:
    root, sub = models
    script = ScriptedRoot([
        code("rs = [llm_query(f'q{i}') for i in range(5)]\nprint(rs)"),
        code("submit(rs)"),
    ])
    openai_server.set_responder(script)
    res = RLM(root, sub_model=sub, max_llm_calls=3).query("q")
    assert res.answer[:3] == ["sub: q0", "sub: q1", "sub: q2"]
    assert all(r.startswith("[error] llm_query: the sub-call budget is spent") for r in res.answer[3:])
    assert res.llm_calls == 3 and len(script.sub_requests) == 3
    assert "Sub-calls left: 0" in last_user(script.root_requests[1])
    assert res.usage["sub-model"].calls == 3 and res.usage["test-model"].calls == 2


def test_calls_refused_by_the_token_budget_are_not_counted(openai_server: OpenAICompatServer, models: Any) -> None:
    from nbmagic.rlm.tools import SpendingBudget, Toolbox

    _, sub = models
    box = Toolbox(sub_model=sub, budget=SpendingBudget(max_llm_calls=10, max_tokens=1))
    assert box.llm_query("first")[0] == "echo: first"
    refused = [box.llm_query("second")[0], *box.llm_query_batched(["a", "b"])[0], box.rlm_query("c")[0]]
    assert all(r.startswith("[error]") and "token budget" in r for r in refused)
    assert box.budget.calls == 1 and box.budget.calls_left == 9
    assert len(openai_server.chat_requests()) == 1


def test_batched_is_concurrent_bounded_and_isolates_failures(openai_server: OpenAICompatServer, models: Any) -> None:
    root, sub = models

    def sub_reply(prompt: str) -> Reply:
        if "FAIL" in prompt:
            return Reply(status=500, error_message="boom")
        return Reply(text=f"ok {prompt}", delay=0.15)

    script = ScriptedRoot(
        [code("out = llm_query_batched([f'p{i}' if i % 4 else f'FAIL{i}' for i in range(12)])\nsubmit(out)")],
        sub=sub_reply,
    )
    openai_server.set_responder(script)
    res = RLM(root, sub_model=sub, max_concurrency=4).query("q")
    assert len(res.answer) == 12
    for i, r in enumerate(res.answer):
        if i % 4:
            assert r == f"ok p{i}"
        else:
            assert r.startswith("[error] llm_query_batched failed:") and "500" in r
    assert 2 <= openai_server.max_in_flight <= 4
    subs = res.trajectory[0]["sub_calls"]
    assert len(subs) == 12 and sum(not s["ok"] for s in subs) == 3


def test_batch_stopped_by_the_turn_limit_counts_only_calls_made(openai_server: OpenAICompatServer, models: Any) -> None:
    root, sub = models
    script = ScriptedRoot([code("llm_query_batched([f'p{i}' for i in range(8)])"), code("submit(1)")],
                          sub=lambda p: Reply(text="ok", delay=0.4))
    openai_server.set_responder(script)
    res = RLM(root, sub_model=sub, max_concurrency=1, turn_timeout=0.6).query("q")
    assert res.trajectory[0]["timed_out"] and res.answer == 1
    assert res.llm_calls < 8 and f"Sub-calls left: {50 - res.llm_calls}" in last_user(script.root_requests[1])


def test_rlm_query_spawns_a_child_until_max_depth(openai_server: OpenAICompatServer, models: Any) -> None:
    root, sub = models
    script = ScriptedRoot({
        "sum these": [code("inner = rlm_query('deeper please', context='abc')\nsubmit((sum(context), inner))")],
        "": [code("submit(rlm_query('sum these', context=[1, 2, 3]))")],
    })
    openai_server.set_responder(script)
    rec = EventRecorder()
    res = RLM(root, sub_model=sub, max_depth=1, on_event=rec).query("top question")
    total, inner = res.answer
    assert total == 6
    assert inner == "sub: deeper please\n\nabc"  # depth 1 is the limit: plain llm_query
    assert {e.depth for e in rec.of(RlmIteration)} == {0, 1}
    assert len(rec.of(RunStarted)) == 1 and len(rec.of(Finished)) == 1
    assert res.llm_calls == 2  # the child RLM and its llm_query
    assert res.trajectory[0]["sub_calls"][0]["helper"] == "rlm_query"


def test_renderer_output_never_reaches_the_model(
    openai_server: OpenAICompatServer, models: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    root, sub = models
    script = ScriptedRoot([code("print(llm_query('a'))"), code("submit(1)")])
    openai_server.set_responder(script)

    def printing_renderer(event: Any) -> None:
        print(f"RENDERED {type(event).__name__}")

    RLM(root, sub_model=sub, on_event=printing_renderer).query("q")
    fed = last_user(script.root_requests[1])
    assert "RENDERED" not in fed and "sub: a" in fed
    assert "RENDERED SubCall" in capsys.readouterr().out


def test_schema_validation_lets_the_model_retry(openai_server: OpenAICompatServer, models: Any) -> None:
    root, sub = models
    schema = {"type": "object", "properties": {"n": {"type": "integer"}}, "required": ["n"]}
    script = ScriptedRoot([code("submit({'n': 'three'})"), code("submit('{\"n\": 3}')")])
    openai_server.set_responder(script)
    res = RLM(root, sub_model=sub).query("count", schema=schema)
    assert res.answer == {"n": 3} and res.iterations == 2
    fed = last_user(script.root_requests[1])
    assert "submit() rejected the answer" in fed and "'three' is not of type 'integer'" in fed
    with pytest.raises(ConfigError, match="not a valid JSON schema"):
        RLM(root, sub_model=sub).query("q", schema={"type": "no-such-type"})


def test_clobbered_helpers_come_back_and_model_is_told(openai_server: OpenAICompatServer, models: Any) -> None:
    root, sub = models
    script = ScriptedRoot([
        code("def evil():\n    global llm_query\n    llm_query = lambda p: 'fake'\nevil()"),
        code("submit(llm_query('real?'))"),
    ])
    openai_server.set_responder(script)
    res = RLM(root, sub_model=sub).query("q")
    assert res.answer == "sub: real?"
    assert "llm_query is an RLM helper" in last_user(script.root_requests[1])


def test_user_namespace_untouched_and_export_is_opt_in(openai_server: OpenAICompatServer, models: Any) -> None:
    root, sub = models
    ns: dict[str, Any] = {"sales": [5, 6], "x": 1}
    script = ScriptedRoot([code("x = 100\nsales_total = sum(sales)\nsales.__class__\nsubmit(sales_total)")])
    openai_server.set_responder(script)
    res = RLM(root, sub_model=sub, namespace=ns).query("total?", context="sales")
    assert res.answer == 11 and ns == {"sales": [5, 6], "x": 1}
    res = RLM(root, sub_model=sub, namespace=ns).query("total?", context="sales", export=True)
    assert ns["sales_total"] == 11 and ns["x"] == 1  # new names exported; existing ones never clobbered
    assert res.exported == ["sales_total"] and any("'x' already exists" in n for n in res.notes)
    with pytest.raises(ConfigError, match="Did you mean sales"):
        RLM(root, sub_model=sub, namespace=ns).query("total?", context="sale")


def test_token_budget_raises_with_partial(openai_server: OpenAICompatServer, models: Any) -> None:
    root, sub = models
    openai_server.set_responder(ScriptedRoot([code("print('step')")]))
    rec = EventRecorder()
    with pytest.raises(BudgetExceededError) as info:
        RLM(root, sub_model=sub, max_tokens=50, on_event=rec).query("q")
    partial = info.value.partial
    assert partial.complete is False and partial.iterations == 1 and partial.trajectory[0]["output"] == "step\n"
    assert "token budget" in info.value.message
    failed = rec.of(Failed)
    assert len(failed) == 1 and failed[0].partial is partial and not rec.of(Finished)


def test_interrupt_keeps_the_partial_result(openai_server: OpenAICompatServer, models: Any) -> None:
    root, sub = models
    openai_server.set_responder(ScriptedRoot([code("x = 1"), code("submit(x)\nraise KeyboardInterrupt")]))
    with pytest.raises(RunInterrupted) as info:
        RLM(root, sub_model=sub).query("q")
    assert info.value.partial.iterations == 2 and info.value.partial.answer == 1


def test_wall_clock_timeout_stops_a_hanging_turn(openai_server: OpenAICompatServer, models: Any) -> None:
    root, sub = models
    openai_server.set_responder(ScriptedRoot([code("import time\nfound = 'partial'\ntime.sleep(30)")]))
    with pytest.raises(BudgetExceededError) as info:
        RLM(root, sub_model=sub, timeout=1.0).query("q")
    partial = info.value.partial
    assert partial.trajectory[0]["timed_out"] and "ran out of time" in info.value.message


def test_trajectory_jsonl_and_events_never_carry_the_key(openai_server: OpenAICompatServer, tmp_path: Path) -> None:
    from nbmagic.llm.specs import load_model

    secret = "loopback-secret-778899"
    root = load_model(f"openai-compat:test-model@{openai_server.url}", api_key=secret, max_retries=0)
    script = ScriptedRoot([
        code(f"print('the key is {secret}')\nprint(llm_query('hi'))"),
        code("submit('ok')"),
    ])
    openai_server.set_responder(script)
    path = tmp_path / "traj.jsonl"
    rec = EventRecorder()
    res = RLM(root, trajectory_path=str(path), on_event=rec).query("q", context="abc")
    lines = read_trajectory(path)
    assert [ln["type"] for ln in lines] == ["metadata", "iteration", "iteration", "result"]
    assert lines[-1]["answer"] == "ok" and lines[-1]["computed"] is True and lines[-1]["usage"]["test-model"]["calls"] == 3  # 2 root turns + llm_query (no sub-model)
    assert lines[0]["question"] == "q" and "3 chars" in lines[0]["contexts"]
    assert lines[1]["code"].startswith("print(") and lines[1]["sub_calls"][0]["prompt"] == "hi"
    assert secret not in path.read_text() and "***" in path.read_text()
    assert res.answer == "ok"
    kinds = rec.kinds()
    assert kinds[0] == "RunStarted" and kinds[-1] == "Finished"
    assert len(rec.of(RlmIteration)) == 2 and len(rec.of(SubCall)) == 1
    assert {e.agent for e in rec.of(ModelCall)} == {"root@0", "sub@0"}
    assert json.loads(path.read_text().splitlines()[1])["iteration"] == 1
    # nor does the model, the in-memory trajectory or the renderer see it
    assert "the key is ***" in last_user(script.root_requests[1])
    assert secret not in repr(res.trajectory) and secret not in rec.of(RlmIteration)[0].output
    root.close()


@pytest.mark.parametrize("bad", [{"timeout": "10"}, {"max_tokens": "x"}, {"turn_timeout": "3"}, {"max_depth": "2"},
                                 {"max_llm_calls": -1}, {"timeout": -1}, {"timeout": float("nan")},
                                 {"max_concurrency": 0}, {"max_depth": True}])
def test_bad_limits_are_config_errors(models: Any, bad: dict[str, Any]) -> None:
    root, sub = models
    with pytest.raises(ConfigError, match=next(iter(bad))):
        RLM(root, sub_model=sub, **bad)


def test_bad_namespace_and_trajectory_path_are_config_errors(models: Any) -> None:
    root, sub = models
    with pytest.raises(ConfigError, match="namespace= must be a dict"):
        RLM(root, sub_model=sub, namespace=["x"])
    with pytest.raises(ConfigError, match="trajectory_path must be a string, not 5"):
        RLM(root, sub_model=sub, trajectory_path=5).query("q")


def test_a_variable_named_like_a_helper_is_refused_with_one_message(openai_server: OpenAICompatServer,
                                                                      models: Any) -> None:
    """It used to be bound as ``context`` only, and the sub-agent helpers were missing from the list:
    ``--context adopt`` was accepted, then silently replaced by the helper."""
    root, sub = models
    for name in ("llm_query", "adopt", "spawn_agents", "quit"):
        rlm = RLM(root, sub_model=sub, namespace={name: "user text"})
        for context in (name, {name: "user text"}):
            with pytest.raises(ConfigError, match=f"--context {name}: '{name}' is the name of an RLM helper"):
                rlm.query("q", context=context)
    assert openai_server.chat_requests() == []  # refused before anything is sent


def test_subprocess_environment_end_to_end(openai_server: OpenAICompatServer, models: Any) -> None:
    root, sub = models
    ns = {"docs": ["alpha", "beta", "gamma"]}
    script = ScriptedRoot([
        code("import os\nos.environ['LEAK'] = '1'\nrs = llm_query_batched([d.upper() for d in docs])\nprint(rs)"),
        code("while True:\n    pass"),
        code("submit({'first': rs[0], 'n': len(context)})"),
    ])
    openai_server.set_responder(script)
    res = RLM(root, sub_model=sub, environment="subprocess", namespace=ns, turn_timeout=1.0).query(
        "q", context="docs", schema={"type": "object", "required": ["first", "n"]})
    assert res.answer == {"first": "sub: ALPHA", "n": 3}
    assert res.trajectory[1]["timed_out"] and "LEAK" not in __import__("os").environ
    assert ns == {"docs": ["alpha", "beta", "gamma"]}
