"""The reference RLM's controls: max_errors, a cost budget from a price table, history compaction."""

from __future__ import annotations

from typing import Any

import pytest

from nbmagic.errors import BudgetExceededError, ConfigError
from nbmagic.events import EventRecorder, Notice
from nbmagic.llm.base import Usage
from nbmagic.rlm import pricing
from nbmagic.rlm.agent import RLM
from nbmagic.rlm.prompts import ROOT_MARKER
from nbmagic.testing.openai_server import OpenAICompatServer, last_user_message
from nbmagic.testing.rlm_scripts import ScriptedRoot, code, is_root


def test_max_errors_stops_after_failing_turns_in_a_row(openai_server: OpenAICompatServer, models: Any) -> None:
    root, sub = models
    openai_server.set_responder(ScriptedRoot([code("x = 1"), code("1 / 0"), "no code here", code("print(x)")]))
    with pytest.raises(BudgetExceededError, match=r"2 failing turns in a row \(max_errors=2; last: no code") as info:
        RLM(root, sub_model=sub, max_errors=2).query("q")
    assert info.value.partial.iterations == 3 and info.value.partial.complete is False
    # a turn that works resets the count
    openai_server.set_responder(ScriptedRoot([code("1 / 0"), code("x = 1"), code("1 / 0"), code("submit(x)")]))
    assert RLM(root, sub_model=sub, max_errors=2).query("q").answer == 1
    with pytest.raises(ConfigError, match="max_errors"):
        RLM(root, max_errors=-1)  # 0 is "no limit", as for every limit


def test_price_table_lookup_and_registration(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(pricing, "PRICES", dict(pricing.PRICES))
    assert pricing.price_for("gpt-4o-mini-2024-07-18") == pricing.PRICES["gpt-4o-mini"]  # longest prefix
    assert pricing.price_for("gpt-4o-2024-08-06") == pricing.PRICES["gpt-4o"]
    assert pricing.price_for("openai-compat:gpt-4o-mini@http://h/v1") == pricing.PRICES["gpt-4o-mini"]
    assert pricing.price_for("my-local") is None
    pricing.register_price("my-local", 0, 0)
    assert pricing.price_for("my-local") == (0.0, 0.0)
    usage = {"gpt-4o": Usage(1_000_000, 100_000, 1), "my-local": Usage(5, 5, 1)}
    assert pricing.cost_usd(usage) == pytest.approx(2.50 + 1.00)
    assert pricing.cost_usd({"other": Usage(1, 1, 1)}) is None
    with pytest.raises(ConfigError, match="must be"):
        pricing.register_price("x", -1, 0)


def test_cost_budget_stops_the_run_with_the_partial(openai_server: OpenAICompatServer, models: Any) -> None:
    root, sub = models
    openai_server.set_responder(ScriptedRoot([code("print(llm_query('a'))")]))
    prices = {"test-model": (1000.0, 1000.0), "sub-model": (1000.0, 1000.0)}  # $0.001 a token
    with pytest.raises(BudgetExceededError, match=r"cost budget \(\$[0-9.]+ of \$0\.5\)") as info:
        RLM(root, sub_model=sub, max_cost_usd=0.5, prices=prices).query("q")
    partial = info.value.partial
    assert partial.cost_usd is not None and partial.cost_usd >= 0.5 and partial.iterations >= 1
    tokens = sum(u.total_tokens for u in partial.usage.values())
    assert partial.cost_usd == pytest.approx(tokens / 1000)


def test_cost_budget_refuses_unpriced_models_before_any_call(
    openai_server: OpenAICompatServer, models: Any
) -> None:
    root, sub = models
    with pytest.raises(ConfigError, match="max_cost_usd needs a price for sub-model, test-model"):
        RLM(root, sub_model=sub, max_cost_usd=1.0).query("q")
    assert openai_server.chat_requests() == []
    openai_server.set_responder(ScriptedRoot([code("submit(1)")]))
    res = RLM(root, sub_model=sub, max_cost_usd=1.0, prices={"test-model": (0, 0), "sub-model": (0, 0)}).query("q")
    assert res.answer == 1 and res.cost_usd == 0.0


def test_history_is_compacted_near_the_window_and_variables_kept(
    openai_server: OpenAICompatServer, models: Any
) -> None:
    root, sub = models
    seen: list[dict[str, Any]] = []
    turns = [code("x = 41\nprint('A' * 4000)"), code("y = [1, 2]\nprint('B' * 4000)"), code("print('C' * 4000)"),
             code("submit(x + len(y))")]

    def respond(request: dict[str, Any]) -> str:
        assert is_root(request)
        if "Write that summary now" in last_user_message(request):
            return "SUMMARY: x holds 41 and y a list; nothing else learned."
        seen.append(request)
        return turns[len(seen) - 1]

    openai_server.set_responder(respond)
    rec = EventRecorder()
    window = 4600  # the system prompt (~1,000 tokens with the helpers' worked examples) + three long outputs
    res = RLM(root, sub_model=sub, context_window=window, on_event=rec).query("q")
    assert res.answer == 43
    assert [t["kind"] for t in res.trajectory] == ["code", "code", "code", "compaction", "code"]
    compacted = res.trajectory[3]
    assert compacted["dropped_messages"] == 4 and compacted["tokens_before"] >= 0.8 * window
    after = seen[3]["messages"]
    assert after[0]["content"].startswith(ROOT_MARKER) and after[1]["content"].startswith("Question: q")
    assert "SUMMARY: x holds 41" in after[2]["content"] and after[2]["role"] == "assistant"
    assert "x (int)" in after[3]["content"] and "y (list)" in after[3]["content"]
    assert "AAAA" not in str(after) and "CCCC" in after[-1]["content"]  # old output gone, the last kept
    assert len(after) == 6
    assert any("compacted" in n.message for n in rec.of(Notice))
    with pytest.raises(ConfigError, match="compact_threshold"):
        RLM(root, compact_threshold=1.5)


def test_one_turn_too_long_for_the_window_is_cut_to_fit(openai_server: OpenAICompatServer, models: Any) -> None:
    """A small window (the embedded model's 8192 tokens) and one huge REPL output: no compaction can
    help (there are no old turns yet), so the output is cut, head and tail kept, and the run goes on."""
    root, sub = models
    seen: list[dict[str, Any]] = []
    turns = [code("print('A' * 30000 + 'TAIL-KEPT')"), code("submit(7)")]

    def respond(request: dict[str, Any]) -> str:
        seen.append(request)
        return turns[len(seen) - 1]

    openai_server.set_responder(respond)
    res = RLM(root, sub_model=sub, context_window=2048, max_output_chars=40_000).query("q")
    assert res.answer == 7 and len(seen) == 2
    second = seen[1]["messages"]
    assert sum(root.count_tokens(m["content"]) for m in second) < 2048  # it fits, with room for the reply
    assert "TAIL-KEPT" in second[-1]["content"] and "truncated" in second[-1]["content"]
    assert second[0]["content"].startswith(ROOT_MARKER)  # the system prompt is whole
