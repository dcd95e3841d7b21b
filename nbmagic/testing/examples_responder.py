"""One scripted model for the examples: it plays the notebook agent's model and the RLM's.

The quickstart notebook and ``examples/api_example.py`` use both ``%%agent`` and
``%rlm`` against ONE OpenAI-compatible server, so the server needs one responder
that tells the two kinds of request apart: the notebook agent's prompts carry
fixed headings (:mod:`nbmagic.agent.prompts`), everything else (RLM root turns,
``llm_query`` sub-calls) goes to the RLM evaluation's scripted model.

Try the examples with no API key and no GPU::

    python -m nbmagic.testing.openai_server --port 8765 \\
        --responder nbmagic.testing.examples_responder:respond
    export NBMAGIC_MODEL=openai-compat:test-model@http://127.0.0.1:8765/v1
"""

from __future__ import annotations

from typing import Any

from nbmagic.agent.prompts import (
    ANSWER_HEADING,
    CODE_HEADING,
    FIX_HEADING,
    PLAN_HEADING,
    REFINE_HEADING,
)
from nbmagic.testing import agent_scripts, rlm_scripts

_AGENT_MARKS = (PLAN_HEADING, CODE_HEADING, FIX_HEADING, ANSWER_HEADING, REFINE_HEADING)
_rlm = rlm_scripts.eval_responder()


def is_agent_request(request: dict[str, Any]) -> bool:
    return any(
        mark in str(m.get("content", "")) for m in request.get("messages", []) for mark in _AGENT_MARKS
    )


def respond(request: dict[str, Any]) -> str:
    """Route a chat request to the agent's or the RLM's scripted model."""
    if is_agent_request(request):
        return agent_scripts.respond(request)
    return _rlm(request)
