"""The loop every environment shares: draw requests, put the agents' bids in, run the mechanism,
score the outcome under the ground-truth click model.

Bids are multipliers of the value: bid = multiplier x value per click. What an advertiser sees
of a request (its context): in a position auction its quality (pCTR) q_i; in a feed market its
own mean value per click (it knows its business; the request's shock is in the value).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from ega_sim.config.feed_market import FeedMarketConfig
from ega_sim.mechanisms.base import per_bidder
from ega_sim.mechanisms.registry import make_mechanism
from ega_sim.world.build import as_world
from ega_sim.world.click_model import resolve_list

# The observation boxes' upper bound: float32's largest finite number. Observations are finite
# (an infinite one is outside the box): scenario values are bounded when loaded so that they
# stay finite and nonzero in float32 (world/value_range.py).
OBSERVATION_HIGH = float(np.finfo(np.float32).max)


@dataclass(frozen=True)
class Round:
    """One round of B requests, per bidder [B, N] (0 where a bidder is not shown)."""

    bids: torch.Tensor
    price_per_click: torch.Tensor
    slot: torch.Tensor  # long, the bidder's list position, -1 if not shown
    expected_clicks: torch.Tensor
    clicks: torch.Tensor  # realized (sampled) clicks; the expected ones when not sampled
    expected_utility: torch.Tensor  # (value - price) x expected clicks
    realized_utility: torch.Tensor  # (value - price) x realized clicks


class AuctionMarket:
    """A world and a mechanism, run on bids given as multipliers of the values. `scenario` is
    a world or a scenario (whose world is built on `device`, default the CPU); `mechanism` a
    name (built on the world, from `checkpoint` if learned) or a mechanism."""

    def __init__(self, scenario, mechanism, checkpoint=None, device=None):
        self.world = as_world(scenario, device)
        self.scenario = self.world.config
        self.device = self.world.device
        self.mechanism = (
            make_mechanism(mechanism, self.world, checkpoint=checkpoint)
            if isinstance(mechanism, str)
            else mechanism
        )
        self.feed = isinstance(self.scenario, FeedMarketConfig)
        self.n_bidders = self.scenario.n_bidders

    def draw(self, batch: int, generator: torch.Generator):
        return self.world.sample_requests(batch, generator)

    def context(self, requests) -> torch.Tensor:
        """What each bidder sees besides its value [B, N] (see the module docstring)."""
        if self.feed:
            return self.world.market.advertiser_value_mean[requests.ad_advertiser]
        return requests.quality

    def observe(self, requests) -> np.ndarray:
        """[B, N, 2] float32: (value per click, context) of every bidder."""
        both = torch.stack([requests.value_per_click, self.context(requests)], dim=2)
        return both.to(torch.float32).cpu().numpy()

    @torch.no_grad()
    def play(self, requests, multipliers: torch.Tensor, generator: torch.Generator | None) -> Round:
        """Run the mechanism on bids = multipliers [B, N] x values; sample the clicks from
        `generator` (None: no sampling, the realized figures are the expected ones)."""
        values = requests.value_per_click
        bids = multipliers.to(values) * values
        outcome = self.mechanism.run(requests, bids)
        slot_bidder = outcome.slot_bidder  # [B, K]
        expected = self.world.expected_clicks(requests, outcome.allocation)  # [B, K]
        if generator is None:
            realized = expected
        elif self.feed:
            feed = resolve_list(
                self.world.market,
                requests,
                outcome.allocation.slot_item,
                outcome.allocation.slot_creative,
            )
            realized = self.world.click_model.sample(feed, generator).poi_clicks
        else:
            draws = torch.rand(expected.shape, generator=generator, dtype=expected.dtype)
            realized = (draws.to(expected.device) < expected).to(expected.dtype)
        n_bidders = self.n_bidders
        shown = slot_bidder >= 0
        positions = torch.arange(slot_bidder.shape[1], device=bids.device).expand_as(slot_bidder)
        slot = per_bidder(torch.where(shown, positions + 1, 0), slot_bidder, n_bidders) - 1
        price = per_bidder(outcome.price_per_click, slot_bidder, n_bidders)
        expected_clicks = per_bidder(torch.where(shown, expected, 0.0), slot_bidder, n_bidders)
        clicks = per_bidder(torch.where(shown, realized, 0.0), slot_bidder, n_bidders)
        margin = values - price
        return Round(
            bids=bids,
            price_per_click=price,
            slot=slot,
            expected_clicks=expected_clicks,
            clicks=clicks,
            expected_utility=margin * expected_clicks,
            realized_utility=margin * clicks,
        )
