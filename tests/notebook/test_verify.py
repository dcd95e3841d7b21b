"""verify_notebook: a fresh kernel runs the file top to bottom (nbclient)."""

from __future__ import annotations

import signal

import pytest

from nbmagic.errors import ConfigError
from nbmagic.notebook.cells import code_cell, markdown_cell
from nbmagic.notebook.sinks import FileSink, verify_notebook


def _write(path, cells):
    sink = FileSink(path)
    for cell in cells:
        sink.deliver(cell)
    sink.close()
    return sink.path


def test_good_notebook_runs_in_its_own_folder(tmp_path):
    (tmp_path / "data.csv").write_text("a,b\n1,2\n")
    path = _write(tmp_path / "good.ipynb", [
        markdown_cell("# Check"),
        code_cell("rows = open('data.csv').read().splitlines()"),  # relative to the notebook
        code_cell("print(len(rows))"),
    ])
    before = path.read_bytes()
    result = verify_notebook(path, timeout=60)
    assert result.ok, result.error
    assert (result.failed_cell, result.error) == (None, None)
    assert result.seconds > 0
    assert result.notebook.cells[2].outputs[0]["text"] == "2\n"
    assert "Verified" in result.summary()
    assert path.read_bytes() == before  # the file itself is untouched


def test_first_failing_cell_is_reported(tmp_path):
    path = _write(tmp_path / "bad.ipynb", [
        code_cell("x = 1"),
        markdown_cell("then"),
        code_cell("y = x / 0"),
        code_cell("print('never')"),
    ])
    result = verify_notebook(path, timeout=60)
    assert not result.ok
    assert result.failed_cell == 2
    assert result.error == "ZeroDivisionError: division by zero"
    assert str(result) == "Verification failed at cell 2: ZeroDivisionError: division by zero"


def test_runaway_cell_times_out(tmp_path):
    path = _write(tmp_path / "slow.ipynb", [code_cell("import time\ntime.sleep(60)")])
    result = verify_notebook(path, timeout=1)
    assert not result.ok and result.failed_cell == 0
    assert result.error == "the cell did not finish within 1 s"


def test_unreadable_inputs_are_clear(tmp_path):
    with pytest.raises(ConfigError, match="no such file"):
        verify_notebook(tmp_path / "missing.ipynb")
    (tmp_path / "junk.ipynb").write_text("{not json")
    with pytest.raises(ConfigError, match="not a readable notebook"):
        verify_notebook(tmp_path / "junk.ipynb")
    path = _write(tmp_path / "k.ipynb", [code_cell("1")])
    before = signal.getsignal(signal.SIGINT)
    result = verify_notebook(path, kernel_name="no-such-kernel-xyz")
    assert not result.ok and "no-such-kernel-xyz" in result.error
    assert signal.getsignal(signal.SIGINT) is before  # Ctrl-C still works in the caller afterwards


def test_verify_from_inside_a_running_kernel_keeps_the_cell_output_clean(kernel, tmp_path):
    """The magics call it inside ipykernel (an event loop is running there)."""
    path = _write(tmp_path / "inner.ipynb", [code_cell("print(40 + 2)")])
    seen: list[str] = []

    def hook(msg):
        if msg["msg_type"] == "stream":
            seen.append(msg["content"]["text"])

    reply = kernel.client.execute_interactive(
        "from nbmagic.notebook.verify import verify_notebook\n"
        f"r = verify_notebook({str(path)!r})\n"
        "print(r.ok, r.notebook.cells[0].outputs[0]['text'].strip())",
        timeout=120,
        output_hook=hook,
    )
    assert reply["content"]["status"] == "ok"
    assert "".join(seen) == "True 42\n"  # nothing from the inner kernel's start-up
