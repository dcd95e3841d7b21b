"""One run lifecycle and one result protocol for the engines (nbmagic.lifecycle)."""

from __future__ import annotations

from typing import Any

import pytest

from nbmagic.errors import BudgetExceededError, RunInterrupted
from nbmagic.events import EventRecorder, Failed
from nbmagic.lifecycle import EngineResult, RunLifecycle
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
