"""How metrics and values are written in tables, figures and terminal lines: metric names,
number formats and sweep values, kept in one place so that every view of a result agrees."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

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
    "non_monotone_rate": "non-monotone ads",
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
    {
        "psi",
        "psi_model",
        "psi_per_ad",
        "ir_violation_rate",
        "non_monotone_rate",
        "best_gain",
        "bandit_gain",
        "ppo_gain",
    }
)
_FORMATS = {
    "rpm": "{:.1f}",
    "rpm_model": "{:.1f}",
    "ctr_poi": "{:.4f}",
    "ctr_img": "{:.4f}",
    "feed_ctr_poi": "{:.4f}",
    "ctr_poi_model": "{:.4f}",
    "revenue_per_request": "{:.4f}",
    "welfare_per_request": "{:.4f}",
    "utility_per_request": "{:.4f}",
    "clicks_per_request": "{:.4f}",
    "truthful_utility": "{:.4f}",
    "ads_per_request": "{:.2f}",
    "ad_load": "{:.3f}",
    "gmv_per_request": "{:.3f}",
    "regret_mean": "{:.5f}",
    "regret_mean_model": "{:.5f}",
    "regret_max": "{:.4f}",
    "best_multiplier": "{:.2f}",
    "bandit_multiplier": "{:.2f}",
    "ppo_multiplier": "{:.2f}",
}
_SIGNED = frozenset({"best_gain", "bandit_gain", "ppo_gain"})


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


def _percent_decimals(scale: float) -> int:
    magnitude = abs(scale) * 100
    if magnitude >= 1 or magnitude == 0 or not math.isfinite(magnitude):
        return 1
    return 2 if magnitude >= 0.1 else 3


def format_value(metric: str, value: float, scale: float | None = None) -> str:
    """A metric's value as tables show it: RPM 1 decimal, CTRs 4, psi and gains as percents
    (decimals chosen from `scale`, by default the value itself; an interval passes the larger
    of its mean and half-width so that its three numbers line up)."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "n/a"
    if math.isinf(value):
        return "inf" if value > 0 else "-inf"
    if metric in PERCENT_METRICS:
        decimals = _percent_decimals(value if scale is None else scale)
        sign = "+" if metric in _SIGNED else ""
        return f"{100 * value:{sign}.{decimals}f}%"
    return _FORMATS.get(metric, "{:.4g}").format(value)


def interval_scale(row: pd.Series) -> float:
    """What sets an interval's percent decimals: the larger of |mean| and the half-width."""
    half_width = (row["high"] - row["low"]) / 2 if math.isfinite(row["high"] - row["low"]) else 0
    return max(abs(row["mean"]), half_width) if math.isfinite(row["mean"]) else math.nan


def interval_bounds(row: pd.Series, metric: str) -> str:
    """A summary row's interval as "[low, high]" with the mean's decimals; "" if undefined."""
    if not (math.isfinite(row["low"]) and math.isfinite(row["high"])):
        return ""
    scale = interval_scale(row)
    low = format_value(metric, row["low"], scale)
    high = format_value(metric, row["high"], scale)
    return f"[{low}, {high}]"


def interval_text(row: pd.Series, metric: str) -> str:
    """A summary row as "mean [low, high]" (the mean alone when the interval is undefined),
    its three numbers with the same decimals."""
    text = format_value(metric, row["mean"], interval_scale(row))
    bounds = interval_bounds(row, metric)
    return f"{text} {bounds}" if bounds else text
