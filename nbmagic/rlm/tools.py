"""The helpers the root model's code can call, and the budgets they draw from.

Every helper returns ``(value, notice)``: the value goes back to the code, the
notice (if any) is printed into the turn's output by the environment, so the
same helper works in-process and across the subprocess pipe. Failures and
exhausted budgets come back as strings starting with ``[error]`` instead of
exceptions, so one bad sub-call never sinks a batch or a turn.
"""

from __future__ import annotations

import asyncio
import functools
import inspect
import json
import keyword
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from nbmagic.errors import ConfigError, NbmagicError
from nbmagic.events import EventHandler, ModelCall, SubCall, emit
from nbmagic.llm.base import ChatModel, Usage
from nbmagic.rlm.settings import RLMSettings
from nbmagic.rlm.strategies import STRATEGY_NAMES
from nbmagic.rlm.strategies import helpers_for as strategy_helpers

HELPER_NAMES = ("llm_query", "llm_query_batched", "rlm_query", "submit")
FORK_HELPERS = ("spawn_agents", "adopt", "discard")
SUB_LM_HELPERS = ("llm_query", "llm_query_batched", "rlm_query")
#: the one set of names the REPL itself binds: no context and no user tool may take them
#: the one-line strategies (nbmagic.rlm.strategies), helpers like llm_query
STRATEGY_HELPERS = STRATEGY_NAMES
RESERVED_NAMES = frozenset({*HELPER_NAMES, *FORK_HELPERS, *STRATEGY_HELPERS, "input", "exit", "quit"})
#: a tool may not be called ``context`` either (that name holds the data)
RESERVED_TOOL_NAMES = RESERVED_NAMES | {"context"}


def reserved_message(what: str, name: str) -> str:
    """The one message for a context or tool that would take a name the REPL binds."""
    return (f"{what} {name}: {name!r} is the name of an RLM helper in the REPL "
            f"({', '.join(sorted(RESERVED_NAMES))}); rename it (e.g. {name}_data = {name}).")
PREVIEW = 200


class SpendingBudget:
    """What one invocation and every child RLM it spawns may spend: sub-calls, tokens, time and
    dollars (thread-safe). Not to be confused with the prompt-window budget of the notebook
    agent (:class:`nbmagic.agent.budget.Budget`)."""

    def __init__(
        self,
        *,
        max_llm_calls: int | None = 50,
        max_tokens: int | None = None,
        timeout: float | None = None,
        max_cost_usd: float | None = None,
        prices: Mapping[str, tuple[float, float]] | None = None,
    ) -> None:
        self.max_llm_calls = max_llm_calls
        self.max_tokens = max_tokens
        self.max_cost_usd = max_cost_usd
        self.prices = dict(prices or {})
        self.started = time.monotonic()
        self.deadline = self.started + timeout if timeout else None
        self.timeout = timeout
        self.calls = 0
        self.usage: dict[str, Usage] = {}
        self._lock = threading.Lock()

    def reserve(self) -> int | None:
        """Take one sub-call from the budget; ``None`` when it is spent."""
        with self._lock:
            if self.max_llm_calls is not None and self.calls >= self.max_llm_calls:
                return None
            self.calls += 1
            return self.calls

    def release(self) -> None:
        """Give back a reserved sub-call that was not made (the token or time budget refused it)."""
        with self._lock:
            self.calls -= 1

    @property
    def calls_left(self) -> int | None:
        return None if self.max_llm_calls is None else max(0, self.max_llm_calls - self.calls)

    def record(self, model: str, usage: Usage) -> None:
        with self._lock:
            self.usage[model] = self.usage.get(model, Usage()) + Usage(
                usage.prompt_tokens, usage.completion_tokens, 1
            )

    @property
    def tokens(self) -> int:
        with self._lock:
            return sum(u.total_tokens for u in self.usage.values())

    def tokens_exhausted(self) -> bool:
        return self.max_tokens is not None and self.tokens >= self.max_tokens

    def cost(self) -> float | None:
        """USD spent so far (``None`` when a model used has no price)."""
        from nbmagic.rlm.pricing import cost_usd

        return cost_usd(self.usage_copy(), self.prices)

    def cost_exhausted(self) -> bool:
        if self.max_cost_usd is None:
            return False
        spent = self.cost()
        return spent is not None and spent >= self.max_cost_usd

    def time_left(self) -> float | None:
        return None if self.deadline is None else self.deadline - time.monotonic()

    def expired(self) -> bool:
        left = self.time_left()
        return left is not None and left <= 0

    def usage_copy(self) -> dict[str, Usage]:
        with self._lock:
            return {k: Usage(v.prompt_tokens, v.completion_tokens, v.calls) for k, v in self.usage.items()}


