"""The native vector version of `ega_sim/AdAuction-v0`: all sub-environments' requests go through
one batched mechanism call per step, instead of one call per copy as in `SyncVectorEnv`.

Made by `gymnasium.make_vec("ega_sim/AdAuction-v0", num_envs=n,
vectorization_mode="vector_entry_point", ...)` with the single environment's keyword arguments.
Observations [n, R, 2], actions [n, R], rewards [n]; `info` holds the single environment's keys
as arrays [n, R]. Every sub-environment starts together and runs `max_steps` steps, so all of
them are truncated on the same step and (Gymnasium's default next-step autoreset) reset on the
next call, which ignores its actions and returns reward 0.
"""

from __future__ import annotations

from typing import ClassVar

import numpy as np
import torch
from gymnasium.vector import VectorEnv
from gymnasium.vector.utils import batch_space
from gymnasium.vector.vector_env import AutoresetMode

from ega_sim.envs.single import FocalGame
from ega_sim.seeding import make_generator


class AdAuctionVectorEnv(VectorEnv):
    """n copies of AdAuctionEnv sharing one market and one mechanism call per step."""

    metadata: ClassVar[dict] = {"render_modes": [], "autoreset_mode": AutoresetMode.NEXT_STEP}

    def __init__(
        self,
        num_envs: int,
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
        if isinstance(num_envs, bool) or not isinstance(num_envs, int) or num_envs < 1:
            raise ValueError(f"num_envs: expected an integer >= 1, got {num_envs!r}")
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
        self.num_envs = num_envs
        self.single_observation_space = self.game.observation_space
        self.single_action_space = self.game.action_space
        self.observation_space = batch_space(self.single_observation_space, num_envs)
        self.action_space = batch_space(self.single_action_space, num_envs)
        self._generator: torch.Generator | None = None
        self._requests = None
        self._steps = 0
        self._needs_reset = False

    def _observe(self) -> np.ndarray:
        per_step = self.game.requests_per_step
        self._requests = self.game.market.draw(self.num_envs * per_step, self._generator)
        return self.game.observe(self._requests).reshape(self.num_envs, per_step, 2)

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        """Reset every sub-environment (`seed`: one int; a list is refused, since the
        sub-environments share one request stream)."""
        if seed is not None and not isinstance(seed, int):
            raise ValueError(f"seed: expected one integer for all sub-environments, got {seed!r}")
        if seed is not None or self._generator is None:
            base = np.random.SeedSequence(seed).generate_state(1, dtype=np.uint64)[0] >> 2
            self._generator = make_generator(int(base), "vector_env")
        self._steps = 0
        self._needs_reset = False
        return self._observe(), {}

    def step(self, actions):
        if self._requests is None:
            raise RuntimeError("AdAuctionVectorEnv: call reset() before step()")
        n = self.num_envs
        if self._needs_reset:  # next-step autoreset: every sub-environment ended together
            self._steps = 0
            self._needs_reset = False
            zeros = np.zeros(n, dtype=bool)
            return self._observe(), np.zeros(n), zeros, zeros.copy(), {}
        shape = (n, self.game.requests_per_step)
        utility, info = self.game.play(self._requests, actions, shape, self._generator)
        rewards = utility.reshape(shape).sum(axis=1)
        info = {key: value.reshape(shape) for key, value in info.items()}
        self._steps += 1
        truncated = np.full(n, self._steps >= self.game.max_steps)
        self._needs_reset = bool(truncated[0])
        return self._observe(), rewards, np.zeros(n, dtype=bool), truncated, info
