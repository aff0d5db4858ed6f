"""A minimal batched NumPy program of the position bench's auction, timed beside ega-sim in the
same run (issue 18): rank by q * b (stable: ties to the lower index), GSP prices
s_(k+1) / q_(k), and for `evaluate` the draws and the per-request metrics too.

It is the yardstick, not a second implementation to use: no reserves, no checks, no regret.
"""

from __future__ import annotations

import numpy as np

from ega_sim.metrics.outcomes import IR_TOLERANCE


def numpy_gsp(values: np.ndarray, quality: np.ndarray, n_slots: int):
    """Slot bidders [B, K] and GSP prices per click [B, K] of truthful bids (no reserve)."""
    n_bidders = values.shape[1]
    score = quality * values  # [B, N]
    order = np.argsort(-score, axis=1, kind="stable")[:, : n_slots + 1]  # [B, <= K + 1]
    top = np.take_along_axis(score, order, axis=1)
    if n_bidders <= n_slots:  # fewer bidders than K + 1: nobody below the last
        top = np.pad(top, ((0, 0), (0, n_slots + 1 - n_bidders)))
        order = np.pad(order[:, :n_slots], ((0, 0), (0, n_slots - n_bidders)), constant_values=-1)
    slot_bidder = order[:, :n_slots]
    slot_quality = np.take_along_axis(quality, np.maximum(slot_bidder, 0), axis=1)
    return slot_bidder, top[:, 1 : n_slots + 1] / slot_quality


def numpy_evaluate(requests: int, n_bidders: int, slot_ctr: np.ndarray, chunk: int, seed: int):
    """Draw values U[0, 1] and qualities U[0.5, 1] chunk by chunk, run GSP, and return the mean
    per request, with its standard error, of each figure `evaluate` reports for a position
    auction without regret: revenue, welfare, advertiser utility, clicks, ads shown and IR
    violations (in that order, [6] each). The mechanism's model CTRs are the world's here, so
    its model clicks and revenue are the clicks and revenue: computed once."""
    generator = np.random.default_rng(seed)
    n_slots = len(slot_ctr)
    sums = np.zeros((6, 2))  # figure x (sum, sum of squares)
    for start in range(0, requests, chunk):
        size = min(chunk, requests - start)
        values = generator.random((size, n_bidders))
        quality = 0.5 + 0.5 * generator.random((size, n_bidders))
        slot_bidder, price = numpy_gsp(values, quality, n_slots)
        shown = slot_bidder >= 0
        index = np.maximum(slot_bidder, 0)
        clicks = np.where(shown, slot_ctr * np.take_along_axis(quality, index, axis=1), 0.0)
        value = np.take_along_axis(values, index, axis=1)  # truthful: also the bid
        revenue = (price * clicks).sum(1)
        welfare = (value * clicks).sum(1)
        violations = (shown & (price > value * (1 + IR_TOLERANCE) + IR_TOLERANCE)).sum(1)
        per_request = np.stack(
            [revenue, welfare, welfare - revenue, clicks.sum(1), shown.sum(1), violations]
        )  # [6, B]
        sums[:, 0] += per_request.sum(1)
        sums[:, 1] += (per_request * per_request).sum(1)
    mean = sums[:, 0] / requests
    se = np.sqrt(np.maximum(sums[:, 1] / requests - mean**2, 0.0) / max(requests - 1, 1))
    return mean, se
