"""The GGUF backend: a tiny GGUF written by the tests, loaded by the real llama-cpp-python.

Random weights make junk text, so the tests assert on structure: types, token counts,
streaming, determinism at temperature 0, stop sequences cut where the text says.
"""

from __future__ import annotations

import asyncio
import shutil
import sys

import pytest

from nbmagic.errors import BackendNotInstalledError, ConfigError, ModelNotFoundError
from nbmagic.llm.base import ChatResult, Usage
from nbmagic.llm.llamacpp import LlamaCppModel
from nbmagic.llm.specs import load_model
from tests.fixtures.gguf_models import CHAT_TEMPLATE

pytestmark = pytest.mark.gguf

PROMPT = "hello there"


@pytest.fixture(scope="module")
def gguf_model(tiny_gguf):
    model = load_model(f"gguf:{tiny_gguf}", n_ctx=512)
    yield model
    model.close()


def test_loads_through_a_spec(gguf_model, tiny_gguf):
    assert isinstance(gguf_model, LlamaCppModel)
    assert gguf_model.backend == "gguf" and gguf_model.name == str(tiny_gguf)
    assert gguf_model.n_ctx == 512
    # this build has no GPU backend, so nothing is offloaded and nothing needed a fallback
    assert gguf_model.device == "cpu" and gguf_model.n_gpu_layers == 0
    assert gguf_model.offload_fallback is None
    assert repr(gguf_model) == f"<LlamaCppModel gguf:{tiny_gguf} on cpu>"
    assert gguf_model.llm.metadata["tokenizer.chat_template"] == CHAT_TEMPLATE


def test_bare_gguf_path_is_a_spec(tiny_gguf):
    model = load_model(str(tiny_gguf), n_ctx=256)
    assert isinstance(model, LlamaCppModel) and model.chat(PROMPT, max_tokens=2).usage.completion_tokens == 2
    model.close()


def test_chat_reply_usage_and_tally(gguf_model):
    before = gguf_model.usage
    result = gguf_model.chat(PROMPT, max_tokens=6, temperature=0)
    assert isinstance(result, ChatResult) and isinstance(result.text, str) and result.text
    assert result.finish_reason == "length"
    assert result.usage.completion_tokens == 6 and result.usage.calls == 1
    # the model's own chat template was applied: the prompt is exactly the rendered template
    rendered = f"<|user|>\n{PROMPT}\n<|assistant|>\n"
    assert result.usage.prompt_tokens == gguf_model.count_tokens(rendered)
    assert gguf_model.usage - before == Usage(result.usage.prompt_tokens, 6, 1)


def test_system_message_is_part_of_the_prompt(gguf_model):
    plain = gguf_model.chat(PROMPT, max_tokens=1, temperature=0)
    with_system = gguf_model.chat(
        [{"role": "system", "content": "be terse"}, {"role": "user", "content": PROMPT}],
        max_tokens=1,
        temperature=0,
    )
    extra = gguf_model.count_tokens("<|system|>\nbe terse\n") - 1  # minus the leading-space token
    assert with_system.usage.prompt_tokens == plain.usage.prompt_tokens + extra


def test_temperature_zero_is_deterministic(gguf_model):
    a = gguf_model.chat(PROMPT, max_tokens=8, temperature=0)
    b = gguf_model.chat(PROMPT, max_tokens=8, temperature=0)
    assert a.text == b.text


def test_seed_and_top_p_reach_the_sampler(gguf_model):
    a = gguf_model.chat(PROMPT, max_tokens=8, temperature=1.5, top_p=0.9, seed=7, top_k=50)
    b = gguf_model.chat(PROMPT, max_tokens=8, temperature=1.5, top_p=0.9, seed=7, top_k=50)
    assert a.text == b.text  # same seed, same sample
    texts = {gguf_model.chat(PROMPT, max_tokens=8, temperature=1.5, seed=s).text for s in range(1, 6)}
    assert len(texts) > 1  # sampling really is on


def test_max_tokens_is_respected(gguf_model):
    for n in (1, 3, 10):
        result = gguf_model.chat(PROMPT, max_tokens=n, temperature=0)
        assert result.usage.completion_tokens == n
        assert gguf_model.count_tokens(result.text) <= n + 1  # +1: a leading-space token


