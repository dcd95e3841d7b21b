"""Contexts: resolving what the user passed, and the summaries the root model sees.

The root model never sees a context, only a bounded summary of it: type, size,
a short preview and its structure (a DataFrame's shape, columns and dtypes; a
dict's keys; a list's length and element types; a folder's files and sizes).
Every summary costs O(1) prompt characters whatever the context's size, which
is what keeps the root prompt flat from 1 KB to 50 MB.
"""

from __future__ import annotations

import difflib
import keyword
import os
from collections import Counter
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from nbmagic.describe import human_size, is_table, table_facts
from nbmagic.errors import ConfigError
from nbmagic.rlm.tools import RESERVED_NAMES, reserved_message
from nbmagic.text import clip, shown_name

PREVIEW_CHARS = 400
MAX_KEYS = 25
MAX_FILES = 30
MAX_COLUMNS = 40
MAX_WALK = 10_000  # files a folder summary looks at
_SAMPLE = 1000



def _is_name(key: Any) -> bool:
    return isinstance(key, str) and key.isidentifier() and not keyword.iskeyword(key) and key not in RESERVED_NAMES


def check_not_reserved(names: Any, what: str = "--context") -> None:
    """A context named like a helper would be replaced by it in the REPL: refused, with one message."""
    for name in names:
        if name in RESERVED_NAMES:
            raise ConfigError(reserved_message(what, name))


