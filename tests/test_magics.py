"""The magics in a real IPython shell and a real kernel, against the loopback server."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from nbmagic.config import settings
from nbmagic.magics import NbMagic, protect_questions
from nbmagic.testing import agent_scripts
from nbmagic.ui.summary import MagicResult


@pytest.fixture
def shell(nbmagic_shell):
    return nbmagic_shell


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
        ("%%agent --rounds 0\nplot", "nbmagic: --rounds must be a whole number from 1 to 100, not 0."),
        ("%%agent -o notes.txt\nplot", "nbmagic: --output must name a .ipynb file"),
        ("%%agent --pattern bogus -o a.ipynb\nplot", "nbmagic: Unknown pattern 'bogus'"),
        ("%rlm --out text --context text q", "nbmagic: --out text would replace your variable text (a str)"),
        ("%rlm --out In --context text q", "nbmagic: --out In: 'In' is IPython's own variable"),
        ("%rlm --timeout nan --context text q", "nbmagic: --timeout must be a number of seconds of at least 0 (0: no limit), not nan."),
            ("%rlm --context adopt q", "nbmagic: --context adopt: 'adopt' is the name of an RLM helper in the REPL"),
    ],
)
def test_user_errors_are_one_message(shell, capsys, openai_server, cell, message):
    shell.user_ns["text"] = "keep me"
    shell.user_ns["adopt"] = "data named like a helper"
    history = list(shell.user_ns["In"])
    result = run(shell, cell)
    err = capsys.readouterr().err
    assert err.startswith(message), err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert result.result is None and result.error_in_exec is None
    assert shell.user_ns["text"] == "keep me" and shell.user_ns["In"][: len(history)] == history
    assert openai_server.chat_requests() == []  # nothing was sent
    assert list(Path.cwd().glob("*.ipynb")) == []  # a refused run leaves no (empty) notebook behind


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
    run(shell, "%nbmagic doctor --bogus")
    err = capsys.readouterr().err
    assert err.strip() == "UsageError: %nbmagic doctor: unrecognized arguments: --bogus"


# --- real runs in the shell ------------------------------------------------------------------------------

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
NEEDLE_Q = "What is the access code for vault QX-7731?"


@pytest.fixture
def long_log():
    import sys

    sys.path.insert(0, str(EXAMPLES))
    try:
        from long_text import CODE, make_log
    finally:
        sys.path.remove(str(EXAMPLES))
    return make_log(800), CODE


def test_rlm_line_magic_answers_into_underscore_and_out(shell, openai_server, long_log, capsys):
    from nbmagic.testing import rlm_scripts

    openai_server.set_responder(rlm_scripts.respond)
    text, code = long_log
    shell.user_ns["log"] = text
    result = run(shell, f"%rlm --context log --out ans {NEEDLE_Q}")
    out = capsys.readouterr()
    assert isinstance(result.result, MagicResult) and result.result.answer == code
    assert shell.user_ns["_"] is result.result and shell.user_ns["ans"] is result.result
    assert result.result.status == "done" and len(result.result.trajectory) == 3
    assert result.result.usage.calls == 4
    assert "[nbmagic] iteration 2:" in out.out and "rlm done in" in out.out and "4 model calls" in out.out
    assert out.err == ""
    assert shell.user_ns["log"] is text  # the context is untouched
    # the root model saw a description of `log`, never the whole text
    root = openai_server.chat_requests()[0]
    assert sum(len(m["content"]) for m in root["messages"]) < len(text) / 2


def test_rlm_cell_magic_interpolates_the_question(shell, openai_server, long_log):
    from nbmagic.testing import rlm_scripts

    openai_server.set_responder(rlm_scripts.respond)
    shell.user_ns["log"], code = long_log
    shell.user_ns["vault"] = "QX-7731"
    result = run(shell, "%%rlm --context log --max-iterations 5\nWhat is the access code for vault {vault}? {{literal}} {nope}")
    assert result.result.answer == code
    first_user = openai_server.chat_requests()[0]["messages"][1]["content"]
    assert "vault QX-7731? {literal} {nope}" in first_user


def test_rlm_several_contexts_keep_their_names(shell, openai_server):
    from nbmagic.testing.rlm_scripts import ScriptedRoot, code

    root = ScriptedRoot([code("print(len(left), len(right))\nsubmit(len(left) + len(right))")])
    openai_server.set_responder(root)
    shell.user_ns.update(left="abc", right=[1, 2])
    result = run(shell, "%rlm -c left,right how long together")
    assert result.result.answer == 5


def test_agent_cell_magic_writes_cells_and_runs_them(shell, openai_server, capsys):
    import matplotlib

    matplotlib.use("Agg")
    agent_scripts.write_sales_csv("sales.csv")
    openai_server.set_responder(agent_scripts.respond)
    shell.user_ns["region"] = "North"
    result = run(shell, "%%agent --rounds 1 --out res -o analysis.ipynb\n"
                        "Analyze sales.csv (focus {region}): top 5 products by revenue, monthly revenue plot")
    out = capsys.readouterr()
    res = result.result
    assert isinstance(res, MagicResult) and res.status == "done", out
    assert shell.user_ns["res"] is res  # (`_` after a run is checked in the rlm test and in the kernel)
    assert len(res.cells) == 7 and [c["cell_type"] for c in res.cells[:2]] == ["markdown", "code"]
    assert res.cells[-1]["source"].startswith("### Answer\n\nThe top 5 products by revenue are ")
    assert res.plan[1] == "Compute the top 5 products by revenue"
    assert Path("analysis.ipynb").exists() and "written to" in res.message
    assert list(shell.user_ns["top_products"].index)[:1]  # the cells ran in the user's namespace
    assert "(focus North)" in json_dump(openai_server.chat_requests()[0])
    assert "[nbmagic] plan: 1) Load sales.csv into the DataFrame" in out.out and "agent done in" in out.out
    assert out.err == ""


def test_agent_refuses_to_overwrite_a_notebook(shell, openai_server, capsys):
    Path("analysis.ipynb").write_text("precious")
    result = run(shell, "%%agent -o analysis.ipynb\nplot something")
    err = capsys.readouterr().err
    assert result.result is None and err.startswith("nbmagic: ") and len(err.strip().splitlines()) == 1
    assert "--force" in err or "force" in err
    assert Path("analysis.ipynb").read_text() == "precious"
    assert openai_server.chat_requests() == []


def json_dump(obj) -> str:
    import json

    return json.dumps(obj)


def test_server_failing_mid_run_is_one_message_and_keeps_variables(shell, openai_server, capsys):
    from nbmagic.testing.openai_server import Reply
    from nbmagic.testing.rlm_scripts import code, is_root, turn

    def respond(request):
        if is_root(request) and turn(request) == 0:
            return code("x = 1\nprint('looked')")
        return Reply(status=500, error_message="the GPU caught fire")

    openai_server.set_responder(respond)
    shell.user_ns["data"] = "some text"
    result = run(shell, "%rlm --context data --out ans what is in it?")
    captured = capsys.readouterr()
    err = captured.err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("nbmagic: ") and "Traceback" not in captured.err
    assert "500" in err[0] or "server" in err[0].lower()
    assert err[0].endswith("(the partial result is in ans)")
    assert result.result is None and result.error_in_exec is None
    partial = shell.user_ns["ans"]
    assert partial.status == "failed" and len(partial.trajectory) == 1  # the finished iteration is kept
    assert shell.user_ns["data"] == "some text"
    assert "rlm done" not in captured.out and "rlm failed" not in captured.out


def test_out_replaces_an_earlier_result_only(shell, openai_server):
    from nbmagic.testing.rlm_scripts import ScriptedRoot, code

    openai_server.set_responder(ScriptedRoot([code("submit(len(t))")]))
    shell.user_ns["t"] = "abcd"
    first = run(shell, "%rlm -c t --out res how long").result
    assert shell.user_ns["res"] is first and first.answer == 4
    openai_server.set_responder(ScriptedRoot([code("submit(len(t) * 2)")]))
    second = run(shell, "%rlm -c t --out res how long, twice").result
    assert shell.user_ns["res"] is second and second.answer == 8  # a result may replace a result


def _dashboard_threads():
    import threading

    return [t for t in threading.enumerate() if t.name == "nbmagic-dashboard"]


def test_failed_widget_run_is_one_line_and_stops_the_ticker(shell, openai_server, capsys):
    """--ui widgets (displayed as text outside a kernel): the error is said once, the 1 Hz ticker ends."""
    import threading

    shell.user_ns["lock"] = threading.Lock()  # cannot be pickled for the worker process
    result = run(shell, "%rlm --ui widgets --repl subprocess -c lock what is it?")
    out = capsys.readouterr()
    assert result.result is None and result.error_in_exec is None
    err = out.err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("nbmagic: Context 'lock'") and "pickled" in err[0]
    assert "pickled" not in out.out  # the dashboard's place is emptied, not a second copy of the error
    for t in _dashboard_threads():
        t.join(timeout=5)
    assert _dashboard_threads() == []


def test_an_engine_bug_propagates_but_the_ticker_stops(shell, openai_server, monkeypatch):
    """Not a user error: the traceback is shown, and the dashboard's thread does not outlive the run."""
    from nbmagic.rlm.agent import RLM

    def broken_query(self, question, context=None, **kw):
        raise RuntimeError("a bug in the engine")

    monkeypatch.setattr(RLM, "query", broken_query)  # stands in for any unexpected engine error
    shell.user_ns["t"] = "abc"
    result = run(shell, "%rlm --ui widgets -c t q")
    assert isinstance(result.error_in_exec, RuntimeError)
    for t in _dashboard_threads():
        t.join(timeout=5)
    assert _dashboard_threads() == []


