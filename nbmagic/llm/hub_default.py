"""The default model that can do the job: a coder GGUF from the hub, asked for once, cached for good.

With nothing configured (no model, no key, no Ollama) :func:`nbmagic.llm.specs.resolve_default`
asks :func:`hub_choice` before it settles for the embedded 135M model:

1. ``keep_embedded`` set (``NBMAGIC_KEEP_EMBEDDED=1``) -> no, the embedded model stays;
2. the coder file is in huggingface_hub's cache and its sha256 checks -> yes, offline;
3. ``HF_HUB_OFFLINE``, no ``huggingface_hub``, or the hub not answering a 2-second HEAD
   (asked once per process) -> no, with one line saying why and how to get it;
4. only when loading (``acquire``): consent, from ``allow_download``
   (``NBMAGIC_ALLOW_DOWNLOAD=1``, ``%config NbMagic.allow_download = True``; ``make run`` sets it)
   or a y/N question where someone can answer (a terminal, a notebook); a headless run without
   it, a "no" (remembered), too little disk space, a failed or refused download -> no, one line;
   else it is downloaded once with progress, checked, and used.

Reports (``doctor``, ``%nbmagic status``) call it with ``acquire=False``: they say what would
happen and never ask or download. The choice of file: Qwen2.5-Coder-1.5B-Instruct, Q4_K_M, from
Qwen's own GGUF repository. Qwen's figures put the 1.5B coder far above the 0.5B on code
benchmarks (HumanEval 70.7 vs 61.6 for the instruct models), and the 0.5B coder already writes
67 % of this project's agent tasks correctly against 5 % for the embedded 135M model; Q4_K_M is
the quantization llama.cpp recommends as the size/quality balance, about 1.1 GB; decoding on a
CPU is memory-bound, so it runs at about 491/1100 of the 0.5B's speed (docs/models.md has the
figures measured here).
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

from nbmagic.config import settings
from nbmagic.llm import hub_download as hub
from nbmagic.llm.hub_download import ChecksumMismatchError, HubFile

#: The pin: one constant. The sha256 of Qwen's official Q4_K_M file could not be looked up from
#: this project's machines (no hub access, and no readable source lists it); until it is filled in
#: from the file's page on the hub ("Git LFS Details" -> SHA256), the hub's own LFS sha256
#: (X-Linked-Etag) is the reference and a download that does not hash to it is refused all the
#: same. The one official 1.5B-Instruct file whose sha256 a public registry lists is the Q8_0
#: (TabbyML's registry: qwen2.5-coder-1.5b-instruct-q8_0.gguf,
#: 507de59046601282ba768a9789900e6ccf60ed93ddf346730b7c68eb0715bc47, about 1.9 GB and ~1.7x slower
#: to decode on a CPU); switching to it is this constant plus the file name and size below.
PINNED_SHA256: str | None = None

CODER_GGUF = HubFile(
    repo="Qwen/Qwen2.5-Coder-1.5B-Instruct-GGUF",
    filename="qwen2.5-coder-1.5b-instruct-q4_k_m.gguf",
    revision="main",
    sha256=PINNED_SHA256,
    size=1_120_000_000,  # about; the hub's X-Linked-Size wins when it answers
    title="Qwen2.5-Coder-1.5B-Instruct (Q4_K_M GGUF)",
    license="Apache-2.0",
)

#: a margin left free on the disk after the download
DISK_MARGIN = 200_000_000

ALLOW_HINT = (
    "allow the download with NBMAGIC_ALLOW_DOWNLOAD=1 (or %config NbMagic.allow_download = True; "
    "`make run` sets it)"
)

Ask = Callable[[str], "bool | None"]  # True: yes, False: no, None: nobody can answer
Progress = Callable[[int, "int | None"], None]


@dataclass(frozen=True)
class HubChoice:
    """What the hub step decided: a usable file, or why not (and the one line to print)."""

    path: Path | None
    reason: str
    note: str | None = None  # printed once when the embedded model serves instead
    target: HubFile = CODER_GGUF


def default_target(env: Mapping[str, str] | None = None) -> HubFile:
    """The hub file to use: :data:`CODER_GGUF`, or ``NBMAGIC_DEFAULT_GGUF=<org>/<repo>/<file>[@rev]``
    with ``NBMAGIC_DEFAULT_GGUF_SHA256`` (a manual check against a stand-in hub, a mirror)."""
    env = os.environ if env is None else env
    raw = (env.get("NBMAGIC_DEFAULT_GGUF") or "").strip()
    if not raw:
        return CODER_GGUF
    path, _, revision = raw.partition("@")
    parts = path.strip("/").split("/")
    if len(parts) < 3:
        from nbmagic.errors import ConfigError

        raise ConfigError(f"NBMAGIC_DEFAULT_GGUF={raw!r} should be <org>/<repo>/<file.gguf>[@revision].")
    sha = (env.get("NBMAGIC_DEFAULT_GGUF_SHA256") or "").strip().lower() or None
    return HubFile(repo="/".join(parts[:2]), filename="/".join(parts[2:]), revision=revision or "main",
                   sha256=sha, size=None, title=parts[-1], license="")


def _size_text(size: int | None) -> str:
    if not size:
        return "size unknown"
    return f"{size / 1e9:.1f} GB" if size >= 1e9 else f"{size / 1e6:.0f} MB"


def _sized(size: int | None) -> str:
    return f" ({_size_text(size)})" if size else ""


def _how(target: HubFile) -> str:
    return "or name any model with NBMAGIC_MODEL / --model (gguf:<file>, ollama:..., openai:...)"


# -- consent memory: a "no" is asked once -------------------------------------------------------------


def _consent_file() -> Path:
    return hub._nbmagic_cache() / "download-consent.json"


def _declined(target: HubFile) -> bool:
    try:
        return json.loads(_consent_file().read_text(encoding="utf-8")).get(f"{target.repo}/{target.filename}") == "no"
    except (OSError, ValueError, AttributeError):
        return False


def _remember_no(target: HubFile) -> None:
    path = _consent_file()
    try:
        data = json.loads(path.read_text(encoding="utf-8")) if path.exists() else {}
        data[f"{target.repo}/{target.filename}"] = "no"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(data, indent=1), encoding="utf-8")
    except (OSError, ValueError):
        pass


def _consent() -> tuple[bool | None, str]:
    """(True/False/None, where it came from) for ``allow_download``."""
    setting = settings.get("allow_download")
    return setting.value, setting.source


# -- the step ----------------------------------------------------------------------------------------


def hub_choice(
    *,
    acquire: bool,
    env: Mapping[str, str] | None = None,
    ask: Ask | None = None,
    on_progress: Progress | None = None,
    target: HubFile | None = None,
) -> HubChoice:
    """Decide whether the hub's coder GGUF is the default; with ``acquire``, fetch it if allowed."""
    env = os.environ if env is None else env
    target = target or default_target(env)
    label = target.label

    refused: list[str] = []  # a cached copy that failed its check: said first, whatever follows

    def no(reason: str, note: str | None = None) -> HubChoice:
        if refused:
            reason, note = f"{refused[0]} {reason}", f"{refused[0]} {note or ''}".strip()
        return HubChoice(None, reason, note, target)

    if settings.keep_embedded:
        return no(f"keep_embedded is set ({settings.get('keep_embedded').source}): not using {label}")
    cache = hub.hub_cache_dir(env)
    cached = hub.cached_file(target, cache)
    if cached is not None:
        try:
            hub.verify(target, cached)
            return HubChoice(cached, f"{label}, in the huggingface_hub cache (sha256 checked), offline", None, target)
        except ChecksumMismatchError as exc:  # removed: fetched again below, if allowed
            refused.append(exc.message)

    size = target.size
    better = f"{label}{_sized(size)}, the better default,"
    offline = hub.hub_offline(env)
    if offline:
        return no(f"{label} is not cached and {offline}",
                  f"{better} is not cached and {offline}: unset it and run again to download it once, {_how(target)}.")
    if not hub.hub_installed():
        return no(f"huggingface_hub is not installed, so {label} cannot be downloaded",
                  f"{better} needs huggingface_hub to download: pip install 'nbmagic[gguf]'.")
    endpoint = hub.hub_endpoint(env)
    reach = hub.probe(target, endpoint)
    if not reach.ok:
        return no(f"the hub at {endpoint} is not reachable for {label} ({reach.detail})",
                  f"the hub at {endpoint} is not reachable ({reach.detail}): {better} will be downloaded once "
                  f"it is, {_how(target)}.")
    size = reach.size or size
    better = f"{label}{_sized(size)}, the better default,"
    allowed, source = _consent()
    if allowed is False:
        return no(f"downloads are off (allow_download=False, {source}): {label} is not downloaded")
    if not acquire:
        how = f"allowed by {source}" if allowed else "asked for first, or allowed with NBMAGIC_ALLOW_DOWNLOAD=1"
        return no(f"{label} ({_size_text(size)}) is not cached; the hub answers at {endpoint}: "
                  f"downloaded on first use ({how})")

    free = hub.free_bytes(cache)
    if size and free is not None and free < size + DISK_MARGIN:
        return no(f"not enough free disk space for {label}",
                  f"{better} needs {_size_text(size + DISK_MARGIN)} free in {cache} and there is "
                  f"{_size_text(free)}: free some space or set HF_HOME to a larger disk.")
    if allowed is None:
        if _declined(target):
            return no(f"the download of {label} was declined before",
                      f"{better} was declined before: {ALLOW_HINT}.")
        answer = (ask or _default_ask)(
            f"nbmagic: download {label} ({_size_text(size)}, {target.license or 'see its model card'}) from "
            f"{endpoint} as the default model? It is cached for offline use. [y/N] "
        )
        if answer is None:
            return no(f"nobody to ask before downloading {label} (headless)",
                      f"{better} was not downloaded (no consent in a headless run): {ALLOW_HINT}.")
        if not answer:
            _remember_no(target)
            return no(f"the download of {label} was declined",
                      f"{better} was declined and will not be asked for again: {ALLOW_HINT}.")

    why = f"allowed by {source}" if allowed else "you said yes"
    say_once(f"the default model is {label}{_sized(size)}: downloading it once from {endpoint} into {cache} "
             f"({why}); later runs use it offline.")
    try:
        path = _fetch(target, endpoint, cache, on_progress)
    except ChecksumMismatchError as exc:
        return no(exc.message, f"{exc.message} The embedded model serves instead.")
    except Exception as exc:  # network, disk, hub errors: the embedded model serves, the run goes on
        detail = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else ""
        return no(f"downloading {label} failed ({type(exc).__name__}: {detail})",
                  f"downloading {label} failed ({type(exc).__name__}: {detail}); the embedded model serves. "
                  "Run again to retry (nothing partial is kept).")
    return HubChoice(path, f"{label}, downloaded from {endpoint} (sha256 checked), cached for offline use",
                     None, target)


