"""Try malformed inputs on every surface of ega-sim and say what each one gives.

Every case is the smallest input of one kind (a scenario or experiment file, a command-line
argument, a damaged checkpoint or log folder, a Python API call, an environment action), run
the way a user would: the command line in a subprocess (so that a traceback shows), the Python
API and the environments in this process. Each outcome is one of

  clear      refused (nonzero exit or ValueError/TypeError) with a message of one line that
             names the file, key or argument involved;
  unclear    refused, but the message names none of them or runs over several lines (also: a
             valid input refused);
  traceback  a Python traceback printed, or an exception of another type;
  silent     accepted (exit 0, no exception), or it wrote outside its folder, or a valid input
             gave a wrong result (a ratio of 0 where it is undefined).

A few inputs are valid edge cases (a reserve no bidder reaches, an empty batch) and count as
clear when they give the right result. Everything is written under one folder (a temporary
one, or --out DIR): each case runs in its own folder, and a file that appears anywhere else
(in DIR outside the case's folder, or in the current directory) is reported. The exit status
is 1 when any case is not clear, so the battery is also a check.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
import warnings
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent  # the checkout whose package is tried
OUTCOMES = ("clear", "unclear", "traceback", "silent")
KINDS = ("scenario", "experiment", "cli", "checkpoint", "logs", "api", "env")
DEPTH = ("w",) * 8  # each case runs 8 folders deep, so '../' names land inside its folder
CLI_TIMEOUT = 600


@dataclass(frozen=True)
class Result:
    """What one input gave."""

    refused: bool
    message: str  # the error (from the first 'error:' line on), or what was printed
    traceback: bool = False
    output: str = ""  # stdout of a command, for checks of valid inputs


@dataclass
class Fixtures:
    """Tiny trained parts, made once by the command line (see make_fixtures)."""

    root: Path
    paynet: Path = field(init=False)  # cascade/paynet on single_slot, 2 steps
    logs: Path = field(init=False)  # 2,000 logged requests of feed_small
    cascade: Path = field(init=False)  # the cascade's pCTR model on those logs, 1 epoch

    def __post_init__(self) -> None:
        self.paynet = self.root / "paynet_ck"
        self.logs = self.root / "logs"
        self.cascade = self.root / "cascade_ck"


Check = Callable[[Path, Result], "str | None"]  # a problem with what the input did, or None


@dataclass(frozen=True)
class Case:
    """One malformed (or edge-case) input."""

    kind: str  # scenario | experiment | cli | checkpoint | logs | api | env
    what: str  # the input in a few words
    run: Command | Call
    names: tuple[str, ...] = ()  # what the message must name (paths relative to the case)
    valid: bool = False  # a valid edge case: must be accepted, and pass `check`
    check: Check | None = None
    confine: str = "."  # the case may write only here (relative to its folder)


# ---------------------------------------------------------------------------------------------
# How cases run.

Files = dict[str, "str | bytes | Callable[[], str]"]
Prepare = Callable[[Path, Fixtures], None]


def _write_files(cwd: Path, files: Files | None) -> None:
    for name, content in (files or {}).items():
        path = cwd / name
        path.parent.mkdir(parents=True, exist_ok=True)
        content = content() if callable(content) else content
        if isinstance(content, bytes):
            path.write_bytes(content)
        else:
            path.write_text(content)


@dataclass(frozen=True)
class Command:
    """`ega-sim ARGV` in a subprocess, in the case's folder, after writing `files` and running
    `prepare` (which copies and damages fixtures)."""

    argv: tuple[str, ...]
    files: Files | None = None
    prepare: Prepare | None = None

    def setup(self, cwd: Path, fixtures: Fixtures) -> None:
        _write_files(cwd, self.files)
        if self.prepare is not None:
            self.prepare(cwd, fixtures)

    def execute(self, cwd: Path) -> Result:
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
        command = [sys.executable, "-m", "ega_sim.cli", *self.argv]
        try:
            done = subprocess.run(
                command, cwd=cwd, env=env, capture_output=True, text=True, timeout=CLI_TIMEOUT
            )
        except subprocess.TimeoutExpired:
            return Result(False, f"still running after {CLI_TIMEOUT} s (killed)")
        stderr = done.stderr.strip()
        has_traceback = "Traceback (most recent call last)" in done.stderr + done.stdout
        lines = stderr.splitlines()
        errors = [i for i, line in enumerate(lines) if ": error: " in line]
        # argparse prints its usage first; warnings may come before: the error is what follows
        message = "\n".join(lines[errors[0] :]) if errors else stderr or done.stdout.strip()
        return Result(done.returncode != 0, message, has_traceback, done.stdout)


def cli(argv: str, files: Files | None = None, prepare: Prepare | None = None) -> Command:
    """`ega-sim ARGV` (split as a shell would)."""
    return Command(tuple(shlex.split(argv)), files, prepare)


@dataclass(frozen=True)
class Call:
    """A Python call in this process, in the case's folder: ValueError (ConfigError,
    LogError) and TypeError are refusals; any other exception counts as a traceback."""

    call: Callable[[], object]

    def setup(self, cwd: Path, fixtures: Fixtures) -> None:
        pass

    def execute(self, cwd: Path) -> Result:
        here = Path.cwd()
        os.chdir(cwd)
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                returned = self.call()
        except (ValueError, TypeError) as error:
            return Result(True, str(error))
        except Exception as error:  # an exception of an unexpected type
            return Result(True, f"{type(error).__name__}: {error}", traceback=True)
        finally:
            os.chdir(here)
        return Result(False, "" if returned is None else repr(returned)[:200])


def api(call: Callable[[], object]) -> Call:
    return Call(call)


def classify(case: Case, result: Result, escaped: list[str], cwd: Path) -> tuple[str, str]:
    """The outcome and its message (the first line shown)."""
    if result.traceback:
        return "traceback", result.message
    if escaped:
        return "silent", f"wrote outside its folder: {', '.join(escaped[:3])}"
    problem = case.check(cwd, result) if case.check is not None else None
    if problem:
        return "silent", problem
    if case.valid:
        if result.refused:
            return "unclear", f"refused a valid input: {result.message}"
        return "clear", "accepted, as it should be"
    if not result.refused:
        return "silent", f"accepted: {result.message or result.output.strip()}"
    message = result.message.strip()
    named = all(name in message for name in case.names)
    return ("clear" if named and "\n" not in message else "unclear"), message


# ---------------------------------------------------------------------------------------------
# What the cases start from: tiny valid files, and commands on them.

POSITION = """name = "small"
kind = "position_auction"
n_bidders = 3
slot_ctr = [1.0, 0.5]
reserve = 0.0
[values]
dist = "uniform"
low = 0.0
high = 1.0
[quality]
dist = "fixed"
value = 1.0
"""
UNIFORM = 'dist = "uniform"\nlow = 0.0\nhigh = 1.0'
LOGNORMAL = 'dist = "lognormal"\nmean = {}\nsigma = {}'
ESCAPING = "a/../.cascade-paynet-a/../../../../ESCAPED/p"  # the scenario name
EXPERIMENT = """scenarios = ["s.toml"]
mechanisms = ["cascade/gsp"]
seeds = [0]
requests = 20
misreport = "none"
figures = []
"""
PAYNET_EXPERIMENT = 'scenarios = ["s.toml"]\nmechanisms = ["cascade/paynet"]\n'
RUNNABLE = {"e.toml": EXPERIMENT, "s.toml": POSITION}  # an experiment that runs
TINY_PAYNET = "steps = 2\nbatch_size = 8\nvalidation_requests = 16\n"

EVALUATE = "evaluate --scenario single_slot --requests 8 --misreport none"
RUN = "run e.toml --quick --workers 1 --out out"
PAYNET_CK = "evaluate --scenario single_slot --mechanism cascade/paynet --requests 8 "
PAYNET_CK += "--misreport none --checkpoint ck"
CASCADE_CK = "evaluate --scenario feed_small --mechanism cascade/gsp --requests 8 "
CASCADE_CK += "--misreport none --checkpoint ck"
TRAIN_L = "train --scenario feed_small --mechanism cascade/gsp --epochs 1 --out out --logs L"


def shipped(name: str) -> Callable[[], str]:
    """A shipped scenario's text (read when the case runs)."""

    def text() -> str:
        from ega_sim.config.scenario import resolve_scenario_path

        return resolve_scenario_path(name).read_text()

    return text


