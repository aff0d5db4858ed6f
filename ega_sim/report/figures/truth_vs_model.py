"""The truth-vs-model figure: CTR-poi, RPM and psi under the ground-truth user model against the
mechanism's own model, beside the y = x line of an unbiased model.

Mechanisms that share an allocation share its clicks (cascade/gsp and cascade/vcg, ega/* priced
three ways), so their points coincide: each label has its own marker, and points that would
hide each other are drawn side by side, a few points apart (in the order of their x), with a
note under the panel naming them. A label without a figure on a panel (no own-model psi) is
named there too."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import pandas as pd

from ega_sim.report.figures.common import (
    all_finite,
    bottom_legend,
    error_bars,
    figure_style,
    legend_rows,
    mechanism_colors,
    mechanism_markers,
    overlap_notes,
    paired_seeds,
    panel_note,
    percent_axis,
    pyplot,
    side_by_side,
    to_png,
)
from ega_sim.report.formats import metric_label
from ega_sim.report.sweep_points import at_sweep_point, summary_row, sweep_point_text, sweep_points

TRUTH_MODEL_PAIRS = (("ctr_poi", "ctr_poi_model"), ("rpm", "rpm_model"), ("psi", "psi_model"))
FILLS = ("full", "none", "left", "bottom")  # one per scenario when a figure holds several


@dataclass(frozen=True)
class _Point:
    name: str  # label, with the scenario and sweep point when they vary
    label: str
    scenario: str
    x_row: pd.Series
    y_row: pd.Series


def _panel_points(
    summary: pd.DataFrame,
    scenarios: Sequence[str],
    labels: Sequence[str],
    sweep_keys: Sequence[str],
    truth: str,
    model: str,
) -> tuple[list[_Point], list[str]]:
    """The points of one panel, and the names that have the truth's figure but no model's."""
    points, missing = [], []
    several = len([s for s in scenarios if (summary["scenario"] == s).any()]) > 1
    for scenario in scenarios:
        part = summary[summary["scenario"] == scenario]
        for label in labels:
            mine = part[part["label"] == label]
            for point in sweep_points(mine, sweep_keys):
                at = mine[at_sweep_point(mine, sweep_keys, point)]
                x_row, y_row = summary_row(at, label, truth), summary_row(at, label, model)
                where = sweep_point_text(sweep_keys, point)
                name = (
                    label
                    + (f" ({where})" if where else "")
                    + (f" on {scenario}" if several else "")
                )
                if x_row is None or not all_finite(x_row["mean"]):
                    continue
                if y_row is None or not all_finite(y_row["mean"]):
                    missing.append(name)
                    continue
                points.append(_Point(name, label, scenario, x_row, y_row))
    return points, missing


def _limits(points: list[_Point]) -> tuple[float, float]:
    """One range for both axes holding every mean with its interval, so that y = x is the
    diagonal and a model's bias reads as the distance above or below it."""
    values = []
    for point in points:
        for row in (point.x_row, point.y_row):
            values += [float(v) for v in (row["mean"], row["low"], row["high"]) if all_finite(v)]
    low, high = min(values), max(values)
    pad = 0.06 * (high - low) if high > low else 0.05 * max(abs(high), 1e-9)
    return low - pad, high + pad


def truth_vs_model_png(
    summary: pd.DataFrame,
    *,
    scenarios: Sequence[str],
    labels: Sequence[str],
    sweep_keys: Sequence[str] = (),
) -> bytes | None:
    """Ground truth (x) against the mechanism's own model (y): CTR-poi, RPM and psi, one point
    per scenario, label and sweep point with 95% intervals both ways, and the y = x line;
    coinciding points side by side and named under the panel, as are labels without a model
    figure."""
    from matplotlib.colors import to_rgb
    from matplotlib.lines import Line2D
    from matplotlib.ticker import MaxNLocator
    from matplotlib.transforms import offset_copy

    pairs = [
        (truth, model)
        for truth, model in TRUTH_MODEL_PAIRS
        if (summary["metric"] == truth).any() and (summary["metric"] == model).any()
    ]
    if not pairs:
        return None
    colors = mechanism_colors(labels)
    markers = mechanism_markers(labels)
    fills = {s: FILLS[i % len(FILLS)] for i, s in enumerate(scenarios)}
    plt = pyplot()
    drawn: set[str] = set()
    drawn_scenarios: set[str] = set()
    with figure_style():
        figure, axes = plt.subplots(1, len(pairs), figsize=(4.2 * len(pairs), 4.4), squeeze=False)
        for axis, (truth, model) in zip(axes[0], pairs, strict=True):
            points, missing = _panel_points(summary, scenarios, labels, sweep_keys, truth, model)
            notes = []
            if points:
                low, high = _limits(points)
                axis.set_xlim(low, high)
                axis.set_ylim(low, high)
                axis.plot([low, high], [low, high], color="grey", linestyle="--", linewidth=1)
                means = [(float(p.x_row["mean"]), float(p.y_row["mean"])) for p in points]
                offsets, groups = side_by_side(means, (low, high), (low, high))
                for point, offset in zip(points, offsets, strict=True):
                    shifted = offset_copy(axis.transData, fig=figure, x=offset, units="points")
                    xs, ys = paired_seeds(point.x_row, point.y_row)
                    style = {"color": colors[point.label], "transform": shifted}
                    axis.scatter(xs, ys, s=8, alpha=0.3, edgecolor="none", **style)
                    axis.errorbar(
                        point.x_row["mean"],
                        point.y_row["mean"],
                        xerr=error_bars(point.x_row),
                        yerr=error_bars(point.y_row),
                        fmt=markers[point.label],
                        fillstyle=fills[point.scenario],
                        markersize=6,
                        capsize=2,
                        elinewidth=0.8,
                        ecolor=(*to_rgb(style["color"]), 0.6),
                        **style,
                    )
                    drawn.add(point.label)
                    drawn_scenarios.add(point.scenario)
                notes += overlap_notes([p.name for p in points], groups)
            if missing:
                notes.append("no own-model figure: " + ", ".join(missing))
            axis.xaxis.set_major_locator(MaxNLocator(5))
            axis.yaxis.set_major_locator(MaxNLocator(5))
            axis.set_aspect("equal", adjustable="box")
            axis.set_xlabel(metric_label(truth))
            axis.set_ylabel(metric_label(model))
            panel_note(axis, notes)
            percent_axis(axis, truth, "x")
            percent_axis(axis, model, "y")
        handles = [
            Line2D([], [], color=colors[lab], marker=markers[lab], linestyle="", label=lab)
            for lab in colors
            if lab in drawn
        ]
        if len(drawn_scenarios) > 1:
            handles += [
                Line2D([], [], color="grey", marker="o", fillstyle=fills[s], linestyle="", label=s)
                for s in scenarios
                if s in drawn_scenarios
            ]
        bottom_legend(figure, handles, columns=4)
        figure.suptitle("Ground truth against the mechanism's own model (dashed: y = x)")
        figure.tight_layout(rect=(0, 0.06 * legend_rows(len(handles), 4), 1, 1))
        return to_png(figure)
