"""Prices from the own-bid response (mechanisms/bid_response.py), found by re-running the
allocator: on rank-by-score they are the textbook rules, up to the stated resolution."""

from __future__ import annotations

import pytest
import torch

import ega_sim
from ega_sim.mechanisms.bid_response import own_bid_response
from ega_sim.seeding import make_generator


def _shown(mechanism, requests, bids):
    outcome = mechanism.run(requests, bids)
    request, slot = (outcome.slot_bidder >= 0).nonzero(as_tuple=True)
    bidder = outcome.slot_bidder[request, slot]
    return outcome, request, slot, bidder


@pytest.mark.parametrize(
    "scenario", ["textbook", "three_bidders_two_slots", "lognormal_heavy_tail", "bimodal_ironing"]
)
@pytest.mark.parametrize("allocator", ["cascade", "myerson"])
@pytest.mark.parametrize(("rule", "track"), [("gsp", "position"), ("threshold", "ctr")])
def test_bisection_prices_are_the_rank_rules(scenario, allocator, rule, track):
    world = ega_sim.make_world(scenario)
    mechanism = ega_sim.make_mechanism(f"{allocator}/{rule}", world)
    requests = world.sample_requests(1_000, make_generator(0, "bid-response"))
    bids = requests.value_per_click
    outcome, request, slot, bidder = _shown(mechanism, requests, bids)
    bid = bids[request, bidder]
    response = own_bid_response(
        mechanism, requests, bids, request, bidder, bid, bid.unsqueeze(1), track=track
    )
    price_of = response.gsp_price if rule == "gsp" else response.threshold_price
    price = price_of(bid.unsqueeze(1))[:, 0]
    exact = outcome.price_per_click[request, slot]  # next score / quality; Myerson's threshold
    # A change is placed at the upper end of its bracket: never below, at most one resolution
    # above the true threshold (times the share of the click-through rate it carries).
    assert bool((price >= exact - 1e-12).all())
    assert bool((price - exact <= response.resolution + 1e-12).all())
    assert bool(response.monotone().all())  # rank-by-score is monotone in the own bid


def test_a_non_monotone_response_is_flagged():
    from ega_sim.mechanisms.bid_response import BidResponse

    bid = torch.tensor([[0.0, 0.5, 1.0], [0.0, 0.5, 1.0]], dtype=torch.float64)
    position = torch.tensor([[2, 0, 1], [2, 1, 0]])  # the first worsens as its bid rises
    ctr = torch.tensor([[0.0, 0.3, 0.2], [0.0, 0.2, 0.3]], dtype=torch.float64)
    response = BidResponse(bid, position, ctr, torch.ones(2, dtype=torch.float64))
    assert response.monotone().tolist() == [False, True]
    # GSP keeps the connected stretch: the second pays 0.5 for position 0 at bid 1.
    assert response.gsp_price(torch.tensor([[1.0], [1.0]], dtype=torch.float64))[:, 0].tolist() == [
        0.5,
        1.0,
    ]
    # Myerson for the second at bid 1: (1 x 0.3 - (0.5 x 0 + 0.5 x 0.2)) / 0.3 = 2 / 3.
    threshold = response.threshold_price(torch.tensor([[1.0], [1.0]], dtype=torch.float64))
    assert threshold[1, 0].item() == pytest.approx(2 / 3)
