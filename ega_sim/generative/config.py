"""The generative pipeline's settings: `EGAConfig` (what `ega-sim train --mechanism ega/...`
trains, the paper's ablation switches included) and the serving settings that change how a
trained allocator generates without retraining."""

from __future__ import annotations

import dataclasses
from dataclasses import asdict, dataclass, field

from ega_sim.config.errors import ConfigError
from ega_sim.generative.generator import GeneratorConfig
from ega_sim.generative.reward_model import RewardModelConfig
from ega_sim.generative.token_bidding import BiddingConfig


@dataclass(frozen=True)
class PretrainConfig:
    epochs: int = 3
    batch_size: int = 256
    learning_rate: float = 2e-3
    weight_decay: float = 1e-5


@dataclass(frozen=True)
class AlignmentConfig:
    steps: int = 60
    batch_size: int = 64
    learning_rate: float = 5e-4
    # Checkpoints (0: none, keep the last step): the generator is measured this many times, and
    # the one kept is chosen by what the platform can compute (alignment.py): the reward
    # model's bid-weighted clicks on held-out logged requests, among the checkpoints whose
    # likelihood of the held-out logged lists stays within drift_tolerance of the start.
    checkpoints: int = 0
    held_out_share: float = 0.1  # logged requests kept out of alignment for the choice
    drift_tolerance: float = 0.05
    curve_requests: int = 256  # requests of the world for the diagnostic curve (the truth)

    def __post_init__(self) -> None:
        for key in ("steps", "batch_size", "checkpoints", "curve_requests"):
            value = getattr(self, key)
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise ValueError(f"alignment {key}: expected an integer >= 0, got {value!r}")
        if not 0 < self.held_out_share < 1:
            raise ValueError(
                f"alignment held_out_share: expected (0, 1), got {self.held_out_share!r}"
            )
        if not self.drift_tolerance >= 0:
            raise ValueError(
                f"alignment drift_tolerance: expected >= 0, got {self.drift_tolerance!r}"
            )

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class EGAConfig:
    """Everything the generative pipeline needs; the ablation switches of the paper included."""

    tokenizer_steps: int = 1_500
    d_model: int = 64
    heads: int = 4
    encoder_layers: int = 2
    decoder_layers: int = 2
    mtp: bool = True  # ablation "no MTP": False
    pretrain: PretrainConfig = field(default_factory=PretrainConfig)
    reward_model: RewardModelConfig = field(default_factory=RewardModelConfig)
    alignment: AlignmentConfig = field(default_factory=AlignmentConfig)
    single_stage: bool = False  # ablation "single-stage training": no alignment stage
    bidding: BiddingConfig = field(default_factory=BiddingConfig)  # alpha, beta, code_bid, unit
    beams: int = 16
    ctr_weight: float = 1.0

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, record: dict, source: str = "<dict>") -> EGAConfig:
        """Build from a (TOML) mapping; unknown keys and bad values are ConfigErrors."""
        nested = {
            "pretrain": PretrainConfig,
            "reward_model": RewardModelConfig,
            "alignment": AlignmentConfig,
            "bidding": BiddingConfig,
        }
        known = {f.name for f in dataclasses.fields(cls)}
        values = {}
        for key, value in record.items():
            if key not in known:
                raise ConfigError(
                    source, key, f"a known key ({', '.join(sorted(known))})", "unknown key"
                )
            if key in nested:
                if not isinstance(value, dict):
                    raise ConfigError(source, key, "a table", value)
                inner_known = {f.name for f in dataclasses.fields(nested[key])}
                for inner in value:
                    if inner not in inner_known:
                        raise ConfigError(
                            source,
                            f"{key}.{inner}",
                            f"a known key ({', '.join(sorted(inner_known))})",
                            "unknown key",
                        )
                try:
                    value = nested[key](**value)
                except (TypeError, ValueError) as error:
                    raise ConfigError(source, key, "valid settings", str(error)) from None
            values[key] = value
        try:
            return cls(**values)
        except (TypeError, ValueError) as error:
            raise ConfigError(source, "<root>", "valid settings", str(error)) from None


def generator_config(config: EGAConfig, tables, scenario) -> GeneratorConfig:
    """The generator's shape: vocabularies and sizes from the item tables, the rest from config."""
    return GeneratorConfig(
        poi_levels=tables.poi_codes.shape[1],
        poi_vocab=tables.poi_vocab,
        creative_levels=tables.creative_codes.shape[2],
        creative_vocab=tables.creative_vocab,
        feature_dim=tables.poi_features.shape[1],
        user_dim=tables.user_features.shape[1],
        max_items=scenario.n_slots,
        d_model=config.d_model,
        heads=config.heads,
        encoder_layers=config.encoder_layers,
        decoder_layers=config.decoder_layers,
        mtp=config.mtp,
    )


INFERENCE_SETTINGS = (
    "bidding.alpha",
    "bidding.beta",
    "bidding.code_bid",
    "bidding.bid_unit",
    "beams",
    "ctr_weight",
)


def with_settings(config: EGAConfig, settings: dict) -> EGAConfig:
    """`config` with inference-time settings replaced; a bad key or value is a ValueError."""
    bidding, top = {}, {}
    for key, value in settings.items():
        if key not in INFERENCE_SETTINGS:
            raise ValueError(
                f"settings: expected keys among {', '.join(INFERENCE_SETTINGS)}, got {key!r}"
            )
        if key.startswith("bidding."):
            bidding[key.removeprefix("bidding.")] = value
        else:
            top[key] = value
    if "beams" in top and (
        isinstance(top["beams"], bool) or not isinstance(top["beams"], int) or top["beams"] < 1
    ):
        raise ValueError(f"settings beams: expected an integer >= 1, got {top['beams']!r}")
    if "ctr_weight" in top and not (
        isinstance(top["ctr_weight"], int | float) and top["ctr_weight"] >= 0
    ):
        raise ValueError(f"settings ctr_weight: expected a number >= 0, got {top['ctr_weight']!r}")
    return dataclasses.replace(
        config, bidding=dataclasses.replace(config.bidding, **bidding), **top
    )
