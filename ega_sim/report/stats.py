"""Means over seeds with 95% Student-t intervals, the per-seed values kept beside them; and
for the regret figures, ratios pooled over the requests of every seed with their interval.

Why t and not a bootstrap: an experiment usually has three seeds. A percentile bootstrap of
three numbers resamples only ten distinct means and its interval lies inside [min, max] of the
seeds, which covers the true mean with probability 1 - 2 (1/2)^3 = 75% at best: it undercovers
a nominal 95% badly. The t interval with n - 1 degrees of freedom is exact for normal per-seed
figures and honestly wide for n = 3 (t_{0.975, 2} = 4.30). The per-seed values are kept too
(the report's per-seed block, results.csv), so a reader can judge the spread.

The support: a plain t interval of a nonnegative figure (revenue, regret, clicks) can reach
below 0 when the seeds are few and spread. Such a figure's interval is the same t interval
taken on the log scale by the delta method, mean x exp(+-t se / mean) (intervals.py, as for
the ratios over requests), and a rate in [0, 1] (CTR, ad load) on the logit scale: inside the
support by construction, equal to the plain t interval to first order in se / mean, and closer
to 95% than it when the seeds are skewed (tests/test_report.py measures both). Signed figures
(utility, gains) keep the plain t interval. `support_of(metric)` says which.

Regret figures (psi, mean regret, ...) are different: a seed's figure rests on few requests and
the spread between requests dominates, so their interval is over all requests of all seeds
(the per-request sums of ratios.csv added up, intervals.py), and their central value the
pooled ratio. The summary's `interval` column says which interval a row has.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence

import numpy as np
import pandas as pd
from scipy import stats

from ega_sim.intervals import figure_interval, log_scale_interval, logit_scale_interval, pooled

NAN = float("nan")

# Figures in [0, 1] (rates and shares) and figures >= 0; every other figure may be negative.
UNIT_METRICS = frozenset(
    {"ctr_poi", "ctr_img", "feed_ctr_poi", "ctr_poi_model", "ad_load"}
    | {"ir_violation_rate", "non_monotone_rate"}
)
NONNEGATIVE_METRICS = UNIT_METRICS | {
    "revenue_per_request",
    "rpm",
    "rpm_model",
    "welfare_per_request",
    "clicks_per_request",
    "ads_per_request",
    "gmv_per_request",
    "regret_mean",
    "regret_max",
    "regret_mean_model",
    "psi",
    "psi_per_ad",
    "psi_model",
    "best_multiplier",
    "bandit_multiplier",
    "ppo_multiplier",
}
SUPPORTS = ("real", "nonnegative", "unit")


def t_interval(values: Iterable[float], level: float = 0.95) -> tuple[float, float, float]:
    """(mean, low, high): the Student-t interval of the mean over seeds.

    NaN values are dropped. One value (or any infinite value) gives NaN bounds: there is no
    spread to estimate; no value at all gives NaN throughout.
    """
    array = np.asarray(list(values), dtype=np.float64)
    array = array[~np.isnan(array)]
    if array.size == 0:
        return NAN, NAN, NAN
    with np.errstate(invalid="ignore"):
        mean = float(array.mean())  # inf when a seed is inf (psi of first price)
    if array.size < 2 or not np.all(np.isfinite(array)):
        return mean, NAN, NAN
    quantile = stats.t.ppf(0.5 + level / 2.0, df=array.size - 1)
    half_width = float(quantile * array.std(ddof=1) / math.sqrt(array.size))
    return mean, mean - half_width, mean + half_width


def support_of(metric: str) -> str:
    """The support of a metric's per-seed values: "unit" ([0, 1]), "nonnegative" or "real"."""
    if metric in UNIT_METRICS:
        return "unit"
    return "nonnegative" if metric in NONNEGATIVE_METRICS else "real"


def support_t_interval(
    values: Iterable[float], support: str = "real", level: float = 0.95
) -> tuple[float, float, float]:
    """(mean, low, high): the Student-t interval of the mean over seeds that stays inside the
    support (module docstring): plain for "real", on the log scale for "nonnegative", on the
    logit scale for "unit". Values outside the stated support fall back to the next wider one.
    NaN handling as `t_interval`. Raises ValueError for an unknown support."""
    if support not in SUPPORTS:
        raise ValueError(f"support: expected one of {', '.join(SUPPORTS)}, got {support!r}")
    mean, low, high = t_interval(values, level)
    if support == "real" or not all(math.isfinite(x) for x in (mean, low, high)):
        return mean, low, high
    array = np.asarray(list(values), dtype=np.float64)
    array = array[~np.isnan(array)]
    if np.any(array < 0):
        return mean, low, high  # not nonnegative after all: the plain interval, said as is
    quantile = float(stats.t.ppf(0.5 + level / 2.0, df=array.size - 1))
    se = float(array.std(ddof=1) / math.sqrt(array.size))
    if support == "unit" and np.all(array <= 1):
        return (mean, *logit_scale_interval(mean, se, quantile))
    return (mean, *log_scale_interval(mean, se, quantile))


