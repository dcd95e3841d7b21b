"""llm_query_batched of 16 prompts vs one llm_query, against a server with 200 ms latency.

Goal: the batch of 16 takes at most 2x one call (it runs up to max_concurrency at once).

    .venv/bin/python benchmarks/rlm_batched.py [--latency 0.2] [--n 16]
"""

from __future__ import annotations

import argparse
import statistics
import time

from nbmagic.llm.specs import load_model
from nbmagic.rlm.tools import Budget, Toolbox
from nbmagic.testing.openai_server import OpenAICompatServer


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--latency", type=float, default=0.2)
    ap.add_argument("--n", type=int, default=16)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    with OpenAICompatServer(lambda req: "ok", models=["sub"], latency=args.latency) as srv:
        sub = load_model(f"openai-compat:sub@{srv.url}", max_retries=0)
        sub.chat("warm up")
        prompts = [f"question {i}" for i in range(args.n)]
        one, batches = [], {}
        for _ in range(args.repeats):
            box = Toolbox(sub_model=sub, budget=Budget(max_llm_calls=None))
            t0 = time.perf_counter()
            box.llm_query("question")
            one.append(time.perf_counter() - t0)
        for conc in (1, 8, 16):
            times = []
            for _ in range(args.repeats):
                box = Toolbox(sub_model=sub, budget=Budget(max_llm_calls=None), max_concurrency=conc)
                srv.reset()
                t0 = time.perf_counter()
                out, _ = box.llm_query_batched(prompts)
                times.append(time.perf_counter() - t0)
                assert out == ["ok"] * args.n
            batches[conc] = (statistics.median(times), srv.max_in_flight)
    t1 = statistics.median(one)
    print(f"server latency {args.latency * 1000:.0f} ms; median of {args.repeats}")
    print(f"{'call':<34} {'seconds':>8} {'x one call':>10} {'max in flight':>14}")
    print(f"{'llm_query (1 prompt)':<34} {t1:>8.3f} {1.0:>10.2f} {1:>14}")
    for conc, (t, inflight) in batches.items():
        label = f"llm_query_batched ({args.n}, bound {conc})"
        print(f"{label:<34} {t:>8.3f} {t / t1:>10.2f} {inflight:>14}")
    ok = batches[16][0] <= 2 * t1
    print(f"\nbatch of {args.n} (bound 16) = {batches[16][0] / t1:.2f}x one call: goal <= 2x {'met' if ok else 'NOT met'}")


if __name__ == "__main__":
    main()
