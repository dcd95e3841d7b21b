"""The default coder GGUF from the hub: chosen, asked for, downloaded, checked, cached, refused.

Every test talks to a real HTTP server on loopback (:class:`nbmagic.testing.hub_server.HubServer`)
through huggingface_hub's own ``hf_hub_download``: the hub is only swapped through
``HF_ENDPOINT``, as a mirror would be. The served file is a tiny GGUF the tests write (the real
default, ~1.1 GB, is never fetched); ``NBMAGIC_DEFAULT_GGUF`` / ``..._SHA256`` point the default
at it, the way the manual end-to-end check points it at the 0.5B coder.
"""

from __future__ import annotations

import hashlib
import socket

import pytest

from nbmagic.config import settings
from nbmagic.llm import hub_default, hub_download
from nbmagic.llm.specs import resolve_default
from tests.fixtures.hub import FILE, REPO
from tests.fixtures.hub import cached_path as _cached_path


def _never_ask(question: str) -> bool | None:
    raise AssertionError(f"asked although it must not: {question}")


# -- the happy path --------------------------------------------------------------------------------


def test_consent_downloads_once_with_progress_then_the_cache_serves_with_the_hub_gone(hub, hub_env, monkeypatch):
    monkeypatch.setenv("NBMAGIC_ALLOW_DOWNLOAD", "1")
    seen: list[tuple[int, int | None]] = []
    choice = hub_default.hub_choice(acquire=True, ask=_never_ask, on_progress=lambda d, t: seen.append((d, t)))
    assert choice.path == _cached_path(hub_env["cache"])
    assert hashlib.sha256(choice.path.read_bytes()).hexdigest() == hub_env["sha"]
    assert "downloaded from" in choice.reason and "sha256 checked" in choice.reason
    assert seen[-1] == (hub_env["size"], hub_env["size"])  # progress reached the whole file
    assert [g.status for g in hub.gets()] == [200]

    hub.stop()  # the network is gone: the cache serves, nothing is asked or fetched
    hub_download.forget_probes()
    resolution = resolve_default(acquire=True, probe_ollama=False)
    assert resolution.spec == f"gguf:{choice.path}"
    assert "in the huggingface_hub cache" in resolution.reason
    assert resolution.note is None


def test_the_default_progress_is_drawn_by_ui_as_lines_when_headless(hub, hub_env, monkeypatch, capsys):
    monkeypatch.setenv("NBMAGIC_ALLOW_DOWNLOAD", "yes")
    resolution = resolve_default(acquire=True, probe_ollama=False)
    assert resolution.spec == f"gguf:{_cached_path(hub_env['cache'])}"
    err = capsys.readouterr().err
    assert f"nbmagic: downloading {FILE}:" in err and "(100 %" in err


def test_the_loaded_model_is_the_downloaded_file(hub, hub_env, monkeypatch):
    pytest.importorskip("llama_cpp")
    from nbmagic.llm.specs import load_model

    monkeypatch.setenv("NBMAGIC_ALLOW_DOWNLOAD", "1")
    model = load_model(None)
    try:
        assert model.backend == "gguf" and model.name == str(_cached_path(hub_env["cache"]))
    finally:
        model.close()


# -- consent ---------------------------------------------------------------------------------------------


def test_headless_without_consent_keeps_the_embedded_model_and_says_how_to_allow(hub, hub_env, capsys):
    resolution = resolve_default(acquire=True, probe_ollama=False)  # pytest's stdin is no terminal
    assert resolution.spec is not None and "SmolLM2" in resolution.spec
    assert "NBMAGIC_ALLOW_DOWNLOAD=1" in resolution.note and "headless" in resolution.note
    assert hub.gets() == []
    hub_default.say_once(resolution.note)
    hub_default.say_once(resolution.note)
    lines = [line for line in capsys.readouterr().err.splitlines() if line.startswith("nbmagic:")]
    assert len(lines) == 1  # once per process, not once per run


