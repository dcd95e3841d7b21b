"""What ``%load_ext nbmagic`` adds to a bare IPython shell, side by side with Jupyter AI's magics.

Each run is a fresh interpreter: it builds an ``InteractiveShell``, then measures the wall
time and the memory added across one ``%load_ext``: the growth of the peak resident set
(``ru_maxrss``) or of the current one (``/proc/self/statm``), whichever is larger (the peak
alone can hide growth that stays under the shell's own earlier peak). The figure reported is the median over ``--runs`` runs (default 7).
``import nbmagic`` alone is measured the same way. ``jupyter_ai_magics`` is measured when it
is importable and reported as "not installed" otherwise (REFERENCE.md measured 2.31.7 at
about 1.0 s and 64 MB on this kind of machine).

Goal: ``%load_ext nbmagic`` adds at most 0.15 s and 15 MB.

    python benchmarks/startup.py [--runs 7] [--json]
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import statistics
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
GOAL_SECONDS = 0.15
GOAL_MB = 15.0
HEAVY = ("torch", "transformers", "llama_cpp", "openai")

_PROBE = """
import json, os, resource, sys, time

def rss_mb():  # current resident memory (Linux); None elsewhere
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20
    except OSError:
        return None

from IPython.core.interactiveshell import InteractiveShell
shell = InteractiveShell.instance()
shell.run_cell("1 + 1")  # a shell that has done something, like a fresh kernel
peak0, now0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, rss_mb()
t0 = time.perf_counter()
{action}
seconds = time.perf_counter() - t0
peak1, now1 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, rss_mb()
scale = 1024 * 1024 if sys.platform == "darwin" else 1024  # bytes on macOS, KiB on Linux
peak = (peak1 - peak0) * scale / 2**20
# the peak only moves once usage passes the shell's own earlier peak: count resident growth too
grown = (now1 - now0) if now0 is not None and now1 is not None else 0.0
print(json.dumps({{"seconds": seconds, "mb": max(peak, grown), "peak_mb": peak, "rss_mb": grown,
                   "heavy": [m for m in {heavy!r} if m in sys.modules]}}))
"""

CASES = {
    "import nbmagic": 'import nbmagic',
    "%load_ext nbmagic": 'shell.run_line_magic("load_ext", "nbmagic")',
    "%load_ext jupyter_ai_magics": 'shell.run_line_magic("load_ext", "jupyter_ai_magics")',
}


def measure(action: str, runs: int) -> dict[str, float | list[str]]:
    """Median seconds and MB over ``runs`` fresh interpreters."""
    code = _PROBE.format(action=action, heavy=HEAVY)
    samples = []
    for _ in range(runs):
        proc = subprocess.run(
            [sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, timeout=300
        )
        if proc.returncode != 0:
            raise SystemExit(f"probe failed for {action!r}:\n{proc.stderr[-2000:]}")
        samples.append(json.loads(proc.stdout.strip().splitlines()[-1]))
    return {
        "seconds": statistics.median(s["seconds"] for s in samples),
        "mb": statistics.median(s["mb"] for s in samples),
        "min_seconds": min(s["seconds"] for s in samples),
        "max_seconds": max(s["seconds"] for s in samples),
        "heavy": samples[-1]["heavy"],
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=7, help="fresh interpreters per case (median reported)")
    ap.add_argument("--json", action="store_true", help="print the results as JSON")
    args = ap.parse_args(argv)
    runs = max(1, args.runs)

    results: dict[str, dict | None] = {}
    for name, action in CASES.items():
        if "jupyter_ai_magics" in name and importlib.util.find_spec("jupyter_ai_magics") is None:
            results[name] = None
            continue
        results[name] = measure(action, runs)

    if args.json:
        print(json.dumps(results, indent=2))
        return 0

    print(f"Added to a bare IPython shell (median of {runs} fresh interpreters, {sys.executable})")
    print(f"{'case':<30} {'seconds':>9} {'MB added':>9}   range s          heavy modules loaded")
    for name, r in results.items():
        if r is None:
            print(f"{name:<30} {'not installed':>19}")
            continue
        heavy = ", ".join(r["heavy"]) or "none"
        print(
            f"{name:<30} {r['seconds']:>9.3f} {r['mb']:>9.1f}   "
            f"{r['min_seconds']:.3f}-{r['max_seconds']:.3f}   {heavy}"
        )
    ours = results["%load_ext nbmagic"]
    assert ours is not None
    theirs = results["%load_ext jupyter_ai_magics"]
    if theirs is not None:
        ratio_t = theirs["seconds"] / max(ours["seconds"], 1e-9)
        ratio_m = theirs["mb"] / max(ours["mb"], 0.1)
        print(f"jupyter_ai_magics / nbmagic: {ratio_t:.1f}x the time, {ratio_m:.1f}x the memory")
    else:
        ref_t, ref_mb = 1.0, 64.0  # REFERENCE.md, jupyter-ai-magics 2.31.7 on this kind of machine
        print(
            f"jupyter_ai_magics is not installed; against the reference figure ({ref_t} s, {ref_mb:.0f} MB): "
            f"{ref_t / max(ours['seconds'], 1e-9):.1f}x less time, {ref_mb / max(ours['mb'], 0.1):.1f}x less memory"
        )
    ok = ours["seconds"] <= GOAL_SECONDS and ours["mb"] <= GOAL_MB
    print(
        f"goal <= {GOAL_SECONDS} s and <= {GOAL_MB:.0f} MB: {'met' if ok else 'NOT met'} "
        f"({ours['seconds']:.3f} s, {ours['mb']:.1f} MB)"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
