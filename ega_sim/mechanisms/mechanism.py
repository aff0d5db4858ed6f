"""A mechanism is an allocator and a payment rule (DESIGN.md section 3), run on batches."""

from __future__ import annotations

import torch

from ega_sim.mechanisms.base import Allocation, Outcome
from ega_sim.mechanisms.rank import BidderView, RankByScoreAllocator
from ega_sim.mechanisms.rank_path import kernel_run, uses_kernel
from ega_sim.mechanisms.rank_prices import winner_prices
from ega_sim.world.position_auction import AuctionRequests
from ega_sim.world.tensor_checks import check_floating, check_nonnegative


def check_bids(bids: torch.Tensor, requests: AuctionRequests, name: str = "bids") -> None:
    """Bids are a [B, N] floating-point tensor of finite numbers >= 0 matching the requests."""
    check_bid_shape(bids, requests, name)
    check_bid_values(bids, name)


def check_bid_shape(bids: torch.Tensor, requests: AuctionRequests, name: str = "bids") -> None:
    """`check_bids` without the pass over the values: a floating-point tensor [B, N] matching
    the requests (the rank kernel checks the values as it reads them)."""
    if not isinstance(bids, torch.Tensor):
        raise TypeError(f"{name}: expected a torch.Tensor [B, N], got {type(bids).__name__}")
    if bids.shape != requests.value_per_click.shape:
        raise ValueError(
            f"{name}: expected shape {tuple(requests.value_per_click.shape)} (requests x bidders),"
            f" got {tuple(bids.shape)}"
        )
    check_floating(bids, name)


def check_bid_values(bids: torch.Tensor, name: str = "bids") -> None:
    """Bids of any shape are real floating-point numbers, finite and >= 0 (a bool or integer
    tensor is a TypeError, not bids of 0 and 1)."""
    check_nonnegative(bids, name, "bids >= 0")


class RankMechanism:
    """A rank-by-score allocator with a payment rule priced from each bidder's view."""

    def __init__(self, allocator: RankByScoreAllocator, payment_rule) -> None:
        self.allocator = allocator
        self.payment_rule = payment_rule
        self.name = f"{allocator.name}/{payment_rule.name}"

    @property
    def individually_rational(self) -> bool:
        """Whether price <= bid by construction. The Clarke pivot is IR only on a ranking that
        maximizes reported welfare (cascade); on Myerson's virtual-value ranking it is not."""
        return self.payment_rule.name != "vcg" or self.allocator.score_function.identity

    @property
    def price_varies_within_slot(self) -> bool:
        """Whether the price can move with the own bid inside a slot (a learned price): then
        the exact regret search tries several bids per interval between thresholds."""
        return getattr(self.payment_rule, "price_varies_within_slot", False)

    def __repr__(self) -> str:
        return f"Mechanism({self.name!r})"

    def run(self, requests: AuctionRequests, bids: torch.Tensor) -> Outcome:
        """Allocate and price a batch: bids [B, N] -> Outcome with [B, K] tensors.

        gsp, vcg, threshold and first price read the winners' prices off the top K + 1 ranks,
        on the compiled kernel where mechanisms/rank_path.py says so and in torch otherwise
        (mechanisms/rank_prices.py); other rules (paynet) price from each winner's view."""
        check_bid_shape(bids, requests)
        if uses_kernel(self, bids, requests):
            priced = kernel_run(self, requests, bids)
            if priced is not None:
                return Outcome(*priced)
        check_bid_values(bids)  # raises for the bad bid the kernel met
        allocation = self.allocator.allocate(requests, bids)
        if getattr(self.payment_rule, "from_ranking", False):
            rule = self.payment_rule.name
            price = winner_prices(self.allocator, rule, requests, bids, allocation)
            return Outcome(allocation, price)
        return self._priced_by_views(requests, bids, allocation)

    def kernel_trusted(self) -> bool:
        """Whether the compiled kernels reproduce torch for this mechanism on this machine
        (checked once per configuration: mechanisms/rank_kernel_check.py)."""
        from ega_sim.mechanisms.rank_kernel_check import kernel_trusted

        return kernel_trusted(self)

    def reference_run(self, requests: AuctionRequests, bids: torch.Tensor) -> Outcome:
        """`run` with every price read off the winner's `BidderView`: the reference that
        tests hold the ranking-based prices equal to."""
        check_bids(bids, requests)
        return self._priced_by_views(requests, bids, self.allocator.allocate(requests, bids))

    def _priced_by_views(self, requests, bids, allocation) -> Outcome:
        shown = allocation.slot_bidder >= 0  # [B, K]
        bidder = allocation.slot_bidder.clamp(min=0)  # [B, K], rows of empty slots are masked
        slot = torch.arange(self.allocator.n_slots, device=bids.device).expand_as(bidder)
        view = self.allocator.bidder_view(requests, bids, allocation, bidder, own_rank=slot)
        price = self.payment_rule.price_per_click(
            view, slot.unsqueeze(2), bids.gather(1, bidder).unsqueeze(2)
        ).squeeze(2)
        return Outcome(allocation, torch.where(shown, price, 0.0))

    def bidder_views(
        self, requests: AuctionRequests, bids: torch.Tensor, allocation: Allocation | None = None
    ) -> BidderView:
        """Every bidder's thresholds and competitors [B, N, K], the others' bids fixed;
        `allocation`: this allocator's allocation of `bids` when the caller has it (no
        second ranking)."""
        check_bids(bids, requests)
        if allocation is None:
            allocation = self.allocator.allocate(requests, bids)
        everyone = torch.arange(requests.n_bidders, device=bids.device).expand_as(bids)
        return self.allocator.bidder_view(requests, bids, allocation, everyone)

    def unilateral(
        self, view: BidderView, misreports: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Slot and price per click [B, N, C] of bidder i bidding misreports[b, i, c] alone.

        Equal to re-running the mechanism on each misreport (tests/test_regret.py checks it),
        without re-sorting: the others' order is fixed, so the bidder's thresholds decide.
        """
        slot = view.slot_for_bid(misreports)
        return slot, self.payment_rule.price_per_click(view, slot, misreports)

    def bid_thresholds(self, requests: AuctionRequests, bids: torch.Tensor) -> torch.Tensor:
        """Each bidder's own-bid thresholds t_1 >= ... >= t_K [B, N, K] (others fixed)."""
        return self.bidder_views(requests, bids).threshold
