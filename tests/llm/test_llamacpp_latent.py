"""Latent mode through llama.cpp, on tiny GGUF files the tests write (random f32 weights).

Mechanics only (real weights are in tests/mas/test_real_model_llamacpp.py): what prefill,
latent steps, decode and fork return, that embedding rows mean what token ids mean, that a
fork leaves its source untouched, that Ctrl-C mid-rollout keeps the partial result and
frees the cache, and that the architecture table refuses what it does not cover.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from nbmagic.errors import ConfigError, ModelNotFoundError, RunInterrupted
from nbmagic.events import EventRecorder, LatentStep, Notice
from nbmagic.llm.gguf_tables import ARCHITECTURES, GGUFTables, NumpyRealignment, latent_scale
from nbmagic.llm.specs import load_model
from nbmagic.mas.system import RecursiveMAS
from tests.fixtures.gguf_models import write_tiny_gguf

pytestmark = pytest.mark.gguf


@pytest.fixture(scope="module")
def model(tiny_gguf):
    m = load_model(f"gguf:{tiny_gguf}", n_ctx=512, n_threads=1)
    yield m
    m.close()


@pytest.fixture()
def backend(model):
    b = model.latent()
    with b.session():
        yield b


def _prompt(backend) -> list[int]:
    text, prefix = backend.chat_text([{"role": "user", "content": "hello there, latent friend"}])
    return prefix + backend.tokenize(text)


def test_one_latent_context_on_the_chat_models_weights(model, backend):
    assert model.supports_latent and model.latent_unsupported_reason is None
    assert model.latent() is backend and backend.kind == "gguf"
    assert backend.hidden_size == model.hidden_size == 64
    assert backend.llm is model.llm  # same weights: no second Llama object
    assert (backend.token_scale, backend.embd_scale) == (1.0, 1.0)  # llama


def test_prefill_through_embedding_rows_equals_prefill_through_tokens(backend):
    ids = _prompt(backend)
    by_tokens = backend.prefill([[ids]])
    by_rows = backend.prefill([[ids[:3], backend.input_rows(ids[3:-1]), ids[-1:]]])
    assert by_tokens.last_hidden.shape == (1, 64) and by_tokens.last_logits.shape == (1, backend.n_vocab)
    np.testing.assert_allclose(by_rows.last_hidden, by_tokens.last_hidden, atol=1e-4)
    np.testing.assert_allclose(by_rows.last_logits, by_tokens.last_logits, atol=1e-3)
    assert by_tokens.lengths == by_rows.lengths == [len(ids)]


def test_latent_steps_shapes_batch_rows_and_link(backend):
    ids = _prompt(backend)
    state = backend.prefill([[ids], [ids[:5]]])  # two rows of different lengths, one sequence each
    calls: list[tuple[int, int]] = []
    seen: list[tuple[int, ...]] = []

    def link(h: np.ndarray) -> np.ndarray:
        seen.append(h.shape)
        return h * 0.5

    thoughts, after = backend.latent_steps(state, 4, link, lambda k, n: calls.append((k, n)))
    assert thoughts.shape == (2, 4, 64) and thoughts.dtype == np.float32
    assert calls == [(1, 4), (2, 4), (3, 4), (4, 4)] and seen == [(2, 64)] * 4
    assert after.lengths == [len(ids) + 4, 9]
    np.testing.assert_array_equal(after.last_hidden, thoughts[:, -1])
    alone, _ = backend.latent_steps(backend.prefill([[ids[:5]]]), 4, link)
    np.testing.assert_allclose(alone[0], thoughts[1], atol=1e-4)  # rows do not see each other
    with pytest.raises(ConfigError, match="returned"):
        backend.latent_steps(state, 1, lambda h: h[:, :10])


def test_fork_is_identical_and_leaves_the_source_alone(backend):
    base = backend.prefill([[_prompt(backend)]])
    fork = backend.fork(base)
    assert fork.seqs != base.seqs
    a, _ = backend.latent_steps(fork, 3, None)
    b, _ = backend.latent_steps(backend.fork(base), 3, None)
    np.testing.assert_allclose(a, b, atol=1e-5)  # float sums over a longer shared cache: ulp-level
    # the source still decodes as if nothing had been appended to its fork
    fresh = backend.prefill([[_prompt(backend)]])
    kept = backend.decode(base, max_new_tokens=6)
    assert kept.texts == backend.decode(fresh, max_new_tokens=6).texts


def test_decode_cap_stop_string_and_streaming(backend):
    state = backend.prefill([[_prompt(backend)]])
    full = backend.decode(backend.fork(state), max_new_tokens=12)
    assert full.tokens == [12] and full.finish_reasons == ["length"] and full.texts[0]
    cut_at = full.texts[0][len(full.texts[0]) // 2 :][:2]
    pieces: list[str] = []
    stopped = backend.decode(state, max_new_tokens=12, stop=[cut_at], on_token=pieces.append)
    assert stopped.finish_reasons == ["stop"] and stopped.texts[0] == full.texts[0].split(cut_at)[0]
    assert "".join(pieces) == stopped.texts[0]


def test_release_and_session_free_every_sequence(model, tiny_gguf):
    b = model.latent()
    free = len(b._free)
    with b.session():
        s = b.prefill([[[1, 50, 60]], [[1, 70]]])
        b.fork(s)
        assert len(b._free) == free - 4
        b.release(s)
        assert len(b._free) == free - 2
    assert len(b._free) == free


def test_realignment_from_the_files_own_tables(model, tiny_gguf, tmp_path):
    b = model.latent()
    tables = GGUFTables(tiny_gguf)
    assert not tables.tied and tables.shape == (b.n_vocab, 64)
    w_in = tables.rows("token_embd", 0, b.n_vocab)
    w_out = tables.rows("output", 0, b.n_vocab)
    realign = b.realignment()
    assert realign is b.realignment()  # solved once per model
    expect = np.linalg.solve(w_out.T.astype(np.float64) @ w_out + 1e-5 * np.eye(64), w_out.T.astype(np.float64) @ w_in)
    np.testing.assert_allclose(realign.W_a, expect, rtol=1e-3, atol=1e-4)
    assert realign.target_norm == pytest.approx(float(np.linalg.norm(w_in, axis=1).mean()), rel=1e-5)
    e = realign(np.random.default_rng(0).standard_normal((3, 64)).astype(np.float32))
    np.testing.assert_allclose(np.linalg.norm(e, axis=1), realign.target_norm, rtol=1e-4)
    tied = GGUFTables(write_tiny_gguf(tmp_path / "tied.gguf", tied=True))
    assert tied.tied
    np.testing.assert_array_equal(NumpyRealignment.from_tables(tied, 100).W_a, np.eye(64, dtype=np.float32))


def test_architecture_table():
    assert latent_scale("llama").factors(64) == (1.0, 1.0)
    assert latent_scale("gemma2").factors(64) == (8.0, 8.0)  # Gemma/Gemma2 scale rows by sqrt(d) too
    assert latent_scale("gemma3").factors(64) == (8.0, 1.0)  # Gemma3 only scales tokens
    with pytest.raises(ConfigError, match="M-RoPE"):
        latent_scale("qwen2vl", 8)
    with pytest.raises(ConfigError, match="does not cover the bloom architecture"):
        latent_scale("bloom")
    assert "qwen2" in ARCHITECTURES and "gemma3" in ARCHITECTURES


def test_uncovered_architecture_refuses_latent_and_still_chats(tiny_gguf):
    m = load_model(f"gguf:{tiny_gguf}", n_ctx=512, n_threads=1)
    try:
        m.metadata["general.architecture"] = "bloom"  # what an uncovered file's metadata says
        assert not m.supports_latent and "bloom" in m.latent_unsupported_reason
        with pytest.raises(ConfigError, match="bloom architecture"):
            RecursiveMAS(model=m, mode="latent")
        auto = RecursiveMAS(model=m, mode="auto")
        assert auto.mode == "text" and "bloom" in auto.mode_reason
        with pytest.raises(ConfigError, match="bloom"):
            m.latent()
        assert m.chat("hi", max_tokens=3, temperature=0).usage.completion_tokens >= 1
    finally:
        m.close()


def test_recursive_mas_latent_on_gguf_and_ctrl_c_keeps_the_partial_run(model):
    rec = EventRecorder()
    mas = RecursiveMAS(model=model, rounds=2, latent_steps=3, mode="latent", max_new_tokens=5, on_event=rec)
    result = mas.run("What is two plus two?")
    assert result.mode == "latent" and [a.latent_steps for a in result.agents] == [6, 6, 3]
    assert result.agents[2].tokens >= 1 and result.generated_tokens == result.agents[2].tokens
    assert len(rec.of(LatentStep)) == 15

    def interrupt(ev):
        if isinstance(ev, LatentStep) and ev.agent == "critic" and ev.step == 2:
            raise KeyboardInterrupt

    with pytest.raises(RunInterrupted) as info:
        mas.run("And three plus three?", on_event=interrupt)
    partial = info.value.partial
    assert partial.mode == "latent" and [t["agent"] for t in partial.transcript] == ["planner"]
    assert len(model.latent()._free) == model.latent()._n_seq  # the session emptied the cache
    again = mas.run("What is two plus two?")
    assert again.answer == result.answer  # greedy, and nothing left over from the interrupted run


def test_auto_mode_says_why(model):
    rec = EventRecorder()
    mas = RecursiveMAS(model=model, pattern="mixture", mode="auto", rounds=1, max_new_tokens=2,
                       message_tokens=2, on_event=rec)
    assert mas.mode == "text" and "mixture" in mas.mode_reason and "%" in mas.mode_reason
    mas.run("hi")
    assert any(n.message == mas.mode_reason for n in rec.of(Notice))


def test_latent_run_on_gguf_imports_no_torch(tiny_gguf):
    code = textwrap.dedent(f"""
        import json, sys
        from nbmagic.mas.system import RecursiveMAS
        mas = RecursiveMAS(model="gguf:{tiny_gguf}", rounds=1, latent_steps=2, mode="latent", max_new_tokens=3)
        res = mas.run("hello")
        print(json.dumps({{"mode": res.mode, "steps": [a.latent_steps for a in res.agents],
                          "heavy": sorted(m for m in ("torch", "transformers") if m in sys.modules)}}))
    """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    got = json.loads(out.stdout.strip().splitlines()[-1])
    assert got == {"mode": "latent", "steps": [2, 2, 0], "heavy": []}


def test_ollama_blob_layout(tmp_path, monkeypatch, tiny_gguf):
    import hashlib
    import shutil

    root = tmp_path / "ollama-models"
    data = tiny_gguf.read_bytes()
    digest = hashlib.sha256(data).hexdigest()
    (root / "blobs").mkdir(parents=True)
    shutil.copy(tiny_gguf, root / "blobs" / f"sha256-{digest}")
    manifest = root / "manifests" / "registry.ollama.ai" / "library" / "tiny-llama" / "q4"
    manifest.parent.mkdir(parents=True)
    manifest.write_text(json.dumps({"schemaVersion": 2, "layers": [
        {"mediaType": "application/vnd.ollama.image.template", "digest": "sha256:00", "size": 1},
        {"mediaType": "application/vnd.ollama.image.model", "digest": f"sha256:{digest}", "size": len(data)},
    ]}))
    monkeypatch.setenv("OLLAMA_MODELS", str(root))
    m = load_model("gguf:ollama:tiny-llama:q4", n_ctx=512, n_threads=1)
    try:
        assert m.path == root / "blobs" / f"sha256-{digest}" and m.supports_latent
        assert m.chat("hi", max_tokens=2, temperature=0).text is not None
    finally:
        m.close()
    with pytest.raises(ModelNotFoundError, match=r"pulled here: tiny-llama:q4"):
        load_model("gguf:ollama:tiny-llama")  # tag latest was never pulled


def test_doctor_line_says_which_backends_run_latent_mode(tiny_gguf, tmp_path):
    import gguf

    from nbmagic.llm.gguf_tables import latent_backends, read_architecture

    assert read_architecture(tiny_gguf) == "llama"
    assert latent_backends(tiny_gguf, ["gguf", "hf"]) == "latent mode: gguf (llama.cpp), hf (transformers)"
    other = tmp_path / "bloom.gguf"
    w = gguf.GGUFWriter(str(other), "bloom")
    w.add_token_list(["a", "b"])  # an array before nothing: the header reader skips what it does not need
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.close()
    assert read_architecture(other) == "bloom"
    line = latent_backends(other, ["gguf"])
    assert line.startswith("latent mode: not gguf (") and "bloom" in line
    assert read_architecture(tmp_path / "missing.gguf") == ""


def test_trained_links_apply_per_step_on_gguf(model):
    """Links are torch modules: on llama.cpp they run per step on numpy rows (torch installed here)."""
    import torch

    from nbmagic.mas.links import LinkSet

    mas = RecursiveMAS(model=model, rounds=1, latent_steps=2, mode="latent", max_new_tokens=3)
    links = LinkSet("mlp", [64, 64, 64], mas.plan.edges())
    calls: list[tuple[int, ...]] = []
    links.inner_for(2).register_forward_hook(lambda mod, inp, out: calls.append(tuple(inp[0].shape)))
    mas.links = links
    result = mas.run("hi")
    # with trained links the answering agent thinks too, then decodes right after its thoughts
    assert [a.latent_steps for a in result.agents] == [2, 2, 2] and calls == [(1, 64), (1, 64)]
    assert result.agents[2].tokens >= 1 and isinstance(links.inner_for(2).W1.weight, torch.nn.Parameter)
