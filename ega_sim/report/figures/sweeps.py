"""The sweeps figure (the form of the paper's Figure 5): RPM and CTR-poi, or revenue and
welfare, against each swept value, one line per mechanism with a 95% band."""

from __future__ import annotations

import math
from collections.abc import Sequence

import pandas as pd

from ega_sim.report.figures.common import (
    LINESTYLES,
    all_finite,
    bottom_legend,
    figure_style,
    mechanism_colors,
    percent_axis,
    pyplot,
    to_png,
)
from ega_sim.report.formats import format_sweep_value, metric_label, sweep_name
from ega_sim.report.sweep_points import at_sweep_point, sweep_point_text, sweep_points


def sweep_metrics(feed: bool) -> tuple[str, str]:
    """What the sweep figure plots: RPM and CTR-poi (the paper's Figure 5) or, in a position
    auction, revenue and welfare."""
    return ("rpm", "ctr_poi") if feed else ("revenue_per_request", "welfare_per_request")


def sweeps_png(
    summary: pd.DataFrame,
    *,
    scenario: str,
    labels: Sequence[str],
    sweep_keys: Sequence[str],
    feed: bool = False,
) -> bytes | None:
    """Per sweep key (rows), RPM and CTR-poi (columns) against the swept value, one line per
    label (line style per value of the other sweep keys), a 95% band and the seeds as dots."""
    part = summary[summary["scenario"] == scenario]
    keys = [k for k in sweep_keys if k in part.columns and part[k].notna().any()]
    metrics = [m for m in sweep_metrics(feed) if (part["metric"] == m).any()]
    if not keys or not metrics:
        return None
    colors = mechanism_colors(labels)
    plt = pyplot()
    with figure_style():
        figure, axes = plt.subplots(
            len(keys),
            len(metrics),
            figsize=(4.2 * len(metrics), 3.0 * len(keys) + 0.4),
            squeeze=False,
        )
        styles_used: dict[str, str] = {}
        for r, key in enumerate(keys):
            rows = part[part[key].notna()]
            others = [k for k in keys if k != key]
            numeric = pd.to_numeric(rows[key], errors="coerce")
            is_numeric = bool(numeric.notna().all())
            categories = [p[0] for p in sweep_points(rows, [key])]
            for c, metric in enumerate(metrics):
                axis = axes[r][c]
                for label in labels:
                    lines = rows[(rows["label"] == label) & (rows["metric"] == metric)]
                    if lines.empty:
                        continue
                    for s, other in enumerate(sweep_points(lines, others)):
                        line = lines[at_sweep_point(lines, others, other)]
                        if is_numeric:
                            line = line.assign(_x=pd.to_numeric(line[key])).sort_values("_x")
                            x = line["_x"].to_numpy(float)
                        else:
                            line = line.assign(_x=[categories.index(v) for v in line[key]])
                            line = line.sort_values("_x")
                            x = line["_x"].to_numpy(float)
                        style = LINESTYLES[s % len(LINESTYLES)]
                        other_text = sweep_point_text(others, other)
                        if other_text:
                            styles_used[other_text] = style
                        axis.plot(
                            x,
                            line["mean"],
                            marker="o",
                            markersize=4,
                            linestyle=style,
                            color=colors[label],
                            linewidth=1.4,
                        )
                        low = line["low"].to_numpy(float)
                        high = line["high"].to_numpy(float)
                        axis.fill_between(
                            x, low, high, color=colors[label], alpha=0.07, linewidth=0
                        )
                        for bound in (low, high):  # thin edges: overlapping bands stay legible
                            axis.plot(
                                x, bound, color=colors[label], linestyle=style, linewidth=0.5,
                                alpha=0.6,
                            )  # fmt: skip
                        if len(x) == 1 and all_finite(float(low[0]), float(high[0])):
                            mean = float(line["mean"].iloc[0])
                            axis.errorbar(
                                x,
                                [mean],
                                yerr=[[mean - low[0]], [high[0] - mean]],
                                fmt="none",
                                ecolor=colors[label],
                                capsize=3,
                            )
                        for xi, values in zip(x, line["values"], strict=True):
                            finite = [v for v in values if math.isfinite(v)]
                            axis.scatter(
                                [xi] * len(finite),
                                finite,
                                s=8,
                                color=colors[label],
                                alpha=0.6,
                                edgecolor="none",
                            )
                axis.set_xlabel(sweep_name(key))
                axis.set_title(metric_label(metric))
                if not is_numeric:
                    axis.set_xticks(range(len(categories)))
                    axis.set_xticklabels(
                        [format_sweep_value(v) for v in categories], rotation=30, ha="right"
                    )
                percent_axis(axis, metric)
        from matplotlib.lines import Line2D

        handles = [
            Line2D([], [], color=colors[lab], marker="o", label=lab)
            for lab in labels
            if (part["label"] == lab).any()
        ]
        handles += [
            Line2D([], [], color="grey", linestyle=s, label=t) for t, s in styles_used.items()
        ]
        bottom_legend(figure, handles)
        figure.suptitle(f"{scenario}: sweeps (mean over seeds, 95% bands, dots = seeds)")
        bottom = min(0.25, 0.06 + 0.03 * math.ceil(len(handles) / 5)) / max(1, len(keys) ** 0.5)
        figure.tight_layout(rect=(0, bottom, 1, 1))
        return to_png(figure)
