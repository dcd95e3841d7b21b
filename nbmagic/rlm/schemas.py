"""What ``schema=`` / ``--schema`` may be, turned into one JSON schema (and a type to build).

Accepted: a JSON schema as a dict; the same as a JSON string (``'{"type": "integer"}'``);
a pydantic model class (its ``model_json_schema()``; the answer comes back as an
instance); or, with a namespace, the *name* of a variable holding either (what the
magic passes for ``--schema Person``). The answer is checked against the JSON schema
in ``submit()`` and in the final step; the pydantic class then builds the typed value.
pydantic is only used when the user hands over one of its classes.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from nbmagic.errors import ConfigError, MalformedOutputError
from nbmagic.rlm.tools import validate_schema

_HOW = "give a JSON schema (a dict, or JSON text like '{\"type\": \"integer\"}') or a pydantic model class"


def _is_model_class(obj: Any) -> bool:
    return isinstance(obj, type) and callable(getattr(obj, "model_json_schema", None)) and callable(
        getattr(obj, "model_validate", None)
    )


def resolve_schema(schema: Any, namespace: Mapping[str, Any] | None = None) -> tuple[dict[str, Any] | None, Any]:
    """``(json_schema or None, model class or None)``; anything else is a :class:`ConfigError`."""
    if schema is None:
        return None, None
    if _is_model_class(schema):
        try:
            js = schema.model_json_schema()
        except Exception as exc:  # a model pydantic cannot describe (arbitrary types)
            raise ConfigError(f"schema: {schema.__name__} has no JSON schema ({type(exc).__name__}: {exc}).") from None
        return js, schema
    if isinstance(schema, Mapping):
        validate_schema(schema)
        return dict(schema), None
    if isinstance(schema, str):
        text = schema.strip()
        if text.startswith(("{", "[")):
            try:
                parsed = json.loads(text)
            except ValueError as exc:
                raise ConfigError(f"schema is not valid JSON ({exc}); {_HOW}.") from None
            if not isinstance(parsed, dict):
                raise ConfigError(f"schema must be a JSON object; {_HOW}.")
            return resolve_schema(parsed)
        if text.isidentifier() and namespace is not None:
            if text not in namespace:
                raise ConfigError(f"schema: no variable named {text!r} in the notebook; {_HOW}.")
            value = namespace[text]
            if _is_model_class(value) or isinstance(value, Mapping):
                return resolve_schema(value)
            raise ConfigError(f"schema: {text!r} is a {type(value).__name__}; {_HOW}.")
    raise ConfigError(f"schema: cannot use {schema!r}; {_HOW}.")


def build_typed(answer: Any, model: Any) -> Any:
    """The pydantic instance for an answer that already matched the model's JSON schema."""
    if model is None or isinstance(answer, model):
        return answer
    try:
        return model.model_validate(answer)
    except Exception as exc:  # pydantic's ValidationError, without importing pydantic here
        raise MalformedOutputError(f"The RLM's answer does not build a {model.__name__}: {exc}") from None
