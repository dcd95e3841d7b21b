"""One round of ``%%agent``: the agent's hooks for the deliberation loop.

The loop itself is :func:`nbmagic.mas.deliberation.deliberate`, shared with RecursiveMAS's
tool-caller. For one step (one part of the request) the agent supplies:

* ``ask``      the tool-caller: a chat call for one code block (grammar-forced on GGUF), sampled
               at :data:`RETRY_TEMPERATURE` when the model just repeated a cell that failed;
* ``prepare``  the reply as a cell: parsed (malformed -> a follow-up), a copy of an earlier
               step's cell or a cell with no statement -> a follow-up, certain repairs (imports,
               invented paths), then ``--dry-run`` and ``--confirm`` (approve, edit, skip);
* ``run``      the user's kernel, with capture, limits and the user's variables protected;
* ``judge``    the rules reflector (:mod:`.reflector`): accepted, or a refinement that says
               what is wrong (a judged output, or the error with a hint); a missing package
               installed for the cell -> the same cell again;
* ``exchange`` :func:`.exchange.exchange`: the step's base prompt, the last reply, the refinement
               (fitted to the window; earlier failed replies are not kept).

Whatever ends the round, :class:`CellRound` holds the last draft and the last kernel result,
so :func:`give_up` can keep a cell that ran though it was never accepted.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

from nbmagic.agent.codegen import (
    CellDraft,
    add_missing_imports,
    has_statement,
    parse_cell,
    same_code,
)
from nbmagic.agent.exchange import exchange
from nbmagic.agent.executor import ExecResult
from nbmagic.agent.guard import missing_package, name_hint
from nbmagic.agent.markdown import clean_explanation
from nbmagic.agent.prompts import (
    empty_prompt,
    fix_prompt,
    judged_prompt,
    malformed_prompt,
    repeat_prompt,
)
from nbmagic.agent.reflector import (
    Verdict,
    drop_prompt_comments,
    error_hint,
    judge,
    reuse_loaded_frames,
)
from nbmagic.agent.result import Step, done_entry, observed_entry
from nbmagic.errors import MalformedOutputError
from nbmagic.events import (
    AgentFinished,
    AgentStarted,
    CellRun,
    Notice,
    RoundFinished,
    StepFinished,
    TextDelta,
    emit,
)
from nbmagic.mas.deliberation import (
    Accept,
    Done,
    FollowUp,
    Judgement,
    Messages,
    Move,
    Refine,
    Rerun,
    Run,
)

if TYPE_CHECKING:
    from nbmagic.agent.loop import Run as AgentRun
    from nbmagic.llm.base import ChatModel

__all__ = ["REFLECTOR", "RETRY_TEMPERATURE", "TOOL_CALLER", "CellRound", "give_up"]

#: a model that answers a fix request with the very cell that failed is asked again at this temperature
RETRY_TEMPERATURE = 0.7
TOOL_CALLER, REFLECTOR = "tool_caller", "reflector"


class CellRound:
    """The agent's :class:`~nbmagic.mas.deliberation.ToolCaller` for one step of a run."""

    def __init__(self, r: AgentRun, model: ChatModel, step: Step, rnd: int, n_rounds: int,
                 base: Messages) -> None:
        self.r, self.model, self.step, self.rnd, self.n_rounds = r, model, step, rnd, n_rounds
        self.base = base
        self.prompt_text = base[-1]["content"]
        self.max_attempts = 1 if r.onecall else 1 + r.agent.max_fixes
        self.draft: CellDraft | None = None  # the last cell the model wrote (kept by give_up)
        self.last_run: ExecResult | None = None
        self.explanation = ""  # the first reply's prose describes the step; a fix reply's only the fix
        self.answers_step = True  # the last reply answered the step's own prompt (not a refinement)
        self.tried: set[str] = set()
        self.hot = False  # the model repeated a failed cell: sample the next answer instead

    # -- the tool-caller -------------------------------------------------------------------------

    def ask(self, messages: Messages, attempt: int) -> str:
        """The tool-caller's turn: one reply with one code block (grammar-forced where the model allows)."""
        r = self.r
        self.step.attempts = attempt  # counted before the call: a run stopped during it reports the attempt
        on_token = None
        if r.events is not None:
            handler = r.events

            def on_token(text: str) -> None:
                emit(handler, TextDelta(TOOL_CALLER, text))

        self.answers_step = len(messages) == len(self.base)  # a fix reply's prose echoes the fix prompt
        emit(r.events, AgentStarted(TOOL_CALLER, TOOL_CALLER, r.exchange, self.rnd))
        t0 = time.perf_counter()
        before = r.spent
        # the closing fence ends the answer: a small model would otherwise ramble to max_tokens
        # (the opening fence is "```python", so it does not match)
        text = r.chat(self.model, messages, TOOL_CALLER, max_tokens=r.budget.reply_room(messages),
                      on_token=on_token, stop=["\n```\n"], temperature=RETRY_TEMPERATURE if self.hot else None,
                      **r.forced)
        emit(r.events, AgentFinished(TOOL_CALLER, r.spent - before, time.perf_counter() - t0, 0, self.rnd))
        if r.forced and text.count("```") == 1:
            text += "\n```"  # the grammar's closing fence is cut by the stop string
        return text

    def prepare(self, reply: str, attempt: int, rerun: CellDraft | None) -> Move[CellDraft]:
        """The reply as a cell to run, or a follow-up that costs the attempt, or the end of the round."""
        r, step = self.r, self.step
        step.attempts = attempt
        if rerun is not None:
            draft = rerun  # after an install: the same code again, no new reply
        else:
            try:
                draft = parse_cell(reply)
            except MalformedOutputError as exc:
                r.record_attempt(step, None, None, error=exc.message)
                return FollowUp(malformed_prompt())
            if self.answers_step:
                self.explanation = self.explanation or clean_explanation(draft.markdown, self.prompt_text)
            draft = CellDraft(self.explanation, draft.code)
        self.hot = draft.code in self.tried
        self.tried.add(draft.code)
        repeat = next((s for s in r.steps[: step.index] if s.cells and s.status == "ok"
                       and same_code(s.cells[-1].source, draft.code)), None)
        if not r.onecall and repeat is None:
            draft = repair(r, step, draft)
        self.draft = draft
        if repeat is not None:  # a copy of an earlier cell does nothing new
            why = f"the cell repeats step {repeat.index + 1}"
            r.record_attempt(step, draft, None, error=why)
            emit(r.events, CellRun(step.index, step.attempts, draft.code, False, why, 0.0))
            return FollowUp(repeat_prompt(repeat.index + 1, step.title))
        if not has_statement(draft.code):
            r.record_attempt(step, draft, None, error="the cell has no executable statement")
            emit(r.events, CellRun(step.index, step.attempts, draft.code, False,
                                   "the cell has no executable statement", 0.0))
            return FollowUp(empty_prompt(draft.code))
        a = r.agent
        if a.dry_run:
            r.record_attempt(step, draft, None)
            step.status = "dry-run"
            r.deliver_step(step, draft, None)
            return Done("dry-run")
        approved = True if a.confirm is None else a.confirm(draft.code)
        if isinstance(approved, str) and approved.strip():  # edited in review: runs, and lands, as edited
            draft = self.draft = CellDraft(draft.markdown, approved)
        elif not approved:
            step.status = "skipped"
            r.record_attempt(step, draft, None, error="not approved")
            emit(r.events, Notice(f"Step {step.index + 1} skipped: the cell was not approved."))
            emit(r.events, StepFinished(step.index, False, step.attempts))
            emit(r.events, RoundFinished(self.rnd, self.n_rounds))
            return Done("skipped")
        return Run(draft)

    # -- the tool: the user's kernel ---------------------------------------------------------------

    def run(self, draft: CellDraft) -> ExecResult:
        r, step = self.r, self.step
        r.user.warn_rebinding(step.index, draft.code)
        result = self.last_run = r.files.run(r.executor, draft.code, r.agent.cell_timeout)
        if r.first_cell is None:
            r.first_cell = time.perf_counter() - r.t0
        r.user.protect(step.index)
        short = None if result.ok else f"{result.ename}: {result.evalue}"
        emit(r.events, CellRun(step.index, step.attempts, draft.code, result.ok, short, result.seconds))
        return result

    # -- the reflector -----------------------------------------------------------------------------

    def judge(self, draft: CellDraft, result: ExecResult, attempt: int) -> Judgement:
        """Accepted, or the refinement: what the output lacks, or the error with a precise hint."""
        r, step, a = self.r, self.step, self.r.agent
        verdict = reflect(r, step, result, self.rnd, draft.code)
        r.record_attempt(step, draft, result, verdict=verdict)
        if result.ok and verdict.ok:
            step.verdict = ""  # an earlier attempt's finding no longer holds
            return Accept()
        restore_frames(r, step)
        if result.ok:  # it ran, but does not answer: the reflector's refinement
            step.verdict = verdict.why
            return Refine(judged_prompt(draft.code, result.text(1200), verdict.fix))
        if result.timed_out:
            emit(r.events, Notice(f"Step {step.index + 1}, attempt {step.attempts}: the cell ran longer "
                                  f"than {a.cell_timeout:g} s and was interrupted.", level="warning"))
        hint = ""
        if result.ename == "ModuleNotFoundError":
            installed, hint = missing_package(r, step, result)
            if installed:
                return Rerun()
        elif result.ename == "NameError":
            hint = name_hint(r.ns, r.hidden, result.evalue or "")
        else:
            hint = error_hint(result, draft.code, r.frames, r.ns)
        return Refine(fix_prompt(draft.code, result.error or "", timed_out=result.timed_out,
                                 timeout=a.cell_timeout or 0, hint=hint))

    # -- the refinement back to the tool-caller ----------------------------------------------------

    def exchange(self, messages: Messages, reply: str, refinement: str) -> Messages:
        """Always from the step's base prompt: only the last reply and its refinement are kept."""
        return exchange(self.base, reply, refinement, mode=self.r.exchange, fit=self._fit)

    def _fit(self, base: Messages, reply: str, followup: str) -> Messages:
        """A refinement after a rejected attempt, fitted: the failed reply and the error shrink first."""
        parts = {"base": base[-1]["content"], "reply": reply, "followup": followup}

        def build(p: dict[str, str]) -> Messages:
            return [*base[:-1], {"role": "user", "content": p["base"]},
                    {"role": "assistant", "content": p["reply"]}, {"role": "user", "content": p["followup"]}]

        messages, _ = self.r.budget.fit(build, parts, ("reply", "base", "followup"))
        return messages


