"""The magics in a real IPython shell (issue 13): quoted option values split as a shell does,
a lone '-' refused, huge interpolated variables capped, one failure line for --ui widgets."""

from __future__ import annotations

from pathlib import Path

import pytest

from nbmagic.testing import agent_scripts
from nbmagic.ui.summary import MagicResult


@pytest.fixture
def shell(nbmagic_shell):
    return nbmagic_shell


def test_quoted_option_values_lose_their_quotes(shell, openai_server, capsys):
    agent_scripts.write_sales_csv("sales.csv")
    openai_server.set_responder(agent_scripts.respond)
    result = shell.run_cell('%%agent --rounds 1 -o "my analysis.ipynb" --out "res" --dry-run\n'
                            "Analyze sales.csv: top 5 products by revenue", store_history=True)
    err = capsys.readouterr().err
    assert isinstance(result.result, MagicResult), err
    assert Path("my analysis.ipynb").exists() and not list(Path().glob('"*'))  # no file named with quotes
    assert shell.user_ns["res"] is result.result


def test_rlm_trajectory_path_with_a_space(shell, openai_server, capsys):
    from nbmagic.testing import rlm_scripts

    openai_server.set_responder(rlm_scripts.respond)
    shell.user_ns["doc"] = "log line\n" * 50 + "the secret code is 4242\n" + "log line\n" * 50
    result = shell.run_cell('%rlm --context "doc" --trajectory "my traj.jsonl" What is the secret code?',
                            store_history=True)
    err = capsys.readouterr().err
    assert isinstance(result.result, MagicResult), err
    assert Path("my traj.jsonl").exists() and not Path('"my').exists()


def test_a_lone_dash_before_options_is_refused(shell, openai_server, capsys):
    result = shell.run_cell("%agent - --timeout 3 plot revenue", store_history=True)
    err = capsys.readouterr().err
    assert result.result is None and "lone '-'" in err and "--timeout" in err
    assert openai_server.chat_requests() == []  # nothing was sent with the options as request text


def test_a_failed_widgets_run_in_a_plain_shell_says_its_error_once(shell, openai_server, capfd):
    # the planner's first call succeeds (the dashboard has something to show), then the server refuses
    from nbmagic.testing.openai_server import Reply

    openai_server.queue("1. Load the data\n2. Plot revenue",
                        *[Reply(status=400, error_message="the model refused this request (test)")] * 50)
    result = shell.run_cell("%%agent --ui widgets --rounds 1 --max-fixes 0\nplot revenue", store_history=True)
    out, err = capfd.readouterr()
    assert result.result is None
    assert (out + err).count("the model refused this request (test)") == 1, out + err
    assert err.strip().startswith("nbmagic: ")


def _non_utf8_file(folder: Path) -> None:
    import os

    with open(os.path.join(os.fsencode(folder), b"caf\xe9.csv"), "wb") as f:
        f.write(b"a,b\n1,2\n")


def test_a_file_name_that_is_not_utf8_does_not_fail_the_agent(shell, openai_server, tmp_path, capsys):
    # before: UnicodeEncodeError ('surrogates not allowed'), reported as a model-server failure
    _non_utf8_file(tmp_path)
    agent_scripts.write_sales_csv("sales.csv")
    openai_server.set_responder(agent_scripts.respond)
    result = shell.run_cell("%%agent --rounds 1 --dry-run\nAnalyze sales.csv: top 5 products by revenue",
                            store_history=True)
    err = capsys.readouterr().err
    assert isinstance(result.result, MagicResult), err
    sent = " ".join(m["content"] for r in openai_server.chat_requests() for m in r["messages"])
    assert "caf\\xe9.csv" in sent  # shown escaped


def test_a_folder_context_with_a_non_utf8_name_works_in_rlm(shell, openai_server, tmp_path, capsys):
    from nbmagic.testing import rlm_scripts

    folder = tmp_path / "data"
    folder.mkdir()
    _non_utf8_file(folder)
    (folder / "notes.txt").write_text("the secret code is 4242")
    openai_server.set_responder(rlm_scripts.respond)
    shell.user_ns["folder"] = folder
    result = shell.run_cell("%rlm --context folder What is the secret code?", store_history=True)
    err = capsys.readouterr().err
    assert isinstance(result.result, MagicResult), err
    root = openai_server.chat_requests()[0]
    assert "caf\\xe9.csv" in " ".join(m["content"] for m in root["messages"])


def test_any_text_sent_to_a_model_is_valid_utf8(openai_server):
    from nbmagic.llm.specs import load_model

    openai_server.set_responder("fine")
    model = load_model(f"openai-compat:test-model@{openai_server.url}")
    assert model.chat([{"role": "user", "content": "look at caf\udce9.csv"}]).text == "fine"
    assert "caf\\udce9.csv" in openai_server.chat_requests()[0]["messages"][0]["content"]


def test_a_huge_interpolated_variable_is_cut_with_one_warning(shell, openai_server, capsys):
    # before: a 5.75 MB {log_text} was sent whole in each of the run's requests, without a word
    agent_scripts.write_sales_csv("sales.csv")
    openai_server.set_responder(agent_scripts.respond)
    shell.user_ns["log_text"] = "START " + "log line of the service\n" * 250_000 + " END"
    result = shell.run_cell("%%agent --rounds 1 --dry-run\nAnalyze sales.csv given this log: {log_text}",
                            store_history=True)
    err = capsys.readouterr().err
    assert isinstance(result.result, MagicResult), err
    requests = openai_server.chat_requests()
    assert requests and all(sum(len(m["content"]) for m in r["messages"]) < 200_000 for r in requests)
    sent = " ".join(m["content"] for m in requests[0]["messages"])
    assert "START" in sent and "END" in sent and "characters cut here" in sent  # head, tail and the marker
    assert err.count("too large for a prompt") == 1 and "%rlm --context log_text" in err


def test_rlm_timeout_with_the_kernel_repl_holds_against_a_bare_except(shell, openai_server, capsys):
    # before: `%rlm --timeout 3` with the kernel REPL took 20.7 s on this code
    import time

    from nbmagic.testing.rlm_scripts import ScriptedRoot, code

    swallow = "import time\nfor i in range(40):\n    try:\n        time.sleep(0.5)\n    except:\n        pass\nsubmit(i)"
    openai_server.set_responder(ScriptedRoot([code(swallow)]))
    shell.user_ns["t"] = "some text"
    t0 = time.monotonic()
    shell.run_cell("%rlm --repl kernel --timeout 3 -c t count it", store_history=True)
    took = time.monotonic() - t0
    err = capsys.readouterr().err
    assert took < 8, err  # the limit plus the grace, not the 20 s the code wanted
    assert "ran out of time" in err or "timed out" in err or "TimeoutError" in err, err
