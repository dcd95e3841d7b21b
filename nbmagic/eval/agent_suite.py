"""The notebook agent's own suite: data-analysis questions with exact answers over small tables.

Five tables are generated from a fixed seed (sales, employees, weather, grades,
inventory; a few hundred rows at most) and each task asks one question about one
of them whose answer is a number, a name or an ordered list. The expected answer
is computed here with pandas from the same rows, so it is exact; a task's check
reads only what the run showed (the closing answer, then the last code cell's
output), never the agent's variables.

How a text is judged (:func:`check`):

* number: some number in the text equals the answer to two decimals (or, from 1000
  up, to the nearest whole number);
* name: the answer is the *first* of the column's possible values to appear, so
  printing the whole table does not pass for an answer;
* ordered list: the first ``k`` distinct possible values to appear are the answer,
  in order.
"""

from __future__ import annotations

import csv
import random
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

PRODUCTS = ["Widget", "Gadget", "Doohickey", "Gizmo", "Sprocket", "Whatsit", "Thingamajig"]
REGIONS = ["North", "South", "East", "West"]
DEPARTMENTS = ["Sales", "Engineering", "Marketing", "Support", "Finance"]
CITIES = ["Oslo", "Lisbon", "Cairo"]
SUBJECTS = ["Math", "Physics", "History", "Art"]
CATEGORIES = ["Tools", "Garden", "Kitchen", "Toys"]
SUPPLIERS = ["Acme", "Globex", "Initech", "Umbrella"]
FIRST = ["Ada", "Ben", "Cleo", "Dan", "Eva", "Finn", "Gia", "Hugo", "Ines", "Jon", "Kai", "Lena", "Milo",
         "Nora", "Omar", "Pia", "Quin", "Rosa", "Sam", "Tara", "Uma", "Vik", "Wes", "Xena", "Yara", "Zoe",
         "Alba", "Bram", "Cyra", "Dov"]
ITEMS = ["hammer", "rake", "whisk", "kite", "wrench", "shovel", "ladle", "yoyo", "pliers", "hoe", "kettle",
         "puzzle", "saw", "hose", "grater", "robot", "drill", "shears", "teapot", "marbles"]


@dataclass(frozen=True)
class Task:
    """One question: the request the agent gets, the answer and how to judge it."""

    id: str
    request: str
    files: tuple[str, ...]
    kind: str  # number | name | list
    expected: Any
    candidates: tuple[str, ...] = ()  # name/list: every value the answer is chosen from


@dataclass
class Tables:
    """The generated tables as row dicts, written as CSV into a task's folder."""

    rows: dict[str, list[dict[str, Any]]] = field(default_factory=dict)

    def write(self, folder: Path, names: tuple[str, ...]) -> None:
        for name in names:
            rows = self.rows[name]
            with open(folder / name, "w", newline="") as fh:
                w = csv.DictWriter(fh, fieldnames=list(rows[0]))
                w.writeheader()
                w.writerows(rows)


