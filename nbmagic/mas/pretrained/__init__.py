"""Trained links shipped with nbmagic, one folder per (model file, pattern).

Each folder is an ordinary links checkpoint (``manifest.json`` + ``links.safetensors``)
whose manifest also names, under ``"fits"``, the model file the links were trained on
(e.g. ``SmolLM2-135M-Instruct.Q4_1.gguf``). :func:`find_pretrained` matches a model spec's
file name and the pattern against them; loading then runs the usual fit checks, so a
mismatch is refused as for any checkpoint.
"""

from __future__ import annotations

import json
from pathlib import Path

HERE = Path(__file__).parent


def shipped(root: Path = HERE) -> list[tuple[Path, dict]]:
    """Every shipped checkpoint folder (under ``root``) with its manifest."""
    out = []
    for manifest in sorted(Path(root).glob("*/manifest.json")):
        try:
            out.append((manifest.parent, json.loads(manifest.read_text(encoding="utf-8"))))
        except (OSError, ValueError):
            continue
    return out


def find_pretrained(spec: str, pattern: str, root: Path = HERE) -> Path | None:
    """The shipped links for the model ``spec`` names (by file name) and ``pattern``, if any.

    None shipped yet: links trained on the embedded model did not beat the training-free
    mode (docs/recursive-mas.md, "Trained links on the real model")."""
    name = Path(str(spec).split(":", 1)[-1]).name
    for folder, manifest in shipped(root):
        if manifest.get("fits") == name and manifest.get("pattern") == pattern:
            return folder
    return None
