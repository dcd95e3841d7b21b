"""One run lifecycle and one result protocol for the engines (nbmagic.lifecycle)."""

from __future__ import annotations

from typing import Any

import pytest

from nbmagic.errors import BudgetExceededError, RunInterrupted
from nbmagic.events import EventRecorder, Failed
from nbmagic.lifecycle import CellsResult, EngineResult, RunLifecycle
from nbmagic.llm.base import Usage
from nbmagic.mas.team import MASResult
from nbmagic.rlm.result import NOT_COMPUTED, RLMResult


def _lifecycle(report: bool = True) -> tuple[RunLifecycle, EventRecorder, list[Any]]:
    rec, ended = EventRecorder(), []
    life = RunLifecycle("x", rec, lambda: "so far", interrupted=lambda: "stopped after 2 steps", report=report,
                        ended=lambda partial, error: ended.append((partial, error)))
    return life, rec, ended


def test_a_failure_gets_the_partial_result_and_one_failed_event() -> None:
    life, rec, ended = _lifecycle()
    with pytest.raises(BudgetExceededError) as info, life.guard():
        raise BudgetExceededError("out of tokens")
    assert info.value.partial == "so far" and ended == [("so far", "out of tokens")]
    assert [(e.engine, e.message, e.partial) for e in rec.of(Failed)] == [("x", "out of tokens", "so far")]


def test_ctrl_c_becomes_run_interrupted_at_the_top_and_stays_a_keyboard_interrupt_below() -> None:
    life, rec, ended = _lifecycle()
    with pytest.raises(RunInterrupted, match="stopped after 2 steps") as info, life.guard():
        raise KeyboardInterrupt
    assert info.value.partial == "so far" and rec.of(Failed)[0].message == "interrupted"
    child, rec, ended = _lifecycle(report=False)
    with pytest.raises(KeyboardInterrupt), child.guard():
        raise KeyboardInterrupt
    assert rec.events == [] and ended == [("so far", "interrupted")]


def test_a_bug_propagates_untouched_and_still_releases_the_run() -> None:
    life, rec, ended = _lifecycle()
    with pytest.raises(ZeroDivisionError), life.guard():
        1 / 0  # noqa: B018
    assert ended == [(None, None)] and rec.events == []


def test_rlm_and_recursive_mas_results_share_the_protocol() -> None:
    rlm = RLMResult(answer=3, trajectory=[{"iteration": 1}], usage={"a": Usage(1, 2, 1), "b": Usage(3, 4, 1)},
                    iterations=1, llm_calls=1, seconds=0.5, computed=False)
    mas = MASResult(answer="x", mode="text", rounds=1, agents=[], usage=Usage(5, 6, 2), seconds=1.0,
                    transcript=[{"round": 1}], complete=False)
    assert isinstance(rlm, EngineResult) and isinstance(mas, EngineResult)
    assert (rlm.total_usage.total_tokens, rlm.steps, rlm.warnings) == (10, [{"iteration": 1}], [NOT_COMPUTED])
    assert (mas.total_usage.calls, mas.steps, mas.warnings, mas.complete) == (2, [{"round": 1}], [], False)


def test_replace_puts_the_runs_own_partial_over_an_inner_engines() -> None:
    """The agent's lifecycle (``replace=True``): a failed or interrupted inner RecursiveMAS plan left its
    own partial and reported itself; the agent's partial replaces it, a ``RunInterrupted`` raised
    inside is the agent's interrupt, and the interrupted partial is built by its own callable."""
    rec = EventRecorder()
    life = RunLifecycle("agent", rec, lambda: "failed so far", interrupted=lambda: "agent stopped",
                        partial_interrupted=lambda: "interrupted so far", replace=True)
    with pytest.raises(BudgetExceededError) as info, life.guard():
        raise BudgetExceededError("out of tokens", partial="the planner's")
    assert info.value.partial == "failed so far"
    with pytest.raises(RunInterrupted, match="agent stopped") as stopped, life.guard():
        raise RunInterrupted("RecursiveMAS run interrupted.", partial="the planner's")
    assert stopped.value.partial == "interrupted so far"
    assert [(e.message, e.partial) for e in rec.of(Failed)] == [("out of tokens", "failed so far"),
                                                                ("interrupted", "interrupted so far")]
    keep, rec, _ = _lifecycle()  # without replace (the RLM, RecursiveMAS): an inner partial is kept
    with pytest.raises(BudgetExceededError) as info, keep.guard():
        raise BudgetExceededError("out of tokens", partial="the child's")
    assert info.value.partial == "the child's"


