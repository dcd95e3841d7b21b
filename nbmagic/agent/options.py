"""The agent's settings (:class:`AgentSettings`), defined once for ``%%agent`` and ``python -m nbmagic generate``.

Both entry points parse with argparse (IPython's ``magic_arguments`` is argparse
underneath), so one table of ``(flags, keyword arguments)`` generated from the settings'
fields serves both: the magic applies it as decorators (:func:`magic_arguments`), the CLI
adds it to its subparser (:func:`add_to_parser`). An option added here exists in both, with
the same name, choices, help and default. ``--timeout 0`` means no limit, as everywhere.
Light to import: no engine, no IPython.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from nbmagic.mas.team import MASSettings
from nbmagic.settings import CLI, EngineSettings, option, same_as

#: the planners %%agent knows (what each means: docs/agent.md); a leaf constant, so the settings
#: table that nbmagic.config builds does not pull in the planner and, through it, RecursiveMAS
PLANNERS = ("auto", "parts", "mas", "single", "none", "onecall")


@dataclass(frozen=True)
class AgentSettings(EngineSettings):
    """The notebook agent's settings, declared once (see :mod:`nbmagic.settings`); the planning
    fields are RecursiveMAS's own (:class:`~nbmagic.mas.team.MASSettings`)."""

    model: str | None = option(None, "-m", "--model", kind=str, config="model", default_text="the default model",
                               help="model spec, e.g. openai:gpt-4o-mini, ollama:qwen2.5:7b, "
                                    "openai-compat:<model>@<url>, gguf:<path>, hf:<repo>")
    planner: str = option("auto", "--planner", choices=PLANNERS,
                          help="where the parts come from; each part is then a round of the loop (tool-caller "
                               "writes, kernel runs, reflector judges). auto: parts for local models, mas for "
                               "remote ones; parts: read from the request, no model call; mas: a RecursiveMAS plan; "
                               "single: one agent plans in one round; none: the whole request is one part; "
                               "onecall: the baseline, one reply run once")
    rounds: int = same_as(MASSettings, "rounds")
    latent_steps: int = same_as(MASSettings, "latent_steps")
    mode: str = same_as(MASSettings, "mode")
    pattern: str = same_as(MASSettings, "pattern")
    max_fixes: int = option(3, "--max-fixes", low=0, high=20, config="max_fixes",
                            help="attempts to fix a failing cell")
    timeout: float | None = option(120.0, "--timeout", kind=float, low=0, zero_is_none=True, unit="seconds",
                                   config="cell_timeout", help="seconds one generated cell may run")
    dry_run: bool = option(False, "--dry-run", help="plan and write the cells without running them")
    stop_on_failure: bool = option(False, "--stop-on-failure", help="stop at the first step that cannot be fixed")
    allow_install: bool = option(False, "--allow-install",
                                 help="let the agent %pip install a missing package (otherwise it asks or says so)")
    answer: bool = option(True, "--no-answer", negate=True, help="no closing markdown cell answering the request")
    refine: str = option("auto", "--refine", choices=("auto", "model", "rules", "off"),
                         help="revise the remaining plan after each step")


#: the options ``%%agent`` and ``generate`` share: the settings' fields, and --force (entry-point only)
SHARED: list[tuple[tuple[str, ...], dict[str, Any]]] = [
    *AgentSettings.argument_specs(CLI),
    (("--force",), dict(action="store_true", help="allow --output to overwrite an existing notebook")),
    (("--max-run-tokens",), dict(type=int, default=None,
                                 help="tokens one run's model calls may spend (default: 200000 for remote models, "
                                      "no cap for local ones)")),
    (("--max-cost",), dict(type=float, default=None,
                           help="dollars one run may spend, where the model's price is known")),
    (("--no-code-grammar",), dict(action="store_true",
                                  help="do not force GGUF models to answer with a code block (llama.cpp grammar)")),
]


def add_to_parser(parser: argparse.ArgumentParser, *, skip: tuple[str, ...] = ()) -> None:
    """Add the shared options to an argparse parser (the CLI's ``generate``)."""
    for flags, kwargs in SHARED:
        if not any(f in skip for f in flags):
            parser.add_argument(*flags, **kwargs)


def magic_arguments(func: Callable[..., Any]) -> Callable[..., Any]:
    """Decorate a magic with the shared options (apply below ``@magic_arguments()``)."""
    from IPython.core.magic_arguments import argument

    for flags, kwargs in reversed(SHARED):
        func = argument(*flags, **kwargs)(func)
    return func


def engine_kwargs(args: argparse.Namespace) -> dict[str, Any]:
    """The NotebookAgent keywords the shared options set beyond the settings-backed ones."""
    s = AgentSettings.from_args(args)
    return {"planner": s.planner, "stop_on_failure": s.stop_on_failure, "allow_install": s.allow_install,
            "answer": s.answer, "refine": s.refine,
            "max_run_tokens": getattr(args, "max_run_tokens", None),
            "max_cost_usd": getattr(args, "max_cost", None),
            "force_code_block": not getattr(args, "no_code_grammar", False)}
