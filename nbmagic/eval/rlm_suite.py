"""A long-context suite with exact answers, run with an RLM and with a plain long prompt.

Tasks (all generated from a seed, nothing downloaded):

``needle``  a passage of 1 MB–50 MB of filler sentences with about twenty
            "access code for vault K" sentences; one vault is asked for.
``count``   thousands of records (``id=… | city=… | product=… | qty=…``):
            how many have a given city and product.
``sum``     the same records: total ``qty`` for one city.
``pairs``   thousands of users with a city and a favourite colour: how many
            unordered pairs share both (pairwise, quadratic if done by reading).

Each task runs twice on the same model: as an RLM query (the context held in the
REPL) and as one plain prompt holding the whole context (the baseline). Answers
are scored by exact match after light normalisation (case, spaces, a trailing
period, thousands separators, ``12.0`` == ``12``).
"""

from __future__ import annotations

import json
import random
import re
import string
import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from typing import Any

CITIES = ["Oslo", "Lima", "Pune", "Kyiv", "Accra", "Quito", "Hanoi", "Perth", "Split", "Turin"]
PRODUCTS = ["lamp", "desk", "chair", "mug", "pen", "sofa", "rug", "fan"]
COLORS = ["red", "blue", "green", "amber", "violet", "teal"]
_WORDS = ["river", "stone", "quiet", "harbor", "meadow", "signal", "lantern", "orchard", "copper", "window", "ledger", "marble", "canyon", "thread", "willow", "summit", "parcel", "engine", "garden", "velvet", "beacon", "cobalt", "timber", "anchor", "falcon", "ribbon", "tunnel", "saddle", "meadow", "prism", "walnut", "ember", "glacier", "hollow", "pepper", "quill", "rafter", "spindle", "thistle"]


@dataclass
class Task:
    id: str
    kind: str
    question: str
    answer: str
    context: Any
    size: str  # human description of the context size

    def context_text(self) -> str:
        """The context as one text, for the long-prompt baseline."""
        if isinstance(self.context, str):
            return self.context
        if isinstance(self.context, list) and self.context and isinstance(self.context[0], dict):
            return "\n".join(json.dumps(r) for r in self.context)
        if isinstance(self.context, list):
            return "\n".join(map(str, self.context))
        return str(self.context)


# --- generation --------------------------------------------------------------------------


def parse_size(text: str) -> int:
    """``1MB`` / ``500KB`` / ``2_000`` → characters (decimal units: 1 MB = 10**6)."""
    m = re.fullmatch(r"\s*([\d_.]+)\s*([kKmMgG]?)[bB]?\s*", text)
    if not m:
        raise ValueError(f"not a size: {text!r} (try 1MB, 500KB)")
    mult = {"": 1, "k": 10**3, "m": 10**6, "g": 10**9}[m.group(2).lower()]
    return int(float(m.group(1).replace("_", "")) * mult)


def human(n: int) -> str:
    if n >= 10**6:
        return f"{n / 10**6:.3g}MB"
    if n >= 10**3:
        return f"{n / 10**3:.3g}KB"
    return f"{n}B"


def _filler_pool(rng: random.Random, n: int = 4000) -> list[str]:
    pool = []
    for _ in range(n):
        words = rng.choices(_WORDS, k=rng.randint(6, 14))
        pool.append(" ".join(words).capitalize() + ".")
    return pool


def _vault_key(rng: random.Random) -> str:
    return "".join(rng.choices(string.ascii_uppercase, k=2)) + "-" + "".join(rng.choices(string.digits, k=4))


def needle_task(size: int, seed: int = 0) -> Task:
    rng = random.Random(f"needle-{size}-{seed}")
    pool = _filler_pool(rng)
    avg = sum(len(s) + 1 for s in pool) / len(pool)
    lines = rng.choices(pool, k=max(10, int(size / avg)))
    keys: list[str] = []
    while len(keys) < 21:
        k = _vault_key(rng)
        if k not in keys:
            keys.append(k)
    codes = [f"{rng.randint(10**7, 10**8 - 1)}" for _ in keys]
    for k, c in zip(keys, codes, strict=True):
        lines.insert(rng.randrange(len(lines) + 1), f"The access code for vault {k} is {c}.")
    text = "\n".join(lines)
    target = rng.randrange(len(keys))
    return Task(
        id=f"needle-{human(size)}",
        kind="needle",
        question=f"What is the access code for vault {keys[target]}? Answer with the code only.",
        answer=codes[target],
        context=text,
        size=human(len(text)),
    )


