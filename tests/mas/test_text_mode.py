"""Text mode (Recursive-TextMAS) against the real loopback OpenAI-compatible server."""

from __future__ import annotations

import re
from typing import Any

import pytest

from nbmagic.errors import ConfigError, NbmagicError
from nbmagic.events import (
    AgentFinished,
    AgentStarted,
    EventRecorder,
    Finished,
    ModelCall,
    RoundFinished,
    RoundStarted,
    RunStarted,
    TextDelta,
    ToolCalled,
)
from nbmagic.mas.system import Agent, RecursiveMAS
from nbmagic.testing.openai_server import Reply

ROLE_RE = re.compile(r"You are the ([A-Za-z-]+)")


def role_of(body: dict[str, Any]) -> str:
    return ROLE_RE.search(body["messages"][0]["content"]).group(1).lower()


def user_of(body: dict[str, Any]) -> str:
    return [m for m in body["messages"] if m["role"] == "user"][-1]["content"]


class RoleResponder:
    """Answers by role: '<role> says N', N counting that role's calls."""

    def __init__(self) -> None:
        self.calls: dict[str, int] = {}

    def __call__(self, body: dict[str, Any]) -> str:
        role = role_of(body)
        self.calls[role] = self.calls.get(role, 0) + 1
        return f"{role} says {self.calls[role]}"


@pytest.fixture
def spec(openai_server) -> str:
    return f"openai-compat:test-model@{openai_server.url}"


def test_sequential_recursion_order_messages_and_events(openai_server, spec):
    openai_server.set_responder(RoleResponder())
    rec = EventRecorder()
    mas = RecursiveMAS(model=spec, rounds=2, message_tokens=7, max_new_tokens=40, on_event=rec)
    assert mas.mode == "text"
    # three agents share one loaded model
    assert len({id(m.model) for m in mas.members}) == 1
    result = mas.run("What is 2+2?")

    bodies = openai_server.chat_requests()
    assert [role_of(b) for b in bodies] == ["planner", "critic", "solver"] * 2
    users = [user_of(b) for b in bodies]
    assert all("What is 2+2?" in u for u in users)
    assert "Message from" not in users[0]  # round 1: the planner sees the question only
    assert "planner says 1" in users[1] and "(planner, round 1)" in users[1]
    assert "critic says 1" in users[2] and "planner says" not in users[2]
    assert "solver says 1" in users[3] and "(solver, round 1)" in users[3]  # feedback to round 2
    assert "critic says 2" in users[5]
    # intermediate messages capped at message_tokens, only the final answer gets max_new_tokens
    assert [b["max_tokens"] for b in bodies] == [7] * 5 + [40]
    assert "final answer" in users[5] and "final answer" not in users[4]

    assert result.answer == "solver says 2"
    assert result.mode == "text" and result.rounds == 2
    assert [a.name for a in result.agents] == ["planner", "critic", "solver"]
    assert [a.tokens for a in result.agents] == [6, 6, 6]  # 3 words x 2 rounds each
    assert result.usage.completion_tokens == 18 and result.usage.calls == 6
    assert result.usage.prompt_tokens > 0
    assert [t["agent"] for t in result.transcript] == ["planner", "critic", "solver"] * 2
    assert result.transcript[3]["sees"] == ["solver@1"]

    kinds = rec.kinds()
    assert kinds[0] == "RunStarted" and kinds[-1] == "Finished"
    assert rec.of(RunStarted)[0].engine == "mas"
    assert [(e.round, e.total) for e in rec.of(RoundStarted)] == [(1, 2), (2, 2)]
    assert len(rec.of(RoundFinished)) == 2
    started = rec.of(AgentStarted)
    assert [(e.agent, e.round, e.mode) for e in started][:3] == [
        ("planner", 1, "text"),
        ("critic", 1, "text"),
        ("solver", 1, "text"),
    ]
    # per agent: started, streamed text, model call, finished — in that order
    i_start = kinds.index("AgentStarted")
    assert kinds[i_start : i_start + 1] == ["AgentStarted"]
    first_agent = kinds[i_start : kinds.index("AgentFinished") + 1]
    assert first_agent[0] == "AgentStarted" and "TextDelta" in first_agent and first_agent[-1] == "AgentFinished"
    assert first_agent.index("ModelCall") < len(first_agent) - 1
    streamed = "".join(e.text for e in rec.of(TextDelta) if e.agent == "solver")
    assert streamed == "solver says 1solver says 2"
    assert sum(e.completion_tokens for e in rec.of(ModelCall)) == 18
    assert [e.tokens for e in rec.of(AgentFinished)] == [3] * 6
    assert rec.of(Finished)[0].result is result


