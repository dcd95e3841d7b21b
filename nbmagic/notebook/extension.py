"""The JupyterLab extension that ships inside the package: where it is, is it enabled.

``pip install nbmagic`` puts the prebuilt extension into
``<prefix>/share/jupyter/labextensions/nbmagic`` (wheel shared-data), where
JupyterLab 4 and Notebook 7 in the same environment load it without node or a
rebuild. :func:`installed_locations` answers "would my Jupyter server load it?"
for ``nbmagic doctor``; the fingerprint helpers let the tests notice a
``frontend/`` edit that was not rebuilt into ``nbmagic/labextension/``.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

PACKAGE_DIR = Path(__file__).resolve().parents[1]
#: The prebuilt extension inside the package (also what `labextension develop` links).
LABEXTENSION_DIR = PACKAGE_DIR / "labextension"
#: TypeScript sources; present in a source checkout only.
FRONTEND_DIR = PACKAGE_DIR.parent / "frontend"
FINGERPRINT_FILE = LABEXTENSION_DIR / "source-fingerprint.json"


def installed_locations() -> list[Path]:
    """Folders on Jupyter's data path holding the nbmagic extension (empty: not installed).

    ``pip install -e .`` does not install shared data; run
    ``jupyter labextension develop --overwrite .`` in the checkout for that case.
    """
    from jupyter_core.paths import jupyter_path

    found = []
    for base in jupyter_path("labextensions"):
        candidate = Path(base) / "nbmagic" / "package.json"
        if candidate.is_file():
            found.append(candidate.parent)
    return found


def source_fingerprint(frontend_dir: Path = FRONTEND_DIR) -> dict[str, object]:
    """SHA-256 over the extension's sources (package.json, tsconfig.json, src/*.ts)."""
    files = [frontend_dir / "package.json", frontend_dir / "tsconfig.json"]
    files += sorted((frontend_dir / "src").rglob("*.ts"))
    digest = hashlib.sha256()
    for path in files:
        digest.update(path.relative_to(frontend_dir).as_posix().encode() + b"\0")
        digest.update(path.read_bytes().replace(b"\r\n", b"\n") + b"\0")
    return {
        "sha256": digest.hexdigest(),
        "files": [p.relative_to(frontend_dir).as_posix() for p in files],
    }


def write_fingerprint(frontend_dir: Path = FRONTEND_DIR) -> Path:
    """Record which sources the current build came from (run by the build script)."""
    FINGERPRINT_FILE.write_text(json.dumps(source_fingerprint(frontend_dir), indent=1) + "\n")
    return FINGERPRINT_FILE


def build_is_current(frontend_dir: Path = FRONTEND_DIR) -> bool:
    """True when ``nbmagic/labextension`` was built from the sources as they are now."""
    try:
        recorded = json.loads(FINGERPRINT_FILE.read_text())
    except (OSError, ValueError):
        return False
    return recorded.get("sha256") == source_fingerprint(frontend_dir)["sha256"]


__all__ = [
    "FRONTEND_DIR",
    "LABEXTENSION_DIR",
    "build_is_current",
    "installed_locations",
    "source_fingerprint",
    "write_fingerprint",
]
