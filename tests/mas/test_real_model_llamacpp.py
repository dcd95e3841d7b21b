"""Latent mode through llama.cpp on real weights: the embedded SmolLM2-135M-Instruct Q4_1 GGUF.

Two questions only real weights answer: do llama.cpp's latent thoughts agree with the
transformers path on the same weights (per-step cosine; Q4_1 noise keeps them from being
equal), and does RecursiveMAS latent mode through llama.cpp answer the questions the
transformers test answers, without degenerate repetition.
"""

from __future__ import annotations

import re
from collections import Counter

import numpy as np
import pytest

from nbmagic.mas.agent_pass import latent_backend, segments
from nbmagic.mas.system import RecursiveMAS

pytestmark = pytest.mark.real_model

SYSTEM = "You are the Planner in a team of agents. Break the problem into short steps."
USER = "Question:\nName the capital city of France.\n\nThink through your part of the problem."


def test_llamacpp_latent_thoughts_match_transformers_per_step(embedded_gguf_model, embedded_hf_model):
    gg, hf = latent_backend(embedded_gguf_model), latent_backend(embedded_hf_model)
    ids = segments(gg, SYSTEM, USER, 0)[0]
    assert ids == segments(hf, SYSTEM, USER, 0)[0]  # same prompt, token for token
    steps = 12
    with gg.session():
        g_thoughts, _ = gg.latent_steps(gg.prefill([[ids]]), steps, gg.realignment())
    with hf.session():
        h_thoughts, _ = hf.latent_steps(hf.prefill([[ids]]), steps, hf.realignment())
    # the two realignments agree (a tied head: W_a = I, the rescale to the mean embedding norm)
    assert gg.realignment().target_norm == pytest.approx(float(hf.realignment().target_norm), rel=1e-3)
    a = g_thoughts[0].astype(np.float64)
    b = h_thoughts[0].float().numpy().astype(np.float64)
    cos = (a * b).sum(-1) / np.linalg.norm(a, axis=-1) / np.linalg.norm(b, axis=-1)
    assert cos.shape == (steps,)
    assert cos.min() >= 0.99, np.round(cos, 4)


def _degenerate(model, text: str) -> bool:
    """One token repeated over half the answer (a one-token answer is not a repetition)."""
    ids = model.llm.tokenize(text.encode("utf-8"), add_bos=False)
    assert ids, "empty answer"
    return Counter(ids).most_common(1)[0][1] > max(1, len(ids) / 2)


@pytest.mark.timeout(900)  # two agents think, one answers, twice: minutes on a loaded 2-core box
def test_recursive_mas_latent_through_llamacpp_answers(embedded_gguf_model):
    mas = RecursiveMAS(model=embedded_gguf_model, pattern="sequential", rounds=1, latent_steps=16,
                       mode="latent", max_new_tokens=32)
    assert mas.links is None and mas.mode == "latent"
    paris = mas.run("Name the capital city of France.")
    assert "Paris" in paris.answer, paris.answer
    assert not _degenerate(embedded_gguf_model, paris.answer), paris.answer
    assert [a.latent_steps for a in paris.agents] == [16, 16, 0] and paris.agents[2].tokens < 32

    total = mas.run("What is 12 + 7? Answer with the number only.")
    assert re.search(r"\d", total.answer), total.answer
    assert not _degenerate(embedded_gguf_model, total.answer), total.answer
