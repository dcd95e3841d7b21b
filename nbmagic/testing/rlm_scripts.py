"""Scripted models for RLM tests, the evaluation and the benchmarks.

They are responder functions for :class:`~nbmagic.testing.openai_server.OpenAICompatServer`:
they read a chat request and write the reply a model would. Root requests are
recognised by the RLM system prompt (:data:`nbmagic.rlm.prompts.ROOT_MARKER`).

:class:`ScriptedRoot` replays fixed replies per turn (for unit tests).
:func:`eval_responder` is a root model that genuinely *solves* the evaluation's
tasks from what a root model sees (the question and the context summary, never
the data): it writes regex / parsing / counting code, calls ``llm_query`` where
a reader would, and submits. For the long-prompt baseline it acts like a model
with a fixed context window: it reads only the first ``window_chars`` of the
prompt and answers from that.
"""

from __future__ import annotations

import re
import threading
from collections import Counter
from collections.abc import Callable, Sequence
from typing import Any

from nbmagic.rlm.prompts import CHOICE_MARKER, ROOT_MARKER
from nbmagic.testing.openai_server import Reply, last_user_message


def is_root(request: dict[str, Any]) -> bool:
    msgs = request.get("messages", [])
    return bool(msgs) and msgs[0].get("role") == "system" and str(msgs[0].get("content", "")).startswith(ROOT_MARKER)


def is_choice(request: dict[str, Any]) -> bool:
    """A constrained first turn's helper choice (nbmagic.rlm.first_turn), asked of the root."""
    msgs = request.get("messages", [])
    return bool(msgs) and msgs[0].get("role") == "system" and str(msgs[0].get("content", "")).startswith(CHOICE_MARKER)


def turn(request: dict[str, Any]) -> int:
    """0 for the first root call of a run, 1 for the second, ..."""
    return sum(1 for m in request.get("messages", []) if m.get("role") == "assistant")


def question_of(request: dict[str, Any]) -> str:
    for m in request.get("messages", []):
        if m.get("role") == "user":
            text = str(m.get("content", ""))
            return text.split("\n", 1)[0].removeprefix("Question: ")
    return ""


def code(src: str, text: str = "Let me run this.") -> str:
    """A reply holding one python block."""
    return f"{text}\n```python\n{src.strip()}\n```"


def tool_code(src: str, text: str = "") -> Reply:
    """A reply that runs ``src`` through a native ``run_python_code`` tool call."""
    import json

    return Reply(text=text, tool_calls=[{"name": "run_python_code", "arguments": json.dumps({"code": src.strip()})}])


def echo_sub(prompt: str) -> str:
    return "sub: " + prompt


class ScriptedRoot:
    """Root replies by turn (``replies[turn]``, the last one repeating); sub-calls to ``sub``.

    ``replies`` may also map a question substring to its own list, for runs with
    child RLMs: ``{"child task": [...], "": [...]}`` (the first matching key wins;
    ``""`` matches every question). ``choice``: the replies to first-turn helper choices, in
    order (the last one repeating); each request is kept in ``choice_requests``.
    """

    def __init__(
        self,
        replies: Sequence[str | Reply] | dict[str, Sequence[str | Reply]],
        sub: Callable[[str], str | Reply] = echo_sub,
        choice: Sequence[str] = ("find_answer(context)",),
    ) -> None:
        self.replies = replies
        self.sub = sub
        self.choice = list(choice)
        self.choice_requests: list[dict[str, Any]] = []
        self.root_requests: list[dict[str, Any]] = []
        self.sub_requests: list[dict[str, Any]] = []
        self._lock = threading.Lock()

    def __call__(self, request: dict[str, Any]) -> str | Reply:
        if is_choice(request):
            with self._lock:
                self.choice_requests.append(request)
                return self.choice[min(len(self.choice_requests), len(self.choice)) - 1]
        if is_root(request):
            with self._lock:
                self.root_requests.append(request)
            script = self.replies
            if isinstance(script, dict):
                q = question_of(request)
                script = next(v for k, v in script.items() if k in q)
            t = turn(request)
            return script[min(t, len(script) - 1)]
        with self._lock:
            self.sub_requests.append(request)
        return self.sub(last_user_message(request))


# --- the evaluation's scripted model ----------------------------------------------------------

