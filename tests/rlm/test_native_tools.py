"""Native tool calls: the REPL as one `run_python_code` tool where the server supports it, fenced code otherwise."""

from __future__ import annotations

from typing import Any

import pytest

from nbmagic.events import EventRecorder, Notice
from nbmagic.llm.specs import load_model
from nbmagic.rlm.agent import RLM
from nbmagic.rlm.native import RUN_PYTHON_TOOL, can_offer
from nbmagic.testing.openai_server import OpenAICompatServer, Reply
from nbmagic.testing.rlm_scripts import ScriptedRoot, code, tool_code


def test_code_runs_from_tool_calls_and_results_go_back_as_tool_messages(
    openai_server: OpenAICompatServer, models: Any
) -> None:
    root, sub = models
    script = ScriptedRoot([tool_code("x = len(context)\nprint(x)", "Counting."), tool_code("submit(x * 2)")])
    openai_server.set_responder(script)
    res = RLM(root, sub_model=sub).query("q", context="abcd")
    assert res.answer == 8 and res.computed
    assert [t["protocol"] for t in res.trajectory] == ["tool", "tool"]
    assert res.trajectory[0]["code"] == "x = len(context)\nprint(x)" and res.trajectory[0]["output"] == "4\n"
    first, second = script.root_requests
    assert first["tools"][0]["function"]["name"] == "run_python_code" and first["tool_choice"] == "auto"
    assert "run_python_code tool" in first["messages"][0]["content"]
    call, result = second["messages"][2], second["messages"][3]
    assert call["role"] == "assistant" and call["content"] == "Counting."
    assert call["tool_calls"][0]["function"]["arguments"] == '{"code": "x = len(context)\\nprint(x)"}'
    assert result["role"] == "tool" and result["tool_call_id"] == call["tool_calls"][0]["id"]
    assert "REPL output of turn 1/20" in result["content"] and "4" in result["content"]


def test_fenced_code_still_works_when_tools_are_offered(openai_server: OpenAICompatServer, models: Any) -> None:
    root, sub = models
    script = ScriptedRoot([code("y = 3"), tool_code("submit(y)")])
    openai_server.set_responder(script)
    res = RLM(root, sub_model=sub).query("q")
    assert res.answer == 3 and [t["protocol"] for t in res.trajectory] == ["fenced", "tool"]


def test_a_server_without_function_calling_falls_back_to_fenced_code() -> None:
    with OpenAICompatServer(models=["test-model"], reject_tools=True) as srv:
        root = load_model(f"openai-compat:test-model@{srv.url}", max_retries=0)
        script = ScriptedRoot([code("z = 5"), code("submit(z + 1)")])
        srv.set_responder(script)
        rec = EventRecorder()
        res = RLM(root, on_event=rec).query("q")
        assert res.answer == 6
        bodies = srv.chat_requests()
        assert "tools" in bodies[0] and all("tools" not in b for b in bodies[1:])  # tried once, then never
        assert "run_python_code" not in bodies[1]["messages"][0]["content"]
        assert any("no native tool calls" in n.message and "```python" in n.message for n in rec.of(Notice))
        assert res.usage["test-model"].calls == 2  # the refused try is not a model call
        root.close()


def test_fallback_mid_run_keeps_earlier_calls_as_code_blocks(openai_server: OpenAICompatServer, models: Any) -> None:
    root, sub = models
    seen: list[dict[str, Any]] = []

    def respond(request: dict[str, Any]) -> str | Reply:
        seen.append(request)
        return tool_code("w = 7") if len(seen) == 1 else code("submit(w)")

    openai_server.set_responder(respond)
    run = RLM(root, sub_model=sub).start("q")
    run.step()
    openai_server.reject_tools = True  # the server stops accepting tools (a model swap behind a proxy, say)
    run.step()
    assert run.result is not None and run.result.answer == 7
    text_turn = seen[-1]["messages"][2]
    assert text_turn["role"] == "assistant" and "```python\nw = 7\n```" in text_turn["content"]
    assert all(m["role"] != "tool" for m in seen[-1]["messages"])


