"""What the execution core's guarantees cost, side by side.

    .venv/bin/python benchmarks/execution_core.py

1. A handler-heavy loop (1,000,000 ``try: int(s) except ValueError: pass``, a third failing)
   compiled plainly vs hardened (a checkpoint first in every ``except`` handler).
2. Entering and leaving one time limit + process guard around a trivial cell, vs a bare ``exec``.
3. How long code that swallows the interruption runs past a 0.5 s limit (bare ``except`` around
   ``time.sleep``; nested handlers; a pure-Python busy loop), i.e. the grace plus the repeat.
Numbers depend on the machine; the ratios are what to compare.
"""

from __future__ import annotations

import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from nbmagic.execution import CellTimeout, compile_cell, process_guard, time_limit

HANDLERS = ("n = 0\nfor i in range(1_000_000):\n    s = 'x' if i % 3 == 0 else '7'\n    try:\n        n += int(s)\n"
            "    except ValueError:\n        pass\n")


def _best(fn, repeat: int = 5) -> float:
    samples = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - t0)
    return min(samples) if repeat < 5 else statistics.median(samples)


def main() -> None:
    plain = compile(HANDLERS, "<plain>", "exec")
    hardened = compile_cell(HANDLERS, "<hardened>")
    t_plain = _best(lambda: exec(plain, {}))
    t_hard = _best(lambda: hardened.run({}))
    print("1. handler-heavy loop (1M iterations, 333,334 handled exceptions)")
    print(f"   plain compile     {t_plain * 1000:8.1f} ms   1.00x")
    print(f"   hardened          {t_hard * 1000:8.1f} ms   {t_hard / t_plain:.2f}x")

    tiny = compile("x = 1", "<tiny>", "exec")
    cell = compile_cell("x = 1", "<tiny-cell>")
    n = 2000

    def bare() -> None:
        for _ in range(n):
            exec(tiny, {})

    def guarded() -> None:
        for _ in range(n):
            with process_guard(), time_limit(30):
                cell.run({})

    t_bare, t_guarded = _best(bare), _best(guarded)
    print(f"2. one trivial cell, {n} times (per cell)")
    print(f"   bare exec         {t_bare / n * 1e6:8.1f} us   1.00x")
    print(f"   limit + guard     {t_guarded / n * 1e6:8.1f} us   {t_guarded / t_bare:.1f}x")

    cases = {
        "bare except around sleep": "import time\nwhile True:\n    try:\n        time.sleep(0.5)\n    except:\n        pass",
        "nested handlers": ("import time\nwhile True:\n    try:\n        while True:\n            try:\n"
                            "                time.sleep(0.2)\n            except BaseException:\n                pass\n"
                            "    except:\n        pass"),
        "busy loop, no handler": "while True:\n    pass",
    }
    print("3. runaway code under a 0.5 s limit: seconds until it ended")
    for name, src in cases.items():
        c = compile_cell(src, f"<{name}>")
        t0 = time.perf_counter()
        try:
            with time_limit(0.5):
                c.run({})
        except CellTimeout:
            pass
        print(f"   {name:26s} {time.perf_counter() - t0:5.2f} s")


if __name__ == "__main__":
    main()
