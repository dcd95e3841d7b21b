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
import importlib.util
import keyword
import linecache
import os
import re
import subprocess
import sys
import time
from collections.abc import Callable, MutableMapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from nbmagic.agent import context as ctx
from nbmagic.agent.budget import Budget
from nbmagic.agent.codegen import (
    STANDARD_IMPORTS,
    CellDraft,
    add_missing_imports,
    has_statement,
    parse_cell,
    parse_plan,
    pip_package,
)
from nbmagic.agent.executor import ExecResult, NamespaceExecutor, ShellExecutor, strip_ansi
from nbmagic.agent.planner import PlanOutcome, check_planner, make_plan, resolve_planner
from nbmagic.agent.prompts import (
    SYSTEM,
    answer_prompt,
    code_prompt,
    empty_prompt,
    fix_last_error_request,
    fix_prompt,
    malformed_prompt,
    refine_prompt,
    repeat_prompt,
)
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
from nbmagic.execution.figures import figure_pngs
from nbmagic.execution.file_ledger import FileChanges, FileLedger
from nbmagic.llm.base import ChatModel, Usage
from nbmagic.llm.vision import accepts_images, with_images

#: asked before each cell runs: True runs it, False skips it, a string runs (and keeps) that code
#: instead (edited in review); raising RunInterrupted stops the run, keeping what finished
ConfirmFn = Callable[[str], "bool | str"]

