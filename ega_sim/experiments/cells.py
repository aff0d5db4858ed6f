"""Cells: the independent tasks of an experiment (scenario x mechanism x sweep point x seed),
and the plan that says which trained artifacts each one needs.

A cell's id hashes everything its result depends on, so a finished cell is reused only by an
identical cell. Its requests come from its `seed`, shared by every mechanism of the same
scenario and seed (common random numbers: differences between mechanisms are paired), and a
cell gives the same numbers whichever worker or executor runs it (the torch thread count is
fixed per worker). A cell that loads a learned part has that part's id in its own, and the
part's id holds the thread count it was trained with (when not 1): figures learned with
`--threads 2` are never mixed with those learned with one thread. Cells without learned parts
agree across thread counts to the last digit or so, and keep their ids.
"""

from __future__ import annotations

import dataclasses
import json
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ega_sim.config.feed_market import FeedMarketConfig
from ega_sim.config.scenario import PositionAuctionConfig, ScenarioConfig, load_scenario
from ega_sim.experiments.artifacts import (
    Artifact,
    _digest,
    artifact_path,
    finished,
    scenario_identity,
)
from ega_sim.experiments.spec import (
    ExperimentSpec,
    MechanismSpec,
    StudySpec,
    merge_tables,
    set_dotted,
)
from ega_sim.mechanisms.registry import GENERATIVE_ALLOCATORS
from ega_sim.metrics.regret import MisreportSpec
from ega_sim.metrics.regret_summary import RATIO_FIGURES


@dataclass(frozen=True)
class Cell:
    experiment: str
    kind: str  # "evaluate" or "misreport"
    scenario: str  # reference: shipped name or path
    overrides: dict[str, Any]  # scenario keys set by the sweep point
    mechanism: MechanismSpec  # settings of the sweep point merged in
    sweep: dict[str, Any]  # the sweep point, as table columns
    seed: int
    requests: int
    regret_requests: int
    misreport: str
    device: str
    study: StudySpec
    checkpoint: str | None  # artifact id whose folder the mechanism loads, if learned
    trained_from: tuple[str, ...] = ()  # every artifact it rests on (for training time)
    regret_bidders: str = "default"  # whose misreports are searched (MisreportSpec.bidders)
    # The scenario with the overrides applied, validated (loaded here when not given).
    validated: ScenarioConfig | None = field(default=None, compare=False, repr=False)
    id: str = field(default="", compare=False)

    @property
    def searched_bidders(self) -> str:
        """ "shown" or "all": the cell's regret bidders, the mechanism's default resolved."""
        if self.regret_bidders != "default":
            return self.regret_bidders
        return "shown" if self.mechanism.allocator in GENERATIVE_ALLOCATORS else "all"

    def __post_init__(self) -> None:
        if self.validated is None:
            validated = load_scenario(self.scenario, self.overrides or None)
            object.__setattr__(self, "validated", validated)
        identity = {
            "kind": self.kind,
            "scenario": scenario_identity(self.validated),
            "mechanism": dataclasses.asdict(self.mechanism),
            "sweep": self.sweep,  # two points may give one scenario; each keeps its cell
            "seed": self.seed,
            "requests": self.requests,
            "regret_requests": self.regret_requests,
            "misreport": self.misreport,
            "device": self.device,
            "study": dataclasses.asdict(self.study) if self.kind == "misreport" else None,
            "checkpoint": self.checkpoint,
        }
        if self.searched_bidders != "all":  # cells searching every bidder keep their old ids
            identity["regret_bidders"] = self.searched_bidders
        safe = self.mechanism.label.replace("/", "_").replace(" ", "_")
        name = f"{safe}-s{self.seed}-{_digest(identity)}"
        object.__setattr__(self, "id", name)


@dataclass
class Plan:
    cells: list[Cell]
    artifacts: dict[str, Artifact]  # id -> artifact, dependencies before dependents


