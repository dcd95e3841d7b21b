"""``python -m nbmagic rlm QUESTION --context FILE [--model SPEC]`` and ``rlm --view FILE``.

Each ``--context`` file becomes a variable named after the file (its text; a
folder stays a path the code can walk); one context is also bound as
``context``. The answer goes to stdout, progress to stderr with ``--verbose``;
an answer the model never computed (prose only) is flagged on stderr.
``--view run.jsonl`` prints a saved trajectory as text, ``--html page.html``
writes it as a standalone page instead.
Light to import: the engine loads only when the command runs.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import re
import sys
from pathlib import Path
from typing import Any

from nbmagic.errors import ConfigError

MAX_TEXT_BYTES = 2 * 1024**3


def add_arguments(p: argparse.ArgumentParser) -> None:
    """The RLM's options come from :class:`~nbmagic.rlm.settings.RLMSettings` (as for ``%rlm``);
    the rest are this command's own (files, output)."""
    from nbmagic.rlm.settings import QueryOptions, RLMSettings

    p.add_argument("question", nargs="?", default=None, help="what to ask about the context")
    p.add_argument("--context", "-c", action="append", default=[], metavar="PATH",
                   help="a file (read as text) or folder (kept as a path); repeatable")
    RLMSettings.add_arguments(p)
    QueryOptions.add_arguments(p)
    p.add_argument("--verbose", "-v", action="store_true", help="log iterations and sub-calls to stderr")
    p.add_argument("--view", default=None, metavar="FILE.jsonl", help="show a saved trajectory instead of asking")
    p.add_argument("--html", default=None, metavar="FILE.html", help="with --view: write an HTML page there")
    p.add_argument("--force", action="store_true", help="with --html: overwrite an existing file")


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


def view(args: argparse.Namespace) -> int:
    from nbmagic.ui.trajectory_view import TrajectoryView

    if args.question:
        raise ConfigError("--view shows a saved trajectory; ask a question without --view.")
    shown = TrajectoryView(args.view)
    if args.html:
        print(shown.save(args.html, force=args.force))
    else:
        print(shown.to_text())
    return 0


def run(args: argparse.Namespace) -> int:
    from nbmagic.rlm.agent import NOT_COMPUTED, RLM

    if args.view is not None:
        return view(args)
    if args.html:
        raise ConfigError("--html goes with --view FILE.jsonl.")
    if not args.question or not args.question.strip():
        raise ConfigError('The question is empty. Example: python -m nbmagic rlm "How many errors?" -c app.log')
    contexts = load_contexts(args.context)
    log = None
    if args.verbose:  # the same milestone lines as every other engine's log, ending with a summary
        from nbmagic.ui.plain import PlainLog

        log = PlainLog(sys.stderr)
    from nbmagic.rlm.settings import QueryOptions, RLMSettings

    rlm = RLM(settings=RLMSettings.from_args(args), on_event=log)
    schema = QueryOptions.from_args(args).schema  # JSON text or a .json file, as in %rlm
    with log if log is not None else contextlib.nullcontext():
        result = rlm.query(args.question, context=contexts, schema=schema)
    answer = result.answer
    if hasattr(answer, "model_dump_json"):
        answer = answer.model_dump_json()
    elif not isinstance(answer, str):
        try:
            answer = json.dumps(answer, ensure_ascii=False)
        except (TypeError, ValueError):
            answer = repr(answer)
    print(answer)
    if not result.computed:
        print(f"nbmagic rlm: warning: answer {NOT_COMPUTED}.", file=sys.stderr)
    for line in result.files.lines():  # what the REPL code did to files (stdout stays the answer alone)
        print(f"nbmagic rlm: {line}", file=sys.stderr)
    return 0
