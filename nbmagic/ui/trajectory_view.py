"""An RLM trajectory as a readable page: inline in the notebook, as an HTML file, or as text.

::

    from nbmagic.ui.trajectory_view import TrajectoryView
    TrajectoryView("run.jsonl")          # a saved trajectory (every run in the file)
    TrajectoryView(result)               # an RLMResult, or the MagicResult of %rlm
    %rlm --view run.jsonl                # the same from the magic; `%rlm --view` shows the last run
    python -m nbmagic rlm --view run.jsonl [--html run.html]

Each run shows its question, models, environment and budgets, then one collapsible
block per iteration: the model's reply, the code, the output, every sub-call and tool
call (helper, model, prompt and answer previews, time, tokens), timings, and how
much budget was left; then the answer and how the run ended. Everything is escaped
and the page is self-contained (inline CSS, no script), so it survives a saved notebook.
Only this layer knows display objects: the engines write plain records.
"""

from __future__ import annotations

import html
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from nbmagic.errors import ConfigError

CUT = 4000  # characters of one reply / code / output shown

_CSS = """<style>
.nbm-traj{font-family:system-ui,sans-serif;font-size:13px;line-height:1.4}
.nbm-traj pre{white-space:pre-wrap;background:#f6f8fa;border:1px solid #e1e4e8;border-radius:4px;padding:6px;
 margin:4px 0;max-height:24em;overflow:auto;font-size:12px}
.nbm-traj details{border-left:3px solid #90caf9;margin:4px 0;padding-left:8px}
.nbm-traj details.nbm-err{border-left-color:#ef9a9a}.nbm-traj details.nbm-final{border-left-color:#a5d6a7}
.nbm-traj details.nbm-compaction{border-left-color:#ffe082}
.nbm-traj summary{cursor:pointer}.nbm-traj .nbm-meta{color:#555}
.nbm-traj table{border-collapse:collapse;font-size:12px}
.nbm-traj td,.nbm-traj th{border:1px solid #ddd;padding:2px 6px;text-align:left;vertical-align:top}
.nbm-traj .nbm-warn{color:#c62828;font-weight:bold}
</style>"""


@dataclass
class TrajectoryRun:
    """One run: its metadata line, its iteration records and (when it ended) its result line."""

    metadata: dict[str, Any] = field(default_factory=dict)
    iterations: list[dict[str, Any]] = field(default_factory=list)
    result: dict[str, Any] | None = None


def _cut(text: Any, limit: int = CUT) -> str:
    s = text if isinstance(text, str) else json.dumps(text, default=repr, ensure_ascii=False)
    return s if len(s) <= limit else s[:limit] + f"\n… ({len(s) - limit:,} more chars)"


def read_runs(path: str | Path) -> list[TrajectoryRun]:
    """The runs of a JSONL trajectory file; a clear :class:`ConfigError` for anything else."""
    p = Path(path).expanduser()
    try:
        lines = p.read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        raise ConfigError(f"No trajectory file {str(p)!r}; write one with trajectory_path= or --trajectory.") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"Cannot read {str(p)!r}: {getattr(exc, 'strerror', None) or exc}") from None
    records = []
    for n, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            rec = json.loads(line)
        except ValueError:
            if n == len(lines):  # a run killed while writing its last line
                break
            raise ConfigError(f"{str(p)!r} line {n} is not JSON: this is not an RLM trajectory file.") from None
        if not isinstance(rec, dict) or rec.get("type") not in ("metadata", "iteration", "result"):
            raise ConfigError(f"{str(p)!r} line {n} is not an RLM trajectory record.")
        records.append(rec)
    if not records:
        raise ConfigError(f"{str(p)!r} holds no trajectory (it is empty).")
    return _group(records)


def _group(records: Sequence[Mapping[str, Any]]) -> list[TrajectoryRun]:
    runs: list[TrajectoryRun] = []
    for rec in records:
        kind = rec.get("type", "iteration")
        if kind == "metadata" or not runs:
            runs.append(TrajectoryRun())
        run = runs[-1]
        if kind == "metadata":
            run.metadata = dict(rec)
        elif kind == "result":
            run.result = dict(rec)
        else:
            run.iterations.append(dict(rec))
    return runs


def runs_of(source: Any) -> list[TrajectoryRun]:
    """Runs from a path, an RLMResult / MagicResult, or a list of iteration records."""
    if isinstance(source, str | Path):
        return read_runs(source)
    if isinstance(source, TrajectoryRun):
        return [source]
    raw = getattr(source, "raw", None)
    engine_result = raw if raw is not None and hasattr(raw, "trajectory") else source
    trajectory = getattr(engine_result, "trajectory", None)
    if trajectory is None and isinstance(source, list | tuple):
        trajectory = list(source)
    if trajectory is None:
        raise ConfigError(f"Nothing to view in a {type(source).__name__}: give a trajectory file or an RLM result.")
    run = TrajectoryRun(iterations=[dict(r) for r in trajectory if isinstance(r, Mapping)])
    if getattr(engine_result, "question", ""):
        run.metadata["question"] = engine_result.question
    if hasattr(engine_result, "answer"):
        usage = getattr(engine_result, "usage", None) or {}
        run.result = {
            "answer": getattr(engine_result, "answer", None),
            "complete": getattr(engine_result, "complete", True),
            "computed": getattr(engine_result, "computed", True),
            "iterations": getattr(engine_result, "iterations", len(run.iterations)),
            "llm_calls": getattr(engine_result, "llm_calls", None),
            "seconds": getattr(engine_result, "seconds", None),
            "usage": {k: u.as_dict() for k, u in usage.items()} if isinstance(usage, Mapping) else {},
            "cost_usd": getattr(engine_result, "cost_usd", None),
        }
    return [run]