def edit(text: str | Callable[[], str], old: str, new: str) -> Callable[[], str]:
    """`text` with `old` replaced by `new`, once (`old` must be there)."""

    def edited() -> str:
        original = text() if callable(text) else text
        assert old in original, old
        return original.replace(old, new, 1)

    return edited


def sweep(line: str, mechanism: str = "cascade/gsp") -> str:
    """The tiny experiment on `mechanism`, with one [sweep] line."""
    return EXPERIMENT.replace("cascade/gsp", mechanism) + f"[sweep]\n{line}\n"


# Scenario files, evaluated as s.toml: (input, key the message names besides the file, text
# replaced, its replacement) in the tiny position auction POSITION ...
POSITION_EDITS = [
    ("unknown key slots = 2", "slots", "n_bidders = 3", "n_bidders = 3\nslots = 2"),
    ('n_bidders = "three"', "n_bidders", "n_bidders = 3", 'n_bidders = "three"'),
    ("n_bidders = 0", "n_bidders", "n_bidders = 3", "n_bidders = 0"),
    ("n_bidders = 100000000", "n_bidders", "n_bidders = 3", "n_bidders = 100000000"),
    ("slot_ctr = []", "slot_ctr", "slot_ctr = [1.0, 0.5]", "slot_ctr = []"),
    ("slot_ctr = [1.0, -0.5]", "slot_ctr[1]", "0.5]", "-0.5]"),
    ("reserve = -1.0", "reserve", "reserve = 0.0", "reserve = -1.0"),
    ("[values] high = 1e308", "values.high", "high = 1.0", "high = 1e308"),
    ("[values] high = 1e-46", "values.high", "high = 1.0", "high = 1e-46"),
    ("[values] low = 2.0 above high", "values.high", "low = 0.0", "low = 2.0"),
    ("lognormal mean = 800", "values.mean", UNIFORM, LOGNORMAL.format(800.0, 1.0)),
    ("lognormal sigma = 0", "values.sigma", UNIFORM, LOGNORMAL.format(0.0, 0.0)),
    ("[quality] value = 0", "quality.values[0]", "value = 1.0", "value = 0.0"),
    ("2 qualities for 3 bidders", "quality.values", "value = 1.0", "values = [0.5, 0.5]"),
    ('kind = "auction"', "kind", '"position_auction"', '"auction"'),
    ('name = "a/../../ESCAPED"', "name", '"small"', '"a/../../ESCAPED"'),
    ("malformed TOML n_bidders = = 3", "", "n_bidders = 3", "n_bidders = = 3"),
]
# ... and in a copy of the shipped feed_small.
FEED_EDITS = [
    ("feed copy shock_sigma = 1000", "values.shock_sigma", "sigma = 0.3", "sigma = 1e3"),
    ("feed copy n_pois = 1e12", "market.n_pois", "n_pois = 400", "n_pois = 1e12"),
    ("feed copy n_pois = 10^12, an integer", "market.n_pois", "n_pois = 400", f"n_pois = {10**12}"),
    ("feed copy unknown key market.pois", "market.pois", "n_pois = 400", "n_pois = 400\npois = 3"),
    ("feed copy candidate_ads = 0", "requests.candidate_ads", "ads = 12", "ads = 0"),
    ("feed copy ad position 80 of 10", "requests.ad_positions", "5, 8]", "5, 80]"),
]

