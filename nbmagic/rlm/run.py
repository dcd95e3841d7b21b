"""One RLM invocation: :class:`RLMRun` (the loop's turns, the final step, the run's ending).

Made by :meth:`RLM.start <nbmagic.rlm.agent.RLM.start>` for a question, by a run for a child
``rlm_query`` and for a sub-agent on a fork. It reads its configuration from its owner (a
:class:`~nbmagic.rlm.interfaces.RunOwner`: the RLM) and ends through the shared
:class:`~nbmagic.lifecycle.RunLifecycle`.
"""

from __future__ import annotations

import ast
import re
import threading
import time
from collections.abc import Mapping, Sequence
from typing import Any

from nbmagic.errors import BudgetExceededError, ConfigError, MalformedOutputError
from nbmagic.events import EventHandler, Finished, ModelCall, Notice, RlmIteration, RunStarted, emit
from nbmagic.execution.file_ledger import FileLedger
from nbmagic.lifecycle import RunLifecycle
from nbmagic.llm.base import ToolsUnsupportedError, Usage
from nbmagic.rlm import compaction, direct, first_turn, native, prompts, provenance
from nbmagic.rlm.context import resolve_contexts, summarize_all
from nbmagic.rlm.execution import outer_streams, truncate
from nbmagic.rlm.interfaces import ReplSession, RunOwner
from nbmagic.rlm.pricing import price_for
from nbmagic.rlm.repl import Environment, make_environment
from nbmagic.rlm.result import NOT_COMPUTED, RLMResult
from nbmagic.rlm.schemas import build_typed
from nbmagic.rlm.settings import RLMSettings
from nbmagic.rlm.subagents import ForkSession, SubAgents, list_variables
from nbmagic.rlm.tools import SpendingBudget, Toolbox, check_schema, describe_tool
from nbmagic.rlm.trajectory import TrajectoryWriter
from nbmagic.secrets import redact

_FENCE = re.compile(r"```[ \t]*([A-Za-z0-9_+-]*)[^\n]*\n(.*?)(?:```|\Z)", re.S)
_PY_TAGS = {"python", "python3", "py", "repl", "ipython"}


def extract_code(text: str) -> str:
    """The code of a reply: its ```python blocks, else bare ``` blocks that parse as Python."""
    blocks = [(tag.lower(), body) for tag, body in _FENCE.findall(text or "")]
    code = [b for tag, b in blocks if tag in _PY_TAGS]
    if not code:
        code = [b for tag, b in blocks if not tag and b.strip() and _parses(b)]
    return "\n\n".join(b.strip("\n") for b in code if b.strip())


def _parses(code: str) -> bool:
    try:
        ast.parse(code)
        return True
    except SyntaxError:
        return False


def _strip_fences(text: str) -> str:
    text = text.strip()
    m = re.fullmatch(r"```[A-Za-z0-9_+-]*\s*\n?(.*?)\n?```", text, re.S)
    return m.group(1).strip() if m else text


