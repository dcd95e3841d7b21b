"""Links: identity at init, the released LayerNorm forms, and training-free alignment."""

from __future__ import annotations

import pytest
import torch

from nbmagic import load_model
from nbmagic.errors import ConfigError
from nbmagic.mas.links import (
    InnerLink,
    LNInnerLink,
    LNOuterLink,
    OuterLink,
    Realignment,
    VocabBridge,
    apply_link,
    embedding_norm,
    link_params,
    ridge_solve,
)


@pytest.fixture(scope="module")
def models(tiny_hf_paths):
    return {k: load_model(f"hf:{tiny_hf_paths[k]}") for k in ("qwen2", "llama")}


def test_inner_and_square_outer_links_are_identity_at_init():
    h = torch.randn(3, 5, 64)
    assert torch.equal(InnerLink(64)(h), h)
    assert torch.allclose(OuterLink(64, 64)(h), h)


def test_outer_link_between_dims_is_a_norm_preserving_projection():
    h = torch.randn(8, 96)
    link = OuterLink(96, 64)
    out = link(h)
    assert out.shape == (8, 64)
    W3 = link.W3.weight
    assert torch.allclose(W3 @ W3.T, torch.eye(64), atol=1e-5)  # orthonormal rows
    assert (out.norm(dim=-1) <= h.norm(dim=-1) + 1e-4).all()
    assert link.W1.out_features == 128  # hidden width 2·d_dst as released


def test_trained_residual_changes_the_output():
    link = InnerLink(16)
    with torch.no_grad():
        link.W2.weight.normal_()
    h = torch.randn(4, 16)
    assert not torch.allclose(link(h), h)


def test_layernorm_variants_set_the_output_norm():
    x = torch.randn(6, 64) * 30
    inner = LNInnerLink(64, out_norm=2.5)
    outer = LNOuterLink(64, 96, out_norm=4.0)
    assert torch.allclose(inner(x).norm(dim=-1), torch.full((6,), 2.5), rtol=1e-3)
    y = outer(x)
    assert y.shape == (6, 96)
    assert torch.allclose(y.norm(dim=-1), torch.full((6,), 4.0), rtol=1e-3)
    assert outer.W1.out_features == 192


def test_apply_link_does_the_math_in_float32_and_casts_back():
    seen = {}

    class Spy(torch.nn.Module):
        def forward(self, h):
            seen["dtype"] = h.dtype
            return h * 2

    out = apply_link(Spy(), torch.ones(2, 4, dtype=torch.bfloat16), torch.bfloat16)
    assert seen["dtype"] == torch.float32 and out.dtype == torch.bfloat16
    assert torch.equal(apply_link(None, torch.ones(2), torch.float16), torch.ones(2, dtype=torch.float16))


def test_realignment_solves_the_ridge_problem_and_rescales(models):
    for m in models.values():
        link = Realignment.from_model(m)
        d = m.hidden_size
        assert link.W_a.shape == (d, d) and link.W_a.dtype == torch.float32
        assert list(link.parameters()) == [] and link_params(link) == []
        W_out = m.model.get_output_embeddings().weight.float()
        W_in = m.model.get_input_embeddings().weight.float()
        grad = W_out.T @ (W_out @ link.W_a - W_in) + 1e-5 * link.W_a  # normal equations
        assert grad.abs().max() < 1e-3 * W_in.abs().max() * W_out.shape[0]
        ids = torch.arange(len(m.tokenizer))
        expected = m.embed_ids(ids[None])[0].norm(dim=-1).mean()
        assert float(link.target_norm) == pytest.approx(float(expected), rel=1e-5)
        out = link(torch.randn(5, d) * 10)
        assert torch.allclose(out.norm(dim=-1), torch.full((5,), float(expected)), rtol=1e-4)


def test_realignment_is_near_identity_for_tied_embeddings(models):
    m = models["qwen2"]
    assert m.model.config.tie_word_embeddings
    W_a = Realignment.from_model(m).W_a
    assert torch.equal(W_a, torch.eye(m.hidden_size))  # the shortcut
    head = m.model.get_output_embeddings().weight
    solved = ridge_solve(head, m.model.get_input_embeddings().weight)  # what the solve would give
    assert torch.allclose(solved, W_a, atol=1e-3)
    assert Realignment.from_model(m) is Realignment.from_model(m)  # solved once per model


def test_embedding_norm_respects_gemma_scaling(tiny_hf_model_path):
    gemma = load_model(f"hf:{tiny_hf_model_path('gemma3', 64)}")
    rows = gemma.model.get_input_embeddings().weight.norm(dim=-1).mean()
    assert embedding_norm(gemma) == pytest.approx(float(rows) * 64**0.5, rel=1e-4)


def test_vocab_bridge_maps_between_hidden_sizes(models):
    src, dst = models["qwen2"], models["llama"]
    bridge = VocabBridge.from_models(src, dst)
    assert bridge.W.shape == (64, 96) and bridge.shared_tokens == len(src.tokenizer)
    out = bridge(torch.randn(3, 7, 64))
    assert out.shape == (3, 7, 96)
    assert torch.allclose(out.norm(dim=-1), torch.full((3, 7), embedding_norm(dst)), rtol=1e-4)
    # token i's source embedding lands nearer token i's target embedding than other tokens'
    ids = torch.arange(len(src.tokenizer))[None]
    mapped = bridge(src.embed_ids(ids)[0])
    target = dst.embed_ids(ids)[0]
    cos = torch.nn.functional.normalize(mapped, dim=-1) @ torch.nn.functional.normalize(target, dim=-1).T
    assert cos.diagonal().mean() > cos.mean() + 0.2


def test_ridge_solve_recovers_a_linear_map():
    a = torch.randn(200, 8)
    x = torch.randn(8, 5)
    assert torch.allclose(ridge_solve(a, a @ x), x, atol=1e-3)


def test_bridge_needs_shared_tokens(models, monkeypatch):
    src, dst = models["qwen2"], models["llama"]
    monkeypatch.setattr(dst.tokenizer, "get_vocab", lambda: {"zz-only-here": 0})
    with pytest.raises(ConfigError, match="share only 0 tokens"):
        VocabBridge.from_models(src, dst)
