"""The report's figures (seaborn style, PNG bytes): means over seeds with 95% t-intervals and
the per-seed points, as DESIGN.md asks of every figure.

Each `*_png` function draws one figure from summaries (stats.summarize by scenario, label and
sweep keys) or from the raw curve and regret tables, and returns PNG bytes, or None when the
data hold nothing to draw. `draw_figures` draws the ones an experiment lists. Figures are made
with the Agg backend and closed after use; small (dpi 110) so that a report stays light.
"""

from __future__ import annotations

import contextlib
import io
import math
import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from ega_sim.experiments.stats import t_interval

DPI = 110
FIGURE_NAMES = ("comparison", "sweeps", "utility_curve", "regret", "frontier", "truth_vs_model")

METRIC_LABELS: dict[str, str] = {
    "revenue_per_request": "revenue / request",
    "rpm": "RPM",
    "welfare_per_request": "welfare / request",
    "utility_per_request": "utility / request",
    "clicks_per_request": "clicks / request",
    "ads_per_request": "ads / request",
    "ad_load": "ad load",
    "ctr_poi": "CTR-poi",
    "ctr_img": "CTR-img",
    "feed_ctr_poi": "feed CTR-poi",
    "gmv_per_request": "GMV / request",
    "regret_mean": "mean regret",
    "regret_max": "max regret",
    "psi": "psi (truth)",
    "psi_per_ad": "psi per ad",
    "regret_mean_model": "mean regret (own model)",
    "psi_model": "psi (own model)",
    "ir_violation_rate": "IR violations",
    "ctr_poi_model": "CTR-poi (own model)",
    "rpm_model": "RPM (own model)",
    "truthful_utility": "truthful utility",
    "best_multiplier": "best multiplier",
    "best_gain": "best-response gain",
    "bandit_multiplier": "bandit multiplier",
    "bandit_gain": "bandit gain",
    "ppo_multiplier": "PPO multiplier",
    "ppo_gain": "PPO gain",
}
PERCENT_METRICS = frozenset(
    {"psi", "psi_model", "psi_per_ad", "ir_violation_rate", "best_gain", "bandit_gain", "ppo_gain"}
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
TRUTH_MODEL_PAIRS = (("ctr_poi", "ctr_poi_model"), ("rpm", "rpm_model"), ("psi", "psi_model"))
_MARKERS = ("o", "s", "^", "D", "v", "P", "X", "*")
_LINESTYLES = ("-", "--", ":", "-.")


@dataclass(frozen=True)
class DrawnFigure:
    """One figure of a report: its file stem, a title, a one-line caption and the PNG."""

    name: str
    title: str
    caption: str
    png: bytes


# --- vocabulary shared with the report -----------------------------------------------------------


def metric_label(metric: str) -> str:
    """How a metric is named in figures and tables."""
    return METRIC_LABELS.get(metric, metric)


def sweep_name(key: str) -> str:
    """A sweep key's short name: its last component ("mechanism.bidding.alpha" -> "alpha")."""
    return key.rsplit(".", 1)[-1]


def format_sweep_value(value: object) -> str:
    """A sweep value as written in tables and legends (1.2, not 1.2000000000000002)."""
    if isinstance(value, float | int | np.floating | np.integer) and not isinstance(value, bool):
        return f"{float(value):g}"
    return str(value)


def _is_missing(value: object) -> bool:
    return isinstance(value, float | np.floating) and math.isnan(value)


def sweep_points(frame: pd.DataFrame, sweep_keys: Sequence[str]) -> list[tuple]:
    """The distinct sweep points of a table (tuples in sweep-key order), sorted by value,
    a point outside the sweep (NaN) last; [()] when there are no sweep keys."""
    keys = [key for key in sweep_keys if key in frame.columns]
    if not keys:
        return [()]
    distinct = frame[keys].drop_duplicates()
    points = [tuple(row) for row in distinct.itertuples(index=False, name=None)]

    def order(point: tuple) -> tuple:
        return tuple(
            (1, 0, 0.0, "")
            if _is_missing(v)
            else (0, 0, float(v), "")
            if isinstance(v, float | int | np.floating | np.integer)
            else (0, 1, 0.0, str(v))
            for v in point
        )

    return sorted(points, key=order)


def sweep_point_text(sweep_keys: Sequence[str], point: tuple) -> str:
    """ "alpha=1.2, beta=2" (keys outside the sweep are left out); "" for no sweep."""
    return ", ".join(
        f"{sweep_name(key)}={format_sweep_value(value)}"
        for key, value in zip(sweep_keys, point, strict=False)
        if not _is_missing(value)
    )


def at_sweep_point(frame: pd.DataFrame, sweep_keys: Sequence[str], point: tuple) -> pd.Series:
    """A row mask: the rows of `frame` at this sweep point (NaN matches NaN)."""
    mask = pd.Series(True, index=frame.index)
    for key, value in zip(sweep_keys, point, strict=False):
        if key not in frame.columns:
            continue
        mask &= frame[key].isna() if _is_missing(value) else frame[key] == value
    return mask


def feed_scenarios(results: pd.DataFrame) -> set[str]:
    """Scenarios that are feed markets: those with image click-through rows."""
    return set(results.loc[results["metric"] == "ctr_img", "scenario"].astype(str))


def file_stem(text: str) -> str:
    """A safe file-name part for a scenario name or path."""
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", text).strip("._") or "scenario"


# --- drawing helpers -----------------------------------------------------------------------------


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


@contextlib.contextmanager
def _style() -> Iterator[None]:
    """Seaborn's whitegrid look at a small font, for this figure only (no global change)."""
    import seaborn as sns

    with sns.axes_style("whitegrid"), sns.plotting_context("notebook", font_scale=0.75):
        yield


def _palette(count: int) -> list:
    import seaborn as sns

    return list(sns.color_palette("tab10" if count <= 10 else "husl", max(count, 1)))


def _to_png(figure) -> bytes:
    plt = _pyplot()
    buffer = io.BytesIO()
    try:
        figure.savefig(buffer, format="png", dpi=DPI)
    finally:
        plt.close(figure)
    return buffer.getvalue()


def _percent_axis(axis, metric: str, which: str = "y") -> None:
    if metric in PERCENT_METRICS:
        from matplotlib.ticker import PercentFormatter

        target = axis.yaxis if which == "y" else axis.xaxis
        target.set_major_formatter(PercentFormatter(1.0))


def _finite(*numbers: float) -> bool:
    return all(isinstance(x, int | float) and math.isfinite(x) for x in numbers)


def _row(part: pd.DataFrame, metric: str, label: str) -> pd.Series | None:
    found = part[(part["metric"] == metric) & (part["label"] == label)]
    return None if found.empty else found.iloc[0]


def _grid(count: int, columns: int = 3) -> tuple[int, int]:
    columns = max(1, min(columns, count))
    return math.ceil(count / columns), columns


def _hide_unused(axes, used: int) -> None:
    for axis in list(np.ravel(axes))[used:]:
        axis.set_visible(False)


# --- the figures ---------------------------------------------------------------------------------


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
    """Bars of the mean over seeds per label with 95% t-interval error bars and every seed as a
    dot, one panel per main metric; with sweeps, one bar per sweep point (hue)."""
    from matplotlib.transforms import blended_transform_factory

    part = summary[summary["scenario"] == scenario]
    panels = [m for m in comparison_metrics(kind, feed) if (part["metric"] == m).any()]
    present = [label for label in labels if (part["label"] == label).any()]
    if not panels or not present:
        return None
    points = sweep_points(part, sweep_keys)
    hue_colors = _palette(len(points) if len(points) > 1 else len(present))
    width = 0.8 / len(points)
    panel_width = max(2.3, 0.38 * len(present) * max(1.0, len(points) / 2))
    plt = _pyplot()
    with _style():
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
                    row = _row(at_point, metric, label)
                    x = i - 0.4 + width * (h + 0.5)
                    color = hue_colors[h] if len(points) > 1 else hue_colors[i]
                    mean = math.nan if row is None else row["mean"]
                    if not _finite(mean):  # no figure (or psi of first price, inf): say so
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
                    if _finite(low, high):
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
            axis.set_xticklabels(present, rotation=30, ha="right")
            axis.set_title(metric_label(metric))
            _percent_axis(axis, metric)
        title = f"{scenario}: mean over seeds, 95% t-interval, dots = seeds"
        if len(points) > 1:
            from matplotlib.patches import Patch

            handles = [
                Patch(color=hue_colors[h], label=sweep_point_text(sweep_keys, p) or "(no sweep)")
                for h, p in enumerate(points)
            ]
            figure.legend(
                handles=handles,
                loc="lower center",
                ncol=min(len(points), 6),
                fontsize=7,
                frameon=False,
            )
            figure.suptitle(title)
            figure.tight_layout(rect=(0, 0.08, 1, 1))
        else:
            figure.suptitle(title)
            figure.tight_layout()
        return _to_png(figure)


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
    label (line style per value of the other sweep keys), a 95% t band and the seeds as dots."""
    part = summary[summary["scenario"] == scenario]
    keys = [k for k in sweep_keys if k in part.columns and part[k].notna().any()]
    metrics = [m for m in sweep_metrics(feed) if (part["metric"] == m).any()]
    if not keys or not metrics:
        return None
    colors = dict(zip(labels, _palette(len(labels)), strict=False))
    plt = _pyplot()
    with _style():
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
                        style = _LINESTYLES[s % len(_LINESTYLES)]
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
                            x, low, high, color=colors[label], alpha=0.15, linewidth=0
                        )
                        if len(x) == 1 and _finite(float(low[0]), float(high[0])):
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
                _percent_axis(axis, metric)
        from matplotlib.lines import Line2D

        handles = [
            Line2D([], [], color=colors[lab], marker="o", label=lab)
            for lab in labels
            if (part["label"] == lab).any()
        ]
        handles += [
            Line2D([], [], color="grey", linestyle=s, label=t) for t, s in styles_used.items()
        ]
        figure.legend(
            handles=handles,
            loc="lower center",
            ncol=min(len(handles), 5),
            fontsize=7,
            frameon=False,
        )
        figure.suptitle(f"{scenario}: sweeps (mean over seeds, 95% t band, dots = seeds)")
        bottom = min(0.25, 0.06 + 0.03 * math.ceil(len(handles) / 5)) / max(1, len(keys) ** 0.5)
        figure.tight_layout(rect=(0, bottom, 1, 1))
        return _to_png(figure)


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
    present = [s for s in scenarios if (curves["scenario"] == s).any()]
    if not present:
        return None
    colors = dict(zip(labels, _palette(len(labels)), strict=False))
    keys = [k for k in sweep_keys if k in curves.columns]
    n_rows, n_cols = _grid(len(present))
    plt = _pyplot()
    with _style():
        figure, axes = plt.subplots(
            n_rows, n_cols, figsize=(max(6.5, 4.4 * n_cols), 3.3 * n_rows + 0.3), squeeze=False
        )
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
                    axis.plot(
                        line["multiplier"],
                        line["mean"],
                        color=colors.get(label),
                        linestyle=_LINESTYLES[s % len(_LINESTYLES)],
                        linewidth=1.4,
                        label=f"{label} ({text})" if text else label,
                    )
                    axis.fill_between(
                        line["multiplier"],
                        line["low"],
                        line["high"],
                        color=colors.get(label),
                        alpha=0.18,
                        linewidth=0,
                    )
            axis.axvline(1.0, color="grey", linestyle="--", linewidth=1)
            axis.set_xlabel("bid multiplier (bid / value)")
            axis.set_ylabel("utility per request")
            axis.set_title(scenario)
            axis.legend(fontsize=6)
        _hide_unused(axes, len(present))
        figure.suptitle("Utility against misreport (others truthful; band 95%; dashed = truthful)")
        figure.tight_layout()
        return _to_png(figure)


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
    present = [s for s in scenarios if (regret["scenario"] == s).any()]
    if not present:
        return None
    colors = dict(zip(labels, _palette(len(labels)), strict=False))
    keys = [k for k in sweep_keys if k in regret.columns]
    n_rows, n_cols = _grid(len(present))
    plt = _pyplot()
    with _style():
        figure, axes = plt.subplots(
            n_rows, n_cols, figsize=(max(6.5, 4.6 * n_cols), 3.4 * n_rows + 0.3), squeeze=False
        )
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
                    sns.ecdfplot(
                        x=values,
                        ax=axis,
                        color=colors.get(label),
                        linestyle=_LINESTYLES[s % len(_LINESTYLES)],
                        linewidth=1.3,
                        label=f"{name}: {zero_share:.0%} zero{marker}",
                    )
            axis.set_xscale("symlog", linthresh=threshold)
            axis.set_xlim(left=-threshold / 2)  # the jump at zero regret stays visible
            axis.set_xlabel(f"regret / mean truthful utility (linear below {threshold:g})")
            axis.set_ylabel("share of pairs")
            axis.set_title(scenario)
            axis.legend(fontsize=6, loc="lower right")
        _hide_unused(axes, len(present))
        figure.suptitle("Ex-post regret (* scaled by the scenario's mean utility)")
        figure.tight_layout()
        return _to_png(figure)


def frontier_metrics(feed: bool) -> tuple[str, str]:
    """(x, y) of the frontier: welfare and revenue (RPM in a feed market)."""
    return ("welfare_per_request", "rpm" if feed else "revenue_per_request")


def _paired_seeds(x_row: pd.Series, y_row: pd.Series) -> tuple[list[float], list[float]]:
    xs = dict(zip(x_row["seeds"], x_row["values"], strict=False))
    ys = dict(zip(y_row["seeds"], y_row["values"], strict=False))
    common = [s for s in xs if s in ys and math.isfinite(xs[s]) and math.isfinite(ys[s])]
    return [xs[s] for s in common], [ys[s] for s in common]


def _errors(row: pd.Series) -> list[list[float]] | None:
    if not _finite(row["mean"], row["low"], row["high"]):
        return None
    return [[row["mean"] - row["low"]], [row["high"] - row["mean"]]]


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
    colors = dict(zip(labels, _palette(len(labels)), strict=False))
    n_rows, n_cols = _grid(len(present))
    plt = _pyplot()
    with _style():
        figure, axes = plt.subplots(
            n_rows, n_cols, figsize=(max(6.5, 4.4 * n_cols), 3.4 * n_rows + 0.3), squeeze=False
        )
        for axis, scenario in zip(np.ravel(axes), present, strict=False):
            x_metric, y_metric = frontier_metrics(scenario in feed)
            part = summary[summary["scenario"] == scenario]
            for label in labels:
                mine = part[part["label"] == label]
                path = []
                for point in sweep_points(mine, sweep_keys):
                    at = mine[at_sweep_point(mine, sweep_keys, point)]
                    x_row, y_row = _row(at, x_metric, label), _row(at, y_metric, label)
                    if x_row is None or y_row is None or not _finite(x_row["mean"], y_row["mean"]):
                        continue
                    xs, ys = _paired_seeds(x_row, y_row)
                    axis.scatter(xs, ys, s=10, color=colors.get(label), alpha=0.3, edgecolor="none")
                    axis.errorbar(
                        x_row["mean"],
                        y_row["mean"],
                        xerr=_errors(x_row),
                        yerr=_errors(y_row),
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
        _hide_unused(axes, len(present))
        figure.suptitle("Revenue against welfare (mean, 95% t-intervals; faint dots = seeds)")
        figure.tight_layout()
        return _to_png(figure)


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
    colors = dict(zip(labels, _palette(len(labels)), strict=False))
    markers = {s: _MARKERS[i % len(_MARKERS)] for i, s in enumerate(scenarios)}
    plt = _pyplot()
    drawn_scenarios: set[str] = set()
    with _style():
        figure, axes = plt.subplots(1, len(pairs), figsize=(4.0 * len(pairs), 3.8), squeeze=False)
        for axis, (truth, model) in zip(axes[0], pairs, strict=True):
            extent: list[float] = []
            for scenario in scenarios:
                part = summary[summary["scenario"] == scenario]
                for label in labels:
                    mine = part[part["label"] == label]
                    for point in sweep_points(mine, sweep_keys):
                        at = mine[at_sweep_point(mine, sweep_keys, point)]
                        x_row, y_row = _row(at, truth, label), _row(at, model, label)
                        if x_row is None or y_row is None:
                            continue
                        if not _finite(x_row["mean"], y_row["mean"]):
                            continue
                        xs, ys = _paired_seeds(x_row, y_row)
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
                            xerr=_errors(x_row),
                            yerr=_errors(y_row),
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
            _percent_axis(axis, truth, "x")
            _percent_axis(axis, model, "y")
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
        figure.legend(
            handles=handles,
            loc="lower center",
            ncol=min(len(handles), 5),
            fontsize=7,
            frameon=False,
        )
        figure.suptitle("Ground truth against the mechanism's own model (dashed: y = x)")
        figure.tight_layout(rect=(0, 0.1, 1, 1))
        return _to_png(figure)


# --- the dispatcher ------------------------------------------------------------------------------


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
                    "bars their 95% t-intervals, dots the seeds.",
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
                    "95% t-intervals, dots the seeds (the form of the paper's Figure 5).",
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
                "opponents; bands are 95% intervals (t over seeds, or ±1.96 standard errors "
                "over requests with one seed); the dashed line is truthful bidding.",
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
                "t-intervals in both directions, faint dots the seeds.",
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
                "model; error bars are 95% t-intervals over seeds.",
                truth_vs_model_png(
                    summary, scenarios=scenarios, labels=labels, sweep_keys=sweep_keys
                ),
            )
    return drawn
