"""Compiled (numba) kernels of the cascade's rank auctions: no sort, no [B, K, K] views.

`rank_auction` scores the batch in one flat pass, then takes blocks of LANES requests: each
request's top T = min(N, K + 1) bidders come from an insertion network (bidders in index order,
each pushing the ranks it strictly beats down one, so ties go to the lower index: exactly
torch's stable descending sort cut to T), and the winners' prices from those ranks.
`best_misreports` gives every bidder's best unilateral misreport among the exact candidates of
metrics/regret.py, reusing that allocation; `outcome_terms` does metrics/outcomes.py's per-slot
work for any outcome. The loops over a block's lanes are straight-line selects that LLVM
vectorizes (4 requests per instruction with AVX2), but for the candidate search, which has K
compiled in (a tuple argument): its loops over candidates and slots unroll, and it runs in
registers, one request at a time (LLVM's vectorizer takes innermost loops only). The score is
q * b (the identity g of `cascade`; a virtual-value g stays on torch, where its knot lookups are
no slower). Every float operation is the one the torch reference does, in the same order
(mechanisms/rank.py, rank_prices.py, payments.py, metrics/regret.py), with IEEE division
(error_model="numpy", no fastmath), so outputs are equal bit for bit: tests/test_rank_kernel.py
holds them equal on tie-heavy profiles. One test is rewritten, not copied: whether a competitor
with score c stays ranked above an own score s (c > s, or c == s and it wins ties) is the one
compare s < c, or s < up(c) (the next double up) where it wins ties, which is the same for every
c the search meets (finite, -0.0 or -inf; a +inf score makes it decline to torch).
mechanisms/rank_path.py decides when these run.

Importing this module imports numba (about 0.3 s); the kernels compile once per machine
(about 5 s, and 3 s more for the regret search at each new K) and are cached next to this
file, or in numba's user cache when that is read-only.
"""

from __future__ import annotations

import numpy as np
from numba import njit

GSP, VCG, THRESHOLD, FIRST = 0, 1, 2, 3  # payment rule codes
LANES = 64  # requests per block of the selection network
BAD_BID = 1  # status: a bid that is negative, NaN or infinite (the caller raises its error)
SUMMED_SLOTS = 4  # outcome_terms sums over at most this many slots itself
INFINITE_SCORE = 2  # status: a ranked score of +inf (q * b overflowed: the caller uses torch)


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
def _scores(quality, bids, reserve, reserve_score, score):
    """score = q * b, -inf below a reserve, over the whole [B, N] batch in one flat (vectorized)
    pass; False if a bid is not a finite number >= 0."""
    flat_bids, flat_quality, flat_score = bids.reshape(-1), quality.reshape(-1), score.reshape(-1)
    n_bad = 0
    for k in range(flat_bids.shape[0]):
        bid = flat_bids[k]
        n_bad += not ((bid >= 0.0) & (bid < np.inf))
        s = flat_quality[k] * bid
        flat_score[k] = s if (bid >= reserve) & (s >= reserve_score) else -np.inf
    return n_bad == 0