def test_message_cap_truncates_what_the_next_agent_sees(openai_server, spec):
    long = " ".join(f"w{i}" for i in range(60))
    openai_server.set_responder(lambda body: long)
    mas = RecursiveMAS(model=spec, rounds=1, message_tokens=5, max_new_tokens=30)
    result = mas.run("q")
    critic_user = user_of(openai_server.chat_requests()[1])
    assert "w0 w1 w2 w3 w4" in critic_user and "w5" not in critic_user
    assert result.agents[0].tokens == 5 and result.agents[2].tokens == 30
    assert len(result.answer.split()) == 30


def test_mixture_runs_specialists_in_parallel_then_summarizer(openai_server, spec):
    openai_server.latency = 0.3
    openai_server.set_responder(RoleResponder())
    mas = RecursiveMAS(model=spec, pattern="mixture", rounds=1)
    result = mas.run("Why is the sky blue?")
    bodies = openai_server.chat_requests()
    roles = [role_of(b) for b in bodies]
    assert sorted(roles[:3]) == ["mathematics", "programming", "science"]
    assert roles[3] == "summarizer"
    assert openai_server.max_in_flight >= 2  # specialists overlapped on the server
    summary_in = user_of(bodies[3])
    for role in ("mathematics", "programming", "science"):
        assert f"{role} says 1" in summary_in
    assert result.answer == "summarizer says 1"
    assert [a.role for a in result.agents] == ["math", "code", "science", "summarizer"]


def test_mixture_round_two_feeds_summary_back_to_every_specialist(openai_server, spec):
    openai_server.set_responder(RoleResponder())
    RecursiveMAS(model=spec, pattern="mixture", rounds=2).run("q")
    bodies = openai_server.chat_requests()
    assert len(bodies) == 8
    for b in bodies[4:7]:
        assert "summarizer says 1" in user_of(b)


def test_deliberation_uses_python_tool_and_stops_on_agreement(openai_server, spec):
    def responder(body: dict[str, Any]) -> str:
        role = role_of(body)
        user = user_of(body)
        if role == "reflector":
            return "VERDICT: AGREE" if "FINAL ANSWER" in user else "Compute it with Python."
        if "Python output" in user:
            found = re.search(r"```text\n(.*?)\n```", user, re.DOTALL).group(1)
            return f"FINAL ANSWER: {found}"
        return "Let me compute.\n```python\nprint(6 * 7)\n```"

    openai_server.set_responder(responder)
    rec = EventRecorder()
    mas = RecursiveMAS(model=spec, pattern="deliberation", rounds=5, on_event=rec)
    result = mas.run("What is 6 times 7?")
    roles = [role_of(b) for b in openai_server.chat_requests()]
    assert roles == ["reflector", "tool-caller", "tool-caller", "reflector"]
    tool = rec.of(ToolCalled)
    assert len(tool) == 1 and tool[0].output == "42" and tool[0].ok and "print(6 * 7)" in tool[0].code
    assert result.rounds == 2  # stopped on agreement, not at the cap of 5
    assert "FINAL ANSWER: 42" in result.answer
    assert result.agents[1].calls == 2


