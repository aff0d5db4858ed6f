"""The `ega-sim` command line, a table of commands: each a short handler that builds the world
and calls the library, registered with `@command(name, *options)`, its docstring its help
(first line), description and examples. Options several commands share are declared once."""

from __future__ import annotations

import argparse
import inspect
import json
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

from ega_sim.bench import SUITES, run_suites
from ega_sim.config.errors import ConfigError
from ega_sim.experiments.executors import EXECUTORS
from ega_sim.mechanisms.rank_path import current_mode
from ega_sim.metrics.regret import MISREPORT_METHODS, REGRET_BIDDERS
from ega_sim.threads import using_threads

Handler = Callable[[argparse.Namespace], int]


@dataclass(frozen=True)
class Option:
    """One command-line option: its flags and add_argument settings."""

    flags: tuple[str, ...]
    settings: dict

    def but(self, **changes) -> Option:
        """The same option with some settings changed (a command's own default or help)."""
        return replace(self, settings={**self.settings, **changes})


def opt(*flags: str, **settings) -> Option:
    return Option(flags, settings)  # written as add_argument is


COMMANDS: dict[str, tuple[tuple[Option, ...], Handler]] = {}


def command(name: str, *options: Option) -> Callable[[Handler], Handler]:
    """Register a handler as the subcommand `name`."""

    def register(handler: Handler) -> Handler:
        COMMANDS[name] = (options, handler)
        return handler

    return register


SCENARIO = opt("--scenario", required=True, help="scenario file path or shipped name")
MECHANISMS = opt("--mechanism", nargs="+", metavar="ALLOCATOR/PAYMENT", help="mechanisms")
REQUESTS = opt("--requests", type=int, help="requests")
SEED = opt("--seed", type=int, default=0, help="run seed")
DEVICE = opt("--device", default="cpu", help="cpu or cuda")
CHECKPOINT = opt("--checkpoint", help="folder of a trained mechanism (see `ega-sim train`)")
THREADS = opt(  # applied to the whole command by main()
    "--threads", type=int, default=1, help="torch CPU threads; 1 never oversubscribes busy cores"
)
JSON = opt("--json", action="store_true", help="print JSON Lines, one per mechanism")
OUT = opt("--out", required=True)


@command(
    "run",
    opt("experiment", help="experiment file (TOML)"),
    opt("--executor", choices=EXECUTORS, default="local", help="local processes or Ray tasks"),
    opt("--address", help="ray: address of an existing cluster"),
    opt("--workers", type=int, help="tasks at a time (default: CPU cores / threads)"),
    THREADS.but(help="torch threads per task"),
    opt("--quick", action="store_true", help="smoke run: few requests, tiny training"),
    opt("--out", help="report folder (default reports/<experiment>[-quick]/)"),
    opt("--artifacts", help="folder of trained parts, to share (default OUT/artifacts)"),
)
def _run(args: argparse.Namespace) -> int:
    """run an experiment file: train, evaluate every cell, write tables and a report

    Run an experiment (a TOML file, see experiments/README.md): its cells (scenario x mechanism
    x sweep point x seed) run as independent tasks after the trained parts they need, each
    written as it finishes and skipped when the command is repeated, so an interrupted run
    resumes. Writes results.csv, curves.csv, regret.csv, report.md, report.html and figures/
    into the report folder. Ray: pip install 'ega-sim[distributed]'.

    examples:
      ega-sim run experiments/quickstart.toml                 # report in reports/quickstart/
      ega-sim run experiments/textbook.toml --quick           # smoke run: reports/textbook-quick/
      ega-sim run experiments/paper_table2.toml --workers 4 --artifacts runs/trained
      ega-sim run experiments/paper_figure5.toml --executor ray --address ray://head:10001
    """
    from ega_sim.equilibrium.experiment import is_equilibrium_experiment
    from ega_sim.experiments import load_experiment, quick_spec, run_experiment
    from ega_sim.report import report_lines

    if is_equilibrium_experiment(args.experiment):
        return _run_equilibrium_file(args)
    spec = load_experiment(args.experiment)
    if args.address is not None and args.executor != "ray":
        raise ValueError("--address: only with --executor ray")
    settings = ("out", "executor", "workers", "threads", "address", "artifacts")
    spec = quick_spec(spec) if args.quick else spec
    summary = run_experiment(spec, **{key: getattr(args, key) for key in settings})
    print(summary.counts_line())
    if summary.failed:
        print("\n".join(summary.failure_lines()), file=sys.stderr)
        return 1
    print("\n".join([*report_lines(summary.out), f"report: {summary.out / 'report.html'}"]))
    return 0


