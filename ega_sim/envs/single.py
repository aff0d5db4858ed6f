"""`ega_sim/AdAuction-v0`: one focal advertiser learns how to bid against fixed opponents.

Each step the agent bids on `requests_per_step` fresh requests (independent draws of the
scenario): its action is one bid multiplier per request (bid = multiplier x value per click),
the opponents bid by their strategy, the mechanism runs, and the reward is the agent's utility,
(value - price per click) x clicks, summed over the step's requests: realized clicks sampled
from the ground-truth click model (`reward="realized"`, the default) or expected clicks
(`reward="expected"`).

Spaces (R = requests_per_step):
- observation: Box [R, 2] float32 (finite, >= 0), per request the agent's value per click and
  its context (its quality q in a position auction, its mean value per click in a feed market);
- action: Box [R] float32 in [0, gamma_max]. An action outside the box, NaN or infinite is a
  ValueError naming it: nothing is clipped.

An episode is `max_steps` steps; it never terminates (the market goes on) and is truncated at
`max_steps`. `info` holds numpy arrays [R]: `bid`, `price_per_click`, `slot` (list position
from 0, -1 if not shown), `clicks`, `expected_clicks`, `expected_utility`, and
`truthful_utility`, the expected utility the agent would have earned bidding its value against
the same opponents' bids (the counterfactual of the regret measure).
In a feed market the focal advertiser is the candidate ad `focal` of each request (a different
advertiser every request, drawn by the market); in a position auction it is bidder `focal`.
"""

from __future__ import annotations

from typing import ClassVar

import gymnasium as gym
import numpy as np
import torch
from gymnasium import spaces

from ega_sim.envs.market import OBSERVATION_HIGH, AuctionMarket
from ega_sim.envs.strategies import make_strategy
from ega_sim.seeding import make_generator

REWARDS = ("realized", "expected")


