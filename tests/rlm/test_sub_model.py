"""The configured cheaper sub-model is used by default and shown with its own token counts."""

from __future__ import annotations

from typing import Any

from nbmagic.config import settings
from nbmagic.events import EventRecorder
from nbmagic.rlm.agent import RLM
from nbmagic.testing.openai_server import OpenAICompatServer
from nbmagic.testing.rlm_scripts import ScriptedRoot, code
from nbmagic.ui.state import RunState
from nbmagic.ui.summary import summary_text


def test_configured_sub_model_is_the_default_and_counted_apart(
    openai_server: OpenAICompatServer, models: Any
) -> None:
    root, _ = models
    settings.set("sub_model", f"openai-compat:sub-model@{openai_server.url}", "test")
    openai_server.set_responder(ScriptedRoot([code("a = llm_query_batched(['x', 'y', 'z'])\nsubmit(a)")]))
    rec = EventRecorder()
    res = RLM(root, on_event=rec).query("q")  # no sub_model= given
    assert res.answer == ["sub: x", "sub: y", "sub: z"]
    bodies = openai_server.chat_requests()
    assert [b["model"] for b in bodies].count("sub-model") == 3 and [b["model"] for b in bodies].count("test-model") == 1
    assert res.usage["sub-model"].calls == 3 and res.usage["test-model"].calls == 1
    state = RunState()
    for e in rec.events:
        state.apply(e)
    sub_tokens = res.usage["sub-model"].total_tokens
    root_tokens = res.usage["test-model"].total_tokens
    assert state.model_tokens == {"test-model": [root_tokens, 1], "sub-model": [sub_tokens, 3]}
    line = summary_text(state)
    assert f"test-model {root_tokens:,} tok (1 call)" in line and f"sub-model {sub_tokens:,} tok (3 calls)" in line


def test_one_model_shows_no_breakdown(openai_server: OpenAICompatServer, models: Any) -> None:
    root, _ = models
    openai_server.set_responder(ScriptedRoot([code("submit(llm_query('x'))")]))
    rec = EventRecorder()
    RLM(root, on_event=rec).query("q")
    state = RunState()
    for e in rec.events:
        state.apply(e)
    assert state.models_line() == "" and "tok (" not in summary_text(state)
