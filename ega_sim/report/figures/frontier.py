"""The frontier figure: revenue (RPM in feed markets) against welfare per mechanism, with 95%
intervals both ways, one panel per scenario. Mechanisms with the same allocation and price
(cascade/vcg and cascade/threshold in a position auction) land on one point: each label has its
own marker, and points that would hide each other are drawn side by side and named."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from ega_sim.report.figures.common import (
    all_finite,
    bottom_legend,
    error_bars,
    figure_style,
    hide_unused,
    legend_rows,
    mechanism_colors,
    mechanism_markers,
    overlap_notes,
    paired_seeds,
    panel_figure,
    panel_note,
    side_by_side,
    to_png,
)
from ega_sim.report.formats import metric_label
from ega_sim.report.sweep_points import (
    at_sweep_point,
    is_missing,
    sort_key,
    summary_row,
    sweep_points,
)


def frontier_metrics(feed: bool) -> tuple[str, str]:
    """(x, y) of the frontier: welfare and revenue (RPM in a feed market)."""
    return ("welfare_per_request", "rpm" if feed else "revenue_per_request")


def _panel_points(
    part: pd.DataFrame, labels: Sequence[str], sweep_keys: Sequence[str], x: str, y: str
) -> list[tuple[str, pd.Series, pd.Series, tuple]]:
    """(label, x row, y row, sweep point) of every label and sweep point with both means
    finite."""
    points = []
    for label in labels:
        mine = part[part["label"] == label]
        for point in sweep_points(mine, sweep_keys):
            at = mine[at_sweep_point(mine, sweep_keys, point)]
            x_row, y_row = summary_row(at, label, x), summary_row(at, label, y)
            found = x_row is not None and y_row is not None
            if found and all_finite(x_row["mean"], y_row["mean"]):
                points.append((label, x_row, y_row, point))
    return points


def _sweep_paths(
    points: list[tuple[str, pd.Series, pd.Series, tuple]], sweep_keys: Sequence[str]
) -> list[tuple[str, list[tuple[float, float]]]]:
    """(label, path) joining one label's points along one sweep key, the other keys fixed, in
    the key's order: an alpha sweep and a beta sweep are two paths, never one."""
    lines: dict[tuple, list[tuple[object, float, float]]] = {}
    for label, x_row, y_row, point in points:
        for k, value in enumerate(point):
            if is_missing(value):
                continue
            others = tuple("-" if is_missing(v) else v for i, v in enumerate(point) if i != k)
            key = (label, sweep_keys[k], others)
            lines.setdefault(key, []).append((value, float(x_row["mean"]), float(y_row["mean"])))
    paths = []
    for (label, _, _), line in lines.items():
        if len(line) > 1:
            ordered = sorted(line, key=lambda item: sort_key(item[0]))
            paths.append((label, [(x, y) for _, x, y in ordered]))
    return paths


def _span(rows: list[pd.Series]) -> tuple[float, float]:
    values = [float(v) for r in rows for v in (r["mean"], r["low"], r["high"]) if all_finite(v)]
    low, high = min(values), max(values)
    pad = 0.06 * (high - low) if high > low else 0.05 * max(abs(high), 1e-9)
    return low - pad, high + pad


def frontier_png(
    summary: pd.DataFrame,
    *,
    scenarios: Sequence[str],
    labels: Sequence[str],
    sweep_keys: Sequence[str] = (),
    feed: Sequence[str] | set[str] = (),
) -> bytes | None:
    """Revenue (RPM in feed markets) against welfare per label, one panel per scenario: means
    with 95% intervals in both directions, the seeds as faint dots, sweep points joined;
    without sweeps, overlapping points of different labels side by side, named under the
    panel."""
    from matplotlib.colors import to_rgb
    from matplotlib.lines import Line2D
    from matplotlib.transforms import offset_copy

    present = []
    for scenario in scenarios:
        x_metric, y_metric = frontier_metrics(scenario in feed)
        part = summary[summary["scenario"] == scenario]
        if (part["metric"] == x_metric).any() and (part["metric"] == y_metric).any():
            present.append(scenario)
    if not present:
        return None
    colors, markers = mechanism_colors(labels), mechanism_markers(labels)
    drawn: set[str] = set()
    with figure_style():
        figure, axes = panel_figure(len(present), 4.6, 3.6)
        for axis, scenario in zip(np.ravel(axes), present, strict=False):
            x_metric, y_metric = frontier_metrics(scenario in feed)
            part = summary[summary["scenario"] == scenario]
            points = _panel_points(part, labels, sweep_keys, x_metric, y_metric)
            if not points:
                continue
            xlim, ylim = _span([p[1] for p in points]), _span([p[2] for p in points])
            axis.set_xlim(*xlim)
            axis.set_ylim(*ylim)
            swept = len(points) > len({p[0] for p in points})
            offsets, groups = [0.0] * len(points), []
            if not swept:  # a sweep's path joins its points: leave them where they are
                means = [(float(p[1]["mean"]), float(p[2]["mean"])) for p in points]
                offsets, groups = side_by_side(means, xlim, ylim)
            for (label, x_row, y_row, _), offset in zip(points, offsets, strict=True):
                shifted = offset_copy(axis.transData, fig=figure, x=offset, units="points")
                xs, ys = paired_seeds(x_row, y_row)
                style = {"color": colors[label], "transform": shifted}
                axis.scatter(xs, ys, s=10, alpha=0.3, edgecolor="none", **style)
                axis.errorbar(
                    x_row["mean"],
                    y_row["mean"],
                    xerr=error_bars(x_row),
                    yerr=error_bars(y_row),
                    fmt=markers[label],
                    markersize=6,
                    capsize=2,
                    elinewidth=0.8,
                    ecolor=(*to_rgb(style["color"]), 0.6),
                    **style,
                )
                drawn.add(label)
            for label, path in _sweep_paths(points, sweep_keys):
                xs, ys = zip(*path, strict=True)
                axis.plot(xs, ys, color=colors[label], linewidth=0.8, alpha=0.6)
            names = [p[0] for p in points]
            axis.set_xlabel(metric_label(x_metric))
            axis.set_ylabel(metric_label(y_metric))
            panel_note(axis, overlap_notes(names, groups))
            axis.set_title(scenario)
        hide_unused(axes, len(present))
        handles = [
            Line2D([], [], color=colors[lab], marker=markers[lab], linestyle="", label=lab)
            for lab in colors
            if lab in drawn
        ]
        columns = 4
        bottom_legend(figure, handles, columns=columns)
        figure.suptitle("Revenue against welfare (means, 95% intervals; faint dots = seeds)")
        rows = axes.shape[0]
        bottom = 0.06 * legend_rows(len(handles), columns) / rows
        figure.tight_layout(rect=(0, bottom, 1, 1))
        return to_png(figure)
