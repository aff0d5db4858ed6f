"""Mechanisms by name, "ALLOCATOR/PAYMENT": `make_mechanism("cascade/vcg", world)`.

Position auctions: allocators `cascade` and `myerson`. Feed markets: `cascade` (needs a
checkpoint made by `ega-sim train`), `oracle_cascade` (the true CTRs, for analysis), and the
generative `ega` and `gr` (checkpoints of `ega-sim train --mechanism ega/gsp`).
Payment rules: gsp, vcg, threshold, first (generated lists: gsp, threshold, first), and the learned
`paynet` on every allocator (its network from CHECKPOINT/paynet/, made by
`ega-sim train --mechanism ALLOCATOR/paynet`).

The registry is a lookup of names to factories: each factory takes the world and the trained
parts (loaded by trained_parts.py) and composes the mechanism.
"""

from __future__ import annotations

from pathlib import Path

import torch

from ega_sim.config.feed_market import FeedMarketConfig
from ega_sim.config.scenario import ScenarioConfig
from ega_sim.mechanisms.allocators import ALLOCATORS
from ega_sim.mechanisms.mechanism import RankMechanism
from ega_sim.mechanisms.payments import PAYMENT_RULES
from ega_sim.world.build import World, as_world

FEED_ALLOCATORS = ("cascade", "oracle_cascade")
GENERATIVE_ALLOCATORS = ("ega", "gr")
GENERATIVE_PAYMENTS = ("gsp", "threshold", "first")
LEARNED_PAYMENT = "paynet"


def mechanism_names(
    scenario: ScenarioConfig | World | None = None, *, learned: bool = True
) -> list[str]:
    """The mechanisms that apply to a scenario or its world (position-auction ones when none is
    given); `learned=False` leaves out those that need a trained payment network."""
    scenario = getattr(scenario, "config", scenario)  # a world's scenario
    payments = [*PAYMENT_RULES, LEARNED_PAYMENT] if learned else list(PAYMENT_RULES)
    if not isinstance(scenario, FeedMarketConfig):
        return [f"{a}/{p}" for a in ALLOCATORS for p in payments]
    generative = [*GENERATIVE_PAYMENTS, LEARNED_PAYMENT] if learned else GENERATIVE_PAYMENTS
    names = [f"{a}/{p}" for a in FEED_ALLOCATORS for p in payments]
    return names + [f"{a}/{p}" for a in GENERATIVE_ALLOCATORS for p in generative]


def learns(name: str, scenario: ScenarioConfig | World) -> bool:
    """Whether the mechanism reads a checkpoint: a payment network, or a feed market's learned
    allocator (the cascade's pCTR model, the generative pipeline)."""
    feed = isinstance(getattr(scenario, "config", scenario), FeedMarketConfig)
    allocator, _, payment = str(name).partition("/")
    return payment == LEARNED_PAYMENT or (feed and allocator in ("cascade", *GENERATIVE_ALLOCATORS))


def make_mechanism(
    name: str,
    world: World | ScenarioConfig | str | Path,
    *,
    checkpoint: str | Path | None = None,
    device: str | torch.device | None = None,
    settings: dict | None = None,
):
    """Build the mechanism `ALLOCATOR/PAYMENT` on a world (or on a scenario: a config, a path
    or a name, whose world is built on `device`). Learned allocators load their trained parts
    from `checkpoint`; `settings` changes how a generative allocator generates
    (generative.config.INFERENCE_SETTINGS) without retraining."""
    from ega_sim.trained_parts import load_payment_network

    world = as_world(world, device)
    scenario = world.config
    known = mechanism_names(scenario)
    allocator_name, slash, payment_name = str(name).partition("/")
    if not slash or f"{allocator_name}/{payment_name}" not in known:
        raise ValueError(
            f"mechanism: expected ALLOCATOR/PAYMENT for a {scenario.kind} scenario, one of "
            f"{', '.join(known)}; got {name!r}"
        )
    if settings and allocator_name not in GENERATIVE_ALLOCATORS:
        raise ValueError(f"mechanism {name}: settings apply to ega/* and gr/* only")
    network = None
    if payment_name == LEARNED_PAYMENT:
        _require_checkpoint(name, scenario, checkpoint)
        network = load_payment_network(checkpoint, scenario, allocator_name)
    elif not isinstance(scenario, FeedMarketConfig) and checkpoint is not None:
        raise ValueError(f"mechanism {name}: takes no checkpoint (nothing in it is learned)")
    return _FACTORIES[_factory_key(allocator_name, scenario)](
        allocator_name, payment_name, world, checkpoint, settings, network
    )


