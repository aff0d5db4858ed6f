"""What the payment network is trained on: for each bidder of a batch of requests, a set of bids
(column 0 the truthful one, the others misreports), where each bid puts it, and what it pays.

Utilities and revenue are measured under the mechanism's own CTR model, never the ground
truth (in a position auction the two agree): a platform learns prices from what it can see.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class Deviations:
    """All [B, N, C]; bid[..., 0] is the truthful bid, price carries the network's gradient."""

    value: torch.Tensor  # [B, N] value per click
    bid: torch.Tensor  # [B, N, C]
    clicks: torch.Tensor  # expected clicks (own model) where bid c puts the bidder, 0 if nowhere
    price: torch.Tensor  # price per click there, 0 if nowhere

    @classmethod
    def concatenate(cls, parts: list[Deviations]) -> Deviations:
        """Batches joined along the request axis."""
        return cls(
            *(torch.cat([getattr(p, f.name) for p in parts]) for f in dataclasses.fields(cls))
        )

    @property
    def utility(self) -> torch.Tensor:
        """(value - price) x clicks [B, N, C]."""
        return self.clicks * (self.value.unsqueeze(2) - self.price)

    def regret(self) -> torch.Tensor:
        """Ex-post regret [B, N] over the candidate bids: best utility - truthful utility."""
        utility = self.utility
        return (utility.amax(dim=2) - utility[..., 0]).clamp(min=0.0)

    def revenue(self) -> torch.Tensor:
        """Expected revenue per request [B] at truthful bids."""
        return (self.clicks[..., 0] * self.price[..., 0]).sum(dim=1)

    def welfare(self) -> torch.Tensor:
        """Expected advertiser value per request [B] at truthful bids."""
        return (self.clicks[..., 0] * self.value).sum(dim=1)


def training_misreports(
    value: torch.Tensor,
    extra: torch.Tensor | None,
    *,
    multipliers: tuple[float, ...],
    random_draws: int,
    gamma_max: float,
    generator: torch.Generator,
) -> torch.Tensor:
    """Truthful bid, then the paper's multipliers, `random_draws` uniform bids on
    [0, gamma_max x value], and `extra` candidates [B, N, E] (e.g. just above each threshold):
    [B, N, C]."""
    gammas = value.new_tensor((1.0, *multipliers))
    parts = [value.unsqueeze(2) * gammas]
    if random_draws > 0:
        shape = (*value.shape, random_draws)
        uniform = torch.rand(shape, generator=generator, dtype=value.dtype).to(value.device)
        parts.append(value.unsqueeze(2) * gamma_max * uniform)
    if extra is not None:
        parts.append(extra)
    return torch.cat(parts, dim=2)
