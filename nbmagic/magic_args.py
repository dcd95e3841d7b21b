"""Plain helpers behind the magics: prompt interpolation, option splitting, option → engine kwargs.

The RLM's options need no helper here: :class:`~nbmagic.rlm.settings.RLMSettings` declares them
and turns parsed options into settings itself.

Kept apart from :mod:`nbmagic.magics` so they can be tested without a shell and so the
magics module stays a thin layer of parsing and wiring. Nothing here imports IPython
widgets, the engines, or any heavy library.
"""

from __future__ import annotations

import argparse
import difflib
import keyword
import os
import re
import shlex
from collections.abc import Mapping
from typing import Any

from nbmagic.errors import ConfigError

# --- interpolation ------------------------------------------------------------------------

# {name}, {name.attr}, {name[3]}, {name['key']}, with optional !r/!s/!a and :spec
_FIELD = re.compile(
    r"""\{\{|\}\}|\{(?P<expr>[A-Za-z_]\w*(?:\.[A-Za-z_]\w*|\[-?\d+\]|\['[^'\]]*'\]|\["[^"\]]*"\])*)"""
    r"""(?:!(?P<conv>[rsa]))?(?::(?P<spec>[^{}]*))?\}"""
)
_PART = re.compile(r"""\.(?P<attr>[A-Za-z_]\w*)|\[(?P<index>-?\d+)\]|\[(?P<q>['"])(?P<key>.*?)(?P=q)\]""")

_MISSING = object()


def _lookup(expr: str, namespace: Mapping[str, Any]) -> Any:
    root = re.match(r"[A-Za-z_]\w*", expr)
    assert root is not None
    if root.group(0) not in namespace:
        return _MISSING
    value = namespace[root.group(0)]
    for part in _PART.finditer(expr, root.end()):
        try:
            if part.group("attr") is not None:
                value = getattr(value, part.group("attr"))
            elif part.group("index") is not None:
                value = value[int(part.group("index"))]
            else:
                value = value[part.group("key")]
        except Exception:
            return _MISSING
    return value


#: characters one ``{var}`` may put into a prompt; the rest is cut out of the middle (marked)
INTERPOLATION_MAX_CHARS = 20_000


def _capped(expr: str, text: str, limit: int, cut: list[tuple[str, int]] | None) -> str:
    if limit <= 0 or len(text) <= limit:
        return text
    if cut is not None:
        cut.append((expr, len(text)))
    first = limit // 2
    last = limit - first
    omitted = len(text) - limit
    return (text[:first] + f"\n… ({{{expr}}}: {omitted:,} of {len(text):,} characters cut here, too large for a prompt) …\n"
            + text[len(text) - last :])


def interpolation_warning(cut: list[tuple[str, int]], limit: int = INTERPOLATION_MAX_CHARS) -> str:
    """The one warning for a request whose ``{var}`` values were cut."""
    names = ", ".join(f"{{{expr}}} ({size:,} characters)" for expr, size in cut)
    first = cut[0][0].split(".")[0].split("[")[0]
    return (f"{names} too large for a prompt: only {limit:,} characters of each were put into the request "
            f"(its start and end). For large data, query it with %rlm --context {first} instead.")


def interpolate(text: str, namespace: Mapping[str, Any], *, max_chars: int = INTERPOLATION_MAX_CHARS,
                cut: list[tuple[str, int]] | None = None) -> str:
    """Fill ``{var}`` fields from ``namespace``; leave anything unknown exactly as written.

    Supports attribute and index access (``{df.shape}``, ``{In[3]}``, ``{Out[3]}``,
    ``{cfg['key']}``), conversions and format specs (``{x!r}``, ``{pi:.2f}``), and the
    ``{{`` / ``}}`` escapes. Unlike :meth:`str.format`, a name that is not defined, a
    failing lookup, or text that merely contains braces (JSON, set literals) is kept
    verbatim: a prompt should never fail because it mentions ``{braces}``.

    A value longer than ``max_chars`` is cut in the middle with a marker saying so (a
    5 MB log must not be sent whole in every request); ``(expression, length)`` of each
    cut value is appended to ``cut``, for the caller's one warning.
    """

    def replace(m: re.Match[str]) -> str:
        whole = m.group(0)
        if whole == "{{":
            return "{"
        if whole == "}}":
            return "}"
        value = _lookup(m.group("expr"), namespace)
        if value is _MISSING:
            return whole
        conv = m.group("conv")
        if conv == "r":
            value = repr(value)
        elif conv == "a":
            value = ascii(value)
        elif conv == "s":
            value = str(value)
        try:
            return _capped(m.group("expr"), format(value, m.group("spec") or ""), max_chars, cut)
        except Exception:
            return whole

    return _FIELD.sub(replace, text)


# --- splitting "options, then free text" ------------------------------------------------------


def split_options(line: str, parser: argparse.ArgumentParser) -> tuple[str, str]:
    """Split ``--opt value ... free question text`` into (options, question).

    The question after the options is kept verbatim, so apostrophes, quotes and
    ``--`` inside it never confuse a shell-style splitter. ``--`` ends the options
    explicitly. Options must come first, like in ``%timeit``.
    """
    takes_value = {
        opt: action.nargs != 0
        for action in parser._actions
        for opt in action.option_strings
    }
    pos = 0
    n = len(line)
    while True:
        while pos < n and line[pos].isspace():
            pos += 1
        if pos >= n or line[pos] != "-":
            break
        end = pos
        while end < n and not line[end].isspace():
            end += 1
        token = line[pos:end]
        if token == "--":
            return line[:pos].strip(), line[end:].strip()
        if token == "-" and _options_follow(line[end:], takes_value):
            raise ConfigError(
                f"a lone '-' before {line[end:].split()[0]}: the options after it would become the request's text. "
                "Remove the '-', or write '--' where the options end."
            )
        name = token.split("=", 1)[0]
        if len(name) > 2 and not name.startswith("--") and name[:2] in takes_value:
            pos = end  # -cVALUE: a short option with its value attached, as argparse allows
            continue
        if name not in takes_value:
            # not one of ours (a negative number, a dash in prose, a typo): let argparse say so
            if name.startswith("--") or (len(name) == 2 and name[1].isalpha()):
                pos = end
                continue
            break
        pos = end
        if takes_value[name] and "=" not in token:
            pos = _consume_value(line, pos)
    return line[:pos].strip(), line[pos:].strip()


