"""Parsing model text into plans and cells: every shape models are known to produce."""

from __future__ import annotations

import pytest

from nbmagic.agent.codegen import parse_cell, parse_plan
from nbmagic.agent.core import assigned_names
from nbmagic.errors import MalformedOutputError


def test_numbered_plan_with_preamble_bold_and_subbullets():
    text = """Sure, here is the plan:

1. **Load the data** from sales.csv
   - check the columns
2) Compute the top 5 products:
Step 3: Plot the monthly trend

That's it!"""
    assert parse_plan(text) == ["Load the data from sales.csv", "Compute the top 5 products", "Plot the monthly trend"]


def test_bulleted_plan_and_think_block_and_cap():
    text = "<think>1. not a step</think>\n- one\n* two\n- three\n- four"
    assert parse_plan(text, max_steps=3) == ["one", "two", "three"]


def test_prose_is_not_a_plan():
    assert parse_plan("I will analyse the data carefully.") is None
    assert parse_plan("") is None


def test_cell_markdown_and_python_block():
    d = parse_cell("We load it.\n\n```python\nimport pandas as pd\ndf = pd.DataFrame()\n```\nDone.")
    assert d.code == "import pandas as pd\ndf = pd.DataFrame()"
    assert d.markdown == "We load it.\n\nDone."


def test_cell_several_blocks_joined_and_other_languages_ignored():
    d = parse_cell("Explanation: x\n```bash\npip install x\n```\n```py\na = 1\n```\ntext\n```\nb = a + 1\n```")
    assert d.code == "a = 1\n\nb = a + 1"
    assert d.markdown.startswith("x")


def test_unterminated_fence_and_bare_code():
    assert parse_cell("Here:\n```python\nx = 1\nprint(x)").code == "x = 1\nprint(x)"
    assert parse_cell("x = 1\nprint(x)").code == "x = 1\nprint(x)"


def test_no_code_raises_malformed():
    with pytest.raises(MalformedOutputError):
        parse_cell("I would group by product and sum revenue.")


def test_assigned_names():
    code = "import numpy as np\nfrom os import path\nx, (y, z) = 1, (2, 3)\nfor i in range(2): pass\ndef f(): q = 1\nclass C: pass\nw += 1"
    assert assigned_names(code) == {"np", "path", "x", "y", "z", "i", "f", "C", "w"}
