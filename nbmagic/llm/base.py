"""The one chat interface every backend implements.

Engines talk to :class:`ChatModel` only: ``chat`` (sync), ``achat`` (async),
token streaming through an ``on_token`` callback, stop sequences, sampling
parameters, and usage counts. Backends implement :meth:`ChatModel._chat`;
the base class normalises messages, times the call and keeps the usage tally
thread-safe, so every backend accounts the same way.
"""

from __future__ import annotations

import asyncio
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

from nbmagic.errors import ConfigError, NbmagicError
from nbmagic.llm.vision import accepts_images, text_only
from nbmagic.text import valid_utf8

TokenCallback = Callable[[str], None]
MessagesLike = str | Sequence[Mapping[str, Any]]

_ROLES = frozenset({"system", "user", "assistant", "tool"})


def normalize_messages(messages: MessagesLike, *, images: bool = False) -> list[dict[str, str]]:
    """Accept a bare prompt or OpenAI-style message dicts; return validated dicts.

    A content may also be a list of ``text`` / ``image_url`` parts (a figure for a vision
    model, :mod:`nbmagic.llm.vision`): kept for a model that takes ``images``, folded to its
    text for every other one.
    """
    if isinstance(messages, str):
        return [{"role": "user", "content": messages}]
    if isinstance(messages, Mapping):  # one message dict on its own
        messages = [messages]
    elif not isinstance(messages, Sequence):
        raise ConfigError(
            f"Messages must be a prompt string or a list of {{'role': ..., 'content': ...}} dicts, "
            f"not {type(messages).__name__}."
        )
    out: list[dict[str, str]] = []
    for i, m in enumerate(messages):
        role = m.get("role") if isinstance(m, Mapping) else None
        content = m.get("content") if isinstance(m, Mapping) else None
        if isinstance(content, list) and all(isinstance(p, Mapping) and p.get("type") in ("text", "image_url")
                                             for p in content):
            if images:
                out.append({"role": role, "content": [dict(p) for p in content]})  # type: ignore[dict-item]
                continue
            content = text_only(content)
        if role not in _ROLES or not isinstance(content, str):
            raise ConfigError(
                f"Message {i} must be a dict with a role in {sorted(_ROLES)} and a string content."
            )
        # valid UTF-8 for every backend: a lone surrogate (a file name that is not UTF-8) is escaped
        out.append({"role": role, "content": valid_utf8(content)})
    if not out:
        raise ConfigError("No messages to send: the prompt is empty.")
    return out


@dataclass
class Usage:
    """Token and call counts; add them up with ``+``."""

    prompt_tokens: int = 0
    completion_tokens: int = 0
    calls: int = 0

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens

    def __add__(self, other: Usage) -> Usage:
        return Usage(
            self.prompt_tokens + other.prompt_tokens,
            self.completion_tokens + other.completion_tokens,
            self.calls + other.calls,
        )

    def __sub__(self, other: Usage) -> Usage:
        return Usage(
            self.prompt_tokens - other.prompt_tokens,
            self.completion_tokens - other.completion_tokens,
            self.calls - other.calls,
        )

    def as_dict(self) -> dict[str, int]:
        return {
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
            "total_tokens": self.total_tokens,
            "calls": self.calls,
        }


@dataclass(frozen=True)
class GenerationParams:
    """Sampling and stopping parameters; ``None`` means the backend's default."""

    temperature: float | None = None
    top_p: float | None = None
    max_tokens: int | None = None
    stop: tuple[str, ...] = ()
    extra: Mapping[str, Any] = field(default_factory=dict)

    def standard(self) -> dict[str, Any]:
        """The standard parameters that are set, under the OpenAI names most backends share."""
        named = {"temperature": self.temperature, "top_p": self.top_p, "max_tokens": self.max_tokens}
        out: dict[str, Any] = {k: v for k, v in named.items() if v is not None}
        if self.stop:
            out["stop"] = list(self.stop)
        return out


@dataclass(frozen=True)
class ChatResult:
    """One reply: its text, what it cost, and why it ended."""

    text: str
    model: str
    usage: Usage
    finish_reason: str | None = None
    seconds: float = 0.0


class ToolsUnsupportedError(NbmagicError):
    """The model or its server does not take function tools: the caller uses another protocol.

    Raised only for that (a refused ``tools`` request, a backend without tool calling), never
    for a timeout, a rate limit or a dropped connection, so catching it alone is a safe way
    to fall back."""


