"""The pandas idioms offered for a part run on the loaded table and compute what the part asks."""

from __future__ import annotations

import re

import pandas as pd
import pytest

from nbmagic.agent.hints import hints_note, pattern_hints


@pytest.fixture
def sales() -> pd.DataFrame:
    days = pd.date_range("2024-01-03", periods=120, freq="3D")
    products = ["lamp", "desk", "chair", "kettle", "mug", "rug", "sofa"]
    return pd.DataFrame({
        "order_date": days,
        "product": [products[i % 7] for i in range(120)],
        "region": [("North", "South", "East")[i % 3] for i in range(120)],
        "units": [(i * 7) % 13 + 1 for i in range(120)],
        "unit_price": [(i * 5) % 17 + 3.5 for i in range(120)],
    }).assign(revenue=lambda d: d.units * d.unit_price)


def _run(idiom: str, sales: pd.DataFrame):
    code = re.search(r"`([^`]+)`", idiom).group(1)
    ns = {"pd": pd, "sales": sales}
    if code.startswith("monthly = "):
        exec(code, ns)
        return ns["monthly"]
    return eval(code, ns)


def test_top_n_is_grouped_and_uses_the_tables_own_column_names(sales):
    (idiom,) = pattern_hints("the top 3 products by revenue", {"sales": sales})
    got = _run(idiom, sales)
    assert list(got.index) == list(sales.groupby("product").revenue.sum().nlargest(3).index)
    assert got.index.is_unique
    (low,) = pattern_hints("the lowest 2 regions by average unit price", {"sales": sales})
    assert list(_run(low, sales).index) == list(sales.groupby("region").unit_price.mean().nsmallest(2).index)


def test_a_monthly_part_gets_a_resample_on_a_date_index_of_the_named_column(sales):
    hints = pattern_hints("a line chart of the total units sold per month", {"sales": sales})
    monthly = _run(hints[0], sales)
    expected = sales.groupby(sales.order_date.dt.to_period("M")).units.sum()
    assert list(monthly.values) == list(expected.values)
    assert "kind='line'" in hints[-1]


def test_per_group_tables_counts_and_averages(sales):
    (per,) = pattern_hints("total revenue by region as a table", {"sales": sales})
    assert _run(per, sales).to_dict() == sales.groupby("region").revenue.sum().to_dict()
    (count,) = pattern_hints("the number of orders per region", {"sales": sales})
    assert _run(count, sales).to_dict() == sales.groupby("region").size().to_dict()
    (mean,) = pattern_hints("average unit_price per product", {"sales": sales})
    assert _run(mean, sales).to_dict() == sales.groupby("product").unit_price.mean().to_dict()


def test_no_hint_without_a_table_or_for_questions_the_idioms_do_not_cover(sales):
    assert pattern_hints("the top 5 products by revenue", {}) == []
    assert pattern_hints("How many rows have revenue above 100?", {"sales": sales}) == []
    assert hints_note("Is the correlation between units and price positive?", {"sales": sales}) == ""
    assert hints_note("the top 2 products by units", {"sales": sales}).startswith("Pandas idioms")


def test_a_part_that_points_back_gets_the_idiom_of_the_part_it_points_to(sales):
    note = hints_note("plot it as a bar chart", {"sales": sales}, ["make a table of total revenue per region"])
    assert "`sales.groupby('region')['revenue'].sum()`" in note and "kind='bar'" in note
    assert hints_note("plot it as a bar chart", {"sales": sales}) == ""
