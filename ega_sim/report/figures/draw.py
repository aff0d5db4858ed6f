"""Drawing the figures an experiment lists, in the listed order, each with its title, caption
and file stem; a figure whose data are absent is left out."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

import pandas as pd

from ega_sim.report.figures.comparison import comparison_metrics, comparison_png
from ega_sim.report.figures.frontier import frontier_png
from ega_sim.report.figures.regret import regret_png
from ega_sim.report.figures.sweeps import sweep_metrics, sweeps_png
from ega_sim.report.figures.truth_vs_model import truth_vs_model_png
from ega_sim.report.figures.utility_curve import utility_curve_png
from ega_sim.report.formats import metric_label, sweep_name
from ega_sim.report.names import FIGURES

FIGURE_NAMES = FIGURES  # an experiment file's `figures` choose among these
INTERVALS = (
    "Student-t over seeds, on the log scale for figures that cannot be negative and the logit "
    "scale for rates; regret figures over requests"
)


@dataclass(frozen=True)
class DrawnFigure:
    """One figure of a report: its file stem, a title, a one-line caption and the PNG."""

    name: str
    title: str
    caption: str
    png: bytes


def file_stem(text: str) -> str:
    """A safe file-name part for a scenario name or path."""
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", text).strip("._") or "scenario"


def draw_figures(
    experiment: Mapping,
    summary: pd.DataFrame,
    *,
    curves: pd.DataFrame | None = None,
    regret: pd.DataFrame | None = None,
    feed: set[str] | None = None,
) -> list[DrawnFigure]:
    """Every figure the experiment lists that its data can draw, in the listed order."""
    labels = list(experiment["labels"])
    scenarios = list(experiment["scenarios"])
    sweep_keys = list(experiment.get("sweep_keys", []))
    kind = experiment.get("kind", "evaluate")
    feed = feed or set()
    drawn: list[DrawnFigure] = []

    def add(name: str, title: str, caption: str, png: bytes | None) -> None:
        if png is not None:
            drawn.append(DrawnFigure(name, title, caption, png))

    for figure in experiment.get("figures", []):
        if figure == "comparison":
            for scenario in scenarios:
                metrics = ", ".join(
                    metric_label(m) for m in comparison_metrics(kind, scenario in feed)
                )
                add(
                    f"comparison_{file_stem(scenario)}",
                    f"Comparison on {scenario}",
                    f"{metrics} per mechanism on {scenario}: bars are means over seeds, black "
                    f"bars their 95% intervals ({INTERVALS}), dots the seeds.",
                    comparison_png(
                        summary,
                        scenario=scenario,
                        labels=labels,
                        sweep_keys=sweep_keys,
                        kind=kind,
                        feed=scenario in feed,
                    ),
                )
        elif figure == "sweeps":
            for scenario in scenarios:
                metrics = " and ".join(metric_label(m) for m in sweep_metrics(scenario in feed))
                swept = ", ".join(sweep_name(k) for k in sweep_keys)
                add(
                    f"sweeps_{file_stem(scenario)}",
                    f"Sweeps on {scenario}",
                    f"{metrics} on {scenario} against {swept}: lines are means over seeds, bands "
                    f"95% intervals ({INTERVALS}), dots the seeds (the form of the paper's "
                    "Figure 5).",
                    sweeps_png(
                        summary,
                        scenario=scenario,
                        labels=labels,
                        sweep_keys=sweep_keys,
                        feed=scenario in feed,
                    ),
                )
        elif figure == "utility_curve":
            add(
                "utility_curve",
                "Utility against bid multiplier",
                "Mean utility of one advertiser bidding multiplier x value against truthful "
                "opponents; the light bands between thin lines are 95% intervals (t over seeds, "
                "or ±1.96 standard errors over requests with one seed; wide where a mechanism "
                "ran on few requests); the dashed line is truthful bidding.",
                utility_curve_png(
                    curves, scenarios=scenarios, labels=labels, sweep_keys=sweep_keys
                ),
            )
        elif figure == "regret":
            add(
                "regret",
                "Regret distributions",
                "ECDF of ex-post regret per (request, bidder) pair over the cell's mean truthful "
                "utility, on a symlog axis: zero regret sits at 0 and its share, given in the "
                "legend, is the curve's height there (sample: pairs with regret or utility > 0).",
                regret_png(regret, scenarios=scenarios, labels=labels, sweep_keys=sweep_keys),
            )
        elif figure == "frontier":
            add(
                "frontier",
                "Revenue against welfare",
                "Revenue (RPM in feed markets) against welfare per request: means with 95% "
                f"intervals ({INTERVALS}) in both directions, faint dots the seeds.",
                frontier_png(
                    summary, scenarios=scenarios, labels=labels, sweep_keys=sweep_keys, feed=feed
                ),
            )
        elif figure == "truth_vs_model":
            add(
                "truth_vs_model",
                "Ground truth against the mechanism's model",
                "CTR-poi, RPM and psi under the ground-truth user model (x) against the "
                "mechanism's own model (y): points on the dashed y = x line mean an unbiased "
                f"model; error bars are 95% intervals ({INTERVALS}).",
                truth_vs_model_png(
                    summary, scenarios=scenarios, labels=labels, sweep_keys=sweep_keys
                ),
            )
    return drawn
