"""The multi-stage cascade of a feed market: retrieval, pCTR ranking, creative selection,
auction by bid x pCTR, placement among the fixed organic order.

1. Retrieval keeps the R candidate ads of highest cheap relevance (observed features only).
2. A CTR model scores every creative of every retrieved ad: q = P(POI click at the top).
   `cascade` uses the pCTR model learned from logs; `oracle_cascade` uses the true click
   probability of the item alone at the top and the examination decay (for analysis only).
3. Each ad shows its creative of highest q.
4. The ad auction is the textbook rank-by-score auction among the R ads, score = bid x q,
   with the scenario's reserve and eCPM floor (the floor makes the ad load flexible: ads that do
   not reach it leave their position to organic items); its slots are the ad positions, whose
   click factors alpha are the model's position effects. So gsp, vcg, threshold and first are
   exactly the foundation's payment rules (mechanisms/payments.py) priced under the cascade's
   own CTR model.
5. The winners take the ad positions in rank order; organic items fill the other slots.

The cascade's CTR model is separable and ignores externalities; the true user model is not.
That gap is why VCG, incentive compatible under its own model, shows regret under the truth.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ega_sim.mechanisms.base import Allocation, Outcome
from ega_sim.mechanisms.mechanism import RankMechanism, check_bids
from ega_sim.mechanisms.placement import place_ads
from ega_sim.mechanisms.rank import RankByScoreAllocator
from ega_sim.mechanisms.score import MonotoneScore
from ega_sim.ranking.features import CandidateFeatures, candidate_features
from ega_sim.ranking.pctr import PositionAwarePCTR
from ega_sim.world.click_model import FeedClickModel, FeedList
from ega_sim.world.feed_market import FeedMarket, ObservedMarket
from ega_sim.world.position_auction import AuctionRequests
from ega_sim.world.requests import MarketRequests


@dataclass(frozen=True)
class FeedAllocation(Allocation):
    """A feed list: slot_bidder is the candidate ad index (-1 for organic items)."""

    slot_item: torch.Tensor  # [B, K] long, candidate index: ads 0..N-1, organic N..N+M-1
    slot_creative: torch.Tensor  # [B, K] long, creative of the ad, -1 for organic items


@dataclass(frozen=True)
class CascadeContext:
    """The bid-independent stages for a batch: who is retrieved, their q, their creative."""

    retrieved: torch.Tensor  # [B, R] long candidate ad indices
    top_ctr: torch.Tensor  # [B, R] q of the chosen creative (float64)
    creative: torch.Tensor  # [B, R] long chosen creative

    def slice(self, start: int, stop: int) -> CascadeContext:
        return CascadeContext(
            *(t[start:stop] for t in (self.retrieved, self.top_ctr, self.creative))
        )

    def repeat_each(self, times: int) -> CascadeContext:
        return CascadeContext(
            *(
                t.repeat_interleave(times, dim=0)
                for t in (self.retrieved, self.top_ctr, self.creative)
            )
        )


class LearnedCTR:
    """q from the position-aware pCTR model trained on logs."""

    def __init__(self, model: PositionAwarePCTR, observed: ObservedMarket):
        self.model = model
        self.observed = observed

    def slot_factors(self, positions: tuple[int, ...]) -> tuple[float, ...]:
        return tuple(self.model.slot_factors(positions).tolist())

    @torch.no_grad()
    def creative_ctr(
        self, requests: MarketRequests, retrieved: torch.Tensor, features: CandidateFeatures
    ) -> torch.Tensor:
        """q [B, R, Cmax] of every creative of the retrieved ads (-inf where none)."""
        index = retrieved.unsqueeze(2)
        item = features.item.gather(1, index.expand(-1, -1, features.item.shape[2]))  # [B, R, F]
        creative = features.creative.gather(
            1, index.unsqueeze(3).expand(-1, -1, *features.creative.shape[2:])
        )  # [B, R, Cmax, Fc]
        valid = features.creative_valid.gather(1, index.expand(-1, -1, creative.shape[2]))
        item = item.unsqueeze(2).expand(-1, -1, creative.shape[2], -1)
        q = self.model.top_ctr(item, creative).to(torch.float64)
        return torch.where(valid, q, -torch.inf)


class OracleCTR:
    """q = the true P(POI click) of the item alone at the top; alpha = examination decay.
    Exact only when the true model has no externalities and no stop-after-click."""

    def __init__(self, market: FeedMarket):
        self.market = market
        self.click_model = FeedClickModel(market)

    def slot_factors(self, positions: tuple[int, ...]) -> tuple[float, ...]:
        decay = self.market.config.click_model.position_decay
        return tuple(decay ** (p - 1) for p in positions)  # relative to position 1, like q

    @torch.no_grad()
    def creative_ctr(
        self, requests: MarketRequests, retrieved: torch.Tensor, features: CandidateFeatures
    ) -> torch.Tensor:
        """The true q [B, R, Cmax]; the observed features are not needed."""
        advertiser = requests.ad_advertiser.gather(1, retrieved)  # [B, R]
        n_creatives = self.market.max_creatives
        batch, n_retrieved = retrieved.shape
        advertiser_c = advertiser.unsqueeze(2).expand(-1, -1, n_creatives).reshape(batch, -1)
        creative_c = torch.arange(n_creatives, device=retrieved.device).expand(
            batch, n_retrieved, -1
        )
        feed = FeedList(
            user=requests.user,
            poi=self.market.platform.advertiser_poi[advertiser_c],
            is_ad=torch.zeros_like(advertiser_c, dtype=torch.bool),  # each alone: no penalties
            appeal=self.market.creative_appeal[advertiser_c, creative_c.reshape(batch, -1)],
        )
        # Every item scored as if alone at the top: no items above, hence no externalities.
        p_poi = _alone_click_probability(self.click_model, feed)
        q = p_poi.reshape(batch, n_retrieved, n_creatives)
        valid = self.market.platform.creative_count[advertiser].unsqueeze(2) > torch.arange(
            n_creatives, device=q.device
        )
        return torch.where(valid, q, -torch.inf)


def _alone_click_probability(click_model: FeedClickModel, feed: FeedList) -> torch.Tensor:
    """P(POI click | examined) of each item of `feed` shown alone [B, L]."""
    batch, length = feed.poi.shape
    single = FeedList(
        user=feed.user.repeat_interleave(length),
        poi=feed.poi.reshape(-1, 1),
        is_ad=feed.is_ad.reshape(-1, 1),
        appeal=feed.appeal.reshape(-1, 1),
    )
    p_poi, _ = click_model.click_probabilities(single)
    return p_poi.reshape(batch, length)


class FeedCascade:
    """The cascade mechanism of a feed market (see the module docstring)."""

    def __init__(self, allocator_name: str, config, ctr, payment_rule, observed: ObservedMarket):
        self.config = config
        self.ctr = ctr
        self.observed = observed
        self.ad_positions = config.requests.ad_positions
        slot_ctr = ctr.slot_factors(self.ad_positions)
        inner = RankByScoreAllocator(
            "cascade",
            slot_ctr,
            MonotoneScore.make_identity(),
            config.reserve,
            reserve_score=config.ecpm_floor,
        )
        self.auction = RankMechanism(inner, payment_rule)
        self.name = f"{allocator_name}/{payment_rule.name}"
        self.payment_rule = payment_rule
        self.individually_rational = self.auction.individually_rational
        self.price_varies_within_slot = self.auction.price_varies_within_slot

    def __repr__(self) -> str:
        return f"FeedCascade({self.name!r})"

    def prepare(self, requests: MarketRequests) -> CascadeContext:
        """Retrieval, pCTR and creative selection: everything that does not read the bids."""
        features = candidate_features(self.observed, requests, organic=False)
        retrieved = torch.topk(features.relevance, self.config.requests.retrieval, dim=1).indices
        q = self.ctr.creative_ctr(requests, retrieved, features)  # [B, R, Cmax]
        top_ctr, creative = q.max(dim=2)
        return CascadeContext(retrieved, top_ctr, creative)

    def ad_auction(
        self, requests: MarketRequests, bids: torch.Tensor, context: CascadeContext
    ) -> tuple[AuctionRequests, torch.Tensor]:
        """The inner position auction among the retrieved ads: requests and bids [B, R]."""
        values = requests.value_per_click.gather(1, context.retrieved)
        return AuctionRequests(values, context.top_ctr), bids.gather(1, context.retrieved)

    def run(
        self, requests: MarketRequests, bids: torch.Tensor, context: CascadeContext | None = None
    ) -> Outcome:
        """Allocate and price a batch of feed requests: bids [B, N] -> Outcome with [B, K]."""
        check_bids(bids, requests)
        context = self.prepare(requests) if context is None else context
        auction_requests, auction_bids = self.ad_auction(requests, bids, context)
        inner = self.auction.run(auction_requests, auction_bids)  # [B, K_ad], index into R
        won = inner.slot_bidder >= 0
        ranked = context.retrieved.gather(1, inner.slot_bidder.clamp(min=0))  # [B, K_ad]
        ad_creative = context.creative.gather(1, inner.slot_bidder.clamp(min=0))
        slot_item, slot_ad_rank = place_ads(
            ranked, won.sum(1), self.ad_positions, self.config.n_slots, requests.n_bidders
        )
        is_ad = slot_ad_rank >= 0
        rank = slot_ad_rank.clamp(min=0)

        def at_ad_slots(per_rank: torch.Tensor, fill) -> torch.Tensor:
            return torch.where(is_ad, per_rank.gather(1, rank), fill)

        allocation = FeedAllocation(
            slot_bidder=torch.where(is_ad, slot_item, -1),
            slot_ctr_model=at_ad_slots(inner.allocation.slot_ctr_model, 0.0),
            slot_item=slot_item,
            slot_creative=at_ad_slots(ad_creative, -1),
        )
        return Outcome(allocation, at_ad_slots(inner.price_per_click, 0.0))

    def bid_thresholds(
        self, requests: MarketRequests, bids: torch.Tensor, context: CascadeContext | None = None
    ) -> torch.Tensor:
        """Each candidate's own-bid thresholds [B, N, K_ad] in the ad auction; a bidder that is
        not retrieved can win nothing, and gets thresholds of 0 (its only candidate bid)."""
        context = self.prepare(requests) if context is None else context
        auction_requests, auction_bids = self.ad_auction(requests, bids, context)
        inner = self.auction.bidder_views(auction_requests, auction_bids).threshold  # [B, R, K_ad]
        result = inner.new_zeros((bids.shape[0], bids.shape[1], inner.shape[2]))
        return result.scatter(1, context.retrieved.unsqueeze(2).expand_as(inner), inner)
