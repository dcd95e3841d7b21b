"""The one family of errors a user can cause.

Every error a user can trigger (bad option, missing key, unreachable server, ...)
is an :class:`NbmagicError` whose message says what to do next. Entry points
(magics, CLI) catch this family and print the message alone, never a traceback.
"""

from __future__ import annotations

from typing import Any


class NbmagicError(Exception):
    """Base class: the message is complete and user-facing."""

    #: Partial work (cells, trajectory, answer so far) that survives the failure.
    partial: Any = None

    def __init__(self, message: str, *, partial: Any = None) -> None:
        super().__init__(message)
        self.partial = partial

    @property
    def message(self) -> str:
        return str(self.args[0]) if self.args else ""


class ConfigError(NbmagicError):
    """An option, spec or setting that cannot be used as given."""


class BackendNotInstalledError(NbmagicError):
    """A backend's optional dependency is missing (``pip install nbmagic[local]``...)."""


class NoModelAvailableError(NbmagicError):
    """No model was given and none could be found or fetched."""


class ModelNotFoundError(NbmagicError):
    """The server or disk has no model by that name."""


class AuthenticationError(NbmagicError):
    """API key missing or rejected."""


class ServerUnreachableError(NbmagicError):
    """Connection refused, DNS failure, or connection dropped."""


class RateLimitError(NbmagicError):
    """HTTP 429 after the SDK's retries were spent."""


class ServerError(NbmagicError):
    """HTTP 5xx (or another unexpected API status) after retries."""


class ModelTimeoutError(NbmagicError):
    """The model did not answer within the timeout."""


class MalformedOutputError(NbmagicError):
    """The model answered, but not in a form the engine can use."""


class BudgetExceededError(NbmagicError):
    """A budget (calls, tokens, time) ran out; ``partial`` holds what was done."""


class RunInterrupted(NbmagicError):
    """The user interrupted a run; ``partial`` holds what was finished."""


class CheckpointMismatchError(NbmagicError):
    """A link checkpoint does not fit the agents it is loaded for."""


class NotebookExistsError(NbmagicError):
    """Refused to overwrite an existing notebook without ``force``."""
