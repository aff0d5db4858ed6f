"""The `feed_market` scenario: a synthetic local-services feed (DESIGN.md section 2).

Each table of the scenario file maps to one frozen dataclass below; every key has a documented
default, so a scenario file names only what it changes. Ranges are checked as the file is read
(the error names file and key); relations between keys are checked in FeedMarketConfig.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, fields

from ega_sim.config.errors import ConfigError
from ega_sim.config.memory import check_memory, feed_market_bytes, replaced
from ega_sim.config.reader import TableReader
from ega_sim.world.value_range import log_values_fit, log_values_text


@dataclass(frozen=True)
class MarketConfig:
    """[market]: the merchants (POIs), advertisers and users, drawn once from `world_seed`."""

    n_pois: int = 400
    advertiser_share: float = 0.3  # share of POIs that advertise
    creatives_min: int = 1  # creatives per advertiser, uniform in [min, max]
    creatives_max: int = 3
    n_categories: int = 8
    latent_dim: int = 8  # user-interest and POI latent vectors
    creative_dim: int = 8  # creative style vectors (what a creative embedding sees)
    n_users: int = 2_000
    history_length: int = 20  # POIs each user interacted with before
    world_seed: int = 0  # the market itself; requests and logs use the run's seed


@dataclass(frozen=True)
class RequestConfig:
    """[requests]: what one page view offers the mechanism."""

    candidate_ads: int = 12  # N advertisers near the user
    organic_items: int = 20  # M organic POIs near the user, in a fixed upstream order
    slots: int = 10  # K items shown
    ad_positions: tuple[int, ...] = (2, 5, 8)  # 1-based positions that may hold an ad
    retrieval: int = 8  # R: ads the cascade keeps after cheap relevance retrieval
    neighborhood: float = 0.2  # distance scale of "near the user" (the map is the unit square)


@dataclass(frozen=True)
class ValueConfig:
    """[values]: advertiser value per click = mean_a x mean-one lognormal shock per request."""

    mean_log: float = 0.0  # log of an advertiser's mean value ~ N(mean_log, spread^2)
    spread: float = 0.5
    shock_sigma: float = 0.3


@dataclass(frozen=True)
class ClickModelConfig:
    """[click_model]: the ground-truth, permutation-aware user model.

    The user examines slot 1, then moves on with probability `position_decay`, except that
    after a POI click it stops with probability `stop_after_click`. An examined item's POI-click
    logit is base + match + quality - distance + creative appeal - similarity and ad-density
    penalties for what was shown above; its creative (image) click logit is driven mostly by the
    creative.
    """

    base_logit: float = -1.5
    match_weight: float = 1.5  # x cosine(user interest, POI latent)
    quality_weight: float = 0.4  # x POI quality (standard normal)
    distance_weight: float = 1.0  # x distance / neighborhood
    creative_weight: float = 0.5  # x creative appeal (standard normal)
    img_base_logit: float = -1.8
    img_creative_weight: float = 1.0
    img_match_weight: float = 0.4
    position_decay: float = 0.9
    stop_after_click: float = 0.4
    similarity_penalty: float = 1.0  # logit penalty at cosine 1 with an item above
    similarity_threshold: float = 0.6  # cosines below this cost nothing
    ad_density_penalty: float = 0.2  # logit penalty per ad shown above


@dataclass(frozen=True)
class ConversionConfig:
    """[conversion]: a POI click becomes an order with P = sigmoid(base + quality); GMV of an
    order = price level x order_value."""

    base_logit: float = -1.5
    quality_weight: float = 0.5
    order_value: float = 20.0


@dataclass(frozen=True)
class ObservationConfig:
    """[observation]: how much noisier the platform's features are than the truth."""

    latent_noise: float = 0.5  # std of noise on observed POI latents (per coordinate)
    quality_noise: float = 0.5
    creative_noise: float = 0.3


_TABLES = {
    "market": MarketConfig,
    "requests": RequestConfig,
    "values": ValueConfig,
    "click_model": ClickModelConfig,
    "conversion": ConversionConfig,
    "observation": ObservationConfig,
}

