"""RecursiveMAS on real weights: the embedded SmolLM2-135M-Instruct through transformers.

Random-weight models check shapes and protocols; whether latent mode *answers* can only be
seen on a real model. The model is the session's ``embedded_hf_model`` (de-quantized once).
"""

from __future__ import annotations

import re
from collections import Counter

import pytest

from nbmagic.mas.system import RecursiveMAS

pytestmark = pytest.mark.real_model


@pytest.fixture(scope="module")
def smol_mas(embedded_hf_model):
    return RecursiveMAS(model=embedded_hf_model, pattern="sequential", rounds=2, latent_steps=16,
                        mode="latent", max_new_tokens=32)


def _degenerate(model, text: str) -> bool:
    """One token repeated over half the answer (a one-token answer is not a repetition)."""
    ids = model.tokenizer(text, add_special_tokens=False)["input_ids"]
    assert ids, "empty answer"
    return Counter(ids).most_common(1)[0][1] > max(1, len(ids) / 2)


def test_training_free_latent_mode_answers_on_real_weights(smol_mas, embedded_hf_model):
    """Issue 10's table: decoding right after untrained thoughts gave '-lady-lady-lady…';
    from the prompt's answer position the final agent answers."""
    assert smol_mas.links is None  # training-free
    paris = smol_mas.run("Name the capital city of France.")
    assert "Paris" in paris.answer, paris.answer
    assert not _degenerate(embedded_hf_model, paris.answer), paris.answer
    # the planner and critic thought in latent space (16 steps x 2 rounds); the solver only decoded
    assert [a.latent_steps for a in paris.agents] == [32, 32, 16] and paris.agents[2].tokens < 32

    total = smol_mas.run("What is 12 + 7? Answer with the number only.")
    words = re.findall(r"[A-Za-z]+|\d+", total.answer)
    assert words and re.search(r"\d", total.answer), total.answer
    assert not _degenerate(embedded_hf_model, total.answer), total.answer


def test_mas_eval_ci_sized_prints_the_side_by_side_table(embedded_gguf_path, capsys):
    from nbmagic.eval.__main__ import main

    rc = main(["mas", "--ci", "--model", f"hf:{embedded_gguf_path}", "--threads", "1", "--links", "none"])
    out = capsys.readouterr().out
    assert rc == 0, out
    rows = {tuple(line.split()[:3]): line.split() for line in out.splitlines()
            if line.split()[:1] and line.split()[0] in ("single", "text", "latent")}
    assert set(rows) == {("single", "-", "-"), ("text", "sequential", "1"), ("latent", "sequential", "1"),
                         ("text", "mixture", "1"), ("latent", "mixture", "1")}
    header = next(line.split() for line in out.splitlines() if line.startswith("system"))
    assert header == ["system", "pattern", "rounds", "accuracy", "arithmetic", "fact", "choice", "gen", "tok/q",
                      "s/q", "n"]
    for cells in rows.values():
        assert re.fullmatch(r"\d+%", cells[3]) and cells[-1] == "3"
    tokens = {k: float(v[7]) for k, v in rows.items()}
    # latent agents hand over thoughts, not text: only the answer is generated
    for pattern in ("sequential", "mixture"):
        assert tokens[("latent", pattern, "1")] < tokens[("text", pattern, "1")]
    # real weights answer: some question right in latent mode (random weights score 0)
    assert any(rows[("latent", p, "1")][3] != "0%" for p in ("sequential", "mixture"))