REFINE_MODES = ("auto", "model", "rules", "off")
#: reply size per code cell when ``max_tokens`` is not given
LOCAL_MAX_TOKENS = 640
#: a model that answers a fix request with the very cell that failed is asked again at this temperature
RETRY_TEMPERATURE = 0.7
REMOTE_MAX_TOKENS = 1500


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
    #: files the run's cells wrote, deleted, renamed (old, new) (see nbmagic.execution.file_ledger);
    #: ``files_possibly_written``: changed while a cell ran a process or compiled code, not seen written
    files_written: list[str] = field(default_factory=list)
    files_deleted: list[str] = field(default_factory=list)
    files_renamed: list[tuple[str, str]] = field(default_factory=list)
    files_possibly_written: list[str] = field(default_factory=list)
    files: FileChanges = field(default_factory=FileChanges)  # all of the above, and possibly_deleted
    interrupted: bool = False
    seconds: float = 0.0
    model: str = ""
    mode: str = ""  # planning mode: latent | text | none
    sink_summary: str = ""
    answer: str = ""  # the closing answer in words ("" when none was written)
    planner: str = ""  # the planner that ran (``auto`` resolved)
    first_cell_seconds: float | None = None  # from the start to the first code cell's first run

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
    fixed: tuple[str, str] | None = None  # (code, explanation) of a cell the agent writes itself


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
    ``planner``: ``"auto"`` (default: ``"mas"`` for remote models, the cheaper
    ``"none"`` for local GGUF/HF models, measured in ``benchmarks/agent_first_cell.py``),
    ``"mas"`` (RecursiveMAS, options in ``mas_options``), ``"single"`` (one agent, one
    round), ``"none"`` (the request is the only step) or ``"onecall"`` (the baseline:
    one reply, its cell run once, no plan, no fixes, no answer).
    ``confirm(code) -> bool`` is asked before each cell runs (and before a proposed
    ``%pip install``); ``allow_install`` installs a missing package without asking;
    ``dry_run`` plans and writes code without running anything; ``stop_on_failure``
    ends the run at the first step that could not be fixed (default: report it and go
    on); ``refine`` revises the remaining plan after each step (``"auto"``: with the
    model for remote models, by cheap rules for local ones; ``"model"``, ``"rules"``,
    ``"off"``); ``answer`` closes the run with a markdown cell answering the request;
    ``load_files`` makes the first cells read the tables the request names (CSV, TSV,
    JSON, Parquet, Excel) into DataFrames, so the model's code starts from real data.
    """

    def __init__(
        self,
        model: ChatModel | str | None = None,
        *,
        planner: str = "auto",
        mas_options: dict[str, Any] | None = None,
        max_fixes: int = 3,
        cell_timeout: float | None = 120.0,
        dry_run: bool = False,
        confirm: ConfirmFn | None = None,
        on_event: EventHandler | None = None,
        stop_on_failure: bool = False,
        max_steps: int = 8,
        max_tokens: int | None = None,
        context_limits: ctx.ContextLimits | None = None,
        allow_install: bool = False,
        refine: str = "auto",
        answer: bool = True,
        load_files: bool = True,
    ) -> None:
        self.planner, self.mas_options = check_planner(planner, mas_options)
        if refine not in REFINE_MODES:
            raise ConfigError(f"refine must be one of {', '.join(REFINE_MODES)}, not {refine!r}.")
        self.allow_install = bool(allow_install)
        self.refine = refine
        self.answer = bool(answer)
        self.load_files = bool(load_files)
        if isinstance(max_fixes, bool) or not isinstance(max_fixes, int) or not 0 <= max_fixes <= 20:
            raise ConfigError(f"max_fixes must be a whole number from 0 to 20, not {max_fixes!r}.")
        if cell_timeout is not None and (isinstance(cell_timeout, bool) or not isinstance(cell_timeout, (int, float))
                                         or not cell_timeout >= 0):  # `not >=`: NaN is refused too
            raise ConfigError(f"cell_timeout must be a number of seconds >= 0 (0: no limit), not {cell_timeout!r}.")
        if isinstance(max_steps, bool) or not isinstance(max_steps, int) or not 1 <= max_steps <= 50:
            raise ConfigError(f"max_steps must be a whole number from 1 to 50, not {max_steps!r}.")
        if max_tokens is not None and (isinstance(max_tokens, bool) or not isinstance(max_tokens, int)
                                       or max_tokens < 1):
            raise ConfigError(f"max_tokens must be a whole number >= 1 (None: by model), not {max_tokens!r}.")
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

    def fix_last_error(
        self,
        namespace: MutableMapping[str, Any] | None = None,
        *,
        shell: Any = None,
        sink: Any = None,
        base_dir: str | os.PathLike[str] | None = None,
        note: str = "",
    ) -> AgentResult:
        """``%agent fix``: write (and run) a corrected version of the cell that last raised.

        The cell's code and traceback come from the shell (its last execution result, else
        ``sys.last_value`` and the cell source IPython keeps in ``linecache``). Raises
        :class:`ConfigError` when no cell has failed yet.
        """
        found = last_error(shell)
        if found is None:
            if sink is not None and hasattr(sink, "abort"):
                sink.abort()  # no run: no empty notebook left behind
            raise ConfigError("Nothing to fix: no cell has raised an error in this kernel yet.")
        code, error = found
        request = fix_last_error_request(code, error)
        if note.strip():
            request += f"\n\nAlso: {note.strip()}"
        run = _Run(self, request, namespace, shell, sink, base_dir, planner="none", answer=False,
                   title="Fix the cell that last raised")
        return run.go()


class _Run:
    """One run's state; keeps :class:`NotebookAgent` reusable and free of per-run fields."""

    def __init__(self, agent: NotebookAgent, request: str, namespace: Any, shell: Any, sink: Any,
                 base_dir: Any, *, planner: str | None = None, answer: bool | None = None,
                 title: str | None = None) -> None:
        self.agent = agent
        self.request = request
        self.title = title or request.splitlines()[0][:80]
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
        self.observed: list[str] = []  # per finished step: title and output, for refine and answer
        self.rebound: list[str] = []
        self.replaced: dict[str, Any] = {}
        self.mode = "none"
        self.model_label = ""
        self.t0 = time.perf_counter()
        self.first_cell: float | None = None
        self.usage0 = Usage()
        self.sink_summary = ""
        self.planner = planner or agent.planner
        self.answer_wanted = agent.answer if answer is None else answer
        self.answer = ""
        self.installed: set[str] = set()
        sink_path = getattr(sink, "path", None)
        self.sink_path = str(Path(sink_path).resolve()) if sink_path else None

    # -- lifecycle ---------------------------------------------------------------------------

    def go(self) -> AgentResult:
        a = self.agent
        model = a.model  # NoModelAvailableError etc. surface before anything starts
        self.model_label = f"{model.backend}:{model.name}"
        self.usage0 = model.usage
        # a cell rarely needs 500 tokens; on a local CPU model every token of rambling costs time
        self.budget = Budget(model, a.max_tokens or (LOCAL_MAX_TOKENS if _is_local(model) else REMOTE_MAX_TOKENS))
        self.planner = resolve_planner(self.planner, model)
        self.onecall = self.planner == "onecall"
        emit(self.events, RunStarted("agent", self.title, self.model_label))
        self.before = {n: self.ns[n] for n in ctx.user_names(self.ns, self.hidden)}
        self.files = FileLedger(self.base)
        try:
            loads = self._load_steps()
            for step in loads:
                self._run_fixed_step(step)
            context = ctx.gather(self.request, self.ns, shell=self.shell, base_dir=self.base,
                                 limits=a.context_limits).render()
            self.trajectory.append({"type": "context", "text": context})
            if self.onecall:
                plan = PlanOutcome([self.request], "none")
            else:
                # the planner's prompt is the context plus a few lines: keep it within half the window
                room = self.budget.prompt_tokens
                plan_context = context if room is None else _fit_text(model, context, room // 2)
                plan = make_plan(model, self.request, plan_context, planner=self.planner,
                                 mas_options=a.mas_options, max_steps=a.max_steps, on_event=self.events)
            self.mode = plan.mode
            self.trajectory.append({"type": "plan", "steps": plan.steps, "mode": plan.mode, "raw": plan.raw,
                                    "seconds": round(plan.seconds, 3), "fallback": plan.fallback,
                                    "planner": self.planner, **plan.mas})
            titles = list(plan.steps)
            if loads:  # the planner's own "load the CSV" step is done already
                titles = _refine_by_rules(loads, titles) or titles
            self.steps = [*loads, *(_Step(len(loads) + i, t) for i, t in enumerate(titles))]
            self.plan = [s.title for s in self.steps]
            emit(self.events, PlanReady(tuple(self.plan)))
            i = len(loads)
            while i < len(self.steps):
                step = self.steps[i]
                self._run_step(model, context, step)
                if step.status == "failed" and a.stop_on_failure:
                    emit(self.events, Notice(f"Stopped after step {step.index + 1} failed (stop_on_failure).",
                                             level="warning"))
                    for rest in self.steps[step.index + 1 :]:
                        rest.status = "not-run"
                    break
                i += 1
                if i < len(self.steps) and step.status in ("ok", "failed"):
                    self._refine(model, i)
            if self.answer_wanted and not self.onecall and not a.dry_run:
                self._answer(model)
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

    def _code_messages(self, context: str, step: _Step) -> list[dict[str, str]]:
        """The step's prompt, fitted to the window: earlier cells shrink first, then the context, then the plan."""
        made = self._new_variables_text()
        parts = {"context": context, "made": made, "done": "\n".join(self.done[-4:]),
                 "plan": "\n".join(self.plan), "request": self.request, "title": step.title}

        def build(p: dict[str, str]) -> list[dict[str, str]]:
            text = p["context"] + (f"\n\nVariables created by earlier steps:\n{p['made']}" if p["made"] else "")
            plan = p["plan"].split("\n") if p["plan"] else []
            while len(plan) <= step.index:  # a cut plan keeps the step's own line
                plan.append(self.plan[len(plan)])
            plan[step.index] = p["title"]
            done = [p["done"]] if p["done"] else []
            return [{"role": "system", "content": SYSTEM},
                    {"role": "user", "content": code_prompt(p["request"], text, plan, step.index, done)}]

        # least important first; the request and the step itself only when nothing else is left
        messages, cut = self.budget.fit(build, parts, ("done", "made", "context", "plan", "request", "title"))
        if cut:
            self.trajectory.append({"type": "budget", "step": step.index + 1, "cut": cut,
                                    "window": self.budget.window})
        return messages

    def _fit_followup(self, base: list[dict[str, str]], reply: str, followup: str) -> list[dict[str, str]]:
        """A fix request after a failed attempt, fitted: the failed reply and the error shrink first."""
        parts = {"base": base[-1]["content"], "reply": reply, "followup": followup}

        def build(p: dict[str, str]) -> list[dict[str, str]]:
            return [*base[:-1], {"role": "user", "content": p["base"]},
                    {"role": "assistant", "content": p["reply"]}, {"role": "user", "content": p["followup"]}]

        messages, _ = self.budget.fit(build, parts, ("reply", "base", "followup"))
        return messages

    def _run_step(self, model: ChatModel, context: str, step: _Step) -> None:
        a = self.agent
        total = len(self.steps)
        emit(self.events, StepStarted(step.index, total, step.title))
        base_messages = self._code_messages(context, step)
        messages = list(base_messages)
        draft: CellDraft | None = None
        explanation = ""
        last_run: ExecResult | None = None
        rerun: CellDraft | None = None  # after an install: the same code again, no new reply
        max_attempts = 1 if self.onecall else 1 + a.max_fixes
        tried: set[str] = set()
        hot = False  # the model repeated a failed cell: sample the next answer instead
        while step.attempts < max_attempts:
            step.attempts += 1
            if rerun is not None:
                draft, rerun = rerun, None  # ``reply`` is still the one that wrote this code
            else:
                reply = self._ask(model, messages, temperature=RETRY_TEMPERATURE if hot else None)
                try:
                    draft = parse_cell(reply)
                    # the first explanation describes the step; a fix reply's prose only describes the fix
                    explanation = explanation or draft.markdown
                    draft = CellDraft(explanation, draft.code)
                except MalformedOutputError as exc:
                    self._record_attempt(step, None, None, error=exc.message)
                    messages = self._fit_followup(base_messages, reply, malformed_prompt())
                    continue
            hot = draft.code in tried
            tried.add(draft.code)
            if not self.onecall:
                code, added = add_missing_imports(draft.code, set(self.ns))
                if added:
                    draft = CellDraft(draft.markdown, code)
                    emit(self.events, Notice(f"Step {step.index + 1}: added the missing import(s) "
                                             f"{'; '.join(added)} at the top of the cell."))
            repeat = next((s for s in self.steps[: step.index] if s.cells and s.status == "ok"
                           and _same_code(s.cells[-1].source, draft.code)), None)
            if repeat is not None:  # a copy of an earlier cell does nothing new
                why = f"the cell repeats step {repeat.index + 1}"
                self._record_attempt(step, draft, None, error=why)
                emit(self.events, CellRun(step.index, step.attempts, draft.code, False, why, 0.0))
                messages = self._fit_followup(base_messages, reply, repeat_prompt(repeat.index + 1, step.title))
                continue
            if not has_statement(draft.code):
                self._record_attempt(step, draft, None, error="the cell has no executable statement")
                emit(self.events, CellRun(step.index, step.attempts, draft.code, False,
                                          "the cell has no executable statement", 0.0))
                messages = self._fit_followup(base_messages, reply, empty_prompt(draft.code))
                continue
            if a.dry_run:
                self._record_attempt(step, draft, None)
                step.status = "dry-run"
                self._deliver_step(step, draft, None)
                return
            verdict = True if a.confirm is None else a.confirm(draft.code)
            if isinstance(verdict, str) and verdict.strip():  # edited in review: runs, and lands, as edited
                draft = CellDraft(draft.markdown, verdict)
            elif not verdict:
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
            last_run = self.files.run(self.executor, draft.code, a.cell_timeout)
            if self.first_cell is None:
                self.first_cell = time.perf_counter() - self.t0
            self._protect_user_variables(step)
            short = None if last_run.ok else f"{last_run.ename}: {last_run.evalue}"
            emit(self.events, CellRun(step.index, step.attempts, draft.code, last_run.ok, short, last_run.seconds))
            self._record_attempt(step, draft, last_run)
            if last_run.ok:
                step.status = "ok"
                self._deliver_step(step, draft, last_run)
                self.done.append(_done_entry(step, draft, last_run))
                self.observed.append(_observed_entry(step, last_run))
                return
            if last_run.timed_out:
                emit(self.events, Notice(f"Step {step.index + 1}, attempt {step.attempts}: the cell ran longer "
                                         f"than {a.cell_timeout:g} s and was interrupted.", level="warning"))
            hint = ""
            if last_run.ename == "ModuleNotFoundError":
                installed, hint = self._missing_package(step, last_run)
                if installed:
                    rerun = draft
                    continue
            elif last_run.ename == "NameError":
                hint = self._name_hint(last_run.evalue or "")
            messages = self._fit_followup(base_messages, reply,
                                          fix_prompt(draft.code, last_run.error or "", timed_out=last_run.timed_out,
                                                     timeout=a.cell_timeout or 0, hint=hint))
        step.status = "failed"
        if last_run is not None and not last_run.ok:
            step.error = f"{last_run.ename}: {last_run.evalue}"
        elif draft is not None:
            step.error = "the cell has no executable statement"
        else:
            step.error = "the model never answered with a code block"
        if draft is not None:
            self._deliver_step(step, draft, last_run)
            self.done.append(_done_entry(step, draft, last_run))
            self.observed.append(f"Step {step.index + 1} ({step.title}) FAILED: {step.error}")
        else:
            emit(self.events, StepFinished(step.index, False, step.attempts))

    # -- the files the request names -------------------------------------------------------------------

    def _load_steps(self) -> list[_Step]:
        """One step per table the request names: the agent reads it itself (no model call)."""
        a = self.agent
        if not a.load_files or self.onecall or importlib.util.find_spec("pandas") is None:
            return []
        steps: list[_Step] = []
        taken = set(self.ns)
        for path in ctx.named_files(self.request, self.base)[: a.context_limits.max_files]:
            reader = _READERS.get(path.suffix.lower())
            if reader is None:
                continue
            try:
                shown = os.path.relpath(path, self.base)
            except ValueError:
                shown = str(path)
            if shown.startswith(".."):
                shown = str(path)
            name = _frame_name(path, taken)
            taken.add(name)
            call = reader.format(path=repr(shown))
            if path.suffix.lower() in (".csv", ".tsv"):
                dates = ctx.date_columns(path, "\t" if path.suffix.lower() == ".tsv" else ",")
                if dates:
                    call = call[:-1] + f", parse_dates={dates!r})"
            code = f"import pandas as pd\n\n{name} = pd.{call}\n{name}.head()"
            step = _Step(len(steps), f"Load {path.name} into the DataFrame `{name}`")
            step.fixed = (code, f"Read `{shown}`, the file the request names, and look at its first rows.")
            steps.append(step)
        return steps

    def _run_fixed_step(self, step: _Step) -> None:
        """Run a cell the agent wrote itself (loading a file): no model, no fixes."""
        a = self.agent
        code, note = step.fixed
        draft = CellDraft(note, code)
        emit(self.events, StepStarted(step.index, step.index + 1, step.title))
        step.attempts = 1
        if a.dry_run:
            step.status = "dry-run"
            self._record_attempt(step, draft, None)
            self._deliver_step(step, draft, None)
            return
        verdict = True if a.confirm is None else a.confirm(code)
        if isinstance(verdict, str) and verdict.strip():  # edited in review
            code = verdict
            draft = CellDraft(note, code)
        elif not verdict:
            step.status = "skipped"
            self._record_attempt(step, draft, None, error="not approved")
            emit(self.events, StepFinished(step.index, False, step.attempts))
            return
        run = self.files.run(self.executor, code, a.cell_timeout)
        self._protect_user_variables(step)
        emit(self.events, CellRun(step.index, 1, code, run.ok, None if run.ok else f"{run.ename}: {run.evalue}",
                                  run.seconds))
        self._record_attempt(step, draft, run)
        step.status = "ok" if run.ok else "failed"
        step.error = None if run.ok else f"{run.ename}: {run.evalue}"
        self._deliver_step(step, draft, run)
        # described, not shown: small models copy a code block they are shown instead of going on
        self.done.append(f"Step {step.index + 1}: {step.title} — done; the DataFrame exists, use it "
                         "(do not read the file again)." if run.ok else _done_entry(step, draft, run))
        # not an observation for the answer: a table's first rows answer no question

    # -- what a failure needs ------------------------------------------------------------------------

    def _name_hint(self, evalue: str) -> str:
        """Say exactly what is missing: the import for a standard alias, or which names do exist."""
        m = re.search(r"name '(\w+)' is not defined", evalue)
        if not m:
            return ""
        name = m.group(1)
        if name in STANDARD_IMPORTS:
            return f"`{name}` is not imported: add `{STANDARD_IMPORTS[name]}` at the top of the cell."
        known = ", ".join(ctx.user_names(self.ns, self.hidden)[:20]) or "(none)"
        return (f"`{name}` does not exist in the kernel. Variables that exist: {known}. Define `{name}` "
                "in this cell or use one of those.")

    def _missing_package(self, step: _Step, run: ExecResult) -> tuple[bool, str]:
        """A ModuleNotFoundError: install the package when allowed (or approved), else say so. Never silent."""
        m = re.search(r"No module named '([^']+)'", run.evalue or "")
        pkg = pip_package(m.group(1)) if m else None
        if pkg is None:
            return False, ""
        a = self.agent
        command = f"%pip install {pkg}"
        if pkg not in self.installed:
            allowed = a.allow_install or (a.confirm is not None and a.confirm(command))
            if allowed:
                self.installed.add(pkg)
                emit(self.events, Notice(f"Step {step.index + 1} needs {pkg!r}: running `{command}`.",
                                         level="warning"))
                ok, said = self._pip_install(pkg)
                self.trajectory.append({"type": "install", "package": pkg, "ok": ok, "output": said[-800:]})
                if ok:
                    return True, ""
                emit(self.events, Notice(f"`{command}` failed: {said.strip().splitlines()[-1] if said.strip() else ''}",
                                         level="warning"))
            else:
                emit(self.events, Notice(
                    f"Step {step.index + 1} needs the package {pkg!r}, which is not installed. Run `{command}` "
                    "yourself, or rerun with --allow-install (allow_install=True) to let the agent install it.",
                    level="warning"))
        return False, (f"The module {m.group(1)!r} is not installed and will not be installed now: rewrite the "
                       "cell without it (pandas, numpy and matplotlib are available).")

    def _pip_install(self, pkg: str) -> tuple[bool, str]:
        """``%pip install`` in the kernel (IPython), ``python -m pip install`` elsewhere."""
        if isinstance(self.executor, ShellExecutor):
            res = self.executor.run(f"%pip install {pkg}", 600)
            return res.ok and "ERROR" not in res.text(4000), res.text(4000)
        try:
            proc = subprocess.run([sys.executable, "-m", "pip", "install", pkg], capture_output=True,
                                  text=True, timeout=600)
        except (OSError, subprocess.TimeoutExpired) as exc:
            return False, str(exc)
        return proc.returncode == 0, proc.stdout + proc.stderr

    # -- observe, refine, answer ----------------------------------------------------------------------

    def _refine(self, model: ChatModel, next_index: int) -> None:
        """Revise the steps still to do from what the finished ones showed (Plan, Act, Observe, Refine)."""
        a = self.agent
        mode = a.refine
        if mode == "off" or self.planner in ("none", "onecall") or a.dry_run:
            return
        if mode == "auto":
            mode = "rules" if _is_local(model) else "model"
        remaining = [s.title for s in self.steps[next_index:]]
        revised: list[str] | None
        if mode == "rules":
            revised = _refine_by_rules(self.steps[:next_index], remaining)
        else:
            done = "\n".join(self.observed[-4:])
            parts = {"done": done}

            def build(p: dict[str, str]) -> list[dict[str, str]]:
                return [{"role": "system", "content": SYSTEM},
                        {"role": "user", "content": refine_prompt(self.request, p["done"], remaining)}]

            messages, _ = self.budget.fit(build, parts, ("done",))
            reply = model.chat(messages, max_tokens=min(300, self.budget.reply_room(messages))).text
            if re.search(r"^\s*0\s*[.)]", reply, re.M):
                revised = []
            else:
                revised = parse_plan(reply, max_steps=max(1, a.max_steps - next_index))
                if revised is None:
                    return  # an unreadable revision keeps the plan
        if revised is None or revised == remaining:
            return
        self.trajectory.append({"type": "refine", "after_step": next_index, "mode": mode,
                                "before": remaining, "after": revised})
        emit(self.events, Notice("Plan revised after step "
                                 f"{next_index}: " + ("nothing left to do" if not revised else
                                                      "; ".join(f"{next_index + k + 1}. {t}"
                                                                for k, t in enumerate(revised)))))
        self.steps[next_index:] = [_Step(next_index + k, t) for k, t in enumerate(revised)]
        self.plan = [s.title for s in self.steps]

    def _answer(self, model: ChatModel) -> None:
        """A closing markdown cell answering the request, its names and numbers checked against the outputs."""
        ok_steps = [s for s in self.steps if s.status == "ok" and s.fixed is None]
        if not ok_steps or not any("output:\n(no output)" not in o and "FAILED" not in o.split("\n", 1)[0]
                                   for o in self.observed):
            return  # nothing the model computed was shown: no answer rather than one made up
        observed = "\n\n".join(self.observed)
        parts = {"observed": observed}

        def build(p: dict[str, str]) -> list[dict[str, str]]:
            return [{"role": "system", "content": SYSTEM},
                    {"role": "user", "content": answer_prompt(self.request, p["observed"])}]

        messages, _ = self.budget.fit(build, parts, ("observed",))
        if accepts_images(model):  # a vision model also sees the plots (every model reads their descriptions)
            messages = with_images(messages, figure_pngs(c for s in ok_steps for c in s.cells))
        reply = strip_ansi(model.chat(messages, max_tokens=min(200, self.budget.reply_room(messages))).text)
        sentence = _clean_answer(reply)
        invented = invented_numbers(sentence, observed + "\n" + self.request)
        source = "model"
        if not sentence or invented or "```" in reply or not _shares_a_fact(sentence, observed):
            last = next((s for s in reversed(self.observed) if "FAILED" not in s.split("\n", 1)[0]), "")
            head, _, out = last.partition("\n")
            sentence = f"From {head.rstrip(':')}:\n\n```text\n{out.strip()[:800]}\n```"
            source = "outputs"
        self.answer = sentence
        self.trajectory.append({"type": "answer", "text": sentence, "source": source, "raw": reply,
                                "invented": invented})
        cell = _cells_module().markdown_cell(f"### Answer\n\n{sentence}", metadata={"nbmagic": {
            "step": "answer", "model": self.model_label, "source": source}})
        self.cells.append(cell)
        if self.sink is not None:
            self.sink.deliver(cell)
        emit(self.events, CellAccepted(cell, len(self.steps)))

    def _new_variables_text(self) -> str:
        """What earlier steps created (columns and dtypes matter for the next step's code)."""
        limits = self.agent.context_limits
        names = [n for n in ctx.user_names(self.ns, self.hidden)
                 if n not in self.before or self.ns[n] is not self.before[n]]
        summary = ctx.summarize_namespace({n: self.ns[n] for n in names}, limits)
        return summary[: limits.namespace_chars // 2]

    def _ask(self, model: ChatModel, messages: list[dict[str, str]], temperature: float | None = None) -> str:
        on_token = None
        if self.events is not None:
            handler = self.events

            def on_token(text: str) -> None:
                emit(handler, TextDelta("coder", text))

        # the closing fence ends the answer: a small model would otherwise ramble to max_tokens
        # (the opening fence is "```python", so it does not match)
        return model.chat(messages, max_tokens=self.budget.reply_room(messages), on_token=on_token,
                          stop=["\n```\n"], temperature=temperature).text

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
        # no execution counts: nbmagic's own 1, 2, 3 would clash with the kernel's In[n] numbers
        outputs = list(run.outputs) if run is not None else []
        code, meta = draft.code, self._meta(step)
        if step.status == "failed":
            # a cell that never succeeded must not break "run all": an error is tagged as expected;
            # a cell that hung is kept as comments (it would hang the re-run too)
            if run is not None and run.timed_out:
                code = "# nbmagic: this cell ran past its timeout; kept as comments\n" + "\n".join(
                    "# " + line for line in code.splitlines())
            else:
                meta = dict(meta, tags=["raises-exception"])
        made = [cells.markdown_cell(md, metadata=self._meta(step)),
                cells.code_cell(code, outputs=outputs, execution_count=None, metadata=meta)]
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
        skip = {p for p in (self.sink_path, *_open_notebooks(self.ns, self.base)) if p}
        files = self.files.changes(skip=skip)
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
            files_written=files.written,
            files_deleted=files.deleted,
            files_renamed=files.renamed,
            files_possibly_written=files.possibly_written,
            files=files,
            interrupted=interrupted,
            seconds=time.perf_counter() - self.t0,
            model=self.model_label,
            mode=self.mode,
            sink_summary=self.sink_summary,
            answer=self.answer,
            planner=self.planner,
            first_cell_seconds=self.first_cell,
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


#: pandas reader per file suffix (``{path}`` is the quoted path)
_READERS = {
    ".csv": "read_csv({path})",
    ".tsv": "read_csv({path}, sep='\\t')",
    ".json": "read_json({path})",
    ".jsonl": "read_json({path}, lines=True)",
    ".parquet": "read_parquet({path})",
    ".xlsx": "read_excel({path})",
}


def _frame_name(path: Path, taken: set[str]) -> str:
    """A variable name for a file's DataFrame: its stem as an identifier, never one already in use."""
    stem = re.sub(r"\W+", "_", path.stem.lower()).strip("_") or "data"
    if stem[0].isdigit() or keyword.iskeyword(stem):
        stem = f"df_{stem}"
    name, n = stem, 1
    while name in taken:
        name = f"{stem}_df" if n == 1 else f"{stem}_df{n}"
        n += 1
    return name


def _observed_entry(step: _Step, run: ExecResult) -> str:
    """What a finished step showed, for the refine and answer prompts (plain text, capped)."""
    out = run.text(700).strip() or "(no output)"
    return f"Step {step.index + 1} ({step.title}) output:\n{out}"


def _same_code(a: str, b: str) -> bool:
    """Equal once comments, blank lines and spacing are ignored."""
    def norm(code: str) -> list[str]:
        return [" ".join(line.split("#", 1)[0].split()) for line in code.splitlines()
                if line.split("#", 1)[0].strip()]

    return norm(a) == norm(b)


def _fit_text(model: ChatModel, text: str, tokens: int) -> str:
    """``text`` cut (head and tail kept) to about ``tokens`` of the model's tokens."""
    from nbmagic.text import truncate

    n = model.count_tokens(text)
    if n <= tokens:
        return text
    return truncate(text, max(200, int(len(text) * tokens / n * 0.95)), head=0.7)


def _is_local(model: ChatModel) -> bool:
    """Models that run on this machine (GGUF, Hugging Face): every extra call costs real seconds here."""
    return model.backend in ("gguf", "hf")


_WORDS = re.compile(r"[a-z]{3,}")
_STOP = frozenset({"the", "and", "for", "with", "into", "from", "data", "each", "show", "then", "them", "that"})


def _refine_by_rules(done: list[_Step], remaining: list[str]) -> list[str] | None:
    """The cheap revision small local models get: drop a remaining step that repeats a finished one
    (same key words, e.g. a second "load the CSV"), and a "fix"/"retry" step once its target ran."""
    finished = [set(_WORDS.findall(s.title.lower())) - _STOP for s in done if s.status in ("ok", "dry-run")]
    kept: list[str] = []
    for title in remaining:
        words = set(_WORDS.findall(title.lower())) - _STOP
        repeat = any(words and len(words & f) >= max(2, int(0.8 * len(words))) for f in finished)
        if not repeat:
            kept.append(title)
    return kept if kept != remaining else None


_NUMBER = re.compile(r"(?<![\w.])-?\d[\d,]*(?:\.\d+)?(?:[eE][-+]?\d+)?%?")


def _numbers(text: str) -> list[float]:
    out = []
    for raw in _NUMBER.findall(text):
        raw = raw.rstrip("%").replace(",", "")
        try:
            out.append(float(raw))
        except ValueError:
            continue
    return out


def invented_numbers(answer: str, observed: str) -> list[str]:
    """Numbers in ``answer`` that appear nowhere in ``observed`` (also not as a rounding of one).

    The closing answer may only restate what the cells printed; a small model that
    "remembers" a total it never computed is caught here and its sentence replaced.
    """
    seen = _numbers(observed)
    bad = []
    for raw in _NUMBER.findall(answer):
        try:
            value = float(raw.rstrip("%").replace(",", ""))
        except ValueError:
            continue
        if any(value == v or any(round(v, d) == value for d in range(4)) or
               (abs(v) >= 1000 and abs(value - v) <= 0.5) for v in seen):
            continue
        bad.append(raw)
    return bad


_FACT = re.compile(r"-?\d[\d,.]*|[A-Za-z_][\w-]{2,}")


def _shares_a_fact(answer: str, observed: str) -> bool:
    """An answer must restate something the outputs showed (a number, a name), not only talk around it."""
    seen = {t.lower().rstrip(".,") for t in _FACT.findall(observed)}
    common = {"the", "and", "are", "was", "were", "with", "from", "for", "step", "output", "outputs", "this",
              "that", "is", "of", "by", "in", "total", "value", "values", "name", "dtype", "none"}
    return any(t.lower().rstrip(".,") in seen - common for t in _FACT.findall(answer))


def _clean_answer(reply: str) -> str:
    """The model's answer as plain sentences (no thinking, headings or code)."""
    from nbmagic.agent.codegen import strip_thinking

    text = strip_thinking(reply)
    text = re.sub(r"^#+\s*answer[^\n]*\n", "", text, flags=re.I).strip()
    return text[:1200]


def last_error(shell: Any) -> tuple[str, str] | None:
    """The code and traceback of the cell that last raised in ``shell`` (None if none did)."""
    if shell is None:
        return None
    last = getattr(shell, "last_execution_result", None)
    error = getattr(last, "error_in_exec", None) or getattr(last, "error_before_exec", None)
    if error is not None:
        code = getattr(getattr(last, "info", None), "raw_cell", "") or ""
        if code.strip() and not code.lstrip().startswith(("%agent", "%%agent")):
            return code, _format_error(error)
    error = getattr(sys, "last_value", None)
    if error is None:
        return None
    code = _cell_source(error)
    if not code:
        hist = getattr(getattr(shell, "history_manager", None), "input_hist_raw", None) or []
        code = next((str(c) for c in reversed(hist) if str(c).strip()
                     and not str(c).lstrip().startswith(("%agent", "%%agent"))), "")
    return (code, _format_error(error)) if code.strip() else None


def _format_error(error: BaseException) -> str:
    import traceback

    from nbmagic.text import truncate

    text = "".join(traceback.format_exception(type(error), error, error.__traceback__))
    return truncate(strip_ansi(text), 3000, head=1 / 3)


def _cell_source(error: BaseException) -> str:
    """The source of the notebook cell in the traceback (IPython keeps each cell in linecache)."""
    filename = getattr(error, "filename", None) if isinstance(error, SyntaxError) else None
    tb = error.__traceback__
    while tb is not None:
        name = tb.tb_frame.f_code.co_filename
        if name.startswith("<ipython-input") or "ipykernel_" in name:
            filename = name
        tb = tb.tb_next
    if not filename:
        return ""
    return "".join(linecache.getlines(filename))


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
    lines.extend(result.files.lines())
    if result.answer:
        first = result.answer.strip().splitlines()[0]
        lines.append("Answer: " + (first if len(first) <= 200 else first[:199] + "…"))
    if result.sink_summary:
        lines.append(result.sink_summary)
    return "\n".join(lines)


# --- files written (nbmagic.execution.file_ledger) ----------------------------------------------------


def _open_notebooks(namespace: MutableMapping[str, Any], base: Path) -> list[str]:
    """The notebook this kernel serves (its autosave is not a file the run wrote).

    ipykernel puts the notebook's path in ``__session__`` and Jupyter Server in
    ``JPY_SESSION_NAME``; either may be relative to the server's root, so the name is
    also tried in the working folder.
    """
    out: list[str] = []
    for raw in (namespace.get("__session__"), os.environ.get("JPY_SESSION_NAME")):
        if not isinstance(raw, str) or not raw.endswith(".ipynb"):
            continue
        for cand in (Path(raw), base / raw, base / Path(raw).name):
            try:
                out.append(str(cand.resolve()))
            except OSError:
                continue
    return out
