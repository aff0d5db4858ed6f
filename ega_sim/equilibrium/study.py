"""One equilibrium study: learn a mechanism's strategy profile on a scenario, certify it, and
measure revenue, welfare and utility per request at it and at truthful bids, on fresh requests.

Each study writes OUT/<scenario>/<allocator>_<payment>/: state.pt (the learner's, to resume)
and result.json (the record `ega-sim equilibrium --json` prints); a finished study whose
result.json was made with the same settings is read back instead of rerun.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch

from ega_sim.atomic import write_text_atomic
from ega_sim.config.feed_market import FeedMarketConfig
from ega_sim.equilibrium.certificate import certify, has_exact_certificate, value_grid
from ega_sim.equilibrium.dense import DENSE_BINS, certify_dense
from ega_sim.equilibrium.learner import EquilibriumLearner, LearnerConfig
from ega_sim.equilibrium.strategies import make_bid_function
from ega_sim.equilibrium.theory import known_equilibrium_bid
from ega_sim.evaluation import RunningMoments
from ega_sim.metrics.outcomes import measure_outcome
from ega_sim.progress import Progress
from ega_sim.provenance import provenance
from ega_sim.report_table import finite_or_null
from ega_sim.seeding import make_generator

CURVE_POINTS = 41  # values at which the bid functions are reported


@dataclass(frozen=True)
class StudySettings:
    """A study's learner and how its result is measured."""

    learner: LearnerConfig = field(default_factory=LearnerConfig)
    certificate_requests: int = 50_000
    value_points: int = 32  # value grid of the certificate
    requests: int = 100_000  # for revenue, welfare and utility
    seed: int = 0

    def __post_init__(self) -> None:
        for name in ("certificate_requests", "value_points", "requests"):
            if not isinstance(getattr(self, name), int) or getattr(self, name) < 2:
                raise ValueError(f"{name}: expected an integer >= 2, got {getattr(self, name)!r}")

    def to_dict(self) -> dict:
        return asdict(self)


def study_folder(out: Path, scenario: str, mechanism: str) -> Path:
    return Path(out) / scenario / mechanism.replace("/", "_")


def run_study(
    world, mechanism, settings: StudySettings, out: Path, *, progress: Progress = False
) -> dict:
    """The result record of one (scenario, mechanism) study (module docstring)."""
    scenario = world.config
    exact = has_exact_certificate(mechanism, world)
    if not exact and settings.learner.method == "best_response":
        raise ValueError(
            f"mechanism {mechanism.name} on {scenario.name}: method best_response needs the "
            "exact certificate (rank mechanisms of position auctions); use npga"
        )
    if isinstance(scenario, FeedMarketConfig) and not settings.learner.shared:
        raise ValueError(
            f"--per-seat: a feed market's seats are its requests' candidate ads, not its "
            f"advertisers; {scenario.name} learns one strategy shared by all advertisers"
        )
    folder = study_folder(out, scenario.name, mechanism.name)
    result_path = folder / "result.json"
    if result_path.exists():
        done = json.loads(result_path.read_text())
        if done.get("settings") == finite_or_null(settings.to_dict()):
            return done
    config = settings.learner
    quantile = value_quantile(world, settings.seed)
    bid_function = make_bid_function(
        config.strategy, quantile, knots=config.knots, hidden=config.hidden
    )
    learner = EquilibriumLearner(world, mechanism, bid_function, config, seed=settings.seed)
    state_path = folder / "state.pt"
    learner.resume(state_path)
    label = f"{scenario.name} {mechanism.name}"
    learner.run(state_path=state_path, progress=progress, label=label)

    truthful = bid_function.project(bid_function.initial(1.0, learner.n_strategies)).to(
        world.device
    )
    generator = make_generator(settings.seed, "equilibrium", "certificate")
    fresh = world.sample_requests(settings.certificate_requests, generator)
    profiles = {"equilibrium": learner.profile, "truthful": truthful}
    if exact:
        grid = value_grid(quantile, settings.value_points)
        certificates = {
            name: certify(mechanism, world, fresh, bid_function, p, learner.seat_strategy, grid)
            for name, p in profiles.items()
        }
    else:
        edges = [float(quantile(j / DENSE_BINS)) for j in range(1, DENSE_BINS)]
        certificates = {
            name: certify_dense(
                mechanism, world, fresh, learner.bids(fresh.value_per_click, p), edges
            )
            for name, p in profiles.items()
        }
    generator = make_generator(settings.seed, "equilibrium", "measure")
    measured = world.sample_requests(settings.requests, generator)
    record = {
        "mechanism": mechanism.name,
        "scenario": scenario.name,
        "seed": settings.seed,
        "steps": learner.step_index,
        "learner_seconds": learner.seconds,
        "steps_per_second": learner.steps_per_second,
    }
    for name, parameters in profiles.items():
        prefix = "" if name == "equilibrium" else "truthful_"
        figures = measure_profile(
            mechanism, world, measured, learner.bids(measured.value_per_click, parameters)
        )
        figures.update(certificates[name].summary())
        record.update({prefix + key: value for key, value in figures.items()})
    record["bid_function"] = bid_curve(
        learner, quantile, known_equilibrium_bid(scenario, mechanism.name)
    )
    record["certificate"] = "exact" if exact else f"dense ({DENSE_BINS} value bins)"
    record["settings"] = settings.to_dict()
    record["provenance"] = provenance()
    record = finite_or_null(record)
    write_text_atomic(result_path, json.dumps(record, allow_nan=False) + "\n")
    return record