# ... and in a copy of the shipped bimodal_ironing (a mixture of two uniforms).
MIXTURE_EDITS = [
    ("mixture weights sum to 1.1", "values.components", "weight = 0.1", "weight = 0.2"),
    ("mixture weight = -0.9", "values.components[0].weight", "weight = 0.9", "weight = -0.9"),
    ("mixture component high below low", "values.components[1].high", "high = 5.0", "high = 0.5"),
    (
        "mixture of a mixture",
        "values.components[1].dist",
        'dist = "uniform"\nweight = 0.1',
        'dist = "mixture"\nweight = 0.1',
    ),
]

# Experiment files, run as e.toml with --quick on s.toml (POSITION): (input, key, text).
EXPERIMENTS = [
    ("unknown mechanism cascade/second", "mechanisms[0].name", edit(EXPERIMENT, "gsp", "second")),
    (
        'sweep "training.paynet.steps" = ["ten"]',
        "sweep.training.paynet.steps",
        sweep('"training.paynet.steps" = ["ten"]', "cascade/paynet"),
    ),
    (
        'sweep "training.log_requests" = [1]',
        "sweep.training.log_requests",
        sweep('"training.log_requests" = [1]', "cascade/paynet"),
    ),
    (
        'sweep "scenario.n_bidders" = [0]',
        "sweep.scenario.n_bidders",
        sweep('"scenario.n_bidders" = [0]'),
    ),
    ("unknown key seedz", "seedz", edit(EXPERIMENT, "seeds", "seedz")),
    ("requests = -5", "requests", edit(EXPERIMENT, "requests = 20", "requests = -5")),
    ("seeds = [0, 0]", "seeds", edit(EXPERIMENT, "seeds = [0]", "seeds = [0, 0]")),
    ('misreport = "random"', "misreport", edit(EXPERIMENT, '"none"', '"random"')),
    (
        '[training] log_requests = "many"',
        "training.log_requests",
        EXPERIMENT + '[training]\nlog_requests = "many"\n',
    ),
    ("a scenario file that does not exist", "", edit(EXPERIMENT, "s.toml", "nope.toml")),
    ("empty experiment file", "", ""),
    ("malformed TOML", "", "scenarios = [\n"),
]

