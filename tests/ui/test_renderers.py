"""The three renderers and the state they share, driven by synthetic event streams."""

from __future__ import annotations

import io

import pytest
from rich.console import Console

from nbmagic import events as ev
from nbmagic.errors import ConfigError
from nbmagic.ui.dashboard import Dashboard
from nbmagic.ui.plain import PlainLog
from nbmagic.ui.rich_live import RichLive, build_renderable
from nbmagic.ui.select import detect, make_renderer, resolve
from nbmagic.ui.state import RunState
from nbmagic.ui.summary import MagicResult, RunSummary, summary_text
from tests.ui.streams import agent_stream, rlm_stream


def feed(renderer, events):
    renderer.start(events[0].title, engine=events[0].engine)
    for e in events:
        renderer(e)
    return renderer


# --- state -------------------------------------------------------------------------------------


def test_state_folds_agent_run_into_grid_plan_and_cells():
    s = RunState()
    for e in agent_stream():
        s.apply(e)
    assert (s.engine, s.title, s.model) == ("agent", "Plot monthly revenue", "openai-compat:test-model")
    rows = dict(s.grid_rows())
    assert list(rows) == ["planner", "critic"]
    assert [c.state for c in rows["critic"]] == ["done", "done"]
    assert rows["critic"][1].tokens == 12 and rows["critic"][1].total == 8
    assert [p.status for p in s.plan] == ["done", "done"]
    assert s.plan[1].attempts == 2
    assert len(s.cells) == 4
    assert (s.prompt_tokens, s.completion_tokens, s.calls) == (200, 40, 3)
    assert s.stream_agent == "coder"


def test_state_tracks_latent_progress_while_running():
    s = RunState()
    s.apply(ev.RoundStarted(1, 3))
    s.apply(ev.AgentStarted("planner", "planner", "latent"))
    for k in range(1, 6):
        s.apply(ev.LatentStep("planner", k, 32))
    cell = s.grid[(1, "planner")]
    assert cell.state == "latent" and cell.label().startswith("latent 5/32")
    s.apply(ev.TextDelta("planner", "hello world "))
    assert cell.state == "decoding" and cell.tokens == 2


def test_state_folds_rlm_iterations_and_budget():
    s = RunState()
    for e in rlm_stream():
        s.apply(e)
    assert [it.i for it in s.iterations] == [1, 2, 3]
    assert (s.subcalls, s.budget_left, s.budget_total, s.subcall_failures) == (4, 6, 10, 1)


def test_a_second_mas_run_starts_a_fresh_grid():
    s = RunState()
    for _ in range(2):
        s.apply(ev.RunStarted("mas", "x"))
        s.apply(ev.RoundStarted(1, 1))
        s.apply(ev.AgentStarted("solver", "solver", "text"))
    assert s.mas_runs == 2 and len(s.grid) == 1


# --- throttling ----------------------------------------------------------------------------------


def test_frequent_events_are_coalesced_and_flushed_at_close():
    log = PlainLog(io.StringIO(), hz=0.001)  # one draw per 1000 s: only structural events draw
    log.start("t", engine="mas")
    log(ev.AgentStarted("a", "solver", "text"))
    base = log.draws
    for _ in range(500):
        log(ev.TextDelta("a", "word "))
    assert log.draws == base  # all 500 deltas coalesced
    assert log.state.stream_text.count("word") == 500  # but folded into the state
    log(ev.AgentFinished("a", 500, 1.0))
    assert log.draws == base + 1


# --- dashboard ---------------------------------------------------------------------------------------


def test_dashboard_widgets_after_agent_stream():
    dash = feed(Dashboard(display=False, hz=1000), agent_stream())
    assert dash.grid.layout.display is None  # visible
    assert "round 2" in dash.grid.value and "planner" in dash.grid.value and "critic" in dash.grid.value
    assert "done · 8 latent · 12 tok" in dash.grid.value
    assert "☑ Load the CSV" in dash.plan.value and "(2 attempts)" in dash.plan.value
    assert "read_csv" in dash.stream.value and "coder" in dash.stream_label.value
    assert dash.iterations.layout.display == "none"  # no RLM iterations in an agent run
    assert "openai-compat:test-model" in dash.header.value
    dash.close("done")
    assert dash.final is not None
    bundle = dash.final._repr_mimebundle_()
    assert "plan 2/2" in bundle["text/plain"] and "4 cells" in bundle["text/plain"]
    assert "<details>" in bundle["text/html"]


def test_dashboard_widgets_after_rlm_stream():
    dash = feed(Dashboard(display=False, hz=1000), rlm_stream())
    acc = dash.iterations
    assert len(acc.children) == 3 and acc.selected_index == 2
    assert acc.titles[1].startswith("iteration 2 · 1.5 s")
    assert "llm_query_batched" in acc.children[1].children[0].value
    assert (dash.budget.value, dash.budget.max) == (4, 10)
    assert "6 left" in dash.budget_label.value and "1 failed" in dash.budget_label.value
    assert dash.grid.layout.display == "none"


def test_dashboard_shows_notices():
    dash = Dashboard(display=False)
    dash.start("x", engine="agent")
    dash(ev.Notice("Step 1 rebinds your variable(s): df.", level="warning"))
    assert "rebinds your variable" in dash.notices.value and dash.notices.layout.display is None


# --- rich ------------------------------------------------------------------------------------------


def _text(renderable) -> str:
    console = Console(record=True, width=140, file=io.StringIO())
    console.print(renderable)
    return console.export_text()


