"""A PettingZoo ParallelEnv where every bidder of a position auction (`bidder_i`) or every
advertiser of a feed market (`advertiser_a`) is an agent: `ega_sim.envs.parallel_env(...)`.

Each step draws `requests_per_step` (R) requests. Every agent observes, per request, Box [R, 3]
float32: whether it is in the request's auction (always in a position auction; in a feed market
when it is one of the request's candidate ads), its value per click there (0 if absent) and
its context (quality q in a position auction, its mean value per click in a feed market). Its
action is Box [R] in [0, gamma_max], its bid multiplier per request (ignored where it is
absent); an action outside the box, NaN or infinite is a ValueError naming the agent, and so
is a live agent without an action or an action for a name that is no live agent's. Its reward
is its utility over the step's requests, realized (sampled clicks) or expected. Episodes are
`max_steps` steps, truncated for every agent together.
"""

from __future__ import annotations

import functools

import numpy as np
import torch
from gymnasium import spaces
from pettingzoo import ParallelEnv

from ega_sim.envs.market import OBSERVATION_HIGH, AuctionMarket
from ega_sim.envs.single import check_actions, check_settings
from ega_sim.seeding import make_generator


class AdAuctionParallelEnv(ParallelEnv):
    """Every bidder or advertiser an agent (see the module docstring)."""

    metadata = {"name": "ega_sim_ad_auction_v0", "render_modes": []}  # noqa: RUF012

    def __init__(
        self,
        scenario="textbook",
        mechanism="cascade/gsp",
        checkpoint=None,
        requests_per_step: int = 1,
        max_steps: int = 100,
        gamma_max: float = 2.0,
        reward: str = "realized",
        device: str | None = None,
    ):
        self.market = AuctionMarket(scenario, mechanism, checkpoint, device)
        check_settings(self.market, 0, requests_per_step, max_steps, gamma_max, reward)
        if self.market.feed:
            count = int(self.market.world.market.advertiser_value_mean.shape[0])
            self.possible_agents = [f"advertiser_{a}" for a in range(count)]
        else:
            self.possible_agents = [f"bidder_{i}" for i in range(self.market.n_bidders)]
        self.agents: list[str] = []
        self.requests_per_step = requests_per_step
        self.max_steps = max_steps
        self.gamma_max = float(gamma_max)
        self.reward_kind = reward
        self._generator: torch.Generator | None = None
        self._requests = None
        self._steps = 0

    @functools.cache  # noqa: B019 (one space object per agent, as PettingZoo asks)
    def observation_space(self, agent: str) -> spaces.Box:
        shape = (self.requests_per_step, 3)
        return spaces.Box(0.0, OBSERVATION_HIGH, shape=shape, dtype=np.float32)

    @functools.cache  # noqa: B019
    def action_space(self, agent: str) -> spaces.Box:
        return spaces.Box(0.0, self.gamma_max, shape=(self.requests_per_step,), dtype=np.float32)

    def _seat_agent(self, requests) -> torch.Tensor:
        """The agent index of every seat of every request [R, N]."""
        if self.market.feed:
            return requests.ad_advertiser
        return torch.arange(self.market.n_bidders).expand(requests.batch_size, -1)

    def _observe(self) -> dict[str, np.ndarray]:
        self._requests = self.market.draw(self.requests_per_step, self._generator)
        seats = self._seat_agent(self._requests).cpu()  # [R, N]
        seen = torch.from_numpy(self.market.observe(self._requests))  # [R, N, 2]
        table = torch.zeros(len(self.possible_agents), self.requests_per_step, 3)
        rows = torch.arange(self.requests_per_step).unsqueeze(1).expand_as(seats)
        table[seats, rows, 0] = 1.0
        table[seats, rows, 1:] = seen
        return {agent: table[a].numpy() for a, agent in enumerate(self.possible_agents)}

    def reset(self, seed: int | None = None, options: dict | None = None):
        if seed is not None or self._generator is None:
            base = np.random.SeedSequence(seed).generate_state(1, dtype=np.uint64)[0] >> 2
            self._generator = make_generator(int(base), "parallel_env")
        self.agents = list(self.possible_agents)
        self._steps = 0
        observations = self._observe()
        return observations, {agent: {} for agent in self.agents}

    def step(self, actions: dict):
        if not self.agents:
            raise RuntimeError("AdAuctionParallelEnv: the episode is over; call reset()")
        missing = [agent for agent in self.agents if agent not in actions]
        if missing:
            raise ValueError(f"actions: expected one for every live agent, missing {missing[:5]}")
        unknown = [agent for agent in actions if agent not in self.agents]
        if unknown:  # a misspelt name would otherwise bid nothing, silently
            raise ValueError(
                f"actions: expected only live agents' names ({self.agents[0]}, ...), "
                f"got unknown {unknown[:5]}"
            )
        shape = (self.requests_per_step,)
        table = np.ones((len(self.possible_agents), *shape))
        for a, agent in enumerate(self.possible_agents):
            if agent in actions:
                try:
                    table[a] = check_actions(actions[agent], shape, self.gamma_max)
                except ValueError as error:
                    raise ValueError(f"{agent}: {error}") from None
        requests = self._requests
        seats = self._seat_agent(requests)  # [R, N]
        rows = torch.arange(self.requests_per_step).unsqueeze(1).expand_as(seats)
        multipliers = torch.from_numpy(table)[seats.cpu(), rows]  # [R, N]
        round_ = self.market.play(requests, multipliers, self._generator)
        utility = (
            round_.realized_utility if self.reward_kind == "realized" else (round_.expected_utility)
        )
        per_agent = torch.zeros(len(self.possible_agents), dtype=torch.float64)
        per_agent.index_add_(0, seats.reshape(-1).cpu(), utility.reshape(-1).cpu())
        rewards = {agent: float(per_agent[a]) for a, agent in enumerate(self.possible_agents)}
        self._steps += 1
        ended = self._steps >= self.max_steps
        observations = self._observe()
        live = self.agents
        result = (
            {agent: observations[agent] for agent in live},
            {agent: rewards[agent] for agent in live},
            {agent: False for agent in live},
            {agent: ended for agent in live},
            {agent: {} for agent in live},
        )
        if ended:
            self.agents = []
        return result