# Ranges per key: (min, max, min_exclusive); keys not listed take any finite number.
_RANGES = {
    "n_pois": (2, None, False),
    "advertiser_share": (0.0, 1.0, True),
    "creatives_min": (1, None, False),
    "creatives_max": (1, None, False),
    "n_categories": (1, None, False),
    "latent_dim": (2, None, False),
    "creative_dim": (2, None, False),
    "n_users": (1, None, False),
    "history_length": (1, None, False),
    "world_seed": (0, None, False),
    "candidate_ads": (1, None, False),
    "organic_items": (0, None, False),
    "slots": (1, None, False),
    "retrieval": (1, None, False),
    "neighborhood": (1e-4, None, False),
    "mean_log": (-20.0, 20.0, False),
    "spread": (0.0, None, False),
    "shock_sigma": (0.0, None, False),
    "position_decay": (0.0, 1.0, True),
    "stop_after_click": (0.0, 1.0, False),
    "similarity_penalty": (0.0, None, False),
    "similarity_threshold": (-1.0, 0.99, False),
    "ad_density_penalty": (0.0, None, False),
    "order_value": (0.0, None, False),
    "latent_noise": (0.0, None, False),
    "quality_noise": (0.0, None, False),
    "creative_noise": (0.0, None, False),
}


# The market keys that size its tensors (config/memory.py); requests.candidate_ads too.
MEMORY_KEYS = (
    "n_pois",
    "n_users",
    "latent_dim",
    "creative_dim",
    "creatives_max",
    "history_length",
)


@dataclass(frozen=True)
class FeedMarketConfig:
    """A feed market scenario. Tables: market, requests, values, click_model, conversion,
    observation; `reserve` is the cascade's per-click reserve price and `ecpm_floor` the eCPM
    (bid x pCTR at the top) an ad must reach to be shown: with it the ad load is flexible, from
    0 to the number of ad positions, set per request by competition."""

    name: str
    market: MarketConfig = field(default_factory=MarketConfig)
    requests: RequestConfig = field(default_factory=RequestConfig)
    values: ValueConfig = field(default_factory=ValueConfig)
    click_model: ClickModelConfig = field(default_factory=ClickModelConfig)
    conversion: ConversionConfig = field(default_factory=ConversionConfig)
    observation: ObservationConfig = field(default_factory=ObservationConfig)
    reserve: float = 0.0
    ecpm_floor: float = 0.0
    source: str = "<python>"
    kind: str = "feed_market"

    def __post_init__(self) -> None:
        def fail(key: str, expected: str, got: object) -> ConfigError:
            return ConfigError(self.source, key, expected, got)

        market, req = self.market, self.requests
        if market.creatives_max < market.creatives_min:
            raise fail(
                "market.creatives_max",
                f">= creatives_min ({market.creatives_min})",
                market.creatives_max,
            )
        if self.n_advertisers < 1:
            raise fail(
                "market.advertiser_share",
                "a share leaving at least one advertiser",
                market.advertiser_share,
            )
        if req.candidate_ads > self.n_advertisers:
            raise fail(
                "requests.candidate_ads",
                f"at most the number of advertisers ({self.n_advertisers})",
                req.candidate_ads,
            )
        if req.organic_items > market.n_pois - self.n_advertisers:
            raise fail(
                "requests.organic_items",
                f"at most the organic POIs ({market.n_pois - self.n_advertisers})",
                req.organic_items,
            )
        positions = req.ad_positions
        if list(positions) != sorted(set(positions)) or not positions:
            raise fail(
                "requests.ad_positions", "increasing, distinct 1-based positions", list(positions)
            )
        if positions[0] < 1 or positions[-1] > req.slots:
            raise fail(
                "requests.ad_positions", f"positions within 1..slots ({req.slots})", list(positions)
            )
        if req.organic_items < req.slots:
            raise fail(
                "requests.organic_items",
                f"at least slots ({req.slots}) organic items: ad positions left empty "
                "(reserve, eCPM floor, retrieval) are filled with organic items",
                req.organic_items,
            )
        if market.history_length > market.n_pois:
            raise fail(
                "market.history_length", f"at most n_pois ({market.n_pois})", market.history_length
            )
        if req.retrieval > req.candidate_ads:
            raise fail(
                "requests.retrieval", f"at most candidate_ads ({req.candidate_ads})", req.retrieval
            )
        _check_value_range(self.values, fail)
        self._check_memory(fail)
        if self.reserve < 0:
            raise fail("reserve", "a number >= 0", self.reserve)
        if self.ecpm_floor < 0:
            raise fail("ecpm_floor", "a number >= 0", self.ecpm_floor)

    def _check_memory(self, fail) -> None:
        """Sizes beyond this machine's memory are refused, naming the key (config/memory.py)."""
        market_defaults, request_defaults = MarketConfig(), RequestConfig()
        candidates = {
            f"market.{key}": (getattr(self.market, key), getattr(market_defaults, key))
            for key in MEMORY_KEYS
        }
        candidates["requests.candidate_ads"] = (
            self.requests.candidate_ads,
            request_defaults.candidate_ads,
        )
        check_memory(
            lambda changed: feed_market_bytes(
                replaced(self.market, changed, "market."),
                replaced(self.requests, changed, "requests."),
            ),
            candidates,
            fail,
        )

    @property
    def n_advertisers(self) -> int:
        return round(self.market.n_pois * self.market.advertiser_share)

    @property
    def n_slots(self) -> int:
        return self.requests.slots

    @property
    def n_bidders(self) -> int:
        """Bidders of one request: its candidate ads."""
        return self.requests.candidate_ads


