"""Rank auctions: auctions per second of the position-auction mechanisms and of the payment
network, alone and with exact ex-post regret, and the payment network's training cost.

Position auction: n bidders (values U[0, 1], qualities U[0.5, 1]), K slots, in the chunks
`evaluate` uses on the device; the best of `repeats` timed runs after a warm-up run.
"""

from __future__ import annotations

import tempfile

from ega_sim.bench.common import Printer, best_seconds, fresh_process, torch_threads


def _bench_world(n_bidders: int, n_slots: int, device: str = "cpu"):
    """n bidders with values U[0, 1] and qualities U[0.5, 1]; K slots, alpha_k = 1 - k / K."""
    from ega_sim.config.scenario import PositionAuctionConfig
    from ega_sim.world.build import make_world
    from ega_sim.world.distributions import Uniform

    scenario = PositionAuctionConfig(
        name=f"bench_n{n_bidders}_k{n_slots}",
        n_bidders=n_bidders,
        slot_ctr=tuple(1.0 - k / n_slots for k in range(n_slots)),
        values=Uniform(0.0, 1.0),
        quality=Uniform(0.5, 1.0),
    )
    return make_world(scenario, device)


def _chunks(world, requests: int) -> list:
    from ega_sim.evaluation import default_chunk_size
    from ega_sim.seeding import make_generator

    batch = world.sample_requests(requests, make_generator(0, "bench"))
    size = default_chunk_size(world.device)
    return [batch.slice(start, start + size) for start in range(0, requests, size)]


STEPS = ("auction", "expected clicks", "outcome measures", "misreport search", "regret")


def _run_chunks(mechanism, world, chunks, with_regret: bool, spent=None) -> None:
    """Run the mechanism on each chunk of truthful requests; with exact regret when asked (the
    STEPS: the world's expected clicks, the outcome measures with the truthful utilities, the
    misreport search and the regret). `spent`, when given, gets each step's seconds added (a
    clock read after each step, and on a GPU a synchronize)."""
    import time

    import torch

    from ega_sim.metrics.outcomes import measure_outcome
    from ega_sim.metrics.regret import MisreportSpec, misreport_utility, regret_of

    def now() -> float:
        if spent is None:
            return 0.0
        if world.device.type == "cuda":
            torch.cuda.synchronize(world.device)
        return time.perf_counter()

    spec = MisreportSpec("exact")
    for chunk in chunks:
        bids = chunk.value_per_click
        marks = [now()]
        outcome = mechanism.run(chunk, bids)
        marks.append(now())
        if with_regret:
            clicks = world.expected_clicks(chunk, outcome.allocation)
            marks.append(now())
            utility = measure_outcome(chunk, bids, outcome, clicks).utility
            marks.append(now())
            search = misreport_utility(spec, mechanism, world, chunk, bids, outcome=outcome)
            marks.append(now())
            regret_of(search.utility, utility)  # ex_post_regret, in its two steps
            marks.append(now())
        if spent is not None:
            for step, begin, end in zip(STEPS, marks, marks[1:], strict=False):
                spent[step] += end - begin


def _rate_record(benchmark: str, mechanism: str, world, requests: int, seconds: float, threads):
    """The record of one timed rate: what ran, on what, how many, how fast."""
    return {
        "benchmark": benchmark,
        "mechanism": mechanism,
        "scenario": world.config.name,
        "requests": requests,
        "threads": threads,
        "device": str(world.device),
        "seconds": seconds,
        "auctions_per_second": requests / seconds,
    }


def _auction_rates(
    printer, mechanisms, world, chunks, requests, repeats, threads, prefix="", rank_path=None
):
    """Auctions/s of each mechanism, alone and with exact regret; `rank_path`: the rank path
    in force, in words, recorded when given."""
    for mechanism, modes in mechanisms:
        for label, with_regret in modes:
            seconds = best_seconds(
                lambda m=mechanism, r=with_regret: _run_chunks(m, world, chunks, r),
                repeats,
                world.device,
            )
            record = _rate_record(prefix + label, mechanism.name, world, requests, seconds, threads)
            record["microseconds_per_request"] = 1e6 * seconds / requests
            if rank_path is not None:
                record["rank_path"] = rank_path
            config = world.config
            what = f"{mechanism.name} n={config.n_bidders} K={config.n_slots}"
            printer.rate(record, label, what, requests, "auctions", seconds)


def run_position_bench(
    printer: Printer, *, requests=100_000, n_bidders=10, n_slots=4, repeats=5, device="cpu"
) -> None:
    """At K = 1 and K = `n_slots`, on each rank path (the compiled kernel where numba imports,
    and torch's sort; mechanisms/rank_path.py): cascade/gsp without regret, beside a minimal
    batched NumPy program of the same auction (bench/numpy_baseline.py) and their ratio;
    cascade/gsp with exact regret (and at K = `n_slots` cascade/vcg, and myerson/threshold,
    which always runs on torch); then `evaluate` without regret beside a NumPy program doing
    the same draws, auction and metrics."""
    from ega_sim.mechanisms.rank_path import kernel_available

    threads = torch_threads()
    on_cpu = str(device).split(":")[0] == "cpu"
    paths = ("kernel", "torch") if kernel_available() and on_cpu else ("torch",)
    for slots in sorted({1, n_slots}):
        world = _bench_world(n_bidders, slots, device)
        chunks = _chunks(world, requests)
        baseline = _numpy_auction_seconds(chunks, slots, repeats)
        _numpy_rate(printer, "numpy baseline (no regret)", world, requests, baseline, threads)
        for path in paths:
            _position_rates(printer, world, chunks, requests, repeats, threads, path, baseline)
    _evaluate_against_numpy(printer, requests, n_bidders, n_slots, repeats, threads, device)


