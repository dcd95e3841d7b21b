"""Which files a generated cell wrote: the audit hook and the run's ledger, on the real file system,
with another thread and another process writing into the same folder meanwhile."""

from __future__ import annotations

import os
import shutil
import sqlite3
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest

from nbmagic.execution.file_audit import CellAudit, CellRecord
from nbmagic.execution.file_ledger import FileChanges, FileLedger
from tests.fixtures.file_writers import Writers


@pytest.fixture
def folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "user.csv").write_text("a\n1\n")
    (tmp_path / "old.txt").write_text("the user's\n")
    (tmp_path / "keep.txt").write_text("keep\n")
    return tmp_path


@pytest.fixture
def writers(folder: Path) -> Iterator[Writers]:
    w = Writers(folder)
    yield w
    w.close()


def _busy(seconds: float = 0.3) -> None:
    """Let the writers write while the cell runs."""
    time.sleep(seconds)


def test_only_the_cells_own_writes_count_while_a_thread_and_a_process_write_beside_it(
        folder: Path, writers: Writers) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ledger = FileLedger(folder)
    before = writers.state()
    with ledger.cell("pandas"):
        pd.DataFrame({"a": [1, 2]}).to_csv("table.csv", index=False)
        _busy()
    with ledger.cell("matplotlib"):
        fig, ax = plt.subplots()
        ax.plot([1, 2])
        fig.savefig("plot.png")
        plt.close(fig)
        _busy()
    with ledger.cell("open"):
        with open("notes.txt", "w") as f:
            f.write("a\n")
        with open("notes.txt", "a") as f:
            f.write("b\n")
        with open("user.csv", "r+") as f:  # r+ changes a file the user had
            f.write("b")
        with open("keep.txt") as f:  # a read is no write
            f.read()
        _busy()
    with ledger.cell("replace"):
        Path("result.json.tmp").write_text("{}")
        os.replace("result.json.tmp", "result.json")
        _busy()
    with ledger.cell("delete"):
        os.remove("old.txt")
        _busy()
    changes = ledger.changes()
    assert writers.wrote_since(before) == {"thread", "proc"}  # both wrote during the run
    assert changes == FileChanges(written=["notes.txt", "plot.png", "result.json", "table.csv", "user.csv"],
                                  deleted=["old.txt"])
    text = "\n".join(changes.lines())
    assert "shot" not in text and "Files deleted: old.txt" in text


def test_renames_moves_and_scratch_files(folder: Path) -> None:
    (folder / "data").mkdir()
    (folder / "data" / "a.csv").write_text("1")
    (folder / "data" / "b.csv").write_text("2")
    (folder / "moved.txt").write_text("m")
    ledger = FileLedger(folder)
    with ledger.cell():
        os.rename("keep.txt", "kept.txt")  # a file the user had: renamed
        shutil.move("kept.txt", "kept2.txt")  # … twice: one rename old -> newest
        Path("scratch.tmp").write_text("x")
        os.remove("scratch.tmp")  # the cell's own scratch file: neither written nor deleted
        shutil.copyfile("user.csv", "copy.csv")
        Path("moved.txt").rename("renamed_and_changed.txt")
        with open("renamed_and_changed.txt", "a") as f:
            f.write("+")
    with ledger.cell():
        shutil.rmtree("data")
        try:
            os.remove("never_there.txt")  # fails: nothing is reported
        except FileNotFoundError:
            pass
    changes = ledger.changes()
    assert changes.written == ["copy.csv", "renamed_and_changed.txt"]
    assert changes.renamed == [("keep.txt", "kept2.txt"), ("moved.txt", "renamed_and_changed.txt")]
    assert changes.deleted == [os.path.join("data", "a.csv"), os.path.join("data", "b.csv")]
    assert not changes.possibly_written and not changes.possibly_deleted


def test_paths_are_relative_inside_absolute_outside_and_temp_files_left_out(folder: Path,
                                                                             tmp_path_factory: pytest.TempPathFactory) -> None:
    outside = tmp_path_factory.mktemp("elsewhere")
    home = Path.home() / f".nbmagic-test-outside-{os.getpid()}"
    (folder / "sub").mkdir()
    ledger = FileLedger(folder)
    try:
        with ledger.cell():
            os.chdir("sub")
            Path("inner.txt").write_text("relative to the folder after chdir")
            os.chdir(folder)
            with tempfile.NamedTemporaryFile("w", delete=False, dir=tempfile.gettempdir()) as f:
                f.write("scratch")
            (outside / "x.txt").write_text("in the temporary folder: left out")
            home.write_text("outside the working folder: absolute")
        changes = ledger.changes()
    finally:
        home.unlink(missing_ok=True)
        os.unlink(f.name)
    assert changes.written == [str(home), os.path.join("sub", "inner.txt")]


def test_child_processes_and_compiled_code_are_possibly_written_never_written(folder: Path) -> None:
    ledger = FileLedger(folder)
    with ledger.cell("!cp user.csv copy.csv"):
        subprocess.run(["cp", "user.csv", "copy.csv"], check=True)
        subprocess.run(["rm", "old.txt"], check=True)
        Path("own.txt").write_text("own")
    with ledger.cell("con = sqlite3.connect('db.sqlite')"):
        con = sqlite3.connect("db.sqlite")  # SQLite writes in C: the folder comparison sees it
        con.execute("create table t (a)")
        con.commit()
        con.close()
    changes = ledger.changes()
    assert changes.written == ["own.txt"]
    assert changes.possibly_written == ["copy.csv", "db.sqlite"]
    assert changes.possibly_deleted == ["old.txt"] and not changes.deleted
    assert any(line.startswith("Possibly written") and "copy.csv" in line for line in changes.lines())


def test_a_process_writing_during_a_cell_that_starts_none_is_not_even_possibly_written(
        folder: Path, writers: Writers) -> None:
    ledger = FileLedger(folder)
    with ledger.cell("x = 1"):
        _busy(0.5)
    assert not ledger.changes()


def test_other_threads_are_not_recorded_and_nested_cells_count_for_the_outer_one(folder: Path) -> None:
    def other() -> None:
        Path("other_thread.txt").write_text("not the cell's")

    with CellAudit(folder) as outer:
        t = threading.Thread(target=other)
        t.start()
        t.join()
        with CellAudit(folder) as inner:  # a child RLM's turn inside a helper call
            Path("inner.txt").write_text("x")
        Path("outer.txt").write_text("y")
    assert inner.record is not None and [Path(p).name for _, p, _ in inner.record.ops] == ["inner.txt"]
    assert outer.record is not None and sorted(Path(p).name for _, p, _ in outer.record.ops) == ["inner.txt",
                                                                                               "outer.txt"]
    Path("after.txt").write_text("no cell is recorded now")
    assert CellRecord.from_json(outer.record.to_json()) == outer.record


def test_a_cell_that_raises_still_has_its_files_recorded(folder: Path) -> None:
    ledger = FileLedger(folder)
    with pytest.raises(ZeroDivisionError), ledger.cell():
        Path("half.txt").write_text("written before the error")
        1 / 0  # noqa: B018
    assert ledger.changes().written == ["half.txt"]


def test_skip_leaves_out_the_notebook_the_run_writes(folder: Path) -> None:
    ledger = FileLedger(folder)
    with ledger.cell():
        Path("analysis.ipynb").write_text("{}")
        Path("out.txt").write_text("x")
    assert ledger.changes(skip=[str(folder / "analysis.ipynb")]).written == ["out.txt"]
