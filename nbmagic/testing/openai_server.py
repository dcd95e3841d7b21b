"""A real OpenAI-compatible HTTP server on loopback, scriptable per test.

It speaks enough of the OpenAI REST API for the ``openai`` SDK to use it over a
socket: ``POST /v1/chat/completions`` (plain and SSE streaming, with usage),
``GET /v1/models``, and Ollama's ``GET /api/tags`` for default-model discovery.
Replies come from a FIFO queue of scripted :class:`Reply` objects, else from a
responder function of the request. Latency, HTTP errors (429, 500, ...) and
dropped connections can be injected. Every request body is recorded.

It is shipped inside the package (not only the tests) so that examples, the
browser tests and ``python -m nbmagic.testing.openai_server`` can run the same
scripted model in another process.
"""

from __future__ import annotations

import argparse
import importlib
import json
import socket
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler
from typing import Any

from nbmagic.testing.loopback import LoopbackServer


@dataclass
class Reply:
    """One scripted answer (or failure) of the server."""

    text: str = ""
    status: int = 200
    delay: float = 0.0  # seconds before the response starts
    chunk_delay: float = 0.0  # seconds between streamed chunks
    disconnect: bool = False  # drop the connection (mid-stream when streaming)
    error_message: str = "injected failure"
    headers: dict[str, str] = field(default_factory=dict)
    finish_reason: str = "stop"
    #: function calls to return (non-streaming): [{"name": ..., "arguments": "<json>"}, ...]
    tool_calls: list[dict[str, str]] | None = None


Responder = Callable[[dict[str, Any]], "str | Reply"]


def count_words(text: str) -> int:
    """The server's token count: whitespace-separated words (deterministic, cheap)."""
    return len(text.split())


def last_user_message(request: dict[str, Any]) -> str:
    """The content of the last user message of a chat request."""
    for m in reversed(request.get("messages", [])):
        if m.get("role") == "user":
            return str(m.get("content", ""))
    return ""


def _echo(request: dict[str, Any]) -> str:
    return "echo: " + last_user_message(request)


