"""Run a command and report its peak memory summed over every process it starts (Linux).

`/usr/bin/time -v` reports the largest single process; an experiment's worker processes run
side by side, so what a machine needs is the peak of their sum. This samples the resident set
size (VmRSS in /proc/PID/status) of the command and all its descendants every --interval
seconds and prints, at the end, the peak of the sum and the largest single process.

example:
  python scripts/peak_memory.py -- ega-sim run experiments/quickstart.toml
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path


def children_of() -> dict[int, list[int]]:
    """Each live process's children, from /proc/PID/stat (parent pid is its 4th field)."""
    tree: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:  # the process ended while we looked
            continue
        tree.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    return tree


def resident_bytes(pid: int) -> int:
    """VmRSS of one process in bytes (0 when it has ended)."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def tree_resident_bytes(root: int) -> list[int]:
    """Resident bytes of `root` and each of its descendants."""
    tree, stack, sizes = children_of(), [root], []
    while stack:
        pid = stack.pop()
        sizes.append(resident_bytes(pid))
        stack.extend(tree.get(pid, []))
    return sizes


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--interval", type=float, default=0.5, help="seconds between samples")
    parser.add_argument("command", nargs=argparse.REMAINDER, help="the command, after --")
    args = parser.parse_args(argv)
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    if not command:
        parser.error("command: expected a command to run after --")
    if not args.interval > 0:
        parser.error(f"--interval: expected seconds > 0, got {args.interval}")
    process = subprocess.Popen(command)
    peak_sum = peak_one = 0
    while process.poll() is None:
        sizes = tree_resident_bytes(process.pid)
        peak_sum, peak_one = max(peak_sum, sum(sizes)), max(peak_one, max(sizes))
        time.sleep(args.interval)
    gib = 1024**3
    print(
        f"peak memory: {peak_sum / gib:.2f} GiB summed over processes, largest process "
        f"{peak_one / gib:.2f} GiB (sampled every {args.interval} s)",
        file=sys.stderr,
    )
    return process.returncode


if __name__ == "__main__":
    sys.exit(main())