class ShareBudget(SpendingBudget):
    """A sub-agent's share: its own cap on sub-calls, drawing from (and counted in) the root's budget."""

    def __init__(self, parent: SpendingBudget, max_llm_calls: int | None) -> None:
        super().__init__(max_llm_calls=max_llm_calls, max_tokens=parent.max_tokens, timeout=None,
                         max_cost_usd=parent.max_cost_usd, prices=parent.prices)
        self.parent = parent
        self.deadline, self.timeout = parent.deadline, parent.timeout

    def reserve(self) -> int | None:
        n = super().reserve()
        if n is not None and self.parent.reserve() is None:
            super().release()
            return None
        return n

    def release(self) -> None:
        super().release()
        self.parent.release()

    def record(self, model: str, usage: Usage) -> None:
        super().record(model, usage)
        self.parent.record(model, usage)

    def tokens_exhausted(self) -> bool:
        return self.parent.tokens_exhausted()

    def cost_exhausted(self) -> bool:
        return self.parent.cost_exhausted()


@dataclass
class _Outcome:
    text: str
    record: dict[str, Any]
    events: list[Any] = field(default_factory=list)


def _check_prompt(name: str, prompt: Any) -> str:
    if not isinstance(prompt, str):
        extra = " For several prompts use llm_query_batched(prompts)." if isinstance(prompt, list | tuple) else ""
        raise TypeError(f"{name}(prompt) takes one string; got {type(prompt).__name__}.{extra}")
    if not prompt.strip():
        raise ValueError(f"{name}(prompt): the prompt is empty.")
    return prompt


def _as_text(context: Any) -> str:
    return context if isinstance(context, str) else str(context)