def test_no_model_available_is_one_message(shell, capsys, monkeypatch):
    shell.config.pop("NbMagic", None)
    settings.reset()
    monkeypatch.setenv("OLLAMA_HOST", "127.0.0.1:9")  # nothing listens there
    monkeypatch.setenv("HF_HOME", os.fspath(Path.cwd() / "hf-empty"))
    shell.user_ns["t"] = "abc"
    result = run(shell, "%rlm --context t what?")
    err = capsys.readouterr().err
    assert err.startswith("nbmagic: No model is available.") and len(err.strip().splitlines()) == 1
    assert "OPENAI_API_KEY" in err and "--model" in err
    assert result.result is None and shell.user_ns["t"] == "abc"


# --- a real kernel ------------------------------------------------------------------------------------------


def kernel_exec(kc, code: str, *, metadata: dict | None = None, timeout: float = 60, on_msg=None) -> tuple[dict, list[dict]]:
    """Send an execute_request (optionally with frontend metadata, as JupyterLab does); collect its iopub."""
    import queue
    import time

    msg = kc.session.msg("execute_request", {"code": code, "silent": False, "store_history": True,
                                             "user_expressions": {}, "allow_stdin": False, "stop_on_error": True},
                         metadata=metadata or {})
    kc.shell_channel.send(msg)
    msg_id = msg["header"]["msg_id"]
    outputs: list[dict] = []
    deadline = time.monotonic() + timeout
    while True:
        try:
            m = kc.get_iopub_msg(timeout=max(0.1, deadline - time.monotonic()))
        except queue.Empty:
            raise AssertionError(f"no idle from the kernel for {code!r}; got {[o['msg_type'] for o in outputs]}") from None
        if m["parent_header"].get("msg_id") != msg_id:
            continue
        if on_msg is not None:
            on_msg(m)
        if m["msg_type"] == "status" and m["content"]["execution_state"] == "idle":
            break
        outputs.append(m)
    reply = kc.get_shell_msg(timeout=timeout)
    return reply["content"], outputs