def _position_rates(printer, world, chunks, requests, repeats, threads, path, baseline) -> None:
    """One rank path's rates on the position bench world (run_position_bench)."""
    from ega_sim.mechanisms.rank_path import describe, rank_path
    from ega_sim.mechanisms.registry import make_mechanism

    slots = world.config.n_slots
    with rank_path(path):
        gsp = make_mechanism("cascade/gsp", world)
        modes = [(f"no regret [{path}]", False)]
        described = describe()  # e.g. "numba 0.68.1 kernel (every batch)", in the records
        rates = (world, chunks, requests, repeats, threads, "", described)
        _auction_rates(printer, [(gsp, modes)], *rates)
        ours = dict(printer.records[-1], benchmark=f"no regret [{path}]: ratio")
        _ratio(printer, ours, ours["seconds"], baseline)
        names = ["cascade/gsp"] + (["cascade/vcg"] if slots > 1 else [])
        names += ["myerson/threshold"] if slots > 1 and path == "torch" else []
        mechanisms = [
            (make_mechanism(name, world), [(f"exact regret [{path}]", True)]) for name in names
        ]
        _auction_rates(printer, mechanisms, *rates)
        _exact_regret_steps(printer, gsp, world, chunks, repeats, threads, path)


def _exact_regret_steps(printer, mechanism, world, chunks, repeats, threads, path) -> None:
    """Where "+ exact regret" spends its time: each step of `_run_chunks` timed inside the
    loop and summed over the chunks, the best of `repeats` passes (after a warm-up) per step,
    in milliseconds per 100,000 requests."""
    requests = sum(chunk.batch_size for chunk in chunks)
    best = dict.fromkeys(STEPS, float("inf"))
    for repeat in range(repeats + 1):  # the first pass warms up
        spent = dict.fromkeys(STEPS, 0.0)
        _run_chunks(mechanism, world, chunks, True, spent)
        if repeat:
            best = {step: min(best[step], spent[step]) for step in STEPS}
    per_100k = {step: 1e3 * seconds * 100_000 / requests for step, seconds in best.items()}
    record = _rate_record(
        f"exact regret steps [{path}]", mechanism.name, world, requests, sum(best.values()), threads
    )
    record["milliseconds_per_100k_requests"] = per_100k
    steps = ", ".join(f"{step} {ms:.1f}" for step, ms in per_100k.items())
    printer.emit(record, f"{'':<34} {mechanism.name} [{path}], ms per 100,000 requests: {steps}")


def _numpy_auction_seconds(chunks, n_slots: int, repeats: int) -> float:
    """Best time of the NumPy GSP on the same chunks (as NumPy arrays, made outside)."""
    from ega_sim.bench.numpy_baseline import numpy_gsp

    arrays = [(c.value_per_click.cpu().numpy(), c.quality.cpu().numpy()) for c in chunks]

    def work() -> None:
        for values, quality in arrays:
            numpy_gsp(values, quality, n_slots)

    return best_seconds(work, repeats, None)


def _numpy_rate(printer, label, world, count, seconds, threads) -> dict:
    """Print and record a NumPy baseline's rate on `world`'s auction; the record."""
    record = _rate_record(label, "numpy gsp", world, count, seconds, threads)
    config = world.config
    what = f"numpy gsp n={config.n_bidders} K={config.n_slots}"
    printer.rate(record, label, what, count, "auctions", seconds)
    return record


def _compare(printer, label, world, count, baseline_seconds, ours_seconds, threads) -> None:
    """A NumPy baseline's rate, and ega-sim's rate over it."""
    record = _numpy_rate(printer, label, world, count, baseline_seconds, threads)
    _ratio(printer, dict(record, benchmark=f"{label}: ratio"), ours_seconds, baseline_seconds)


def _ratio(printer, record: dict, ours_seconds: float, numpy_seconds: float) -> None:
    """The line of ega-sim's rate over NumPy's, `record` naming what was compared."""
    ratio = numpy_seconds / ours_seconds
    printer.emit(dict(record, ega_sim_over_numpy=ratio), f"{'':<34} ega-sim / numpy = {ratio:.2f}x")