_NEEDLE_Q = re.compile(r"access code for vault ([A-Z]{2}-\d{4})")
_COUNT_Q = re.compile(r"How many records have city (\w+) and product (\w+)\?")
_SUM_Q = re.compile(r"total qty over all records with city (\w+)\?")
_PAIRS_Q = re.compile(r"How many unordered pairs of distinct users")
_EXTRACT = "Extract the access code from this sentence; reply with the code only: "


def _root_reply(request: dict[str, Any]) -> str:
    q = question_of(request)
    t = turn(request)
    if t == 0:  # look before leaping, as a careful model does
        return code("print(type(context).__name__, len(context))\nprint(repr(context[:2]))",
                    "First, the shape of the data.")
    if m := _NEEDLE_Q.search(q):
        key = m.group(1)
        if t == 1:
            return code(
                "import re\n"
                f"hits = [context[context.rfind('\\n', 0, m.start()) + 1:context.find('\\n', m.end())]\n"
                f"        for m in re.finditer(r'vault {re.escape(key)}\\b', context)]\n"
                "print(len(hits), hits[:3])",
                "Search for the vault's sentence with a regex.",
            )
        return code(
            f"answer = llm_query({_EXTRACT!r} + hits[0]).strip()\nprint(answer)\nsubmit(answer)",
            "Ask a sub-model to read the sentence, then submit.",
        )
    if m := _COUNT_Q.search(q):
        city, product = m.groups()
        return code(
            "rows = [dict(p.split('=', 1) for p in r.split(' | ')) for r in context]\n"
            f"n = sum(1 for r in rows if r['city'] == {city!r} and r['product'] == {product!r})\n"
            "print(n)\nsubmit(n)"
        )
    if m := _SUM_Q.search(q):
        city = m.group(1)
        return code(
            "rows = [dict(p.split('=', 1) for p in r.split(' | ')) for r in context]\n"
            f"total = sum(int(r['qty']) for r in rows if r['city'] == {city!r})\n"
            "print(total)\nsubmit(total)"
        )
    if _PAIRS_Q.search(q):
        return code(
            "from collections import Counter\n"
            "groups = Counter((u['city'], u['color']) for u in context)\n"
            "pairs = sum(c * (c - 1) // 2 for c in groups.values())\n"
            "print(pairs)\nsubmit(pairs)"
        )
    return code("submit('I do not know')")


def _solve_visible(prompt: str) -> str:
    """The baseline: answer from whatever part of the prompt fits the window."""
    question = prompt.rsplit("Question: ", 1)[-1]
    if m := _NEEDLE_Q.search(question):
        hit = re.search(rf"vault {re.escape(m.group(1))} is (\d+)", prompt)
        return hit.group(1) if hit else "I could not find it."
    lines = prompt.splitlines()
    if m := _COUNT_Q.search(question):
        city, product = m.groups()
        return str(sum(1 for ln in lines if f"city={city} |" in ln and f"product={product} |" in ln))
    if m := _SUM_Q.search(question):
        return str(sum(int(ln.rsplit("qty=", 1)[1]) for ln in lines if f"city={m.group(1)} |" in ln and "qty=" in ln))
    if _PAIRS_Q.search(question):
        groups = Counter(re.findall(r'"city": "(\w+)", "color": "(\w+)"', prompt))
        return str(sum(c * (c - 1) // 2 for c in groups.values()))
    return "I do not know."


def eval_responder(window_chars: int = 128_000 * 4) -> Callable[[dict[str, Any]], str]:
    """A responder that plays root, sub-model and long-prompt baseline for the eval suite."""

    def respond(request: dict[str, Any]) -> str:
        if is_root(request):
            return _root_reply(request)
        prompt = last_user_message(request)
        if prompt.startswith(_EXTRACT):
            hit = re.search(r"is (\d+)", prompt)
            return hit.group(1) if hit else "unknown"
        if len(prompt) > window_chars:  # a context window: the middle and end are never seen
            question = prompt.rsplit("Question: ", 1)[-1]
            prompt = prompt[:window_chars] + "\nQuestion: " + question
        return _solve_visible(prompt)

    return respond


def respond(request: dict[str, Any]) -> str:
    """Default for ``python -m nbmagic.testing.openai_server --responder nbmagic.testing.rlm_scripts``."""
    return eval_responder()(request)