def _run_equilibrium_file(args: argparse.Namespace) -> int:
    """`ega-sim run` of a kind = "equilibrium" file: its studies, one after the other, into
    OUT (default reports/<file name>/), as `ega-sim equilibrium --experiment FILE` runs them."""
    from ega_sim.equilibrium.experiment import load_experiment

    for flag, given in (
        ("--executor", args.executor != "local"),
        ("--address", args.address is not None),
        ("--workers", args.workers is not None),
        ("--artifacts", args.artifacts is not None),
        ("--quick", args.quick),
    ):
        if given:
            raise ValueError(
                f"{flag}: not for an equilibrium experiment ({args.experiment}), whose studies "
                "run one after the other in this process; for a short run use `ega-sim "
                "equilibrium --scenario S --steps N`"
            )
    plan = load_experiment(args.experiment)
    out = args.out or Path("reports") / Path(args.experiment).stem
    return _run_equilibrium(plan, out, "cpu", train_missing=True, json_lines=False)


@command("report", opt("folder", help="report folder written by `ega-sim run`"))
def _report(args: argparse.Namespace) -> int:
    """redraw an experiment's tables and report from its stored results

    Rebuild the tables, figures, report.md and report.html of a report folder from its finished
    cells (OUT/cells/*.json), without rerunning anything.

    examples:
      ega-sim report reports/quickstart      # redraw report.md, report.html and the figures
    """
    from ega_sim.experiments import write_outputs

    print("\n".join(str(path) for path in write_outputs(Path(args.folder))))
    return 0


@command(
    "evaluate",
    SCENARIO,
    MECHANISMS.but(help="default: those that apply (on a feed market cascade/gsp, cascade/vcg)"),
    REQUESTS.but(default=10_000),
    SEED,
    opt("--misreport", choices=MISREPORT_METHODS, default="exact", help="regret search"),
    opt(
        "--regret-bidders",
        choices=REGRET_BIDDERS,
        default="default",
        help="whose misreports: shown ads, all, or (default) the mechanism's default",
    ),
    opt("--dense-points", type=int, default=64, help="bids of the dense search"),
    opt("--gamma-max", type=float, default=2.0, help="dense search upper multiplier"),
    DEVICE,
    CHECKPOINT,
    THREADS,
    JSON,
    opt("--out", help="also write the JSON Lines to this file"),
)
def _evaluate(args: argparse.Namespace) -> int:
    """measure revenue, welfare and incentive compatibility of mechanisms on a scenario

    Run mechanisms on truthful bids for a scenario and measure per-request revenue, welfare,
    utility, clicks and ex-post regret (against the ground truth); --misreport none skips
    regret. --regret-bidders: the ads shown, all candidates, or each mechanism's default (the
    shown ads for ega/gr, whose misreports re-run beam search; all otherwise). The cascade's
    gsp, vcg, threshold and first price, and their exact regret, run on torch for the first
    250,000 requests and then on a compiled numba kernel (CPU chunks of >= 2,048 requests),
    and from then on so do the outcome measures of every mechanism, with the same numbers bit
    for bit; EGA_SIM_RANK_PATH=torch (or kernel) forces one path.

    examples:
      ega-sim evaluate --scenario textbook
      ega-sim evaluate --scenario envs/single_slot.toml --mechanism cascade/vcg myerson/threshold \\
          --requests 100000 --seed 3 --json
      ega-sim evaluate --scenario lognormal_heavy_tail --mechanism cascade/gsp --misreport dense
      ega-sim evaluate --scenario feed_small --mechanism cascade/gsp cascade/vcg \\
          --checkpoint runs/feed_small_cascade --misreport grid
    """
    from ega_sim.atomic import write_text_atomic
    from ega_sim.evaluation import evaluate
    from ega_sim.mechanisms.registry import learns, make_mechanism, mechanism_names
    from ega_sim.metrics.regret import MisreportSpec
    from ega_sim.paths import check_output_file
    from ega_sim.report_table import format_table, to_json_line
    from ega_sim.world.build import make_world

    if args.out:  # refused now rather than after the whole evaluation
        check_output_file(args.out, "--out")
    world = make_world(args.scenario, args.device)
    feed = world.config.kind == "feed_market"
    default = ["cascade/gsp", "cascade/vcg"] if feed else mechanism_names(world, learned=False)
    mechanisms = [  # built first: a bad name or a missing checkpoint fails before any work
        make_mechanism(name, world, checkpoint=args.checkpoint if learns(name, world) else None)
        for name in args.mechanism or default
    ]
    spec = MisreportSpec(
        args.misreport, args.dense_points, args.gamma_max, bidders=args.regret_bidders
    )
    options = {"requests": args.requests, "seed": args.seed, "threads": args.threads}
    results = []
    for mechanism in mechanisms:
        results.append(evaluate(mechanism, world, misreport=spec, progress=True, **options))
        if args.json:
            print(to_json_line(results[-1]), flush=True)
    if not args.json:
        print(format_table(results))
    if args.out:
        write_text_atomic(args.out, "".join(to_json_line(r) + "\n" for r in results))
    return 0


