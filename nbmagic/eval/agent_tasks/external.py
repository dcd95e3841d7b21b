"""External questions: written the way outside data-analysis benchmarks write them.

Each question names a CSV file, asks one thing, states its constraints (method,
filters, rounding) and the exact line to print (``Answer: <value>``). The tables
are not the project's: they are data sets that packages ship offline
(vega_datasets' local files, statsmodels' datasets, scikit-learn's bundled
ones), written to CSV in the task's folder so the agent reads a file as a user
would. The expected answer is computed here from the CSV as written and read
back with ``pandas.read_csv`` (never a number typed in), so it is exact for the
installed data.

THIS FILE IS FROZEN. Its sha256 (printed by ``python -m nbmagic.eval agent
--suite external`` and recorded in docs/agent.md) identifies the question set;
it was committed before any agent ran on it, and tuning the agent must not
change it. Judging lives in :mod:`nbmagic.eval.agent_judge`, not here.

A question is ``(id, source, dataset, file, kind, decimals, question, answer)``:
``kind`` is ``number`` (compared at ``decimals`` places), ``text`` (compared
case-insensitively) or ``list`` (comma-separated, in order); ``answer`` takes the
DataFrame read from the written CSV.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

ExternalSpec = tuple[str, str, str, str, str, int, str, Callable[[Any], Any]]

FORMAT_NUMBER = "Print your final answer on its own line in exactly this format: Answer: <number>"
FORMAT_TEXT = "Print your final answer on its own line in exactly this format: Answer: <{what}>"


def load_dataset(source: str, name: str) -> Any:
    """The named data set as a DataFrame, from the package that ships it (no download)."""
    if source == "vega":
        from vega_datasets import local_data

        return getattr(local_data, name.replace("-", "_"))()
    if source == "statsmodels":
        import importlib

        data = importlib.import_module(f"statsmodels.datasets.{name}").load_pandas().data
        if name == "statecrime":  # the state is the index
            data = data.rename_axis("state").reset_index()
        return data
    if source == "sklearn":
        from sklearn import datasets

        if name == "diabetes":
            return datasets.load_diabetes(as_frame=True, scaled=False).frame
        return getattr(datasets, f"load_{name}")(as_frame=True).frame
    raise ValueError(f"unknown data source {source!r}")


def _year(df: Any, col: str = "date") -> Any:
    import pandas as pd

    return pd.to_datetime(df[col]).dt.year


def _only(series: Any, largest: bool = True) -> str:
    """The single extreme label; refuses a tie (an answer must be exact)."""
    s = series.sort_values(ascending=not largest)
    if len(s) > 1 and s.iloc[0] == s.iloc[1]:
        raise ValueError(f"tie for the extreme of {getattr(s, 'name', '')!r}: {list(s.index[:2])}")
    return str(s.index[0])


def _slope(x: Any, y: Any) -> float:
    import numpy as np

    return float(np.polyfit(x.astype(float), y.astype(float), 1)[0])


def _stock_growth(df: Any) -> Any:
    d = df.assign(date=__import__("pandas").to_datetime(df.date)).sort_values("date")
    g = d.groupby("symbol").price
    return (g.last() / g.first() - 1) * 100


def _top_k(series: Any, k: int) -> list[str]:
    s = series.sort_values(ascending=False)
    if len(s) > k and s.iloc[k - 1] == s.iloc[k]:
        raise ValueError("tie at the cut")
    return [str(i) for i in s.index[:k]]


SPECS: list[ExternalSpec] = [
    ("cars_mpg_usa", "vega", "cars", "cars.csv", "number", 2,
     "Using cars.csv: what is the mean Miles_per_Gallon of the cars whose Origin is USA? "
     "Constraints: ignore rows where Miles_per_Gallon is missing; round to 2 decimal places. " + FORMAT_NUMBER,
     lambda d: d[d.Origin == "USA"].Miles_per_Gallon.dropna().mean()),
    ("cars_heavy_v8", "vega", "cars", "cars.csv", "number", 0,
     "Using cars.csv: how many cars have 8 Cylinders and a Weight_in_lbs strictly greater than 3500? "
     "Constraints: count rows; the answer is a whole number. " + FORMAT_NUMBER,
     lambda d: int(((d.Cylinders == 8) & (d.Weight_in_lbs > 3500)).sum())),
    ("cars_hp_weight_corr", "vega", "cars", "cars.csv", "number", 3,
     "Using cars.csv: what is the Pearson correlation coefficient between Horsepower and Weight_in_lbs? "
     "Constraints: drop rows where either value is missing; round to 3 decimal places. " + FORMAT_NUMBER,
     lambda d: d[["Horsepower", "Weight_in_lbs"]].dropna().corr().iloc[0, 1]),
    ("seattle_sunniest_year", "vega", "seattle-weather", "seattle-weather.csv", "number", 0,
     "Using seattle-weather.csv (one row per day): in which calendar year is the number of days whose weather "
     "is 'sun' the largest? Constraints: take the year from the date column. " + FORMAT_TEXT.format(what="year"),
     lambda d: int(_only(d[d.weather == "sun"].groupby(_year(d)).size()))),
    ("seattle_rain_2015", "vega", "seattle-weather", "seattle-weather.csv", "number", 1,
     "Using seattle-weather.csv: what is the total precipitation over all days of the year 2015? "
     "Constraints: sum the precipitation column for dates in 2015; round to 1 decimal place. " + FORMAT_NUMBER,
     lambda d: d[_year(d) == 2015].precipitation.sum()),
    ("seattle_july_range", "vega", "seattle-weather", "seattle-weather.csv", "number", 2,
     "Using seattle-weather.csv: what is the average daily temperature range (temp_max minus temp_min) over all "
     "days in July, across every year in the file? Constraints: round to 2 decimal places. " + FORMAT_NUMBER,
     lambda d: (d.temp_max - d.temp_min)[__import__("pandas").to_datetime(d.date).dt.month == 7].mean()),
    ("stocks_aapl_2008_max", "vega", "stocks", "stocks.csv", "number", 2,
     "Using stocks.csv: what is the highest price of the symbol AAPL during the year 2008? "
     "Constraints: use only rows with symbol AAPL and a date in 2008; round to 2 decimal places. " + FORMAT_NUMBER,
     lambda d: d[(d.symbol == "AAPL") & (_year(d) == 2008)].price.max()),
    ("stocks_best_growth", "vega", "stocks", "stocks.csv", "text", 0,
     "Using stocks.csv: which symbol has the largest percentage change from its first price to its last price? "
     "Constraints: order each symbol's rows by date; change = (last / first - 1) * 100. "
     + FORMAT_TEXT.format(what="symbol"),
     lambda d: _only(_stock_growth(d))),
    ("barley_best_site", "vega", "barley", "barley.csv", "text", 0,
     "Using barley.csv: which site has the highest total yield, summed over all varieties and both years? "
     + FORMAT_TEXT.format(what="site"),
     lambda d: _only(d.groupby("site")["yield"].sum())),
    ("barley_top3_1932", "vega", "barley", "barley.csv", "list", 0,
     "Using barley.csv: which 3 varieties have the highest mean yield in the year 1932? Constraints: use only "
     "rows with year 1932; list the varieties from highest to lowest mean, separated by commas. "
     + FORMAT_TEXT.format(what="variety1, variety2, variety3"),
     lambda d: _top_k(d[d.year == 1932].groupby("variety")["yield"].mean(), 3)),
    ("iowa_top_source_2017", "vega", "iowa-electricity", "iowa-electricity.csv", "text", 0,
     "Using iowa-electricity.csv: which source has the largest net_generation in the year 2017? "
     "Constraints: take the year from the year column, which holds dates. " + FORMAT_TEXT.format(what="source"),
     lambda d: _only(d[_year(d, "year") == 2017].set_index("source").net_generation)),
    ("airports_top_state", "vega", "airports", "airports.csv", "text", 0,
     "Using airports.csv: which state has the most airports among rows whose country is USA? "
     "Constraints: count rows per value of the state column. " + FORMAT_TEXT.format(what="state code"),
     lambda d: _only(d[d.country == "USA"].groupby("state").size())),
    ("iris_petal_ratio", "vega", "iris", "iris.csv", "text", 0,
     "Using iris.csv: for each species compute the mean of petalLength divided by petalWidth (the ratio per "
     "row, then the mean per species). Which species has the largest mean ratio? " + FORMAT_TEXT.format(what="species"),
     lambda d: _only((d.petalLength / d.petalWidth).groupby(d.species).mean())),
    ("longley_slope", "statsmodels", "longley", "longley.csv", "number", 4,
     "Using longley.csv: fit an ordinary least squares regression of TOTEMP on GNP with an intercept. What is the "
     "slope coefficient of GNP? Constraints: round to 4 decimal places. " + FORMAT_NUMBER,
     lambda d: _slope(d.GNP, d.TOTEMP)),
    ("fair_share_affairs", "statsmodels", "fair", "fair.csv", "number", 1,
     "Using fair.csv: among the rows with rate_marriage equal to 5, what percentage have affairs greater than 0? "
     "Constraints: percentage from 0 to 100; round to 1 decimal place; print the number without a % sign. "
     + FORMAT_NUMBER,
     lambda d: (d[d.rate_marriage == 5].affairs > 0).mean() * 100),
    ("grunfeld_top_firm", "statsmodels", "grunfeld", "grunfeld.csv", "text", 0,
     "Using grunfeld.csv: which firm has the highest mean invest across all its years? "
     + FORMAT_TEXT.format(what="firm"),
     lambda d: _only(d.groupby("firm").invest.mean())),
    ("macro_unemp_2000s", "statsmodels", "macrodata", "macrodata.csv", "number", 2,
     "Using macrodata.csv (one row per quarter): what is the mean of unemp over all quarters from the year 2000 "
     "through 2008 inclusive? Constraints: filter on the year column; round to 2 decimal places. " + FORMAT_NUMBER,
     lambda d: d[(d.year >= 2000) & (d.year <= 2008)].unemp.mean()),
    ("statecrime_murder_poor", "statsmodels", "statecrime", "statecrime.csv", "text", 0,
     "Using statecrime.csv: among the states whose poverty is greater than 15, which state has the highest "
     "murder rate? " + FORMAT_TEXT.format(what="state"),
     lambda d: _only(d[d.poverty > 15].set_index("state").murder)),
    ("nile_driest_decade", "statsmodels", "nile", "nile.csv", "number", 0,
     "Using nile.csv: group the years into decades (1870 means 1870-1879). Which decade has the lowest mean "
     "volume? Constraints: decade = year // 10 * 10; answer with the decade's first year. "
     + FORMAT_TEXT.format(what="decade"),
     lambda d: int(float(_only(d.volume.groupby((d.year // 10 * 10).astype(int)).mean(), largest=False)))),
    ("anes96_vote_60plus", "statsmodels", "anes96", "anes96.csv", "number", 1,
     "Using anes96.csv: among respondents with age 60 or more, what percentage have vote equal to 1? "
     "Constraints: percentage from 0 to 100; round to 1 decimal place; no % sign. " + FORMAT_NUMBER,
     lambda d: (d[d.age >= 60].vote == 1).mean() * 100),
    ("sunspots_median_1900s", "statsmodels", "sunspots", "sunspots.csv", "number", 1,
     "Using sunspots.csv: what is the median SUNACTIVITY for the years 1900 to 1999 inclusive? "
     "Constraints: filter on YEAR; round to 1 decimal place. " + FORMAT_NUMBER,
     lambda d: d[(d.YEAR >= 1900) & (d.YEAR <= 1999)].SUNACTIVITY.median()),
    ("wine_alcohol_class0", "sklearn", "wine", "wine.csv", "number", 3,
     "Using wine.csv: what is the mean alcohol of the wines whose target (class) is 0? "
     "Constraints: round to 3 decimal places. " + FORMAT_NUMBER,
     lambda d: d[d.target == 0].alcohol.mean()),
    ("cancer_large_malignant", "sklearn", "breast_cancer", "breast_cancer.csv", "number", 0,
     "Using breast_cancer.csv: how many samples have a 'mean radius' greater than 15 and target equal to 0 "
     "(malignant)? Constraints: count rows; whole number. " + FORMAT_NUMBER,
     lambda d: int(((d["mean radius"] > 15) & (d.target == 0)).sum())),
    ("diabetes_bmi_std_50", "sklearn", "diabetes", "diabetes.csv", "number", 2,
     "Using diabetes.csv: what is the sample standard deviation (ddof=1) of bmi for the rows with age of 50 or "
     "more? Constraints: round to 2 decimal places. " + FORMAT_NUMBER,
     lambda d: d[d.age >= 50].bmi.std(ddof=1)),
    ("diabetes_target_by_sex", "sklearn", "diabetes", "diabetes.csv", "number", 2,
     "Using diabetes.csv: what is the difference between the mean target of the rows with sex equal to 2 and "
     "the mean target of the rows with sex equal to 1 (mean for 2 minus mean for 1)? Constraints: round to 2 "
     "decimal places. " + FORMAT_NUMBER,
     lambda d: d[d.sex == 2].target.mean() - d[d.sex == 1].target.mean()),
]