def interval_method(metric: str, interval: str = "seeds") -> str:
    """How a summary row's 95% interval was made, in a few words for captions."""
    if interval == "requests":
        return "over requests, delta method on the " + (
            "logit scale" if support_of(metric) == "unit" else "log scale"
        )
    return {
        "real": "Student-t over seeds",
        "nonnegative": "Student-t over seeds on the log scale",
        "unit": "Student-t over seeds on the logit scale",
    }[support_of(metric)]


def pooled_standard_error(standard_errors: Iterable[float]) -> float:
    """Standard error of the mean of independent per-seed figures with these standard errors:
    sqrt(sum se_i^2) / n. NaN if any is missing (a cell without a standard error)."""
    array = np.asarray(list(standard_errors), dtype=np.float64)
    if array.size == 0 or not np.all(np.isfinite(array)):
        return NAN
    return float(math.sqrt(float(np.sum(array**2))) / array.size)


def _group_key(key: tuple) -> tuple:
    """A groupby key that compares equal to itself when it holds NaN (outside a sweep)."""
    return tuple("<nan>" if isinstance(v, float) and math.isnan(v) else v for v in key)


def pooled_ratios(ratios: pd.DataFrame | None, by: Sequence[str]) -> dict:
    """(group key, metric) -> the RatioSums of every cell of the group, added up."""
    if ratios is None or ratios.empty:
        return {}
    keys = [*by, "metric"]
    columns = ["n", "sx", "sy", "sxx", "syy", "sxy"]
    return {
        _group_key(key if isinstance(key, tuple) else (key,)): pooled(
            part[columns].to_dict("records")
        )
        for key, part in ratios.groupby(keys, sort=False, dropna=False)
    }


def summarize(
    results: pd.DataFrame,
    by: Sequence[str],
    level: float = 0.95,
    ratios: pd.DataFrame | None = None,
) -> pd.DataFrame:
    """One row per group of `by` and metric of a tidy results table: mean, low, high (the
    t-interval over seeds inside the metric's support: `support_t_interval`), n, `values` and
    `seeds` (tuples ordered by seed) and `se_of_mean` (the requests' standard error of the
    mean, pooled over seeds, from the `se` column). With
    `ratios` (ratios.csv), a regret figure's mean, low and high are instead its ratio and 95%
    interval over the requests of all seeds; `interval` says "requests" or "seeds".

    Groups keep their first-appearance order; NaN group keys (a cell outside a sweep) are kept.
    """
    by_requests = pooled_ratios(ratios, by)
    keys = [*by, "metric"]
    missing = [key for key in [*keys, "value"] if key not in results.columns]
    if missing:
        raise KeyError(f"summarize: the results table has no column {', '.join(missing)}")
    rows = []
    for key, part in results.groupby(keys, sort=False, dropna=False):
        if "seed" in part.columns:
            part = part.sort_values("seed", kind="stable")
        values = part["value"].to_numpy(dtype=np.float64)
        mean, low, high = support_t_interval(values, support_of(str(key[-1])), level)
        row = dict(zip(keys, key, strict=True))
        interval = "seeds"
        sums = by_requests.get(_group_key(key))
        if sums is not None and not math.isnan(sums.ratio):
            mean, (low, high) = sums.ratio, figure_interval(key[-1], sums)
            interval = "requests"
        row.update(
            mean=mean,
            low=low,
            high=high,
            interval=interval,
            n=int(np.count_nonzero(~np.isnan(values))),
            values=tuple(float(v) for v in values),
            seeds=tuple(int(s) for s in part["seed"]) if "seed" in part.columns else (),
            se_of_mean=(pooled_standard_error(part["se"]) if "se" in part.columns else NAN),
        )
        rows.append(row)
    columns = [*keys, "mean", "low", "high", "interval", "n", "values", "seeds", "se_of_mean"]
    return pd.DataFrame(rows, columns=columns)
