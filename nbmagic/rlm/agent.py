"""The RLM loop: summary in, code out, REPL output back, until ``submit``.

::

    rlm = RLM("openai:gpt-4o", sub_model="openai:gpt-4o-mini")
    result = rlm.query("Which customer complained most?", context=df)
    result.answer, result.trajectory, result.usage

The root model sees the question and a bounded summary of each context, never
the context. Each iteration it writes Python; the environment runs it; the
(truncated) output is the next message. The run ends when the code calls
``submit(answer)``; after ``max_iterations`` a final step asks for the answer
from the conversation so far.

Budgets: ``max_llm_calls`` and ``max_tokens`` and ``timeout`` are per
invocation and shared with child RLMs. Sub-calls over a budget return error
strings inside the REPL. When the token or time budget is spent at the root,
:class:`~nbmagic.errors.BudgetExceededError` is raised and its ``partial`` is
an :class:`RLMResult` with ``complete=False`` holding the trajectory so far
(and any answer already submitted).
"""

from __future__ import annotations

import ast
import re
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from nbmagic.errors import (
    BudgetExceededError,
    ConfigError,
    MalformedOutputError,
    NbmagicError,
    RunInterrupted,
)
from nbmagic.events import EventHandler, Failed, Finished, ModelCall, RlmIteration, RunStarted, emit
from nbmagic.llm.base import ChatModel, Usage
from nbmagic.rlm import prompts
from nbmagic.rlm.context import resolve_contexts, summarize_all
from nbmagic.rlm.execution import outer_streams, truncate
from nbmagic.rlm.repl import ENVIRONMENTS, Environment, make_environment
from nbmagic.rlm.tools import Budget, Toolbox, check_schema, validate_schema
from nbmagic.rlm.trajectory import TrajectoryWriter
from nbmagic.secrets import redact


@dataclass
class RLMResult:
    """What one query produced."""

    answer: Any
    trajectory: list[dict[str, Any]]
    usage: dict[str, Usage]
    iterations: int
    llm_calls: int
    seconds: float
    complete: bool = True  # False on a partial result carried by an error
    final_step: bool = False  # the answer came from the forced final step, not submit()
    exported: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def total_usage(self) -> Usage:
        total = Usage()
        for u in self.usage.values():
            total = total + u
        return total

    def __str__(self) -> str:
        return str(self.answer)

    def __repr__(self) -> str:  # the trajectory can be long: keep the repr one line
        answer = repr(self.answer)
        answer = answer if len(answer) <= 200 else answer[:200] + "…"
        flags = "" if self.complete else ", complete=False"
        flags += ", final_step=True" if self.final_step else ""
        return (
            f"RLMResult(answer={answer}, iterations={self.iterations}, llm_calls={self.llm_calls}, "
            f"tokens={self.total_usage.total_tokens}, seconds={self.seconds:.2f}{flags})"
        )


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


