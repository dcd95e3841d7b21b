"""``python -m nbmagic rlm QUESTION --context FILE [--model SPEC]``.

Each ``--context`` file becomes a variable named after the file (its text; a
folder stays a path the code can walk); one context is also bound as
``context``. The answer goes to stdout, progress to stderr with ``--verbose``.
Light to import: the engine loads only when the command runs.
"""

from __future__ import annotations

import argparse
import contextlib
import re
import sys
from pathlib import Path
from typing import Any

from nbmagic.errors import ConfigError

MAX_TEXT_BYTES = 2 * 1024**3


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("question", help="what to ask about the context")
    p.add_argument("--context", "-c", action="append", default=[], metavar="PATH",
                   help="a file (read as text) or folder (kept as a path); repeatable")
    p.add_argument("--model", "-m", default=None, help="root model spec (default: the configured default)")
    p.add_argument("--sub-model", default=None, help="model for sub-calls (default: the root model)")
    p.add_argument("--environment", "--repl", default=None, choices=["kernel", "subprocess"],
                   help="where code runs (default kernel: this process)")
    p.add_argument("--max-iterations", type=int, default=None)
    p.add_argument("--max-llm-calls", type=int, default=None)
    p.add_argument("--max-tokens", type=int, default=None)
    p.add_argument("--timeout", type=float, default=None, help="wall-clock seconds for the whole query")
    p.add_argument("--max-depth", type=int, default=1)
    p.add_argument("--trajectory", default=None, metavar="PATH.jsonl", help="append the trajectory as JSONL")
    p.add_argument("--verbose", "-v", action="store_true", help="log iterations and sub-calls to stderr")


def _name_for(path: Path, taken: set[str]) -> str:
    from nbmagic.rlm.context import _is_name  # here, not at the top: the parser imports this module

    base = re.sub(r"\W", "_", path.stem) or "data"
    if base[0].isdigit():
        base = "f_" + base
    name, i = base, 2
    while name in taken or name == "context" or not _is_name(name):  # not a helper, not a keyword
        name, i = f"{base}_{i}", i + 1
    return name


def load_contexts(paths: list[str]) -> dict[str, Any] | None:
    if not paths:
        return None
    out: dict[str, Any] = {}
    for raw in paths:
        path = Path(raw).expanduser()
        if not path.exists():
            raise ConfigError(f"--context {raw!r}: no such file or folder.")
        name = _name_for(path, set(out))
        try:
            if path.is_dir():
                out[name] = path
            elif path.stat().st_size > MAX_TEXT_BYTES:
                out[name] = path  # too big to hold as text: the code reads it in pieces
            else:
                out[name] = path.read_text(encoding="utf-8", errors="replace")
        except OSError as exc:
            raise ConfigError(f"--context {raw!r}: cannot read it ({exc.strerror or exc}).") from None
    if len(out) == 1:
        out["context"] = next(iter(out.values()))
    return out


def run(args: argparse.Namespace) -> int:
    from nbmagic.rlm.agent import RLM

    contexts = load_contexts(args.context)
    log = None
    if args.verbose:  # the same milestone lines as every other engine's log, ending with a summary
        from nbmagic.ui.plain import PlainLog

        log = PlainLog(sys.stderr)
    rlm = RLM(
        args.model,
        sub_model=args.sub_model,
        environment=args.environment,
        max_iterations=args.max_iterations,
        max_llm_calls=args.max_llm_calls,
        max_tokens=args.max_tokens,
        timeout=args.timeout,
        max_depth=args.max_depth,
        trajectory_path=args.trajectory,
        on_event=log,
    )
    with log if log is not None else contextlib.nullcontext():
        result = rlm.query(args.question, context=contexts)
    print(result.answer)
    return 0