def test_a_no_at_the_prompt_is_remembered_until_downloads_are_allowed(hub, hub_env):
    questions: list[str] = []
    no = hub_default.hub_choice(acquire=True, ask=lambda q: questions.append(q) or False)
    assert no.path is None and "declined" in no.note and "NBMAGIC_ALLOW_DOWNLOAD=1" in no.note
    assert len(questions) == 1 and "[y/N]" in questions[0] and "MB" in questions[0]
    again = hub_default.hub_choice(acquire=True, ask=_never_ask)  # asked once: the "no" stands
    assert again.path is None and "declined before" in again.reason
    assert hub.gets() == []
    settings.set("allow_download", True)  # what %config NbMagic.allow_download = True does
    allowed = hub_default.hub_choice(acquire=True, ask=_never_ask, on_progress=lambda d, t: None)
    assert allowed.path == _cached_path(hub_env["cache"])


def test_a_yes_at_the_prompt_downloads(hub, hub_env):
    choice = hub_default.hub_choice(acquire=True, ask=lambda q: True, on_progress=lambda d, t: None)
    assert choice.path == _cached_path(hub_env["cache"]) and len(hub.gets()) == 1


def test_downloads_off_and_keep_embedded_are_quiet_choices(hub, hub_env, monkeypatch):
    monkeypatch.setenv("NBMAGIC_ALLOW_DOWNLOAD", "0")
    off = resolve_default(acquire=True, probe_ollama=False)
    assert "SmolLM2" in off.spec and off.note is None and "allow_download=False" in off.hub
    monkeypatch.setenv("NBMAGIC_ALLOW_DOWNLOAD", "1")
    assert resolve_default(acquire=True, probe_ollama=False).spec.endswith(FILE)  # now fetched
    monkeypatch.setenv("NBMAGIC_KEEP_EMBEDDED", "true")
    kept = resolve_default(acquire=True, probe_ollama=False)  # cached, but the setting keeps the embedded model
    assert "SmolLM2" in kept.spec and "keep_embedded" in kept.hub
    assert len(hub.gets()) == 1


def test_explicit_choices_win_and_never_touch_the_hub(hub, hub_env, monkeypatch):
    monkeypatch.setenv("NBMAGIC_ALLOW_DOWNLOAD", "1")
    assert resolve_default("gguf:/x.gguf", acquire=True).spec == "gguf:/x.gguf"
    monkeypatch.setenv("NBMAGIC_MODEL", "ollama:qwen2.5:7b")
    assert resolve_default(acquire=True).spec == "ollama:qwen2.5:7b"
    monkeypatch.delenv("NBMAGIC_MODEL")
    settings.set("model", "openai:gpt-4o-mini")
    assert resolve_default(acquire=True).spec == "openai:gpt-4o-mini"
    settings.set("model", None)
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test-not-a-key")
    assert resolve_default(acquire=True).spec.startswith("openai:")
    assert hub.requests == []


def test_reports_never_ask_or_download(hub, hub_env, monkeypatch):
    monkeypatch.setenv("NBMAGIC_ALLOW_DOWNLOAD", "1")
    resolution = resolve_default(probe_ollama=False)  # acquire=False: doctor, %nbmagic status
    assert "SmolLM2" in resolution.spec
    assert "downloaded on first use (allowed by env NBMAGIC_ALLOW_DOWNLOAD)" in resolution.hub
    assert hub.gets() == [] and len([r for r in hub.requests if r.method == "HEAD"]) == 1


# -- offline, unreachable, no disk --------------------------------------------------------------------


