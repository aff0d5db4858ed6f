"""Equilibrium experiment files (experiments/equilibrium.toml): the studies to run and their
settings, read by `ega-sim run FILE` or `ega-sim equilibrium --experiment FILE`.

    kind = "equilibrium"          # what tells `ega-sim run` this is such a file
    seed = 0                      # optional
    certificate_requests = 50000  # optional, as StudySettings
    [learner]                     # optional, LearnerConfig's fields
    steps = 600
    [[study]]
    scenario = "gsp_equilibrium"
    mechanisms = ["cascade/gsp", "cascade/vcg"]
    [[study]]                     # a feed market: its learned cascade reads a checkpoint
    scenario = "feed_small"
    mechanisms = ["cascade/gsp", "cascade/vcg"]
    checkpoint = "runs/feed_small_cascade"  # trained there (`ega-sim train`) if it is not yet
    certificate_requests = 2000   # optional per study: overrides the settings above
    requests = 5000
    learner = {steps = 150, batch = 256}
"""

from __future__ import annotations

import dataclasses
import sys
import tomllib
from collections.abc import Iterator
from dataclasses import dataclass, fields
from pathlib import Path

from ega_sim.equilibrium.learner import LearnerConfig
from ega_sim.equilibrium.study import StudySettings

SETTING_KEYS = ("seed", "certificate_requests", "value_points", "requests")
TOP_KEYS = {*SETTING_KEYS, "kind", "learner", "study"}
KIND = "equilibrium"
STUDY_KEYS = {"scenario", "mechanisms", "checkpoint", "learner", *SETTING_KEYS[1:]}


@dataclass(frozen=True)
class PlannedStudy:
    """One [[study]]: a scenario, its mechanisms, their settings and checkpoint folder."""

    scenario: str
    mechanisms: tuple[str, ...]
    settings: StudySettings
    checkpoint: str | None = None


def _settings(path: Path, where: str, table: dict, base: StudySettings) -> StudySettings:
    learner = table.get("learner", {})
    known = {f.name for f in fields(LearnerConfig)}
    if not isinstance(learner, dict) or set(learner) - known:
        bad = sorted(set(learner) - known) if isinstance(learner, dict) else learner
        raise ValueError(
            f"{path}: {where}learner: unknown setting {bad!r}; expected {sorted(known)}"
        )
    try:
        return dataclasses.replace(
            base,
            learner=dataclasses.replace(base.learner, **learner),
            **{key: table[key] for key in SETTING_KEYS if key in table},
        )
    except (TypeError, ValueError) as error:
        raise ValueError(f"{path}: {where}{error}") from None


def load_experiment(path: str | Path) -> list[PlannedStudy]:
    """The studies of an experiment file; a ValueError naming the file and key for anything
    unexpected."""
    path = Path(path)
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, tomllib.TOMLDecodeError) as error:
        raise ValueError(f"{path}: expected a readable TOML experiment file ({error})") from None
    unknown = set(data) - TOP_KEYS
    if unknown:
        raise ValueError(f"{path}: unknown key {sorted(unknown)[0]!r}; expected {sorted(TOP_KEYS)}")
    if data.get("kind", KIND) != KIND:
        raise ValueError(f"{path}: kind: expected {KIND!r}, got {data['kind']!r}")
    settings = _settings(path, "", data, StudySettings())
    studies = data.get("study")
    if not isinstance(studies, list) or not studies:
        raise ValueError(f"{path}: study: expected at least one [[study]] table")
    plan = []
    for index, study in enumerate(studies):
        where = f"study[{index}]: "
        scenario, mechanisms = study.get("scenario"), study.get("mechanisms")
        checkpoint = study.get("checkpoint")
        if (
            set(study) - STUDY_KEYS
            or not isinstance(scenario, str)
            or not (
                isinstance(mechanisms, list)
                and mechanisms
                and all(isinstance(m, str) for m in mechanisms)
            )
            or not (checkpoint is None or isinstance(checkpoint, str))
        ):
            raise ValueError(
                f"{path}: {where}expected scenario = NAME, mechanisms = [NAMES] and optionally "
                f"{', '.join(sorted(STUDY_KEYS - {'scenario', 'mechanisms'}))}; got {study!r}"
            )
        own = _settings(path, where, study, settings)
        plan.append(PlannedStudy(scenario, tuple(mechanisms), own, checkpoint))
    return plan


def is_equilibrium_experiment(path: str | Path) -> bool:
    """Whether `path` is a TOML file with kind = "equilibrium" (False when it cannot be read:
    the experiment loader then says why)."""
    try:
        data = tomllib.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError):
        return False
    return data.get("kind") == KIND


def run_plan(
    plan: list[PlannedStudy], out: Path, *, device: str = "cpu", train_missing: bool = False
) -> Iterator[dict]:
    """Run the studies of `plan` into the folder `out`, yielding each mechanism's record as it
    finishes. Every world and mechanism is built first, so a bad name or a missing checkpoint
    fails before any work; with `train_missing`, a study's learned cascade is first trained into
    its checkpoint folder when that is empty (as `ega-sim run` does)."""
    from ega_sim.equilibrium.study import run_study
    from ega_sim.mechanisms.registry import learns, make_mechanism
    from ega_sim.world.build import make_world

    worlds = {study.scenario: make_world(study.scenario, device) for study in plan}
    if train_missing:
        for study in plan:
            train_missing_checkpoint(worlds[study.scenario], study, sys.stderr)
    built = [
        (study, world, make_mechanism(name, world, checkpoint=checkpoint))
        for study in plan
        for world in (worlds[study.scenario],)
        for name in study.mechanisms
        for checkpoint in (study.checkpoint if learns(name, world) else None,)
    ]
    for study, world, mechanism in built:
        yield run_study(world, mechanism, study.settings, out, progress=True)


def train_missing_checkpoint(world, study: PlannedStudy, log) -> None:
    """Train the learned allocator of `study`'s mechanisms into its checkpoint folder when that
    holds no checkpoint yet (what `ega-sim train` writes), reporting to `log`."""
    from ega_sim.mechanisms.registry import learns
    from ega_sim.training import train_mechanism

    learned = [name for name in study.mechanisms if learns(name, world)]
    if not learned or study.checkpoint is None:
        return  # nothing to train, or make_mechanism names the missing checkpoint
    if (Path(study.checkpoint) / "checkpoint.json").is_file():
        return
    allocator = learned[0].partition("/")[0]
    report = train_mechanism(
        world, f"{allocator}/gsp", Path(study.checkpoint), seed=study.settings.seed
    )
    print(report, file=log, flush=True)
