"""The utility curve: one advertiser's mean utility against its bid multiplier (others
truthful), with a 95% band and truthful bidding marked."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import pandas as pd

from ega_sim.report.figures.common import (
    LINESTYLES,
    bottom_legend,
    figure_style,
    hide_unused,
    legend_rows,
    panel_figure,
    scenario_panels,
    to_png,
)
from ega_sim.report.stats import t_interval
from ega_sim.report.sweep_points import at_sweep_point, sweep_point_text, sweep_points


def _curve_band(line: pd.DataFrame) -> pd.DataFrame:
    """Mean utility per multiplier and its 95% band: t over the seeds' curves when there are
    several seeds, else the one curve's ±1.96 standard errors over requests."""
    rows = []
    for multiplier, at in line.groupby("multiplier", sort=True):
        utilities = at["utility"].to_numpy(float)
        if len(utilities) >= 2:
            mean, low, high = t_interval(utilities)
        else:
            mean = float(utilities[0])
            se = float(at["utility_se"].iloc[0]) if "utility_se" in at.columns else math.nan
            low, high = mean - 1.96 * se, mean + 1.96 * se
        rows.append((float(multiplier), mean, low, high))
    return pd.DataFrame(rows, columns=["multiplier", "mean", "low", "high"])


def utility_curve_png(
    curves: pd.DataFrame,
    *,
    scenarios: Sequence[str],
    labels: Sequence[str],
    sweep_keys: Sequence[str] = (),
) -> bytes | None:
    """Mean utility of one advertiser against its bid multiplier (others truthful), one line per
    label and one panel per scenario, with a 95% band and a line at 1 (truthful bidding)."""
    if curves is None or curves.empty:
        return None
    present, colors, keys = scenario_panels(curves, scenarios, labels, sweep_keys)
    if not present:
        return None
    from matplotlib.lines import Line2D

    handles: dict[str, Line2D] = {}
    with figure_style():
        figure, axes = panel_figure(len(present), 4.8, 3.4)
        for axis, scenario in zip(np.ravel(axes), present, strict=False):
            part = curves[curves["scenario"] == scenario]
            for label in labels:
                mine = part[part["label"] == label]
                points = sweep_points(mine, keys)
                for s, point in enumerate(points):
                    line = _curve_band(mine[at_sweep_point(mine, keys, point)])
                    if line.empty:
                        continue
                    text = sweep_point_text(keys, point)
                    name = f"{label} ({text})" if text else label
                    style = {
                        "color": colors.get(label),
                        "linestyle": LINESTYLES[s % len(LINESTYLES)],
                    }
                    (drawn,) = axis.plot(
                        line["multiplier"], line["mean"], linewidth=1.6, label=name, **style
                    )
                    handles.setdefault(name, drawn)
                    # A light band edged by thin lines: wide bands (few requests) stay readable
                    # without hiding the other curves.
                    axis.fill_between(
                        line["multiplier"],
                        line["low"],
                        line["high"],
                        color=colors.get(label),
                        alpha=0.07,
                        linewidth=0,
                    )
                    for bound in ("low", "high"):
                        axis.plot(
                            line["multiplier"], line[bound], linewidth=0.5, alpha=0.6, **style
                        )
            axis.axvline(1.0, color="grey", linestyle="--", linewidth=1)
            axis.set_xlabel("bid multiplier (bid / value)")
            axis.set_ylabel("utility per request")
            axis.set_title(scenario)
        hide_unused(axes, len(present))
        columns = 4
        bottom_legend(figure, list(handles.values()), columns=columns)
        figure.suptitle("Utility against misreport (others truthful; 95% bands)")
        figure.tight_layout(rect=(0, 0.06 * legend_rows(len(handles), columns), 1, 1))
        return to_png(figure)
