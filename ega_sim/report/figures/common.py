"""What every figure shares: the Agg backend, seaborn's look, the one palette that gives each
mechanism its colour in every figure (the report's and `ega-sim misreport`'s), markers and line
styles, PNG encoding (dpi 200, sharp on high-dpi screens; the HTML shows a figure at its
110-dpi size) and small axis helpers."""

from __future__ import annotations

import contextlib
import io
import math
from collections.abc import Iterator, Sequence
from types import ModuleType
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from ega_sim.report.formats import PERCENT_METRICS

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

DPI = 200  # PNG resolution: crisp when a high-dpi screen shows the figure at DISPLAY_DPI
DISPLAY_DPI = 110  # the size a figure is shown at in the HTML report, in CSS pixels per inch
LEGEND_FONTSIZE = 8
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
    """`count` distinct colours: tab10, or husl beyond ten."""
    import seaborn as sns

    return list(sns.color_palette("tab10" if count <= 10 else "husl", max(count, 1)))


def mechanism_colors(labels: Sequence[str]) -> dict[str, tuple]:
    """The colour of each mechanism label, by its place in the experiment's list: the one
    mapping every figure uses, so that a mechanism keeps its colour across figures."""
    unique = list(dict.fromkeys(str(label) for label in labels))
    return dict(zip(unique, palette(len(unique)), strict=True))


def mechanism_markers(labels: Sequence[str]) -> dict[str, str]:
    """The marker of each mechanism label, by its place in the experiment's list (as its
    colour): points of mechanisms that coincide stay distinguishable."""
    unique = list(dict.fromkeys(str(label) for label in labels))
    return {label: MARKERS[i % len(MARKERS)] for i, label in enumerate(unique)}


def sweep_colors(count: int) -> list:
    """`count` colours of a sequential palette for sweep points (values in order), distinct in
    kind from the mechanisms' categorical colours."""
    import seaborn as sns

    return list(sns.color_palette("crest", max(count, 1)))


def to_png(figure: Figure) -> bytes:
    """The figure as PNG bytes at DPI, quantized to 256 colours (a figure's flat colours and
    their antialiasing fit in them; the file is about three times smaller than full colour);
    closes the figure."""
    from PIL import Image

    plt = pyplot()
    buffer = io.BytesIO()
    try:
        figure.savefig(buffer, format="png", dpi=DPI)
    finally:
        plt.close(figure)
    buffer.seek(0)
    with Image.open(buffer) as image:
        paletted = image.convert("RGB").quantize(
            256, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.NONE
        )
    out = io.BytesIO()
    paletted.save(out, format="png", dpi=(DPI, DPI))
    return out.getvalue()


def display_width(png: bytes) -> int | None:
    """The width in CSS pixels at which to show a PNG drawn at DPI (its DISPLAY_DPI size);
    None if `png` is not a PNG. The width is read from the PNG header (IHDR)."""
    if len(png) < 24 or not png.startswith(b"\x89PNG\r\n\x1a\n"):
        return None
    pixels = int.from_bytes(png[16:20], "big")
    return round(pixels * DISPLAY_DPI / DPI)


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
    """A frameless legend centred under the panels."""
    ncol = max(1, min(len(handles), columns))
    figure.legend(
        handles=handles, loc="lower center", ncol=ncol, fontsize=LEGEND_FONTSIZE, frameon=False
    )


def legend_rows(count: int, columns: int = 5) -> int:
    """How many rows a bottom legend of `count` entries takes."""
    return max(1, math.ceil(count / max(1, columns)))


def side_by_side(
    points: Sequence[tuple[float, float]],
    xlim: tuple[float, float],
    ylim: tuple[float, float],
    tolerance: float = 0.03,
    step: float = 7.0,
) -> tuple[list[float], list[list[int]]]:
    """Horizontal offsets (in points) that set apart points which would hide each other: those
    closer than `tolerance` of the axes' span in both directions, joined transitively, are
    spread `step` points apart around their place, in the order of x. Returns the offsets
    (0 for a point alone) and the groups of two or more, as lists of indices."""
    spans = (xlim[1] - xlim[0], ylim[1] - ylim[0])
    scaled = [
        tuple(
            (v - lim[0]) / span if span > 0 else 0.0
            for v, lim, span in zip(p, (xlim, ylim), spans, strict=True)
        )
        for p in points
    ]
    parent = list(range(len(points)))

    def root(i: int) -> int:
        while parent[i] != i:
            i = parent[i]
        return i

    for i in range(len(points)):
        for j in range(i):
            if all(abs(a - b) < tolerance for a, b in zip(scaled[i], scaled[j], strict=True)):
                parent[root(i)] = root(j)
    clusters: dict[int, list[int]] = {}
    for i in range(len(points)):
        clusters.setdefault(root(i), []).append(i)
    offsets = [0.0] * len(points)
    groups = [members for members in clusters.values() if len(members) > 1]
    for members in groups:
        for k, i in enumerate(sorted(members, key=lambda m: points[m][0])):  # keeps x's order
            offsets[i] = (k - (len(members) - 1) / 2) * step
    return offsets, groups


def panel_note(axis: Axes, notes: list[str], width: int = 60) -> None:
    """Small grey lines under a panel's x label (each note wrapped at `width` characters; call
    after setting the label); tight_layout makes room for them."""
    import textwrap

    if not notes:
        return
    text = "\n".join(textwrap.fill(note, width) for note in notes)
    axis.annotate(
        text,
        xy=(0.0, 0.0),
        xycoords=(axis.transAxes, axis.xaxis.label),  # x: the panel's left; y: under the x label
        xytext=(0, -3),
        textcoords="offset points",
        ha="left",
        va="top",
        fontsize=7,
        color="#444444",
    )


def overlap_notes(names: Sequence[str], groups: list[list[int]]) -> list[str]:
    """One note per group of points drawn side by side (`side_by_side`), naming them."""
    return [
        "overlapping, drawn side by side: " + ", ".join(names[i] for i in group) for group in groups
    ]


def tick_label(label: str, width: int = 18) -> str:
    """A mechanism label as an axis tick: broken after a comma (or, failing that, a slash)
    into lines of about `width` characters, so that rotated neighbours do not collide."""
    import textwrap

    if len(label) <= width:
        return label
    if ", " in label:
        head, tail = label.split(", ", 1)
        return f"{head},\n{tick_label(tail, width)}"
    return "\n".join(textwrap.wrap(label.replace("/", "/ "), width)).replace("/ ", "/")


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
    colors = mechanism_colors(labels)
    return present, colors, [k for k in sweep_keys if k in frame.columns]