def _log_value_moments(mean_log: float, spread: float, shock_sigma: float) -> tuple[float, float]:
    """Mean and sd of log(value per click) = N(mean_log, spread^2) + a mean-one lognormal shock
    (N(-shock_sigma^2 / 2, shock_sigma^2)): world/requests.py draws it so."""
    return mean_log - 0.5 * shock_sigma * shock_sigma, math.hypot(spread, shock_sigma)


def _check_value_range(values: ValueConfig, fail) -> None:
    """Values per click must fit the float types (world/value_range.py). The key named is the
    first of mean_log, spread, shock_sigma that takes the draws out of range, the later ones
    set to 0."""
    steps = (
        ("mean_log", (values.mean_log, 0.0, 0.0)),
        ("spread", (values.mean_log, values.spread, 0.0)),
        ("shock_sigma", (values.mean_log, values.spread, values.shock_sigma)),
    )
    for key, parameters in steps:
        mean, sd = _log_value_moments(*parameters)
        if not log_values_fit(mean, sd):
            raise fail(
                f"values.{key}",
                log_values_text(mean, sd),
                getattr(values, key),
            )


def _read_table(reader: TableReader, cls):
    """Read a dataclass's keys from a table, keeping the defaults of keys not given."""
    values = {}
    for spec in fields(cls):
        default = getattr(cls(), spec.name)
        if not reader.has(spec.name):
            reader.raw(spec.name, default)
            continue
        low, high, exclusive = _RANGES.get(spec.name, (None, None, False))
        if isinstance(default, tuple):
            items = reader.raw(spec.name)
            if not isinstance(items, list) or not all(
                isinstance(x, int) and not isinstance(x, bool) for x in items
            ):
                raise reader.error(spec.name, "a list of integers", items)
            values[spec.name] = tuple(items)
        elif isinstance(default, int):
            values[spec.name] = reader.int(spec.name, min=low)
            if high is not None and values[spec.name] > high:
                raise reader.error(spec.name, f"an integer <= {high}", values[spec.name])
        else:
            values[spec.name] = reader.float(spec.name, min=low, max=high, min_exclusive=exclusive)
    reader.finish()
    return cls(**values)


def parse_feed_market(root: TableReader, source: str, name: str) -> FeedMarketConfig:
    """Build a FeedMarketConfig from the root table of a scenario file (kind already read)."""
    tables = {key: _read_table(root.table_reader(key, {}), cls) for key, cls in _TABLES.items()}
    config = FeedMarketConfig(
        name=name,
        reserve=root.float("reserve", 0.0, min=0.0),
        ecpm_floor=root.float("ecpm_floor", 0.0, min=0.0),
        source=source,
        **tables,
    )
    root.finish()
    return config
