"""Normalized actions for AdAuction-v0: a policy acts in [-1, 1], the environment bids
multipliers in [0, gamma_max].

One affine map and its inverse, used by both sides of a trained policy: `normalized(env)` (the
focal agent, while it trains and when it is evaluated) and `envs.sb3.PolicyStrategy` (the same
policy as an opponent). The map is computed in float32 against the environment's own float32
bound, so the box edges meet exactly: -1 -> 0 and +1 -> float32(gamma_max), the Box's `high`,
for every gamma_max. (Gymnasium's RescaleAction applies a rounded slope and intercept, which can
land a float step above the bound, which the environment rejects.)
"""

from __future__ import annotations

import math

import gymnasium
import numpy as np
from gymnasium import spaces

from ega_sim.envs.single import check_actions

ONE = np.float32(1.0)
HALF = np.float32(0.5)


def policy_bound(gamma_max: float) -> np.float32:
    """float32(gamma_max), the upper bound of the environment's action Box; ValueError unless
    gamma_max is a finite number > 0 whose float32 is > 0."""
    if isinstance(gamma_max, bool) or not isinstance(gamma_max, int | float | np.floating):
        raise ValueError(f"gamma_max: expected a number > 0, got {gamma_max!r}")
    top = np.float32(gamma_max)
    if not (math.isfinite(gamma_max) and math.isfinite(top) and top > 0):
        raise ValueError(f"gamma_max: expected a finite number > 0 in float32, got {gamma_max!r}")
    return top


def to_multipliers(actions: np.ndarray, gamma_max: float) -> np.ndarray:
    """Bid multipliers m = (a + 1) / 2 x float32(gamma_max) of policy actions a in [-1, 1]
    (any shape), in float32. Exact at the edges (-1 -> 0, +1 -> float32(gamma_max)) and
    monotone: each float32 step rounds monotonically, and halving is exact."""
    top = policy_bound(gamma_max)
    actions = np.asarray(actions, dtype=np.float32)
    return (actions + ONE) * HALF * top


def to_policy_actions(multipliers: np.ndarray, gamma_max: float) -> np.ndarray:
    """The inverse map, a = 2 m / float32(gamma_max) - 1, in float32 (0 -> -1 and
    float32(gamma_max) -> +1 exactly; in between within float32 rounding)."""
    top = policy_bound(gamma_max)
    multipliers = np.asarray(multipliers, dtype=np.float32)
    return multipliers / top * np.float32(2.0) - ONE


class NormalizedBids(gymnasium.ActionWrapper):
    """AdAuction-v0 (or any env with a Box action space [0, gamma_max]) acting in [-1, 1]:
    SB3's Gaussian policies start at 0, the middle of the box (multiplier 1 for gamma_max = 2),
    not at the edge bid 0. An action outside [-1, 1], NaN or infinite is a ValueError: nothing
    is clipped (SB3 clips its actions to this box before stepping)."""

    def __init__(self, env: gymnasium.Env):
        super().__init__(env)
        box = env.action_space
        if not (
            isinstance(box, spaces.Box)
            and box.dtype == np.float32
            and np.all(box.low == 0)
            and np.all(box.high == box.high.flat[0])
        ):
            raise ValueError(
                f"env: expected an action Box [0, gamma_max] of float32 (AdAuction-v0), got {box!r}"
            )
        # float32 -> float -> float32 is exact: to_multipliers meets the Box's own bound.
        self.normalized_gamma_max = float(box.high.flat[0])
        self.action_space = spaces.Box(-1.0, 1.0, shape=box.shape, dtype=np.float32)

    def action(self, action) -> np.ndarray:
        shape = self.action_space.shape
        checked = check_actions(action, shape, 1.0, low=-1.0, what="normalized actions")
        return to_multipliers(checked, self.normalized_gamma_max)

    def reverse_action(self, action) -> np.ndarray:
        return to_policy_actions(action, self.normalized_gamma_max)


def normalized(env: gymnasium.Env) -> NormalizedBids:
    """`env` with actions in [-1, 1] (see NormalizedBids): -1 bids 0, +1 bids gamma_max."""
    return NormalizedBids(env)
