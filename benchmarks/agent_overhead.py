"""Notebook agent costs, side by side: capture overhead per cell, and planning cost per planner.

    .venv/bin/python benchmarks/agent_overhead.py

1. One cell run three ways: bare ``exec`` (no capture), :class:`NamespaceExecutor`
   (capture + timeout guard), :class:`ShellExecutor` (``shell.run_cell`` + capture).
2. A whole agent run on the loopback server (scripted sales analysis, 50 ms model
   latency) with each planner: single (1 agent, 1 round), mas (3 agents × 1 round),
   mas (3 agents × 3 rounds). (``none`` is left out: the scripted model writes code for
   the three planned steps, not for the whole request as one step.) Model calls and wall time, relative to ``single``.
Numbers depend on the machine; the ratios are what to compare.
"""

from __future__ import annotations

import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("MPLBACKEND", "Agg")


def _time(fn, repeat: int) -> float:
    samples = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - t0)
    return statistics.median(samples)


def capture_overhead() -> None:
    from IPython.core.interactiveshell import InteractiveShell

    from nbmagic.agent.executor import NamespaceExecutor, ShellExecutor

    cells = {
        "trivial": "x = sum(range(100))\nx",
        "pandas": "import pandas as pd\ndf = pd.DataFrame({'a': range(1000), 'b': range(1000)})\ndf.groupby(df.a % 7).b.sum()",
    }
    shell = InteractiveShell.instance()
    print("1. one cell, median of 30 runs (ms)")
    print(f"   {'cell':<8} {'bare exec':>10} {'namespace':>10} {'shell':>10} {'ns/bare':>8} {'shell/bare':>10}")
    for name, code in cells.items():
        ns: dict = {}
        compiled = compile(code, "<bench>", "exec")
        bare = _time(lambda c=compiled, n=ns: exec(c, n), 30)
        nse = NamespaceExecutor({})
        nsx = _time(lambda e=nse, c=code: e.run(c, timeout=10), 30)
        she = ShellExecutor(shell)
        shx = _time(lambda e=she, c=code: e.run(c, timeout=10), 30)
        print(f"   {name:<8} {bare * 1e3:>10.3f} {nsx * 1e3:>10.3f} {shx * 1e3:>10.3f} {nsx / bare:>7.1f}x {shx / bare:>9.1f}x")


def planners() -> None:
    from nbmagic.agent.core import NotebookAgent
    from nbmagic.llm.specs import load_model
    from nbmagic.testing.agent_scripts import make_responder, write_sales_csv
    from nbmagic.testing.openai_server import OpenAICompatServer

    request = "Analyze sales.csv: the top 5 products by revenue and a monthly revenue trend plot"
    settings = [
        ("warm-up", "single", {}),  # first run pays the pandas/matplotlib imports; not reported
        ("single", "single", {}),
        ("mas 3x1", "mas", {"rounds": 1}),
        ("mas 3x3", "mas", {"rounds": 3}),
    ]
    rows = []
    with tempfile.TemporaryDirectory() as tmp, OpenAICompatServer(models=["test-model"], latency=0.05) as srv:
        write_sales_csv(Path(tmp) / "sales.csv")
        cwd = os.getcwd()
        os.chdir(tmp)
        try:
            for label, planner, opts in settings:
                srv.set_responder(make_responder("works"))
                model = load_model(f"openai-compat:test-model@{srv.url}")
                t0 = time.perf_counter()
                res = NotebookAgent(model, planner=planner, mas_options=opts).run(request, {})
                rows.append((label, time.perf_counter() - t0, res.usage.calls, len(res.plan), res.ok))
                model.close()
        finally:
            os.chdir(cwd)
    base = next(r for r in rows if r[0] == "single")
    print("\n2. whole run, loopback model with 50 ms latency")
    print(f"   {'planner':<8} {'seconds':>8} {'calls':>6} {'steps':>6} {'ok':>4} {'time/single':>12}")
    for label, secs, calls, steps, ok in rows[1:]:
        print(f"   {label:<8} {secs:>8.2f} {calls:>6} {steps:>6} {ok!s:>4} {secs / base[1]:>11.2f}x")


if __name__ == "__main__":
    capture_overhead()
    planners()
