"""RecursiveMAS: agents that think together over several rounds.

Agents are (model, role) pairs arranged by a pattern (:mod:`nbmagic.mas.roles`).
Each round every agent works on the question plus what the previous stage passed
on; the last agent's output feeds the first agent of the next round, and only the
last agent of the last round writes the answer.

Two ways to pass things on, one recursion:

* **latent** (every agent a local model: ``gguf:`` through llama.cpp, ``hf:`` through
  transformers): agents hand over latent thoughts, hidden-state vectors mapped into the
  next agent's embedding space by links, and never decode intermediate text
  (:mod:`nbmagic.mas.latent_mode`, through :class:`~nbmagic.llm.latent.LatentBackend`);
* **text** (the Recursive-TextMAS baseline, and the only option with remote models):
  agents hand over text messages capped at ``message_tokens`` (:mod:`nbmagic.mas.text`).

``mode="auto"`` picks latent only for patterns where the evaluation measured it as
accurate as text (:mod:`nbmagic.mas.auto`) and says why (``mode_reason``, a Notice per
run). Several agents may share one model; a spec string is loaded once per system.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

from nbmagic.errors import ConfigError
from nbmagic.events import EventHandler, Finished, Notice, RunStarted, emit, fanout
from nbmagic.lifecycle import RunLifecycle
from nbmagic.llm.base import ChatModel
from nbmagic.mas.roles import (
    DEFAULT_ROLES,
    Plan,
    arrange,
    check_pattern,
    normalize_role,
    system_prompt,
)
from nbmagic.mas.team import (
    LOCAL_BACKENDS,
    MODES,
    Agent,
    AgentStats,
    Bookkeeper,
    MASResult,
    MASSettings,
    Member,
    Team,
    model_label,
)

__all__ = ["LOCAL_BACKENDS", "MODES", "Agent", "AgentStats", "MASResult", "Member", "RecursiveMAS", "model_label"]


def _why_not_latent(model: ChatModel) -> str:
    """"" when ``model`` can think in latent space, else the reason (remote, uncovered GGUF architecture)."""
    reason = getattr(model, "latent_unsupported_reason", None)
    if reason:
        return str(reason)
    if getattr(model, "supports_latent", False):
        return ""
    return f"{model.backend}:{model.name} has no hidden states (a remote model)"


class RecursiveMAS:
    """A recursive multi-agent system; see the module docstring.

    ``RecursiveMAS(model="hf:Qwen/Qwen2.5-0.5B-Instruct")`` runs the sequential
    pattern's Planner, Critic and Solver on one shared model;
    ``RecursiveMAS(agents=[Agent(m, "solver")], rounds=1)`` is the single-agent fast path.
    """

    def __init__(
        self,
        agents: list[Agent] | None = None,
        *,
        model: ChatModel | str | None = None,
        pattern: str | None = None,
        rounds: int | None = None,
        latent_steps: int | None = None,
        mode: str | None = None,
        links: str | Path | None = None,
        max_new_tokens: int = 512,
        temperature: float = 0.0,
        message_tokens: int = 256,
        on_event: EventHandler | None = None,
        tool_timeout: float = 10.0,
        max_tool_calls: int = 2,
    ) -> None:
        from nbmagic.config import settings

        pattern = check_pattern(pattern if pattern is not None else settings.pattern)
        requested = mode if mode is not None else settings.mode or "auto"
        requested = requested.strip().lower() if isinstance(requested, str) else ""
        if requested not in MODES:
            raise ConfigError(f"Unknown mode {mode!r}: choose auto, latent or text.")
        given = {"rounds": rounds, "latent_steps": latent_steps}
        #: the validated settings (one validator for every engine: nbmagic.settings)
        self.settings = MASSettings.configured(
            pattern=pattern, mode=requested, max_new_tokens=max_new_tokens, message_tokens=message_tokens,
            temperature=temperature, tool_timeout=tool_timeout, max_tool_calls=max_tool_calls,
            **{k: v for k, v in given.items() if v is not None},
        )
        rounds, latent_steps = self.settings.rounds, self.settings.latent_steps
        if on_event is not None and not callable(on_event):
            raise ConfigError(f"on_event must be a callable taking an event, not {type(on_event).__name__}.")
        self.on_event = on_event

        specs = self._agent_specs(agents, model, pattern)
        roles = [normalize_role(a.role) for a in specs]
        custom = {i for i, a in enumerate(specs) if a.instructions and a.instructions.strip()}
        plan: Plan = arrange(pattern, roles, custom)
        self._cache: dict[str, ChatModel] = {}
        members: list[Member] = []
        names = self._unique_names(specs, roles)
        for i, (a, role, name) in enumerate(zip(specs, roles, names, strict=True)):
            chat_model, spec = self._load(a.model if a.model is not None else model)
            members.append(Member(i, name, role, chat_model, system_prompt(role, a.instructions), spec))

        non_latent = {m.name: _why_not_latent(m.model) for m in members}
        non_latent = {k: v for k, v in non_latent.items() if v}
        if requested == "latent" and non_latent:
            raise ConfigError(
                "mode='latent' needs every agent on a local model with hidden states (gguf: through "
                "llama.cpp, or hf: through transformers); "
                + "; ".join(f"{name}: {why}" for name, why in non_latent.items())
                + ". Use mode='text'."
            )
        if requested == "latent":
            mode, reason = "latent", ""
        elif requested == "text":
            mode, reason = "text", ""
        elif non_latent:
            mode, reason = "text", "text mode: " + "; ".join(f"{k}: {v}" for k, v in non_latent.items())
        elif links is not None:
            mode, reason = "latent", "latent mode: trained links were given"
        else:
            from nbmagic.mas.auto import choose_mode

            mode, reason = choose_mode(pattern)
        #: the resolved system the modes run (settings, plan, members)
        self.team = Team(
            pattern=pattern, plan=plan, members=members, mode=mode,
            rounds=rounds, latent_steps=latent_steps, max_new_tokens=self.settings.max_new_tokens,
            message_tokens=self.settings.message_tokens, temperature=self.settings.temperature,
            tool_timeout=self.settings.tool_timeout, max_tool_calls=self.settings.max_tool_calls,
        )
        #: why ``mode="auto"`` chose the mode it did ("" when the mode was asked for); also a Notice per run
        self.mode_reason = reason
        self.links: Any = None  # a LinkSet (torch) once trained links are loaded or trained
        if links is not None and not isinstance(links, (str, Path)):
            raise ConfigError(f"links must be the path of a links checkpoint folder, not {type(links).__name__}.")
        self.links_path = Path(links).expanduser() if links is not None else None
        if self.links_path is not None:
            if self.mode != "latent":
                raise ConfigError(
                    f"Links ({self.links_path}) only apply in latent mode, but this system runs in text "
                    "mode. Drop links=..., or pass mode='latent' with local gguf: or hf: models for every agent."
                )
            from nbmagic.mas.checkpoint import load_links

            self.links = load_links(self.links_path, self.team)
        self._run_lock = threading.Lock()

    @property
    def fallback_reason(self) -> str:
        """Why ``auto`` fell back to text ("" otherwise); kept for callers of earlier versions."""
        return self.mode_reason if self.mode == "text" else ""

    # -- the team's fields, read through ------------------------------------------------------

    pattern = property(lambda self: self.team.pattern, doc="the collaboration pattern")
    plan = property(lambda self: self.team.plan, doc="agents (by index) arranged in stages")
    members = property(lambda self: self.team.members, doc="the resolved agents")
    mode = property(lambda self: self.team.mode, doc='"latent" or "text"')
    rounds = property(lambda self: self.team.rounds, doc="recursion rounds")
    latent_steps = property(lambda self: self.team.latent_steps, doc="latent thoughts per agent per round")
    max_new_tokens = property(lambda self: self.team.max_new_tokens, doc="length cap of the answer")
    message_tokens = property(lambda self: self.team.message_tokens, doc="length cap of a text message")
    temperature = property(lambda self: self.team.temperature, doc="0 = greedy")
    tool_timeout = property(lambda self: self.team.tool_timeout, doc="seconds a Python tool call may run")
    max_tool_calls = property(lambda self: self.team.max_tool_calls, doc="tool calls per tool-caller turn")

    # -- construction helpers -------------------------------------------------------------

    @staticmethod
    def _agent_specs(agents: list[Agent] | None, model: ChatModel | str | None, pattern: str) -> list[Agent]:
        if agents is None:
            return [Agent(model, role) for role in DEFAULT_ROLES[pattern]]
        if isinstance(agents, Agent):
            agents = [agents]
        out: list[Agent] = []
        for i, a in enumerate(agents):
            if isinstance(a, tuple) and len(a) == 2:
                a = Agent(a[0], a[1])
            if not isinstance(a, Agent):
                raise ConfigError(
                    f"Agent {i + 1} must be an Agent(model, role) (or a (model, role) pair), not {type(a).__name__}."
                )
            for field_name in ("name", "instructions"):
                value = getattr(a, field_name)
                if value is not None and not isinstance(value, str):
                    raise ConfigError(f"Agent {i + 1}'s {field_name} must be a string, not {type(value).__name__}.")
            out.append(a)
        return out

    @staticmethod
    def _unique_names(specs: list[Agent], roles: list[str]) -> list[str]:
        names: list[str] = []
        for a, role in zip(specs, roles, strict=True):
            base = (a.name or role).strip() or role
            name, k = base, 2
            while name in names:
                name, k = f"{base}-{k}", k + 1
            if a.name and name != base:
                raise ConfigError(f"Two agents are named {base!r}: agent names must be unique.")
            names.append(name)
        return names

    def _load(self, model: ChatModel | str | None) -> tuple[ChatModel, str]:
        """Load a spec once per system; a ChatModel object is used as is."""
        if isinstance(model, ChatModel):
            return model, model_label(model)
        if model is not None and not isinstance(model, str):
            raise ConfigError(f"An agent's model must be a ChatModel or a spec string, not {type(model).__name__}.")
        key = model or ""
        if key not in self._cache:
            from nbmagic.llm.specs import load_model

            self._cache[key] = load_model(model)
        loaded = self._cache[key]
        return loaded, model or model_label(loaded)

    # -- running ------------------------------------------------------------------------------

    def run(
        self, question: str, *, on_event: EventHandler | None = None, max_new_tokens: int | None = None
    ) -> MASResult:
        """Answer ``question``; progress goes to ``on_event`` (and the constructor's handler)."""
        if not isinstance(question, str) or not question.strip():
            raise ConfigError("RecursiveMAS.run needs a non-empty question string.")
        limit = self.settings.max_new_tokens if max_new_tokens is None else \
            self.settings.replace(max_new_tokens=max_new_tokens).max_new_tokens
        handler = fanout(self.on_event, on_event)
        title = question.strip().splitlines()[0][:80]
        emit(handler, RunStarted("mas", title, ", ".join(sorted({m.spec for m in self.members}))))
        if self.mode_reason:
            emit(handler, Notice(self.mode_reason))
        book = Bookkeeper(self.team, handler)
        lifecycle = RunLifecycle(
            "mas", handler, lambda: book.result(book.partial_answer, book.rounds_done, complete=False),
            interrupted=lambda: "RecursiveMAS run interrupted.",
            cancel=book.cancel,  # workers still in flight stop reporting (text mode's concurrent calls)
        )
        with self._run_lock, lifecycle.guard():
            if self.mode == "latent":
                from nbmagic.mas.latent_mode import run_latent

                answer, rounds = run_latent(self.team, self.links, question, book, limit)
            else:
                from nbmagic.mas.text import run_text

                answer, rounds = run_text(self.team, question, book, limit)
        result = book.result(answer, rounds)
        emit(handler, Finished("mas", result, result.seconds))
        return result

    __call__ = run

    def close(self) -> None:
        """Release the models this system loaded from spec strings."""
        for m in self._cache.values():
            m.close()
        self._cache.clear()

    def __repr__(self) -> str:
        team = ", ".join(f"{m.name}={m.spec}" for m in self.members)
        return f"<RecursiveMAS {self.pattern} {self.mode} rounds={self.rounds} [{team}]>"
