"""The textbook position auction world: i.i.d. values, qualities, separable click model.

P(click | bidder i in slot k) = slot_ctr[k] * quality_i, with no users and no organic items, so
every closed form of auction theory applies (DESIGN.md section 2).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch

from ega_sim.config.scenario import PositionAuctionConfig
from ega_sim.world.tensor_checks import check_floating, in_range_flag, range_error

if TYPE_CHECKING:
    from ega_sim.mechanisms.base import Allocation


@dataclass(frozen=True)
class AuctionRequests:
    """A batch of B independent auctions among the same N >= 1 bidder seats.

    Checked when built, with the scenario files' rules: both [B, N] floating-point tensors on
    one device, values per click finite and >= 0, qualities (pCTRs) in (0, 1] (a quality of 0
    would divide a price by 0). B = 0 is an empty batch: mechanisms return [0, K] outcomes.
    A wrong type is a TypeError, a wrong shape or value a ValueError, naming the field.
    """

    value_per_click: torch.Tensor  # [B, N] private values (the truthful bids)
    quality: torch.Tensor  # [B, N] pCTR q_i in (0, 1]

    def __post_init__(self) -> None:
        values, quality = self.value_per_click, self.quality
        check_floating(values, "AuctionRequests.value_per_click")
        check_floating(quality, "AuctionRequests.quality")
        if values.ndim != 2 or values.shape != quality.shape or values.shape[1] < 1:
            raise ValueError(
                "AuctionRequests: expected value_per_click and quality both [B, N] with N >= 1 "
                f"bidders, got {tuple(values.shape)} and {tuple(quality.shape)}"
            )
        if values.device != quality.device:
            raise ValueError(
                "AuctionRequests: expected value_per_click and quality on one device, got "
                f"{values.device} and {quality.device}"
            )
        values_ok = in_range_flag(values, 0.0, torch.inf)
        quality_ok = in_range_flag(quality, 0.0, 1.0, low_open=True)
        if not bool(values_ok & quality_ok):  # one sync for both
            if not bool(values_ok):
                raise range_error(values, "AuctionRequests.value_per_click", "values >= 0", 0.0)
            raise range_error(
                quality, "AuctionRequests.quality", "pCTRs in (0, 1]", 0.0, low_open=True
            )

    @classmethod
    def _derived(cls, value_per_click: torch.Tensor, quality: torch.Tensor) -> AuctionRequests:
        """A batch made from a checked one (moved, sliced, selected, repeated): its rows are
        rows of that one, so the checks are not run again (they would cost a device sync)."""
        requests = object.__new__(cls)
        object.__setattr__(requests, "value_per_click", value_per_click)
        object.__setattr__(requests, "quality", quality)
        return requests

    @property
    def batch_size(self) -> int:
        return self.value_per_click.shape[0]

    @property
    def n_bidders(self) -> int:
        return self.value_per_click.shape[1]

    def to(self, device: torch.device | str) -> AuctionRequests:
        return self._derived(self.value_per_click.to(device), self.quality.to(device))

    def slice(self, start: int, stop: int) -> AuctionRequests:
        return self._derived(self.value_per_click[start:stop], self.quality[start:stop])

    def select(self, index: torch.Tensor) -> AuctionRequests:
        """Requests `index` [R] (repeats allowed)."""
        return self._derived(self.value_per_click[index], self.quality[index])

    def repeat_each(self, times: int) -> AuctionRequests:
        """Each request repeated `times` times in a row: [B, N] -> [B * times, N]."""
        return self._derived(
            self.value_per_click.repeat_interleave(times, dim=0),
            self.quality.repeat_interleave(times, dim=0),
        )


class SeparableClickModel:
    """P(click | bidder i in slot k) = slot_ctr[k] * quality_i: the textbook click model, and
    the model a cascade's own pCTR x position factors assume."""

    def __init__(self, slot_ctr: torch.Tensor):
        self.slot_ctr = slot_ctr  # [K]

    def expected_clicks(self, requests: AuctionRequests, allocation: Allocation) -> torch.Tensor:
        """Exact expected clicks of each slot [B, K]; empty slots (-1) get 0."""
        slot_bidder = allocation.slot_bidder
        shown = slot_bidder >= 0  # [B, K]
        quality = requests.quality.gather(1, slot_bidder.clamp(min=0))  # [B, K]
        return torch.where(shown, self.slot_ctr * quality, 0.0)

    def click_probability_per_slot(self, requests: AuctionRequests) -> torch.Tensor:
        """P(click) of bidder i if it alone moved to slot k, others unaffected [B, N, K].

        The click model is separable, so a bidder's clicks depend only on its own slot: this is
        what lets regret be computed from a bidder's slot alone (mechanisms/rank.py).
        """
        return requests.quality.unsqueeze(2) * self.slot_ctr  # [B, N, K]


class PositionAuctionWorld(SeparableClickModel):
    """Samples requests and scores allocations with the ground-truth separable click model."""

    def __init__(self, config: PositionAuctionConfig, device: torch.device | str = "cpu"):
        self.config = config
        self.device = torch.device(device)
        super().__init__(torch.tensor(config.slot_ctr, dtype=torch.float64, device=self.device))

    def sample_requests(self, batch_size: int, generator: torch.Generator) -> AuctionRequests:
        """B requests; draws on the CPU generator, then moves to the world's device."""
        shape = (batch_size, self.config.n_bidders)
        values = self.config.values.sample(shape, generator)
        quality = self.config.quality.sample(shape, generator)
        return AuctionRequests(values, quality).to(self.device)
