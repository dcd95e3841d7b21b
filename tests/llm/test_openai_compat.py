"""The OpenAI-compatible backend against a real loopback server, through the real SDK."""

from __future__ import annotations

import asyncio

import pytest

from nbmagic.errors import (
    AuthenticationError,
    ConfigError,
    ModelNotFoundError,
    ModelTimeoutError,
    NbmagicError,
    RateLimitError,
    RunInterrupted,
    ServerError,
    ServerUnreachableError,
)
from nbmagic.llm.base import ChatResult, Usage
from nbmagic.llm.openai_compat import OpenAICompatModel
from nbmagic.llm.specs import load_model
from nbmagic.testing.openai_server import OpenAICompatServer, Reply
from tests.fixtures.openai_server import closed_port

#: recognisable fake keys: if either shows up in a message or repr, redaction failed
FAKE_KEY = "sk-nbmagic-FAKE-KEY-do-not-leak-0123456789"
OTHER_KEY = "plainsecret-FAKE-9f8e7d6c5b4a"


def _compat(srv: OpenAICompatServer, **kw: object) -> OpenAICompatModel:
    kw.setdefault("max_retries", 2)
    kw.setdefault("timeout", 30)
    model = load_model(f"openai-compat:test-model@{srv.url}", **kw)
    assert isinstance(model, OpenAICompatModel)
    return model


# -- replies, streaming, usage, parameters ------------------------------------------------------


def test_reply_text_usage_and_running_tally(openai_server, openai_model):
    openai_server.queue("four words of reply")
    result = openai_model.chat("how are you today")
    assert isinstance(result, ChatResult)
    assert result.text == "four words of reply"
    assert result.model == "test-model"
    assert result.finish_reason == "stop"
    assert result.usage == Usage(prompt_tokens=4, completion_tokens=4, calls=1)
    openai_model.chat([{"role": "system", "content": "be brief"}, {"role": "user", "content": "hi"}])
    assert openai_model.usage == Usage(prompt_tokens=4 + 3, completion_tokens=4 + 2, calls=2)
    sent = openai_server.chat_requests()[1]["messages"]
    assert sent == [{"role": "system", "content": "be brief"}, {"role": "user", "content": "hi"}]


def test_streaming_pieces_concatenate_to_text_with_usage(openai_server, openai_model):
    openai_server.queue("the quick  brown fox\njumps")
    pieces: list[str] = []
    result = openai_model.chat("go", on_token=pieces.append)
    assert len(pieces) > 1
    assert "".join(pieces) == result.text == "the quick  brown fox\njumps"
    assert result.usage.prompt_tokens == 1 and result.usage.completion_tokens == 5
    body = openai_server.chat_requests()[0]
    assert body["stream"] is True and body["stream_options"] == {"include_usage": True}


def test_stop_sequences_reach_the_server_and_cut_the_reply(openai_server, openai_model):
    openai_server.set_responder("alpha beta END gamma")
    assert openai_model.chat("x", stop="END").text == "alpha beta "
    assert openai_model.chat("x", stop=["gamma", "beta"]).text == "alpha "
    bodies = openai_server.chat_requests()
    assert bodies[0]["stop"] == ["END"] and bodies[1]["stop"] == ["gamma", "beta"]


def test_sampling_and_extra_params_reach_the_request_body(openai_server, openai_model):
    openai_model.chat("x", temperature=0.25, top_p=0.5, max_tokens=7, seed=3, top_k=11, repeat_penalty=1.1)
    body = openai_server.chat_requests()[0]
    assert body["temperature"] == 0.25 and body["top_p"] == 0.5 and body["max_tokens"] == 7
    assert body["seed"] == 3  # an OpenAI parameter
    assert body["top_k"] == 11 and body["repeat_penalty"] == 1.1  # backend-specific, via extra_body