class OpenAICompatServer(LoopbackServer):
    """Run with ``with OpenAICompatServer() as srv: ... srv.url ...``."""

    def __init__(
        self,
        responder: Responder | str | None = None,
        *,
        models: Iterable[str] = ("test-model",),
        latency: float = 0.0,
        api_key: str | None = None,
        reject_stream_options: bool = False,
        reject_tools: bool = False,
        host: str = "127.0.0.1",
        port: int = 0,
    ) -> None:
        self.models = list(models)
        self.latency = latency
        self.api_key = api_key
        #: answer 400 to requests carrying ``stream_options`` (like older vLLM / LM Studio)
        self.reject_stream_options = reject_stream_options
        #: answer 400 to requests carrying ``tools`` (a server or model without function calling)
        self.reject_tools = reject_tools
        self.requests: list[dict[str, Any]] = []
        self._queue: deque[Reply | str] = deque()
        self._responder: Responder = _echo
        self._lock = threading.Lock()
        self.set_responder(responder)
        super().__init__(self._handler_class(), host=host, port=port)
        self.in_flight = 0
        self.max_in_flight = 0

    # -- scripting ----------------------------------------------------------------

    def set_responder(self, responder: Responder | str | None) -> None:
        """Answer every unscripted request with a fixed text or a function of the request."""
        if responder is None:
            self._responder = _echo
        elif isinstance(responder, str):
            text = responder
            self._responder = lambda _req: text
        else:
            self._responder = responder

    def queue(self, *replies: Reply | str) -> None:
        """Script the next replies in order; the responder answers once they run out."""
        with self._lock:
            self._queue.extend(replies)

    def fail_next(self, status: int = 500, times: int = 1, **kwargs: Any) -> None:
        """Make the next ``times`` requests fail with HTTP ``status``."""
        self.queue(*[Reply(status=status, **kwargs) for _ in range(times)])

    def chat_requests(self) -> list[dict[str, Any]]:
        return [r["body"] for r in self.requests if r["path"].split("?")[0].endswith("/chat/completions")]

    def reset(self) -> None:
        with self._lock:
            self._queue.clear()
            self.requests.clear()
            self.max_in_flight = 0

    # -- lifecycle -----------------------------------------------------------------------

    @property
    def url(self) -> str:
        """The base URL to give an OpenAI client (ends in ``/v1``)."""
        return self.root_url + "/v1"

    # -- internals -------------------------------------------------------------------------

    def _next_reply(self, body: dict[str, Any]) -> Reply:
        with self._lock:
            scripted = self._queue.popleft() if self._queue else None
        if scripted is None:
            scripted = self._responder(body)
        return Reply(text=scripted) if isinstance(scripted, str) else scripted

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:  # silence per-request logging
                pass

            # -- plumbing --
            def _send_json(self, status: int, payload: Any, headers: dict[str, str] | None = None) -> None:
                data = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                for k, v in (headers or {}).items():
                    self.send_header(k, v)
                self.end_headers()
                self.wfile.write(data)

            def _error(self, status: int, message: str, headers: dict[str, str] | None = None) -> None:
                kind = {401: "invalid_request_error", 404: "not_found_error", 429: "rate_limit_error"}
                self._send_json(
                    status,
                    {"error": {"message": message, "type": kind.get(status, "server_error"), "code": status}},
                    headers,
                )

            def _authorized(self) -> bool:
                if server.api_key is None:
                    return True
                return (
                    self.headers.get("Authorization", "") == f"Bearer {server.api_key}"
                    or self.headers.get("api-key", "") == server.api_key  # Azure's header
                )

            def _drop(self) -> None:
                self.close_connection = True
                try:
                    self.connection.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

            # -- routes --
            def do_GET(self) -> None:
                server.requests.append({"path": self.path, "method": "GET", "body": {}})
                route = self.path.split("?")[0].rstrip("/")
                if route == "/api/tags":  # Ollama serves it at the root
                    self._send_json(200, {"models": [{"name": m, "model": m} for m in server.models]})
                elif route.endswith("/models"):
                    if not self._authorized():
                        return self._error(401, "Incorrect API key provided.")
                    data = [{"id": m, "object": "model", "created": 0, "owned_by": "loopback"} for m in server.models]
                    self._send_json(200, {"object": "list", "data": data})
                else:
                    self._error(404, f"no route {self.path}")

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                try:
                    body = json.loads(self.rfile.read(length) or b"{}")
                except json.JSONDecodeError:
                    return self._error(400, "body is not JSON")
                server.requests.append({"path": self.path, "method": "POST", "body": body})
                # Azure puts the deployment in the path and the API version in the query
                if not self.path.split("?")[0].rstrip("/").endswith("/chat/completions"):
                    return self._error(404, f"no route {self.path}")
                if not self._authorized():
                    return self._error(401, "Incorrect API key provided.")
                if body.get("model") not in server.models:
                    return self._error(404, f"The model `{body.get('model')}` does not exist.")
                if server.reject_stream_options and "stream_options" in body:
                    return self._error(400, "Unrecognized request argument supplied: stream_options")
                if server.reject_tools and body.get("tools"):
                    return self._error(400, "This model does not support tools")
                with server._lock:
                    server.in_flight += 1
                    server.max_in_flight = max(server.max_in_flight, server.in_flight)
                try:
                    self._complete(body)
                finally:
                    with server._lock:
                        server.in_flight -= 1

            def _complete(self, body: dict[str, Any]) -> None:
                reply = server._next_reply(body)
                delay = server.latency + reply.delay
                if delay:
                    time.sleep(delay)
                if reply.status != 200:
                    headers = {"retry-after-ms": "5", **reply.headers}
                    return self._error(reply.status, reply.error_message, headers)
                if reply.disconnect and not body.get("stream"):
                    return self._drop()
                text = reply.text
                for s in _stops(body.get("stop")):
                    if s and s in text:
                        text = text[: text.index(s)]
                max_tokens = body.get("max_tokens") or body.get("max_completion_tokens")
                finish = reply.finish_reason
                if max_tokens and count_words(text) > int(max_tokens):
                    text = " ".join(text.split()[: int(max_tokens)])
                    finish = "length"
                prompt_tokens = sum(count_words(str(m.get("content", ""))) for m in body.get("messages", []))
                usage = {
                    "prompt_tokens": prompt_tokens,
                    "completion_tokens": count_words(text),
                    "total_tokens": prompt_tokens + count_words(text),
                }
                cid = "chatcmpl-" + uuid.uuid4().hex[:12]
                if body.get("stream"):
                    return self._stream(body, reply, text, finish, usage, cid)
                message: dict[str, Any] = {"role": "assistant", "content": text}
                if reply.tool_calls:
                    message["content"] = text or None
                    message["tool_calls"] = [
                        {"id": f"call_{i}_{uuid.uuid4().hex[:8]}", "type": "function",
                         "function": {"name": c["name"], "arguments": c["arguments"]}}
                        for i, c in enumerate(reply.tool_calls)
                    ]
                    finish = "tool_calls"
                self._send_json(
                    200,
                    {
                        "id": cid,
                        "object": "chat.completion",
                        "created": int(time.time()),
                        "model": body["model"],
                        "choices": [{"index": 0, "message": message, "finish_reason": finish}],
                        "usage": usage,
                    },
                    reply.headers,
                )

            def _stream(
                self, body: dict[str, Any], reply: Reply, text: str, finish: str, usage: dict[str, int], cid: str
            ) -> None:
                self.send_response(200)
                self.send_header("Content-Type", "text/event-stream")
                self.send_header("Cache-Control", "no-cache")
                self.send_header("Connection", "close")
                self.end_headers()
                self.close_connection = True
                pieces = _split_keep_space(text)
                base = {"id": cid, "object": "chat.completion.chunk", "created": int(time.time()), "model": body["model"]}

                def send(payload: dict[str, Any]) -> None:
                    self.wfile.write(b"data: " + json.dumps(payload).encode() + b"\n\n")
                    self.wfile.flush()

                send({**base, "choices": [{"index": 0, "delta": {"role": "assistant", "content": ""}, "finish_reason": None}]})
                for i, piece in enumerate(pieces):
                    if reply.disconnect and i >= max(1, len(pieces) // 2):
                        return self._drop()
                    if reply.chunk_delay:
                        time.sleep(reply.chunk_delay)
                    send({**base, "choices": [{"index": 0, "delta": {"content": piece}, "finish_reason": None}]})
                if reply.disconnect:
                    return self._drop()
                send({**base, "choices": [{"index": 0, "delta": {}, "finish_reason": finish}]})
                if (body.get("stream_options") or {}).get("include_usage"):
                    send({**base, "choices": [], "usage": usage})
                self.wfile.write(b"data: [DONE]\n\n")
                self.wfile.flush()

        return Handler


def _stops(stop: Any) -> list[str]:
    if stop is None:
        return []
    return [stop] if isinstance(stop, str) else [str(s) for s in stop]


def _split_keep_space(text: str) -> list[str]:
    """Split into word-sized chunks that concatenate back to ``text`` exactly."""
    pieces: list[str] = []
    current = ""
    for ch in text:
        if ch.isspace() and current and not current[-1].isspace():
            pieces.append(current)
            current = ch
        else:
            current += ch
    if current:
        pieces.append(current)
    return pieces


def _load_responder(ref: str) -> Responder:
    module, _, attr = ref.partition(":")
    return getattr(importlib.import_module(module), attr or "respond")


def main(argv: list[str] | None = None) -> None:
    """Serve until interrupted: ``python -m nbmagic.testing.openai_server --port 8765``."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--model", action="append", default=None, help="model id to serve (repeatable)")
    ap.add_argument("--responder", default=None, help="module:function answering each request")
    ap.add_argument("--latency", type=float, default=0.0)
    ap.add_argument("--api-key", default=None, help="require this bearer key")
    args = ap.parse_args(argv)
    responder = _load_responder(args.responder) if args.responder else None
    srv = OpenAICompatServer(
        responder, models=args.model or ["test-model"], latency=args.latency, port=args.port, api_key=args.api_key
    )
    with srv:
        print(srv.url, flush=True)
        try:
            while True:
                time.sleep(3600)
        except KeyboardInterrupt:
            pass


if __name__ == "__main__":
    main()
