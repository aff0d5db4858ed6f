"""Every registered mechanism passes the contract checker on every shipped scenario, and the
checker itself catches a broken mechanism."""

from __future__ import annotations

import pytest
import torch

import ega_sim
from ega_sim.config import available_scenarios, load_scenario
from ega_sim.mechanisms.base import Allocation, Outcome
from ega_sim.testing import check_mechanism

POSITION_AUCTIONS = [
    s for s in available_scenarios() if load_scenario(s).kind == "position_auction"
]


@pytest.mark.parametrize("scenario", POSITION_AUCTIONS)
@pytest.mark.parametrize("name", ega_sim.mechanism_names(learned=False))
def test_registered_mechanisms_meet_the_contract(name, scenario):
    check_mechanism(ega_sim.make_mechanism(name, scenario), scenario)


@pytest.mark.parametrize("payment", ["gsp", "vcg", "threshold", "first"])
def test_feed_market_mechanisms_meet_the_contract(payment, feed_small_checkpoint):
    check_mechanism(ega_sim.make_mechanism(f"oracle_cascade/{payment}", "feed_small"), "feed_small")
    learned = ega_sim.make_mechanism(
        f"cascade/{payment}", "feed_small", checkpoint=feed_small_checkpoint
    )
    check_mechanism(learned, "feed_small")


class _Overcharging:
    """cascade/gsp, but charging twice the price: breaks IR."""

    def __init__(self):
        self.inner = ega_sim.make_mechanism("cascade/gsp", "textbook")
        self.name = "broken/overcharge"
        self.individually_rational = True

    def run(self, requests, bids):
        outcome = self.inner.run(requests, bids)
        return Outcome(
            outcome.allocation, outcome.price_per_click * 2 + 0.01 * (outcome.slot_bidder >= 0)
        )


class _Duplicating(_Overcharging):
    """Shows bidder 0 in every slot."""

    def run(self, requests, bids):
        outcome = self.inner.run(requests, bids)
        allocation = Allocation(
            torch.zeros_like(outcome.slot_bidder), outcome.allocation.slot_ctr_model
        )
        return Outcome(allocation, outcome.price_per_click)


def test_checker_catches_broken_mechanisms():
    with pytest.raises(AssertionError, match="above the bid"):
        check_mechanism(_Overcharging(), "textbook")
    with pytest.raises(AssertionError, match="more than one slot"):
        check_mechanism(_Duplicating(), "textbook")
