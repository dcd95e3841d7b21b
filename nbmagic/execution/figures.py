"""Figures as observations: what a matplotlib figure shows, in words a text model can check.

A PNG tells a text-only model nothing, so a generated cell that plots used to reach
the model as ``[image/png figure]``: neither the fix loop nor the closing answer could
say whether the plot was "a monthly trend with 12 points". This module reads the
figure's own objects (no pixels) and writes a short description::

    Figure (1 axes, 640x480 px)
    [1] line plot "Monthly revenue"; x "month": 2024-01-01 .. 2024-12-01; y "revenue": 980 .. 5400
        series "revenue" (line): 12 points, first (2024-01-01, 1200), last (2024-12-01, 5400), y 980 .. 5400
    [2] bar plot "Top 5"; 5 bars: Widget=5400, Gadget=3100, ...

What is read, per axes: the kind of plot (line, bar, barh, hist, scatter, pie,
image), the title, the axis labels and limits, and per series its label, point
count, first and last point and y range; bars give their labels and heights,
histograms their bin count, range and tallest bin, pies their slice labels and
shares. The text is capped (:data:`MAX_CHARS`) like any other output.

Standard library at import time: the RLM's worker process imports the execution
core, and matplotlib is only touched when ``matplotlib.pyplot`` is already loaded
(a cell that plots has imported it).
"""

from __future__ import annotations

import datetime as _dt
import math
import sys
from collections.abc import Iterable, Sequence
from itertools import pairwise
from typing import Any

from nbmagic.text import truncate

__all__ = ["FIGURE_KEY", "MAX_CHARS", "describe_figure", "describe_new_figures", "descriptions_enabled", "figure_png", "figure_pngs", "install_kernel_hook",
           "open_figures"]

#: a figure's description is cut (head and tail kept) to this many characters
MAX_CHARS = 1500
#: bars (or pie slices) listed by name and value before "... and n more"
MAX_BARS = 20
#: series described per axes before "... and n more series"
MAX_SERIES = 8


def open_figures() -> list[Any]:
    """The figures pyplot holds open (empty when pyplot was never imported)."""
    if "matplotlib.pyplot" not in sys.modules:
        return []
    try:
        from matplotlib._pylab_helpers import Gcf
    except Exception:  # pragma: no cover - odd matplotlib builds
        return []
    return [m.canvas.figure for m in Gcf.get_all_fig_managers()]


def describe_new_figures(before: set[int], *, close: bool = False) -> list[str]:
    """Descriptions of the figures opened since ``before`` (ids); closes them if asked."""
    out = []
    for fig in open_figures():
        if id(fig) in before:
            continue
        out.append(describe_figure(fig))
        if close:
            import matplotlib.pyplot as plt

            plt.close(fig)
    return out


# --- values as text -----------------------------------------------------------------------


def _num(v: Any) -> str:
    """A number as a person writes it: integers whole, others to 4 significant digits
    (large ones to 2 decimals, so a total of 123456.78 stays checkable)."""
    try:
        f = float(v)
    except (TypeError, ValueError):
        return str(v)
    if math.isnan(f):
        return "nan"
    if math.isinf(f):
        return "inf" if f > 0 else "-inf"
    if f.is_integer() and abs(f) < 1e15:
        return str(int(f))
    if abs(f) >= 1000:
        return f"{f:.2f}".rstrip("0").rstrip(".")
    return f"{f:.4g}"


def _value(v: Any) -> str:
    """One data value: dates as ISO dates, strings as they are, numbers via :func:`_num`."""
    if isinstance(v, str):
        return v
    if isinstance(v, _dt.datetime):
        return v.strftime("%Y-%m-%d") if (v.hour, v.minute, v.second) == (0, 0, 0) else v.strftime("%Y-%m-%d %H:%M")
    if isinstance(v, _dt.date):
        return v.isoformat()
    kind = type(v).__name__
    if kind in ("datetime64", "Timestamp"):
        text = str(v)
        return text[:10] if text[10:].strip("T0:. ") == "" else text[:19]
    return _num(v)


