"""Rank-by-score allocation for position auctions, and each bidder's view of its own bid.

The allocator ranks eligible bidders (bid >= reserve per click and score >= reserve score) by
q_i * g(b_i), ties to the lower index, and gives slots 1..K in that order; a reserve score on
q * b is an eCPM floor, which makes the number of ads shown flexible.

With the others' bids fixed, bidder i's slot changes only at K thresholds t_1 >= ... >= t_K of
its own bid; `BidderView` holds them together with what the
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
    # The first T = min(N, K + 1) ranks: all that any winner's price or any bidder's view reads.
    order: torch.Tensor  # [B, T] long, bidders by descending score (ties: lower index first)
    score: torch.Tensor  # [B, N] q_i * g(b_i); -inf for bidders below a reserve
    top_score: torch.Tensor  # [B, T] score of order's bidders (descending)


@dataclass(frozen=True)
class BidderView:
    """What bidder `bidder[b, r]` faces at each slot j, the others' bids fixed. All [B, R, K]."""

    bidder: torch.Tensor  # [B, R] long, whose view each row is
    threshold: torch.Tensor  # lowest own bid that wins slot j or better (>= the reserves)
    competitor: torch.Tensor  # long, the other bidder ranked j-th among the others
    competitor_score: torch.Tensor  # its score; -inf if there is none or it is below reserve
    competitor_welfare: torch.Tensor  # its q_c * b_c (0 if none): what VCG charges for
    quality: torch.Tensor  # [B, R] q of the viewing bidder
    slot_ctr: torch.Tensor  # [K] alpha_k
    reserve_per_click: float
    reserve_score: float  # eCPM floor on q * g(b); -inf for none
    score_function: MonotoneScore

    def slot_for_bid(self, bid: torch.Tensor) -> torch.Tensor:
        """The slot [B, R, C] (long, -1 = none) the bidder gets by bidding `bid` [B, R, C] alone.

        Compares scores exactly as the allocator's sort does (q * g(bid), ties to the lower
        index), so it agrees with a full re-run even on exact ties.
        """
        own_score = self.quality.unsqueeze(2) * self.score_function(bid)  # [B, R, C]
        # A competitor that wins ties ranks above iff its score >= ours, i.e. iff its score
        # moved up one float step is > ours; after that shift the keys are still sorted
        # (descending), so the slot is one batched binary search.
        loses_ties = self.competitor < self.bidder.unsqueeze(2)  # [B, R, K]
        key = torch.where(
            loses_ties,
            torch.nextafter(self.competitor_score, self.competitor_score.new_tensor(torch.inf)),
            self.competitor_score,
        )
        slots_above = torch.searchsorted(-key, -own_score, right=False)  # [B, R, C]: # keys > own
        eligible = (bid >= self.reserve_per_click) & (own_score >= self.reserve_score)
        return torch.where(eligible & (slots_above < self.n_slots), slots_above, -1)

    @property
    def n_slots(self) -> int:
        return self.threshold.shape[2]


