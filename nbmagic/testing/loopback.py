"""The lifecycle every loopback test server shares: a threaded HTTP server on 127.0.0.1.

The OpenAI-compatible server (:mod:`.openai_server`) and the hub server (:mod:`.hub_server`)
differ only in what their handler answers; binding, the serving thread, a stop that takes
milliseconds and the context-manager protocol are the same, so they live here once.
"""

from __future__ import annotations

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TypeVar

T = TypeVar("T", bound="LoopbackServer")


class LoopbackServer:
    """A ``ThreadingHTTPServer`` serving ``handler`` on ``host:port`` (0: any free port) in a daemon thread."""

    #: the serving thread's name, seen in thread dumps when a test hangs
    thread_name = "loopback"

    def __init__(self, handler: type[BaseHTTPRequestHandler], host: str = "127.0.0.1", port: int = 0) -> None:
        self._httpd = ThreadingHTTPServer((host, port), handler)
        self._httpd.daemon_threads = True
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        return int(self._httpd.server_address[1])

    @property
    def root_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self: T) -> T:
        if self._thread is None:
            # a short poll interval makes stop() take milliseconds, not half a second
            self._thread = threading.Thread(
                target=self._httpd.serve_forever, kwargs={"poll_interval": 0.02}, name=self.thread_name, daemon=True
            )
            self._thread.start()
        return self

    def stop(self) -> None:
        if self._thread is not None:
            self._httpd.shutdown()
            self._thread.join(timeout=5)
            self._thread = None
        self._httpd.server_close()

    def __enter__(self: T) -> T:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
