"""The model layer on real weights: the embedded SmolLM2-135M-Instruct, through llama.cpp and transformers.

A 135M model is weak, but on a plain factual question it answers; these tests check the
words, the token accounting and streaming on the same weights through both backends, and
that with nothing configured and no network the default model is this one and it chats.
"""

from __future__ import annotations

import pytest

from nbmagic.llm.llamacpp import LlamaCppModel
from nbmagic.llm.specs import load_model, resolve_default

pytestmark = pytest.mark.real_model

QUESTION = "Name the capital city of France."


def test_gguf_names_paris_with_exact_usage(embedded_gguf_model):
    reply = embedded_gguf_model.chat(QUESTION, max_tokens=24, temperature=0)
    assert "Paris" in reply.text
    assert reply.finish_reason == "stop"  # it ends its turn, it is not cut at the limit
    assert 20 < reply.usage.prompt_tokens < 80  # the ChatML prompt with the file's default system line
    # llama.cpp's count; re-tokenizing the text may merge one boundary differently
    assert abs(reply.usage.completion_tokens - embedded_gguf_model.count_tokens(reply.text)) <= 1
    assert embedded_gguf_model.n_ctx == 8192  # the trained context, not a 4096 default


def test_gguf_streaming_gives_the_same_words(embedded_gguf_model):
    pieces: list[str] = []
    reply = embedded_gguf_model.chat(QUESTION, max_tokens=24, temperature=0, on_token=pieces.append)
    assert len(pieces) > 3 and "".join(pieces) == reply.text and "Paris" in reply.text
    assert reply.usage.completion_tokens >= len(pieces) - 1


def test_hf_on_the_same_gguf_names_paris_and_has_latent_access(embedded_hf_model):
    reply = embedded_hf_model.chat(QUESTION, max_tokens=24, temperature=0)
    assert "Paris" in reply.text and reply.finish_reason == "stop"
    assert embedded_hf_model.supports_latent and embedded_hf_model.hidden_size == 576
    ids = embedded_hf_model.chat_ids([{"role": "user", "content": QUESTION}])
    assert reply.usage.prompt_tokens == len(ids)
    assert tuple(embedded_hf_model.embed_ids(ids).shape[-2:]) == (len(ids), 576)


def test_with_nothing_configured_the_default_is_the_embedded_model(monkeypatch, embedded_gguf_path):
    monkeypatch.delenv("NBMAGIC_EMBEDDED")
    monkeypatch.setenv("OLLAMA_HOST", "127.0.0.1:9")  # nothing listens on the discard port
    resolution = resolve_default()
    assert resolution.spec == f"gguf:{embedded_gguf_path}" and "embedded model" in resolution.reason
    model = load_model()
    try:
        assert isinstance(model, LlamaCppModel) and model.path == embedded_gguf_path
        assert "Paris" in model.chat(QUESTION, max_tokens=24, temperature=0).text
    finally:
        model.close()


def test_nbmagic_status_names_the_embedded_model_and_why(ipython_shell, monkeypatch, capsys, embedded_gguf_path):
    monkeypatch.delenv("NBMAGIC_EMBEDDED")
    monkeypatch.setenv("OLLAMA_HOST", "127.0.0.1:9")
    ipython_shell.run_line_magic("load_ext", "nbmagic")
    ipython_shell.run_line_magic("nbmagic", "status")
    out = capsys.readouterr().out
    assert f"gguf:{embedded_gguf_path}" in out
    assert "the embedded model (SmolLM2-135M-Instruct (Q4_1 GGUF), 98 MB, Apache-2.0" in out
