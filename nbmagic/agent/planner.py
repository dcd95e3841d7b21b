"""Planning: the request and its context in, a list of steps out.

The plan comes from RecursiveMAS (latent when every agent is a local Hugging
Face model, text otherwise), or from one agent in one round (``"single"``) when
speed matters, or not at all (``"none"``: the request is the only step). A
reply that holds no list does not stop the run: the request becomes one step
and a :class:`Notice` says so.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from nbmagic.agent.codegen import parse_plan
from nbmagic.agent.options import PLANNERS
from nbmagic.agent.prompts import plan_prompt
from nbmagic.errors import ConfigError
from nbmagic.events import EventHandler, Notice, emit
from nbmagic.llm.base import ChatModel

#: what ``auto`` becomes: for models on this machine every planning call costs real seconds before
#: the first cell (RecursiveMAS 3x3 took ~150 s of a 245 s run on CPU, benchmarks/agent_first_cell.py),
#: so local models get the parts read from the request (no model call); remote models a
#: RecursiveMAS plan. Either way the loop then does one part per round (docs/agent.md)
AUTO_LOCAL = "parts"
AUTO_REMOTE = "mas"
#: RecursiveMAS options the agent passes through
MAS_OPTION_NAMES = frozenset(
    {"pattern", "rounds", "latent_steps", "mode", "links", "max_new_tokens", "temperature", "message_tokens"}
)


@dataclass
class PlanOutcome:
    steps: list[str]
    mode: str  # "latent" | "text" | "none"
    raw: str = ""
    seconds: float = 0.0
    fallback: bool = False
    mas: dict[str, Any] = field(default_factory=dict)


def check_planner(planner: str, mas_options: dict[str, Any] | None) -> tuple[str, dict[str, Any]]:
    name = (planner or "auto").strip().lower() if isinstance(planner, str) or planner is None else None
    if name not in PLANNERS:
        raise ConfigError(f"Unknown planner {planner!r}: choose {', '.join(PLANNERS)}.")
    if mas_options is not None and not isinstance(mas_options, dict):
        raise ConfigError(f"mas_options must be a dict such as {{'rounds': 2}}, not {type(mas_options).__name__}.")
    options = dict(mas_options or {})
    unknown = sorted(set(options) - MAS_OPTION_NAMES)
    if unknown:
        raise ConfigError(
            f"Unknown mas_options {', '.join(unknown)}; known: {', '.join(sorted(MAS_OPTION_NAMES))}."
        )
    return name, options


def resolve_planner(planner: str, model: ChatModel) -> str:
    """``auto`` → the planner for this model: cheap for local models, RecursiveMAS for remote ones."""
    if planner != "auto":
        return planner
    return AUTO_LOCAL if model.backend in ("gguf", "hf") else AUTO_REMOTE


def make_plan(
    model: ChatModel,
    request: str,
    context: str,
    *,
    planner: str = "mas",
    mas_options: dict[str, Any] | None = None,
    max_steps: int = 8,
    on_event: EventHandler | None = None,
) -> PlanOutcome:
    """Ask the planner for steps; fall back to one step (the request) if none can be read."""
    name, options = check_planner(planner, mas_options)
    name = resolve_planner(name, model)
    if name in ("none", "onecall", "parts"):
        return PlanOutcome([request.strip()], "none")
    from nbmagic.mas.system import Agent, RecursiveMAS

    options.setdefault("max_new_tokens", 400)
    t0 = time.perf_counter()
    if name == "single":
        options.pop("pattern", None)
        options["rounds"] = 1
        mas = RecursiveMAS(agents=[Agent(model, "solver")], on_event=on_event, **options)
    else:
        mas = RecursiveMAS(model=model, on_event=on_event, **options)
    result = mas.run(plan_prompt(request, context, max_steps))
    steps = parse_plan(result.answer, max_steps=max_steps)
    outcome = PlanOutcome(
        steps or [request.strip()],
        result.mode,
        raw=result.answer,
        seconds=time.perf_counter() - t0,
        fallback=not steps,
        mas={"pattern": mas.pattern, "rounds": result.rounds, "mode": result.mode},
    )
    if not steps:
        emit(on_event, Notice("The planner's answer held no list of steps; doing the parts the request names.",
                              level="warning"))
    return outcome