def _is_date_axis(axis: Any) -> bool:
    getter = getattr(axis, "get_converter", None)
    conv = getter() if callable(getter) else getattr(axis, "converter", None)
    return conv is not None and "date" in type(conv).__name__.lower()


def _period_freq(ax: Any) -> Any:
    """pandas' time-series plots draw periods as integer ordinals and keep the frequency on the axes."""
    freq = getattr(ax, "freq", None)
    return freq if freq is not None and "pandas" in sys.modules else None


def _from_ordinal(freq: Any, v: Any) -> Any:
    try:
        import pandas as pd

        return str(pd.Period(ordinal=round(float(v)), freq=freq))
    except Exception:
        return v


def _limit(axis: Any, lo: float, hi: float) -> str:
    freq = _period_freq(axis.axes) if axis.axis_name == "x" else None
    if freq is not None:
        return f"{_from_ordinal(freq, lo)} .. {_from_ordinal(freq, hi)}"
    if _is_date_axis(axis):
        try:
            from matplotlib.dates import num2date

            return f"{num2date(lo):%Y-%m-%d} .. {num2date(hi):%Y-%m-%d}"
        except Exception:
            pass
    return f"{_num(lo)} .. {_num(hi)}"


def _axis_text(axis: Any, name: str, label: str, lim: tuple[float, float]) -> str:
    lab = f' "{label}"' if label else ""
    return f"{name}{lab}: {_limit(axis, *lim)}"


def _series_label(artist: Any) -> str:
    label = str(artist.get_label() or "")
    return "" if label.startswith("_") else label


def _as_list(values: Any) -> list[Any]:
    try:
        return list(values)
    except TypeError:
        return [values]


def _finite(values: Iterable[Any]) -> list[float]:
    out = []
    for v in values:
        try:
            f = float(v)
        except (TypeError, ValueError):
            continue
        if not math.isnan(f):
            out.append(f)
    return out


# --- artists ----------------------------------------------------------------------------------


def _line(line: Any, n: int) -> str | None:
    xs = _as_list(line.get_xdata(orig=True))
    ys = _as_list(line.get_ydata(orig=True))
    freq = _period_freq(line.axes)
    if freq is not None and xs:
        xs = [_from_ordinal(freq, xs[0]), *xs[1:-1], _from_ordinal(freq, xs[-1])]
    if not ys:
        return None
    name = _series_label(line) or f"series {n}"
    finite = _finite(ys)
    rng = f", y {_num(min(finite))} .. {_num(max(finite))}" if finite else ""
    first = f"({_value(xs[0])}, {_value(ys[0])})" if xs else _value(ys[0])
    last = f"({_value(xs[-1])}, {_value(ys[-1])})" if xs else _value(ys[-1])
    return f'series "{name}" (line): {len(ys)} points, first {first}, last {last}{rng}'


def _scatter(coll: Any, n: int) -> str | None:
    offsets = coll.get_offsets()
    pts = [tuple(p) for p in _as_list(offsets)]
    if not pts:
        return None
    name = _series_label(coll) or f"series {n}"
    xs, ys = _finite(p[0] for p in pts), _finite(p[1] for p in pts)
    rng = ""
    if xs and ys:
        rng = f", x {_num(min(xs))} .. {_num(max(xs))}, y {_num(min(ys))} .. {_num(max(ys))}"
    return (f'series "{name}" (scatter): {len(pts)} points, first ({_num(pts[0][0])}, {_num(pts[0][1])}), '
            f"last ({_num(pts[-1][0])}, {_num(pts[-1][1])}){rng}")


def _tick_names(ax: Any, axis: str) -> dict[float, str]:
    """Tick position -> label text (categorical bars are named by their ticks)."""
    try:
        ticks = ax.get_xticks() if axis == "x" else ax.get_yticks()
        labels = ax.get_xticklabels() if axis == "x" else ax.get_yticklabels()
    except Exception:
        return {}
    return {round(float(t), 6): lab.get_text() for t, lab in zip(ticks, labels, strict=False) if lab.get_text()}


