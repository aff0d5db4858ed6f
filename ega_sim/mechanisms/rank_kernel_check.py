"""A guard against a miscompiled rank kernel: before a process first runs the compiled kernels
for a mechanism, they must give the torch reference's outputs, bit for bit, on a small batch.

Why: numba compiles for the machine's CPU, and LLVM's loop vectorizer has miscompiled one
formulation of the selection network (with AVX2: a request's second rank got the first rank's
bidder; right with vectorization off or for a generic CPU). rank_kernel.py's formulation is the
one tests/test_rank_kernel.py holds equal on this project's machines, but another CPU or LLVM
version compiles other code. The check costs about 20 ms per mechanism and process; on a
mismatch the auto mode runs torch with a warning and the `kernel` mode is an error.
"""

from __future__ import annotations

import warnings
from functools import cache

import torch

CHECK_REQUESTS = 293  # four blocks of 64 and a partial one
ALLOCATION_FIELDS = ("slot_bidder", "slot_ctr_model", "order", "score", "top_score")
# (rule, slot CTRs, reserve, reserve score) -> whether the kernels agreed, checked once each
_checked: dict[tuple, bool] = {}


def kernel_trusted(mechanism) -> bool:
    """Whether `mechanism` (a cascade RankMechanism) may run on the kernels: True once they
    agree with torch for its configuration; otherwise a RuntimeWarning (once) and False in the
    auto mode, a RuntimeError in the `kernel` mode (mechanisms/rank_path.py)."""
    allocator = mechanism.allocator
    key = (
        mechanism.payment_rule.name,
        allocator.slot_ctr_values,
        allocator.reserve_per_click,
        allocator.reserve_score,
    )
    if key not in _checked:
        _checked[key] = kernels_agree_with_torch(mechanism)
    if _checked[key]:
        return True
    import numba

    return distrust(
        f"the compiled rank kernel (numba {numba.__version__}) disagrees with the torch "
        f"reference on this machine for {mechanism.name} with K = {allocator.n_slots} slots "
        "(mechanisms/rank_kernel_check.py)"
    )


def distrust(message: str) -> bool:
    """A kernel that disagrees with torch (`message` says which): False with a RuntimeWarning
    (once) in the auto mode, a RuntimeError in the `kernel` mode."""
    from ega_sim.mechanisms.rank_path import ENVIRONMENT_VARIABLE, current_mode

    if current_mode() == "kernel":
        raise RuntimeError(f"{ENVIRONMENT_VARIABLE}=kernel: {message}")
    _warn_once(message + "; running torch")
    return False


@cache
def _warn_once(message: str) -> None:
    warnings.warn(message, RuntimeWarning, stacklevel=5)


def kernels_agree_with_torch(mechanism) -> bool:
    """Whether `rank_auction` and `best_misreports` give torch's allocation, prices, best
    exact misreports and their utilities, bit for bit, for `mechanism` on CHECK_REQUESTS
    requests of K + 3 bidders whose bids and qualities sit on small grids (exact score ties,
    zero bids), in a position-auction world with the mechanism's own slot CTRs."""
    from ega_sim.config.scenario import PositionAuctionConfig
    from ega_sim.mechanisms.rank_path import kernel_best_misreports, kernel_run, rank_path
    from ega_sim.metrics.regret import EXACT_NUDGE, MisreportSpec, misreport_utility
    from ega_sim.world.distributions import Uniform
    from ega_sim.world.position_auction import AuctionRequests, PositionAuctionWorld

    slot_ctr = mechanism.allocator.slot_ctr_values
    n_bidders = len(slot_ctr) + 3
    world = PositionAuctionWorld(
        PositionAuctionConfig("rank_kernel_check", n_bidders, slot_ctr, Uniform(0.0, 1.0))
    )
    generator = torch.Generator().manual_seed(18)
    shape = (CHECK_REQUESTS, n_bidders)
    values = torch.randint(0, 5, shape, generator=generator).double() / 4  # [B, N]
    quality = torch.randint(1, 3, shape, generator=generator).double() / 2  # [B, N]
    requests = AuctionRequests(values, quality)
    with rank_path("torch"):
        reference = mechanism.run(requests, values)
        search = misreport_utility(
            MisreportSpec("exact"), mechanism, world, requests, values, outcome=reference
        )
    allocation, price = kernel_run(mechanism, requests, values)
    best_bid, best_utility = kernel_best_misreports(
        mechanism, world, requests, values, allocation, EXACT_NUDGE
    )
    expected_utility, first_best = search.utility.max(dim=2)  # [B, N]
    expected_bid = search.misreports.gather(2, first_best.unsqueeze(2))[..., 0]
    same = [
        torch.equal(getattr(allocation, name), getattr(reference.allocation, name))
        for name in ALLOCATION_FIELDS
    ]
    same += [
        torch.equal(price, reference.price_per_click),
        torch.equal(best_utility, expected_utility),
        torch.equal(best_bid, expected_bid),
    ]
    return all(same)
