"""Random-weight models for the benchmarks, built from configs: nothing is downloaded.

The standard subject is a ~0.5 B-parameter model with Qwen2.5-0.5B-Instruct's shape;
``QUICK`` is a small model of the same family for runs that take seconds.
"""

from __future__ import annotations

from typing import Any

import torch

from nbmagic.llm.hf import HFChatModel

QWEN2_05B = dict(  # Qwen2.5-0.5B-Instruct's shape
    vocab_size=151936, hidden_size=896, intermediate_size=4864, num_hidden_layers=24,
    num_attention_heads=14, num_key_value_heads=2, max_position_embeddings=32768,
    rope_theta=1_000_000.0, tie_word_embeddings=True, rms_norm_eps=1e-6,
)
QUICK = dict(QWEN2_05B, hidden_size=256, intermediate_size=1024, num_hidden_layers=4,
             num_attention_heads=4, num_key_value_heads=2)


def build_random_qwen2(shape: dict, device: str, dtype: torch.dtype, tokenizer: Any = None) -> HFChatModel:
    """A seeded random Qwen2 of ``shape``; with ``tokenizer`` its special ids are wired in."""
    from transformers import AutoModelForCausalLM, Qwen2Config

    special = {}
    if tokenizer is not None:
        special = dict(bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
                       pad_token_id=tokenizer.pad_token_id)
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(Qwen2Config(**shape, **special), dtype=dtype).to(device)
    name = "random-qwen2-0.5b" if shape is QWEN2_05B else "random-qwen2-small"
    return HFChatModel.wrap(model, tokenizer, name=name)
