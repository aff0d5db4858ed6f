"""The logging policy: the platform's old cascade, with exploration, that produced the logs.

Retrieval keeps the R candidate ads of highest cheap relevance; they are ranked by
bid x exp(relevance) (a crude eCPM with no learned model); the top ones fill the ad positions in
order and organic items fill the rest in their fixed order. Creatives are rotated uniformly at
random among an ad's creatives. With probability `exploration` per request the whole list is
shown in a uniformly random order, so that position effects can be learned from the logs.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ega_sim.mechanisms.placement import place_ads
from ega_sim.ranking.features import candidate_features
from ega_sim.world.feed_market import ObservedMarket
from ega_sim.world.requests import MarketRequests

DEFAULT_EXPLORATION = 0.2


@dataclass(frozen=True)
class LoggedList:
    slot_item: torch.Tensor  # [B, K] long, candidate index (ads 0..N-1, organic N..)
    slot_creative: torch.Tensor  # [B, K] long, -1 for organic items
    explored: torch.Tensor  # [B] bool, shown in a random order


def logging_policy(
    observed: ObservedMarket,
    requests: MarketRequests,
    generator: torch.Generator,
    exploration: float = DEFAULT_EXPLORATION,
) -> LoggedList:
    """Choose each request's shown list (see the module docstring)."""
    config = observed.config
    n_ads = requests.n_bidders
    n_slots = config.n_slots
    ad_positions = config.requests.ad_positions
    relevance = candidate_features(observed, requests, organic=False).relevance  # [B, N]
    retrieved = torch.topk(relevance, config.requests.retrieval, dim=1).indices  # [B, R]
    bids = requests.value_per_click.gather(1, retrieved)
    crude_ecpm = bids * torch.exp(relevance.gather(1, retrieved))
    ranked = retrieved.gather(1, torch.argsort(crude_ecpm, dim=1, descending=True))
    n_shown = torch.full(
        (requests.batch_size,), min(len(ad_positions), ranked.shape[1]), device=ranked.device
    )
    slot_item, slot_ad_rank = place_ads(ranked, n_shown, ad_positions, n_slots, n_ads)
    is_ad = slot_ad_rank >= 0

    batch = requests.batch_size
    uniform = torch.rand((batch, n_slots), generator=generator, dtype=torch.float64).to(
        ranked.device
    )
    valid = observed.creative_valid[
        requests.ad_advertiser.gather(1, slot_item.clamp(max=n_ads - 1))
    ]
    count = valid.sum(-1)  # [B, K] creatives of the ad in each slot
    creative = (uniform * count).long().clamp(max=observed.max_creatives - 1)
    slot_creative = torch.where(is_ad, creative, -1)

    explore_draw = torch.rand(batch, generator=generator, dtype=torch.float64).to(ranked.device)
    explored = explore_draw < exploration
    keys = torch.rand((batch, n_slots), generator=generator, dtype=torch.float64).to(ranked.device)
    shuffle = torch.where(
        explored.unsqueeze(1),
        torch.argsort(keys, dim=1),
        torch.arange(n_slots, device=ranked.device),
    )
    return LoggedList(slot_item.gather(1, shuffle), slot_creative.gather(1, shuffle), explored)
