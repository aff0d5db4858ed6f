"""The frontier figure: revenue (RPM in feed markets) against welfare per mechanism, with 95%
t-intervals both ways, one panel per scenario."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from ega_sim.report.figures.common import (
    all_finite,
    error_bars,
    figure_style,
    hide_unused,
    paired_seeds,
    palette,
    panel_figure,
    to_png,
)
from ega_sim.report.formats import metric_label
from ega_sim.report.sweep_points import at_sweep_point, summary_row, sweep_points


def frontier_metrics(feed: bool) -> tuple[str, str]:
    """(x, y) of the frontier: welfare and revenue (RPM in a feed market)."""
    return ("welfare_per_request", "rpm" if feed else "revenue_per_request")


def frontier_png(
    summary: pd.DataFrame,
    *,
    scenarios: Sequence[str],
    labels: Sequence[str],
    sweep_keys: Sequence[str] = (),
    feed: Sequence[str] | set[str] = (),
) -> bytes | None:
    """Revenue (RPM in feed markets) against welfare per label, one panel per scenario: means
    with 95% t-intervals in both directions, the seeds as faint dots, sweep points joined."""
    present = []
    for scenario in scenarios:
        x_metric, y_metric = frontier_metrics(scenario in feed)
        part = summary[summary["scenario"] == scenario]
        if (part["metric"] == x_metric).any() and (part["metric"] == y_metric).any():
            present.append(scenario)
    if not present:
        return None
    colors = dict(zip(labels, palette(len(labels)), strict=False))
    with figure_style():
        figure, axes = panel_figure(len(present), 4.4, 3.4)
        for axis, scenario in zip(np.ravel(axes), present, strict=False):
            x_metric, y_metric = frontier_metrics(scenario in feed)
            part = summary[summary["scenario"] == scenario]
            for label in labels:
                mine = part[part["label"] == label]
                path = []
                for point in sweep_points(mine, sweep_keys):
                    at = mine[at_sweep_point(mine, sweep_keys, point)]
                    x_row, y_row = (
                        summary_row(at, label, x_metric),
                        summary_row(at, label, y_metric),
                    )
                    if (
                        x_row is None
                        or y_row is None
                        or not all_finite(x_row["mean"], y_row["mean"])
                    ):
                        continue
                    xs, ys = paired_seeds(x_row, y_row)
                    axis.scatter(xs, ys, s=10, color=colors.get(label), alpha=0.3, edgecolor="none")
                    axis.errorbar(
                        x_row["mean"],
                        y_row["mean"],
                        xerr=error_bars(x_row),
                        yerr=error_bars(y_row),
                        fmt="o",
                        markersize=5,
                        color=colors.get(label),
                        capsize=2,
                        linewidth=1,
                        label=label if not path else None,
                    )
                    path.append((x_row["mean"], y_row["mean"]))
                if len(path) > 1:
                    axis.plot(
                        *zip(*path, strict=True), color=colors.get(label), linewidth=0.8, alpha=0.6
                    )
            axis.set_xlabel(metric_label(x_metric))
            axis.set_ylabel(metric_label(y_metric))
            axis.set_title(scenario)
            axis.legend(fontsize=6)
        hide_unused(axes, len(present))
        figure.suptitle("Revenue against welfare (mean, 95% t-intervals; faint dots = seeds)")
        figure.tight_layout()
        return to_png(figure)
