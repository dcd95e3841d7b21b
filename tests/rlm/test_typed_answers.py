"""Typed answers: a JSON schema (dict or text) or a pydantic model, honoured by submit and the final step."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import BaseModel

from nbmagic.errors import ConfigError
from nbmagic.rlm.agent import RLM
from nbmagic.rlm.schemas import resolve_schema
from nbmagic.testing.openai_server import OpenAICompatServer
from nbmagic.testing.rlm_scripts import ScriptedRoot, code


class Person(BaseModel):
    name: str
    age: int


def test_resolve_schema_forms() -> None:
    assert resolve_schema('{"type": "integer"}') == ({"type": "integer"}, None)
    js, typed = resolve_schema(Person)
    assert typed is Person and js["required"] == ["name", "age"]
    assert resolve_schema("Person", {"Person": Person})[1] is Person
    assert resolve_schema("S", {"S": {"type": "string"}}) == ({"type": "string"}, None)
    for bad, message in [("{not json", "not valid JSON"), ("Nobody", "no variable named 'Nobody'"),
                         ("n", "is a int"), ('{"type": "nope"}', "not a valid JSON schema"), (5, "cannot use 5")]:
        with pytest.raises(ConfigError, match=message):
            resolve_schema(bad, {"n": 3})


def test_pydantic_model_answer_comes_back_typed(openai_server: OpenAICompatServer, models: Any) -> None:
    root, sub = models
    script = ScriptedRoot([code("submit({'name': 'Ada', 'age': 'old'})"), code("submit(name='Ada', age=36)")])
    openai_server.set_responder(script)
    res = RLM(root, sub_model=sub).query("who?", schema=Person)
    assert isinstance(res.answer, Person) and res.answer == Person(name="Ada", age=36)
    assert "'old' is not of type 'integer'" in script.root_requests[1]["messages"][-1]["content"]
    assert '"age"' in script.root_requests[0]["messages"][0]["content"]  # the schema is in the prompt


def test_final_step_honours_the_schema_when_turns_run_out(openai_server: OpenAICompatServer, models: Any) -> None:
    root, sub = models
    script = ScriptedRoot([code("print('looking')"), '```json\n{"name": "Bob", "age": 7}\n```'])
    openai_server.set_responder(script)
    res = RLM(root, sub_model=sub, max_iterations=1, namespace={"Person": Person}).query("who?", schema="Person")
    assert res.final_step and res.answer == Person(name="Bob", age=7)
    final_ask = script.root_requests[1]["messages"][-1]["content"]
    assert "You have used all 1 turns" in final_ask and '"required"' in final_ask  # the schema is repeated there
