"""The long-context evaluation and the ``nbmagic rlm`` command, against the loopback server."""

from __future__ import annotations

import argparse
import json
import re
from pathlib import Path

import pytest

from nbmagic.eval import rlm_suite as suite
from nbmagic.testing.openai_server import OpenAICompatServer
from nbmagic.testing.rlm_scripts import eval_responder


def test_suite_tasks_have_exact_answers() -> None:
    t = suite.needle_task(200_000, seed=1)
    assert 195_000 < len(t.context) < 215_000
    assert t.context.count(f"is {t.answer}.") == 1 and t.context.count("access code for vault") == 21
    c = suite.count_task(1000)
    city, product = re.search(r"city (\w+) and product (\w+)\?", c.question).groups()
    assert int(c.answer) == sum(1 for r in c.context if f"city={city} |" in r and f"product={product} |" in r) > 0
    assert suite.score(" 1,234. ", "1234") and suite.score("12.0", "12") and not suite.score("13", "12")
    assert suite.parse_size("1MB") == 1_000_000 and suite.parse_size("500KB") == 500_000


@pytest.mark.parametrize("environment", ["kernel", "subprocess"])
def test_scripted_root_solves_tasks_through_the_real_pipeline(
    openai_server: OpenAICompatServer, models: tuple, environment: str
) -> None:
    root, sub = models
    openai_server.set_responder(eval_responder(window_chars=50_000))
    for task in (suite.needle_task(300_000), suite.pairs_task(800)):
        run = suite.run_rlm(task, root, sub, environment=environment)
        assert run.correct, run
        assert run.extra["iterations"] >= 2
    # the scripted model only ever saw summaries: no root request carries the data
    biggest = max(
        sum(len(m["content"]) for m in r["body"]["messages"])
        for r in openai_server.requests
        if r["method"] == "POST" and r["body"]["messages"][0]["role"] == "system"
    )
    assert biggest < 12_000


def test_baseline_cut_keeps_head_and_tail(openai_server: OpenAICompatServer, models: tuple) -> None:
    root, _ = models
    openai_server.set_responder(eval_responder())
    task = suite.needle_task(50_000)
    suite.run_baseline(task, root, max_chars=2000)
    prompt = openai_server.chat_requests()[-1]["messages"][-1]["content"]
    assert prompt.startswith(task.context[:900]) and task.context[-900:] in prompt
    assert "chars omitted" in prompt and len(prompt) < 2400


def test_eval_command_prints_both_methods(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    from nbmagic.eval.__main__ import main

    out_json = tmp_path / "r.json"
    rc = main(["rlm", "--model", "scripted", "--sizes", "20KB,400KB", "--records", "600",
               "--window-chars", "100000", "--json", str(out_json)])
    captured = capsys.readouterr()
    out = captured.out
    assert rc == 0
    # each run is reported as it ends (a long suite cut short still shows what it did)
    assert captured.err.count(": rlm-auto… right, ") == 5 and ": baseline… wrong, " in captured.err
    assert "rlm-auto   accuracy 5/5 (100%)" in out
    assert "baseline   accuracy 4/5 (80%)" in out  # the 400 KB needle is past the scripted window
    data = json.loads(out_json.read_text())
    assert {s["method"] for s in data["summary"]} == {"rlm-auto", "baseline"}
    assert main(["rlm", "--model", "scripted", "--tasks", "bogus"]) == 2
    assert "Unknown task kind" in capsys.readouterr().err
    # a --json path that cannot be written is refused before the run, not after it
    assert main(["rlm", "--model", "scripted", "--json", str(tmp_path / "missing" / "r.json")]) == 2
    assert "not a file in an existing folder" in capsys.readouterr().err


def test_rlm_cli_answers_about_a_file(openai_server: OpenAICompatServer, tmp_path: Path,
                                      capsys: pytest.CaptureFixture[str]) -> None:
    from nbmagic.errors import ConfigError
    from nbmagic.rlm import cli

    def main(argv: list[str]) -> int:  # what `python -m nbmagic rlm ...` runs, minus the other commands
        parser = argparse.ArgumentParser()
        cli.add_arguments(parser)
        return cli.run(parser.parse_args(argv[1:]))

    task = suite.needle_task(100_000, seed=3)
    f = tmp_path / "haystack.txt"
    f.write_text(task.context)
    openai_server.set_responder(eval_responder())
    traj = tmp_path / "t.jsonl"
    rc = main(["rlm", task.question, "--context", str(f), "--model",
               f"openai-compat:test-model@{openai_server.url}", "--trajectory", str(traj), "-v"])
    captured = capsys.readouterr()
    assert rc == 0 and captured.out.strip() == task.answer
    assert "[nbmagic] iteration 1: " in captured.err and "rlm done in" in captured.err
    assert traj.exists()
    with pytest.raises(ConfigError, match="no such file"):
        main(["rlm", "q", "--context", str(tmp_path / "missing.txt"), "--model", "openai:x"])


def test_eval_against_a_dead_server_says_why_and_fails(capsys: pytest.CaptureFixture[str]) -> None:
    """Every task erroring is reported with its reason and a non-zero status, not a quiet 0%."""
    import socket

    from nbmagic.eval.__main__ import main as eval_main

    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    status = eval_main(["rlm", "--model", f"openai-compat:x@http://127.0.0.1:{port}/v1",
                        "--sizes", "1KB", "--records", "50", "--tasks", "needle"])
    out = capsys.readouterr().out
    assert status == 1
    assert "errors:" in out and "Cannot reach" in out


def test_baseline_prompt_is_cut_to_a_local_models_window(tiny_gguf: Path) -> None:
    """A 20 KB context for a 512-token GGUF: the long prompt is cut to fit, not refused."""
    from nbmagic.eval import rlm_suite as suite
    from nbmagic.llm.specs import load_model

    model = load_model(f"gguf:{tiny_gguf}")
    try:
        task = suite.needle_task(suite.parse_size("20KB"))
        run = suite.run_baseline(task, model)
        assert run.error is None and run.tokens <= model.n_ctx
    finally:
        model.close()
