"""Multi-part requests over the agent suite's own tables: each part checked exactly.

A request asks for two or three things at once, the way users write them: a
table, a figure, an answer. Every part's expected content is computed here with
pandas from the same CSV the agent reads (the suite's generated tables, and the
README's ``examples/sales_data.csv``), and judged by the part classes of
:mod:`nbmagic.eval.agent_judge`: a table's labels and numbers, a figure's
plotted series (line y-data, bar heights), a stated number or name.

A spec is ``(id, file, request, parts)`` where ``parts`` takes the DataFrame
read from the file and returns the parts.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from nbmagic.eval.agent_judge import FigurePart, Part, StatedPart, TablePart

#: the README's (and ``make run``'s) data file, when the project's examples folder is there
README_DATA = Path(__file__).resolve().parents[3] / "examples" / "sales_data.csv"
README_REQUEST = "Analyze sales_data.csv: the top 5 products by revenue and a monthly revenue trend plot"

MultiSpec = tuple[str, str, str, Callable[[Any], list[Part]]]


def _table(name: str, series: Any, ordered: bool = False) -> TablePart:
    return TablePart(name, tuple(str(i) for i in series.index), tuple(float(v) for v in series.values), ordered)


def _figure(name: str, series: Any, kind: str = "any", ordered: bool = True) -> FigurePart:
    return FigurePart(name, tuple(float(v) for v in series.values), kind, ordered)


def _top(series: Any, k: int, ascending: bool = False) -> Any:
    s = series.sort_values(ascending=ascending)
    if len(s) > k and s.iloc[k - 1] == s.iloc[k]:
        raise ValueError(f"tie at place {k}")
    return s.iloc[:k]


def _best(series: Any, largest: bool = True) -> str:
    s = series.sort_values(ascending=not largest)
    if len(s) > 1 and s.iloc[0] == s.iloc[1]:
        raise ValueError("tie for the top")
    return str(s.index[0])


def _month(d: Any) -> Any:
    return d.date.astype(str).str[:7]


def _readme(d: Any) -> list[Part]:
    return [_table("top 5 products by revenue", _top(d.groupby("product").revenue.sum(), 5), ordered=True),
            _figure("monthly revenue trend plot", d.groupby(_month(d)).revenue.sum(), "line")]


def _readme_regions(d: Any) -> list[Part]:
    return [_table("revenue by region", d.groupby("region").revenue.sum()),
            _figure("bar chart of units by product", d.groupby("product").units.sum(), "bar", ordered=False),
            StatedPart("best month", "name", _best(d.groupby(_month(d)).revenue.sum()),
                       tuple(sorted(set(_month(d)))))]


SPECS: list[MultiSpec] = [
    ("mp_readme", "sales_data.csv", README_REQUEST, _readme),
    ("mp_readme_regions", "sales_data.csv",
     "Analyze sales_data.csv: total revenue by region as a table, a bar chart of total units per product, "
     "and which month (YYYY-MM) had the highest revenue.", _readme_regions),
    ("mp_sales_regions", "sales.csv",
     "Using sales.csv: make a table of total revenue per region, plot it as a bar chart, and tell me which "
     "region has the highest revenue.",
     lambda d: [_table("revenue per region", d.groupby("region").revenue.sum()),
                _figure("bar chart of revenue per region", d.groupby("region").revenue.sum(), "bar", False),
                StatedPart("top region", "name", _best(d.groupby("region").revenue.sum()),
                           ("North", "South", "East", "West"))]),
    ("mp_sales_units", "sales.csv",
     "From sales.csv: a table of total units sold per product sorted from most to least, a line chart of the "
     "total units sold per month, and the total number of units sold overall.",
     lambda d: [_table("units per product, most first", d.groupby("product").units.sum()
                       .sort_values(ascending=False), ordered=True),
                _figure("monthly units line chart", d.groupby(_month(d)).units.sum(), "line"),
                StatedPart("total units", "number", float(d.units.sum()))]),
    ("mp_sales_months", "sales.csv",
     "Analyze sales.csv: show the total revenue per month (YYYY-MM) as a table, plot the revenue per product "
     "as a bar chart, and name the month with the lowest revenue.",
     lambda d: [_table("revenue per month", d.groupby(_month(d)).revenue.sum(), ordered=True),
                _figure("bar chart of revenue per product", d.groupby("product").revenue.sum(), "bar", False),
                StatedPart("lowest month", "name", _best(d.groupby(_month(d)).revenue.sum(), largest=False),
                           tuple(sorted(set(_month(d)))))]),
    ("mp_sales_price", "sales.csv",
     "Using sales.csv: the number of orders per region as a table, a line plot of the average unit_price "
     "per month, and the average revenue per order.",
     lambda d: [_table("orders per region", d.groupby("region").size()),
                _figure("monthly average unit_price", d.groupby(_month(d)).unit_price.mean(), "line"),
                StatedPart("average revenue per order", "number", float(d.revenue.mean()))]),
    ("mp_emp_depts", "employees.csv",
     "From employees.csv: the average salary per department as a table, a bar chart of the number of "
     "employees per department, and the name of the oldest employee.",
     lambda d: [_table("average salary per department", d.groupby("department").salary.mean()),
                _figure("employees per department", d.groupby("department").size(), "bar", False),
                StatedPart("oldest employee", "name", _best(d.set_index("name").age), tuple(d["name"]))]),
    ("mp_emp_age", "employees.csv",
     "Using employees.csv: a table with the number of employees per city, a line plot of salary against "
     "age (ages in increasing order on the x axis), and the total salary of the Engineering department.",
     lambda d: [_table("employees per city", d.groupby("city").size()),
                _figure("salary by age", d.sort_values("age").salary, "line"),
                StatedPart("Engineering salary total", "number",
                           float(d[d.department == "Engineering"].salary.sum()))]),
    ("mp_weather_cities", "weather.csv",
     "With weather.csv: a table of the mean temp_c per city, a line plot of Oslo's temp_c in date order, "
     "and the total rain_mm over all cities.",
     lambda d: [_table("mean temperature per city", d.groupby("city").temp_c.mean()),
                _figure("Oslo temperature line", d[d.city == "Oslo"].sort_values("date").temp_c, "line"),
                StatedPart("total rain", "number", float(d.rain_mm.sum()))]),
    ("mp_weather_rain", "weather.csv",
     "Analyze weather.csv: the maximum rain_mm per city as a table, a bar chart of the number of rows with "
     "rain_mm greater than 0 per city, and the average temp_c in Cairo.",
     lambda d: [_table("max rain per city", d.groupby("city").rain_mm.max()),
                _figure("rainy rows per city", d[d.rain_mm > 0].groupby("city").size(), "bar", False),
                StatedPart("Cairo mean temperature", "number", float(d[d.city == "Cairo"].temp_c.mean()))]),
    ("mp_grades_subjects", "grades.csv",
     "For grades.csv: the average score per subject as a table, a bar chart of the average score per "
     "student, and the median of all scores.",
     lambda d: [_table("average score per subject", d.groupby("subject").score.mean()),
                _figure("average score per student", d.groupby("student").score.mean(), "bar", False),
                StatedPart("median score", "number", float(d.score.median()))]),
    ("mp_grades_top", "grades.csv",
     "From grades.csv: the top 5 students by average score (highest first) as a table, a line plot of the "
     "Math scores in the order the rows appear in the file, and the name of the subject with the highest "
     "average score.",
     lambda d: [_table("top 5 students", _top(d.groupby("student").score.mean(), 5), ordered=True),
                _figure("Math scores line", d[d.subject == "Math"].score, "line"),
                StatedPart("best subject", "name", _best(d.groupby("subject").score.mean()),
                           tuple(sorted(set(d.subject))))]),
    ("mp_inventory", "inventory.csv",
     "Using inventory.csv: the total stock per category as a table, a bar chart of the stock value "
     "(stock times price) per supplier, and the item with the highest price.",
     lambda d: [_table("stock per category", d.groupby("category").stock.sum()),
                _figure("stock value per supplier", (d.stock * d.price).groupby(d.supplier).sum(), "bar", False),
                StatedPart("priciest item", "name", _best(d.set_index("item").price), tuple(d["item"]))]),
]
