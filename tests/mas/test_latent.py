"""KV-cached latent rollout vs a full-recompute reference, padding, gradients, decode."""

from __future__ import annotations

import pytest
import torch

from nbmagic import load_model
from nbmagic.errors import ConfigError
from nbmagic.mas import latent as L
from nbmagic.mas.links import InnerLink, OuterLink, Realignment, embedding_norm

STEPS = 6
ATOL = 1e-4


@pytest.fixture(scope="module")
def models(tiny_hf_paths, tiny_hf_model_path):
    # float32 everywhere (also with NBMAGIC_TEST_DEVICE=cuda): the comparisons are exact-ish
    return {
        "qwen2": load_model(f"hf:{tiny_hf_paths['qwen2']}", dtype="float32"),
        "llama": load_model(f"hf:{tiny_hf_paths['llama']}", dtype="float32"),
        "gemma3": load_model(f"hf:{tiny_hf_model_path('gemma3', 64)}", dtype="float32"),
    }


def _trained_like(link: torch.nn.Module, seed: int = 0) -> torch.nn.Module:
    """Give the zero-initialised residual branch weights, as training would."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        link.W2.weight.copy_(torch.randn(link.W2.weight.shape, generator=g) * 0.05)
    return link


def reference_thoughts(model, ids: list[int], steps: int, link) -> torch.Tensor:
    """The seed's way: re-run the whole growing embedding sequence each step, no cache."""
    e = model.embed_ids(torch.tensor([ids], device=model.torch_device))
    out = []
    for t in range(steps + 1):
        h = model.model(inputs_embeds=e, output_hidden_states=True, use_cache=False).hidden_states[-1][:, -1]
        if t:
            out.append(h)
        e = torch.cat([e, link(h.float()).to(e.dtype)[:, None]], dim=1)
    return torch.stack(out, dim=1)[0]


PROMPTS = ["Plan: add two numbers, then check the sum.", "hi"]


@pytest.mark.parametrize("kind", ["qwen2", "llama", "gemma3"])
def test_cached_rollout_matches_full_recompute_batch_1(models, kind):
    m = models[kind]
    link = _trained_like(InnerLink(m.hidden_size)).to(m.torch_device)
    ids = m.chat_ids(PROMPTS[0])
    with torch.inference_mode():
        state = L.prefill(m, *L.embed_prompts(m, [ids]))
        thoughts, state = L.latent_rollout(m, state, STEPS, link)
        ref = reference_thoughts(m, ids, STEPS, link)
    assert thoughts.shape == (1, STEPS, m.hidden_size)
    torch.testing.assert_close(thoughts[0], ref, atol=ATOL, rtol=1e-4)
    assert state.cache.get_seq_length() == len(ids) + STEPS == state.length
    assert torch.equal(state.last_hidden, thoughts[:, -1])
    # not vacuous: the thoughts move from step to step (each feeds the next)
    assert not torch.allclose(thoughts[0, 0], thoughts[0, -1], atol=1e-3)


@pytest.mark.parametrize("kind", ["qwen2", "gemma3"])
def test_left_padded_batch_equals_each_sequence_alone(models, kind):
    m = models[kind]
    link = _trained_like(InnerLink(m.hidden_size)).to(m.torch_device)
    prompts = [m.chat_ids(p) for p in PROMPTS]
    assert len(prompts[0]) > len(prompts[1]) + 16  # real padding, beyond gemma's window of 16
    with torch.inference_mode():
        embeds, mask = L.embed_prompts(m, prompts)
        assert mask[1, 0] == 0 and mask[1, -1] == 1  # left padding
        batch, _ = L.latent_rollout(m, L.prefill(m, embeds, mask), STEPS, link)
        for row, ids in enumerate(prompts):
            alone, _ = L.latent_rollout(m, L.prefill(m, *L.embed_prompts(m, [ids])), STEPS, link)
            torch.testing.assert_close(batch[row], alone[0], atol=ATOL, rtol=1e-4)
            torch.testing.assert_close(batch[row], reference_thoughts(m, ids, STEPS, link), atol=ATOL, rtol=1e-4)
    assert not torch.allclose(batch[0], batch[1], atol=1e-3)  # the rows really are different sequences