def _is_hist(rects: Sequence[Any]) -> bool:
    """Adjacent bars of equal width, at least 3: what ``hist`` draws (bars have gaps)."""
    if len(rects) < 3:
        return False
    widths = [r.get_width() for r in rects]
    if max(widths) - min(widths) > 1e-9 * max(1.0, abs(max(widths))):
        return False
    return all(abs(a.get_x() + a.get_width() - b.get_x()) <= 1e-9 * max(1.0, abs(b.get_x()))
               for a, b in pairwise(rects))


def _bars(ax: Any, container: Any, n: int) -> tuple[str, str] | None:
    """``(kind, text)`` for a BarContainer: bar, barh or hist."""
    rects = [r for r in container.patches if r.get_visible()]
    if not rects:
        return None
    horizontal = getattr(container, "orientation", None) == "horizontal"
    label = _series_label(container)
    head = f'"{label}" ' if label else ""
    if not horizontal and _is_hist(rects):
        counts = [r.get_height() for r in rects]
        lo, hi = rects[0].get_x(), rects[-1].get_x() + rects[-1].get_width()
        top = max(range(len(counts)), key=lambda i: counts[i])
        peak = rects[top].get_x() + rects[top].get_width() / 2
        return "hist", (f"{head}histogram: {len(rects)} bins over {_num(lo)} .. {_num(hi)}, "
                        f"total count {_num(sum(counts))}, tallest bin {_num(counts[top])} at {_num(peak)}")
    names = _tick_names(ax, "y" if horizontal else "x")
    items = []
    for i, r in enumerate(rects):
        centre = r.get_y() + r.get_height() / 2 if horizontal else r.get_x() + r.get_width() / 2
        value = r.get_width() if horizontal else r.get_height()
        name = names.get(round(float(centre), 6))
        items.append(f"{name}={_num(value)}" if name else _num(value))
        if i + 1 >= MAX_BARS and len(rects) > MAX_BARS:
            items.append(f"... and {len(rects) - MAX_BARS} more")
            break
    kind = "barh" if horizontal else "bar"
    return kind, f"{head}{len(rects)} bars: " + ", ".join(items)


def _pie(wedges: list[Any]) -> str:
    items = []
    for i, w in enumerate(wedges):
        share = (w.theta2 - w.theta1) / 360 * 100
        name = _series_label(w)
        items.append(f"{name}={share:.1f}%" if name else f"{share:.1f}%")
        if i + 1 >= MAX_BARS and len(wedges) > MAX_BARS:
            items.append(f"... and {len(wedges) - MAX_BARS} more")
            break
    return f"{len(wedges)} slices: " + ", ".join(items)


def _image(img: Any) -> str:
    try:
        shape = img.get_array().shape
    except Exception:
        shape = ()
    size = "x".join(str(s) for s in shape[:2]) if shape else "?"
    cmap = getattr(img.get_cmap(), "name", "") if len(shape) == 2 else ""
    return f"image {size}" + (f" (colormap {cmap})" if cmap else "") + (" RGB" if len(shape) == 3 else "")


# --- axes and figure -----------------------------------------------------------------------------


def _describe_axes(ax: Any, index: int) -> str:
    from matplotlib.container import BarContainer
    from matplotlib.patches import Wedge

    kinds: list[str] = []
    series: list[str] = []
    for artist in ax.get_lines():
        text = _line(artist, len(series) + 1)
        if text:
            kinds.append("line")
            series.append(text)
    for container in ax.containers:
        if isinstance(container, BarContainer):
            found = _bars(ax, container, len(series) + 1)
            if found:
                kinds.append(found[0])
                series.append(found[1])
    for coll in ax.collections:
        if type(coll).__name__ == "PathCollection":
            text = _scatter(coll, len(series) + 1)
            if text:
                kinds.append("scatter")
                series.append(text)
    wedges = [p for p in ax.patches if isinstance(p, Wedge)]
    if wedges:
        kinds.append("pie")
        series.append(_pie(wedges))
    for img in ax.get_images():
        kinds.append("image")
        series.append(_image(img))
    kind = "/".join(dict.fromkeys(kinds)) or "empty"
    title = ax.get_title() or ""
    head = f"[{index}] {kind} plot" + (f' "{title}"' if title else "")
    if kinds and kinds != ["pie"]:
        head += "; " + _axis_text(ax.xaxis, "x", ax.get_xlabel(), ax.get_xlim())
        head += "; " + _axis_text(ax.yaxis, "y", ax.get_ylabel(), ax.get_ylim())
    if len(series) > MAX_SERIES:
        series = [*series[:MAX_SERIES], f"... and {len(series) - MAX_SERIES} more series"]
    return "\n".join([head, *("    " + s for s in series)])


