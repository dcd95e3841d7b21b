"""The strategy choice (read directly or recurse) on a scripted root, and answers typed in, not computed."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from nbmagic.errors import ConfigError
from nbmagic.events import EventRecorder, Notice, RlmIteration
from nbmagic.rlm import direct
from nbmagic.rlm.agent import RLM
from nbmagic.rlm.provenance import made_up
from nbmagic.rlm.trajectory import read_trajectory
from nbmagic.testing.openai_server import OpenAICompatServer, last_user_message
from nbmagic.testing.rlm_scripts import ScriptedRoot, code, is_root

NOTE = "The access code for vault QX-1234 is 55501234."


def haystack(lines: int) -> str:
    body = [f"Line {i}: the river is quiet and the stones are grey." for i in range(lines)]
    body.insert(lines // 2, NOTE)
    return "\n".join(body)


def reader(request: dict[str, Any]) -> str:
    """A root that reads directly when handed the data, and writes REPL code when it is the RLM root."""
    if is_root(request):
        return code("a = find_answer(context, 'What is the access code for vault QX-1234?')\nprint(a)\nsubmit(a)")
    prompt = last_user_message(request)
    return "55501234" if "vault QX-1234 is 55501234" in prompt else "NONE"


def test_data_that_fits_is_read_directly(openai_server: OpenAICompatServer, models: Any, tmp_path: Path) -> None:
    root, sub = models
    openai_server.set_responder(reader)
    rec = EventRecorder()
    path = tmp_path / "t.jsonl"
    res = RLM(root, sub_model=sub, context_window=8192, on_event=rec, trajectory_path=str(path)).query(
        "What is the access code for vault QX-1234?", context=haystack(40))
    assert res.answer == "55501234" and res.computed and res.iterations == 1 and res.llm_calls == 0
    assert res.strategy["strategy"] == "direct" and "costs less than recursing" in res.strategy["why"]
    assert res.strategy["direct_cost"] < res.strategy["repl_cost"] and res.strategy["fits"] is True
    requests = openai_server.chat_requests()
    assert len(requests) == 1 and not is_root(requests[0])  # one plain call, no REPL prompt
    assert NOTE in requests[0]["messages"][-1]["content"] and "Question: What is the access code" in requests[0]["messages"][-1]["content"]
    assert [t["kind"] for t in res.trajectory] == ["direct"]
    assert any(n.message.startswith("RLM strategy: direct (the data fits") for n in rec.of(Notice))
    assert len(rec.of(RlmIteration)) == 1
    lines = read_trajectory(path)
    assert lines[0]["strategy"]["strategy"] == "direct" and lines[1]["kind"] == "direct"
    assert lines[-1]["type"] == "result" and lines[-1]["answer"] == "55501234"
    assert res.usage[root.name].calls == 1


def test_a_root_with_the_helper_first_turn_recurses_even_when_the_data_fits(
        openai_server: OpenAICompatServer, models: Any) -> None:
    # measured (docs/rlm.md, run D): inside the 0.5B coder's window the helper call was right 3/3, reading 0/3
    root, sub = models
    openai_server.set_responder(reader)
    question = "What is the access code for vault QX-1234?"
    helper = RLM(root, sub_model=sub, context_window=8192, first_turn="helper").query(question, context=haystack(40))
    assert helper.strategy["strategy"] == "repl" and "helper first turn" in helper.strategy["why"]
    assert helper.strategy["fits"] is True and helper.answer == "55501234"
    free = RLM(root, sub_model=sub, context_window=8192, first_turn="free").query(question, context=haystack(40))
    assert free.strategy["strategy"] == "direct"


def test_data_beyond_the_window_recurses(openai_server: OpenAICompatServer, models: Any) -> None:
    root, sub = models
    openai_server.set_responder(reader)
    rec = EventRecorder()
    res = RLM(root, sub_model=sub, context_window=4096, on_event=rec).query(
        "What is the access code for vault QX-1234?", context=haystack(2000))
    assert res.strategy["strategy"] == "repl" and "does not fit the root's window" in res.strategy["why"]
    assert res.answer == "55501234" and res.computed and res.llm_calls == 1  # find_answer read one passage
    assert is_root(openai_server.chat_requests()[0])
    assert any("RLM strategy: repl (the data does not fit" in n.message for n in rec.of(Notice))


def test_records_choose_from_their_rendered_size(openai_server: OpenAICompatServer, models: Any) -> None:
    root, sub = models
    openai_server.set_responder(ScriptedRoot([code("submit(count_matching(context, 'city Oslo'))")],
                                             sub=lambda p: "0"))
    small = [{"id": i, "city": "Oslo" if i % 2 else "Lima"} for i in range(20)]
    big = [{"id": i, "city": "Oslo" if i % 2 else "Lima"} for i in range(3000)]  # ~100 KB as JSON lines
    run = RLM(root, sub_model=sub, context_window=32768).start("How many in Oslo?", context=small)
    run.step()
    assert run.result is not None and run.result.strategy["strategy"] == "direct"
    res = RLM(root, sub_model=sub, context_window=32768).query("How many in Oslo?", context=big)
    assert res.strategy["strategy"] == "repl" and res.answer == 1500  # by code, exact
    # fits, but costs more to read than to recurse
    mid = [{"id": i, "city": "Oslo" if i % 2 else "Lima"} for i in range(1200)]
    res = RLM(root, sub_model=sub, context_window=200_000).query("How many in Oslo?", context=mid)
    assert res.strategy["strategy"] == "repl" and res.strategy["fits"] is True
    assert "costs more than recursing" in res.strategy["why"] and res.answer == 600


def test_asked_strategies_no_context_and_unknown_windows(openai_server: OpenAICompatServer, models: Any) -> None:
    root, sub = models
    openai_server.set_responder(reader)
    res = RLM(root, sub_model=sub, context_window=8192, strategy="repl").query("vault QX-1234?", context=haystack(40))
    assert res.strategy == {**res.strategy, "strategy": "repl", "requested": "repl"} and res.iterations == 1
    res = RLM(root, sub_model=sub).query("vault QX-1234?", context=haystack(40))  # a hosted model: no window known
    assert res.strategy["strategy"] == "repl" and "window is unknown" in res.strategy["why"]
    openai_server.set_responder(ScriptedRoot([code("submit(6 * 7)")]))
    res = RLM(root, sub_model=sub, context_window=8192).query("What is six times seven?")
    assert res.strategy["strategy"] == "repl" and "no context" in res.strategy["why"] and res.answer == 42
    # direct asked on data too long for the window: head and tail are read, with a warning
    openai_server.set_responder(lambda r: "NONE")
    rec = EventRecorder()
    res = RLM(root, sub_model=sub, context_window=2048, strategy="direct", on_event=rec).query(
        "vault QX-1234?", context=haystack(3000))
    prompt = openai_server.chat_requests()[-1]["messages"][-1]["content"]
    assert res.strategy["fits"] is False and "chars omitted" in prompt and prompt.endswith("Reply with the answer only.")
    assert root.count_tokens(prompt) < 2048
    assert any(n.level == "warning" and "does not fit the window" in n.message for n in rec.of(Notice))
    with pytest.raises(ConfigError, match="strategy"):
        RLM(root, strategy="fast")


def test_direct_reads_answer_to_a_schema(openai_server: OpenAICompatServer, models: Any) -> None:
    root, sub = models
    replies = iter(['{"code": 55501234}', '{"code": "55501234"}'])
    openai_server.set_responder(lambda r: next(replies))
    schema = {"type": "object", "properties": {"code": {"type": "string"}}, "required": ["code"]}
    res = RLM(root, sub_model=sub, context_window=8192).query("vault QX-1234?", context=haystack(20), schema=schema)
    assert res.answer == {"code": "55501234"} and res.iterations == 2
    assert [t["kind"] for t in res.trajectory] == ["direct", "direct"] and res.trajectory[0]["problems"]


def test_a_made_up_answer_is_flagged(openai_server: OpenAICompatServer, models: Any) -> None:
    root, sub = models
    rec = EventRecorder()
    openai_server.set_responder(ScriptedRoot([code("print(len(context))\nsubmit('1234567890')")]))
    res = RLM(root, sub_model=sub, on_event=rec).query("What is the code?", context=haystack(30))
    assert res.computed is False and res.answer == "1234567890"
    assert any("typed by the model" in n for n in res.notes)
    assert any(n.level == "warning" and "1234567890" in n.message for n in rec.of(Notice))
    # computed by code (not a literal), or a literal the run saw: not flagged
    openai_server.set_responder(ScriptedRoot([code("import re\nsubmit(re.search(r'is (\\d+)', context).group(1))")]))
    assert RLM(root, sub_model=sub).query("What is the code?", context=haystack(30)).computed is True
    openai_server.set_responder(ScriptedRoot([code("print(context[-200:])"), code("submit(55501234)")]))
    assert RLM(root, sub_model=sub).query("What is the code?", context=haystack(3)).computed is True
    # the forced final step naming a number nobody printed
    openai_server.set_responder(ScriptedRoot([code("print(len(context))"), "The code is 1234567890."]))
    res = RLM(root, sub_model=sub, max_iterations=1).query("What is the code?", context=haystack(30))
    assert res.final_step and res.computed is False and "1234567890" in res.notes[-1]


def test_made_up_rules() -> None:
    turn = {"kind": "code", "code": "submit('7731-B')", "submitted": True, "output": "", "sub_calls": []}
    assert made_up("7731-B", [turn], {"context": "door 7731-B"}, "q", final_step=False) is None  # in the data
    assert made_up("7731-B", [turn], {"context": "nothing"}, "q", final_step=False) is not None
    computed = {**turn, "code": "submit(x)"}
    assert made_up("7731-B", [computed], {"context": "nothing"}, "q", final_step=False) is None
    seen = {**turn, "code": "submit(12345)", "sub_calls": [{"response": "It is 12,345."}]}
    assert made_up(12345, [seen], {"context": ""}, "q", final_step=False) is None  # 12,345 == 12345
    assert made_up("A long answer in prose, with no number in it at all.", [], {}, "q", final_step=True) is None


def test_strategy_option_on_magic_and_cli(openai_server: OpenAICompatServer, models: Any, tmp_path: Path,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    from nbmagic.cli import main

    openai_server.set_responder(reader)
    f = tmp_path / "notes.txt"
    f.write_text(haystack(40))
    spec = f"openai-compat:test-model@{openai_server.url}"
    rc = main(["rlm", "What is the access code for vault QX-1234?", "-c", str(f), "--model", spec,
               "--strategy", "direct", "-v"])
    out = capsys.readouterr()
    assert rc == 0 and out.out.strip() == "55501234" and "RLM strategy: direct" in out.err
    with pytest.raises(SystemExit):
        main(["rlm", "q", "-c", str(f), "--model", spec, "--strategy", "fast"])
    assert "invalid choice: 'fast'" in capsys.readouterr().err
    assert direct.Choice("repl", "why").as_dict()["requested"] == "auto"


def test_magic_strategy_option_and_made_up_warning(nbmagic_shell: Any, openai_server: OpenAICompatServer,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    shell = nbmagic_shell
    shell.user_ns["notes"] = haystack(40)
    openai_server.set_responder(reader)
    res = shell.run_cell("%rlm --context notes --strategy direct --context-window 8192 "
                         "What is the access code for vault QX-1234?").result
    assert res.answer == "55501234" and res.raw.strategy["strategy"] == "direct"
    assert "RLM strategy: direct" in capsys.readouterr().out  # the plain progress log shows the choice
    openai_server.set_responder(ScriptedRoot([code("submit('1234567890')")]))
    res = shell.run_cell("%rlm --context notes --strategy repl What is the code?").result
    assert res.raw.computed is False and "1234567890" in res.message and "typed by the model" in res.message
    assert "typed by the model" in res._repr_mimebundle_()["text/plain"]
    shell.run_cell("%rlm --context notes --strategy fast q")
    assert "invalid choice: 'fast'" in capsys.readouterr().err
