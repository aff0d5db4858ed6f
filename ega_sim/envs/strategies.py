"""Bidding strategies: how an advertiser turns its value into a bid, as a multiplier of it.

A strategy answers `multipliers(values, generator, context) -> [B, N]` for the bidders it
plays (the environments apply it to the opponents of the focal agent; `context` [B, N] is what
each bidder sees besides its value, envs/market.py), and learners also `update` from the
utility they earned. A trained Stable-Baselines3 policy plays through envs/sb3.py's
PolicyStrategy. Opponents are named in the environments by a spec string: "truthful",
"shade:0.8" (constant multiplier), "bandit" or "bandit:ucb" (a UCB1 learner over a grid of
multipliers, shared by the seats it plays), "best_response" (per value bin, the multiplier that
searched best against truthful bidders, envs/best_response.py); or given as a strategy object.
"""

from __future__ import annotations

import math
from typing import Protocol

import torch

MULTIPLIER_GRID = tuple(round(0.1 * k, 1) for k in range(1, 21))  # 0.1 .. 2.0


class Strategy(Protocol):
    """What the environments need of a bidding strategy."""

    name: str

    def multipliers(self, values: torch.Tensor, generator, context=None) -> torch.Tensor:
        """Bid multipliers [B, N] for values [B, N] (and contexts [B, N])."""
        ...

    def update(self, multipliers: torch.Tensor, utility: torch.Tensor) -> None:
        """Learn from the utility [B, N'] the multipliers [B, N'] earned."""
        ...


class Truthful:
    """Bid the value."""

    name = "truthful"

    def multipliers(self, values: torch.Tensor, generator, context=None) -> torch.Tensor:
        return torch.ones_like(values)

    def update(self, multipliers: torch.Tensor, utility: torch.Tensor) -> None:
        """Truthful bidders learn nothing."""


class Shade:
    """Bid a constant multiple of the value (below 1: shading; above 1: overbidding)."""

    def __init__(self, multiplier: float):
        if not (math.isfinite(multiplier) and multiplier >= 0):
            raise ValueError(f"shade: expected a multiplier >= 0, got {multiplier!r}")
        self.multiplier = float(multiplier)
        self.name = f"shade:{self.multiplier:g}"

    def multipliers(self, values: torch.Tensor, generator, context=None) -> torch.Tensor:
        return torch.full_like(values, self.multiplier)

    def update(self, multipliers: torch.Tensor, utility: torch.Tensor) -> None:
        """A constant strategy learns nothing."""


class UCBBandit:
    """UCB1 over a grid of multipliers: each round (one step of requests) it plays one arm for
    every request it bids in, and scores the arm by the mean utility per request it earned.

    Rewards are scaled by the running maximum absolute mean reward, so the exploration bonus
    sqrt(2 ln t / n) has the same meaning at any value scale.
    """

    name = "bandit:ucb"

    def __init__(self, grid: tuple[float, ...] = MULTIPLIER_GRID, exploration: float = 1.0):
        if not grid or any(not (math.isfinite(g) and g >= 0) for g in grid):
            raise ValueError(f"bandit grid: expected multipliers >= 0, got {grid!r}")
        self.grid = torch.tensor(grid, dtype=torch.float64)
        self.exploration = float(exploration)
        self.counts = torch.zeros(len(grid), dtype=torch.float64)
        self.sums = torch.zeros(len(grid), dtype=torch.float64)
        self.scale = 0.0
        self.arm = 0

    def choose(self) -> int:
        """The arm to play this round: every arm once, then the highest upper bound."""
        untried = (self.counts == 0).nonzero()
        if len(untried) > 0:
            return int(untried[0, 0])
        rounds = float(self.counts.sum())
        mean = self.sums / self.counts / max(self.scale, 1e-12)
        bonus = self.exploration * torch.sqrt(2 * math.log(rounds) / self.counts)
        return int(torch.argmax(mean + bonus))

    def multipliers(self, values: torch.Tensor, generator, context=None) -> torch.Tensor:
        self.arm = self.choose()
        return torch.full_like(values, float(self.grid[self.arm]))

    def update(self, multipliers: torch.Tensor, utility: torch.Tensor) -> None:
        """Credit the arm just played with the mean utility per request of this round."""
        reward = float(utility.mean())
        self.counts[self.arm] += 1
        self.sums[self.arm] += reward
        self.scale = max(self.scale, abs(reward))

    @property
    def best_multiplier(self) -> float:
        """The arm with the highest mean reward so far (the one it converged to)."""
        played = self.counts > 0
        mean = torch.where(played, self.sums / self.counts.clamp(min=1), -torch.inf)
        return float(self.grid[int(torch.argmax(mean))])


def make_strategy(spec, market=None) -> Strategy:
    """A strategy from its spec string ("truthful", "shade:0.8", "bandit", "best_response")
    or a strategy object; `best_response` searches in `market` (envs/market.py)."""
    if not isinstance(spec, str):
        if hasattr(spec, "multipliers"):
            return spec
        raise ValueError(f"opponents: expected a strategy or its name, got {spec!r}")
    name, _, argument = spec.partition(":")
    if name == "truthful" and not argument:
        return Truthful()
    if name == "shade":
        try:
            return Shade(float(argument))
        except ValueError:
            raise ValueError(
                f"opponents: expected 'shade:M' with a multiplier M >= 0, got {spec!r}"
            ) from None
    if name == "bandit" and argument in ("", "ucb"):
        return UCBBandit()
    raise ValueError(f"opponents: expected 'truthful', 'shade:M' or 'bandit' (UCB1), got {spec!r}")
