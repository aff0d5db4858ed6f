"""Train `ALLOCATOR/paynet` on a world and write it to CHECKPOINT/paynet/ (trained_parts.py
loads it back).

The allocator is fixed (position auctions: `cascade`, `myerson`; feed markets: the trained
`cascade`, `ega` or `gr` in CHECKPOINT), and the payment network learns its prices from
requests drawn from the scenario with truthful bids (values), with utilities and revenue under
the mechanism's own CTR model. CHECKPOINT/paynet/ holds checkpoint.json (the configs, the
training report, provenance), paynet.pt (the weights, loaded with weights_only=True) and, while
training, train_state.pt (for resuming).
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

from ega_sim.atomic import write_text_atomic
from ega_sim.checkpoints import (
    PAYNET_DIR,
    PAYNET_FILE,
    PAYNET_FORMAT,
    save_tensors,
    write_checkpoint_record,
)
from ega_sim.config.feed_market import FeedMarketConfig
from ega_sim.metrics.regret import MisreportSpec
from ega_sim.payment.config import PaynetTrainConfig
from ega_sim.payment.network import PaymentNetwork
from ega_sim.payment.train import train_payment_network
from ega_sim.progress import Progress
from ega_sim.seeding import make_generator
from ega_sim.threads import sets_threads
from ega_sim.world.build import as_world


def _rank_setup(world, allocator_name: str, checkpoint: Path, config, seed: int):
    """(network, source, validate) for a rank allocator; the network's scale set here."""
    from ega_sim.mechanisms.registry import paynet_mechanism
    from ega_sim.payment.rank_rule import rank_feature_count
    from ega_sim.payment.rank_source import RankDeviationSource

    scenario = world.config
    feed = isinstance(scenario, FeedMarketConfig)
    n_slots = len(scenario.requests.ad_positions) if feed else scenario.n_slots
    network = PaymentNetwork(
        rank_feature_count(n_slots), config.network, make_generator(seed, "paynet", "init")
    )
    mechanism = paynet_mechanism(allocator_name, world, network, checkpoint if feed else None)
    auction = mechanism.auction if feed else mechanism  # the feed cascade's inner ad auction

    def draw_auctions(size: int, generator: torch.Generator):
        requests = world.sample_requests(size, generator)
        if not feed:
            return requests
        context = mechanism.prepare(requests)
        auctions, _ = mechanism.ad_auction(requests, requests.value_per_click, context)
        return auctions

    values = draw_auctions(4096, make_generator(seed, "paynet", "value_scale")).value_per_click
    network.value_scale.fill_(float(values.mean()))
    source = RankDeviationSource(
        auction,
        draw_auctions,
        values.shape[1],
        random_draws=config.random_misreports,
        gamma_max=config.gamma_max,
    )
    held_out = draw_auctions(config.validation_requests, make_generator(seed, "paynet", "valid"))
    spec = MisreportSpec("exact", gamma_max=config.gamma_max)
    return network, source, lambda: source.validation_batch(held_out, spec)


def _generated_setup(world, allocator_name, checkpoint, config, seed, progress):
    """(network, source, validate) for a generative allocator: misreports re-run once per
    cached request."""
    from ega_sim.mechanisms.registry import make_mechanism
    from ega_sim.payment.generated_rule import generated_feature_count
    from ega_sim.payment.generated_source import GeneratedDeviationSource

    allocator = make_mechanism(f"{allocator_name}/first", world, checkpoint=checkpoint)
    n_features = generated_feature_count(world.config.n_slots, allocator.max_ads)
    network = PaymentNetwork(n_features, config.network, make_generator(seed, "paynet", "init"))
    network.to(world.device)
    train_requests = world.sample_requests(
        config.cached_requests, make_generator(seed, "paynet", "train_requests")
    )
    network.value_scale.fill_(float(train_requests.value_per_click.mean()))

    def cache(requests, stream: str) -> GeneratedDeviationSource:
        return GeneratedDeviationSource(
            allocator,
            requests,
            network,
            random_draws=config.random_misreports,
            gamma_max=config.gamma_max,
            generator=make_generator(seed, "paynet", stream),
            progress=progress,
        )

    source = cache(train_requests, "train_misreports")
    held_out = world.sample_requests(
        config.cached_validation_requests, make_generator(seed, "paynet", "valid")
    )
    validation = cache(held_out, "valid_misreports")
    return network, source, validation.all


@sets_threads
def train_paynet(
    world,
    allocator_name: str,
    checkpoint: str | Path,
    config: PaynetTrainConfig | None = None,
    *,
    seed: int = 0,
    progress: Progress = False,
    threads: int | None = 1,
) -> dict:
    """Train `allocator_name/paynet` on a world (or a scenario's world on the CPU), the
    allocator's own parts already in `checkpoint` for a feed market; write CHECKPOINT/paynet/
    and return the training report. `threads`: torch's CPU threads for the call (default 1;
    None keeps the caller's setting), restored afterwards. `progress`: see ega_sim/progress.py
    (a line per stage off a terminal)."""
    world = as_world(world)
    scenario = world.config
    config = PaynetTrainConfig() if config is None else config
    checkpoint = Path(checkpoint)
    directory = checkpoint / PAYNET_DIR
    if allocator_name in ("ega", "gr"):
        network, source, validate = _generated_setup(
            world, allocator_name, checkpoint, config, seed, progress
        )
    else:
        network, source, validate = _rank_setup(world, allocator_name, checkpoint, config, seed)
    state_path = directory / "train_state.pt"
    settings = {"config": config.to_dict(), "seed": seed, "allocator": allocator_name}
    settings_path = directory / "settings.json"
    if state_path.is_file() and json.loads(settings_path.read_text()) != settings:
        raise ValueError(
            f"paynet: {directory} holds an unfinished run with other settings "
            f"({settings_path}); use a new --out or delete {state_path}"
        )
    write_text_atomic(settings_path, json.dumps(settings, indent=2) + "\n")
    report = train_payment_network(
        network,
        source,
        validate,
        config,
        make_generator(seed, "paynet", "train"),
        state_path=state_path,
        progress=progress,
    )
    save_tensors(directory / PAYNET_FILE, network.state_dict())
    write_checkpoint_record(
        directory,
        kind="paynet",
        format_version=PAYNET_FORMAT,
        scenario=scenario,
        files=[PAYNET_FILE],
        allocator=allocator_name,
        n_features=network.n_features,
        seed=seed,
        train=config.to_dict(),
        report=report,
    )
    state_path.unlink(missing_ok=True)
    return report


__all__ = ["train_paynet"]