def test_default_params_apply_and_call_params_override(openai_server):
    model = _compat(openai_server, default_params={"temperature": 0.0, "max_tokens": 3, "top_k": 2})
    openai_server.set_responder("one two three four five")
    result = model.chat("x")
    assert result.text == "one two three" and result.finish_reason == "length"
    model.chat("x", temperature=0.9)
    first, second = openai_server.chat_requests()
    assert first["temperature"] == 0.0 and first["top_k"] == 2
    assert second["temperature"] == 0.9 and second["max_tokens"] == 3


def test_default_params_must_be_a_dict(openai_server):
    with pytest.raises(ConfigError, match="default_params must be a dict"):
        _compat(openai_server, default_params="temperature=0")


def test_stop_from_defaults_and_empty_stops(openai_server):
    model = _compat(openai_server, default_params={"stop": "END"})
    openai_server.set_responder("keep END drop")
    assert model.chat("x").text == "keep "
    assert openai_server.chat_requests()[-1]["stop"] == ["END"]  # a string default, not ["E","N","D"]
    assert model.chat("x", stop=[]).text == "keep END drop"  # an explicit empty list overrides
    model.chat("x", stop="")
    assert "stop" not in openai_server.chat_requests()[-1]  # empty stops are not sent
    for bad in ([1, 2], 5, {"END": 1}):
        with pytest.raises(ConfigError, match="stop must be"):
            model.chat("x", stop=bad)


def test_max_tokens_limits_the_reply(openai_server, openai_model):
    openai_server.set_responder("a b c d e f g")
    result = openai_model.chat("x", max_tokens=2)
    assert result.text == "a b" and result.usage.completion_tokens == 2
    assert result.finish_reason == "length"


@pytest.mark.parametrize(
    ("kwargs", "word"),
    [
        ({"max_tokens": 0}, "max_tokens"),
        ({"max_tokens": 2.5}, "max_tokens"),
        ({"temperature": -1}, "temperature"),
        ({"temperature": "hot"}, "temperature"),
        ({"top_p": 0}, "top_p"),
        ({"top_p": 1.5}, "top_p"),
    ],
)
def test_bad_sampling_values_are_refused_before_sending(openai_server, openai_model, kwargs, word):
    with pytest.raises(ConfigError, match=word):
        openai_model.chat("x", **kwargs)
    assert not openai_server.chat_requests()


def test_bad_messages_are_a_config_error(openai_model):
    with pytest.raises(ConfigError, match="role"):
        openai_model.chat([{"role": "wizard", "content": "hi"}])
    with pytest.raises(ConfigError, match="empty"):
        openai_model.chat([])
    with pytest.raises(ConfigError, match="not NoneType"):
        openai_model.chat(None)


def test_one_message_dict_is_accepted(openai_server, openai_model):
    assert openai_model.chat({"role": "user", "content": "alone"}).text == "echo: alone"
    assert openai_server.chat_requests()[0]["messages"] == [{"role": "user", "content": "alone"}]


@pytest.mark.parametrize(("kwargs", "word"), [({"timeout": "slow"}, "timeout"), ({"max_retries": -1}, "max_retries")])
def test_bad_client_options_are_refused(openai_server, kwargs, word):
    with pytest.raises(ConfigError, match=word):
        load_model(f"openai-compat:test-model@{openai_server.url}", **kwargs)


# -- async ------------------------------------------------------------------------------------


def test_achat_replies_and_streams(openai_server, openai_model):
    pieces: list[str] = []

    async def go() -> tuple[ChatResult, ChatResult]:
        plain = await openai_model.achat("hello async")
        streamed = await openai_model.achat("one two three", on_token=pieces.append)
        return plain, streamed

    plain, streamed = asyncio.run(go())
    assert plain.text == "echo: hello async"
    assert streamed.text == "echo: one two three" == "".join(pieces)
    assert openai_model.usage.calls == 2
    assert openai_model.usage.completion_tokens == 3 + 4


