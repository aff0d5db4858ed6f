"""Experiment files: what to run, validated once when the file is read.

An experiment names scenarios, mechanisms, seeds and what to measure; the runner expands it
into cells (scenario x mechanism x sweep point x seed). Every key is documented in
`experiments/README.md`; an unknown key or a bad value is a ConfigError naming the file and
the key. `--quick` shrinks requests and training (`quick_spec`) for a smoke run.
"""

from __future__ import annotations

import dataclasses
import itertools
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ega_sim.config.errors import ConfigError
from ega_sim.config.reader import TableReader, read_toml
from ega_sim.config.scenario import load_scenario, resolve_scenario_path
from ega_sim.generative.config import INFERENCE_SETTINGS, EGAConfig, with_settings
from ega_sim.metrics.regret import MISREPORT_METHODS, REGRET_BIDDERS
from ega_sim.report.names import FIGURES, REFERENCES

KINDS = ("evaluate", "misreport")
SWEEP_MODES = ("product", "separate")
SWEEP_PREFIXES = ("scenario.", "mechanism.", "training.")
TRAINING_SECTIONS = ("cascade", "ega", "paynet")


@dataclass(frozen=True)
class MechanismSpec:
    """One mechanism of an experiment; `label` names it in tables and figures."""

    name: str  # ALLOCATOR/PAYMENT
    label: str
    paper: str = ""  # the paper's row it stands beside in a reference table
    settings: dict[str, Any] = field(default_factory=dict)  # inference-time (generative)
    training: dict[str, dict] = field(default_factory=dict)  # section -> overrides
    requests: int | None = None  # overrides the experiment's
    regret_requests: int | None = None

    @property
    def allocator(self) -> str:
        return self.name.partition("/")[0]

    @property
    def payment(self) -> str:
        return self.name.partition("/")[2]


@dataclass(frozen=True)
class TrainingSpec:
    """How learned parts are trained: once (seed `seed`) and shared by every cell that uses
    them, or once per cell seed with `per_seed`."""

    seed: int = 0
    per_seed: bool = False
    log_requests: int = 20_000
    sections: dict[str, dict] = field(default_factory=dict)  # cascade / ega / paynet


@dataclass(frozen=True)
class StudySpec:
    """kind = "misreport": the strategic-advertiser study's budget per cell."""

    bandit_steps: int = 300
    ppo_steps: int = 0
    requests_per_step: int = 64


@dataclass(frozen=True)
class ExperimentSpec:
    name: str
    source: str
    title: str
    description: str
    kind: str
    scenarios: tuple[str, ...]
    mechanisms: tuple[MechanismSpec, ...]
    seeds: tuple[int, ...]
    requests: int
    regret_requests: int
    misreport: str
    figures: tuple[str, ...]
    reference: str
    sweep: dict[str, tuple]  # key -> values
    sweep_mode: str  # "product": every combination; "separate": one key at a time
    training: TrainingSpec
    study: StudySpec
    device: str = "cpu"
    quick: bool = False
    regret_bidders: str = "default"  # whose misreports: shown ads, all, or each mechanism's

    def sweep_points(self) -> list[dict[str, Any]]:
        """The sweep's points ([{}] without a sweep): every combination of the values, or
        with `sweep_mode = "separate"` each key's values alone (the others as configured)."""
        if self.sweep_mode == "separate":
            return [{key: value} for key, values in self.sweep.items() for value in values]
        keys = list(self.sweep)
        combinations = itertools.product(*(self.sweep[k] for k in keys))
        return [dict(zip(keys, values, strict=True)) for values in combinations]

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


def _positive(reader: TableReader, key: str, default: Any) -> int:
    return reader.int(key, default, min=1)


def _optional_positive(reader: TableReader, key: str) -> int | None:
    """An integer >= 1, or None when the key is absent."""
    return reader.int(key, min=1) if reader.has(key) else reader.raw(key, None)


def _plain_table(reader: TableReader, key: str) -> dict:
    """A table of plain values (checked later by the config it feeds)."""
    if not reader.has(key):
        reader.raw(key, None)
        return {}
    value = reader.raw(key)
    if not isinstance(value, dict):
        raise reader.error(key, "a table", value)
    return value


def _training_sections(reader: TableReader, source: str, prefix: str) -> dict[str, dict]:
    sections = {}
    for section in TRAINING_SECTIONS:
        table = _plain_table(reader, section)
        if table:
            _check_training_keys(section, table, source, f"{prefix}{section}")
            sections[section] = table
    return sections


