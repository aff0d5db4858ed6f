"""Compiled (numba) kernels of the cascade's rank auctions: no sort, no [B, K, K] views.

`rank_auction` scores a block of LANES requests at a time, selects each one's top
T = min(N, K + 1) bidders with a compare-and-swap network run across the block (ties to the
lower index: exactly torch's stable descending sort cut to T), and prices the winners;
`best_misreports` gives every bidder's best unilateral misreport among the exact candidates
of metrics/regret.py, reusing that allocation. The score is q * b (the identity g of
`cascade`; a virtual-value g stays on torch, where its knot lookups are no slower). Every float
operation is the one the torch reference does, in the same order (mechanisms/rank.py,
rank_prices.py, payments.py, metrics/regret.py), with IEEE division (error_model="numpy",
no fastmath), so outputs are equal bit for bit: tests/test_rank_kernel.py holds them equal on
tie-heavy profiles. mechanisms/rank_path.py decides when these run.

Importing this module imports numba (about 0.3 s); kernels compile once per machine
(a few seconds) and are cached next to this file, or in numba's user cache when that is
read-only.
"""

from __future__ import annotations

import numpy as np
from numba import njit

GSP, VCG, THRESHOLD, FIRST = 0, 1, 2, 3  # payment rule codes
LANES = 64  # requests per block of the selection network
BAD_BID = 1  # status: a bid that is negative, NaN or infinite (the caller raises its error)


@njit(cache=True, nogil=True, inline="always")
def _maximum(a, b):
    """torch.maximum: NaN if either is NaN, else the larger (a select, no branch)."""
    return a if (a > b) | (a != a) else b


@njit(cache=True, nogil=True, error_model="numpy")
def _slot_drops(slot_ctr):
    """alpha_l - alpha_(l+1) for each slot l [K] (alpha_(K+1) = 0), as payments.py takes them."""
    n_slots = slot_ctr.shape[0]
    drop = np.empty(n_slots)
    for slot in range(n_slots):
        drop[slot] = slot_ctr[slot] - (slot_ctr[slot + 1] if slot + 1 < n_slots else 0.0)
    return drop


@njit(cache=True, nogil=True, error_model="numpy")
def rank_auction(
    quality,  # [B, N] float64
    bids,  # [B, N] float64
    slot_ctr,  # [K] the allocator's alpha_k
    rule,  # GSP, VCG, THRESHOLD or FIRST
    reserve,
    reserve_score,
    score,  # out [B, N]: q * g(b), -inf below a reserve
    order,  # out [B, T] int64: the first T ranks (ties to the lower index)
    top_score,  # out [B, T]
    slot_bidder,  # out [B, K] int64, -1 empty
    slot_ctr_model,  # out [B, K]
    price,  # out [B, K] per click, 0 on empty slots
):
    """Allocate and price B requests; returns BAD_BID (outputs unspecified) if a bid is not a
    finite number >= 0, else 0."""
    batch, n_bidders = bids.shape
    ranks = order.shape[1]
    n_slots = slot_ctr.shape[0]
    drop = _slot_drops(slot_ctr)
    plain_vcg = reserve <= 0.0 and reserve_score <= 0.0  # max(welfare, floor) = welfare
    lane_score = np.empty((n_bidders, LANES))  # a block of requests, bidder-major
    lane_bidder = np.empty((n_bidders, LANES), dtype=np.int64)
    for start in range(0, batch, LANES):
        lanes = min(LANES, batch - start)
        bad = False
        for i in range(n_bidders):
            for lane in range(lanes):
                bid = bids[start + lane, i]
                bad |= (bid < 0.0) | (bid != bid) | (bid == np.inf)
                s = quality[start + lane, i] * bid
                s = s if (bid >= reserve) & (s >= reserve_score) else -np.inf
                score[start + lane, i] = s
                lane_score[i, lane] = s
                lane_bidder[i, lane] = i
        if bad:
            return BAD_BID
        # Bubble passes of compare-and-swap, each lane a request: pass t brings the best of
        # ranks t.. to rank t. "Better" is a higher score, or an equal one and a lower index:
        # a strict total order, so the first T ranks are exactly the stable sort's.
        for rank in range(ranks):
            for j in range(n_bidders - 1, rank, -1):
                for lane in range(lanes):
                    score_a, score_b = lane_score[j - 1, lane], lane_score[j, lane]
                    bidder_a, bidder_b = lane_bidder[j - 1, lane], lane_bidder[j, lane]
                    swap = (score_b > score_a) | ((score_b == score_a) & (bidder_b < bidder_a))
                    lane_score[j - 1, lane] = score_b if swap else score_a
                    lane_score[j, lane] = score_a if swap else score_b
                    lane_bidder[j - 1, lane] = bidder_b if swap else bidder_a
                    lane_bidder[j, lane] = bidder_a if swap else bidder_b
        for rank in range(ranks):
            for lane in range(lanes):
                order[start + lane, rank] = lane_bidder[rank, lane]
                top_score[start + lane, rank] = lane_score[rank, lane]
        # Prices (rank_prices.py): slot k's winner faces the bidder ranked k + 1.
        for b in range(start, start + lanes):
            for slot in range(n_slots):
                if not (slot < ranks and top_score[b, slot] > -np.inf):
                    slot_bidder[b, slot] = -1
                    slot_ctr_model[b, slot] = 0.0
                    price[b, slot] = 0.0
                    continue
                winner = order[b, slot]
                q = quality[b, winner]
                slot_bidder[b, slot] = winner
                slot_ctr_model[b, slot] = slot_ctr[slot] * q
                if rule == FIRST:
                    price[b, slot] = bids[b, winner]
                    continue
                own = reserve  # RankByScoreAllocator.own_reserve
                if reserve_score > -np.inf:
                    own = _maximum(reserve, reserve_score / q)
                if rule == VCG:
                    floor = q * reserve
                    floor = floor if floor >= reserve_score else reserve_score
                total = 0.0  # sum_{l >= slot} drop_l * per_slot_l, from the last slot up
                last = slot if rule == GSP else n_slots - 1
                for later in range(last, slot - 1, -1):
                    below = later + 1
                    present = below < ranks and top_score[b, below] > -np.inf
                    if rule == VCG:
                        welfare = 0.0
                        if present:
                            c = order[b, below]
                            welfare = quality[b, c] * bids[b, c]
                        total += (welfare if plain_vcg else _maximum(welfare, floor)) * drop[later]
                        continue
                    needed = (top_score[b, below] if below < ranks else -np.inf) / q
                    threshold = _maximum(needed, own)
                    if rule == GSP:
                        total = threshold
                    else:
                        total += threshold * drop[later]
                if rule == GSP:
                    price[b, slot] = total
                elif rule == VCG:
                    price[b, slot] = total / (slot_ctr[slot] * q)
                else:
                    price[b, slot] = total / slot_ctr[slot]
    return 0


