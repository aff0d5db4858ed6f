"""One world per (scenario, device), built once at the edge and handed down explicitly.

A world is the validated scenario with everything drawn from it: the market (ground truth) and
the platform's view of it for a feed market, the ground-truth click model, and the request
sampler. Mechanism factories, `evaluate`, the environments, the misreport study, the payment
network's fit and experiment cells take a world; the public entry points also take a scenario
(a config, a file path or a shipped name) and build the world for the caller. The move to a
device happens here: the world's tensors are on its device, its random draws on the CPU.
"""

from __future__ import annotations

from pathlib import Path

import torch

from ega_sim.config.feed_market import FeedMarketConfig
from ega_sim.config.scenario import ScenarioConfig, load_scenario
from ega_sim.world.market_world import FeedMarketWorld
from ega_sim.world.position_auction import PositionAuctionWorld

World = PositionAuctionWorld | FeedMarketWorld
WORLD_TYPES = (PositionAuctionWorld, FeedMarketWorld)


def resolve_device(device: str | torch.device) -> torch.device:
    """A torch device the simulation can run on: the CPU or a CUDA device torch sees. Anything
    else (a typo, 'meta', which holds no numbers, a CUDA index past the last device) is a
    one-line ValueError naming `device`."""
    expected = "expected 'cpu', 'cuda' or 'cuda:N'"
    try:
        device = torch.device(device)
    except (RuntimeError, TypeError) as error:
        raise ValueError(f"device: {expected}, got {device!r}") from error
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError("device: 'cuda' was asked for, but torch sees no CUDA device here")
        count = torch.cuda.device_count()
        if device.index is not None and device.index >= count:
            raise ValueError(
                f"device: {expected} with N < {count} (the CUDA devices torch sees), got "
                f"{str(device)!r}"
            )
    elif device.type != "cpu":
        raise ValueError(f"device: {expected} (a device that computes), got {str(device)!r}")
    return device


def make_world(scenario: ScenarioConfig | str | Path, device: str | torch.device = "cpu") -> World:
    """Build the world of a scenario on a device (a feed market is generated here, once)."""
    scenario = load_scenario(scenario)
    device = resolve_device(device)
    if isinstance(scenario, FeedMarketConfig):
        return FeedMarketWorld(scenario, device=device)
    return PositionAuctionWorld(scenario, device=device)


def as_world(
    scenario_or_world: World | ScenarioConfig | str | Path,
    device: str | torch.device | None = None,
) -> World:
    """A world passes through (a ValueError when `device` names another device); anything
    else is a scenario, whose world is built on `device` (default: the CPU)."""
    if isinstance(scenario_or_world, WORLD_TYPES):
        if device is not None and resolve_device(device) != scenario_or_world.device:
            raise ValueError(
                f"device: the world of {scenario_or_world.config.name} is on "
                f"{scenario_or_world.device}, not on {device}; build it with make_world(..., "
                f"device={str(device)!r})"
            )
        return scenario_or_world
    return make_world(scenario_or_world, "cpu" if device is None else device)
