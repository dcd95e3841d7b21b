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

One invocation is one :class:`RLMRun` (root and every child ``rlm_query``):
it owns the trajectory, the counters, the messages, the environment and the
result, so :class:`RLM` stays a reusable configuration. ``rlm.start(...)``
hands the run out for one turn at a time (``run.step()``); an
:class:`~nbmagic.rlm.session.RLMSession` keeps one REPL across queries.

Budgets: ``max_llm_calls``, ``max_tokens``, ``max_cost_usd`` and ``timeout``
are per invocation and shared with child RLMs. Sub-calls over a budget return
error strings inside the REPL. When the token, cost, time or error budget is
spent at the root, :class:`~nbmagic.errors.BudgetExceededError` is raised and
its ``partial`` is an :class:`RLMResult` with ``complete=False`` holding the
trajectory so far (and any answer already submitted).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from nbmagic.errors import ConfigError
from nbmagic.events import EventHandler
from nbmagic.llm.base import ChatModel
from nbmagic.rlm.context import resolve_contexts
from nbmagic.rlm.pricing import check_prices
from nbmagic.rlm.repl import Environment
from nbmagic.rlm.result import NOT_COMPUTED, RLMResult
from nbmagic.rlm.run import RLMRun, extract_code, outside_turns
from nbmagic.rlm.schemas import resolve_schema
from nbmagic.rlm.session import RLMSession
from nbmagic.rlm.settings import ENVIRONMENTS, RLMSettings
from nbmagic.rlm.tools import SpendingBudget, make_tools

__all__ = ["NOT_COMPUTED", "RLM", "RLMResult", "RLMRun", "extract_code"]


class RLM:
    """A Recursive Language Model over kernel data (see the module docstring)."""

    def __init__(
        self,
        model: ChatModel | str | None = None,
        *,
        settings: RLMSettings | None = None,
        sub_model: ChatModel | str | None = None,
        environment: str | Environment | None = None,
        namespace: dict[str, Any] | None = None,
        on_event: EventHandler | None = None,
        tools: Any = None,
        prices: Mapping[str, tuple[float, float]] | None = None,
        **options: Any,
    ) -> None:
        """``settings`` (default: the configured :class:`~nbmagic.rlm.settings.RLMSettings`) with
        ``options`` (its field names: ``max_iterations=``, ``timeout=``, ...) replacing fields;
        models may be :class:`ChatModel` objects, ``environment`` an :class:`Environment`."""
        unknown = sorted(set(options) - {f.name for f in RLMSettings.options()})
        if unknown:
            raise TypeError(f"RLM() got unexpected keyword argument(s): {', '.join(unknown)}")
        if isinstance(model, str):
            options["model"] = model
        if isinstance(sub_model, str):
            options["sub_model"] = sub_model
        if isinstance(environment, str):
            options["environment"] = environment
        elif environment is not None and not isinstance(environment, Environment):
            raise ConfigError(f"environment must be one of {', '.join(ENVIRONMENTS)} or an Environment, "
                              f"not {environment!r}.")
        base = settings if settings is not None else RLMSettings.configured()
        if not isinstance(base, RLMSettings):
            raise ConfigError(f"settings= must be an RLMSettings, got {type(base).__name__}.")
        self.settings: RLMSettings = base.replace(**options)
        self._model_spec = model if model is not None else self.settings.model
        self._sub_spec = sub_model if sub_model is not None else self.settings.sub_model
        self._model: ChatModel | None = model if isinstance(model, ChatModel) else None
        self._sub: ChatModel | None = sub_model if isinstance(sub_model, ChatModel) else None
        self.environment: str | Environment = environment if isinstance(environment, Environment) \
            else self.settings.environment
        if namespace is not None and not isinstance(namespace, Mapping):
            raise ConfigError(f"namespace= must be a dict of variables (say globals()), got {type(namespace).__name__}.")
        self.namespace = namespace
        self.on_event: EventHandler | None = outside_turns(on_event) if on_event is not None else None
        self.tools = make_tools(tools)
        self.prices = check_prices(prices)

    def __getattr__(self, name: str) -> Any:
        """``rlm.max_iterations`` and every other setting read through to :attr:`settings`."""
        if name != "settings" and "settings" in self.__dict__ and hasattr(self.__dict__["settings"], name):
            return getattr(self.__dict__["settings"], name)
        raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")

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

    # -- the public calls --

    def query(
        self,
        question: str,
        context: Any = None,
        *,
        schema: Any = None,
        export: bool = False,
        session: RLMSession | None = None,
    ) -> RLMResult:
        """Answer ``question`` about ``context``; see the module docstring for budgets.

        ``schema``: a JSON schema (dict or JSON text) or a pydantic model class (the
        answer then comes back as an instance). ``session``: run in that session's
        persistent REPL (see :meth:`session`).
        """
        return self.start(question, context, schema=schema, export=export, session=session).run()

    def start(
        self,
        question: str,
        context: Any = None,
        *,
        schema: Any = None,
        export: bool = False,
        session: RLMSession | None = None,
    ) -> RLMRun:
        """Prepare a run without taking a turn: ``run.step()`` takes one, ``run.run()`` the rest."""
        if not isinstance(question, str) or not question.strip():
            raise ConfigError("RLM.query needs a question (a non-empty string).")
        json_schema, typed = resolve_schema(schema, self.namespace)
        if export and self.namespace is None:
            raise ConfigError("export=True needs a namespace to export into: RLM(namespace=...).")
        contexts = resolve_contexts(context, self.namespace)
        clash = sorted(set(contexts) & set(self.tools))
        if clash:
            raise ConfigError(f"Context {clash[0]!r} has the name of a tool; rename the variable or the tool.")
        budget = SpendingBudget(max_llm_calls=self.max_llm_calls, max_tokens=self.max_tokens, timeout=self.timeout,
                        max_cost_usd=self.max_cost_usd, prices=self.prices)
        return RLMRun(self, question, contexts, schema=json_schema, typed=typed, export=export, budget=budget,
                      depth=0, session=session)

    def session(self) -> RLMSession:
        """A REPL that lives across queries: follow-ups see the variables earlier ones made."""
        return RLMSession(self)
