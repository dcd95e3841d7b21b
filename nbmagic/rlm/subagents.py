"""Sub-agents on forked REPL state: ``spawn_agents(tasks)``, ``adopt(id)``, ``discard(id)``.

With ``RLM(max_subagent_depth=N)`` (N > 0) the root's code can hand several tasks to
sub-agents at once. Each sub-agent is a child run (depth + 1) in a *fork* of the current
REPL: every variable, function and import the root made is there. What a sub-agent
changes stays in its fork; the root reads each one's answer and the names it created or
rebound, then merges one fork's variables into its own REPL (``adopt``) or drops it
(``discard``; forks not adopted are dropped when the root's run ends).

- ``subprocess`` REPL: the worker process forks (a real, copy-on-write copy of its memory)
  and each sub-agent runs in its own process, so they run in parallel (one thread each
  here, waiting on its fork).
- ``kernel`` REPL: a fork is a new layer over a *shallow* copy of the root's layer (objects
  are shared: in-place mutation shows in both; names the fork assigns stay in the fork).
  Output capture is process-wide in the kernel, so these sub-agents run one after another.

Budgets: each sub-agent may make at most its share of the sub-calls left (left // n) and
draws them, its tokens and its cost from the root's budget; time is the root's. The
spawning turn's time limit covers the sub-agents' work: raise ``turn_timeout`` for big tasks.
"""

from __future__ import annotations

import itertools
import json
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from nbmagic.errors import NbmagicError
from nbmagic.rlm import prompts
from nbmagic.rlm.interfaces import ChildRun, ParentRun
from nbmagic.rlm.repl_base import Environment, Helper
from nbmagic.rlm.result import RLMResult
from nbmagic.rlm.tools import PREVIEW, ShareBudget


def list_variables(env: Environment, skip: set[str] | frozenset[str]) -> str:
    """``name (type), ...`` of what a REPL holds: the same probe for both environments."""
    probe = (
        "import json as _nbm_json\n"
        f"print(_nbm_json.dumps({{_k: type(_v).__name__ for _k, _v in list(globals().items()) "
        f"if not _k.startswith('_') and _k not in {sorted(skip)!r}}}))"
    )
    out = env.execute(probe, timeout=10, max_output_chars=20_000)
    try:
        names = json.loads(out.output.strip().splitlines()[-1])
    except (ValueError, IndexError):
        names = {}
    inherited = getattr(env, "inherited", None) or {}  # a kernel fork reads the root's variables through
    for k, v in inherited.items():
        if not k.startswith("_") and k not in skip:
            names.setdefault(k, type(v).__name__)
    return ", ".join(f"{k} ({v})" for k, v in sorted(names.items()))[:2000]


class ForkSession:
    """The :class:`~nbmagic.rlm.interfaces.ReplSession` of a run on a fork: the REPL is the
    fork (already started), and it stays open after the run for ``adopt``."""

    closed = False
    runs = 0

    def __init__(self, env: Environment, contexts: dict[str, Any]) -> None:
        self.env = env
        self.contexts = contexts

    def environment_for(self, kind: str) -> Environment:
        return self.env

    def bind(self, env: Environment, contexts: Any, helpers: dict[str, Helper]) -> dict[str, Any]:
        env.set_helpers(helpers)
        return dict(self.contexts)

    def earlier(self) -> list[tuple[str, str]]:
        return []

    def record(self, question: str, result: RLMResult) -> None:
        pass


@dataclass
class _Agent:
    id: int
    task: str
    env: Environment
    run: ChildRun
    result: RLMResult | None = None
    error: str | None = None
    seconds: float = 0.0
    values: dict[str, Any] = field(default_factory=dict)