def describe_figure(fig: Any, *, max_chars: int = MAX_CHARS) -> str:
    """What ``fig`` shows, as text for a model (see the module docstring); capped at ``max_chars``.

    Tick labels (the names of categorical bars) exist only once the figure was drawn,
    so an undrawn figure is drawn first (a figure just saved as PNG was).
    """
    try:
        if getattr(fig, "stale", False) or getattr(fig.canvas, "renderer", None) is None:
            fig.canvas.draw()
    except Exception:
        pass  # a figure that cannot draw is still described from its objects
    axes = [ax for ax in fig.axes if ax.get_label() != "<colorbar>"]
    w, h = (fig.get_size_inches() * fig.dpi).round().astype(int)
    head = f"Figure ({len(axes)} axes, {w}x{h} px)"
    suptitle = getattr(fig, "_suptitle", None)
    if suptitle is not None and suptitle.get_text():
        head += f' "{suptitle.get_text()}"'
    parts = [head]
    for i, ax in enumerate(axes, 1):
        try:
            parts.append(_describe_axes(ax, i))
        except Exception as exc:  # never let a description break a run
            parts.append(f"[{i}] (could not describe: {type(exc).__name__})")
    return truncate("\n".join(parts), max_chars, head=0.7)


#: output metadata marking an image output whose text/plain is the figure's description
FIGURE_KEY = "nbmagic_figure"


def descriptions_enabled() -> bool:
    """``NBMAGIC_FIGURE_DESCRIPTIONS=0`` hands models the bare ``[image/png figure]`` placeholder
    instead of the description (for measuring what descriptions are worth; on by default)."""
    import os

    return os.environ.get("NBMAGIC_FIGURE_DESCRIPTIONS", "1").strip().lower() not in ("0", "false", "no", "off")


def figure_png(fig: Any) -> bytes:
    """The figure as PNG bytes, the way the inline backend shows it (tight bounding box)."""
    import io

    buf = io.BytesIO()
    fig.savefig(buf, format="png", bbox_inches="tight")
    return buf.getvalue()


def install_kernel_hook(shell: Any = None) -> bool:
    """In a kernel of its own (``--kernel new``): figures a cell leaves open are shown as PNG
    with their description as text/plain (marked with :data:`FIGURE_KEY`), before the inline
    backend's flush would show them without one. Returns ``False`` outside IPython."""
    if shell is None:
        try:
            from IPython import get_ipython
        except ImportError:
            return False
        shell = get_ipython()
    if shell is None:
        return False

    def flush() -> None:
        if "matplotlib.pyplot" not in sys.modules:
            return
        import base64

        import matplotlib.pyplot as plt
        from IPython.display import publish_display_data

        for fig in open_figures():
            try:
                png = base64.b64encode(figure_png(fig)).decode("ascii")
                publish_display_data({"image/png": png, "text/plain": describe_figure(fig)},
                                     {FIGURE_KEY: True})
            except Exception as exc:  # a figure that cannot render is reported, not fatal
                print(f"could not render figure: {exc}", file=sys.stderr)
            finally:
                plt.close(fig)

    shell.events.callbacks.setdefault("post_execute", []).insert(0, flush)
    return True


def figure_pngs(cells: Iterable[Any]) -> list[str]:
    """The PNG images (base64, as nbformat stores them) in the outputs of ``cells``, in order."""
    out = []
    for cell in cells:
        for output in cell.get("outputs", None) or []:
            png = (output.get("data") or {}).get("image/png")
            if isinstance(png, str) and png:
                out.append(png)
    return out
