"""What one RLM query produced: :class:`RLMResult` (a leaf: the loop, sessions and forks import it).

It is an :class:`~nbmagic.lifecycle.EngineResult`, like RecursiveMAS's result.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from nbmagic.execution.file_ledger import FileChanges
from nbmagic.llm.base import Usage
from nbmagic.text import clip

#: what a result that never ran code says about itself
NOT_COMPUTED = (
    "not computed: the model never ran code that worked, so this answer is its own guess in prose, "
    "not something computed from the data"
)


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
    computed: bool = True  # False: no code ever ran successfully; the answer is the model's prose
    cost_usd: float | None = None  # None when a model used has no price
    question: str = ""
    exported: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    strategy: dict[str, Any] = field(default_factory=dict)  # direct or repl, and why (nbmagic.rlm.direct)
    #: what the REPL code wrote, deleted, renamed in the working folder (nbmagic.execution.file_ledger)
    files: FileChanges = field(default_factory=FileChanges)

    @property
    def steps(self) -> list[dict[str, Any]]:
        """The trajectory (the :class:`~nbmagic.lifecycle.EngineResult` name for it)."""
        return self.trajectory

    @property
    def warnings(self) -> list[str]:
        """What the user must be told about the answer: that it was never computed."""
        if self.computed:
            return []
        return [n for n in self.notes if n.startswith("not computed")][:1] or [NOT_COMPUTED]

    @property
    def total_usage(self) -> Usage:
        total = Usage()
        for u in self.usage.values():
            total = total + u
        return total

    def __str__(self) -> str:
        return str(self.answer)

    def __repr__(self) -> str:  # the trajectory can be long: keep the repr one line
        answer = clip(repr(self.answer), 200)
        flags = "" if self.complete else ", complete=False"
        flags += ", final_step=True" if self.final_step else ""
        flags += "" if self.computed else ", computed=False"
        return (
            f"RLMResult(answer={answer}, iterations={self.iterations}, llm_calls={self.llm_calls}, "
            f"tokens={self.total_usage.total_tokens}, seconds={self.seconds:.2f}{flags})"
        )
