"""A ``%%agent`` run: load, plan, one deliberation round per part, answer.

A run is RecursiveMAS's deliberation pattern (reflector ↔ tool-caller) with the
user's kernel as the tool. The round's loop is not written here: it is the pattern's
one loop, :func:`nbmagic.mas.deliberation.deliberate` (RecursiveMAS's tool-caller runs it
too), and :class:`.cell_round.CellRound` supplies the agent's hooks: ``ask`` (the
tool-caller's chat call), ``prepare`` (parse, repeat/empty follow-ups, repairs, dry run,
confirm), ``run`` (the kernel), ``judge`` (the rules reflector, a package install ->
rerun), ``exchange`` (:mod:`.exchange`)::

    load:     the agent reads the named tables itself (no model call)
    plan:     parts read from the request (:mod:`.parts`), or a model's plan (planner mas/single)
    round k:  (one per part)
        tool-caller  writes the cell for part k (a chat call; a code block, grammar-forced on GGUF)
        kernel       runs it, with capture, limits and the user's variables protected
        reflector    judges what the kernel showed against part k (:mod:`.reflector`):
                     an error, an empty table, a negative count, no figure, no answer line
                     -> a precise refinement back to the tool-caller (:mod:`.exchange`), up to
                     ``max_fixes`` times; accepted -> the cell is delivered
    answer:   a closing markdown cell written from the outputs (:mod:`.answer`)

Events: ``RoundStarted(k, parts)``, ``AgentStarted``/``AgentFinished`` for the tool-caller
and the reflector each round, ``ModelCall`` per model call (tokens), ``TextDelta`` while the
tool-caller streams, plus the notebook agent's own step and cell events.
"""

from __future__ import annotations

import importlib.util
import os
import time
from collections.abc import MutableMapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from nbmagic.agent import context as ctx
from nbmagic.agent.answer import write_answer
from nbmagic.agent.budget import Budget, fit_text
from nbmagic.agent.cell_round import CellRound, give_up, keep
from nbmagic.agent.codegen import CellDraft
from nbmagic.agent.constrain import code_block_params
from nbmagic.agent.exchange import exchange_mode
from nbmagic.agent.executor import ExecResult, NamespaceExecutor, ShellExecutor
from nbmagic.agent.guard import UserState
from nbmagic.agent.hints import hints_note
from nbmagic.agent.loading import load_steps, loaded_frames, run_load_step
from nbmagic.agent.markdown import describe, step_markdown
from nbmagic.agent.parts import Part, Request, part_kind, short_title, split_request
from nbmagic.agent.planner import PlanOutcome, make_plan, resolve_planner
from nbmagic.agent.prompts import SYSTEM, code_prompt
from nbmagic.agent.refine import refine, refine_by_rules
from nbmagic.agent.reflector import Verdict
from nbmagic.agent.result import SAVED_NAME, AgentResult, Step, cells_module, run_result
from nbmagic.errors import NbmagicError
from nbmagic.events import (
    CellAccepted,
    Finished,
    ModelCall,
    Notice,
    PlanReady,
    RoundFinished,
    RoundStarted,
    RunStarted,
    StepFinished,
    StepStarted,
    emit,
)
from nbmagic.execution.file_ledger import FileLedger
from nbmagic.lifecycle import RunLifecycle
from nbmagic.llm.base import ChatModel, Usage
from nbmagic.mas.deliberation import deliberate

if TYPE_CHECKING:
    from nbmagic.agent.core import NotebookAgent

#: reply size per code cell when ``max_tokens`` is not given
LOCAL_MAX_TOKENS = 640
REMOTE_MAX_TOKENS = 1500


def is_local(model: ChatModel) -> bool:
    """Models that run on this machine (GGUF, Hugging Face): every extra call costs real seconds here."""
    return model.backend in ("gguf", "hf")


