"""HFChatModel on tiny real models written to disk and loaded with from_pretrained."""

from __future__ import annotations

import asyncio
import sys

import pytest
import torch

from nbmagic import load_model
from nbmagic.errors import (
    BackendNotInstalledError,
    ConfigError,
    ModelNotFoundError,
    NoModelAvailableError,
)
from nbmagic.llm.devices import detect_device
from nbmagic.llm.hf import HFChatModel, TextStream
from tests.fixtures.openai_server import closed_port


@pytest.fixture(scope="module")
def qwen(tiny_hf_paths) -> HFChatModel:
    return load_model(f"hf:{tiny_hf_paths['qwen2']}")


@pytest.fixture(scope="module")
def llama(tiny_hf_paths) -> HFChatModel:
    return load_model(f"hf:{tiny_hf_paths['llama']}")


def test_loads_frozen_on_cpu_with_latent_accessors(qwen, llama):
    assert isinstance(qwen, HFChatModel) and qwen.backend == "hf" and qwen.supports_latent
    for m, d in ((qwen, 64), (llama, 96)):
        assert m.hidden_size == d
        assert m.torch_device == detect_device().torch_device
        assert m.dtype == (torch.float32 if m.torch_device == "cpu" else m.dtype)
        assert not m.model.training
        assert all(not p.requires_grad for p in m.model.parameters())
        ids = torch.tensor([m.chat_ids("hi")], device=m.torch_device)
        emb = m.embed_ids(ids)
        assert emb.shape == (1, ids.shape[1], d)
        assert torch.equal(emb, m.model.get_input_embeddings()(ids))


def test_chat_ids_use_the_chat_template_or_a_fallback(qwen, tiny_hf_paths):
    tok = qwen.tokenizer
    ids = qwen.chat_ids([{"role": "system", "content": "be brief"}, {"role": "user", "content": "hi"}])
    text = tok.decode(ids)
    assert text == "<|im_start|>system\nbe brief<|im_end|>\n<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n"
    assert not tok.decode(qwen.chat_ids("hi", add_generation_prompt=False)).endswith("assistant\n")
    plain = load_model(f"hf:{tiny_hf_paths['notemplate']}")
    ids = plain.chat_ids("hi")
    assert ids[0] == plain.tokenizer.bos_token_id
    assert plain.tokenizer.decode(ids[1:]) == "User: hi\nAssistant:"
    assert plain.chat("hi", temperature=0, max_tokens=3).usage.prompt_tokens == len(ids)


def test_count_tokens_is_exact(qwen):
    assert qwen.count_tokens("") == 0
    assert qwen.count_tokens("héllo") == 6  # byte-level tokenizer: é is two bytes
    text = "Some words, and 12 numbers."
    assert qwen.count_tokens(text) == len(qwen.tokenizer(text, add_special_tokens=False).input_ids)


def test_greedy_chat_is_deterministic_with_exact_usage_and_streaming(qwen):
    before = qwen.usage.calls
    pieces: list[str] = []
    r1 = qwen.chat("hello there", temperature=0, max_tokens=12, on_token=pieces.append)
    r2 = qwen.chat("hello there", temperature=0, max_tokens=12)
    assert r1.text == r2.text and r1.text
    assert "".join(pieces) == r1.text
    assert r1.usage.prompt_tokens == len(qwen.chat_ids("hello there"))
    assert 1 <= r1.usage.completion_tokens <= 12
    if r1.finish_reason == "length":
        assert r1.usage.completion_tokens == 12
    assert qwen.usage.calls == before + 2


def test_max_tokens_bounds_the_reply(llama):
    r = llama.chat("count", temperature=0, max_tokens=3)
    assert r.usage.completion_tokens <= 3
    assert r.finish_reason in ("length", "stop")


def test_stop_string_cuts_the_reply_and_is_never_streamed(qwen):
    full = qwen.chat("tell me more", temperature=0, max_tokens=24).text
    visible = full.replace("\ufffd", "")
    stop = next((visible[i : i + 2] for i in range(3, len(visible) - 2) if visible[i : i + 2].isprintable()), None)
    assert stop is not None, f"greedy text has no printable pair: {full!r}"
    pieces: list[str] = []
    r = qwen.chat("tell me more", temperature=0, max_tokens=24, stop=[stop], on_token=pieces.append)
    assert r.finish_reason == "stop"
    assert r.text == full[: full.find(stop)]
    assert stop not in "".join(pieces) and "".join(pieces) == r.text
    assert r.usage.completion_tokens < qwen.count_tokens(full) or r.usage.completion_tokens < 24