@command(
    "simulate-logs",
    SCENARIO.but(help="feed_market scenario file or name"),
    REQUESTS.but(default=50_000),
    SEED,
    opt("--exploration", type=float, default=0.2, help="share of lists shown in random order"),
    THREADS,
    OUT.but(help="log folder to write"),
)
def _simulate_logs(args: argparse.Namespace) -> int:
    """run the logging policy on a feed market and write the logs

    Simulate a feed market's logged data: the logging policy (a cascade with exploration of
    orderings and creatives) shows lists to sampled requests and the ground-truth user model
    clicks. Writes NPZ files and meta.json to --out.

    examples:
      ega-sim simulate-logs --scenario feed_small --requests 50000 --out runs/feed_small_logs
      ega-sim simulate-logs --scenario feed_medium --requests 100000 --seed 1 --out runs/logs
    """
    from ega_sim.logs.simulate import simulate_logs
    from ega_sim.world.build import make_world

    world = make_world(args.scenario)
    settings = {"seed": args.seed, "exploration": args.exploration, "threads": args.threads}
    meta = simulate_logs(world, args.requests, args.out, progress=True, **settings)
    print(
        f"wrote {meta['requests']} logged requests of {meta['scenario']} to {args.out} "
        f"(POI CTR {meta['poi_ctr']:.4f}, {meta['seconds']:.1f} s)"
    )
    return 0


