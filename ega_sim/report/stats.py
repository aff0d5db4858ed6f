"""Means over seeds with 95% Student-t intervals, the per-seed values kept beside them.

Why t and not a bootstrap: an experiment usually has three seeds. A percentile bootstrap of
three numbers resamples only ten distinct means and its interval lies inside [min, max] of the
seeds, which covers the true mean with probability 1 - 2 (1/2)^3 = 75% at best: it undercovers
a nominal 95% badly. The t interval with n - 1 degrees of freedom is exact for normal per-seed
figures and honestly wide for n = 3 (t_{0.975, 2} = 4.30). The per-seed values are always
shown too, so a reader can judge the spread without trusting any interval.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence

import numpy as np
import pandas as pd
from scipy import stats

NAN = float("nan")


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


def pooled_standard_error(standard_errors: Iterable[float]) -> float:
    """Standard error of the mean of independent per-seed figures with these standard errors:
    sqrt(sum se_i^2) / n. NaN if any is missing (a cell without a standard error)."""
    array = np.asarray(list(standard_errors), dtype=np.float64)
    if array.size == 0 or not np.all(np.isfinite(array)):
        return NAN
    return float(math.sqrt(float(np.sum(array**2))) / array.size)


def summarize(results: pd.DataFrame, by: Sequence[str], level: float = 0.95) -> pd.DataFrame:
    """One row per group of `by` and metric of a tidy results table: mean, low, high (the
    t-interval over seeds), n, `values` and `seeds` (tuples ordered by seed) and `se_of_mean`
    (the requests' standard error of the mean, pooled over seeds, from the `se` column).

    Groups keep their first-appearance order; NaN group keys (a cell outside a sweep) are kept.
    """
    keys = [*by, "metric"]
    missing = [key for key in [*keys, "value"] if key not in results.columns]
    if missing:
        raise KeyError(f"summarize: the results table has no column {', '.join(missing)}")
    rows = []
    for key, part in results.groupby(keys, sort=False, dropna=False):
        if "seed" in part.columns:
            part = part.sort_values("seed", kind="stable")
        values = part["value"].to_numpy(dtype=np.float64)
        mean, low, high = t_interval(values, level)
        row = dict(zip(keys, key, strict=True))
        row.update(
            mean=mean,
            low=low,
            high=high,
            n=int(np.count_nonzero(~np.isnan(values))),
            values=tuple(float(v) for v in values),
            seeds=tuple(int(s) for s in part["seed"]) if "seed" in part.columns else (),
            se_of_mean=(pooled_standard_error(part["se"]) if "se" in part.columns else NAN),
        )
        rows.append(row)
    columns = [*keys, "mean", "low", "high", "n", "values", "seeds", "se_of_mean"]
    return pd.DataFrame(rows, columns=columns)
