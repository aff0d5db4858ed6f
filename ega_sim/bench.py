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


def _bench_scenario(n_bidders: int, n_slots: int) -> PositionAuctionConfig:
    """n bidders with values U[0, 1] and qualities U[0.5, 1]; K slots, alpha_k = 1 - k / K."""
    slot_ctr = tuple(1.0 - k / n_slots for k in range(n_slots))  # 1, 0.75, 0.5, 0.25 for K = 4
    return PositionAuctionConfig(
        name=f"bench_n{n_bidders}_k{n_slots}",
        n_bidders=n_bidders,
        slot_ctr=slot_ctr,
        values=Uniform(0.0, 1.0),
        quality=Uniform(0.5, 1.0),
    )


def _run_chunks(mechanism, world, chunks, with_regret: bool) -> None:
    """Run the mechanism on each chunk of truthful requests; with exact regret when asked."""
    for chunk in chunks:
        bids = chunk.value_per_click
        outcome = mechanism.run(chunk, bids)
        if with_regret:
            clicks = world.expected_clicks(chunk, outcome.allocation)
            utility = measure_outcome(chunk, bids, outcome, clicks).utility
            ex_post_regret(MisreportSpec("exact"), mechanism, world, chunk, bids, utility)


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
    scenario = _bench_scenario(n_bidders, n_slots)
    world = PositionAuctionWorld(scenario, device=device_)
    batch = world.sample_requests(requests, make_generator(0, "bench"))
    chunks = [
        batch.slice(start, start + default_chunk_size(device_))
        for start in range(0, requests, default_chunk_size(device_))
    ]
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

    gsp = make_mechanism("cascade/gsp", scenario)
    seconds = _best_seconds(lambda: _run_chunks(gsp, world, chunks, False), repeats, device_)
    report("no regret", gsp.name, seconds)
    for name in ("cascade/gsp", "cascade/vcg", "myerson/threshold"):
        mechanism = make_mechanism(name, scenario)
        seconds = _best_seconds(
            lambda m=mechanism: _run_chunks(m, world, chunks, True), repeats, device_
        )
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


# Runs `ega-sim` and, at exit, writes the process's peak resident memory (VmHWM, in KiB) to the
# file named by argv[1]. VmHWM belongs to the process image after exec; ru_maxrss would also count
# the memory of the parent at fork time.
_PEAK_MEMORY_WRAPPER = """
import atexit, runpy, sys
out = sys.argv[1]
def record():
    with open("/proc/self/status") as status:
        peak = next(line.split()[1] for line in status if line.startswith("VmHWM:"))
    with open(out, "w") as handle:
        handle.write(peak)
atexit.register(record)
sys.argv = ["ega-sim", *sys.argv[2:]]
runpy.run_module("ega_sim.cli", run_name="__main__")
"""


def _fresh_process(argv: list[str], threads: int | None = None) -> tuple[float, float]:
    """Wall seconds and peak memory (MiB) of `ega-sim ARGV` run in a fresh process, as a user
    runs it (imports and setup included). Linux: the peak is read from /proc."""
    import os
    import subprocess
    import sys
    import tempfile

    env = dict(os.environ)
    if threads is not None:
        env["OMP_NUM_THREADS"] = str(threads)
    with tempfile.TemporaryDirectory() as scratch:
        peak_file = Path(scratch) / "peak_kib"
        started = time.perf_counter()
        done = subprocess.run(
            [sys.executable, "-c", _PEAK_MEMORY_WRAPPER, str(peak_file), *argv],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            env=env,
            check=False,
        )
        seconds = time.perf_counter() - started
        if done.returncode != 0:
            raise RuntimeError(f"ega-sim {' '.join(argv)} failed: {done.stderr.decode()}")
        return seconds, int(peak_file.read_text()) / 1024


def run_logs_bench(
    *, scenario_name: str = "feed_medium", requests: int = 100_000, as_json: bool = False
) -> dict:
    """Wall time and peak memory of `ega-sim simulate-logs` in a fresh process (market
    generation included), as a user runs it."""
    import tempfile

    with tempfile.TemporaryDirectory() as scratch:
        argv = ["simulate-logs", "--scenario", scenario_name, "--requests", str(requests)]
        seconds, peak_mib = _fresh_process([*argv, "--out", f"{scratch}/logs"])
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