class Run:
    """One run's state; keeps :class:`NotebookAgent` reusable and free of per-run fields."""

    def __init__(self, agent: NotebookAgent, request: str, namespace: Any, shell: Any, sink: Any,
                 base_dir: Any, *, planner: str | None = None, answer: bool | None = None,
                 title: str | None = None) -> None:
        self.agent = agent
        self.request = request
        self.title = title or request.splitlines()[0][:80]
        self.title_given = title is not None
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
        self.steps: list[Step] = []
        self.cells: list[Any] = []
        self.done: list[str] = []
        self.observed: list[str] = []  # per finished step: title and output, for refine and answer
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
        self.frames: dict[str, str] = {}
        self.read = Request(request, [Part(short_title(request), request, part_kind(request))])
        self.spent = 0  # tokens the run's model calls took (for the cap)
        sink_path = getattr(sink, "path", None)
        self.sink_path = str(Path(sink_path).resolve()) if sink_path else None

    def go(self) -> AgentResult:
        a = self.agent
        model = a.model  # NoModelAvailableError etc. surface before anything starts
        self.model_label = f"{model.backend}:{model.name}"
        self.usage0 = model.usage
        # a cell rarely needs 500 tokens; on a local CPU model every token of rambling costs time
        self.budget = Budget(model, a.max_tokens or (LOCAL_MAX_TOKENS if is_local(model) else REMOTE_MAX_TOKENS))
        self.planner = resolve_planner(self.planner, model)
        self.onecall = self.planner == "onecall"
        self.exchange = exchange_mode(model, a.mas_options.get("mode", "auto"))
        self.forced = code_block_params(model, a.force_code_block) if not self.onecall else {}
        emit(self.events, RunStarted("agent", self.title, self.model_label))
        self.cap = a.cap_text(model)
        if self.cap and not is_local(model):
            emit(self.events, Notice(f"Text rounds with {self.model_label} may spend up to {self.cap} "
                                     "(--max-run-tokens, --max-cost)."))
        self.user = UserState(self.ns, self.hidden, self.events)
        self.files = FileLedger(self.base)  # what the cells themselves write (nbmagic.execution.file_audit)
        lifecycle = RunLifecycle("agent", self.events, lambda: self._partial(False), replace=True,
                                 partial_interrupted=lambda: self._partial(True), interrupted=self._interrupted)
        with lifecycle.guard():
            loads = self._loads()
            for step in loads:
                run_load_step(self, step)
            self.frames = loaded_frames(loads)
            # the loaded tables as read: an attempt that changes one in place (set_index(inplace=True))
            # and fails must not leave the next attempt a different table
            self.frame_copies = {n: self.ns[n].copy() for n in self.frames if hasattr(self.ns.get(n), "copy")}
            context = ctx.gather(self.request, self.ns, shell=self.shell, base_dir=self.base,
                                 limits=a.context_limits).render()
            self.trajectory.append({"type": "context", "text": context})
            # what the context already describes is not described again as "created by earlier steps"
            self.in_context = {n: id(self.ns[n]) for n in self.user.changed_names()}
            plan = self._plan(model, context)
            self.mode = plan.mode
            self.trajectory.append({"type": "plan", "steps": plan.steps, "mode": plan.mode, "raw": plan.raw,
                                    "seconds": round(plan.seconds, 3), "fallback": plan.fallback,
                                    "planner": self.planner, **plan.mas})
            parts = self._parts_for(plan, loads)
            self.steps = [*loads, *(Step(len(loads) + i, p.title, part=p) for i, p in enumerate(parts))]
            self.mark_answering()
            self.plan = [s.title for s in self.steps]
            emit(self.events, PlanReady(tuple(self.plan)))
            i = len(loads)
            while i < len(self.steps):
                step = self.steps[i]
                self._round(model, context, step)
                if step.status == "failed" and a.stop_on_failure:
                    emit(self.events, Notice(f"Stopped after step {step.index + 1} failed (stop_on_failure).",
                                             level="warning"))
                    for rest in self.steps[step.index + 1:]:
                        rest.status = "not-run"
                    break
                i += 1
                if i < len(self.steps) and step.status in ("ok", "failed"):
                    refine(self, model, i)
            if self.answer_wanted and not self.onecall and not a.dry_run:
                write_answer(self, model)
        self._close_sink()
        result = run_result(self)
        emit(self.events, Finished("agent", result, result.seconds))
        return result

    def _partial(self, interrupted: bool) -> AgentResult:
        """The result so far once the run stopped early; the sink aborted first, so its line is in."""
        self._close_sink(failed=True)
        return run_result(self, interrupted=interrupted, complete=False)

    def _interrupted(self) -> str:
        finished = sum(s.status in ("ok", "failed") for s in self.steps)
        return f"Interrupted: {len(self.cells)} cells from {finished} finished steps are kept (on .partial)."

    def _loads(self) -> list[Step]:
        a = self.agent
        if not a.load_files or self.onecall or importlib.util.find_spec("pandas") is None:
            return []
        return load_steps(self.request, self.base, self.ns, a.context_limits.max_files)

    def _plan(self, model: ChatModel, context: str) -> PlanOutcome:
        """The parts to do: read from the request (no model call), or the model's plan."""
        a = self.agent
        self.read = split_request(self.request, max_parts=a.max_steps)
        if self.onecall or self.planner == "none":
            return PlanOutcome([self.request], "none")
        if self.planner == "parts":
            return PlanOutcome([p.title for p in self.read.parts], "parts")
        # the planner's prompt is the context plus a few lines: keep it within half the window
        room = self.budget.prompt_tokens
        plan_context = context if room is None else fit_text(model, context, room // 2)
        return make_plan(model, self.request, plan_context, planner=self.planner,
                         mas_options=a.mas_options, max_steps=a.max_steps, on_event=self.events)

    def _parts_for(self, plan: PlanOutcome, loads: list[Step]) -> list[Part]:
        if plan.mode == "parts":
            return list(self.read.parts)
        if plan.mode == "none" or (plan.fallback and not self.read.multi):
            kind = self.read.parts[0].kind if len(self.read.parts) == 1 else part_kind(self.request)
            if self.title_given:  # %agent fix: the request quotes code; only errors are judged
                kind = "other"
            title = self.title if self.title_given else short_title(self.request.splitlines()[0])
            return [Part(title, self.request, kind)]
        if plan.fallback:
            return list(self.read.parts)
        titles = list(plan.steps)
        if loads:  # the planner's own "load the CSV" step is done already
            titles = refine_by_rules(loads, titles) or titles
        return [Part(t, t, part_kind(t)) for t in titles]

    def mark_answering(self) -> None:
        """The last part that is not a figure prints the request's exact answer line."""
        model_steps = [s for s in self.steps if s.part is not None]
        target = next((s for s in reversed(model_steps) if s.part.kind != "plot"), None)
        if target is None and model_steps:
            target = model_steps[-1]
        if target is not None:
            target.answering = True

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

    # -- one round: tool-caller writes, kernel runs, reflector judges ----------------------------

    def _notes(self, step: Step) -> str:
        """What the cell must respect: loaded tables, the request's instructions, the answer line."""
        lines: list[str] = []
        if self.frames:
            frames = "; ".join(f"`{n}` (read from {p})" for n, p in self.frames.items())
            lines.append(f"Loaded DataFrames (use them by name; do not read the files again): {frames}.")
        before = [s.part.text for s in self.steps[: step.index] if s.part is not None]
        if step.part and (idioms := hints_note(step.part.text, {n: self.ns[n] for n in self.frames if n in self.ns},
                                                         before)):
            lines.append(idioms)
        if self.read.instructions:
            lines.append("Instructions from the request (follow them exactly): " + " ".join(self.read.instructions))
        if step.answering and self.read.answer_line:
            lines.append(f"This cell must end by printing the answer exactly in this form: {self.read.answer_line}")
        return "\n".join(lines)

    def _code_messages(self, context: str, step: Step) -> list[dict[str, str]]:
        """The step's prompt, fitted to the window: earlier cells shrink first, then the context, then the plan."""
        made = self._new_variables_text()
        parts = {"context": context, "made": made, "done": "\n".join(self.done[-4:]),
                 "plan": "\n".join(self.plan), "request": self.request, "title": step.title}
        part_text = step.part.text if step.part is not None and len(self.steps) - self._n_loads() > 1 else ""
        notes = self._notes(step)

        def build(p: dict[str, str]) -> list[dict[str, str]]:
            text = p["context"] + (f"\n\nVariables created by earlier steps:\n{p['made']}" if p["made"] else "")
            plan = p["plan"].split("\n") if p["plan"] else []
            while len(plan) <= step.index:  # a cut plan keeps the step's own line
                plan.append(self.plan[len(plan)])
            plan[step.index] = p["title"]
            done = [p["done"]] if p["done"] else []
            return [{"role": "system", "content": SYSTEM},
                    {"role": "user", "content": code_prompt(p["request"], text, plan, step.index, done,
                                                            part=part_text, notes=notes)}]

        # least important first; the request and the step itself only when nothing else is left
        messages, cut = self.budget.fit(build, parts, ("done", "made", "context", "plan", "request", "title"))
        if cut:
            self.trajectory.append({"type": "budget", "step": step.index + 1, "cut": cut,
                                    "window": self.budget.window})
        return messages

    def _n_loads(self) -> int:
        return sum(s.fixed is not None for s in self.steps)

    def _round(self, model: ChatModel, context: str, step: Step) -> None:
        """One step as a round of the deliberation loop (:mod:`nbmagic.mas.deliberation`), with
        the agent's hooks (:class:`.cell_round.CellRound`): the kernel is the tool, the rules
        reflector the judge."""
        model_steps = [s for s in self.steps if s.part is not None]
        rnd = model_steps.index(step) + 1 if step in model_steps else 1
        emit(self.events, RoundStarted(rnd, len(model_steps)))
        emit(self.events, StepStarted(step.index, len(self.steps), step.title))
        base_messages = self._code_messages(context, step)
        turn = CellRound(self, model, step, rnd, len(model_steps), base_messages)
        outcome = deliberate(turn, list(base_messages), max_attempts=turn.max_attempts)
        if outcome.status == "done":  # a dry run, or a cell the user skipped: the hook said so
            return
        if outcome.status == "accepted" and turn.draft is not None and turn.last_run is not None:
            step.status = "ok"
            keep(self, step, turn.draft, turn.last_run)
        else:
            give_up(self, step, turn.draft, turn.last_run)
        emit(self.events, RoundFinished(rnd, len(model_steps)))

    # -- model calls, the trajectory ------------------------------------------------------------------

    def chat(self, model: ChatModel, messages: list[dict[str, str]], agent: str, **kw: Any) -> str:
        """One model call, accounted: a ModelCall event, and the run's token cap checked first."""
        self.agent.check_spend(self, model)
        res = model.chat(messages, **kw)
        self.spent += res.usage.prompt_tokens + res.usage.completion_tokens
        emit(self.events, ModelCall(self.model_label, res.usage.prompt_tokens, res.usage.completion_tokens,
                                    res.seconds, agent))
        return res.text

    def _new_variables_text(self) -> str:
        """What earlier steps created (columns and dtypes matter for the next step's code)."""
        limits = self.agent.context_limits
        seen = getattr(self, "in_context", {})
        names = [n for n in self.user.changed_names() if seen.get(n) != id(self.ns[n])]
        summary = ctx.summarize_namespace({n: self.ns[n] for n in names}, limits)
        return summary[: limits.namespace_chars // 2]

    def record_attempt(self, step: Step, draft: CellDraft | None, run: ExecResult | None,
                        error: str | None = None, verdict: Verdict | None = None) -> None:
        self.trajectory.append({
            "type": "attempt",
            "step": step.index + 1,
            "attempt": step.attempts,
            "markdown": draft.markdown if draft else None,
            "code": draft.code if draft else None,
            "ran": run is not None,
            "ok": run.ok if run is not None else None,
            "error": error if run is None else run.error,
            "judged": None if verdict is None or verdict.ok else verdict.why,
            "timed_out": bool(run and run.timed_out),
            "seconds": round(run.seconds, 3) if run is not None else 0.0,
            "output": run.text(800) if run is not None else "",
        })

    # -- cells ---------------------------------------------------------------------------------

    def _meta(self, step: Step) -> dict[str, Any]:
        return {"nbmagic": {"step": step.index + 1, "title": step.title, "attempts": step.attempts,
                            "model": self.model_label, "mode": self.mode, "status": step.status}}

    def deliver_step(self, step: Step, draft: CellDraft, run: ExecResult | None) -> None:
        cells = cells_module()
        explanation = draft.markdown
        if step.part is not None and not explanation:
            explanation = describe(step.part, list(self.frames))
        md = step_markdown(step.index, step.title, explanation, step.status, step.attempts, step.error,
                           timed_out=run is not None and run.timed_out)
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
            self.deliver(cell, step.index)
        emit(self.events, StepFinished(step.index, step.status in ("ok", "dry-run"), step.attempts))

    def deliver(self, cell: Any, index: int) -> None:
        self.cells.append(cell)
        if self.sink is not None:
            self.sink.deliver(cell)
        emit(self.events, CellAccepted(cell, index))

__all__ = ["SAVED_NAME", "Run", "is_local"]
