"""The loopback hub's protocol, and what doctor, ``%nbmagic status``, the settings and the CLI say.

The download itself is covered in test_hub_default.py; these tests check the surfaces around
it: the server speaks the headers huggingface_hub reads, reports explain the choice, the new
settings parse like the others, and ``python -m nbmagic doctor --check`` downloads once through
the loopback hub in a real subprocess and then runs from the cache with no hub at all.
"""

from __future__ import annotations

import hashlib
import io
import os
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from nbmagic.config import settings
from nbmagic.errors import ConfigError
from nbmagic.llm import doctor
from nbmagic.testing.hub_server import COMMIT, HubServer
from nbmagic.ui.download import _Lines, ask_yes_no, make_view
from tests.fixtures.hub import FILE, REPO
from tests.fixtures.hub import cached_path as _cached_path

ROOT = Path(__file__).resolve().parents[2]


# -- the loopback hub speaks the hub's download protocol ---------------------------------------------


def test_head_and_ranged_get_carry_the_headers_huggingface_hub_reads(tmp_path):
    data = bytes(range(256)) * 40
    (tmp_path / "f.bin").write_bytes(data)
    with HubServer() as srv:
        entry = srv.add("org/repo", "dir/f.bin", tmp_path / "f.bin")
        url = f"{srv.endpoint}/org/repo/resolve/main/dir/f.bin"
        with urllib.request.urlopen(urllib.request.Request(url, method="HEAD")) as resp:
            assert resp.status == 200
            assert resp.headers["X-Repo-Commit"] == COMMIT
            assert resp.headers["X-Linked-Etag"] == f'"{hashlib.sha256(data).hexdigest()}"' == f'"{entry.sha256}"'
            assert resp.headers["X-Linked-Size"] == resp.headers["Content-Length"] == str(len(data))
            assert resp.headers["Accept-Ranges"] == "bytes"
        with urllib.request.urlopen(urllib.request.Request(url, headers={"Range": "bytes=1000-"})) as resp:
            assert resp.status == 206
            assert resp.headers["Content-Range"] == f"bytes 1000-{len(data) - 1}/{len(data)}"
            assert resp.read() == data[1000:]
        with urllib.request.urlopen(f"{srv.endpoint}/org/repo/resolve/{COMMIT}/dir/f.bin") as resp:
            assert resp.read() == data  # by commit as well as by branch
        with pytest.raises(urllib.error.HTTPError) as err:
            urllib.request.urlopen(f"{srv.endpoint}/org/repo/resolve/main/missing.bin")
        assert err.value.code == 404 and err.value.headers["X-Error-Code"] == "EntryNotFound"
        assert [(r.method, r.status) for r in srv.requests] == [("HEAD", 200), ("GET", 206), ("GET", 200),
                                                                  ("GET", 404)]


def test_corrupt_serves_other_bytes_of_the_same_size_under_the_same_sha(tmp_path):
    data = os.urandom(5000)
    (tmp_path / "f.bin").write_bytes(data)
    with HubServer() as srv:
        srv.add("org/repo", "f.bin", tmp_path / "f.bin")
        srv.corrupt()
        with urllib.request.urlopen(f"{srv.endpoint}/org/repo/resolve/main/f.bin") as resp:
            served = resp.read()
            assert resp.headers["X-Linked-Etag"].strip('"') == hashlib.sha256(data).hexdigest()
    assert len(served) == len(data) and served != data


# -- reports ------------------------------------------------------------------------------------------------


def test_doctor_says_the_hub_default_is_cached_and_chosen(hub, hub_env, monkeypatch):
    monkeypatch.setenv("NBMAGIC_ALLOW_DOWNLOAD", "1")
    before = doctor.collect()["default_model"]
    assert "SmolLM2" in before["spec"]
    assert before["hub"]["cached"] is None and before["hub"]["reachable"] is True
    text = doctor.format_report(doctor.collect())
    assert f"hub default: {REPO}/{FILE}@main" in text and "download: allowed (env NBMAGIC_ALLOW_DOWNLOAD)" in text

    from nbmagic.llm.specs import resolve_default

    resolve_default(acquire=True, probe_ollama=False)  # what the first run does
    after = doctor.collect()
    assert after["default_model"]["spec"] == f"gguf:{_cached_path(hub_env['cache'])}"
    assert "in the huggingface_hub cache (sha256 checked)" in after["default_model"]["reason"]
    text = doctor.format_report(after)
    assert f"cached: {_cached_path(hub_env['cache'])}" in text and f"sha256: {hub_env['sha']}" in text


