"""Training links with tiny real HF models: gradients reach every link, losses fall, checkpoints."""

from __future__ import annotations

import json

import pytest
import torch

from nbmagic.errors import CheckpointMismatchError, ConfigError
from nbmagic.mas import train as T
from nbmagic.mas.checkpoint import load_links, read_manifest, save_links
from nbmagic.mas.system import Agent, RecursiveMAS


@pytest.fixture
def hetero(tiny_hf_paths) -> RecursiveMAS:
    """Planner and solver share a Qwen2 (hidden 64); the critic is a Llama (hidden 96)."""
    q, lm = f"hf:{tiny_hf_paths['qwen2']}", f"hf:{tiny_hf_paths['llama']}"
    return RecursiveMAS(
        [Agent(q, "planner"), Agent(lm, "critic"), Agent(q, "solver")], rounds=2, latent_steps=2, max_new_tokens=4
    )


QS = ["What is 2+2?", "Name the capital of France, please."]
AS = ["4", "Paris"]


def _grads(links) -> dict[str, float]:
    return {n: (0.0 if p.grad is None else float(p.grad.abs().sum())) for n, p in links.named_parameters()}


def test_outer_loss_gradient_reaches_every_link_parameter(hetero):
    links = T.new_links(hetero)
    assert sorted(links.outer.keys()) == ["0_1", "1_2", "2_0"]
    assert [m.model.hidden_size for m in hetero.members] == [64, 96, 64]
    loss = T.outer_loss(hetero, links, QS, AS)
    assert loss.requires_grad and torch.isfinite(loss)
    loss.backward()
    g = _grads(links)
    # W2 starts at zero, so W1 (and the pre-LayerNorm feeding it) get no gradient yet; but
    # every link already gets one, the first agent's inner link of round 1 included
    for module in [*links.inner.keys()]:
        assert g[f"inner.{module}.W2.weight"] > 0 and g[f"inner.{module}.post_ln.weight"] > 0
    for hop in links.outer:
        assert g[f"outer.{hop}.W3.weight"] > 0 and g[f"outer.{hop}.W2.weight"] > 0
    # frozen models: no parameter wants or got a gradient
    for m in hetero.members:
        assert all(not p.requires_grad and p.grad is None for p in m.model.model.parameters())
    opt = torch.optim.AdamW(links.parameters(), lr=1e-2)
    opt.step()
    opt.zero_grad()
    T.outer_loss(hetero, links, QS, AS).backward()
    zero = [n for n, v in _grads(links).items() if v == 0]
    assert zero == []  # after one step every single link parameter has a non-zero gradient


def test_every_link_call_of_every_round_passes_gradient(hetero):
    """Per call, not per parameter: links are shared across rounds, so a parameter gradient
    alone would not show that round 1's thoughts (not only round 2's) reach the loss."""
    links = T.new_links(hetero)
    calls: list[tuple[str, list[float]]] = []

    def watch(name: str):
        def hook(module, args, out):
            slot = [0.0]
            calls.append((name, slot))
            out.register_hook(lambda g: slot.__setitem__(0, float(g.abs().sum())))

        return hook

    for kind, modules in (("inner", links.inner), ("outer", links.outer)):
        for key, module in modules.items():
            module.register_forward_hook(watch(f"{kind}.{key}"))
    T.outer_loss(hetero, links, QS, AS).backward()
    # 3 agents x 2 rounds x 2 latent steps inner calls; hops 0->1, 1->2 (round 1), 2->0, 0->1, 1->2 (round 2)
    assert len(calls) == 12 + 5
    assert [n for n, _ in calls][:3] == ["inner.0", "inner.0", "outer.0_1"]  # round 1's planner comes first
    assert [n for n, g in calls if g[0] == 0] == []


def test_gradient_checkpointing_gives_the_same_loss_and_gradients(hetero):
    a = T.new_links(hetero)
    b = T.new_links(hetero)
    b.load_state_dict(a.state_dict())
    la = T.outer_loss(hetero, a, QS, AS)
    la.backward()
    lb = T.outer_loss(hetero, b, QS, AS, gradient_checkpointing=True)
    lb.backward()
    assert torch.allclose(la, lb, atol=1e-5)
    pb = dict(b.named_parameters())
    for n, p in a.named_parameters():
        assert torch.allclose(p.grad, pb[n].grad, atol=1e-5, rtol=1e-4), n


