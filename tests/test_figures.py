"""Figures as observations: descriptions read from real matplotlib figures, and what the
agent's executors and the RLM's REPL hand the model for a cell that plots."""

from __future__ import annotations

import base64
import io

import pytest

mpl = pytest.importorskip("matplotlib")
mpl.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from nbmagic.execution.figures import FIGURE_KEY, describe_figure, figure_pngs  # noqa: E402


@pytest.fixture(autouse=True)
def _close_all():
    plt.close("all")
    yield
    plt.close("all")


def test_line_plot_gives_kind_title_labels_points_first_and_last():
    fig, ax = plt.subplots()
    ax.plot(range(1, 13), [100 + 10 * i for i in range(12)], label="revenue")
    ax.set_title("Monthly revenue")
    ax.set_xlabel("month")
    ax.set_ylabel("EUR")
    text = describe_figure(fig)
    assert 'line plot "Monthly revenue"' in text
    assert 'x "month"' in text and 'y "EUR"' in text
    assert 'series "revenue" (line): 12 points, first (1, 100), last (12, 210), y 100 .. 210' in text


def test_bar_plot_names_each_bar_by_its_category():
    fig, ax = plt.subplots()
    ax.bar(["Widget", "Gadget", "Doohickey"], [5400, 3100.5, 99])
    text = describe_figure(fig)
    assert "bar plot" in text
    assert "3 bars: Widget=5400, Gadget=3100.5, Doohickey=99" in text


def test_horizontal_bars_and_a_scatter_on_one_axes():
    fig, ax = plt.subplots()
    ax.barh(["a", "b"], [3, 4])
    ax.scatter([1, 2, 3], [4, 5, 6.5], label="pts")
    text = describe_figure(fig)
    assert "barh/scatter plot" in text
    assert "2 bars: a=3, b=4" in text
    assert 'series "pts" (scatter): 3 points, first (1, 4), last (3, 6.5), x 1 .. 3, y 4 .. 6.5' in text


def test_histogram_is_told_apart_from_bars():
    fig, ax = plt.subplots()
    values = np.random.default_rng(0).normal(size=500)
    ax.hist(values, bins=20)
    text = describe_figure(fig)
    assert "hist plot" in text and "bar plot" not in text
    assert "20 bins" in text and "total count 500" in text


def test_several_series_each_described_and_a_pie():
    fig, (ax1, ax2) = plt.subplots(1, 2)
    ax1.plot([0, 1, 2], [1, 2, 3], label="a")
    ax1.plot([0, 1, 2], [3, 2, 1], label="b")
    ax2.pie([1, 3], labels=["x", "y"])
    fig.suptitle("two panels")
    text = describe_figure(fig)
    assert text.startswith('Figure (2 axes, ') and '"two panels"' in text
    assert 'series "a" (line): 3 points, first (0, 1), last (2, 3)' in text
    assert 'series "b" (line): 3 points, first (0, 3), last (2, 1)' in text
    assert "[2] pie plot" in text and "2 slices: x=25.0%, y=75.0%" in text


def test_pandas_time_series_shows_dates_not_ordinals():
    pd = pytest.importorskip("pandas")
    months = pd.date_range("2024-01-01", periods=12, freq="MS")
    ax = pd.DataFrame({"revenue": np.arange(12) * 100.0 + 1200}, index=months).plot(title="Monthly")
    text = describe_figure(ax.figure)
    assert "x: 2024-01 .. 2024-12" in text
    assert 'series "revenue" (line): 12 points, first (2024-01, 1200), last (2024-12, 2300)' in text


def test_description_is_capped():
    fig, ax = plt.subplots()
    for i in range(40):
        ax.plot([0, 1], [i, i + 1], label=f"series number {i} with a long name")
    text = describe_figure(fig, max_chars=400)
    assert len(text) < 520 and "truncated" in text
    assert "... and 32 more series" in describe_figure(fig, max_chars=100_000)


