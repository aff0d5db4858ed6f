"""Trained parts, loaded in one place: the layouts of checkpoint folders and their loaders.

A checkpoint folder holds `checkpoint.json` (kind, format, scenario, settings, reports,
provenance) and tensor files loaded with weights_only=True:

- cascade (`ega-sim train --mechanism cascade/...`): pctr.pt, the position-aware pCTR model;
- generative (`--mechanism ega/...` or `gr/...`): stages/<stage>/ for each of GENERATIVE_STAGES,
  each with a stage.json written last (the stage's report) and its tensors: tokenizers.pt
  (every item's semantic ID), generator.pt (pre-trained, then aligned), reward_model.pt;
- payment network (`--mechanism ALLOCATOR/paynet`): paynet/checkpoint.json and paynet/paynet.pt
  beside the allocator's own parts.

The trainers write these layouts with the names of checkpoints.py; the loaders here return
model objects that the registry (mechanisms/registry.py) composes into mechanisms. Nothing here
trains.
"""

from __future__ import annotations

from pathlib import Path

from ega_sim.checkpoints import (
    CASCADE_FORMAT,
    GENERATIVE_FORMAT,
    PAYNET_DIR,
    PAYNET_FILE,
    PAYNET_FORMAT,
    PCTR_FILE,
    finished_stage,
    load_tensors,
    read_checkpoint_record,
    stage_dir,
)
from ega_sim.generative.allocator import GenerativeParts
from ega_sim.generative.config import EGAConfig, generator_config
from ega_sim.generative.generator import Generator
from ega_sim.generative.items import ItemTokenizers, item_tables
from ega_sim.generative.reward_model import PermutationAwareRM
from ega_sim.payment.config import PaynetTrainConfig
from ega_sim.payment.network import PaymentNetwork
from ega_sim.ranking.pctr import PCTRConfig, PositionAwarePCTR
from ega_sim.world.feed_market import ObservedMarket


def load_cascade_ctr_model(
    directory: str | Path, scenario_name: str
) -> tuple[PositionAwarePCTR, dict]:
    """The cascade's pCTR model of a checkpoint folder and its record; clear errors for a
    wrong or broken folder."""
    directory = Path(directory)
    record = read_checkpoint_record(
        directory,
        kind="cascade",
        format_version=CASCADE_FORMAT,
        scenario_name=scenario_name,
        mechanism="cascade/gsp",
    )
    record_path = directory / "checkpoint.json"
    try:
        model = PositionAwarePCTR(PCTRConfig(**record["pctr"]))
    except (KeyError, TypeError) as error:
        raise ValueError(
            f"checkpoint: {record_path} has no valid 'pctr' settings ({error})"
        ) from None
    try:
        model.load_state_dict(load_tensors(directory / PCTR_FILE))
    except (OSError, RuntimeError, EOFError) as error:
        raise ValueError(
            f"checkpoint: {directory / PCTR_FILE} cannot be loaded ({error})"
        ) from None
    model.eval()
    return model, record


def load_item_tokenizers(directory: str | Path, report: dict) -> ItemTokenizers:
    """The semantic IDs of the tokenizers stage, with the vocabularies of its report."""
    tensors = load_tensors(stage_dir(directory, "tokenizers") / "tokenizers.pt")
    return ItemTokenizers(
        tensors["poi_ids"],
        tensors["creative_ids"],
        tuple(report["poi_vocab"]),
        tuple(report["creative_vocab"]),
        report["reports"],
    )


def load_generative_parts(
    directory: str | Path,
    scenario,
    platform: ObservedMarket,
    config: EGAConfig,
    *,
    aligned: bool,
) -> GenerativeParts:
    """The trained parts of the generative stages in `directory`, on the device of the
    platform's tables; `aligned` picks the generator after alignment (ega), else the
    pre-trained one (gr, and alignment's start)."""
    directory = Path(directory)
    tokenizer_report = finished_stage(directory, "tokenizers")
    if (
        tokenizer_report is None
        or finished_stage(directory, "pretrain") is None
        or finished_stage(directory, "reward_model") is None
    ):
        raise ValueError(f"checkpoint: {directory} has unfinished stages; rerun `ega-sim train`")
    device = platform.poi_location.device  # the parts go where the platform's tables are
    tokenizers = load_item_tokenizers(directory, tokenizer_report).to(device)
    tables = item_tables(platform, tokenizers)
    generator = Generator(generator_config(config, tables, scenario))
    which = "alignment" if aligned and not config.single_stage else "pretrain"
    if which == "alignment" and finished_stage(directory, "alignment") is None:
        raise ValueError(
            f"checkpoint: {directory} has no finished alignment stage; rerun `ega-sim train`"
        )
    generator.load_state_dict(load_tensors(stage_dir(directory, which) / "generator.pt"))
    generator.to(device).eval()
    rm = PermutationAwareRM.for_market(config.reward_model, platform, tokenizers)
    rm.load_state_dict(load_tensors(stage_dir(directory, "reward_model") / "reward_model.pt"))
    rm.to(device).eval()
    return GenerativeParts(platform, tokenizers, tables, generator, rm)


def load_generative(
    directory: str | Path, world, allocator_name: str, mechanism: str
) -> tuple[GenerativeParts, EGAConfig]:
    """The parts of `ega` (aligned generator) or `gr` (pre-trained) from a finished checkpoint
    of `ega-sim train --mechanism ega/...`, and the settings it was trained with."""
    record = read_checkpoint_record(
        directory,
        kind="generative",
        format_version=GENERATIVE_FORMAT,
        scenario_name=world.config.name,
        mechanism=mechanism,
    )
    config = EGAConfig.from_dict(record["config"])
    parts = load_generative_parts(
        directory, world.config, world.platform, config, aligned=allocator_name == "ega"
    )
    return parts, config


def load_payment_network(
    checkpoint: str | Path, scenario_name: str, allocator_name: str
) -> PaymentNetwork:
    """The network of `allocator_name/paynet` from CHECKPOINT/paynet/, with clear errors."""
    directory = Path(checkpoint) / PAYNET_DIR
    record = read_checkpoint_record(
        directory,
        kind="paynet",
        format_version=PAYNET_FORMAT,
        scenario_name=scenario_name,
        mechanism=f"{allocator_name}/paynet",
    )
    if record.get("allocator") != allocator_name:
        raise ValueError(
            f"checkpoint: {directory} holds a payment network for {record.get('allocator')!r}, "
            f"not {allocator_name!r}"
        )
    shape = PaynetTrainConfig.from_dict(record["train"], str(directory / "checkpoint.json"))
    network = PaymentNetwork(int(record["n_features"]), shape.network)
    network.load_state_dict(load_tensors(directory / PAYNET_FILE))
    network.eval()
    return network
