"""The notebook agent: ``NotebookAgent(model, **options).run(request)`` -> cells.

The options are checked here, once; the run itself is :class:`~nbmagic.agent.loop.Run`,
the one loop (a deliberation whose tool is the kernel, see :mod:`nbmagic.agent.loop`):

* :mod:`.parts`      the request read into parts and instructions (the cheap plan);
* :mod:`.loading`    the agent's own load cells;
* :mod:`.reflector`  outputs judged against each part; fix prompts that name what to use;
* :mod:`.exchange`   how the reflector's refinement reaches the tool-caller (text | latent);
* :mod:`.constrain`  a grammar that makes GGUF models answer with a code block;
* :mod:`.markdown`   explanations without prompt text; :mod:`.answer` the closing answer;
* :mod:`.guard`      the user's variables protected; missing names and packages explained;
* :mod:`.result`     :class:`AgentResult` and the summary; :mod:`.files` files written.

The user's work is protected: pre-existing variables are snapshotted, rebinding
is reported, deletion is undone; Ctrl-C stops at the next safe point and raises
:class:`RunInterrupted` with the cells so far on ``.partial``.
"""

from __future__ import annotations

import os
from collections.abc import Callable, MutableMapping
from typing import Any

from nbmagic.agent import context as ctx
from nbmagic.agent.answer_check import invented_numbers
from nbmagic.agent.guard import assigned_names
from nbmagic.agent.loop import LOCAL_MAX_TOKENS, REMOTE_MAX_TOKENS, Run, is_local
from nbmagic.agent.planner import check_planner
from nbmagic.agent.prompts import fix_last_error_request
from nbmagic.agent.result import SAVED_NAME, AgentResult, Step, summarize
from nbmagic.errors import BudgetExceededError, ConfigError
from nbmagic.events import EventHandler
from nbmagic.llm.base import ChatModel

#: asked before each cell runs: True runs it, False skips it, a string runs (and keeps) that code
#: instead (edited in review); raising RunInterrupted stops the run, keeping what finished
ConfirmFn = Callable[[str], "bool | str"]

REFINE_MODES = ("auto", "model", "rules", "off")
#: what text rounds with a remote model may spend per run when no cap is given (tokens)
REMOTE_TOKEN_CAP = 200_000

__all__ = [
    "LOCAL_MAX_TOKENS",
    "REMOTE_MAX_TOKENS",
    "SAVED_NAME",
    "AgentResult",
    "NotebookAgent",
    "Step",
    "assigned_names",
    "invented_numbers",
    "summarize",
]


