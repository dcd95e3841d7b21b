"""RecursiveMAS latent mode with tiny real HF models, and mode selection."""

from __future__ import annotations

import pytest
import torch

from nbmagic.events import (
    AgentFinished,
    AgentStarted,
    EventRecorder,
    Finished,
    LatentStep,
    ModelCall,
    Notice,
    RoundStarted,
    TextDelta,
)
from nbmagic.mas.system import Agent, MASResult, RecursiveMAS


@pytest.fixture
def qwen(tiny_hf_paths) -> str:
    return f"hf:{tiny_hf_paths['qwen2']}"


@pytest.fixture
def llama(tiny_hf_paths) -> str:
    return f"hf:{tiny_hf_paths['llama']}"


def test_latent_sequential_recursion_events_and_counts(qwen):
    rec = EventRecorder()
    mas = RecursiveMAS(model=qwen, rounds=2, latent_steps=3, max_new_tokens=6, on_event=rec)
    assert mas.mode == "latent"
    assert len({id(m.model) for m in mas.members}) == 1  # one spec, loaded once
    result = mas.run("What is 2+2?")

    assert isinstance(result, MASResult) and result.mode == "latent" and result.rounds == 2
    # who sees what, in which round
    assert [(t["round"], t["agent"], t["sees"]) for t in result.transcript] == [
        (1, "planner", []),
        (1, "critic", ["planner@1"]),
        (1, "solver", ["critic@1"]),
        (2, "planner", ["solver@1"]),
        (2, "critic", ["planner@2"]),
        (2, "solver", ["critic@2"]),
    ]
    assert [t["content"] for t in result.transcript[:-1]] == [""] * 5  # no intermediate text at all
    assert result.transcript[-1]["content"] == result.answer

    # only the last agent of the last round decodes
    planner, critic, solver = result.agents
    assert planner.tokens == critic.tokens == 0
    assert 1 <= solver.tokens <= 6
    # training-free, the answering agent takes no latent steps in the last round: it reads the
    # incoming thoughts and decodes from its prompt's answer position
    assert [a.latent_steps for a in result.agents] == [6, 6, 3]
    assert [t["latent_steps"] for t in result.transcript] == [3, 3, 3, 3, 3, 0]
    assert result.usage.completion_tokens == solver.tokens == result.generated_tokens
    assert result.usage.calls == 6 and result.usage.prompt_tokens > 0

    kinds = rec.kinds()
    assert kinds[0] == "RunStarted" and kinds[-1] == "Finished"
    assert rec.of(Finished)[0].result is result
    assert [e.round for e in rec.of(RoundStarted)] == [1, 2]
    assert [(e.agent, e.round, e.mode) for e in rec.of(AgentStarted)] == [
        (n, r, "latent") for r in (1, 2) for n in ("planner", "critic", "solver")
    ]
    steps = [(e.agent, e.step, e.total) for e in rec.of(LatentStep)]
    assert steps[:3] == [("planner", 1, 3), ("planner", 2, 3), ("planner", 3, 3)]
    assert len(steps) == 15
    finished = rec.of(AgentFinished)
    assert [(e.agent, e.tokens, e.latent_steps) for e in finished][-1] == ("solver", solver.tokens, 0)
    # text streams only from the final agent, after its latent steps
    deltas = rec.of(TextDelta)
    assert {d.agent for d in deltas} <= {"solver"}
    assert "".join(d.text for d in deltas) == result.answer
    last_step = max(i for i, k in enumerate(kinds) if k == "LatentStep")
    assert all(i > last_step for i, k in enumerate(kinds) if k == "TextDelta")
    assert sum(e.completion_tokens for e in rec.of(ModelCall)) == solver.tokens

    # greedy decoding: the same question gives the same answer
    assert mas.run("What is 2+2?").answer == result.answer


def test_heterogeneous_hidden_sizes_are_bridged(qwen, llama):
    mas = RecursiveMAS(
        [Agent(qwen, "planner"), Agent(llama, "critic"), Agent(qwen, "solver")], rounds=2, latent_steps=2,
        max_new_tokens=3,
    )
    assert [m.model.hidden_size for m in mas.members] == [64, 96, 64]
    result = mas.run("hello")
    assert result.mode == "latent" and result.agents[2].tokens >= 1
    from nbmagic.mas.links import Realignment, VocabBridge, model_cache

    q_model, l_model = mas.members[0].model, mas.members[1].model
    # a Realignment per model, a bridge for each direction between the two models, all in the
    # one per-model cache
    for src, dst in ((q_model, l_model), (l_model, q_model)):
        cache = model_cache(src)
        assert isinstance(cache["realign"][1e-5], Realignment) and cache["embedding_norm"] > 0
        ref, bridge = cache["bridges"][id(dst)]
        assert ref() is dst and VocabBridge.cached(src, dst) is bridge
        assert isinstance(bridge, VocabBridge) and bridge.W.shape == (src.hidden_size, dst.hidden_size)


def test_mixture_specialists_think_as_one_batch(qwen):
    rec = EventRecorder()
    mas = RecursiveMAS(model=qwen, pattern="mixture", rounds=2, latent_steps=2, max_new_tokens=3, on_event=rec)
    result = mas.run("Why is the sky blue?")
    assert [(t["round"], t["agent"], t["sees"]) for t in result.transcript][:4] == [
        (1, "math", []),
        (1, "code", []),
        (1, "science", []),
        (1, "summarizer", ["math@1", "code@1", "science@1"]),
    ]
    assert result.transcript[4]["sees"] == ["summarizer@1"]
    kinds = rec.kinds()
    first = kinds.index("LatentStep")
    assert kinds[first - 3 : first] == ["AgentStarted"] * 3  # all three start before any thinks
    assert [(e.agent, e.step) for e in rec.of(LatentStep)][:3] == [("math", 1), ("code", 1), ("science", 1)]


