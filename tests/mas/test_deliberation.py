"""The deliberation pattern's one loop (:mod:`nbmagic.mas.deliberation`).

Its contract with the real Python tool (:func:`nbmagic.mas.pytool.run_python`, a subprocess)
and a scripted tool-caller (a list of replies, the prompts it was given recorded), then that
both engines, ``%%agent`` and RecursiveMAS's tool-caller, go through it: one loop in the code.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from nbmagic.agent import loop as agent_loop
from nbmagic.agent.core import NotebookAgent
from nbmagic.events import CellRun, EventRecorder, ToolCalled
from nbmagic.mas import deliberation, text
from nbmagic.mas.deliberation import Accept, Done, FollowUp, Refine, Rerun, Run, deliberate
from nbmagic.mas.pytool import ToolRun, code_blocks, run_python
from nbmagic.mas.system import RecursiveMAS
from nbmagic.testing.agent_scripts import write_sales_csv

Messages = list[dict[str, str]]


def block(code: str) -> str:
    return f"Here it is.\n```python\n{code}\n```\n"


class Scripted:
    """A tool-caller whose replies are scripted; the tool is the real subprocess, the judge
    accepts a run that printed ``want``. A reply with no python block is malformed (a follow-up)."""

    def __init__(self, replies: list[str], want: str = "42", malformed: str = "follow-up") -> None:
        self.replies = list(replies)
        self.want = want
        self.malformed = malformed
        self.asked: list[Messages] = []
        self.asked_at: list[int] = []
        self.ran: list[str] = []
        self.exchanges = 0
        self.attempts: list[int] = []
        self.on_error: Any = None  # judge hook for a failed run: returns a Judgement or None

    def ask(self, messages: Messages, attempt: int) -> str:
        self.asked.append(messages)
        self.asked_at.append(attempt)
        return self.replies.pop(0)

    def prepare(self, reply: str, attempt: int, rerun: str | None) -> Any:
        self.attempts.append(attempt)
        if rerun is not None:
            return Run(rerun)
        blocks = code_blocks(reply)
        if not blocks:
            return Done("answer") if self.malformed == "done" else FollowUp("Answer with one ```python block.")
        return Run("\n\n".join(blocks))

    def run(self, draft: str) -> ToolRun:
        self.ran.append(draft)
        return run_python(draft, timeout=20)

    def judge(self, draft: str, result: ToolRun, attempt: int) -> Any:
        if result.ok and result.output == self.want:
            return Accept()
        if not result.ok and self.on_error is not None and (j := self.on_error(result)) is not None:
            return j
        return Refine(f"The program showed:\n{result.output}\nFix it so it prints {self.want}.")

    def exchange(self, messages: Messages, reply: str, refinement: str) -> Messages:
        self.exchanges += 1
        return [*messages, {"role": "assistant", "content": reply}, {"role": "user", "content": refinement}]


START: Messages = [{"role": "user", "content": "Print six times seven."}]


def test_a_failing_cells_error_reaches_the_next_prompt_and_acceptance_stops_the_loop():
    caller = Scripted([block("print(6 * 7 / 0)"), block("print(6 * 7)"), block("print('never asked')")])
    out = deliberate(caller, START, max_attempts=4)
    assert out.status == "accepted" and out.attempts == 2
    assert len(caller.asked) == 2 and caller.replies == [block("print('never asked')")]
    assert caller.asked_at == [1, 2] and caller.attempts == [1, 2]
    second = caller.asked[1]
    assert second[-2] == {"role": "assistant", "content": block("print(6 * 7 / 0)")}
    assert "ZeroDivisionError" in second[-1]["content"]  # the real traceback, from the subprocess
    assert out.result is not None and out.result.ok and out.result.output == "42"
    assert out.draft == "print(6 * 7)" and out.reply == block("print(6 * 7)")


def test_the_maximum_attempts_is_respected_and_no_prompt_is_built_after_the_last():
    caller = Scripted([block(f"print({n})") for n in range(1, 6)])
    out = deliberate(caller, START, max_attempts=3)
    assert out.status == "spent" and out.attempts == 3
    assert caller.ran == ["print(1)", "print(2)", "print(3)"] and len(caller.asked) == 3
    assert caller.exchanges == 2  # no refinement is prepared that no model would read
    assert out.result is not None and out.result.output == "3"  # the last run is what the caller keeps


def test_a_follow_up_without_running_consumes_an_attempt():
    caller = Scripted(["Sure, I can help with that.", block("print(42)")])
    out = deliberate(caller, START, max_attempts=2)
    assert out.status == "accepted" and out.attempts == 2 and caller.ran == ["print(42)"]
    assert caller.asked[1][-1]["content"] == "Answer with one ```python block."

    spent = Scripted(["Sure.", block("print(42)")])
    out = deliberate(spent, START, max_attempts=1)
    assert out.status == "spent" and out.attempts == 1
    assert spent.ran == [] and out.result is None and out.draft is None and spent.exchanges == 0


def test_rerun_runs_the_same_draft_again_without_asking(tmp_path: Path):
    """A judge that fixes the tool's environment (the agent installs a missing package) reruns the cell."""
    data = tmp_path / "six.txt"
    caller = Scripted([block(f"print(6 * int(open({str(data)!r}).read()))")])

    def provide(result: ToolRun) -> Any:
        if "FileNotFoundError" in result.output and not data.exists():
            data.write_text("7")
            return Rerun()
        return None

    caller.on_error = provide
    out = deliberate(caller, START, max_attempts=3)
    assert out.status == "accepted" and out.attempts == 2
    assert len(caller.asked) == 1 and len(caller.ran) == 2 and caller.ran[0] == caller.ran[1]
    assert caller.attempts == [1, 2]


