"""The regret figure: ECDFs of ex-post regret per (request, bidder) pair, scaled by the cell's
mean truthful utility, on a symlog axis that keeps the share of zero regret visible."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import pandas as pd

from ega_sim.report.figures.common import (
    LEGEND_FONTSIZE,
    LINESTYLES,
    figure_style,
    hide_unused,
    panel_figure,
    scenario_panels,
    to_png,
)
from ega_sim.report.sweep_points import at_sweep_point, sweep_point_text, sweep_points


def _normalized_regret(part: pd.DataFrame) -> tuple[pd.Series, set[str]]:
    """Regret divided by its cell's mean truthful utility; a cell whose truthful utility is 0
    (first price) is divided by the scenario's mean instead. Returns the series and the cells
    that fell back."""
    cell = part["cell"] if "cell" in part.columns else part["label"].astype(str)
    cell_utility = part.groupby(cell)["utility"].transform("mean")
    scenario_utility = float(part["utility"].mean())
    fallback = cell_utility <= 0
    scale = cell_utility.where(~fallback, scenario_utility)
    scale = scale.where(scale > 0, 1.0)
    return part["regret"] / scale, set(cell[fallback].astype(str))


def regret_png(
    regret: pd.DataFrame,
    *,
    scenarios: Sequence[str],
    labels: Sequence[str],
    sweep_keys: Sequence[str] = (),
) -> bytes | None:
    """ECDFs of ex-post regret per (request, bidder) pair over the cell's mean truthful utility,
    per label, one panel per scenario, on a symlog axis: zero regret sits at x = 0 and its share
    (given in the legend) is the curve's height there."""
    import seaborn as sns

    if regret is None or regret.empty:
        return None
    present, colors, keys = scenario_panels(regret, scenarios, labels, sweep_keys)
    if not present:
        return None
    fell_back_anywhere = False
    with figure_style():
        figure, axes = panel_figure(len(present), 4.8, 3.6)
        for axis, scenario in zip(np.ravel(axes), present, strict=False):
            part = regret[regret["scenario"] == scenario]
            normalized, fell_back = _normalized_regret(part)
            positive = normalized[normalized > 0]
            threshold = 1e-3
            if len(positive):
                threshold = float(10 ** math.floor(math.log10(float(positive.quantile(0.05)))))
                threshold = min(max(threshold, 1e-6), 1e-1)
            for label in labels:
                mine = part[part["label"] == label]
                for s, point in enumerate(sweep_points(mine, keys)):
                    rows = mine[at_sweep_point(mine, keys, point)]
                    values = normalized.loc[rows.index].to_numpy(float)
                    values = values[np.isfinite(values)]
                    if values.size == 0:
                        continue
                    text = sweep_point_text(keys, point)
                    name = f"{label} ({text})" if text else label
                    zero_share = float(np.mean(values == 0))
                    cells = set(rows["cell"].astype(str)) if "cell" in rows.columns else set()
                    marker = " *" if cells & fell_back else ""
                    fell_back_anywhere |= bool(marker)
                    sns.ecdfplot(
                        x=values,
                        ax=axis,
                        color=colors.get(label),
                        linestyle=LINESTYLES[s % len(LINESTYLES)],
                        linewidth=1.3,
                        label=f"{name}: {zero_share:.0%} zero{marker}",
                    )
            axis.set_xscale("symlog", linthresh=threshold)
            axis.set_xlim(left=-threshold / 2)  # the jump at zero regret stays visible
            axis.set_xlabel(f"regret / mean truthful utility (linear below {threshold:g})")
            axis.set_ylabel("share of pairs")
            axis.set_title(scenario)
            axis.legend(fontsize=LEGEND_FONTSIZE - 1, loc="lower right")
        hide_unused(axes, len(present))
        title = "Ex-post regret per (request, bidder) pair"
        if fell_back_anywhere:  # a cell whose truthful utility is 0 (first price)
            title += "\n(* truthful utility 0: scaled by the scenario's mean utility instead)"
        figure.suptitle(title)
        figure.tight_layout()
        return to_png(figure)