def make_tables(seed: int = 10) -> Tables:
    """Deterministic small tables (the same for every run with one seed)."""
    rng = random.Random(seed)
    t = Tables()
    sales = []
    for i in range(120):
        product = PRODUCTS[(i * 5 + rng.randrange(3)) % len(PRODUCTS)]
        units = rng.randint(1, 20) + PRODUCTS.index(product)
        price = round(4.5 + PRODUCTS.index(product) * 3.25 + rng.choice([0, 0.5]), 2)
        sales.append({"order_id": 1001 + i, "date": f"2024-{1 + i % 6:02d}-{1 + (i * 7) % 28:02d}",
                      "product": product, "region": REGIONS[rng.randrange(4)], "units": units,
                      "unit_price": price, "revenue": round(units * price, 2)})
    t.rows["sales.csv"] = sales
    ages = rng.sample(range(22, 65), len(FIRST))  # distinct: "the oldest" has one answer
    t.rows["employees.csv"] = [
        {"name": name, "department": DEPARTMENTS[min(4, int(rng.random() ** 1.6 * 5))],
         "salary": 38000 + 1000 * rng.randint(0, 60), "age": ages[i],
         "years": rng.randint(0, 30), "city": CITIES[min(2, int(rng.random() ** 1.5 * 3))]}
        for i, name in enumerate(FIRST)
    ]
    weather = []
    for d in range(40):
        for c, city in enumerate(CITIES):
            base = (6, 17, 24)[c]
            weather.append({"date": f"2024-03-{1 + d % 28:02d}" if d < 28 else f"2024-04-{d - 27:02d}",
                            "city": city, "temp_c": round(base + rng.uniform(-5, 5), 1),
                            "rain_mm": round(max(0.0, rng.uniform(-6, 8 - 3 * c)), 1)})
    t.rows["weather.csv"] = weather
    t.rows["grades.csv"] = [
        {"student": s, "subject": subj, "score": max(0, min(100, int(rng.gauss(68 - 6 * k + (j % 5) * 3, 14))))}
        for j, s in enumerate(FIRST[:20]) for k, subj in enumerate(SUBJECTS)
    ]
    t.rows["inventory.csv"] = [
        {"item": item, "category": CATEGORIES[min(3, int(rng.random() ** 1.5 * 4))], "stock": rng.randint(2, 80),
         "price": round(rng.uniform(2, 60), 2), "supplier": SUPPLIERS[min(3, int(rng.random() ** 1.4 * 4))]}
        for item in ITEMS
    ]
    return t


# --- tasks ---------------------------------------------------------------------------------------


def _frames(t: Tables) -> dict[str, Any]:
    import pandas as pd

    return {name: pd.DataFrame(rows) for name, rows in t.rows.items()}


def _top(series: Any, ascending: bool = False) -> str:
    """The single extreme label; refuses a tie (an answer must be exact)."""
    s = series.sort_values(ascending=ascending)
    if len(s) > 1 and s.iloc[0] == s.iloc[1]:
        raise ValueError(f"tie for the top of {s.name!r}: {list(s.index[:2])}")
    return str(s.index[0])


def _order(series: Any, k: int, ascending: bool = False) -> list[str]:
    s = series.sort_values(ascending=ascending)
    if len(s) > k and s.iloc[k - 1] == s.iloc[k]:
        raise ValueError(f"tie at place {k} of {s.name!r}")
    if len(set(s.iloc[:k])) < k:
        raise ValueError(f"tie inside the first {k} of {s.name!r}")
    return [str(x) for x in s.index[:k]]


Spec = tuple[str, str, str, str, Callable[[dict[str, Any]], Any], tuple[str, ...]]