# Command-line arguments: (input, what the message names, the command, files written first).
ARGUMENTS = [
    ("evaluate --device meta", "device", f"{EVALUATE} --device meta", None),
    ("evaluate --device cuda:99", "device", f"{EVALUATE} --device cuda:99", None),
    ("run --threads 0", "threads", f"{RUN} --threads 0", RUNNABLE),
    ("evaluate --threads 0", "--threads", f"{EVALUATE} --threads 0", None),
    (
        "misreport --threads -1",
        "--threads",
        "misreport --scenario textbook --out m --threads -1",
        None,
    ),
    ("run --address without --executor ray", "--address", f"{RUN} --address h:1", RUNNABLE),
    ("evaluate --requests -1", "requests", "evaluate --scenario single_slot --requests -1", None),
    ("evaluate --seed abc", "--seed", f"{EVALUATE} --seed abc", None),
    ("evaluate --seed -1", "seed", f"{EVALUATE} --seed -1", None),
    ("evaluate --out an existing folder", "--out", f"{EVALUATE} --out d", {"d/f": ""}),
    ("evaluate --out under a file", "--out", f"{EVALUATE} --out f/x.jsonl", {"f": ""}),
    (
        "evaluate --mechanism cascade/second",
        "cascade/second",
        f"{EVALUATE} --mechanism cascade/second",
        None,
    ),
    ("evaluate --scenario nope", "nope", "evaluate --scenario nope", None),
    ("evaluate --scenario a folder", "d", "evaluate --scenario d", {"d/f": ""}),
    (
        "--misreport dense --dense-points 0",
        "dense",
        "evaluate --scenario single_slot --requests 8 --misreport dense --dense-points 0",
        None,
    ),
    (
        "--misreport dense --gamma-max -1",
        "gamma",
        "evaluate --scenario single_slot --requests 8 --misreport dense --gamma-max -1",
        None,
    ),
    (
        "cascade/paynet, --checkpoint missing",
        "missing",
        PAYNET_CK.replace("--checkpoint ck", "--checkpoint missing"),
        None,
    ),
    (
        "simulate-logs of a position auction",
        "textbook",
        "simulate-logs --scenario textbook --requests 10 --out L",
        None,
    ),
    (
        "simulate-logs --requests 0",
        "requests",
        "simulate-logs --scenario feed_small --requests 0 --out L",
        None,
    ),
    (
        "simulate-logs --exploration 2",
        "exploration",
        "simulate-logs --scenario feed_small --requests 10 --exploration 2 --out L",
        None,
    ),
    (
        "train --steps 0",
        "steps",
        "train --scenario single_slot --mechanism cascade/paynet --steps 0 --out ck",
        None,
    ),
    (
        "train --mechanism cascade/second",
        "cascade/second",
        "train --scenario single_slot --mechanism cascade/second --out ck",
        None,
    ),
    (
        "train --config with unknown key stepz",
        "c.toml stepz",
        "train --scenario single_slot --mechanism cascade/paynet --config c.toml --out ck",
        {"c.toml": TINY_PAYNET + "stepz = 3\n"},
    ),
    ("train --logs missing", "missing", TRAIN_L.replace("--logs L", "--logs missing"), None),
    ("misreport --out under a file", "--out", "misreport --scenario textbook --out f/x", {"f": ""}),
    ("report of a folder without results", "d", "report d", {"d/f": ""}),
    (
        "bench --threads 0",
        "threads",
        "bench --suite position --requests 10 --repeats 1 --threads 0",
        None,
    ),
]


# Checkpoints and logs: copies of the fixtures (in ck/ or L/), one file damaged.


def flip_middle(path: Path, count: int = 64) -> None:
    data = bytearray(path.read_bytes())
    middle = len(data) // 2
    data[middle : middle + count] = bytes(b ^ 0xFF for b in data[middle : middle + count])
    path.write_bytes(bytes(data))


def truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def empty(path: Path) -> None:
    path.write_bytes(b"")


def json_edit(change: Callable[[dict], object]) -> Callable[[Path], None]:
    def damage(path: Path) -> None:
        record = json.loads(path.read_text())
        change(record)
        path.write_text(json.dumps(record))

    return damage


