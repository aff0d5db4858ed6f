"""Stable-Baselines3 bidders: train PPO on `ega_sim/AdAuction-v0`, and let any trained SB3
policy bid as a strategy (an opponent in the environments, or the focal agent of a study).

Needs the `rl` extra (`pip install ega-sim[rl]`). A policy is used from memory: SB3's .zip
files hold pickled objects, which this toolkit never loads from disk.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import gymnasium
import numpy as np
import torch

if TYPE_CHECKING:
    from stable_baselines3 import PPO


class PolicyStrategy:
    """Any SB3 model trained on AdAuction-v0 (observation [R, 2], action [R]) as a strategy:
    each seat's requests are fed to the policy R at a time (deterministic actions, clipped to
    the policy's action box)."""

    name = "sb3"

    def __init__(self, model):
        self.model = model
        self.requests_per_step = int(model.observation_space.shape[0])
        self.high = float(np.asarray(model.action_space.high).max())

    def multipliers(self, values: torch.Tensor, generator, context=None) -> torch.Tensor:
        if context is None:
            raise ValueError("sb3 strategy: the policy needs each bidder's context as well")
        batch, n_bidders = values.shape
        per_step = self.requests_per_step
        padded = -(-batch // per_step) * per_step
        seen = torch.stack([values, context.to(values)], dim=2).to(torch.float32)  # [B, N, 2]
        seen = torch.nn.functional.pad(seen, (0, 0, 0, 0, 0, padded - batch))
        rows = seen.permute(1, 0, 2).reshape(n_bidders * padded // per_step, per_step, 2)
        actions, _ = self.model.predict(rows.cpu().numpy(), deterministic=True)
        actions = torch.as_tensor(np.clip(actions, 0.0, self.high), dtype=values.dtype)
        actions = actions.reshape(n_bidders, padded).T[:batch]  # [B, N]
        return actions.to(values.device)

    def update(self, multipliers: torch.Tensor, utility: torch.Tensor) -> None:
        """A trained policy is fixed while it plays."""


def normalized(env: gymnasium.Env) -> gymnasium.Env:
    """`env` with actions rescaled to [-1, 1] (SB3's Gaussian policies start at 0, which is
    then the middle of [0, gamma_max], multiplier 1 for gamma_max = 2, not the edge bid 0)."""
    from gymnasium.wrappers import RescaleAction

    shape = env.action_space.shape
    low, high = np.full(shape, -1.0, np.float32), np.full(shape, 1.0, np.float32)
    return RescaleAction(env, low, high)


def train_ppo(
    env: gymnasium.Env, *, steps: int, seed: int = 0, n_steps: int = 128, batch_size: int = 64
) -> PPO:
    """A PPO bidder (MLP policy, CPU) trained for `steps` environment steps on `env`, a
    normalized (see `normalized`) AdAuction-v0."""
    try:
        from stable_baselines3 import PPO
    except ImportError as error:  # the optional `rl` extra
        raise ImportError(
            "PPO bidders need Stable-Baselines3: pip install 'ega-sim[rl]'"
        ) from error
    model = PPO(
        "MlpPolicy",
        env,
        n_steps=n_steps,
        batch_size=batch_size,
        seed=seed,
        device="cpu",
        verbose=0,
    )
    model.learn(total_timesteps=steps)
    return model


def evaluate_policy(model, env, steps: int = 8) -> tuple[float, float]:
    """(mean multiplier bid, mean reward per request) of the policy's deterministic actions on
    `steps` steps of `env` (AdAuction-v0, normalized or not)."""
    observation, _ = env.reset()
    bids, values, rewards, requests = [], [], [], 0
    for _ in range(steps):
        action, _ = model.predict(observation, deterministic=True)
        action = np.clip(action, env.action_space.low, env.action_space.high)
        values.append(observation[:, 0])
        observation, reward, terminated, truncated, info = env.step(action.astype(np.float32))
        bids.append(info["bid"])
        rewards.append(reward)
        requests += len(info["bid"])
        if terminated or truncated:
            observation, _ = env.reset()
    multiplier = float(np.sum(np.concatenate(bids)) / np.sum(np.concatenate(values)))
    return multiplier, float(np.sum(rewards)) / requests