def test_a_given_first_reply_and_the_final_reply_after_the_last_output():
    """RecursiveMAS's shape: the agent's message is given, and after the last run it answers once more."""
    caller = Scripted([block("print(6 * 7)"), "FINAL ANSWER: 42"], want="never", malformed="done")
    out = deliberate(caller, START, max_attempts=2, reply=block("print(6 * 7 + 0)"), final_reply=True)
    assert caller.ran == ["print(6 * 7 + 0)", "print(6 * 7)"]
    assert out.status == "done" and out.reply == "FINAL ANSWER: 42" and len(caller.asked) == 2
    assert caller.asked_at == [2, 3] and caller.attempts == [1, 2]  # the final reply is no attempt
    assert "42" in caller.asked[-1][-1]["content"]  # the last run's output reached the final reply

    answered = Scripted([], malformed="done")  # a given reply with no code is the answer: nothing runs
    out = deliberate(answered, START, max_attempts=2, reply="It is 42.", final_reply=True)
    assert out.status == "done" and out.reply == "It is 42." and answered.asked == [] and answered.ran == []

    none = Scripted([])  # no tool calls allowed: the loop does nothing, not even the final reply
    out = deliberate(none, START, max_attempts=0, reply=block("print(1)"), final_reply=True)
    assert out.status == "spent" and none.asked == [] and none.ran == []


# --- both engines go through the one loop -------------------------------------------------------------


@pytest.fixture
def counted(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, str, int]]:
    """Wrap the loop where each engine calls it; record (engine, how it ended, attempts)."""
    seen: list[tuple[str, str, int]] = []
    for engine, module in (("agent", agent_loop), ("mas", text)):
        assert module.deliberate is deliberation.deliberate  # the very function, not a copy

        def spy(*args: Any, _engine: str = engine, **kw: Any) -> Any:
            out = deliberation.deliberate(*args, **kw)
            seen.append((_engine, out.status, out.attempts))
            return out

        monkeypatch.setattr(module, "deliberate", spy)
    return seen


def test_the_agent_runs_each_part_through_the_one_loop(counted, tmp_path, monkeypatch, openai_server,
                                                       openai_model):
    write_sales_csv(tmp_path / "sales.csv")
    monkeypatch.chdir(tmp_path)

    def responder(body: dict[str, Any]) -> str:
        prompt = body["messages"][1]["content"]
        if "units" in re.search(r"^Step \d+ of \d+: (.+)$", prompt, re.M).group(1).lower():
            return block("units = sales.groupby('region')['units'].sum()\nunits")
        if len(body["messages"]) == 2:  # the first try names a column that is not there
            return block("sales.groupby('prodct')['revenue'].sum().nlargest(5)")
        return block("top = sales.groupby('product')['revenue'].sum().nlargest(5)\ntop")

    openai_server.set_responder(responder)
    events = EventRecorder()
    agent = NotebookAgent(openai_model, on_event=events, planner="parts", answer=False, cell_timeout=20)
    # no figure part: after an IPython shell's plots earlier in the process, a namespace run's figure
    # is not seen (on main too), and this test is about the loop, not figures
    result = agent.run("Analyze sales.csv: the top 5 products by revenue and the total units per region",
                       {}, base_dir=tmp_path)
    assert result.ok and not result.failed_steps
    assert [c for c in counted if c[0] == "agent"] == [("agent", "accepted", 2), ("agent", "accepted", 1)]
    runs = events.of(CellRun)
    assert [r.ok for r in runs][-3:] == [False, True, True]


def test_recursive_mas_tool_caller_runs_through_the_one_loop(counted, openai_server):
    def responder(body: dict[str, Any]) -> str:
        system, user = body["messages"][0]["content"], body["messages"][-1]["content"]
        if re.search(r"You are the reflector", system, re.I):
            return "VERDICT: AGREE" if "FINAL ANSWER" in user else "Compute it with Python."
        if "Python output" in user:
            return "FINAL ANSWER: " + re.search(r"```text\n(.*?)\n```", user, re.DOTALL).group(1)
        return block("print(6 * 7)")

    openai_server.set_responder(responder)
    rec = EventRecorder()
    mas = RecursiveMAS(model=f"openai-compat:test-model@{openai_server.url}", pattern="deliberation", rounds=3,
                       on_event=rec)
    result = mas.run("What is 6 times 7?")
    assert "FINAL ANSWER: 42" in result.answer
    # round 1: the tool-caller runs its code, reads 42, answers; round 2: the reflector agrees
    assert [c for c in counted if c[0] == "mas"] == [("mas", "done", 2)]
    assert [t.output for t in rec.of(ToolCalled)] == ["42"]
