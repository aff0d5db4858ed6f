"""The `ega-sim` command line: run experiments, evaluate, train and benchmark mechanisms."""

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
  ega-sim evaluate --scenario feed_small --mechanism cascade/gsp cascade/vcg \\
      --checkpoint runs/feed_small_cascade --misreport grid
"""

SIMULATE_LOGS_EXAMPLES = """examples:
  ega-sim simulate-logs --scenario feed_small --requests 50000 --out runs/feed_small_logs
  ega-sim simulate-logs --scenario feed_medium --requests 100000 --seed 1 --out runs/medium_logs
"""

TRAIN_EXAMPLES = """examples:
  ega-sim train --scenario feed_small --mechanism cascade/gsp --out runs/feed_small_cascade
  ega-sim train --scenario feed_small --mechanism cascade/vcg --logs runs/feed_small_logs \\
      --out runs/feed_small_cascade --epochs 10
  ega-sim train --scenario textbook --mechanism cascade/paynet --out runs/textbook_paynet
  ega-sim train --scenario feed_small --mechanism ega/paynet --from runs/feed_small_ega \\
      --out runs/feed_small_ega_paynet
"""

MISREPORT_EXAMPLES = """examples:
  ega-sim misreport --scenario textbook --out reports/misreport
  ega-sim misreport --scenario textbook --mechanism cascade/gsp cascade/vcg cascade/first \\
      --ppo-steps 4096 --out reports/misreport
  ega-sim misreport --scenario feed_small --mechanism oracle_cascade/gsp oracle_cascade/vcg \\
      --requests 5000 --out reports/misreport_feed
"""

BENCH_EXAMPLES = """examples:
  ega-sim bench                          # position auctions and feed_small, 1 thread
  ega-sim bench --suite position --requests 1000000 --threads 2
  ega-sim bench --suite feed --checkpoint runs/feed_small_cascade
  ega-sim bench --suite logs             # simulate-logs, 100,000 requests of feed_medium
  ega-sim bench --suite ega --checkpoint runs/feed_small_ega   # ega/gsp with 16 and 64 beams
  ega-sim bench --suite paynet --threads 2 --checkpoint runs/feed_small_cascade
  ega-sim bench --suite envs             # AdAuction-v0: single, SyncVectorEnv, native vector
"""


RUN_EXAMPLES = """examples:
  ega-sim run experiments/quickstart.toml                 # report in reports/quickstart/
  ega-sim run experiments/textbook.toml --quick           # smoke run: reports/textbook-quick/
  ega-sim run experiments/paper_table2.toml --workers 4 --artifacts runs/trained
  ega-sim run experiments/paper_table3.toml --workers 4 --artifacts runs/trained
  ega-sim run experiments/paper_figure5.toml --executor ray --address ray://head:10001
"""

REPORT_EXAMPLES = """examples:
  ega-sim report reports/quickstart      # redraw report.md, report.html and the figures