@njit(cache=True, nogil=True, error_model="numpy")
def best_misreports(
    values,  # [B, N] value per click
    quality,  # [B, N]
    bids,  # [B, N] the profile the others' bids come from
    score,  # [B, N] the allocation's scores at `bids`
    order,  # [B, T] its first T ranks
    slot_ctr,  # [K] the allocator's alpha_k (prices)
    click_ctr,  # [K] the world's slot CTRs (utility: clicks = q * click_ctr[slot])
    rule,
    reserve,
    reserve_score,
    nudge,  # metrics.regret.EXACT_NUDGE
    best_bid,  # out [B, N]: the first candidate with the highest utility
    best_utility,  # out [B, N]
):
    """Each bidder's best utility over the exact candidates (0 and just above each of its K
    thresholds, the others' bids fixed): `RankMechanism.unilateral` on `candidate_misreports`,
    maximized over candidates, without the [B, N, K + 1] tensors."""
    batch, n_bidders = bids.shape
    ranks = order.shape[1]
    n_slots = slot_ctr.shape[0]
    drop = _slot_drops(slot_ctr)
    rank_of = np.empty(n_bidders, dtype=np.int64)
    competitor = np.empty(n_slots, dtype=np.int64)
    competitor_score = np.empty(n_slots)
    wins_ties = np.empty(n_slots, dtype=np.bool_)  # competitor j ranks above at equal scores
    threshold = np.empty(n_slots)
    slot_price = np.empty(n_slots)  # price per click of each slot (gsp, vcg, threshold)
    for b in range(batch):
        scale = values[b, 0]
        for i in range(n_bidders):
            rank_of[i] = ranks
            scale = _maximum(scale, values[b, i])
        for position in range(ranks):
            rank_of[order[b, position]] = position
        floor_step = nudge * scale if scale > 0 else np.nextafter(scale, np.inf)
        for i in range(n_bidders):
            q = quality[b, i]
            value = values[b, i]
            own = reserve  # RankByScoreAllocator.own_reserve
            if reserve_score > -np.inf:
                own = _maximum(reserve, reserve_score / q)
            for j in range(n_slots):
                position = j + 1 if j >= rank_of[i] else j
                c = order[b, position] if position < ranks else n_bidders
                cs = score[b, c] if position < ranks else -np.inf
                competitor[j] = c
                competitor_score[j] = cs
                threshold[j] = _maximum(cs / q, own)
                wins_ties[j] = c < i
            if rule == GSP:
                for j in range(n_slots):
                    slot_price[j] = threshold[j]
            elif rule == VCG:
                floor = q * reserve
                floor = floor if floor >= reserve_score else reserve_score
                total = 0.0
                for j in range(n_slots - 1, -1, -1):
                    c = competitor[j]
                    welfare = 0.0
                    if competitor_score[j] > -np.inf:
                        welfare = quality[b, c] * bids[b, c]
                    total += _maximum(welfare, floor) * drop[j]
                    slot_price[j] = total / (slot_ctr[j] * q)
            elif rule == THRESHOLD:
                total = 0.0
                for j in range(n_slots - 1, -1, -1):
                    total += threshold[j] * drop[j]
                    slot_price[j] = total / slot_ctr[j]
            top_bid, top_utility = 0.0, 0.0
            for candidate in range(n_slots + 1):
                if candidate == 0:
                    bid = 0.0
                else:
                    t = threshold[candidate - 1]
                    bid = t * (1 + nudge) if t > 0 else floor_step
                own_score = q * bid
                # slot_for_bid's count of keys > own score, where a competitor that wins ties
                # has key nextafter(s, inf): nextafter(s, inf) > own iff s >= own.
                above = 0
                for j in range(n_slots):
                    cs = competitor_score[j]
                    above += (cs > own_score) | (wins_ties[j] & (cs == own_score))
                utility = 0.0 * value  # no slot: no clicks, no price
                if (bid >= reserve) & (own_score >= reserve_score) & (above < n_slots):
                    paid = bid if rule == FIRST else slot_price[above]
                    utility = q * click_ctr[above] * (value - paid)
                if candidate == 0 or utility > top_utility:  # the first of equal maxima
                    top_bid, top_utility = bid, utility
            best_bid[b, i] = top_bid
            best_utility[b, i] = top_utility
    return 0
