"""OpenAI-compatible servers through the ``openai`` SDK.

One class serves OpenAI, Azure OpenAI, vLLM, Ollama, LM Studio and llama.cpp's
server: they differ only in base URL, key and a few quirks. Retries with backoff
on 429/5xx/timeouts are the SDK's own (``max_retries``); this module maps the
SDK's exceptions to :mod:`nbmagic.errors` with messages that name the model and
the fix, and never contain the key.
"""

from __future__ import annotations

import contextlib
import os
import threading
import weakref
from typing import Any

from nbmagic.errors import (
    AuthenticationError,
    ConfigError,
    ModelNotFoundError,
    ModelTimeoutError,
    NbmagicError,
    RateLimitError,
    ServerError,
    ServerUnreachableError,
)
from nbmagic.llm.base import (
    ChatModel,
    ChatResult,
    GenerationParams,
    TokenCallback,
    ToolCall,
    ToolReply,
    ToolsUnsupportedError,
    Usage,
)
from nbmagic.llm.vision import text_only
from nbmagic.secrets import redact, register_secret

#: Local servers accept any key; the SDK insists on having one.
_PLACEHOLDER_KEY = "not-needed"
_DEFAULT_OPENAI_URL = "https://api.openai.com/v1"


class OpenAICompatModel(ChatModel):
    """A model served over the OpenAI chat-completions API."""

    backend = "openai"

    def __init__(
        self,
        model: str,
        *,
        provider: str = "openai",
        base_url: str | None = None,
        api_key: str | None = None,
        timeout: float | None = None,
        max_retries: int = 2,
        api_version: str | None = None,
        default_params: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(model, default_params=default_params)
        self.provider = provider
        self.backend = provider  # type: ignore[misc]  # shown in reprs and specs
        self.timeout = _default_timeout() if timeout is None else timeout
        if isinstance(self.timeout, bool) or not isinstance(self.timeout, int | float) or self.timeout <= 0:
            raise ConfigError(f"{provider}:{model}: timeout must be a number of seconds > 0, not {timeout!r}.")
        if isinstance(max_retries, bool) or not isinstance(max_retries, int) or max_retries < 0:
            raise ConfigError(f"{provider}:{model}: max_retries must be a whole number >= 0, not {max_retries!r}.")
        self.timeout = float(self.timeout)
        self.max_retries = max_retries
        self.api_version = api_version
        self.base_url, self._api_key = self._resolve_endpoint(provider, base_url, api_key)
        if self._api_key != _PLACEHOLDER_KEY:  # or every "not-needed" in any text would be masked
            register_secret(self._api_key)
        self._client: Any = None
        self._aclients: weakref.WeakKeyDictionary[Any, Any] = weakref.WeakKeyDictionary()
        self._aclient_lock = threading.Lock()
        self._usage_in_stream = True  # flips off if a server rejects stream_options

    # -- configuration ------------------------------------------------------------------

    def _resolve_endpoint(
        self, provider: str, base_url: str | None, api_key: str | None
    ) -> tuple[str, str]:
        env = os.environ
        if provider == "openai":
            url = base_url or env.get("OPENAI_BASE_URL") or _DEFAULT_OPENAI_URL
            key = api_key or env.get("OPENAI_API_KEY")
            if not key:
                if url.rstrip("/") == _DEFAULT_OPENAI_URL:
                    raise AuthenticationError(
                        f"openai:{self.name} needs an API key: run %env OPENAI_API_KEY=... "
                        "(or export it before starting Jupyter), or pass api_key=."
                    )
                key = _PLACEHOLDER_KEY  # a custom base URL is usually a local server
            return url, key
        if provider == "azure":
            url = base_url or env.get("AZURE_OPENAI_ENDPOINT")
            key = api_key or env.get("AZURE_OPENAI_API_KEY")  # never OpenAI's key to another host
            if not url:
                raise ConfigError(
                    f"azure:{self.name} needs an endpoint: set AZURE_OPENAI_ENDPOINT or pass base_url=."
                )
            if not key:
                raise AuthenticationError(
                    f"azure:{self.name} needs an API key: set AZURE_OPENAI_API_KEY or pass api_key=."
                )
            self.api_version = self.api_version or env.get("OPENAI_API_VERSION") or "2024-10-21"
            return url, key
        # ollama, openai-compat: local servers by default; a key is optional
        if not base_url:
            raise ConfigError(f"{provider}:{self.name} needs a base URL (…@http://host:port/v1).")
        return base_url, api_key or env.get("NBMAGIC_API_KEY") or _PLACEHOLDER_KEY

    def _client_kwargs(self) -> dict[str, Any]:
        return {"api_key": self._api_key, "timeout": self.timeout, "max_retries": self.max_retries}

    @property
    def client(self) -> Any:
        """The SDK's sync client, created on first use (so importing stays cheap)."""
        if self._client is None:
            import openai

            with self._aclient_lock:  # threads racing on the first call share one client
                if self._client is None:
                    if self.provider == "azure":
                        self._client = openai.AzureOpenAI(
                            azure_endpoint=self.base_url, api_version=self.api_version, **self._client_kwargs()
                        )
                    else:
                        self._client = openai.OpenAI(base_url=self.base_url, **self._client_kwargs())
        return self._client

    @property
    def aclient(self) -> Any:
        """The SDK's async client for the running event loop.

        An async client's connection pool belongs to the loop that opened it, so each
        loop gets its own client: ``asyncio.run`` twice (or a worker thread with its
        own loop) must not reuse connections of a closed loop ("Event loop is closed").
        """
        import asyncio

        try:
            loop: Any = asyncio.get_running_loop()
        except RuntimeError:
            loop = None
        with self._aclient_lock:
            client = self._aclients.get(loop) if loop is not None else None
            if client is None:
                import openai

                if self.provider == "azure":
                    client = openai.AsyncAzureOpenAI(
                        azure_endpoint=self.base_url, api_version=self.api_version, **self._client_kwargs()
                    )
                else:
                    client = openai.AsyncOpenAI(base_url=self.base_url, **self._client_kwargs())
                if loop is not None:
                    self._aclients[loop] = client
        return client

    def __repr__(self) -> str:
        return f"<OpenAICompatModel {self.provider}:{self.name} at {self.base_url}>"

    # -- calls -----------------------------------------------------------------------------

    def _request(self, messages: list[dict[str, str]], params: GenerationParams, stream: bool) -> dict[str, Any]:
        req: dict[str, Any] = {"model": self.name, "messages": messages, **params.standard()}
        extra = dict(params.extra)
        known = {"seed", "presence_penalty", "frequency_penalty", "response_format", "logit_bias", "n", "user"}
        for k in list(extra):
            if k in known:
                req[k] = extra.pop(k)
        if extra:
            req["extra_body"] = extra  # backend-specific (e.g. vLLM's top_k, Ollama's options)
        if stream:
            req["stream"] = True
            if self._usage_in_stream:
                req["stream_options"] = {"include_usage": True}
        return req

    def _chat(
        self, messages: list[dict[str, str]], params: GenerationParams, on_token: TokenCallback | None
    ) -> ChatResult:
        stream = on_token is not None
        try:
            resp = self.client.chat.completions.create(**self._request(messages, params, stream))
            if not stream:
                return self._from_completion(resp)
        except NbmagicError:
            raise
        except Exception as exc:
            if stream and self._usage_in_stream and _rejects_stream_options(exc):
                self._usage_in_stream = False
                return self._chat(messages, params, on_token)
            raise self._map_error(exc) from None
        assert on_token is not None
        parts: list[str] = []
        state: dict[str, Any] = {}
        chunks = iter(resp)
        try:
            while True:
                try:  # only the transport is mapped: what on_token raises (a stop, a bug) is the caller's
                    chunk = next(chunks)
                except StopIteration:
                    break
                except Exception as exc:
                    raise self._map_error(exc, partial="".join(parts)) from None
                delta = self._take_chunk(chunk, parts, state)
                if delta:
                    on_token(delta)
        finally:  # a no-op after the last chunk; frees the connection when on_token raised
            with contextlib.suppress(Exception):  # never hide the error being raised
                resp.close()
        return self._from_stream(messages, parts, state)

    async def _achat(
        self, messages: list[dict[str, str]], params: GenerationParams, on_token: TokenCallback | None
    ) -> ChatResult:
        stream = on_token is not None
        try:
            resp = await self.aclient.chat.completions.create(**self._request(messages, params, stream))
            if not stream:
                return self._from_completion(resp)
        except NbmagicError:
            raise
        except Exception as exc:
            if stream and self._usage_in_stream and _rejects_stream_options(exc):
                self._usage_in_stream = False
                return await self._achat(messages, params, on_token)
            raise self._map_error(exc) from None
        assert on_token is not None
        parts: list[str] = []
        state: dict[str, Any] = {}
        chunks = aiter(resp)
        try:
            while True:
                try:
                    chunk = await anext(chunks)
                except StopAsyncIteration:
                    break
                except Exception as exc:
                    raise self._map_error(exc, partial="".join(parts)) from None
                delta = self._take_chunk(chunk, parts, state)
                if delta:
                    on_token(delta)
        finally:
            with contextlib.suppress(Exception):
                await resp.close()
        return self._from_stream(messages, parts, state)

    supports_tools = True

    def _chat_tools(
        self, messages: list[dict[str, Any]], tools: list[dict[str, Any]], params: GenerationParams, tool_choice: str
    ) -> ToolReply:
        """A request offering ``tools``; a 400/422 refusal of it is :class:`ToolsUnsupportedError`,
        anything else the usual mapped error (retried by the SDK only, ``max_retries`` times)."""
        import openai

        req = {**self._request(messages, params, False), "tools": tools, "tool_choice": tool_choice}
        try:
            resp = self.client.chat.completions.create(**req)
        except (openai.BadRequestError, openai.UnprocessableEntityError) as exc:
            raise ToolsUnsupportedError(
                f"{self._label()} refused tool calls: {redact(_server_message(exc))}") from None
        except Exception as exc:
            raise self._map_error(exc) from None
        if not getattr(resp, "choices", None):
            raise ServerError(f"{self._label()} returned no choices; the server may not support chat.")
        choice = resp.choices[0]
        msg = choice.message
        calls = tuple(
            ToolCall(tc.id, tc.function.name, tc.function.arguments or "")
            for tc in (msg.tool_calls or ())
            if getattr(tc, "function", None) is not None
        )
        u = getattr(resp, "usage", None)
        usage = Usage(getattr(u, "prompt_tokens", 0) or 0, getattr(u, "completion_tokens", 0) or 0)
        return ToolReply(msg.content or "", calls, usage, choice.finish_reason)

    def list_models(self) -> list[str]:
        """Model ids the server offers."""
        try:
            return [m.id for m in self.client.models.list()]
        except Exception as exc:
            raise self._map_error(exc) from None

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
        self._client = None
        self._aclients = weakref.WeakKeyDictionary()  # their loops own them; dropped with the loops

    # -- response handling -------------------------------------------------------------

    def _from_completion(self, resp: Any) -> ChatResult:
        if not getattr(resp, "choices", None):
            raise ServerError(f"{self._label()} returned no choices; the server may not support chat.")
        choice = resp.choices[0]
        text = choice.message.content or ""
        usage = resp.usage
        return ChatResult(
            text=text,
            model=getattr(resp, "model", None) or self.name,
            usage=Usage(
                getattr(usage, "prompt_tokens", 0) or 0, getattr(usage, "completion_tokens", 0) or 0
            )
            if usage
            else Usage(0, self.count_tokens(text)),
            finish_reason=choice.finish_reason,
        )

    @staticmethod
    def _take_chunk(chunk: Any, parts: list[str], state: dict[str, Any]) -> str:
        """Record one streamed chunk; return the text it adds."""
        if getattr(chunk, "usage", None):
            state["usage"] = chunk.usage
        added = ""
        for choice in chunk.choices or ():
            delta = getattr(choice.delta, "content", None)
            if delta:
                parts.append(delta)
                added += delta
            if choice.finish_reason:
                state["finish"] = choice.finish_reason
        return added

    def _from_stream(self, messages: list[dict[str, str]], parts: list[str], state: dict[str, Any]) -> ChatResult:
        text = "".join(parts)
        if "finish" not in state:  # the stream ended without a final chunk: the connection dropped
            err = ServerUnreachableError(
                f"{self._label()} at {self.base_url}: the connection dropped mid-reply "
                f"after {len(text)} characters. Try again."
            )
            err.partial = text
            raise err
        usage = state.get("usage")
        if usage is not None:
            counted = Usage(usage.prompt_tokens or 0, usage.completion_tokens or 0)
        else:  # server sent no usage: estimate, so budgets still work
            counted = Usage(sum(self.count_tokens(text_only(m["content"])) for m in messages), self.count_tokens(text))
        return ChatResult(text=text, model=self.name, usage=counted, finish_reason=state.get("finish"))

    # -- errors ---------------------------------------------------------------------------

    def _label(self) -> str:
        return f"{self.provider}:{self.name}"

    def _map_error(self, exc: BaseException, partial: str | None = None) -> NbmagicError:
        """Translate an SDK or transport exception into one clear, key-free message."""
        import openai

        where = f" at {self.base_url}" if self.provider != "openai" or self.base_url != _DEFAULT_OPENAI_URL else ""
        label = self._label()
        detail = redact(_server_message(exc))
        err: NbmagicError
        if isinstance(exc, openai.APITimeoutError):
            err = ModelTimeoutError(
                f"{label}{where} did not answer within {self.timeout:g} s (after {self.max_retries} retries). "
                "Try again, raise the timeout (%config NbMagic.request_timeout), or use a smaller model."
            )
        elif isinstance(exc, openai.APIConnectionError) or _is_transport_error(exc):
            dropped = partial is not None
            err = ServerUnreachableError(
                f"{label}: the connection{where} dropped mid-reply." if dropped else
                f"Cannot reach {label}{where or ' at ' + self.base_url}. Is the server running and the URL right?"
            )
        elif isinstance(exc, openai.AuthenticationError | openai.PermissionDeniedError):
            err = AuthenticationError(
                f"{label}{where} rejected the API key. Check OPENAI_API_KEY (or the key you passed)."
            )
        elif isinstance(exc, openai.NotFoundError):
            err = ModelNotFoundError(
                f"{label}{where}: model {self.name!r} not found ({detail}). "
                "List what the server offers with %nbmagic models or `python -m nbmagic doctor`."
            )
        elif isinstance(exc, openai.RateLimitError):
            err = RateLimitError(
                f"{label}{where} is rate-limiting requests (HTTP 429) after {self.max_retries} retries. "
                "Wait a moment, lower concurrency, or check your quota."
            )
        elif isinstance(exc, openai.BadRequestError | openai.UnprocessableEntityError):
            err = ConfigError(f"{label}{where} refused the request: {detail}")
        elif isinstance(exc, openai.APIStatusError):
            err = ServerError(
                f"{label}{where} failed with HTTP {exc.status_code} after {self.max_retries} retries: {detail}"
            )
        else:
            err = ServerError(f"{label}{where} failed: {type(exc).__name__}: {detail}")
        err.partial = partial
        return err


def _default_timeout() -> float:
    from nbmagic.config import settings

    return float(settings.request_timeout)


def _server_message(exc: BaseException) -> str:
    body = getattr(exc, "body", None)
    if isinstance(body, dict):
        inner = body.get("error", body)
        if isinstance(inner, dict) and inner.get("message"):
            return str(inner["message"])[:300]
    return str(exc)[:300]


def _is_transport_error(exc: BaseException) -> bool:
    module = type(exc).__module__ or ""
    return module.startswith(("httpx", "httpcore", "h11")) or isinstance(exc, ConnectionError)


def _rejects_stream_options(exc: BaseException) -> bool:
    import openai

    return isinstance(exc, openai.BadRequestError) and "stream_options" in str(exc)
