"""Requests of a feed market: one user, N candidate ads and M organic items near the user.

Candidate ads are advertisers near the user (distance plus noise); organic items are nearby
non-advertising POIs in the fixed order of an upstream score (observed relevance, observed
quality, distance, noise). Each ad's value per click is its advertiser's mean times a mean-one
lognormal shock drawn per request.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ega_sim.world.feed_market import FeedMarket
from ega_sim.world.sampling import noisy_top_k


@dataclass(frozen=True)
class MarketRequests:
    """B page views. Candidate index n < N is ad n; N + m is organic item m."""

    user: torch.Tensor  # [B] long
    ad_advertiser: torch.Tensor  # [B, N] long, advertiser of each candidate ad
    value_per_click: torch.Tensor  # [B, N] private values (the truthful bids)
    organic_poi: torch.Tensor  # [B, M] long, in the fixed upstream order

    @property
    def batch_size(self) -> int:
        return self.user.shape[0]

    @property
    def n_bidders(self) -> int:
        return self.ad_advertiser.shape[1]

    @property
    def n_organic(self) -> int:
        return self.organic_poi.shape[1]

    def _map(self, fn) -> MarketRequests:
        return MarketRequests(
            *(
                fn(t)
                for t in (self.user, self.ad_advertiser, self.value_per_click, self.organic_poi)
            )
        )

    def to(self, device: torch.device | str) -> MarketRequests:
        return self._map(lambda t: t.to(device))

    def slice(self, start: int, stop: int) -> MarketRequests:
        return self._map(lambda t: t[start:stop])

    def select(self, index: torch.Tensor) -> MarketRequests:
        """Requests `index` [R] (repeats allowed)."""
        return self._map(lambda t: t[index])

    def repeat_each(self, times: int) -> MarketRequests:
        """Each request repeated `times` times in a row."""
        return self._map(lambda t: t.repeat_interleave(times, dim=0))


def sample_market_requests(
    market: FeedMarket, batch_size: int, generator: torch.Generator
) -> MarketRequests:
    """Draw B requests on the CPU generator (the market must be on the CPU)."""
    config = market.config
    n_ads, n_organic = config.requests.candidate_ads, config.requests.organic_items
    scale = config.requests.neighborhood
    user = torch.randint(market.n_users, (batch_size,), generator=generator)
    user_location = market.platform.user_location[user]  # [B, 2]

    ad_location = market.platform.poi_location[market.platform.advertiser_poi]  # [A, 2]
    nearness = -torch.cdist(user_location, ad_location) / scale  # [B, A]
    ad_advertiser = noisy_top_k(nearness, n_ads, 1.0, generator)
    shock_sigma = config.values.shock_sigma
    shock = torch.exp(
        shock_sigma * torch.randn(batch_size, n_ads, generator=generator, dtype=torch.float64)
        - 0.5 * shock_sigma**2
    )
    values = market.advertiser_value_mean[ad_advertiser] * shock

    organic = market.organic_poi  # [P - A]
    interest = market.observed().user_observed_interest(user)  # [B, D]
    upstream = (
        interest @ market.platform.observed_poi_latent[organic].T
        + 0.3 * market.platform.observed_poi_quality[organic]
        - torch.cdist(user_location, market.platform.poi_location[organic]) / scale
    )  # [B, P - A]
    top = noisy_top_k(upstream, n_organic, 0.5, generator)  # in upstream order, best first
    return MarketRequests(user, ad_advertiser, values, organic[top])
