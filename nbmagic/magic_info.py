"""``%nbmagic status | models | doctor | config | help``: small reports, printed as text.

Separate from :mod:`nbmagic.magics` so the magics class stays a parser and a
switchboard. Each command takes the :class:`~nbmagic.magics.NbMagic` instance and
the remaining words, and prints; nothing here changes state.
"""

from __future__ import annotations

import argparse
import json
import os
import urllib.error
import urllib.request
from collections.abc import Callable
from typing import Any, NoReturn

from IPython.core.error import UsageError

import nbmagic
from nbmagic.config import settings
from nbmagic.secrets import redact

HELP = """\
nbmagic {version}: recursive LLM agents in the notebook.

  %%agent [options]          the cell body is a request: plan, write and run cells below
  %agent [options] REQUEST   the same on one line
  %rlm [options] QUESTION    ask about long data: --context VAR (repeatable)
  %%rlm [options]            the cell body is the question
  %nbmagic status            model, renderer, notebook link, last run
  %nbmagic models            which models can be used and how the default is chosen
  %nbmagic doctor            devices, backends and the default model
  %nbmagic config            effective settings and where each came from
  %nbmagic help              this text

Prompts interpolate {{var}}, {{df.shape}}, {{In[3]}}, {{Out[3]}}; {{{{ and }}}} are literal braces.
Defaults: %config NbMagic.model = "openai:gpt-4o-mini" (or NBMAGIC_MODEL); see %nbmagic config.
Full option lists: %%agent?  %rlm?
"""


def cmd_help(magics: Any, words: list[str]) -> None:
    print(HELP.format(version=nbmagic.__version__))


def config_rows(magics: Any) -> list[tuple[str, str, str]]:
    """(name, value, source) for every setting plus the renderer choice."""
    rows = [(s.name, repr(s.value), s.source) for s in settings.explain()]
    from nbmagic.ui.select import resolve

    choice = getattr(magics, "renderer", "auto")
    try:
        kind, why = resolve(choice, magics.shell)
    except Exception as exc:  # an invalid NBMAGIC_RENDERER: show it, do not fail the report
        kind, why = "plain", f"error: {exc}"
    source = {"option": "%config", "detected": "detected"}.get(why, f"env {why}")
    rows.append(("renderer", repr(kind), source))
    return rows


def cmd_config(magics: Any, words: list[str]) -> None:
    rows = config_rows(magics)
    width = max(len(r[0]) for r in rows)
    vwidth = min(48, max(len(r[1]) for r in rows))
    print("nbmagic settings (set with %config NbMagic.<name> = value, or NBMAGIC_<NAME>):")
    for name, value, source in rows:
        print(f"  {name:<{width}}  {redact(value):<{vwidth}}  [{source}]")


def _default_resolution() -> Any:
    from nbmagic.llm.specs import resolve_default

    return resolve_default()


def cmd_status(magics: Any, words: list[str]) -> None:
    res = _default_resolution()
    print(f"nbmagic {nbmagic.__version__}")
    print(f"  model:    {redact(str(res.spec))}  ({res.reason})")
    if res.hub and res.hub not in res.reason:  # the embedded model serves: why not the hub's coder
        print(f"  hub:      {redact(res.hub)}")
    rows = {r[0]: r for r in config_rows(magics)}
    print(f"  renderer: {rows['renderer'][1].strip(chr(39))}  ({rows['renderer'][2]})")
    print(f"  cells go: {_sink_description(magics.shell)}")
    last = getattr(magics, "last", None)
    if last is not None:
        print(f"  last run: {last.summary}")


def _sink_description(shell: Any) -> str:
    try:
        from nbmagic.notebook import live
    except Exception:
        return "one new code cell below (set_next_input)"
    if live.frontend_present(shell):
        return "inserted live below the running cell (nbmagic JupyterLab extension)"
    if live.executing_cell_id(shell):
        return "one new code cell below (the nbmagic frontend extension did not answer)"
    return "one new code cell below (set_next_input), or a file with -o NAME.ipynb"


def _served_models(base_url: str, timeout: float = 2.0) -> list[str] | str:
    try:
        with urllib.request.urlopen(base_url.rstrip("/") + "/models", timeout=timeout) as resp:
            payload = json.load(resp)
    except (OSError, ValueError, urllib.error.URLError) as exc:
        return f"not reachable ({type(exc).__name__})"
    return [str(m.get("id")) for m in payload.get("data", []) if m.get("id")]


def cmd_models(magics: Any, words: list[str]) -> None:
    from nbmagic.llm.specs import SPEC_HELP, ollama_host, ollama_models, parse_spec

    res = _default_resolution()
    print(f"default model: {redact(str(res.spec))}  ({res.reason})")
    for step in res.tried:
        print(f"  tried: {step}")
    for name in ("model", "sub_model"):
        s = settings.get(name)
        if not s.value:
            continue
        try:
            spec = parse_spec(str(s.value))
        except Exception as exc:
            print(f"{name}: {s.value!r} is not usable: {exc}")
            continue
        if spec.base_url:
            served = _served_models(spec.base_url)
            shown = ", ".join(served) if isinstance(served, list) else served
            print(f"{name} server {spec.base_url}: {shown}")
    host = ollama_host()
    local = ollama_models(host)
    print(f"ollama at {host}: {', '.join(local) if local else 'not answering'}")
    print(f"OPENAI_API_KEY: {'set' if os.environ.get('OPENAI_API_KEY') else 'not set'}")
    print(SPEC_HELP)


class _OneLineParser(argparse.ArgumentParser):
    """argparse, but a bad option is IPython's one ``UsageError:`` line, not usage text and an exit."""

    def error(self, message: str) -> NoReturn:
        raise UsageError(f"{self.prog}: {message}")


def cmd_doctor(magics: Any, words: list[str]) -> None:
    """The CLI's doctor report (``python -m nbmagic doctor``), with the same options."""
    from nbmagic.llm import doctor

    parser = _OneLineParser(prog="%nbmagic doctor")
    doctor.add_arguments(parser)
    try:
        args = parser.parse_args(words)
    except SystemExit:  # -h printed the help
        return
    doctor.run(args)


COMMANDS: dict[str, Callable[[Any, list[str]], None]] = {
    "status": cmd_status,
    "models": cmd_models,
    "doctor": cmd_doctor,
    "config": cmd_config,
    "help": cmd_help,
}