def check_settings(
    market: AuctionMarket,
    focal: int,
    requests_per_step: int,
    max_steps: int,
    gamma_max: float,
    reward: str,
) -> None:
    """Validate the environment settings once, with errors that name the argument."""
    for key, value in (("requests_per_step", requests_per_step), ("max_steps", max_steps)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{key}: expected an integer >= 1, got {value!r}")
    if isinstance(focal, bool) or not isinstance(focal, int) or not 0 <= focal < market.n_bidders:
        raise ValueError(
            f"focal: expected a bidder index in 0..{market.n_bidders - 1}, got {focal!r}"
        )
    if not (isinstance(gamma_max, int | float) and 0 < gamma_max < float("inf")):
        raise ValueError(f"gamma_max: expected a number > 0, got {gamma_max!r}")
    if reward not in REWARDS:
        raise ValueError(f"reward: expected one of {', '.join(REWARDS)}, got {reward!r}")


def check_actions(
    action,
    shape: tuple[int, ...],
    gamma_max: float,
    *,
    low: float = 0.0,
    what: str = "bid multipliers",
) -> np.ndarray:
    """The action as float64 `what` of `shape`; anything outside [low, gamma_max] (the float32
    Box's bounds) is an error (ValueError naming what was wrong, with every digit)."""
    multipliers = np.asarray(action, dtype=np.float64)
    if multipliers.shape != shape:
        raise ValueError(f"action: expected shape {shape}, got {multipliers.shape}")
    if not np.isfinite(multipliers).all():
        raise ValueError(f"action: expected finite {what}, got NaN or infinity")
    bottom, top = float(np.float32(low)), float(np.float32(gamma_max))  # the Box's own bounds
    if (multipliers < bottom).any() or (multipliers > top).any():
        rounded = "" if (bottom, top) == (low, gamma_max) else f" (float32 of {gamma_max!r})"
        raise ValueError(
            f"action: expected {what} in [{bottom!r}, {top!r}]{rounded}, got "
            f"{float(multipliers.min())!r} .. {float(multipliers.max())!r}"
        )
    return multipliers


def play_focal(
    market: AuctionMarket,
    opponents,
    requests,
    focal: int,
    multipliers: np.ndarray,
    generator: torch.Generator,
    reward: str,
) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """One round: the focal bidder bids multipliers [B] x value, the opponents by their
    strategy (which then learns from its utility). Returns the focal utility [B] (realized or
    expected) and its info arrays [B], with the truthful counterfactual."""
    values = requests.value_per_click
    played = opponents.multipliers(values, generator, market.context(requests)).clone()
    played[:, focal] = torch.as_tensor(multipliers, dtype=values.dtype, device=values.device)
    round_ = market.play(requests, played, generator)
    truthful_bids = played.clone()
    truthful_bids[:, focal] = 1.0
    truthful = market.play(requests, truthful_bids, None)  # expected figures only
    seats = [i for i in range(market.n_bidders) if i != focal]
    opponents.update(played[:, seats], round_.expected_utility[:, seats])
    utility = round_.realized_utility if reward == "realized" else round_.expected_utility

    def mine(tensor: torch.Tensor) -> np.ndarray:
        return tensor[:, focal].cpu().numpy()

    info = {
        "bid": mine(round_.bids),
        "price_per_click": mine(round_.price_per_click),
        "slot": mine(round_.slot),
        "clicks": mine(round_.clicks),
        "expected_clicks": mine(round_.expected_clicks),
        "expected_utility": mine(round_.expected_utility),
        "truthful_utility": mine(truthful.expected_utility),
    }
    return mine(utility), info


class FocalGame:
    """What AdAuctionEnv and its native vector version share: the market, the opponents, the
    settings (validated here, once), the spaces of one sub-environment, and one round of play."""

    def __init__(
        self,
        scenario,
        mechanism,
        checkpoint,
        opponents,
        focal: int,
        requests_per_step: int,
        max_steps: int,
        gamma_max: float,
        reward: str,
        device: str | None,
    ):
        self.market = AuctionMarket(scenario, mechanism, checkpoint, device)
        check_settings(self.market, focal, requests_per_step, max_steps, gamma_max, reward)
        self.opponents = make_strategy(opponents, self.market)
        self.focal = focal
        self.requests_per_step = requests_per_step
        self.max_steps = max_steps
        self.gamma_max = float(gamma_max)
        self.reward = reward
        self.observation_space = spaces.Box(
            0.0, OBSERVATION_HIGH, shape=(requests_per_step, 2), dtype=np.float32
        )
        self.action_space = spaces.Box(
            0.0, self.gamma_max, shape=(requests_per_step,), dtype=np.float32
        )

    def observe(self, requests) -> np.ndarray:
        """[B, 2] float32: the focal bidder's value and context in each request."""
        return self.market.observe(requests)[:, self.focal]

    def play(self, requests, action, shape: tuple[int, ...], generator: torch.Generator):
        """Check `action` (of `shape`), play it; (utility [B], info arrays [B])."""
        multipliers = check_actions(action, shape, self.gamma_max).reshape(-1)
        return play_focal(
            self.market,
            self.opponents,
            requests,
            self.focal,
            multipliers,
            generator,
            self.reward,
        )


class AdAuctionEnv(gym.Env):
    """One focal advertiser against opponents of a fixed strategy (see the module docstring)."""

    metadata: ClassVar[dict] = {"render_modes": []}

    def __init__(
        self,
        scenario="textbook",
        mechanism="cascade/gsp",
        checkpoint=None,
        opponents="truthful",
        focal: int = 0,
        requests_per_step: int = 1,
        max_steps: int = 100,
        gamma_max: float = 2.0,
        reward: str = "realized",
        device: str | None = None,
    ):
        self.game = FocalGame(
            scenario,
            mechanism,
            checkpoint,
            opponents,
            focal,
            requests_per_step,
            max_steps,
            gamma_max,
            reward,
            device,
        )
        self.observation_space = self.game.observation_space
        self.action_space = self.game.action_space
        self._generator: torch.Generator | None = None
        self._requests = None
        self._steps = 0

    def _observe(self) -> np.ndarray:
        self._requests = self.game.market.draw(self.game.requests_per_step, self._generator)
        return self.game.observe(self._requests)

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        super().reset(seed=seed)
        if seed is not None or self._generator is None:
            # The torch stream is seeded from Gymnasium's np_random, itself from `seed`.
            self._generator = make_generator(int(self.np_random.integers(2**62)), "env")
        self._steps = 0
        return self._observe(), {}

    def step(self, action):
        if self._requests is None:
            raise RuntimeError("AdAuctionEnv: call reset() before step()")
        shape = (self.game.requests_per_step,)
        utility, info = self.game.play(self._requests, action, shape, self._generator)
        self._steps += 1
        truncated = self._steps >= self.game.max_steps
        return self._observe(), float(utility.sum()), False, truncated, info
