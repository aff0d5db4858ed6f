"""The feed market: requests per second of evaluate for the learned cascade and of the
generative ega/gsp, and wall time and peak memory of simulate-logs."""

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
                make_world(scenario), "cascade/gsp", checkpoint, log_requests=20_000, epochs=3
            )
            seconds = time.perf_counter() - started
            record = {**base, "benchmark": "simulate 20k logs + train pCTR", "seconds": seconds}
            printer.rate(record, record["benchmark"], scenario, 20_000, "requests", seconds)
        mechanism = "cascade/gsp"
        evaluate(mechanism, world, requests=500, misreport="grid", checkpoint=checkpoint)  # warm-up
        for method in ("none", "grid"):
            result = evaluate(
                mechanism, world, requests=requests, misreport=method, checkpoint=checkpoint
            )
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
        seconds, peak_mib = fresh_process([*argv, "--out", f"{scratch}/logs"])
    record = {
        "benchmark": "simulate-logs",
        "scenario": scenario,
        "requests": requests,
        "seconds": seconds,
        "peak_memory_mib": peak_mib,
    }
    printer.memory(record, "simulate-logs", scenario, requests, "requests")


def run_generative_bench(
    printer: Printer, *, checkpoint, scenario="feed_small", requests=512, beams=(16, 64)
) -> None:
    """Requests per second of the `ega/gsp` mechanism (beam search, RM selection, GSP) with
    each beam count, without regret, from a checkpoint of `ega-sim train --mechanism ega/gsp`."""
    from ega_sim.mechanisms.registry import make_mechanism
    from ega_sim.seeding import make_generator
    from ega_sim.world.build import make_world

    world = make_world(scenario)
    batch = world.sample_requests(requests, make_generator(0, "bench"))
    for count in beams:
        mechanism = make_mechanism(
            "ega/gsp", world, checkpoint=checkpoint, settings={"beams": count}
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
            "scenario": scenario,
            "requests": requests,
            "seconds": seconds,
            "per_second": requests / seconds,
            "threads": torch_threads(),
        }
        printer.rate(record, f"ega/gsp run, {count} beams", scenario, requests, "requests", seconds)