def value_quantile(world, seed: int, requests: int = 20_000):
    """The quantile function of a seat's value per click: the scenario's distribution in a
    position auction; in a feed market the empirical one of `requests` requests' candidate
    ads (seeded from the run's seed), unbounded at 1 (the sample's top is not the support's)."""
    scenario = world.config
    if not isinstance(scenario, FeedMarketConfig):
        return scenario.values.quantile
    generator = make_generator(seed, "equilibrium", "values")
    sample = world.sample_requests(requests, generator).value_per_click.flatten()
    ordered = np.sort(sample.cpu().numpy())

    def quantile(p: float) -> float:
        return math.inf if p >= 1 else float(np.quantile(ordered, p))

    return quantile


@torch.no_grad()
def measure_profile(mechanism, world, requests, bids: torch.Tensor, chunk: int = 16_384) -> dict:
    """Revenue, welfare and total advertiser utility per request at `bids` [R, N], with their
    standard errors, under the ground-truth click model."""
    moments = {name: RunningMoments() for name in ("revenue", "welfare", "utility")}
    for start in range(0, bids.shape[0], chunk):
        part = requests.slice(start, start + chunk)
        part_bids = bids[start : start + chunk]
        outcome = mechanism.run(part, part_bids)
        clicks = world.expected_clicks(part, outcome.allocation)
        measured = measure_outcome(part, part_bids, outcome, clicks)
        moments["revenue"].add(measured.revenue)
        moments["welfare"].add(measured.welfare)
        moments["utility"].add(measured.utility.sum(1))
    figures = {}
    for name, summed in moments.items():
        figures[name], figures[f"{name}_se"] = summed.mean_and_se()
    return figures


def bid_curve(learner: EquilibriumLearner, quantile, theory) -> dict:
    """The learned bid functions (one per strategy) and the closed form where known, at
    CURVE_POINTS values across the value distribution."""
    top = 1.0 if math.isfinite(float(quantile(1.0))) else 0.995
    values = np.array([float(quantile(top * j / (CURVE_POINTS - 1))) for j in range(CURVE_POINTS)])
    device = learner.profile.device
    seats = torch.as_tensor(values, dtype=torch.float64, device=device)
    seats = seats.unsqueeze(1).expand(-1, learner.seat_strategy.shape[0]).contiguous()
    bids = learner.bids(seats).cpu().numpy()  # [V, N]
    first_seat = [
        int((learner.seat_strategy == s).nonzero()[0, 0]) for s in range(learner.n_strategies)
    ]
    return {
        "values": values.tolist(),
        "bids": [bids[:, seat].tolist() for seat in first_seat],
        "theory": None if theory is None else theory(values).tolist(),
    }
