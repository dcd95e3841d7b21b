"""FileSink: nbformat-valid, atomic after each cell, never overwriting without force."""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path

import nbformat
import pytest

from nbmagic.errors import ConfigError, NotebookExistsError
from nbmagic.notebook.cells import code_cell, markdown_cell, stream
from nbmagic.notebook.files import notebook_dir, resolve_output_path
from nbmagic.notebook.sinks import CollectSink, FileSink, choose_sink


def _read(path: Path):
    nb = nbformat.read(path, as_version=4)
    nbformat.validate(nb)
    return nb


def test_file_is_valid_and_complete_after_each_cell(tmp_path):
    sink = FileSink(tmp_path / "out.ipynb", metadata={"nbmagic": {"request": "demo"}})
    assert not sink.path.exists()  # nothing written before the first cell
    sink.deliver(markdown_cell("# Step 1"))
    assert [c.cell_type for c in _read(sink.path).cells] == ["markdown"]
    sink.deliver(code_cell("print(1)", outputs=[stream("stdout", "1\n")]))
    nb = _read(sink.path)
    assert [c.cell_type for c in nb.cells] == ["markdown", "code"]
    assert nb.cells[1].outputs[0]["text"] == "1\n"
    assert nb.metadata["nbmagic"] == {"request": "demo"}
    summary = sink.close()
    assert str(sink.path) in summary and "2 cells" in summary
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.ipynb"]  # no temp files left


def test_existing_file_is_refused_before_any_work_and_kept(tmp_path):
    target = tmp_path / "analysis.ipynb"
    target.write_text("precious")
    with pytest.raises(NotebookExistsError) as info:
        FileSink(target)
    assert "already exists" in info.value.message and "force" in info.value.message
    with pytest.raises(NotebookExistsError):
        choose_sink(None, output=str(target))
    assert target.read_text() == "precious"


def test_force_replaces_and_keeps_permissions(tmp_path):
    target = tmp_path / "analysis.ipynb"
    target.write_text("old")
    os.chmod(target, 0o640)
    sink = FileSink(target, force=True)
    sink.deliver(markdown_cell("new"))
    sink.close()
    assert _read(target).cells[0].source == "new"
    assert target.stat().st_mode & 0o777 == 0o640


def test_file_appearing_after_the_check_is_not_clobbered(tmp_path):
    target = tmp_path / "race.ipynb"
    sink = FileSink(target)
    target.write_text("someone else's")
    with pytest.raises(NotebookExistsError) as info:
        sink.deliver(markdown_cell("mine"))
    assert target.read_text() == "someone else's"
    assert [c.source for c in info.value.partial] == ["mine"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["race.ipynb"]


def test_readers_never_see_a_partial_file(tmp_path):
    """A reader polling the file during many rewrites always parses a valid notebook."""
    sink = FileSink(tmp_path / "big.ipynb")
    sink.deliver(markdown_cell("start"))
    stop, seen, bad = threading.Event(), [], []

    def reader() -> None:
        while not stop.is_set():
            try:
                seen.append(len(_read(sink.path).cells))
            except Exception as exc:  # a torn write would land here
                bad.append(repr(exc))

    thread = threading.Thread(target=reader)
    thread.start()
    try:
        for i in range(40):
            sink.deliver(code_cell(f"x = {i}\n" + "# padding\n" * 200))
            time.sleep(0.002)
    finally:
        stop.set()
        thread.join()
    assert bad == []
    assert seen == sorted(seen) and seen[-1] <= 41
    assert len(_read(sink.path).cells) == 41


def test_unwritable_location_is_a_clear_error_with_partial(tmp_path):
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("file")
    sink = FileSink(blocker / "out.ipynb")
    with pytest.raises(ConfigError, match="Cannot write") as info:
        sink.deliver(markdown_cell("kept"))
    assert [c.source for c in info.value.partial] == ["kept"]
    with pytest.raises(ConfigError, match="folder"):
        FileSink(tmp_path, force=True)


def test_empty_run_still_writes_a_valid_notebook(tmp_path):
    sink = FileSink(tmp_path / "empty")  # suffix added
    assert sink.path.name == "empty.ipynb"
    assert "empty notebook" in sink.close()
    assert _read(sink.path).cells == []


def test_relative_paths_resolve_against_the_notebook_folder(tmp_path, monkeypatch):
    nbdir = tmp_path / "project"
    nbdir.mkdir()
    elsewhere = tmp_path / "cwd"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    monkeypatch.delenv("JPY_SESSION_NAME", raising=False)

    assert resolve_output_path("a.ipynb") == elsewhere / "a.ipynb"  # nothing known: cwd
    monkeypatch.setenv("JPY_SESSION_NAME", str(nbdir / "Untitled.ipynb"))
    assert notebook_dir() == nbdir
    assert resolve_output_path("sub/a.ipynb") == nbdir / "sub" / "a.ipynb"
    assert resolve_output_path(tmp_path / "abs.ipynb") == tmp_path / "abs.ipynb"
    assert resolve_output_path("b.ipynb", base_dir=elsewhere) == elsewhere / "b.ipynb"
    # a relative session name (server-root relative) cannot be resolved: cwd wins
    monkeypatch.setenv("JPY_SESSION_NAME", "Untitled.ipynb")
    assert resolve_output_path("c.ipynb") == elsewhere / "c.ipynb"

    class Shell:  # VS Code's variable beats the environment
        user_ns = {"__vsc_ipynb_file__": str(nbdir / "v.ipynb")}

    sink = choose_sink(Shell(), output="made/here.ipynb")
    assert isinstance(sink, FileSink)
    assert sink.path == nbdir / "made" / "here.ipynb"
    sink.deliver(markdown_cell("x"))
    assert (nbdir / "made" / "here.ipynb").exists()
    with pytest.raises(ConfigError, match="empty"):
        resolve_output_path("  ")


def test_a_non_notebook_name_is_refused_even_with_force(tmp_path):
    data = tmp_path / "sales.csv"
    data.write_text("a,b\n1,2\n")
    with pytest.raises(ConfigError, match=r"\.ipynb"):
        choose_sink(None, output=str(data), force=True)
    assert data.read_text() == "a,b\n1,2\n"
    assert FileSink(tmp_path / "Report.IPYNB").path.name == "Report.IPYNB"


def test_collect_sink_keeps_validated_cells():
    sink = CollectSink()
    sink.deliver(code_cell("1"))
    assert sink.cells[0].cell_type == "code"
    assert sink.close() == "1 cell collected (1 code, 0 markdown)."


def test_abort_with_no_cells_leaves_no_file_so_a_rerun_is_not_refused(tmp_path):
    sink = FileSink(tmp_path / "out.ipynb")
    assert "Nothing was written" in sink.abort()
    assert not sink.path.exists()
    FileSink(tmp_path / "out.ipynb")  # the rerun's sink is not refused


def test_abort_keeps_delivered_cells(tmp_path):
    sink = FileSink(tmp_path / "out.ipynb")
    sink.deliver(markdown_cell("# kept"))
    sink.abort()
    assert [c.source for c in _read(sink.path).cells] == ["# kept"]


def test_with_block_that_raises_aborts(tmp_path):
    with pytest.raises(RuntimeError), FileSink(tmp_path / "out.ipynb") as sink:
        raise RuntimeError("the run failed before any cell")
    assert not sink.path.exists()
    with FileSink(tmp_path / "ok.ipynb") as sink:
        pass
    assert sink.path.exists()  # a run that finished with no cells still writes its (empty) notebook
