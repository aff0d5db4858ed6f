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

SEARCH_GRID = tuple(round(0.02 * k, 2) for k in range(5, 101))  # 0.10 .. 2.00


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
def focal_utilities(
    market: AuctionMarket,
    multipliers,
    *,
    value: float | None = None,
    focal: int = 0,
    opponents="truthful",
    requests: int = 100_000,
    seed: int = 0,
    chunk: int = 65_536,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(grid [M], the focal bidder's values [R], its expected utility [M, R] at each multiplier
    of the grid on each request), the opponents bidding by their strategy."""
    grid = np.asarray(sorted(set(float(m) for m in multipliers)), dtype=np.float64)
    if grid.size == 0 or (grid < 0).any() or not np.isfinite(grid).all():
        raise ValueError(f"multipliers: expected finite numbers >= 0, got {multipliers!r}")
    strategy = make_strategy(opponents, market)
    generator = make_generator(seed, "utility_curve")
    drawn = market.draw(requests, generator)
    if value is not None:
        values = drawn.value_per_click.clone()
        values[:, focal] = value
        drawn = dataclasses.replace(drawn, value_per_click=values)
    per_request = np.empty((grid.size, requests))
    for start in range(0, requests, chunk):
        part = drawn.slice(start, start + chunk)
        context = market.context(part)
        played = strategy.multipliers(part.value_per_click, generator, context).clone()
        stop = start + part.value_per_click.shape[0]
        for m, multiplier in enumerate(grid):
            played[:, focal] = multiplier
            round_ = market.play(part, played, None)  # expected utility: no click sampling
            per_request[m, start:stop] = round_.expected_utility[:, focal].cpu().numpy()
    return grid, drawn.value_per_click[:, focal].cpu().numpy(), per_request


def utility_curve(market: AuctionMarket, multipliers, **settings) -> UtilityCurve:
    """The focal bidder's mean utility against its multiplier (see the module docstring);
    `settings` as for `focal_utilities`."""
    grid, _, per_request = focal_utilities(market, multipliers, **settings)
    count = per_request.shape[1]
    truthful = per_request[int(np.argmin(np.abs(grid - 1.0)))]
    se = per_request.std(axis=1, ddof=1) / np.sqrt(count)
    gain_se = (per_request - truthful).std(axis=1, ddof=1) / np.sqrt(count)
    return UtilityCurve(grid, per_request.mean(axis=1), se, gain_se)


class BestResponse:
    """Bid the best multiplier for one's value, found by search: the focal seat's values are
    cut into `bins` quantile bins, and in each bin the grid multiplier with the highest mean
    utility against the opponents (truthful by default) is kept. A strategy: each seat looks up
    the multiplier of its value's bin (the bidders are taken as symmetric)."""

    name = "best_response"

    def __init__(
        self,
        market: AuctionMarket,
        *,
        opponents="truthful",
        grid=SEARCH_GRID,
        bins: int = 10,
        requests: int = 50_000,
        seed: int = 0,
    ):
        grid, values, per_request = focal_utilities(
            market, grid, opponents=opponents, requests=requests, seed=seed
        )
        self.edges = np.quantile(values, np.linspace(0, 1, bins + 1)[1:-1])  # [bins - 1]
        which = np.searchsorted(self.edges, values, side="right")  # [R] bin of each request
        self.table = np.array(
            [grid[int(np.argmax(per_request[:, which == b].mean(axis=1)))] for b in range(bins)]
        )

    def multipliers(self, values: torch.Tensor, generator, context=None) -> torch.Tensor:
        which = np.searchsorted(self.edges, values.cpu().numpy(), side="right")
        return torch.as_tensor(self.table[which], dtype=values.dtype, device=values.device)

    def update(self, multipliers: torch.Tensor, utility: torch.Tensor) -> None:
        """The table is fixed once searched."""


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