def _split_point(point: dict[str, Any]) -> tuple[dict, dict, dict]:
    """A sweep point's scenario overrides, inference settings and training overrides."""
    scenario, settings, training = {}, {}, {}
    for key, value in point.items():
        prefix, _, rest = key.partition(".")
        if prefix == "scenario":
            scenario[rest] = value
        elif prefix == "mechanism":
            settings[rest] = value
        else:
            training = set_dotted(training, rest, value)
    return scenario, settings, training


class _Planner:
    def __init__(self, spec: ExperimentSpec, threads: int = 1):
        self.spec = spec
        self.threads = threads  # torch threads per task: part of a learned part's identity
        self.artifacts: dict[str, Artifact] = {}
        self.scenarios: dict[str, ScenarioConfig] = {}  # each scenario variant loaded once

    def scenario(self, reference: str, overrides: dict) -> ScenarioConfig:
        """The validated scenario of a reference with a sweep point's overrides."""
        key = json.dumps([reference, overrides], sort_keys=True, default=str)
        if key not in self.scenarios:
            self.scenarios[key] = load_scenario(reference, overrides or None)
        return self.scenarios[key]

    def add(self, artifact: Artifact) -> str:
        self.artifacts.setdefault(artifact.id, artifact)
        return artifact.id

    def chain(self, scenario, overrides, mechanism: MechanismSpec, training: dict, seed: int):
        """The artifact the mechanism loads (None if nothing is learned) and all it rests on."""
        spec = self.spec
        validated = self.scenario(scenario, overrides)
        feed = isinstance(validated, FeedMarketConfig)

        def section(name: str) -> dict:
            merged = merge_tables(spec.training.sections.get(name, {}), training.get(name, {}))
            return merge_tables(merged, mechanism.training.get(name, {}))

        allocator, payment = mechanism.allocator, mechanism.payment
        chain: list[str] = []
        base = None
        if feed and allocator in ("cascade", *GENERATIVE_ALLOCATORS):
            logs = self.add(
                Artifact(
                    "logs",
                    scenario,
                    overrides,
                    {},
                    seed,
                    spec.training.log_requests,
                    validated=validated,
                )
            )
            kind = "cascade" if allocator == "cascade" else "generative"
            config = section("cascade" if kind == "cascade" else "ega")
            base = self.add(
                Artifact(
                    kind,
                    scenario,
                    overrides,
                    config,
                    seed,
                    needs=(logs,),
                    device=spec.device,
                    threads=self.threads,
                    validated=validated,
                )
            )
            chain = [logs, base]
        if payment == "paynet":
            needs = () if base is None else (base,)
            paynet = Artifact(
                "paynet",
                scenario,
                overrides,
                section("paynet"),
                seed,
                allocator=allocator,
                needs=needs,
                device=spec.device,
                threads=self.threads,
                validated=validated,
            )
            chain.append(self.add(paynet))
        return (chain[-1] if chain else None), tuple(chain)


def plan_experiment(spec: ExperimentSpec, threads: int = 1) -> Plan:
    """Every cell of the experiment and the artifacts they need, in a fixed order; `threads`
    is the torch thread count of the tasks (it shapes what is learned, hence the ids)."""
    planner = _Planner(spec, threads)
    cells = []
    for scenario in spec.scenarios:
        for point in spec.sweep_points():
            overrides, settings, training = _split_point(point)
            for mechanism in spec.mechanisms:
                merged = dataclasses.replace(mechanism, settings={**mechanism.settings, **settings})
                for seed in spec.seeds:
                    training_seed = seed if spec.training.per_seed else spec.training.seed
                    checkpoint, chain = planner.chain(
                        scenario, overrides, merged, training, training_seed
                    )
                    requests = mechanism.requests or spec.requests
                    cells.append(
                        Cell(
                            experiment=spec.name,
                            kind=spec.kind,
                            scenario=scenario,
                            overrides=overrides,
                            mechanism=merged,
                            sweep=point,
                            seed=seed,
                            requests=requests,
                            regret_requests=min(
                                requests, mechanism.regret_requests or spec.regret_requests
                            ),
                            misreport=spec.misreport,
                            device=spec.device,
                            study=spec.study,
                            checkpoint=checkpoint,
                            trained_from=chain,
                            regret_bidders=spec.regret_bidders,
                            validated=planner.scenario(scenario, overrides),
                        )
                    )
    return Plan(cells, planner.artifacts)


