"""The notebook agent: plan, write, run, observe, fix, deliver.

:class:`NotebookAgent` turns a plain-language request into notebook cells:

1. gather context (variables, named files, recent cells: :mod:`.context`);
2. plan with RecursiveMAS (:mod:`.planner`);
3. for each step ask the model for markdown + one code block (:mod:`.codegen`),
   run it in the user's namespace with capture (:mod:`.executor`), and on an
   error or a timeout feed the traceback back for a fix, up to ``max_fixes``;
4. hand each finished cell to a sink (live notebook, file) and to ``on_event``.

The user's work is protected: pre-existing variables are snapshotted, rebinding
is reported, deletion is undone; Ctrl-C stops at the next safe point and raises
:class:`RunInterrupted` with the cells so far on ``.partial``.
"""

from __future__ import annotations

import ast
import os
import time
from collections.abc import Callable, MutableMapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from nbmagic.agent import context as ctx
from nbmagic.agent.codegen import CellDraft, parse_cell
from nbmagic.agent.executor import ExecResult, NamespaceExecutor, ShellExecutor
from nbmagic.agent.planner import check_planner, make_plan
from nbmagic.agent.prompts import SYSTEM, code_prompt, fix_prompt, malformed_prompt
from nbmagic.errors import ConfigError, MalformedOutputError, NbmagicError, RunInterrupted
from nbmagic.events import (
    CellAccepted,
    CellRun,
    EventHandler,
    Failed,
    Finished,
    Notice,
    PlanReady,
    RunStarted,
    StepFinished,
    StepStarted,
    TextDelta,
    emit,
)
from nbmagic.llm.base import ChatModel, Usage

ConfirmFn = Callable[[str], bool]


#: where the old values of user variables that generated cells rebound are kept (a dict)
SAVED_NAME = "_nbmagic_saved"


@dataclass
class AgentResult:
    """What a run produced. ``cells`` are nbformat v4 cells, outputs included."""

    cells: list[Any]
    summary: str
    plan: list[str]
    trajectory: list[dict[str, Any]]
    usage: Usage
    ok: bool
    failed_steps: list[int] = field(default_factory=list)  # 1-based
    skipped_steps: list[int] = field(default_factory=list)  # declined in confirm mode
    rebound: list[str] = field(default_factory=list)  # user variables given new values
    #: their values before the run, kept reachable (also in the namespace's ``_nbmagic_saved``)
    replaced: dict[str, Any] = field(default_factory=dict)
    new_variables: list[str] = field(default_factory=list)
    files_written: list[str] = field(default_factory=list)
    interrupted: bool = False
    seconds: float = 0.0
    model: str = ""
    mode: str = ""  # planning mode: latent | text | none
    sink_summary: str = ""

    def __str__(self) -> str:
        return self.summary

    def notebook(self) -> Any:
        """The cells as a new nbformat v4 notebook."""
        return _cells_module().new_notebook(self.cells)


@dataclass
class _Step:
    index: int
    title: str
    status: str = "pending"  # ok | failed | skipped | dry-run | not-run
    attempts: int = 0
    error: str | None = None
    cells: list[Any] = field(default_factory=list)


def _cells_module() -> Any:
    """The notebook layer's cell constructors (imported on first use: nbformat is not light)."""
    from nbmagic.notebook import cells

    return cells


def assigned_names(code: str) -> set[str]:
    """Top-level names a cell binds (assignments, imports, defs, loop targets)."""
    try:
        tree = ast.parse(code)
    except SyntaxError:
        return set()
    names: set[str] = set()
    for node in tree.body:
        targets: list[ast.AST] = []
        if isinstance(node, ast.Assign):
            targets = list(node.targets)
        elif isinstance(node, (ast.AugAssign, ast.AnnAssign, ast.For, ast.AsyncFor)):
            targets = [node.target]
        elif isinstance(node, (ast.With, ast.AsyncWith)):
            targets = [i.optional_vars for i in node.items if i.optional_vars is not None]
        elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.add(node.name)
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            names.update((a.asname or a.name).split(".")[0] for a in node.names if a.name != "*")
        for t in targets:
            names.update(n.id for n in ast.walk(t) if isinstance(n, ast.Name))
    return names


