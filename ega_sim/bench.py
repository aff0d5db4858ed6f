"""`ega-sim bench`: throughput of the batched mechanisms, printed as figures (not a test).

Position auction with n bidders (values U[0, 1], qualities U[0.5, 1]) and K slots: auctions per
second of the mechanism on all requests, and of the mechanism plus exact ex-post regret of every
bidder, in chunks of the size `evaluate` uses on the device (4,096 requests on the CPU). The best
of `repeats` timed runs after one warm-up run is reported.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import torch

from ega_sim.config.scenario import PositionAuctionConfig
from ega_sim.evaluation import default_chunk_size, resolve_device
from ega_sim.mechanisms.registry import make_mechanism
from ega_sim.metrics.outcomes import measure_outcome
from ega_sim.metrics.regret import MisreportSpec, ex_post_regret
from ega_sim.seeding import make_generator
from ega_sim.world.distributions import Uniform
from ega_sim.world.position_auction import PositionAuctionWorld


def _emit(record: dict, line: str, as_json: bool) -> None:
    """Print one measurement: its JSON record, or its line for people."""
    print(json.dumps(record) if as_json else line, flush=True)


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
        _emit(
            record,
            (
                f"{label:<14} {mechanism_name:<18} n={n_bidders} K={n_slots} "
                f"{requests:>9,} requests "
                f"{seconds:8.3f} s  {requests / seconds:>12,.0f} auctions/s  "
                f"({threads} thread(s), {device_})"
            ),
            as_json,
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


def run_feed_bench(
    *,
    scenario_name: str = "feed_small",
    requests: int = 20_000,
    checkpoint: str | None = None,
    threads: int = 1,
    device: str = "cpu",
    as_json: bool = False,
) -> list[dict]:
    """Requests per second of `evaluate` for the learned cascade/gsp, without regret and with
    grid regret (the whole pipeline re-run on 10 misreports per ad, plus the model's regret).
    Without a checkpoint, one is trained first on 20,000 logged requests (timed apart)."""
    import tempfile

    from ega_sim.config.scenario import load_scenario
    from ega_sim.evaluation import evaluate
    from ega_sim.training import train_mechanism

    torch.set_num_threads(threads)
    resolve_device(device)  # fail before training when the device is missing
    scenario = load_scenario(scenario_name)
    records = []

    def report(label: str, seconds: float, count: int, unit: str) -> None:
        record = {
            "benchmark": label,
            "scenario": scenario.name,
            "count": count,
            "seconds": seconds,
            "per_second": count / seconds,
            "unit": unit,
            "threads": threads,
            "device": device,
        }
        records.append(record)
        _emit(
            record,
            (
                f"{label:<34} {scenario.name:<12} {count:>9,} {unit:<9} {seconds:8.2f} s "
                f"{count / seconds:>11,.0f} {unit}/s  ({threads} thread(s), {device})"
            ),
            as_json,
        )

    with tempfile.TemporaryDirectory() as scratch:
        if checkpoint is None:
            started = time.perf_counter()
            checkpoint = f"{scratch}/cascade"
            train_mechanism(
                scenario, "cascade/gsp", Path(checkpoint), log_requests=20_000, epochs=3
            )
            report(
                "simulate 20k logs + train pCTR", time.perf_counter() - started, 20_000, "requests"
            )
        evaluate(
            "cascade/gsp",
            scenario,
            requests=500,
            misreport="grid",
            device=device,
            checkpoint=checkpoint,
        )  # warm-up
        for method in ("none", "grid"):
            result = evaluate(
                "cascade/gsp",
                scenario,
                requests=requests,
                misreport=method,
                device=device,
                checkpoint=checkpoint,
            )
            label = (
                "evaluate cascade/gsp, no regret"
                if method == "none"
                else "evaluate cascade/gsp, grid regret"
            )
            report(label, result.seconds, requests, "requests")
    return records


def run_logs_bench(
    *, scenario_name: str = "feed_medium", requests: int = 100_000, as_json: bool = False
) -> dict:
    """Wall time and peak memory of `ega-sim simulate-logs` in a fresh process (market
    generation included), as a user runs it."""
    import resource
    import subprocess
    import sys
    import tempfile

    with tempfile.TemporaryDirectory() as scratch:
        started = time.perf_counter()
        subprocess.run(
            [
                sys.executable,
                "-m",
                "ega_sim.cli",
                "simulate-logs",
                "--scenario",
                scenario_name,
                "--requests",
                str(requests),
                "--out",
                f"{scratch}/logs",
            ],
            check=True,
            capture_output=True,
        )
        seconds = time.perf_counter() - started
    peak_mib = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    record = {
        "benchmark": "simulate-logs",
        "scenario": scenario_name,
        "requests": requests,
        "seconds": seconds,
        "peak_memory_mib": peak_mib,
    }
    _emit(
        record,
        (
            f"{'simulate-logs':<34} {scenario_name:<12} {requests:>9,} requests  {seconds:8.2f} s "
            f"wall, peak memory {peak_mib:,.0f} MiB (fresh process)"
        ),
        as_json,
    )
    return record


def run_generative_bench(
    *,
    checkpoint: str,
    scenario_name: str = "feed_small",
    requests: int = 512,
    beams: tuple[int, ...] = (16, 64),
    threads: int = 1,
    as_json: bool = False,
) -> list[dict]:
    """Requests per second of the `ega/gsp` mechanism (beam search, RM selection, GSP) with
    each beam count, without regret, from a checkpoint of `ega-sim train --mechanism ega/gsp`."""
    from ega_sim.config.scenario import load_scenario
    from ega_sim.generative.train import load_generative_mechanism
    from ega_sim.world.feed_market import generate_market
    from ega_sim.world.market_world import FeedMarketWorld

    torch.set_num_threads(threads)
    scenario = load_scenario(scenario_name)
    platform = generate_market(scenario).observed()
    world = FeedMarketWorld(scenario)
    batch = world.sample_requests(requests, make_generator(0, "bench"))
    records = []
    for count in beams:
        mechanism = load_generative_mechanism(
            checkpoint, scenario, "ega", "gsp", platform, beams=count
        )
        mechanism.run(batch.slice(0, 16), batch.slice(0, 16).value_per_click)  # warm-up
        started = time.perf_counter()
        for start in range(0, requests, 256):
            chunk = batch.slice(start, start + 256)
            mechanism.run(chunk, chunk.value_per_click)
        seconds = time.perf_counter() - started
        record = {
            "benchmark": "ega/gsp run",
            "beams": count,
            "scenario": scenario.name,
            "requests": requests,
            "seconds": seconds,
            "per_second": requests / seconds,
            "threads": threads,
        }
        records.append(record)
        _emit(
            record,
            (
                f"{'ega/gsp run, ' + str(count) + ' beams':<34} {scenario.name:<12} "
                f"{requests:>9,} requests  {seconds:8.2f} s {requests / seconds:>11,.1f} "
                f"requests/s  ({threads} thread(s), cpu)"
            ),
            as_json,
        )
    return records