class Toolbox:
    """The four REPL helpers for one RLM at one depth."""

    def __init__(
        self,
        *,
        sub_model: ChatModel,
        budget: SpendingBudget,
        settings: RLMSettings | None = None,
        depth: int = 0,
        schema: Mapping[str, Any] | None = None,
        spawn_child: Callable[[str, Any], Any] | None = None,
        on_event: EventHandler | None = None,
        tools: Mapping[str, Callable[..., Any]] | None = None,
        forker: Any = None,
    ) -> None:
        settings = settings if settings is not None else RLMSettings()
        self.sub_model = sub_model
        self.forker = forker  # the run that spawns sub-agents on forks of its REPL (max_subagent_depth > 0)
        self.question = ""  # the run's question: the one-line strategies' default (nbmagic.rlm.strategies)
        self.recursive = settings.recursive  # the RLM's settings, read once (not copied field by field)
        self.tools = dict(tools or {})
        self.budget = budget
        self.depth = depth
        self.max_depth = settings.max_depth
        self.max_concurrency = settings.max_concurrency
        self.schema = dict(schema) if schema else None
        self.spawn_child = spawn_child
        self.sub_max_tokens = settings.sub_max_tokens
        self.on_event = on_event
        self.submitted = False
        self.answer: Any = None
        self.last_value: tuple[str, Any] | None = None  # the last one-line strategy's (name, value)
        self.rejections = 0
        self._records: list[dict[str, Any]] = []
        self._lock = threading.Lock()

    def helpers(self) -> dict[str, Callable[..., tuple[Any, str | None]]]:
        """What the REPL gets: the sub-LM helpers (unless ``recursive=False``), ``submit``, user tools."""
        out: dict[str, Callable[..., tuple[Any, str | None]]] = {}
        if self.recursive:
            out.update(llm_query=self.llm_query, llm_query_batched=self.llm_query_batched, rlm_query=self.rlm_query)
            # one-line strategies; their sub-calls come through _batched, their values are remembered
            out.update({n: self._remembered(n, f) for n, f in strategy_helpers(self).items()})
        out["submit"] = self.submit
        if self.forker is not None:
            out.update(spawn_agents=self.spawn_agents, adopt=self.adopt, discard=self.discard)
        for name, fn in self.tools.items():
            out[name] = self._tool(name, fn)
        return out

    def _remembered(self, name: str, fn: Callable[..., tuple[Any, str | None]]) -> Callable[..., tuple[Any, str | None]]:
        """``fn`` that also keeps its last value in :attr:`last_value` as ``(name, value)``: a constrained
        first turn's helper result is the run's answer if the root never submits (nbmagic.rlm.first_turn)."""

        @functools.wraps(fn)
        def call(*args: Any, **kwargs: Any) -> tuple[Any, str | None]:
            value, notice = fn(*args, **kwargs)
            self.last_value = (name, value)
            return value, notice

        return call

    def _tool(self, name: str, fn: Callable[..., Any]) -> Callable[..., tuple[Any, None]]:
        """A user tool as a helper: runs here (the parent, for the subprocess REPL), is recorded,
        awaits coroutines, and lets exceptions reach the model's code like any function's."""

        def call(*args: Any, **kwargs: Any) -> tuple[Any, None]:
            t0 = time.monotonic()
            shown = ", ".join([*(repr(a) for a in args), *(f"{k}={v!r}" for k, v in kwargs.items())])
            record: dict[str, Any] = {"helper": name, "tool": True, "model": "", "depth": self.depth,
                                      "prompt_chars": len(shown), "prompt": f"{name}({shown[:PREVIEW]})"}
            try:
                value = fn(*args, **kwargs)
                if inspect.isawaitable(value):
                    value = run_awaitable(value)
            except BaseException as exc:
                record.update(ok=False, seconds=round(time.monotonic() - t0, 4),
                              response=f"{type(exc).__name__}: {exc}"[:PREVIEW], response_chars=0)
                with self._lock:
                    self._records.append(record)
                raise
            text = value if isinstance(value, str) else repr(value)
            record.update(ok=True, seconds=round(time.monotonic() - t0, 4), response_chars=len(text),
                          response=text[:PREVIEW])
            with self._lock:
                self._records.append(record)
            return value, None

        call.__name__ = call.__qualname__ = name
        call.__doc__ = fn.__doc__
        call.raises_in_repl = True  # type: ignore[attr-defined]  # the subprocess REPL re-raises it there
        return call

    def take_records(self) -> list[dict[str, Any]]:
        """The sub-calls made since the last call (one turn's worth)."""
        with self._lock:
            out, self._records = self._records, []
        return out

    # -- sub-calls --

    def _exhausted(self, helper: str) -> str | None:
        if self.budget.tokens_exhausted():
            return f"[error] {helper}: the token budget ({self.budget.max_tokens:,}) is spent. Submit what you have."
        if self.budget.cost_exhausted():
            return f"[error] {helper}: the cost budget (${self.budget.max_cost_usd:g}) is spent. Submit what you have."
        if self.budget.expired():
            return f"[error] {helper}: the time budget ({self.budget.timeout:g} s) is spent. Submit what you have."
        return None

    def _one(self, prompt: str, helper: str, n: int | None) -> _Outcome:
        """One sub-model call; never raises."""
        t0 = time.monotonic()
        record: dict[str, Any] = {
            "helper": helper,
            "model": self.sub_model.name,
            "depth": self.depth,
            "prompt_chars": len(prompt),
            "prompt": prompt[:PREVIEW],
        }
        events: list[Any] = []
        if n is None:
            text = (
                f"[error] {helper}: the sub-call budget is spent ({self.budget.max_llm_calls} calls). "
                "Work with what you have and submit()."
            )
        else:
            text = self._exhausted(helper) or ""
            if text:
                self.budget.release()
        if not text:
            try:
                res = self.sub_model.chat(prompt, max_tokens=self.sub_max_tokens)
                text = res.text
                self.budget.record(self.sub_model.name, res.usage)
                record["tokens"] = res.usage.total_tokens
                events.append(
                    ModelCall(
                        model=self.sub_model.name,
                        prompt_tokens=res.usage.prompt_tokens,
                        completion_tokens=res.usage.completion_tokens,
                        seconds=res.seconds,
                        agent=f"sub@{self.depth}",
                    )
                )
                ok = True
            except NbmagicError as exc:
                text, ok = f"[error] {helper} failed: {exc.message}", False
            except Exception as exc:  # defensive: a backend bug must not kill the turn
                text, ok = f"[error] {helper} failed: {type(exc).__name__}: {exc}", False
        else:
            ok = False
        seconds = time.monotonic() - t0
        record.update(ok=ok, seconds=round(seconds, 4), response_chars=len(text), response=text[:PREVIEW])
        events.append(
            SubCall(
                n=self.budget.calls,
                budget_left=self.budget.calls_left,
                prompt_chars=len(prompt),
                ok=ok,
                depth=self.depth,
                seconds=seconds,
            )
        )
        return _Outcome(text, record, events)

    def _finish(self, outcomes: Sequence[_Outcome]) -> None:
        """Record and emit from the calling thread (renderers need not be thread-safe)."""
        with self._lock:
            self._records.extend(o.record for o in outcomes)
        for o in outcomes:
            for ev in o.events:
                emit(self.on_event, ev)

    def llm_query(self, prompt: str) -> tuple[str, None]:
        """llm_query(prompt) -> str: ask the sub-model one question."""
        _check_prompt("llm_query", prompt)
        out = self._one(prompt, "llm_query", self.budget.reserve())
        self._finish([out])
        return out.text, None

    def llm_query_batched(self, prompts: Sequence[str]) -> tuple[list[str], None]:
        """llm_query_batched(prompts) -> list[str]: many questions at once, answers in order."""
        return self._batched(prompts, "llm_query_batched"), None

    def _batched(self, prompts: Sequence[str], helper: str) -> list[str]:
        """Sub-calls for ``prompts`` (budgeted, concurrent, in order), recorded under ``helper``."""
        if isinstance(prompts, str) or not isinstance(prompts, Sequence):
            raise TypeError(
                f"llm_query_batched(prompts) takes a list of strings; got {type(prompts).__name__}."
            )
        for i, p in enumerate(prompts):
            if not isinstance(p, str):
                raise TypeError(f"llm_query_batched: prompts[{i}] is a {type(p).__name__}, not a string.")
        if not prompts:
            return []
        tickets = [self.budget.reserve() for _ in prompts]  # in order: the first ones get the budget
        live = [i for i, t in enumerate(tickets) if t is not None]
        outcomes: list[_Outcome | None] = [None] * len(prompts)
        for i, t in enumerate(tickets):
            if t is None:
                outcomes[i] = self._one(prompts[i], helper, None)
        if live:
            pool = ThreadPoolExecutor(max_workers=min(self.max_concurrency, len(live)), thread_name_prefix="rlm-sub")
            futures: dict[int, Any] = {}
            try:
                for i in live:
                    futures[i] = pool.submit(self._one, prompts[i], helper, tickets[i])
                for i, fut in futures.items():
                    outcomes[i] = fut.result()
            finally:  # stopped early (the turn's time limit): calls that never started give their ticket back
                for fut in futures.values():
                    if fut.cancel():
                        self.budget.release()
                pool.shutdown(wait=False)
        done = [o for o in outcomes if o is not None]
        self._finish(done)
        return [o.text for o in done]

    def rlm_query(self, prompt: str, context: Any = None) -> tuple[Any, None]:
        """rlm_query(prompt, context=None) -> str: a recursive RLM over ``context``."""
        _check_prompt("rlm_query", prompt)
        if self.spawn_child is None or self.depth + 1 > self.max_depth:
            full = prompt if context is None else f"{prompt}\n\n{_as_text(context)}"
            out = self._one(full, "rlm_query", self.budget.reserve())
            self._finish([out])
            return out.text, None
        n = self.budget.reserve()
        t0 = time.monotonic()
        record: dict[str, Any] = {"helper": "rlm_query", "model": f"rlm@{self.depth + 1}", "depth": self.depth,
                                  "prompt_chars": len(prompt), "prompt": prompt[:PREVIEW]}
        if n is None:
            value: Any = (
                f"[error] rlm_query: the sub-call budget is spent ({self.budget.max_llm_calls} calls). "
                "Work with what you have and submit()."
            )
            ok = False
        else:
            value = self._exhausted("rlm_query")
            ok = value is None
            if not ok:
                self.budget.release()
            else:
                try:
                    value = self.spawn_child(prompt, context)
                except NbmagicError as exc:
                    value, ok = f"[error] rlm_query failed: {exc.message}", False
        seconds = time.monotonic() - t0
        text = value if isinstance(value, str) else repr(value)
        record.update(ok=ok, seconds=round(seconds, 4), response_chars=len(text), response=text[:PREVIEW])
        ev = SubCall(n=self.budget.calls, budget_left=self.budget.calls_left, prompt_chars=len(prompt),
                     ok=ok, depth=self.depth, seconds=seconds)
        self._finish([_Outcome(text, record, [ev])])
        return value, None

    # -- sub-agents on forked REPL state --

    def spawn_agents(self, tasks: Sequence[str]) -> tuple[Any, str | None]:
        """spawn_agents(tasks) -> list[dict]: one sub-agent per task, each on a fork of this REPL."""
        if isinstance(tasks, str) or not isinstance(tasks, Sequence) or not tasks:
            raise TypeError("spawn_agents(tasks) takes a non-empty list of task strings.")
        for i, t in enumerate(tasks):
            _check_prompt(f"spawn_agents: tasks[{i}]", t)
        return self.forker.spawn(list(tasks)), None

    def adopt(self, agent: int) -> tuple[Any, str | None]:
        """adopt(agent_id) -> list[str]: merge that sub-agent's new and changed variables into this REPL."""
        names = self.forker.adopt(agent)
        return names, f"Adopted from sub-agent {agent}: {', '.join(names) or '(nothing changed)'}."

    def discard(self, agent: int) -> tuple[None, str]:
        """discard(agent_id): drop that sub-agent's fork."""
        self.forker.discard(agent)
        return None, f"Sub-agent {agent}'s fork discarded."

    def add_records(self, records: Sequence[dict[str, Any]]) -> None:
        with self._lock:
            self._records.extend(records)

    # -- the answer --

    def submit(self, *args: Any, **kwargs: Any) -> tuple[None, str]:
        """submit(answer): give the final answer (checked against the schema if one was set)."""
        if len(args) > 1 or (args and kwargs):
            raise TypeError("submit(answer) takes one answer (or keyword fields for a JSON object).")
        if args:
            answer = args[0]
        elif set(kwargs) == {"answer"}:
            answer = kwargs["answer"]
        elif kwargs:
            answer = dict(kwargs)
        else:
            raise TypeError("submit(answer) needs the answer.")
        if self.schema is not None:
            answer, problems = check_schema(answer, self.schema)
            if problems:
                self.rejections += 1
                return None, (
                    "submit() rejected the answer: it does not match the required JSON schema:\n"
                    + "\n".join(f"- {p}" for p in problems)
                    + "\nFix it and call submit() again."
                )
        self.submitted = True
        self.answer = answer
        return None, "Answer submitted."