class SubAgents:
    """The forks one run spawned (its ``spawn_agents`` / ``adopt`` / ``discard``)."""

    def __init__(self, run: ParentRun) -> None:
        self.run = run
        self.agents: dict[int, _Agent] = {}
        self._ids = itertools.count(1)

    def spawn(self, tasks: list[str]) -> Any:
        run, settings = self.run, self.run.settings
        if run.depth >= settings.max_subagent_depth:
            return (f"[error] spawn_agents: sub-agents cannot spawn more sub-agents here "
                    f"(max_subagent_depth={settings.max_subagent_depth}). Do the work yourself.")
        if len(tasks) > settings.max_subagents:
            raise ValueError(f"spawn_agents: at most {settings.max_subagents} tasks at once, got {len(tasks)}.")
        left = run.budget.calls_left
        share = None if left is None else left // len(tasks)
        skip = set(run.toolbox.helpers()) | {"input", "exit", "quit"}
        agents: list[_Agent] = []
        try:
            for task in tasks:
                env = run.env.fork()
                aid = next(self._ids)
                question = prompts.subagent_task(task, aid, list_variables(env, skip))
                child = run.fork_child(question, env, ShareBudget(run.budget, share), dict(run.bound))
                agents.append(_Agent(aid, task, env, child))
        except NbmagicError as exc:
            for a in agents:
                a.env.close()
            return f"[error] spawn_agents: {exc.message}"
        if run.env.parallel_forks and len(agents) > 1:
            with ThreadPoolExecutor(max_workers=len(agents), thread_name_prefix="rlm-agent") as pool:
                list(pool.map(self._go, agents))
        else:
            for a in agents:
                self._go(a)
        for a in agents:
            self.agents[a.id] = a
        run.toolbox.add_records([self._record(a) for a in agents])
        return [self._summary(a) for a in agents]

    def _go(self, agent: _Agent) -> None:
        t0 = time.monotonic()
        try:
            agent.result = agent.run.run()
        except NbmagicError as exc:
            agent.error = exc.message
            agent.result = exc.partial if exc.partial is not None else None
        agent.seconds = time.monotonic() - t0
        try:
            agent.values = agent.env.export()
        except NbmagicError:  # a fork that died: nothing to adopt
            agent.values = {}

    def _summary(self, a: _Agent) -> dict[str, Any]:
        res = a.result
        return {
            "id": a.id,
            "task": a.task,
            "ok": a.error is None,
            "answer": getattr(res, "answer", None),
            "error": a.error,
            "changed": {k: type(v).__name__ for k, v in sorted(a.values.items())},
            "iterations": getattr(res, "iterations", 0),
            "llm_calls": getattr(res, "llm_calls", 0),
            "seconds": round(a.seconds, 3),
        }

    def _record(self, a: _Agent) -> dict[str, Any]:
        answer = getattr(a.result, "answer", None)
        text = a.error or (answer if isinstance(answer, str) else repr(answer))
        return {"helper": "spawn_agents", "model": f"agent {a.id}@{self.run.depth + 1}", "depth": self.run.depth,
                "prompt_chars": len(a.task), "prompt": a.task[:PREVIEW], "ok": a.error is None,
                "seconds": round(a.seconds, 4), "response_chars": len(text), "response": text[:PREVIEW],
                "changed": sorted(a.values), "iterations": getattr(a.result, "iterations", 0)}

    def _get(self, helper: str, aid: Any) -> _Agent:
        if aid not in self.agents:
            known = ", ".join(map(str, self.agents)) or "none yet"
            raise ValueError(f"{helper}({aid!r}): no sub-agent with that id (ids: {known}).")
        return self.agents[aid]

    def adopt(self, aid: Any) -> list[str]:
        agent = self._get("adopt", aid)
        names = self.run.env.adopt(agent.values) if agent.values else []
        self.discard(aid)
        return names

    def discard(self, aid: Any) -> None:
        agent = self._get("discard", aid)
        agent.env.close()
        del self.agents[aid]

    def close(self) -> None:
        for agent in self.agents.values():
            agent.env.close()
        self.agents.clear()
