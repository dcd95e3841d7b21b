"""One GGUF file from the Hugging Face hub: is the hub there, is the file cached, fetch it, check it.

This module is the network boundary of the default model (:mod:`nbmagic.llm.hub_default` holds
the policy: when to use it, consent, messages). It never decides anything on its own and never
downloads unless :func:`download` is called.

- **Where**: ``HF_ENDPOINT`` (default ``https://huggingface.co``), read at call time, so a test
  or a notebook that sets it after import is honoured (``huggingface_hub`` reads it at import).
- **Reachable?** One ``HEAD`` of the file's ``/resolve/`` URL, in a daemon thread joined with a
  short timeout (default 2 s): DNS look-ups ignore socket timeouts, a thread does not hang. The
  answer is remembered per URL for the life of the process (once per session, not per call).
  ``urllib`` takes ``HTTP(S)_PROXY`` / ``NO_PROXY`` from the environment, as ``huggingface_hub``
  does.
- **Cached?** Read straight from huggingface_hub's cache layout (no import, no network):
  ``<cache>/models--<org>--<name>/refs/<revision>`` holds a commit, and
  ``snapshots/<commit>/<file>`` is the file.
- **Fetch**: ``huggingface_hub.hf_hub_download`` (the ``gguf`` extra brings it): same cache,
  ``HF_ENDPOINT``, proxies, ``HF_TOKEN``, retries that resume a dropped transfer with ``Range``.
  Progress goes to a callback, ``on_progress(done_bytes, total_bytes)``; only ``ui/`` draws bars.
- **Check**: the file's sha256 must equal the pinned one (:attr:`HubFile.sha256`); when a target
  pins none, the hub's own LFS sha256 (the ``X-Linked-Etag`` that names the cached blob) is the
  reference. A mismatch removes the file and raises :class:`ChecksumMismatchError`. A verified
  file is remembered by (path, size, mtime) in nbmagic's cache, so a 1 GB file is hashed once.
"""

from __future__ import annotations

import hashlib
import inspect
import json
import os
import re
import shutil
import threading
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from nbmagic.errors import NbmagicError

DEFAULT_ENDPOINT = "https://huggingface.co"
REACH_TIMEOUT = 2.0
_HEX64 = re.compile(r"[0-9a-f]{64}")
_HEX40 = re.compile(r"[0-9a-f]{40}")

ProgressCallback = Callable[[int, "int | None"], None]


class ChecksumMismatchError(NbmagicError):
    """A downloaded file is not the one pinned in the code; it was removed."""


@dataclass(frozen=True)
class HubFile:
    """A file in a hub repository, and what it must hash to."""

    repo: str  # "Qwen/Qwen2.5-Coder-1.5B-Instruct-GGUF"
    filename: str
    revision: str = "main"
    sha256: str | None = None  # None: the hub's LFS sha256 is the reference
    size: int | None = None  # bytes, for the consent question and the disk check before asking the hub
    title: str = ""
    license: str = ""

    @property
    def label(self) -> str:
        return self.title or f"{self.repo}/{self.filename}"

    def url(self, endpoint: str) -> str:
        quoted = urllib.parse.quote(self.filename)
        return f"{endpoint.rstrip('/')}/{self.repo}/resolve/{urllib.parse.quote(self.revision, safe='')}/{quoted}"


# -- where ----------------------------------------------------------------------------------------


def _truthy(value: str | None) -> bool:
    return (value or "").strip().lower() in ("1", "true", "yes", "on")


def hub_endpoint(env: Mapping[str, str] | None = None) -> str:
    env = os.environ if env is None else env
    return (env.get("HF_ENDPOINT") or DEFAULT_ENDPOINT).rstrip("/")


def hub_offline(env: Mapping[str, str] | None = None) -> str | None:
    """The variable that puts the hub offline (``HF_HUB_OFFLINE=1``...), or None."""
    env = os.environ if env is None else env
    for name in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"):
        if _truthy(env.get(name)):
            return f"{name}={env.get(name)}"
    return None


def hub_cache_dir(env: Mapping[str, str] | None = None) -> Path:
    """huggingface_hub's cache folder, by its own rules: HF_HUB_CACHE > HF_HOME/hub > XDG/~/.cache."""
    env = os.environ if env is None else env
    if env.get("HF_HUB_CACHE"):
        return Path(env["HF_HUB_CACHE"]).expanduser()
    home = env.get("HF_HOME") or os.path.join(env.get("XDG_CACHE_HOME") or "~/.cache", "huggingface")
    return Path(home).expanduser() / "hub"