@command(
    "train",
    SCENARIO,
    opt("--mechanism", required=True, metavar="ALLOCATOR/PAYMENT", help="what to train"),
    OUT.but(help="checkpoint folder to write"),
    opt("--logs", help="log folder (default: simulate into OUT/logs)"),
    opt("--log-requests", type=int, default=50_000, help="requests to simulate without --logs"),
    SEED,
    opt("--epochs", type=int, help="training epochs (default: the training config's)"),
    opt("--config", help="ega/gr: a TOML file of EGAConfig keys; */paynet: of PaynetTrainConfig"),
    opt("--from", dest="from_dir", help="*/paynet on a feed market: a trained allocator to reuse"),
    opt("--steps", type=int, help="*/paynet: training steps (default: the config's)"),
    DEVICE.but(help="where ega/gr and payment networks train (logs and pCTR: the CPU)"),
    THREADS,
)
def _train(args: argparse.Namespace) -> int:
    """train what a learned mechanism needs, from logs

    Train a learned mechanism's models from logs and write a checkpoint folder for `ega-sim
    evaluate --checkpoint`. The feed-market cascade trains its position-aware pCTR model; ega
    and gr the EGA-V2 pipeline (--config: ablations mtp = false, single_stage = true,
    [bidding] code_bid = "mean", alpha, beta; model sizes; beams); ALLOCATOR/paynet a payment
    network on top of the allocator (trained first unless --from names a trained one) by
    ex-post regret minimization (--config: steps, batch_size, lambda_init, rho_growth, ...).
    Without --logs, logs are first simulated into OUT/logs.

    examples:
      ega-sim train --scenario feed_small --mechanism cascade/gsp --out runs/feed_small_cascade
      ega-sim train --scenario feed_small --mechanism cascade/vcg --logs runs/feed_small_logs \\
          --out runs/feed_small_cascade --epochs 10
      ega-sim train --scenario textbook --mechanism cascade/paynet --out runs/textbook_paynet
      ega-sim train --scenario feed_small --mechanism ega/paynet --from runs/feed_small_ega \\
          --out runs/feed_small_ega_paynet
    """
    from ega_sim.mechanisms.registry import mechanism_names
    from ega_sim.training import train_mechanism
    from ega_sim.world.build import make_world

    world = make_world(args.scenario, args.device)
    if args.mechanism not in (known := mechanism_names(world)):
        raise ValueError(f"mechanism: expected one of {', '.join(known)}; got {args.mechanism!r}")
    keys = ("logs", "log_requests", "seed", "epochs", "from_dir", "steps", "threads")
    settings = {key: getattr(args, key) for key in keys} | {"config_path": args.config}
    settings["progress"] = True  # a bar on a terminal, a line per stage and every 30 s off one
    print(train_mechanism(world, args.mechanism, Path(args.out), **settings))
    return 0


@command(
    "misreport",
    SCENARIO,
    MECHANISMS.but(default=["cascade/gsp", "cascade/vcg", "cascade/first"]),
    CHECKPOINT,
    REQUESTS.but(default=20_000, help="requests per curve point"),
    SEED,
    opt("--bandit-steps", type=int, default=300, help="0 skips the bandit"),
    opt("--ppo-steps", type=int, default=0, help="PPO training steps, 0 for none"),
    THREADS,
    OUT.but(help="folder for misreport.csv and .png"),
)
def _misreport(args: argparse.Namespace) -> int:
    """which misreport pays: utility against bid multiplier, bandit and PPO bidders

    For each mechanism, against truthful opponents: the focal advertiser's expected utility per
    request against its bid multiplier (0.05 .. 2.0), the best multiplier, the one a UCB bandit
    converges to and (--ppo-steps, needs stable-baselines3) the one a PPO agent bids, with
    their gains over truthful bidding. Writes misreport.csv (tidy) and misreport.png to --out.

    examples:
      ega-sim misreport --scenario textbook --out reports/misreport
      ega-sim misreport --scenario textbook --mechanism cascade/gsp cascade/vcg cascade/first \\
          --ppo-steps 4096 --out reports/misreport
      ega-sim misreport --scenario feed_small --mechanism oracle_cascade/gsp oracle_cascade/vcg \\
          --requests 5000 --out reports/misreport_feed
    """
    from ega_sim.envs.misreport import run_misreport_study, summary_lines, write_study
    from ega_sim.paths import check_output_folder
    from ega_sim.world.build import make_world

    check_output_folder(args.out, "--out")  # refused now rather than after the study
    settings = ("checkpoint", "requests", "seed", "bandit_steps", "ppo_steps", "threads")
    world = make_world(args.scenario)
    table = run_misreport_study(world, args.mechanism, **{k: getattr(args, k) for k in settings})
    written = [f"wrote {path}" for path in write_study(table, args.out)]
    print("\n".join([*summary_lines(table), *written]))
    return 0


