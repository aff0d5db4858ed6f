"""Scenario configs: frozen dataclasses, validated when built, loaded from TOML scenario files.

A scenario is named by a path to a `.toml` file or by the name of a shipped scenario file in
`envs/` (without `.toml`). Every malformed value is a ConfigError naming file, key, expected, got.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ega_sim.config.errors import ConfigError
from ega_sim.config.feed_market import FeedMarketConfig, parse_feed_market
from ega_sim.config.memory import check_memory, position_auction_bytes
from ega_sim.config.reader import TableReader, read_toml
from ega_sim.world.distributions import (
    ContinuousDistribution,
    Fixed,
    LogNormal,
    Mixture,
    Uniform,
)
from ega_sim.world.value_range import (
    RANGE,
    VALUE_MAX,
    VALUE_MIN,
    WHY,
    log_values_fit,
    log_values_text,
)

SCENARIO_KINDS = ("position_auction", "feed_market")
DEFAULT_QUALITY = Fixed((1.0,))


@dataclass(frozen=True)
class PositionAuctionConfig:
    """The textbook position auction: P(click | bidder i in slot k) = slot_ctr[k] * quality_i."""

    name: str
    n_bidders: int
    slot_ctr: tuple[float, ...]  # alpha_1 >= ... >= alpha_K > 0; K = len(slot_ctr)
    values: ContinuousDistribution  # value per click, i.i.d. across bidders and requests
    quality: Fixed | Uniform = DEFAULT_QUALITY  # pCTR q_i in (0, 1]
    reserve: float = 0.0  # per-click reserve price of the cascade allocator
    ecpm_floor: float = 0.0  # the cascade shows a bidder only if q_i * b_i >= ecpm_floor
    source: str = "<python>"  # the file it was read from, for error messages
    kind: str = "position_auction"

    def __post_init__(self) -> None:
        def fail(key: str, expected: str, got: object) -> ConfigError:
            return ConfigError(self.source, key, expected, got)

        if not isinstance(self.n_bidders, int) or self.n_bidders < 1:
            raise fail("n_bidders", "an integer >= 1", self.n_bidders)
        if len(self.slot_ctr) < 1:
            raise fail("slot_ctr", "at least one slot", list(self.slot_ctr))
        for k, alpha in enumerate(self.slot_ctr):
            if not (math.isfinite(alpha) and 0.0 < alpha <= 1.0):
                raise fail(f"slot_ctr[{k}]", "a click factor in (0, 1]", alpha)
        for k in range(1, len(self.slot_ctr)):
            if self.slot_ctr[k] > self.slot_ctr[k - 1]:
                raise fail(
                    "slot_ctr",
                    f"non-increasing click factors (slot {k + 1} exceeds slot {k})",
                    list(self.slot_ctr),
                )
        if not (math.isfinite(self.reserve) and self.reserve >= 0.0):
            raise fail("reserve", "a finite number >= 0", self.reserve)
        if not (math.isfinite(self.ecpm_floor) and self.ecpm_floor >= 0.0):
            raise fail("ecpm_floor", "a finite number >= 0", self.ecpm_floor)
        _validate_values(self.values, self.source)
        _validate_quality(self.quality, self.n_bidders, self.source)
        check_memory(
            lambda changed: position_auction_bytes(
                changed.get("n_bidders", self.n_bidders),
                len(changed.get("slot_ctr", self.slot_ctr)),
            ),
            {"n_bidders": (self.n_bidders, 1), "slot_ctr": (list(self.slot_ctr), (1.0,))},
            fail,
        )

    @property
    def n_slots(self) -> int:
        return len(self.slot_ctr)


ScenarioConfig = PositionAuctionConfig | FeedMarketConfig


MIXTURE_WEIGHT_TOLERANCE = 1e-9  # |sum of weights - 1| allowed, for decimals like 0.7 + 0.2 + 0.1


def _validate_values(
    values: object, source: str, key: str = "values", *, component: bool = False
) -> None:
    """Check a value distribution; errors name `key` (e.g. values.components[1].high). A
    mixture's `component` is a uniform or lognormal (mixtures do not nest)."""
    if isinstance(values, Uniform):
        if not (math.isfinite(values.low) and math.isfinite(values.high)):
            raise ConfigError(source, key, "finite low and high", values)
        if values.low < 0.0:
            raise ConfigError(source, f"{key}.low", "a value per click >= 0", values.low)
        if values.high <= values.low:
            raise ConfigError(source, f"{key}.high", f"a number > low ({values.low})", values.high)
        if not VALUE_MIN <= values.high <= VALUE_MAX:
            raise ConfigError(
                source,
                f"{key}.high",
                f"a number in {RANGE}, so that {WHY}",
                values.high,
            )
    elif isinstance(values, LogNormal):
        if not math.isfinite(values.mean):
            raise ConfigError(source, f"{key}.mean", "a finite number", values.mean)
        if not (math.isfinite(values.sigma) and values.sigma > 0.0):
            raise ConfigError(source, f"{key}.sigma", "a number > 0", values.sigma)
        if not log_values_fit(values.mean, values.sigma):
            # The mean is at fault when it alone is out of range, else the spread around it.
            field = "sigma" if log_values_fit(values.mean, 0.0) else "mean"
            raise ConfigError(
                source,
                f"{key}.{field}",
                log_values_text(values.mean, values.sigma),
                getattr(values, field),
            )
    elif isinstance(values, Mixture) and not component:
        _validate_mixture(values, source, key)
    elif component:
        expected = "a Uniform or LogNormal distribution (mixtures do not nest)"
        raise ConfigError(source, key, expected, values)
    else:
        raise ConfigError(source, key, "a Uniform, LogNormal or Mixture distribution", values)