def test_batched_rows_match_single_rows(qwen):
    """Left padding in a batched agent pass changes no row's thoughts."""
    from nbmagic.mas.agent_pass import latent_backend, segments, think
    from nbmagic.mas.links import Realignment

    mas = RecursiveMAS(model=qwen, rounds=1)
    model = latent_backend(mas.members[0].model)
    link = Realignment.from_model(mas.members[0].model)
    block = torch.randn(3, model.hidden_size) * 0.5
    rows = [
        (segments(model, "You are short.", "Q: <<nbmagic-latent-0>> go", 1), [block]),
        (segments(model, "You are a much longer system prompt indeed.", "Q: x <<nbmagic-latent-0>> y", 1), [block]),
    ]
    assert len(rows[0][0]) == 2 and len(rows[0][0][0]) < len(rows[1][0][0])
    with torch.inference_mode():
        both, _ = think(model, rows, 3, link)
        alone = [think(model, [r], 3, link)[0] for r in rows]
    for i in range(2):
        assert torch.allclose(both[i], alone[i][0], atol=1e-4)


def test_single_agent_one_round_latent(qwen):
    mas = RecursiveMAS(agents=[Agent(qwen, "solver")], rounds=1, latent_steps=2, max_new_tokens=4)
    result = mas.run("2+2?")
    # training-free, the only agent decodes from its prompt: no thoughts of its own to read
    assert result.mode == "latent" and len(result.transcript) == 1 and result.agents[0].latent_steps == 0
    from nbmagic.mas.train import new_links

    mas.links = new_links(mas.team)  # trained links (fresh here): decode after its own latent thoughts
    assert mas.run("2+2?").agents[0].latent_steps == 2


def test_mixed_local_and_remote_agents_fall_back_to_text(qwen, openai_server):
    openai_server.set_responder(lambda body: "remote critic words here")
    rec = EventRecorder()
    remote = f"openai-compat:test-model@{openai_server.url}"
    mas = RecursiveMAS(
        [Agent(qwen, "planner"), Agent(remote, "critic"), Agent(qwen, "solver")],
        rounds=1, message_tokens=5, max_new_tokens=7, on_event=rec,
    )
    assert mas.mode == "text"
    result = mas.run("What is 2+2?")
    notices = [n.message for n in rec.of(Notice)]
    assert any("text mode" in n and "critic" in n for n in notices)
    planner, critic, solver = result.agents
    assert 1 <= planner.tokens <= 5 and critic.tokens == 4 and 1 <= solver.tokens <= 7
    # the remote critic saw the local planner's text message; the solver saw the critic's
    critic_prompt = openai_server.chat_requests()[0]["messages"][-1]["content"]
    assert "(planner, round 1)" in critic_prompt
    assert result.transcript[2]["sees"] == ["critic@1"]
    assert {d.agent for d in rec.of(TextDelta)} >= {"critic"}


def test_text_mode_on_purpose_with_local_model(qwen):
    mas = RecursiveMAS(model=qwen, mode="text", rounds=1, message_tokens=3, max_new_tokens=5)
    result = mas.run("hi")
    assert result.mode == "text"
    assert [a.tokens <= 3 for a in result.agents[:2]] == [True, True] and result.agents[2].tokens <= 5
    assert result.usage.calls == 3


def test_prompt_prefix_is_read_once_and_reused_exactly(qwen):
    """Rounds 2+ reuse the KV cache of the system prompt + question: same thoughts as a full prefill."""
    from nbmagic.mas.agent_pass import latent_backend, segments, think
    from nbmagic.mas.links import Realignment

    mas = RecursiveMAS(model=qwen, rounds=1)
    model = latent_backend(mas.members[0].model)
    link = Realignment.from_model(mas.members[0].model)
    segs = segments(model, "You are the Critic.", "Question: 2+2?\n\nThoughts: <<nbmagic-latent-0>>\n\nGo.", 1)
    prefixes: dict = {}
    with torch.inference_mode():
        full, _ = think(model, [(segs, [torch.randn(3, model.hidden_size)])], 2, link)
        block = torch.randn(3, model.hidden_size)
        ref, _ = think(model, [(segs, [block])], 2, link)
        first, _ = think(model, [(segs, [block])], 2, link, prefixes=prefixes)
        (base,) = prefixes.values()
        length = base.length
        again, _ = think(model, [(segs, [block])], 2, link, prefixes=prefixes)
    assert len(prefixes) == 1 and base.length == length == len(segs[0])  # the cached prefix is never grown
    assert torch.allclose(first, ref, atol=1e-4) and torch.allclose(again, ref, atol=1e-4)
    assert not torch.allclose(full, ref, atol=1e-3)  # the thoughts do depend on the incoming block


def test_latent_deliberation_and_distillation_run_all_rounds(qwen):
    delib = RecursiveMAS(model=qwen, pattern="deliberation", rounds=2, latent_steps=2, max_new_tokens=3).run("q")
    assert [t["agent"] for t in delib.transcript] == ["reflector", "tool_caller"] * 2 and delib.rounds == 2
    assert delib.agents[1].tokens >= 1 and delib.agents[0].tokens == 0
    dist = RecursiveMAS(model=qwen, pattern="distillation", rounds=1, latent_steps=2, max_new_tokens=3).run("q")
    assert [(t["agent"], t["sees"]) for t in dist.transcript] == [("expert", []), ("learner", ["expert@1"])]
