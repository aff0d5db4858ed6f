"""Mechanisms by name, "ALLOCATOR/PAYMENT": `make_mechanism("cascade/vcg", scenario)`."""

from __future__ import annotations

from pathlib import Path

from ega_sim.config.scenario import ScenarioConfig, load_scenario
from ega_sim.mechanisms.allocators import ALLOCATORS
from ega_sim.mechanisms.mechanism import RankMechanism
from ega_sim.mechanisms.payments import PAYMENT_RULES


def mechanism_names() -> list[str]:
    return [f"{a}/{p}" for a in ALLOCATORS for p in PAYMENT_RULES]


def make_mechanism(name: str, scenario: ScenarioConfig | str | Path) -> RankMechanism:
    """Build the mechanism `ALLOCATOR/PAYMENT` for a scenario (a config, a path or a name)."""
    scenario = load_scenario(scenario)
    allocator_name, slash, payment_name = str(name).partition("/")
    if not slash or allocator_name not in ALLOCATORS or payment_name not in PAYMENT_RULES:
        raise ValueError(
            f"mechanism: expected ALLOCATOR/PAYMENT, one of {', '.join(mechanism_names())}; "
            f"got {name!r}"
        )
    allocator = ALLOCATORS[allocator_name](scenario)
    return RankMechanism(allocator, PAYMENT_RULES[payment_name]())