# --- what the model reads of a plotting cell ------------------------------------------------------------


PLOT = ("import matplotlib.pyplot as plt\n"
        "plt.plot([1, 2, 3, 4], [10, 20, 15, 30], label='sales')\n"
        "plt.title('Quarterly sales')\n")


def test_namespace_executor_gives_the_model_the_description_not_a_placeholder():
    from nbmagic.agent.executor import NamespaceExecutor

    run = NamespaceExecutor({}).run(PLOT, 30)
    assert run.ok
    (out,) = [o for o in run.outputs if "image/png" in o.get("data", {})]
    assert out["metadata"][FIGURE_KEY] is True
    text = run.text()
    assert "[image/png figure]" not in text
    assert '[figure] Figure (1 axes' in text and 'line plot "Quarterly sales"' in text
    assert "4 points, first (1, 10), last (4, 30)" in text
    assert figure_pngs([{"outputs": run.outputs}]) == [out["data"]["image/png"]]


def test_shell_executor_in_a_kernel_describes_figures_before_the_inline_backend_flushes_them(kernel):
    """A real ipykernel (inline backend): the figure is described once, shown once, then closed."""
    code = (
        "from nbmagic.agent.executor import ShellExecutor\n"
        "import matplotlib.pyplot as plt\n"
        f"run = ShellExecutor(get_ipython()).run({PLOT!r}, 30)\n"
        "images = [o for o in run.outputs if 'image/png' in o.get('data', {})]\n"
        "print('RESULT', run.ok, len(images), plt.get_fignums(), repr(run.text()))\n"
    )
    seen: list[str] = []
    reply = kernel.client.execute_interactive(
        code, timeout=120,
        output_hook=lambda m: seen.append(m["content"].get("text", "")) if m["msg_type"] == "stream" else None)
    assert reply["content"]["status"] == "ok", reply["content"]
    line = next(t for t in "".join(seen).splitlines() if t.startswith("RESULT"))
    assert line.startswith("RESULT True 1 [] ")
    assert 'line plot \\"Quarterly sales\\"' in line or "line plot \"Quarterly sales\"" in line
    assert "[image/png figure]" not in line


def test_rlm_turn_reads_a_figure_it_made():
    from nbmagic.execution import CappedWriter
    from nbmagic.rlm.execution import execute_code

    out = CappedWriter(10_000)
    execute_code(PLOT + "print('done')", {}, filename="<turn>", out=out)
    text = out.getvalue()
    assert "done" in text and '[figure] Figure (1 axes' in text and "4 points" in text


def test_figure_png_round_trips_and_downscales():
    from PIL import Image

    from nbmagic.llm.vision import downscale_png

    fig, ax = plt.subplots(figsize=(10, 5), dpi=100)
    ax.plot([1, 2])
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    small = downscale_png(base64.b64encode(buf.getvalue()).decode())
    with Image.open(io.BytesIO(small)) as img:
        assert max(img.size) == 512 and img.size[0] > img.size[1]


def test_descriptions_can_be_switched_off_for_measuring(monkeypatch):
    from nbmagic.agent.executor import NamespaceExecutor

    monkeypatch.setenv("NBMAGIC_FIGURE_DESCRIPTIONS", "0")
    text = NamespaceExecutor({}).run(PLOT, 30).text()
    assert text.endswith("[image/png figure]") and "line plot" not in text


def test_a_kernel_of_its_own_describes_its_figures_too(tmp_path):
    """``--kernel new``: the figure is drawn in another process; its description still comes back."""
    from nbmagic.agent.kernel_executor import KernelExecutor

    with KernelExecutor(cwd=tmp_path) as ex:
        run = ex.run(PLOT, 60)
    assert run.ok
    images = [o for o in run.outputs if "image/png" in o.get("data", {})]
    assert len(images) == 1 and images[0]["metadata"].get(FIGURE_KEY) is True
    assert 'line plot "Quarterly sales"' in run.text() and "4 points" in run.text()
