"""Sub-agents on forked REPL state: spawn_agents / adopt / discard in both REPLs."""

from __future__ import annotations

from typing import Any

import pytest

from nbmagic.errors import ConfigError
from nbmagic.rlm.agent import RLM
from nbmagic.testing.openai_server import OpenAICompatServer
from nbmagic.testing.rlm_scripts import ScriptedRoot, code


@pytest.mark.parametrize("environment", ["kernel", "subprocess"])
def test_forks_see_the_roots_state_and_only_adopted_changes_come_back(
    openai_server: OpenAICompatServer, models: Any, environment: str
) -> None:
    root, sub = models
    script = ScriptedRoot({
        "count a": [code("na = data.count('a')\nsubmit(na)")],
        "count b": [code("import os\nnb = data.count('b')\nbase = 'changed in fork'\nsubmit((nb, os.getpid()))")],
        "": [
            code("import os\ndata = context * 2\nbase = 'root'\nme = os.getpid()\n"
                 "res = spawn_agents(['count a in data', 'count b in data'])\nprint(res)"),
            code("print(adopt(res[0]['id']))\ntry:\n    adopt(99)\nexcept ValueError as e:\n    print(e)\n"
                 "submit((na, base, 'nb' in globals(), res[0]['answer'], res[1]['answer'][0], res[1]['changed'],"
                 " res[1]['answer'][1] != me))"),
        ],
    })
    openai_server.set_responder(script)
    ns = {"text": "aab"}
    res = RLM(root, sub_model=sub, environment=environment, namespace=ns, max_subagent_depth=1).query(
        "top question", context="text")
    na, base, nb_here, ans_a, ans_b, changed_b, other_process = res.answer
    assert (na, base, nb_here, ans_a, ans_b) == (4, "root", False, 4, 2)
    assert changed_b == {"base": "str", "nb": "int"}  # its re-import of os is no change
    assert other_process is (environment == "subprocess")  # a real process fork there
    assert "Adopted from sub-agent 1: na" in res.trajectory[1]["output"]
    assert "adopt(99): no sub-agent with that id" in res.trajectory[1]["output"]
    records = [r for r in res.trajectory[0]["sub_calls"] if r["helper"] == "spawn_agents"]
    assert [r["prompt"] for r in records] == ["count a in data", "count b in data"] and all(r["ok"] for r in records)
    child_q = next(r for r in script.root_requests if "count a" in r["messages"][1]["content"])
    assert "fork of the root's REPL" in child_q["messages"][1]["content"] and "data (str)" in child_q["messages"][1]["content"]
    assert "spawn_agents, adopt, discard: not available at this depth" in child_q["messages"][0]["content"]
    assert "spawn_agents(tasks: list[str])" in script.root_requests[0]["messages"][0]["content"]
    assert ns == {"text": "aab"}


def test_budget_shares_depth_limit_and_off_by_default(openai_server: OpenAICompatServer, models: Any) -> None:
    root, sub = models
    script = ScriptedRoot({
        "task": [code("r = [llm_query(f'x{i}') for i in range(3)]\nprint(spawn_agents(['deeper']))\nsubmit(r)")],
        "": [code("res = spawn_agents(['task one', 'task two'])\nsubmit([x['answer'] for x in res])")],
    })
    openai_server.set_responder(script)
    res = RLM(root, sub_model=sub, max_llm_calls=4, max_subagent_depth=1).query("q")
    for answers in res.answer:  # each sub-agent got 4 // 2 = 2 sub-calls
        assert answers[:2] == ["sub: x0", "sub: x1"] and answers[2].startswith("[error] llm_query: the sub-call budget")
    assert res.llm_calls == 4 and res.usage["sub-model"].calls == 4
    script2 = ScriptedRoot([code("submit('spawn_agents' in globals())")])
    openai_server.set_responder(script2)
    assert RLM(root, sub_model=sub).query("q").answer is False
    assert "spawn_agents" not in script2.root_requests[0]["messages"][0]["content"]
    with pytest.raises(ConfigError, match="max_subagent_depth"):
        RLM(root, max_subagent_depth=-1)


def test_subagents_from_the_magic_and_bad_depth(ipython_shell: Any, openai_server: OpenAICompatServer,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    sh = ipython_shell
    sh.run_line_magic("load_ext", "nbmagic")
    sh.run_cell(f'%config NbMagic.model = "openai-compat:test-model@{openai_server.url}"')
    sh.run_cell("%config NbMagic.renderer = 'plain'")
    openai_server.set_responder(ScriptedRoot({
        "half": [code("submit(len(context) // 2)")],
        "": [code("submit(sum(r['answer'] for r in spawn_agents(['half it', 'half it again'])))")],
    }))
    sh.user_ns["text"] = "abcdef"
    res = sh.run_cell("%rlm --context text --max-subagent-depth 1 total", store_history=True).result
    assert res.answer == 6
    sh.run_cell("%rlm --context text --max-subagent-depth -2 total", store_history=True)
    assert "--max-subagent-depth must be" in capsys.readouterr().err
    sh.run_line_magic("unload_ext", "nbmagic")


def test_parallel_subagents_report_events_one_at_a_time(openai_server: OpenAICompatServer, models: Any) -> None:
    import threading
    import time

    root, sub = models
    openai_server.set_responder(ScriptedRoot({
        "part": [code("submit(llm_query('x'))")],
        "": [code("submit([r['answer'] for r in spawn_agents([f'part {i}' for i in range(3)])])")],
    }))
    active, most, threads = [0], [0], set()
    lock = threading.Lock()

    def handler(event: Any) -> None:  # a renderer that is not thread-safe
        with lock:
            active[0] += 1
            most[0] = max(most[0], active[0])
            threads.add(threading.get_ident())
        time.sleep(0.005)
        with lock:
            active[0] -= 1

    res = RLM(root, sub_model=sub, environment="subprocess", max_subagent_depth=1, on_event=handler).query("q")
    assert res.answer == ["sub: x"] * 3
    assert len(threads) > 1 and most[0] == 1  # events came from several threads, never two at once