def test_offline_uses_the_embedded_model_without_any_request(hub, hub_env, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("NBMAGIC_ALLOW_DOWNLOAD", "1")
    resolution = resolve_default(acquire=True, probe_ollama=False)
    assert "SmolLM2" in resolution.spec
    assert "HF_HUB_OFFLINE=1" in resolution.note and "unset it" in resolution.note
    assert hub.requests == []


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_an_unreachable_hub_is_asked_once_per_process(hub_env, monkeypatch):
    monkeypatch.setenv("HF_ENDPOINT", f"http://127.0.0.1:{_closed_port()}")
    monkeypatch.setenv("NBMAGIC_ALLOW_DOWNLOAD", "1")
    heads: list[str] = []
    real_head = hub_download._head
    monkeypatch.setattr(hub_download, "_head", lambda url, timeout: heads.append(url) or real_head(url, timeout))
    first = resolve_default(acquire=True, probe_ollama=False)
    second = resolve_default(acquire=True, probe_ollama=False)
    assert "SmolLM2" in first.spec and "SmolLM2" in second.spec
    assert "not reachable" in first.note and "Connection refused" in first.note
    assert len(heads) == 1


def test_a_hub_that_never_answers_is_given_up_on_after_the_timeout(hub_env):
    with socket.socket() as silent:  # accepts connections (backlog) but never answers
        silent.bind(("127.0.0.1", 0))
        silent.listen(1)
        endpoint = f"http://127.0.0.1:{silent.getsockname()[1]}"
        reach = hub_download.probe(hub_default.default_target(), endpoint, timeout=0.3)
    assert not reach.ok
    assert "timed out" in reach.detail.lower() or "no answer within 0.3 s" in reach.detail


def test_too_little_disk_space_keeps_the_embedded_model(hub, hub_env, monkeypatch):
    monkeypatch.setenv("NBMAGIC_ALLOW_DOWNLOAD", "1")
    monkeypatch.setattr(hub_download, "free_bytes", lambda folder: 1000)
    choice = hub_default.hub_choice(acquire=True, ask=_never_ask)
    assert choice.path is None and "free" in choice.note and "HF_HOME" in choice.note
    assert hub.gets() == []


# -- interrupted and wrong downloads --------------------------------------------------------------------


def test_a_dropped_transfer_resumes_where_it_stopped(hub, hub_env, monkeypatch):
    monkeypatch.setenv("NBMAGIC_ALLOW_DOWNLOAD", "1")
    # huggingface_hub resumes from its last whole read (10 MB by default): smaller reads, a 0.5 MB file
    import huggingface_hub.constants as hf_constants

    monkeypatch.setattr(hf_constants, "DOWNLOAD_CHUNK_SIZE", 64 * 1024)
    cut = hub_env["size"] // 3
    hub.cut_after(cut, times=1)
    choice = hub_default.hub_choice(acquire=True, ask=_never_ask, on_progress=lambda d, t: None)
    assert choice.path is not None
    assert hashlib.sha256(choice.path.read_bytes()).hexdigest() == hub_env["sha"]
    gets = hub.gets()
    assert [g.status for g in gets] == [200, 206]
    assert gets[1].range is not None and 0 < int(gets[1].range.split("=")[1].rstrip("-")) <= cut


def test_a_download_that_keeps_failing_leaves_nothing_behind(hub, hub_env, monkeypatch):
    monkeypatch.setenv("NBMAGIC_ALLOW_DOWNLOAD", "1")
    hub.cut_after(1000, times=100)
    choice = hub_default.hub_choice(acquire=True, ask=_never_ask, on_progress=lambda d, t: None)
    assert choice.path is None and "failed" in choice.note and "Run again to retry" in choice.note
    blobs = hub_env["cache"] / f"models--{REPO.replace('/', '--')}" / "blobs"
    assert not blobs.exists() or list(blobs.iterdir()) == []


def test_a_stale_partial_from_a_killed_process_is_removed_before_downloading(hub, hub_env, monkeypatch):
    monkeypatch.setenv("NBMAGIC_ALLOW_DOWNLOAD", "1")
    blobs = hub_env["cache"] / f"models--{REPO.replace('/', '--')}" / "blobs"
    blobs.mkdir(parents=True)
    stale = blobs / f"{hub_env['sha']}.deadbeef.incomplete"
    stale.write_bytes(b"x" * 100)
    assert hub_default.hub_choice(acquire=True, ask=_never_ask, on_progress=lambda d, t: None).path is not None
    assert not stale.exists()


def test_wrong_bytes_are_refused_with_one_message_and_removed(hub, hub_env, monkeypatch):
    monkeypatch.setenv("NBMAGIC_ALLOW_DOWNLOAD", "1")
    hub.corrupt()
    resolution = resolve_default(acquire=True, probe_ollama=False)
    assert "SmolLM2" in resolution.spec
    assert resolution.note.startswith(f"Refused {FILE}: its sha256 is ")
    assert "not the pinned" in resolution.note and "\n" not in resolution.note
    assert hub_download.cached_file(hub_default.default_target(), hub_env["cache"]) is None
    blob = hub_env["cache"] / f"models--{REPO.replace('/', '--')}" / "blobs" / hub_env["sha"]
    assert not blob.exists()


def test_a_file_that_is_not_the_pinned_one_is_refused(hub, hub_env, monkeypatch):
    monkeypatch.setenv("NBMAGIC_ALLOW_DOWNLOAD", "1")
    monkeypatch.setenv("NBMAGIC_DEFAULT_GGUF_SHA256", "0" * 64)  # the hub serves its file faithfully
    choice = hub_default.hub_choice(acquire=True, ask=_never_ask, on_progress=lambda d, t: None)
    assert choice.path is None and "not the pinned 0000000000000000" in choice.note


def test_without_a_pin_the_hubs_own_lfs_sha256_is_the_reference(hub, hub_env, monkeypatch):
    monkeypatch.setenv("NBMAGIC_ALLOW_DOWNLOAD", "1")
    monkeypatch.delenv("NBMAGIC_DEFAULT_GGUF_SHA256")
    hub.corrupt()
    refused = hub_default.hub_choice(acquire=True, ask=_never_ask, on_progress=lambda d, t: None)
    assert refused.path is None and "Refused" in refused.note
    hub.corrupt(False)
    ok = hub_default.hub_choice(acquire=True, ask=_never_ask, on_progress=lambda d, t: None)
    assert ok.path is not None and ok.path.resolve().name == hub_env["sha"]


def test_a_cached_file_altered_on_disk_is_not_used(hub, hub_env, monkeypatch):
    monkeypatch.setenv("NBMAGIC_ALLOW_DOWNLOAD", "1")
    path = hub_default.hub_choice(acquire=True, ask=_never_ask, on_progress=lambda d, t: None).path
    with open(path.resolve(), "r+b") as fh:  # same size, new mtime: the verified stamp no longer matches
        fh.seek(100)
        fh.write(b"\xff\xfe")
    hub.stop()
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    choice = hub_default.hub_choice(acquire=True, ask=_never_ask)
    assert choice.path is None and "Refused" in choice.reason
    assert not path.exists()


def test_the_default_target_is_one_constant_and_overridable_only_by_env(monkeypatch):
    monkeypatch.delenv("NBMAGIC_DEFAULT_GGUF", raising=False)
    target = hub_default.default_target()
    assert target is hub_default.CODER_GGUF
    assert (target.repo, target.filename) == ("Qwen/Qwen2.5-Coder-1.5B-Instruct-GGUF",
                                              "qwen2.5-coder-1.5b-instruct-q4_k_m.gguf")
    assert target.sha256 == hub_default.PINNED_SHA256
    monkeypatch.setenv("NBMAGIC_DEFAULT_GGUF", "just-a-file.gguf")
    from nbmagic.errors import ConfigError

    with pytest.raises(ConfigError, match=r"<org>/<repo>/<file\.gguf>"):
        hub_default.default_target()
