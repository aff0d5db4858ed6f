"""The truth-vs-model figure: CTR-poi, RPM and psi under the ground-truth user model against the
mechanism's own model, beside the y = x line of an unbiased model."""

from __future__ import annotations

from collections.abc import Sequence

import pandas as pd

from ega_sim.report.figures.common import (
    MARKERS,
    all_finite,
    bottom_legend,
    error_bars,
    figure_style,
    paired_seeds,
    palette,
    percent_axis,
    pyplot,
    to_png,
)
from ega_sim.report.formats import metric_label
from ega_sim.report.sweep_points import at_sweep_point, summary_row, sweep_points

TRUTH_MODEL_PAIRS = (("ctr_poi", "ctr_poi_model"), ("rpm", "rpm_model"), ("psi", "psi_model"))


def truth_vs_model_png(
    summary: pd.DataFrame,
    *,
    scenarios: Sequence[str],
    labels: Sequence[str],
    sweep_keys: Sequence[str] = (),
) -> bytes | None:
    """Ground truth (x) against the mechanism's own model (y): CTR-poi, RPM and psi, one point
    per scenario, label and sweep point with 95% t-intervals both ways, and the y = x line."""
    pairs = [
        (truth, model)
        for truth, model in TRUTH_MODEL_PAIRS
        if (summary["metric"] == truth).any() and (summary["metric"] == model).any()
    ]
    if not pairs:
        return None
    colors = dict(zip(labels, palette(len(labels)), strict=False))
    markers = {s: MARKERS[i % len(MARKERS)] for i, s in enumerate(scenarios)}
    plt = pyplot()
    drawn_scenarios: set[str] = set()
    with figure_style():
        figure, axes = plt.subplots(1, len(pairs), figsize=(4.0 * len(pairs), 3.8), squeeze=False)
        for axis, (truth, model) in zip(axes[0], pairs, strict=True):
            extent: list[float] = []
            for scenario in scenarios:
                part = summary[summary["scenario"] == scenario]
                for label in labels:
                    mine = part[part["label"] == label]
                    for point in sweep_points(mine, sweep_keys):
                        at = mine[at_sweep_point(mine, sweep_keys, point)]
                        x_row, y_row = summary_row(at, label, truth), summary_row(at, label, model)
                        if x_row is None or y_row is None:
                            continue
                        if not all_finite(x_row["mean"], y_row["mean"]):
                            continue
                        xs, ys = paired_seeds(x_row, y_row)
                        axis.scatter(
                            xs,
                            ys,
                            s=8,
                            color=colors.get(label),
                            alpha=0.3,
                            marker=markers[scenario],
                            edgecolor="none",
                        )
                        axis.errorbar(
                            x_row["mean"],
                            y_row["mean"],
                            xerr=error_bars(x_row),
                            yerr=error_bars(y_row),
                            fmt=markers[scenario],
                            markersize=5,
                            color=colors.get(label),
                            capsize=2,
                            linewidth=1,
                        )
                        extent += [x_row["mean"], y_row["mean"]]
                        drawn_scenarios.add(scenario)
            if extent:
                low, high = min(extent), max(extent)
                pad = 0.08 * (high - low) if high > low else 0.05 * max(abs(high), 1e-9)
                axis.plot(
                    [low - pad, high + pad],
                    [low - pad, high + pad],
                    color="grey",
                    linestyle="--",
                    linewidth=1,
                )
            axis.set_xlabel(f"{metric_label(truth)}")
            axis.set_ylabel(metric_label(model))
            percent_axis(axis, truth, "x")
            percent_axis(axis, model, "y")
        from matplotlib.lines import Line2D

        handles = [
            Line2D([], [], color=colors[lab], marker="o", linestyle="", label=lab)
            for lab in labels
            if (summary["label"] == lab).any()
        ]
        if len(drawn_scenarios) > 1:
            handles += [
                Line2D([], [], color="grey", marker=markers[s], linestyle="", label=s)
                for s in scenarios
                if s in drawn_scenarios
            ]
        bottom_legend(figure, handles)
        figure.suptitle("Ground truth against the mechanism's own model (dashed: y = x)")
        figure.tight_layout(rect=(0, 0.1, 1, 1))
        return to_png(figure)