def _fetch(target: HubFile, endpoint: str, cache: Path, on_progress: Progress | None) -> Path:
    if on_progress is not None:
        return hub.download(target, endpoint=endpoint, cache_dir=cache, on_progress=on_progress)
    from nbmagic.ui.download import progress_view  # only ui/ draws: a widget, tqdm or plain lines

    with progress_view(f"{target.label}") as view:
        return hub.download(target, endpoint=endpoint, cache_dir=cache, on_progress=view.update)


def _default_ask(question: str) -> bool | None:
    from nbmagic.ui.download import ask_yes_no

    return ask_yes_no(question)


_SAID: set[str] = set()


def say_once(note: str) -> None:
    """Print a fallback line once per process (every %%agent run would otherwise repeat it)."""
    if note in _SAID:
        return
    _SAID.add(note)
    from nbmagic.secrets import redact

    print(f"nbmagic: {redact(note)}", file=sys.stderr, flush=True)


def hub_report(env: Mapping[str, str] | None = None) -> dict[str, object]:
    """The hub default's state for ``doctor``: which file, cached where, hub, consent (asks nothing)."""
    env = os.environ if env is None else env
    target = default_target(env)
    cached = hub.cached_file(target, hub.hub_cache_dir(env))
    allowed, source = _consent()
    endpoint = hub.hub_endpoint(env)
    offline = hub.hub_offline(env)
    reach = None
    if cached is None and not offline and not settings.keep_embedded and hub.hub_installed():
        reach = hub.probe(target, endpoint)  # already asked by the resolution: remembered, no second wait
    return {
        "repo": target.repo,
        "file": target.filename,
        "revision": target.revision,
        "sha256": target.sha256,
        "size": (reach.size if reach and reach.size else target.size),
        "cached": str(cached) if cached else None,
        "cache_dir": str(hub.hub_cache_dir(env)),
        "endpoint": endpoint,
        "offline": offline,
        "reachable": None if reach is None else reach.ok,
        "reach_detail": None if reach is None else reach.detail,
        "allow_download": allowed,
        "allow_download_source": source,
        "keep_embedded": bool(settings.keep_embedded),
        "declined_before": _declined(target),
    }
