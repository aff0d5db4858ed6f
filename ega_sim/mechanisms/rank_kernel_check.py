"""A guard against a miscompiled rank kernel: before a process first runs the compiled kernels
at K slots, they must give the torch reference's outputs, bit for bit, on a small batch.

Why: numba compiles for the machine's CPU, and LLVM's loop vectorizer has miscompiled one
formulation of the selection network (on AVX2: a block's second rank got the first rank's
bidder; right with vectorization off or for a generic CPU). The formulation in rank_kernel.py
is the one tests/test_rank_kernel.py holds equal on this project's machines, but another CPU or
LLVM version compiles other code. The check costs about 30 ms per K per process; on a mismatch
the auto mode falls back to torch with a warning (mechanisms/rank_path.py).
"""

from __future__ import annotations

from functools import cache

import torch

CHECK_REQUESTS = 293  # four blocks of 64 and a partial one
RULES = ("gsp", "vcg", "threshold", "first")
ALLOCATION_FIELDS = ("slot_bidder", "slot_ctr_model", "order", "score", "top_score")


def _check_batch(n_slots: int):
    """A world with K = `n_slots` slots, K + 3 bidders, a reserve and an eCPM floor, and a
    batch whose bids and qualities sit on small grids (exact score ties, zero bids)."""
    from ega_sim.config.scenario import PositionAuctionConfig
    from ega_sim.world.build import make_world
    from ega_sim.world.distributions import Uniform
    from ega_sim.world.position_auction import AuctionRequests

    n_bidders = n_slots + 3
    config = PositionAuctionConfig(
        name="rank_kernel_check",
        n_bidders=n_bidders,
        slot_ctr=tuple(1.0 - k / (n_slots + 1) for k in range(n_slots)),
        values=Uniform(0.0, 1.0),
        quality=Uniform(0.5, 1.0),
        reserve=0.125,
        ecpm_floor=0.0625,
    )
    generator = torch.Generator().manual_seed(18)
    shape = (CHECK_REQUESTS, n_bidders)
    values = torch.randint(0, 5, shape, generator=generator).double() / 4  # [B, N]
    quality = torch.randint(1, 3, shape, generator=generator).double() / 2  # [B, N]
    return make_world(config, "cpu"), AuctionRequests(values, quality)


@cache
def kernels_agree_with_torch(n_slots: int) -> bool:
    """Whether `rank_auction` and `best_misreports` give torch's allocation, prices, best
    misreports and their utilities, bit for bit, for every payment rule at K = `n_slots`
    (checked once per K in a process)."""
    from ega_sim.mechanisms.rank_path import kernel_best_misreports, kernel_run, rank_path
    from ega_sim.mechanisms.registry import make_mechanism
    from ega_sim.metrics.regret import EXACT_NUDGE, MisreportSpec, misreport_utility

    world, requests = _check_batch(n_slots)
    bids = requests.value_per_click
    for rule in RULES:
        mechanism = make_mechanism(f"cascade/{rule}", world)
        with rank_path("torch"):
            reference = mechanism.run(requests, bids)
            search = misreport_utility(
                MisreportSpec("exact"), mechanism, world, requests, bids, outcome=reference
            )
        allocation, price = kernel_run(mechanism, requests, bids)
        best_bid, best_utility = kernel_best_misreports(
            mechanism, world, requests, bids, allocation, EXACT_NUDGE
        )
        expected_utility, first_best = search.utility.max(dim=2)  # [B, N]
        expected_bid = search.misreports.gather(2, first_best.unsqueeze(2))[..., 0]
        same = [
            torch.equal(getattr(allocation, f), getattr(reference.allocation, f))
            for f in ALLOCATION_FIELDS
        ]
        same += [
            torch.equal(price, reference.price_per_click),
            torch.equal(best_utility, expected_utility),
            torch.equal(best_bid, expected_bid),
        ]
        if not all(same):
            return False
    return True
