"""REPL turn overhead of both environments: start, a trivial turn, a helper round trip.

    .venv/bin/python benchmarks/repl_overhead.py [--turns 200] [--context-mb 50]
"""

from __future__ import annotations

import argparse
import statistics
import time
from typing import Any

from nbmagic.rlm.repl import Environment, KernelEnvironment, SubprocessEnvironment


def _noop_helper(prompt: str) -> tuple[str, None]:
    return prompt, None


def measure(env: Environment, context: Any, turns: int) -> dict[str, float]:
    t0 = time.perf_counter()
    env.start({"context": context}, {"llm_query": _noop_helper})
    start = time.perf_counter() - t0
    trivial, helper = [], []
    for _ in range(turns):
        t0 = time.perf_counter()
        env.execute("x = 1", timeout=60, max_output_chars=10_000)
        trivial.append(time.perf_counter() - t0)
    for _ in range(turns):
        t0 = time.perf_counter()
        env.execute("llm_query('ping')", timeout=60, max_output_chars=10_000)
        helper.append(time.perf_counter() - t0)
    t0 = time.perf_counter()
    env.execute("n = len(context)", timeout=60, max_output_chars=10_000)
    touch = time.perf_counter() - t0
    env.close()
    return {"start": start, "turn": statistics.median(trivial), "helper_turn": statistics.median(helper), "touch": touch}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--turns", type=int, default=200)
    ap.add_argument("--context-mb", type=float, default=50)
    args = ap.parse_args()
    small = "x" * 1000
    big = "y" * int(args.context_mb * 1_000_000)
    rows = []
    for label, ctx in (("1 KB", small), (f"{args.context_mb:g} MB", big)):
        k = measure(KernelEnvironment({}), ctx, args.turns)
        s = measure(SubprocessEnvironment(), ctx, args.turns)
        rows.append((label, k, s))
    print(f"median over {args.turns} turns; times in milliseconds")
    print(f"{'context':>8} {'metric':<26} {'kernel':>10} {'subprocess':>11} {'ratio':>7}")
    names = {"start": "start (bind contexts)", "turn": "turn: x = 1", "helper_turn": "turn: one helper call",
             "touch": "turn: len(context)"}
    for label, k, s in rows:
        for key, name in names.items():
            print(f"{label:>8} {name:<26} {k[key] * 1000:>10.3f} {s[key] * 1000:>11.3f} {s[key] / k[key]:>7.0f}x")


if __name__ == "__main__":
    main()