# -- reachable? -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Reach:
    """What one HEAD of a file's URL said."""

    ok: bool
    detail: str  # "HTTP 302", "no answer within 2 s", "URLError: [Errno -3] ..."
    size: int | None = None  # X-Linked-Size (LFS) or Content-Length
    etag: str | None = None  # X-Linked-Etag (the LFS sha256) or ETag


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: Any, **kwargs: Any) -> None:  # the hub's 302 to its CDN is an answer
        return None


_REACH: dict[str, Reach] = {}
_REACH_LOCK = threading.Lock()


def _from_headers(status: int, headers: Any) -> Reach:
    def get(name: str) -> str | None:
        value = headers.get(name) if headers is not None else None
        return str(value) if value else None

    size = get("X-Linked-Size") or (get("Content-Length") if status < 300 else None)
    etag = (get("X-Linked-Etag") or get("ETag") or "").strip().removeprefix("W/").strip('"') or None
    return Reach(status < 400, f"HTTP {status}", int(size) if size and size.isdigit() else None, etag)


def _head(url: str, timeout: float) -> Reach:
    request = urllib.request.Request(url, method="HEAD", headers={"Accept-Encoding": "identity", "User-Agent": "nbmagic"})
    token = os.environ.get("HF_TOKEN")
    if token:
        request.add_header("Authorization", f"Bearer {token}")
    opener = urllib.request.build_opener(_NoRedirect)  # ProxyHandler (env proxies) is in by default
    try:
        with opener.open(request, timeout=timeout) as resp:
            return _from_headers(resp.status, resp.headers)
    except urllib.error.HTTPError as exc:  # a 3xx (redirect not followed) or an error status: the hub answered
        return _from_headers(exc.code, exc.headers)
    except (OSError, ValueError) as exc:
        reason = getattr(exc, "reason", None) or exc
        return Reach(False, f"{type(exc).__name__}: {reason}")


def probe(target: HubFile, endpoint: str | None = None, *, timeout: float = REACH_TIMEOUT, fresh: bool = False) -> Reach:
    """HEAD the file's URL once per process (``fresh`` asks again); never waits longer than ``timeout``."""
    url = target.url(endpoint or hub_endpoint())
    with _REACH_LOCK:
        if url in _REACH and not fresh:
            return _REACH[url]
    box: list[Reach] = []
    worker = threading.Thread(target=lambda: box.append(_head(url, timeout)), daemon=True, name="nbmagic-hub-probe")
    worker.start()
    worker.join(timeout + 0.5)
    result = box[0] if box else Reach(False, f"no answer within {timeout:g} s")
    with _REACH_LOCK:
        _REACH[url] = result
    return result


def forget_probes() -> None:
    """Forget what :func:`probe` learnt (a notebook that went online, a test)."""
    with _REACH_LOCK:
        _REACH.clear()


# -- cached? -----------------------------------------------------------------------------------------


def _repo_folder(target: HubFile, cache_dir: Path) -> Path:
    return cache_dir / ("models--" + target.repo.replace("/", "--"))


def cached_file(target: HubFile, cache_dir: Path | None = None) -> Path | None:
    """The file in huggingface_hub's cache, or None; reads two small files, no network."""
    folder = _repo_folder(target, cache_dir or hub_cache_dir())
    commit = target.revision
    if not _HEX40.fullmatch(commit):
        try:
            commit = (folder / "refs" / target.revision).read_text(encoding="utf-8").strip()
        except OSError:
            return None
    path = folder / "snapshots" / commit / target.filename
    return path if path.is_file() else None


def stale_partials(target: HubFile, cache_dir: Path | None = None) -> list[Path]:
    """Partial downloads left in the cache's blob folder (a process killed mid-download)."""
    blobs = _repo_folder(target, cache_dir or hub_cache_dir()) / "blobs"
    return sorted(blobs.glob("*.incomplete")) if blobs.is_dir() else []


# -- check --------------------------------------------------------------------------------------------


def _nbmagic_cache() -> Path:
    from nbmagic.llm.gguf_hf import cache_root

    return cache_root()


