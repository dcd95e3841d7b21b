"""NextInputSink in a real IPython shell: one code cell, markdown as comments, a hint."""

from __future__ import annotations

from nbmagic.notebook.cells import code_cell, markdown_cell, stream
from nbmagic.notebook.sinks import NEXT_INPUT_HINT, NextInputSink, as_python, choose_sink


def test_all_cells_become_one_next_input(ipython_shell, capsys):
    ipython_shell.rl_next_input = None
    sink = choose_sink(ipython_shell)  # plain IPython: no kernel, no extension
    assert isinstance(sink, NextInputSink)

    sink.deliver(markdown_cell("## Load the data\n\nRead *sales.csv*."))
    assert ipython_shell.rl_next_input == "# ## Load the data\n#\n# Read *sales.csv*.\n"
    sink.deliver(code_cell("import pandas as pd\ndf = pd.read_csv('sales.csv')",
                           outputs=[stream("stdout", "ignored\n")]))
    sink.deliver(code_cell("   \n"))  # empty code cells are skipped
    sink.deliver(code_cell("df.describe()"))
    expected = (
        "# ## Load the data\n#\n# Read *sales.csv*.\n\n"
        "import pandas as pd\ndf = pd.read_csv('sales.csv')\n\n"
        "df.describe()\n"
    )
    assert ipython_shell.rl_next_input == expected == sink.text
    compile(sink.text, "<next-input>", "exec")  # still valid Python

    summary = sink.close()
    assert summary == "4 cells placed in one new code cell below (3 code, 1 markdown)."
    printed = capsys.readouterr().out
    assert NEXT_INPUT_HINT in printed
    assert "JupyterLab 4" in printed and "-o FILE.ipynb" in printed


def test_empty_run_sets_nothing_and_prints_no_hint(ipython_shell, capsys):
    ipython_shell.rl_next_input = None
    sink = NextInputSink(ipython_shell)
    assert sink.close() == "No cells were produced."
    assert ipython_shell.rl_next_input is None
    assert capsys.readouterr().out == ""


def test_as_python_handles_list_sources():
    cells = [{"cell_type": "markdown", "source": ["a\n", "b"], "metadata": {}}]
    assert as_python(cells) == "# a\n# b\n"
    assert as_python([]) == ""
