"""Effective settings and where each value came from.

One process-wide :data:`settings` object holds defaults for every engine: the RLM's
configurable fields come from :class:`~nbmagic.rlm.settings.RLMSettings` (their ``config``
name), the agent's and RecursiveMAS's from the table below; every value is checked by
:func:`nbmagic.settings.check`, the validator the engines' settings objects use. Values
come, lowest to highest priority, from built-in defaults, ``NBMAGIC_*``
environment variables, and explicit assignment (the magics' ``%config NbMagic.x``
writes here with source ``"%config"``). ``settings.explain()`` feeds
``%nbmagic config`` and ``python -m nbmagic doctor``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from nbmagic.settings import (
    EXPLICIT,
    RENAMED,
    Option,
    check,
    configured_value,
    convert,
    deprecated,
    spec_of,
)

#: the model layer's settings (the engines' come from their settings objects)
_ENGINE_OPTIONS: dict[str, tuple[Any, Option]] = {
    "request_timeout": (120.0, Option((), "seconds to wait for one model reply", float, low=0.001)),
    "allow_download": (None, Option((), "download the default coder model (~1 GB) without asking: True | False "
                                        "(None: ask)", bool, optional=True)),
    "keep_embedded": (False, Option((), "keep the embedded model as the default even when a better one can be "
                                        "downloaded", bool)),
}



def _table() -> dict[str, tuple[Any, Option]]:
    """name -> (default, option): the RLM's configurable fields, then the other engines' settings."""
    from nbmagic.agent.options import AgentSettings
    from nbmagic.mas.team import MASSettings
    from nbmagic.rlm.settings import RLMSettings

    def declared(cls: Any) -> dict[str, tuple[Any, Option]]:
        return {spec_of(f).config: (f.default, spec_of(f)) for f in cls.options() if spec_of(f).config}

    table: dict[str, tuple[Any, Option]] = {}
    for cls in (AgentSettings, MASSettings, RLMSettings):  # a name two engines share is declared alike
        for name, entry in declared(cls).items():
            table.setdefault(name, entry)
    first = {k: table.pop(k) for k in ("model", "sub_model")}
    return {**first, **table, **_ENGINE_OPTIONS}


_SPECS: dict[str, tuple[Any, Option]] = _table()


def check_value(name: str, value: Any, label: str | None = None) -> Any:
    """``value`` if it is a valid ``name`` setting, else one :class:`ConfigError` naming ``label``.

    ``label`` is how the caller's user spells the option (``--latent-steps``, ``latent_steps``).
    """
    return check(_spec(name)[1], value, label or name)


def _spec(name: str) -> tuple[Any, Option]:
    if name in RENAMED:
        deprecated(f"the nbmagic setting {name}", RENAMED[name])
        name = RENAMED[name]
    if name not in _SPECS:
        raise AttributeError(f"unknown nbmagic setting {name!r}; known: {', '.join(_SPECS)}")
    return _SPECS[name]


@dataclass(frozen=True)
class Setting:
    name: str
    value: Any
    source: str  # "default" | "env NBMAGIC_X" | "%config" | "argument"
    help: str


class Settings:
    """Attribute access gives the effective value (explicit > environment > default)."""

    def __getattr__(self, name: str) -> Any:
        return self.get(name).value

    def __setattr__(self, name: str, value: Any) -> None:
        self.set(name, value)

    def get(self, name: str) -> Setting:
        if name in RENAMED:
            _spec(name)  # the deprecation message
            name = RENAMED[name]
        default, spec = _spec(name)
        value, source = configured_value(name, spec, default)
        return Setting(name, value, source, spec.help)

    def set(self, name: str, value: Any, source: str = "%config") -> None:
        if name in RENAMED:
            _spec(name)
            name = RENAMED[name]
        _default, spec = _spec(name)
        if value is None:
            EXPLICIT.pop(name, None)
            return
        label = f"nbmagic setting {name}"
        converted = convert(spec, value, label) if isinstance(value, str) and spec.kind is not str else value
        if spec.kind is float and isinstance(converted, int) and not isinstance(converted, bool):
            converted = float(converted)
        EXPLICIT[name] = (check(spec, converted, label), source)

    def reset(self) -> None:
        EXPLICIT.clear()

    def explain(self) -> list[Setting]:
        return [self.get(name) for name in _SPECS]

    def names(self) -> list[str]:
        return list(_SPECS)


settings = Settings()