"""


def _add_run(subparsers) -> None:
    from ega_sim.experiments.executors import EXECUTORS

    parser = subparsers.add_parser(
        "run",
        help="run an experiment file: train, evaluate every cell, write tables and a report",
        description="Run an experiment (a TOML file, see experiments/README.md): its cells "
        "(scenario x mechanism x sweep point x seed) run as independent tasks after the "
        "trained parts they need; each cell's result is written as soon as it finishes and "
        "skipped when the command is repeated, so an interrupted run resumes. Writes "
        "results.csv (tidy; and .parquet with pyarrow), curves.csv, regret.csv, report.md, "
        "report.html and figures/ into the report folder.",
        epilog=RUN_EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("experiment", help="experiment file (TOML)")
    parser.add_argument(
        "--executor",
        choices=EXECUTORS,
        default="local",
        help="local worker processes (default) or Ray tasks (pip install 'ega-sim[distributed]')",
    )
    parser.add_argument("--address", default=None, help="ray: address of an existing cluster")
    parser.add_argument(
        "--workers", type=int, default=None, help="tasks at a time (default: CPU cores)"
    )
    parser.add_argument("--threads", type=int, default=1, help="torch threads per task (default 1)")
    parser.add_argument(
        "--quick", action="store_true", help="smoke run: few requests, tiny training"
    )
    parser.add_argument(
        "--out", default=None, help="report folder (default reports/<experiment>[-quick]/)"
    )
    parser.add_argument(
        "--artifacts",
        default=None,
        help="folder of trained parts, shareable between experiments (default OUT/artifacts)",
    )
    parser.set_defaults(handler=_run_run)


def _run_run(args: argparse.Namespace) -> int:
    from ega_sim.experiments import load_experiment, quick_spec, run_experiment
    from ega_sim.experiments.report import report_lines

    spec = load_experiment(args.experiment)
    if args.quick:
        spec = quick_spec(spec)
    if args.address is not None and args.executor != "ray":
        raise ValueError("--address: only with --executor ray")
    summary = run_experiment(
        spec,
        args.out,
        executor=args.executor,
        workers=args.workers,
        threads=args.threads,
        address=args.address,
        artifacts=args.artifacts,
    )
    print(
        f"{spec.name}: {summary.cells} cells, {summary.reused} finished before, "
        f"{summary.computed} computed now, {len(summary.failed)} failed; "
        f"{summary.seconds:.0f} s"
    )
    if summary.failed:
        for line in summary.failed:
            print(f"  failed: {line}", file=sys.stderr)
        print(
            f"rerun the same command to retry them; finished cells are kept in {summary.out}",
            file=sys.stderr,
        )
        return 1
    for line in report_lines(summary.out):
        print(line)
    print(f"report: {summary.out / 'report.html'}")
    return 0


def _add_report(subparsers) -> None:
    parser = subparsers.add_parser(
        "report",
        help="redraw an experiment's tables and report from its stored results",
        description="Rebuild results.csv, the figures, report.md and report.html of a report "
        "folder from its finished cells (OUT/cells/*.json), without rerunning anything.",
        epilog=REPORT_EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("folder", help="report folder written by `ega-sim run`")
    parser.set_defaults(handler=_run_report)


def _run_report(args: argparse.Namespace) -> int:
    from pathlib import Path

    from ega_sim.experiments import write_outputs

    for path in write_outputs(Path(args.folder)):
        print(path)
    return 0


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
    parser.add_argument(
        "--checkpoint", default=None, help="folder of a trained mechanism (see `ega-sim train`)"
    )
    parser.add_argument("--json", action="store_true", help="print JSON Lines, one per mechanism")
    parser.add_argument("--out", default=None, help="also write the JSON Lines to this file")
    parser.set_defaults(handler=_run_evaluate)


def _run_evaluate(args: argparse.Namespace) -> int:
    from ega_sim.atomic import write_text_atomic
    from ega_sim.config.scenario import load_scenario
    from ega_sim.evaluation import evaluate, resolve_device
    from ega_sim.mechanisms.registry import make_mechanism, mechanism_names
    from ega_sim.metrics.regret import MisreportSpec
    from ega_sim.report_table import format_table, to_json_line

    scenario = load_scenario(args.scenario)
    device = resolve_device(args.device)
    if args.mechanism:
        names = args.mechanism
    elif scenario.kind == "feed_market":
        names = ["cascade/gsp", "cascade/vcg"]
    else:
        names = mechanism_names(scenario, learned=False)
    mechanisms = [  # built first: a bad name or a missing checkpoint fails before any work
        make_mechanism(
            name,
            scenario,
            checkpoint=_checkpoint_for(name, scenario, args.checkpoint),
            device=device,
        )
        for name in names
    ]
    spec = MisreportSpec(args.misreport, args.dense_points, args.gamma_max)
    results = []
    for mechanism in mechanisms:
        result = evaluate(
            mechanism,
            scenario,
            requests=args.requests,
            seed=args.seed,
            misreport=spec,
            device=device,
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


def _checkpoint_for(name: str, scenario, checkpoint: str | None) -> str | None:
    """Only learned mechanisms read a checkpoint (a payment network, or a feed market's learned
    allocator); the others ignore --checkpoint."""
    feed = scenario.kind == "feed_market"
    learned = name.endswith("/paynet") or (feed and name.split("/")[0] in ("cascade", "ega", "gr"))
    return checkpoint if learned else None


def _add_simulate_logs(subparsers) -> None:
    parser = subparsers.add_parser(
        "simulate-logs",
        help="run the logging policy on a feed market and write the logs",
        description="Simulate a feed market's logged data: the logging policy (a cascade with "
        "exploration of orderings and creatives) shows lists to sampled requests and the "
        "ground-truth user model clicks. Writes NPZ files and meta.json to --out.",
        epilog=SIMULATE_LOGS_EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--scenario", required=True, help="feed_market scenario file or name")
    parser.add_argument("--requests", type=int, default=50_000, help="requests (default 50000)")
    parser.add_argument("--seed", type=int, default=0, help="run seed (default 0)")
    parser.add_argument(
        "--exploration",
        type=float,
        default=0.2,
        help="share of requests shown in a random order (default 0.2)",
    )
    parser.add_argument("--out", required=True, help="log folder to write")
    parser.set_defaults(handler=_run_simulate_logs)


def _run_simulate_logs(args: argparse.Namespace) -> int:
    from ega_sim.config.scenario import load_scenario
    from ega_sim.logs.simulate import simulate_logs

    meta = simulate_logs(
        load_scenario(args.scenario),
        args.requests,
        args.out,
        seed=args.seed,
        exploration=args.exploration,
        progress=sys.stderr.isatty(),
    )
    print(
        f"wrote {meta['requests']} logged requests of {meta['scenario']} to {args.out} "
        f"(POI CTR {meta['poi_ctr']:.4f}, {meta['seconds']:.1f} s)"
    )
    return 0


def _add_train(subparsers) -> None:
    parser = subparsers.add_parser(
        "train",
        help="train what a learned mechanism needs, from logs",
        description="Train a learned mechanism's models from logs and write a checkpoint folder "
        "for `ega-sim evaluate --checkpoint`. The feed-market cascade trains its position-aware "
        "pCTR model; ega and gr the EGA-V2 pipeline; ALLOCATOR/paynet a payment network on top "
        "of the allocator (trained first unless --from names a trained one) by ex-post regret "
        "minimization. Without --logs, logs are first simulated into OUT/logs.",
        epilog=TRAIN_EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--scenario", required=True, help="scenario file or name")
    parser.add_argument("--mechanism", required=True, metavar="ALLOCATOR/PAYMENT")
    parser.add_argument("--out", required=True, help="checkpoint folder to write")
    parser.add_argument("--logs", default=None, help="log folder (default: simulate into OUT/logs)")
    parser.add_argument(
        "--log-requests",
        type=int,
        default=50_000,
        help="requests to simulate when --logs is not given (default 50000)",
    )
    parser.add_argument("--seed", type=int, default=0, help="run seed (default 0)")
    parser.add_argument("--epochs", type=int, default=None, help="training epochs")
    parser.add_argument(
        "--config",
        default=None,
        help="ega/gr: a TOML file of EGAConfig keys (ablations: mtp = false, single_stage = "
        'true, [bidding] code_bid = "mean", alpha, beta; model sizes; beams); */paynet: a TOML '
        "file of PaynetTrainConfig keys (steps, batch_size, lambda_init, rho_growth, ...)",
    )
    parser.add_argument(
        "--from",
        dest="from_dir",
        default=None,
        help="*/paynet on a feed market: a trained allocator's checkpoint folder to reuse",
    )
    parser.add_argument("--steps", type=int, default=None, help="*/paynet: training steps")
    parser.set_defaults(handler=_run_train)


def _run_train(args: argparse.Namespace) -> int:
    from pathlib import Path

    from ega_sim.config.scenario import load_scenario
    from ega_sim.mechanisms.registry import mechanism_names
    from ega_sim.training import train_mechanism

    scenario = load_scenario(args.scenario)
    if args.mechanism not in mechanism_names(scenario):
        raise ValueError(
            f"mechanism: expected one of {', '.join(mechanism_names(scenario))}; "
            f"got {args.mechanism!r}"
        )
    report = train_mechanism(
        scenario,
        args.mechanism,
        Path(args.out),
        logs=args.logs,
        log_requests=args.log_requests,
        seed=args.seed,
        epochs=args.epochs,
        progress=sys.stderr.isatty(),
        config_path=args.config,
        from_dir=args.from_dir,
        steps=args.steps,
    )
    print(report)
    return 0


def _add_misreport(subparsers) -> None:
    parser = subparsers.add_parser(
        "misreport",
        help="which misreport pays: utility against bid multiplier, bandit and PPO bidders",
        description="For each mechanism, against truthful opponents: the focal advertiser's "
        "expected utility per request against its bid multiplier (0.05 .. 2.0), the best "
        "multiplier, the one a UCB bandit converges to and (--ppo-steps, needs "
        "stable-baselines3) the one a PPO agent bids, with their gains over truthful bidding. "
        "Writes misreport.csv (tidy) and misreport.png to --out.",
        epilog=MISREPORT_EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--scenario", required=True, help="scenario file or name")
    parser.add_argument(
        "--mechanism",
        nargs="+",
        default=None,
        metavar="ALLOCATOR/PAYMENT",
        help="default: cascade/gsp cascade/vcg cascade/first (position auctions)",
    )
    parser.add_argument("--checkpoint", default=None, help="folder of a trained mechanism")
    parser.add_argument("--requests", type=int, default=20_000, help="requests per curve point")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--bandit-steps", type=int, default=300, help="0 skips the bandit")
    parser.add_argument("--ppo-steps", type=int, default=0, help="PPO training steps (0: none)")
    parser.add_argument("--out", required=True, help="folder for misreport.csv and .png")
    parser.set_defaults(handler=_run_misreport)


def _run_misreport(args: argparse.Namespace) -> int:
    from ega_sim.config.scenario import load_scenario
    from ega_sim.envs.misreport import run_misreport_study, summary_lines, write_study

    for key in ("requests", "bandit_steps", "ppo_steps"):
        if getattr(args, key) < (1 if key == "requests" else 0):
            raise ValueError(f"--{key.replace('_', '-')}: got {getattr(args, key)}")
    scenario = load_scenario(args.scenario)
    names = args.mechanism or ["cascade/gsp", "cascade/vcg", "cascade/first"]
    table = run_misreport_study(
        scenario,
        names,
        checkpoint=args.checkpoint,
        requests=args.requests,
        seed=args.seed,
        bandit_steps=args.bandit_steps,
        ppo_steps=args.ppo_steps,
    )
    for line in summary_lines(table):
        print(line)
    for path in write_study(table, args.out):
        print(f"wrote {path}")
    return 0


def _add_bench(subparsers) -> None:
    parser = subparsers.add_parser(
        "bench",
        help="measure auctions per second of the batched mechanisms",
        description="Suites: 'position' (auctions/s of cascade/gsp, cascade/vcg and "
        "myerson/threshold on a position auction, with and without exact regret), 'feed' "
        "(requests/s of evaluating the learned cascade/gsp on feed_small, without regret and "
        "with grid regret), 'logs' (wall time and peak memory of simulate-logs on feed_medium), "
        "'ega' (requests/s of ega/gsp with 16 and 64 beams, from --checkpoint), 'paynet' "
        "(inference cost of cascade/paynet against cascade/vcg; wall time and peak memory of "
        "training it on textbook, three_bidders_two_slots and, from a --checkpoint of the "
        "feed cascade, feed_small), 'envs' (env steps/s of AdAuction-v0: single env, "
        "SyncVectorEnv x64, native vector env x64 and x1024, on textbook and feed_small). "
        "Prints one line per measurement.",
        epilog=BENCH_EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--suite",
        choices=("position", "feed", "logs", "ega", "paynet", "envs", "default", "all"),
        default="default",
        help="default: position and feed; all adds logs",
    )
    parser.add_argument("--requests", type=int, default=100_000, help="position suite requests")
    parser.add_argument("--feed-requests", type=int, default=20_000, help="feed suite requests")
    parser.add_argument(
        "--checkpoint", default=None, help="feed: a cascade checkpoint; ega: an ega checkpoint"
    )
    parser.add_argument("--bidders", type=int, default=10)
    parser.add_argument("--slots", type=int, default=4)
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads (default 1)")
    parser.add_argument("--repeats", type=int, default=5, help="timed repeats; the best is kept")
    parser.add_argument("--device", default="cpu")
    parser.add_argument(
        "--steps", type=int, default=2000, help="paynet: training steps (default 2000)"
    )
    parser.add_argument("--json", action="store_true", help="print JSON Lines")
    parser.set_defaults(handler=_run_bench)


def _run_bench(args: argparse.Namespace) -> int:
    from ega_sim.bench import run_feed_bench, run_logs_bench, run_position_auction_bench

    for key in ("threads", "repeats", "requests", "feed_requests", "bidders", "slots", "steps"):
        if getattr(args, key) < 1:
            raise ValueError(
                f"--{key.replace('_', '-')}: expected an integer >= 1, got {getattr(args, key)}"
            )

    if args.suite in ("position", "default", "all"):
        run_position_auction_bench(
            requests=args.requests,
            n_bidders=args.bidders,
            n_slots=args.slots,
            threads=args.threads,
            repeats=args.repeats,
            device=args.device,
            as_json=args.json,
        )
    if args.suite in ("feed", "default", "all"):
        run_feed_bench(
            requests=args.feed_requests,
            checkpoint=args.checkpoint,
            threads=args.threads,
            device=args.device,
            as_json=args.json,
        )
    if args.suite in ("logs", "all"):
        run_logs_bench(as_json=args.json)
    if args.suite == "ega":
        if args.checkpoint is None:
            raise ValueError(
                "bench --suite ega: expected --checkpoint DIR "
                "(made by `ega-sim train --mechanism ega/gsp`)"
            )
        from ega_sim.bench import run_generative_bench

        run_generative_bench(checkpoint=args.checkpoint, threads=args.threads, as_json=args.json)
    if args.suite == "envs":
        from ega_sim.bench import run_envs_bench

        run_envs_bench(checkpoint=args.checkpoint, threads=args.threads, as_json=args.json)
    if args.suite == "paynet":
        from ega_sim.bench import run_paynet_bench

        run_paynet_bench(
            requests=args.requests,
            n_bidders=args.bidders,
            n_slots=args.slots,
            steps=args.steps,
            checkpoint=args.checkpoint,
            threads=args.threads,
            repeats=args.repeats,
            as_json=args.json,
        )
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="ega-sim",
        description="Simulate ad auctions and measure mechanisms (GSP, VCG, Myerson, EGA-V2).",
        epilog="examples:\n  ega-sim run experiments/quickstart.toml\n"
        "  ega-sim evaluate --scenario textbook\n\n"
        "Run 'ega-sim COMMAND --help' for a command's options and examples.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    from ega_sim.provenance import package_version

    parser.add_argument("--version", action="version", version=f"ega-sim {package_version()}")
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    _add_run(subparsers)
    _add_report(subparsers)
    _add_evaluate(subparsers)
    _add_simulate_logs(subparsers)
    _add_train(subparsers)
    _add_misreport(subparsers)
    _add_bench(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return args.handler(args)
    except BrokenPipeError:  # output piped into `head` and the like: stop quietly
        sys.stderr.close()
        return 0
    except (ConfigError, ValueError, OSError) as error:
        print(f"ega-sim {args.command}: error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
