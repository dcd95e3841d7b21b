"""The agent's options, defined once for ``%%agent`` and ``python -m nbmagic generate``.

Both entry points parse with argparse (IPython's ``magic_arguments`` is argparse
underneath), so one table of ``(flags, keyword arguments)`` serves both: the
magic applies it as decorators (:func:`magic_arguments`), the CLI adds it to its
subparser (:func:`add_to_parser`). An option added here exists in both, with the
same name, choices and help. Light to import: no engine, no IPython.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import Any

from nbmagic.agent.planner import PLANNERS

#: the options ``%%agent`` and ``generate`` share (entry-point-only ones stay with each)
SHARED: list[tuple[tuple[str, ...], dict[str, Any]]] = [
    (("-m", "--model"), dict(default=None, help="model spec, e.g. openai:gpt-4o-mini, ollama:qwen2.5:7b, "
                             "openai-compat:<model>@<url>, gguf:<path>, hf:<repo> (default: the default model)")),
    (("--planner",), dict(choices=PLANNERS, default=None,
                          help="auto (default: none for local models, mas for remote ones); mas: RecursiveMAS "
                               "plans; single: one agent, one round; none: no plan; onecall: one reply run once")),
    (("--rounds",), dict(type=int, default=None, help="RecursiveMAS recursion rounds for planning (default 3)")),
    (("--latent-steps",), dict(type=int, default=None, help="latent thoughts per agent per round (default 32)")),
    (("--mode",), dict(choices=("auto", "latent", "text"), default=None,
                       help="how agents talk: latent (hidden states, HF models), text, or auto")),
    (("--pattern",), dict(default=None, help="agent pattern: sequential | mixture | distillation | deliberation")),
    (("--max-fixes",), dict(type=int, default=None, help="attempts to fix a failing cell (default 3)")),
    (("--timeout",), dict(type=float, default=None, help="seconds one generated cell may run (default 120)")),
    (("--dry-run",), dict(action="store_true", help="plan and write the cells without running them")),
    (("--stop-on-failure",), dict(action="store_true", help="stop at the first step that cannot be fixed")),
    (("--allow-install",), dict(action="store_true",
                                help="let the agent %%pip install a missing package (otherwise it asks or says so)")),
    (("--no-answer",), dict(action="store_true", help="no closing markdown cell answering the request")),
    (("--refine",), dict(choices=("auto", "model", "rules", "off"), default=None,
                         help="revise the remaining plan after each step (default auto)")),
    (("--force",), dict(action="store_true", help="allow --output to overwrite an existing notebook")),
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
    return {
        "planner": getattr(args, "planner", None) or "auto",
        "stop_on_failure": bool(getattr(args, "stop_on_failure", False)),
        "allow_install": bool(getattr(args, "allow_install", False)),
        "answer": not getattr(args, "no_answer", False),
        "refine": getattr(args, "refine", None) or "auto",
    }
