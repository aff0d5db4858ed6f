"""Every registered mechanism passes the contract checker on every shipped scenario, and the
checker itself catches a broken mechanism."""

from __future__ import annotations

import pytest
import torch

import ega_sim
from ega_sim.config import available_scenarios
from ega_sim.mechanisms.base import Allocation, Outcome
from ega_sim.testing import check_mechanism


@pytest.mark.parametrize("scenario", available_scenarios())
@pytest.mark.parametrize("name", ega_sim.mechanism_names())
def test_registered_mechanisms_meet_the_contract(name, scenario):
    check_mechanism(ega_sim.make_mechanism(name, scenario), scenario)


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