def _evaluate_against_numpy(printer, requests, n_bidders, n_slots, repeats, threads, device):
    """`evaluate` (draws, mechanism, metrics; no regret) beside the NumPy program doing the
    same; both draw their own requests, chunk by chunk."""
    import numpy as np

    from ega_sim.bench.numpy_baseline import numpy_evaluate
    from ega_sim.evaluation import CPU_CHUNK, evaluate

    world = _bench_world(n_bidders, n_slots, device)
    seconds = best_seconds(
        lambda: evaluate("cascade/gsp", world, requests=requests, misreport="none", threads=None),
        repeats,
        world.device,
    )
    record = _rate_record("evaluate (no regret)", "cascade/gsp", world, requests, seconds, threads)
    printer.rate(
        record,
        "evaluate (no regret)",
        f"cascade/gsp n={n_bidders} K={n_slots}",
        requests,
        "requests",
        seconds,
    )
    slot_ctr = np.array(world.config.slot_ctr)
    baseline = best_seconds(
        lambda: numpy_evaluate(requests, n_bidders, slot_ctr, CPU_CHUNK, 0), repeats, None
    )
    _compare(printer, "numpy evaluate (no regret)", world, requests, baseline, seconds, threads)


MEMORY_REQUESTS = (100_000, 1_000_000, 4_000_000)


def run_memory_bench(printer: Printer, *, n_bidders=10, n_slots=4) -> None:
    """Peak memory and wall time of `ega-sim evaluate --mechanism cascade/gsp --misreport
    exact` on the position bench auction in a fresh process, at 1e5, 1e6 and 4e6 requests:
    flat in --requests (evaluate draws in blocks and spills its pair rows to a file)."""
    slot_ctr = ", ".join(repr(1.0 - k / n_slots) for k in range(n_slots))
    scenario = (
        f'name = "bench_n{n_bidders}_k{n_slots}"\nkind = "position_auction"\n'
        f"n_bidders = {n_bidders}\nslot_ctr = [{slot_ctr}]\n"
        '[values]\ndist = "uniform"\nlow = 0.0\nhigh = 1.0\n'
        '[quality]\ndist = "uniform"\nlow = 0.5\nhigh = 1.0\n'
    )
    threads = torch_threads()
    with tempfile.TemporaryDirectory() as scratch:
        path = f"{scratch}/bench.toml"
        with open(path, "w", encoding="utf-8") as handle:
            handle.write(scenario)
        for requests in MEMORY_REQUESTS:
            argv = ["evaluate", "--scenario", path, "--mechanism", "cascade/gsp"]
            argv += ["--misreport", "exact", "--requests", str(requests)]
            seconds, peak_mib = fresh_process(argv, threads)
            record = {
                "benchmark": "evaluate memory",
                "mechanism": "cascade/gsp",
                "scenario": f"bench_n{n_bidders}_k{n_slots}",
                "requests": requests,
                "seconds": seconds,
                "peak_memory_mib": peak_mib,
                "threads": threads,
            }
            what = f"cascade/gsp n={n_bidders} K={n_slots}"
            printer.memory(record, "evaluate, exact regret", what, requests, "requests")


def run_paynet_bench(
    printer: Printer,
    *,
    requests=100_000,
    n_bidders=10,
    n_slots=4,
    steps=2_000,
    checkpoint=None,
    repeats=5,
) -> None:
    """The payment network's cost. Inference: auctions/s of cascade/paynet on the position
    bench auction, alone and with exact regret (16 bids per interval), next to cascade/vcg
    (an untrained network of the default shape costs what a trained one does). Training: wall
    time and peak memory of `ega-sim train --mechanism cascade/paynet` in a fresh process on
    textbook and three_bidders_two_slots, and on feed_small from a cascade `checkpoint`."""
    from ega_sim.mechanisms.registry import make_mechanism, paynet_mechanism
    from ega_sim.payment.network import PaymentNetwork
    from ega_sim.payment.rank_rule import rank_feature_count
    from ega_sim.seeding import make_generator

    world = _bench_world(n_bidders, n_slots)
    network = PaymentNetwork(rank_feature_count(n_slots), generator=make_generator(0, "bench"))
    modes = [("no regret", False), ("exact regret", True)]
    mechanisms = [
        (make_mechanism("cascade/vcg", world), modes),
        (paynet_mechanism("cascade", world, network), modes),
    ]
    threads = torch_threads()
    chunks = _chunks(world, requests)
    _auction_rates(
        printer, mechanisms, world, chunks, requests, repeats, threads, "paynet inference, "
    )
    runs = [("textbook", None), ("three_bidders_two_slots", None)]
    runs += [("feed_small", checkpoint)] if checkpoint is not None else []

    for scenario, reuse in runs:
        with tempfile.TemporaryDirectory() as scratch:
            argv = ["train", "--scenario", scenario, "--mechanism", "cascade/paynet"]
            argv += ["--steps", str(steps), "--out", f"{scratch}/paynet"]
            argv += ["--from", reuse] if reuse is not None else []
            seconds, peak_mib = fresh_process(argv, threads)
        record = {
            "benchmark": "paynet training",
            "scenario": scenario,
            "steps": steps,
            "seconds": seconds,
            "peak_memory_mib": peak_mib,
            "threads": threads,
        }
        printer.memory(record, "train cascade/paynet", scenario, steps, "steps")
