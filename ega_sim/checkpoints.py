"""Checkpoint files: the names of each layout (trained_parts.py describes them), the
checkpoint.json every trained mechanism folder carries, read with clear errors, and tensor files
written atomically and loaded with weights_only=True."""

from __future__ import annotations

import io
import json
from pathlib import Path

import torch

from ega_sim.atomic import write_bytes_atomic

CASCADE_FORMAT = 1
PCTR_FILE = "pctr.pt"

GENERATIVE_FORMAT = 1
GENERATIVE_STAGES = ("tokenizers", "pretrain", "reward_model", "alignment")
STAGE_RECORD = "stage.json"

PAYNET_FORMAT = 1
PAYNET_DIR = "paynet"
PAYNET_FILE = "paynet.pt"


def save_tensors(path: str | Path, tensors) -> Path:
    """torch.save of a state dict (tensors and plain containers), written atomically."""
    buffer = io.BytesIO()
    torch.save(tensors, buffer)
    return write_bytes_atomic(path, buffer.getvalue())


def load_tensors(path: str | Path):
    """What `save_tensors` wrote, onto the CPU, with weights_only=True (no pickled code)."""
    return torch.load(path, map_location="cpu", weights_only=True)


def read_checkpoint_record(
    directory: str | Path, *, kind: str, format_version: int, scenario_name: str, mechanism: str
) -> dict:
    """DIR/checkpoint.json of `kind` and `format_version`, trained on `scenario_name`; a
    missing, malformed or foreign one is a ValueError that says how to make the right one."""
    directory = Path(directory)
    record_path = directory / "checkpoint.json"
    if not record_path.is_file():
        raise ValueError(
            f"checkpoint: {record_path} is missing; train one with `ega-sim train --scenario "
            f"{scenario_name} --mechanism {mechanism} --out DIR`"
        )
    try:
        record = json.loads(record_path.read_text())
    except json.JSONDecodeError as error:
        raise ValueError(f"checkpoint: {record_path} is not valid JSON ({error})") from None
    if not isinstance(record, dict):
        raise ValueError(f"checkpoint: {record_path} is not a JSON object")
    if record.get("kind") != kind or record.get("format_version") != format_version:
        raise ValueError(
            f"checkpoint: {record_path} is not a {kind} checkpoint of format {format_version} "
            f"(kind {record.get('kind')!r})"
        )
    if record.get("scenario") != scenario_name:
        raise ValueError(
            f"checkpoint: {directory} was trained on scenario {record.get('scenario')!r}, "
            f"not {scenario_name!r}"
        )
    return record


def stage_dir(directory: str | Path, stage: str) -> Path:
    """Where a generative training stage keeps its files."""
    return Path(directory) / "stages" / stage


def finished_stage(directory: str | Path, stage: str) -> dict | None:
    """The report of a finished generative stage, None while it is unfinished."""
    marker = stage_dir(directory, stage) / STAGE_RECORD
    return json.loads(marker.read_text()) if marker.is_file() else None
