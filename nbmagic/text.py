"""Text helpers every layer shares (standard library only, cheap to import).

Engines cut long output before a model or a user sees it; they all cut the same way,
keeping the head and the tail with one marker that says how much was dropped.
"""

from __future__ import annotations

TRUNCATION_MARKER = "\n… (truncated, {n} chars omitted) …\n"


def valid_utf8(text: str) -> str:
    """``text`` with lone surrogates escaped (``\\udce9``), so it can be encoded as UTF-8.

    They come from file names that are not valid UTF-8 (``os.listdir`` decodes those with
    ``surrogateescape``) and would fail a model request with ``UnicodeEncodeError``.
    """
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return text.encode("utf-8", "backslashreplace").decode("utf-8")
    return text


def shown_name(name: str) -> str:
    """A file name as a person (or a model) should see it: undecodable bytes as ``\\xe9``."""
    try:
        name.encode("utf-8")
        return name
    except UnicodeEncodeError:
        pass
    try:  # the bytes os.listdir could not decode, back as they were on disk
        raw = name.encode("utf-8", "surrogateescape")
    except UnicodeEncodeError:
        return valid_utf8(name)
    return raw.decode("utf-8", "backslashreplace")


def truncate(text: str, max_chars: int, *, head: float = 0.5) -> str:
    """Keep ``text`` within ``max_chars`` (plus the marker): a ``head`` share of the start,
    the rest from the end. A traceback's cause is at its end, so callers cutting one keep
    less head."""
    if max_chars <= 0 or len(text) <= max_chars:
        return text
    first = round(max_chars * head)
    last = max_chars - first
    omitted = len(text) - first - last
    return text[:first] + TRUNCATION_MARKER.format(n=omitted) + text[len(text) - last :]


def clip(text: str, max_chars: int, *, count: bool = False) -> str:
    """The start of ``text`` (at most ``max_chars``), with an ellipsis where it was cut, and with
    ``count`` how many characters were: for previews, where the head is what matters."""
    if len(text) <= max_chars:
        return text
    return text[:max_chars] + (f"… [+{len(text) - max_chars} chars]" if count else "…")
