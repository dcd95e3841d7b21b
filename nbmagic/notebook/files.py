"""Writing notebooks to disk: where a relative path points, and atomic writes.

An agent run can fail or be interrupted at any cell, so the file is rewritten
after every delivered cell; each write goes to a temporary file in the same
folder and is moved into place with ``os.replace``, so readers (JupyterLab's
file browser, a crash) only ever see a complete, valid notebook. Existing files
are never overwritten unless the caller says ``force``.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import nbformat

from nbmagic.errors import ConfigError, NotebookExistsError


def notebook_dir(shell: Any = None) -> Path | None:
    """The folder of the notebook this kernel serves, when it can be known.

    Jupyter Server starts kernels with ``JPY_SESSION_NAME`` (the notebook's path,
    absolute in current versions; ipykernel copies it to ``__session__``); VS Code
    sets ``__vsc_ipynb_file__``. Returns ``None`` when none of them names an
    absolute path (a relative one would be relative to the server's root, which
    the kernel cannot see).
    """
    candidates: list[Any] = []
    ns = getattr(shell, "user_ns", None)
    if isinstance(ns, Mapping):
        candidates += [ns.get("__vsc_ipynb_file__"), ns.get("__session__")]
    candidates.append(os.environ.get("JPY_SESSION_NAME"))
    for value in candidates:
        if isinstance(value, str) and value:
            path = Path(value).expanduser()
            if path.is_absolute() and path.parent.is_dir():
                return path.parent
    return None


def resolve_output_path(path: str | os.PathLike[str], base_dir: str | os.PathLike[str] | None = None,
                        shell: Any = None) -> Path:
    """Absolute path for an output notebook.

    ``~`` is expanded; a relative path is taken relative to ``base_dir``, else the
    running notebook's folder (:func:`notebook_dir`), else the current directory.
    A path without a suffix gets ``.ipynb``; another suffix is refused.
    """
    text = os.fspath(path).strip()
    if not text:
        raise ConfigError("The output path is empty: give a file name such as `-o analysis.ipynb`.")
    target = Path(text).expanduser()
    if not target.is_absolute():
        base = Path(base_dir).expanduser() if base_dir is not None else notebook_dir(shell)
        target = (base or Path.cwd()) / target
    if target.is_dir():
        raise ConfigError(f"{target} is a folder; give a notebook file name inside it.")
    if target.suffix == "":
        target = target.with_suffix(".ipynb")
    elif target.suffix.lower() != ".ipynb":  # `-o sales.csv --force` must not turn data into a notebook
        raise ConfigError(
            f"The output {target.name!r} is not a notebook name; give one ending in .ipynb "
            f"(e.g. {target.stem + '.ipynb'!r})."
        )
    return Path(os.path.abspath(target))


def refuse_existing(path: Path) -> None:
    """Raise :class:`NotebookExistsError` if ``path`` exists (callers check ``force`` first)."""
    if path.exists() or path.is_symlink():
        raise NotebookExistsError(
            f"{path} already exists; nbmagic never overwrites a notebook. Choose another "
            "output path, or pass --force (force=True) to replace it."
        )


def _file_mode(path: Path) -> int:
    """Permissions for the new file: the old file's, else what ``open`` would give."""
    try:
        return path.stat().st_mode & 0o777
    except OSError:
        umask = os.umask(0)
        os.umask(umask)
        return 0o666 & ~umask


def write_notebook_atomic(nb: Mapping[str, Any], path: Path, *, overwrite: bool = True) -> None:
    """Validate ``nb`` and write it to ``path`` through a temp file in the same folder.

    With ``overwrite`` the temp file replaces ``path`` (``os.replace``). Without it
    the temp file is hard-linked to ``path``, which fails if ``path`` exists, so a
    file that appeared since the caller checked is never clobbered
    (:class:`NotebookExistsError`). OS errors (permissions, full disk) become
    :class:`ConfigError`; the previous content of ``path`` is untouched then.
    """
    node = nbformat.from_dict(dict(nb))
    nbformat.validate(node)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    except OSError as exc:
        raise ConfigError(f"Cannot write {path}: {exc.strerror or exc}. Choose another path.") from None
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            nbformat.write(node, fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, _file_mode(path))
        if overwrite:
            os.replace(tmp, path)
        else:
            _move_no_clobber(tmp, path)
    except BaseException as exc:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        if isinstance(exc, OSError) and not isinstance(exc, FileExistsError):
            raise ConfigError(f"Cannot write {path}: {exc.strerror or exc}. Choose another path.") from None
        raise


def _move_no_clobber(tmp: str, path: Path) -> None:
    """Move ``tmp`` to ``path`` unless ``path`` exists (atomically where links work)."""
    try:
        os.link(tmp, path)
    except FileExistsError:
        refuse_existing(path)
        raise
    except OSError:  # file systems without hard links: check, then replace
        refuse_existing(path)
        os.replace(tmp, path)
        return
    os.unlink(tmp)


__all__ = ["notebook_dir", "refuse_existing", "resolve_output_path", "write_notebook_atomic"]
