"""The ground-truth user model of a feed market: permutation-aware, exact in expectation.

For a list of K items shown to a user:

    logit_poi_k = base + w_match cos(user, poi_k) + w_quality quality_k - w_dist dist_k / scale
                  + w_creative appeal_k - similarity_penalty_k - ad_density_penalty x ads above k
    logit_img_k = img_base + w_img_creative appeal_k + w_img_match cos(user, poi_k) - penalties
    similarity_penalty_k = penalty x relu(max_{j<k} cos(poi_j, poi_k) - threshold) / (1 - threshold)

The user examines slot 1; after slot k they go on with probability
decay x (1 - stop_after_click x P(POI click at k)), so examination is a product over the slots
above (a cascade) and expected clicks are exact: E[clicks_k] = P(examine k) x sigmoid(logit_k).
A POI click converts into an order with P = sigmoid(conv_base + w quality_k); an order's GMV is
price level x order_value. Sampled outcomes come from the same model, slot by slot.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ega_sim.world.feed_market import FeedMarket
from ega_sim.world.requests import MarketRequests


@dataclass(frozen=True)
class FeedList:
    """A shown list, resolved to POIs: what the click model needs of each slot."""

    user: torch.Tensor  # [B] long
    poi: torch.Tensor  # [B, K] long
    is_ad: torch.Tensor  # [B, K] bool
    appeal: torch.Tensor  # [B, K] appeal of the picture shown (creative or thumbnail)


@dataclass(frozen=True)
class ListClicks:
    """Per-slot outcomes [B, K]: expectations, or 0/1 draws (gmv in money) when sampled."""

    examined: torch.Tensor
    poi_clicks: torch.Tensor
    img_clicks: torch.Tensor
    orders: torch.Tensor
    gmv: torch.Tensor


def resolve_list(
    market: FeedMarket,
    requests: MarketRequests,
    slot_item: torch.Tensor,
    slot_creative: torch.Tensor,
) -> FeedList:
    """Candidate indices [B, K] (ads 0..N-1, organic N..N+M-1) and creatives -> a FeedList."""
    n_ads = requests.n_bidders
    is_ad = slot_item < n_ads
    ad_slot = slot_item.clamp(max=n_ads - 1)
    organic_slot = (slot_item - n_ads).clamp(min=0)
    advertiser = requests.ad_advertiser.gather(1, ad_slot)  # [B, K] (junk where organic)
    organic_poi = requests.organic_poi.gather(1, organic_slot)  # M >= K, checked by the config
    poi = torch.where(is_ad, market.platform.advertiser_poi[advertiser], organic_poi)
    creative_appeal = market.creative_appeal[advertiser, slot_creative.clamp(min=0)]
    appeal = torch.where(is_ad, creative_appeal, market.poi_thumbnail_appeal[poi])
    return FeedList(requests.user, poi, is_ad, appeal)


class FeedClickModel:
    """Exact expected clicks and sampled clicks of lists, batched; differentiable in appeal."""

    def __init__(self, market: FeedMarket):
        self.market = market
        self.config = market.config.click_model
        self.conversion = market.config.conversion
        self.scale = market.config.requests.neighborhood

    def click_probabilities(self, feed: FeedList) -> tuple[torch.Tensor, torch.Tensor]:
        """P(POI click | examined) and P(image click | examined), each [B, K]."""
        c, m = self.config, self.market
        latent = m.poi_latent[feed.poi]  # [B, K, D] unit vectors
        match = (latent * m.user_latent[feed.user].unsqueeze(1)).sum(-1)  # [B, K]
        distance = (
            m.platform.poi_location[feed.poi] - m.platform.user_location[feed.user].unsqueeze(1)
        ).norm(dim=-1)
        penalty = self._externalities(latent, feed.is_ad)
        poi_logit = (
            c.base_logit
            + c.match_weight * match
            + c.quality_weight * m.poi_quality[feed.poi]
            - c.distance_weight * distance / self.scale
            + c.creative_weight * feed.appeal
            - penalty
        )
        img_logit = (
            c.img_base_logit
            + c.img_creative_weight * feed.appeal
            + c.img_match_weight * match
            - penalty
        )
        return torch.sigmoid(poi_logit), torch.sigmoid(img_logit)

    def _externalities(self, latent: torch.Tensor, is_ad: torch.Tensor) -> torch.Tensor:
        """Logit penalty [B, K] from similar items and from ads shown above each slot."""
        c = self.config
        n_slots = latent.shape[1]
        cosine = latent @ latent.transpose(1, 2)  # [B, K, K]
        above = torch.ones(n_slots, n_slots, dtype=torch.bool, device=latent.device).tril(-1)
        closest_above = torch.where(above, cosine, -1.0).amax(dim=2)  # [B, K]; slot 1 gets -1
        similarity = (closest_above - c.similarity_threshold).clamp(min=0) / (
            1 - c.similarity_threshold
        )
        ads_above = is_ad.cumsum(dim=1) - is_ad.long()
        return c.similarity_penalty * similarity + c.ad_density_penalty * ads_above

    def _order_terms(self, feed: FeedList) -> tuple[torch.Tensor, torch.Tensor]:
        m, conv = self.market, self.conversion
        conversion_rate = torch.sigmoid(
            conv.base_logit + conv.quality_weight * m.poi_quality[feed.poi]
        )
        order_value = (
            m.platform.poi_price_level[feed.poi].to(conversion_rate.dtype) * conv.order_value
        )
        return conversion_rate, order_value

    def expected(self, feed: FeedList) -> ListClicks:
        """Exact expectations per slot."""
        p_poi, p_img = self.click_probabilities(feed)
        go_on = self.config.position_decay * (1 - self.config.stop_after_click * p_poi)  # [B, K]
        examined = torch.cumprod(torch.cat([torch.ones_like(go_on[:, :1]), go_on[:, :-1]], 1), 1)
        poi_clicks = examined * p_poi
        conversion_rate, order_value = self._order_terms(feed)
        orders = poi_clicks * conversion_rate
        return ListClicks(examined, poi_clicks, examined * p_img, orders, orders * order_value)

    def sample(self, feed: FeedList, generator: torch.Generator) -> ListClicks:
        """One realized session per request, drawn slot by slot on the CPU generator."""
        p_poi, p_img = self.click_probabilities(feed)
        conversion_rate, order_value = self._order_terms(feed)
        batch, n_slots = p_poi.shape
        draws = torch.rand((5, batch, n_slots), generator=generator, dtype=p_poi.dtype).to(
            p_poi.device
        )
        examined = torch.zeros_like(p_poi)
        poi = torch.zeros_like(p_poi)
        img = torch.zeros_like(p_poi)
        looking = torch.ones(batch, dtype=torch.bool, device=p_poi.device)
        for k in range(n_slots):  # the session is sequential in k; batched over requests
            examined[:, k] = looking.to(p_poi.dtype)
            poi_click = looking & (draws[0, :, k] < p_poi[:, k])
            poi[:, k] = poi_click.to(p_poi.dtype)
            img[:, k] = (looking & (draws[1, :, k] < p_img[:, k])).to(p_poi.dtype)
            stops = poi_click & (draws[2, :, k] < self.config.stop_after_click)
            looking = looking & ~stops & (draws[3, :, k] < self.config.position_decay)
        orders = poi * (draws[4] < conversion_rate).to(p_poi.dtype)
        return ListClicks(examined, poi, img, orders, orders * order_value)
