"""The interfaces the RLM's parts share, declared once so no part imports the loop back.

:class:`ReplSession` is what a run asks of the session it runs in: the persistent
:class:`~nbmagic.rlm.session.RLMSession` and a sub-agent's :class:`~nbmagic.rlm.subagents.ForkSession`
both implement it. :class:`ParentRun` is what :class:`~nbmagic.rlm.subagents.SubAgents` needs of
the run that spawns sub-agents, and :class:`QueryEngine` what a session needs of its RLM.
:class:`~nbmagic.rlm.agent.RLMRun` and :class:`~nbmagic.rlm.agent.RLM` implement those, so
``subagents`` and ``session`` never import ``agent``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Protocol

from nbmagic.rlm.repl_base import Environment, Helper
from nbmagic.rlm.result import RLMResult
from nbmagic.rlm.settings import RLMSettings
from nbmagic.rlm.tools import SpendingBudget, Toolbox


class ReplSession(Protocol):
    """Where a run's REPL comes from and what it remembers between runs."""

    closed: bool

    @property
    def runs(self) -> int: ...

    def environment_for(self, kind: str) -> Environment | None:
        """The live REPL, or ``None`` before the first run (the run then makes one)."""

    def bind(self, env: Environment, contexts: Mapping[str, Any], helpers: Mapping[str, Helper]) -> dict[str, Any]:
        """Start ``env`` or hand it the new run's helpers and contexts; every context it holds."""

    def earlier(self) -> list[tuple[str, str]]:
        """Earlier questions and (short) answers, for the next root prompt."""

    def record(self, question: str, result: RLMResult) -> None:
        """Remember a finished run."""


class ChildRun(Protocol):
    def run(self) -> RLMResult: ...


class ParentRun(Protocol):
    """A run whose code may ``spawn_agents``: its REPL, budget, depth and how to start a child."""

    depth: int
    budget: SpendingBudget
    env: Environment
    bound: dict[str, Any]
    toolbox: Toolbox

    @property
    def settings(self) -> RLMSettings: ...

    def fork_child(self, question: str, env: Environment, budget: SpendingBudget, contexts: dict[str, Any]) -> ChildRun:
        """A child run (depth + 1) in the forked REPL ``env``, drawing from ``budget``."""


class QueryEngine(Protocol):
    """What a session needs of its RLM."""

    def query(self, question: str, context: Any = None, **kwargs: Any) -> RLMResult: ...

    def start(self, question: str, context: Any = None, **kwargs: Any) -> Any: ...


class RunOwner(Protocol):
    """What a run reads from the RLM that started it (:class:`~nbmagic.rlm.agent.RLM`)."""

    settings: RLMSettings
    environment: str | Environment
    namespace: dict[str, Any] | None
    on_event: Any
    tools: dict[str, Any]
    prices: dict[str, tuple[float, float]]

    @property
    def model(self) -> Any: ...

    @property
    def sub_model(self) -> Any: ...
