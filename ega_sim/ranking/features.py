"""Observable features of (user, candidate, creative): what the platform's models may read.

Only the platform-side tables of a market are used: observed POI latents and qualities (noisy),
locations, price levels, observed creative styles, and users' histories. Never the truth.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ega_sim.world.feed_market import N_PRICE_LEVELS, ObservedMarket
from ega_sim.world.requests import MarketRequests


@dataclass(frozen=True)
class CandidateFeatures:
    """Per-request candidate features; the creative part is per (ad, creative)."""

    item: torch.Tensor  # [B, N + M, F_item] user x POI features of every candidate (or [B, N])
    creative: torch.Tensor  # [B, N, Cmax, F_creative] observed creative styles (0 where none)
    creative_valid: torch.Tensor  # [B, N, Cmax] bool
    relevance: torch.Tensor  # [B, N + M] (or [B, N]) cheap relevance used for retrieval


def item_feature_size(market: ObservedMarket) -> int:
    return 2 * market.config.market.latent_dim + 5


def creative_feature_size(market: ObservedMarket) -> int:
    return market.config.market.creative_dim + 1


def cheap_relevance(
    interest: torch.Tensor, poi_latent: torch.Tensor, quality: torch.Tensor, distance: torch.Tensor
) -> torch.Tensor:
    """Observed match + 0.3 x observed quality - distance: retrieval's one-line score."""
    return (interest.unsqueeze(1) * poi_latent).sum(-1) + 0.3 * quality - distance


def poi_features(
    market: ObservedMarket, user: torch.Tensor, poi: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """User x POI features [B, L, F_item] and cheap relevance [B, L] of POIs poi [B, L]."""
    scale = market.config.requests.neighborhood
    interest = market.user_observed_interest(user)  # [B, D]
    latent = market.observed_poi_latent[poi]  # [B, L, D]
    quality = market.observed_poi_quality[poi]  # [B, L]
    distance = (market.poi_location[poi] - market.user_location[user].unsqueeze(1)).norm(
        dim=-1
    ) / scale
    match = (interest.unsqueeze(1) * latent).sum(-1)
    price = market.poi_price_level[poi].to(latent.dtype) / N_PRICE_LEVELS
    is_ad = market.is_advertiser[poi].to(latent.dtype)
    features = torch.cat(
        [
            latent,
            interest.unsqueeze(1).expand_as(latent),
            torch.stack([match, quality, distance, price, is_ad], dim=-1),
        ],
        dim=-1,
    )
    return features, cheap_relevance(interest, latent, quality, distance)


def creative_features(
    market: ObservedMarket, advertiser: torch.Tensor, creative: torch.Tensor
) -> torch.Tensor:
    """Features [..., F_creative] of creative `creative` of `advertiser` (-1: organic thumbnail,
    all zeros with a flag)."""
    style = market.observed_creative_style[advertiser.clamp(min=0), creative.clamp(min=0)]
    organic = (creative < 0).unsqueeze(-1)
    style = torch.where(organic, 0.0, style)
    return torch.cat([style, organic.to(style.dtype)], dim=-1)


def candidate_features(
    market: ObservedMarket, requests: MarketRequests, *, organic: bool = True
) -> CandidateFeatures:
    """Features of the N ads (with every creative) and, unless organic=False, the M organic
    items of each request."""
    ad_poi = market.advertiser_poi[requests.ad_advertiser]  # [B, N]
    poi = torch.cat([ad_poi, requests.organic_poi], dim=1) if organic else ad_poi  # [B, L]
    item, relevance = poi_features(market, requests.user, poi)
    n_creatives = market.max_creatives
    advertiser = requests.ad_advertiser.unsqueeze(2).expand(-1, -1, n_creatives)
    creative_index = torch.arange(n_creatives, device=advertiser.device).expand_as(advertiser)
    creative = creative_features(market, advertiser, creative_index)
    valid = market.creative_valid[requests.ad_advertiser]  # [B, N, Cmax]
    return CandidateFeatures(item, creative, valid, relevance)
