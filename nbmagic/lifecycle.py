"""How every engine run ends, written once: :class:`RunLifecycle` and the :class:`EngineResult` protocol.

A run ends one of three ways. It finishes (the engine emits ``Finished`` itself); it fails with an
:class:`~nbmagic.errors.NbmagicError`, which gets the run's partial result attached (``.partial``)
and is reported as a ``Failed`` event; or it is interrupted (Ctrl-C), which is reported the same way
and raised as :class:`~nbmagic.errors.RunInterrupted` carrying the partial result. The RLM
(:class:`~nbmagic.rlm.run.RLMRun`) and RecursiveMAS wrap their work in :meth:`RunLifecycle.guard`;
the notebook agent can adopt it the same way.

:class:`EngineResult` is what the magics and the CLI read from any engine's result (finished or
partial), so they need not guess attribute by attribute.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, Protocol, runtime_checkable

from nbmagic.errors import NbmagicError, RunInterrupted
from nbmagic.events import EventHandler, Failed, emit
from nbmagic.llm.base import Usage


@runtime_checkable
class EngineResult(Protocol):
    """What every engine's result offers (``RLMResult``, ``MASResult``)."""

    answer: Any
    seconds: float
    complete: bool  # False on a partial result carried by an error or an interrupt

    @property
    def total_usage(self) -> Usage:
        """Tokens and calls over every model the run used."""

    @property
    def steps(self) -> list[dict[str, Any]]:
        """The run's record, one dict per step (RLM iterations, RecursiveMAS transcript entries)."""

    @property
    def warnings(self) -> list[str]:
        """What the user must be told about this answer (say, that it was never computed)."""


class RunLifecycle:
    """The failure and interrupt half of a run's ending (see the module docstring).

    ``partial()`` builds the result so far; ``ended(partial, error)`` releases what the run held
    (``error`` is ``None`` for an unexpected exception, which propagates untouched); ``cancel()``
    stops work still in flight in other threads. ``report=False`` (a child run) attaches the
    partial result but leaves reporting, and turning Ctrl-C into ``RunInterrupted``, to the top run.
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
    ) -> None:
        self.engine, self.handler, self.partial = engine, handler, partial
        self.interrupted, self.report, self.ended, self.cancel = interrupted, report, ended, cancel

    def _end(self, partial: Any, error: str | None) -> None:
        if self.ended is not None:
            self.ended(partial, error)

    @contextmanager
    def guard(self) -> Iterator[None]:
        try:
            yield
        except NbmagicError as exc:
            if exc.partial is None:
                exc.partial = self.partial()
            self._end(exc.partial, exc.message)
            if self.report:
                emit(self.handler, Failed(engine=self.engine, message=exc.message, partial=exc.partial))
            raise
        except KeyboardInterrupt:
            if self.cancel is not None:
                self.cancel()
            partial = self.partial()
            self._end(partial, "interrupted")
            if not self.report:
                raise
            emit(self.handler, Failed(engine=self.engine, message="interrupted", partial=partial))
            raise RunInterrupted(self.interrupted(), partial=partial) from None
        except BaseException:
            self._end(None, None)
            raise
