"""Models an Ollama user already pulled, as GGUF files: ``gguf:ollama:<name>[:<tag>]``.

Ollama keeps every pulled model on disk as content-addressed blobs::

    $OLLAMA_MODELS (default ~/.ollama/models)
        manifests/<registry>/<namespace>/<name>/<tag>     JSON: {"layers": [{"mediaType", "digest"}, ...]}
        blobs/sha256-<hex>                                 one file per layer

The layer whose media type is ``application/vnd.ollama.image.model`` is the GGUF itself, so
llama.cpp (chat and latent mode) can load it in place, without a copy. ``<name>`` may carry
a namespace (``user/model``); the registry is ``registry.ollama.ai`` and the tag ``latest``
unless given. LM Studio keeps plain ``.gguf`` files under ``~/.lmstudio/models/<publisher>/<repo>/``:
pass that path as ``gguf:<path>``.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from nbmagic.errors import ModelNotFoundError

MODEL_MEDIA_TYPE = "application/vnd.ollama.image.model"
REGISTRY = "registry.ollama.ai"


def models_dir() -> Path:
    """Where Ollama keeps models: ``$OLLAMA_MODELS`` or ``~/.ollama/models``."""
    env = os.environ.get("OLLAMA_MODELS", "").strip()
    return Path(env).expanduser() if env else Path.home() / ".ollama" / "models"


def resolve(ref: str) -> Path:
    """``<name>[:<tag>]`` (e.g. ``qwen2.5-coder:7b``) -> the GGUF blob of that pulled model."""
    ref = ref.strip()
    name, _, tag = ref.partition(":")
    name, tag = name.strip().strip("/"), (tag.strip() or "latest")
    if not name:
        raise ModelNotFoundError("gguf:ollama: needs a model name, e.g. gguf:ollama:qwen2.5-coder:7b.")
    parts = name.split("/")
    if len(parts) == 1:
        parts = [REGISTRY, "library", *parts]
    elif len(parts) == 2:
        parts = [REGISTRY, *parts]
    root = models_dir()
    manifest = root.joinpath("manifests", *parts, tag)
    if not manifest.is_file():
        pulled = sorted(_pulled(root))
        raise ModelNotFoundError(
            f"gguf:ollama:{name}:{tag}: no such model in {root} (pull it with `ollama pull {name}:{tag}`"
            + (f"; pulled here: {', '.join(pulled[:12])}" if pulled else "; none pulled here")
            + "; OLLAMA_MODELS sets another models folder)."
        )
    try:
        layers = json.loads(manifest.read_text(encoding="utf-8")).get("layers") or []
    except (OSError, ValueError, AttributeError) as exc:
        raise ModelNotFoundError(f"gguf:ollama:{name}:{tag}: unreadable manifest {manifest} ({exc}).") from None
    for layer in layers:
        if isinstance(layer, dict) and layer.get("mediaType") == MODEL_MEDIA_TYPE:
            digest = str(layer.get("digest", ""))
            blob = root / "blobs" / digest.replace(":", "-")
            if not blob.is_file():
                raise ModelNotFoundError(f"gguf:ollama:{name}:{tag}: the model blob {blob} is missing "
                                         f"(pull it again with `ollama pull {name}:{tag}`).")
            return blob
    raise ModelNotFoundError(f"gguf:ollama:{name}:{tag}: the manifest has no GGUF layer ({MODEL_MEDIA_TYPE}).")


def _pulled(root: Path) -> list[str]:
    """``name:tag`` of every manifest under ``root`` (library models without their prefix)."""
    base = root / "manifests"
    out = []
    if base.is_dir():
        for f in base.rglob("*"):
            if f.is_file():
                rel = f.relative_to(base).parts
                name = "/".join(rel[2:-1] if rel[:2] == (REGISTRY, "library") else rel[1:-1])
                out.append(f"{name}:{rel[-1]}")
    return out