def test_deliberation_without_agreement_runs_to_round_cap(openai_server, spec):
    openai_server.set_responder(lambda b: "VERDICT: REVISE" if role_of(b) == "reflector" else "maybe 41")
    result = RecursiveMAS(model=spec, pattern="deliberation", rounds=3).run("q")
    assert result.rounds == 3 and result.answer == "maybe 41"
    assert len(openai_server.chat_requests()) == 6


def test_python_tool_times_out_and_reports_errors():
    from nbmagic.mas.pytool import run_blocks, run_python

    slow = run_python("while True: pass", timeout=1.0)
    assert not slow.ok and "longer than 1 s" in slow.output
    big = run_python("x = bytearray(3 << 30)", memory_mb=512)  # the memory limit holds
    assert not big.ok and "MemoryError" in big.output
    bad = run_blocks("```python\nraise ValueError('nope')\n```")
    assert bad is not None and not bad.ok and "ValueError: nope" in bad.output
    assert run_blocks("no code here") is None
    two = run_blocks("```python\nx = 2\n```\ntext\n```py\nprint(x + 1)\n```")
    assert two is not None and two.output == "3"


def _gone(pid: int, wait: float = 10.0) -> bool:
    """The process exits within ``wait`` s (SIGKILL is delivered asynchronously; a zombie
    waiting for its reaper counts as gone)."""
    import time

    deadline = time.monotonic() + wait
    while True:
        try:
            with open(f"/proc/{pid}/stat") as f:
                if f.read().rsplit(")", 1)[1].split()[0] in ("Z", "X"):
                    return True
        except FileNotFoundError:
            return True
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)


def test_python_tool_keeps_partial_output_and_leaves_no_process_behind(tmp_path):
    from nbmagic.mas.pytool import run_python

    pidfile = tmp_path / "pid"
    spawn = (
        "import subprocess, sys, time, pathlib\n"
        f"p = pathlib.Path({str(pidfile)!r})\n"
        "child = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(120)'])\n"
        "p.write_text(str(child.pid))\n"
        "print('started', flush=True)\n"
    )
    slow = run_python(spawn + "time.sleep(600)", timeout=4.0)  # sleeping: the CPU limit never ends it first
    assert not slow.ok and slow.output.startswith("started") and "longer than 4 s" in slow.output
    assert _gone(int(pidfile.read_text()))  # the background child died with the program
    # a program that ends while its background child still holds the output pipes is done
    quick = run_python(spawn + "print('done')", timeout=60)
    assert quick.ok and quick.output == "started\ndone"
    assert _gone(int(pidfile.read_text()))


def test_single_agent_one_round_fast_path(openai_server, spec):
    openai_server.set_responder(lambda b: "four")
    mas = RecursiveMAS(agents=[Agent(spec, "solver")], rounds=1, max_new_tokens=9)
    result = mas.run("2+2?")
    assert result.answer == "four" and result.usage.calls == 1
    assert openai_server.chat_requests()[0]["max_tokens"] == 9


def test_custom_roles_names_and_shared_spec(openai_server, spec):
    openai_server.set_responder(lambda b: b["messages"][0]["content"].split("\n\n")[-1])
    agents = [
        Agent(spec, "poet", name="bard", instructions="Answer in rhyme."),
        Agent(spec, "solver"),
        Agent(spec, "solver"),
    ]
    mas = RecursiveMAS(agents=agents, rounds=1)
    assert [m.name for m in mas.members] == ["bard", "solver", "solver-2"]
    assert len(mas._cache) == 1
    result = mas.run("q")
    assert result.agents[0].name == "bard"
    assert openai_server.chat_requests()[0]["messages"][0]["content"].endswith("Answer in rhyme.")


