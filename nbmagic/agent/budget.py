"""Fit every prompt the agent sends into the model's context window.

A local model has a fixed window (``LlamaCppModel.n_ctx``, 8192 for the embedded
SmolLM2, often 4096 or 32768 for others); the context, the plan, the earlier
cells and a fix's code and traceback together can exceed it, and the backend
then refuses the whole call. The agent builds each prompt from named parts and
shrinks the least important ones first (earlier cells, then the context, then
the plan) until the prompt plus room for the reply fits. Models without a known
window (remote APIs) get the parts as they are, already capped in characters.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from nbmagic.llm.base import window_of
from nbmagic.llm.vision import text_only
from nbmagic.text import truncate

Messages = list[dict[str, str]]

#: tokens the chat template adds per message (role markers, separators), counted generously
PER_MESSAGE = 8
#: slack kept free: a count with the model's tokenizer ignores the template's own tokens
MARGIN = 48
#: a part is never cut below this many characters (its heading and first facts stay)
MIN_PART = 160


def window(model: Any) -> int | None:
    """The model's context window in tokens, if it has one we can read (the shared probe)."""
    return window_of(model)


def count(model: Any, messages: Sequence[dict[str, str]]) -> int:
    """Tokens the messages take (the model's own tokenizer where it has one)."""
    return sum(model.count_tokens(text_only(m["content"])) + PER_MESSAGE for m in messages)


class Budget:
    """The prompt room for one model and reply size: ``fit`` parts in, messages out."""

    def __init__(self, model: Any, reply_tokens: int) -> None:
        self.model = model
        self.window = window(model)
        # a reply must never take more than half the window: the prompt needs room too
        self.reply_tokens = reply_tokens if self.window is None else max(64, min(reply_tokens, self.window // 2))

    @property
    def prompt_tokens(self) -> int | None:
        """Most tokens a prompt may take (None: no known limit)."""
        if self.window is None:
            return None
        return max(128, self.window - self.reply_tokens - MARGIN)

    def fit(
        self,
        build: Callable[[dict[str, str]], Messages],
        parts: dict[str, str],
        shrink: Sequence[str],
    ) -> tuple[Messages, list[str]]:
        """Build messages from ``parts``; while too long, cut the parts named in ``shrink``, in order.

        Returns the messages and the names of the parts that were cut (for the trajectory).
        A part is cut to the share of its length that would make the prompt fit (keeping its
        head and tail); when every part is at its minimum the prompt goes as it is and the
        backend's own check has the last word.
        """
        limit = self.prompt_tokens
        messages = build(parts)
        if limit is None:
            return messages, []
        cut: list[str] = []
        floor: set[str] = set()  # parts already at their minimum
        parts = dict(parts)
        for _ in range(4 * max(1, len(shrink))):
            used = count(self.model, messages)
            if used <= limit:
                break
            name = next((n for n in shrink if n not in floor and len(parts.get(n, "")) > MIN_PART), None)
            if name is None:
                break
            text = parts[name]
            over_chars = (used - limit) * max(1.0, len(text) / max(1, self.model.count_tokens(text)))
            target = max(MIN_PART, int(len(text) - over_chars * 1.1) - 40)
            if target >= len(text):
                target = max(MIN_PART, len(text) // 2)
            if target <= MIN_PART:
                floor.add(name)
            parts[name] = truncate(text, target, head=0.6)
            if name not in cut:
                cut.append(name)
            messages = build(parts)
        return messages, cut

    def reply_room(self, messages: Messages) -> int:
        """``max_tokens`` for a reply to ``messages``: the configured size, or what is left."""
        if self.window is None:
            return self.reply_tokens
        left = self.window - count(self.model, messages) - MARGIN // 2
        return max(16, min(self.reply_tokens, left))


def fit_text(model: Any, text: str, tokens: int) -> str:
    """``text`` cut (head and tail kept) to about ``tokens`` of the model's tokens."""
    n = model.count_tokens(text)
    if n <= tokens:
        return text
    return truncate(text, max(200, int(len(text) * tokens / n * 0.95)), head=0.7)