class RunsCode:
    """Unpickled, it would create the file `marker` (pathlib's touch, importable anywhere)."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


def pickle_that_runs_code(path: Path) -> None:
    """A .pt whose unpickling would create ck/ran, its checksum recorded: weights_only must
    refuse it all the same."""
    import torch

    from ega_sim.checksums import checksum

    torch.save({"weight": RunsCode(path.parent.parent / "ran")}, path)
    record = path.parent / "checkpoint.json"
    json_edit(lambda r: r["files"].update({path.name: checksum(path.read_bytes())}))(record)


def code_did_not_run(cwd: Path, result: Result) -> str | None:
    return "the pickle's code ran (ck/ran created)" if (cwd / "ck" / "ran").exists() else None


DAMAGES = [  # (input, command, fixture, its file damaged, how)
    ("64 flipped bytes in paynet.pt", PAYNET_CK, "paynet", "paynet/paynet.pt", flip_middle),
    ("64 flipped bytes in pctr.pt", CASCADE_CK, "cascade", "pctr.pt", flip_middle),
    ("empty paynet.pt", PAYNET_CK, "paynet", "paynet/paynet.pt", empty),
    ("truncated paynet.pt", PAYNET_CK, "paynet", "paynet/paynet.pt", truncate),
    ("empty pctr.pt", CASCADE_CK, "cascade", "pctr.pt", empty),
    ("truncated pctr.pt", CASCADE_CK, "cascade", "pctr.pt", truncate),
    ("paynet.pt removed", PAYNET_CK, "paynet", "paynet/paynet.pt", Path.unlink),
    (
        "a .pt whose pickle would run code",
        PAYNET_CK,
        "paynet",
        "paynet/paynet.pt",
        pickle_that_runs_code,
    ),
    (
        "checkpoint.json: hidden size 7",
        PAYNET_CK,
        "paynet",
        "paynet/checkpoint.json",
        json_edit(lambda r: r["train"]["network"].update(hidden=7)),
    ),
    (
        "checkpoint.json: train removed",
        PAYNET_CK,
        "paynet",
        "paynet/checkpoint.json",
        json_edit(lambda r: r.pop("train")),
    ),
    (
        "checkpoint.json of format 1",
        CASCADE_CK,
        "cascade",
        "checkpoint.json",
        json_edit(lambda r: r.update(format_version=1)),
    ),
    (
        "checkpoint.json not JSON",
        CASCADE_CK,
        "cascade",
        "checkpoint.json",
        lambda p: p.write_text("{"),
    ),
    ("checkpoint.json removed", CASCADE_CK, "cascade", "checkpoint.json", Path.unlink),
    (
        'meta.json "files": {"exposures.npz": 5}',
        TRAIN_L,
        "logs",
        "meta.json",
        json_edit(lambda r: r.update(files={"exposures.npz": 5})),
    ),
    (
        'meta.json "requests": "many"',
        TRAIN_L,
        "logs",
        "meta.json",
        json_edit(lambda r: r.update(requests="many")),
    ),
    ("meta.json not JSON", TRAIN_L, "logs", "meta.json", lambda p: p.write_text("[1,")),
    ("meta.json removed", TRAIN_L, "logs", "meta.json", Path.unlink),
    ("64 flipped bytes in exposures.npz", TRAIN_L, "logs", "exposures.npz", flip_middle),
    ("truncated exposures.npz", TRAIN_L, "logs", "exposures.npz", truncate),
    ("platform.npz removed", TRAIN_L, "logs", "platform.npz", Path.unlink),
]


def copy_of(
    fixture: str, damage: Callable[[Path], object] | None = None, file: str = ""
) -> Prepare:
    """Copy a fixture into ck/ (L/ for logs) and damage its `file`."""

    def prepare(cwd: Path, fixtures: Fixtures) -> None:
        target = cwd / ("L" if fixture == "logs" else "ck")
        shutil.copytree(getattr(fixtures, fixture), target)
        if damage is not None:
            damage(target / file)

    return prepare


# Checkpoints and logs of another world, or of another mechanism: (input, command, fixture,
# scenario files written first, what the message names).
ELSEWHERE = [
    (
        "feed_small, world_seed 1, on its checkpoint",
        CASCADE_CK.replace("feed_small", "feed_small.toml"),
        "cascade",
        {"feed_small.toml": edit(shipped("feed_small"), "world_seed = 0", "world_seed = 1")},
        "ck/checkpoint.json",
    ),
    (
        "logs of another world (world_seed 1)",
        TRAIN_L.replace("feed_small", "feed_small.toml"),
        "logs",
        {"feed_small.toml": edit(shipped("feed_small"), "world_seed = 0", "world_seed = 1")},
        "L/meta.json",
    ),
    (
        "single_slot, high 2.0, on its paynet",
        PAYNET_CK.replace("single_slot", "single_slot.toml"),
        "paynet",
        {"single_slot.toml": edit(shipped("single_slot"), "high = 1.0", "high = 2.0")},
        "ck/paynet/checkpoint.json",
    ),
    (
        "single_slot's paynet on textbook",
        PAYNET_CK.replace("single_slot", "textbook"),
        "paynet",
        None,
        "ck/paynet",
    ),
    ("a cascade checkpoint given for paynet", PAYNET_CK, "cascade", None, "ck"),
]


def null_ratios(cwd: Path, result: Result) -> str | None:
    """reserve 2.0 with values U[0, 1]: nothing is shown, so psi, ctr_poi and ad_load are
    undefined (null), never 0."""
    for line in result.output.splitlines() if not result.refused else []:
        record = json.loads(line)
        for key in ("psi", "ctr_poi", "ad_load"):
            if record.get(key) is not None:
                return f"{record['mechanism']}: {key} = {record[key]!r} where it is undefined"
    return None


# The Python API and the environments (in this process).

NAN = float("nan")


def requests_of(value, quality):
    import torch

    from ega_sim.world.position_auction import AuctionRequests

    return AuctionRequests(torch.tensor(value), torch.tensor(quality, dtype=torch.float64))


def run_bids(bids) -> Callable[[], object]:
    def call():
        import torch

        import ega_sim

        mechanism = ega_sim.make_mechanism("cascade/gsp", "single_slot")
        return mechanism.run(requests_of([[0.9, 0.5]], [[1.0, 1.0]]), torch.tensor(bids))

    return call


def empty_batch():
    """A valid input: B = 0 requests give an empty outcome."""
    import torch

    import ega_sim
    from ega_sim.world.position_auction import AuctionRequests

    mechanism = ega_sim.make_mechanism("cascade/gsp", "three_bidders_two_slots")
    none = torch.empty(0, 3, dtype=torch.float64)
    outcome = mechanism.run(AuctionRequests(none, none.clone()), none)
    return tuple(outcome.slot_bidder.shape), tuple(outcome.price_per_click.shape)


def empty_outcome(cwd: Path, result: Result) -> str | None:
    shapes = "((0, 2), (0, 2))"
    return None if result.refused or result.message == shapes else f"gave {result.message}"


def ega_sim_call(function: str, *args, **kwargs) -> Callable[[], object]:
    """ega_sim.FUNCTION(*args, **kwargs)."""

    def call():
        import ega_sim

        return getattr(ega_sim, function)(*args, **kwargs)

    return call


def load_scenario(*args) -> Callable[[], object]:
    def call():
        from ega_sim.config import load_scenario

        return load_scenario(*args)

    return call


def gym_step(action, **settings) -> Callable[[], object]:
    """One step of gymnasium.make("ega_sim/AdAuction-v0", scenario="textbook", ...)."""

    def call():
        import gymnasium
        import numpy as np

        import ega_sim  # noqa: F401  (registers the environment)

        env = gymnasium.make("ega_sim/AdAuction-v0", scenario="textbook", **settings)
        env.reset(seed=0)
        return env.step(np.asarray(action, dtype=np.float32))[1]

    return call


def parallel_step(actions: dict, **settings) -> Callable[[], object]:
    """One step of the PettingZoo parallel env on textbook (five bidders)."""

    def call():
        import numpy as np

        from ega_sim.envs import parallel_env

        env = parallel_env(scenario="textbook", **settings)
        env.reset(seed=0)
        return env.step({agent: np.asarray(a, dtype=np.float32) for agent, a in actions.items()})

    return call


BIDDERS = {f"bidder_{i}": [1.0] for i in range(5)}
CALLS = [  # (kind, input, what the message names, the call)
    ("api", "AuctionRequests quality NaN", "quality", lambda: requests_of([[0.9]], [[NAN]])),
    ("api", "AuctionRequests quality 5.0", "quality", lambda: requests_of([[0.9]], [[5.0]])),
    ("api", "AuctionRequests quality 0", "quality", lambda: requests_of([[0.9]], [[0.0]])),
    (
        "api",
        "AuctionRequests value inf",
        "value_per_click",
        lambda: requests_of([[float("inf")]], [[1.0]]),
    ),
    (
        "api",
        "AuctionRequests bool values",
        "value_per_click",
        lambda: requests_of([[True, False]], [[1.0, 1.0]]),
    ),
    (
        "api",
        "AuctionRequests values [N], not [B, N]",
        "value_per_click",
        lambda: requests_of([0.9, 0.5], [1.0, 1.0]),
    ),
    ("api", "bool bids", "bids", run_bids([[True, False]])),
    ("api", "negative bid", "bids", run_bids([[0.5, -0.1]])),
    ("api", "bids of the wrong shape", "bids", run_bids([[0.5, 0.1, 0.3]])),
    (
        "api",
        "make_mechanism cascade/second",
        "cascade/second",
        ega_sim_call("make_mechanism", "cascade/second", "textbook"),
    ),
    ("api", 'make_mechanism "vcg"', "vcg", ega_sim_call("make_mechanism", "vcg", "textbook")),
    (
        "api",
        "evaluate requests=0",
        "requests",
        ega_sim_call("evaluate", "cascade/gsp", "textbook", requests=0),
    ),
    (
        "api",
        'evaluate misreport="random"',
        "misreport",
        ega_sim_call("evaluate", "cascade/gsp", "textbook", requests=10, misreport="random"),
    ),
    (
        "api",
        "make_world device meta",
        "device",
        ega_sim_call("make_world", "single_slot", device="meta"),
    ),
    (
        "api",
        'load_scenario override "values.hihg"',
        "values.hihg",
        load_scenario("textbook", {"values.hihg": 2.0}),
    ),
    ("env", "AdAuction-v0 action 5.0, box [0, 2]", "action", gym_step([5.0])),
    ("env", "AdAuction-v0 action NaN", "action", gym_step([NAN])),
    ("env", "AdAuction-v0 action of shape (2,)", "action", gym_step([1.0, 1.0])),
    (
        "env",
        "AdAuction-v0 requests_per_step=0",
        "requests_per_step",
        gym_step([1.0], requests_per_step=0),
    ),
    ("env", "AdAuction-v0 focal=99", "focal", gym_step([1.0], focal=99)),
    (
        "env",
        "parallel step, unknown agent bidder_99",
        "bidder_99",
        parallel_step({**BIDDERS, "bidder_99": [1.0]}),
    ),
    (
        "env",
        "parallel step without bidder_4",
        "bidder_4",
        parallel_step({f"bidder_{i}": [1.0] for i in range(4)}),
    ),
    (
        "env",
        "parallel step, bidder_0 action 5.0",
        "bidder_0",
        parallel_step({**BIDDERS, "bidder_0": [5.0]}),
    ),
    ("env", 'parallel env reward="money"', "reward", parallel_step(BIDDERS, reward="money")),
]


def cases() -> list[Case]:
    """Every case, from the tables above and a few of their own."""
    scenario = "evaluate --scenario s.toml --requests 8 --misreport none"

    def names(*items: str) -> tuple[str, ...]:
        return tuple(item for item in items if item and item != "''")

    built = [
        Case(
            "scenario",
            what,
            cli(scenario, {"s.toml": edit(base, old, new)}),
            names("s.toml", f"'{key}'"),
        )
        for edits, base in (
            (POSITION_EDITS, POSITION),
            (FEED_EDITS, shipped("feed_small")),
            (MIXTURE_EDITS, shipped("bimodal_ironing")),
        )
        for what, key, old, new in edits
    ]
    built += [
        Case("scenario", "empty file", cli(scenario, {"s.toml": ""}), ("s.toml",)),
        Case("scenario", "missing file", cli("evaluate --scenario no.toml"), ("no.toml",)),
        Case(
            "scenario",
            "bytes that are not UTF-8",
            cli(scenario, {"s.toml": b"\xff\xfe"}),
            ("s.toml",),
        ),
        Case(
            "scenario",
            "reserve 2.0 with values U[0, 1] (valid)",
            cli(
                "evaluate --scenario s.toml --mechanism cascade/gsp cascade/vcg --requests 16 "
                "--misreport exact --json",
                {"s.toml": edit(POSITION, "reserve = 0.0", "reserve = 2.0")},
            ),
            valid=True,
            check=null_ratios,
        ),
    ]
    built += [
        Case(
            "experiment",
            what,
            cli(RUN, {"e.toml": text, "s.toml": POSITION}),
            names("e.toml", f"'{key}'"),
        )
        for what, key, text in EXPERIMENTS
    ]
    built += [
        Case("experiment", "missing file", cli("run no.toml --quick"), ("no.toml",)),
        Case(
            "experiment",
            'name = "../../ESCAPED", default --out',
            cli(
                "run e.toml --quick --workers 1",
                {"e.toml": 'name = "../../ESCAPED"\n' + EXPERIMENT, "s.toml": POSITION},
            ),
            ("e.toml", "'name'"),
        ),
        Case(
            "experiment",
            "scenario name escaping, --quick --out A/B/out",
            cli(
                "run e.toml --quick --workers 1 --out A/B/out",
                {"e.toml": PAYNET_EXPERIMENT, "s.toml": edit(POSITION, "small", ESCAPING)},
            ),
            ("s.toml", "'name'"),
            confine="A/B/out",
        ),
    ]
    built += [
        Case("cli", what, cli(argv, files), tuple(named.split()))
        for what, named, argv, files in ARGUMENTS
    ]
    built += [
        Case(
            "logs" if fixture == "logs" else "checkpoint",
            what,
            cli(argv, prepare=copy_of(fixture, damage, file)),
            (f"{'L' if fixture == 'logs' else 'ck'}/{file}",),
            check=code_did_not_run if damage is pickle_that_runs_code else None,
        )
        for what, argv, fixture, file, damage in DAMAGES
    ]
    built += [
        Case(
            "logs" if fixture == "logs" else "checkpoint",
            what,
            cli(argv, files, copy_of(fixture)),
            (named,),
        )
        for what, argv, fixture, files, named in ELSEWHERE
    ]
    built += [Case(kind, what, api(call), (named,)) for kind, what, named, call in CALLS]
    built.append(
        Case("api", "empty batch, B = 0 (valid)", api(empty_batch), valid=True, check=empty_outcome)
    )
    return built


# ---------------------------------------------------------------------------------------------
# Running the battery.


def make_fixtures(root: Path) -> Fixtures:
    """Train the tiny checkpoints and logs the damaged copies start from (some 30 s)."""
    fixtures = Fixtures(root)
    root.mkdir(parents=True, exist_ok=True)
    (root / "paynet.toml").write_text(TINY_PAYNET)
    steps = [
        "train --scenario single_slot --mechanism cascade/paynet --config paynet.toml "
        "--out paynet_ck",
        "simulate-logs --scenario feed_small --requests 2000 --out logs",
        "train --scenario feed_small --mechanism cascade/gsp --logs logs --epochs 1 "
        "--out cascade_ck",
    ]
    for argv in steps:
        result = cli(argv).execute(root)
        if result.refused or result.traceback:
            raise SystemExit(
                f"bad_inputs: could not make the fixtures: ega-sim {argv}: {result.message}"
            )
    return fixtures


def _files(folder: Path, skip: Path | None = None) -> set[Path]:
    """Every file under `folder` (not under `skip`; caches aside)."""
    found = set()
    for top, dirs, names in os.walk(folder):
        dirs[:] = [d for d in dirs if d != "__pycache__" and Path(top, d) != skip]
        found.update(Path(top, name) for name in names)
    return found


def run_case(number: int, case: Case, out: Path, fixtures: Fixtures) -> tuple[str, str]:
    """Run one case in its own folder; any file it writes outside `confine` is an escape."""
    cwd = out.joinpath("cases", f"{number:03d}", *DEPTH)
    cwd.mkdir(parents=True)
    case.run.setup(cwd, fixtures)
    before = _files(out)
    result = case.run.execute(cwd)
    allowed = (cwd / case.confine).resolve()
    escaped = sorted(
        str(path.relative_to(out))
        for path in _files(out) - before
        if not path.resolve().is_relative_to(allowed)
    )
    return classify(case, result, escaped, cwd)


EPILOG = """examples:
  nice -n 10 python scripts/bad_inputs.py        # all of them, in a temporary folder (~6 min)
  python scripts/bad_inputs.py --only api env   # in-process cases only (seconds)
  python scripts/bad_inputs.py --out runs/bad_inputs   # keep every case's folder and
                                                       # results.jsonl (full messages)

