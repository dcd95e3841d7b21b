"""The constrained first turn: the root picks a helper call, the engine writes and runs it
(loopback scripted root), the helper's value as the fallback answer, the setting on every entry point,
and the grammar path on the embedded model."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from nbmagic.events import EventRecorder, Notice, RlmIteration
from nbmagic.rlm import first_turn
from nbmagic.rlm.agent import RLM
from nbmagic.rlm.prompts import CHOICE_MARKER
from nbmagic.rlm.strategies import STRATEGY_NAMES
from nbmagic.rlm.trajectory import read_trajectory
from nbmagic.testing.openai_server import OpenAICompatServer
from nbmagic.testing.rlm_scripts import ScriptedRoot, code

# Swedish inventory lines, "key: value; ..." (not the evaluation's shape)
ROWS = [f"artikel: {'lampa' if i % 3 else 'stol'}; lager: {'Malmö' if i % 2 else 'Umeå'}; antal: {i % 5}"
        for i in range(90)]
QUESTION = "Hur många rader har artikel lampa och lager Malmö?"
EXPECTED = sum(1 for i in range(90) if i % 3 and i % 2)


def test_the_root_picks_the_helper_and_the_engine_runs_it(openai_server: OpenAICompatServer, models: Any,
                                                          tmp_path: Path) -> None:
    root, sub = models
    script = ScriptedRoot(["(never asked: the first turn is the engine's)", code("submit(answer)")],
                          choice=["count_matching(context)"])
    openai_server.set_responder(script)
    rec = EventRecorder()
    path = tmp_path / "t.jsonl"
    res = RLM(root, sub_model=sub, first_turn="helper", strategy="repl", on_event=rec,
              trajectory_path=str(path)).query(QUESTION, context=ROWS)
    assert res.answer == EXPECTED and res.computed and res.iterations == 2
    first = res.trajectory[0]
    assert first["code"] == "answer = count_matching(context)\nprint(answer)" and first["error"] is None
    assert first["protocol"] == "helper_choice" and first["first_turn"]["call"] == "count_matching(context)"
    assert first["first_turn"]["grammar"] is False  # a loopback model takes no grammar: its reply was parsed
    assert first["notes"] == ["first turn: a constrained helper choice (first_turn='helper' was asked for); the root "
                              "replied 'count_matching(context)' (its reply parsed for a call) and the engine wrote this code"]
    assert f"-> {EXPECTED}" in first["output"] and "by code" in first["output"]
    # one short choice prompt (question, data summary, the calls), then the root continues from the output
    assert len(script.choice_requests) == 1 and len(script.root_requests) == 1
    choice_prompt = script.choice_requests[0]["messages"]
    assert choice_prompt[0]["content"].startswith(CHOICE_MARKER) and choice_prompt[-1]["content"] == f"Question: {QUESTION}"
    assert all(f"- {name}(context" in choice_prompt[0]["content"] for name in STRATEGY_NAMES)
    seen = script.root_requests[0]["messages"]
    assert seen[2] == {"role": "assistant", "content": "```python\n" + first["code"] + "\n```"}
    assert "REPL output of turn 1/20" in seen[3]["content"] and str(EXPECTED) in seen[3]["content"]
    assert "answer = find_answer(context)" in seen[1]["content"]  # the call line for the asked question
    assert res.strategy["first_turn"]["mode"] == "helper" and res.strategy["first_turn"]["fallback"] is False
    notices = [n.message for n in rec.of(Notice)]
    assert "RLM first turn: a constrained helper choice (first_turn='helper' was asked for)." in notices
    assert rec.of(RlmIteration)[0].code == first["code"]
    meta = read_trajectory(path)[0]
    assert meta["first_turn"]["mode"] == "helper" and meta["first_turn"]["requested"] == "helper"


@pytest.mark.parametrize(
    ("reply", "call"),
    [
        ("count_matching(context)", "count_matching(context)"),
        ("I would use sum_matching here.", "sum_matching(context)"),
        ('map_chunks(context, combine="majority")', "map_chunks(context, combine='majority')"),
        ("map_chunks(context, combine='average')", "map_chunks(context, combine='concat')"),
        ('grep(context, "FEHLER")', "grep(context, 'FEHLER')"),
        ("grep(context)", None),
        ("The data looks like a list of rows.", None),
        ("", None),
    ],
)
def test_parse_choice(reply: str, call: str | None) -> None:
    assert first_turn.parse_choice(reply) == call


def test_calls_that_cannot_fit_the_data_are_left_out_of_the_grammar(openai_server: OpenAICompatServer,
                                                                     models: Any) -> None:
    names, why = first_turn.fitting_calls(ROWS, QUESTION)  # records, but no number field named
    assert "sum_matching" not in names and "count_matching" in names and "number fields are not named" in why
    assert first_turn.fitting_calls(ROWS, "Wie hoch ist die Summe von antal für lampa?") == (first_turn.STRATEGY_NAMES, "")
    assert first_turn.fitting_calls("Ein Brief.\nNoch ein Satz ohne Felder.", QUESTION)[0] == first_turn.STRATEGY_NAMES
    grammar = first_turn.choice_grammar(names)
    assert grammar.startswith('root ::= "find_answer(context)" | "count_matching(context)" | "map_chunks(')
    assert "sum_matching" not in grammar and "pattern ::=" in first_turn.CHOICE_GRAMMAR
    # a parsed reply naming a call that does not fit: the root writes the turn, and is told why
    root, sub = models
    openai_server.set_responder(ScriptedRoot([code("submit(len(context))")], choice=["sum_matching(context)"]))
    res = RLM(root, sub_model=sub, first_turn="helper", strategy="repl").query(QUESTION, context=ROWS)
    assert res.answer == 90 and res.trajectory[0]["code"] == "submit(len(context))"
    assert "picked sum_matching(context), which does not fit" in res.strategy["first_turn"]["why"]


def test_a_reply_that_names_no_helper_leaves_the_turn_to_the_root(openai_server: OpenAICompatServer,
                                                                   models: Any) -> None:
    root, sub = models
    script = ScriptedRoot([code("n = len(context)\nprint(n)\nsubmit(n)")], choice=["Let me think about the data."])
    openai_server.set_responder(script)
    rec = EventRecorder()
    res = RLM(root, sub_model=sub, first_turn="helper", strategy="repl", on_event=rec).query(QUESTION, context=ROWS)
    assert res.answer == 90 and res.computed and res.iterations == 1
    assert res.trajectory[0]["code"].startswith("n = len(context)") and "first_turn" not in res.trajectory[0]
    assert res.strategy["first_turn"]["mode"] == "free" and "named no helper call" in res.strategy["first_turn"]["why"]
    warned = [n for n in rec.of(Notice) if n.level == "warning"]
    assert len(warned) == 1 and "'Let me think about the data.'" in warned[0].message


@pytest.mark.parametrize("environment", ["kernel", "subprocess"])
def test_the_helper_value_is_the_answer_when_the_root_never_submits(openai_server: OpenAICompatServer, models: Any,
                                                                    environment: str) -> None:
    root, sub = models
    script = ScriptedRoot([code("print('checking')")], choice=['grep(context, "Malmö; antal: 4")'])
    openai_server.set_responder(script)
    rec = EventRecorder()
    res = RLM(root, sub_model=sub, first_turn="helper", strategy="repl", max_iterations=2, on_event=rec,
              environment=environment).query("Which lines hold Malmö with antal 4?", context=ROWS)
    lines = [r for r in ROWS if "Malmö; antal: 4" in r]
    assert res.answer.splitlines()[0] == f"{len(lines)} matching line(s)" and lines[0] in res.answer
    assert res.computed and not res.final_step and res.complete
    assert [t["kind"] for t in res.trajectory] == ["code", "code", "helper_fallback"]
    assert len(script.root_requests) == 1  # turn 2 only: no final step was asked
    assert res.strategy["first_turn"]["fallback"] is True
    note = "answer from the first turn's helper call grep(context, 'Malmö; antal: 4')"
    assert any(n.startswith(note) for n in res.notes) and res.trajectory[-1]["why"].startswith(note)
    assert any(n.level == "warning" and note in n.message for n in rec.of(Notice))
    from nbmagic.ui.trajectory_view import TrajectoryView

    html = TrajectoryView(res)._repr_html_()  # the viewer says how the first turn and the answer came about
    assert "first turn: a constrained helper choice" in html and "helper_fallback" in html and "answer from the first turn" in html


class Unreadable:
    """A context whose text cannot be made: every helper that reads it raises."""

    def __str__(self) -> str:
        raise ValueError("this object has no text")

    def __repr__(self) -> str:
        return "<Unreadable>"


def test_the_final_step_is_asked_when_the_helper_raised(openai_server: OpenAICompatServer, models: Any) -> None:
    root, sub = models
    script = ScriptedRoot([code("print('checking')"), "It is 4."], choice=["find_answer(context)"])
    openai_server.set_responder(script)
    res = RLM(root, sub_model=sub, first_turn="helper", strategy="repl", max_iterations=1).query(
        QUESTION, context=Unreadable())
    first = res.trajectory[0]
    assert first["first_turn"]["call"] == "find_answer(context)" and "this object has no text" in first["output"]
    assert first["error"] is not None and res.strategy["first_turn"]["has_value"] is False
    assert res.trajectory[-1]["kind"] == "final" and res.answer == "It is 4." and res.final_step  # no value to fall back on


def test_auto_constrains_only_local_roots(openai_server: OpenAICompatServer, models: Any) -> None:
    root, sub = models
    script = ScriptedRoot([code("submit(len(context))")])
    openai_server.set_responder(script)
    res = RLM(root, sub_model=sub, strategy="repl").query(QUESTION, context=ROWS)
    assert res.answer == 90 and script.choice_requests == []
    assert res.strategy["first_turn"]["mode"] == "free" and "not a local one" in res.strategy["first_turn"]["why"]
    res = RLM(root, sub_model=sub, strategy="repl", first_turn="helper", recursive=False).query(QUESTION, context=ROWS)
    assert script.choice_requests == [] and "no sub-calls" in res.strategy["first_turn"]["why"]
    res = RLM(root, sub_model=sub, strategy="repl", first_turn="helper").query("What is 6 * 7?")
    assert script.choice_requests == [] and "no `context`" in res.strategy["first_turn"]["why"]


def test_first_turn_setting_on_the_magic_the_cli_and_config(nbmagic_shell: Any, openai_server: OpenAICompatServer,
                                                            tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                            capsys: pytest.CaptureFixture[str]) -> None:
    from nbmagic.cli import main
    from nbmagic.config import settings
    from nbmagic.rlm.settings import RLMSettings

    script = ScriptedRoot([code("submit(answer)")], choice=["count_matching(context)"])
    openai_server.set_responder(script)
    shell = nbmagic_shell
    shell.user_ns["rows"] = ROWS
    res = shell.run_cell(f"%rlm --context rows --strategy repl --first-turn helper {QUESTION}").result
    assert res.answer == EXPECTED and res.raw.strategy["first_turn"]["requested"] == "helper"
    assert "RLM first turn: a constrained helper choice" in capsys.readouterr().out
    shell.run_cell("%rlm --context rows --first-turn always q")
    assert "invalid choice: 'always'" in capsys.readouterr().err
    # %config NbMagic.rlm_first_turn and NBMAGIC_RLM_FIRST_TURN reach the settings object
    shell.run_cell('%config NbMagic.rlm_first_turn = "free"')
    try:
        assert RLMSettings.configured().first_turn == "free"
        n_choices = len(script.choice_requests)
        res = shell.run_cell(f"%rlm --context rows --strategy repl --max-iterations 1 {QUESTION}").result
        assert res.raw.strategy["first_turn"]["mode"] == "free" and "was asked for" in res.raw.strategy["first_turn"]["why"]
        assert len(script.choice_requests) == n_choices  # no choice was asked
    finally:
        settings.rlm_first_turn = None
    capsys.readouterr()
    monkeypatch.setenv("NBMAGIC_RLM_FIRST_TURN", "helper")
    assert RLMSettings.configured().first_turn == "helper"
    f = tmp_path / "rows.jsonl"
    f.write_text("\n".join(json.dumps({"artikel": r.split(";")[0].split(": ")[1]}) for r in ROWS))
    spec = f"openai-compat:test-model@{openai_server.url}"
    n_choices = len(script.choice_requests)
    rc = main(["rlm", "How many rows have artikel stol?", "-c", str(f), "--model", spec, "--strategy", "repl", "-v"])
    out = capsys.readouterr()
    assert rc == 0 and out.out.strip() == "30" and "constrained helper choice" in out.err
    assert len(script.choice_requests) == n_choices + 1  # the environment's value
    rc = main(["rlm", "q", "-c", str(f), "--model", spec, "--strategy", "repl", "--first-turn", "free"])
    assert len(script.choice_requests) == n_choices + 1  # the flag beats the environment
    with pytest.raises(SystemExit):
        main(["rlm", "q", "-c", str(f), "--model", spec, "--first-turn", "sometimes"])
    assert "invalid choice: 'sometimes'" in capsys.readouterr().err


@pytest.mark.real_model
def test_the_embedded_roots_first_turn_is_a_helper_call_that_runs(embedded_gguf_model: Any) -> None:
    """SmolLM2-135M as root and sub-model: with first_turn auto (a gguf root), a grammar holds its first
    reply to one helper call; the engine runs it, and with no turn left its value is the answer."""
    rows = [f"Stadt={'Bern' if i % 4 else 'Chur'} Menge={i % 6}" for i in range(40)]
    rec = EventRecorder()
    res = RLM(embedded_gguf_model, max_iterations=1, temperature=0, sub_max_tokens=8, max_llm_calls=3,
              strategy="repl", on_event=rec).query("Wie viele Zeilen haben Stadt Chur?", context=rows)
    first = res.trajectory[0]
    assert first["protocol"] == "helper_choice" and first["first_turn"]["grammar"] is True
    assert first_turn.parse_choice(first["first_turn"]["choice"]) == first["first_turn"]["call"]
    assert first["code"] == f"answer = {first['first_turn']['call']}\nprint(answer)" and first["error"] is None
    assert res.strategy["first_turn"]["mode"] == "helper" and "local gguf model" in res.strategy["first_turn"]["why"]
    assert res.computed and res.trajectory[-1]["kind"] == "helper_fallback" and res.strategy["first_turn"]["fallback"]
    assert str(res.answer).strip() and str(res.answer) in first["output"]
    assert any("constrained helper choice" in n.message for n in rec.of(Notice))