def test_a_failing_agent_run_ends_through_the_shared_lifecycle(openai_server: Any, openai_model: Any, tmp_path: Any,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    """The spend cap stops a real agent run: the error carries the agent's partial result (an
    incomplete EngineResult with the finished cell) and one ``Failed`` reports it, through RunLifecycle."""
    from nbmagic.agent.core import NotebookAgent
    from nbmagic.agent.result import AgentResult

    guarded: list[str] = []
    guard = RunLifecycle.guard

    def spy(self: RunLifecycle) -> Any:
        guarded.append(self.engine)
        return guard(self)

    monkeypatch.setattr(RunLifecycle, "guard", spy)
    monkeypatch.chdir(tmp_path)
    openai_server.set_responder(lambda request: "We compute it.\n\n```python\nx = 6 * 7\nprint(x)\n```\n")
    rec, ns = EventRecorder(), {}
    agent = NotebookAgent(openai_model, on_event=rec, planner="parts", answer=False, max_run_tokens=1)
    with pytest.raises(BudgetExceededError) as info:
        agent.run("Compute 6 times 7. Then print the square of 5.", ns, base_dir=tmp_path)
    partial = info.value.partial
    assert guarded == ["agent"]
    assert isinstance(partial, AgentResult) and isinstance(partial, EngineResult) and not partial.complete
    assert ns["x"] == 42 and [c.source for c in partial.cells if c.cell_type == "code"] == ["x = 6 * 7\nprint(x)"]
    assert [(e.engine, e.message, e.partial) for e in rec.of(Failed)] == [("agent", info.value.message, partial)]


def test_the_magics_read_all_three_engines_through_the_protocol() -> None:
    """``_to_result`` reads RLM, RecursiveMAS and agent results alike; the agent's, being cells, shows
    its summary and keeps its cells and plan (its answer is one of the cells)."""
    from nbmagic.agent.result import AgentResult
    from nbmagic.magics import _to_result
    from nbmagic.ui.plain import PlainLog

    rlm = RLMResult(answer=3, trajectory=[{"iteration": 1}], usage={"a": Usage(1, 2, 1)}, iterations=1,
                    llm_calls=1, seconds=0.5)
    mas = MASResult(answer="x", mode="text", rounds=1, agents=[], usage=Usage(5, 6, 2), seconds=1.0,
                    transcript=[{"round": 1}])
    agent = AgentResult(cells=["cell"], summary="Done: 1 step(s).", plan=["Compute"], trajectory=[{"type": "plan"}],
                        usage=Usage(7, 8, 3), ok=True, answer="42")
    assert isinstance(agent, CellsResult) and not isinstance(rlm, CellsResult) and not isinstance(mas, CellsResult)
    got = {kind: _to_result(kind, raw, PlainLog(), "done") for kind, raw in
           (("rlm", rlm), ("mas", mas), ("agent", agent))}
    assert [(r.answer, r.trajectory, r.usage.calls) for r in got.values()] == [
        (3, [{"iteration": 1}], 1), ("x", [{"round": 1}], 2), (None, [{"type": "plan"}], 3)]
    assert (got["agent"].cells, got["agent"].plan, got["agent"].message) == (["cell"], ["Compute"], "Done: 1 step(s).")
    assert repr(got["agent"]).startswith("<nbmagic agent result done: cells=1,") and got["agent"].ok


def test_recursive_mas_interrupted_carries_a_partial_marked_incomplete(openai_server: Any) -> None:
    import os
    import signal
    import threading

    from nbmagic.mas.system import RecursiveMAS
    from nbmagic.testing.openai_server import Reply

    openai_server.set_responder(lambda req: Reply(text="thinking", delay=5.0))
    mas = RecursiveMAS(model=f"openai-compat:test-model@{openai_server.url}", mode="text", rounds=1)
    timer = threading.Timer(0.5, os.kill, (os.getpid(), signal.SIGINT))
    timer.start()
    try:
        with pytest.raises(RunInterrupted) as info:
            mas.run("plan it")
    finally:
        timer.cancel()
        mas.close()
    assert isinstance(info.value.partial, MASResult) and info.value.partial.complete is False


def test_one_value_describer_serves_the_rlm_and_the_agent() -> None:
    """The two context.py modules each described DataFrames their own way; the facts now come from one place."""
    import pandas as pd

    from nbmagic.agent.context import ContextLimits, describe
    from nbmagic.describe import table_facts
    from nbmagic.rlm.context import summarize

    df = pd.DataFrame({f"c{i}": range(3) for i in range(45)})
    facts = table_facts(df, max_columns=40)
    assert (facts.rows, len(facts.columns), facts.more_columns) == (3, 40, 5)
    rlm_text, agent_text = summarize("df", df), describe("df", df, ContextLimits())
    assert "shape 3 rows × 45 columns" in rlm_text and "… +5 more" in rlm_text
    assert "DataFrame 3 rows × 45 columns" in agent_text and "… 15 more" in agent_text
    series = table_facts(df["c1"].rename("s"), head_rows=2)
    assert (series.rows, series.dtype, series.name, series.columns) == (3, "int64", "s", [])


def test_one_window_probe_for_every_prompt_fitter() -> None:
    """agent/budget.window and the RLM's compaction probed n_ctx and context_window in opposite orders."""
    from nbmagic.agent.budget import window
    from nbmagic.rlm.compaction import model_window

    class Both:
        context_window, n_ctx = 4096, 2048

    class Closed:
        @property
        def n_ctx(self) -> int:
            raise RuntimeError("closed")

    assert window(Both()) == model_window(Both()) == 4096 and model_window(Both(), 1000) == 1000
    assert window(Closed()) is None and model_window(object()) is None
