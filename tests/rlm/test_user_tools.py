"""User tools: plain (sync or async) callables exposed by name in both REPLs, listed in the prompt."""

from __future__ import annotations

import asyncio
import os
from typing import Any

import pytest

from nbmagic.errors import ConfigError
from nbmagic.rlm.agent import RLM
from nbmagic.rlm.tools import describe_tool, make_tools
from nbmagic.testing.openai_server import OpenAICompatServer
from nbmagic.testing.rlm_scripts import ScriptedRoot, code

CALLS: list[tuple[str, int]] = []


def lookup_price(sku: str, qty: int = 1) -> float:
    """Price of ``qty`` units of a product from the catalogue.

    More text the prompt must not carry.
    """
    CALLS.append((sku, os.getpid()))
    return {"apple": 0.5, "pear": 0.75}[sku] * qty


async def fetch_rate(currency: str) -> float:
    """Exchange rate to USD (async)."""
    await asyncio.sleep(0.01)
    return {"EUR": 1.1}[currency]


def test_describe_tool_gives_signature_and_first_doc_line() -> None:
    assert describe_tool("lookup_price", lookup_price) == (
        "lookup_price(sku: str, qty: int = 1) -> float: Price of ``qty`` units of a product from the catalogue."
    )
    assert describe_tool("fetch_rate", fetch_rate) == "fetch_rate(currency: str) -> float: Exchange rate to USD (async)."


@pytest.mark.parametrize("environment", ["kernel", "subprocess"])
def test_tools_sync_and_async_in_both_environments(
    openai_server: OpenAICompatServer, models: Any, environment: str
) -> None:
    root, sub = models
    CALLS.clear()
    script = ScriptedRoot([
        code("total = lookup_price('apple', qty=4) + lookup_price('pear')\nprint(total)"),
        code("try:\n    lookup_price('kiwi')\nexcept Exception as e:\n    print('failed:', type(e).__name__)\n"
             "submit(round(total * fetch_rate('EUR'), 3))"),
    ])
    openai_server.set_responder(script)
    res = RLM(root, sub_model=sub, tools=[lookup_price, fetch_rate], environment=environment).query("q")
    assert res.answer == round(2.75 * 1.1, 3)
    # the tool ran here, in the parent, also for the subprocess REPL (it called back)
    assert CALLS[:2] == [("apple", os.getpid()), ("pear", os.getpid())]
    system = script.root_requests[0]["messages"][0]["content"]
    assert "- lookup_price(sku: str, qty: int = 1) -> float: Price of ``qty`` units" in system
    assert "- fetch_rate(currency: str) -> float: Exchange rate to USD (async)." in system
    assert "More text the prompt must not carry" not in system
    calls = res.trajectory[0]["sub_calls"]
    assert [c["helper"] for c in calls] == ["lookup_price", "lookup_price"] and all(c["tool"] for c in calls)
    assert calls[0]["prompt"] == "lookup_price('apple', qty=4)" and calls[0]["response"] == "2.0"
    assert "failed:" in res.trajectory[1]["output"]
    assert res.llm_calls == 0  # tools are not sub-calls: they spend no LLM budget


def test_tools_cannot_be_reassigned_by_the_model(openai_server: OpenAICompatServer, models: Any) -> None:
    root, sub = models
    script = ScriptedRoot([code("lookup_price = None"), code("submit(lookup_price('apple'))")])
    openai_server.set_responder(script)
    res = RLM(root, sub_model=sub, tools={"lookup_price": lookup_price}).query("q")
    assert res.answer == 0.5 and "ReservedNameError" in res.trajectory[0]["output"]


def _private() -> None:
    pass


@pytest.mark.parametrize(
    ("tools", "message"),
    [
        ([_private], "starts with '_'"),
        ({"submit": lookup_price}, "taken by an RLM helper"),
        ({"llm_query": lookup_price}, "taken by an RLM helper"),
        ([lambda x: x], "not a Python identifier"),
        ({"price": 3}, "not a function"),
        ([lookup_price, lookup_price], "Two tools are named"),
        ("lookup_price", "must be a list of functions"),
    ],
)
def test_bad_tools_are_config_errors(tools: Any, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        make_tools(tools)
    with pytest.raises(ConfigError, match=message):
        RLM("openai-compat:x@http://127.0.0.1:9", tools=tools)


def test_a_context_named_like_a_tool_is_refused(models: Any) -> None:
    root, sub = models
    with pytest.raises(ConfigError, match="has the name of a tool"):
        RLM(root, sub_model=sub, tools=[lookup_price], namespace={"lookup_price": "data"}).query(
            "q", context="lookup_price")
