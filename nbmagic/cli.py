"""``python -m nbmagic generate|rlm|train-links|doctor``.

This module only registers subcommands; each lives with its engine and exposes
``add_arguments(parser)`` and ``run(args) -> int``. Any :class:`NbmagicError`
becomes one line on stderr and exit status 2, never a traceback; Ctrl-C exits 130.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Callable

from nbmagic.errors import NbmagicError
from nbmagic.secrets import redact

#: subcommand -> (module, one-line help)
COMMANDS: dict[str, tuple[str, str]] = {
    "generate": ("nbmagic.agent.cli", "write a notebook from a plain-language request"),
    "rlm": ("nbmagic.rlm.cli", "ask a question about a long file with a Recursive Language Model"),
    "train-links": ("nbmagic.mas.cli", "train RecursiveMAS links on a JSONL dataset"),
    "doctor": ("nbmagic.llm.doctor", "report devices, backends and the default model"),
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="nbmagic", description="Recursive LLM agents for Jupyter.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (module, help_) in COMMANDS.items():
        p = sub.add_parser(name, help=help_, description=help_)
        p.set_defaults(_module=module)
        importlib.import_module(module).add_arguments(p)
    return parser


def run_guarded(prog: str, command: Callable[[], int | None]) -> int:
    """Run a command the way every entry point must: a user error is one line and status 2,
    Ctrl-C is one line and status 130, never a traceback."""
    try:
        return int(command() or 0)
    except NbmagicError as exc:
        print(f"{prog}: {redact(exc.message)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"{prog}: interrupted", file=sys.stderr)
        return 130


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "command", None):
        parser.print_help()
        return 2
    return run_guarded("nbmagic", lambda: importlib.import_module(args._module).run(args))
