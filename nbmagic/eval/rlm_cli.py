"""Long-context suite: RLM vs a plain long prompt on the same model.

Generates needle retrieval in 1 MB–50 MB of text, counting and aggregation over
thousands of records, and a pairwise question, with exact answers; runs each
task as an RLM query and as one long prompt; prints accuracy, calls, tokens and
time for both. ``--model scripted`` runs against an in-process loopback server
with a scripted model (a pipeline check, not a model-quality figure).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from nbmagic.errors import ConfigError

HELP = "long-context suite: RLM vs plain long prompt (accuracy, calls, tokens, time)"
KINDS = ("needle", "count", "sum", "pairs")


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", required=True, help="model spec (or 'scripted' for the loopback scripted model)")
    p.add_argument("--sub-model", default=None, help="model for sub-calls (default: --model)")
    p.add_argument("--sizes", default="1MB,10MB,50MB", help="needle text sizes, comma-separated (default 1MB,10MB,50MB)")
    p.add_argument("--records", default="5000", help="record counts for count/sum/pairs (default 5000)")
    p.add_argument("--tasks", default=",".join(KINDS), help=f"task kinds (default {','.join(KINDS)})")
    p.add_argument("--environment", default="kernel", choices=["kernel", "subprocess"])
    p.add_argument("--max-iterations", type=int, default=12)
    p.add_argument("--max-llm-calls", type=int, default=30)
    p.add_argument("--no-baseline", action="store_true", help="skip the long-prompt baseline")
    p.add_argument("--strategies", default="auto",
                   help="RLM strategies to run, comma-separated: auto, direct, repl (default auto); "
                        "each is a column (rlm-auto, ...)")
    p.add_argument("--baseline-max-chars", type=int, default=None,
                   help="cut the baseline prompt to this many characters (head and tail)")
    p.add_argument("--window-chars", type=int, default=512_000,
                   help="scripted model only: how much of a plain prompt it can read")
    p.add_argument("--n-ctx", type=int, default=None, metavar="TOKENS",
                   help="gguf models only: load with this window (a smaller window is a cheaper run on a CPU)")
    p.add_argument("--root-max-tokens", type=int, default=None, metavar="TOKENS",
                   help="cap each root reply (small local models can ramble)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", default=None, metavar="PATH", help="also write the results as JSON")


def _split(text: str) -> list[str]:
    return [t.strip() for t in text.split(",") if t.strip()]


def _write_json(path: str | None, suite: Any, runs: list[Any]) -> None:
    if not path:
        return
    try:
        with open(path, "w", encoding="utf-8") as f:
            json.dump(suite.results_json(runs), f, indent=1)
    except OSError as exc:  # the runs so far are printed: nothing is lost
        raise ConfigError(f"Could not write --json {path!r}: {exc.strerror or exc}") from None


def run(args: argparse.Namespace) -> int:
    from nbmagic.eval import rlm_suite as suite

    try:
        sizes = [suite.parse_size(s) for s in _split(args.sizes)]
        record_counts = [int(n) for n in _split(args.records)]
    except ValueError as exc:
        raise ConfigError(f"--sizes/--records: {exc}") from None
    if args.json and (Path(args.json).is_dir() or not Path(args.json).resolve().parent.is_dir()):
        raise ConfigError(f"--json {args.json!r}: not a file in an existing folder.")  # say so before the run
    strategies = _split(args.strategies)
    bad = sorted(set(strategies) - {"auto", "direct", "repl"})
    if bad or not strategies:
        raise ConfigError(f"--strategies: unknown {', '.join(bad) or '(none given)'}; use auto, direct, repl.")
    kinds = _split(args.tasks)
    unknown = sorted(set(kinds) - set(KINDS))
    if unknown:
        raise ConfigError(f"Unknown task kind(s) {', '.join(unknown)}; use {', '.join(KINDS)}.")
    server = None
    try:
        if args.model == "scripted":
            from nbmagic.testing.openai_server import OpenAICompatServer
            from nbmagic.testing.rlm_scripts import eval_responder

            server = OpenAICompatServer(eval_responder(args.window_chars), models=["scripted-root", "scripted-sub"]).start()
            model_spec = f"openai-compat:scripted-root@{server.url}"
            sub_spec = f"openai-compat:scripted-sub@{server.url}"
        else:
            model_spec, sub_spec = args.model, args.sub_model
        from nbmagic.llm.specs import load_model

        extra = {"n_ctx": args.n_ctx} if args.n_ctx and model_spec.startswith("gguf:") else {}
        model = load_model(model_spec, **extra)
        sub = load_model(sub_spec, **extra) if sub_spec else model
        print(f"generating tasks: sizes {args.sizes}, records {args.records}, kinds {','.join(kinds)}", file=sys.stderr)
        tasks = suite.make_suite(sizes, record_counts, kinds, seed=args.seed)
        runs: list[Any] = []
        interrupted = False
        try:
            for task in tasks:
                jobs = [(f"rlm-{s}", lambda t=task, s=s: suite.run_rlm(
                    t, model, sub, environment=args.environment, method=f"rlm-{s}", strategy=s,
                    max_iterations=args.max_iterations, max_llm_calls=args.max_llm_calls,
                    root_max_tokens=args.root_max_tokens, temperature=0)) for s in strategies]
                if not args.no_baseline:
                    jobs.append(("baseline", lambda t=task: suite.run_baseline(t, model, max_chars=args.baseline_max_chars)))
                for method, job in jobs:
                    print(f"  {task.id}: {method}…", end="", file=sys.stderr, flush=True)
                    run_ = job()
                    runs.append(run_)
                    verdict = "error" if run_.error else ("right" if run_.correct else "wrong")
                    print(f" {verdict}, {run_.seconds:.1f} s, {run_.tokens:,} tokens", file=sys.stderr, flush=True)
                    _write_json(args.json, suite, runs)  # after every run: a long suite cut short keeps its results
        except KeyboardInterrupt:
            interrupted = True
            print("\ninterrupted: the table below has the runs that finished", file=sys.stderr)
        print(f"model: {model_spec if args.model != 'scripted' else 'scripted (loopback)'}")
        print(suite.format_table([t for t in tasks if any(r.task == t.id for r in runs)], runs))
        if interrupted:
            return 130
        return 1 if runs and all(r.error for r in runs) else 0  # nothing ran: say so in the status
    finally:
        if server is not None:
            server.stop()
