"""Strategic advertisers: Gymnasium and PettingZoo environments and bidding strategies.

`ega_sim/AdAuction-v0` is registered when `ega_sim` is imported (Gymnasium 1.x reads no plugin
entry points), with its native vector version as the `vector_entry_point`:

    import gymnasium, ega_sim
    env = gymnasium.make("ega_sim/AdAuction-v0", scenario="textbook", mechanism="cascade/gsp")
    envs = gymnasium.make_vec("ega_sim/AdAuction-v0", num_envs=64,
                              vectorization_mode="vector_entry_point", scenario="textbook")
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import gymnasium

if TYPE_CHECKING:
    from ega_sim.envs.parallel import AdAuctionParallelEnv

ENV_ID = "ega_sim/AdAuction-v0"


def register_envs() -> None:
    """Register the environments with Gymnasium (idempotent)."""
    if ENV_ID in gymnasium.registry:
        return
    gymnasium.register(
        id=ENV_ID,
        entry_point="ega_sim.envs.single:AdAuctionEnv",
        vector_entry_point="ega_sim.envs.vector:AdAuctionVectorEnv",
        disable_env_checker=False,
    )


def parallel_env(**kwargs) -> AdAuctionParallelEnv:
    """A PettingZoo ParallelEnv where every bidder (or advertiser) is an agent."""
    from ega_sim.envs.parallel import AdAuctionParallelEnv

    return AdAuctionParallelEnv(**kwargs)


__all__ = ["ENV_ID", "parallel_env", "register_envs"]
