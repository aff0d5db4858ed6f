"""The feed market: requests per second of evaluate for the learned cascade, and wall time and
peak memory of simulate-logs."""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

from ega_sim.bench.common import Printer, fresh_process, torch_threads


def run_feed_bench(
    printer: Printer, *, requests=20_000, checkpoint=None, device="cpu", scenario="feed_small"
) -> None:
    """Requests/s of `evaluate` for the learned cascade/gsp, without regret and with grid
    regret (the whole pipeline re-run on 10 misreports per ad, plus the model's regret).
    Without a checkpoint, one is trained first on 20,000 logged requests (timed apart)."""

    from ega_sim.evaluation import evaluate
    from ega_sim.training import train_mechanism
    from ega_sim.world.build import make_world

    world = make_world(scenario, device)
    base = {"scenario": world.config.name, "threads": torch_threads(), "device": str(world.device)}
    with tempfile.TemporaryDirectory() as scratch:
        if checkpoint is None:
            started = time.perf_counter()
            checkpoint = Path(scratch) / "cascade"
            train_mechanism(
                make_world(scenario),
                "cascade/gsp",
                checkpoint,
                log_requests=20_000,
                epochs=3,
                threads=None,
            )
            seconds = time.perf_counter() - started
            record = {**base, "benchmark": "simulate 20k logs + train pCTR", "seconds": seconds}
            printer.rate(record, record["benchmark"], scenario, 20_000, "requests", seconds)
        mechanism = "cascade/gsp"
        settings = {"checkpoint": checkpoint, "threads": None}
        evaluate(mechanism, world, requests=500, misreport="grid", **settings)  # warm-up
        for method in ("none", "grid"):
            result = evaluate(mechanism, world, requests=requests, misreport=method, **settings)
            label = f"evaluate cascade/gsp, {'no' if method == 'none' else 'grid'} regret"
            record = {
                **base,
                "benchmark": label,
                "count": requests,
                "seconds": result.seconds,
                "per_second": requests / result.seconds,
                "unit": "requests",
            }
            printer.rate(record, label, scenario, requests, "requests", result.seconds)


def run_logs_bench(printer: Printer, *, scenario="feed_medium", requests=100_000) -> None:
    """Wall time and peak memory of `ega-sim simulate-logs` in a fresh process (market
    generation included), as a user runs it."""

    with tempfile.TemporaryDirectory() as scratch:
        argv = ["simulate-logs", "--scenario", scenario, "--requests", str(requests)]
        threads = torch_threads()
        seconds, peak_mib = fresh_process([*argv, "--out", f"{scratch}/logs"], threads)
    record = {
        "benchmark": "simulate-logs",
        "threads": threads,
        "scenario": scenario,
        "requests": requests,
        "seconds": seconds,
        "peak_memory_mib": peak_mib,
    }
    printer.memory(record, "simulate-logs", scenario, requests, "requests")