def test_streaming_pieces_concatenate_to_the_text(gguf_model):
    pieces: list[str] = []
    streamed = gguf_model.chat(PROMPT, max_tokens=8, temperature=0, on_token=pieces.append)
    plain = gguf_model.chat(PROMPT, max_tokens=8, temperature=0)
    assert len(pieces) > 1
    assert "".join(pieces) == streamed.text == plain.text
    assert streamed.usage == plain.usage  # counted even though llama.cpp streams no usage
    assert streamed.finish_reason == "length"


def test_stop_sequence_cuts_the_reply(gguf_model):
    full = gguf_model.chat(PROMPT, max_tokens=12, temperature=0).text
    k = len(full) // 2
    stop = full[k : k + 2]
    expected = full[: full.find(stop)]
    result = gguf_model.chat(PROMPT, max_tokens=12, temperature=0, stop=stop)
    assert result.text == expected and result.finish_reason == "stop"
    pieces: list[str] = []
    streamed = gguf_model.chat(PROMPT, max_tokens=12, temperature=0, stop=[stop], on_token=pieces.append)
    assert streamed.text == "".join(pieces) == expected


def test_default_params_apply(tiny_gguf):
    model = load_model(f"gguf:{tiny_gguf}", n_ctx=256, default_params={"max_tokens": 3, "temperature": 0})
    assert model.chat(PROMPT).usage.completion_tokens == 3
    assert model.chat(PROMPT, max_tokens=5).usage.completion_tokens == 5
    model.close()


def test_count_tokens_uses_the_models_tokenizer(gguf_model):
    # the test vocabulary has one token per printable character, plus SentencePiece's leading space
    assert gguf_model.count_tokens("hello world") == len("hello world") + 1
    assert gguf_model.count_tokens("") == 0
    assert gguf_model.count_tokens("é") == 1 + 2  # not in the vocabulary: two byte tokens


def test_achat_and_concurrent_achat(gguf_model):
    sync = gguf_model.chat(PROMPT, max_tokens=5, temperature=0)

    async def go() -> list[ChatResult]:
        return await asyncio.gather(*[gguf_model.achat(PROMPT, max_tokens=5, temperature=0) for _ in range(4)])

    results = asyncio.run(go())
    assert [r.text for r in results] == [sync.text] * 4  # one llama context, safely serialised
    pieces: list[str] = []
    streamed = asyncio.run(gguf_model.achat(PROMPT, max_tokens=5, temperature=0, on_token=pieces.append))
    assert "".join(pieces) == streamed.text == sync.text


# -- errors ---------------------------------------------------------------------------------------


def test_unknown_parameter_is_a_config_error(gguf_model):
    with pytest.raises(ConfigError, match="does not take frobnicate") as info:
        gguf_model.chat(PROMPT, max_tokens=2, frobnicate=1)
    assert "top_k" in str(info.value)  # says what it does take


def test_prompt_longer_than_the_context(tiny_gguf):
    model = load_model(f"gguf:{tiny_gguf}", n_ctx=256)
    with pytest.raises(ConfigError, match="context window of 256 tokens") as info:
        model.chat("x" * 400, max_tokens=2)
    assert "n_ctx" in str(info.value)
    assert model.chat(PROMPT, max_tokens=2).usage.completion_tokens == 2  # still usable
    model.close()


def test_missing_file(tmp_path):
    with pytest.raises(ModelNotFoundError, match="does not exist") as info:
        load_model(f"gguf:{tmp_path / 'nope.gguf'}")
    assert "nope.gguf" in str(info.value)
    with pytest.raises(ModelNotFoundError, match="is a folder"):
        LlamaCppModel(tmp_path)


@pytest.mark.parametrize("kind", ["truncated", "not-gguf", "empty"])
def test_corrupt_file_is_one_clear_error(tmp_path, tiny_gguf, kind):
    path = tmp_path / f"{kind}.gguf"
    data = {"truncated": tiny_gguf.read_bytes()[:4096], "not-gguf": b"<html>404</html>", "empty": b""}[kind]
    path.write_bytes(data)
    with pytest.raises(ConfigError) as info:
        load_model(f"gguf:{path}")
    message = str(info.value)
    assert "could not load" in message and str(path) in message and "corrupt" in message
    assert path.read_bytes() == data  # the file is left as it was


def test_failed_offload_falls_back_and_then_reports(tmp_path, tiny_gguf):
    """Asked to offload, a load that fails is retried on the CPU before giving up."""
    path = tmp_path / "bad.gguf"
    path.write_bytes(tiny_gguf.read_bytes()[:4096])
    with pytest.raises(ConfigError, match="could not load"):
        LlamaCppModel(path, n_gpu_layers=-1)
    model = LlamaCppModel(tiny_gguf, n_gpu_layers=-1, n_ctx=256)  # a CPU build ignores the request
    assert model.chat(PROMPT, max_tokens=2).usage.completion_tokens == 2
    model.close()


