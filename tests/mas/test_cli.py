"""``python -m nbmagic train-links`` as a real subprocess on a tiny dataset and tiny HF models."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest


def _run(args: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    root = Path(__file__).resolve().parents[2]
    env["PYTHONPATH"] = str(root) + os.pathsep + env.get("PYTHONPATH", "")
    return subprocess.run(
        [sys.executable, "-m", "nbmagic", "train-links", *args],
        capture_output=True, text=True, cwd=cwd, env=env, timeout=240,
    )


@pytest.fixture
def dataset(tmp_path: Path) -> Path:
    rows = [
        {"question": "What is 2+2?", "answer": "4", "planner": "Add two and two."},
        {"question": "Capital of France?", "answer": "Paris"},
        {"question": "Colour of the sky?", "answer": "blue"},
    ]
    path = tmp_path / "train.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_train_links_cli_trains_prints_losses_and_writes_a_checkpoint(tiny_hf_paths, dataset, tmp_path):
    q, lm = tiny_hf_paths["qwen2"], tiny_hf_paths["llama"]
    out = tmp_path / "links"
    args = [
        "--data", str(dataset), "--agent", f"planner=hf:{q}", "--agent", f"solver=hf:{lm}",
        "--rounds", "2", "--latent-steps", "2", "--epochs", "3", "--batch-size", "2", "--lr", "1e-2",
        "--inner-steps", "2", "--out", str(out),
    ]
    proc = _run(args, tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    steps = re.findall(r"^step (\d+)/(\d+) loss ([0-9.]+)", proc.stdout, re.MULTILINE)
    assert [(int(s), int(t)) for s, t, _ in steps] == [(1, 6), (2, 6), (3, 6), (4, 6), (5, 6), (6, 6)]
    assert len(re.findall(r"^inner (planner|solver) step \d/2 loss", proc.stdout, re.MULTILINE)) == 4
    assert "wrote" in proc.stdout
    manifest = json.loads((out / "manifest.json").read_text())
    assert (out / "links.safetensors").stat().st_size > 0
    assert [a["hidden_size"] for a in manifest["agents"]] == [64, 96]
    assert [a["role"] for a in manifest["agents"]] == ["planner", "solver"]
    assert manifest["training"]["outer_steps"] == 6 and manifest["rounds"] == 2

    # the checkpoint loads into a system with the same agents
    from nbmagic.mas.system import Agent, RecursiveMAS

    mas = RecursiveMAS([Agent(f"hf:{q}", "planner"), Agent(f"hf:{lm}", "solver")], rounds=2, latent_steps=2,
                       max_new_tokens=2, links=out)
    assert mas.links is not None and mas.run("hi").mode == "latent"

    # never overwrites without --force
    again = _run(args, tmp_path)
    assert again.returncode == 2 and "already holds" in again.stderr and "Traceback" not in again.stderr

    # continue training from the checkpoint (in-process: the same entry point, no second interpreter)
    from nbmagic.cli import main

    out2 = tmp_path / "links2"
    more = [a if a != str(out) else str(out2) for a in args]
    more[more.index("--epochs") + 1] = "1"
    assert main(["train-links", *more, "--init", str(out), "--inner-steps", "0"]) == 0
    m1 = json.loads((out2 / "manifest.json").read_text())
    assert m1["training"]["outer_steps"] == 2 and m1["training"]["first_loss"] < manifest["training"]["first_loss"]


def test_train_links_cli_ctrl_c_writes_the_links_trained_so_far(tiny_hf_paths, dataset, tmp_path):
    import signal

    out = tmp_path / "links"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    env["PYTHONPATH"] = str(Path(__file__).resolve().parents[2]) + os.pathsep + env.get("PYTHONPATH", "")
    args = ["--data", str(dataset), "--model", f"hf:{tiny_hf_paths['qwen2']}", "--pattern", "distillation",
            "--rounds", "1", "--latent-steps", "1", "--epochs", "100000", "--batch-size", "1", "--out", str(out)]
    proc = subprocess.Popen([sys.executable, "-m", "nbmagic", "train-links", *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, cwd=tmp_path, env=env)
    try:
        for line in proc.stdout:  # type: ignore[union-attr]
            if line.startswith("step 2/"):
                proc.send_signal(signal.SIGINT)
                break
        _, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130 and "Traceback" not in err and "wrote the links trained so far" in err
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["training"]["interrupted"] is True and manifest["training"]["outer_steps"] >= 2


@pytest.mark.parametrize(
    ("extra", "needle"),
    [
        (["--data", "missing.jsonl", "--model", "hf:x"], "No dataset"),
        (["--data", "{data}"], "Name the models"),
        (["--data", "{data}", "--agent", "planner"], "ROLE=SPEC"),
        (["--data", "{data}", "--model", "openai-compat:m@http://127.0.0.1:9/v1"], "mode='latent'"),
        (["--data", "{bad}", "--model", "hf:x"], "needs string fields"),
        (["--data", "{data}", "--model", "hf:{qwen}", "--pattern", "deliberation", "--rounds", "0"], "rounds"),
        (["--data", "{data}", "--model", "hf:x", "--max-steps", "0"], "max_steps"),
        (["--data", "{data}", "--model", "hf:x", "--grad-clip", "-1"], "grad_clip"),
    ],
)
def test_train_links_cli_bad_input_is_one_line(dataset, tmp_path, tiny_hf_paths, capsys, extra, needle):
    from nbmagic.cli import main

    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"question": "q"}\n')
    subs = {"{data}": str(dataset), "{bad}": str(bad), "{qwen}": str(tiny_hf_paths["qwen2"])}
    args = []
    for a in extra:
        for k, v in subs.items():
            a = a.replace(k, v)
        args.append(a)
    rc = main(["train-links", *args, "--out", str(tmp_path / "o")])
    err = capsys.readouterr().err
    last = err.strip().splitlines()[-1]
    assert rc == 2 and needle in last and last.startswith("nbmagic: ") and "Traceback" not in err
    assert not (tmp_path / "o").exists()


def test_train_links_cli_refuses_a_file_as_out_before_training(dataset, tmp_path, capsys):
    from nbmagic.cli import main

    out = tmp_path / "notes.txt"
    out.write_text("keep me")
    for target in (out, out / "links"):
        rc = main(["train-links", "--data", str(dataset), "--model", "hf:x", "--out", str(target)])
        assert rc == 2 and "is a file" in capsys.readouterr().err and out.read_text() == "keep me"


def test_trained_links_that_cannot_be_written_go_to_a_temporary_folder(tiny_hf_paths, tmp_path):
    from nbmagic.errors import ConfigError
    from nbmagic.mas.checkpoint import read_manifest
    from nbmagic.mas.cli import _save
    from nbmagic.mas.system import Agent, RecursiveMAS
    from nbmagic.mas.train import new_links

    q = f"hf:{tiny_hf_paths['qwen2']}"
    mas = RecursiveMAS([Agent(q, "expert"), Agent(q, "learner")], pattern="distillation", rounds=1, latent_steps=1)
    blocker = tmp_path / "blocker"
    blocker.write_text("a file where the folder should go")  # appeared after the up-front check
    with pytest.raises(ConfigError, match="saved to") as err:
        _save(mas, new_links(mas), blocker / "links", False, {"note": "kept"})
    fallback = Path(err.value.message.rsplit("saved to ", 1)[1].removesuffix(" instead."))
    try:
        manifest, weights = read_manifest(fallback)
        assert manifest["training"] == {"note": "kept"} and weights.exists()
    finally:
        import shutil

        shutil.rmtree(fallback, ignore_errors=True)


def test_train_links_module_is_light_to_import():
    code = (
        "import sys, nbmagic.mas.cli as c, argparse; p = argparse.ArgumentParser(); c.add_arguments(p); "
        "print(sorted(m for m in ('torch', 'transformers', 'openai') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.stdout.strip() == "[]", out.stderr