def test_concurrent_achat_calls_overlap_and_all_count():
    with OpenAICompatServer(models=["test-model"], latency=0.3) as srv:
        model = _compat(srv)

        async def go() -> list[ChatResult]:
            return await asyncio.gather(*[model.achat(f"q{i}") for i in range(6)])

        results = asyncio.run(go())
        assert [r.text for r in results] == [f"echo: q{i}" for i in range(6)]
        assert srv.max_in_flight >= 2  # really concurrent, not one after another
        assert model.usage.calls == 6


def test_sync_chat_from_many_threads():
    from concurrent.futures import ThreadPoolExecutor

    with OpenAICompatServer(models=["test-model"], latency=0.2) as srv:
        model = _compat(srv)
        with ThreadPoolExecutor(6) as pool:
            texts = list(pool.map(lambda i: model.chat(f"t{i}").text, range(6)))
        assert texts == [f"echo: t{i}" for i in range(6)]
        assert srv.max_in_flight >= 2 and model.usage.calls == 6


def test_achat_works_across_event_loops(openai_server, openai_model):
    """Each asyncio.run has its own loop; the model must not reuse a closed loop's pool."""
    for i in range(3):
        assert asyncio.run(openai_model.achat(f"round {i}")).text == f"echo: round {i}"


# -- retries and errors ---------------------------------------------------------------------------


@pytest.mark.parametrize("status", [429, 500, 503])
def test_sdk_retries_then_succeeds(openai_server, openai_model, status):
    openai_server.queue(Reply(status=status), Reply(status=status), "finally")
    assert openai_model.chat("x").text == "finally"
    assert len(openai_server.chat_requests()) == 3


def test_streaming_call_is_retried_too(openai_server, openai_model):
    openai_server.queue(Reply(status=500), "streamed after retry")
    pieces: list[str] = []
    assert openai_model.chat("x", on_token=pieces.append).text == "streamed after retry"
    assert "".join(pieces) == "streamed after retry"


def test_rate_limit_after_retries_spent(openai_server, openai_model):
    openai_server.fail_next(429, times=3)
    with pytest.raises(RateLimitError) as info:
        openai_model.chat("x")
    message = str(info.value)
    assert "test-model" in message and "429" in message and "2 retries" in message
    assert len(openai_server.chat_requests()) == 3  # first try + 2 retries


def test_server_error_after_retries_spent(openai_server):
    model = _compat(openai_server, max_retries=1)
    openai_server.fail_next(500, times=2, error_message="the GPU caught fire")
    with pytest.raises(ServerError) as info:
        model.chat("x")
    assert "500" in str(info.value) and "the GPU caught fire" in str(info.value)
    assert "test-model" in str(info.value)
    assert len(openai_server.chat_requests()) == 2


def test_unreachable_server():
    url = f"http://127.0.0.1:{closed_port()}/v1"
    model = load_model(f"openai-compat:test-model@{url}", max_retries=0, timeout=5)
    with pytest.raises(ServerUnreachableError) as info:
        model.chat("x")
    assert url in str(info.value) and "running" in str(info.value)


def test_unknown_model(openai_server):
    model = load_model(f"openai-compat:no-such-model@{openai_server.url}", max_retries=2)
    with pytest.raises(ModelNotFoundError) as info:
        model.chat("x")
    assert "no-such-model" in str(info.value)
    assert len(openai_server.chat_requests()) == 1  # 404 is not retried


def test_list_models(openai_server, openai_model):
    assert openai_model.list_models() == ["test-model", "sub-model"]


def test_wrong_key_is_an_authentication_error_without_the_key():
    with OpenAICompatServer(models=["test-model"], api_key=OTHER_KEY) as srv:
        model = _compat(srv, api_key=FAKE_KEY)
        with pytest.raises(AuthenticationError) as info:
            model.chat("x")
        assert "rejected the API key" in str(info.value)
        _assert_no_keys(str(info.value), repr(info.value), repr(model), str(model))
        good = _compat(srv, api_key=OTHER_KEY)
        assert good.chat("hi").text == "echo: hi"
        _assert_no_keys(repr(good), str(good))