@njit(cache=True, nogil=True, error_model="numpy")
def rank_auction(
    quality,  # [B, N] float64, C-contiguous
    bids,  # [B, N] float64, C-contiguous
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
    finite number >= 0, else 0.

    The loops over `lane` (a block's requests) are branch-free selects: LLVM vectorizes the
    selection network and the prices; the gathers of the winners' q and b stay scalar.
    """
    batch, n_bidders = bids.shape
    ranks = order.shape[1]
    n_slots = slot_ctr.shape[0]
    drop = _slot_drops(slot_ctr)
    plain_vcg = reserve <= 0.0 and reserve_score <= 0.0  # max(welfare, floor) = welfare
    if not _scores(quality, bids, reserve, reserve_score, score):
        return BAD_BID
    block_score = np.full((n_bidders, LANES), -np.inf)  # [N, LANES] the block's scores
    # The top T so far [K + 1, LANES], best first; rows >= T stay -inf (nobody ranked there).
    top = np.full((n_slots + 1, LANES), -np.inf)
    top_bidder = np.zeros((n_slots + 1, LANES), dtype=np.int64)
    carry = np.empty(LANES)  # what an insertion pushes down a rank
    carry_bidder = np.empty(LANES, dtype=np.int64)
    winner_quality = np.empty((n_slots, LANES))
    winner_price = np.empty((n_slots, LANES))
    own = np.empty(LANES)  # the winner's own reserve per click
    floor = np.empty(LANES)  # VCG's welfare floor
    total = np.empty(LANES)
    for start in range(0, batch, LANES):
        lanes = min(LANES, batch - start)
        for i in range(n_bidders):
            for lane in range(lanes):
                block_score[i, lane] = score[start + lane, i]
        # Insertion, bidder by bidder in index order: bidder i goes above every rank whose
        # score is strictly lower (so ties keep the lower index first, as the stable sort)
        # and pushes those ranks down one; the first T ranks are exactly the sort's.
        for i in range(n_bidders):
            for lane in range(LANES):
                carry[lane] = block_score[i, lane]
                carry_bidder[lane] = i
            for rank in range(min(i, ranks)):
                for lane in range(LANES):
                    ranked, ranked_bidder = top[rank, lane], top_bidder[rank, lane]
                    pushed, pushed_bidder = carry[lane], carry_bidder[lane]
                    below = block_score[i, lane] > ranked  # rank moves down, carry takes it
                    top[rank, lane] = pushed if below else ranked
                    top_bidder[rank, lane] = pushed_bidder if below else ranked_bidder
                    carry[lane] = ranked if below else pushed
                    carry_bidder[lane] = ranked_bidder if below else pushed_bidder
            if i < ranks:
                top[i] = carry
                top_bidder[i] = carry_bidder
        # Prices per click (rank_prices.py): slot k's winner faces the bidder ranked k + 1.
        for slot in range(n_slots):
            q, paid = winner_quality[slot], winner_price[slot]
            for lane in range(lanes):
                q[lane] = quality[start + lane, top_bidder[slot, lane]]
            if rule == FIRST:
                for lane in range(lanes):
                    paid[lane] = bids[start + lane, top_bidder[slot, lane]]
                continue
            for lane in range(lanes):  # RankByScoreAllocator.own_reserve
                own[lane] = reserve
                if reserve_score > -np.inf:
                    own[lane] = _maximum(reserve, reserve_score / q[lane])
            if rule == GSP:
                for lane in range(lanes):
                    paid[lane] = _maximum(top[slot + 1, lane] / q[lane], own[lane])
                continue
            # sum_{l >= slot} drop_l * (what rank l + 1 forces), from the last slot up
            total[:] = 0.0
            if rule == VCG:
                for lane in range(lanes):
                    f = q[lane] * reserve
                    floor[lane] = f if f >= reserve_score else reserve_score
            for later in range(n_slots - 1, slot - 1, -1):
                for lane in range(lanes):
                    s = top[later + 1, lane]
                    if rule == VCG:  # the welfare q * b of rank l + 1 is its score (0 if none)
                        welfare = s if s > -np.inf else 0.0
                        welfare = welfare if plain_vcg else _maximum(welfare, floor[lane])
                        total[lane] += welfare * drop[later]
                    else:
                        total[lane] += _maximum(s / q[lane], own[lane]) * drop[later]
            for lane in range(lanes):
                if rule == VCG:
                    paid[lane] = total[lane] / (slot_ctr[slot] * q[lane])
                else:
                    paid[lane] = total[lane] / slot_ctr[slot]
        for rank in range(ranks):
            for lane in range(lanes):
                order[start + lane, rank] = top_bidder[rank, lane]
                top_score[start + lane, rank] = top[rank, lane]
        for slot in range(n_slots):
            for lane in range(lanes):
                shown = top[slot, lane] > -np.inf
                slot_bidder[start + lane, slot] = top_bidder[slot, lane] if shown else -1
                ctr = slot_ctr[slot] * winner_quality[slot, lane]
                slot_ctr_model[start + lane, slot] = ctr if shown else 0.0
                price[start + lane, slot] = winner_price[slot, lane] if shown else 0.0
    return 0


@njit(cache=True, nogil=True, error_model="numpy")
def best_misreports(
    values,  # [B, N] value per click
    quality,  # [B, N]
    order,  # [B, T] the allocation's first T ranks
    top_score,  # [B, T] their scores
    slot_ctr,  # [K] the allocator's alpha_k (prices)
    click_ctr,  # tuple of K floats: the world's slot CTRs (clicks = q * click_ctr[slot])
    rule,
    reserve,
    reserve_score,
    nudge,  # metrics.regret.EXACT_NUDGE
    best_bid,  # out [B, N]: the first candidate with the highest utility
    best_utility,  # out [B, N]
):
    """Each bidder's best utility over the exact candidates (0 and just above each of its K
    thresholds, the others' bids fixed): `RankMechanism.unilateral` on `candidate_misreports`,
    maximized over candidates, without the [B, N, K + 1] tensors. Returns INFINITE_SCORE
    (outputs unspecified) if a ranked score is +inf, else 0.

    `click_ctr` is a tuple so that K is part of the compiled type: the candidate loop's loops
    over candidates and slots unroll and it runs in registers (module docstring).
    """
    batch, n_bidders = values.shape
    ranks = order.shape[1]
    n_slots = len(click_ctr)
    drop = _slot_drops(slot_ctr)
    # The block's first T ranks [K + 2, LANES]; rows >= T: nobody (score -inf, bidder N).
    top = np.full((n_slots + 2, LANES), -np.inf)
    top_bidder = np.full((n_slots + 2, LANES), n_bidders, dtype=np.int64)
    floor_step = np.zeros(LANES)  # the candidate above a threshold of 0
    value, q = np.zeros(LANES), np.zeros(LANES)  # bidder i's, per request of the block
    own = np.zeros(LANES)  # its own reserve per click
    rank = np.zeros(LANES, dtype=np.int64)  # its rank (T if below the first T)
    # What bidder i faces at each slot j [K, LANES]: the j-th of the others in rank order.
    competitor_score = np.zeros((n_slots, LANES))
    wins_ties = np.zeros((n_slots, LANES), dtype=np.int64)  # that competitor's index < i
    # An own score below ahead_of[j] leaves competitor j ranked above: its score, or the next
    # double up when it wins ties (s < up(c) <=> s <= c); an int64 view does the step.
    ahead_of = np.zeros((n_slots, LANES))
    ahead_bits, competitor_bits = ahead_of.view(np.int64), competitor_score.view(np.int64)
    threshold = np.zeros((n_slots, LANES))  # lowest own bid that wins slot j or better
    slot_price = np.zeros((n_slots, LANES))  # price per click at slot j (vcg, threshold)
    slot_utility = np.zeros((n_slots, LANES))  # q * CTR_j * (value - price_j)
    floor, total = np.zeros(LANES), np.zeros(LANES)
    top_bid, top_utility = np.zeros(LANES), np.zeros(LANES)
    for start in range(0, batch, LANES):
        lanes = min(LANES, batch - start)
        infinite = 0
        for t in range(ranks):
            for lane in range(lanes):
                top[t, lane] = top_score[start + lane, t]
                top_bidder[t, lane] = order[start + lane, t]
                infinite += top[t, lane] == np.inf
        if infinite:  # up(+inf) is not above +inf: ahead_of would be wrong
            return INFINITE_SCORE
        for lane in range(lanes):  # candidate_misreports' floor step, from the largest value
            scale = values[start + lane, 0]
            for i in range(n_bidders):
                scale = _maximum(scale, values[start + lane, i])
            floor_step[lane] = nudge * scale if scale > 0 else np.nextafter(scale, np.inf)
        for i in range(n_bidders):
            for lane in range(lanes):
                value[lane] = values[start + lane, i]
                q[lane] = quality[start + lane, i]
            for lane in range(lanes):  # RankByScoreAllocator.own_reserve
                own[lane] = reserve
                if reserve_score > -np.inf:
                    own[lane] = _maximum(reserve, reserve_score / q[lane])
                rank[lane] = ranks
            for t in range(ranks):
                for lane in range(lanes):
                    rank[lane] = t if top_bidder[t, lane] == i else rank[lane]
            for j in range(n_slots):
                for lane in range(lanes):
                    # Both loads first, then a select of values: a select of loads compiles
                    # to one load from a selected address, which LLVM cannot vectorize.
                    at, after = top[j, lane], top[j + 1, lane]
                    bidder_at, bidder_after = top_bidder[j, lane], top_bidder[j + 1, lane]
                    shifted = j >= rank[lane]  # i ranks above: its j-th competitor is j + 1
                    competitor_score[j, lane] = after if shifted else at
                    wins_ties[j, lane] = (bidder_after if shifted else bidder_at) < i
                for lane in range(lanes):  # up(c): the bits plus one, away from zero
                    bits = competitor_bits[j, lane]  # c is finite >= +0, -0.0 or -inf
                    up = 1 if competitor_score[j, lane] == 0.0 else bits + (1 if bits > 0 else -1)
                    ahead_bits[j, lane] = up if wins_ties[j, lane] != 0 else bits
                for lane in range(lanes):
                    threshold[j, lane] = _maximum(competitor_score[j, lane] / q[lane], own[lane])
            if rule in (VCG, THRESHOLD):  # sums from the last slot up
                for lane in range(lanes):
                    f = q[lane] * reserve
                    floor[lane] = f if f >= reserve_score else reserve_score
                    total[lane] = 0.0
                for j in range(n_slots - 1, -1, -1):
                    for lane in range(lanes):
                        if rule == VCG:  # the competitor's welfare q * b is its score
                            cs = competitor_score[j, lane]
                            welfare = cs if cs > -np.inf else 0.0
                            total[lane] += _maximum(welfare, floor[lane]) * drop[j]
                        else:
                            total[lane] += threshold[j, lane] * drop[j]
                    for lane in range(lanes):
                        if rule == VCG:
                            slot_price[j, lane] = total[lane] / (slot_ctr[j] * q[lane])
                        else:
                            slot_price[j, lane] = total[lane] / slot_ctr[j]
            prices = threshold if rule == GSP else slot_price  # gsp pays the threshold
            for j in range(n_slots):  # the utility of landing in slot j (but first price)
                for lane in range(LANES):
                    margin = value[lane] - prices[j, lane]
                    slot_utility[j, lane] = (q[lane] * click_ctr[j]) * margin
            # One request at a time, its loops over candidates and slots unrolled; over every
            # lane (a fixed trip count ran twice as fast as `lanes`; the extra lanes are unused).
            for lane in range(LANES):
                bidder_q, bidder_value = q[lane], value[lane]
                nothing = 0.0 * bidder_value  # no slot: no clicks, no price
                lane_bid, lane_utility = 0.0, 0.0
                for candidate in range(n_slots + 1):
                    bid = 0.0
                    if candidate > 0:
                        t = threshold[candidate - 1, lane]
                        bid = t * (1 + nudge) if t > 0 else floor_step[lane]
                    own_score = bidder_q * bid
                    # slot_for_bid: the bid's slot is the first j whose competitor is not
                    # ranked above it (a higher score, or an equal one and a lower index);
                    # from the last slot up, the utility there (none below every slot).
                    utility = nothing
                    for j in range(n_slots - 1, -1, -1):
                        ahead = own_score < ahead_of[j, lane]
                        if rule == FIRST:
                            here = (bidder_q * click_ctr[j]) * (bidder_value - bid)
                        else:
                            here = slot_utility[j, lane]
                        utility = utility if ahead else here
                    shown = (bid >= reserve) & (own_score >= reserve_score)
                    utility = utility if shown else nothing
                    if candidate == 0 or utility > lane_utility:  # the first of equal maxima
                        lane_bid, lane_utility = bid, utility
                top_bid[lane] = lane_bid
                top_utility[lane] = lane_utility
            for lane in range(lanes):
                best_bid[start + lane, i] = top_bid[lane]
                best_utility[start + lane, i] = top_utility[lane]
    return 0


@njit(cache=True, nogil=True, error_model="numpy")
def outcome_terms(
    slot_bidder,  # [B, K] int64, -1 empty
    price,  # [B, K] per click
    clicks,  # [B, K] expected clicks
    model_ctr,  # [B, K] the allocation's own CTRs
    values,  # [B, N] value per click
    bids,  # [B, N]
    ir_tolerance,  # metrics.outcomes.IR_TOLERANCE
    sums,  # out [5, B] when K <= SUMMED_SLOTS: the terms below summed over slots
    terms,  # out [5, B, K] when K > SUMMED_SLOTS: price x clicks; value x clicks if shown,
    # else 0; clicks; model clicks (the model CTR if shown, else 0); price x model clicks
    ad_count,  # out [B] ads shown
    utility,  # out [B, N] (value - price) x clicks of each shown bidder, else 0
    ir_violations,  # out [B] shown bidders whose price exceeds the bid beyond ir_tolerance
):
    """metrics/outcomes.measure_outcome's per-slot and per-bidder work for any outcome, in one
    pass: the same float operations, so equal bit for bit. Up to SUMMED_SLOTS slots it sums
    the terms too, from 0 in slot order, which is torch's order for so few doubles; beyond,
    the caller sums `terms` with torch (whose order is its own, vectorized and
    machine-dependent)."""
    batch, n_slots = slot_bidder.shape
    n_bidders = values.shape[1]
    summed = n_slots <= SUMMED_SLOTS
    for r in range(batch):
        for i in range(n_bidders):
            utility[r, i] = 0.0
        ads, violations = 0, 0
        revenue, welfare, all_clicks, model_clicks, model_revenue = 0.0, 0.0, 0.0, 0.0, 0.0
        for k in range(n_slots):
            bidder = slot_bidder[r, k]
            shown = bidder >= 0
            index = bidder if shown else 0
            value, bid = values[r, index], bids[r, index]
            paid, click = price[r, k], clicks[r, k]
            model_click = model_ctr[r, k] if shown else 0.0
            paid_clicks, value_clicks = paid * click, value * click if shown else 0.0
            paid_model_clicks = paid * model_click
            if summed:
                revenue += paid_clicks
                welfare += value_clicks
                all_clicks += click
                model_clicks += model_click
                model_revenue += paid_model_clicks
            else:
                terms[0, r, k] = paid_clicks
                terms[1, r, k] = value_clicks
                terms[2, r, k] = click
                terms[3, r, k] = model_click
                terms[4, r, k] = paid_model_clicks
            if shown:
                utility[r, bidder] = (value - paid) * click
                ads += 1
                violations += paid > bid * (1 + ir_tolerance) + ir_tolerance
        if summed:
            sums[0, r], sums[1, r], sums[2, r] = revenue, welfare, all_clicks
            sums[3, r], sums[4, r] = model_clicks, model_revenue
        ad_count[r] = ads
        ir_violations[r] = violations
