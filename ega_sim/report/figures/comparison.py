"""The comparison figure: per scenario, bars of each mechanism's mean over seeds with 95%
intervals and the seeds as dots, one panel per main metric."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import pandas as pd

from ega_sim.report.figures.common import (
    all_finite,
    bottom_legend,
    figure_style,
    mechanism_colors,
    percent_axis,
    pyplot,
    sweep_colors,
    tick_label,
    to_png,
)
from ega_sim.report.formats import metric_label
from ega_sim.report.sweep_points import (
    at_sweep_point,
    summary_row,
    sweep_point_text,
    sweep_points,
)

FEED_PANELS = ("rpm", "ctr_poi", "ctr_img", "welfare_per_request", "psi")
POSITION_PANELS = (
    "revenue_per_request",
    "welfare_per_request",
    "utility_per_request",
    "regret_mean",
    "psi",
)
MISREPORT_PANELS = ("best_gain", "bandit_gain", "ppo_gain")


def comparison_metrics(kind: str, feed: bool) -> tuple[str, ...]:
    """The panels of a comparison figure: by experiment kind and scenario kind."""
    if kind == "misreport":
        return MISREPORT_PANELS
    return FEED_PANELS if feed else POSITION_PANELS


def comparison_png(
    summary: pd.DataFrame,
    *,
    scenario: str,
    labels: Sequence[str],
    sweep_keys: Sequence[str] = (),
    kind: str = "evaluate",
    feed: bool = False,
) -> bytes | None:
    """Bars of the mean over seeds per label with 95% interval error bars and every seed as a
    dot, one panel per main metric; with sweeps, one bar per sweep point (hue)."""
    from matplotlib.transforms import blended_transform_factory

    part = summary[summary["scenario"] == scenario]
    panels = [m for m in comparison_metrics(kind, feed) if (part["metric"] == m).any()]
    present = [label for label in labels if (part["label"] == label).any()]
    if not panels or not present:
        return None
    points = sweep_points(part, sweep_keys)
    colors = mechanism_colors(labels)
    hue_colors = sweep_colors(len(points))
    width = 0.8 / len(points)
    panel_width = max(2.3, 0.38 * len(present) * max(1.0, len(points) / 2))
    plt = pyplot()
    with figure_style():
        figure, axes = plt.subplots(
            1,
            len(panels),
            figsize=(min(18.0, max(7.0, 0.5 + panel_width * len(panels))), 3.4),
            squeeze=False,
        )
        for axis, metric in zip(axes[0], panels, strict=True):
            for h, point in enumerate(points):
                at_point = part[at_sweep_point(part, sweep_keys, point)]
                for i, label in enumerate(present):
                    row = summary_row(at_point, label, metric)
                    x = i - 0.4 + width * (h + 0.5)
                    color = hue_colors[h] if len(points) > 1 else colors[label]
                    mean = math.nan if row is None else row["mean"]
                    if not all_finite(mean):  # no figure (e.g. psi of first price): say so
                        axis.text(
                            x,
                            0.02,
                            "inf" if math.isinf(mean) else "n/a",
                            transform=blended_transform_factory(axis.transData, axis.transAxes),
                            ha="center",
                            va="bottom",
                            fontsize=8,
                        )
                        continue
                    low, high = row["low"], row["high"]
                    axis.bar(x, mean, width * 0.9, color=color, alpha=0.75)
                    if all_finite(low, high):
                        axis.errorbar(
                            x,
                            mean,
                            yerr=[[mean - low], [high - mean]],
                            fmt="none",
                            ecolor="black",
                            capsize=3,
                            linewidth=1,
                        )
                    seeds = [v for v in row["values"] if math.isfinite(v)]
                    offsets = np.linspace(-width / 5, width / 5, len(seeds)) if seeds else []
                    axis.scatter(x + np.asarray(offsets), seeds, s=10, color="black", zorder=3)
            axis.set_xticks(range(len(present)))
            axis.set_xticklabels(
                [tick_label(label) for label in present],
                rotation=45,
                ha="right",
                rotation_mode="anchor",
            )
            axis.set_title(metric_label(metric))
            percent_axis(axis, metric)
        title = f"{scenario}: means with 95% intervals, dots = seeds"
        if len(points) > 1:
            from matplotlib.patches import Patch

            handles = [
                Patch(color=hue_colors[h], label=sweep_point_text(sweep_keys, p) or "(no sweep)")
                for h, p in enumerate(points)
            ]
            bottom_legend(figure, handles, columns=6)
            figure.suptitle(title)
            figure.tight_layout(rect=(0, 0.08, 1, 1))
        else:
            figure.suptitle(title)
            figure.tight_layout()
        return to_png(figure)