def _specs() -> list[Spec]:
    """(id, file, kind, request, answer from the frames, candidates)."""
    months = tuple(f"2024-{m:02d}" for m in range(1, 7))
    return [
        ("sales_total", "sales.csv", "number", "What is the total revenue in sales.csv?",
         lambda f: f["sales.csv"].revenue.sum(), ()),
        ("sales_rows", "sales.csv", "number", "How many orders (rows) does sales.csv have?",
         lambda f: len(f["sales.csv"]), ()),
        ("sales_best_product", "sales.csv", "name", "Which product has the highest total revenue in sales.csv?",
         lambda f: _top(f["sales.csv"].groupby("product").revenue.sum()), tuple(PRODUCTS)),
        ("sales_region_units", "sales.csv", "name", "Which region sold the most units in sales.csv?",
         lambda f: _top(f["sales.csv"].groupby("region").units.sum()), tuple(REGIONS)),
        ("sales_top3", "sales.csv", "list",
         "List the top 3 products by total revenue in sales.csv, highest first.",
         lambda f: _order(f["sales.csv"].groupby("product").revenue.sum(), 3), tuple(PRODUCTS)),
        ("sales_mean_price", "sales.csv", "number", "What is the average unit_price in sales.csv?",
         lambda f: f["sales.csv"].unit_price.mean(), ()),
        ("sales_distinct", "sales.csv", "number", "How many different products appear in sales.csv?",
         lambda f: f["sales.csv"]["product"].nunique(), ()),
        ("sales_best_month", "sales.csv", "name",
         "Which month (as YYYY-MM) had the highest total revenue in sales.csv?",
         lambda f: _top(f["sales.csv"].groupby(f["sales.csv"].date.str[:7]).revenue.sum()), months),
        ("sales_north_units", "sales.csv", "number",
         "What is the total number of units sold in the North region according to sales.csv?",
         lambda f: f["sales.csv"].query("region == 'North'").units.sum(), ()),
        ("sales_fewest_units", "sales.csv", "name", "Which product sold the fewest units in total in sales.csv?",
         lambda f: _top(f["sales.csv"].groupby("product").units.sum(), ascending=True), tuple(PRODUCTS)),
        ("sales_max_order", "sales.csv", "number", "What is the largest revenue of a single order in sales.csv?",
         lambda f: f["sales.csv"].revenue.max(), ()),
        ("emp_mean_salary", "employees.csv", "number", "What is the average salary in employees.csv?",
         lambda f: f["employees.csv"].salary.mean(), ()),
        ("emp_best_dept", "employees.csv", "name",
         "Which department has the highest average salary in employees.csv?",
         lambda f: _top(f["employees.csv"].groupby("department").salary.mean()), tuple(DEPARTMENTS)),
        ("emp_sales_count", "employees.csv", "number",
         "How many employees work in the Sales department according to employees.csv?",
         lambda f: int((f["employees.csv"].department == "Sales").sum()), ()),
        ("emp_oldest", "employees.csv", "name", "Who is the oldest employee in employees.csv?",
         lambda f: _top(f["employees.csv"].set_index("name").age), tuple(FIRST)),
        ("emp_median_age", "employees.csv", "number", "What is the median age in employees.csv?",
         lambda f: f["employees.csv"].age.median(), ()),
        ("emp_max_salary", "employees.csv", "number", "What is the highest salary in employees.csv?",
         lambda f: f["employees.csv"].salary.max(), ()),
        ("emp_dept_sizes", "employees.csv", "list",
         "List the 3 departments with the most employees in employees.csv, largest first.",
         lambda f: _order(f["employees.csv"].department.value_counts(), 3), tuple(DEPARTMENTS)),
        ("emp_city", "employees.csv", "name", "Which city has the most employees in employees.csv?",
         lambda f: _top(f["employees.csv"].city.value_counts()), tuple(CITIES)),
        ("emp_total_years", "employees.csv", "number",
         "What is the total of the years column in employees.csv?",
         lambda f: f["employees.csv"].years.sum(), ()),
        ("wx_max_temp", "weather.csv", "number", "What is the highest temp_c recorded in weather.csv?",
         lambda f: f["weather.csv"].temp_c.max(), ()),
        ("wx_warmest_city", "weather.csv", "name", "Which city has the highest average temp_c in weather.csv?",
         lambda f: _top(f["weather.csv"].groupby("city").temp_c.mean()), tuple(CITIES)),
        ("wx_oslo_rain", "weather.csv", "number", "What is the total rain_mm for Oslo in weather.csv?",
         lambda f: f["weather.csv"].query("city == 'Oslo'").rain_mm.sum(), ()),
        ("wx_rainy_rows", "weather.csv", "number", "On how many rows of weather.csv is rain_mm greater than 0?",
         lambda f: int((f["weather.csv"].rain_mm > 0).sum()), ()),
        ("wx_min_temp", "weather.csv", "number", "What is the lowest temp_c in weather.csv?",
         lambda f: f["weather.csv"].temp_c.min(), ()),
        ("gr_mean", "grades.csv", "number", "What is the average score in grades.csv?",
         lambda f: f["grades.csv"].score.mean(), ()),
        ("gr_best_student", "grades.csv", "name",
         "Which student has the highest average score in grades.csv?",
         lambda f: _top(f["grades.csv"].groupby("student").score.mean()), tuple(FIRST[:20])),
        ("gr_worst_subject", "grades.csv", "name", "Which subject has the lowest average score in grades.csv?",
         lambda f: _top(f["grades.csv"].groupby("subject").score.mean(), ascending=True), tuple(SUBJECTS)),
        ("gr_below_50", "grades.csv", "number", "How many scores in grades.csv are below 50?",
         lambda f: int((f["grades.csv"].score < 50).sum()), ()),
        ("inv_value", "inventory.csv", "number",
         "What is the total stock value (stock times price, summed over all items) in inventory.csv?",
         lambda f: (f["inventory.csv"].stock * f["inventory.csv"].price).sum(), ()),
        ("inv_category", "inventory.csv", "name", "Which category has the most items in inventory.csv?",
         lambda f: _top(f["inventory.csv"].category.value_counts()), tuple(CATEGORIES)),
        ("inv_low3", "inventory.csv", "list",
         "List the 3 items with the lowest stock in inventory.csv, lowest first.",
         lambda f: _order(f["inventory.csv"].set_index("item").stock, 3, ascending=True), tuple(ITEMS)),
        ("inv_below_10", "inventory.csv", "number", "How many items in inventory.csv have a stock below 10?",
         lambda f: int((f["inventory.csv"].stock < 10).sum()), ()),
        ("inv_supplier", "inventory.csv", "name", "Which supplier supplies the most items in inventory.csv?",
         lambda f: _top(f["inventory.csv"].supplier.value_counts()), tuple(SUPPLIERS)),
    ]