def records(n: int, seed: int = 0) -> list[str]:
    rng = random.Random(f"records-{n}-{seed}")
    return [
        f"id={i:06d} | city={rng.choice(CITIES)} | product={rng.choice(PRODUCTS)} | qty={rng.randint(1, 20)}"
        for i in range(n)
    ]


def _fields(rec: str) -> dict[str, str]:
    return dict(part.split("=", 1) for part in rec.split(" | "))


def count_task(n: int, seed: int = 0) -> Task:
    rows = records(n, seed)
    rng = random.Random(f"count-{n}-{seed}")
    city, product = rng.choice(CITIES), rng.choice(PRODUCTS)
    answer = sum(1 for r in rows if (f := _fields(r))["city"] == city and f["product"] == product)
    return Task(
        id=f"count-{n}",
        kind="count",
        question=f"How many records have city {city} and product {product}? Answer with a number only.",
        answer=str(answer),
        context=rows,
        size=f"{n} records",
    )


def sum_task(n: int, seed: int = 0) -> Task:
    rows = records(n, seed)
    rng = random.Random(f"sum-{n}-{seed}")
    city = rng.choice(CITIES)
    answer = sum(int(f["qty"]) for r in rows if (f := _fields(r))["city"] == city)
    return Task(
        id=f"sum-{n}",
        kind="sum",
        question=f"What is the total qty over all records with city {city}? Answer with a number only.",
        answer=str(answer),
        context=rows,
        size=f"{n} records",
    )


def pairs_task(n: int, seed: int = 0) -> Task:
    rng = random.Random(f"pairs-{n}-{seed}")
    users = [{"user": f"u{i:05d}", "city": rng.choice(CITIES), "color": rng.choice(COLORS)} for i in range(n)]
    groups = Counter((u["city"], u["color"]) for u in users)
    answer = sum(c * (c - 1) // 2 for c in groups.values())
    return Task(
        id=f"pairs-{n}",
        kind="pairs",
        question=(
            "How many unordered pairs of distinct users have both the same city and the same color? "
            "Answer with a number only."
        ),
        answer=str(answer),
        context=users,
        size=f"{n} users",
    )


def make_suite(sizes: list[int], record_counts: list[int], kinds: list[str], seed: int = 0) -> list[Task]:
    tasks: list[Task] = []
    if "needle" in kinds:
        tasks += [needle_task(s, seed) for s in sizes]
    for n in record_counts:
        if "count" in kinds:
            tasks.append(count_task(n, seed))
        if "sum" in kinds:
            tasks.append(sum_task(n, seed))
        if "pairs" in kinds:
            tasks.append(pairs_task(n, seed))
    return tasks


# --- scoring and running -------------------------------------------------------------------


def normalize(answer: Any) -> str:
    text = str(answer).strip().strip("`'\" ").rstrip(".").strip().lower()
    text = re.sub(r"\s+", " ", text)
    if re.fullmatch(r"-?[\d,]+(\.0+)?", text):
        text = text.replace(",", "").split(".")[0]
    return text


def score(answer: Any, expected: str) -> bool:
    return normalize(answer) == normalize(expected)


@dataclass
class Run:
    task: str
    method: str  # "rlm" (or "rlm-auto", "rlm-direct", "rlm-repl": the strategy) | "baseline"
    correct: bool
    answer: str
    expected: str
    calls: int
    tokens: int
    seconds: float
    error: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)


def run_rlm(task: Task, model: Any, sub_model: Any, *, environment: str = "kernel", method: str = "rlm",
            **rlm_kwargs: Any) -> Run:
    from nbmagic.errors import NbmagicError
    from nbmagic.rlm.agent import RLM

    rlm = RLM(model, sub_model=sub_model, environment=environment, **rlm_kwargs)
    t0 = time.perf_counter()
    try:
        res = rlm.query(task.question, context=task.context)
    except NbmagicError as exc:
        partial = exc.partial
        usage = partial.total_usage if partial is not None else None
        return Run(task.id, method, False, "", task.answer, usage.calls if usage else 0,
                   usage.total_tokens if usage else 0, time.perf_counter() - t0, error=exc.message[:200])
    usage = res.total_usage
    return Run(task.id, method, score(res.answer, task.answer), str(res.answer)[:80], task.answer, usage.calls,
               usage.total_tokens, time.perf_counter() - t0, extra={"iterations": res.iterations,
                                                                      "sub_calls": res.llm_calls,
                                                                      "strategy": res.strategy.get("strategy"),
                                                                      "computed": res.computed})


