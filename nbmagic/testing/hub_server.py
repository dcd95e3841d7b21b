"""A loopback stand-in for the Hugging Face hub's file-download protocol (``HF_ENDPOINT``).

``huggingface_hub.hf_hub_download`` talks to it exactly as to the hub:

- ``HEAD /<org>/<repo>/resolve/<revision>/<file>`` answers with the headers it reads:
  ``X-Repo-Commit`` (the commit the revision points to), ``X-Linked-Etag`` (an LFS file's sha256,
  which names the cached blob), ``X-Linked-Size``, ``ETag``, ``Content-Length``,
  ``Accept-Ranges: bytes``;
- ``GET`` of the same URL streams the bytes, honouring ``Range: bytes=N-`` with ``206 Partial
  Content`` (that is how huggingface_hub resumes a dropped transfer);
- an unknown repo, revision or file is a ``404`` with ``X-Error-Code: EntryNotFound``.

A test can cut the next N transfers after some bytes (``cut_after``), serve the wrong bytes
under the right sha256 (``corrupt``), and read back every request (``requests``). Files are
streamed from disk in 1 MB chunks, so serving a 491 MB GGUF costs no memory.
``python -m nbmagic.testing.hub_server --file org/repo/name.gguf=/path/x.gguf`` serves files
until interrupted and prints the ``HF_ENDPOINT`` to use.
"""

from __future__ import annotations

import argparse
import hashlib
import re
import socket
import threading
import time
import urllib.parse
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any

from nbmagic.testing.loopback import LoopbackServer

COMMIT = "0123456789abcdef0123456789abcdef01234567"
_RESOLVE = re.compile(r"^/(?P<repo>[^/]+/[^/]+)/resolve/(?P<rev>[^/]+)/(?P<file>.+)$")
_CHUNK = 1 << 20


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(_CHUNK):
            digest.update(block)
    return digest.hexdigest()


@dataclass
class HubEntry:
    """One file the server holds."""

    path: Path
    sha256: str
    size: int


@dataclass
class Seen:
    """One request the server received."""

    method: str
    path: str
    range: str | None
    status: int = 0


@dataclass
class _Faults:
    cut_after: int | None = None  # bytes sent before the connection is dropped
    cuts_left: int = 0
    corrupt: bool = False
    delay: float = 0.0
    extra: dict[str, Any] = field(default_factory=dict)