def reflect(r: AgentRun, step: Step, run: ExecResult, rnd: int, code: str = "") -> Verdict:
    """The reflector's turn: judge what the kernel showed against the step's part."""
    t0 = time.perf_counter()
    emit(r.events, AgentStarted(REFLECTOR, REFLECTOR, "text", rnd))
    if not run.ok or step.part is None or r.onecall:
        verdict = Verdict(run.ok, "" if run.ok else f"{run.ename}: {run.evalue}")
    else:
        made = {n: r.ns[n] for n in r.user.changed_names() if n not in r.frames}
        frames = {n: r.ns[n] for n in r.frames if n in r.ns}
        verdict = judge(step.part, run, answer_line=r.read.answer_line, answering=step.answering,
                        code=code, made=made, frames=frames)
    emit(r.events, AgentFinished(REFLECTOR, 0, time.perf_counter() - t0, 0, rnd))
    if not verdict.ok and run.ok:
        r.trajectory.append({"type": "reflect", "step": step.index + 1, "attempt": step.attempts,
                             "why": verdict.why})
    return verdict


def repair(r: AgentRun, step: Step, draft: CellDraft) -> CellDraft:
    """Visible, certain repairs before a cell runs: missing standard imports, invented paths."""
    code, added = add_missing_imports(draft.code, set(r.ns))
    if added:
        emit(r.events, Notice(f"Step {step.index + 1}: added the missing import(s) "
                              f"{'; '.join(added)} at the top of the cell."))
    code, swapped = reuse_loaded_frames(code, r.frames, lambda p: (r.base / p).exists())
    code = drop_prompt_comments(code) or code
    if swapped:
        emit(r.events, Notice(f"Step {step.index + 1}: the cell read {', '.join(map(repr, swapped))}: the "
                              "table is loaded already (or the file does not exist); it uses the loaded "
                              "DataFrame instead."))
    return CellDraft(draft.markdown, code) if code != draft.code else draft


