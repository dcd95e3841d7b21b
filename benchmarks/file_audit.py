"""What the file audit (nbmagic.execution.file_audit) costs a cell, side by side.

    .venv/bin/python benchmarks/file_audit.py [--rounds 4] [--reps 5] [--dir FOLDER]

Two cells, each timed in fresh processes taking turns (an audit hook cannot be removed, so
"no hook" needs a process of its own), ``rounds`` processes per setting, ``reps`` timed runs
each after a warm-up; the median of all runs per setting:

* **file-heavy**: 400 new small files (``open(..., "w")``), 2,000 appends to one log,
  400 reads, 100 ``os.replace``: about 3,000 watched audit events per run. It runs in
  ``--dir`` (default ``/dev/shm`` where there is one: the cheapest file operations, so the
  worst case for the hook's share; on a disk the file system's own cost dwarfs it);
* **pandas-heavy**: group-bys, a merge, string methods, a pivot table and rolling means on
  200,000 rows, writing nothing: what the hook costs code that raises other audit events.

Settings: ``no hook``; ``hook, idle`` (installed, no cell recorded: the user's own code
after an agent run); ``hook, recording`` (the cell recorded in this thread, as generated
code is). The per-cell folder comparison (two scans around the cell) is timed apart. Numbers
depend on the machine and its load; the ratios are what to compare.
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

SETTINGS = ("off", "idle", "on")
LABELS = {"off": "no hook", "idle": "hook, idle", "on": "hook, recording"}


def file_heavy(folder: str) -> None:
    for i in range(400):
        with open(os.path.join(folder, f"part{i:03d}.txt"), "w") as f:
            f.write("row\n")
    log = os.path.join(folder, "log.txt")
    for i in range(2000):
        with open(log, "a") as f:
            f.write(f"{i}\n")
    for i in range(400):
        with open(os.path.join(folder, f"part{i:03d}.txt")) as f:
            f.read()
    for i in range(100):
        tmp = os.path.join(folder, f"r{i}.tmp")
        with open(tmp, "w") as f:
            f.write("{}")
        os.replace(tmp, os.path.join(folder, f"r{i}.json"))


def pandas_heavy(_folder: str, _cache: dict[str, object] = {}) -> None:  # noqa: B006 - built once per process
    import numpy as np
    import pandas as pd

    if "df" not in _cache:
        rng = np.random.default_rng(0)
        n = 100_000
        _cache["df"] = pd.DataFrame({
            "key": rng.integers(0, 1000, n), "cat": rng.choice(list("abcdefgh"), n),
            "x": rng.normal(size=n), "y": rng.normal(size=n),
            "name": pd.Series(rng.integers(0, 5000, n)).map(lambda v: f"item-{v}"),
        })
        _cache["dim"] = pd.DataFrame({"key": range(1000), "weight": np.linspace(0, 1, 1000)})
    df, dim = _cache["df"], _cache["dim"]
    g = df.groupby(["key", "cat"]).agg(x=("x", "mean"), y=("y", "sum"), n=("x", "size"))
    m = df.merge(dim, on="key")
    m["wx"] = m["x"] * m["weight"]
    s = df["name"].str.upper().str.replace("ITEM-", "", regex=False).astype(int)
    p = m.pivot_table(index="cat", columns=df["key"] % 10, values="wx", aggfunc="mean")
    r = df.sort_values("key")["x"].rolling(50).mean()
    assert len(g) and len(p) and s.sum() and r.notna().any()


WORKLOADS = {"file-heavy": file_heavy, "pandas-heavy": pandas_heavy}


def child(workload: str, setting: str, folder: str, reps: int) -> None:
    """Time ``reps`` runs of one workload in this process under one setting; print JSON."""
    from nbmagic.execution.file_audit import CellAudit, install

    fn = WORKLOADS[workload]
    os.makedirs(folder, exist_ok=True)
    counts: collections.Counter[str] = collections.Counter()
    if setting == "count":
        from nbmagic.execution import file_audit

        sys.addaudithook(lambda event, args: counts.update((event,)))
        fn(folder)
        counts.clear()
        fn(folder)
        watched = {e: n for e, n in counts.items() if e in file_audit.WATCHED}
        print(json.dumps({"events": sum(counts.values()), "watched": watched,
                          "top": counts.most_common(4)}))
        return
    if setting != "off":
        install()
    fn(folder)  # warm-up: imports, caches, the files exist
    times, scans = [], []
    for _ in range(reps):
        if setting == "on":
            s0 = time.perf_counter()
            audit = CellAudit(folder).start()
            t0 = time.perf_counter()
            fn(folder)
            t1 = time.perf_counter()
            audit.stop()
            scans.append(time.perf_counter() - t1 + (t0 - s0))
            assert audit.record is not None and (audit.record.ops or workload != "file-heavy")
        else:
            t0 = time.perf_counter()
            fn(folder)
            t1 = time.perf_counter()
        times.append(t1 - t0)
    print(json.dumps({"times": times, "scans": scans}))


def run_child(workload: str, setting: str, folder: str, reps: int) -> dict[str, object]:
    out = subprocess.run([sys.executable, __file__, "--child", workload, setting, folder, str(reps)],
                         capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rounds", type=int, default=4, help="processes per setting and workload")
    ap.add_argument("--reps", type=int, default=5, help="timed runs per process")
    default_dir = "/dev/shm" if os.path.isdir("/dev/shm") and os.access("/dev/shm", os.W_OK) else None
    ap.add_argument("--dir", default=default_dir, help="where the file-heavy cell writes")
    ap.add_argument("--child", nargs=4, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        workload, setting, folder, reps = args.child
        child(workload, setting, folder, int(reps))
        return
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"python {sys.version.split()[0]}, {os.cpu_count()} CPUs, load average {load:.1f}")
    with tempfile.TemporaryDirectory(prefix="nbmagic-audit-bench-", dir=args.dir) as folder:
        for workload in WORKLOADS:
            times: dict[str, list[float]] = {s: [] for s in SETTINGS}
            scans: list[float] = []
            for _ in range(args.rounds):
                for setting in SETTINGS:  # taking turns, so a change in load hits every setting
                    res = run_child(workload, setting, folder, args.reps)
                    times[setting] += res["times"]  # type: ignore[arg-type]
                    scans += res["scans"]  # type: ignore[arg-type]
            count = run_child(workload, "count", folder, 1)
            where = f" in {folder}" if workload == "file-heavy" else ""
            print(f"\n{workload} cell{where}: {count['events']:,} audit events per run, watched: "
                  f"{count['watched'] or 'none'}; most frequent: {count['top']}")
            base = statistics.median(times["off"])
            for setting in SETTINGS:
                med = statistics.median(times[setting])
                print(f"   {LABELS[setting]:16s} {med * 1000:8.1f} ms   {med / base:.3f}x   "
                      f"({len(times[setting])} runs)")
            n_files = sum(1 for _ in Path(folder).iterdir())
            print(f"   folder comparison around the cell (2 scans, {n_files:,} files): "
                  f"{statistics.median(scans) * 1000:.1f} ms per cell")


if __name__ == "__main__":
    main()
