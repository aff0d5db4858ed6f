"""Which misreport pays? The focal advertiser's expected utility against its bid multiplier, and
its best response by search, through the same market loop the environments run.

`utility_curve` fixes the focal bidder's value per click at `value` (or keeps its sampled
values when `value` is None), draws `requests` requests once, and for every multiplier of the
grid runs the mechanism on the same requests (common random numbers, so the curve's points
differ by far less than their own standard errors) with the opponents bidding by their
strategy. Utilities are expected utilities under the ground-truth click model.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np
import torch

from ega_sim.envs.market import AuctionMarket
from ega_sim.envs.strategies import make_strategy
from ega_sim.seeding import make_generator


@dataclass(frozen=True)
class UtilityCurve:
    """Mean expected utility per request of the focal bidder at each multiplier, with SEs."""

    multipliers: np.ndarray  # [M]
    utility: np.ndarray  # [M]
    utility_se: np.ndarray  # [M]
    gain_se: np.ndarray  # [M] SE of utility[m] - utility at multiplier 1 (paired)

    @property
    def best_multiplier(self) -> float:
        return float(self.multipliers[int(np.argmax(self.utility))])

    def utility_at(self, multiplier: float) -> float:
        index = int(np.argmin(np.abs(self.multipliers - multiplier)))
        if abs(self.multipliers[index] - multiplier) > 1e-9:
            raise ValueError(f"multiplier {multiplier} is not on the curve's grid")
        return float(self.utility[index])

    @property
    def gain_over_truthful(self) -> float:
        """Best utility / truthful utility - 1 (the grid must hold 1.0)."""
        truthful = self.utility_at(1.0)
        return float(self.utility.max()) / truthful - 1.0 if truthful > 0 else float("nan")


@torch.no_grad()
def utility_curve(
    market: AuctionMarket,
    multipliers,
    *,
    value: float | None = None,
    focal: int = 0,
    opponents="truthful",
    requests: int = 100_000,
    seed: int = 0,
    chunk: int = 65_536,
) -> UtilityCurve:
    """The focal bidder's utility against its multiplier (see the module docstring)."""
    grid = np.asarray(sorted(set(float(m) for m in multipliers)), dtype=np.float64)
    if grid.size == 0 or (grid < 0).any() or not np.isfinite(grid).all():
        raise ValueError(f"multipliers: expected finite numbers >= 0, got {multipliers!r}")
    strategy = make_strategy(opponents)
    generator = make_generator(seed, "utility_curve")
    drawn = market.draw(requests, generator)
    if value is not None:
        values = drawn.value_per_click.clone()
        values[:, focal] = value
        drawn = dataclasses.replace(drawn, value_per_click=values)
    per_request = np.empty((grid.size, requests))
    for start in range(0, requests, chunk):
        part = drawn.slice(start, start + chunk)
        played = strategy.multipliers(part.value_per_click, generator, market.context(part)).clone()
        for m, multiplier in enumerate(grid):
            played[:, focal] = multiplier
            round_ = market.play(part, played, generator)
            stop = start + part.value_per_click.shape[0]
            per_request[m, start:stop] = round_.expected_utility[:, focal].cpu().numpy()
    truthful = per_request[int(np.argmin(np.abs(grid - 1.0)))]
    se = per_request.std(axis=1, ddof=1) / np.sqrt(requests)
    gain_se = (per_request - truthful).std(axis=1, ddof=1) / np.sqrt(requests)
    return UtilityCurve(grid, per_request.mean(axis=1), se, gain_se)


def learn_multiplier(env, learner, steps: int) -> float:
    """Let `learner` (a strategy with multipliers/update, e.g. UCBBandit) play the focal agent
    of a single-agent `env` for `steps` steps; returns the multiplier it converged to."""
    observation, _ = env.reset()
    for _ in range(steps):
        values = torch.as_tensor(observation[:, 0], dtype=torch.float64)
        action = learner.multipliers(values.unsqueeze(1), None).squeeze(1)
        top = env.action_space.high
        action = np.minimum(action.numpy().astype(np.float32), top)
        observation, reward, terminated, truncated, _ = env.step(action)
        learner.update(torch.as_tensor(action), torch.tensor([reward / len(action)]))
        if terminated or truncated:
            observation, _ = env.reset()
    return learner.best_multiplier
