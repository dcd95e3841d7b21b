"""Judging one agent run part by part: answer lines, tables, figures, stated answers.

A run is seen through :class:`RunView`: the closing answer, the outputs of the
code cells the model wrote that ran (not the agent's own load cells: their
``head()`` shows raw rows, which must not pass for an answer), the kernel namespace after the run and the data of every
figure a successful cell drew (recorded by :class:`FigureRecorder` before the
executor closes the figure). A part is one thing the request asked for:

* :class:`AnswerLine` — the external suite's ``Answer: <value>`` line. The last
  such line in notebook order counts (code outputs first, then the closing
  answer); a number must equal the exact value at the requested decimals
  (``|printed - exact| <= 0.5e-d`` and no more than ``d`` decimals printed,
  trailing zeros aside), a text must equal it ignoring case, a list must hold
  the same items in the same order.
* :class:`TablePart` — a table's values: a ``Series``/``DataFrame`` in the
  namespace whose labels and numbers are the expected ones (same length; in
  order when ``ordered``), or a code cell's printed output that shows every
  label and every number (labels in order when ``ordered``).
* :class:`FigurePart` — a figure drawn from the right series: some line's
  y-data or some bar container's heights equal the expected values to
  two decimals or 1e-4 relative (in order for lines; bars in any order unless ``ordered``).
* :class:`StatedPart` — a number or a name stated in the run's words
  (:func:`nbmagic.eval.agent_suite.check` on the closing answer, then the
  outputs from the last cell back).
"""

from __future__ import annotations

import re
from collections.abc import MutableMapping
from dataclasses import dataclass, field
from typing import Any

from nbmagic.eval.agent_suite import Task as SingleTask
from nbmagic.eval.agent_suite import check as check_stated

# --- what a run showed ---------------------------------------------------------------------------


@dataclass
class Series:
    """One plotted series: a line's y-data or a bar container's heights (widths when horizontal)."""

    kind: str  # line | bar
    values: list[float]


@dataclass
class RunView:
    """Everything the judge may look at after a run."""

    answer: str = ""
    outputs: list[str] = field(default_factory=list)  # per code cell that ran ok, notebook order
    namespace: MutableMapping[str, Any] = field(default_factory=dict)
    figures: list[Series] = field(default_factory=list)


def outputs_text(outputs: list[dict[str, Any]]) -> str:
    """The text of a code cell's nbformat outputs (streams and text/plain)."""
    out = []
    for o in outputs:
        if o.get("output_type") == "stream":
            text = o.get("text", "")
            out.append("".join(text) if isinstance(text, list) else str(text))
        elif o.get("output_type") in ("execute_result", "display_data"):
            text = o.get("data", {}).get("text/plain", "")
            out.append("".join(text) if isinstance(text, list) else str(text))
    return "\n".join(out)


_LOAD_LINE = re.compile(r"import pandas as pd|\w+ = pd\.read_\w+\(.*\)|\w+\.head\(\)")


def is_load_cell(source: str) -> bool:
    """The agent's own cell reading a named file (no model wrote it): its ``head()`` shows the raw
    rows, which must not pass for an answer, and it does not count as the model's first cell."""
    lines = [ln.strip() for ln in source.splitlines() if ln.strip()]
    return bool(lines) and all(_LOAD_LINE.fullmatch(ln) for ln in lines)


def view_of(result: Any, namespace: MutableMapping[str, Any] | None = None,
            figures: list[Series] | None = None) -> RunView:
    """A :class:`RunView` from an ``AgentResult`` (or its ``.partial``); the agent's load cells are left out."""
    outputs = []
    for cell in getattr(result, "cells", None) or []:
        if (cell.get("cell_type") == "code" and cell.get("metadata", {}).get("nbmagic", {}).get("status") == "ok"
                and not is_load_cell(_source(cell))):
            outputs.append(outputs_text(cell.get("outputs", [])))
    return RunView(answer=getattr(result, "answer", "") or "", outputs=outputs,
                   namespace=namespace if namespace is not None else {}, figures=list(figures or []))


def _source(cell: dict[str, Any]) -> str:
    src = cell.get("source", "")
    return "".join(src) if isinstance(src, list) else str(src)


# --- figures -------------------------------------------------------------------------------------