def expected_sha256(target: HubFile, path: Path, hub_sha256: str | None = None) -> str | None:
    """The pinned sha256, else the hub's LFS sha256: the name of the cached blob, or what the hub
    said (``hub_sha256``, for caches without symlinks); None if there is none of them."""
    if target.sha256:
        return target.sha256.lower()
    name = path.resolve().name
    if _HEX64.fullmatch(name):
        return name
    return hub_sha256.lower() if hub_sha256 and _HEX64.fullmatch(hub_sha256.lower()) else None


def sha256_of(path: Path, chunk: int = 4 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def _stamp(path: Path) -> dict[str, Any]:
    real = path.resolve()
    st = real.stat()
    return {"path": str(real), "size": st.st_size, "mtime_ns": st.st_mtime_ns}


def verify(target: HubFile, path: Path, hub_sha256: str | None = None) -> str:
    """Return the file's sha256 if it is the expected one; else remove it and raise one message."""
    expected = expected_sha256(target, path, hub_sha256)
    if expected is None:
        raise ChecksumMismatchError(
            f"{target.label}: no sha256 to check {path} against (none pinned, and the hub named none); "
            "not using it."
        )
    stamp_file = _nbmagic_cache() / "verified" / f"{expected}.json"
    stamp = _stamp(path)
    try:
        if json.loads(stamp_file.read_text(encoding="utf-8")) == stamp:
            return expected
    except (OSError, ValueError):
        pass
    actual = sha256_of(path)
    if actual != expected:
        remove(path)
        raise ChecksumMismatchError(
            f"Refused {target.label}: its sha256 is {actual[:16]}..., not the pinned {expected[:16]}...; "
            "the file was removed (a corrupted download, or the hub serves a different file)."
        )
    try:
        stamp_file.parent.mkdir(parents=True, exist_ok=True)
        stamp_file.write_text(json.dumps(stamp), encoding="utf-8")
    except OSError:  # a read-only cache only costs a re-hash next time
        pass
    return expected


def remove(path: Path) -> None:
    """Remove a cached file: the snapshot entry and the blob it points to."""
    real = path.resolve()
    for p in {path, real}:
        try:
            p.unlink()
        except OSError:
            pass


# -- fetch ---------------------------------------------------------------------------------------------


def free_bytes(folder: Path) -> int | None:
    """Free space where ``folder`` is (or would be created)."""
    probe_dir = folder
    while not probe_dir.exists() and probe_dir.parent != probe_dir:
        probe_dir = probe_dir.parent
    try:
        return shutil.disk_usage(probe_dir).free
    except OSError:
        return None


class _ProgressBar:
    """Stands in for tqdm inside ``hf_hub_download`` and forwards each update to a callback."""

    def __init__(self, callback: ProgressCallback, total: int | None = None, initial: int = 0, **_: Any) -> None:
        self.callback, self.total, self.n = callback, total, initial
        self.callback(self.n, self.total)

    def update(self, n: float = 1) -> None:
        self.n += int(n)
        self.callback(self.n, self.total)

    def close(self) -> None:
        pass

    def __enter__(self) -> _ProgressBar:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _progress_class(callback: ProgressCallback) -> type:
    return type("NbmagicProgress", (_ProgressBar,), {"__init__": lambda self, **kw: _ProgressBar.__init__(self, callback, **kw)})


def hub_installed() -> bool:
    import importlib.util

    return importlib.util.find_spec("huggingface_hub") is not None


def download(
    target: HubFile,
    *,
    endpoint: str | None = None,
    cache_dir: Path | None = None,
    on_progress: ProgressCallback | None = None,
) -> Path:
    """Fetch ``target`` into huggingface_hub's cache and check it; return the verified file.

    Raises :class:`ChecksumMismatchError` (file removed) or whatever huggingface_hub raises for
    the network; the caller turns those into its one line.
    """
    from huggingface_hub import hf_hub_download

    cache = cache_dir or hub_cache_dir()
    for partial in stale_partials(target, cache):  # left by a killed process; never resumable
        partial.unlink(missing_ok=True)
    kwargs: dict[str, Any] = {
        "repo_id": target.repo,
        "filename": target.filename,
        "revision": target.revision,
        "cache_dir": str(cache),
        "endpoint": endpoint or hub_endpoint(),
        "etag_timeout": 5,
    }
    if on_progress is not None and "tqdm_class" in inspect.signature(hf_hub_download).parameters:
        kwargs["tqdm_class"] = _progress_class(on_progress)
    path = Path(hf_hub_download(**kwargs))
    verify(target, path, probe(target, kwargs["endpoint"]).etag)  # the probe is remembered: no new request
    return path
