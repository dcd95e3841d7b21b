"""Which models see images, and how a figure travels to one.

Every model reads a figure's description (:mod:`nbmagic.execution.figures`); a model
that accepts images also gets the picture, downscaled, as an OpenAI-style content
part (``{"type": "image_url", "image_url": {"url": "data:image/png;base64,..."}}``)
next to the text. Which models accept images:

* an explicit answer wins: ``model.accepts_images = True`` or ``False`` (Python);
* the ``NBMAGIC_VISION_MODELS`` environment variable adds model names, comma-separated
  (``*`` wildcards; ``*`` alone: every OpenAI-compatible model);
* OpenAI-compatible models whose name says so (:data:`VISION_NAMES`: gpt-4o,
  gpt-4.1, gpt-5, Claude 3+, Gemini, LLaVA, Qwen-VL, Gemma 3, Llama 3.2 Vision,
  Pixtral, MiniCPM-V, ...);
* llama.cpp models loaded with a multimodal projector: a ``chat_handler`` with a
  ``clip_model_path`` (``load_model("gguf:model.gguf",
  chat_handler=Llava15ChatHandler(clip_model_path="mmproj.gguf"))``).

Everything else gets text only: :func:`text_only` folds content parts back into
one string, so backends that never heard of images keep working.
"""

from __future__ import annotations

import base64
import fnmatch
import io
import os
import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

__all__ = ["MAX_SIDE", "VISION_NAMES", "accepts_images", "describe_spec", "downscale_png", "image_part", "text_only", "with_images"]

#: the longest side, in pixels, of an image sent to a model (a 640x480 plot becomes 512x384)
MAX_SIDE = 512
#: at most this many images go with one request
MAX_IMAGES = 4

#: OpenAI-compatible model names known to take images (a regular expression, case-insensitive)
VISION_NAMES = re.compile(
    r"gpt-4o|gpt-4\.1|gpt-4-turbo|gpt-4-vision|gpt-5|chatgpt-4o|\bo[134]\b|o[134]-|claude-(3|sonnet|opus|haiku)"
    r"|gemini|llava|bakllava|qwen[\d.]*-?vl|gemma-?3|llama-?3\.2-?vision|llama-?4|pixtral|minicpm-?v"
    r"|moondream|internvl|phi-?3\.5-?vision|phi-?4-?multimodal|granite-?vision|smolvlm|mistral-small-?3\.[12]",
    re.IGNORECASE,
)


def _env_patterns() -> list[str]:
    raw = os.environ.get("NBMAGIC_VISION_MODELS", "")
    return [p.strip() for p in raw.split(",") if p.strip()]


def accepts_images(model: Any) -> bool:
    """True when ``model`` (a ChatModel) should get figures as images (see the module docstring)."""
    explicit = getattr(model, "accepts_images", None)
    if isinstance(explicit, bool):
        return explicit
    backend = str(getattr(model, "backend", ""))
    name = str(getattr(model, "name", ""))
    if backend == "gguf":
        handler = getattr(getattr(model, "llm", None), "chat_handler", None)
        return bool(getattr(handler, "clip_model_path", None))
    if backend in ("hf", "embedded", "") or backend.startswith("hf"):
        return False  # text-only backends here
    if any(p == "*" or fnmatch.fnmatch(name.lower(), p.lower()) for p in _env_patterns()):
        return True
    return bool(VISION_NAMES.search(name))


def downscale_png(data: bytes | str, max_side: int = MAX_SIDE) -> bytes:
    """``data`` (PNG bytes, or base64 text as nbformat stores it) with its longest side at most
    ``max_side`` pixels, as PNG. Needs Pillow (a matplotlib dependency); without it the image
    is returned as it was."""
    raw = base64.b64decode(data) if isinstance(data, str) else bytes(data)
    try:
        from PIL import Image
    except ImportError:
        return raw
    with Image.open(io.BytesIO(raw)) as img:
        if max(img.size) <= max_side:
            return raw
        img = img.convert("RGBA") if img.mode not in ("RGB", "RGBA", "L") else img
        img.thumbnail((max_side, max_side))
        out = io.BytesIO()
        img.save(out, format="PNG", optimize=True)
        return out.getvalue()


def image_part(png: bytes | str, max_side: int = MAX_SIDE) -> dict[str, Any]:
    """An OpenAI-style ``image_url`` content part holding the downscaled PNG as a data URL."""
    small = base64.b64encode(downscale_png(png, max_side)).decode("ascii")
    return {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{small}"}}


def with_images(messages: Sequence[Mapping[str, Any]], pngs: Iterable[bytes | str],
                max_side: int = MAX_SIDE) -> list[dict[str, Any]]:
    """``messages`` with the images added to the last user message (text first, then images)."""
    images = list(pngs)[:MAX_IMAGES]
    out = [dict(m) for m in messages]
    if not images:
        return out
    for m in reversed(out):
        if m.get("role") == "user":
            text = m.get("content")
            parts = list(text) if isinstance(text, list) else [{"type": "text", "text": str(text or "")}]
            m["content"] = parts + [image_part(p, max_side) for p in images]
            break
    return out


def text_only(content: Any) -> str:
    """A message content as one string: the text parts of a list, images left out."""
    if isinstance(content, str):
        return content
    if isinstance(content, Sequence):
        return "\n".join(str(p.get("text", "")) for p in content
                         if isinstance(p, Mapping) and p.get("type") == "text")
    return str(content)


def describe_spec(spec: str | None) -> str:
    """For ``doctor``: whether the model ``spec`` names gets figures as images, and how to change it."""
    if not spec:
        return "no model"
    backend, _, rest = spec.partition(":")
    if backend in ("hf", "embedded"):
        return "text only (figures reach it as descriptions)"
    if backend == "gguf":
        return ("text only, unless loaded with a projector: chat_handler=Llava15ChatHandler(clip_model_path="
                "'mmproj.gguf') (figures reach every model as descriptions)")
    name = rest.split("@", 1)[0]
    probe = type("Spec", (), {"backend": backend, "name": name})()
    if accepts_images(probe):
        why = "a known vision model" if VISION_NAMES.search(name) else "NBMAGIC_VISION_MODELS"
        return f"yes: figures go as downscaled images too ({why})"
    return ("text only (figures reach it as descriptions); if it takes images, add it to "
            "NBMAGIC_VISION_MODELS")