def _options_follow(rest: str, known: Mapping[str, bool]) -> bool:
    """Does ``rest`` start with one of the parser's options (so a lone '-' would swallow it)?"""
    words = rest.split()
    return bool(words) and words[0].split("=", 1)[0] in known


def parse_options(parser: argparse.ArgumentParser, options: str) -> argparse.Namespace:
    """Parse the option part as a shell would split it: quotes group and are removed.

    ``-o "my analysis.ipynb"`` gives the path without its quotes (IPython's own
    splitter keeps them). Unbalanced quotes are a ``ValueError``. On Windows a
    backslash is a path separator, not an escape.
    """
    lexer = shlex.shlex(options, posix=True)
    lexer.whitespace_split = True
    lexer.commenters = ""
    if os.name == "nt":
        lexer.escape = ""
    try:
        argv = list(lexer)
    except ValueError as exc:  # "No closing quotation"
        raise ValueError(str(exc)) from None
    return parser.parse_args(argv)


def _consume_value(line: str, pos: int) -> int:
    n = len(line)
    while pos < n and line[pos].isspace():
        pos += 1
    if pos >= n:
        return pos
    if line[pos] in "\"'":
        quote = line[pos]
        close = line.find(quote, pos + 1)
        return n if close < 0 else close + 1
    while pos < n and not line[pos].isspace():
        pos += 1
    return pos


def quote_args(args: list[str]) -> str:
    """Inverse of the shell-style split, for building an option string in code and tests."""
    return " ".join(shlex.quote(a) for a in args)


# --- validation ---------------------------------------------------------------------------------


def valid_name(name: str) -> bool:
    return name.isidentifier() and not keyword.iskeyword(name)


def check_variable_name(name: str | None, option: str = "--out") -> str | None:
    """A valid Python identifier (not a keyword) or a :class:`ConfigError`."""
    if name is None:
        return None
    if not valid_name(name):
        raise ConfigError(f"{option} needs a Python variable name, got {name!r} (e.g. {option} result).")
    return name


def check_out_target(name: str | None, namespace: Mapping[str, Any], hidden: Mapping[str, Any] | None = None) -> str | None:
    """``--out VAR`` may create VAR or replace an earlier result, never any other value.

    Checked before the run (nothing is sent if it fails) and again when storing,
    since generated cells may bind the name meanwhile. IPython's own names
    (``In``, ``Out``, ``_``, ...) are never targets.
    """
    from nbmagic.ui.summary import MagicResult

    name = check_variable_name(name)
    if name is None:
        return None
    if name in (hidden or {}):
        raise ConfigError(f"--out {name}: {name!r} is IPython's own variable; choose another name (e.g. --out result).")
    if name in namespace and not isinstance(namespace[name], MagicResult):
        kind = type(namespace[name]).__name__
        raise ConfigError(
            f"--out {name} would replace your variable {name} (a {kind}); choose another name, or `del {name}` first."
        )
    return name


def resolve_contexts(
    names: list[str] | None, namespace: Mapping[str, Any], hidden: Mapping[str, Any] | None = None
) -> dict[str, Any]:
    """Look up each ``--context`` variable; a missing one is a clear error naming close matches."""
    found: dict[str, Any] = {}
    for raw in names or []:
        for name in (n.strip() for n in raw.split(",")):
            if not name:
                continue
            if name not in namespace:
                public = [k for k in namespace if not k.startswith("_") and k not in (hidden or {})]
                close = difflib.get_close_matches(name, public, n=3)
                hint = f" Did you mean {', '.join(close)}?" if close else ""
                raise ConfigError(
                    f"--context {name}: no variable named {name!r} in the notebook.{hint} "
                    "Define it first (e.g. text = open('file.txt').read()) or fix the name."
                )
            found[name] = namespace[name]
    return found


def require_text(text: str, what: str, example: str) -> str:
    """Reject an empty request with an example of a good one."""
    if not text or not text.strip():
        raise ConfigError(f"The {what} is empty. Example: {example}")
    return text.strip()


# --- option → engine keyword arguments -------------------------------------------------------------


def mas_options(args: argparse.Namespace) -> dict[str, Any]:
    """The RecursiveMAS options the notebook agent plans with (checked here, before the run:
    a failed run may already have created its --output notebook)."""
    from nbmagic.agent.options import AgentSettings
    from nbmagic.mas.roles import check_pattern

    s = AgentSettings.from_args(args)
    return {"rounds": s.rounds, "latent_steps": s.latent_steps, "mode": s.mode, "pattern": check_pattern(s.pattern)}


def agent_kwargs(args: argparse.Namespace) -> dict[str, Any]:
    """Constructor keyword arguments for :class:`nbmagic.agent.core.NotebookAgent`
    (``--timeout 0`` is no limit, as for ``generate`` and ``%rlm``)."""
    from nbmagic.agent.options import AgentSettings

    s = AgentSettings.from_args(args)
    return {
        "model": s.model,
        "planner": "mas",
        "mas_options": mas_options(args),
        "max_fixes": s.max_fixes,
        "cell_timeout": s.timeout,
        "dry_run": s.dry_run,
    }
