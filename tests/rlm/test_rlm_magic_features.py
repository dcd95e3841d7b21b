"""%rlm's newer options in a real IPython shell, and `python -m nbmagic rlm` with --view, over the loopback server."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import pytest

from nbmagic.errors import ConfigError
from nbmagic.rlm import cli
from nbmagic.testing.openai_server import OpenAICompatServer
from nbmagic.testing.rlm_scripts import ScriptedRoot, code
from nbmagic.ui.trajectory_view import TrajectoryView


@pytest.fixture
def shell(nbmagic_shell):
    return nbmagic_shell


def run(shell: Any, source: str) -> Any:
    return shell.run_cell(source, store_history=True)


def test_prose_answer_is_flagged_in_the_magic(shell: Any, openai_server: OpenAICompatServer) -> None:
    prose = "I would search the text for the word and count it. The answer is probably 3."
    openai_server.set_responder(ScriptedRoot([prose]))
    shell.user_ns["text"] = "one whale, two whales"
    res = run(shell, "%rlm --context text --max-iterations 2 How many whales?").result
    assert res.answer == prose and res.raw.computed is False
    assert "Not computed" in res.message
    bundle = res._repr_mimebundle_()
    assert "not computed" in bundle["text/plain"] and "⚠" in bundle["text/markdown"]


def test_tools_no_sub_calls_and_schema_from_the_magic(shell: Any, openai_server: OpenAICompatServer) -> None:
    script = ScriptedRoot([code("submit({'n': double(len(context)), 'helpers': 'llm_query' in globals()})")])
    openai_server.set_responder(script)
    shell.run_cell(
        "from pydantic import BaseModel\n"
        "class Count(BaseModel):\n    n: int\n    helpers: bool\n"
        "def double(x: int) -> int:\n    '''Twice x.'''\n    return 2 * x\n"
        "text = 'abc'"
    )
    res = run(shell, "%rlm --context text --tool double --no-sub-calls --schema Count how long?").result
    assert res.answer == shell.user_ns["Count"](n=6, helpers=False)
    system = script.root_requests[0]["messages"][0]["content"]
    assert "- double(x: int) -> int: Twice x." in system and "llm_query(" not in system


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("%rlm --tool nope q", "--tool nope: no function named 'nope'"),
        ("%rlm --tool text q", "Tool 'text' is a str, not a function"),
        ("%rlm --tool _hidden q", "starts with '_'"),
        ("%rlm --schema Missing q", "no variable named 'Missing'"),
        ("%rlm --continue q", "no RLM session to continue"),
        ("%rlm --max-errors -1 q", "--max-errors must be a whole number of at least 0 (0: no limit), not -1"),
        ("%rlm --context-window 10 q", "--context-window must be a whole number of at least 256, not 10"),
        ("%rlm --context adopt q", "--context adopt: 'adopt' is the name of an RLM helper in the REPL"),
        ("%rlm --view nothing.jsonl", "No trajectory file"),
    ],
)
def test_bad_new_options_are_one_line(shell: Any, capsys: pytest.CaptureFixture[str], line: str, message: str) -> None:
    shell.user_ns.update(text="abc", _hidden=lambda: 1, adopt="data named like a helper")
    run(shell, line)
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err


def test_continue_keeps_the_repl_and_reset_ends_it(shell: Any, openai_server: OpenAICompatServer,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    script = ScriptedRoot({
        "first": [code("counts = {w: context.count(w) for w in ('a', 'b')}\nsubmit(counts['a'])")],
        "follow": [code("submit(counts['b'])")],
    })
    openai_server.set_responder(script)
    shell.user_ns["text"] = "a a b"
    assert run(shell, "%rlm --context text first question").result.answer == 2
    assert run(shell, "%rlm --continue follow-up on b").result.answer == 1
    assert "Q: first question" in script.root_requests[-1]["messages"][1]["content"]
    assert "counts" not in shell.user_ns  # the REPL's variables never leak into the notebook
    run(shell, "%rlm --reset")
    assert "session was reset" in capsys.readouterr().err
    run(shell, "%rlm --continue follow-up on b")
    assert "no RLM session to continue" in capsys.readouterr().err
    # a new %rlm starts a fresh REPL: the old variables are gone
    openai_server.set_responder(ScriptedRoot([code("submit('counts' in globals())")]))
    assert run(shell, "%rlm --context text fresh").result.answer is False


def test_view_after_a_run_and_from_a_file(shell: Any, openai_server: OpenAICompatServer, tmp_path: Path) -> None:
    openai_server.set_responder(ScriptedRoot([code("print(llm_query('look <here>'))"), code("submit(42)")]))
    shell.user_ns["text"] = "abc"
    traj = tmp_path / "t.jsonl"
    run(shell, f"%rlm --context text --trajectory {traj} q")
    last = run(shell, "%rlm --view").result
    assert isinstance(last, TrajectoryView)
    page = last._repr_html_()
    assert "<h4 style='margin:6px 0'>q</h4>" in page  # the question heads the view
    assert page.count("<details") >= 3 and "look &lt;here&gt;" in page and "42" in page
    from_file = run(shell, f"%rlm --view {traj}").result
    html = from_file._repr_html_()
    assert "<code>test-model</code>" in html and "sub-call" in html and "look &lt;here&gt;" in html
    assert "max_iterations=20" in html and "<b>submitted</b>" in html


def _cli(argv: list[str]) -> int:
    parser = argparse.ArgumentParser()
    cli.add_arguments(parser)
    return cli.run(parser.parse_args(argv))


def test_cli_view_prints_text_and_writes_html(openai_server: OpenAICompatServer, tmp_path: Path,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    openai_server.set_responder(ScriptedRoot([code("x = llm_query('hello')\nprint(x)"), code("submit(len(x))")]))
    traj = tmp_path / "run.jsonl"
    spec = f"openai-compat:test-model@{openai_server.url}"
    assert _cli(["what?", "--model", spec, "--trajectory", str(traj)]) == 0
    assert capsys.readouterr().out.strip() == str(len("sub: hello"))
    assert _cli(["--view", str(traj)]) == 0
    text = capsys.readouterr().out
    assert "=== run 1/1: what?" in text and "--- iteration 2 (code" in text and "=== answer: 10" in text
    page = tmp_path / "run.html"
    assert _cli(["--view", str(traj), "--html", str(page)]) == 0
    assert page.read_text().startswith("<!doctype html>") and "sub: hello" in page.read_text()
    with pytest.raises(ConfigError, match="already exists"):
        _cli(["--view", str(traj), "--html", str(page)])
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"x": 1}\n')
    with pytest.raises(ConfigError, match="not an RLM trajectory record"):
        _cli(["--view", str(bad)])


def test_cli_flags_prose_no_sub_calls_and_schema(openai_server: OpenAICompatServer, tmp_path: Path,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    spec = f"openai-compat:test-model@{openai_server.url}"
    openai_server.set_responder(ScriptedRoot(["Probably 3."]))
    assert _cli(["how many?", "--model", spec, "--max-iterations", "1"]) == 0
    out = capsys.readouterr()
    assert out.out.strip() == "Probably 3." and "warning: answer not computed" in out.err
    schema = tmp_path / "s.json"
    schema.write_text(json.dumps({"type": "object", "required": ["n"]}))
    openai_server.set_responder(ScriptedRoot([code("submit({'n': int('llm_query' in globals())})")]))
    assert _cli(["n?", "--model", spec, "--no-sub-calls", "--schema", str(schema)]) == 0
    assert json.loads(capsys.readouterr().out) == {"n": 0}
    with pytest.raises(ConfigError, match="question is empty"):
        _cli(["--model", spec])


def test_fenced_code_switch_in_the_magic(shell: Any, openai_server: OpenAICompatServer) -> None:
    openai_server.set_responder(ScriptedRoot([code("submit(len(context))")]))
    shell.user_ns["text"] = "abc"
    assert run(shell, "%rlm --context text q").result.answer == 3
    assert "tools" in openai_server.chat_requests()[0]
    openai_server.reset()
    assert run(shell, "%rlm --context text --fenced-code q").result.answer == 3
    assert all("tools" not in b for b in openai_server.chat_requests())
