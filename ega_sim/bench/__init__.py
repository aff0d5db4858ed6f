"""`ega-sim bench`: throughput of the batched mechanisms, printed as figures (not a test).

Each suite measures, prints one line (or one JSON record) per measurement and returns nothing;
the Printer keeps the records. Suites: auctions.py (position, memory, paynet), feed.py (feed, logs),
generative.py (ega), envs.py (envs).
"""

from __future__ import annotations

SUITES = ("position", "memory", "feed", "logs", "ega", "paynet", "envs")


def run_suites(args) -> list[dict]:
    """The suites `ega-sim bench` asks for (its parsed arguments), with `args.threads` torch
    threads (restored afterwards); returns every record printed. The suites call the library
    with threads=None: the count set here."""
    from ega_sim.bench.auctions import run_memory_bench, run_paynet_bench, run_position_bench
    from ega_sim.bench.common import Printer
    from ega_sim.bench.envs import run_envs_bench
    from ega_sim.bench.feed import run_feed_bench, run_logs_bench
    from ega_sim.bench.generative import run_generative_bench
    from ega_sim.threads import using_threads
    from ega_sim.world.build import resolve_device

    for key in ("threads", "repeats", "requests", "feed_requests", "bidders", "slots", "steps"):
        if getattr(args, key) < 1:
            flag = key.replace("_", "-")
            raise ValueError(f"--{flag}: expected an integer >= 1, got {getattr(args, key)}")
    resolve_device(args.device)  # fail before any work when the device is missing
    printer = Printer(args.json)
    suites = {"default": ("position", "feed"), "all": ("position", "feed", "logs")}
    chosen = suites.get(args.suite, (args.suite,))
    position = {"requests": args.requests, "n_bidders": args.bidders, "n_slots": args.slots}
    runs = {
        "position": lambda: run_position_bench(
            printer, repeats=args.repeats, device=args.device, **position
        ),
        "memory": lambda: run_memory_bench(printer, n_bidders=args.bidders, n_slots=args.slots),
        "feed": lambda: run_feed_bench(
            printer, requests=args.feed_requests, checkpoint=args.checkpoint, device=args.device
        ),
        "logs": lambda: run_logs_bench(printer),
        "ega": lambda: run_generative_bench(
            printer, checkpoint=args.checkpoint, device=args.device
        ),
        "paynet": lambda: run_paynet_bench(
            printer, steps=args.steps, checkpoint=args.checkpoint, repeats=args.repeats, **position
        ),
        "envs": lambda: run_envs_bench(printer, checkpoint=args.checkpoint),
    }
    with using_threads(args.threads, "--threads"):
        for suite in chosen:
            runs[suite]()
    return printer.records