# --- HTML -----------------------------------------------------------------------------------


def _e(x: Any) -> str:
    return html.escape(str(x))


def _secs(rec: Mapping[str, Any]) -> str:
    m, x = rec.get("model_seconds") or 0.0, rec.get("exec_seconds") or 0.0
    return f"{m:.2f} s model + {x:.2f} s run" if x else f"{m:.2f} s model"


def _subcalls_html(calls: Sequence[Mapping[str, Any]]) -> str:
    if not calls:
        return ""
    rows = []
    for c in calls:
        who = c.get("helper", "?") + (" (tool)" if c.get("tool") else "")
        ok = "ok" if c.get("ok", True) else "<span class='nbm-warn'>failed</span>"
        tokens = f"{c['tokens']:,}" if isinstance(c.get("tokens"), int) else ""
        rows.append(
            f"<tr><td>{_e(who)}</td><td>{_e(c.get('model', ''))}</td>"
            f"<td><pre>{_e(_cut(c.get('prompt', ''), 600))}</pre><small>{c.get('prompt_chars', 0):,} chars</small></td>"
            f"<td><pre>{_e(_cut(c.get('response', ''), 600))}</pre><small>{c.get('response_chars', 0):,} chars</small></td>"
            f"<td>{ok}</td><td>{(c.get('seconds') or 0):.2f} s</td><td>{tokens}</td></tr>"
        )
    return (
        f"<details><summary>{len(calls)} sub-call{'s' if len(calls) != 1 else ''}</summary><table>"
        "<tr><th>helper</th><th>model</th><th>prompt</th><th>answer</th><th></th><th>time</th><th>tokens</th></tr>"
        + "".join(rows) + "</table></details>"
    )


def _iteration_html(rec: Mapping[str, Any]) -> str:
    kind = rec.get("kind", "code")
    bits = [f"iteration {_e(rec.get('iteration', '?'))}", _e(kind), _secs(rec)]
    calls = rec.get("sub_calls") or []
    if calls:
        bits.append(f"{len(calls)} sub-call{'s' if len(calls) != 1 else ''}")
    if rec.get("root_tokens"):
        bits.append(f"{rec['root_tokens']:,} root tokens")
    if rec.get("calls_left") is not None:
        bits.append(f"{rec['calls_left']} sub-calls left")
    if rec.get("error"):
        bits.append(f"<span class='nbm-warn'>{_e(rec['error'])}</span>")
    if rec.get("timed_out"):
        bits.append("<span class='nbm-warn'>timed out</span>")
    if rec.get("submitted"):
        bits.append("<b>submitted</b>")
    css = "nbm-err" if rec.get("error") or kind == "no_code" else f"nbm-{kind}" if kind in ("final", "compaction") else ""
    depth = int(rec.get("depth") or 0)
    parts = [f"<details class='{css}' style='margin-left:{depth * 1.5}em'><summary>{' · '.join(bits)}</summary>"]
    if rec.get("response"):
        label = "summary of the earlier turns" if kind == "compaction" else "model reply"
        parts.append(f"<details><summary>{label}</summary><pre>{_e(_cut(rec['response']))}</pre></details>")
    if rec.get("code"):
        parts.append(f"<div>code</div><pre>{_e(_cut(rec['code']))}</pre>")
    if rec.get("output"):
        parts.append(f"<div>output</div><pre>{_e(_cut(rec['output']))}</pre>")
    for note in (rec.get("notes") or []) + (rec.get("problems") or []):
        parts.append(f"<div class='nbm-meta'>{_e(note)}</div>")
    parts.append(_subcalls_html(calls))
    parts.append("</details>")
    return "".join(parts)


def _usage_text(usage: Mapping[str, Any]) -> str:
    return ", ".join(
        f"{name}: {u.get('total_tokens', 0):,} tokens in {u.get('calls', 0)} calls" for name, u in usage.items()
    )


