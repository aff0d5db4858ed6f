"""Stable-Baselines3 bidders: train PPO on `ega_sim/AdAuction-v0`, and let any trained SB3
policy bid as a strategy (an opponent in the environments, or the focal agent of a study).

Needs the `rl` extra (`pip install ega-sim[rl]`). A policy is used from memory: SB3's .zip
files hold pickled objects, which this toolkit never loads from disk.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import torch

from ega_sim.envs.action_scaling import normalized, policy_bound, to_multipliers

if TYPE_CHECKING:
    import gymnasium
    from stable_baselines3 import PPO

__all__ = ["PolicyStrategy", "evaluate_policy", "normalized", "train_ppo"]


def trained_gamma_max(model) -> float | None:
    """The gamma_max of the `normalized` env `model` trained on, read from the env SB3 keeps
    on the model (`model.get_env()`); None where it has none or the env is not normalized."""
    env = model.get_env() if hasattr(model, "get_env") else None
    if env is None:
        return None
    try:
        return float(env.get_attr("normalized_gamma_max")[0])
    except AttributeError:
        return None


class PolicyStrategy:
    """Any SB3 model trained on AdAuction-v0 (observation [R, 2], action [R]) as a strategy:
    each seat's requests are fed to the policy R at a time (deterministic actions, clipped to
    the policy's action box) and its actions read as its training env read them.

    A policy trained on `normalized(env)` acts in [-1, 1] and bids `to_multipliers(action,
    gamma_max)`, the map `normalized` applies, so it bids as it did as the focal agent.
    `gamma_max` is its training env's: given, or found on the model's env; neither (a model
    loaded without its env) is a ValueError, as is a given value the model's env contradicts.
    A policy trained on the env itself acts in its box [0, gamma_max]: its action is the
    multiplier. Errors: ValueError for a model whose spaces are not AdAuction-v0's."""

    name = "sb3"

    def __init__(self, model, gamma_max: float | None = None):
        self.model = model
        shape = tuple(model.observation_space.shape)
        if len(shape) != 2 or shape[1] != 2:
            raise ValueError(f"model: expected an observation space [R, 2], got {shape}")
        self.requests_per_step = shape[0]
        low = np.asarray(model.action_space.low)
        high = np.asarray(model.action_space.high)
        if low.shape != (shape[0],) or high.shape != (shape[0],):
            raise ValueError(f"model: expected an action space [{shape[0]}], got {low.shape}")
        if np.all(low == -1) and np.all(high == 1):  # trained on normalized(env)
            trained = trained_gamma_max(model)
            if gamma_max is None and trained is None:
                raise ValueError(
                    "gamma_max: the policy acts in [-1, 1] (trained on normalized(env)) and its "
                    "model holds no env to read gamma_max from: pass the gamma_max it trained on"
                )
            chosen = trained if gamma_max is None else gamma_max
            if trained is not None and policy_bound(chosen) != policy_bound(trained):
                raise ValueError(
                    f"gamma_max: the policy trained with gamma_max {trained!r}, got {gamma_max!r}"
                )
            self.gamma_max = float(policy_bound(chosen))
            self.normalized = True
        elif np.all(low == 0) and np.all(high == high[0]) and high[0] > 0:  # the env's own box
            if gamma_max is not None and policy_bound(gamma_max) != high[0]:
                raise ValueError(
                    f"gamma_max: the policy acts in [0, {float(high[0])!r}], got {gamma_max!r}"
                )
            self.gamma_max = float(high[0])
            self.normalized = False
        else:
            raise ValueError(
                "model: expected an action box [-1, 1] (trained on normalized(env)) or "
                f"[0, gamma_max] (trained on AdAuction-v0), got [{low.min()!r}, {high.max()!r}]"
            )

    def bid_multipliers(self, actions: np.ndarray) -> np.ndarray:
        """float32 multipliers of the policy's actions (any shape), clipped to its box."""
        if self.normalized:
            return to_multipliers(np.clip(actions, -1.0, 1.0), self.gamma_max)
        return np.clip(actions, 0.0, self.gamma_max).astype(np.float32)

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
        played = torch.as_tensor(self.bid_multipliers(actions), dtype=values.dtype)
        played = played.reshape(n_bidders, padded).T[:batch]  # [B, N]
        return played.to(values.device)

    def update(self, multipliers: torch.Tensor, utility: torch.Tensor) -> None:
        """A trained policy is fixed while it plays."""


def train_ppo(
    env: gymnasium.Env, *, steps: int, seed: int = 0, n_steps: int = 128, batch_size: int = 64
) -> PPO:
    """A PPO bidder (MLP policy, CPU) trained for `steps` environment steps on `env`, a
    normalized (see `normalized`) AdAuction-v0. Writes nothing: SB3's default logger would
    leave an SB3-<date> folder in the system temp folder, so the model logs nowhere."""
    try:
        from stable_baselines3 import PPO
        from stable_baselines3.common.logger import Logger
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
    model.set_logger(Logger(folder=None, output_formats=[]))
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
