"""One settings object per engine: the magic, the CLI, %config and the Python API read the same fields."""

from __future__ import annotations

import argparse
import dataclasses
import re
from typing import Any

import pytest

from nbmagic.config import settings as configured
from nbmagic.errors import ConfigError
from nbmagic.rlm.agent import RLM
from nbmagic.rlm.settings import RLMSettings
from nbmagic.settings import spec_of


def _cli_parser() -> argparse.ArgumentParser:
    from nbmagic.cli import build_parser

    sub = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    return sub.choices["rlm"]


def _actions(parser: argparse.ArgumentParser) -> dict[str, argparse.Action]:
    return {flag: a for a in parser._actions for flag in a.option_strings}


def test_magic_and_cli_offer_every_shared_option_with_the_same_meaning_and_default() -> None:
    from nbmagic.magics import NbMagic

    magic, cli = _actions(NbMagic.rlm.parser), _actions(_cli_parser())
    for f in RLMSettings.options():
        spec = spec_of(f)
        for flag in spec.flags:
            m, c = magic[flag], cli[flag]
            assert (m.dest, m.type, m.choices, m.const, m.default) == (c.dest, c.type, c.choices, c.const, c.default)
            assert m.help == c.help and m.default is None  # "not given": the field's default applies
            if f.default is not None and spec.kind is not bool:
                assert f"default: {f.default:g}" in m.help if isinstance(f.default, float) else f"default: {f.default}" in m.help
    # the drift the issue found: --max-depth said "default 1" and passed None; --schema meant two things
    assert "(default: 1)" in magic["--max-depth"].help
    assert magic["--schema"].help == cli["--schema"].help and ".json" in magic["--schema"].help


def test_parsed_options_become_the_same_settings_in_magic_and_cli() -> None:
    from nbmagic.magics import NbMagic

    argv = ["--max-depth", "2", "--timeout", "0", "--no-sub-calls", "--repl", "subprocess", "--max-cost", "0.5"]
    from_magic = RLMSettings.from_args(NbMagic.rlm.parser.parse_args(argv))
    from_cli = RLMSettings.from_args(_cli_parser().parse_args(["q", *argv]))
    assert from_magic == from_cli
    assert (from_cli.max_depth, from_cli.timeout, from_cli.recursive, from_cli.environment) == (2, None, False, "subprocess")
    assert RLMSettings.from_args(NbMagic.rlm.parser.parse_args([])) == RLMSettings()  # defaults stated once


def test_timeout_zero_means_no_limit_everywhere() -> None:
    from nbmagic import magic_args as ma
    from nbmagic.magics import NbMagic

    assert RLM("openai-compat:m@http://127.0.0.1:9/v1", timeout=0).timeout is None
    assert RLMSettings.from_args(_cli_parser().parse_args(["q", "--timeout", "0"])).timeout is None
    agent_args = NbMagic.agent.parser.parse_args(["--timeout", "0"])
    assert ma.agent_kwargs(agent_args)["cell_timeout"] is None  # %%agent refused it before
    for bad in (-1, float("nan")):
        with pytest.raises(ConfigError, match="timeout must be a number of seconds of at least 0 \\(0: no limit\\)"):
            RLM(timeout=bad)


def test_one_validator_one_message_for_the_python_api() -> None:
    for kwargs, message in [
        ({"max_iterations": 0}, "max_iterations must be a whole number of at least 1, not 0"),
        ({"max_depth": True}, "max_depth must be a whole number of at least 0, not True"),
        ({"recursive": "yes"}, "recursive must be True or False, not 'yes'"),
        ({"compact_threshold": 1.5}, "compact_threshold must be a number from 0.01 to 1, not 1.5"),
        ({"environment": "docker"}, "environment must be one of kernel, subprocess"),
    ]:
        with pytest.raises(ConfigError, match=re.escape(message)):
            RLM(**kwargs)
    with pytest.raises(TypeError, match="max_iteration"):
        RLM(max_iteration=3)


def test_settings_are_frozen_and_replace_validates() -> None:
    s = RLMSettings(max_iterations=5)
    with pytest.raises(dataclasses.FrozenInstanceError):
        s.max_iterations = 6  # type: ignore[misc]
    assert s.replace(max_depth=3) == RLMSettings(max_iterations=5, max_depth=3)
    with pytest.raises(ConfigError, match="max_depth must be"):
        s.replace(max_depth=-2)
    rlm = RLM(settings=s, max_depth=2)
    assert (rlm.settings.max_iterations, rlm.max_depth) == (5, 2)