@dataclass(frozen=True)
class ToolCall:
    """One function call the model asked for (``arguments`` as the JSON text it sent)."""

    id: str
    name: str
    arguments: str


@dataclass(frozen=True)
class ToolReply:
    """A reply to a request that offered tools: text and/or calls."""

    text: str
    calls: tuple[ToolCall, ...]
    usage: Usage
    finish_reason: str | None = None
    seconds: float = 0.0


class ChatModel(ABC):
    """A chat model behind any backend.

    Subclasses set ``backend`` and implement :meth:`_chat`; they may override
    :meth:`_achat` for native async and :meth:`count_tokens` for exact counts.
    ``supports_latent`` is true only for models that expose hidden states and
    input embeddings (see :class:`nbmagic.llm.hf.HFChatModel`). ``supports_tools``
    is true for backends that implement :meth:`_chat_tools` (function calling);
    :attr:`context_window` is the prompt window in tokens where the backend knows it.
    """

    backend: ClassVar[str] = "base"
    supports_latent: ClassVar[bool] = False
    supports_tools: ClassVar[bool] = False

    def __init__(self, name: str, *, default_params: Mapping[str, Any] | None = None) -> None:
        if default_params is not None and not isinstance(default_params, Mapping):
            raise ConfigError(f"default_params must be a dict of generation options, not {default_params!r}.")
        self.name = name
        self.default_params = dict(default_params or {})
        self.usage = Usage()
        self._usage_lock = threading.Lock()

    # -- public API ---------------------------------------------------------------

    def chat(
        self,
        messages: MessagesLike,
        *,
        temperature: float | None = None,
        top_p: float | None = None,
        max_tokens: int | None = None,
        stop: str | Sequence[str] | None = None,
        on_token: TokenCallback | None = None,
        **extra: Any,
    ) -> ChatResult:
        """Send ``messages`` and return the reply; stream tokens to ``on_token`` if given."""
        msgs = normalize_messages(messages, images=accepts_images(self))
        params = self._params(temperature, top_p, max_tokens, stop, extra)
        t0 = time.perf_counter()
        result = self._chat(msgs, params, on_token)
        return self._account(result, time.perf_counter() - t0)

    async def achat(
        self,
        messages: MessagesLike,
        *,
        temperature: float | None = None,
        top_p: float | None = None,
        max_tokens: int | None = None,
        stop: str | Sequence[str] | None = None,
        on_token: TokenCallback | None = None,
        **extra: Any,
    ) -> ChatResult:
        """Async twin of :meth:`chat`."""
        msgs = normalize_messages(messages, images=accepts_images(self))
        params = self._params(temperature, top_p, max_tokens, stop, extra)
        t0 = time.perf_counter()
        result = await self._achat(msgs, params, on_token)
        return self._account(result, time.perf_counter() - t0)

    def chat_tools(
        self,
        messages: Sequence[Mapping[str, Any]],
        tools: Sequence[Mapping[str, Any]],
        *,
        temperature: float | None = None,
        max_tokens: int | None = None,
        tool_choice: str = "auto",
    ) -> ToolReply:
        """One call offering ``tools`` (OpenAI function-tool format; ``messages`` may carry
        ``tool_calls`` and ``tool`` turns). Errors are the backend's mapped errors; a model
        without tool calling raises :class:`ToolsUnsupportedError`. Usage is counted as for
        :meth:`chat`."""
        if not self.supports_tools:
            raise ToolsUnsupportedError(f"{self.backend}:{self.name} does not take tool calls.")
        params = self._params(temperature, None, max_tokens, None, {})
        t0 = time.perf_counter()
        reply = self._chat_tools([dict(m) for m in messages], [dict(t) for t in tools], params, tool_choice)
        usage = Usage(reply.usage.prompt_tokens, reply.usage.completion_tokens, 1)
        with self._usage_lock:
            self.usage = self.usage + usage
        return ToolReply(reply.text, tuple(reply.calls), usage, reply.finish_reason, time.perf_counter() - t0)

    @property
    def context_window(self) -> int | None:
        """The prompt window in tokens, where the backend knows it (``None``: unknown)."""
        return None

    def count_tokens(self, text: str) -> int:
        """Approximate token count (about four characters a token) unless overridden."""
        return max(1, (len(text) + 3) // 4) if text else 0

    def close(self) -> None:  # optional for backends, hence not abstract
        """Release clients, files or GPU memory held by the backend."""
        return None

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.backend}:{self.name}>"

    # -- for subclasses --------------------------------------------------------------

    @abstractmethod
    def _chat(
        self, messages: list[dict[str, str]], params: GenerationParams, on_token: TokenCallback | None
    ) -> ChatResult:
        """Produce one reply. Usage in the result is this call's usage."""

    async def _achat(
        self, messages: list[dict[str, str]], params: GenerationParams, on_token: TokenCallback | None
    ) -> ChatResult:
        return await asyncio.to_thread(self._chat, messages, params, on_token)

    def _chat_tools(
        self, messages: list[dict[str, Any]], tools: list[dict[str, Any]], params: GenerationParams, tool_choice: str
    ) -> ToolReply:
        """Produce one reply offering tools (backends with ``supports_tools``)."""
        raise ToolsUnsupportedError(f"{self.backend}:{self.name} does not take tool calls.")

    # -- internals ---------------------------------------------------------------------

    def _params(
        self,
        temperature: float | None,
        top_p: float | None,
        max_tokens: int | None,
        stop: str | Sequence[str] | None,
        extra: Mapping[str, Any],
    ) -> GenerationParams:
        d = self.default_params
        stops = _stop_tuple(stop if stop is not None else d.get("stop"))
        merged_extra = {k: v for k, v in d.items() if k not in _STANDARD_PARAMS}
        merged_extra.update(extra)
        params = GenerationParams(
            temperature=temperature if temperature is not None else d.get("temperature"),
            top_p=top_p if top_p is not None else d.get("top_p"),
            max_tokens=max_tokens if max_tokens is not None else d.get("max_tokens"),
            stop=stops,
            extra=merged_extra,
        )
        _validate(params)
        return params

    def _account(self, result: ChatResult, seconds: float) -> ChatResult:
        with self._usage_lock:
            self.usage = self.usage + Usage(
                result.usage.prompt_tokens, result.usage.completion_tokens, 1
            )
        return ChatResult(
            text=result.text,
            model=result.model or self.name,
            usage=Usage(result.usage.prompt_tokens, result.usage.completion_tokens, 1),
            finish_reason=result.finish_reason,
            seconds=seconds,
        )


