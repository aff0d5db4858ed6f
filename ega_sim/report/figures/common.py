"""What every figure shares: the Agg backend, seaborn's look, the palette, markers and line
styles, PNG encoding (dpi 110, so that a report stays light) and small axis helpers."""

from __future__ import annotations

import contextlib
import io
import math
from collections.abc import Iterator
from types import ModuleType
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from ega_sim.report.formats import PERCENT_METRICS

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

DPI = 110
MARKERS = ("o", "s", "^", "D", "v", "P", "X", "*")
LINESTYLES = ("-", "--", ":", "-.")


def pyplot() -> ModuleType:
    """matplotlib's pyplot on the Agg backend."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


@contextlib.contextmanager
def figure_style() -> Iterator[None]:
    """Seaborn's whitegrid look at a small font, for this figure only (no global change)."""
    import seaborn as sns

    with sns.axes_style("whitegrid"), sns.plotting_context("notebook", font_scale=0.75):
        yield


def palette(count: int) -> list:
    """`count` distinct colours."""
    import seaborn as sns

    return list(sns.color_palette("tab10" if count <= 10 else "husl", max(count, 1)))


def to_png(figure: Figure) -> bytes:
    """The figure as PNG bytes; closes it."""
    plt = pyplot()
    buffer = io.BytesIO()
    try:
        figure.savefig(buffer, format="png", dpi=DPI)
    finally:
        plt.close(figure)
    return buffer.getvalue()


def percent_axis(axis: Axes, metric: str, which: str = "y") -> None:
    """Percent ticks on an axis of a percent metric."""
    if metric in PERCENT_METRICS:
        from matplotlib.ticker import PercentFormatter

        target = axis.yaxis if which == "y" else axis.xaxis
        target.set_major_formatter(PercentFormatter(1.0))


def all_finite(*numbers: float) -> bool:
    """Whether every number is finite."""
    return all(isinstance(x, int | float) and math.isfinite(x) for x in numbers)


def panel_grid(count: int, columns: int = 3) -> tuple[int, int]:
    """(rows, columns) for `count` panels."""
    columns = max(1, min(columns, count))
    return math.ceil(count / columns), columns


def panel_figure(count: int, width: float, height: float) -> tuple[Figure, np.ndarray]:
    """A figure of `count` panels, three to a row, each about width x height inches; its axes
    [rows, columns]. Call inside `figure_style()`."""
    n_rows, n_cols = panel_grid(count)
    size = (max(6.5, width * n_cols), height * n_rows + 0.3)
    return pyplot().subplots(n_rows, n_cols, figsize=size, squeeze=False)


def bottom_legend(figure: Figure, handles: list, columns: int = 5) -> None:
    """A small frameless legend centred under the panels."""
    ncol = min(len(handles), columns)
    figure.legend(handles=handles, loc="lower center", ncol=ncol, fontsize=7, frameon=False)


def hide_unused(axes: np.ndarray, used: int) -> None:
    """Hide the panels after `used`."""
    for axis in list(np.ravel(axes))[used:]:
        axis.set_visible(False)


def paired_seeds(x_row: pd.Series, y_row: pd.Series) -> tuple[list[float], list[float]]:
    """The seeds' (x, y) values where both rows have a finite value for the seed."""
    xs = dict(zip(x_row["seeds"], x_row["values"], strict=False))
    ys = dict(zip(y_row["seeds"], y_row["values"], strict=False))
    common = [s for s in xs if s in ys and math.isfinite(xs[s]) and math.isfinite(ys[s])]
    return [xs[s] for s in common], [ys[s] for s in common]


def error_bars(row: pd.Series) -> list[list[float]] | None:
    """matplotlib error bars of a summary row's 95% interval; None if undefined."""
    if not all_finite(row["mean"], row["low"], row["high"]):
        return None
    return [[row["mean"] - row["low"]], [row["high"] - row["mean"]]]


def scenario_panels(
    frame: pd.DataFrame,
    scenarios: list[str] | tuple[str, ...],
    labels: list[str] | tuple[str, ...],
    sweep_keys: list[str] | tuple[str, ...],
) -> tuple[list[str], dict, list[str]]:
    """For a figure with one panel per scenario: the scenarios with rows in `frame`, a colour
    per label, and the sweep keys that are columns of `frame`."""
    present = [s for s in scenarios if (frame["scenario"] == s).any()]
    colors = dict(zip(labels, palette(len(labels)), strict=False))
    return present, colors, [k for k in sweep_keys if k in frame.columns]