def _check_training_keys(section: str, table: dict, source: str, where: str) -> None:
    """Build the section's config once so a typo fails at load time, naming the key."""
    from ega_sim.training import training_config

    training_config(section, table, f"{source} [{where}]")


def _read_mechanism(item: Any, index: int, source: str) -> MechanismSpec:
    where = f"mechanisms[{index}]"
    if isinstance(item, str):
        return MechanismSpec(name=item, label=item)
    if not isinstance(item, dict):
        raise ConfigError(source, where, "a mechanism name or a table with `name`", item)
    reader = TableReader(item, source, prefix=f"{where}.")
    name = reader.str("name")
    settings = _plain_table(reader, "settings")
    for key in settings:
        if key not in INFERENCE_SETTINGS:
            raise reader.error(
                f"settings.{key}", "one of " + ", ".join(INFERENCE_SETTINGS), "unknown key"
            )
    spec = MechanismSpec(
        name=name,
        label=reader.str("label", name),
        paper=reader.str("paper", ""),
        settings=settings,
        training=_training_sections(reader, source, f"{where}."),
        requests=_optional_positive(reader, "requests"),
        regret_requests=_optional_positive(reader, "regret_requests"),
    )
    reader.finish()
    return spec


def _read_sweep(reader: TableReader, source: str) -> dict[str, tuple]:
    table = _plain_table(reader, "sweep")
    sweep = {}
    for key, values in table.items():
        if not key.startswith(SWEEP_PREFIXES) or key.endswith("."):
            raise ConfigError(
                source,
                f"sweep.{key}",
                "a key starting with " + ", ".join(repr(p) for p in SWEEP_PREFIXES),
                "unknown key",
            )
        if key.startswith("mechanism.") and key.removeprefix("mechanism.") not in (
            INFERENCE_SETTINGS
        ):
            raise ConfigError(
                source,
                f"sweep.{key}",
                "mechanism.<setting> with a setting of " + ", ".join(INFERENCE_SETTINGS),
                "unknown key",
            )
        section, _, rest = key.removeprefix("training.").partition(".")
        if key.startswith("training.") and (section not in TRAINING_SECTIONS or not rest):
            raise ConfigError(
                source,
                f"sweep.{key}",
                "training.<section>.<key> with a section of " + ", ".join(TRAINING_SECTIONS),
                "unknown key",
            )
        if not isinstance(values, list) or not values:
            raise ConfigError(source, f"sweep.{key}", "a non-empty list of values", values)
        if len({json.dumps(v, sort_keys=True) for v in values}) != len(values):
            raise ConfigError(source, f"sweep.{key}", "distinct values", values)
        sweep[key] = tuple(values)
    return sweep


def parse_experiment(document: dict, source: str) -> ExperimentSpec:
    """Build a validated ExperimentSpec from a parsed TOML document."""
    root = TableReader(document, source)
    kind = root.str("kind", "evaluate", choices=KINDS)
    scenarios = root.raw("scenarios")
    if (
        not isinstance(scenarios, list)
        or not scenarios
        or not all(isinstance(s, str) for s in scenarios)
    ):
        raise root.error("scenarios", "a non-empty list of scenario names or paths", scenarios)
    base = Path(source).parent
    resolved = []
    for i, scenario in enumerate(scenarios):
        candidate = base / scenario
        shipped_or_cwd = not (candidate.suffix == ".toml" and candidate.is_file())
        reference = scenario if shipped_or_cwd else str(candidate)
        try:
            resolve_scenario_path(reference)
        except ConfigError as error:
            raise root.error(f"scenarios[{i}]", error.expected, scenario) from None
        resolved.append(reference)
    items = root.raw("mechanisms")
    if not isinstance(items, list) or not items:
        raise root.error("mechanisms", "a non-empty list of mechanisms", items)
    mechanisms = tuple(_read_mechanism(item, i, source) for i, item in enumerate(items))
    labels = [m.label for m in mechanisms]
    duplicated = sorted({label for label in labels if labels.count(label) > 1})
    if duplicated:
        raise root.error("mechanisms", "distinct labels (give each a `label`)", duplicated)
    seeds = root.raw("seeds", [0])
    if (
        not isinstance(seeds, list)
        or not seeds
        or not all(isinstance(s, int) and not isinstance(s, bool) and s >= 0 for s in seeds)
        or len(set(seeds)) != len(seeds)
    ):
        raise root.error("seeds", "a non-empty list of distinct integers >= 0", seeds)
    requests = _positive(root, "requests", 10_000)
    figures = root.raw("figures", list(FIGURES))
    if not isinstance(figures, list) or not all(f in FIGURES for f in figures):
        raise root.error("figures", "a list of " + ", ".join(FIGURES), figures)
    training_reader = root.table_reader("training", {})
    training = TrainingSpec(
        seed=training_reader.int("seed", 0, min=0),
        per_seed=_bool(training_reader, "per_seed", False),
        log_requests=training_reader.int("log_requests", 20_000, min=100),
        sections=_training_sections(training_reader, source, "training."),
    )
    training_reader.finish()
    study_reader = root.table_reader("study", {})
    study = StudySpec(
        bandit_steps=study_reader.int("bandit_steps", 300, min=0),
        ppo_steps=study_reader.int("ppo_steps", 0, min=0),
        requests_per_step=study_reader.int("requests_per_step", 64, min=1),
    )
    study_reader.finish()
    spec = ExperimentSpec(
        name=root.safe_name("name", Path(source).stem),  # names the report folder
        source=source,
        title=root.str("title", Path(source).stem),
        description=root.str("description", ""),
        kind=kind,
        scenarios=tuple(resolved),
        mechanisms=mechanisms,
        seeds=tuple(seeds),
        requests=requests,
        regret_requests=root.int("regret_requests", requests, min=1),
        misreport=root.str("misreport", "exact", choices=MISREPORT_METHODS),
        figures=tuple(figures),
        reference=root.str("reference", "none", choices=REFERENCES),
        sweep=_read_sweep(root, source),
        sweep_mode=root.str("sweep_mode", "product", choices=SWEEP_MODES),
        training=training,
        study=study,
        device=_device(root),
        regret_bidders=root.str("regret_bidders", "default", choices=REGRET_BIDDERS),
    )
    root.finish()
    _check_mechanisms(spec)
    _check_training_sweep(spec)
    return spec


