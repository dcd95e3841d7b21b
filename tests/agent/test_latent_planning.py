"""With a local Hugging Face model the agent plans in latent mode (RecursiveMAS decides, the agent records it)."""

from __future__ import annotations

from nbmagic.agent.core import NotebookAgent
from nbmagic.events import AgentStarted, EventRecorder, Notice


def test_plans_in_latent_mode_with_a_local_hf_model(tiny_hf_model_path, tmp_path):
    from nbmagic.llm.specs import load_model

    model = load_model(f"hf:{tiny_hf_model_path()}")
    rec = EventRecorder()
    agent = NotebookAgent(
        model,
        planner="mas",
        mas_options={"rounds": 1, "latent_steps": 3, "max_new_tokens": 8, "mode": "latent"},
        dry_run=True,
        max_fixes=0,
        max_tokens=8,
        on_event=rec,
    )
    result = agent.run("Say hello", {}, base_dir=tmp_path)
    assert result.mode == "latent"
    planning = [e for e in rec.of(AgentStarted) if e.agent not in ("tool_caller", "reflector")]
    assert {e.mode for e in planning} == {"latent"}
    assert len(planning) == 3  # planner, critic, solver
    # then the loop's own round: the tool-caller writes the (dry-run) cell
    assert [e.agent for e in rec.of(AgentStarted)][3:] == ["tool_caller"]
    # random weights write no list and no code: the run degrades, it does not crash
    assert result.plan == ["Say hello"]
    assert any("held no list" in n.message for n in rec.of(Notice))
    assert result.cells == [] and "Dry run" in result.summary
    assert result.trajectory[1]["mode"] == "latent"


def test_ctrl_c_during_mixture_planning_returns_at_once(openai_server, tmp_path):
    """Issue 13.6: with the specialists' calls in flight (8 s replies), Ctrl-C ends the run now."""
    import signal
    import threading
    import time

    import pytest

    from nbmagic.errors import RunInterrupted
    from nbmagic.llm.specs import load_model
    from nbmagic.testing.openai_server import Reply

    openai_server.set_responder(lambda body: Reply("slow words", delay=8.0))
    model = load_model(f"openai-compat:test-model@{openai_server.url}", max_retries=0, timeout=30)
    agent = NotebookAgent(model, planner="mas", mas_options={"pattern": "mixture", "rounds": 1}, dry_run=True,
                          max_fixes=0)
    timer = threading.Timer(0.5, signal.pthread_kill, (threading.main_thread().ident, signal.SIGINT))
    t0 = time.perf_counter()
    timer.start()
    try:
        with pytest.raises(RunInterrupted):
            agent.run("Load the data and plot it", {}, base_dir=tmp_path)
        elapsed = time.perf_counter() - t0
    finally:
        timer.cancel()
    assert elapsed < 4.0  # not the 8 s the three replies in flight would take
    assert list(tmp_path.iterdir()) == []  # nothing written by an interrupted plan
    model.close()