BASELINE_TEMPLATE = "{context}\n\n---\nQuestion: {question}"
#: room left for the baseline's reply when its prompt is cut to a model's window
BASELINE_REPLY_TOKENS = 256


def run_baseline(task: Task, model: Any, *, max_chars: int | None = None) -> Run:
    from nbmagic.errors import NbmagicError
    from nbmagic.text import truncate

    text = task.context_text()
    if max_chars is not None:
        text = truncate(text, max_chars)
    prompt = BASELINE_TEMPLATE.format(context=text, question=task.question)
    if max_chars is None:  # a local model's window is what a user's long prompt gets cut to
        from nbmagic.rlm.compaction import fit_to_window, model_window

        fitted = fit_to_window(model, [{"role": "user", "content": prompt}], model_window(model), BASELINE_REPLY_TOKENS)
        prompt = fitted[0]["content"]
    t0 = time.perf_counter()
    try:
        res = model.chat(prompt, temperature=0, max_tokens=BASELINE_REPLY_TOKENS)
    except NbmagicError as exc:
        return Run(task.id, "baseline", False, "", task.answer, 1, 0, time.perf_counter() - t0, error=exc.message[:200])
    return Run(task.id, "baseline", score(res.text, task.answer), res.text.strip()[:80], task.answer, 1,
               res.usage.total_tokens, time.perf_counter() - t0)


def summarize(runs: list[Run], method: str) -> dict[str, Any]:
    mine = [r for r in runs if r.method == method]
    n = len(mine)
    return {
        "method": method,
        "tasks": n,
        "correct": sum(r.correct for r in mine),
        "accuracy": (sum(r.correct for r in mine) / n) if n else 0.0,
        "calls": sum(r.calls for r in mine),
        "tokens": sum(r.tokens for r in mine),
        "seconds": round(sum(r.seconds for r in mine), 3),
    }


def methods_of(runs: list[Run]) -> list[str]:
    """The methods in the order they first ran."""
    return list(dict.fromkeys(r.method for r in runs))


def format_table(tasks: list[Task], runs: list[Run]) -> str:
    by = {(r.task, r.method): r for r in runs}
    methods = methods_of(runs)
    head = f"{'task':<16} {'size':>13} {'expected':>10} " + " ".join(
        f"| {m + ' ok':>12} {'calls':>5} {'tokens':>11} {'time':>7}" for m in methods
    )
    lines = [head, "-" * len(head)]
    for t in tasks:
        row = f"{t.id:<16} {t.size:>13} {t.answer[:10]:>10} "
        for m in methods:
            r = by.get((t.id, m))
            if r is None:
                row += f"| {'-':>12} {'':>5} {'':>11} {'':>7}"
                continue
            mark = "yes" if r.correct else ("ERR" if r.error else "no")
            if r.extra.get("strategy") and r.method == "rlm-auto":  # which way auto went
                mark = f"{r.extra['strategy']}:{mark}"
            row += f"| {mark:>12} {r.calls:>5} {r.tokens:>11,} {r.seconds:>6.2f}s"
        lines.append(row)
    lines.append("")
    for m in methods:
        s = summarize(runs, m)
        lines.append(
            f"{m:<10} accuracy {s['correct']}/{s['tasks']} ({100 * s['accuracy']:.0f}%), "
            f"calls {s['calls']}, tokens {s['tokens']:,}, time {s['seconds']:.2f} s"
        )
    failed = [r for r in runs if r.error]
    if failed:  # say why each ERR happened: one line per distinct message
        lines += ["", "errors:"]
        seen: set[tuple[str, str]] = set()
        for r in failed:
            if (r.method, r.error or "") not in seen:
                seen.add((r.method, r.error or ""))
                lines.append(f"  {r.method} {r.task}: {r.error}")
    return "\n".join(lines)


def results_json(runs: list[Run]) -> dict[str, Any]:
    return {
        "runs": [asdict(r) for r in runs],
        "summary": [summarize(runs, m) for m in methods_of(runs)],
    }