def test_sampling_is_reproducible_with_a_seed(qwen):
    a = qwen.chat("hi", temperature=1.0, top_p=0.9, max_tokens=8, seed=7).text
    b = qwen.chat("hi", temperature=1.0, top_p=0.9, max_tokens=8, seed=7).text
    assert a == b


def test_async_chat(llama):
    r = asyncio.run(llama.achat("hi", temperature=0, max_tokens=4))
    assert r.usage.prompt_tokens == len(llama.chat_ids("hi")) and r.usage.calls == 1


def test_text_stream_holds_back_partial_stop_and_half_characters(qwen):
    tok = qwen.tokenizer
    out: list[str] = []
    s = TextStream(tok, stop=["END"], on_token=out.append)
    for t in tok("é ok EN", add_special_tokens=False).input_ids:
        s.push(t)
    assert "".join(out) == "é ok "  # 'EN' might start 'END'; half of é was never shown
    assert s.push(tok.convert_tokens_to_ids("D")) is True
    assert s.finish() == "é ok " and "".join(out) == "é ok "


def test_missing_folder_and_folder_without_config(tmp_path):
    with pytest.raises(ModelNotFoundError, match="no such folder"):
        load_model(f"hf:{tmp_path}/nope/deeper")
    with pytest.raises(ModelNotFoundError, match=r"config\.json"):
        load_model(f"hf:{tmp_path}")


def test_hub_repo_unreachable_or_offline_is_one_clear_error(monkeypatch, capsys):
    repo = "nbmagic-tests/does-not-exist-tiny"
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setenv("HF_ENDPOINT", f"http://127.0.0.1:{closed_port()}")
    with pytest.raises(NoModelAvailableError, match=r"could not be downloaded from http://127\.0\.0\.1") as err:
        HFChatModel(repo)
    assert "hf:<path>" in err.value.message
    assert f"downloading hf:{repo}" in capsys.readouterr().err
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(NoModelAvailableError, match="HF_HUB_OFFLINE"):
        load_model(f"hf:{repo}")
    monkeypatch.delenv("HF_HUB_OFFLINE")
    with pytest.raises(NoModelAvailableError, match="not in the local cache"):
        HFChatModel(repo, download=False)
    with pytest.raises(ModelNotFoundError, match="neither a folder here nor a hub repo id"):
        load_model("hf:my model!")


def test_missing_transformers_names_the_extra(monkeypatch, tiny_hf_paths):
    monkeypatch.setitem(sys.modules, "transformers", None)
    with pytest.raises(BackendNotInstalledError, match=r"pip install 'nbmagic\[local\]'"):
        HFChatModel(str(tiny_hf_paths["qwen2"]))


def test_wrap_adopts_a_model_in_memory(tiny_hf_paths):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    path = tiny_hf_paths["llama"]
    raw = AutoModelForCausalLM.from_pretrained(path)
    raw.train()
    m = HFChatModel.wrap(raw, AutoTokenizer.from_pretrained(path), name="mine")
    assert m.name == "mine" and m.hidden_size == 96 and m.torch_device == "cpu"  # stays where it was
    assert not raw.training and not any(p.requires_grad for p in raw.parameters())
    loaded = load_model(f"hf:{path}", device="cpu")
    assert m.chat("hi", temperature=0, max_tokens=5).text == loaded.chat("hi", temperature=0, max_tokens=5).text


def test_device_and_dtype_choices(tiny_hf_paths):
    path = tiny_hf_paths["qwen2"]
    half = load_model(f"hf:{path}", device="cpu", dtype="bf16")  # CPU: bf16 only when asked
    assert half.dtype == torch.bfloat16 and next(half.model.parameters()).dtype == torch.bfloat16
    assert half.embed_ids([[1, 2]]).dtype == torch.bfloat16
    if not torch.cuda.is_available():
        with pytest.raises(ConfigError, match="not available"):
            load_model(f"hf:{path}", device="cuda")
    with pytest.raises(ConfigError, match="Unknown dtype"):
        load_model(f"hf:{path}", dtype="int3")


