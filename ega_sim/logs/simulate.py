"""simulate_logs(): run the logging policy on sampled requests and record what users did."""

from __future__ import annotations

import time
from pathlib import Path

import torch

from ega_sim.config.feed_market import FeedMarketConfig
from ega_sim.logs.policy import DEFAULT_EXPLORATION, logging_policy
from ega_sim.logs.store import EXPOSURE_COLUMNS, write_logs
from ega_sim.progress import Progress, track
from ega_sim.provenance import provenance
from ega_sim.seeding import make_generator
from ega_sim.threads import sets_threads
from ega_sim.world.build import as_world
from ega_sim.world.click_model import FeedClickModel, resolve_list
from ega_sim.world.market_world import FeedMarketWorld
from ega_sim.world.requests import sample_market_requests

LOG_CHUNK = 8_192


@sets_threads
def simulate_logs(
    world: FeedMarketWorld | FeedMarketConfig,
    requests: int,
    out: str | Path,
    *,
    seed: int = 0,
    exploration: float = DEFAULT_EXPLORATION,
    progress: Progress = False,
    threads: int | None = 1,
) -> dict:
    """Write `requests` logged requests of a feed market's world (or of a scenario's world,
    built here) to the folder `out`; returns the meta. `threads`: torch's CPU threads for the
    call (default 1; None keeps the caller's setting), restored afterwards."""
    scenario = getattr(world, "config", world)
    if not isinstance(scenario, FeedMarketConfig):
        raise ValueError(
            f"simulate-logs: scenario {scenario.name!r} is a {scenario.kind}; logs "
            "exist for feed_market scenarios only"
        )
    if isinstance(requests, bool) or not isinstance(requests, int) or requests < 1:
        raise ValueError(f"requests: expected an integer >= 1, got {requests!r}")
    if not 0.0 <= exploration <= 1.0:
        raise ValueError(f"exploration: expected a probability in [0, 1], got {exploration!r}")
    started = time.perf_counter()
    world = as_world(world)
    market = world.cpu_market  # logs are CPU data, whatever device the world is on
    observed = market.observed()
    click_model = world.click_model if world.device.type == "cpu" else FeedClickModel(market)
    request_stream = make_generator(seed, "logs", "requests")
    policy_stream = make_generator(seed, "logs", "policy")
    click_stream = make_generator(seed, "logs", "clicks")
    columns: dict[str, list[torch.Tensor]] = {name: [] for name in EXPOSURE_COLUMNS}
    chunks = range(0, requests, LOG_CHUNK)
    for start in track(chunks, "simulate-logs", progress=progress, unit="chunk"):
        batch = sample_market_requests(market, min(LOG_CHUNK, requests - start), request_stream)
        shown = logging_policy(observed, batch, policy_stream, exploration)
        feed = resolve_list(market, batch, shown.slot_item, shown.slot_creative)
        outcome = click_model.sample(feed, click_stream)
        n_ads = batch.n_bidders
        ad_index = shown.slot_item.clamp(max=n_ads - 1)
        chunk = {
            "user": batch.user,
            "candidate_advertiser": batch.ad_advertiser,
            "candidate_bid": batch.value_per_click,
            "organic_poi": batch.organic_poi,
            "poi": feed.poi,
            "is_ad": feed.is_ad,
            "advertiser": torch.where(feed.is_ad, batch.ad_advertiser.gather(1, ad_index), -1),
            "creative": shown.slot_creative,
            "bid": torch.where(feed.is_ad, batch.value_per_click.gather(1, ad_index), 0.0),
            "explored": shown.explored,
            "poi_click": outcome.poi_clicks.to(torch.uint8),
            "img_click": outcome.img_clicks.to(torch.uint8),
            "order": outcome.orders.to(torch.uint8),
            "gmv": outcome.gmv,
        }
        for name in EXPOSURE_COLUMNS:
            columns[name].append(chunk[name])
    exposures = {name: torch.cat(parts) for name, parts in columns.items()}
    meta = {
        "scenario": scenario.name,
        "scenario_source": scenario.source,
        "kind": scenario.kind,
        "seed": seed,
        "requests": requests,
        "policy": "cascade by bid x exp(cheap relevance), random creatives",
        "exploration": exploration,
        "poi_ctr": float(exposures["poi_click"].double().mean()),
        "seconds": time.perf_counter() - started,
        **provenance(),
    }
    write_logs(out, exposures, observed, meta)
    return meta
