"""``files_written`` is what the run's cells wrote: the agent end to end (loopback model scripted to
write particular cells), in the user's shell and with ``--kernel new``, while a thread of the
kernel and another process write screenshots into the same folder."""

from __future__ import annotations

from pathlib import Path

import pytest

from nbmagic.agent.core import NotebookAgent
from nbmagic.agent.kernel_executor import KernelExecutor
from nbmagic.testing.agent_scripts import make_cells_responder
from tests.fixtures.file_writers import Writers

SLEEP = "import time\ntime.sleep(0.3)  # the writers write meanwhile\n"

CELLS = [
    # a thread the cell starts is not followed: what it writes is not the cell's (see docs/agent.md)
    ("Start a background writer",
     "import pathlib, threading, time\ndef _bg(pathlib=pathlib, time=time):\n    for i in range(300):\n"
     "        pathlib.Path(f'bg_shot{i % 20:02d}.png').write_bytes(b'z' * (i + 1))\n        time.sleep(0.01)\n"
     "threading.Thread(target=_bg, daemon=True).start()\n" + SLEEP),
    ("Write the table with pandas",
     "import pandas as pd\npd.DataFrame({'a': [1, 2]}).to_csv('table.csv', index=False)\n" + SLEEP),
    ("Save the figure",
     "import matplotlib\nmatplotlib.use('Agg')\nimport matplotlib.pyplot as plt\nfig, ax = plt.subplots()\n"
     "ax.plot([1, 2])\nfig.savefig('plot.png')\nplt.close(fig)\n" + SLEEP),
    ("Write and append the notes",
     "with open('notes.txt', 'w') as f:\n    f.write('a\\n')\nwith open('notes.txt', 'a') as f:\n    f.write('b\\n')\n"
     + SLEEP),
    ("Replace the result atomically",
     "import os\nwith open('result.json.tmp', 'w') as f:\n    f.write('{}')\nos.replace('result.json.tmp', 'result.json')\n"
     + SLEEP),
    ("Delete the old file", "import os\nos.remove('old.txt')\n" + SLEEP),
]
EXPECTED_WRITTEN = ["notes.txt", "plot.png", "result.json", "table.csv"]


@pytest.fixture
def folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "old.txt").write_text("the user's file\n")
    return tmp_path


def _agent(openai_server, openai_model, steps) -> NotebookAgent:
    openai_server.set_responder(make_cells_responder(steps))
    return NotebookAgent(openai_model, planner="single", refine="off", answer=False, load_files=False,
                         cell_timeout=60)


def _check(result, writers: Writers, before) -> None:
    assert result.ok, result.summary
    # the user's thread, another process and the cell's own thread all wrote while the cells ran
    assert writers.wrote_since(before) == {"thread", "proc", "bg"}
    assert result.files_written == EXPECTED_WRITTEN
    assert result.files_deleted == ["old.txt"] and result.files_renamed == []
    assert result.files_possibly_written == [] and result.files.possibly_deleted == []
    assert "Files written: notes.txt, plot.png, result.json, table.csv" in result.summary
    assert "Files deleted: old.txt" in result.summary
    assert "shot" not in result.summary and "Possibly" not in result.summary


def test_in_the_users_shell_only_the_cells_files_are_reported(folder, openai_server, openai_model, ipython_shell):
    writers = Writers(folder)  # a thread of this process (the kernel) and another process
    try:
        before = writers.state()
        result = _agent(openai_server, openai_model, CELLS).run("Write the files", shell=ipython_shell)
    finally:
        writers.close()
    _check(result, writers, before)


def test_with_kernel_new_the_new_kernel_records_its_cells(folder, openai_server, openai_model):
    writers = Writers(folder)
    try:
        before = writers.state()
        with KernelExecutor(cwd=folder) as executor:
            result = _agent(openai_server, openai_model, CELLS).run("Write the files", executor)
    finally:
        writers.close()
    _check(result, writers, before)


SHELL_CELLS = [
    ("Write the table", "with open('table.csv', 'w') as f:\n    f.write('a\\n1\\n')"),
    ("Copy it with the shell", "!cp table.csv copy.csv"),
    ("Copy it with subprocess", "import subprocess\nsubprocess.run(['cp', 'table.csv', 'copy2.csv'], check=True)"),
]


@pytest.mark.parametrize("where", ["shell", "kernel new"])
def test_what_child_processes_write_is_possibly_written_only(where, folder, openai_server, openai_model,
                                                               ipython_shell):
    agent = _agent(openai_server, openai_model, SHELL_CELLS)
    if where == "shell":
        result = agent.run("Copy the table", shell=ipython_shell)
    else:
        with KernelExecutor(cwd=folder) as executor:
            result = agent.run("Copy the table", executor)
    assert result.ok, result.summary
    assert (folder / "copy.csv").exists() and (folder / "copy2.csv").exists()
    assert result.files_written == ["table.csv"]
    assert result.files_possibly_written == ["copy.csv", "copy2.csv"]
    assert ("Possibly written (by a process the cell started, or compiled code): copy.csv, copy2.csv"
            in result.summary)


def test_the_magic_shows_the_files_in_its_summary(nbmagic_shell, openai_server, tmp_path):
    openai_server.set_responder(make_cells_responder([("Save it", "open('out.txt', 'w').write('x')")]))
    writers = Writers(tmp_path)
    try:
        res = nbmagic_shell.run_cell("%%agent --planner none --no-answer\nsave out.txt").result
    finally:
        writers.close()
    assert res is not None and res.status == "done", res
    assert res.raw.files_written == ["out.txt"]
    assert "1 file written" in res.summary and "shot" not in res.summary  # the one-line summary
    assert "Files written: out.txt" in res.message and "shot" not in res.message


def test_the_summary_renderers_show_the_lists(folder, openai_server, openai_model):
    from nbmagic.events import EventRecorder
    from nbmagic.ui.state import RunState
    from nbmagic.ui.summary import summary_html, summary_text

    steps = [("Write and remove", "open('out.txt', 'w').write('x')\nimport os\nos.remove('old.txt')"),
             ("Copy", "import subprocess\nsubprocess.run(['cp', 'out.txt', 'copy.txt'], check=True)")]
    openai_server.set_responder(make_cells_responder(steps))
    events = EventRecorder()
    NotebookAgent(openai_model, planner="single", refine="off", answer=False, load_files=False,
                  on_event=events).run("Write, remove, copy", {})
    state = RunState()
    for e in events.events:
        state.apply(e)
    assert "1 file written · 1 deleted · 1 possibly changed" in summary_text(state)
    page = summary_html(state)
    assert "<summary>files</summary>" in page and "Files deleted: old.txt" in page
    assert "Possibly written (by a process the cell started, or compiled code): copy.txt" in page