def test_keys_echoed_by_a_server_are_redacted(openai_server):
    """Some servers quote the offending request in their error; the key must not come through."""
    model = _compat(openai_server, api_key=FAKE_KEY)
    openai_server.queue(Reply(status=400, error_message=f"bad request from key {FAKE_KEY}"))
    with pytest.raises(ConfigError) as info:
        model.chat("x")
    assert "bad request from key" in str(info.value)
    _assert_no_keys(str(info.value), repr(info.value))


def test_key_from_environment_is_not_in_messages_or_reprs(monkeypatch, openai_server):
    monkeypatch.setenv("OPENAI_API_KEY", FAKE_KEY)
    monkeypatch.setenv("OPENAI_BASE_URL", openai_server.url)
    model = load_model("openai:test-model")
    assert model.chat("hello").text == "echo: hello"
    openai_server.fail_next(500, times=3, error_message=f"upstream said {FAKE_KEY}")
    with pytest.raises(ServerError) as info:
        model.chat("x")
    _assert_no_keys(str(info.value), repr(info.value), repr(model))


def test_missing_openai_key(monkeypatch):
    with pytest.raises(AuthenticationError) as info:
        load_model("openai:gpt-4o-mini")
    assert "OPENAI_API_KEY" in str(info.value) and "gpt-4o-mini" in str(info.value)


def test_openai_spec_with_custom_base_url_needs_no_key(monkeypatch, openai_server):
    monkeypatch.setenv("OPENAI_BASE_URL", openai_server.url)
    assert load_model("openai:test-model").chat("hi").text == "echo: hi"


def test_timeout(openai_server):
    model = _compat(openai_server, timeout=0.2, max_retries=0)
    openai_server.queue(Reply("too late", delay=1.0))
    with pytest.raises(ModelTimeoutError) as info:
        model.chat("x")
    assert "0.2 s" in str(info.value) and "test-model" in str(info.value)


def test_timeout_is_retried_by_the_sdk(openai_server):
    model = _compat(openai_server, timeout=0.3, max_retries=1)
    openai_server.queue(Reply("too late", delay=1.0), "in time")
    assert model.chat("x").text == "in time"


def test_mid_stream_disconnect_keeps_partial_text(openai_server, openai_model):
    openai_server.queue(Reply("one two three four five six", disconnect=True))
    pieces: list[str] = []
    with pytest.raises(ServerUnreachableError) as info:
        openai_model.chat("x", on_token=pieces.append)
    partial = info.value.partial
    assert partial and partial == "".join(pieces)
    assert "one two three four five six".startswith(partial) and partial != "one two three four five six"
    assert "dropped" in str(info.value)


def test_async_mid_stream_disconnect_keeps_partial_text(openai_server, openai_model):
    openai_server.queue(Reply("one two three four five six", disconnect=True))
    with pytest.raises(ServerUnreachableError) as info:
        asyncio.run(openai_model.achat("x", on_token=lambda _t: None))
    assert info.value.partial and "one two three four five six".startswith(info.value.partial)


def test_disconnect_before_reply_is_retried(openai_server, openai_model):
    openai_server.queue(Reply("lost", disconnect=True), "second try")
    assert openai_model.chat("x").text == "second try"


@pytest.mark.parametrize("use_async", [False, True])
def test_server_rejecting_stream_options_still_streams(use_async):
    with OpenAICompatServer(models=["test-model"], reject_stream_options=True) as srv:
        model = _compat(srv)
        pieces: list[str] = []
        if use_async:
            result = asyncio.run(model.achat("a b c", on_token=pieces.append))
        else:
            result = model.chat("a b c", on_token=pieces.append)
        assert result.text == "echo: a b c" == "".join(pieces)
        assert result.usage.completion_tokens > 0  # estimated when the server sends none
        first, second = srv.chat_requests()
        assert "stream_options" in first and "stream_options" not in second
        model.chat("again", on_token=pieces.append)  # remembered: no second rejection
        assert "stream_options" not in srv.chat_requests()[-1]
        assert len(srv.chat_requests()) == 3


