"""The magics in a real IPython shell and a real kernel, against the loopback server."""

from __future__ import annotations

import pytest

from nbmagic.config import settings
from nbmagic.magics import NbMagic, protect_questions


@pytest.fixture
def shell(ipython_shell, openai_server, tmp_path, monkeypatch):
    """A shell with nbmagic loaded, working in tmp_path, its model on the loopback server."""
    monkeypatch.chdir(tmp_path)
    ipython_shell.run_line_magic("load_ext", "nbmagic")
    ipython_shell.run_cell(f'%config NbMagic.model = "openai-compat:test-model@{openai_server.url}"')
    ipython_shell.run_cell("%config NbMagic.renderer = 'plain'")
    yield ipython_shell
    ipython_shell.config.pop("NbMagic", None)  # %config persists in the (singleton) shell's config


def run(shell, source: str):
    """Run a cell as a user would (history on, so `_` is set); return the ExecutionResult."""
    return shell.run_cell(source, store_history=True)


# --- registration ------------------------------------------------------------------------------


def test_load_and_unload(ipython_shell):
    sh = ipython_shell
    assert sh.find_cell_magic("agent") is None
    sh.run_line_magic("load_ext", "nbmagic")
    for kind, name in (("cell", "agent"), ("line", "agent"), ("cell", "rlm"), ("line", "rlm"), ("line", "nbmagic")):
        assert sh.find_magic(name, kind) is not None, (kind, name)
    assert any(isinstance(c, NbMagic) for c in sh.configurables)
    assert protect_questions in sh.input_transformer_manager.line_transforms
    sh.run_line_magic("unload_ext", "nbmagic")
    for name in ("agent", "rlm", "nbmagic"):
        assert sh.find_line_magic(name) is None
    assert sh.find_cell_magic("agent") is None and sh.find_cell_magic("rlm") is None
    assert not any(isinstance(c, NbMagic) for c in sh.configurables)
    assert protect_questions not in sh.input_transformer_manager.line_transforms
    sh.run_line_magic("load_ext", "nbmagic")  # and again, cleanly
    assert sh.find_cell_magic("agent") is not None


def test_help_shows_every_option(shell, capsys):
    run(shell, "%%agent?")
    agent_help = capsys.readouterr().out
    for opt in ("--model", "--rounds", "--latent-steps", "--mode", "--pattern", "--output", "--force",
                "--dry-run", "--confirm", "--max-fixes", "--timeout", "--out", "--ui"):
        assert opt in agent_help, opt
    run(shell, "%rlm?")
    rlm_help = capsys.readouterr().out
    for opt in ("--context", "--model", "--sub-model", "--max-iterations", "--max-llm-calls", "--max-tokens",
                "--timeout", "--repl", "--out"):
        assert opt in rlm_help, opt


def test_question_mark_is_a_question_not_help():
    lines = protect_questions(["%rlm --context t How many whales?\n", "%rlm?\n", "  %agent plot it?"])
    assert lines[0] == "get_ipython().run_line_magic('rlm', '--context t How many whales?')\n"
    assert lines[1] == "%rlm?\n"
    assert lines[2] == "  get_ipython().run_line_magic('agent', 'plot it?')"


# --- bad input: one line each, nothing lost -------------------------------------------------------------


@pytest.mark.parametrize(
    ("cell", "message"),
    [
        ("%rlm --bogus how?", "UsageError: unrecognized arguments: --bogus"),
        ("%%agent --rounds many\nplot", "UsageError: argument --rounds: invalid int value: 'many'"),
        ("%%agent --mode psychic\nplot", "UsageError: argument --mode: invalid choice: 'psychic'"),
        ('%%rlm --context "unclosed\nq', "UsageError: No closing quotation"),
    ],
)
def test_bad_options_give_one_usage_line(shell, capsys, cell, message):
    result = run(shell, cell)
    err = capsys.readouterr().err
    assert message in err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert result.result is None


@pytest.mark.parametrize(
    ("cell", "message"),
    [
        ("%%agent\n   \n", "nbmagic: The request is empty."),
        ("%rlm", "nbmagic: The question is empty."),
        ("%rlm --context txet how many?", "nbmagic: --context txet: no variable named 'txet' in the notebook. Did you mean text?"),
        ("%rlm --out 2bad --context text q", "nbmagic: --out needs a Python variable name, got '2bad'"),
        ("%%agent --rounds 0\nplot", "nbmagic: --rounds must be at least 1."),
        ("%%agent -o notes.txt\nplot", "nbmagic: --output must name a .ipynb file"),
    ],
)
def test_user_errors_are_one_message(shell, capsys, openai_server, cell, message):
    shell.user_ns["text"] = "keep me"
    result = run(shell, cell)
    err = capsys.readouterr().err
    assert err.startswith(message), err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert result.result is None and result.error_in_exec is None
    assert shell.user_ns["text"] == "keep me"
    assert openai_server.chat_requests() == []  # nothing was sent


# --- config ------------------------------------------------------------------------------------------------


def test_config_writes_through_and_is_reported(shell, capsys, monkeypatch):
    monkeypatch.setenv("NBMAGIC_MAX_FIXES", "5")
    run(shell, "%config NbMagic.rounds = 2")
    assert settings.get("rounds").value == 2 and settings.get("rounds").source == "%config"
    run(shell, "%config NbMagic.mode = 'text'")
    capsys.readouterr()
    run(shell, "%nbmagic config")
    out = capsys.readouterr().out
    lines = {line.split()[0]: line for line in out.splitlines()[1:]}
    assert "2" in lines["rounds"] and "[%config]" in lines["rounds"]
    assert "'text'" in lines["mode"]
    assert "5" in lines["max_fixes"] and "[env NBMAGIC_MAX_FIXES]" in lines["max_fixes"]
    assert "[default]" in lines["latent_steps"]
    assert "'plain'" in lines["renderer"] and "[%config]" in lines["renderer"]
    assert "openai-compat:test-model@" in lines["model"]
    run(shell, "%config NbMagic.mode = 'psychic'")  # traitlets refuses: the setting is unchanged
    assert settings.mode == "text"
    run(shell, "%reload_ext nbmagic")  # the refused value must not break a reload
    assert "ignoring invalid setting NbMagic.mode = 'psychic'" in capsys.readouterr().err
    assert shell.find_cell_magic("agent") is not None


def test_nbmagic_subcommands(shell, capsys, openai_server):
    run(shell, "%nbmagic help")
    assert "%%agent [options]" in capsys.readouterr().out
    run(shell, "%nbmagic status")
    out = capsys.readouterr().out
    assert "model:    openai-compat:test-model@" in out and "set by %config" in out
    run(shell, "%nbmagic models")
    out = capsys.readouterr().out
    assert f"model server {openai_server.url}: test-model, sub-model" in out
    result = run(shell, "%nbmagic frobnicate")
    assert "UsageError: %nbmagic frobnicate: unknown" in capsys.readouterr().err
    assert result.result is None