def run_cell(cell: Cell, artifacts_root: Path) -> dict:
    """Compute one cell on its world; returns its record (metrics, curve, regret sample,
    closed forms where known, provenance)."""
    from ega_sim.world.build import make_world

    started = time.perf_counter()
    scenario = cell.validated
    world = make_world(scenario, cell.device)
    checkpoint = None if cell.checkpoint is None else artifact_path(artifacts_root, cell.checkpoint)
    if cell.kind == "misreport":
        metrics, curve, regret = _study_cell(cell, world, checkpoint)
    else:
        metrics, curve, regret = _evaluate_cell(cell, world, checkpoint)
    train_seconds = sum(
        (finished(artifacts_root, artifact_id) or {}).get("seconds", math.nan)
        for artifact_id in cell.trained_from
    )
    from ega_sim.provenance import provenance

    closed_form = None
    if cell.kind == "evaluate" and isinstance(scenario, PositionAuctionConfig):
        from ega_sim.experiments.theory import closed_form as theory

        closed_form = theory(scenario, cell.mechanism.name)
    return {
        "cell": cell.id,
        "experiment": cell.experiment,
        "scenario": scenario.name,
        "label": cell.mechanism.label,
        "mechanism": cell.mechanism.name,
        "seed": cell.seed,
        "sweep": cell.sweep,
        "requests": cell.requests,
        "regret_requests": cell.regret_requests,
        "misreport": cell.misreport,
        "device": cell.device,
        "metrics": metrics,
        "curve": curve,
        "regret": regret,
        "closed_form": closed_form,
        "seconds": time.perf_counter() - started,
        "train_seconds": train_seconds if cell.trained_from else math.nan,
        **provenance(),
    }


def _not_nan(value: float) -> float | None:
    return None if math.isnan(value) else value


# Metrics of an evaluation cell: (name, field of EvaluationResult, field of its SE or None).
EVALUATE_METRICS = (
    ("revenue_per_request", "revenue_per_request", "revenue_per_request_se"),
    ("rpm", "rpm", None),
    ("welfare_per_request", "welfare_per_request", "welfare_per_request_se"),
    ("utility_per_request", "utility_per_request", "utility_per_request_se"),
    ("clicks_per_request", "clicks_per_request", "clicks_per_request_se"),
    ("ads_per_request", "ads_per_request", None),
    ("ad_load", "ad_load", None),
    ("ctr_poi", "ctr_poi", None),
    ("ctr_img", "ctr_img", None),
    ("feed_ctr_poi", "feed_ctr_poi", None),
    ("gmv_per_request", "gmv_per_request", None),
    ("regret_mean", "regret_mean", "regret_mean_se"),
    ("regret_max", "regret_max", None),
    ("psi", "psi", None),
    ("psi_per_ad", "psi_per_ad", None),
    ("regret_mean_model", "regret_mean_model", None),
    ("psi_model", "psi_model", None),
    ("ir_violation_rate", "ir_violation_rate", None),
    ("non_monotone_rate", "non_monotone_rate", None),
    ("ctr_poi_model", "ctr_poi_model", None),
    ("rpm_model", "rpm_model", None),
)


FEED_ONLY_METRICS = ("ctr_img", "gmv_per_request")  # image clicks and orders: feed markets


