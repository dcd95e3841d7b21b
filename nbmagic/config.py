"""Effective settings and where each value came from.

One process-wide :data:`settings` object holds defaults for every engine. Values
come, lowest to highest priority, from built-in defaults, ``NBMAGIC_*``
environment variables, and explicit assignment (the magics' ``%config NbMagic.x``
writes here with source ``"%config"``). ``settings.explain()`` feeds
``%nbmagic config`` and ``python -m nbmagic doctor``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

from nbmagic.errors import ConfigError

#: name -> (default, type, help)
_SPECS: dict[str, tuple[Any, type, str]] = {
    "model": (None, str, "default model spec, e.g. openai:gpt-4o-mini or hf:Qwen/Qwen2.5-0.5B-Instruct"),
    "sub_model": (None, str, "model for RLM sub-calls (defaults to the model)"),
    "rounds": (3, int, "RecursiveMAS rounds"),
    "latent_steps": (32, int, "latent thoughts per agent per round"),
    "mode": ("auto", str, "auto | latent | text"),
    "pattern": ("sequential", str, "sequential | mixture | distillation | deliberation"),
    "max_fixes": (3, int, "attempts to fix a failing cell"),
    "cell_timeout": (120.0, float, "seconds a generated cell may run"),
    "max_iterations": (20, int, "RLM iterations"),
    "max_llm_calls": (50, int, "RLM sub-calls per query"),
    "max_output_chars": (10_000, int, "REPL output shown to the root model"),
    "repl": ("kernel", str, "RLM REPL environment: kernel | subprocess"),
    "request_timeout": (120.0, float, "seconds to wait for one model reply"),
    "allow_download": (None, bool, "download the default coder model (~1 GB) without asking: True | False (None: ask)"),
    "keep_embedded": (False, bool, "keep the embedded model as the default even when a better one can be downloaded"),
}

_KIND_NAMES = {str: "a string", int: "a whole number", float: "a number", bool: "True or False"}
_TRUE, _FALSE = ("1", "true", "yes", "on"), ("0", "false", "no", "off")


def _convert(kind: type, value: Any) -> Any:
    """``kind(value)``, except that a bool setting reads "1/true/yes/on" and "0/false/no/off"."""
    if kind is not bool:
        return kind(value)
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in _TRUE or text in _FALSE:
        return text in _TRUE
    raise ValueError(value)

#: name -> (lowest, highest) allowed value: checked here for every entry point (magics, CLI,
#: engines, %config, environment) so a bad bound fails at once with one message, not later
#: deep inside an engine
_BOUNDS: dict[str, tuple[int, int]] = {
    "rounds": (1, 100),
    "latent_steps": (1, 4096),
}


def check_value(name: str, value: Any, label: str | None = None) -> Any:
    """``value`` if it is a valid ``name`` setting, else one :class:`ConfigError` naming ``label``.

    ``label`` is how the caller's user spells the option (``--latent-steps``, ``latent_steps``).
    """
    if name not in _SPECS:
        raise AttributeError(f"unknown nbmagic setting {name!r}; known: {', '.join(_SPECS)}")
    kind, what = _SPECS[name][1], label or name
    if name in _BOUNDS:
        low, high = _BOUNDS[name]
        if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
            raise ConfigError(f"{what} must be a whole number from {low} to {high}, not {value!r}.")
    elif (kind is bool and value is not None and not isinstance(value, bool)) or (value is not None and not isinstance(value, kind) and not (kind is float and isinstance(value, int))):
        raise ConfigError(f"{what} must be {_KIND_NAMES[kind]}, not {value!r}.")
    return value


@dataclass(frozen=True)
class Setting:
    name: str
    value: Any
    source: str  # "default" | "env NBMAGIC_X" | "%config" | "argument"
    help: str


class Settings:
    """Attribute access gives the effective value (explicit > environment > default)."""

    def __init__(self) -> None:
        object.__setattr__(self, "_explicit", {})

    def __getattr__(self, name: str) -> Any:
        return self.get(name).value

    def __setattr__(self, name: str, value: Any) -> None:
        self.set(name, value)

    def get(self, name: str) -> Setting:
        if name not in _SPECS:
            raise AttributeError(f"unknown nbmagic setting {name!r}; known: {', '.join(_SPECS)}")
        default, kind, help_ = _SPECS[name]
        explicit: dict[str, tuple[Any, str]] = self._explicit
        if name in explicit:
            value, source = explicit[name]
            return Setting(name, value, source, help_)
        env = f"NBMAGIC_{name.upper()}"
        raw = os.environ.get(env)
        if raw not in (None, ""):
            try:
                return Setting(name, check_value(name, _convert(kind, raw)), f"env {env}", help_)
            except ValueError:  # say so where settings are shown, rather than fail at startup
                return Setting(name, default, f"default ({env}={raw!r} ignored: not {_KIND_NAMES[kind]})", help_)
            except ConfigError:
                low, high = _BOUNDS[name]
                return Setting(name, default, f"default ({env}={raw!r} ignored: not from {low} to {high})", help_)
        return Setting(name, default, "default", help_)

    def set(self, name: str, value: Any, source: str = "%config") -> None:
        if name not in _SPECS:
            raise AttributeError(f"unknown nbmagic setting {name!r}; known: {', '.join(_SPECS)}")
        if value is None:
            self._explicit.pop(name, None)
            return
        kind = _SPECS[name][1]
        try:
            converted = _convert(kind, value)
        except (TypeError, ValueError):
            raise ConfigError(f"nbmagic setting {name} must be {_KIND_NAMES[kind]}, not {value!r}.") from None
        self._explicit[name] = (check_value(name, converted, f"nbmagic setting {name}"), source)

    def reset(self) -> None:
        self._explicit.clear()

    def explain(self) -> list[Setting]:
        return [self.get(name) for name in _SPECS]


settings = Settings()
