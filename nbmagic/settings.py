"""Settings objects: one frozen dataclass per engine whose fields say how they are spelled and bounded.

Each field is declared once with :func:`option`: its default, its command-line flag(s), its
help, its type and bounds, the ``%config NbMagic.<name>`` / ``NBMAGIC_<NAME>`` name it may be
configured under, and the old spellings still accepted. Everything else reads that one
declaration, so the entry points cannot drift apart:

- the engine's Python API validates its keyword arguments by building the object
  (``RLMSettings(max_depth=-1)`` raises one :class:`~nbmagic.errors.ConfigError`);
- a magic's ``magic_arguments`` and a CLI's argparse parser are generated from it
  (:meth:`EngineSettings.magic_arguments`, :meth:`EngineSettings.add_arguments`), with the
  real default in the help;
- parsed options become a settings object with :meth:`EngineSettings.from_args`, on top of
  the configured defaults or of a previous run's settings (``%rlm --continue`` is a
  :func:`dataclasses.replace` of the previous run's settings with the options given again);
- :mod:`nbmagic.config` builds its ``%config`` table from the fields that carry a config name.

One validator (:func:`check`) serves all of them. Numeric limits that may be switched off
take ``0`` to mean "no limit" (``--timeout 0`` is no time limit in every engine and entry
point); it is stored as ``None``.

Light to import: the standard library and :mod:`nbmagic.errors` only.
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import os
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, TypeVar

from nbmagic.errors import ConfigError

S = TypeVar("S", bound="EngineSettings")

#: the entry points that may offer a field's flag
MAGIC, CLI = "magic", "cli"


@dataclass(frozen=True)
class Option:
    """How one settings field is spelled, explained and bounded (see :func:`option`)."""

    flags: tuple[str, ...]
    help: str
    kind: type
    low: float | None = None
    high: float | None = None
    choices: tuple[str, ...] | None = None
    optional: bool = False  # None is allowed (no limit, or "decided later")
    zero_is_none: bool = False  # 0 means "no limit": stored as None
    negate: bool = False  # a bool whose flag switches it off (--no-sub-calls -> recursive=False)
    config: str | None = None  # %config NbMagic.<config> and NBMAGIC_<CONFIG>
    deprecated: tuple[str, ...] = ()  # old flags, still accepted with a deprecation message
    metavar: str | None = None
    where: tuple[str, ...] = (MAGIC, CLI)
    unit: str = ""
    default_text: str | None = None  # how the help states a default that is decided at run time

    @property
    def flag(self) -> str | None:
        return next((f for f in self.flags if f.startswith("--")), self.flags[0] if self.flags else None)


def option(
    default: Any,
    *flags: str,
    help: str,
    kind: type | None = None,
    **how: Any,
) -> Any:
    """A settings field: ``default`` plus everything :class:`Option` says about it."""
    if kind is None:
        if default is None:
            raise TypeError("option(None, ...) needs kind=")
        kind = type(default)
    spec = Option(tuple(flags), help, kind, **how)
    if (default is None or spec.zero_is_none) and not spec.optional:  # "no limit" is None too
        spec = dataclasses.replace(spec, optional=True)
    return field(default=default, metadata={"option": spec})


def same_as(settings: type[EngineSettings], name: str) -> Any:
    """A field declared by another engine's settings, taken as it is (flag, help, default, bounds):
    the agent's ``--rounds`` is RecursiveMAS's ``rounds``."""
    f = settings.field_named(name)
    return field(default=f.default, metadata=f.metadata)


def spec_of(f: dataclasses.Field[Any]) -> Option:
    return f.metadata["option"]


def describe(spec: Option) -> str:
    """The kind of value a field takes, in words, for the one error message."""
    if spec.kind is bool:
        return "True or False"
    if spec.choices:
        return "one of " + ", ".join(spec.choices)
    if spec.kind is str:
        return "a string"
    noun = "a whole number" if spec.kind is int else "a number"
    unit = f" of {spec.unit}" if spec.unit else ""
    if spec.low is not None and spec.high is not None:
        text = f"{noun}{unit} from {spec.low:g} to {spec.high:g}"
    elif spec.low is not None:
        text = f"{noun}{unit} of at least {spec.low:g}"
    else:
        text = f"{noun}{unit}"
    if spec.zero_is_none:
        text += " (0: no limit)"
    return text


def check(spec: Option, value: Any, label: str) -> Any:
    """``value`` if it is valid for ``spec`` (``0`` turned into ``None`` where 0 means no limit),
    else one :class:`ConfigError` naming ``label`` (how the caller's user spells the option)."""
    if value is None:
        if spec.optional:
            return None
        raise ConfigError(f"{label} must be {describe(spec)}, not None.")
    if spec.kind is bool:
        ok = isinstance(value, bool)
    elif spec.kind is int:
        ok = isinstance(value, int) and not isinstance(value, bool)
    elif spec.kind is float:
        ok = isinstance(value, int | float) and not isinstance(value, bool) and not math.isnan(value)
    else:
        ok = isinstance(value, spec.kind)
    if ok and spec.kind in (int, float):
        if spec.zero_is_none and value == 0:
            return None
        ok = (spec.low is None or value >= spec.low) and (spec.high is None or value <= spec.high)
    if ok and spec.choices is not None:
        ok = value in spec.choices
    if not ok:
        raise ConfigError(f"{label} must be {describe(spec)}, not {value!r}.")
    return float(value) if spec.kind is float else value


def convert(spec: Option, raw: str, label: str) -> Any:
    """A value written as text (``NBMAGIC_X``, ``%config``) in the field's type, checked."""
    if spec.kind is bool:
        lowered = raw.strip().lower()
        if lowered not in ("1", "0", "true", "false", "yes", "no", "on", "off"):
            raise ConfigError(f"{label} must be {describe(spec)}, not {raw!r}.")
        return check(spec, lowered in ("1", "true", "yes", "on"), label)
    try:
        value = spec.kind(raw)
    except (TypeError, ValueError):
        raise ConfigError(f"{label} must be {describe(spec)}, not {raw!r}.") from None
    return check(spec, value, label)


def deprecated(old: str, new: str) -> None:
    """The one deprecation message for a renamed flag, ``%config`` name or environment variable."""
    warnings.warn(f"{old} is deprecated and will be removed in the next release; use {new}.",
                  FutureWarning, stacklevel=3)


#: old %config / NBMAGIC_ names -> new ones (accepted with a deprecation message for one release)
RENAMED: dict[str, str] = {}
#: values set with ``%config NbMagic.<name>`` (or ``config.settings.<name> = ...``): name -> (value, source).
#: Kept here, below every engine, so an engine reads its configured defaults without importing
#: :mod:`nbmagic.config` (which imports the engines' settings classes to build its table).
EXPLICIT: dict[str, tuple[Any, str]] = {}


def configured_value(name: str, spec: Option, default: Any) -> tuple[Any, str]:
    """(value, where it came from) of one configured name: ``%config`` > ``NBMAGIC_<NAME>`` > default.

    A malformed environment value is reported in the source rather than raised, so a typo in
    the environment shows up where settings are listed instead of failing at start-up.
    """
    if name in EXPLICIT:
        return EXPLICIT[name]
    for env in (f"NBMAGIC_{name.upper()}", *(f"NBMAGIC_{old.upper()}" for old, new in RENAMED.items() if new == name)):
        raw = os.environ.get(env)
        if raw in (None, ""):
            continue
        if env != f"NBMAGIC_{name.upper()}":
            deprecated(env, f"NBMAGIC_{name.upper()}")
        try:
            return convert(spec, raw, env), f"env {env}"
        except ConfigError:
            return default, f"default ({env}={raw!r} ignored: not {describe(spec)})"
    return default, "default"


class _DeprecatedFlag(argparse.Action):
    """An old flag: warns, then stores like the new one."""

    def __init__(self, *args: Any, new: str, store: Any = None, **kwargs: Any) -> None:
        self.new, self.store = new, store
        super().__init__(*args, **kwargs)

    def __call__(self, parser: Any, namespace: Any, values: Any, option_string: str | None = None) -> None:
        deprecated(option_string or self.option_strings[0], self.new)
        setattr(namespace, self.dest, self.store if self.nargs == 0 else values)


@dataclass(frozen=True)
class EngineSettings:
    """Base of every engine's settings: validation on construction, generation of the entry points."""

    def __post_init__(self) -> None:
        for f in self.options():
            object.__setattr__(self, f.name, check(spec_of(f), getattr(self, f.name), f.name))

    # -- the fields --

    @classmethod
    def options(cls) -> Iterator[dataclasses.Field[Any]]:
        return (f for f in dataclasses.fields(cls) if "option" in f.metadata)

    @classmethod
    def field_named(cls, name: str) -> dataclasses.Field[Any]:
        for f in cls.options():
            if f.name == name:
                return f
        raise AttributeError(f"{cls.__name__} has no setting {name!r}")

    def replace(self: S, **changes: Any) -> S:
        """A copy with ``changes`` (validated: the object is frozen, so this is how it changes)."""
        return dataclasses.replace(self, **changes)

    def as_dict(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in self.options()}

    # -- where the values come from --

    @classmethod
    def configured(cls: type[S], **overrides: Any) -> S:
        """The defaults as configured now: ``%config NbMagic.x`` > ``NBMAGIC_X`` > the field's default."""
        values: dict[str, Any] = {}
        for f in cls.options():
            spec = spec_of(f)
            if spec.config is not None and f.name not in overrides:
                value, _source = configured_value(spec.config, spec, f.default)
                if value is not None:
                    values[f.name] = value
        values.update(overrides)
        return cls(**values)

    @classmethod
    def given(cls, args: argparse.Namespace) -> dict[str, Any]:
        """The fields the parsed options set (an option left out is ``None`` there), checked under its flag."""
        out: dict[str, Any] = {}
        for f in cls.options():
            spec = spec_of(f)
            value = getattr(args, f.name, None)
            if value is None or not spec.flags:
                continue
            out[f.name] = check(spec, value, spec.flag or f.name)
        return out

    @classmethod
    def from_args(cls: type[S], args: argparse.Namespace, base: S | None = None) -> S:
        """Settings from parsed options: ``base`` (default: :meth:`configured`) with the options given."""
        return (base if base is not None else cls.configured()).replace(**cls.given(args))

    # -- the parsers --

    @classmethod
    def argument_specs(cls, where: str) -> list[tuple[tuple[str, ...], dict[str, Any]]]:
        """``(flags, add_argument keywords)`` for every field offered at ``where`` (magic or cli),
        deprecated spellings included (hidden from the help)."""
        out: list[tuple[tuple[str, ...], dict[str, Any]]] = []
        for f in cls.options():
            spec = spec_of(f)
            if not spec.flags or where not in spec.where:
                continue
            kwargs: dict[str, Any] = {"dest": f.name, "default": None, "help": _help(spec, f.default)}
            if spec.kind is bool:
                kwargs.update(action="store_const", const=not spec.negate)
            else:
                if spec.choices:
                    kwargs["choices"] = spec.choices
                elif spec.kind in (int, float):
                    kwargs["type"] = spec.kind
                if spec.metavar:
                    kwargs["metavar"] = spec.metavar
            out.append((spec.flags, kwargs))
            for old in spec.deprecated:
                hidden: dict[str, Any] = {"dest": f.name, "default": None, "help": argparse.SUPPRESS,
                                          "action": _DeprecatedFlag, "new": spec.flag}
                if spec.kind is bool:
                    hidden.update(nargs=0, store=not spec.negate)
                elif spec.kind in (int, float):
                    hidden["type"] = spec.kind
                out.append(((old,), hidden))
        return out

    @classmethod
    def add_arguments(cls, parser: argparse.ArgumentParser | Any, where: str = CLI) -> None:
        """Add every field's option to an argparse parser (or argument group)."""
        for flags, kwargs in cls.argument_specs(where):
            parser.add_argument(*flags, **kwargs)

    @classmethod
    def magic_arguments(cls, func: Callable[..., Any]) -> Callable[..., Any]:
        """Decorate a magic with every field's option (apply below ``@magic_arguments()``)."""
        from IPython.core.magic_arguments import argument

        for flags, kwargs in reversed(cls.argument_specs(MAGIC)):
            func = argument(*flags, **kwargs)(func)
        return func


def _help(spec: Option, default: Any) -> str:
    """The help with the real default stated (once, from the field)."""
    text = spec.help.replace("%", "%%")  # argparse formats help with %
    if spec.default_text is not None:
        shown = spec.default_text
    elif spec.kind is bool:
        return text
    elif default is None:
        shown = "no limit" if spec.zero_is_none else None
    else:
        shown = f"{default:g}" if isinstance(default, float) else str(default)
    extra = " (0: no limit)" if spec.zero_is_none and default is not None else ""
    return f"{text} (default: {shown}{extra})" if shown else text