def test_prefill_appends_to_a_state_with_padding_in_the_middle(models):
    """Round 2 shape: [prompt A][thoughts][feedback B]; a padded second chunk changes nothing."""
    m = models["llama"]
    link = _trained_like(InnerLink(m.hidden_size)).to(m.torch_device)
    a = [m.chat_ids("first question"), m.chat_ids("a much longer first question here")]
    b = [m.chat_ids("short", add_generation_prompt=False), m.chat_ids("x")]
    with torch.inference_mode():
        st = L.prefill(m, *L.embed_prompts(m, a))
        _, st = L.latent_rollout(m, st, 3, link)
        st = L.prefill(m, *L.embed_prompts(m, b), state=st)
        batch, st = L.latent_rollout(m, st, 3, link)
        assert st.cache.get_seq_length() == st.length
        for row in range(2):
            s1 = L.prefill(m, *L.embed_prompts(m, [a[row]]))
            _, s1 = L.latent_rollout(m, s1, 3, link)
            s1 = L.prefill(m, *L.embed_prompts(m, [b[row]]), state=s1)
            alone, _ = L.latent_rollout(m, s1, 3, link)
            torch.testing.assert_close(batch[row], alone[0], atol=ATOL, rtol=1e-4)


def test_on_step_progress_and_zero_steps(models):
    m = models["qwen2"]
    seen: list[tuple[int, int]] = []
    with torch.inference_mode():
        st = L.prefill(m, *L.embed_prompts(m, [m.chat_ids("hi")]))
        th, st2 = L.latent_rollout(m, st, 4, InnerLink(m.hidden_size).to(m.torch_device), on_step=lambda k, n: seen.append((k, n)))
        empty, st3 = L.latent_rollout(m, st2, 0, None)
    assert seen == [(1, 4), (2, 4), (3, 4), (4, 4)]
    assert th.shape == (1, 4, 64) and empty.shape == (1, 0, 64) and st3.length == st2.length


def test_realignment_feeds_embedding_sized_inputs(models):
    m = models["llama"]
    realign = Realignment.from_model(m)
    fed: list[torch.Tensor] = []
    realign.register_forward_hook(lambda mod, inp, out: fed.append(out))
    with torch.inference_mode():
        st = L.prefill(m, *L.embed_prompts(m, [m.chat_ids("hi")]))
        L.latent_rollout(m, st, 3, realign)
    norms = torch.cat([f.norm(dim=-1) for f in fed])
    assert torch.allclose(norms, torch.full_like(norms, embedding_norm(m)), rtol=1e-4)


def test_gradients_reach_every_link_through_two_agents(models):
    """Outer-loop shape: A thinks (inner link), outer link hands thoughts to B, B thinks and
    answers; a loss on B's answer logits must reach A's inner link, the outer link and B's."""
    a, b = models["qwen2"], models["llama"]
    inner_a = _trained_like(InnerLink(a.hidden_size), 1).to(a.torch_device)
    outer = _trained_like(OuterLink(a.hidden_size, b.hidden_size), 2).to(b.torch_device)
    inner_b = _trained_like(InnerLink(b.hidden_size), 3).to(b.torch_device)
    st_a = L.prefill(a, *L.embed_prompts(a, [a.chat_ids("q")]))
    thoughts_a, _ = L.latent_rollout(a, st_a, 3, inner_a)
    handoff = outer(thoughts_a.float())
    e_b, mask_b = L.embed_prompts(b, [b.chat_ids("q")])
    st_b = L.prefill(b, torch.cat([handoff.to(b.dtype), e_b], 1), torch.cat([torch.ones(1, 3, dtype=torch.long, device=mask_b.device), mask_b], 1))
    _, st_b = L.latent_rollout(b, st_b, 3, inner_b)
    answer = torch.tensor([b.tokenizer("42", add_special_tokens=False).input_ids], device=b.torch_device)
    hidden, _ = L.extend(b, b.embed_ids(answer[:, :-1]), torch.ones_like(answer[:, :-1]), st_b)
    logits = b.model.get_output_embeddings()(torch.cat([st_b.last_hidden[:, None], hidden], 1))
    loss = torch.nn.functional.cross_entropy(logits[0].float(), answer[0])
    loss.backward()
    for name, link in (("inner_a", inner_a), ("outer", outer), ("inner_b", inner_b)):
        for pname, p in link.named_parameters():
            assert p.grad is not None and p.grad.abs().sum() > 0, f"{name}.{pname} got no gradient"
    assert all(p.grad is None for p in a.model.parameters())


def test_decode_after_rollout_streams_and_respects_limits(models):
    m = models["qwen2"]
    pieces: list[str] = []
    with torch.inference_mode():
        st = L.prefill(m, *L.embed_prompts(m, [m.chat_ids("hello"), m.chat_ids("a longer hello")]))
        _, st = L.latent_rollout(m, st, 4, Realignment.from_model(m))
        tail = L.embed_prompts(m, [m.chat_ids("answer:"), m.chat_ids("answer now:")])
        res = L.decode_with_usage(m, st, *tail, max_new_tokens=5, on_token=pieces.append)
    assert len(res.texts) == 2 and all(isinstance(t, str) for t in res.texts)
    assert all(1 <= n <= 5 for n in res.tokens)
    assert "".join(pieces) == res.texts[0]
    assert any(res.texts)


