"""What figure descriptions are worth: plot requests whose answer needs what the plot shows.

    .venv/bin/python benchmarks/figure_descriptions.py [--model SPEC] [--requests N]

Each request asks for a plot and one fact the plot shows (the peak month, the biggest
bar). The agent runs it twice in a fresh namespace (planner ``none``, closing answer on):
once with figure descriptions (``[figure] Figure (1 axes ...) line plot ...``), once with
the old ``[image/png figure]`` placeholder (``NBMAGIC_FIGURE_DESCRIPTIONS=0``). Scored:
the model's own answer (not the agent's fallback that quotes the last output) names the
right label and none of the other candidates. Printed side by side, with seconds; one run
each on a loaded machine, so compare the columns, not single timings.
"""

from __future__ import annotations

import argparse
import os
import re
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("MPLBACKEND", "Agg")


def _requests(csv: Path) -> list[tuple[str, str, list[str]]]:
    """(request, right label, every candidate label) computed from the data."""
    import pandas as pd

    d = pd.read_csv(csv, parse_dates=["date"])
    monthly = d.groupby(d.date.dt.strftime("%Y-%m")).revenue.sum()
    units = d.groupby("product").units.sum()
    region = d.groupby("region").revenue.sum()
    price = d.groupby("product").unit_price.mean()
    return [
        ("Plot the monthly revenue from sales.csv as a line chart, then say in which month revenue was highest.",
         monthly.idxmax(), list(monthly.index)),
        ("Draw a bar chart of total units per product from sales.csv, then say which product sold the most units.",
         units.idxmax(), list(units.index)),
        ("Draw a bar chart of revenue per region from sales.csv, then say which region has the lower revenue.",
         region.idxmin(), list(region.index)),
        ("Draw a bar chart of the average unit_price per product from sales.csv, then say which product is "
         "the cheapest.", price.idxmin(), list(price.index)),
    ]


def _names(label: str) -> list[str]:
    """How an answer may name a label: as is, and a month also by its name."""
    out = [label.lower()]
    m = re.fullmatch(r"(\d{4})-(\d{2})", label)
    if m:
        import calendar

        month = int(m.group(2))
        out += [calendar.month_name[month].lower(), calendar.month_abbr[month].lower() + " "]
    return out


def score(answer: str, source: str, right: str, candidates: list[str]) -> bool:
    if source != "model":
        return False
    text = answer.lower() + " "
    wrong = [c for c in candidates if c != right]
    return any(n in text for n in _names(right)) and not any(n in text for c in wrong for n in _names(c))


def run_one(model, request: str, folder: Path):
    from nbmagic.agent.core import NotebookAgent
    from nbmagic.agent.executor import NamespaceExecutor

    agent = NotebookAgent(model, planner="none", max_fixes=2, cell_timeout=60, answer=True)
    t0 = time.perf_counter()
    result = agent.run(request, namespace=NamespaceExecutor({}, cwd=folder), base_dir=folder)
    entry = next((t for t in result.trajectory if t.get("type") == "answer"), {})
    return result.answer, entry.get("source", "none"), time.perf_counter() - t0


def main() -> int:
    from nbmagic.llm.embedded import embedded_gguf_path
    from nbmagic.llm.specs import load_model
    from nbmagic.testing.agent_scripts import write_sales_csv

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default=None, help="model spec (default: the embedded GGUF)")
    p.add_argument("--requests", type=int, default=4, help="how many of the requests (default all 4)")
    args = p.parse_args()
    spec = args.model or f"gguf:{embedded_gguf_path()}"
    model = load_model(spec, default_params={"temperature": 0.0})
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        write_sales_csv(folder / "sales.csv")
        for request, right, candidates in _requests(folder / "sales.csv")[: args.requests]:
            row = [request[:58]]
            for flag in ("1", "0"):
                os.environ["NBMAGIC_FIGURE_DESCRIPTIONS"] = flag
                answer, source, seconds = run_one(model, request, folder)
                ok = score(answer, source, right, candidates)
                row += [ok, seconds, source]
                print(f"  descriptions={flag} {'RIGHT' if ok else 'wrong'} ({source}, {seconds:.0f} s): "
                      f"{answer.strip()[:140]!r}", flush=True)
            rows.append(row)
    print(f"\nmodel: {spec}")
    print(f"{'request':<60} {'with descriptions':>18} {'placeholder':>12}")
    for req, ok1, s1, _, ok0, s0, _ in rows:
        print(f"{req:<60} {('right' if ok1 else 'wrong') + f' {s1:4.0f}s':>18} {('right' if ok0 else 'wrong') + f' {s0:4.0f}s':>12}")
    n1, n0 = sum(r[1] for r in rows), sum(r[4] for r in rows)
    print(f"{'answers naming the plotted fact':<60} {f'{n1}/{len(rows)}':>18} {f'{n0}/{len(rows)}':>12}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
