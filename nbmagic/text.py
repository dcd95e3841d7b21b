"""Text helpers every layer shares (standard library only, cheap to import).

Engines cut long output before a model or a user sees it; they all cut the same way,
keeping the head and the tail with one marker that says how much was dropped.
"""

from __future__ import annotations

TRUNCATION_MARKER = "\n… (truncated, {n} chars omitted) …\n"


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
