"""Winners' prices of a rank allocator from its top K + 1 ranks, without bidder views.

The winner of slot k (0-based) ranks k-th, so the competitor it faces for slot l >= k is the
bidder ranked l + 1 (DESIGN.md section 3): every price of gsp, vcg, threshold and first price
is a function of the [B, K + 1] top scores alone. The formulas, and the order of every float
operation, are those of `BidderView` and mechanisms/payments.py, so the prices are identical
bit for bit (tests/test_rank_prices.py holds them equal on tie-heavy profiles); they only skip
building a [B, K, K] view by gathers for each winner.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ega_sim.mechanisms.rank import RankAllocation, RankByScoreAllocator
from ega_sim.world.position_auction import AuctionRequests


@dataclass(frozen=True)
class WinnerRanking:
    """Slot k's winner and the bidder ranked just below each slot l. All [B, K]."""

    winner: torch.Tensor  # long, slot k's bidder (0 on an empty slot: its price is masked)
    quality: torch.Tensor  # q of slot k's winner
    bid: torch.Tensor  # bid of slot k's winner
    next_bidder: torch.Tensor  # long, the bidder ranked l + 1 (N past the last bidder)
    next_score: torch.Tensor  # its score (-inf if none or below a reserve)
    next_welfare: torch.Tensor  # its q * b (0 if none or below a reserve)


def winner_ranking(
    requests: AuctionRequests, bids: torch.Tensor, allocation: RankAllocation
) -> WinnerRanking:
    """The ranking a winner's price reads, from the allocation's first min(N, K + 1) ranks."""
    n_bidders = bids.shape[1]
    n_slots = allocation.slot_bidder.shape[1]
    order, top_score = allocation.order, allocation.top_score  # [B, T]
    missing = n_slots + 1 - order.shape[1]  # fewer bidders than K + 1: pad with nobody
    if missing > 0:
        order = torch.nn.functional.pad(order, (0, missing), value=n_bidders)
        top_score = torch.nn.functional.pad(top_score, (0, missing), value=-torch.inf)
    next_bidder = order[:, 1:]  # [B, K]
    next_score = top_score[:, 1:]
    present = next_score > -torch.inf
    welfare = requests.quality * bids  # [B, N]
    next_welfare = welfare.gather(1, next_bidder.clamp(max=n_bidders - 1))
    winner = allocation.slot_bidder.clamp(min=0)  # [B, K]
    return WinnerRanking(
        winner=winner,
        quality=requests.quality.gather(1, winner),
        bid=bids.gather(1, winner),
        next_bidder=next_bidder,
        next_score=next_score,
        next_welfare=torch.where(present, next_welfare, 0.0),
    )


def _thresholds(
    allocator: RankByScoreAllocator, ranking: WinnerRanking, pairs: bool
) -> torch.Tensor:
    """Slot k's winner's bid threshold of slot l: [B, K, K] (k, l) if `pairs`, else the
    diagonal l = k [B, K]. Ties: a competitor with a lower index wins them (upper inverse)."""
    quality, winner, reserve = ranking.quality, ranking.winner, None
    if pairs:  # rows k (winner), columns l (slot)
        quality, winner = quality.unsqueeze(2), winner.unsqueeze(2)
        score, bidder = ranking.next_score.unsqueeze(1), ranking.next_bidder.unsqueeze(1)
    else:
        score, bidder = ranking.next_score, ranking.next_bidder
    loses_ties = bidder < winner
    threshold = allocator.score_function.inverse(score / quality, upper=loses_ties)
    reserve = allocator.own_reserve(ranking.quality)
    return torch.maximum(threshold, reserve.unsqueeze(2) if pairs else reserve)


def _suffix_weighted_diagonal(slot_ctr: torch.Tensor, per_slot: torch.Tensor) -> torch.Tensor:
    """sum_{l >= k} (alpha_l - alpha_{l+1}) per_slot[..., k, l] for each k: [B, K] from
    [B, K, K] (or [B, K] when per_slot does not depend on k), summed as payments.py sums."""
    drop = slot_ctr - torch.cat([slot_ctr[1:], slot_ctr.new_zeros(1)])  # [K]
    suffix = (per_slot * drop).flip(-1).cumsum(-1).flip(-1)
    return suffix.diagonal(dim1=1, dim2=2) if suffix.dim() == 3 else suffix


def winner_prices(
    allocator: RankByScoreAllocator,
    rule: str,
    requests: AuctionRequests,
    bids: torch.Tensor,
    allocation: RankAllocation,
) -> torch.Tensor:
    """Price per click [B, K] of each slot's winner under payment rule `rule` (gsp, vcg,
    threshold or first; 0 on empty slots). Raises ValueError for any other rule."""
    ranking = winner_ranking(requests, bids, allocation)
    slot_ctr = allocator._slot_ctr(bids)  # [K]
    if rule == "gsp":
        price = _thresholds(allocator, ranking, pairs=False)
    elif rule == "vcg":
        floor = (ranking.quality * allocator.reserve_per_click).clamp(min=allocator.reserve_score)
        if allocator.reserve_per_click <= 0 and allocator.reserve_score <= 0:
            per_slot = ranking.next_welfare  # welfare >= 0 >= floor: max(w, floor) = w exactly
        else:
            per_slot = torch.maximum(ranking.next_welfare.unsqueeze(1), floor.unsqueeze(2))
        expected = _suffix_weighted_diagonal(slot_ctr, per_slot)
        price = expected / (slot_ctr * ranking.quality)
    elif rule == "threshold":
        per_slot = _thresholds(allocator, ranking, pairs=True)  # [B, K, K]
        price = _suffix_weighted_diagonal(slot_ctr, per_slot) / slot_ctr
    elif rule == "first":
        price = ranking.bid
    else:
        raise ValueError(f"rule: expected gsp, vcg, threshold or first, got {rule!r}")
    return torch.where(allocation.slot_bidder >= 0, price, 0.0)
