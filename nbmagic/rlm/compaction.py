"""History compaction: when the root's conversation nears its context window, fold old turns.

Before a root call whose prompt would pass ``compact_threshold`` of the window, the root is
asked to summarise its work so far; the conversation becomes the system prompt, the
question, that summary, a message listing the REPL's variables (``name (type)``), and the
last turn verbatim. Nothing in the REPL changes: the variables the summary names are still
there. :func:`compact` takes the conversation and two callables (ask the root, list the
variables) and returns a :class:`Compacted`; the run applies it, logs its record and emits a
:class:`~nbmagic.events.Notice`.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from nbmagic.llm.base import ChatModel, window_of
from nbmagic.rlm import prompts
from nbmagic.text import truncate

#: fewer messages than this (system, question, two exchanges) leave nothing old to fold
MIN_MESSAGES = 6
#: tokens a chat template adds around each message (role markers, separators)
PER_MESSAGE_TOKENS = 4
#: the reply's share of the window when no root_max_tokens is set
REPLY_SHARE = 0.25


def model_window(model: ChatModel, override: int | None = None) -> int | None:
    """The root model's window (see :func:`nbmagic.llm.base.window_of`)."""
    return window_of(model, override)


def next_prompt_tokens(model: ChatModel, messages: list[dict[str, Any]], last_call_tokens: int) -> int:
    """The larger of a count of every message and the last call's tokens plus what came since."""
    counted = sum(model.count_tokens(m["content"]) for m in messages)
    tail = sum(model.count_tokens(m["content"]) for m in messages[-1:])
    return max(counted, last_call_tokens + tail)


@dataclass(frozen=True)
class Compacted:
    """A folded conversation and what to log about it (the caller applies it to its run)."""

    messages: list[dict[str, Any]]
    summary: str
    variables: str
    dropped: int
    tokens_before: int
    window: int
    seconds: float

    def record(self, iteration: int, depth: int) -> dict[str, Any]:
        """The trajectory record of this compaction."""
        return {"iteration": iteration, "depth": depth, "kind": "compaction", "response": self.summary,
                "code": "", "output": f"variables: {self.variables}", "sub_calls": [],
                "dropped_messages": self.dropped, "tokens_before": self.tokens_before, "window": self.window,
                "model_seconds": round(self.seconds, 4), "exec_seconds": 0.0, "submitted": False}

    @property
    def notice(self) -> str:
        return (f"RLM history compacted: {self.dropped} messages summarised "
                f"(~{self.tokens_before:,} of {self.window:,} tokens).")


def compact(
    messages: list[dict[str, Any]],
    *,
    used: int,
    window: int | None,
    threshold: float,
    ask: Callable[[list[dict[str, Any]]], str],
    variables: Callable[[], str],
) -> Compacted | None:
    """Fold old turns into a summary if the next prompt (``used`` tokens) nears ``window``.

    ``ask`` sends a conversation to the root model and returns its reply; ``variables`` lists
    the REPL's ``name (type)``. ``None`` when nothing needs folding.
    """
    if not window or len(messages) < MIN_MESSAGES or used < threshold * window:
        return None
    keep = messages[-2:]  # the last reply and its output stay verbatim
    old = messages[2:-2]
    m0 = time.monotonic()
    last = messages[-1]["content"]  # one user message, so the roles still alternate
    summary = ask([*messages[:-1], {"role": "user", "content": f"{last}\n\n{prompts.COMPACT_REQUEST}"}])
    names = variables()
    folded = [
        *messages[:2],
        {"role": "assistant", "content": "Summary of my work so far:\n" + (summary.strip() or "(empty)")},
        {"role": "user", "content": prompts.after_compaction(len(old), names)},
        *keep,
    ]
    return Compacted(folded, summary, names, len(old), used, window, time.monotonic() - m0)


def fit_to_window(
    model: ChatModel, messages: list[dict[str, Any]], window: int | None, reply_tokens: int | None
) -> list[dict[str, Any]]:
    """``messages`` cut (head and tail kept) so that they and the reply fit the window.

    Compaction folds old turns, but it cannot help when one turn is already too long for a
    small window (a 10,000-character REPL output is ~3,000 tokens of an 8,192-token model),
    and the compaction call itself reads the long history. The longest message after the
    system prompt and the question is shortened first, then the rest; the system prompt is
    cut last. Returns the same list when it already fits.
    """
    if not window:
        return messages
    reserve = reply_tokens if reply_tokens else int(window * REPLY_SHARE)
    allowed = max(window - min(reserve, window // 2), window // 4)
    sizes = [model.count_tokens(m.get("content") or "") + PER_MESSAGE_TOKENS for m in messages]
    if sum(sizes) <= allowed:
        return messages
    out = [dict(m) for m in messages]
    order = [*sorted(range(2, len(out)), key=lambda i: -sizes[i]), *(i for i in (1, 0) if i < len(out))]
    for i in order:
        for _ in range(4):  # characters per token vary along a text: re-measure and cut again
            excess = sum(sizes) - allowed
            text = out[i].get("content") or ""
            if excess <= 0 or len(text) <= 200:
                break
            keep_tokens = max(sizes[i] - excess - PER_MESSAGE_TOKENS, 16)
            chars = int(len(text) * keep_tokens / sizes[i] * 0.9)
            out[i]["content"] = truncate(text, max(chars, 200), head=0.3)
            sizes[i] = model.count_tokens(out[i]["content"]) + PER_MESSAGE_TOKENS
    return out
