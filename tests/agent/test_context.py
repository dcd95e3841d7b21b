"""What the model is told: user variables only, tables described by structure, hard caps."""

from __future__ import annotations

import os

import numpy as np
import pandas as pd

from nbmagic.agent import context as ctx
from nbmagic.testing.agent_scripts import write_sales_csv


def test_namespace_summary_describes_tables_and_skips_internals():
    ns = {
        "df": pd.DataFrame({"product": ["a", "b"], "revenue": [1.5, 2.0]}),
        "arr": np.zeros((3, 4), dtype="float32"),
        "n": 42,
        "os": os,  # a module
        "_private": 1,
        "In": [""],
        "Out": {},
        "get_ipython": lambda: None,
        "exit": None,
    }
    text = ctx.summarize_namespace(ns, ctx.ContextLimits())
    assert "df: DataFrame 2 rows × 2 columns; columns: product (object), revenue (float64)" in text.replace("(str)", "(object)")
    assert "arr: ndarray shape (3, 4) dtype float32" in text
    assert "n: int = 42" in text
    for hidden in ("os", "_private", "In:", "Out:", "get_ipython", "exit"):
        assert hidden not in text
    assert text.index("df:") < text.index("n:")  # tables first


def test_namespace_summary_is_capped():
    ns = {f"v{i}": "x" * 5000 for i in range(100)}
    limits = ctx.ContextLimits(max_vars=10, namespace_chars=2000, var_chars=300)
    text = ctx.summarize_namespace(ns, limits)
    assert len(text) < 2400
    assert "more variables" in text


def test_files_named_in_request_csv_header_and_rows(tmp_path):
    write_sales_csv(tmp_path / "sales.csv", months=2)
    (tmp_path / "notes.txt").write_text("line one\nline two\n")
    (tmp_path / "blob.bin").write_bytes(b"\x00\x01" * 10)
    c = ctx.gather("Analyze sales.csv with 'notes.txt' and blob.bin and missing.csv", {}, base_dir=tmp_path)
    assert "sales.csv: CSV, 28 data rows, 1147 bytes; columns: date, product, region, units, unit_price, revenue" in c.files
    assert "units (int64), unit_price (float64)" in c.files and "dtypes: date (" in c.files
    assert "region values: North, South" in c.files
    assert "2024-01-" in c.files
    assert "notes.txt: text file" in c.files and "line one" in c.files
    assert "blob.bin: binary file, 20 bytes" in c.files
    assert "missing.csv" not in c.files
    rendered = c.render()
    assert "Files named in the request" in rendered and "Data files in the working folder: notes.txt, sales.csv" in rendered


def test_recent_cells_skip_agent_magic_and_total_cap():
    ns = {"In": ["", "x = 1", "y = x + 1", "%%agent do things", ""]}
    c = ctx.gather("do", ns, base_dir=".", limits=ctx.ContextLimits(history_cells=2, total_chars=500))
    assert c.history == "x = 1\n---\ny = x + 1"
    big = ctx.gather("do", {f"v{i}": list(range(50)) for i in range(50)}, limits=ctx.ContextLimits(total_chars=500))
    assert len(big.render()) <= 500


def test_big_containers_are_described_from_their_first_items():
    calls = []

    class Item:
        def __repr__(self):
            calls.append(1)
            return "item"

    ns = {"items": [Item() for _ in range(5000)], "blob": "x" * 1_000_000}
    text = ctx.summarize_namespace(ns, ctx.ContextLimits())
    assert "items: list of 5000 items: [item, item," in text
    assert "blob: str of length 1000000: 'xxx" in text
    assert len(calls) <= 20  # not one repr per element of the whole list