class NotebookAgent:
    """Plans, writes, runs and fixes notebook cells for a request.

    ``model``: a ChatModel or spec string (None: the default model).
    ``planner`` says where the parts come from; every value but ``onecall`` then runs the
    same loop (tool-caller writes, kernel runs, reflector judges, per part):
    ``"auto"`` (default: ``"parts"`` for local GGUF/HF models, ``"mas"`` for remote ones),
    ``"parts"`` (read from the request, no model call), ``"mas"`` (a RecursiveMAS plan,
    options in ``mas_options``), ``"single"`` (one agent plans in one round), ``"none"``
    (the whole request is one part) or ``"onecall"`` (the baseline: one reply, its cell run
    once, no plan, no fixes, no answer).
    ``confirm(code) -> bool`` is asked before each cell runs (and before a proposed
    ``%pip install``); ``allow_install`` installs a missing package without asking;
    ``dry_run`` plans and writes code without running anything; ``stop_on_failure``
    ends the run at the first step that could not be fixed (default: report it and go
    on); ``refine`` revises the remaining plan after each step (``"auto"``: with the
    model for remote models, by cheap rules for local ones; ``"model"``, ``"rules"``,
    ``"off"``); ``answer`` closes the run with a markdown cell answering the request;
    ``load_files`` makes the first cells read the tables the request names (CSV, TSV,
    JSON, Parquet, Excel) into DataFrames, so the model's code starts from real data.
    ``force_code_block`` constrains GGUF models with a grammar so each reply holds a code
    block. ``max_run_tokens`` / ``max_cost_usd`` cap what one run's model calls may spend
    (default for remote models: :data:`REMOTE_TOKEN_CAP` tokens; the cost cap applies where
    the model's price is known, ``nbmagic.rlm.pricing``); over the cap the run stops with
    :class:`BudgetExceededError`, the cells so far on ``.partial``.
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
        force_code_block: bool = True,
        max_run_tokens: int | None = None,
        max_cost_usd: float | None = None,
    ) -> None:
        self.planner, self.mas_options = check_planner(planner, mas_options)
        if refine not in REFINE_MODES:
            raise ConfigError(f"refine must be one of {', '.join(REFINE_MODES)}, not {refine!r}.")
        self.allow_install = bool(allow_install)
        self.refine = refine
        self.answer = bool(answer)
        self.load_files = bool(load_files)
        self.force_code_block = bool(force_code_block)
        if max_run_tokens is not None and (isinstance(max_run_tokens, bool) or not isinstance(max_run_tokens, int)
                                           or max_run_tokens < 1):
            raise ConfigError(f"max_run_tokens must be a whole number >= 1, not {max_run_tokens!r}.")
        if max_cost_usd is not None and (isinstance(max_cost_usd, bool) or not isinstance(max_cost_usd, (int, float))
                                         or not max_cost_usd > 0):
            raise ConfigError(f"max_cost_usd must be a number of dollars > 0, not {max_cost_usd!r}.")
        self.max_run_tokens = max_run_tokens
        self.max_cost_usd = float(max_cost_usd) if max_cost_usd is not None else None
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

    def spend_cap(self, model: ChatModel) -> tuple[int | None, float | None]:
        """(tokens, dollars) one run may spend: the options, else a token cap for remote models."""
        tokens = self.max_run_tokens
        if tokens is None and not is_local(model):
            tokens = REMOTE_TOKEN_CAP
        return tokens, self.max_cost_usd

    def cap_text(self, model: ChatModel) -> str:
        """The cap as the summary shows it (empty for a local model without one)."""
        tokens, dollars = self.spend_cap(model)
        bits = ([f"{tokens:,} tokens"] if tokens else []) + ([f"${dollars:g}"] if dollars else [])
        return " and ".join(bits)

    def check_spend(self, run: Any, model: ChatModel) -> None:
        """Before each model call: stop the run when its calls have spent the cap."""
        tokens, dollars = self.spend_cap(model)
        if tokens is not None and run.spent >= tokens:
            raise BudgetExceededError(f"The run spent {run.spent:,} tokens, its cap of {tokens:,} "
                                      "(max_run_tokens / --max-run-tokens); the cells so far are kept.")
        if dollars is not None:
            from nbmagic.rlm.pricing import price_for

            price = price_for(f"{model.backend}:{model.name}") or price_for(model.name)
            if price is not None:
                used = model.usage - run.usage0
                cost = (used.prompt_tokens * price[0] + used.completion_tokens * price[1]) / 1e6
                if cost >= dollars:
                    raise BudgetExceededError(f"The run spent ${cost:.4f}, its cap of ${dollars:g} "
                                              "(max_cost_usd / --max-cost); the cells so far are kept.")

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
        return Run(self, request.strip(), namespace, shell, sink, base_dir).go()

    __call__ = run

    def fix_error(
        self,
        code: str,
        error: str,
        namespace: MutableMapping[str, Any] | None = None,
        *,
        shell: Any = None,
        sink: Any = None,
        base_dir: str | os.PathLike[str] | None = None,
        note: str = "",
    ) -> AgentResult:
        """``%agent fix``: write (and run) a corrected version of ``code``, which raised ``error``
        (its traceback as text). The magics find them (:mod:`nbmagic.magic_history`); the agent
        never reads the shell's history. ``note`` is the user's extra instruction, if any.
        """
        request = fix_last_error_request(code, error)
        if note.strip():
            request += f"\n\nAlso: {note.strip()}"
        run = Run(self, request, namespace, shell, sink, base_dir, planner="none", answer=False,
                   title="Fix the cell that last raised")
        return run.go()
