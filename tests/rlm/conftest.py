"""Fixtures for the RLM tests: root and sub models on the loopback server, a shared worker."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from nbmagic.llm.base import ChatModel
from nbmagic.testing.openai_server import OpenAICompatServer


@pytest.fixture
def models(openai_server: OpenAICompatServer) -> Iterator[tuple[ChatModel, ChatModel]]:
    """(root, sub): ``test-model`` and ``sub-model`` on the loopback server, no SDK retries."""
    from nbmagic.llm.specs import load_model

    root = load_model(f"openai-compat:test-model@{openai_server.url}", max_retries=0, timeout=30)
    sub = load_model(f"openai-compat:sub-model@{openai_server.url}", max_retries=0, timeout=30)
    yield root, sub
    root.close()
    sub.close()
