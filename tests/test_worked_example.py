"""The worked example: three bidders, two slots, hand-computed prices and regret.

alpha = (1, 0.6); values per click (4, 3, 2); qualities (0.10, 0.10, 0.16).
Scores q b = (0.40, 0.30, 0.32): bidder 1 takes slot 1, bidder 3 slot 2, bidder 2 loses.
GSP per click: bidder 1 pays 0.32 / 0.10 = 3.2, bidder 3 pays 0.30 / 0.16 = 1.875;
per impression: 3.2 x 0.10 = 0.320 and 1.875 x 0.6 x 0.16 = 0.180.
VCG per impression: bidder 1 (1 - 0.6) x 0.32 + 0.6 x 0.30 = 0.308; bidder 3 0.6 x 0.30 = 0.180.
With alpha = (1, 0.9): bidder 1's GSP utility is 0.10 x (4 - 3.2) = 0.080; dropping to slot 2
(bid just above 3.0) pays 0.30 / 0.10 = 3 per click on 0.9 x 0.10 clicks: 0.090. Regret 0.010.
"""

from __future__ import annotations

import pytest
import torch

import ega_sim
from ega_sim.mechanisms.base import per_bidder
from ega_sim.metrics.outcomes import measure_outcome
from ega_sim.metrics.regret import MisreportSpec, ex_post_regret
from ega_sim.world.distributions import Fixed, Uniform
from ega_sim.world.position_auction import AuctionRequests, PositionAuctionWorld
from tests.conftest import position_auction

VALUES = torch.tensor([[4.0, 3.0, 2.0]], dtype=torch.float64)
QUALITY = torch.tensor([[0.10, 0.10, 0.16]], dtype=torch.float64)


def _scenario(alpha):
    return position_auction(
        3, alpha, values=Uniform(0.0, 5.0), quality=Fixed((0.10, 0.10, 0.16)), name="worked"
    )


def _payments_per_impression(name: str, alpha) -> list[float]:
    scenario = _scenario(alpha)
    mechanism = ega_sim.make_mechanism(name, scenario)
    requests = AuctionRequests(VALUES, QUALITY)
    outcome = mechanism.run(requests, VALUES)
    clicks = PositionAuctionWorld(scenario).expected_clicks(requests, outcome.allocation)
    return per_bidder(outcome.price_per_click * clicks, outcome.slot_bidder, 3)[0].tolist()


def test_allocation():
    mechanism = ega_sim.make_mechanism("cascade/gsp", _scenario((1.0, 0.6)))
    outcome = mechanism.run(AuctionRequests(VALUES, QUALITY), VALUES)
    assert outcome.slot_bidder.tolist() == [[0, 2]]


def test_vcg_payments():
    assert _payments_per_impression("cascade/vcg", (1.0, 0.6)) == pytest.approx([0.308, 0.0, 0.180])


def test_threshold_payments_equal_vcg():
    assert _payments_per_impression("cascade/threshold", (1.0, 0.6)) == pytest.approx(
        [0.308, 0.0, 0.180]
    )


def test_gsp_payments():
    assert _payments_per_impression("cascade/gsp", (1.0, 0.6)) == pytest.approx([0.320, 0.0, 0.180])


@pytest.mark.parametrize("rerun", [False, True])
def test_gsp_regret_of_bidder_one(rerun):
    scenario = _scenario((1.0, 0.9))
    mechanism = ega_sim.make_mechanism("cascade/gsp", scenario)
    world = PositionAuctionWorld(scenario)
    requests = AuctionRequests(VALUES, QUALITY)
    outcome = mechanism.run(requests, VALUES)
    utility = measure_outcome(
        requests, VALUES, outcome, world.expected_clicks(requests, outcome.allocation)
    ).utility
    assert utility[0].tolist() == pytest.approx([0.080, 0.0, 0.9 * 0.16 * (2.0 - 1.875)])
    regret = ex_post_regret(
        MisreportSpec("exact"), mechanism, world, requests, VALUES, utility, rerun=rerun
    )
    assert regret[0, 0].item() == pytest.approx(0.010, abs=1e-7)
    # Bidder 2 could only win by outbidding, paying more than it gains; bidder 3 would pay
    # 0.40 / 0.16 = 2.5 > 2 for slot 1: neither gains.
    assert regret[0, 1:].tolist() == pytest.approx([0.0, 0.0], abs=1e-12)
