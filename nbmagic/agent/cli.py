"""``python -m nbmagic generate "REQUEST" -o out.ipynb``: a notebook from a request.

The agent runs in a plain namespace in this process (the current folder is the
working folder, so relative data paths work), the cells are written to the
output notebook as they are accepted (atomically, never over an existing file
unless ``--force``), and ``--verify`` re-runs the notebook top to bottom in a
fresh kernel (then the exit status is the verification's: 0 when the notebook runs and
at least one step succeeded). Light to import: everything heavy loads inside :func:`run`.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path


def add_arguments(p: argparse.ArgumentParser) -> None:
    from nbmagic.agent.options import add_to_parser

    p.add_argument("request", help="what the notebook should do, in plain words")
    p.add_argument("-o", "--output", required=True, help="notebook file to write (.ipynb)")
    add_to_parser(p)  # the options %%agent takes too, defined once
    p.add_argument("--verify", action="store_true", help="run the written notebook in a fresh kernel")
    p.add_argument("--kernel", choices=("here", "new"), default="here",
                   help="where the cells run: this process (default) or a fresh Jupyter kernel")
    p.add_argument("--quiet", action="store_true", help="no progress lines, only the summary")


def run(args: argparse.Namespace) -> int:
    from nbmagic.config import settings
    from nbmagic.errors import ConfigError, NotebookExistsError, RunInterrupted

    if not args.request.strip():
        raise ConfigError('The request is empty: say what the notebook should do, e.g. "Load sales.csv and plot revenue".')
    out = Path(args.output).expanduser()
    if out.suffix != ".ipynb":
        raise ConfigError(f"The output {args.output!r} should be a .ipynb file.")
    if out.exists() and not args.force:
        raise NotebookExistsError(f"{out} already exists; pass --force to overwrite it or choose another -o.")
    os.environ.setdefault("MPLBACKEND", "Agg")  # figures become PNG outputs, no windows

    from nbmagic.agent.core import NotebookAgent
    from nbmagic.agent.options import engine_kwargs

    mas_options = {k: v for k, v in {"rounds": args.rounds, "latent_steps": args.latent_steps,
                                     "mode": args.mode, "pattern": args.pattern}.items() if v is not None}
    on_event = None
    if not args.quiet:
        from nbmagic.ui.plain import PlainLog

        on_event = PlainLog(sys.stderr)
    agent = NotebookAgent(
        args.model,
        mas_options=mas_options,
        max_fixes=args.max_fixes if args.max_fixes is not None else settings.max_fixes,
        cell_timeout=args.timeout if args.timeout is not None else settings.cell_timeout,
        dry_run=args.dry_run,
        on_event=on_event,
        **engine_kwargs(args),
    )
    agent.model  # noqa: B018 - load now: a missing model is one clear message, before any file exists

    from nbmagic.notebook.sinks import FileSink

    sink = FileSink(out, force=args.force, base_dir=os.getcwd())
    namespace: dict[str, object] = {"__name__": "__main__"}
    try:
        if getattr(args, "kernel", "here") == "new":
            from nbmagic.agent.kernel_executor import KernelExecutor

            with KernelExecutor(cwd=os.getcwd()) as executor:
                result = agent.run(args.request, executor, sink=sink, base_dir=os.getcwd())
        else:
            result = agent.run(args.request, namespace, sink=sink, base_dir=os.getcwd())
    except RunInterrupted as exc:
        partial = exc.partial
        print(partial.summary if partial is not None else exc.message)
        print(f"nbmagic: interrupted; the cells so far are in {out}", file=sys.stderr)
        return 130
    print(result.summary)
    status = 0 if result.ok else 1
    if args.verify and not args.dry_run:
        from nbmagic.notebook.sinks import verify_notebook

        check = verify_notebook(str(out), timeout=max(60.0, agent.cell_timeout or 600.0))
        print(check.summary())
        # with --verify the verdict is the notebook's: it runs top to bottom and at least one step
        # did its work (cells that never succeeded are kept, tagged, and listed in the summary above)
        succeeded = any(c.get("metadata", {}).get("nbmagic", {}).get("status") == "ok" for c in result.cells
                        if c.get("cell_type") == "code")
        status = 0 if check.ok and succeeded else 1
        if check.ok and result.failed_steps:
            print(f"nbmagic: step(s) {', '.join(map(str, result.failed_steps))} failed; their last attempt is "
                  "kept in the notebook, tagged raises-exception.", file=sys.stderr)
    return status
