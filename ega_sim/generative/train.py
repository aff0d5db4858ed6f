"""`ega-sim train --mechanism ega/...`: the EGA-V2 pipeline from logs, stage by stage.

Stages, each written to OUT/stages/<stage>/ (state dicts loaded with weights_only=True, and a
stage.json written last that marks the stage finished) and skipped when the command is rerun:

1. tokenizers: the POI and creative RQ-VAEs and every item's semantic ID;
2. pretrain: the generator on logged lists (next-POI + next-creative cross-entropy);
3. reward_model: the permutation-aware RM on logged clicks and orders (frozen afterwards);
4. alignment: policy gradient of the generator against the RM's bid-weighted clicks
   (skipped with `single_stage = true`).

`gr` uses the pre-trained generator (bids ignored); `ega` the aligned one.
"""

from __future__ import annotations

import dataclasses
import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from ega_sim.atomic import write_text_atomic
from ega_sim.checkpoints import load_tensors, read_checkpoint_record, save_tensors
from ega_sim.config.errors import ConfigError
from ega_sim.generative.alignment import AlignmentConfig, align
from ega_sim.generative.allocator import GenerativeMechanism, GenerativeParts
from ega_sim.generative.generator import Generator, GeneratorConfig
from ega_sim.generative.items import item_tables
from ega_sim.generative.pretrain import PretrainConfig, pretrain_generator
from ega_sim.generative.reward_model import (
    ItemTokenizers,
    PermutationAwareRM,
    RewardModelConfig,
    fit_item_tokenizers,
    train_reward_model,
)
from ega_sim.generative.token_bidding import BiddingConfig
from ega_sim.provenance import provenance

STAGES = ("tokenizers", "pretrain", "reward_model", "alignment")
CHECKPOINT_FORMAT = 1


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
    bidding: BiddingConfig = field(default_factory=BiddingConfig)  # alpha, beta, code_bid
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


def _stage_dir(out: Path, stage: str) -> Path:
    return out / "stages" / stage


def _finished(out: Path, stage: str) -> dict | None:
    marker = _stage_dir(out, stage) / "stage.json"
    return json.loads(marker.read_text()) if marker.is_file() else None


def _finish(out: Path, stage: str, report: dict) -> None:
    write_text_atomic(_stage_dir(out, stage) / "stage.json", json.dumps(report, indent=2) + "\n")


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


def _save_tokenizers(path: Path, tokenizers: ItemTokenizers) -> None:
    save_tensors(
        path / "tokenizers.pt",
        {"poi_ids": tokenizers.poi_ids, "creative_ids": tokenizers.creative_ids},
    )


def _load_tokenizers(path: Path, report: dict) -> ItemTokenizers:
    tensors = load_tensors(path / "tokenizers.pt")
    return ItemTokenizers(
        tensors["poi_ids"],
        tensors["creative_ids"],
        tuple(report["poi_vocab"]),
        tuple(report["creative_vocab"]),
        report["reports"],
    )