def test_rich_renderable_shows_grid_plan_and_iteration():
    s = RunState()
    for e in agent_stream(interrupted_after_step=1):
        s.apply(e)
    text = _text(build_renderable(s))
    assert "round 1" in text and "round 2" in text and "critic" in text
    assert "Load the CSV" in text and "✔" in text and "☐ Plot revenue per month" in text
    s2 = RunState()
    for e in rlm_stream():
        s2.apply(e)
    text2 = _text(build_renderable(s2))
    assert "iteration 3 of 3" in text2 and "submit('7 chapters')" in text2
    assert "sub-calls: 4 used · 6 left" in text2


def test_rich_live_leaves_one_summary_line():
    buf = io.StringIO()
    live = feed(RichLive(Console(file=buf, width=120, force_terminal=False)), rlm_stream())
    live.close("done")
    out = buf.getvalue()
    assert "nbmagic: rlm done in" in out and "3 iterations" in out and "4/10 sub-calls" in out


# --- plain -------------------------------------------------------------------------------------------


def test_plain_log_lines_are_concise():
    buf = io.StringIO()
    log = feed(PlainLog(buf), agent_stream())
    log.close("done")
    lines = buf.getvalue().splitlines()
    assert all(line.startswith("[nbmagic] ") for line in lines)
    text = buf.getvalue()
    assert "round 2/2" in text and "critic done: 12 tokens, 8 latent steps" in text
    assert "plan: 1) Load the CSV 2) Plot revenue per month" in text
    assert "cell failed (attempt 1): NameError" in text
    assert "agent done in" in lines[-1] and "plan 2/2" in lines[-1]
    assert "word" not in text and "read_csv" not in text  # streamed text is not logged
    assert len(lines) < 25


def test_plain_log_rlm():
    buf = io.StringIO()
    log = feed(PlainLog(buf), rlm_stream())
    log.close("interrupted", "interrupted")
    text = buf.getvalue()
    assert "iteration 2: chunks = [text[i:i+1000] for i in range(0, len(text), 1000)] (+1 lines)" in text
    assert "sub-call 3 failed" in text
    assert "rlm interrupted in" in text.splitlines()[-1]


# --- choosing ----------------------------------------------------------------------------------------


def test_detect_and_override(ipython_shell, monkeypatch):
    assert detect(ipython_shell) == "plain"  # a plain InteractiveShell: no widgets, no terminal
    assert detect(None) == "plain"
    assert resolve("rich", ipython_shell) == ("rich", "option")
    monkeypatch.setenv("NBMAGIC_RENDERER", "widgets")
    assert resolve(None, ipython_shell) == ("widgets", "NBMAGIC_RENDERER")
    assert resolve("plain", ipython_shell) == ("plain", "option")  # the option beats the env
    monkeypatch.setenv("NBMAGIC_RENDERER", "fancy")
    with pytest.raises(ConfigError, match="Unknown renderer 'fancy'"):
        resolve(None, ipython_shell)
    assert isinstance(make_renderer("widgets", display=False), Dashboard)
    assert isinstance(make_renderer("rich"), RichLive)
    assert isinstance(make_renderer("plain"), PlainLog)


# --- summary and result -----------------------------------------------------------------------------


def test_summary_text_and_result_bundles():
    s = RunState()
    for e in rlm_stream():
        s.apply(e)
    s.finish("done")
    line = summary_text(s)
    assert line.startswith("rlm done in") and "3 iterations" in line and "4/10 sub-calls" in line
    assert "440 tokens" in line
    assert repr(RunSummary(s)).startswith("nbmagic: rlm done")
    r = MagicResult(kind="rlm", answer="7 chapters", summary=line)
    bundle = r._repr_mimebundle_()
    assert bundle["text/markdown"].startswith("7 chapters") and str(r) == "7 chapters"
    a = MagicResult(kind="agent", cells=[{}, {}], summary="agent done", message="Done: 1 step.\n  1. x — ok")
    b = a._repr_mimebundle_()
    assert b["text/html"].startswith("<div class='nbm-result'>Done: 1 step.<br>") and a.ok and not a.partial
    assert "agent done" not in b["text/plain"]  # the facts line is the progress display's job
    assert "cells=2" in repr(a)


def test_dashboard_ticker_moves_the_clock_while_nothing_happens():
    """A blocked model call emits no events; the header's elapsed time still advances."""
    import threading
    import time

    dash = Dashboard(display=False)
    dash.start("slow call", engine="rlm")
    dash(ev.RoundStarted(1, 1))
    dash(ev.AgentStarted("solver", "solver", "text"))
    before = dash.header.value
    ticker = threading.Thread(target=dash._tick, daemon=True)
    ticker.start()
    deadline = time.monotonic() + 20
    while dash.header.value == before and time.monotonic() < deadline:
        time.sleep(0.05)
    assert dash.header.value != before and "running" in dash.grid.value
    dash.close("done")
    ticker.join(timeout=5)
    assert not ticker.is_alive()  # close() stops it


def test_with_block_closes_the_dashboard_on_an_error():
    """The API form (``with choose_renderer() as ui``): an error still stops the 1 Hz ticker."""
    import threading

    dash = Dashboard(display=False)
    dash.start("x", engine="rlm")
    ticker = threading.Thread(target=dash._tick, daemon=True)  # what start() runs when it displays
    ticker.start()
    with pytest.raises(ValueError), dash:
        dash(ev.RlmIteration(1, "print(1)", "1", 0.1))
        raise ValueError("the server went away")
    ticker.join(timeout=5)
    assert not ticker.is_alive() and dash.closed
    assert dash.state.status == "failed" and dash.state.message == "the server went away"
    assert "1 iteration" in summary_text(dash.state)
    with PlainLog(io.StringIO()) as log:
        log.start("y", engine="rlm")
    assert log.state.status == "done" and "rlm done in" in log.lines[-1]
