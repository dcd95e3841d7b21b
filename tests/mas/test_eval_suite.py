"""The MAS evaluation's questions and scoring (pure Python), and its bad-input messages."""

from __future__ import annotations

import json

import pytest

from nbmagic.eval.mas_suite import Question, make_questions, score, training_rows


def test_questions_have_exact_answers_and_the_splits_are_disjoint():
    evalq = make_questions(24)
    assert [q.kind for q in evalq[:3]] == ["arithmetic", "fact", "choice"]
    assert len({q.question for q in evalq}) == 24 and make_questions(24) == evalq  # seeded, distinct
    for q in evalq:
        assert score(q, q.answer), q  # the canonical answer scores
    train = training_rows(240)
    assert len(train) == 240 and not {r["question"] for r in train} & {q.question for q in make_questions(60)}
    capitals_eval = {q.answer for q in make_questions(60) if q.kind == "fact"}
    capitals_train = {r["answer"] for r in train if "capital" in r["question"]}
    assert capitals_eval and capitals_train and not capitals_eval & capitals_train


@pytest.mark.parametrize(("kind", "reply", "right"), [
    ("arithmetic", "12 + 7 = 19", True),
    ("arithmetic", "12 + 7 = 9", False),
    ("arithmetic", "19. Tom had 12 and bought 7", True),
    ("arithmetic", "The answer is 12.", False),
    ("fact", "The capital city of France is Paris.", True),
    ("fact", "France is the capital of France.", False),
    ("choice", "B) apple", True),
    ("choice", "The answer is: D) shovel", False),
    ("choice", "apple", True),
    ("choice", "an apple or a car", False),
])
def test_scoring_rules(kind, reply, right):
    q = {
        "arithmetic": Question("a", "arithmetic", "Tom has 12 apples and buys 7 more. How many?", "19"),
        "fact": Question("f", "fact", "Name the capital city of France.", "Paris"),
        "choice": Question("c", "choice", "Which is a fruit? A) car B) apple C) dog D) shovel.", "B",
                           ("car", "apple", "dog", "shovel")),
    }[kind]
    assert score(q, reply) is right


@pytest.mark.parametrize(("args", "needle"), [
    (["--rounds", "0"], "--rounds must be a whole number from 1 to 100, not 0"),
    (["--latent-steps", "0"], "--latent-steps must be a whole number from 1 to 4096"),
    (["--systems", "single,foo"], "Unknown system(s) foo"),
    (["--patterns", "nope"], "Unknown pattern 'nope'"),
    (["--model", "openai:gpt-4o-mini"], "needs latent access"),
    (["--links", "{tmp}/missing"], "no links checkpoint there"),
])
def test_bad_options_are_one_line_before_any_model_loads(args, needle, tmp_path, capsys):
    from nbmagic.eval.__main__ import main

    rc = main(["mas", *[a.replace("{tmp}", str(tmp_path)) for a in args]])
    err = capsys.readouterr().err
    assert rc == 2 and needle in err and "Traceback" not in err and "loading" not in err


def test_write_train_writes_the_training_split_and_never_overwrites(tmp_path, capsys):
    from nbmagic.eval.__main__ import main

    out = tmp_path / "train.jsonl"
    assert main(["mas", "--write-train", str(out), "--count", "30"]) == 0
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(rows) == 30 and set(rows[0]) == {"question", "answer"}
    assert main(["mas", "--write-train", str(out)]) == 2 and "give a new file" in capsys.readouterr().err
    assert len(out.read_text().splitlines()) == 30