def restore_frames(r: AgentRun, step: Step) -> None:
    """Put back a loaded table a rejected attempt changed in shape (columns, index, rows)."""
    for name, orig in getattr(r, "frame_copies", {}).items():
        cur = r.ns.get(name)
        same = (cur is not None and list(getattr(cur, "columns", [])) == list(orig.columns)
                and getattr(getattr(cur, "index", None), "name", None) == orig.index.name and len(cur) == len(orig))
        if not same:
            r.ns[name] = orig.copy()
            emit(r.events, Notice(f"Step {step.index + 1}: the attempt changed `{name}` in place; "
                                  "it was put back as loaded."))


def keep(r: AgentRun, step: Step, draft: CellDraft, last_run: ExecResult) -> None:
    """A cell that ran goes into the notebook, and its output into what later steps and the answer see."""
    r.deliver_step(step, draft, last_run)
    r.done.append(done_entry(step, draft, last_run))
    r.observed.append(observed_entry(step, last_run))


def give_up(r: AgentRun, step: Step, draft: CellDraft | None, last_run: ExecResult | None) -> None:
    """The attempts are spent: keep a cell that ran but did not answer, report one that failed."""
    if last_run is not None and last_run.ok and draft is not None:
        # it ran: the notebook keeps it (it works), the summary says what it lacks
        step.status = "ok"
        step.error = None
        keep(r, step, draft, last_run)
        emit(r.events, Notice(f"Step {step.index + 1} kept although {step.verdict}.", level="warning"))
        return
    step.status = "failed"
    if last_run is not None and not last_run.ok:
        step.error = f"{last_run.ename}: {last_run.evalue}"
    elif draft is not None:  # it never ran: why the last attempt did not (a repeat, no statement)
        step.error = next((t["error"] for t in reversed(r.trajectory) if t.get("type") == "attempt"
                           and t["step"] == step.index + 1 and t["error"]), "the cell did not run")
    else:
        step.error = "the model never answered with a code block"
    if draft is not None:
        r.deliver_step(step, draft, last_run)
        r.done.append(done_entry(step, draft, last_run))
        r.observed.append(f"Step {step.index + 1} ({step.title}) FAILED: {step.error}")
    else:
        emit(r.events, StepFinished(step.index, False, step.attempts))