def figure_series(fig: Any) -> list[Series]:
    """The numeric series a matplotlib figure draws: lines' y-data, bar containers' heights."""
    from matplotlib.container import BarContainer

    found: list[Series] = []
    for ax in fig.axes:
        for line in ax.get_lines():
            try:
                ys = [float(y) for y in line.get_ydata()]
            except (TypeError, ValueError):
                continue
            if ys:
                found.append(Series("line", ys))
        for container in ax.containers:
            if not isinstance(container, BarContainer):
                continue
            horizontal = getattr(container, "orientation", "vertical") == "horizontal"
            try:
                vals = [float(p.get_width() if horizontal else p.get_height()) for p in container.patches]
            except (TypeError, ValueError):
                continue
            if vals:
                found.append(Series("bar", vals))
    return found


class FigureRecorder:
    """An executor wrapper that keeps the data of the figures the cells draw.

    The agent's executors turn each new figure into a PNG output and close it, so
    after the run no figure is left to inspect. While a cell runs this wrapper
    replaces ``matplotlib.pyplot.close`` with a version that first records the
    figure's series; after the cell it records the figures still open. Only cells
    that ran without an error count (a failed attempt is not in the notebook).
    """

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.series: list[Series] = []

    @property
    def namespace(self) -> MutableMapping[str, Any]:
        return self.inner.namespace

    def __getattr__(self, name: str) -> Any:  # kind, cwd, ... as the wrapped executor has them
        if name == "inner":
            raise AttributeError(name)
        return getattr(self.inner, name)

    def run(self, code: str, timeout: float | None = None) -> Any:
        import matplotlib.pyplot as plt

        seen: dict[int, list[Series]] = {}
        real_close = plt.close

        def record(fig: Any) -> None:
            if id(fig) not in seen:
                try:
                    seen[id(fig)] = figure_series(fig)
                except Exception:  # an odd figure must not break the run
                    seen[id(fig)] = []

        def close(*args: Any, **kwargs: Any) -> None:
            for fig in _open_figures():  # every open figure: the one being closed is among them
                record(fig)
            real_close(*args, **kwargs)

        plt.close = close
        try:
            res = self.inner.run(code, timeout)
        finally:
            plt.close = real_close
        for fig in _open_figures():
            record(fig)
        if getattr(res, "ok", False):
            for series in seen.values():
                self.series.extend(series)
        return res


def _open_figures() -> list[Any]:
    """Open figures, without making any of them current (``plt.figure(n)`` would)."""
    from matplotlib._pylab_helpers import Gcf

    return [m.canvas.figure for m in Gcf.get_all_fig_managers()]


def _close(a: float, b: float, rel: float = 1e-4) -> bool:
    """Equal up to printing: 0.01 absolute (two decimals) or ``rel`` of the value, whichever is larger."""
    return abs(a - b) <= max(0.006, rel * abs(b))


def series_match(got: list[float], want: list[float], ordered: bool) -> bool:
    if len(got) != len(want):
        return False
    if not ordered:
        got, want = sorted(got), sorted(want)
    return all(_close(g, w) for g, w in zip(got, want, strict=True))


# --- parts ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class AnswerLine:
    """``Answer: <value>`` printed exactly; see the module docs."""

    name: str
    kind: str  # number | text | list
    expected: Any
    decimals: int = 0

    def judge(self, view: RunView) -> bool:
        line = last_answer_line([*view.outputs, view.answer])
        return line is not None and answer_matches(line, self.kind, self.expected, self.decimals)


@dataclass(frozen=True)
class TablePart:
    """A table: ``labels`` -> ``values``; see the module docs."""

    name: str
    labels: tuple[str, ...]
    values: tuple[float, ...]
    ordered: bool = False

    def judge(self, view: RunView) -> bool:
        return any(self._matches(lab, val) for lab, val in _namespace_tables(view.namespace)) or any(
            self._printed(text) for text in [*view.outputs, view.answer])

    def _matches(self, labels: list[str], values: list[float]) -> bool:
        if len(labels) != len(self.labels):
            return False
        pairs = list(zip(labels, values, strict=True))
        if not self.ordered:
            pairs = sorted(pairs, key=lambda p: _norm_label(p[0], self.labels))
            want = sorted(zip(self.labels, self.values, strict=True), key=lambda p: p[0].lower())
        else:
            want = list(zip(self.labels, self.values, strict=True))
        return all(_norm_label(lab, self.labels) == w_lab.lower() and _close(val, w_val, 1e-6)
                   for (lab, val), (w_lab, w_val) in zip(pairs, want, strict=True))

    def _printed(self, text: str) -> bool:
        if not text:
            return False
        positions = []
        for lab in self.labels:
            m = re.search(rf"(?<![\w-]){re.escape(lab)}(?![\w-])", text, re.I)
            if m is None:
                return False
            positions.append(m.start())
        if self.ordered and positions != sorted(positions):
            return False
        nums = numbers_in(text)
        return all(any(abs(n - v) <= max(0.006, 1e-4 * abs(v)) for n in nums) for v in self.values)