def test_bad_n_ctx(tiny_gguf):
    with pytest.raises(ConfigError, match="n_ctx"):
        LlamaCppModel(tiny_gguf, n_ctx=-5)


def test_small_n_ctx_is_raised_to_what_llama_cpp_can_use(tiny_gguf):
    model = LlamaCppModel(tiny_gguf, n_ctx=64)
    assert model.n_ctx == 256
    assert model.chat("x " * 60, max_tokens=4).usage.completion_tokens == 4
    model.close()


def test_load_warnings_do_not_reach_stderr(tiny_gguf, capfd):
    model = LlamaCppModel(tiny_gguf, n_ctx=2048)  # longer than the model's 512: llama.cpp warns
    model.chat(PROMPT, max_tokens=2)
    out, err = capfd.readouterr()
    assert out == "" and err == ""
    assert "n_ctx_train" in model.load_log  # kept, not lost
    model.close()


def test_llama_cpp_not_installed(monkeypatch, tiny_gguf):
    monkeypatch.setitem(sys.modules, "llama_cpp", None)  # what `import llama_cpp` sees when absent
    with pytest.raises(BackendNotInstalledError) as info:
        load_model(f"gguf:{tiny_gguf}")
    assert "pip install 'nbmagic[gguf]'" in str(info.value)


def test_path_with_tilde(tiny_gguf, tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path))
    shutil.copy(tiny_gguf, tmp_path / "m.gguf")
    model = load_model("gguf:~/m.gguf", n_ctx=256)
    assert model.path == tmp_path / "m.gguf"
    model.close()


def test_closed_model_refuses_calls(tiny_gguf):
    model = LlamaCppModel(tiny_gguf, n_ctx=256)
    model.close()
    model.close()  # twice is fine
    with pytest.raises(ConfigError, match="was closed"):
        model.chat(PROMPT, max_tokens=2)


def test_what_on_token_raises_reaches_the_caller_unchanged(gguf_model):
    """A ValueError from the callback is the caller's, not "llama.cpp failed while generating"."""
    raised = ValueError("a UI bug")

    def on_token(piece: str) -> None:
        raise raised

    with pytest.raises(ValueError) as info:
        gguf_model.chat(PROMPT, max_tokens=4, temperature=0, on_token=on_token)
    assert info.value is raised
    assert gguf_model.chat(PROMPT, max_tokens=2, temperature=0).usage.completion_tokens == 2  # still usable


def test_a_misspelt_load_option_is_refused_not_ignored(tiny_gguf):
    with pytest.raises(ConfigError, match="does not take n_gpu_layer") as info:
        load_model(f"gguf:{tiny_gguf}", n_gpu_layer=10)  # llama_cpp.Llama would swallow it
    assert "n_gpu_layers" in str(info.value)
    model = load_model(f"gguf:{tiny_gguf}", n_ctx=256, n_threads=1, n_batch=64)  # real options pass
    assert model.chat(PROMPT, max_tokens=1).usage.completion_tokens == 1
    model.close()


def test_an_unknown_chat_format_is_refused_at_load(tiny_gguf):
    with pytest.raises(ConfigError, match="unknown chat_format 'nope'") as info:
        load_model(f"gguf:{tiny_gguf}", n_ctx=256, chat_format="nope")
    assert "chatml" in str(info.value)  # names the valid ones
    model = load_model(f"gguf:{tiny_gguf}", n_ctx=256, chat_format="chatml")
    own_template = model.count_tokens("<|user|>\nhi\n<|assistant|>\n")
    chatml = model.count_tokens("<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n")
    assert model.chat("hi", max_tokens=1, temperature=0).usage.prompt_tokens >= chatml > own_template + 1
    model.close()


@pytest.mark.parametrize("stream", [False, True])
def test_a_wrongly_typed_sampling_option_is_a_config_error(gguf_model, stream):
    on_token = (lambda _t: None) if stream else None
    with pytest.raises(ConfigError, match="wrong type"):
        gguf_model.chat(PROMPT, max_tokens=2, seed="seven", on_token=on_token)
    assert gguf_model.chat(PROMPT, max_tokens=2).usage.completion_tokens == 2
