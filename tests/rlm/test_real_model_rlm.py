"""The RLM on the embedded real model (SmolLM2-135M through llama.cpp): what a weak root really does."""

from __future__ import annotations

from typing import Any

import pytest

from nbmagic.rlm.agent import NOT_COMPUTED, RLM

pytestmark = pytest.mark.real_model


def test_window_for_compaction_comes_from_the_model(embedded_gguf_model: Any) -> None:
    run = RLM(embedded_gguf_model).start("q", context="abc")  # no call is made before step()
    assert run.window() == embedded_gguf_model.n_ctx == 8192
    assert run.prompt_tokens() == 0  # nothing asked yet
    assert RLM(embedded_gguf_model, context_window=2048).start("q").window() == 2048


def test_a_weak_root_is_never_passed_off_as_computed(embedded_gguf_model: Any) -> None:
    """A 135M model writes broken or irrelevant code and then answers in prose or code text:
    whatever it does, the result says whether anything it computed worked."""
    res = RLM(embedded_gguf_model, max_iterations=1, temperature=0, root_max_tokens=64, recursive=False,
              max_output_chars=500, strategy="repl").query("How many times does the word whale occur?",
                                          context="a whale and another whale swam by")
    assert res.final_step and res.complete and res.iterations == 1
    worked = any(t["kind"] == "code" and t.get("error") is None for t in res.trajectory)
    assert res.computed is worked
    assert (NOT_COMPUTED in res.notes) is (not worked)
    assert res.usage[embedded_gguf_model.name].calls == 2  # one turn + the final step
    assert all(t.get("root_tokens", 0) <= 8192 for t in res.trajectory)