def _stream(outputs: list[dict], name: str) -> str:
    return "".join(o["content"]["text"] for o in outputs if o["msg_type"] == "stream" and o["content"]["name"] == name)


def _needle_text() -> str:
    lines = [f"line {i}: routine entry" for i in range(3000)]
    lines.insert(1700, "The access code for vault QX-7731 is 640219.")
    return "\n".join(lines)


def _start_nbmagic(kc, url: str) -> None:
    for code in ("%load_ext nbmagic", f'%config NbMagic.model = "openai-compat:test-model@{url}"',
                 f"log = {_needle_text()!r}"):
        reply, _ = kernel_exec(kc, code)
        assert reply["status"] == "ok", reply


def test_kernel_dashboard_in_a_notebook_frontend(kernel, openai_server):
    """A request carrying a cellId (a notebook frontend) gets the widget dashboard, then the summary."""
    from nbmagic.testing import rlm_scripts

    openai_server.set_responder(rlm_scripts.respond)
    kc = kernel.client
    _start_nbmagic(kc, openai_server.url)
    reply, out = kernel_exec(kc, f"%rlm --context log --out ans {NEEDLE_Q}", metadata={"cellId": "cell-1"})
    assert reply["status"] == "ok"
    kinds = [o["msg_type"] for o in out]
    widget_views = [o for o in out if o["msg_type"] == "display_data"
                    and "application/vnd.jupyter.widget-view+json" in o["content"]["data"]]
    assert len(widget_views) == 1
    display_id = widget_views[0]["content"]["transient"]["display_id"]
    assert kinds.count("comm_msg") >= 3  # live widget updates while the run went on
    updates = [o for o in out if o["msg_type"] == "update_display_data"]
    assert updates and updates[-1]["content"]["transient"]["display_id"] == display_id
    final = updates[-1]["content"]["data"]
    assert "rlm done in" in final["text/plain"] and "3 iterations" in final["text/html"]
    result = next(o for o in out if o["msg_type"] == "execute_result")["content"]["data"]
    assert result["text/plain"] == "640219" and "640219" in result["text/markdown"]
    assert _stream(out, "stdout") == ""  # no log lines in a notebook with widgets
    reply, out = kernel_exec(kc, "print(_.answer, ans.answer, ans.status, len(ans.trajectory))")
    assert _stream(out, "stdout").strip() == "640219 640219 done 3"