def test_decode_without_latents_matches_chat(models):
    """The cached decode loop and transformers' generate agree token for token (greedy)."""
    m = models["llama"]
    ids = m.chat_ids("hello there")
    with torch.inference_mode():
        out = L.decode_with_usage(m, None, *L.embed_prompts(m, [ids]), max_new_tokens=10)
    chat = m.chat("hello there", temperature=0, max_tokens=10)
    assert out.texts[0] == chat.text
    assert out.tokens[0] == chat.usage.completion_tokens


def test_decode_stop_strings(models):
    m = models["llama"]
    ids = m.chat_ids("hello there")
    full = L.decode(m, None, *L.embed_prompts(m, [ids]), max_new_tokens=12)[0]
    stop = next(full[i : i + 2] for i in range(2, len(full) - 2) if full[i : i + 2].isprintable())
    res = L.decode_with_usage(m, None, *L.embed_prompts(m, [ids]), max_new_tokens=12, stop=[stop])
    assert res.texts[0] == full[: full.find(stop)] and res.finish_reasons[0] == "stop"


def test_bad_inputs_are_clear_errors(models):
    m = models["qwen2"]
    e, mask = L.embed_prompts(m, [m.chat_ids("hello"), m.chat_ids("hi")])
    with pytest.raises(ConfigError, match="LEFT-padded"):
        L.prefill(m, e, mask.flip(1))
    with pytest.raises(ConfigError, match=r"\[batch, length, 64\]"):
        L.prefill(m, torch.zeros(1, 3, 96), torch.ones(1, 3))
    with pytest.raises(ConfigError, match="empty"):
        L.prefill(m, e[:, :1], torch.zeros(2, 1))
    with pytest.raises(ConfigError, match=">= 0"):
        L.latent_rollout(m, L.prefill(m, e, mask), -1, None)


def test_fork_branches_a_state(models):
    m = models["qwen2"]
    link = _trained_like(InnerLink(m.hidden_size)).to(m.torch_device)
    with torch.inference_mode():
        base = L.prefill(m, *L.embed_prompts(m, [m.chat_ids("shared question")]))
        branch = L.fork(base)
        one, _ = L.latent_rollout(m, base, 3, link)
        two, after = L.latent_rollout(m, branch, 3, None)
        fresh = L.prefill(m, *L.embed_prompts(m, [m.chat_ids("shared question")]))
        again, _ = L.latent_rollout(m, fresh, 3, None)
    torch.testing.assert_close(two, again)
    assert not torch.allclose(one, two)
    assert after.cache.get_seq_length() == fresh.length + 3


def test_each_latent_step_is_one_token_forward_without_the_lm_head(models):
    m = models["qwen2"]
    calls: list[tuple[int, int]] = []
    head_calls: list[int] = []
    h1 = m.decoder.register_forward_hook(
        lambda mod, args, kwargs, out: calls.append(tuple(kwargs["inputs_embeds"].shape[:2])), with_kwargs=True
    )
    h2 = m.model.get_output_embeddings().register_forward_hook(lambda *a: head_calls.append(1))
    try:
        with torch.inference_mode():
            st = L.prefill(m, *L.embed_prompts(m, [m.chat_ids("a"), m.chat_ids("bb")]))
            calls.clear()
            L.latent_rollout(m, st, 5, InnerLink(m.hidden_size).to(m.torch_device))
    finally:
        h1.remove()
        h2.remove()
    assert calls == [(2, 1)] * 5 and head_calls == []


def test_bf16_model_runs_links_in_float32(tiny_hf_paths):
    m = load_model(f"hf:{tiny_hf_paths['qwen2']}", device="cpu", dtype="bf16")
    link = _trained_like(InnerLink(m.hidden_size)).to(m.torch_device)
    seen: list[torch.dtype] = []
    link.register_forward_pre_hook(lambda mod, args: seen.append(args[0].dtype))
    with torch.inference_mode():
        st = L.prefill(m, *L.embed_prompts(m, [m.chat_ids("hi there")]))
        thoughts, st = L.latent_rollout(m, st, 3, link)
        text = L.decode(m, st, None, None, max_new_tokens=3)
    assert seen == [torch.float32] * 3
    assert thoughts.dtype == torch.bfloat16 and torch.isfinite(thoughts.float()).all()
    assert isinstance(text[0], str)