def _metaspace_tokenizer():
    """A SentencePiece-style tokenizer (▁ for spaces, dropped at the start of a decode)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    chars = "▁abcdefghijklmnopqrstuvwxyzé,.!"
    tok = Tokenizer(models.BPE(vocab={c: i for i, c in enumerate(["<unk>", *chars])}, merges=[], unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="first")
    tok.decoder = decoders.Metaspace(replacement="▁", prepend_scheme="first")
    return PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="<unk>")


@pytest.mark.parametrize("kind", ["byte-level", "metaspace"])
def test_text_stream_equals_one_full_decode(qwen, kind):
    tok = qwen.tokenizer if kind == "byte-level" else _metaspace_tokenizer()
    text = "hello wörld, héllo again. done!" if kind == "byte-level" else "hello world, héllo again. done!"
    ids = tok(text, add_special_tokens=False).input_ids
    out: list[str] = []
    s = TextStream(tok, on_token=out.append)
    for t in ids:
        s.push(t)
    assert s.finish() == tok.decode(ids) == text
    assert "".join(out) == text and len(out) > 5  # streamed in many pieces
    naive = "".join(tok.decode([t]) for t in ids)
    if kind == "metaspace":
        assert naive != text  # decoding token by token loses the spaces: the window keeps them


def test_chat_template_kwargs_reach_the_template(tiny_hf_paths):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    path = tiny_hf_paths["qwen2"]
    tok = AutoTokenizer.from_pretrained(path)
    tok.chat_template = "{% if terse %}T:{% endif %}{% for m in messages %}{{ m['content'] }}{% endfor %}"
    m = HFChatModel.wrap(AutoModelForCausalLM.from_pretrained(path), tok)
    assert tok.decode(m.chat_ids("hi", terse=True)) == "T:hi"
    assert tok.decode(m.chat_ids("hi")) == "hi"
    r = m.chat("hi", temperature=0, max_tokens=2, chat_template_kwargs={"terse": True})
    assert r.usage.prompt_tokens == 4


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"frobnicate": 1}, "refused the generation options.*frobnicate"),
        ({"seed": "seven"}, "seed must be a whole number"),
        ({"chat_template_kwargs": 5}, "chat_template_kwargs must be a dict"),
    ],
)
def test_bad_generation_options_are_one_clear_error(qwen, kwargs, match):
    calls = qwen.usage.calls
    with pytest.raises(ConfigError, match=match):
        qwen.chat("hi", temperature=0, max_tokens=2, **kwargs)
    assert qwen.usage.calls == calls
    assert qwen.chat("hi", temperature=0, max_tokens=2).usage.completion_tokens >= 1  # still usable


def test_unknown_load_option_and_closed_model(tiny_hf_paths):
    path = tiny_hf_paths["qwen2"]
    with pytest.raises(ConfigError, match="does not take n_ctx") as info:
        load_model(f"hf:{path}", n_ctx=512)
    assert "device" in str(info.value) and "dtype" in str(info.value)
    m = load_model(f"hf:{path}")
    m.close()
    with pytest.raises(ConfigError, match="was closed"):
        m.chat("hi", max_tokens=2)


def test_what_on_token_raises_reaches_the_caller_unchanged(qwen):
    raised = ValueError("a UI bug")

    def on_token(piece: str) -> None:
        raise raised

    with pytest.raises(ValueError) as info:
        qwen.chat("hello there", temperature=0, max_tokens=8, on_token=on_token)
    assert info.value is raised  # not re-labelled as "refused the generation options"


def test_sample_next_greedy_nucleus_and_temperature():
    from nbmagic.llm.hf import sample_next

    logits = torch.tensor([[0.0, 3.0, 2.9, -5.0], [4.0, 0.0, 0.0, 0.0]])
    assert sample_next(logits, 0.0).tolist() == [1, 0]
    assert sample_next(logits, None).tolist() == [1, 0]
    gen = torch.Generator().manual_seed(0)
    # a tiny nucleus keeps only the top token, whatever the temperature
    assert all(sample_next(logits, 5.0, top_p=1e-6, generator=gen).tolist() == [1, 0] for _ in range(20))
    # a hot temperature without a nucleus really samples: the runner-up shows up
    draws = {sample_next(logits, 5.0, generator=gen)[0].item() for _ in range(50)}
    assert {1, 2} <= draws


def test_different_seeds_sample_different_replies(qwen):
    texts = {qwen.chat("hi", temperature=1.5, max_tokens=6, seed=s).text for s in range(1, 5)}
    assert len(texts) > 1  # sampling is on, so the seed in the reproducibility test means something
