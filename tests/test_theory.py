"""Closed forms of auction theory, measured by Monte Carlo through the public API.

Every expected number below is derived on paper (comments give the derivation), never read off
the code. Tolerances are 4.5 standard errors of the run (see conftest.within_standard_errors).
"""

from __future__ import annotations

import pytest

import ega_sim
from tests.conftest import position_auction, within_standard_errors

REQUESTS = 200_000


@pytest.mark.parametrize("n", [2, 3, 5])
def test_single_slot_second_price_revenue(n):
    # Single item, n i.i.d. U[0, 1] values: E[second highest] = (n - 1) / (n + 1).
    scenario = position_auction(n, (1.0,))
    for name in ("cascade/gsp", "cascade/vcg", "cascade/threshold"):
        result = ega_sim.evaluate(name, scenario, requests=REQUESTS, seed=n)
        assert within_standard_errors(
            result.revenue_per_request, (n - 1) / (n + 1), result.revenue_per_request_se
        ), (name, result.revenue_per_request)
        assert result.regret_max < 1e-12  # truthful bidding is dominant in the second price


@pytest.mark.parametrize("n", [1, 2, 4])
def test_single_slot_myerson_revenue(n):
    # Optimal auction for U[0, 1]: reserve 1/2; E[revenue] = (n - 1)/(n + 1) + 2^-n / (n + 1)
    # (n = 1: posted price 1/2 sells with probability 1/2, revenue 1/4 = 0 + 1/2 / 2).
    scenario = position_auction(n, (1.0,))
    result = ega_sim.evaluate("myerson/threshold", scenario, requests=REQUESTS, seed=10 + n)
    expected = (n - 1) / (n + 1) + 2.0**-n / (n + 1)
    assert within_standard_errors(
        result.revenue_per_request, expected, result.revenue_per_request_se
    )
    assert result.regret_max < 1e-12
    if n == 2:
        assert expected == pytest.approx(5 / 12)


@pytest.mark.parametrize("n", [2, 3])
def test_single_slot_first_price_regret(n):
    # Truthful first price: the winner pays v_(1) and could have won at v_(2) (a bid just above
    # it), so its regret is v_(1) - v_(2); losers cannot gain. Mean over (request, bidder)
    # pairs: E[v_(1) - v_(2)] / n = 1 / (n (n + 1)).
    scenario = position_auction(n, (1.0,))
    result = ega_sim.evaluate("cascade/first", scenario, requests=REQUESTS, seed=20 + n)
    assert within_standard_errors(result.regret_mean, 1 / (n * (n + 1)), result.regret_mean_se)
    assert result.utility_per_request == pytest.approx(0.0, abs=1e-12)


@pytest.mark.parametrize("a", [0.3, 0.6, 0.9])
def test_three_bidders_two_slots(a):
    # n = 3, K = 2, alpha = (1, a), U[0, 1]: E[v_(2)] = 1/2, E[v_(3)] = 1/4.
    # VCG: slot 1 pays (1 - a) v_(2) + a v_(3), slot 2 pays a v_(3): total 1/2 for every a.
    # GSP: slot 1 pays v_(2), slot 2 pays a v_(3): 1/2 + a/4.
    # GSP regret: only the top bidder gains, by dropping to slot 2: max(0, a (v1 - v3) - (v1 - v2));
    # its mean over the three bidders is a^2 / 12.
    scenario = position_auction(3, (1.0, a))
    vcg = ega_sim.evaluate("cascade/vcg", scenario, requests=REQUESTS, seed=1)
    gsp = ega_sim.evaluate("cascade/gsp", scenario, requests=REQUESTS, seed=1)
    assert within_standard_errors(vcg.revenue_per_request, 0.5, vcg.revenue_per_request_se)
    assert within_standard_errors(gsp.revenue_per_request, 0.5 + a / 4, gsp.revenue_per_request_se)
    assert within_standard_errors(gsp.regret_mean, a**2 / 12, gsp.regret_mean_se)
    assert vcg.regret_max < 1e-12


def test_welfare_is_revenue_plus_utility_and_clicks_match_slots():
    # Accounting identities, and clicks = sum of slot factors when every slot is filled (q = 1).
    scenario = position_auction(4, (1.0, 0.5, 0.25))
    result = ega_sim.evaluate("cascade/gsp", scenario, requests=10_000, seed=2)
    assert result.welfare_per_request == pytest.approx(
        result.revenue_per_request + result.utility_per_request, rel=1e-12
    )
    assert result.clicks_per_request == pytest.approx(1.75, rel=1e-12)
    assert result.ads_per_request == 3.0


def test_myerson_beats_second_price_with_any_reserve():
    # Myerson's auction maximizes expected revenue among IC, IR mechanisms; the second price
    # with reserve r earns (n-1)/(n+1) + ... < Myerson's for r != 1/2. For n = 2:
    # revenue(r) = 1/3 + r^2 - 4 r^3 / 3 (standard), maximal 5/12 at r = 1/2.
    for r in (0.0, 0.25, 0.5, 0.75):
        scenario = position_auction(2, (1.0,), reserve=r)
        result = ega_sim.evaluate("cascade/vcg", scenario, requests=REQUESTS, seed=3)
        expected = 1 / 3 + r**2 - 4 * r**3 / 3
        assert within_standard_errors(
            result.revenue_per_request, expected, result.revenue_per_request_se
        )
        assert expected <= 5 / 12 + 1e-15
