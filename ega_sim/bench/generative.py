"""The EGA-V2 allocator, requests per second with peak memory: the allocation alone (`ega/first`,
which prices without re-running anything) by beam count and batch size; the lists priced by
bid response (`ega/gsp`, `ega/threshold`: each shown ad's bid response found by re-running
beam search, about 20 re-runs an ad); and `ega/gsp` with the paper's grid regret search of
the shown ads. Peak memory is the process's resident peak on the CPU (reset before each
measurement where Linux allows), the allocator's peak on a GPU. Without a checkpoint, a
pipeline of the default sizes is trained briefly first (timed apart): speed depends on the
sizes, not on the training.
"""

from __future__ import annotations

import contextlib
import math
import tempfile
import time
from pathlib import Path

import torch

from ega_sim.bench.common import Printer, torch_threads

BRIEF_TRAINING = {  # default model sizes, a token of training: enough to time the allocator
    "tokenizer_steps": 100,
    "pretrain": {"epochs": 1},
    "reward_model": {"epochs": 1},
    "alignment": {"steps": 2, "batch_size": 16},
}


def _reset_peak(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
        return
    with contextlib.suppress(OSError):  # Linux: "5" resets this process's peak (VmHWM)
        Path("/proc/self/clear_refs").write_text("5")


def _peak_mib(device: torch.device) -> float:
    """The peak memory since `_reset_peak` (MiB): the GPU allocator's, or the process's."""
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    try:
        with open("/proc/self/status") as status:
            peak = next(line.split()[1] for line in status if line.startswith("VmHWM:"))
        return int(peak) / 1024
    except (OSError, StopIteration):
        return math.nan


def _brief_checkpoint(world, out: Path) -> None:
    from ega_sim.generative.config import EGAConfig
    from ega_sim.generative.train import train_ega
    from ega_sim.logs.simulate import simulate_logs
    from ega_sim.logs.store import read_logs

    simulate_logs(world, 2_000, out / "logs", seed=0, threads=None)
    logs = read_logs(out / "logs", world.config)
    config = EGAConfig.from_dict(BRIEF_TRAINING)
    train_ega(world.config, logs, out, config, seed=0, device=world.device, threads=None)


def run_generative_bench(
    printer: Printer,
    *,
    checkpoint: str | None = None,
    scenario: str = "feed_small",
    device: str = "cpu",
    requests: int = 1_024,
    priced_requests: int = 128,
    regret_requests: int = 64,
    beams: tuple[int, ...] = (16, 64),
    batch_sizes: tuple[int, ...] = (64, 256, 1_024),
) -> None:
    """The allocation (each beam count and batch size), pricing by bid response and grid regret
    of the shown ads (16 beams, `evaluate`'s chunking); see the module docstring."""
    from ega_sim.evaluation import evaluate
    from ega_sim.mechanisms.registry import make_mechanism
    from ega_sim.seeding import make_generator
    from ega_sim.world.build import make_world

    world = make_world(scenario, device)
    base = {"scenario": scenario, "threads": torch_threads(), "device": str(world.device)}
    with tempfile.TemporaryDirectory() as scratch:
        if checkpoint is None:
            started = time.perf_counter()
            checkpoint = scratch
            _brief_checkpoint(world, Path(scratch))
            seconds = time.perf_counter() - started
            record = {**base, "benchmark": "brief EGA training (2k logs)", "seconds": seconds}
            printer.rate(record, record["benchmark"], scenario, 2_000, "requests", seconds)
        batch = world.sample_requests(requests, make_generator(0, "bench"))
        for count in beams:
            mechanism = make_mechanism(
                "ega/first", world, checkpoint=checkpoint, settings={"beams": count}
            )
            mechanism.run(batch.slice(0, 16), batch.slice(0, 16).value_per_click)  # warm-up
            for size in batch_sizes:
                _reset_peak(world.device)
                started = time.perf_counter()
                for start in range(0, requests, size):
                    chunk = batch.slice(start, start + size)
                    mechanism.run(chunk, chunk.value_per_click)
                if world.device.type == "cuda":
                    torch.cuda.synchronize(world.device)
                seconds = time.perf_counter() - started
                label = f"ega allocation, {count} beams, batch {size}"
                record = {
                    **base,
                    "benchmark": "ega allocation",
                    "beams": count,
                    "batch": size,
                    "requests": requests,
                    "seconds": seconds,
                    "per_second": requests / seconds,
                    "peak_memory_mib": _peak_mib(world.device),
                }
                printer.rate(
                    record,
                    label,
                    f"{scenario}, peak {record['peak_memory_mib']:,.0f} MiB",
                    requests,
                    "requests",
                    seconds,
                )

        def measure(name: str, misreport: str, count: int, benchmark: str, label: str) -> None:
            """`evaluate` of `name` on `count` requests after a warm-up, with its peak memory;
            `label` may name `{bidders}`, whose regret was searched."""
            mechanism = make_mechanism(name, world, checkpoint=checkpoint)
            evaluate(mechanism, world, requests=8, misreport=misreport, threads=None)  # warm-up
            _reset_peak(world.device)
            result = evaluate(mechanism, world, requests=count, misreport=misreport, threads=None)
            record = {
                **base,
                "benchmark": benchmark,
                "requests": count,
                "regret_pairs": result.regret_pairs,
                "seconds": result.seconds,
                "per_second": count / result.seconds,
                "peak_memory_mib": _peak_mib(world.device),
            }
            what = f"{scenario}, peak {record['peak_memory_mib']:,.0f} MiB"
            label = label.format(bidders=result.regret_bidders)
            printer.rate(record, label, what, count, "requests", result.seconds)

        for name in ("ega/gsp", "ega/threshold"):
            benchmark = f"{name} priced by bid response"
            measure(name, "none", priced_requests, benchmark, f"{name}, by bid response")
        label = "ega/gsp grid regret ({bidders} ads)"
        measure("ega/gsp", "grid", regret_requests, "ega/gsp grid regret", label)