Run it from the repository root (or any quiet folder): files that other programs create in
the current directory meanwhile are reported as having appeared there.
exit status: 0 when every input is clear and nothing appeared outside the folder, 1 otherwise.
"""


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0] + " Prints one line per input and the counts.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--out", help="folder for every file written (default: a temporary one)")
    parser.add_argument(
        "--only",
        nargs="+",
        choices=KINDS,
        metavar="KIND",
        help=f"run only these kinds of input: {', '.join(KINDS)}",
    )
    args = parser.parse_args(argv)

    sys.path.insert(0, str(ROOT))  # the in-process cases use this checkout's package too
    sys.dont_write_bytecode = True
    here = Path.cwd().resolve()
    temporary = args.out is None
    out = Path(tempfile.mkdtemp(prefix="ega-sim-bad-inputs-") if temporary else args.out)
    out = out.resolve()
    if out.exists() and any(out.iterdir()):
        parser.error(f"--out: expected an empty or new folder, got {str(out)!r}")
    before_here = _files(here, skip=out)
    try:
        started = time.monotonic()
        selected = [c for c in cases() if args.only is None or c.kind in args.only]
        trained = any(case.kind in ("checkpoint", "logs") for case in selected)
        fixtures = (make_fixtures if trained else Fixtures)(out / "fixtures")
        counts: Counter[str] = Counter()
        records = []
        for number, case in enumerate(selected, 1):
            outcome, message = run_case(number, case, out, fixtures)
            counts[outcome] += 1
            first = message.strip().splitlines()[0] if message.strip() else ""
            print(f"{case.kind:<10} {case.what:<46.46} {outcome:<9} {first}", flush=True)
            records.append(
                {"kind": case.kind, "input": case.what, "outcome": outcome, "message": message}
            )
        (out / "results.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
        appeared = sorted(str(p.relative_to(here)) for p in _files(here, skip=out) - before_here)
        if appeared:
            print(f"files that appeared outside {out} in {here}: {', '.join(appeared[:10])}")
        summary = ", ".join(f"{counts[o]} {o}" for o in OUTCOMES)
        seconds = time.monotonic() - started
        print(f"{len(selected)} inputs: {summary} ({seconds:.0f} s)")
        if not temporary:
            print(f"details: {out / 'results.jsonl'}")
    finally:
        if temporary:
            shutil.rmtree(out, ignore_errors=True)
    return 0 if counts["clear"] == len(selected) and not appeared else 1


if __name__ == "__main__":
    sys.exit(main())