class RLM:
    """A Recursive Language Model over kernel data (see the module docstring)."""

    def __init__(
        self,
        model: ChatModel | str | None = None,
        *,
        sub_model: ChatModel | str | None = None,
        environment: str | Environment | None = None,
        namespace: dict[str, Any] | None = None,
        max_iterations: int | None = None,
        max_llm_calls: int | None = None,
        max_tokens: int | None = None,
        timeout: float | None = None,
        max_output_chars: int | None = None,
        max_depth: int = 1,
        trajectory_path: str | None = None,
        on_event: EventHandler | None = None,
        turn_timeout: float | None = 60.0,
        max_concurrency: int = 16,
        memory_limit_mb: int | None = 4096,
        temperature: float | None = None,
        sub_max_tokens: int | None = None,
    ) -> None:
        from nbmagic.config import settings

        self._model_spec = model
        self._sub_spec = sub_model if sub_model is not None else settings.sub_model
        self._model: ChatModel | None = model if isinstance(model, ChatModel) else None
        self._sub: ChatModel | None = sub_model if isinstance(sub_model, ChatModel) else None
        env = environment if environment is not None else settings.repl
        if isinstance(env, str) and env not in ENVIRONMENTS:
            raise ConfigError(f"Unknown RLM environment {env!r}; use one of: {', '.join(ENVIRONMENTS)}.")
        self.environment = env
        if namespace is not None and not isinstance(namespace, Mapping):
            raise ConfigError(f"namespace= must be a dict of variables (say globals()), got {type(namespace).__name__}.")
        self.namespace = namespace
        self.max_iterations = _positive("max_iterations", max_iterations, settings.max_iterations)
        self.max_llm_calls = _limit(
            "max_llm_calls", max_llm_calls if max_llm_calls is not None else settings.max_llm_calls, minimum=0
        )
        self.max_tokens = _limit("max_tokens", max_tokens)
        self.timeout = _limit("timeout", timeout, number=True)
        self.max_output_chars = _positive("max_output_chars", max_output_chars, settings.max_output_chars)
        self.max_depth = _limit("max_depth", 1 if max_depth is None else max_depth, minimum=0)
        self.trajectory_path = trajectory_path
        self.on_event: EventHandler | None = _outside_turns(on_event) if on_event is not None else None
        self.turn_timeout = _limit("turn_timeout", turn_timeout, number=True)
        self.max_concurrency = _positive("max_concurrency", max_concurrency, 16)
        self.memory_limit_mb = _limit("memory_limit_mb", memory_limit_mb, minimum=0)
        self.temperature = temperature
        self.sub_max_tokens = _limit("sub_max_tokens", sub_max_tokens)

    # -- models, loaded on first use --

    @property
    def model(self) -> ChatModel:
        if self._model is None:
            from nbmagic.llm.specs import load_model

            self._model = load_model(self._model_spec)  # type: ignore[arg-type]
        return self._model

    @property
    def sub_model(self) -> ChatModel:
        if self._sub is None:
            if self._sub_spec is None:
                self._sub = self.model
            else:
                from nbmagic.llm.specs import load_model

                self._sub = load_model(self._sub_spec)
        return self._sub

    # -- the public call --

    def query(
        self,
        question: str,
        context: Any = None,
        *,
        schema: Mapping[str, Any] | None = None,
        export: bool = False,
    ) -> RLMResult:
        """Answer ``question`` about ``context``; see the module docstring for budgets."""
        if not isinstance(question, str) or not question.strip():
            raise ConfigError("RLM.query needs a question (a non-empty string).")
        if schema is not None:
            if not isinstance(schema, Mapping):
                raise ConfigError("schema= must be a JSON schema given as a dict.")
            validate_schema(schema)
        if export and self.namespace is None:
            raise ConfigError("export=True needs a namespace to export into: RLM(namespace=...).")
        contexts = resolve_contexts(context, self.namespace)
        budget = Budget(max_llm_calls=self.max_llm_calls, max_tokens=self.max_tokens, timeout=self.timeout)
        return self._run(question, contexts, schema=schema, export=export, budget=budget, depth=0)

    # -- the loop --

    def _run(
        self,
        question: str,
        contexts: dict[str, Any],
        *,
        schema: Mapping[str, Any] | None,
        export: bool,
        budget: Budget,
        depth: int,
    ) -> RLMResult:
        t0 = time.monotonic()
        root = self.model
        sub = self.sub_model
        top = depth == 0
        trajectory: list[dict[str, Any]] = []
        toolbox = Toolbox(
            sub_model=sub,
            budget=budget,
            depth=depth,
            max_depth=self.max_depth,
            max_concurrency=self.max_concurrency,
            schema=schema,
            spawn_child=lambda p, c: self._child(p, c, budget, depth + 1),
            sub_max_tokens=self.sub_max_tokens,
            on_event=self.on_event,
        )
        env_kind: str | Environment = self.environment
        if not top and isinstance(env_kind, Environment):
            env_kind = env_kind.name
        env = make_environment(
            env_kind,
            self.namespace if top else None,
            **({"memory_limit_mb": self.memory_limit_mb} if env_kind == "subprocess" else {}),
        )
        summary = summarize_all(contexts)
        messages: list[dict[str, str]] = [
            {
                "role": "system",
                "content": prompts.system_prompt(
                    max_iterations=self.max_iterations,
                    max_llm_calls=self.max_llm_calls,
                    max_output_chars=self.max_output_chars,
                    max_concurrency=self.max_concurrency,
                    depth=depth,
                    max_depth=self.max_depth,
                    schema=schema,
                    turn_timeout=self.turn_timeout,
                ),
            },
            {"role": "user", "content": prompts.first_message(question, summary)},
        ]
        writer = TrajectoryWriter(self.trajectory_path) if (self.trajectory_path and top) else None
        state: dict[str, Any] = {"iterations": 0, "final_step": False}

        def result(complete: bool, answer: Any = None) -> RLMResult:
            return RLMResult(
                answer=answer,
                trajectory=trajectory,
                usage=budget.usage_copy(),
                iterations=state["iterations"],
                llm_calls=budget.calls,
                seconds=time.monotonic() - t0,
                complete=complete,
                final_step=state["final_step"],
            )

        def log(record: dict[str, Any]) -> None:
            for key in ("response", "code"):  # the output is redacted where it is made
                record[key] = redact(record[key])
            trajectory.append(record)
            if writer is not None:
                writer.iteration(record)

        if top:
            emit(self.on_event, RunStarted(engine="rlm", title=question[:120], model=root.name))
        if writer is not None:
            writer.metadata(
                question=question,
                model=root.name,
                sub_model=sub.name,
                environment=env_kind if isinstance(env_kind, str) else env_kind.name,
                contexts=summary,
                config={
                    "max_iterations": self.max_iterations,
                    "max_llm_calls": self.max_llm_calls,
                    "max_tokens": self.max_tokens,
                    "timeout": self.timeout,
                    "max_output_chars": self.max_output_chars,
                    "max_depth": self.max_depth,
                    "turn_timeout": self.turn_timeout,
                },
                schema=dict(schema) if schema else None,
            )
        try:
            env.start(contexts, toolbox.helpers())
            for i in range(1, self.max_iterations + 1):
                self._check_budget(budget, lambda: result(False, toolbox.answer))
                m0 = time.monotonic()
                reply = self._root_call(root, messages, budget, depth)
                model_seconds = time.monotonic() - m0
                code = extract_code(reply)
                state["iterations"] = i
                if not code:
                    feedback = prompts.EMPTY_REPLY if not reply.strip() else prompts.NO_CODE
                    messages += [
                        {"role": "assistant", "content": reply or "(empty)"},
                        {"role": "user", "content": feedback},
                    ]
                    log({"iteration": i, "depth": depth, "kind": "no_code", "response": reply, "code": "",
                         "output": feedback, "sub_calls": [], "model_seconds": round(model_seconds, 4),
                         "exec_seconds": 0.0, "submitted": False})
                    emit(self.on_event, RlmIteration(i=i, code="", output=feedback, seconds=model_seconds, depth=depth))
                    continue
                turn_limit = self.turn_timeout
                left = budget.time_left()
                if left is not None:
                    turn_limit = max(0.5, min(turn_limit or left, left))
                out = env.execute(code, timeout=turn_limit, max_output_chars=self.max_output_chars)
                output = out.output  # already capped by the environment (head + marker + tail)
                if len(output) > self.max_output_chars + 100:  # an environment that did not cap
                    output = truncate(output, self.max_output_chars)
                # code can print os.environ: no key reaches the model, the trajectory or the renderer
                output = redact(output)
                sub_calls = toolbox.take_records()
                log({"iteration": i, "depth": depth, "kind": "code", "response": reply, "code": code,
                     "output": output, "error": out.error, "timed_out": out.timed_out,
                     "restarted": out.restarted, "notes": out.notes, "sub_calls": sub_calls,
                     "model_seconds": round(model_seconds, 4), "exec_seconds": round(out.seconds, 4),
                     "submitted": toolbox.submitted})
                emit(self.on_event, RlmIteration(i=i, code=trajectory[-1]["code"], output=output,
                                                 seconds=model_seconds + out.seconds, depth=depth))
                if toolbox.submitted:
                    break
                messages += [
                    {"role": "assistant", "content": reply},
                    {"role": "user", "content": prompts.turn_feedback(
                        i, self.max_iterations, output, out.notes, budget.calls_left)},
                ]
            if toolbox.submitted:
                answer = toolbox.answer
            else:
                answer = self._final_step(root, messages, budget, depth, schema, state, log, result)
            final = result(True, answer)
            if top and export:
                final.exported, final.notes = self._export(env)
            if top:
                emit(self.on_event, Finished(engine="rlm", result=final, seconds=final.seconds))
            return final
        except NbmagicError as exc:
            if exc.partial is None:
                exc.partial = result(False, toolbox.answer)
            if top:
                emit(self.on_event, Failed(engine="rlm", message=exc.message, partial=exc.partial))
            raise
        except KeyboardInterrupt:
            partial = result(False, toolbox.answer)
            if top:
                emit(self.on_event, Failed(engine="rlm", message="interrupted", partial=partial))
                raise RunInterrupted(
                    f"RLM run interrupted after {state['iterations']} iterations; the trajectory so far is on .partial.",
                    partial=partial,
                ) from None
            raise
        finally:
            env.close()

    # -- pieces --

    def _check_budget(self, budget: Budget, partial: Any) -> None:
        if budget.expired():
            raise BudgetExceededError(
                f"The RLM ran out of time ({budget.timeout:g} s). The trajectory so far is on .partial; "
                "raise timeout= or ask a narrower question.",
                partial=partial(),
            )
        if budget.tokens_exhausted():
            raise BudgetExceededError(
                f"The RLM spent its token budget ({budget.tokens:,} of {budget.max_tokens:,} tokens). "
                "The trajectory so far is on .partial; raise max_tokens= or ask a narrower question.",
                partial=partial(),
            )

    def _root_call(self, root: ChatModel, messages: list[dict[str, str]], budget: Budget, depth: int) -> str:
        res = root.chat(messages, temperature=self.temperature)
        budget.record(root.name, res.usage)
        emit(
            self.on_event,
            ModelCall(
                model=root.name,
                prompt_tokens=res.usage.prompt_tokens,
                completion_tokens=res.usage.completion_tokens,
                seconds=res.seconds,
                agent=f"root@{depth}",
            ),
        )
        return res.text or ""

    def _final_step(self, root, messages, budget, depth, schema, state, log, result) -> Any:
        """Out of iterations: ask for the answer from the conversation so far."""
        ask = prompts.final_request(self.max_iterations, schema)
        messages = [*messages, {"role": "user", "content": ask}]
        for attempt in (1, 2):
            self._check_budget(budget, lambda: result(False, None))
            m0 = time.monotonic()
            reply = self._root_call(root, messages, budget, depth)
            state["final_step"] = True
            answer: Any = _strip_fences(reply)
            problems: list[str] = []
            if schema is not None:
                answer, problems = check_schema(answer, schema)
            log({"iteration": self.max_iterations + attempt, "depth": depth, "kind": "final", "response": reply,
                 "code": "", "output": "", "sub_calls": [], "problems": problems,
                 "model_seconds": round(time.monotonic() - m0, 4), "exec_seconds": 0.0, "submitted": False})
            if not problems:
                return answer
            messages += [
                {"role": "assistant", "content": reply},
                {"role": "user", "content": "That does not match the schema:\n" + "\n".join(problems)
                 + "\nReply with only a corrected JSON value."},
            ]
        raise MalformedOutputError(
            "The RLM's final answer did not match the schema after a retry: " + "; ".join(problems),
            partial=result(False, answer),
        )

    def _child(self, prompt: str, context: Any, budget: Budget, depth: int) -> Any:
        contexts = resolve_contexts(context, None)
        return self._run(prompt, contexts, schema=None, export=False, budget=budget, depth=depth).answer

    def _export(self, env: Environment) -> tuple[list[str], list[str]]:
        assert self.namespace is not None
        exported, notes = [], []
        for name, value in env.export().items():
            if name in self.namespace:
                notes.append(f"not exported: {name!r} already exists in your namespace")
                continue
            self.namespace[name] = value
            exported.append(name)
        return exported, notes


def _outside_turns(handler: EventHandler) -> EventHandler:
    """Run the renderer with the notebook's streams, even when called from inside a turn."""

    def handle(event: Any) -> None:
        with outer_streams():
            emit(handler, event)

    return handle


def _positive(name: str, value: int | None, default: int) -> int:
    v = default if value is None else value
    if not isinstance(v, int) or isinstance(v, bool) or v < 1:
        raise ConfigError(f"{name} must be a positive integer, got {v!r}.")
    return v


def _limit(name: str, value: Any, *, minimum: int = 1, number: bool = False) -> Any:
    """An optional limit: ``None`` (no limit), an integer >= ``minimum``, or (``number``) seconds > 0."""
    if value is None:
        return None
    kinds = (int, float) if number else (int,)
    if isinstance(value, bool) or not isinstance(value, kinds) or value != value or (  # NaN too
        value <= 0 if number else value < minimum
    ):
        want = "a positive number of seconds" if number else f"an integer of at least {minimum}"
        raise ConfigError(f"{name} must be {want} (or None), got {value!r}.")
    return value
