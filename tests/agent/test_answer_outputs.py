"""The answer cell written from the outputs says what a figure shows, from its description."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
import pandas as pd

from nbmagic.agent.answer import figure_summary, from_outputs
from nbmagic.execution.figures import describe_figure


def test_a_line_and_a_bar_figure_are_summarised_from_their_real_descriptions():
    monthly = pd.Series([34541.0, 40100.0, 59696.0], index=pd.date_range("2024-01-01", periods=3, freq="MS"),
                        name="revenue")
    fig, ax = plt.subplots()
    monthly.plot(ax=ax)
    line = describe_figure(fig)
    plt.close(fig)
    fig, ax = plt.subplots()
    pd.Series({"North": 6214.25, "West": 9094.5}).plot(kind="bar", ax=ax)
    bars = describe_figure(fig)
    plt.close(fig)
    text = from_outputs([f"Step 2 (Monthly revenue trend plot) output:\n[figure] {line}",
                         f"Step 3 (Bar chart of revenue per region) output:\n[figure] {bars}"])
    first, second = text.split("\n\n")
    assert first.startswith("**Monthly revenue trend plot**: revenue (line, 3 points): 34541 at 2024-01")
    assert "59696 at 2024-03" in first and first.endswith("(figure above)")
    assert "2 bars: North=6214.25, West=9094.5" in second
    assert figure_summary("[figure] Figure (1 axes)") == "(see the figure above)"
