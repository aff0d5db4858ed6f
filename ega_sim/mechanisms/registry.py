"""Mechanisms by name, "ALLOCATOR/PAYMENT": `make_mechanism("cascade/vcg", scenario)`.

Position auctions: allocators `cascade` and `myerson`. Feed markets: `cascade` (needs a
checkpoint made by `ega-sim train`), `oracle_cascade` (the true CTRs, for analysis), and the
generative `ega` and `gr` (checkpoints of `ega-sim train --mechanism ega/gsp`).
Payment rules: gsp, vcg, threshold, first (generated lists: gsp and first), and the learned
`paynet` on every allocator (its network from CHECKPOINT/paynet/, made by
`ega-sim train --mechanism ALLOCATOR/paynet`).
"""

from __future__ import annotations

from pathlib import Path

import torch

from ega_sim.config.feed_market import FeedMarketConfig
from ega_sim.config.scenario import ScenarioConfig, load_scenario
from ega_sim.mechanisms.allocators import ALLOCATORS
from ega_sim.mechanisms.mechanism import RankMechanism
from ega_sim.mechanisms.payments import PAYMENT_RULES

FEED_ALLOCATORS = ("cascade", "oracle_cascade")
GENERATIVE_ALLOCATORS = ("ega", "gr")
GENERATIVE_PAYMENTS = ("gsp", "first")
LEARNED_PAYMENT = "paynet"


def mechanism_names(scenario: ScenarioConfig | None = None, *, learned: bool = True) -> list[str]:
    """The mechanisms that apply to a scenario (position-auction ones when none is given);
    `learned=False` leaves out those that need a trained payment network."""
    payments = [*PAYMENT_RULES, LEARNED_PAYMENT] if learned else list(PAYMENT_RULES)
    if not isinstance(scenario, FeedMarketConfig):
        return [f"{a}/{p}" for a in ALLOCATORS for p in payments]
    generative = [*GENERATIVE_PAYMENTS, LEARNED_PAYMENT] if learned else GENERATIVE_PAYMENTS
    names = [f"{a}/{p}" for a in FEED_ALLOCATORS for p in payments]
    return names + [f"{a}/{p}" for a in GENERATIVE_ALLOCATORS for p in generative]


def make_mechanism(
    name: str,
    scenario: ScenarioConfig | str | Path,
    *,
    checkpoint: str | Path | None = None,
    device: str | torch.device = "cpu",
    settings: dict | None = None,
):
    """Build the mechanism `ALLOCATOR/PAYMENT` for a scenario (a config, a path or a name).
    Learned allocators load their trained parts from `checkpoint`; `settings` changes how a
    generative allocator generates (generative.train.INFERENCE_SETTINGS) without retraining."""
    scenario = load_scenario(scenario)
    known = mechanism_names(scenario)
    allocator_name, slash, payment_name = str(name).partition("/")
    if not slash or f"{allocator_name}/{payment_name}" not in known:
        raise ValueError(
            f"mechanism: expected ALLOCATOR/PAYMENT for a {scenario.kind} scenario, one of "
            f"{', '.join(known)}; got {name!r}"
        )
    if settings and allocator_name not in GENERATIVE_ALLOCATORS:
        raise ValueError(f"mechanism {name}: settings apply to ega/* and gr/* only")
    if payment_name == LEARNED_PAYMENT:
        from ega_sim.payment.fit import load_payment_network

        if checkpoint is None:
            raise ValueError(
                f"mechanism {name} is learned and needs --checkpoint DIR; make one with "
                f"`ega-sim train --scenario {scenario.name} --mechanism {name} --out DIR`"
            )
        network = load_payment_network(checkpoint, scenario, allocator_name)
        return paynet_mechanism(allocator_name, scenario, network, checkpoint, device, settings)
    if allocator_name in GENERATIVE_ALLOCATORS:
        return _make_generative(
            allocator_name, payment_name, scenario, checkpoint, device, settings=settings
        )
    payment_rule = PAYMENT_RULES[payment_name]()
    if isinstance(scenario, FeedMarketConfig):
        return _make_feed_cascade(allocator_name, scenario, payment_rule, checkpoint, device)
    if checkpoint is not None:
        raise ValueError(f"mechanism {name}: takes no checkpoint (nothing in it is learned)")
    return RankMechanism(ALLOCATORS[allocator_name](scenario), payment_rule)


def paynet_mechanism(
    allocator_name: str,
    scenario,
    network,
    checkpoint=None,
    device: str | torch.device = "cpu",
    settings: dict | None = None,
):
    """`allocator_name/paynet` priced by `network` (the allocator's own parts from
    `checkpoint` where it has learned ones)."""
    from ega_sim.payment.rank_rule import LearnedPayment

    if allocator_name in GENERATIVE_ALLOCATORS:
        return _make_generative(
            allocator_name, LEARNED_PAYMENT, scenario, checkpoint, device, network, settings
        )
    if isinstance(scenario, FeedMarketConfig):
        return _make_feed_cascade(
            allocator_name, scenario, LearnedPayment(network.to(device)), checkpoint, device
        )
    allocator = ALLOCATORS[allocator_name](scenario)
    return RankMechanism(allocator, LearnedPayment(network.to(device)))


def _make_generative(
    allocator_name, payment_name, scenario, checkpoint, device, network=None, settings=None
):
    from ega_sim.generative.train import load_generative_mechanism
    from ega_sim.world.feed_market import generate_market

    if torch.device(device).type != "cpu":
        raise ValueError(
            f"{allocator_name}/{payment_name}: the generative allocators run on the "
            "CPU so far (--device cpu)"
        )
    if checkpoint is None:
        raise ValueError(
            f"mechanism {allocator_name}/{payment_name} on {scenario.name} is learned and needs "
            f"--checkpoint DIR; make one with `ega-sim train --scenario {scenario.name} "
            f"--mechanism {allocator_name}/{payment_name} --out DIR`"
        )
    platform = generate_market(scenario).observed()
    return load_generative_mechanism(
        checkpoint,
        scenario,
        allocator_name,
        payment_name,
        platform,
        payment_network=network,
        settings=settings,
    )


def _make_feed_cascade(allocator_name, scenario, payment_rule, checkpoint, device):
    from ega_sim.mechanisms.feed_cascade import FeedCascade, LearnedCTR, OracleCTR
    from ega_sim.ranking.train import load_cascade_checkpoint
    from ega_sim.world.feed_market import generate_market

    market = generate_market(scenario)
    observed = market.observed().to(device)
    if allocator_name == "oracle_cascade":
        ctr = OracleCTR(market.to(device))
    else:
        if checkpoint is None:
            raise ValueError(
                f"mechanism {allocator_name}/{payment_rule.name} on {scenario.name} is learned and "
                f"needs --checkpoint DIR; make one with `ega-sim train --scenario {scenario.name} "
                f"--mechanism cascade/{payment_rule.name} --out DIR`"
            )
        model, _ = load_cascade_checkpoint(checkpoint, scenario.name)
        ctr = LearnedCTR(model.to(device), observed)
    return FeedCascade(allocator_name, scenario, ctr, payment_rule, observed)