# --- user tools ----------------------------------------------------------------------------


def run_awaitable(awaitable: Any) -> Any:
    """The result of an async tool: on a fresh loop, in a thread if this one already runs a loop
    (inside Jupyter the kernel's loop is running and cannot be re-entered)."""

    async def wait() -> Any:
        return await awaitable

    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(wait())
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="rlm-tool") as pool:
        return pool.submit(asyncio.run, wait()).result()


def make_tools(tools: Any) -> dict[str, Callable[..., Any]]:
    """``{name: callable}`` from a list of functions or a dict; bad names are a :class:`ConfigError`.

    A tool is exposed in the REPL under its name (``fn.__name__`` or the dict key). Names of
    helpers (``llm_query``, ``submit``, ...) and names starting with ``_`` are refused, so a
    tool can never hide a helper nor look like a private variable.
    """
    if tools is None:
        return {}
    if callable(tools) and not isinstance(tools, Mapping):
        tools = [tools]
    if isinstance(tools, Mapping):
        pairs = list(tools.items())
    elif isinstance(tools, Sequence) and not isinstance(tools, str):
        pairs = [(getattr(fn, "__name__", None), fn) for fn in tools]
    else:
        raise ConfigError(f"tools= must be a list of functions (or a dict name -> function), got {type(tools).__name__}.")
    out: dict[str, Callable[..., Any]] = {}
    for name, fn in pairs:
        if not callable(fn):
            raise ConfigError(f"Tool {name!r} is a {type(fn).__name__}, not a function.")
        if not isinstance(name, str) or not name.isidentifier() or keyword.iskeyword(name):
            raise ConfigError(
                f"Tool name {name!r} is not a Python identifier (a lambda has no usable name): "
                "define it with def, or pass tools={'name': fn}."
            )
        if name.startswith("_"):
            raise ConfigError(f"Tool name {name!r} starts with '_': tools need public names; rename it.")
        if name in RESERVED_TOOL_NAMES:
            raise ConfigError(
                f"Tool name {name!r} is taken by an RLM helper ({', '.join(sorted(RESERVED_TOOL_NAMES))}); rename it."
            )
        if name in out:
            raise ConfigError(f"Two tools are named {name!r}; give them different names.")
        out[name] = fn
    return out