class RLMRun:
    """One invocation: its conversation, environment, trajectory, counters and result.

    Made by :meth:`RLM.start` (or for a child ``rlm_query``). ``step()`` takes one turn
    (or, once the turns are spent, the final step) and returns its trajectory record;
    ``run()`` takes the turns left and returns the :class:`RLMResult`. A failure ends the
    run: the error carries the partial result and later steps are refused.
    """

    def __init__(
        self,
        rlm: RunOwner,
        question: str,
        contexts: dict[str, Any],
        *,
        schema: Mapping[str, Any] | None,
        typed: Any,
        export: bool,
        budget: SpendingBudget,
        depth: int,
        session: ReplSession | None = None,
    ) -> None:
        self.rlm = rlm
        self.question = question
        self.contexts = contexts
        self.schema = schema
        self.typed = typed
        self.export = export
        self.budget = budget
        self.depth = depth
        self.top = depth == 0
        self.session = session  # a top run's session, or a sub-agent's fork (nbmagic.rlm.subagents)
        self.t0 = time.monotonic()
        self.files = FileLedger()  # the working folder's files, from each turn's record
        # counters and log
        self.trajectory: list[dict[str, Any]] = []
        self.iterations = 0
        self.failing = 0  # turns in a row that failed (an error, or no code)
        self.worked = False  # some code ran without an error
        self.final_step = False
        self.compactions = 0
        self.last_prompt_tokens = 0
        self.result: RLMResult | None = None
        self.ended = False  # finished, or stopped by an error
        self._opened = False
        # parts
        self.root = rlm.model
        self.sub = rlm.sub_model if rlm.settings.recursive else self.root
        self.toolbox = Toolbox(
            sub_model=self.sub,
            budget=budget,
            settings=rlm.settings,
            depth=depth,
            schema=schema,
            spawn_child=lambda p, c: self._child_answer(p, c),
            on_event=rlm.on_event,
            tools=rlm.tools,
            forker=SubAgents(self) if rlm.settings.max_subagent_depth else None,
        )
        self.toolbox.question = question
        kind: str | Environment = rlm.environment
        if not self.top and isinstance(kind, Environment):
            kind = kind.name
        self.env_name = kind if isinstance(kind, str) else kind.name
        if self.session is not None:
            self.env = self.session.environment_for(self.env_name)
        else:
            self.env = None
        if self.env is None:
            self.env = make_environment(
                kind,
                rlm.namespace if self.top else None,
                **({"memory_limit_mb": rlm.settings.memory_limit_mb} if kind == "subprocess" else {}),
            )
        self.writer = TrajectoryWriter(rlm.settings.trajectory_path) if (rlm.settings.trajectory_path and self.top) else None
        self.lifecycle = RunLifecycle("rlm", rlm.on_event, lambda: self._result(False, self.toolbox.answer),
                                      interrupted=self._interrupted, report=self.top, ended=self._ended)
        self.messages: list[dict[str, Any]] = []
        # the REPL as a function tool: None = offered, not yet tried; True = works; False = fenced code
        self.native: bool | None = None if (rlm.settings.native_tools and native.can_offer(self.root)) else False
        self.choice = direct.Choice("repl", "a child RLM recurses", "repl")  # the top run chooses in _open
        self.direct_text: str | None = None
        # the first turn: written by the root, or a helper call it only picks (nbmagic.rlm.first_turn)
        self.first = first_turn.FirstTurn("free", "not planned yet", rlm.settings.first_turn)
        self.first_value: Any = None  # that call's value: the answer if the root never submits

    # -- public --

    @property
    def done(self) -> bool:
        return self.ended

    @property
    def settings(self) -> RLMSettings:
        return self.rlm.settings

    def _child_answer(self, prompt: str, context: Any) -> Any:
        """``rlm_query``: a child run (depth + 1) sharing this run's budget; its answer."""
        child = RLMRun(self.rlm, prompt, resolve_contexts(context, None), schema=None, typed=None, export=False,
                       budget=self.budget, depth=self.depth + 1)
        return child.run().answer

    def fork_child(self, question: str, env: Environment, budget: SpendingBudget, contexts: dict[str, Any]) -> RLMRun:
        """A sub-agent's run (depth + 1) in a forked REPL (see :mod:`nbmagic.rlm.subagents`)."""
        return RLMRun(self.rlm, question, {}, schema=None, typed=None, export=False, budget=budget,
                      depth=self.depth + 1, session=ForkSession(env, contexts))

    def step(self) -> dict[str, Any] | None:
        """One turn (or the final step); its trajectory record, or ``None`` once the run is over."""
        if self.ended:
            return None
        with self.lifecycle.guard():
            if not self._opened:
                self._open()
            if self.choice.strategy == "direct" and self.direct_text is not None:
                return direct.read(self, self.direct_text)
            if self.iterations < self.rlm.settings.max_iterations:
                return self._turn()
            return self._final_step()

    def run(self) -> RLMResult:
        """Take the turns left and return the result (raises with ``.partial`` on failure)."""
        while not self.ended:
            self.step()
        if self.result is None:
            raise ConfigError("This RLM run stopped with an error; its partial result was on that error.")
        return self.result

    # -- the run's lifecycle --

    def _ended(self, partial: Any, error: str | None) -> None:
        """The run stopped early (see :class:`~nbmagic.lifecycle.RunLifecycle`): log why, release the REPL."""
        if error is not None and isinstance(partial, RLMResult):
            self._write_result(partial, error=error)
        self._end()

    def _interrupted(self) -> str:
        return f"RLM run interrupted after {self.iterations} iterations; the trajectory so far is on .partial."

    def _end(self) -> None:
        self.ended = True
        if self.toolbox.forker is not None:  # forks not adopted go with the run
            self.toolbox.forker.close()
        if self.session is None and self.env is not None:
            self.env.close()

    def _open(self) -> None:
        rlm = self.rlm
        self._opened = True
        if rlm.settings.max_cost_usd is not None:  # a budget that cannot be measured is no budget
            unpriced = sorted({m.name for m in (self.root, self.sub) if price_for(m.name, rlm.prices) is None})
            if unpriced:
                raise ConfigError(
                    f"max_cost_usd needs a price for {', '.join(unpriced)}: pass prices={{name: (input, output)}} "
                    "in USD per million tokens, or nbmagic.rlm.pricing.register_price(...)."
                )
        earlier: list[tuple[str, str]] = []
        contexts = self.contexts
        if self.session is not None:
            earlier = self.session.earlier()
            contexts = self.session.bind(self.env, self.contexts, self.toolbox.helpers())
        else:
            self.env.start(self.contexts, self.toolbox.helpers())
        self.bound = contexts  # every context the REPL holds (forks show them to sub-agents)
        summary = summarize_all(contexts)
        self.messages = [
            {"role": "system", "content": self._system_prompt()},
            {"role": "user", "content": prompts.first_message(
                self.question, summary, earlier, hint=rlm.settings.recursive and "context" in contexts)},
        ]
        if self.top:
            emit(rlm.on_event, RunStarted(engine="rlm", title=self.question[:120], model=self.root.name))
            self.choice, self.direct_text = direct.choose(self)
        self.first = first_turn.plan(self)
        if self.writer is not None:
            self.writer.metadata(
                question=self.question,
                model=self.root.name,
                sub_model=self.sub.name if rlm.settings.recursive else None,
                environment=self.env_name,
                contexts=summary,
                tools=sorted(rlm.tools),
                config={
                    "max_iterations": rlm.settings.max_iterations,
                    "max_llm_calls": rlm.settings.max_llm_calls,
                    "max_tokens": rlm.settings.max_tokens,
                    "max_cost_usd": rlm.settings.max_cost_usd,
                    "max_errors": rlm.settings.max_errors,
                    "timeout": rlm.settings.timeout,
                    "max_output_chars": rlm.settings.max_output_chars,
                    "max_depth": rlm.settings.max_depth,
                    "turn_timeout": rlm.settings.turn_timeout,
                    "recursive": rlm.settings.recursive,
                },
                schema=dict(self.schema) if self.schema else None,
                strategy=self.choice.as_dict(),
                first_turn=self.first.as_dict(),
                session_query=self.session.runs + 1 if self.session is not None else None,
            )
        if self.top:
            direct.announce(self, self.choice)
            first_turn.announce(self, self.first)

    def _system_prompt(self) -> str:
        rlm = self.rlm
        return prompts.system_prompt(
            max_iterations=rlm.settings.max_iterations,
            max_llm_calls=rlm.settings.max_llm_calls,
            max_output_chars=rlm.settings.max_output_chars,
            max_concurrency=rlm.settings.max_concurrency,
            depth=self.depth,
            max_depth=rlm.settings.max_depth,
            schema=self.schema,
            turn_timeout=rlm.settings.turn_timeout,
            recursive=rlm.settings.recursive,
            tools=[describe_tool(n, f) for n, f in rlm.tools.items()],
            native=self.native is not False,
            subagents=(rlm.settings.max_subagent_depth - self.depth, rlm.settings.max_subagents, self.env.parallel_forks)
            if rlm.settings.max_subagent_depth else None,
        )

    def _conclude(self, answer: Any, notes: Sequence[str] = ()) -> RLMResult:
        """The run's end: typed answer, flags, export, events; the REPL closes unless a session keeps it."""
        answer = build_typed(answer, self.typed) if self.typed is not None else answer
        final = self._result(True, answer)
        final.notes.extend(notes)
        typed = None
        if final.computed and self.choice.strategy == "repl":  # an answer typed in, seen nowhere
            typed = provenance.made_up(answer, self.trajectory, self.bound, self.question, final_step=self.final_step)
            final.computed = typed is None
        if not final.computed:
            final.notes.append(typed or NOT_COMPUTED)
            if self.top:
                emit(self.rlm.on_event, Notice(message=f"RLM answer {typed or NOT_COMPUTED}.", level="warning"))
        if self.top and self.export:
            exported, notes = export_into(self.rlm.namespace, self.env)
            final.exported, final.notes = exported, final.notes + notes
        if self.session is not None:
            self.session.record(self.question, final)
        self._write_result(final)
        self.result = final
        self._end()
        if self.top:
            emit(self.rlm.on_event, Finished(engine="rlm", result=final, seconds=final.seconds))
        return final

    def _write_result(self, result: RLMResult, error: str | None = None) -> None:
        if self.writer is None:
            return
        self.writer.result(
            answer=result.answer, complete=result.complete, computed=result.computed, final_step=result.final_step,
            iterations=result.iterations, llm_calls=result.llm_calls, seconds=round(result.seconds, 3),
            usage={k: u.as_dict() for k, u in result.usage.items()}, cost_usd=result.cost_usd, error=error,
        )

    def _result(self, complete: bool, answer: Any = None) -> RLMResult:
        return RLMResult(
            answer=answer,
            trajectory=self.trajectory,
            usage=self.budget.usage_copy(),
            iterations=self.iterations,
            llm_calls=self.budget.calls,
            seconds=time.monotonic() - self.t0,
            complete=complete,
            final_step=self.final_step,
            computed=self.toolbox.submitted or self.worked,
            cost_usd=self.budget.cost(),
            question=self.question,
            strategy={**self.choice.as_dict(), **({"first_turn": self.first.as_dict()} if self.choice.strategy == "repl" else {})},
            files=self.files.changes(),
        )

    def _log(self, record: dict[str, Any]) -> dict[str, Any]:
        for key in ("response", "code"):  # the output is redacted where it is made
            record[key] = redact(record[key])
        self.trajectory.append(record)
        if self.writer is not None:
            self.writer.iteration(record)
        return record

    # -- turns --

    def _turn(self) -> dict[str, Any]:
        rlm, toolbox = self.rlm, self.toolbox
        self._check_budget()
        self._maybe_compact()
        self.messages = compaction.fit_to_window(self.root, self.messages, self.window(), self.rlm.settings.root_max_tokens)
        m0 = time.monotonic()
        planned = first_turn.choose(self, self.first) if self.first.mode == "helper" and not self.iterations else None
        reply, calls = (planned.reply, []) if planned is not None else self._ask()
        model_seconds = time.monotonic() - m0
        code = planned.code if planned is not None else (
            "\n\n".join(c for _, c in calls if c.strip()) or extract_code(reply))
        self.iterations = i = self.iterations + 1
        if not code:
            feedback = prompts.EMPTY_REPLY if not reply.strip() else prompts.NO_CODE
            self.messages += [
                {"role": "assistant", "content": reply or "(empty)"},
                {"role": "user", "content": feedback},
            ]
            record = self._log({"iteration": i, "depth": self.depth, "kind": "no_code", "response": reply,
                                "code": "", "output": feedback, "sub_calls": [],
                                "model_seconds": round(model_seconds, 4), "exec_seconds": 0.0,
                                "root_tokens": self.last_prompt_tokens, "submitted": False})
            emit(rlm.on_event, RlmIteration(i=i, code="", output=feedback, seconds=model_seconds, depth=self.depth))
            self._count_failure(failed=True, why="no code in the reply")
            return record
        turn_limit = rlm.settings.turn_timeout
        left = self.budget.time_left()
        if left is not None:
            turn_limit = max(0.5, min(turn_limit or left, left))
        out = self.env.execute(code, timeout=turn_limit, max_output_chars=rlm.settings.max_output_chars)
        self.files.add(out.files)
        output = out.output  # already capped by the environment (head + marker + tail)
        if len(output) > rlm.settings.max_output_chars + 100:  # an environment that did not cap
            output = truncate(output, rlm.settings.max_output_chars)
        # code can print os.environ: no key reaches the model, the trajectory or the renderer
        output = redact(output)
        extra = first_turn.took(self, self.first, planned, out.error, out.notes) if planned is not None else {}
        record = self._log({"iteration": i, "depth": self.depth, "kind": "code", "response": reply, "code": code,
                            "output": output, "error": out.error, "timed_out": out.timed_out,
                            "restarted": out.restarted, "notes": out.notes, "sub_calls": toolbox.take_records(),
                            "model_seconds": round(model_seconds, 4), "exec_seconds": round(out.seconds, 4),
                            "root_tokens": self.last_prompt_tokens, "calls_left": self.budget.calls_left,
                            "protocol": "tool" if calls else "fenced", "submitted": toolbox.submitted, **extra})
        emit(rlm.on_event, RlmIteration(i=i, code=record["code"], output=output,
                                        seconds=model_seconds + out.seconds, depth=self.depth))
        if out.error is None:
            self.worked = True
        if toolbox.submitted:
            self._conclude(toolbox.answer)
            return record
        assistant: dict[str, Any] = {"role": "assistant", "content": reply}
        feedback: dict[str, Any] = {"role": "user", "content": prompts.turn_feedback(
            i, rlm.settings.max_iterations, output, [*out.notes, *([first_turn.NEXT_STEP] if extra else [])],
            self.budget.calls_left if rlm.settings.recursive else None)}
        if calls:  # answered as the tool's result (see nbmagic.rlm.native)
            assistant["_calls"], feedback["_results"] = calls, [cid for cid, _ in calls]
        self.messages += [assistant, feedback]
        self._count_failure(failed=out.error is not None, why=f"the code raised {out.error}")
        return record

    def _count_failure(self, *, failed: bool, why: str) -> None:
        """``max_errors``: stop after that many failing turns in a row."""
        self.failing = self.failing + 1 if failed else 0
        limit = self.rlm.settings.max_errors
        if limit is not None and self.failing >= limit:
            raise BudgetExceededError(
                f"The RLM stopped after {self.failing} failing turns in a row (max_errors={limit}; last: {why}). "
                "The trajectory so far is on .partial; try a stronger model or a narrower question.",
                partial=self._result(False, self.toolbox.answer),
            )

    def _final_step(self) -> dict[str, Any]:
        """Out of turns: ask for the answer from the conversation so far (schema honoured), or, after a
        constrained first turn whose helper computed a value, take that value (nbmagic.rlm.first_turn)."""
        if self.first.has_value and self.schema is None:
            return first_turn.conclude_with_helper(self)
        ask = prompts.final_request(self.rlm.settings.max_iterations, self.schema)
        messages = [*self.messages, {"role": "user", "content": ask}]
        problems: list[str] = []
        answer: Any = None
        record: dict[str, Any] = {}
        for attempt in (1, 2):
            self._check_budget()
            m0 = time.monotonic()
            reply = self._root_call(messages)
            self.final_step = True
            answer = _strip_fences(reply)
            if self.schema is not None:
                answer, problems = check_schema(answer, self.schema)
            record = self._log({"iteration": self.rlm.settings.max_iterations + attempt, "depth": self.depth,
                                "kind": "final", "response": reply, "code": "", "output": "", "sub_calls": [],
                                "problems": problems, "model_seconds": round(time.monotonic() - m0, 4),
                                "exec_seconds": 0.0, "root_tokens": self.last_prompt_tokens, "submitted": False})
            if not problems:
                self._conclude(answer)
                return record
            messages += [
                {"role": "assistant", "content": reply},
                {"role": "user", "content": "That does not match the schema:\n" + "\n".join(problems)
                 + "\nReply with only a corrected JSON value."},
            ]
        raise MalformedOutputError(
            "The RLM's final answer did not match the schema after a retry: " + "; ".join(problems),
            partial=self._result(False, answer),
        )

    # -- pieces --

    def _check_budget(self) -> None:
        budget = self.budget
        if budget.expired():
            raise BudgetExceededError(
                f"The RLM ran out of time ({budget.timeout:g} s). The trajectory so far is on .partial; "
                "raise timeout= or ask a narrower question.",
                partial=self._result(False, self.toolbox.answer),
            )
        if budget.tokens_exhausted():
            raise BudgetExceededError(
                f"The RLM spent its token budget ({budget.tokens:,} of {budget.max_tokens:,} tokens). "
                "The trajectory so far is on .partial; raise max_tokens= or ask a narrower question.",
                partial=self._result(False, self.toolbox.answer),
            )
        if budget.cost_exhausted():
            raise BudgetExceededError(
                f"The RLM spent its cost budget (${budget.cost():.4f} of ${budget.max_cost_usd:g}). "
                "The trajectory so far is on .partial; raise max_cost_usd= or ask a narrower question.",
                partial=self._result(False, self.toolbox.answer),
            )

    def _ask(self) -> tuple[str, list[tuple[str, str]]]:
        """One turn's root call: ``(reply text, [(call id, code)])``; the tool first where offered."""
        if self.native is not False:
            try:
                r = native.chat(self.root, self.messages, temperature=self.rlm.settings.temperature,
                                max_tokens=self.rlm.settings.root_max_tokens)
            except ToolsUnsupportedError as exc:  # no function calling here: fenced code from now on
                why = redact(exc.message.splitlines()[0][:200] if exc.message else type(exc).__name__)
                first = self.native is None
                self.native = False
                self.messages[0]["content"] = self._system_prompt()  # no tool mentioned any more
                if first:
                    emit(self.rlm.on_event, Notice(
                        message=f"{self.root.name}: no native tool calls ({why}); using ```python blocks."))
            else:
                self.native = True
                self._account(r.usage, r.seconds)
                return r.text, r.calls
        return self._root_call(self.messages), []

    def _account(self, usage: Usage, seconds: float) -> None:
        self.budget.record(self.root.name, usage)
        self.last_prompt_tokens = usage.prompt_tokens + usage.completion_tokens
        emit(
            self.rlm.on_event,
            ModelCall(
                model=self.root.name,
                prompt_tokens=usage.prompt_tokens,
                completion_tokens=usage.completion_tokens,
                seconds=seconds,
                agent=f"root@{self.depth}",
            ),
        )

    def _root_call(self, messages: list[dict[str, Any]]) -> str:
        """A plain root call (fenced protocol, final step, compaction): calls rendered as code blocks."""
        messages = compaction.fit_to_window(self.root, messages, self.window(), self.rlm.settings.root_max_tokens)
        res = self.root.chat(native.as_text(messages), temperature=self.rlm.settings.temperature,
                             max_tokens=self.rlm.settings.root_max_tokens)
        self._account(res.usage, res.seconds)
        return res.text or ""

    # -- compaction (nbmagic.rlm.compaction) --

    def window(self) -> int | None:
        """The root model's context window in tokens: ``context_window=``, else what the model says."""
        return compaction.model_window(self.root, self.rlm.settings.context_window)

    def prompt_tokens(self) -> int:
        """What the next root prompt will cost (see :func:`compaction.next_prompt_tokens`)."""
        return compaction.next_prompt_tokens(self.root, self.messages, self.last_prompt_tokens)

    def _maybe_compact(self) -> None:
        window = self.window()
        if not window or len(self.messages) < compaction.MIN_MESSAGES:
            return
        done = compaction.compact(self.messages, used=self.prompt_tokens(), window=window,
                                  threshold=self.rlm.settings.compact_threshold, ask=self._root_call, variables=self._variables)
        if done is None:
            return
        self.last_prompt_tokens = 0  # that call read the whole history; the next prompt is the short one
        self.messages = done.messages
        self.compactions += 1
        self._log(done.record(self.iterations, self.depth))
        emit(self.rlm.on_event, Notice(message=done.notice))

    def _variables(self) -> str:
        """``name: type`` of what the REPL holds (the same probe for both environments)."""
        return list_variables(self.env, {*self.toolbox.helpers(), "input", "exit", "quit"})


def outside_turns(handler: EventHandler) -> EventHandler:
    """Run the renderer with the notebook's streams, even when called from inside a turn;
    one event at a time (parallel sub-agents report from several threads)."""
    lock = threading.RLock()

    def handle(event: Any) -> None:
        with lock, outer_streams():
            emit(handler, event)

    return handle


def export_into(namespace: dict[str, Any] | None, env: Environment) -> tuple[list[str], list[str]]:
    """``export=True``: the REPL's new variables into ``namespace``, never over an existing name."""
    assert namespace is not None
    exported, notes = [], []
    for name, value in env.export().items():
        if name in namespace:
            notes.append(f"not exported: {name!r} already exists in your namespace")
            continue
        namespace[name] = value
        exported.append(name)
    return exported, notes
