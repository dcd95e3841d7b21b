"""The agent evaluation's three suites as one list of tasks, each with its files and its parts.

* ``single``: the 34 one-question tasks of :mod:`nbmagic.eval.agent_suite` (one
  stated answer each, judged as before: the closing answer and the last output);
* ``multipart``: :mod:`nbmagic.eval.agent_tasks.multipart` (a table, a figure,
  an answer per request);
* ``external``: :mod:`nbmagic.eval.agent_tasks.external`, the frozen
  benchmark-style questions over data sets packages ship offline, identified by
  :func:`external_hash`.

A task writes its CSV files into the run's folder (:meth:`EvalTask.prepare`)
and knows its parts (:mod:`nbmagic.eval.agent_judge`); the expected values are
computed from the very CSV text written, read back with pandas.
"""

from __future__ import annotations

import hashlib
import io
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

from nbmagic.errors import ConfigError
from nbmagic.eval.agent_judge import AnswerLine, Part, StatedPart

SUITES = ("single", "multipart", "external")
EXTERNAL_FILE = Path(__file__).with_name("agent_tasks") / "external.py"
#: the packages the external suite's data comes from (pip names; in the ``test`` extra)
EXTERNAL_PACKAGES = {"vega": "vega_datasets", "statsmodels": "statsmodels", "sklearn": "scikit-learn"}


@dataclass
class EvalTask:
    """One request: where its files come from, what it asks, and the parts that judge it."""

    id: str
    suite: str
    request: str
    files: dict[str, str] = field(default_factory=dict)  # file name -> its CSV text
    parts: list[Part] = field(default_factory=list)

    def prepare(self, folder: Path) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        for name, text in self.files.items():
            (folder / name).write_text(text)


def external_hash() -> str:
    """sha256 of the external questions' file (line endings normalised): the suite's identity."""
    data = EXTERNAL_FILE.read_bytes().replace(b"\r\n", b"\n")
    return hashlib.sha256(data).hexdigest()


def _read(text: str) -> Any:
    import pandas as pd

    return pd.read_csv(io.StringIO(text))


@cache
def _own_csv() -> dict[str, str]:
    """The single suite's generated tables as CSV text, and the README's sales_data.csv when present."""
    import tempfile

    from nbmagic.eval.agent_suite import make_tables
    from nbmagic.eval.agent_tasks.multipart import README_DATA

    tables = make_tables()
    with tempfile.TemporaryDirectory() as tmp:
        tables.write(Path(tmp), tuple(tables.rows))
        out = {name: (Path(tmp) / name).read_text() for name in tables.rows}
    if README_DATA.is_file():
        out["sales_data.csv"] = README_DATA.read_text()
    return out


@cache
def _external_csv(source: str, name: str) -> str:
    import warnings

    from nbmagic.eval.agent_tasks.external import load_dataset

    try:
        with warnings.catch_warnings():  # vega_datasets' own read_json call warns on recent pandas
            warnings.simplefilter("ignore")
            frame = load_dataset(source, name)
    except ImportError as exc:
        raise ConfigError(f"The external suite needs {EXTERNAL_PACKAGES[source]} (pip install -e '.[test]'): "
                          f"{exc}.") from None
    return frame.to_csv(index=False)


def single_tasks() -> list[EvalTask]:
    from nbmagic.eval.agent_suite import make_tasks

    csv = _own_csv()
    return [EvalTask(t.id, "single", t.request, {f: csv[f] for f in t.files},
                     [StatedPart("answer", t.kind, t.expected, t.candidates, scope="last")])
            for t in make_tasks()]


def multipart_tasks() -> list[EvalTask]:
    from nbmagic.eval.agent_tasks.multipart import SPECS

    csv = _own_csv()
    return [EvalTask(tid, "multipart", request, {file: csv[file]}, parts(_read(csv[file])))
            for tid, file, request, parts in SPECS if file in csv]


def external_tasks() -> list[EvalTask]:
    from nbmagic.eval.agent_tasks.external import SPECS

    tasks = []
    for tid, source, name, file, kind, decimals, question, answer in SPECS:
        text = _external_csv(source, name)
        expected = answer(_read(text))
        if kind == "number":
            expected = float(expected)
        tasks.append(EvalTask(tid, "external", question, {file: text},
                              [AnswerLine("answer line", kind, expected, decimals)]))
    return tasks


def make_suite(name: str) -> list[EvalTask]:
    if name == "single":
        return single_tasks()
    if name == "multipart":
        return multipart_tasks()
    if name == "external":
        return external_tasks()
    raise ConfigError(f"Unknown suite {name!r}: choose {', '.join(SUITES)}.")


def data_versions() -> dict[str, str]:
    """Versions of the packages the external data comes from (answers are exact for these)."""
    from importlib.metadata import PackageNotFoundError, version

    out = {}
    for pkg in EXTERNAL_PACKAGES.values():
        try:
            out[pkg] = version(pkg)
        except PackageNotFoundError:
            out[pkg] = "missing"
    return out