@dataclass(frozen=True)
class FigurePart:
    """A figure drawn from ``values`` (a line, or bars); see the module docs."""

    name: str
    values: tuple[float, ...]
    kind: str = "any"  # line | bar | any
    ordered: bool = True

    def judge(self, view: RunView) -> bool:
        for s in view.figures:
            if self.kind != "any" and s.kind != self.kind:
                continue
            if series_match(s.values, list(self.values), self.ordered or s.kind == "line"):
                return True
        return False


@dataclass(frozen=True)
class StatedPart:
    """A number or a name the run states (judged like the single questions)."""

    name: str
    kind: str  # number | name
    expected: Any
    candidates: tuple[str, ...] = ()
    #: ``all``: the closing answer, then every output from the last back; ``last``: the closing answer and
    #: the last output only (the single questions' rule, so their figures stay comparable)
    scope: str = "all"

    def judge(self, view: RunView) -> bool:
        task = SingleTask(self.name, "", (), self.kind, self.expected, self.candidates)
        outputs = view.outputs[-1:] if self.scope == "last" else list(reversed(view.outputs))
        return check_stated(task, "\n".join(p for p in [view.answer, *outputs] if p))


Part = AnswerLine | TablePart | FigurePart | StatedPart


# --- helpers -------------------------------------------------------------------------------------

_NUM = re.compile(r"(?<![\w.])-?\d[\d,]*(?:\.\d+)?(?:[eE][-+]?\d+)?")
_ANSWER = re.compile(r"^[\s>*_`'\"]*answer[\s*_`]*:\s*(.*?)\s*$", re.I | re.M)


def numbers_in(text: str) -> list[float]:
    out = []
    for raw in _NUM.findall(text):
        try:
            out.append(float(raw.replace(",", "")))
        except ValueError:
            continue
    return out


def last_answer_line(texts: list[str]) -> str | None:
    """The value of the last ``Answer: ...`` line across ``texts`` (in order), or None."""
    found = None
    for text in texts:
        for m in _ANSWER.finditer(text or ""):
            found = m.group(1)
    return None if found is None else _clean(found)


def _clean(value: str) -> str:
    value = value.strip(" \t*_`'\"")
    return value[:-1].rstrip() if value.endswith(".") and not re.fullmatch(r"-?\d+\.", value) else value


def answer_matches(value: str, kind: str, expected: Any, decimals: int = 0) -> bool:
    """Is an Answer line's ``value`` the exact answer? See the module docs."""
    if kind == "number":
        raw = value.replace(",", "")
        if not re.fullmatch(r"[-+]?\d+(?:\.\d*)?", raw):
            return False
        places = len(raw.split(".")[1].rstrip("0")) if "." in raw else 0
        if places > decimals:
            return False
        return abs(float(raw) - float(expected)) <= 0.5 * 10 ** -decimals * (1 + 1e-9) + 1e-12
    if kind == "list":
        got = [v.strip().strip("'\"").lower() for v in value.strip("[]").split(",")]
        return got == [str(e).lower() for e in expected]
    return value.lower() == str(expected).lower()


def _norm_label(label: Any, wanted: tuple[str, ...]) -> str:
    text = str(label).strip()
    if wanted and all(re.fullmatch(r"\d{4}-\d{2}", w) for w in wanted):
        text = text[:7]  # a month: '2024-01', Period('2024-01'), Timestamp('2024-01-31 00:00:00')
    return text.lower()


def _namespace_tables(ns: MutableMapping[str, Any]) -> list[tuple[list[str], list[float]]]:
    """(labels, numbers) of every Series and every (label source, numeric column) of every DataFrame."""
    try:
        import pandas as pd
    except ImportError:  # pragma: no cover - the suite needs pandas
        return []
    found = []
    for name, value in list(ns.items()):
        if name.startswith("_"):
            continue
        if isinstance(value, pd.Series):
            nums = _floats(value)
            if nums is not None:
                found.append(([str(i) for i in value.index], nums))
        elif isinstance(value, pd.DataFrame) and 0 < len(value) <= 1000:
            sources = [[str(i) for i in value.index]] + [
                [str(x) for x in value[c]] for c in value.columns if not pd.api.types.is_float_dtype(value[c])]
            for c in value.columns:
                nums = _floats(value[c])
                if nums is None:
                    continue
                found.extend((labels, nums) for labels in sources)
    return found


def _floats(series: Any) -> list[float] | None:
    try:
        return [float(x) for x in series.tolist()]
    except (TypeError, ValueError):
        return None