def _check_training_sweep(spec: ExperimentSpec) -> None:
    """A swept training value is checked like one in the file: each value of each
    `training.<section>.<key>`, set in the experiment's section as a cell's training is."""
    for key, values in spec.sweep.items():
        if not key.startswith("training."):
            continue
        section, _, dotted = key.removeprefix("training.").partition(".")
        base = spec.training.sections.get(section, {})
        for value in values:
            table = merge_tables(base, set_dotted({}, dotted, value))
            try:
                _check_training_keys(section, table, spec.source, key)
            except ConfigError as error:
                where, got = f"sweep.{key}", error.got
                raise ConfigError(
                    spec.source, where, error.expected, got, has_got=got is not None
                ) from None


def _device(reader: TableReader) -> str:
    device = reader.str("device", "cpu")
    if device != "cpu" and not (device == "cuda" or device.removeprefix("cuda:").isdigit()):
        raise reader.error("device", "'cpu', 'cuda' or 'cuda:N'", device)
    return device


def _bool(reader: TableReader, key: str, default: bool) -> bool:
    value = reader.raw(key, default)
    if not isinstance(value, bool):
        raise reader.error(key, "true or false", value)
    return value


def _check_swept_scenario(spec: ExperimentSpec, scenario_ref: str, point: dict) -> None:
    """A sweep point's scenario values, validated as in the scenario file; an error names the
    experiment file and the sweep key where the bad value is written."""
    try:
        load_scenario(scenario_ref, point)
    except ConfigError as error:
        swept = error.key if error.key in point else None
        if swept is None:  # a value that fails with others, e.g. a range of two keys
            swept = next((key for key in point if error.key.startswith(key)), None)
        if swept is None:
            raise
        raise ConfigError(
            spec.source, f"sweep.scenario.{swept}", f"{error.expected} ({error.source})", error.got
        ) from None


