"""The feed-market world: a generated market, its request sampler and its click model."""

from __future__ import annotations

import torch

from ega_sim.config.feed_market import FeedMarketConfig
from ega_sim.world.click_model import FeedClickModel, ListClicks, resolve_list
from ega_sim.world.feed_market import FeedMarket, generate_market
from ega_sim.world.requests import MarketRequests, sample_market_requests


class FeedMarketWorld:
    """A generated feed market on a device: the truth (`market`), the platform's view of it
    (`platform`, all that mechanisms and learned models may read), the ground-truth click
    model, and the request sampler. `cpu_market` is the market as generated, where the
    random draws happen. Build it with `world.build.make_world`."""

    def __init__(
        self,
        config: FeedMarketConfig,
        device: torch.device | str = "cpu",
        market: FeedMarket | None = None,
    ):
        self.config = config
        self.device = torch.device(device)
        self.cpu_market = market if market is not None else generate_market(config)
        self.market = self.cpu_market.to(self.device)
        self.platform = self.market.platform
        self.click_model = FeedClickModel(self.market)

    def sample_requests(self, batch_size: int, generator: torch.Generator) -> MarketRequests:
        """B requests drawn on the CPU generator, then moved to the world's device."""
        return sample_market_requests(self.cpu_market, batch_size, generator).to(self.device)

    def list_clicks(self, requests: MarketRequests, allocation) -> ListClicks:
        """Exact expected POI and image clicks, orders and GMV of each slot [B, K]."""
        feed = resolve_list(self.market, requests, allocation.slot_item, allocation.slot_creative)
        return self.click_model.expected(feed)

    def expected_clicks(self, requests: MarketRequests, allocation) -> torch.Tensor:
        """Expected POI clicks [B, K]: what advertisers pay for."""
        return self.list_clicks(requests, allocation).poi_clicks