def window_of(model: Any, override: int | None = None) -> int | None:
    """A model's prompt window in tokens: ``override``, else :attr:`ChatModel.context_window`,
    else a backend's ``n_ctx`` (llama.cpp), else ``None`` (unknown: remote APIs). The one probe
    every prompt fitter uses."""
    if override:
        return override
    for attr in ("context_window", "n_ctx"):
        try:
            value = getattr(model, attr, None)
        except Exception:  # a backend that must load to know, or a closed one
            value = None
        if isinstance(value, int) and not isinstance(value, bool) and value > 0:
            return value
    return None


_STANDARD_PARAMS = frozenset({"temperature", "top_p", "max_tokens", "stop"})


def _validate(params: GenerationParams) -> None:
    """Refuse values every backend would reject (or, worse, read differently: llama.cpp takes
    ``max_tokens=0`` as "no limit"), before anything is sent."""
    t, p, n = params.temperature, params.top_p, params.max_tokens
    if t is not None and (not isinstance(t, int | float) or isinstance(t, bool) or t < 0):
        raise ConfigError(f"temperature must be a number >= 0, not {t!r}.")
    if p is not None and (not isinstance(p, int | float) or isinstance(p, bool) or not 0 < p <= 1):
        raise ConfigError(f"top_p must be a number in (0, 1], not {p!r}.")
    if n is not None and (not isinstance(n, int) or isinstance(n, bool) or n < 1):
        raise ConfigError(f"max_tokens must be a whole number >= 1, not {n!r}.")


def _stop_tuple(stop: str | Sequence[str] | None) -> tuple[str, ...]:
    """One stop string or several, as a tuple without empty strings (servers reject those)."""
    if stop is None:
        return ()
    if isinstance(stop, str):
        return (stop,) if stop else ()
    if not isinstance(stop, Sequence) or not all(isinstance(s, str) for s in stop):
        raise ConfigError(f"stop must be a string or a list of strings, not {stop!r}.")
    return tuple(s for s in stop if s)


def apply_stop(text: str, stop: Sequence[str]) -> tuple[str, bool]:
    """Cut ``text`` at the first stop sequence; say whether one was found."""
    cut = min((i for s in stop if s and (i := text.find(s)) >= 0), default=-1)
    return (text[:cut], True) if cut >= 0 else (text, False)
