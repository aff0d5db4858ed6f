"""Per-request outcome metrics under the ground-truth click model (expected, not sampled).

On float64 CPU batches of a long rank-auction run (mechanisms/rank_path.py), the per-slot work
runs on a compiled kernel that gives the same numbers bit for bit: a check on a small outcome
holds it to the torch code below before a process first uses it.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache

import torch

from ega_sim.mechanisms.base import Allocation, Outcome, per_bidder
from ega_sim.mechanisms.rank_path import kernel_outcome, measures_on_kernel
from ega_sim.world.position_auction import AuctionRequests

# A price may exceed the bid by float rounding of a threshold (s / q * q); beyond this it is real.
IR_TOLERANCE = 1e-9


@dataclass(frozen=True)
class RequestOutcomes:
    """Per-request and per-bidder quantities of one batch, from expected clicks."""

    revenue: torch.Tensor  # [B] sum of price per click x expected clicks
    welfare: torch.Tensor  # [B] sum of value per click x expected clicks
    clicks: torch.Tensor  # [B] expected clicks of the shown ads
    ad_count: torch.Tensor  # [B] ads shown
    utility: torch.Tensor  # [B, N] (value - price) x expected clicks of each bidder
    ir_violations: torch.Tensor  # [B] shown bidders whose price per click exceeds their bid
    model_clicks: torch.Tensor  # [B] clicks of the shown ads under the mechanism's own CTRs
    model_revenue: torch.Tensor  # [B] sum of price per click x those clicks


def measure_outcome(
    requests: AuctionRequests,
    bids: torch.Tensor,
    outcome: Outcome,
    expected_clicks: torch.Tensor,
) -> RequestOutcomes:
    """Revenue, welfare, clicks and utilities of an outcome; expected_clicks is [B, K]."""
    values, price = requests.value_per_click, outcome.price_per_click
    model_ctr = outcome.allocation.slot_ctr_model  # [B, K]
    if measures_on_kernel(values, bids, price, expected_clicks, model_ctr) and _kernel_trusted():
        return _measure_on_kernel(values, bids, outcome, expected_clicks)
    return _measure_with_torch(requests, bids, outcome, expected_clicks)


def _measure_with_torch(
    requests: AuctionRequests, bids: torch.Tensor, outcome: Outcome, expected_clicks: torch.Tensor
) -> RequestOutcomes:
    """measure_outcome in torch: the reference."""
    slot_bidder = outcome.slot_bidder  # [B, K]
    shown = slot_bidder >= 0
    index = slot_bidder.clamp(min=0)
    value = requests.value_per_click.gather(1, index)  # [B, K]
    bid = value if bids is requests.value_per_click else bids.gather(1, index)  # truthful: same
    price = outcome.price_per_click
    utility_per_slot = torch.where(shown, (value - price) * expected_clicks, 0.0)
    violation = shown & (price > bid * (1 + IR_TOLERANCE) + IR_TOLERANCE)
    model_clicks = torch.where(shown, outcome.allocation.slot_ctr_model, 0.0)  # [B, K]
    return RequestOutcomes(
        revenue=(price * expected_clicks).sum(1),
        welfare=torch.where(shown, value * expected_clicks, 0.0).sum(1),
        clicks=expected_clicks.sum(1),
        ad_count=shown.sum(1).to(expected_clicks.dtype),
        utility=per_bidder(utility_per_slot, slot_bidder, requests.n_bidders),
        ir_violations=violation.sum(1).to(expected_clicks.dtype),
        model_clicks=model_clicks.sum(1),
        model_revenue=(price * model_clicks).sum(1),
    )


def _measure_on_kernel(values, bids, outcome: Outcome, expected_clicks) -> RequestOutcomes:
    """measure_outcome on the compiled kernel (mechanisms/rank_kernel.outcome_terms)."""
    sums, ad_count, utility, ir_violations = kernel_outcome(
        values, bids, outcome, expected_clicks, IR_TOLERANCE
    )
    revenue, welfare, clicks, model_clicks, model_revenue = sums  # [B] each
    return RequestOutcomes(
        revenue, welfare, clicks, ad_count, utility, ir_violations, model_clicks, model_revenue
    )


@cache
def _kernel_trusted() -> bool:
    """Whether the outcome kernel gives `_measure_with_torch`'s numbers bit for bit on a small
    outcome with empty slots, tied values and IR violations (numba compiles for the machine;
    mechanisms/rank_kernel_check.py says why this is checked); once per process."""
    from ega_sim.mechanisms.rank_kernel_check import distrust

    generator = torch.Generator().manual_seed(18)
    batch, n_bidders = 293, 9
    values = torch.randint(0, 5, (batch, n_bidders), generator=generator).double() / 4
    bids = values + torch.randint(-1, 2, (batch, n_bidders), generator=generator).double() / 8
    requests = AuctionRequests(values, torch.ones_like(values))
    for n_slots in (3, 6):  # the kernel sums over 3 slots; torch over 6
        ranked = torch.rand((batch, n_bidders), generator=generator).argsort(1)[:, :n_slots]
        empty = torch.rand((batch, n_slots), generator=generator) < 0.2
        slot_bidder = torch.where(empty, -1, ranked)  # [B, K]
        price = torch.rand((batch, n_slots), generator=generator, dtype=torch.float64)
        price = torch.where(empty, 0.0, price)  # [B, K]
        clicks = torch.rand((batch, n_slots), generator=generator, dtype=torch.float64)
        clicks = torch.where(empty, 0.0, clicks)  # [B, K]
        model_ctr = torch.rand((batch, n_slots), generator=generator, dtype=torch.float64)
        outcome = Outcome(Allocation(slot_bidder, model_ctr), price)
        for bidding in (values, bids):  # truthful (bids is values) and not
            kernel = _measure_on_kernel(values, bidding, outcome, clicks)
            reference = _measure_with_torch(requests, bidding, outcome, clicks)
            fields = zip(vars(kernel).values(), vars(reference).values(), strict=True)
            if not all(torch.equal(mine, theirs) for mine, theirs in fields):
                import numba

                return distrust(
                    f"the compiled outcome kernel (numba {numba.__version__}) disagrees with "
                    "the torch reference on this machine (metrics/outcomes.py)"
                )
    return True