@command(
    "equilibrium",
    SCENARIO.but(required=False, help="scenario file path or shipped name (position auction)"),
    MECHANISMS.but(help="mechanisms (default: cascade/gsp cascade/vcg cascade/first)"),
    opt(
        "--experiment", help="an equilibrium experiment file instead (experiments/equilibrium.toml)"
    ),
    opt("--method", choices=("npga", "best_response"), default="npga", help="learner"),
    opt("--strategy", choices=("piecewise", "network"), default="piecewise", help="bid function"),
    opt("--per-seat", action="store_true", help="one strategy per advertiser, not one shared"),
    opt("--steps", type=int, help="learner steps (default 600)"),
    opt("--batch", type=int, help="requests per step (default 8192)"),
    opt("--population", type=int, help="npga: antithetic perturbation pairs (default 4)"),
    opt("--sigma", type=float, help="npga: initial perturbation scale (default 0.2)"),
    opt("--initial-multiplier", type=float, help="start: bid this x value (default 1)"),
    opt("--certificate-requests", type=int, default=50_000, help="fresh requests of epsilon"),
    REQUESTS.but(default=100_000, help="fresh requests for revenue, welfare, utility"),
    CHECKPOINT.but(help="feed market: the trained cascade (see `ega-sim train`)"),
    SEED,
    THREADS,
    DEVICE,
    JSON,
    OUT.but(help="folder: per study state.pt and result.json; equilibrium.md, .jsonl, .png"),
)
def _equilibrium(args: argparse.Namespace) -> int:
    """learn every advertiser's bid function at once; measure mechanisms at equilibrium

    All advertisers learn a bid function of their value at once (NPGA: simultaneous
    pseudo-gradient ascent with common random numbers, or iterated best response) against the
    mechanism; the profile found is certified by epsilon, each advertiser's utility loss
    against its exact best response relative to its utility, on fresh requests. Reports
    revenue, welfare, utility per request and epsilon at equilibrium and at truthful bids.
    Rerunning resumes an interrupted study from OUT and reuses finished ones.

    examples:
      ega-sim equilibrium --scenario gsp_equilibrium --mechanism cascade/gsp --out runs/eq
      ega-sim equilibrium --scenario single_slot --mechanism cascade/first cascade/vcg \\
          --steps 500 --initial-multiplier 0.6 --json --out runs/eq_single
      ega-sim equilibrium --scenario feed_small --mechanism cascade/gsp cascade/vcg \\
          --checkpoint runs/feed_small_cascade --steps 150 --batch 256 \\
          --certificate-requests 2000 --requests 5000 --out runs/eq_feed
      ega-sim equilibrium --experiment experiments/equilibrium.toml --out reports/equilibrium
    """

    from ega_sim.equilibrium.experiment import PlannedStudy, load_experiment
    from ega_sim.equilibrium.learner import LearnerConfig
    from ega_sim.equilibrium.study import StudySettings

    if (args.experiment is None) == (args.scenario is None):
        raise ValueError("expected --scenario (with --mechanism) or --experiment FILE, not both")
    if args.experiment is not None:
        plan = load_experiment(args.experiment)
    else:
        given = {  # the options left out keep LearnerConfig's defaults
            name: getattr(args, name)
            for name in ("steps", "batch", "population", "sigma", "initial_multiplier")
            if getattr(args, name) is not None
        }
        learner = LearnerConfig(
            method=args.method, strategy=args.strategy, shared=not args.per_seat, **given
        )
        settings = StudySettings(
            learner=learner,
            certificate_requests=args.certificate_requests,
            requests=args.requests,
            seed=args.seed,
        )
        mechanisms = args.mechanism or ["cascade/gsp", "cascade/vcg", "cascade/first"]
        plan = [PlannedStudy(args.scenario, tuple(mechanisms), settings, args.checkpoint)]
    # an experiment file trains what it needs and is not trained yet, as `ega-sim run` does
    train_missing = args.experiment is not None
    return _run_equilibrium(plan, args.out, args.device, train_missing, json_lines=args.json)


def _run_equilibrium(plan, out, device: str, train_missing: bool, json_lines: bool) -> int:
    """Run equilibrium studies into `out`; print each record (JSON Lines) or the table."""
    from ega_sim.equilibrium.experiment import run_plan
    from ega_sim.equilibrium.report import table_markdown, write_outputs
    from ega_sim.paths import check_output_folder

    out = check_output_folder(out, "--out")
    records = []
    for record in run_plan(plan, out, device=device, train_missing=train_missing):
        records.append(record)
        if json_lines:
            print(json.dumps(record, allow_nan=False), flush=True)
    written = write_outputs(records, out)
    if not json_lines:
        print(table_markdown(records) + "\n".join(f"wrote {path}" for path in written))
    return 0