def _check_mechanisms(spec: ExperimentSpec) -> None:
    """Every mechanism must apply to every scenario, and settings only to generative ones."""
    from ega_sim.mechanisms.registry import GENERATIVE_ALLOCATORS, mechanism_names

    overrides = [
        {
            key.removeprefix("scenario."): value
            for key, value in point.items()
            if key.startswith("scenario.")
        }
        for point in spec.sweep_points()
    ]
    for scenario_ref in spec.scenarios:
        scenario = load_scenario(scenario_ref)
        for point in overrides:  # a swept value is checked like a value in the file
            if point:
                _check_swept_scenario(spec, scenario_ref, point)
        known = mechanism_names(scenario)
        for i, mechanism in enumerate(spec.mechanisms):
            if mechanism.name not in known:
                raise ConfigError(
                    spec.source,
                    f"mechanisms[{i}].name",
                    f"a mechanism of scenario {scenario.name}: " + ", ".join(known),
                    mechanism.name,
                )
    swept_settings = any(key.startswith("mechanism.") for key in spec.sweep)
    setting_points = [
        {k.removeprefix("mechanism."): v for k, v in point.items() if k.startswith("mechanism.")}
        for point in spec.sweep_points()
    ]
    for i, mechanism in enumerate(spec.mechanisms):
        generative = mechanism.allocator in GENERATIVE_ALLOCATORS
        if mechanism.settings and not generative:
            raise ConfigError(
                spec.source,
                f"mechanisms[{i}].settings",
                "settings only on ega/* and gr/* (inference-time settings of generation)",
                mechanism.settings,
            )
        if spec.kind == "misreport" and mechanism.settings:
            raise ConfigError(
                spec.source,
                f"mechanisms[{i}].settings",
                "no settings in a misreport study (its environment loads mechanisms as trained)",
                mechanism.settings,
            )
        if generative:  # serving settings are checked like any other value
            for point in setting_points:
                try:
                    with_settings(EGAConfig(), {**mechanism.settings, **point})
                except ValueError as error:
                    where = "sweep" if point else f"mechanisms[{i}].settings"
                    raise ConfigError(spec.source, where, "valid settings", str(error)) from None
        if swept_settings and not generative:
            raise ConfigError(
                spec.source,
                "sweep",
                "mechanism.* sweeps only with generative mechanisms (ega/*, gr/*), "
                f"but mechanisms[{i}] is {mechanism.name}",
                list(spec.sweep),
            )


def load_experiment(path: str | Path) -> ExperimentSpec:
    """Read and validate an experiment file."""
    path = Path(path)
    return parse_experiment(read_toml(path), str(path))


# --quick: a smoke run that exercises every stage in a few minutes.
QUICK_REQUESTS = 200
QUICK_REGRET_REQUESTS = 10
QUICK_LOG_REQUESTS = 2_000
QUICK_TRAINING = {
    "cascade": {"epochs": 1},
    "ega": {
        "tokenizer_steps": 50,
        "pretrain": {"epochs": 1},
        "reward_model": {"epochs": 1},
        "alignment": {"steps": 2, "batch_size": 16},
        "beams": 4,
    },
    "paynet": {
        "steps": 30,
        "batch_size": 64,
        "validate_every": 30,
        "validation_requests": 256,
        "cached_requests": 8,
        "cached_validation_requests": 4,
        "random_misreports": 2,
    },
}
QUICK_STUDY = StudySpec(bandit_steps=20, ppo_steps=0, requests_per_step=16)


def merge_tables(base: dict, update: dict) -> dict:
    """`base` with `update` merged in, nested tables key by key."""
    merged = dict(base)
    for key, value in update.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = merge_tables(merged[key], value)
        else:
            merged[key] = value
    return merged


def set_dotted(table: dict, dotted: str, value: Any) -> dict:
    """A copy of `table` with the dotted key ("alignment.steps") set, inner tables copied."""
    head, _, rest = dotted.partition(".")
    if not rest:
        return {**table, head: value}
    inner = table.get(head, {})
    return {**table, head: set_dotted(inner if isinstance(inner, dict) else {}, rest, value)}


def quick_spec(spec: ExperimentSpec) -> ExperimentSpec:
    """The same experiment at smoke-run size: fewer requests, tiny training."""
    sections = {
        name: merge_tables(spec.training.sections.get(name, {}), QUICK_TRAINING[name])
        for name in TRAINING_SECTIONS
    }
    mechanisms = tuple(
        dataclasses.replace(
            m,
            training={k: merge_tables(v, QUICK_TRAINING[k]) for k, v in m.training.items()},
            requests=None if m.requests is None else min(m.requests, QUICK_REQUESTS),
            regret_requests=(
                None if m.regret_requests is None else min(m.regret_requests, QUICK_REGRET_REQUESTS)
            ),
        )
        for m in spec.mechanisms
    )
    return dataclasses.replace(
        spec,
        name=spec.name,
        mechanisms=mechanisms,
        requests=min(spec.requests, QUICK_REQUESTS),
        regret_requests=min(spec.regret_requests, QUICK_REGRET_REQUESTS),
        training=dataclasses.replace(
            spec.training,
            log_requests=min(spec.training.log_requests, QUICK_LOG_REQUESTS),
            sections=sections,
        ),
        study=QUICK_STUDY,
        quick=True,
    )