def test_kernel_without_frontend_logs_plain_lines(kernel, openai_server):
    """No cellId (nbclient, plain clients): concise log lines, no widgets."""
    from nbmagic.testing import rlm_scripts

    openai_server.set_responder(rlm_scripts.respond)
    kc = kernel.client
    _start_nbmagic(kc, openai_server.url)
    reply, out = kernel_exec(kc, f"%rlm --context log {NEEDLE_Q}")
    assert reply["status"] == "ok"
    assert not any(o["msg_type"] in ("comm_open", "comm_msg") for o in out)
    text = _stream(out, "stdout")
    assert text.startswith("[nbmagic] rlm: What is the access code") and "[nbmagic] rlm done in" in text


def test_kernel_interrupt_keeps_finished_work(kernel, openai_server):
    import threading
    import time

    from nbmagic.testing.openai_server import Reply
    from nbmagic.testing.rlm_scripts import code, is_root, turn

    def respond(request):
        if is_root(request) and turn(request) == 0:
            return code("n = len(log)\nprint(n)")
        return Reply(code("submit('too late')"), delay=20)

    openai_server.set_responder(respond)
    kc = kernel.client
    _start_nbmagic(kc, openai_server.url)

    def interrupt_when_waiting():
        deadline = time.monotonic() + 30
        while len(openai_server.chat_requests()) < 2 and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(0.3)  # the kernel is now blocked on the slow reply
        kernel.manager.interrupt_kernel()

    threading.Thread(target=interrupt_when_waiting, daemon=True).start()
    reply, out = kernel_exec(kc, "%rlm --context log --out part what is in the log?", timeout=40)
    assert reply["status"] == "ok"  # reported, not raised
    err = _stream(out, "stderr").strip().splitlines()
    assert len(err) == 1, err
    assert err[0].startswith("nbmagic: interrupted after") and "kept 1 finished iteration" in err[0]
    assert "part" in err[0] and not any(o["msg_type"] == "error" for o in out)
    _, out = kernel_exec(kc, "print(part.status, len(part.trajectory), part.answer, _ is part, len(log))")
    # the slow reply never arrived ("too late" was not submitted); the finished iteration is kept
    assert _stream(out, "stdout").split() == ["interrupted", "1", "None", "True", str(len(_needle_text()))]


def test_profile_config_applies_at_load(ipython_shell):
    """``c.NbMagic.x`` from an IPython profile reaches the settings when the extension loads."""
    ipython_shell.config.NbMagic.rounds = 4
    try:
        ipython_shell.run_line_magic("load_ext", "nbmagic")
        assert settings.get("rounds").value == 4 and settings.get("rounds").source == "%config"
    finally:
        ipython_shell.config.pop("NbMagic", None)


def test_kernel_interrupt_of_agent_keeps_finished_cells(kernel, openai_server, tmp_path):
    import threading
    import time

    from nbmagic.agent.prompts import CODE_HEADING
    from nbmagic.testing.openai_server import Reply

    def code_requests():
        return [r for r in openai_server.chat_requests() if CODE_HEADING in json_dump(r)]

    def respond(request):
        text = agent_scripts.respond(request)
        slow = CODE_HEADING in json_dump(request) and len(code_requests()) >= 2
        return Reply(text, delay=20) if slow else text

    openai_server.set_responder(respond)
    csv = agent_scripts.write_sales_csv(tmp_path / "sales.csv")
    kc = kernel.client
    _start_nbmagic(kc, openai_server.url)

    def interrupt_when_waiting():
        deadline = time.monotonic() + 60
        while len(code_requests()) < 2 and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(0.3)
        kernel.manager.interrupt_kernel()

    threading.Thread(target=interrupt_when_waiting, daemon=True).start()
    reply, out = kernel_exec(kc, f"%%agent --rounds 1 --out part -o {tmp_path / 'a.ipynb'}\n"
                                 f"Analyze {csv}: top 5 products by revenue and a monthly revenue plot", timeout=60)
    assert reply["status"] == "ok"
    err = _stream(out, "stderr").strip().splitlines()
    assert len(err) == 1 and err[0].startswith("nbmagic: interrupted after"), err
    assert "kept 4 finished cells" in err[0]  # the agent's own load step, then the model's first step
    _, out = kernel_exec(kc, "print(part.status, len(part.cells), type(sales).__name__)")
    assert _stream(out, "stdout").split() == ["interrupted", "4", "DataFrame"]  # steps 1-2 ran and are kept
    import nbformat

    nb = nbformat.read(tmp_path / "a.ipynb", as_version=4)
    assert [c.cell_type for c in nb.cells] == ["markdown", "code"] * 2  # the file holds what was finished