class HubServer(LoopbackServer):
    """The hub on 127.0.0.1; ``with HubServer() as hub: hub.add("org/repo", "f.gguf", path)``."""

    def __init__(self, port: int = 0, commit: str = COMMIT) -> None:
        self.commit = commit
        self._files: dict[tuple[str, str], HubEntry] = {}
        self._lock = threading.Lock()
        self._faults = _Faults()
        self.requests: list[Seen] = []
        super().__init__(self._handler_class(), port=port)

    # -- content and faults ----------------------------------------------------------------------

    def add(self, repo: str, filename: str, path: str | Path, sha256: str | None = None) -> HubEntry:
        """Serve ``path`` as ``repo``'s ``filename`` (its sha256 is computed unless given)."""
        path = Path(path)
        entry = HubEntry(path, sha256 or sha256_file(path), path.stat().st_size)
        with self._lock:
            self._files[(repo, filename)] = entry
        return entry

    def cut_after(self, nbytes: int, times: int = 1) -> None:
        """Drop the connection after ``nbytes`` of the body, for the next ``times`` GETs."""
        with self._lock:
            self._faults.cut_after, self._faults.cuts_left = nbytes, times

    def corrupt(self, on: bool = True) -> None:
        """Serve other bytes (same size) under the file's real sha256."""
        with self._lock:
            self._faults.corrupt = on

    def gets(self) -> list[Seen]:
        """The file transfers (GETs of ``/resolve/`` URLs; huggingface_hub also asks ``/api/...``)."""
        return [r for r in self.requests if r.method == "GET" and "/resolve/" in r.path]

    # -- lifecycle --------------------------------------------------------------------------------

    @property
    def endpoint(self) -> str:
        """The value for ``HF_ENDPOINT``."""
        return self.root_url

    # -- protocol ---------------------------------------------------------------------------------

    def _lookup(self, url_path: str) -> HubEntry | None:
        match = _RESOLVE.match(urllib.parse.unquote(url_path.split("?", 1)[0]))
        if match is None or match["rev"] not in ("main", self.commit):
            return None
        with self._lock:
            return self._files.get((match["repo"], match["file"]))

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:
                pass

            def _record(self, status: int) -> None:
                with server._lock:
                    server.requests.append(Seen(self.command, self.path, self.headers.get("Range"), status))

            def _not_found(self) -> None:
                body = b'{"error":"Entry not found"}'
                self._record(404)
                self.send_response(404)
                self.send_header("X-Error-Code", "EntryNotFound")
                self.send_header("X-Error-Message", "Entry not found")
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(body)

            def _headers(self, entry: HubEntry, status: int, length: int, first: int) -> None:
                self.send_response(status)
                self.send_header("X-Repo-Commit", server.commit)
                self.send_header("X-Linked-Etag", f'"{entry.sha256}"')
                self.send_header("X-Linked-Size", str(entry.size))
                self.send_header("ETag", f'"{entry.sha256}"')
                self.send_header("Accept-Ranges", "bytes")
                self.send_header("Content-Type", "application/octet-stream")
                self.send_header("Content-Length", str(length))
                if status == 206:
                    self.send_header("Content-Range", f"bytes {first}-{entry.size - 1}/{entry.size}")
                self.end_headers()

            def do_HEAD(self) -> None:
                entry = server._lookup(self.path)
                if entry is None:
                    return self._not_found()
                self._record(200)
                self._headers(entry, 200, entry.size, 0)

            def do_GET(self) -> None:
                entry = server._lookup(self.path)
                if entry is None:
                    return self._not_found()
                first = 0
                wanted = re.match(r"bytes=(\d+)-$", self.headers.get("Range") or "")
                if wanted:
                    first = min(int(wanted[1]), entry.size)
                status = 206 if wanted else 200
                with server._lock:
                    faults = server._faults
                    cut = faults.cut_after if faults.cuts_left > 0 else None
                    if cut is not None:
                        faults.cuts_left -= 1
                    corrupt = faults.corrupt
                self._record(status)
                self._headers(entry, status, entry.size - first, first)
                sent = 0
                with open(entry.path, "rb") as fh:
                    fh.seek(first)
                    while block := fh.read(_CHUNK):
                        if corrupt:
                            block = bytes(b ^ 0xFF for b in block[:64]) + block[64:]
                        if cut is not None and sent + len(block) > cut:
                            self.wfile.write(block[: max(cut - sent, 0)])
                            self.wfile.flush()
                            self.close_connection = True
                            try:  # mid-body: the client sees a short read
                                self.connection.shutdown(socket.SHUT_RDWR)
                            except OSError:
                                pass
                            return
                        try:
                            self.wfile.write(block)
                        except OSError:  # the client went away
                            return
                        sent += len(block)

        return Handler


def main(argv: list[str] | None = None) -> None:
    """Serve files until interrupted; prints the HF_ENDPOINT to use."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--file", action="append", required=True, metavar="ORG/REPO/FILE=PATH",
                    help="serve PATH as ORG/REPO's FILE (repeatable)")
    args = ap.parse_args(argv)
    hub = HubServer(port=args.port)
    for item in args.file:
        name, _, path = item.partition("=")
        org, repo, filename = name.split("/", 2)
        entry = hub.add(f"{org}/{repo}", filename, path)
        print(f"{org}/{repo}/{filename}  sha256 {entry.sha256}  {entry.size} bytes", flush=True)
    with hub:
        print(f"HF_ENDPOINT={hub.endpoint}", flush=True)
        try:
            while True:
                time.sleep(3600)
        except KeyboardInterrupt:
            pass


if __name__ == "__main__":
    main()
