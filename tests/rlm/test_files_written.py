"""The RLM's REPLs record the files their code writes (in-kernel and the subprocess worker), and
``RLMResult.files`` holds only those, while a thread and another process write beside them."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from nbmagic.rlm.agent import RLM
from nbmagic.testing.openai_server import OpenAICompatServer
from nbmagic.testing.rlm_scripts import ScriptedRoot, code
from tests.fixtures.file_writers import Writers


@pytest.mark.parametrize("environment", ["kernel", "subprocess"])
def test_the_repl_reports_its_own_files_only(environment: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                             openai_server: OpenAICompatServer, models: Any) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "old.txt").write_text("the user's\n")
    root, sub = models
    # the subprocess worker runs in a temporary folder: the user's folder is named in full, and
    # what it writes relative to its own folder (scratch.txt there) is a temporary file, left out
    folder = str(tmp_path)
    script = ScriptedRoot([
        code(f"import os, time\nfolder = {folder!r}\n"
             "import pandas as pd\npd.DataFrame({'a': [1]}).to_csv(os.path.join(folder, 'table.csv'))\n"
             "with open(os.path.join(folder, 'notes.txt'), 'a') as f:\n    f.write('x')\n"
             "open(os.path.join(folder, 'r.tmp'), 'w').write('{}')\n"
             "os.replace(os.path.join(folder, 'r.tmp'), os.path.join(folder, 'result.json'))\n"
             "os.remove(os.path.join(folder, 'old.txt'))\n"
             "open('scratch.txt', 'w').write('scratch')\ntime.sleep(0.3)\nprint('done')"),
        code("import subprocess\nsubprocess.run(['cp', os.path.join(folder, 'table.csv'), "
             "os.path.join(folder, 'copy.csv')], check=True)\ntime.sleep(0.2)\nprint('copied')"),
        code("submit('ok')"),
    ])
    openai_server.set_responder(script)
    writers = Writers(tmp_path)
    try:
        before = writers.state()
        res = RLM(root, sub_model=sub, environment=environment).query("Write the files")
    finally:
        writers.close()
    assert res.answer == "ok" and writers.wrote_since(before) == {"thread", "proc"}
    files = res.files
    # the in-kernel REPL works in the user's folder, so its scratch file is the user's to know about
    scratch = ["scratch.txt"] if environment == "kernel" else []
    assert files.written == ["notes.txt", "result.json", *scratch, "table.csv"]
    assert files.deleted == ["old.txt"] and files.renamed == []
    assert "copy.csv" in files.possibly_written and "copy.csv" not in files.written
    # the turn that ran cp counts what changed in the folder meanwhile as *possibly* written: the
    # writers' screenshots may be among them there, never in the written list
    assert not [p for p in files.written if "shot" in p]