@command(
    "bench",
    opt("--suite", choices=(*SUITES, "default", "all"), default="default", help="what to time"),
    REQUESTS.but(default=100_000, help="position suite requests"),
    opt("--feed-requests", type=int, default=20_000, help="feed suite requests"),
    CHECKPOINT.but(help="feed: a cascade checkpoint; ega: an ega checkpoint"),
    opt("--bidders", type=int, default=10, help="position suite bidders"),
    opt("--slots", type=int, default=4, help="position suite slots"),
    THREADS,
    opt("--repeats", type=int, default=5, help="timed repeats; the best is kept"),
    DEVICE,
    opt("--steps", type=int, default=2000, help="paynet: training steps"),
    JSON.but(help="print JSON Lines"),
)
def _bench(args: argparse.Namespace) -> int:
    """measure auctions per second of the batched mechanisms

    One line per measurement. Suites: position (auctions/s of rank mechanisms at K = 1 and
    --slots, with and without exact regret, beside a minimal batched NumPy program of the same
    auction and of evaluate, measured in the same run, with their ratio; on the CPU each rank
    auction is timed on both paths, [kernel]: the compiled numba kernel (an insertion network
    vectorized over blocks of requests, prices and exact regret fused), [torch]: the stable
    sort with prices from the top K + 1 ranks; myerson and a GPU run torch; and where exact
    regret's time goes, in ms per 100,000 requests: auction, expected clicks, outcome
    measures, misreport search, regret), memory (peak
    memory of evaluate with exact regret at 1e5, 1e6, 4e6 requests, fresh processes), feed
    (requests/s of evaluate for the learned cascade/gsp on feed_small), logs (simulate-logs on
    feed_medium: time, peak memory), ega (ega/gsp, 16 and 64 beams), paynet (cascade/paynet's
    inference and training), envs (AdAuction-v0 steps/s); default: position and feed; all:
    adds logs.

    examples:
      ega-sim bench                          # position auctions and feed_small, 1 thread
      ega-sim bench --suite position --requests 1000000 --threads 2
      ega-sim bench --suite memory            # evaluate's peak memory at 1e5 .. 4e6 requests
      ega-sim bench --suite feed --checkpoint runs/feed_small_cascade
      ega-sim bench --suite ega --threads 2 --checkpoint runs/feed_small_ega
      ega-sim bench --suite ega --device cuda   # on a GPU: scripts/gpu_check.sh runs it
      ega-sim bench --suite paynet --threads 2 --checkpoint runs/feed_small_cascade
    """
    run_suites(args)
    return 0


class _HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """Description and examples kept as written; an option's default shown in its help, unless
    the help already says it."""

    def _get_help_string(self, action: argparse.Action) -> str:
        default = action.default
        if default is None or default is False or default == argparse.SUPPRESS:
            return action.help
        if "default" in (action.help or ""):
            return action.help
        shown = " ".join(default) if isinstance(default, list) else default
        return f"{action.help} (default: {shown})"


def build_parser() -> argparse.ArgumentParser:
    from ega_sim.provenance import package_version

    parser = argparse.ArgumentParser(
        prog="ega-sim",
        description="Simulate ad auctions and measure mechanisms (GSP, VCG, Myerson, EGA-V2).",
        epilog="examples:\n  ega-sim run experiments/quickstart.toml\n  ega-sim evaluate "
        "--scenario textbook\n\nRun 'ega-sim COMMAND --help' for its options and examples.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"ega-sim {package_version()}")
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, (options, handler) in COMMANDS.items():
        text = inspect.cleandoc(handler.__doc__)
        summary, _, description = text.partition("\n\n")
        sub = subparsers.add_parser(
            name, help=summary, description=description, formatter_class=_HelpFormatter
        )
        for option in options:
            sub.add_argument(*option.flags, **option.settings)
        sub.set_defaults(handler=handler)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        current_mode()  # a bad EGA_SIM_RANK_PATH is refused before any work
        with using_threads(getattr(args, "threads", None), "--threads"):  # setup work too
            return args.handler(args)
    except BrokenPipeError:  # output piped into `head` and the like: stop quietly
        sys.stderr.close()
        return 0
    except (ConfigError, ValueError, OSError) as error:
        print(f"ega-sim {args.command}: error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