def test_doctor_offline_names_the_variable(hub_env, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    text = doctor.format_report(doctor.collect())
    assert "hub offline: HF_HUB_OFFLINE=1" in text and "tried: tiny-coder-q4.gguf is not cached and HF_HUB_OFFLINE=1" in text


def test_nbmagic_status_says_why_the_embedded_model_serves(ipython_shell, hub, hub_env, capsys):
    ipython_shell.run_line_magic("load_ext", "nbmagic")
    ipython_shell.run_line_magic("nbmagic", "status")
    out = capsys.readouterr().out
    assert "SmolLM2" in out.split("model:")[1].splitlines()[0]
    assert "hub:      tiny-coder-q4.gguf" in out and "asked for first" in out
    assert hub.gets() == []  # a report never downloads


def test_nbmagic_status_names_the_hub_model_once_it_is_cached(ipython_shell, hub, hub_env, capsys):
    ipython_shell.run_line_magic("load_ext", "nbmagic")
    ipython_shell.run_cell("%config NbMagic.allow_download = True")
    assert settings.get("allow_download").value is True and settings.get("allow_download").source == "%config"
    from nbmagic.llm.specs import resolve_default

    resolve_default(acquire=True, probe_ollama=False)
    capsys.readouterr()
    ipython_shell.run_line_magic("nbmagic", "status")
    out = capsys.readouterr().out
    assert f"model:    gguf:{_cached_path(hub_env['cache'])}" in out and "hub:" not in out


# -- settings --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("raw", "value"), [("1", True), ("yes", True), ("ON", True), ("0", False), ("no", False)])
def test_boolean_settings_read_the_usual_spellings(monkeypatch, raw, value):
    monkeypatch.setenv("NBMAGIC_ALLOW_DOWNLOAD", raw)
    assert settings.get("allow_download").value is value


def test_a_bad_boolean_is_shown_ignored_or_refused_with_one_message(monkeypatch):
    monkeypatch.setenv("NBMAGIC_KEEP_EMBEDDED", "maybe")
    kept = settings.get("keep_embedded")
    assert kept.value is False and "ignored: not True or False" in kept.source
    with pytest.raises(ConfigError, match="allow_download must be True or False"):
        settings.set("allow_download", "perhaps")
    assert settings.get("allow_download").value is None  # unset: ask


# -- ui --------------------------------------------------------------------------------------------------------


def test_nobody_to_ask_headless_and_lines_every_tenth():
    assert ask_yes_no("download? [y/N] ", stdin=io.StringIO("y\n")) is None  # not a terminal, not a kernel
    out = io.StringIO()
    view = make_view("model.gguf", stream=out)
    assert isinstance(view, _Lines)
    for done in range(0, 1001, 50):
        view.update(done, 1000)
    lines = out.getvalue().splitlines()
    assert len(lines) == 11 and lines[-1].startswith("nbmagic: downloading model.gguf: 0/0 MB (100 %")


# -- the CLI in a subprocess: download once, then no hub at all ------------------------------------------------------


def test_doctor_check_downloads_through_the_hub_once_then_runs_from_the_cache(hub, hub_env, tmp_path):
    pytest.importorskip("llama_cpp")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("NBMAGIC_ALLOW", "HF_HUB_OFFLINE"))}
    env.update(PYTHONPATH=str(ROOT), NBMAGIC_ALLOW_DOWNLOAD="1")
    cmd = [sys.executable, "-m", "nbmagic", "doctor", "--check"]
    first = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=240)
    assert first.returncode == 0, first.stdout + first.stderr
    assert f"ok: gguf:{_cached_path(hub_env['cache'])}" in first.stdout
    assert f"nbmagic: downloading {FILE}:" in first.stderr and "(100 %" in first.stderr
    assert len(hub.gets()) == 1

    hub.stop()
    env.update(HF_HUB_OFFLINE="1")
    second = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=240)
    assert second.returncode == 0, second.stdout + second.stderr
    assert f"ok: gguf:{_cached_path(hub_env['cache'])}" in second.stdout
    assert "downloading" not in second.stderr


def test_the_notebook_bar_follows_the_download_and_ends_green():
    view = make_view("coder.gguf", kind="widgets")
    view.update(0, 2_000_000)
    view.update(2_000_000, 2_000_000)
    view.close()
    assert view.bar.value == 1.0 and view.bar.bar_style == "success"
    assert "coder.gguf" in view.text.value and "2 / 2 MB" in view.text.value


# -- a notebook kernel: the question in Jupyter's input box, the bar as a widget ------------------------------------


def _execute_answering(kc, code: str, answer: str, timeout: float = 120) -> tuple[list[str], list[dict]]:
    """Run ``code`` as JupyterLab would (a cell id, stdin allowed); answer its input() with ``answer``."""
    import queue
    import time

    msg = kc.session.msg("execute_request", {"code": code, "silent": False, "store_history": False,
                                             "user_expressions": {}, "allow_stdin": True, "stop_on_error": True},
                         metadata={"cellId": "cell-1"})
    kc.shell_channel.send(msg)
    prompts: list[str] = []
    iopub: list[dict] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            req = kc.get_stdin_msg(timeout=0.05)
            prompts.append(req["content"]["prompt"])
            kc.input(answer)
        except queue.Empty:
            pass
        try:
            m = kc.get_iopub_msg(timeout=0.05)
        except queue.Empty:
            continue
        if m["parent_header"].get("msg_id") != msg["header"]["msg_id"]:
            continue
        iopub.append(m)
        if m["msg_type"] == "status" and m["content"]["execution_state"] == "idle":
            return prompts, iopub
    raise AssertionError(f"the kernel did not finish: {[m['msg_type'] for m in iopub]}")


CHOOSE = "from nbmagic.llm import hub_default\nprint('PATH', hub_default.hub_choice(acquire=True).path)"


def test_in_a_notebook_the_question_is_asked_and_the_bar_is_a_widget(hub, hub_env, kernel):
    prompts, iopub = _execute_answering(kernel.client, CHOOSE, "y")
    assert len(prompts) == 1 and "[y/N]" in prompts[0]
    text = "".join(m["content"].get("text", "") for m in iopub if m["msg_type"] == "stream")
    assert f"PATH {_cached_path(hub_env['cache'])}" in text
    models = [m["content"]["data"]["state"].get("_model_name") for m in iopub if m["msg_type"] == "comm_open"]
    assert "FloatProgressModel" in models
    assert len(hub.gets()) == 1


def test_in_a_notebook_a_no_keeps_the_embedded_model(hub, hub_env, kernel):
    prompts, iopub = _execute_answering(kernel.client, CHOOSE, "n")
    text = "".join(m["content"].get("text", "") for m in iopub if m["msg_type"] == "stream")
    assert len(prompts) == 1 and "PATH None" in text and hub.gets() == []
