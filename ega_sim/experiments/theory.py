"""Closed-form expected revenue and mean ex-post regret of truthful bidding in position auctions.

Reports put these beside the measured figures, and tests hold the simulator to them. A closed
form exists for a few cases only; everything else is NaN ("no closed form"), never a guess.

Setting: n bidders with i.i.d. values per click U[a, b], K slots with click factors
alpha_1 >= ... >= alpha_K (alpha_(K+1) = 0), P(click) = alpha_k q with one quality q shared by
every bidder. v_(j) is the j-th highest value, E[v_(j)] = a + (b - a)(n + 1 - j)/(n + 1) for
j <= n and v_(j) = 0 for j > n (an empty slot pays nothing). Revenue per request:

- cascade/gsp: each slot pays the next bid: sum_k q alpha_k E[v_(k+1)].
- cascade/vcg, cascade/threshold (equal on the cascade): each slot pays the externality,
  sum_k q sum_{j >= k} (alpha_j - alpha_(j+1)) E[v_(j+1)].
- cascade/first: sum_k q alpha_k E[v_(k)].
- myerson/threshold (and myerson/gsp on one slot, where GSP is the threshold price): Myerson's
  lemma, revenue = expected virtual surplus, phi(v) = 2v - b for a uniform, so
  sum_k q alpha_k E[max(0, 2 v_(k) - b)] with (v_(k) - a)/(b - a) ~ Beta(n + 1 - k, k),
  integrated numerically. The myerson allocator sets its own reserve (phi = 0) and ignores the
  scenario's reserve and eCPM floor, so those do not matter here.

The cascade's revenue needs reserve 0 and eCPM floor 0.

Mean ex-post regret per (request, bidder) pair of truthful bidding:

- 0 for cascade/vcg, cascade/threshold, myerson/threshold and any GSP on one slot (the second
  price): these are dominant-strategy incentive compatible, for every value distribution,
  quality and reserve, so the zero holds in every position auction.
- cascade/first on one slot: the winner could have won with a bid just above v_(2) and regrets
  q (v_(1) - v_(2)); losers cannot gain: q (E[v_(1)] - E[v_(2)]) / n, which is
  q (b - a) / ((n + 1) n) for n >= 2.
- cascade/gsp with n = 3 bidders and K = 2 slots: only the top bidder gains, by dropping to
  slot 2 (paying v_(3) instead of v_(2)): its regret is
  q max(0, alpha_2 (v_(1) - v_(3)) - alpha_1 (v_(1) - v_(2))), whose mean over the three
  bidders is q (b - a) alpha_2^2 / (12 alpha_1) (a^2 / 12 for alpha = (1, a) on U[0, 1], as
  tests/test_theory.py derives).
"""

from __future__ import annotations

from pathlib import Path

from scipy import integrate
from scipy import stats as scipy_stats

from ega_sim.config.scenario import PositionAuctionConfig, ScenarioConfig, load_scenario
from ega_sim.world.distributions import Fixed, Uniform

NAN = float("nan")
CLOSED_FORM_KEYS = ("revenue_per_request", "regret_mean")
INCENTIVE_COMPATIBLE = ("cascade/vcg", "cascade/threshold", "myerson/threshold")


def closed_form(scenario: ScenarioConfig | str | Path, mechanism: str) -> dict[str, float]:
    """{revenue_per_request, regret_mean} of truthful bidding; NaN where there is no closed form
    (feed markets, lognormal values, per-bidder or random qualities, a cascade reserve, ...).

    `scenario` is a config, a scenario file or a shipped scenario name.
    """
    config = load_scenario(scenario)
    result = {key: NAN for key in CLOSED_FORM_KEYS}
    if not isinstance(config, PositionAuctionConfig):
        return result
    result["regret_mean"] = _regret_mean(config, mechanism)
    result["revenue_per_request"] = _revenue(config, mechanism)
    return result


def expected_order_statistic(values: Uniform, n: int, j: int) -> float:
    """E[v_(j)], the j-th highest of n i.i.d. U[low, high] values; 0 for j > n (no bidder)."""
    if j > n:
        return 0.0
    return values.low + (values.high - values.low) * (n + 1 - j) / (n + 1)


def shared_quality(config: PositionAuctionConfig) -> float | None:
    """The one quality every bidder has, or None when qualities differ or are random."""
    if not isinstance(config.quality, Fixed):
        return None
    distinct = set(config.quality.values)
    return distinct.pop() if len(distinct) == 1 else None


def _slot_factors(config: PositionAuctionConfig) -> list[float]:
    """alpha_1 .. alpha_K followed by alpha_(K+1) = 0."""
    return [*config.slot_ctr, 0.0]


def _revenue(config: PositionAuctionConfig, mechanism: str) -> float:
    q = shared_quality(config)
    if q is None or not isinstance(config.values, Uniform):
        return NAN
    values, n, slots = config.values, config.n_bidders, config.n_slots
    alpha = _slot_factors(config)

    def order(j: int) -> float:
        return expected_order_statistic(values, n, j)

    if mechanism == "myerson/threshold" or (mechanism == "myerson/gsp" and slots == 1):
        return sum(
            q * alpha[k - 1] * _positive_virtual_value(values, n, k) for k in range(1, slots + 1)
        )
    if not mechanism.startswith("cascade/") or config.reserve != 0.0 or config.ecpm_floor != 0.0:
        return NAN
    payment = mechanism.split("/", 1)[1]
    if payment == "gsp":
        return sum(q * alpha[k - 1] * order(k + 1) for k in range(1, slots + 1))
    if payment in ("vcg", "threshold"):
        return sum(
            q * (alpha[j - 1] - alpha[j]) * order(j + 1)
            for k in range(1, slots + 1)
            for j in range(k, slots + 1)
        )
    if payment == "first":
        return sum(q * alpha[k - 1] * order(k) for k in range(1, slots + 1))
    return NAN


def _positive_virtual_value(values: Uniform, n: int, k: int) -> float:
    """E[max(0, phi(v_(k)))] with phi(v) = 2v - b, by numerical integration over the Beta law of
    the k-th highest value; 0 when there is no k-th bidder."""
    if k > n:
        return 0.0
    a, b = values.low, values.high
    law = scipy_stats.beta(n + 1 - k, k)
    start = min(1.0, max(0.0, (b / 2.0 - a) / (b - a)))  # where phi crosses 0

    def integrand(x: float) -> float:
        return (2.0 * (a + (b - a) * x) - b) * law.pdf(x)

    value, _ = integrate.quad(integrand, start, 1.0, epsabs=1e-13, epsrel=1e-12)
    return float(value)


def _regret_mean(config: PositionAuctionConfig, mechanism: str) -> float:
    slots, n = config.n_slots, config.n_bidders
    allocator = mechanism.split("/", 1)[0]
    if mechanism in INCENTIVE_COMPATIBLE or (
        mechanism.endswith("/gsp") and allocator in ("cascade", "myerson") and slots == 1
    ):
        return 0.0
    q = shared_quality(config)
    if q is None or not isinstance(config.values, Uniform):
        return NAN
    if config.reserve != 0.0 or config.ecpm_floor != 0.0:
        return NAN
    values = config.values
    if mechanism == "cascade/first" and slots == 1:
        gap = expected_order_statistic(values, n, 1) - expected_order_statistic(values, n, 2)
        return q * gap / n
    if mechanism == "cascade/gsp" and n == 3 and slots == 2:
        alpha_1, alpha_2 = config.slot_ctr
        return q * (values.high - values.low) * alpha_2**2 / (12.0 * alpha_1)
    return NAN