def _validate_mixture(values: Mixture, source: str, key: str) -> None:
    if len(values.components) < 1 or len(values.weights) != len(values.components):
        raise ConfigError(
            source, f"{key}.components", "one or more components, each with a weight", values
        )
    for i, (weight, part) in enumerate(zip(values.weights, values.components, strict=True)):
        if not (math.isfinite(weight) and weight > 0.0):
            raise ConfigError(source, f"{key}.components[{i}].weight", "a number > 0", weight)
        _validate_values(part, source, f"{key}.components[{i}]", component=True)
    total = math.fsum(values.weights)
    if abs(total - 1.0) > MIXTURE_WEIGHT_TOLERANCE:
        raise ConfigError(
            source,
            f"{key}.components",
            f"weights summing to 1 (within {MIXTURE_WEIGHT_TOLERANCE:g})",
            f"weights {list(values.weights)} summing to {total!r}",
        )


def _validate_quality(quality: object, n_bidders: int, source: str) -> None:
    if isinstance(quality, Fixed):
        if len(quality.values) not in (1, n_bidders):
            raise ConfigError(
                source, "quality.values", f"1 or n_bidders = {n_bidders} numbers", quality.values
            )
        for i, q in enumerate(quality.values):
            if not (math.isfinite(q) and 0.0 < q <= 1.0):
                raise ConfigError(source, f"quality.values[{i}]", "a pCTR in (0, 1]", q)
    elif isinstance(quality, Uniform):
        if not (0.0 < quality.low <= quality.high <= 1.0):
            raise ConfigError(source, "quality", "0 < low <= high <= 1", quality)
    else:
        raise ConfigError(source, "quality", "a Fixed or Uniform distribution", quality)


def _read_values(table: TableReader) -> ContinuousDistribution:
    dist = table.str("dist", choices=("uniform", "lognormal", "mixture"))
    if dist == "mixture":
        result: ContinuousDistribution = _read_mixture(table)
    else:
        result = _read_component(table, dist)
    table.finish()
    return result


def _read_component(table: TableReader, dist: str) -> Uniform | LogNormal:
    if dist == "uniform":
        return Uniform(table.float("low"), table.float("high"))
    return LogNormal(table.float("mean"), table.float("sigma"))