def train_ega(
    scenario,
    logs,
    out: Path,
    config: EGAConfig = EGAConfig(),
    *,
    seed: int = 0,
    progress: bool = False,
) -> dict:
    """Run (or resume) every stage; returns the stage reports."""
    out = Path(out)
    platform = logs.platform
    reports: dict = {}

    stage = _stage_dir(out, "tokenizers")
    if (done := _finished(out, "tokenizers")) is None:
        started = time.perf_counter()
        tokenizers = fit_item_tokenizers(platform, seed=seed, steps=config.tokenizer_steps)
        _save_tokenizers(stage, tokenizers)
        done = {
            "poi_vocab": list(tokenizers.poi_vocab),
            "creative_vocab": list(tokenizers.creative_vocab),
            "reports": tokenizers.reports,
            "seconds": time.perf_counter() - started,
        }
        _finish(out, "tokenizers", done)
    reports["tokenizers"] = done
    tokenizers = _load_tokenizers(stage, done)
    tables = item_tables(platform, tokenizers)
    shape = generator_config(config, tables, scenario)

    stage = _stage_dir(out, "pretrain")
    if (done := _finished(out, "pretrain")) is None:
        generator, done = pretrain_generator(
            logs, tables, shape, config.pretrain, seed=seed, progress=progress
        )
        save_tensors(stage / "generator.pt", generator.state_dict())
        _finish(out, "pretrain", done)
    reports["pretrain"] = done

    stage = _stage_dir(out, "reward_model")
    if (done := _finished(out, "reward_model")) is None:
        rm, done = train_reward_model(
            logs, tokenizers, config.reward_model, seed=seed, progress=progress
        )
        save_tensors(stage / "reward_model.pt", rm.state_dict())
        _finish(out, "reward_model", done)
    reports["reward_model"] = done

    if not config.single_stage:
        stage = _stage_dir(out, "alignment")
        if (done := _finished(out, "alignment")) is None:
            parts = load_parts(out, scenario, platform, config, aligned=False)
            mechanism = GenerativeMechanism(
                "ega",
                scenario,
                parts,
                "gsp",
                beams=config.beams,
                bidding=config.bidding,
                ctr_weight=config.ctr_weight,
            )
            done = align(mechanism, logs, config.alignment, seed=seed, progress=progress)
            save_tensors(stage / "generator.pt", parts.generator.state_dict())
            _finish(out, "alignment", done)
        reports["alignment"] = done

    record = {
        "format_version": CHECKPOINT_FORMAT,
        "kind": "generative",
        "scenario": scenario.name,
        "config": config.to_dict(),
        "stages": reports,
        **provenance(),
    }
    write_text_atomic(out / "checkpoint.json", json.dumps(record, indent=2) + "\n")
    return reports


def load_parts(
    out: Path, scenario, platform, config: EGAConfig, *, aligned: bool
) -> GenerativeParts:
    """Assemble the trained parts; `aligned` picks the generator after alignment."""
    out = Path(out)
    tokenizer_report = _finished(out, "tokenizers")
    if (
        tokenizer_report is None
        or _finished(out, "pretrain") is None
        or _finished(out, "reward_model") is None
    ):
        raise ValueError(f"checkpoint: {out} has unfinished stages; rerun `ega-sim train`")
    tokenizers = _load_tokenizers(_stage_dir(out, "tokenizers"), tokenizer_report)
    tables = item_tables(platform, tokenizers)
    generator = Generator(generator_config(config, tables, scenario))
    which = "alignment" if aligned and not config.single_stage else "pretrain"
    if which == "alignment" and _finished(out, "alignment") is None:
        raise ValueError(
            f"checkpoint: {out} has no finished alignment stage; rerun `ega-sim train`"
        )
    generator.load_state_dict(load_tensors(_stage_dir(out, which) / "generator.pt"))
    generator.eval()
    rm = PermutationAwareRM.for_market(config.reward_model, platform, tokenizers)
    rm.load_state_dict(load_tensors(_stage_dir(out, "reward_model") / "reward_model.pt"))
    rm.eval()
    return GenerativeParts(platform, tokenizers, tables, generator, rm)


INFERENCE_SETTINGS = ("bidding.alpha", "bidding.beta", "bidding.code_bid", "beams", "ctr_weight")


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


def load_generative_mechanism(
    directory,
    scenario,
    allocator_name: str,
    payment: str,
    platform,
    *,
    beams: int | None = None,
    payment_network=None,
    settings: dict | None = None,
) -> GenerativeMechanism:
    """`ega/...` or `gr/...` from a checkpoint folder made by `ega-sim train`. `settings`
    changes generation without retraining: "bidding.alpha", "bidding.beta",
    "bidding.code_bid", "beams", "ctr_weight" (the trained values by default)."""
    directory = Path(directory)
    record = read_checkpoint_record(
        directory,
        kind="generative",
        format_version=CHECKPOINT_FORMAT,
        scenario_name=scenario.name,
        mechanism=f"{allocator_name}/{payment}",
    )
    config = EGAConfig.from_dict(record["config"])
    parts = load_parts(directory, scenario, platform, config, aligned=allocator_name == "ega")
    config = dataclasses.replace(config, beams=beams or config.beams)
    config = with_settings(config, settings or {})
    return GenerativeMechanism(
        allocator_name,
        scenario,
        parts,
        payment,
        beams=config.beams,
        bidding=config.bidding,
        ctr_weight=config.ctr_weight,
        payment_network=payment_network,
    )