def test_training_lowers_losses_and_installs_links(tiny_hf_paths):
    mas = RecursiveMAS(
        [Agent(f"hf:{tiny_hf_paths['qwen2']}", "expert"), Agent(f"hf:{tiny_hf_paths['qwen2']}", "learner")],
        pattern="distillation", rounds=1, latent_steps=2, max_new_tokens=3,
    )
    examples = [T.Example(q, a, {"expert": f"Reasoning: {q} -> {a}"}) for q, a in zip(QS, AS, strict=True)]
    rows: list[dict] = []
    report = T.train_links(
        mas, examples, T.TrainConfig(epochs=6, lr=2e-2, batch_size=2, inner_steps=6, inner_lr=3e-2, warmup=0.2),
        on_log=rows.append,
    )
    outer = report.outer_losses
    assert len(outer) == 6 and outer[-1] < outer[0] - 0.05
    for losses in report.inner_losses.values():
        assert len(losses) == 6 and min(losses[-2:]) < losses[0]
    assert [r["step"] for r in rows if r["phase"] == "outer"] == [1, 2, 3, 4, 5, 6]
    lrs = [r["lr"] for r in rows if r["phase"] == "outer"]
    assert lrs[0] < lrs[1] and lrs[-1] < lrs[1]  # warmup, then cosine decay
    assert mas.links is report.links and not any(p.requires_grad for p in mas.links.parameters())
    assert mas.run("What is 2+2?").mode == "latent"


def test_checkpoint_round_trip_and_mismatches(hetero, tiny_hf_paths, tmp_path):
    links = T.new_links(hetero, "mlp")
    with torch.no_grad():
        for p in links.parameters():
            p.add_(0.01 * torch.randn_like(p))
    out = save_links(hetero, links, tmp_path / "ck", extra={"note": "test"})
    manifest, weights = read_manifest(out)
    assert weights.name == "links.safetensors" and weights.exists()
    assert manifest["link_type"] == "mlp" and manifest["pattern"] == "sequential"
    assert [a["hidden_size"] for a in manifest["agents"]] == [64, 96, 64]
    assert {(o["source"], o["target"]) for o in manifest["outer"]} == {(0, 1), (1, 2), (2, 0)}
    assert manifest["training"] == {"note": "test"} and manifest["parameters"] == links.num_parameters()

    loaded = load_links(out, hetero)
    for (n, a), (_, b) in zip(links.state_dict().items(), loaded.state_dict().items(), strict=True):
        assert torch.equal(a, b), n
    # a system built with links=path uses them: same answer as the in-memory links
    q, lm = f"hf:{tiny_hf_paths['qwen2']}", f"hf:{tiny_hf_paths['llama']}"
    again = RecursiveMAS([Agent(q, "planner"), Agent(lm, "critic"), Agent(q, "solver")],
                         rounds=2, latent_steps=2, max_new_tokens=4, links=out)
    hetero.links = links
    used: list[str] = []
    for key, module in [*again.links.inner.items(), *again.links.outer.items()]:
        module.register_forward_hook(lambda *a, key=key: used.append(key))
    assert again.run("hi").answer == hetero.run("hi").answer
    # not vacuous: the loaded links (not the training-free realignment) did the mapping
    assert used.count("0") == used.count("1") == used.count("2") == 2 * 2  # rounds x latent steps
    assert {"0_1", "1_2", "2_0"} <= set(used)

    with pytest.raises(ConfigError, match="already holds"):
        save_links(hetero, links, out)
    # a different hidden size for an agent
    with pytest.raises(CheckpointMismatchError, match="hidden size 64") as err:
        RecursiveMAS([Agent(q, "planner"), Agent(q, "critic"), Agent(q, "solver")], rounds=2, links=out)
    assert "critic" in err.value.message and "96" in err.value.message
    # a different number of agents
    with pytest.raises(CheckpointMismatchError, match="3 agents"):
        RecursiveMAS([Agent(q, "planner"), Agent(q, "solver")], links=out)
    # the same dims in another order of roles
    with pytest.raises(CheckpointMismatchError, match="order"):
        RecursiveMAS([Agent(q, "solver"), Agent(lm, "critic"), Agent(q, "planner")], links=out)
    # not a checkpoint at all
    with pytest.raises(ConfigError, match="No links checkpoint"):
        RecursiveMAS(model=q, links=tmp_path / "nowhere")
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "manifest.json").write_text(json.dumps({"format": "other"}))
    with pytest.raises(CheckpointMismatchError, match="not an nbmagic"):
        RecursiveMAS(model=q, links=tmp_path / "bad")


@pytest.mark.parametrize(
    ("edit", "needle"),
    [
        (lambda m: m.update(version="two"), "malformed"),
        (lambda m: m["outer"][0].pop("source"), "missing field 'source'"),
        (lambda m: m.update(outer="0_1"), "must be lists"),
        (lambda m: m["agents"][0].update(hidden_size="big"), "malformed"),
        (lambda m: m["outer"].append({"source": 0, "target": 7}), "not listed"),
        (lambda m: m.update(link_type="conv"), "unknown link type 'conv'"),
        (lambda m: m.update(link_type="mlp"), "Unexpected key(s)"),  # weights of the other kind
    ],
)
def test_damaged_checkpoints_are_one_clear_error(tiny_hf_paths, tmp_path, edit, needle):
    q = f"hf:{tiny_hf_paths['qwen2']}"

    def build(links=None):
        return RecursiveMAS([Agent(q, "expert"), Agent(q, "learner")], pattern="distillation", rounds=1,
                            latent_steps=1, links=links)

    out = save_links(build(), T.new_links(build()), tmp_path / "ck")
    manifest = json.loads((out / "manifest.json").read_text())
    edit(manifest)
    (out / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(CheckpointMismatchError) as err:
        build(out)
    assert needle in err.value.message


def test_load_jsonl_validates_lines(tmp_path):
    good = tmp_path / "d.jsonl"
    good.write_text('{"question": "q", "answer": "a", "plan": "p", "n": 3}\n\n{"question": "q2", "answer": "a2"}\n')
    ex = T.load_jsonl(good)
    assert [(e.question, e.answer, e.extra) for e in ex] == [("q", "a", {"plan": "p"}), ("q2", "a2", {})]
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"question": "q", "answer": "a"}\n{"question": "q"}\n')
    with pytest.raises(ConfigError, match=r"bad.jsonl:2 needs string fields"):
        T.load_jsonl(bad)
    bad.write_text("{not json\n")
    with pytest.raises(ConfigError, match=r":1 is not valid JSON"):
        T.load_jsonl(bad)
    with pytest.raises(ConfigError, match="No dataset"):
        T.load_jsonl(tmp_path / "missing.jsonl")