def _applies(name: str, world, result) -> bool:
    """Whether a cell has figure `name` at all. One it has can still be undefined (NaN, null
    in the record, empty in results.csv): a ratio with nothing in its denominator, like psi
    when truthful bidders earn nothing or ctr_poi when no ad is shown."""
    if name in FEED_ONLY_METRICS:
        return isinstance(world.config, FeedMarketConfig)
    if name == "non_monotone_rate":  # generated lists' regret search only: absent elsewhere
        return False
    if name in (*RATIO_FIGURES, "regret_max"):
        return result.regret_requests > 0  # a regret search ran
    return True


def _evaluate_cell(cell: Cell, world, checkpoint):
    from ega_sim.evaluation import evaluate_detailed
    from ega_sim.mechanisms.registry import make_mechanism

    mechanism = make_mechanism(
        cell.mechanism.name,
        world,
        checkpoint=checkpoint,
        settings=cell.mechanism.settings or None,
    )
    result, details = evaluate_detailed(
        mechanism,
        world,
        requests=cell.requests,
        seed=cell.seed,
        misreport=MisreportSpec(cell.misreport, bidders=cell.regret_bidders),
        regret_requests=cell.regret_requests,
        threads=None,  # the task's (executors.run_task)
    )
    metrics = {}
    for name, key, se_key in EVALUATE_METRICS:
        value = getattr(result, key)
        if math.isnan(value) and not _applies(name, world, result):
            continue  # a figure this cell does not have; an undefined one is kept, as null
        se = math.nan if se_key is None else getattr(result, se_key)
        if name == "rpm":
            se = 1000.0 * result.revenue_per_request_se
        metrics[name] = [_not_nan(value), _not_nan(se)]
    curve = None
    if details.multipliers:
        curve = {
            "multiplier": list(details.multipliers),
            "utility": list(details.curve_utility),
            "utility_se": [_not_nan(x) for x in details.curve_utility_se],
        }
    regret = {
        "regret": list(details.regret_sample),
        "utility": list(details.utility_sample),
        "bidders": result.regret_bidders,
        "pairs": result.regret_pairs,
        "ratios": details.ratio_sums,  # per-request sums behind each regret figure, to pool
        "intervals": {  # each regret figure's 95% interval over the cell's requests
            name: [_not_nan(bound) for bound in getattr(result, f"{name}_interval")]
            for name in RATIO_FIGURES
            if name in metrics
        },
    }
    return metrics, curve, regret


def _study_cell(cell: Cell, world, checkpoint):
    from ega_sim.envs.misreport import run_misreport_study

    study = cell.study
    table = run_misreport_study(
        world,
        [cell.mechanism.name],
        checkpoint=checkpoint,
        requests=cell.requests,
        seed=cell.seed,
        bandit_steps=study.bandit_steps,
        ppo_steps=study.ppo_steps,
        requests_per_step=study.requests_per_step,
        threads=None,  # the task's (executors.run_task)
    )
    curve_rows = table[table["kind"] == "curve"]
    truthful = float(
        curve_rows.loc[curve_rows["multiplier"].sub(1.0).abs().idxmin()]["utility_per_request"]
    )
    metrics = {"truthful_utility": [truthful, None]}
    for kind in ("best_response", "bandit", "ppo"):
        rows = table[table["kind"] == kind]
        if rows.empty:
            continue
        short = "best" if kind == "best_response" else kind
        row = rows.iloc[0]
        metrics[f"{short}_multiplier"] = [float(row["multiplier"]), None]
        metrics[f"{short}_gain"] = [_not_nan(float(row["gain_over_truthful"])), None]
    curve = {
        "multiplier": curve_rows["multiplier"].astype(float).tolist(),
        "utility": curve_rows["utility_per_request"].astype(float).tolist(),
        "utility_se": [_not_nan(x) for x in curve_rows["utility_se"].astype(float)],
    }
    return metrics, curve, None
