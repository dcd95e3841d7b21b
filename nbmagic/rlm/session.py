"""A REPL that outlives one query: ``%rlm --continue`` and ``RLM.session()``.

::

    session = rlm.session()
    session.query("Load the orders and find the top customer", context="orders")
    session.query("And what did that customer buy most?")   # same REPL, same variables
    session.close()                                          # or: with rlm.session() as session: ...

Each query is its own run (fresh budgets, its own trajectory and ``submit``); what
persists is the environment (the variables, imports and functions the code made),
the contexts bound so far, and a short list of earlier questions and answers that
the next root prompt shows. A failed query keeps the REPL: the user may ask again.
The environment kind cannot change within a session; the helpers are re-pointed
at each query's budget (a subprocess REPL also keeps its set of tool names).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from nbmagic.errors import ConfigError
from nbmagic.rlm.interfaces import QueryEngine
from nbmagic.rlm.repl_base import Environment, Helper
from nbmagic.rlm.result import RLMResult
from nbmagic.text import clip

#: characters of each earlier answer repeated to the next root prompt
ANSWER_PREVIEW = 300
#: earlier questions shown (the latest ones)
MAX_EARLIER = 5


class RLMSession:
    """One persistent REPL for several queries of an :class:`~nbmagic.rlm.agent.RLM`
    (a :class:`~nbmagic.rlm.interfaces.ReplSession`)."""

    def __init__(self, rlm: QueryEngine) -> None:
        self.rlm = rlm
        self.env: Environment | None = None
        self.contexts: dict[str, Any] = {}
        self.history: list[tuple[str, Any]] = []
        self.results: list[RLMResult] = []
        self.closed = False

    @property
    def runs(self) -> int:
        return len(self.results)

    # -- queries --

    def query(self, question: str, context: Any = None, **kwargs: Any) -> RLMResult:
        """Ask in this session's REPL (``schema=``, ``export=`` as for :meth:`RLM.query`)."""
        return self.rlm.query(question, context, session=self, **kwargs)

    def start(self, question: str, context: Any = None, **kwargs: Any) -> Any:
        """A run in this session's REPL, to drive one turn at a time with ``run.step()``."""
        return self.rlm.start(question, context, session=self, **kwargs)

    # -- what RLMRun asks of it --

    def environment_for(self, kind: str) -> Environment | None:
        """The live environment (``None`` before the first query)."""
        if self.closed:
            raise ConfigError("This RLM session was closed (reset); start a new one with rlm.session().")
        if self.env is not None and self.env.name != kind:
            raise ConfigError(
                f"This session's REPL is {self.env.name!r}; a follow-up cannot switch to {kind!r}. "
                "Reset the session (%rlm --reset) to change it."
            )
        return self.env

    def bind(self, env: Environment, contexts: Mapping[str, Any], helpers: Mapping[str, Helper]) -> dict[str, Any]:
        """Start the REPL (first query) or give it the new query's helpers and contexts; all contexts so far."""
        if self.env is None:
            env.start(contexts, helpers)
            self.env = env
            self.contexts = dict(contexts)
            return dict(self.contexts)
        env.set_helpers(helpers)
        new = {k: v for k, v in contexts.items() if k not in self.contexts or self.contexts[k] is not v}
        if new:
            env.add_contexts(new)
            self.contexts.update(new)
        return dict(self.contexts)

    def earlier(self) -> list[tuple[str, str]]:
        out = []
        for q, a in self.history[-MAX_EARLIER:]:
            out.append((q, clip(str(a), ANSWER_PREVIEW)))
        return out

    def record(self, question: str, result: RLMResult) -> None:
        self.history.append((question, result.answer))
        self.results.append(result)

    # -- lifecycle --

    def close(self) -> None:
        """End the REPL (a subprocess worker stops; the kernel layer's variables are dropped)."""
        if self.env is not None:
            self.env.close()
        self.env = None
        self.closed = True

    def __enter__(self) -> RLMSession:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "closed" if self.closed else (self.env.name if self.env is not None else "not started")
        return f"<RLMSession {state}, {self.runs} queries>"