class NotebookAgent:
    """Plans, writes, runs and fixes notebook cells for a request.

    ``model``: a ChatModel or spec string (None: the default model).
    ``planner``: ``"mas"`` (RecursiveMAS, options in ``mas_options``), ``"single"``
    (one agent, one round) or ``"none"`` (the request is the only step).
    ``confirm(code) -> bool`` is asked before each cell runs; ``dry_run`` plans and
    writes code without running anything; ``stop_on_failure`` ends the run at the
    first step that could not be fixed (default: report it and go on).
    """

    def __init__(
        self,
        model: ChatModel | str | None = None,
        *,
        planner: str = "mas",
        mas_options: dict[str, Any] | None = None,
        max_fixes: int = 3,
        cell_timeout: float | None = 120.0,
        dry_run: bool = False,
        confirm: ConfirmFn | None = None,
        on_event: EventHandler | None = None,
        stop_on_failure: bool = False,
        max_steps: int = 8,
        max_tokens: int = 1500,
        context_limits: ctx.ContextLimits | None = None,
    ) -> None:
        self.planner, self.mas_options = check_planner(planner, mas_options)
        if isinstance(max_fixes, bool) or not isinstance(max_fixes, int) or not 0 <= max_fixes <= 20:
            raise ConfigError(f"max_fixes must be a whole number from 0 to 20, not {max_fixes!r}.")
        if cell_timeout is not None and (isinstance(cell_timeout, bool) or not isinstance(cell_timeout, (int, float))
                                         or not cell_timeout >= 0):  # `not >=`: NaN is refused too
            raise ConfigError(f"cell_timeout must be a number of seconds >= 0 (0: no limit), not {cell_timeout!r}.")
        if isinstance(max_steps, bool) or not isinstance(max_steps, int) or not 1 <= max_steps <= 50:
            raise ConfigError(f"max_steps must be a whole number from 1 to 50, not {max_steps!r}.")
        if isinstance(max_tokens, bool) or not isinstance(max_tokens, int) or max_tokens < 1:
            raise ConfigError(f"max_tokens must be a whole number >= 1, not {max_tokens!r}.")
        if context_limits is not None and not isinstance(context_limits, ctx.ContextLimits):
            raise ConfigError("context_limits must be a nbmagic.agent.context.ContextLimits(...).")
        if confirm is not None and not callable(confirm):
            raise ConfigError("confirm must be a function taking the code and returning True or False.")
        self.model_spec = model
        self.max_fixes = max_fixes
        self.cell_timeout = float(cell_timeout) if cell_timeout else None
        self.dry_run = bool(dry_run)
        self.confirm = confirm
        self.on_event = on_event
        self.stop_on_failure = bool(stop_on_failure)
        self.max_steps = max_steps
        self.max_tokens = max_tokens
        self.context_limits = context_limits or ctx.ContextLimits()
        self._model: ChatModel | None = None

    # -- model -----------------------------------------------------------------------------

    @property
    def model(self) -> ChatModel:
        """The chat model, loaded on first use (so a missing model surfaces at run time)."""
        if self._model is None:
            from nbmagic.llm.specs import load_model

            self._model = load_model(self.model_spec)
        return self._model

    # -- run --------------------------------------------------------------------------------

    def run(
        self,
        request: str,
        namespace: MutableMapping[str, Any] | None = None,
        *,
        shell: Any = None,
        sink: Any = None,
        base_dir: str | os.PathLike[str] | None = None,
    ) -> AgentResult:
        """Carry out ``request`` in ``namespace`` (the shell's by default); see the class docs.

        ``namespace`` may also be an executor (``run(code, timeout) -> ExecResult`` and a
        ``namespace``), e.g. :class:`~nbmagic.agent.kernel_executor.KernelExecutor` to run the
        cells in a fresh kernel.
        """
        if not isinstance(request, str) or not request.strip():
            raise ConfigError("The agent needs a request: say in plain words what the notebook should do.")
        return _Run(self, request.strip(), namespace, shell, sink, base_dir).go()

    __call__ = run


