"""Ratios of means over requests and their 95% intervals (plain Python, no tensors).

Every regret figure is such a ratio: psi = sum of regret / sum of truthful utility, the mean
regret per bidder = sum of regret / number of (request, bidder) pairs searched, the per-ad psi
= sum of regret / utility over ads / number of ads. Requests are the independent units (a
request's bidders share its other bids), so a figure keeps, per request b, a numerator x_b and
a denominator y_b, and `RatioSums` their sums, squares and cross products: enough to pool runs
(seeds) by adding and to give an interval without the requests.

The interval is the delta method on the log scale (Casella and Berger, Statistical Inference,
section 5.5.4, applied to log(x_bar / y_bar)): r x exp(+-z se(r) / r), which stays inside the
support of a nonnegative ratio. [0, 0] means no request regretted anything; an interval of a
ratio whose denominator is 0, or of fewer than two requests, is undefined (NaN). A share (a
count over a count, in [0, 1]: SHARES) takes the delta method on the logit scale instead,
logit(r) +- z se(r) / (r (1 - r)), which stays inside [0, 1]; [0, 0] and [1, 1] at the ends.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

Z95 = 1.959963984540054  # the standard normal's 97.5% quantile
SHARES = ("non_monotone_rate",)  # ratio figures that are shares in [0, 1]


def defined_ratio(numerator: float, denominator: float) -> float:
    """numerator / denominator of nonnegative totals; NaN (undefined: null in JSON, empty in
    CSV, n/a in tables) when the denominator is 0 or either is NaN, whatever the numerator:
    a ratio with nothing in its denominator is never 0 and never infinite."""
    if math.isnan(numerator) or not denominator > 0:
        return math.nan
    return numerator / denominator


@dataclass(frozen=True)
class RatioSums:
    """Over n requests: sums of x_b, y_b, x_b^2, y_b^2 and x_b y_b."""

    n: int = 0
    sx: float = 0.0
    sy: float = 0.0
    sxx: float = 0.0
    syy: float = 0.0
    sxy: float = 0.0

    def __add__(self, other: RatioSums) -> RatioSums:
        """The sums of two disjoint sets of requests (runs of other seeds: pooling)."""
        return RatioSums(*(a + b for a, b in zip(self.values(), other.values(), strict=True)))

    def values(self) -> tuple:
        return (self.n, self.sx, self.sy, self.sxx, self.syy, self.sxy)

    def to_dict(self) -> dict:
        return asdict(self)

    @property
    def ratio(self) -> float:
        """sum x / sum y; NaN when y sums to 0 (or to NaN)."""
        return defined_ratio(self.sx, self.sy)

    def standard_error(self) -> float:
        """The delta method's standard error of the ratio; NaN below two requests."""
        if self.n < 2 or not self.sy > 0:
            return math.nan
        n, ratio = self.n, self.ratio
        mean_y = self.sy / n
        var_x = (self.sxx - self.sx * self.sx / n) / (n - 1)
        var_y = (self.syy - self.sy * self.sy / n) / (n - 1)
        cov = (self.sxy - self.sx * self.sy / n) / (n - 1)
        variance = (var_x - 2 * ratio * cov + ratio * ratio * var_y) / (n * mean_y * mean_y)
        return math.sqrt(max(variance, 0.0))

    def interval(self, z: float = Z95) -> tuple[float, float]:
        """The 95% interval (module docstring); (NaN, NaN) where undefined."""
        return log_scale_interval(self.ratio, self.standard_error(), z)

    def share_interval(self, z: float = Z95) -> tuple[float, float]:
        """The 95% interval of a share in [0, 1] (module docstring); (NaN, NaN) if undefined."""
        return logit_scale_interval(self.ratio, self.standard_error(), z)


def figure_interval(name: str, sums: RatioSums, z: float = Z95) -> tuple[float, float]:
    """The 95% interval of the ratio figure `name`: a share's on the logit scale, else the log
    scale's."""
    return sums.share_interval(z) if name in SHARES else sums.interval(z)


def log_scale_interval(estimate: float, se: float, quantile: float) -> tuple[float, float]:
    """The interval of a nonnegative estimate by the delta method on the log scale:
    estimate x exp(+-quantile se / estimate), inside (0, inf) by construction; [0, 0] for an
    estimate of 0 (nonnegative parts summing to 0), (NaN, NaN) if either input is NaN.
    `quantile` is z (requests) or Student's t (seeds)."""
    if math.isnan(estimate) or math.isnan(se):
        return math.nan, math.nan
    if estimate <= 0:
        return 0.0, 0.0
    spread = math.exp(min(quantile * se / estimate, _MAX_EXPONENT))
    return estimate / spread, estimate * spread


def logit_scale_interval(estimate: float, se: float, quantile: float) -> tuple[float, float]:
    """The interval of an estimate in [0, 1] by the delta method on the logit scale:
    logistic(logit(estimate) +- quantile se / (estimate (1 - estimate))), inside [0, 1] by
    construction; [0, 0] and [1, 1] at the ends, (NaN, NaN) if either input is NaN."""
    if math.isnan(estimate) or math.isnan(se):
        return math.nan, math.nan
    if estimate <= 0 or estimate >= 1:
        return (0.0, 0.0) if estimate <= 0 else (1.0, 1.0)
    logit = math.log(estimate / (1 - estimate))
    spread = min(quantile * se / (estimate * (1 - estimate)), _MAX_EXPONENT)
    return _logistic(logit - spread), _logistic(logit + spread)


_MAX_EXPONENT = 700.0  # exp(700) is finite in float64: a huge spread gives (0+, huge), not inf


def _logistic(x: float) -> float:
    return 0.5 * (1.0 + math.tanh(x / 2.0))  # = 1 / (1 + exp(-x)), without overflow


def pooled(parts: list[RatioSums | dict]) -> RatioSums:
    """The sums over several runs (given as RatioSums or their dicts)."""
    total = RatioSums()
    for part in parts:
        total = total + (part if isinstance(part, RatioSums) else RatioSums(**part))
    return total