def test_native_tools_off(openai_server: OpenAICompatServer, models: Any) -> None:
    root, sub = models
    openai_server.set_responder(ScriptedRoot([code("submit(1)")]))
    assert RLM(root, sub_model=sub, native_tools=False).query("q").answer == 1
    assert all("tools" not in b for b in openai_server.chat_requests())
    assert can_offer(root)


@pytest.mark.real_model
def test_in_process_backends_use_fenced_code(embedded_gguf_model: Any) -> None:
    assert not can_offer(embedded_gguf_model)
    assert RLM(embedded_gguf_model).start("q").native is False


def test_the_tool_call_keeps_the_models_default_params(openai_server: OpenAICompatServer) -> None:
    root = load_model(f"openai-compat:test-model@{openai_server.url}", max_retries=0,
                      default_params={"temperature": 0.3, "max_tokens": 77})
    openai_server.set_responder(ScriptedRoot([tool_code("submit(1)")]))
    assert RLM(root, native_tools=True).query("q").answer == 1
    body = openai_server.chat_requests()[0]
    assert body["tools"] and body["temperature"] == 0.3 and body["max_tokens"] == 77
    RLM(root, temperature=0.0, root_max_tokens=5).query("q")
    body = openai_server.chat_requests()[-1]
    assert body["temperature"] == 0.0 and body["max_tokens"] == 5  # the RLM's own settings win
    root.close()


@pytest.mark.parametrize("status", [429, 503])
def test_a_transient_failure_on_the_first_tool_turn_does_not_switch_to_fenced_code(status: int) -> None:
    """One 429 (or 5xx) on the first turn, retried by the SDK: the run keeps the tool protocol."""
    with OpenAICompatServer(models=["test-model"]) as srv:
        root = load_model(f"openai-compat:test-model@{srv.url}", max_retries=1, timeout=30)
        srv.set_responder(ScriptedRoot([tool_code("x = 2"), tool_code("submit(x + 1)")]))
        srv.fail_next(status, headers={"retry-after-ms": "10"})
        rec = EventRecorder()
        res = RLM(root, on_event=rec).query("q")
        assert res.answer == 3 and [t["protocol"] for t in res.trajectory] == ["tool", "tool"]
        bodies = srv.chat_requests()
        assert len(bodies) == 3 and all("tools" in b for b in bodies)  # the failed try, its retry, turn 2
        assert not any("no native tool calls" in n.message for n in rec.of(Notice))
        assert res.usage["test-model"].calls == 2 and root.usage.calls == 2  # counted through ChatModel
        root.close()


def test_a_transport_failure_is_retried_as_often_as_the_message_says() -> None:
    """max_retries=2 and the server keeps failing: 3 requests (the SDK's retries only), one clear error."""
    from nbmagic.errors import RateLimitError

    with OpenAICompatServer(models=["test-model"]) as srv:
        root = load_model(f"openai-compat:test-model@{srv.url}", max_retries=2, timeout=30)
        srv.fail_next(429, times=10, headers={"retry-after-ms": "10"})
        with pytest.raises(RateLimitError, match="after 2 retries") as info:
            RLM(root).query("q")
        assert len(srv.chat_requests()) == 3  # not 6: no second round of retries through fenced code
        assert info.value.partial is not None and info.value.partial.complete is False
        root.close()


def test_tools_unsupported_is_its_own_error_from_the_model() -> None:
    from nbmagic.llm.base import ToolsUnsupportedError

    with OpenAICompatServer(models=["test-model"], reject_tools=True) as srv:
        root = load_model(f"openai-compat:test-model@{srv.url}", max_retries=0)
        with pytest.raises(ToolsUnsupportedError, match="refused tool calls: This model does not support tools"):
            root.chat_tools([{"role": "user", "content": "hi"}], [RUN_PYTHON_TOOL])
        assert root.usage.calls == 0
        root.close()
