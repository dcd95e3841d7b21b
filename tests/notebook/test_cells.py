"""The cell model: nbformat v4 cells with outputs and provenance metadata."""

from __future__ import annotations

import base64

import nbformat
import pytest

from nbmagic.notebook.cells import (
    cell_text,
    code_cell,
    display_data,
    error,
    execute_result,
    markdown_cell,
    new_notebook,
    png,
    provenance,
    stream,
    validate_cell,
    validate_notebook,
)

PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 16


def test_code_cell_with_every_output_kind_validates_and_round_trips():
    cell = code_cell(
        "print('hi')\n1 + 1",
        outputs=[
            stream("stdout", "hi\n"),
            stream("stderr", "careful\n"),
            png(PNG, width=40),
            display_data({"text/html": "<b>x</b>", "text/plain": "x"}),
            execute_result({"text/plain": "2"}, execution_count=4),
            error("ZeroDivisionError", "division by zero", ["Traceback...", "ZeroDivisionError"]),
        ],
        execution_count=4,
        metadata=provenance(step=2, attempts=1, model="test-model", mode="text"),
    )
    node = validate_cell(cell)
    assert [o["output_type"] for o in node.outputs] == [
        "stream", "stream", "display_data", "display_data", "execute_result", "error",
    ]  # fmt: skip
    assert base64.b64decode(node.outputs[2]["data"]["image/png"]) == PNG
    assert node.outputs[2]["metadata"] == {"image/png": {"width": 40}}
    assert node.metadata["nbmagic"] == {"step": 2, "attempts": 1, "model": "test-model", "mode": "text"}

    nb = new_notebook([markdown_cell("# Title"), cell])
    text = nbformat.writes(nb)
    back = nbformat.reads(text, as_version=4)
    nbformat.validate(back)
    assert back.cells[1].outputs[4]["data"]["text/plain"] == "2"
    assert back.metadata.kernelspec.name == "python3"


def test_provenance_drops_unknown_fields_and_keeps_extra():
    assert provenance(step=1) == {"nbmagic": {"step": 1}}
    assert provenance(mode="latent", request="plot x") == {
        "nbmagic": {"mode": "latent", "request": "plot x"}
    }


def test_validation_rejects_malformed_cells_with_a_reason():
    bad = dict(code_cell("x = 1"))
    bad["outputs"] = [{"output_type": "stream", "name": "stdout"}]  # no text
    with pytest.raises(ValueError, match="not a valid nbformat v4 cell"):
        validate_cell(bad)
    with pytest.raises(ValueError, match="stdout"):
        stream("stdlog", "x")
    with pytest.raises(TypeError):
        markdown_cell(["not", "a", "string"])  # type: ignore[arg-type]
    nb = new_notebook([markdown_cell("ok")])
    nb["cells"][0]["cell_type"] = "banana"
    with pytest.raises(ValueError, match="notebook"):
        validate_notebook(nb)


def test_cells_without_ids_get_one_and_list_sources_join():
    cell = {"cell_type": "markdown", "metadata": {}, "source": ["# a\n", "b"]}
    node = validate_cell(cell)
    assert node["id"]
    assert cell_text(node) == "# a\nb"
