"""`ega-sim bench`: throughput of the batched mechanisms, printed as figures (not a test).

Position auction with n bidders (values U[0, 1], qualities U[0.5, 1]) and K slots: auctions per
second of the mechanism on all requests, and of the mechanism plus exact ex-post regret of every
bidder, in chunks of the size `evaluate` uses on the device (4,096 requests on the CPU). The best
of `repeats` timed runs after one warm-up run is reported.
"""

from __future__ import annotations

import json
import time

import torch

from ega_sim.config.scenario import PositionAuctionConfig
from ega_sim.evaluation import default_chunk_size, resolve_device
from ega_sim.mechanisms.registry import make_mechanism
from ega_sim.metrics.outcomes import measure_outcome
from ega_sim.metrics.regret import MisreportSpec, ex_post_regret
from ega_sim.seeding import make_generator
from ega_sim.world.distributions import Uniform
from ega_sim.world.position_auction import PositionAuctionWorld


def _best_seconds(work, repeats: int, device: torch.device) -> float:
    work()  # warm-up: allocator caches, first-touch memory
    best = float("inf")
    for _ in range(repeats):
        started = time.perf_counter()
        work()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        best = min(best, time.perf_counter() - started)
    return best


def run_position_auction_bench(
    *,
    requests: int = 100_000,
    n_bidders: int = 10,
    n_slots: int = 4,
    threads: int = 1,
    repeats: int = 5,
    device: str = "cpu",
    as_json: bool = False,
) -> list[dict]:
    """Measure and print throughput; returns the records it printed."""
    torch.set_num_threads(threads)
    device_ = resolve_device(device)
    slot_ctr = tuple(1.0 - k / n_slots for k in range(n_slots))  # 1, 0.75, 0.5, 0.25 for K = 4
    scenario = PositionAuctionConfig(
        name=f"bench_n{n_bidders}_k{n_slots}",
        n_bidders=n_bidders,
        slot_ctr=slot_ctr,
        values=Uniform(0.0, 1.0),
        quality=Uniform(0.5, 1.0),
    )
    world = PositionAuctionWorld(scenario, device=device_)
    batch = world.sample_requests(requests, make_generator(0, "bench"))
    chunks = [
        batch.slice(start, start + default_chunk_size(device_))
        for start in range(0, requests, default_chunk_size(device_))
    ]
    exact = MisreportSpec("exact")
    records = []

    def report(label: str, mechanism_name: str, seconds: float) -> None:
        record = {
            "benchmark": label,
            "mechanism": mechanism_name,
            "scenario": scenario.name,
            "requests": requests,
            "threads": threads,
            "device": str(device_),
            "seconds": seconds,
            "auctions_per_second": requests / seconds,
        }
        records.append(record)
        if as_json:
            print(json.dumps(record), flush=True)
        else:
            print(
                f"{label:<14} {mechanism_name:<18} n={n_bidders} K={n_slots} "
                f"{requests:>9,} requests "
                f"{seconds:8.3f} s  {requests / seconds:>12,.0f} auctions/s  "
                f"({threads} thread(s), {device_})",
                flush=True,
            )

    def run_only(mechanism) -> None:
        for chunk in chunks:
            mechanism.run(chunk, chunk.value_per_click)

    def run_with_regret(mechanism) -> None:
        for chunk in chunks:
            bids = chunk.value_per_click
            outcome = mechanism.run(chunk, bids)
            clicks = world.expected_clicks(chunk, outcome.allocation)
            utility = measure_outcome(chunk, bids, outcome, clicks).utility
            ex_post_regret(exact, mechanism, world, chunk, bids, utility)

    gsp = make_mechanism("cascade/gsp", scenario)
    report("no regret", gsp.name, _best_seconds(lambda: run_only(gsp), repeats, device_))
    for name in ("cascade/gsp", "cascade/vcg", "myerson/threshold"):
        mechanism = make_mechanism(name, scenario)
        seconds = _best_seconds(lambda m=mechanism: run_with_regret(m), repeats, device_)
        report("exact regret", name, seconds)
    return records
