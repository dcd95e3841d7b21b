"""The one-line REPL strategies: exact filters by code on records of several shapes and languages,
sub-calls through the run's budget (loopback server), and each helper on the embedded model."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from nbmagic.events import EventRecorder, SubCall
from nbmagic.rlm import strategies as S
from nbmagic.rlm.agent import RLM
from nbmagic.rlm.tools import make_tools
from nbmagic.testing.openai_server import OpenAICompatServer
from nbmagic.testing.rlm_scripts import ScriptedRoot, code

ROWS = [("Berlin", "Lampe", 3), ("München", "Tisch", 2), ("Berlin", "Tisch", 5), ("Berlin", "Lampe", 1),
        ("Köln", "Lampe", 7)]


def no_model(prompts: list[str]) -> list[str]:
    raise AssertionError(f"a filter by code must not call the sub-model ({len(prompts)} prompts)")


@pytest.mark.parametrize(
    "data",
    [
        "\n".join(json.dumps({"Stadt": c, "Produkt": p, "Menge": q}, ensure_ascii=False) for c, p, q in ROWS),
        "Stadt,Produkt,Menge\n" + "\n".join(f"{c},{p},{q}" for c, p, q in ROWS),
        "\n".join(f"2024-05-0{i} INFO Stadt={c} Produkt={p} Menge={q}" for i, (c, p, q) in enumerate(ROWS)),
        [{"Stadt": c, "Produkt": p, "Menge": q} for c, p, q in ROWS],
        [f"Stadt: {c} | Produkt: {p} | Menge: {q}" for c, p, q in ROWS],
    ],
    ids=["jsonl", "csv", "kv-log", "dicts", "colon"],
)
def test_count_and_sum_by_code_on_record_shapes_in_german(data: Any) -> None:
    n, note = S.count_matching(data, "Wie viele Datensätze haben Stadt Berlin und Produkt Lampe?", no_model)
    assert n == 2 and "by code" in note and "Stadt == 'berlin'" in note
    total, note = S.sum_matching(data, "menge", "Stadt Berlin", no_model)
    assert total == 9 and isinstance(total, int) and "Menge" in note
    assert S.sum_matching(data, "Menge", "", no_model)[0] == 18  # every record
    assert S.count_matching(data, "Produkt Lampe mit Menge mindestens 3", no_model)[0] == 2  # 3 and 7


def test_french_csv_comparisons_plurals_and_dataframes() -> None:
    pd = pytest.importorskip("pandas")
    text = "ville,produit,quantité\nParis,lampe,3\nLyon,table,2\nParis,table,4\nParis,lampe,9\n"
    assert S.count_matching(text, "combien de lampes avec ville Paris", no_model)[0] == 2
    assert S.sum_matching(text, "quantité", "ville Paris et quantité > 3", no_model)[0] == 13
    frame = pd.read_csv(__import__("io").StringIO(text))
    assert S.count_matching(frame, "ville Lyon", no_model)[0] == 1
    assert S.sum_matching(frame, "quantite", "produit table", no_model)[0] == 6  # a close field name


def test_words_that_name_no_value_go_to_the_sub_model_in_chunks() -> None:
    log = "\n".join(f"level=ERROR service=auth msg=\"login failed for user{i}\"" for i in range(300))
    asked: list[str] = []

    def ask(prompts: list[str]) -> list[str]:
        asked.extend(prompts)
        return ["There are 2 such records."] * (len(prompts) - 1) + ["[error] budget spent"]

    n, note = S.count_matching(log, "errors caused by a wrong password", ask, chunk_chars=2000)
    assert len(asked) > 1 and all("wrong password" in p and "Records:" in p for p in asked)
    assert n == 2 * (len(asked) - 1) and "['caused', 'wrong', 'password']" in note and "1 chunk(s) gave no number" in note
    # with 3 calls left the whole log goes in 3 chunks
    asked.clear()
    S.count_matching(log, "errors caused by a wrong password", ask, calls_left=3)
    assert len(asked) == 3 and sum(p.count("level=ERROR") for p in asked) == 300


def test_find_answer_reads_the_best_passages_and_votes_by_score() -> None:
    lines = [f"Zeile {i}: der Fluss ist ruhig und die Steine sind grau." for i in range(800)]
    lines[123] = "Der Zugangscode für Tresor QX-1234 lautet 55501234."
    lines[600] = "Der Zugangscode für Tresor ZZ-9999 lautet 11110000."
    seen: list[str] = []

    def ask(prompts: list[str]) -> list[str]:
        seen.extend(prompts)
        return ["55501234" if "QX-1234 lautet" in p else "NONE" for p in prompts]

    answer, note = S.find_answer("\n".join(lines), "Wie lautet der Zugangscode für Tresor QX-1234?", ask)
    assert answer == "55501234" and len(seen) == 1 and "qx-1234" in note  # one short passage read
    assert len(seen[0]) < S.PASSAGE_CHARS + 400
    # a tie-breaking vote: the higher-scoring passage wins over two lower ones that agree
    assert S.vote([("A", 5.0), ("B", 2.0), ("B", 2.0), ("NONE", 9.0)])[0] == "A"
    assert S.vote([("The answer is: 42.", 1.0)])[0] == "42"


def test_map_chunks_combines_and_grep_shows_context() -> None:
    text = "\n".join(f"ligne {i}: {'erreur' if i % 50 == 0 else 'ok'}" for i in range(400))
    chunks = S.chunk_text(text, 1000)
    assert "".join(chunks) == text and all(len(c) <= 1000 for c in chunks)  # cut at line ends, nothing lost

    def ask(prompts: list[str]) -> list[str]:
        return [str(p.count("erreur")) for p in prompts]

    total, note = S.map_chunks(text, "Combien d'erreurs ?", ask, combine="sum", chunk_chars=1000)
    assert total == 8 + len(chunks) and "combined by sum" in note  # each prompt also holds the question's word
    listed, _ = S.map_chunks(text, "?", ask, combine="list", chunk_chars=1000)
    assert isinstance(listed, list) and len(listed) == len(chunks)
    assert S.map_chunks(text, "?", lambda ps: ["oui"] * (len(ps) - 1) + ["non"], combine="majority",
                        chunk_chars=1000)[0] == "oui"
    with pytest.raises(ValueError, match="combine must be one of"):
        S.map_chunks(text, "?", ask, combine="avg")
    out = S.grep(text, r"erreur", context_lines=1, max_matches=2)
    assert out.splitlines()[0] == "8 matching line(s), first 2 shown"
    assert "1: ligne 0: erreur" in out and "2- ligne 1: ok" in out and "51: ligne 50: erreur" in out and "--" in out
    assert S.grep(text, "[unclosed", max_matches=1).startswith("0 matching")  # a bad regex is searched literally


def test_render_text_of_folders_records_and_limits(tmp_path: Path) -> None:
    (tmp_path / "a.txt").write_text("alpha\n")
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "b.log").write_text("beta\n")
    (tmp_path / "blob.bin").write_bytes(b"\xff\xfe\x00\x81")
    text = S.render_text(tmp_path)
    assert "=== a.txt ===\nalpha" in text and "=== sub/b.log ===\nbeta" in text and "blob.bin" not in text
    assert S.render_text([{"a": 1}, {"a": 2}]) == '{"a": 1}\n{"a": 2}'
    assert len(S.render_text(["x" * 100] * 10_000, limit=1000)) < 1200  # a size probe stops early


def test_helper_names_are_reserved_for_user_tools() -> None:
    from nbmagic.errors import ConfigError

    def grep(x: str) -> str:
        return x

    with pytest.raises(ConfigError, match="taken by an RLM helper"):
        make_tools([grep])


def test_helpers_in_the_repl_spend_the_sub_call_budget(openai_server: OpenAICompatServer, models: Any) -> None:
    """count_matching's fallback goes through the run's toolbox: counted, recorded, evented, capped."""
    root, sub = models
    log = "\n".join(f"user=u{i} msg=\"{'slow' if i % 3 else 'fast'} page load\"" for i in range(1000))
    script = ScriptedRoot(
        [code("n = count_matching(context, 'complaints about slowness')\nprint(n)\nsubmit(n)")],
        sub=lambda prompt: "4",
    )
    openai_server.set_responder(script)
    rec = EventRecorder()
    res = RLM(root, sub_model=sub, max_llm_calls=3, on_event=rec, strategy="repl").query("q", context=log)
    assert res.llm_calls == 3 and len(script.sub_requests) == 3  # the whole log in the 3 calls left
    assert res.answer == 12 and res.computed
    calls = res.trajectory[0]["sub_calls"]
    assert [c["helper"] for c in calls] == ["count_matching"] * 3 and all(c["ok"] for c in calls)
    assert len(rec.of(SubCall)) == 3 and rec.of(SubCall)[-1].budget_left == 0
    assert "the sub-model counted 3 chunk(s)" in res.trajectory[0]["output"]
    # the budget is spent: a later helper's sub-calls come back as errors, none is made
    script.sub_requests.clear()
    openai_server.set_responder(ScriptedRoot(
        [code("print(find_answer(context, 'who?'))\nprint(map_chunks(context, 'who?', combine='list'))\nsubmit(1)")],
        sub=lambda p: "x"))
    res = RLM(root, sub_model=sub, max_llm_calls=0, strategy="repl").query("q", context=log)
    assert res.llm_calls == 0 and "sub-call budget is spent" in res.trajectory[0]["output"]


@pytest.mark.real_model
def test_each_helper_on_the_embedded_model(embedded_gguf_model: Any) -> None:
    """SmolLM2-135M as the sub-model of the helpers, on tiny inputs (a few short calls)."""
    from nbmagic.rlm.settings import RLMSettings
    from nbmagic.rlm.tools import SpendingBudget, Toolbox

    budget = SpendingBudget(max_llm_calls=6)
    box = Toolbox(sub_model=embedded_gguf_model, budget=budget, settings=RLMSettings(sub_max_tokens=8))
    helpers = S.helpers_for(box)
    text = ("Le jardin est calme.\nLes oiseaux chantent.\n" * 30 + "Le code secret du coffre AB-77 est 4512.\n"
            + "Il pleut souvent en automne.\n" * 60)  # ~3 KB: two passages, one read
    answer, note = helpers["find_answer"](text, "Quel est le code secret du coffre AB-77 ?")
    assert isinstance(answer, str) and answer and "passages" in note
    assert budget.calls == 1  # only the passage holding the rare code was read
    n, note = helpers["count_matching"]([f"ville={v}" for v in ("Paris", "Lyon", "Paris")], "ville Paris")
    assert n == 2 and budget.calls == 1  # by code: no call
    n, note = helpers["count_matching"](["Ich liebe diesen Film.", "Schrecklich langweilig."], "positive Bewertungen")
    assert isinstance(n, int) and budget.calls == 2 and "sub-model counted 1 chunk" in note
    total, _ = helpers["sum_matching"]('{"k": "a", "v": 2}\n{"k": "b", "v": 5}', "v", "k b")
    assert total == 5 and budget.calls == 2
    combined, note = helpers["map_chunks"]("Das Wetter ist schön.", "Antworte mit ja oder nein: Ist das Wetter schön?",
                                           "majority")
    assert isinstance(combined, str) and budget.calls == 3 and "1 chunk" in note
    out, _ = helpers["grep"](text, "coffre", 1)
    assert "1 matching line(s)" in out and "Le code secret du coffre AB-77 est 4512." in out
    records = box.take_records()
    assert [r["helper"] for r in records] == ["find_answer", "count_matching", "map_chunks"]
    assert all(r["model"] == embedded_gguf_model.name and r["ok"] for r in records)
    assert budget.usage[embedded_gguf_model.name].calls == 3


def test_helpers_work_from_the_subprocess_repl(openai_server: OpenAICompatServer, models: Any) -> None:
    """The worker calls the helpers back over its pipe with the data as an argument."""
    root, sub = models
    rows = [f"ts=2024-06-0{i % 9 + 1} level={'WARN' if i % 4 else 'ERROR'} svc=api" for i in range(400)]
    openai_server.set_responder(ScriptedRoot(
        [code("print(grep(context, 'level=ERROR', max_matches=1))\nn = count_matching(context, 'level ERROR')\nsubmit(n)")]))
    res = RLM(root, sub_model=sub, environment="subprocess", strategy="repl").query("How many errors?", context=rows)
    assert res.answer == 100 and res.llm_calls == 0 and res.computed
    assert "100 matching line(s), first 1 shown\n1: ts=2024-06-01 level=ERROR svc=api" in res.trajectory[0]["output"]


def test_helpers_default_to_the_question_asked(openai_server: OpenAICompatServer, models: Any) -> None:
    """A small root copies the worked example as it is: count_matching(context) reads the run's question."""
    root, sub = models
    rows = [f"id={i} | city={'Oslo' if i % 3 else 'Lima'} | product={'lamp' if i % 2 else 'mug'} | qty={i % 7}"
            for i in range(600)]
    openai_server.set_responder(ScriptedRoot([code("n = count_matching(context)\nprint(n)\nsubmit(n)")]))
    res = RLM(root, sub_model=sub, strategy="repl").query(
        "How many orders were placed from Oslo for lamps? Answer with a number only.", context=rows)
    expected = sum(1 for i in range(600) if i % 3 and i % 2)
    assert res.answer == expected and res.llm_calls == 0
    assert "not as conditions: orders, placed" in res.trajectory[0]["output"]  # said, not hidden
    openai_server.set_responder(ScriptedRoot([code("submit(sum_matching(context))")]))
    res = RLM(root, sub_model=sub, strategy="repl").query("What is the total qty for city Lima?", context=rows)
    assert res.answer == sum(i % 7 for i in range(600) if not i % 3)
    # an explicit description stays strict: an unknown word goes to the sub-model
    assert S.count_matching(rows, "orders from Oslo", lambda ps: ["1"] * len(ps))[1].startswith(
        "count_matching: words not found as field values: ['orders']")


def test_the_fallback_never_sends_a_chunk_larger_than_the_sub_model_reads() -> None:
    lines = [f"note {i}: something happened here" for i in range(3000)]  # ~100 KB
    seen: list[str] = []

    def ask(prompts: list[str]) -> list[str]:
        seen.extend(prompts)
        return ["1"] * len(prompts)

    n, note = S.count_matching(lines, "happy notes", ask, calls_left=4, max_chars=5000)
    assert len(seen) == 4 and all(len(p) < 5000 + 300 for p in seen) and n == 4
    assert "only the first" in note and "of the records fit the sub-calls left" in note
    seen.clear()
    _, note = S.map_chunks("\n".join(lines), "?", ask, calls_left=2, max_chars=5000)
    assert len(seen) == 2 and "of the data fit the sub-calls left" in note
