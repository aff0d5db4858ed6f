"""The `ega-sim` command line: evaluate mechanisms and benchmark them."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from ega_sim.config.errors import ConfigError

EVALUATE_EXAMPLES = """examples:
  ega-sim evaluate --scenario textbook
  ega-sim evaluate --scenario envs/single_slot.toml --mechanism cascade/vcg myerson/threshold \\
      --requests 100000 --seed 3 --json
  ega-sim evaluate --scenario lognormal_heavy_tail --mechanism cascade/gsp --misreport dense
"""

BENCH_EXAMPLES = """examples:
  ega-sim bench                          # n = 10 bidders, K = 4 slots, 100,000 requests, 1 thread
  ega-sim bench --requests 1000000 --threads 2
"""


def _add_evaluate(subparsers) -> None:
    from ega_sim.metrics.regret import MISREPORT_METHODS

    parser = subparsers.add_parser(
        "evaluate",
        help="measure revenue, welfare and incentive compatibility of mechanisms on a scenario",
        description="Run mechanisms on truthful bids for a scenario and measure per-request "
        "revenue, welfare, utility, clicks and ex-post regret (against the ground truth).",
        epilog=EVALUATE_EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--scenario", required=True, help="scenario file path or shipped name")
    parser.add_argument(
        "--mechanism",
        nargs="+",
        default=None,
        metavar="ALLOCATOR/PAYMENT",
        help="mechanisms to evaluate (default: every mechanism that applies to the scenario)",
    )
    parser.add_argument("--requests", type=int, default=10_000, help="requests (default 10000)")
    parser.add_argument("--seed", type=int, default=0, help="run seed (default 0)")
    parser.add_argument(
        "--misreport",
        choices=MISREPORT_METHODS,
        default="exact",
        help="how misreports are searched for regret (default exact; none skips regret)",
    )
    parser.add_argument("--dense-points", type=int, default=64, help="bids of the dense search")
    parser.add_argument(
        "--gamma-max", type=float, default=2.0, help="dense search upper multiplier"
    )
    parser.add_argument("--device", default="cpu", help="cpu or cuda (default cpu)")
    parser.add_argument("--json", action="store_true", help="print JSON Lines, one per mechanism")
    parser.add_argument("--out", default=None, help="also write the JSON Lines to this file")
    parser.set_defaults(handler=_run_evaluate)


def _run_evaluate(args: argparse.Namespace) -> int:
    from ega_sim.atomic import write_text_atomic
    from ega_sim.config.scenario import load_scenario
    from ega_sim.evaluation import evaluate
    from ega_sim.mechanisms.registry import make_mechanism, mechanism_names
    from ega_sim.metrics.regret import MisreportSpec
    from ega_sim.report_table import format_table, to_json_line

    scenario = load_scenario(args.scenario)
    names = args.mechanism or mechanism_names()
    mechanisms = [make_mechanism(name, scenario) for name in names]  # fail fast on a bad name
    spec = MisreportSpec(args.misreport, args.dense_points, args.gamma_max)
    results = []
    for mechanism in mechanisms:
        result = evaluate(
            mechanism,
            scenario,
            requests=args.requests,
            seed=args.seed,
            misreport=spec,
            device=args.device,
            progress=sys.stderr.isatty(),
        )
        results.append(result)
        if args.json:
            print(to_json_line(result), flush=True)
    if not args.json:
        print(format_table(results))
    if args.out:
        write_text_atomic(args.out, "".join(to_json_line(r) + "\n" for r in results))
    return 0


def _add_bench(subparsers) -> None:
    parser = subparsers.add_parser(
        "bench",
        help="measure auctions per second of the batched mechanisms",
        description="Throughput of cascade/gsp and cascade/vcg on a position auction, with and "
        "without exact regret. Prints one line per measurement.",
        epilog=BENCH_EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--requests", type=int, default=100_000)
    parser.add_argument("--bidders", type=int, default=10)
    parser.add_argument("--slots", type=int, default=4)
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads (default 1)")
    parser.add_argument("--repeats", type=int, default=5, help="timed repeats; the best is kept")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--json", action="store_true", help="print JSON Lines")
    parser.set_defaults(handler=_run_bench)


def _run_bench(args: argparse.Namespace) -> int:
    from ega_sim.bench import run_position_auction_bench

    run_position_auction_bench(
        requests=args.requests,
        n_bidders=args.bidders,
        n_slots=args.slots,
        threads=args.threads,
        repeats=args.repeats,
        device=args.device,
        as_json=args.json,
    )
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="ega-sim",
        description="Simulate ad auctions and measure mechanisms (GSP, VCG, Myerson, EGA-V2).",
        epilog="example:\n  ega-sim evaluate --scenario textbook\n\n"
        "Run 'ega-sim COMMAND --help' for a command's options and examples.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    from ega_sim.provenance import package_version

    parser.add_argument("--version", action="version", version=f"ega-sim {package_version()}")
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    _add_evaluate(subparsers)
    _add_bench(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return args.handler(args)
    except (ConfigError, ValueError) as error:
        print(f"ega-sim {args.command}: error: {error}", file=sys.stderr)
        return 2
    except BrokenPipeError:  # output piped into `head` and the like: stop quietly
        sys.stderr.close()
        return 0


if __name__ == "__main__":
    sys.exit(main())
