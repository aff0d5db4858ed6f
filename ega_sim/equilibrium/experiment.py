"""Equilibrium experiment files (experiments/equilibrium.toml): the studies to run and their
settings, read by `ega-sim equilibrium --experiment FILE`.

    seed = 0                      # optional
    certificate_requests = 50000  # optional, as StudySettings
    [learner]                     # optional, LearnerConfig's fields
    steps = 300
    [[study]]
    scenario = "gsp_equilibrium"
    mechanisms = ["cascade/gsp", "cascade/vcg"]
"""

from __future__ import annotations

import tomllib
from dataclasses import fields
from pathlib import Path

from ega_sim.equilibrium.learner import LearnerConfig
from ega_sim.equilibrium.study import StudySettings

TOP_KEYS = {"seed", "certificate_requests", "value_points", "requests", "learner", "study"}


def load_experiment(path: str | Path) -> tuple[list[tuple[str, list[str]]], StudySettings]:
    """([(scenario, mechanisms)], settings) of an experiment file; a ValueError naming the
    file and key for anything unexpected."""
    path = Path(path)
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, tomllib.TOMLDecodeError) as error:
        raise ValueError(f"{path}: expected a readable TOML experiment file ({error})") from None
    unknown = set(data) - TOP_KEYS
    if unknown:
        raise ValueError(f"{path}: unknown key {sorted(unknown)[0]!r}; expected {sorted(TOP_KEYS)}")
    learner = data.get("learner", {})
    known = {f.name for f in fields(LearnerConfig)}
    if not isinstance(learner, dict) or set(learner) - known:
        bad = sorted(set(learner) - known) if isinstance(learner, dict) else learner
        raise ValueError(f"{path}: learner: unknown setting {bad!r}; expected {sorted(known)}")
    try:
        settings = StudySettings(
            learner=LearnerConfig(**learner),
            **{
                key: data[key]
                for key in ("seed", "certificate_requests", "value_points", "requests")
                if key in data
            },
        )
    except (TypeError, ValueError) as error:
        raise ValueError(f"{path}: {error}") from None
    studies = data.get("study")
    if not isinstance(studies, list) or not studies:
        raise ValueError(f"{path}: study: expected at least one [[study]] table")
    plan = []
    for index, study in enumerate(studies):
        scenario, mechanisms = study.get("scenario"), study.get("mechanisms")
        if (
            set(study) != {"scenario", "mechanisms"}
            or not isinstance(scenario, str)
            or not (
                isinstance(mechanisms, list)
                and mechanisms
                and all(isinstance(m, str) for m in mechanisms)
            )
        ):
            raise ValueError(
                f"{path}: study[{index}]: expected scenario = NAME and mechanisms = [NAMES], "
                f"got {study!r}"
            )
        plan.append((scenario, mechanisms))
    return plan, settings