def test_every_error_is_an_nbmagic_error(openai_server, openai_model):
    openai_server.queue(Reply(status=418, error_message="teapot"))
    with pytest.raises(NbmagicError, match="418"):
        openai_model.chat("x")


# -- Ollama ----------------------------------------------------------------------------------------


def test_ollama_spec_uses_ollama_host(monkeypatch, openai_server):
    monkeypatch.setenv("OLLAMA_HOST", openai_server.root_url.removeprefix("http://"))
    model = load_model("ollama:test-model")
    assert model.backend == "ollama" and model.base_url == openai_server.url
    assert model.chat("hi ollama").text == "echo: hi ollama"
    assert repr(model) == f"<OpenAICompatModel ollama:test-model at {openai_server.url}>"


def _assert_no_keys(*texts: str) -> None:
    for text in texts:
        assert FAKE_KEY not in text and OTHER_KEY not in text, text


# -- Azure -----------------------------------------------------------------------------------------


def test_azure_deployment_through_the_azure_client(monkeypatch):
    with OpenAICompatServer(models=["my-deployment"], api_key=OTHER_KEY) as srv:
        monkeypatch.setenv("AZURE_OPENAI_ENDPOINT", srv.root_url)
        monkeypatch.setenv("AZURE_OPENAI_API_KEY", OTHER_KEY)
        model = load_model("azure:my-deployment", max_retries=0)
        assert model.chat("hi azure").text == "echo: hi azure"
        path = srv.requests[-1]["path"]
        assert path.startswith("/openai/deployments/my-deployment/chat/completions?api-version=")
        _assert_no_keys(repr(model))


def test_azure_needs_endpoint_and_its_own_key(monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", FAKE_KEY)  # OpenAI's key is never sent to Azure
    with pytest.raises(ConfigError, match="AZURE_OPENAI_ENDPOINT"):
        load_model("azure:dep")
    monkeypatch.setenv("AZURE_OPENAI_ENDPOINT", "https://example.openai.azure.com")
    with pytest.raises(AuthenticationError, match="AZURE_OPENAI_API_KEY") as info:
        load_model("azure:dep")
    _assert_no_keys(str(info.value))


# -- the loopback server as its own process -----------------------------------------------------


def test_loopback_server_runs_as_a_command():
    """``python -m nbmagic.testing.openai_server`` (used by examples and browser tests)."""
    import subprocess
    import sys
    from pathlib import Path

    proc = subprocess.Popen(
        [sys.executable, "-m", "nbmagic.testing.openai_server", "--model", "cli-model", "--api-key", OTHER_KEY],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=Path(__file__).resolve().parents[2],
    )
    try:
        assert proc.stdout is not None
        url = proc.stdout.readline().strip()
        assert url.startswith("http://127.0.0.1:") and url.endswith("/v1")
        model = load_model(f"openai-compat:cli-model@{url}", api_key=OTHER_KEY, max_retries=0)
        assert model.chat("over a real socket").text == "echo: over a real socket"
        assert model.list_models() == ["cli-model"]
    finally:
        proc.terminate()
        proc.wait(timeout=10)


@pytest.mark.parametrize("use_async", [False, True])
@pytest.mark.parametrize("raised", [RunInterrupted("stopped by the user", partial="kept"), ValueError("a UI bug")])
def test_what_on_token_raises_reaches_the_caller_unchanged(openai_server, openai_model, use_async, raised):
    """A stop (or a bug) in the streaming callback is not blamed on the server."""
    openai_server.queue("one two three four")
    seen: list[str] = []

    def on_token(piece: str) -> None:
        seen.append(piece)
        raise raised

    with pytest.raises(type(raised)) as info:
        if use_async:
            asyncio.run(openai_model.achat("x", on_token=on_token))
        else:
            openai_model.chat("x", on_token=on_token)
    assert info.value is raised and len(seen) == 1
    assert openai_model.chat("again").text == "echo: again"  # the connection was given back
