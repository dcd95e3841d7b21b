"""Root prompt size stays flat as the context grows from 1 KB to 50 MB.

Runs the evaluation's needle task at each size through a real RLM against the
loopback server (scripted root model that searches with a regex and reads the
hit with one llm_query), and prints the first root prompt's size, the largest
root prompt of the run, root tokens, and wall time, next to the context size.

    .venv/bin/python benchmarks/rlm_context_scaling.py [--sizes 1KB,10KB,...] [--environment kernel]
"""

from __future__ import annotations

import argparse
import time

from nbmagic.eval.rlm_suite import human, needle_task, parse_size
from nbmagic.llm.specs import load_model
from nbmagic.rlm.agent import RLM
from nbmagic.testing.openai_server import OpenAICompatServer
from nbmagic.testing.rlm_scripts import eval_responder, is_root


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="1KB,10KB,100KB,1MB,10MB,50MB")
    ap.add_argument("--environment", default="kernel", choices=["kernel", "subprocess"])
    args = ap.parse_args()
    sizes = [parse_size(s) for s in args.sizes.split(",")]
    with OpenAICompatServer(eval_responder(), models=["root", "sub"]) as srv:
        root = load_model(f"openai-compat:root@{srv.url}", max_retries=0)
        sub = load_model(f"openai-compat:sub@{srv.url}", max_retries=0)
        rows = []
        for size in sizes:
            task = needle_task(size)
            srv.reset()
            t0 = time.perf_counter()
            res = RLM(root, sub_model=sub, environment=args.environment).query(task.question, context=task.context)
            seconds = time.perf_counter() - t0
            roots = [r["body"] for r in srv.requests if r["method"] == "POST" and is_root(r["body"])]
            chars = [sum(len(m["content"]) for m in b["messages"]) for b in roots]
            rows.append((task.size, len(task.context), chars[0], max(chars), res.usage["root"].prompt_tokens,
                         res.iterations, str(res.answer) == task.answer, seconds))
    base_ctx, base_first = rows[0][1], rows[0][2]
    print(f"{'context':>9} {'x ctx':>8} | {'1st root prompt':>15} {'x':>6} {'max root prompt':>15} "
          f"{'root tokens':>11} {'iters':>5} {'ok':>3} {'time':>7}")
    for size, n, first, biggest, tokens, iters, ok, sec in rows:
        print(f"{size:>9} {n / base_ctx:>8.0f} | {first:>15,} {first / base_first:>6.2f} {biggest:>15,} "
              f"{tokens:>11,} {iters:>5} {'yes' if ok else 'no':>3} {sec:>6.2f}s")
    print(f"\ncontext grew {rows[-1][1] / base_ctx:,.0f}x ({human(base_ctx)} -> {human(rows[-1][1])}); "
          f"first root prompt grew {rows[-1][2] / base_first:.2f}x")


if __name__ == "__main__":
    main()
