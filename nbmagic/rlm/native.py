"""Native tool calls: the REPL offered as one function tool, ``run_python_code(code)``.

Models trained for function calling often write better-formed code as a tool call than as
a fenced block. For a root model served over the OpenAI chat API (any
:class:`~nbmagic.llm.openai_compat.OpenAICompatModel`: OpenAI, Azure, vLLM, Ollama, llama.cpp
server, ...) the run offers the tool and takes the code from the call; fenced ``python``
blocks in the reply are still run when there is no call. The choice is automatic: the
first root call tries the tool; if the server refuses it (a model or server without
function calling: :class:`~nbmagic.llm.base.ToolsUnsupportedError`, and only that), the run
falls back to the fenced-code protocol for good and says so in a notice. A timeout, a rate
limit or a dropped connection is the model's error like any other (the SDK has already
retried it ``max_retries`` times): it ends the run rather than switching protocols. Other backends (llama.cpp in-process, transformers) use the fenced
protocol from the start.

The conversation is kept in one neutral form (plain messages; an assistant turn that came
from a call carries ``_calls``, its feedback ``_results``), rendered either way per request:
:func:`as_wire` for the tool protocol (assistant ``tool_calls`` + ``tool`` messages) and
:func:`as_text` for the fenced one (the code appended as a block), so a fallback mid-run
loses nothing.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from nbmagic.llm.base import ChatModel, Usage

TOOL_NAME = "run_python_code"

RUN_PYTHON_TOOL: dict[str, Any] = {
    "type": "function",
    "function": {
        "name": TOOL_NAME,
        "description": (
            "Run Python code in the persistent REPL that holds the context variables and the helpers "
            "(submit, llm_query, ...). Returns what the code printed (truncated)."
        ),
        "parameters": {
            "type": "object",
            "properties": {"code": {"type": "string", "description": "Python source to run"}},
            "required": ["code"],
        },
    },
}


@dataclass
class NativeReply:
    """One root reply over the tool protocol."""

    text: str
    calls: list[tuple[str, str]] = field(default_factory=list)  # (call id, code)
    usage: Usage = field(default_factory=Usage)
    seconds: float = 0.0

    @property
    def code(self) -> str:
        return "\n\n".join(c for _, c in self.calls if c.strip())


def can_offer(model: ChatModel) -> bool:
    """Backends with function calling (:attr:`ChatModel.supports_tools`); others use fences."""
    return bool(getattr(model, "supports_tools", False))


def _code_of(arguments: str) -> str:
    """The ``code`` argument; a model that sends bare code instead of JSON still gets it run."""
    try:
        args = json.loads(arguments or "{}")
    except ValueError:
        return arguments or ""
    if isinstance(args, dict):
        return str(args.get("code", ""))
    return str(args)


def chat(model: ChatModel, messages: list[dict[str, Any]], *, temperature: float | None,
         max_tokens: int | None) -> NativeReply:
    """One root call offering the tool, through :meth:`ChatModel.chat_tools` (errors mapped, usage
    counted). Raises :class:`~nbmagic.llm.base.ToolsUnsupportedError` when the model refuses tools
    (the caller falls back to fenced code) and the model's own error for anything else."""
    r = model.chat_tools(as_wire(messages), [RUN_PYTHON_TOOL], temperature=temperature, max_tokens=max_tokens)
    calls = [(c.id, _code_of(c.arguments)) for c in r.calls if c.name == TOOL_NAME]
    return NativeReply(text=r.text, calls=calls, usage=r.usage, seconds=r.seconds)


def as_text(messages: Sequence[dict[str, Any]]) -> list[dict[str, str]]:
    """The conversation for the fenced-code protocol: a call's code becomes a ```python block."""
    out = []
    for m in messages:
        content = m["content"]
        if m.get("_calls"):
            blocks = "".join(f"\n```python\n{code}\n```" for _, code in m["_calls"])
            content = (content.rstrip() + blocks).lstrip("\n")
        out.append({"role": m["role"], "content": content})
    return out


def as_wire(messages: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """The conversation for the tool protocol: assistant ``tool_calls`` answered by ``tool`` messages."""
    out: list[dict[str, Any]] = []
    for m in messages:
        if m.get("_calls"):
            out.append({
                "role": "assistant",
                "content": m["content"] or None,
                "tool_calls": [
                    {"id": cid, "type": "function",
                     "function": {"name": TOOL_NAME, "arguments": json.dumps({"code": code})}}
                    for cid, code in m["_calls"]
                ],
            })
        elif m.get("_results"):
            ids = m["_results"]
            out.append({"role": "tool", "tool_call_id": ids[0], "content": m["content"]})
            out.extend({"role": "tool", "tool_call_id": cid, "content": "(ran together with the call above)"}
                       for cid in ids[1:])
        else:
            out.append({"role": m["role"], "content": m["content"]})
    return out