class RankByScoreAllocator:
    """Rank by q_i * g(b_i) among bids >= reserve with score >= reserve_score; the top K win
    slots 1..K in order."""

    def __init__(
        self,
        name: str,
        slot_ctr: tuple[float, ...],
        score: MonotoneScore,
        reserve: float,
        reserve_score: float = -float("inf"),
    ):
        self.name = name
        self.slot_ctr_values = tuple(slot_ctr)
        self.score_function = score
        self.reserve_per_click = float(reserve)
        self.reserve_score = float(reserve_score)

    @property
    def n_slots(self) -> int:
        return len(self.slot_ctr_values)

    def _slot_ctr(self, like: torch.Tensor) -> torch.Tensor:
        return torch.tensor(self.slot_ctr_values, dtype=like.dtype, device=like.device)

    def allocate(self, requests: AuctionRequests, bids: torch.Tensor) -> RankAllocation:
        score = requests.quality * self.score_function(bids)  # [B, N]
        eligible = (bids >= self.reserve_per_click) & (score >= self.reserve_score)
        score = torch.where(eligible, score, -torch.inf)
        sorted_score, order = torch.sort(score, dim=1, descending=True, stable=True)  # [B, N]
        n_slots = self.n_slots
        ranks = min(bids.shape[1], n_slots + 1)  # T: all that prices and views read
        order, sorted_score = order[:, :ranks], sorted_score[:, :ranks]
        top_order = order[:, :n_slots]
        top_score = sorted_score[:, :n_slots]
        if top_order.shape[1] < n_slots:  # fewer bidders than slots: pad with empty slots
            pad = n_slots - top_order.shape[1]
            top_order = torch.nn.functional.pad(top_order, (0, pad), value=-1)
            top_score = torch.nn.functional.pad(top_score, (0, pad), value=-torch.inf)
        slot_bidder = torch.where(top_score > -torch.inf, top_order, -1)  # [B, K]
        quality = requests.quality.gather(1, slot_bidder.clamp(min=0))
        slot_ctr_model = torch.where(slot_bidder >= 0, self._slot_ctr(bids) * quality, 0.0)
        return RankAllocation(slot_bidder, slot_ctr_model, order, score, sorted_score)

    def own_reserve(self, quality: torch.Tensor) -> torch.Tensor:
        """The lowest own bid (same shape as `quality`) that clears the per-click reserve and
        the reserve score (an eCPM floor) at that quality, ties at the floor winning."""
        own_reserve = torch.full_like(quality, self.reserve_per_click)
        if self.reserve_score > -torch.inf:
            floor = self.score_function.inverse(
                self.reserve_score / quality, upper=torch.zeros_like(quality, dtype=torch.bool)
            )
            own_reserve = torch.maximum(own_reserve, floor)
        return own_reserve

    def bidder_view(
        self,
        requests: AuctionRequests,
        bids: torch.Tensor,
        allocation: RankAllocation,
        bidder: torch.Tensor,
        own_rank: torch.Tensor | None = None,
    ) -> BidderView:
        """Thresholds and competitors of the bidders `bidder` [B, R] (others' bids fixed).

        `own_rank` [B, R] (their positions in `allocation.order`) is derived when not given.
        """
        batch, n_bidders = bids.shape
        ranks = allocation.order.shape[1]  # T = min(N, K + 1)
        if own_rank is None:  # bidders ranked below T: rank T (below every slot)
            rank_of = allocation.order.new_full((batch, n_bidders), ranks)
            positions = torch.arange(ranks, device=bids.device).expand_as(allocation.order)
            own_rank = rank_of.scatter_(1, allocation.order, positions).gather(1, bidder)
        # The other ranked j-th (0-based) sits at position j, or j + 1 once past the bidder;
        # position T is a sentinel column: no bidder, score -inf, welfare 0.
        j = torch.arange(self.n_slots, device=bids.device)  # [K]
        position = (j + (j >= own_rank.unsqueeze(2)).long()).clamp(max=ranks)  # [B, R, K]
        flat_position = position.flatten(1)  # [B, R * K]; B may be 0
        sentinel = torch.full((batch, 1), n_bidders, dtype=torch.long, device=bids.device)
        order = torch.cat([allocation.order, sentinel], dim=1)  # [B, T + 1]
        competitor_flat = order.gather(1, flat_position)  # [B, R * K]
        eligible = allocation.score > -torch.inf
        score = torch.cat([allocation.score, allocation.score.new_full((batch, 1), -torch.inf)], 1)
        welfare = torch.where(eligible, requests.quality * bids, 0.0)
        welfare = torch.cat([welfare, welfare.new_zeros((batch, 1))], dim=1)  # [B, N + 1]
        competitor_score = score.gather(1, competitor_flat).view(position.shape)  # [B, R, K]
        own_quality = requests.quality.gather(1, bidder)  # [B, R]
        competitor = competitor_flat.view(position.shape)
        # Beating competitor c takes q_i g(b) > s_c, or == s_c when i has the lower index;
        # an absent competitor (-inf) leaves only the reserve.
        loses_ties = competitor < bidder.unsqueeze(2)
        needed_score = competitor_score / own_quality.unsqueeze(2)
        threshold = self.score_function.inverse(needed_score, upper=loses_ties)
        return BidderView(
            bidder=bidder,
            threshold=torch.maximum(threshold, self.own_reserve(own_quality).unsqueeze(2)),
            competitor=competitor,
            competitor_score=competitor_score,
            competitor_welfare=welfare.gather(1, competitor_flat).view(position.shape),
            quality=own_quality,
            slot_ctr=self._slot_ctr(bids),
            reserve_per_click=self.reserve_per_click,
            reserve_score=self.reserve_score,
            score_function=self.score_function,
        )