def _read_mixture(table: TableReader) -> Mixture:
    """`[[values.components]]` tables, each a uniform or lognormal with its `weight`."""
    items = table.raw("components")
    if not isinstance(items, list) or not items:
        raise table.error(
            "components", "one or more [[values.components]] tables (dist, weight, ...)", items
        )
    weights, components = [], []
    for i, item in enumerate(items):
        reader = TableReader(item, table.source, prefix=table.key_name(f"components[{i}]."))
        dist = reader.str("dist", choices=("uniform", "lognormal"))
        weights.append(reader.float("weight", min=0.0, min_exclusive=True))
        components.append(_read_component(reader, dist))
        reader.finish()
    return Mixture(tuple(weights), tuple(components))


def _read_quality(table: TableReader) -> Fixed | Uniform:
    dist = table.str("dist", choices=("fixed", "uniform"))
    if dist == "uniform":
        result: Fixed | Uniform = Uniform(table.float("low"), table.float("high"))
    elif table.has("values"):
        result = Fixed(tuple(table.float_list("values")))
    else:
        result = Fixed((table.float("value"),))
    table.finish()
    return result


def parse_scenario(document: dict, source: str) -> ScenarioConfig:
    """Build a validated scenario config from a parsed TOML document."""
    root = TableReader(document, source)
    kind = root.str("kind", choices=SCENARIO_KINDS)
    name = root.safe_name("name", Path(source).stem)  # names trained parts' folders
    if kind == "feed_market":
        return parse_feed_market(root, source, name)
    config = PositionAuctionConfig(
        name=name,
        n_bidders=root.int("n_bidders", min=1),
        slot_ctr=tuple(root.float_list("slot_ctr")),
        reserve=root.float("reserve", 0.0, min=0.0),
        ecpm_floor=root.float("ecpm_floor", 0.0, min=0.0),
        values=_read_values(root.table_reader("values")),
        quality=_read_quality(root.table_reader("quality", {"dist": "fixed", "value": 1.0})),
        source=source,
        kind=kind,
    )
    root.finish()
    return config


def scenario_dirs() -> list[Path]:
    """Where shipped scenario files live: inside a wheel, or envs/ of a source checkout."""
    package = Path(__file__).resolve().parent.parent
    return [d for d in (package / "_scenario_files", package.parent / "envs") if d.is_dir()]


def available_scenarios() -> list[str]:
    return sorted({path.stem for d in scenario_dirs() for path in d.glob("*.toml")})


def resolve_scenario_path(path_or_name: str | Path) -> Path:
    """A path to an existing file, or the name of a shipped scenario file."""
    candidate = Path(path_or_name)
    if candidate.is_file():
        return candidate
    if candidate.suffix != ".toml" and candidate.name == str(path_or_name):
        for directory in scenario_dirs():
            shipped = directory / f"{path_or_name}.toml"
            if shipped.is_file():
                return shipped
    raise ConfigError(
        str(path_or_name),
        "<scenario>",
        "a path to a scenario file or one of the shipped names: "
        + ", ".join(available_scenarios()),
        "no such file",
    )


def with_overrides(document: dict, overrides: Mapping[str, Any], source: str) -> dict:
    """A copy of a parsed scenario document with dotted keys set ("values.high" = 2.0);
    the result is validated by `parse_scenario` like any file."""
    document = copy.deepcopy(document)
    for dotted, value in overrides.items():
        parts = dotted.split(".")
        table = document
        for depth, part in enumerate(parts[:-1]):
            table = table.setdefault(part, {})
            if not isinstance(table, dict):
                raise ConfigError(source, ".".join(parts[: depth + 1]), "a table", table)
        table[parts[-1]] = value
    return document


def load_scenario(
    path_or_name: str | Path | ScenarioConfig, overrides: Mapping[str, Any] | None = None
) -> ScenarioConfig:
    """Load and validate a scenario file (path or shipped name); a config passes through.
    `overrides` sets dotted keys of the file before validation (an experiment's sweep)."""
    if isinstance(path_or_name, PositionAuctionConfig | FeedMarketConfig):
        if overrides:
            raise ValueError("overrides: apply them to a scenario file, not to a built config")
        return path_or_name
    path = resolve_scenario_path(path_or_name)
    document, source = read_toml(path), str(path)
    if overrides:
        source = f"{path} (with " + ", ".join(f"{k} = {v!r}" for k, v in overrides.items()) + ")"
        document = with_overrides(document, overrides, source)
    return parse_scenario(document, source)