class _Run:
    """One run's state; keeps :class:`NotebookAgent` reusable and free of per-run fields."""

    def __init__(self, agent: NotebookAgent, request: str, namespace: Any, shell: Any, sink: Any,
                 base_dir: Any) -> None:
        self.agent = agent
        self.request = request
        self.shell = shell
        self.sink = sink
        self.base = Path(base_dir or os.getcwd()).resolve()
        if hasattr(namespace, "run") and hasattr(namespace, "namespace"):
            self.executor: Any = namespace  # an executor of its own (KernelExecutor: --kernel new)
        elif shell is not None and (namespace is None or namespace is shell.user_ns):
            self.executor = ShellExecutor(shell)
        else:
            self.executor = NamespaceExecutor(namespace if namespace is not None else {},
                                              cwd=base_dir if base_dir is not None else None)
        self.ns: MutableMapping[str, Any] = self.executor.namespace
        self.hidden = getattr(shell, "user_ns_hidden", {}) if shell is not None else {}
        self.events = agent.on_event
        self.trajectory: list[dict[str, Any]] = []
        self.steps: list[_Step] = []
        self.cells: list[Any] = []
        self.done: list[str] = []
        self.rebound: list[str] = []
        self.replaced: dict[str, Any] = {}
        self.exec_count = 0
        self.mode = "none"
        self.model_label = ""
        self.t0 = time.perf_counter()
        self.usage0 = Usage()
        self.sink_summary = ""
        sink_path = getattr(sink, "path", None)
        self.sink_path = str(Path(sink_path).resolve()) if sink_path else None

    # -- lifecycle ---------------------------------------------------------------------------

    def go(self) -> AgentResult:
        a = self.agent
        model = a.model  # NoModelAvailableError etc. surface before anything starts
        self.model_label = f"{model.backend}:{model.name}"
        self.usage0 = model.usage
        emit(self.events, RunStarted("agent", self.request.splitlines()[0][:80], self.model_label))
        self.before = {n: self.ns[n] for n in ctx.user_names(self.ns, self.hidden)}
        self.files_before = _snapshot_files(self.base)
        try:
            context = ctx.gather(self.request, self.ns, shell=self.shell, base_dir=self.base,
                                 limits=a.context_limits).render()
            self.trajectory.append({"type": "context", "text": context})
            plan = make_plan(model, self.request, context, planner=a.planner, mas_options=a.mas_options,
                             max_steps=a.max_steps, on_event=self.events)
            self.mode = plan.mode
            self.trajectory.append({"type": "plan", "steps": plan.steps, "mode": plan.mode, "raw": plan.raw,
                                    "seconds": round(plan.seconds, 3), "fallback": plan.fallback, **plan.mas})
            self.plan = plan.steps
            self.steps = [_Step(i, s) for i, s in enumerate(plan.steps)]
            emit(self.events, PlanReady(tuple(plan.steps)))
            for step in self.steps:
                self._run_step(model, context, step)
                if step.status == "failed" and a.stop_on_failure:
                    emit(self.events, Notice(f"Stopped after step {step.index + 1} failed (stop_on_failure).",
                                             level="warning"))
                    for rest in self.steps[step.index + 1 :]:
                        rest.status = "not-run"
                    break
        except (KeyboardInterrupt, RunInterrupted):
            self._close_sink(failed=True)
            partial = self._result(interrupted=True)
            emit(self.events, Failed("agent", "interrupted", partial))
            raise RunInterrupted(
                f"Interrupted: {len(partial.cells)} cells from {sum(s.status in ('ok', 'failed') for s in self.steps)} "
                "finished steps are kept (on .partial).",
                partial=partial,
            ) from None
        except NbmagicError as exc:
            self._close_sink(failed=True)
            partial = self._result()
            exc.partial = partial
            emit(self.events, Failed("agent", exc.message, partial))
            raise
        self._close_sink()
        result = self._result()
        emit(self.events, Finished("agent", result, result.seconds))
        return result

    def _close_sink(self, failed: bool = False) -> None:
        """Close the sink; after a failure abort it instead (keeps cells, adds no empty file)."""
        if self.sink is None:
            return
        sink, self.sink = self.sink, None
        end = getattr(sink, "abort", None) if failed else None
        try:
            self.sink_summary = str((end or sink.close)() or "")
        except NbmagicError:
            if not failed:
                raise

    # -- one step ---------------------------------------------------------------------------------

    def _run_step(self, model: ChatModel, context: str, step: _Step) -> None:
        a = self.agent
        total = len(self.steps)
        emit(self.events, StepStarted(step.index, total, step.title))
        made = self._new_variables_text()
        if made:
            context = f"{context}\n\nVariables created by earlier steps:\n{made}"
        base_messages = [
            {"role": "system", "content": SYSTEM},
            {"role": "user", "content": code_prompt(self.request, context, self.plan, step.index, self.done[-4:])},
        ]
        messages = list(base_messages)
        draft: CellDraft | None = None
        explanation = ""
        last_run: ExecResult | None = None
        while step.attempts < 1 + a.max_fixes:
            step.attempts += 1
            reply = self._ask(model, messages)
            try:
                draft = parse_cell(reply)
                # the first explanation describes the step; a fix reply's prose only describes the fix
                explanation = explanation or draft.markdown
                draft = CellDraft(explanation, draft.code)
            except MalformedOutputError as exc:
                self._record_attempt(step, None, None, error=exc.message)
                messages = [*base_messages, {"role": "assistant", "content": reply},
                            {"role": "user", "content": malformed_prompt()}]
                continue
            if a.dry_run:
                self._record_attempt(step, draft, None)
                step.status = "dry-run"
                self._deliver_step(step, draft, None)
                return
            if a.confirm is not None and not a.confirm(draft.code):
                step.status = "skipped"
                self._record_attempt(step, draft, None, error="not approved")
                emit(self.events, Notice(f"Step {step.index + 1} skipped: the cell was not approved."))
                emit(self.events, StepFinished(step.index, False, step.attempts))
                return
            clobber = sorted(assigned_names(draft.code) & set(self.before))
            if clobber:
                emit(self.events, Notice(f"Step {step.index + 1} rebinds your variable(s): {', '.join(clobber)} "
                                         f"(the old values stay in {SAVED_NAME}).",
                                         level="warning"))
            last_run = self.executor.run(draft.code, a.cell_timeout)
            self._protect_user_variables(step)
            short = None if last_run.ok else f"{last_run.ename}: {last_run.evalue}"
            emit(self.events, CellRun(step.index, step.attempts, draft.code, last_run.ok, short, last_run.seconds))
            self._record_attempt(step, draft, last_run)
            if last_run.ok:
                step.status = "ok"
                self._deliver_step(step, draft, last_run)
                self.done.append(_done_entry(step, draft, last_run))
                return
            if last_run.timed_out:
                emit(self.events, Notice(f"Step {step.index + 1}, attempt {step.attempts}: the cell ran longer "
                                         f"than {a.cell_timeout:g} s and was interrupted.", level="warning"))
            messages = [*base_messages, {"role": "assistant", "content": reply},
                        {"role": "user", "content": fix_prompt(draft.code, last_run.error or "",
                                                               timed_out=last_run.timed_out,
                                                               timeout=a.cell_timeout or 0)}]
        step.status = "failed"
        step.error = (f"{last_run.ename}: {last_run.evalue}" if last_run is not None and not last_run.ok
                      else "the model never answered with a code block")
        if draft is not None:
            self._deliver_step(step, draft, last_run)
            self.done.append(_done_entry(step, draft, last_run))
        else:
            emit(self.events, StepFinished(step.index, False, step.attempts))

    def _new_variables_text(self) -> str:
        """What earlier steps created (columns and dtypes matter for the next step's code)."""
        limits = self.agent.context_limits
        names = [n for n in ctx.user_names(self.ns, self.hidden)
                 if n not in self.before or self.ns[n] is not self.before[n]]
        summary = ctx.summarize_namespace({n: self.ns[n] for n in names}, limits)
        return summary[: limits.namespace_chars // 2]

    def _ask(self, model: ChatModel, messages: list[dict[str, str]]) -> str:
        on_token = None
        if self.events is not None:
            handler = self.events

            def on_token(text: str) -> None:
                emit(handler, TextDelta("coder", text))

        return model.chat(messages, max_tokens=self.agent.max_tokens, on_token=on_token).text

    def _record_attempt(self, step: _Step, draft: CellDraft | None, run: ExecResult | None,
                        error: str | None = None) -> None:
        self.trajectory.append({
            "type": "attempt",
            "step": step.index + 1,
            "attempt": step.attempts,
            "markdown": draft.markdown if draft else None,
            "code": draft.code if draft else None,
            "ran": run is not None,
            "ok": run.ok if run is not None else None,
            "error": error if run is None else run.error,
            "timed_out": bool(run and run.timed_out),
            "seconds": round(run.seconds, 3) if run is not None else 0.0,
            "output": run.text(800) if run is not None else "",
        })

    def _protect_user_variables(self, step: _Step) -> None:
        """Report rebound user variables once; put back any a cell deleted."""
        for name, value in self.before.items():
            if name not in self.ns:
                self.ns[name] = value
                emit(self.events, Notice(f"Step {step.index + 1} deleted your variable {name!r}; it was restored.",
                                         level="warning"))
            elif self.ns[name] is not value and name not in self.rebound:
                self.rebound.append(name)
                self._keep_replaced(name, value)

    def _keep_replaced(self, name: str, old: Any) -> None:
        """A rebound user variable's old value stays reachable: ``_nbmagic_saved[name]`` in the
        namespace and ``AgentResult.replaced``; nothing the user made is lost without consent."""
        saved = self.ns.get(SAVED_NAME)
        if not isinstance(saved, dict):
            saved = self.ns[SAVED_NAME] = {}
        saved[name] = old
        self.replaced[name] = old

    # -- cells ---------------------------------------------------------------------------------

    def _meta(self, step: _Step) -> dict[str, Any]:
        return {"nbmagic": {"step": step.index + 1, "title": step.title, "attempts": step.attempts,
                            "model": self.model_label, "mode": self.mode, "status": step.status}}

    def _deliver_step(self, step: _Step, draft: CellDraft, run: ExecResult | None) -> None:
        cells = _cells_module()
        md = _markdown_for(step, draft, run)
        outputs: list[dict[str, Any]] = []
        count = None
        if run is not None:
            self.exec_count += 1
            count = self.exec_count
            outputs = [dict(o, execution_count=count) if o.get("output_type") == "execute_result" else o
                       for o in run.outputs]
        made = [cells.markdown_cell(md, metadata=self._meta(step)),
                cells.code_cell(draft.code, outputs=outputs, execution_count=count, metadata=self._meta(step))]
        step.cells = made
        for cell in made:
            self.cells.append(cell)
            if self.sink is not None:
                self.sink.deliver(cell)
            emit(self.events, CellAccepted(cell, step.index))
        emit(self.events, StepFinished(step.index, step.status in ("ok", "dry-run"), step.attempts))

    # -- result ---------------------------------------------------------------------------------

    def _result(self, interrupted: bool = False) -> AgentResult:
        model = self.agent._model
        usage = (model.usage - self.usage0) if model is not None else Usage()
        before_names = set(self.before)
        new_vars = [n for n in ctx.user_names(self.ns, self.hidden) if n not in before_names]
        files = _changed_files(self.base, self.files_before, skip=self.sink_path)
        failed = [s.index + 1 for s in self.steps if s.status == "failed"]
        skipped = [s.index + 1 for s in self.steps if s.status == "skipped"]
        result = AgentResult(
            cells=list(self.cells),
            summary="",
            plan=[s.title for s in self.steps],
            trajectory=list(self.trajectory),
            usage=usage,
            ok=not failed and not interrupted,
            failed_steps=failed,
            skipped_steps=skipped,
            rebound=list(self.rebound),
            replaced=dict(self.replaced),
            new_variables=new_vars,
            files_written=files,
            interrupted=interrupted,
            seconds=time.perf_counter() - self.t0,
            model=self.model_label,
            mode=self.mode,
            sink_summary=self.sink_summary,
        )
        result.summary = summarize(result, self.steps, dry_run=self.agent.dry_run)
        return result


def _markdown_for(step: _Step, draft: CellDraft, run: ExecResult | None) -> str:
    heading = f"### Step {step.index + 1}: {step.title}"
    body = draft.markdown.strip()
    text = body if body.startswith("#") else (f"{heading}\n\n{body}" if body else heading)
    if step.status == "failed":
        why = "it timed out" if run is not None and run.timed_out else (step.error or "it failed")
        text += (f"\n\n> **This step failed** after {step.attempts} attempt(s): {why}. "
                 "The last attempt is kept below with its error.")
    elif step.status == "dry-run":
        text += "\n\n*(dry run: not executed)*"
    return text


def _done_entry(step: _Step, draft: CellDraft, run: ExecResult | None) -> str:
    out = run.text(300) if run is not None else "(not run)"
    status = "" if step.status in ("ok", "dry-run") else " (FAILED)"
    code = draft.code if len(draft.code) < 900 else draft.code[:900] + "\n# …"
    return f"Step {step.index + 1}{status}: {step.title}\n```python\n{code}\n```\nOutput: {out}"


def summarize(result: AgentResult, steps: list[_Step], *, dry_run: bool = False) -> str:
    """A few lines: what was done, what failed, what changed."""
    n = len(steps)
    ok = sum(s.status == "ok" for s in steps)
    head = "Dry run" if dry_run else ("Interrupted" if result.interrupted else "Done")
    planner = f"{result.mode} planning" if result.mode != "none" else "no planning"
    lines = [f"{head}: {n} step(s) ({planner}, {result.model})"
             + ("" if dry_run else f", {ok} succeeded, {len(result.failed_steps)} failed") + "."]
    for s in steps:
        if s.status == "ok":
            note = "ok" if s.attempts == 1 else f"ok after {s.attempts} attempts"
        elif s.status == "failed":
            note = f"FAILED after {s.attempts} attempt(s): {s.error}"
        elif s.status == "skipped":
            note = "skipped (not approved)"
        elif s.status == "dry-run":
            note = "code written, not run"
        else:
            note = "not run"
        lines.append(f"  {s.index + 1}. {s.title} — {note}")
    if result.new_variables:
        lines.append("New variables: " + ", ".join(result.new_variables[:20]))
    if result.rebound:
        lines.append("Your variables given new values: " + ", ".join(result.rebound)
                     + " (the old values are in " + ", ".join(f"{SAVED_NAME}[{n!r}]" for n in result.rebound) + ")")
    if result.files_written:
        lines.append("Files written: " + ", ".join(result.files_written[:20]))
    if result.sink_summary:
        lines.append(result.sink_summary)
    return "\n".join(lines)


# --- files written -----------------------------------------------------------------------------

_SKIP_DIRS = {".git", ".venv", "venv", "node_modules", "__pycache__", ".ipynb_checkpoints", ".cache"}


def _snapshot_files(base: Path, limit: int = 5000) -> dict[str, float]:
    """mtimes of files under ``base`` (two levels deep, bounded) to spot what a run wrote."""
    seen: dict[str, float] = {}

    def walk(folder: Path, depth: int) -> None:
        try:
            entries = list(os.scandir(folder))
        except OSError:
            return
        for e in entries:
            if len(seen) >= limit:
                return
            try:
                if e.is_file(follow_symlinks=False):
                    seen[os.path.relpath(e.path, base)] = e.stat().st_mtime_ns
                elif e.is_dir(follow_symlinks=False) and depth < 2 and e.name not in _SKIP_DIRS:
                    walk(Path(e.path), depth + 1)
            except OSError:
                continue

    walk(base, 0)
    return seen


def _changed_files(base: Path, before: dict[str, float], skip: str | None = None) -> list[str]:
    after = _snapshot_files(base)
    return sorted(p for p, m in after.items()
                  if before.get(p) != m and str((base / p).resolve()) != skip)
