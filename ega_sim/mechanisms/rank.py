"""Rank-by-score allocation for position auctions, and each bidder's view of its own bid.

The allocator ranks eligible bidders (bid >= reserve) by q_i * g(b_i), ties to the lower index,
and gives slots 1..K in that order. With the others' bids fixed, bidder i's slot changes only at
K thresholds t_1 >= ... >= t_K of its own bid; `BidderView` holds them together with what the
competitors at each rank would pay in welfare terms. Every payment rule of a rank allocator is a
function of this view, and so is every unilateral misreport: this is what makes exact regret a
batched [B, N, K] computation instead of one re-run per candidate bid.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ega_sim.mechanisms.base import Allocation
from ega_sim.mechanisms.score import MonotoneScore
from ega_sim.world.position_auction import AuctionRequests


@dataclass(frozen=True)
class RankAllocation(Allocation):
    order: torch.Tensor  # [B, N] long, bidders by descending score (ties: lower index first)
    score: torch.Tensor  # [B, N] q_i * g(b_i); -inf for bidders below the reserve


@dataclass(frozen=True)
class BidderView:
    """What bidder `bidder[b, r]` faces at each slot j, the others' bids fixed. All [B, R, K]."""

    bidder: torch.Tensor  # [B, R] long, whose view each row is
    threshold: torch.Tensor  # lowest own bid that wins slot j or better (>= the reserve)
    competitor_welfare: torch.Tensor  # q_c * b_c of the other ranked j-th (0 if none): VCG
    quality: torch.Tensor  # [B, R] q of the viewing bidder
    slot_ctr: torch.Tensor  # [K] alpha_k
    reserve_per_click: float

    def slot_for_bid(self, bid: torch.Tensor) -> torch.Tensor:
        """The slot [B, R, C] (long, -1 = no slot) the bidder gets by bidding `bid` [B, R, C]."""
        n_slots = self.threshold.shape[2]
        worse_slots = (self.threshold.unsqueeze(2) > bid.unsqueeze(3)).sum(dim=3)  # [B, R, C]
        return torch.where(worse_slots < n_slots, worse_slots, -1)


class RankByScoreAllocator:
    """Rank by q_i * g(b_i) among bids >= reserve; the top K win slots 1..K in order."""

    def __init__(self, name: str, slot_ctr: tuple[float, ...], score: MonotoneScore, reserve: float):
        self.name = name
        self.slot_ctr_values = tuple(slot_ctr)
        self.score_function = score
        self.reserve_per_click = float(reserve)

    @property
    def n_slots(self) -> int:
        return len(self.slot_ctr_values)

    def _slot_ctr(self, like: torch.Tensor) -> torch.Tensor:
        return torch.tensor(self.slot_ctr_values, dtype=like.dtype, device=like.device)

    def allocate(self, requests: AuctionRequests, bids: torch.Tensor) -> RankAllocation:
        eligible = bids >= self.reserve_per_click  # [B, N]
        score = torch.where(eligible, requests.quality * self.score_function(bids), -torch.inf)
        sorted_score, order = torch.sort(score, dim=1, descending=True, stable=True)  # [B, N]
        n_slots = self.n_slots
        top_order = order[:, :n_slots]
        top_score = sorted_score[:, :n_slots]
        if top_order.shape[1] < n_slots:  # fewer bidders than slots: pad with empty slots
            pad = n_slots - top_order.shape[1]
            top_order = torch.nn.functional.pad(top_order, (0, pad), value=-1)
            top_score = torch.nn.functional.pad(top_score, (0, pad), value=-torch.inf)
        slot_bidder = torch.where(top_score > -torch.inf, top_order, -1)  # [B, K]
        quality = requests.quality.gather(1, slot_bidder.clamp(min=0))
        slot_ctr_model = torch.where(slot_bidder >= 0, self._slot_ctr(bids) * quality, 0.0)
        return RankAllocation(slot_bidder, slot_ctr_model, order, score)

    def bidder_view(
        self,
        requests: AuctionRequests,
        bids: torch.Tensor,
        allocation: RankAllocation,
        bidder: torch.Tensor,
    ) -> BidderView:
        """Thresholds and competitors of the bidders `bidder` [B, R] (others' bids fixed)."""
        batch, n_bidders = bids.shape
        n_slots = self.n_slots
        # Rank of each viewed bidder in the full order.
        rank_of = torch.empty_like(allocation.order)
        rank_of.scatter_(1, allocation.order, torch.arange(n_bidders, device=bids.device).expand_as(bids))
        own_rank = rank_of.gather(1, bidder)  # [B, R]
        # The other ranked j-th (0-based) sits at position j, or j + 1 once past the bidder.
        j = torch.arange(n_slots, device=bids.device)  # [K]
        position = j + (j >= own_rank.unsqueeze(2)).long()  # [B, R, K]
        exists = position < n_bidders
        flat = position.clamp(max=n_bidders - 1).reshape(batch, -1)
        competitor = allocation.order.gather(1, flat).reshape(position.shape)  # [B, R, K]
        competitor_score = allocation.score.gather(1, competitor.reshape(batch, -1)).reshape(
            position.shape
        )
        present = exists & (competitor_score > -torch.inf)
        own_quality = requests.quality.gather(1, bidder)  # [B, R]
        # To beat the competitor: q_i g(b) > s_c, or == s_c when i has the lower index.
        loses_ties = competitor < bidder.unsqueeze(2)
        needed_score = torch.where(present, competitor_score, 0.0) / own_quality.unsqueeze(2)
        threshold = self.score_function.inverse(needed_score, upper=loses_ties)
        threshold = torch.where(present, threshold.clamp(min=self.reserve_per_click), self.reserve_per_click)
        competitor_welfare = (requests.quality * bids).gather(1, competitor.reshape(batch, -1))
        competitor_welfare = torch.where(present, competitor_welfare.reshape(position.shape), 0.0)
        return BidderView(
            bidder=bidder,
            threshold=threshold,
            competitor_welfare=competitor_welfare,
            quality=own_quality,
            slot_ctr=self._slot_ctr(bids),
            reserve_per_click=self.reserve_per_click,
        )
