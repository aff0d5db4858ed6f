"""The textbook position auction world: i.i.d. values, qualities, separable click model.

P(click | bidder i in slot k) = slot_ctr[k] * quality_i, with no users and no organic items, so
every closed form of auction theory applies (DESIGN.md section 2).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch

from ega_sim.config.scenario import PositionAuctionConfig

if TYPE_CHECKING:
    from ega_sim.mechanisms.base import Allocation


@dataclass(frozen=True)
class AuctionRequests:
    """A batch of B independent auctions among the same N bidder seats."""

    value_per_click: torch.Tensor  # [B, N] private values (the truthful bids)
    quality: torch.Tensor  # [B, N] pCTR q_i in (0, 1]

    def __post_init__(self) -> None:
        if self.value_per_click.ndim != 2 or self.value_per_click.shape != self.quality.shape:
            raise ValueError(
                "AuctionRequests: value_per_click and quality must both be [B, N], got "
                f"{tuple(self.value_per_click.shape)} and {tuple(self.quality.shape)}"
            )

    @property
    def batch_size(self) -> int:
        return self.value_per_click.shape[0]

    @property
    def n_bidders(self) -> int:
        return self.value_per_click.shape[1]

    def to(self, device: torch.device | str) -> AuctionRequests:
        return AuctionRequests(self.value_per_click.to(device), self.quality.to(device))

    def slice(self, start: int, stop: int) -> AuctionRequests:
        return AuctionRequests(self.value_per_click[start:stop], self.quality[start:stop])

    def select(self, index: torch.Tensor) -> AuctionRequests:
        """Requests `index` [R] (repeats allowed)."""
        return AuctionRequests(self.value_per_click[index], self.quality[index])

    def repeat_each(self, times: int) -> AuctionRequests:
        """Each request repeated `times` times in a row: [B, N] -> [B * times, N]."""
        return AuctionRequests(
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
