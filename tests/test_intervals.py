"""Ratio-of-means intervals (ega_sim/intervals.py): the delta method against its linearized
form computed independently, coverage by simulation, pooling, and the support."""

from __future__ import annotations

import math

import numpy as np
import pytest

from ega_sim.intervals import RatioSums, pooled


def _sums(x: np.ndarray, y: np.ndarray) -> RatioSums:
    return RatioSums(
        len(x),
        float(x.sum()),
        float(y.sum()),
        float((x * x).sum()),
        float((y * y).sum()),
        float((x * y).sum()),
    )


def test_standard_error_is_the_linearized_ratio_estimator():
    rng = np.random.default_rng(0)
    y = rng.uniform(0.5, 1.5, 400)
    x = rng.exponential(0.1, 400) * (rng.uniform(size=400) < 0.3)  # mostly zero, like regret
    sums = _sums(x, y)
    ratio = x.sum() / y.sum()
    # The ratio's influence terms d_b = (x_b - r y_b) / mean(y): se = sd(d) / sqrt(n).
    influence = (x - ratio * y) / y.mean()
    expected = influence.std(ddof=1) / math.sqrt(len(x))
    assert sums.ratio == pytest.approx(ratio, rel=1e-12)
    assert sums.standard_error() == pytest.approx(expected, rel=1e-9)


def test_ninety_five_percent_intervals_cover_the_true_ratio():
    # x = regret: zero-inflated exponential; y = utility: uniform. True ratio E[x] / E[y].
    rng = np.random.default_rng(1)
    share, scale, n, runs = 0.3, 0.2, 500, 2000
    truth = share * scale / 1.0  # E[y] = 1 for U[0.5, 1.5]
    covered = 0
    for _ in range(runs):
        y = rng.uniform(0.5, 1.5, n)
        x = rng.exponential(scale, n) * (rng.uniform(size=n) < share)
        low, high = _sums(x, y).interval()
        covered += low <= truth <= high
    coverage = covered / runs
    se = math.sqrt(0.95 * 0.05 / runs)  # binomial standard error of the coverage
    assert abs(coverage - 0.95) < 4 * se, coverage


def test_pooling_runs_is_the_interval_of_all_their_requests():
    rng = np.random.default_rng(2)
    x, y = rng.exponential(1.0, 300), rng.uniform(1.0, 2.0, 300)
    parts = [_sums(x[:100], y[:100]), _sums(x[100:], y[100:]).to_dict()]
    together = pooled(parts)
    whole = _sums(x, y)
    assert together.n == 300
    assert together.ratio == pytest.approx(whole.ratio, rel=1e-12)
    assert together.interval() == pytest.approx(whole.interval(), rel=1e-9)


def test_intervals_respect_the_support():
    rng = np.random.default_rng(3)
    y = rng.uniform(size=50)
    x = np.zeros(50)
    x[0] = 5.0  # one large regret among zeros: a symmetric interval would go below 0
    low, high = _sums(x, y).interval()
    assert 0 < low < _sums(x, y).ratio < high
    assert _sums(np.zeros(50), y).interval() == (0.0, 0.0)  # no regret at all
    undefined = _sums(x, np.zeros(50))  # nothing in the denominator: undefined, not 0
    assert math.isnan(undefined.ratio) and all(math.isnan(b) for b in undefined.interval())
    one = _sums(x[:1], y[:1])
    assert all(math.isnan(b) for b in one.interval())  # a single request has no interval


def test_share_intervals_cover_and_stay_in_zero_one():
    # Per request: y ads searched (1 to 3), x of them non-monotone, each with probability p
    # (clustered counts, like the share of non-monotone ads). True share p.
    from ega_sim.intervals import figure_interval

    rng = np.random.default_rng(4)
    p, n, runs = 0.2, 300, 2000
    covered = 0
    for _ in range(runs):
        y = rng.integers(1, 4, n).astype(float)
        x = rng.binomial(y.astype(int), p).astype(float)
        low, high = figure_interval("non_monotone_rate", _sums(x, y))
        assert 0.0 <= low <= high <= 1.0
        covered += low <= p <= high
    se = math.sqrt(0.95 * 0.05 / runs)
    assert abs(covered / runs - 0.95) < 4 * se
    # Near 1 the log-scale interval of a plain ratio passes 1; the share's never does.
    y = np.ones(20)
    x = np.r_[np.ones(19), 0.0]
    assert _sums(x, y).interval()[1] > 1.0
    assert figure_interval("non_monotone_rate", _sums(x, y))[1] < 1.0
    assert figure_interval("non_monotone_rate", _sums(np.zeros(20), y)) == (0.0, 0.0)
    assert figure_interval("non_monotone_rate", _sums(y, y)) == (1.0, 1.0)
    assert all(math.isnan(b) for b in figure_interval("non_monotone_rate", _sums(x[:1], y[:1])))


def test_log_and_logit_scale_intervals_by_hand():
    from ega_sim.intervals import log_scale_interval, logit_scale_interval

    # log scale: estimate x exp(+-q se / estimate); 2 x exp(+-1.96 x 0.5 / 2) = 2 x e^(+-0.49)
    low, high = log_scale_interval(2.0, 0.5, 1.96)
    assert low == pytest.approx(2.0 * math.exp(-0.49)) and high == pytest.approx(
        2.0 * math.exp(0.49)
    )
    # logit scale: logit(0.2) = -ln 4, spread 1.96 x 0.05 / (0.2 x 0.8) = 0.6125
    low, high = logit_scale_interval(0.2, 0.05, 1.96)
    assert low == pytest.approx(1 / (1 + math.exp(math.log(4) + 0.6125)))
    assert high == pytest.approx(1 / (1 + math.exp(math.log(4) - 0.6125)))
    # the ends of the support, undefined inputs, and a spread too large for exp: no overflow
    assert log_scale_interval(0.0, 1.0, 1.96) == (0.0, 0.0)
    assert logit_scale_interval(0.0, 0.1, 1.96) == (0.0, 0.0)
    assert logit_scale_interval(1.0, 0.1, 1.96) == (1.0, 1.0)
    assert all(math.isnan(b) for b in log_scale_interval(1.0, math.nan, 1.96))
    low, high = log_scale_interval(1e-300, 1.0, 1.96)
    assert 0.0 <= low <= 1e-300 <= high < math.inf
    low, high = logit_scale_interval(1e-300, 1.0, 1.96)
    assert 0.0 <= low <= high <= 1.0
