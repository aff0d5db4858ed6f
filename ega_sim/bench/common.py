"""What every benchmark suite shares: printing measurements, timing, fresh processes."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path


class Printer:
    """Prints each measurement (its JSON record, or its line for people) and keeps the record."""

    def __init__(self, as_json: bool):
        self.as_json = as_json
        self.records: list[dict] = []

    def rate(self, record: dict, label: str, what: str, count: int, unit: str, seconds: float):
        """A throughput: `count` `unit`s in `seconds`."""
        threads, device = record.get("threads", 1), record.get("device", "cpu")
        self.emit(
            record,
            f"{label:<34} {what:<28} {count:>9,} {unit:<9} {seconds:8.3f} s "
            f"{count / seconds:>12,.1f} {unit}/s  ({threads} thread(s), {device})",
        )

    def memory(self, record: dict, label: str, what: str, count: int, unit: str):
        """Wall time and peak memory of a whole command in a fresh process."""
        self.emit(
            record,
            f"{label:<34} {what:<28} {count:>9,} {unit:<9} {record['seconds']:8.2f} s wall, "
            f"peak memory {record['peak_memory_mib']:,.0f} MiB (fresh process)",
        )

    def emit(self, record: dict, line: str) -> None:
        self.records.append(record)
        print(json.dumps(record) if self.as_json else line, flush=True)


def best_seconds(work: Callable[[], None], repeats: int, device) -> float:
    import torch

    work()  # warm-up: allocator caches, first-touch memory
    best = float("inf")
    for _ in range(repeats):
        started = time.perf_counter()
        work()
        if device is not None and device.type == "cuda":  # None: not torch (NumPy)
            torch.cuda.synchronize(device)
        best = min(best, time.perf_counter() - started)
    return best


def torch_threads() -> int:
    import torch

    return torch.get_num_threads()


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


def fresh_process(argv: list[str], threads: int | None = None) -> tuple[float, float]:
    """Wall seconds and peak memory (MiB) of `ega-sim ARGV` run in a fresh process, as a user
    runs it (imports and setup included), with `--threads THREADS` when given. Linux: the
    peak is read from /proc."""
    import os
    import subprocess
    import sys
    import tempfile

    env = dict(os.environ)
    if threads is not None:
        env["OMP_NUM_THREADS"] = str(threads)
        argv = [*argv, "--threads", str(threads)]
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
