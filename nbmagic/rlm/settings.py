"""The RLM's settings, declared once: :class:`RLMSettings`.

``RLM(**kwargs)``, ``%rlm``'s options, ``python -m nbmagic rlm``'s parser and the
``%config NbMagic.*`` names of the RLM all come from the fields below (see
:mod:`nbmagic.settings`), so a new option is one field here. ``--continue`` replaces the
previous run's settings with the options given again (:meth:`RLMSettings.replace`).

Limits that can be switched off take ``0`` (or ``None`` in Python) for "no limit".
A leaf module: it imports only the settings machinery.
"""

from __future__ import annotations

from dataclasses import dataclass

from nbmagic.settings import CLI, MAGIC, EngineSettings, option

ENVIRONMENTS = ("kernel", "subprocess")
#: how a run answers: read the data directly, recurse in the REPL, or choose (nbmagic.rlm.direct)
STRATEGIES = ("auto", "direct", "repl")
#: the root's first REPL turn: written freely, or one helper call the root only picks (nbmagic.rlm.first_turn)
FIRST_TURNS = ("auto", "free", "helper")


@dataclass(frozen=True)
class RLMSettings(EngineSettings):
    """Everything an :class:`~nbmagic.rlm.agent.RLM` is configured with (models may also be objects:
    the RLM keeps those apart, the settings hold spec strings)."""

    model: str | None = option(None, "-m", "--model", kind=str, config="model",
                               help="root model spec (writes the code)", default_text="the default model")
    sub_model: str | None = option(None, "--sub-model", kind=str, config="sub_model",
                                   help="model for llm_query sub-calls", default_text="the root model")
    environment: str = option("kernel", "--repl", choices=ENVIRONMENTS, config="repl", deprecated=("--environment",),
                              help="where the model's code runs: this process's namespace (kernel) or a "
                                   "separate worker process (subprocess)")
    max_iterations: int = option(20, "--max-iterations", low=1, config="max_iterations",
                                 help="code/observe iterations")
    max_llm_calls: int | None = option(50, "--max-llm-calls", low=0, optional=True, config="max_llm_calls",
                                       help="sub-call budget for the query (None in Python: no limit)")
    max_tokens: int | None = option(None, "--max-tokens", kind=int, low=0, zero_is_none=True,
                                    help="token budget for the whole query")
    timeout: float | None = option(None, "--timeout", kind=float, low=0, zero_is_none=True, unit="seconds",
                                   help="wall-clock seconds the whole query may take")
    max_output_chars: int = option(10_000, "--max-output-chars", low=1, config="max_output_chars",
                                   help="REPL output shown to the root model per turn")
    max_depth: int = option(1, "--max-depth", low=0, help="recursion depth for rlm_query")
    trajectory_path: str | None = option(None, "--trajectory", kind=str, metavar="PATH.jsonl",
                                         help="also write the trajectory as JSONL")
    turn_timeout: float | None = option(60.0, "--turn-timeout", low=0, zero_is_none=True, unit="seconds",
                                        help="seconds one turn's code may run")
    max_concurrency: int = option(16, low=1, help="parallel sub-calls of llm_query_batched")
    memory_limit_mb: int | None = option(4096, low=0, zero_is_none=True,
                                         help="the subprocess REPL's address-space limit in MB")
    temperature: float | None = option(None, kind=float, low=0, help="sampling temperature of the root model")
    sub_max_tokens: int | None = option(None, kind=int, low=0, zero_is_none=True, help="longest sub-call reply")
    root_max_tokens: int | None = option(None, kind=int, low=0, zero_is_none=True, help="longest root reply")
    recursive: bool = option(True, "--no-sub-calls", negate=True,
                             help="no llm_query/rlm_query in the REPL: code alone answers")
    max_errors: int | None = option(None, "--max-errors", kind=int, low=0, zero_is_none=True,
                                    help="stop after N failing turns in a row")
    max_cost_usd: float | None = option(None, "--max-cost", kind=float, low=0, zero_is_none=True, metavar="USD",
                                        unit="US dollars", help="cost budget in US dollars (priced models)")
    context_window: int | None = option(None, "--context-window", kind=int, low=256, metavar="TOKENS",
                                        help="the root model's window, for history compaction",
                                        default_text="what the model reports")
    compact_threshold: float = option(0.8, low=0.01, high=1.0,
                                      help="share of the window at which old turns are summarised")
    native_tools: bool = option(True, "--fenced-code", negate=True,
                                help="```python blocks even where the model supports tool calls")
    max_subagent_depth: int = option(0, "--max-subagent-depth", low=0, metavar="N",
                                     help="let the code spawn_agents() on forks of its REPL, N levels deep (0: off)")
    max_subagents: int = option(8, low=1, help="sub-agents one spawn_agents() call may start")
    strategy: str = option("auto", "--strategy", choices=STRATEGIES,
                           help="read the data directly, recurse in the REPL, or choose: direct when the data fits "
                                "the root's window and reading it costs less than recursing")
    first_turn: str = option("auto", "--first-turn", choices=FIRST_TURNS, config="rlm_first_turn",
                             help="the root's first REPL turn: written freely, or one helper call on the question "
                                  "that the root only picks (helper); auto: helper for local (gguf, hf) roots")


@dataclass(frozen=True)
class QueryOptions(EngineSettings):
    """Per-question options both entry points take (not part of an RLM's configuration)."""

    schema: str | None = option(None, "--schema", kind=str, metavar="JSON|FILE.json|MODEL",
                                help="the answer's shape: JSON schema text, a .json file, or (in a notebook) "
                                     "the name of a pydantic model", where=(MAGIC, CLI))