def make_tasks(tables: Tables | None = None) -> list[Task]:
    """Every task with its exact answer, computed from the generated tables."""
    tables = tables or make_tables()
    frames = _frames(tables)
    tasks = []
    for tid, file, kind, request, answer, candidates in _specs():
        value = answer(frames)
        if kind == "number":
            value = float(value)
        tasks.append(Task(tid, request, (file,), kind, value, candidates))
    return tasks


# --- judging ----------------------------------------------------------------------------------------

_NUM = re.compile(r"(?<![\w.])-?\d[\d,]*(?:\.\d+)?(?:[eE][-+]?\d+)?")


def _numbers(text: str) -> list[float]:
    out = []
    for raw in _NUM.findall(text):
        try:
            out.append(float(raw.replace(",", "")))
        except ValueError:
            continue
    return out


def _first_positions(text: str, candidates: tuple[str, ...]) -> list[str]:
    """The candidates in the order they first appear in ``text`` (whole words, any case)."""
    found = []
    for c in candidates:
        m = re.search(rf"(?<![\w-]){re.escape(c)}(?![\w-])", text, re.I)
        if m:
            found.append((m.start(), c))
    return [c for _, c in sorted(found)]


def check(task: Task, text: str) -> bool:
    """Does ``text`` (what the run showed) state the task's answer? See the module docs."""
    if not text:
        return False
    if task.kind == "number":
        want = float(task.expected)
        return any(abs(v - want) <= 0.006 or (abs(want) >= 1000 and v == round(want)) for v in _numbers(text))
    order = _first_positions(text, task.candidates)
    if task.kind == "name":
        return bool(order) and order[0] == task.expected
    k = len(task.expected)
    return order[:k] == list(task.expected)


def shown_text(result: Any) -> str:
    """What a run showed at its end: the closing answer, then the last code cell's outputs."""
    parts = [getattr(result, "answer", "") or ""]
    for cell in reversed(getattr(result, "cells", [])):
        if cell.get("cell_type") == "code" and (cell.get("metadata", {}).get("nbmagic", {}).get("status") == "ok"):
            parts.append(_outputs_text(cell.get("outputs", [])))
            break
    return "\n".join(p for p in parts if p)


def _outputs_text(outputs: list[dict[str, Any]]) -> str:
    out = []
    for o in outputs:
        if o.get("output_type") == "stream":
            out.append(str(o.get("text", "")))
        elif o.get("output_type") in ("execute_result", "display_data"):
            out.append(str(o.get("data", {}).get("text/plain", "")))
    return "\n".join(out)
