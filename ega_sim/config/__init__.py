"""Validated, frozen configuration: scenarios (and later experiments), loaded from TOML."""

from ega_sim.config.errors import ConfigError
from ega_sim.config.scenario import (
    PositionAuctionConfig,
    ScenarioConfig,
    available_scenarios,
    load_scenario,
)

__all__ = [
    "ConfigError",
    "PositionAuctionConfig",
    "ScenarioConfig",
    "available_scenarios",
    "load_scenario",
]