def _run_html(run: TrajectoryRun, n: int, total: int) -> str:
    md, res = run.metadata, run.result
    title = md.get("question") or "RLM run"
    head = [f"<h4 style='margin:6px 0'>{f'run {n} of {total}: ' if total > 1 else ''}{_e(title)}</h4>"]
    facts = []
    for key, label in (("model", "model"), ("sub_model", "sub-model"), ("environment", "REPL"), ("time", "started")):
        if md.get(key):
            facts.append(f"{label} <code>{_e(md[key])}</code>")
    if md.get("tools"):
        facts.append("tools " + ", ".join(f"<code>{_e(t)}</code>" for t in md["tools"]))
    config = {k: v for k, v in (md.get("config") or {}).items() if v is not None}
    if config:
        facts.append("budget " + ", ".join(f"{_e(k)}={_e(v)}" for k, v in config.items()))
    if facts:
        head.append(f"<div class='nbm-meta'>{' · '.join(facts)}</div>")
    if md.get("contexts"):
        head.append(f"<details><summary>contexts</summary><pre>{_e(_cut(md['contexts']))}</pre></details>")
    body = "".join(_iteration_html(r) for r in run.iterations)
    tail = ""
    if res is not None:
        ended = "complete" if res.get("complete", True) else f"stopped: {res.get('error') or 'incomplete'}"
        stats = [ended]
        for key, fmt in (("iterations", "{} iterations"), ("llm_calls", "{} sub-calls"), ("seconds", "{:.1f} s")):
            if res.get(key) is not None:
                stats.append(fmt.format(res[key]))
        if res.get("cost_usd") is not None:
            stats.append(f"${res['cost_usd']:.4f}")
        warn = ""
        if res.get("computed") is False:
            warn = ("<div class='nbm-warn'>not computed: the model never ran code that worked; "
                    "this answer is its guess in prose</div>")
        usage = _usage_text(res.get("usage") or {})
        tail = (
            f"<div><b>answer</b></div><pre>{_e(_cut(res.get('answer')))}</pre>{warn}"
            f"<div class='nbm-meta'>{_e(' · '.join(stats))}{(' · ' + _e(usage)) if usage else ''}</div>"
        )
    return f"<div class='nbm-run'>{''.join(head)}{body}{tail}</div>"


def render_html(runs: Sequence[TrajectoryRun], *, page: bool = False) -> str:
    inner = "<hr>".join(_run_html(r, i, len(runs)) for i, r in enumerate(runs, 1))
    div = f"{_CSS}<div class='nbm-traj'>{inner}</div>"
    if not page:
        return div
    return f"<!doctype html><html><head><meta charset='utf-8'><title>RLM trajectory</title></head><body>{div}</body></html>"


# --- text ---------------------------------------------------------------------------------


def render_text(runs: Sequence[TrajectoryRun], *, limit: int = 600) -> str:
    out: list[str] = []
    for n, run in enumerate(runs, 1):
        md = run.metadata
        out.append(f"=== run {n}/{len(runs)}: {md.get('question', 'RLM run')}")
        models = " · ".join(f"{k} {md[k]}" for k in ("model", "sub_model", "environment") if md.get(k))
        if models:
            out.append(models)
        for rec in run.iterations:
            flags = [str(rec.get("kind", "code")), _secs(rec)]
            if rec.get("error"):
                flags.append(f"error {rec['error']}")
            if rec.get("submitted"):
                flags.append("submitted")
            out.append(f"--- iteration {rec.get('iteration', '?')} ({', '.join(flags)})")
            if rec.get("code"):
                out.append(_cut(rec["code"], limit))
            if rec.get("output"):
                out.append("> " + _cut(rec["output"], limit).rstrip().replace("\n", "\n> "))
            for c in rec.get("sub_calls") or []:
                out.append(f"  · {c.get('helper')}({_cut(c.get('prompt', ''), 80)!r}) -> {_cut(c.get('response', ''), 80)!r}")
        if run.result is not None:
            res = run.result
            out.append(f"=== answer: {_cut(res.get('answer'), limit)}")
            if res.get("computed") is False:
                out.append("!!! not computed: the model never ran code that worked; this answer is its guess in prose")
            if not res.get("complete", True):
                out.append(f"!!! stopped: {res.get('error') or 'incomplete'}")
    return "\n".join(out)


class TrajectoryView:
    """Display object for one or more RLM runs (``_repr_html_`` for Jupyter, text otherwise)."""

    def __init__(self, source: Any) -> None:
        self.runs = runs_of(source)

    def to_html(self, *, page: bool = False) -> str:
        return render_html(self.runs, page=page)

    def to_text(self) -> str:
        return render_text(self.runs)

    def save(self, path: str | Path, *, force: bool = False) -> Path:
        """Write a standalone HTML page; an existing file is kept unless ``force``."""
        p = Path(path).expanduser()
        if p.exists() and not force:
            raise ConfigError(f"{str(p)!r} already exists; choose another name or pass --force.")
        try:
            p.parent.mkdir(parents=True, exist_ok=True)
            p.write_text(self.to_html(page=True), encoding="utf-8")
        except OSError as exc:
            raise ConfigError(f"Cannot write {str(p)!r}: {exc.strerror or exc}") from None
        return p

    def _repr_html_(self) -> str:
        return self.to_html()

    def __repr__(self) -> str:
        return self.to_text()
