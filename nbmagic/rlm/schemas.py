"""What ``schema=`` / ``--schema`` may be, turned into one JSON schema (and a type to build).

Accepted: a JSON schema as a dict; the same as a JSON string (``'{"type": "integer"}'``);
a path to a ``.json`` file holding one; a pydantic model class (its
``model_json_schema()``; the answer comes back as an instance); or, with a namespace, the
*name* of a variable holding either (``%rlm --schema Person``). ``--schema`` means the same
in ``%rlm`` and ``python -m nbmagic rlm``: both hand their text to :func:`resolve_schema`. The answer is checked against the JSON schema
in ``submit()`` and in the final step; the pydantic class then builds the typed value.
pydantic is only used when the user hands over one of its classes.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from nbmagic.errors import ConfigError, MalformedOutputError
from nbmagic.rlm.tools import validate_schema

_HOW = ("give a JSON schema (a dict, JSON text like '{\"type\": \"integer\"}', or a .json file) "
        "or a pydantic model class (in a notebook: its name)")


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
        if text.lower().endswith(".json"):
            return resolve_schema(_read_schema_file(text))
        if text.isidentifier() and namespace is not None:
            if text not in namespace:
                raise ConfigError(f"schema: no variable named {text!r} in the notebook; {_HOW}.")
            value = namespace[text]
            if _is_model_class(value) or isinstance(value, Mapping):
                return resolve_schema(value)
            raise ConfigError(f"schema: {text!r} is a {type(value).__name__}; {_HOW}.")
    raise ConfigError(f"schema: cannot use {schema!r}; {_HOW}.")


def _read_schema_file(text: str) -> str:
    path = Path(text).expanduser()
    if not path.is_file():
        raise ConfigError(f"schema: no file {text!r}; {_HOW}.")
    try:
        content = path.read_text(encoding="utf-8").strip()
    except OSError as exc:
        raise ConfigError(f"schema: cannot read {text!r} ({exc.strerror or exc}).") from None
    if not content.startswith(("{", "[")):
        raise ConfigError(f"schema: {text!r} does not hold a JSON object; {_HOW}.")
    return content


def build_typed(answer: Any, model: Any) -> Any:
    """The pydantic instance for an answer that already matched the model's JSON schema."""
    if model is None or isinstance(answer, model):
        return answer
    try:
        return model.model_validate(answer)
    except Exception as exc:  # pydantic's ValidationError, without importing pydantic here
        raise MalformedOutputError(f"The RLM's answer does not build a {model.__name__}: {exc}") from None