def test_config_names_come_from_the_settings_fields() -> None:
    from nbmagic.magics import NbMagic

    traits = NbMagic.class_traits(config=True)
    for f in RLMSettings.options():
        name = spec_of(f).config
        if name:
            assert name in traits
            assert traits[name].help == spec_of(f).help or name == "model"  # model: the agent's wording
    configured.max_iterations = 7
    try:
        assert RLM().max_iterations == 7 and RLMSettings.configured().max_iterations == 7
        with pytest.raises(ConfigError, match="nbmagic setting max_iterations must be a whole number of at least 1"):
            configured.max_iterations = 0
    finally:
        configured.reset()


def test_a_renamed_flag_still_works_with_a_deprecation_message() -> None:
    with pytest.warns(FutureWarning, match="--environment is deprecated .* use --repl"):
        args = _cli_parser().parse_args(["q", "--environment", "subprocess"])
    assert RLMSettings.from_args(args).environment == "subprocess"


def test_a_renamed_config_name_and_variable_still_work(monkeypatch: pytest.MonkeyPatch) -> None:
    from nbmagic import config

    monkeypatch.setitem(config.RENAMED, "rlm_iterations", "max_iterations")
    with pytest.warns(FutureWarning, match="rlm_iterations is deprecated .* use max_iterations"):
        configured.rlm_iterations = 9
    try:
        assert configured.max_iterations == 9
    finally:
        configured.reset()
    monkeypatch.setenv("NBMAGIC_RLM_ITERATIONS", "4")
    with pytest.warns(FutureWarning, match="NBMAGIC_RLM_ITERATIONS is deprecated .* use NBMAGIC_MAX_ITERATIONS"):
        assert configured.max_iterations == 4


def test_continue_replaces_the_previous_settings(nbmagic_shell: Any, openai_server: Any) -> None:
    from nbmagic.testing.rlm_scripts import ScriptedRoot, code

    openai_server.set_responder(ScriptedRoot([code("submit(1)"), code("submit(2)")]))
    nbmagic_shell.user_ns["text"] = "abc"
    nbmagic_shell.run_cell("%rlm --context text --max-iterations 4 --max-depth 0 first")
    magics = nbmagic_shell.magics_manager.registry["NbMagic"]
    assert magics.rlm_session.rlm.settings.max_iterations == 4
    nbmagic_shell.run_cell("%rlm --continue --max-iterations 6 second")
    after = magics.rlm_session.rlm.settings
    assert (after.max_iterations, after.max_depth) == (6, 0)  # given again: replaced; not given: kept


def test_agent_and_recursive_mas_settings_share_their_planning_fields() -> None:
    """%%agent and generate take the same options with the real defaults in the help (they said
    "default 3" and passed None before); RecursiveMAS validates with the same fields."""
    from nbmagic.agent.options import AgentSettings
    from nbmagic.magics import NbMagic
    from nbmagic.mas.system import RecursiveMAS
    from nbmagic.mas.team import MASSettings

    sub = next(a for a in __import__("nbmagic.cli", fromlist=["build_parser"]).build_parser()._actions
               if isinstance(a, argparse._SubParsersAction))
    magic, cli = _actions(NbMagic.agent.parser), _actions(sub.choices["generate"])
    for flag in ("--rounds", "--latent-steps", "--max-fixes", "--timeout", "--planner", "--no-answer"):
        assert magic[flag].help == cli[flag].help and magic[flag].dest == cli[flag].dest
    assert "(default: 3)" in magic["--rounds"].help and "(default: 120 (0: no limit))" in magic["--timeout"].help
    assert spec_of(AgentSettings.field_named("rounds")) is spec_of(MASSettings.field_named("rounds"))
    with pytest.raises(ConfigError, match="max_tool_calls must be a whole number from 0 to 20, not 21"):
        RecursiveMAS(model="openai-compat:m@http://127.0.0.1:9/v1", max_tool_calls=21)
    with pytest.raises(ConfigError, match="--max-fixes must be a whole number from 0 to 20, not 21"):
        AgentSettings.from_args(NbMagic.agent.parser.parse_args(["--max-fixes", "21"]))