def resolve_contexts(context: Any, namespace: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Turn the ``context`` argument into ``{variable name: object}``.

    - ``None`` → no context.
    - a ``str`` that names a variable of ``namespace`` → that variable, under its own
      name and as ``context``; an identifier-shaped ``str`` that names none → error
      with close matches (when a namespace is given).
    - a ``str`` that is an existing file or folder path → a :class:`~pathlib.Path`.
    - a ``dict`` whose keys are all identifiers → several named contexts, each bound
      under its key (and the whole dict as ``context``).
    - anything else → one context called ``context``.
    """
    if context is None:
        return {}
    if isinstance(context, str):
        return _resolve_str(context, namespace)
    if isinstance(context, dict):
        check_not_reserved(context)
    if isinstance(context, dict) and context and all(_is_name(k) for k in context):
        out = {k: _resolve_value(v, namespace) for k, v in context.items()}
        if "context" not in out:
            out["context"] = dict(out)
        return out
    return {"context": context}


def _resolve_value(value: Any, namespace: Mapping[str, Any] | None) -> Any:
    if isinstance(value, str) and namespace is not None and value.isidentifier() and value in namespace:
        return namespace[value]
    return value


def _resolve_str(text: str, namespace: Mapping[str, Any] | None) -> dict[str, Any]:
    if namespace is not None and text.isidentifier():
        if text in namespace:
            check_not_reserved([text])
            value = namespace[text]
            return {text: value, "context": value} if _is_name(text) and text != "context" else {"context": value}
        raise ConfigError(missing_variable_message(text, namespace))
    if len(text) < 4096 and "\n" not in text:
        path = Path(text).expanduser()
        try:
            if path.exists():
                return {"context": path}
        except OSError:
            pass
    return {"context": text}


def missing_variable_message(name: str, namespace: Mapping[str, Any]) -> str:
    names = [k for k in namespace if isinstance(k, str) and not k.startswith("_")]
    close = difflib.get_close_matches(name, names, n=3, cutoff=0.6)
    hint = f" Did you mean {', '.join(close)}?" if close else ""
    return (
        f"No variable named {name!r} in the namespace to use as the RLM context.{hint} "
        "Define it first, or pass the object itself (context=my_data)."
    )


# --- summaries -------------------------------------------------------------------------


def _clip(text: str, n: int = PREVIEW_CHARS) -> str:
    return clip(text, n, count=True)


def _short_repr(value: Any, n: int = 120) -> str:
    try:
        text = repr(value) if not isinstance(value, str) else repr(value[: n + 1])
    except Exception:
        text = f"<{type(value).__name__}>"
    return _clip(text, n)


def _type_name(value: Any) -> str:
    t = type(value)
    mod = t.__module__
    return t.__name__ if mod in ("builtins", "__main__") else f"{mod.split('.')[0]}.{t.__name__}"


def summarize(name: str, value: Any) -> str:
    """A bounded description of one context for the root prompt."""
    head = f"- `{name}`: {_type_name(value)}"
    try:
        body = _describe(value)
    except Exception as exc:  # a summary must never sink the run
        body = f"(could not describe: {type(exc).__name__})"
    return head + (", " + body if body else "")


def summarize_all(contexts: Mapping[str, Any]) -> str:
    if not contexts:
        return "(no context: answer from the question alone, or compute what you need)"
    names = list(contexts)
    whole = contexts.get("context")
    lines = []
    for n in names:
        if n == "context" and len(names) > 1 and isinstance(whole, dict) and all(k in contexts for k in whole):
            lines.append(f"- `context`: dict of the {len(whole)} contexts above, by name")
            continue
        twin = next((m for m in names if m != n and contexts[m] is contexts[n]), None)
        if n == "context" and twin is not None:
            lines.append(f"- `context`: the same object as `{twin}`")
            continue
        lines.append(summarize(n, contexts[n]))
    return "\n".join(lines)


def _describe(value: Any) -> str:
    if isinstance(value, str):
        return _describe_text(value)
    if isinstance(value, bytes | bytearray):
        return f"{human_size(len(value))}; preview: {_short_repr(bytes(value[:200]), 200)}"
    if isinstance(value, Path):
        return _describe_path(value)
    mod = type(value).__module__ or ""
    if mod.startswith("pandas"):
        return _describe_pandas(value)
    if mod.startswith("numpy") and hasattr(value, "shape"):
        return f"shape {tuple(value.shape)}, dtype {value.dtype}, {human_size(value.nbytes)}"
    if isinstance(value, Mapping):
        return _describe_mapping(value)
    if isinstance(value, list | tuple | set | frozenset):
        return _describe_sequence(value)
    size = f"len {len(value)}; " if hasattr(value, "__len__") else ""
    return f"{size}repr: {_short_repr(value, PREVIEW_CHARS)}"


def _describe_text(text: str) -> str:
    lines = text.count("\n") + (1 if text and not text.endswith("\n") else 0)
    tail = f"\n  last chars: {text[-150:]!r}" if len(text) > PREVIEW_CHARS + 150 else ""
    return f"{len(text):,} chars, {lines:,} lines\n  preview: {text[:PREVIEW_CHARS]!r}{tail}"


def _describe_sequence(seq: Any) -> str:
    n = len(seq)
    items = list(seq[:_SAMPLE]) if isinstance(seq, list | tuple) else list(seq)[:_SAMPLE]
    kinds = Counter(type(x).__name__ for x in items)
    kinds_text = ", ".join(f"{k} ×{c}" for k, c in kinds.most_common(5))
    sampled = " (of the first 1000)" if n > _SAMPLE else ""
    total = ""
    if items and all(isinstance(x, str) for x in items):
        chars = sum(len(x) for x in seq) if n <= 1_000_000 else int(sum(len(x) for x in items) / len(items) * n)
        total = f", {chars:,} chars in all"
    firsts = "; ".join(_short_repr(x, 120) for x in items[:3])
    return f"{n:,} items{total}; element types{sampled}: {kinds_text or 'none'}\n  first items: {firsts}"


def _describe_mapping(mapping: Mapping[Any, Any]) -> str:
    n = len(mapping)
    parts = []
    for i, (k, v) in enumerate(mapping.items()):
        if i >= MAX_KEYS:
            parts.append(f"… +{n - MAX_KEYS} more keys")
            break
        size = f"[{len(v):,}]" if isinstance(v, str | list | dict | tuple) else ""
        parts.append(f"{k!r}: {_type_name(v)}{size}")
    return f"{n:,} keys\n  keys: " + ", ".join(parts)


def _describe_pandas(value: Any) -> str:
    if not is_table(value):
        return f"repr: {_short_repr(value, PREVIEW_CHARS)}"
    facts = table_facts(value, max_columns=MAX_COLUMNS, head_rows=3 if hasattr(value, "columns") else 5)
    if hasattr(value, "columns"):  # DataFrame
        dtypes = [f"{c}: {t}" for c, t in facts.columns]
        more = f", … +{facts.more_columns} more" if facts.more_columns else ""
        mem = f", ~{human_size(facts.nbytes)}" if facts.nbytes is not None else ""
        return (
            f"shape {facts.rows:,} rows × {len(facts.columns) + facts.more_columns} columns{mem}\n"
            f"  columns: {', '.join(dtypes)}{more}\n"
            f"  head:\n" + "\n".join("    " + line for line in _clip(facts.head, 900).splitlines())
        )
    name = f", name {facts.name!r}" if facts.name is not None else ""
    return f"length {facts.rows:,}, dtype {facts.dtype}{name}\n  head: {_clip(facts.head, 300)}"


def _describe_path(path: Path) -> str:
    try:
        if path.is_file():
            size = path.stat().st_size
            preview = ""
            try:
                with open(path, "rb") as f:
                    chunk = f.read(300)
                if b"\x00" not in chunk:
                    preview = f"\n  preview: {chunk.decode('utf-8', errors='replace')!r}"
            except OSError:
                pass
            return f"file {str(path)!r}, {human_size(size)}{preview}\n  (read it with open(...) or pathlib)"
        if path.is_dir():
            return _describe_folder(path)
    except OSError as exc:
        return f"{str(path)!r}: not readable ({exc.strerror or exc})"
    return f"{str(path)!r}: does not exist"


def _describe_folder(root: Path) -> str:
    """Walk in sorted order and stop at ``MAX_WALK`` files: a home folder must not be read whole."""
    files: list[tuple[str, int]] = []
    total = count = 0
    capped = False
    for folder, dirnames, filenames in os.walk(root):
        dirnames.sort()
        for fname in sorted(filenames):
            if count >= MAX_WALK:
                capped = True
                break
            p = Path(folder, fname)
            try:
                if not p.is_file():
                    continue
                size = p.stat().st_size
            except OSError:
                continue
            count += 1
            total += size
            if len(files) < MAX_FILES:
                files.append((shown_name(str(p.relative_to(root))), size))  # undecodable bytes escaped
        if capped:
            break
    more = f"\n    … +{count - len(files)} more files" if count > len(files) else ""
    listing = "\n".join(f"    {name} ({human_size(size)})" for name, size in files)
    plus = "+" if capped else ""
    return f"folder {str(root)!r}, {count:,}{plus} files, {human_size(total)}{plus} in all\n{listing}{more}"
