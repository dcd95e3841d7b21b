"""Context resolution and the bounded summaries the root model sees."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from nbmagic.errors import ConfigError
from nbmagic.rlm.context import resolve_contexts, summarize, summarize_all


def test_str_naming_a_variable_binds_it_under_both_names() -> None:
    ns = {"sales": [1, 2]}
    ctx = resolve_contexts("sales", ns)
    assert ctx["sales"] is ns["sales"] and ctx["context"] is ns["sales"]
    assert "same object as `sales`" in summarize_all(ctx)


def test_missing_variable_names_close_matches() -> None:
    with pytest.raises(ConfigError) as info:
        resolve_contexts("sale", {"sales": 1, "sails": 2, "other": 3})
    assert "'sale'" in info.value.message and "sales" in info.value.message
    assert "other" not in info.value.message


def test_plain_text_and_paths(tmp_path: Path) -> None:
    assert resolve_contexts("some long text, not a name", {}) == {"context": "some long text, not a name"}
    f = tmp_path / "notes.txt"
    f.write_text("hello file")
    ctx = resolve_contexts(str(f), None)
    assert ctx == {"context": f}
    text = summarize("context", f)
    assert "notes.txt" in text and "10 B" in text and "hello file" in text


def test_named_contexts_from_a_dict() -> None:
    a, b = "x" * 10, [1, 2]
    ctx = resolve_contexts({"docs": a, "nums": b}, None)
    assert ctx["docs"] is a and ctx["nums"] is b and ctx["context"] == {"docs": a, "nums": b}
    summary = summarize_all(ctx)
    assert "`docs`: str" in summary and "`nums`: list" in summary and "dict of the 2 contexts" in summary
    # a dict whose keys are not names is one context
    assert resolve_contexts({1: "a"}, None) == {"context": {1: "a"}}


def test_summaries_show_structure() -> None:
    df = pd.DataFrame({"city": ["Oslo", "Lima"], "qty": [3, 4]})
    s = summarize("df", df)
    assert "2 rows × 2 columns" in s and f"city: {df.dtypes['city']}" in s and "qty: int64" in s and "Oslo" in s
    s = summarize("d", {f"k{i}": i for i in range(100)})
    assert "100 keys" in s and "'k0': int" in s and "+75 more keys" in s
    s = summarize("rows", ["abc", "de", 3])
    assert "3 items" in s and "str ×2" in s and "int ×1" in s


def test_summary_size_is_flat_in_the_context_size() -> None:
    small = summarize("context", "word " * 200)
    big = summarize("context", "word " * 2_000_000)
    assert abs(len(big) - len(small)) < 40
    lst = summarize("context", ["line"] * 2_000_000)
    assert len(lst) < 600


def test_folder_summary_lists_files_with_sizes(tmp_path: Path) -> None:
    (tmp_path / "a.txt").write_text("x" * 2048)
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "b.csv").write_text("1,2\n")
    s = summarize("context", tmp_path)
    assert "2 files" in s and "a.txt (2.0 KB)" in s and "b.csv (4 B)" in s


def test_folder_summary_stops_walking_at_the_cap(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from nbmagic.rlm import context

    monkeypatch.setattr(context, "MAX_WALK", 5)
    for d in ("a", "b"):
        (tmp_path / d).mkdir()
        for i in range(4):
            (tmp_path / d / f"f{i}.txt").write_text("x")
    s = summarize("context", tmp_path)
    assert "5+ files" in s and "a/f0.txt" in s and "b/f0.txt" in s and "b/f1.txt" not in s
