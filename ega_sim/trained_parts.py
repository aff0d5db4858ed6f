"""Trained parts, loaded in one place: the layouts of checkpoint folders and their loaders.

A checkpoint folder holds `checkpoint.json` (kind, format, scenario and the fingerprint of its
world, settings, reports, the checksums of the files below, provenance; checkpoints.py checks
them all before anything loads) and tensor files loaded with weights_only=True:

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
    RECORD,
    STAGE_TENSORS,
    finished_stage,
    load_tensors,
    load_weights,
    read_checkpoint_record,
    stage_dir,
    stage_files,
    train_command,
    verify_files,
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


def load_cascade_ctr_model(directory: str | Path, scenario) -> tuple[PositionAwarePCTR, dict]:
    """The cascade's pCTR model of a checkpoint folder trained on the world of `scenario`, and
    its record; clear errors for a wrong or broken folder."""
    directory = Path(directory)
    record = read_checkpoint_record(
        directory,
        kind="cascade",
        format_version=CASCADE_FORMAT,
        scenario=scenario,
        mechanism="cascade/gsp",
        keys=("pctr",),
        files=(PCTR_FILE,),
    )
    record_path = directory / RECORD
    try:
        model = PositionAwarePCTR(PCTRConfig(**record["pctr"]))
    except (KeyError, TypeError, ValueError, RuntimeError) as error:
        raise ValueError(
            f"checkpoint: {record_path} has no valid 'pctr' settings ({error})"
        ) from None
    load_weights(model, directory / PCTR_FILE, record_path)
    model.eval()
    return model, record


def load_item_tokenizers(directory: str | Path, report: dict) -> ItemTokenizers:
    """The semantic IDs of the tokenizers stage, with the vocabularies of its report."""
    path = stage_dir(directory, "tokenizers") / STAGE_TENSORS["tokenizers"]
    tensors = load_tensors(path)
    try:
        return ItemTokenizers(
            tensors["poi_ids"],
            tensors["creative_ids"],
            tuple(report["poi_vocab"]),
            tuple(report["creative_vocab"]),
            report["reports"],
        )
    except (KeyError, TypeError) as error:
        raise ValueError(f"checkpoint: {path} or its stage.json lacks {error}") from None


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
    which = generator_stage(config, aligned)
    if which == "alignment" and finished_stage(directory, "alignment") is None:
        raise ValueError(
            f"checkpoint: {directory} has no finished alignment stage; rerun `ega-sim train`"
        )
    record_path = directory / RECORD
    load_weights(generator, stage_dir(directory, which) / STAGE_TENSORS[which], record_path)
    generator.to(device).eval()
    rm = PermutationAwareRM.for_market(config.reward_model, platform, tokenizers)
    load_weights(
        rm, stage_dir(directory, "reward_model") / STAGE_TENSORS["reward_model"], record_path
    )
    rm.to(device).eval()
    return GenerativeParts(platform, tokenizers, tables, generator, rm)


def generator_stage(config: EGAConfig, aligned: bool) -> str:
    """The stage whose generator a mechanism uses: alignment's for `ega` (unless the pipeline
    has a single stage), pre-training's otherwise."""
    return "alignment" if aligned and not config.single_stage else "pretrain"


def load_generative(
    directory: str | Path, world, allocator_name: str, mechanism: str
) -> tuple[GenerativeParts, EGAConfig]:
    """The parts of `ega` (aligned generator) or `gr` (pre-trained) from a finished checkpoint
    of `ega-sim train --mechanism ega/...` on the world's scenario, and the settings it was
    trained with."""
    directory = Path(directory)
    record = read_checkpoint_record(
        directory,
        kind="generative",
        format_version=GENERATIVE_FORMAT,
        scenario=world.config,
        mechanism=mechanism,
        keys=("config",),
        files=stage_files(("tokenizers", "pretrain", "reward_model")),
    )
    if not isinstance(record["config"], dict):
        raise ValueError(f"checkpoint: {directory / RECORD}: key 'config' is not an object")
    config = EGAConfig.from_dict(record["config"], str(directory / RECORD))
    which = generator_stage(config, allocator_name == "ega")
    retrain = f"retrain with {train_command(world.config, mechanism)}"
    verify_files(directory, record, stage_files((which,)), retrain)
    parts = load_generative_parts(
        directory, world.config, world.platform, config, aligned=allocator_name == "ega"
    )
    return parts, config


def load_payment_network(checkpoint: str | Path, scenario, allocator_name: str) -> PaymentNetwork:
    """The network of `allocator_name/paynet` from CHECKPOINT/paynet/, trained on the world of
    `scenario`, with clear errors."""
    directory = Path(checkpoint) / PAYNET_DIR
    record = read_checkpoint_record(
        directory,
        kind="paynet",
        format_version=PAYNET_FORMAT,
        scenario=scenario,
        mechanism=f"{allocator_name}/paynet",
        keys=("allocator", "n_features", "train"),
        files=(PAYNET_FILE,),
    )
    record_path = directory / RECORD
    if record["allocator"] != allocator_name:
        raise ValueError(
            f"checkpoint: {directory} holds a payment network for {record['allocator']!r}, "
            f"not {allocator_name!r}"
        )
    n_features = record["n_features"]
    if isinstance(n_features, bool) or not isinstance(n_features, int) or n_features < 1:
        raise ValueError(
            f"checkpoint: {record_path}: key 'n_features': expected an integer >= 1, "
            f"got {n_features!r}"
        )
    if not isinstance(record["train"], dict):
        raise ValueError(f"checkpoint: {record_path}: key 'train' is not an object")
    shape = PaynetTrainConfig.from_dict(record["train"], str(record_path))
    network = PaymentNetwork(n_features, shape.network)
    load_weights(network, directory / PAYNET_FILE, record_path)
    network.eval()
    return network