def paynet_mechanism(
    allocator_name: str,
    world: World,
    network,
    checkpoint: str | Path | None = None,
    settings: dict | None = None,
):
    """`allocator_name/paynet` priced by `network` (the allocator's own parts from
    `checkpoint` where it has learned ones)."""
    key = _factory_key(allocator_name, world.config)
    return _FACTORIES[key](allocator_name, LEARNED_PAYMENT, world, checkpoint, settings, network)


def _factory_key(allocator_name: str, scenario) -> str:
    if allocator_name in GENERATIVE_ALLOCATORS:
        return "generative"
    return "feed" if isinstance(scenario, FeedMarketConfig) else "position"


def _require_checkpoint(name: str, scenario, checkpoint) -> None:
    if checkpoint is None:
        raise ValueError(
            f"mechanism {name} on {scenario.name} is learned and needs --checkpoint DIR; make "
            f"one with `ega-sim train --scenario {scenario.name} --mechanism {name} --out DIR`"
        )


def _payment_rule(payment_name: str, network, device: torch.device):
    from ega_sim.payment.rank_rule import LearnedPayment

    if payment_name == LEARNED_PAYMENT:
        return LearnedPayment(network.to(device))
    return PAYMENT_RULES[payment_name]()


def _make_position(allocator_name, payment_name, world, checkpoint, settings, network):
    payment_rule = _payment_rule(payment_name, network, world.device)
    return RankMechanism(ALLOCATORS[allocator_name](world.config), payment_rule)


def _make_feed_cascade(allocator_name, payment_name, world, checkpoint, settings, network):
    from ega_sim.mechanisms.feed_cascade import FeedCascade, LearnedCTR, OracleCTR
    from ega_sim.trained_parts import load_cascade_ctr_model

    if allocator_name == "oracle_cascade":
        ctr = OracleCTR(world.market)
    else:
        _require_checkpoint(f"{allocator_name}/{payment_name}", world.config, checkpoint)
        model, _ = load_cascade_ctr_model(checkpoint, world.config)
        ctr = LearnedCTR(model.to(world.device), world.platform)
    payment_rule = _payment_rule(payment_name, network, world.device)
    return FeedCascade(allocator_name, world.config, ctr, payment_rule, world.platform)


def _make_generative(allocator_name, payment_name, world, checkpoint, settings, network):
    from ega_sim.generative.allocator import GenerativeMechanism
    from ega_sim.generative.config import with_settings
    from ega_sim.trained_parts import load_generative

    name = f"{allocator_name}/{payment_name}"
    _require_checkpoint(name, world.config, checkpoint)
    from ega_sim.payment.generated_rule import generated_feature_count

    parts, config = load_generative(checkpoint, world, allocator_name, name)
    config = with_settings(config, settings or {})
    expected = generated_feature_count(
        world.config.n_slots, len(world.config.requests.ad_positions)
    )
    if network is not None and network.n_features != expected:
        raise ValueError(
            f"checkpoint: the payment network in {checkpoint} reads {network.n_features} "
            f"features per ad, this ega-sim's {name} gives it {expected} (its own-bid "
            "thresholds were added): retrain it with `ega-sim train --mechanism "
            f"{allocator_name}/paynet --from {checkpoint}`"
        )
    return GenerativeMechanism(
        allocator_name,
        world.config,
        parts,
        payment_name,
        beams=config.beams,
        bidding=config.bidding,
        ctr_weight=config.ctr_weight,
        payment_network=None if network is None else network.to(world.device),
    )


_FACTORIES = {
    "position": _make_position,
    "feed": _make_feed_cascade,
    "generative": _make_generative,
}

__all__ = ["learns", "make_mechanism", "mechanism_names", "paynet_mechanism"]
