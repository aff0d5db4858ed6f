"""What every mechanism produces: an Allocation (who sits in which slot) and prices per click.

Tensors are per slot, [B, K]: slot k of request b holds bidder `slot_bidder[b, k]`, or -1 when
the slot stays empty. Empty slots and losers pay nothing; prices are per click.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class Allocation:
    slot_bidder: torch.Tensor  # [B, K] long, bidder index in slot k, -1 if empty
    slot_ctr_model: torch.Tensor  # [B, K] the allocator's own CTR estimate for that item and slot

    @property
    def shown(self) -> torch.Tensor:
        return self.slot_bidder >= 0  # [B, K]


@dataclass(frozen=True)
class Outcome:
    allocation: Allocation
    price_per_click: torch.Tensor  # [B, K], 0 on empty slots

    @property
    def slot_bidder(self) -> torch.Tensor:
        return self.allocation.slot_bidder


def per_bidder(
    slot_values: torch.Tensor, slot_bidder: torch.Tensor, n_bidders: int
) -> torch.Tensor:
    """Move a per-slot tensor [B, K] to per-bidder [B, N]; bidders not shown get 0."""
    batch = slot_values.shape[0]
    result = slot_values.new_zeros((batch, n_bidders + 1))  # column N collects the empty slots
    index = torch.where(slot_bidder >= 0, slot_bidder, n_bidders)
    result.scatter_(1, index, slot_values)
    return result[:, :n_bidders]