@pytest.mark.parametrize(
    ("kwargs", "needle"),
    [
        ({"pattern": "pyramid"}, "Unknown pattern"),
        ({"rounds": 0}, "rounds"),
        ({"rounds": "3"}, "rounds"),
        ({"latent_steps": 0}, "latent_steps"),
        ({"mode": "telepathy"}, "Unknown mode"),
        ({"agents": [Agent(None, "wizard")]}, "Unknown role"),
        ({"pattern": "deliberation", "agents": [Agent(None, "planner"), Agent(None, "solver")]}, "reflector"),
        ({"pattern": "mixture", "agents": [Agent(None, "summarizer"), Agent(None, "math")]}, "summarizer"),
        ({"pattern": "distillation", "agents": [Agent(None, "expert")]}, "two agents"),
        ({"mode": "latent"}, "hf:"),
        ({"agents": ["solver"]}, "Agent(model, role)"),
        ({"tool_timeout": "10"}, "tool_timeout"),
        ({"tool_timeout": 0}, "tool_timeout"),
        ({"links": 5}, "links must be the path"),
        ({"mode": 5}, "Unknown mode"),
        ({"pattern": 5}, "Unknown pattern"),
        ({"agents": [Agent(None, "solver", name=5)]}, "name must be a string"),
        ({"agents": [Agent(None, "solver", instructions=["be brief"])]}, "instructions must be a string"),
        ({"on_event": "print"}, "on_event must be a callable"),
    ],
)
def test_bad_configuration_is_one_clear_config_error(spec, kwargs, needle):
    with pytest.raises(ConfigError) as err:
        RecursiveMAS(model=spec, **kwargs)
    assert needle in err.value.message


def test_links_need_latent_mode(spec, tmp_path):
    with pytest.raises(ConfigError, match="latent mode"):
        RecursiveMAS(model=spec, links=tmp_path)


def test_empty_question_and_server_failure_keep_partial_work(openai_server, spec):
    mas = RecursiveMAS(model=spec, rounds=1)
    with pytest.raises(ConfigError):
        mas.run("   ")
    with pytest.raises(ConfigError, match="max_new_tokens"):
        mas.run("q", max_new_tokens=0)
    openai_server.queue("plan ready", *[Reply(status=500) for _ in range(5)])
    with pytest.raises(NbmagicError) as err:
        RecursiveMAS(model=f"openai-compat:test-model@{openai_server.url}", rounds=1).run("q")
    partial = err.value.partial
    assert partial is not None and partial.transcript[0]["content"] == "plan ready"


@pytest.mark.parametrize("pattern", ["mixture", "sequential"])
def test_ctrl_c_with_calls_in_flight_returns_at_once(openai_server, pattern):
    """Ctrl-C while the mixture's specialists wait on slow replies ends the run now, as it does
    with sequential's one call: nobody waits for the replies still on their way."""
    import signal
    import threading
    import time

    from nbmagic.errors import RunInterrupted
    from nbmagic.events import Failed

    openai_server.set_responder(lambda body: Reply("slow words", delay=6.0))
    rec = EventRecorder()
    mas = RecursiveMAS(model=f"openai-compat:test-model@{openai_server.url}", pattern=pattern, rounds=1,
                       message_tokens=5, max_new_tokens=5, on_event=rec)
    main = threading.main_thread().ident
    assert main is not None and threading.current_thread() is threading.main_thread()
    timer = threading.Timer(0.5, signal.pthread_kill, (main, signal.SIGINT))  # Ctrl-C, to the main thread
    t0 = time.perf_counter()
    timer.start()
    try:
        with pytest.raises(RunInterrupted) as info:
            mas.run("What is 2+2?")
        elapsed = time.perf_counter() - t0
    finally:
        timer.cancel()
    assert elapsed < 3.0  # the replies take 6 s; before the fix mixture took all of them
    assert len(rec.of(AgentStarted)) == (3 if pattern == "mixture" else 1)  # the specialists were all in flight
    assert info.value.partial is not None and info.value.partial.answer == ""
    time.sleep(0.2)
    assert rec.kinds()[-1] == "Failed" and rec.of(Failed)[0].message == "interrupted"  # nothing reported after
    assert not rec.of(TextDelta)
    mas.close()
