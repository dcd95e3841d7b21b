"""Interpolation, option splitting and option → engine kwargs, without a shell."""

from __future__ import annotations

import argparse

import pytest

from nbmagic.config import settings
from nbmagic.errors import ConfigError
from nbmagic.magic_args import (
    agent_kwargs,
    check_variable_name,
    interpolate,
    parse_options,
    require_text,
    resolve_contexts,
    split_options,
)


class Box:
    shape = (3, 4)


NS = {"x": 41, "name": "sales", "pi": 3.14159, "cfg": {"k": "v"}, "In": ["", "a = 1", "b = 2"],
      "Out": {2: "two"}, "box": Box()}


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("value {x}", "value 41"),
        ("{name}.csv has {box.shape}", "sales.csv has (3, 4)"),
        ("cell 1 was {In[1]}, out 2 was {Out[2]}", "cell 1 was a = 1, out 2 was two"),
        ("{pi:.2f} and {name!r}", "3.14 and 'sales'"),
        ("{cfg['k']}", "v"),
        ("unknown {nope} stays", "unknown {nope} stays"),
        ("missing attr {box.nope} and index {In[9]} stay", "missing attr {box.nope} and index {In[9]} stay"),
        ("escapes {{x}} and }}", "escapes {x} and }"),
        ('json {"a": 1} and set { 1, 2 } stay', 'json {"a": 1} and set { 1, 2 } stay'),
        ("bad spec {x:zz} stays", "bad spec {x:zz} stays"),
    ],
)
def test_interpolate(text, expected):
    assert interpolate(text, NS) == expected


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser()
    p.add_argument("-c", "--context", action="append")
    p.add_argument("--max-iterations", type=int)
    p.add_argument("--force", action="store_true")
    return p


@pytest.mark.parametrize(
    ("line", "options", "rest"),
    [
        ("--context text How many whales?", "--context text", "How many whales?"),
        ("-c a -c b --force what's up", "-c a -c b --force", "what's up"),
        ("--context=text --max-iterations 3 it's \"quoted\" --not-an-option", "--context=text --max-iterations 3",
         "it's \"quoted\" --not-an-option"),
        ('--context "my var" q', '--context "my var"', "q"),
        ("-- --context is text", "", "--context is text"),
        ("-1 is negative", "", "-1 is negative"),
        ("-ctext how many?", "-ctext", "how many?"),
        ("--bogus question", "--bogus", "question"),
        ("", "", ""),
    ],
)
def test_split_options(line, options, rest):
    assert split_options(line, _parser()) == (options, rest)


def test_interpolation_caps_a_huge_value_and_reports_it():
    cut: list = []
    ns = {"big": "A" * 50_000 + "B" * 50_000, "small": "ok"}
    out = interpolate("{small} then {big}", ns, max_chars=1000, cut=cut)
    assert out.startswith("ok then " + "A" * 500) and out.endswith("B" * 500)
    assert "({big}: 99,000 of 100,000 characters cut here" in out and len(out) < 1200
    assert cut == [("big", 100_000)]
    assert interpolate("{small}", ns, max_chars=1000, cut=cut) == "ok" and len(cut) == 1


def test_parse_options_splits_as_a_shell_does():
    p = _parser()
    p.add_argument("-o", "--output")
    args = parse_options(p, """-o "my analysis.ipynb" --context 'doc' --context=a\\ b""")
    assert args.output == "my analysis.ipynb" and args.context == ["doc", "a b"]
    with pytest.raises(ValueError, match="closing quotation"):
        parse_options(p, '-o "unclosed')


@pytest.mark.parametrize("line", ["- --context text q", "-c a - --force q", "- --max-iterations=3 q"])
def test_a_lone_dash_before_options_is_refused(line):
    with pytest.raises(ConfigError, match="lone '-'"):
        split_options(line, _parser())


def test_a_dash_starting_prose_is_still_text():
    assert split_options("- list the files", _parser()) == ("", "- list the files")


def test_names_contexts_and_text():
    assert check_variable_name("result") == "result"
    assert check_variable_name(None) is None
    for bad in ("1x", "a-b", "class", "a b"):
        with pytest.raises(ConfigError, match="--out needs a Python variable name"):
            check_variable_name(bad)
    assert resolve_contexts(["a, b", "c"], {"a": 1, "b": 2, "c": 3}) == {"a": 1, "b": 2, "c": 3}
    with pytest.raises(ConfigError, match=r"no variable named 'txet'.*Did you mean text"):
        resolve_contexts(["txet"], {"text": "..."})
    with pytest.raises(ConfigError, match="request is empty"):
        require_text("  \n ", "request", "...")


def test_kwargs_follow_options_then_settings():
    ns = argparse.Namespace(model=None, rounds=None, latent_steps=None, mode=None, pattern=None,
                            max_fixes=None, timeout=None, dry_run=False)
    settings.set("rounds", 2)
    settings.set("model", "openai:gpt-4o-mini")
    kw = agent_kwargs(ns)
    assert kw["model"] == "openai:gpt-4o-mini" and kw["mas_options"]["rounds"] == 2
    assert kw["mas_options"]["latent_steps"] == settings.latent_steps and kw["max_fixes"] == 3
    ns.rounds, ns.model, ns.max_fixes = 4, "ollama:qwen2.5:7b", 0
    kw = agent_kwargs(ns)
    assert (kw["model"], kw["mas_options"]["rounds"], kw["max_fixes"]) == ("ollama:qwen2.5:7b", 4, 0)
    ns.rounds = 0
    with pytest.raises(ConfigError, match="--rounds must be a whole number from 1 to 100, not 0"):
        agent_kwargs(ns)
    ns.rounds, ns.latent_steps = 2, 0  # refused here (the settings' bounds), not later inside RecursiveMAS
    with pytest.raises(ConfigError, match="--latent-steps must be a whole number from 1 to 4096, not 0"):
        agent_kwargs(ns)
    ns.latent_steps = None
    # the RLM's options are its settings object's (nbmagic.rlm.settings; see tests/test_settings.py)
    from nbmagic.rlm.settings import RLMSettings

    r = argparse.Namespace(sub_model="openai:x", max_iterations=5)
    s = RLMSettings.from_args(r)
    assert (s.environment, s.max_iterations, s.max_llm_calls, s.sub_model) == ("kernel", 5, 50, "openai:x")
    r.max_llm_calls = -1
    with pytest.raises(ConfigError, match="--max-llm-calls must be a whole number of at least 0, not -1"):
        RLMSettings.from_args(r)
