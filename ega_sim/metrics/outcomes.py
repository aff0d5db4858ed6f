"""Per-request outcome metrics under the ground-truth click model (expected, not sampled)."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ega_sim.mechanisms.base import Outcome, per_bidder
from ega_sim.world.position_auction import AuctionRequests

# A price may exceed the bid by float rounding of a threshold (s / q * q); beyond this it is real.
IR_TOLERANCE = 1e-9


@dataclass(frozen=True)
class RequestOutcomes:
    """Per-request and per-bidder quantities of one batch, from expected clicks."""

    revenue: torch.Tensor  # [B] sum of price per click x expected clicks
    welfare: torch.Tensor  # [B] sum of value per click x expected clicks
    clicks: torch.Tensor  # [B] expected clicks of the shown ads
    ad_count: torch.Tensor  # [B] ads shown
    utility: torch.Tensor  # [B, N] (value - price) x expected clicks of each bidder
    ir_violations: torch.Tensor  # [B] shown bidders whose price per click exceeds their bid


def measure_outcome(
    requests: AuctionRequests,
    bids: torch.Tensor,
    outcome: Outcome,
    expected_clicks: torch.Tensor,
) -> RequestOutcomes:
    """Revenue, welfare, clicks and utilities of an outcome; expected_clicks is [B, K]."""
    slot_bidder = outcome.slot_bidder  # [B, K]
    shown = slot_bidder >= 0
    index = slot_bidder.clamp(min=0)
    value = requests.value_per_click.gather(1, index)  # [B, K]
    bid = value if bids is requests.value_per_click else bids.gather(1, index)  # truthful: same
    price = outcome.price_per_click
    utility_per_slot = torch.where(shown, (value - price) * expected_clicks, 0.0)
    violation = shown & (price > bid * (1 + IR_TOLERANCE) + IR_TOLERANCE)
    return RequestOutcomes(
        revenue=(price * expected_clicks).sum(1),
        welfare=torch.where(shown, value * expected_clicks, 0.0).sum(1),
        clicks=expected_clicks.sum(1),
        ad_count=shown.sum(1).to(expected_clicks.dtype),
        utility=per_bidder(utility_per_slot, slot_bidder, requests.n_bidders),
        ir_violations=violation.sum(1).to(expected_clicks.dtype),
    )
