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

import json
import time
from pathlib import Path

import torch

from ega_sim.atomic import write_bytes_atomic, write_text_atomic
from ega_sim.checkpoints import (
    GENERATIVE_FORMAT,
    STAGE_RECORD,
    STAGE_TENSORS,
    finished_stage,
    save_tensors,
    stage_dir,
    stage_files,
    write_checkpoint_record,
)
from ega_sim.generative.alignment import align
from ega_sim.generative.allocator import GenerativeMechanism
from ega_sim.generative.config import EGAConfig, generator_config
from ega_sim.generative.items import ItemTokenizers, fit_item_tokenizers, item_tables
from ega_sim.generative.pretrain import pretrain_generator
from ega_sim.generative.reward_model_train import train_reward_model
from ega_sim.progress import Progress
from ega_sim.threads import sets_threads
from ega_sim.trained_parts import load_generative_parts, load_item_tokenizers


def _finish(out: Path, stage: str, report: dict) -> None:
    write_text_atomic(stage_dir(out, stage) / STAGE_RECORD, json.dumps(report, indent=2) + "\n")


def _save_tokenizers(path: Path, tokenizers: ItemTokenizers) -> None:
    save_tensors(
        path / STAGE_TENSORS["tokenizers"],
        {"poi_ids": tokenizers.poi_ids, "creative_ids": tokenizers.creative_ids},
    )


@sets_threads
def train_ega(
    scenario,
    logs,
    out: Path,
    config: EGAConfig | None = None,
    *,
    seed: int = 0,
    progress: Progress = False,
    device: str | torch.device = "cpu",
    world=None,
    threads: int | None = 1,
) -> dict:
    """Run (or resume) every stage on `device` (the RQ-VAE tokenizers fit on the CPU, a few
    seconds); returns the stage reports. A `world` (the simulator's truth) only draws the
    alignment-versus-truth curve of the alignment checkpoints (stages/alignment/curve.png).
    `threads`: torch's CPU threads for the call (default 1; None keeps the caller's setting),
    restored afterwards. `progress`: see ega_sim/progress.py."""
    config = EGAConfig() if config is None else config
    out = Path(out)
    logs = logs.to(device)
    platform = logs.platform
    reports: dict = {}

    stage = stage_dir(out, "tokenizers")
    if (done := finished_stage(out, "tokenizers")) is None:
        started = time.perf_counter()
        steps = config.tokenizer_steps
        tokenizers = fit_item_tokenizers(platform, seed=seed, steps=steps, progress=progress)
        _save_tokenizers(stage, tokenizers)
        done = {
            "poi_vocab": list(tokenizers.poi_vocab),
            "creative_vocab": list(tokenizers.creative_vocab),
            "reports": tokenizers.reports,
            "seconds": time.perf_counter() - started,
        }
        _finish(out, "tokenizers", done)
    reports["tokenizers"] = done
    tokenizers = load_item_tokenizers(out, done).to(device)
    tables = item_tables(platform, tokenizers)
    shape = generator_config(config, tables, scenario)

    stage = stage_dir(out, "pretrain")
    if (done := finished_stage(out, "pretrain")) is None:
        generator, done = pretrain_generator(
            logs, tables, shape, config.pretrain, seed=seed, progress=progress
        )
        save_tensors(stage / STAGE_TENSORS["pretrain"], generator.state_dict())
        _finish(out, "pretrain", done)
    reports["pretrain"] = done

    stage = stage_dir(out, "reward_model")
    if (done := finished_stage(out, "reward_model")) is None:
        rm, done = train_reward_model(
            logs, tokenizers, config.reward_model, seed=seed, progress=progress
        )
        save_tensors(stage / STAGE_TENSORS["reward_model"], rm.state_dict())
        _finish(out, "reward_model", done)
    reports["reward_model"] = done

    if not config.single_stage:
        stage = stage_dir(out, "alignment")
        if (done := finished_stage(out, "alignment")) is None:
            parts = load_generative_parts(out, scenario, platform, config, aligned=False)
            mechanism = GenerativeMechanism(
                "ega",
                scenario,
                parts,
                "gsp",
                beams=config.beams,
                bidding=config.bidding,
                ctr_weight=config.ctr_weight,
            )
            done = align(
                mechanism, logs, config.alignment, seed=seed, progress=progress, world=world
            )
            save_tensors(stage / STAGE_TENSORS["alignment"], parts.generator.state_dict())
            if done["curve"]:
                from ega_sim.report.figures.alignment import alignment_curve_png

                write_bytes_atomic(stage / "curve.png", alignment_curve_png(done))
            _finish(out, "alignment", done)
        reports["alignment"] = done

    write_checkpoint_record(
        out,
        kind="generative",
        format_version=GENERATIVE_FORMAT,
        scenario=scenario,
        files=stage_files(reports),
        config=config.to_dict(),
        stages=reports,
    )
    return reports