def describe_tool(name: str, fn: Callable[..., Any]) -> str:
    """``name(signature) -> ret: first docstring line`` for the prompt."""
    try:
        try:  # string annotations (from __future__ import annotations) read as the types they name
            sig = str(inspect.signature(fn, eval_str=True))
        except NameError:
            sig = str(inspect.signature(fn))
    except (TypeError, ValueError):  # some builtins
        sig = "(...)"
    doc = inspect.getdoc(fn) or ""
    first = doc.strip().splitlines()[0].strip() if doc.strip() else ""
    # no "async": the REPL's wrapper awaits coroutines, so the model calls every tool plainly
    return f"{name}{sig}" + (f": {first}" if first else "")


# --- JSON schema -------------------------------------------------------------------------


def _validator(schema: Mapping[str, Any]) -> Any:
    try:
        import jsonschema
    except ImportError:  # pragma: no cover - jsonschema comes with nbformat
        raise ConfigError("schema= needs the jsonschema package: pip install jsonschema") from None
    cls = jsonschema.validators.validator_for(schema)
    return cls(schema)


def validate_schema(schema: Mapping[str, Any]) -> None:
    """Raise :class:`ConfigError` if ``schema`` is not a valid JSON schema."""
    import jsonschema

    try:
        jsonschema.validators.validator_for(schema).check_schema(schema)
    except jsonschema.SchemaError as exc:
        raise ConfigError(f"schema= is not a valid JSON schema: {exc.message}") from None


def check_schema(answer: Any, schema: Mapping[str, Any]) -> tuple[Any, list[str]]:
    """Return ``(answer, problems)``; a JSON string is parsed when the schema wants structure."""
    if isinstance(answer, str) and schema.get("type") not in (None, "string"):
        try:
            answer = json.loads(answer)
        except ValueError:
            pass
    validator = _validator(schema)
    problems = []
    for err in sorted(validator.iter_errors(answer), key=lambda e: list(e.absolute_path))[:5]:
        where = "$" + "".join(f"[{p!r}]" if isinstance(p, str) else f"[{p}]" for p in err.absolute_path)
        problems.append(f"at {where}: {err.message}")
    return answer, problems
