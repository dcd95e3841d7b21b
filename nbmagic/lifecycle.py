"""How every engine run ends, written once: :class:`RunLifecycle` and the :class:`EngineResult` protocol.

A run ends one of three ways. It finishes (the engine emits ``Finished`` itself); it fails with an
:class:`~nbmagic.errors.NbmagicError`, which gets the run's partial result attached (``.partial``)
and is reported as a ``Failed`` event; or it is interrupted (Ctrl-C), which is reported the same way
and raised as :class:`~nbmagic.errors.RunInterrupted` carrying the partial result. The RLM
(:class:`~nbmagic.rlm.run.RLMRun`), RecursiveMAS and the notebook agent (:class:`~nbmagic.agent.loop.Run`)
wrap their work in :meth:`RunLifecycle.guard`.

:class:`EngineResult` is what the magics and the CLI read from any engine's result (finished or
partial), so they need not guess attribute by attribute; :class:`CellsResult` adds what an engine that
writes notebook cells (the agent) offers besides.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, NoReturn, Protocol, runtime_checkable

from nbmagic.errors import NbmagicError, RunInterrupted
from nbmagic.events import EventHandler, Failed, emit
from nbmagic.llm.base import Usage


@runtime_checkable
class EngineResult(Protocol):
    """What every engine's result offers (``RLMResult``, ``MASResult``, ``AgentResult``)."""

    answer: Any
    seconds: float
    complete: bool  # False on a partial result carried by an error or an interrupt

    @property
    def total_usage(self) -> Usage:
        """Tokens and calls over every model the run used."""

    @property
    def steps(self) -> list[dict[str, Any]]:
        """The run's record, one dict per step (RLM iterations, RecursiveMAS transcript entries, agent trajectory)."""

    @property
    def warnings(self) -> list[str]:
        """What the user must be told about this answer (say, that it was never computed)."""


@runtime_checkable
class CellsResult(EngineResult, Protocol):
    """An engine result that is notebook cells (``AgentResult``): its answer is one of the cells and a
    line of its summary, so a caller shows the summary rather than the bare answer."""

    cells: list[Any]  # nbformat v4 cells, outputs included
    plan: list[str]  # the steps' titles
    summary: str  # a few lines: what was done, what failed, what changed


class RunLifecycle:
    """The failure and interrupt half of a run's ending (see the module docstring).

    ``partial()`` builds the result so far; ``ended(partial, error)`` releases what the run held
    (``error`` is ``None`` for an unexpected exception, which propagates untouched); ``cancel()``
    stops work still in flight in other threads. ``report=False`` (a child run) attaches the
    partial result but leaves reporting, and turning Ctrl-C into ``RunInterrupted``, to the top run.
    ``partial_interrupted`` builds the result so far after an interrupt when it differs (the agent
    marks it interrupted). ``replace=True`` (the agent, whose planner is a RecursiveMAS run) makes the
    run's own partial replace one an inner engine attached, and treats a ``RunInterrupted`` raised
    inside (an inner engine's, or the review's stop button) as this run's interrupt.
    """

    def __init__(
        self,
        engine: str,
        handler: EventHandler | None,
        partial: Callable[[], Any],
        *,
        interrupted: Callable[[], str],
        report: bool = True,
        ended: Callable[[Any, str | None], None] | None = None,
        cancel: Callable[[], None] | None = None,
        partial_interrupted: Callable[[], Any] | None = None,
        replace: bool = False,
    ) -> None:
        self.engine, self.handler, self.partial = engine, handler, partial
        self.interrupted, self.report, self.ended, self.cancel = interrupted, report, ended, cancel
        self.partial_interrupted, self.replace = partial_interrupted or partial, replace

    def _end(self, partial: Any, error: str | None) -> None:
        if self.ended is not None:
            self.ended(partial, error)

    @contextmanager
    def guard(self) -> Iterator[None]:
        try:
            yield
        except NbmagicError as exc:
            if isinstance(exc, RunInterrupted) and self.replace:
                self._stop(exc)  # an inner engine's interrupt, or the review's stop button: this run's too
            if exc.partial is None or self.replace:
                exc.partial = self.partial()
            self._end(exc.partial, exc.message)
            if self.report:
                emit(self.handler, Failed(engine=self.engine, message=exc.message, partial=exc.partial))
            raise
        except KeyboardInterrupt as exc:
            self._stop(exc)
        except BaseException:
            self._end(None, None)
            raise

    def _stop(self, exc: BaseException) -> NoReturn:
        """An interrupt: stop what is in flight, keep the result so far, report it (the top run)."""
        if self.cancel is not None:
            self.cancel()
        partial = self.partial_interrupted()
        self._end(partial, "interrupted")
        if not self.report:
            raise exc
        emit(self.handler, Failed(engine=self.engine, message="interrupted", partial=partial))
        raise RunInterrupted(self.interrupted(), partial=partial) from None
