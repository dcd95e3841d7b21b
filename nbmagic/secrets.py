"""Keep API keys out of messages, logs, reprs and trajectories.

Keys are registered as they are read (from arguments or the environment) and
:func:`redact` masks every registered key, plus anything shaped like a common
key format, in text that is about to leave the process's memory.
"""

from __future__ import annotations

import os
import re
import threading

_KEY_ENV_VARS = (
    "OPENAI_API_KEY",
    "AZURE_OPENAI_API_KEY",
    "NBMAGIC_API_KEY",
    "ANTHROPIC_API_KEY",
    "HF_TOKEN",
    "HUGGING_FACE_HUB_TOKEN",
)
_KEY_SHAPES = re.compile(r"\b(sk-[A-Za-z0-9_\-]{8,}|hf_[A-Za-z0-9]{16,}|Bearer\s+[A-Za-z0-9._\-]{8,})")
_known: set[str] = set()
_lock = threading.Lock()

MASK = "***"


def register_secret(value: str | None) -> None:
    """Remember a secret so that :func:`redact` masks it wherever it appears."""
    if value and len(value) >= 6:
        with _lock:
            _known.add(value)


def _register_env_keys() -> None:
    for name in _KEY_ENV_VARS:
        register_secret(os.environ.get(name))


def redact(text: str) -> str:
    """Return ``text`` with every known key and key-shaped token masked."""
    if not text:
        return text
    _register_env_keys()
    with _lock:
        known = sorted(_known, key=len, reverse=True)
    for key in known:
        if key in text:
            text = text.replace(key, MASK)
    return _KEY_SHAPES.sub(MASK, text)


def mask_key(key: str | None) -> str:
    """A display form of a key that shows only that one is set."""
    if not key:
        return "(not set)"
    return f"{MASK}{key[-2:]}" if len(key) > 12 else MASK


#: words that mark an environment variable as a credential
SECRET_WORDS = ("KEY", "TOKEN", "SECRET", "PASSWORD", "CREDENTIAL")


def env_without_secrets(env: dict[str, str] | None = None) -> dict[str, str]:
    """A copy of ``env`` (default: this process's) without variables that look like credentials.

    For processes that run generated code (the RLM worker, ``%%agent --kernel new``): they
    have no business with the user's API keys; the helpers that call models run here.
    """
    import os

    source = os.environ if env is None else env
    return {k: v for k, v in source.items() if not any(w in k.upper() for w in SECRET_WORDS)}
