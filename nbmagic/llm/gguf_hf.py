"""GGUF files as Hugging Face folders, so ``hf:model.gguf`` runs latent mode on the same weights.

transformers can read a GGUF file (``from_pretrained(folder, gguf_file=name)``), de-quantizing
every tensor to floats. That takes about half a minute for a 135M model and is repeated at
every load, so the first load writes an ordinary folder (``config.json``, ``model.safetensors``
and the tokenizer with its chat template) into nbmagic's cache and later loads read that
folder in a second or two. The folder's name carries a key of the file's path, size and
modification time: a replaced file is converted again, never served stale.

Writes are atomic (a temporary folder renamed into place) so two kernels converting the same
file at once cannot leave a half-written folder behind.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any

from nbmagic.errors import BackendNotInstalledError, ConfigError, ModelNotFoundError

_COMPLETE = ".nbmagic-complete"


def cache_root() -> Path:
    """nbmagic's cache folder: ``NBMAGIC_CACHE``, else ``$XDG_CACHE_HOME/nbmagic``, else ``~/.cache/nbmagic``."""
    explicit = os.environ.get("NBMAGIC_CACHE")
    if explicit:
        return Path(explicit).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or "~/.cache"
    return Path(base).expanduser() / "nbmagic"


def cached_folder(gguf: Path) -> Path:
    """Where the converted folder for ``gguf`` lives (whether or not it exists yet)."""
    real = gguf.expanduser().resolve()
    stat = real.stat()
    key = hashlib.sha256(f"{real}|{stat.st_size}|{stat.st_mtime_ns}".encode("utf-8", "surrogateescape"))
    return cache_root() / "gguf-hf" / f"{real.stem}-{key.hexdigest()[:16]}"


def is_converted(folder: Path) -> bool:
    return (folder / _COMPLETE).is_file() and (folder / "config.json").is_file()


def hf_folder_for_gguf(gguf: str | os.PathLike[str], *, quiet: bool = False) -> Path:
    """A Hugging Face folder holding ``gguf``'s weights, converting once and caching the result."""
    path = Path(gguf).expanduser()
    if not path.is_file():
        raise ModelNotFoundError(f"hf:{gguf}: no such file.")
    folder = cached_folder(path)
    if is_converted(folder):
        return folder
    try:
        import gguf
        import torch  # noqa: F401
        import transformers  # noqa: F401
    except ImportError as exc:
        raise BackendNotInstalledError(
            f"hf:{gguf} needs torch, transformers and gguf ({exc.name} is missing): "
            "pip install 'nbmagic[local]'"
        ) from None
    if not quiet:
        print(
            f"nbmagic: de-quantizing {path.name} for transformers (first use only; cached in {folder})",
            file=sys.stderr,
            flush=True,
        )
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=folder.name + ".", dir=folder.parent))
    try:
        _convert(path, tmp)
        (tmp / _COMPLETE).write_text(str(path.resolve()), encoding="utf-8", errors="surrogateescape")
        try:
            os.replace(tmp, folder)
        except OSError:  # another process finished first: its folder is as good as ours
            if not is_converted(folder):
                raise
    except OSError as exc:
        raise ConfigError(
            f"hf:{gguf}: could not write the converted model to {folder.parent} ({exc}). "
            "Free some disk space or set NBMAGIC_CACHE to a writable folder."
        ) from None
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return folder


def _convert(path: Path, out: Path) -> None:
    """Load ``path`` through transformers' GGUF reader and save it as a plain folder in ``out``."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    try:
        tokenizer = AutoTokenizer.from_pretrained(path.parent, gguf_file=path.name)
        model: Any = AutoModelForCausalLM.from_pretrained(path.parent, gguf_file=path.name, dtype=torch.float32)
    except (ValueError, KeyError, RuntimeError) as exc:
        raise ConfigError(
            f"hf:{path}: transformers cannot read this GGUF file ({type(exc).__name__}: {exc}). "
            f"Use gguf:{path} (llama.cpp) for chat, or a Hugging Face folder for latent mode."
        ) from None
    # A GGUF-loaded model remembers its quantization and save_pretrained refuses it; the weights
    # are plain floats by now, so drop that record and save what is in memory.
    model.config.quantization_config = None
    if hasattr(model, "hf_quantizer"):
        model.hf_quantizer = None
    for attr in ("is_quantized", "quantization_method"):
        if attr in vars(model):
            delattr(model, attr)
    config_dict = model.config.to_dict()
    config_dict.pop("quantization_config", None)
    clean_config = type(model.config).from_dict(config_dict)
    model.config = clean_config
    model.save_pretrained(out, safe_serialization=True)
    tokenizer.save_pretrained(out)
