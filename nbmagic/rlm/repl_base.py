"""The REPL interface every environment implements: :class:`Environment` and :class:`TurnOutput`.

See :mod:`nbmagic.rlm.repl` for the environments (``kernel``, ``subprocess``) and how one is chosen.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from nbmagic.errors import ConfigError
from nbmagic.execution.file_audit import CellRecord

#: A helper as the engine defines it: returns (value for the code, notice to print or None).
Helper = Callable[..., tuple[Any, "str | None"]]

@dataclass
class TurnOutput:
    """What one turn of code produced."""

    output: str
    error: str | None = None
    seconds: float = 0.0
    timed_out: bool = False
    exited: bool = False
    restarted: bool = False
    notes: list[str] = field(default_factory=list)
    files: CellRecord | None = None  # what the turn's code did to files (nbmagic.execution.file_audit)


def timeout_message(seconds: float, *, kept: bool) -> str:
    where = (
        "Variables assigned before that point are kept."
        if kept
        else "The worker was killed and restarted: variables from earlier turns are gone; contexts were reloaded."
    )
    return (
        f"\nTimeoutError: this turn ran past its {seconds:g} s limit and was stopped. {where} "
        "Work on smaller pieces, or use llm_query_batched for many sub-calls.\n"
    )


def helpers_note(names: list[str]) -> str:
    return (
        f"Note: {', '.join(sorted(names))} {'is an RLM helper' if len(names) == 1 else 'are RLM helpers'}; "
        "your reassignment was undone and the real helper is back."
    )


class Environment(ABC):
    """One persistent REPL for one RLM invocation."""

    name = "base"

    @abstractmethod
    def start(self, contexts: Mapping[str, Any], helpers: Mapping[str, Helper]) -> None:
        """Bind the contexts as variables and install the helpers."""

    @abstractmethod
    def execute(self, code: str, *, timeout: float | None, max_output_chars: int) -> TurnOutput:
        """Run one turn of code."""

    @abstractmethod
    def export(self) -> dict[str, Any]:
        """The variables the model created (for ``export=True``)."""

    def close(self) -> None:  # noqa: B027 - optional hook, nothing to release by default
        """Release the environment (processes, temporary files)."""

    # -- persistent sessions (a REPL that serves several queries) --

    def add_contexts(self, contexts: Mapping[str, Any]) -> None:
        """Bind more contexts into a started REPL (a follow-up question with new data)."""
        raise ConfigError(f"The {self.name!r} REPL cannot take new contexts after it started; reset the session.")

    def set_helpers(self, helpers: Mapping[str, Helper]) -> None:
        """Point the helper names at a new query's helpers (fresh budget, fresh submit)."""
        raise ConfigError(f"The {self.name!r} REPL cannot serve a second query; reset the session.")

    # -- sub-agents on forked state --

    #: whether forks run their turns in parallel (separate processes) or one after another
    parallel_forks = False

    def fork(self) -> Environment:
        """A started REPL with this one's variables, for a sub-agent."""
        raise ConfigError(f"The {self.name!r} REPL cannot be forked for sub-agents.")

    def adopt(self, values: Mapping[str, Any]) -> list[str]:
        """Bind a sub-agent's variables here (what ``adopt(i)`` merges); the names bound."""
        raise ConfigError(f"The {self.name!r} REPL cannot adopt a sub-agent's variables.")

    def __enter__(self) -> Environment:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


# --- kernel --------------------------------------------------------------------------


def _wrap_helper(name: str, fn: Helper) -> Callable[..., Any]:
    def helper(*args: Any, **kwargs: Any) -> Any:
        value, notice = fn(*args, **kwargs)
        if notice:
            print(notice)
        return value

    helper.__name__ = helper.__qualname__ = name
    helper.__doc__ = getattr(fn, "__doc__", None)
    return helper


def restore_helpers(ns: Any, notes: list[str]) -> None:
    """Put back helpers the code rebound (a turn's start and end), noting it for the model."""
    changed = ns.restore()
    if changed:
        notes.append(helpers_note(changed))


def end_turn(out: Any, ns: Any, notes: list[str], *, timed_out: bool, timeout: float | None) -> None:
    """What every REPL does after a turn's code: say a time-out (variables kept), restore helpers."""
    if timed_out:
        out.write(timeout_message(timeout or 0, kept=True))
    restore_helpers(ns, notes)