def test_rlm_options_reach_the_engine(shell, openai_server):
    """--repl subprocess runs the code in a worker (not this namespace); --trajectory writes JSONL."""
    import json

    from nbmagic.testing.rlm_scripts import ScriptedRoot, code

    root = ScriptedRoot([code("import os\nsubmit(f'{len(data)} in pid {os.getpid()}')")])
    openai_server.set_responder(root)
    shell.user_ns["data"] = list(range(7))
    result = run(shell, "%rlm --repl subprocess --trajectory traj.jsonl --max-llm-calls 3 -c data count it")
    answer = result.result.answer
    assert answer.startswith("7 in pid ") and answer != f"7 in pid {os.getpid()}"
    lines = [json.loads(x) for x in Path("traj.jsonl").read_text().splitlines()]
    assert len(lines) >= 2 and "max_llm_calls" in json.dumps(lines[0]) and '"max_llm_calls": 3' in json.dumps(lines[0])


@pytest.mark.parametrize(("flag", "word"), [("--dry-run", "code written, not run"), ("--confirm", "skipped")])
def test_agent_dry_run_and_confirm_run_nothing(shell, openai_server, flag, word):
    agent_scripts.write_sales_csv("sales.csv")
    openai_server.set_responder(agent_scripts.respond)
    result = run(shell, f"%%agent {flag} --rounds 1 -o out.ipynb\nAnalyze sales.csv: top 5 products by revenue")
    res = result.result
    assert word in res.message
    assert "sales" not in shell.user_ns and "top_products" not in shell.user_ns  # nothing ran
    if flag == "--dry-run":
        assert len(res.cells) == 6 and all(c.get("outputs", []) == [] for c in res.cells if c["cell_type"] == "code")


def test_terminal_ipython_uses_the_rich_display(openai_server, tmp_path):
    """`ipython` (a TerminalInteractiveShell) picks the rich renderer and ends with one summary line."""
    import subprocess
    import sys

    from nbmagic.testing import rlm_scripts

    openai_server.set_responder(rlm_scripts.respond)
    code = (f"log = {_needle_text()!r}\n%load_ext nbmagic\n"
            f"%rlm --context log --out ans {NEEDLE_Q}\nprint('ANSWER', ans.answer)\n%nbmagic status")
    env = {**os.environ, "NBMAGIC_MODEL": f"openai-compat:test-model@{openai_server.url}",
           "IPYTHONDIR": str(tmp_path / "ipython"), "COLUMNS": "200"}
    proc = subprocess.run([sys.executable, "-m", "IPython", "--colors=NoColor", "--no-banner", "-c", code],
                          capture_output=True, text=True, env=env, cwd=tmp_path, timeout=120)
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    assert "renderer: rich  (detected)" in out
    assert "nbmagic: rlm done in" in out and "3 iterations" in out
    assert "ANSWER 640219" in out
    assert "[nbmagic]" not in out  # not the plain log


def test_a_failing_progress_display_is_said_once_and_the_run_goes_on(nbmagic_shell, openai_server, capsys,
                                                                       monkeypatch):
    """Renderer errors used to go only to a log the user never sees."""
    from nbmagic import magics
    from nbmagic.events import RlmIteration
    from nbmagic.testing.rlm_scripts import ScriptedRoot, code
    from nbmagic.ui.plain import PlainLog

    class Broken(PlainLog):
        def __call__(self, event):
            if isinstance(event, RlmIteration):
                raise ValueError("no room on the screen")
            super().__call__(event)

    monkeypatch.setattr(magics.NbMagic, "_choose_renderer", lambda self, args: Broken())
    openai_server.set_responder(ScriptedRoot([code("x = 1"), code("y = 2"), code("submit(x + y)")]))
    nbmagic_shell.user_ns["text"] = "abc"
    res = nbmagic_shell.run_cell("%rlm --context text add", store_history=True).result
    assert res.answer == 3 and res.status == "done"
    err = capsys.readouterr().err
    assert err.count("the progress display failed on RlmIteration (ValueError: no room on the screen)") == 1