def run_paynet_bench(
    *,
    requests: int = 100_000,
    n_bidders: int = 10,
    n_slots: int = 4,
    steps: int = 2_000,
    checkpoint: str | None = None,
    threads: int = 1,
    repeats: int = 5,
    as_json: bool = False,
) -> list[dict]:
    """The payment network's cost. Inference: auctions/s of cascade/paynet on the position
    bench auction, alone and with exact regret (16 bids per interval), next to cascade/vcg
    (an untrained network of the default shape costs what a trained one does). Training: wall
    time and peak memory of `ega-sim train --mechanism cascade/paynet` in a fresh process on
    textbook and three_bidders_two_slots, and on feed_small from a cascade `checkpoint`."""
    import tempfile

    from ega_sim.mechanisms.registry import paynet_mechanism
    from ega_sim.payment.network import PaymentNetwork
    from ega_sim.payment.rank_rule import rank_feature_count

    torch.set_num_threads(threads)
    scenario = _bench_scenario(n_bidders, n_slots)
    world = PositionAuctionWorld(scenario)
    batch = world.sample_requests(requests, make_generator(0, "bench"))
    chunks = [batch.slice(start, start + 4_096) for start in range(0, requests, 4_096)]
    network = PaymentNetwork(rank_feature_count(n_slots), generator=make_generator(0, "bench"))
    records = []
    cpu = torch.device("cpu")
    for mechanism in (
        make_mechanism("cascade/vcg", scenario),
        paynet_mechanism("cascade", scenario, network),
    ):
        for label, with_regret in (("no regret", False), ("exact regret", True)):
            seconds = _best_seconds(
                lambda m=mechanism, r=with_regret: _run_chunks(m, world, chunks, r), repeats, cpu
            )
            record = {
                "benchmark": f"paynet inference, {label}",
                "mechanism": mechanism.name,
                "scenario": scenario.name,
                "requests": requests,
                "threads": threads,
                "seconds": seconds,
                "auctions_per_second": requests / seconds,
                "microseconds_per_request": 1e6 * seconds / requests,
            }
            records.append(record)
            _emit(
                record,
                (
                    f"{label:<14} {mechanism.name:<18} n={n_bidders} K={n_slots} "
                    f"{requests:>9,} requests {seconds:8.3f} s  {requests / seconds:>12,.0f} "
                    f"auctions/s  {1e6 * seconds / requests:7.2f} us/request  "
                    f"({threads} thread(s), cpu)"
                ),
                as_json,
            )
    runs = [("textbook", None), ("three_bidders_two_slots", None)]
    if checkpoint is not None:
        runs.append(("feed_small", checkpoint))
    for scenario_name, reuse in runs:
        with tempfile.TemporaryDirectory() as scratch:
            argv = ["train", "--scenario", scenario_name, "--mechanism", "cascade/paynet"]
            argv += ["--steps", str(steps), "--out", f"{scratch}/paynet"]
            if reuse is not None:
                argv += ["--from", reuse]
            seconds, peak_mib = _fresh_process(argv, threads)
        record = {
            "benchmark": "paynet training",
            "scenario": scenario_name,
            "steps": steps,
            "seconds": seconds,
            "peak_memory_mib": peak_mib,
            "threads": threads,
        }
        records.append(record)
        _emit(
            record,
            (
                f"{'train cascade/paynet':<34} {scenario_name:<24} {steps:>6,} steps "
                f"{seconds:8.1f} s wall, peak memory {peak_mib:,.0f} MiB "
                f"({threads} thread(s), fresh process)"
            ),
            as_json,
        )
    return records


def run_envs_bench(
    *,
    checkpoint: str | None = None,
    seconds_per_case: float = 3.0,
    threads: int = 1,
    as_json: bool = False,
) -> list[dict]:
    """Env steps per second of AdAuction-v0 (one request per step, random actions): the single
    env, SyncVectorEnv over 64 copies, and the native vector env with 64 and 1,024
    sub-environments, on textbook and feed_small with cascade/gsp (feed_small's cascade from
    `checkpoint`; without one, oracle_cascade/gsp, which skips the pCTR model)."""
    import gymnasium

    from ega_sim.envs import ENV_ID

    torch.set_num_threads(threads)
    feed_mechanism = "cascade/gsp" if checkpoint else "oracle_cascade/gsp"
    cases = [("textbook", "cascade/gsp", None), ("feed_small", feed_mechanism, checkpoint)]
    records = []
    for scenario, mechanism, learned in cases:
        settings = dict(
            scenario=scenario, mechanism=mechanism, checkpoint=learned, max_steps=1_000_000
        )
        makers = [
            ("single env", 1, lambda s=settings: gymnasium.make(ENV_ID, **s)),
            (
                "SyncVectorEnv x64",
                64,
                lambda s=settings: gymnasium.make_vec(
                    ENV_ID, num_envs=64, vectorization_mode="sync", **s
                ),
            ),
        ] + [
            (
                f"native vector x{n}",
                n,
                lambda s=settings, n=n: gymnasium.make_vec(
                    ENV_ID, num_envs=n, vectorization_mode="vector_entry_point", **s
                ),
            )
            for n in (64, 1024)
        ]
        for label, count, make in makers:
            env = make()
            env.reset(seed=0)
            env.action_space.seed(0)
            actions = [env.action_space.sample() for _ in range(8)]
            env.step(actions[0])  # warm-up
            steps, started = 0, time.perf_counter()
            while time.perf_counter() - started < seconds_per_case:
                env.step(actions[steps % len(actions)])
                steps += 1
            elapsed = time.perf_counter() - started
            env.close()
            record = {
                "benchmark": "env steps",
                "env": label,
                "scenario": scenario,
                "mechanism": mechanism,
                "env_steps_per_second": steps * count / elapsed,
                "threads": threads,
            }
            records.append(record)
            _emit(
                record,
                (
                    f"{label:<22} {scenario:<10} {mechanism:<20} "
                    f"{steps * count / elapsed:>12,.0f} env steps/s  ({threads} thread(s), cpu)"
                ),
                as_json,
            )
    return records


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