def test_training_needs_latent_mode(openai_server):
    mas = RecursiveMAS(model=f"openai-compat:test-model@{openai_server.url}")
    with pytest.raises(ConfigError, match="latent mode"):
        T.train_links(mas, [T.Example("q", "a")])


def test_same_dims_other_model_loads_with_a_warning(tiny_hf_paths, tiny_hf_model_path, tmp_path):
    from nbmagic.events import EventRecorder, Notice

    q = f"hf:{tiny_hf_paths['qwen2']}"
    other = f"hf:{tiny_hf_model_path('qwen2', 64, seed=1)}"
    mas = RecursiveMAS([Agent(q, "expert"), Agent(q, "learner")], pattern="distillation", rounds=1, latent_steps=1)
    out = save_links(mas, T.new_links(mas), tmp_path / "ck")
    rec = EventRecorder()
    again = RecursiveMAS([Agent(other, "expert"), Agent(q, "learner")], pattern="distillation", rounds=1,
                         latent_steps=1, max_new_tokens=2, links=out, on_event=rec)
    again.run("hi")
    warnings = [n.message for n in rec.of(Notice) if n.level == "warning"]
    assert len(warnings) == 1 and "expert" in warnings[0] and "trained with" in warnings[0]


def test_training_continues_from_a_checkpoint_of_the_other_link_type(tiny_hf_paths, tmp_path):
    q = f"hf:{tiny_hf_paths['qwen2']}"

    def build(links=None):
        return RecursiveMAS([Agent(q, "expert"), Agent(q, "learner")], pattern="distillation", rounds=1,
                            latent_steps=1, max_new_tokens=2, links=links)

    start = T.new_links(build(), "mlp")
    with torch.no_grad():
        start.inner_for(0).W2.weight.fill_(0.01)
    mas = build(save_links(build(), start, tmp_path / "ck"))
    report = T.train_links(mas, [T.Example("q?", "a")], T.TrainConfig(max_steps=1, batch_size=1, lr=1e-6))
    assert report.links.link_type == "mlp" and report.config.link_type == "mlp"  # the default "ln" gave way
    assert torch.allclose(report.links.inner_for(0).W2.weight, start.inner_for(0).W2.weight, atol=1e-4)


def test_interrupted_training_keeps_the_steps_taken(tiny_hf_paths):
    from nbmagic.errors import RunInterrupted

    q = f"hf:{tiny_hf_paths['qwen2']}"
    mas = RecursiveMAS([Agent(q, "expert"), Agent(q, "learner")], pattern="distillation", rounds=1, latent_steps=1)

    def ctrl_c_at_step_2(row: dict) -> None:
        if row["phase"] == "outer" and row["step"] == 2:
            raise KeyboardInterrupt

    with pytest.raises(RunInterrupted) as err:
        T.train_links(mas, [T.Example("q?", "a")], T.TrainConfig(epochs=50, batch_size=1), on_log=ctrl_c_at_step_2)
    report = err.value.partial
    assert isinstance(report, T.TrainReport) and len(report.outer_losses) == 2
    assert not any(p.requires_grad for p in report.links.parameters())
    assert mas.links is None  # half-trained links are handed back, not installed


def test_inner_loop_skips_one_token_texts(tiny_hf_paths):
    q = f"hf:{tiny_hf_paths['qwen2']}"
    mas = RecursiveMAS([Agent(q, "expert"), Agent(q, "learner")], pattern="distillation", rounds=1, latent_steps=1)
    one_token = mas.members[0].model.tokenizer.decode([mas.members[0].model.tokenizer("4").input_ids[0]])
    examples = [T.Example("What is 2+2?", one_token)]  # half the inner texts are a single token
    cfg = T.TrainConfig(batch_size=1, inner_steps=8, max_steps=1)
    report = T.train_links(mas, examples, cfg)
    assert [len(v) for v in report.inner_losses.values()] == [8, 8]
    with pytest.raises(ConfigError, match="inner loop"):
        T.train_links(mas, [T.Example(one_token, one_token)], cfg)
