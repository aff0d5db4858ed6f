"""Checkpoint files: the names of each layout (trained_parts.py describes them), the
checkpoint.json every trained mechanism folder carries, and tensor files written atomically and
loaded with weights_only=True.

checkpoint.json records the kind and format, the scenario's name and the fingerprint of its
world (config/fingerprint.py), and the byte size and SHA-256 of every file the loader reads
(checksums.py). Reading a checkpoint checks all of them first, so a corrupt, truncated or
swapped file, a checkpoint of another world, or one of an older format is a one-line
ValueError naming the file, never a traceback or a silently wrong mechanism."""

from __future__ import annotations

import io
import json
import pickle
import re
import zipfile
from collections.abc import Iterable
from pathlib import Path

import torch

from ega_sim.atomic import write_bytes_atomic, write_text_atomic
from ega_sim.checksums import file_checksums, read_verified
from ega_sim.config.fingerprint import world_fingerprint, world_mismatch
from ega_sim.provenance import provenance

# Format 2: checkpoint.json carries the checksums of the files and the world's fingerprint.
CASCADE_FORMAT = 2
PCTR_FILE = "pctr.pt"

GENERATIVE_FORMAT = 2
GENERATIVE_STAGES = ("tokenizers", "pretrain", "reward_model", "alignment")
STAGE_RECORD = "stage.json"
STAGE_TENSORS = {
    "tokenizers": "tokenizers.pt",
    "pretrain": "generator.pt",
    "reward_model": "reward_model.pt",
    "alignment": "generator.pt",
}

PAYNET_FORMAT = 2
PAYNET_DIR = "paynet"
PAYNET_FILE = "paynet.pt"

RECORD = "checkpoint.json"


def save_tensors(path: str | Path, tensors) -> Path:
    """torch.save of a state dict (tensors and plain containers), written atomically."""
    buffer = io.BytesIO()
    torch.save(tensors, buffer)
    return write_bytes_atomic(path, buffer.getvalue())


def _first_sentence(error: BaseException) -> str:
    """An exception's message on one line: its first sentence, the line it introduces
    included (as load_state_dict's and the zip reader's messages do)."""
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    if not lines:
        return type(error).__name__
    text = f"{lines[0]} {lines[1]}" if lines[0].endswith(":") and len(lines) > 1 else lines[0]
    return text.split(". ")[0].rstrip(".")


def load_tensors(path: str | Path):
    """What `save_tensors` wrote, onto the CPU, with weights_only=True (no pickled code); a
    file that is not such a file is a ValueError naming it."""
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as error:
        found = re.search(r"WeightsUnpickler error: ([^.\n]*)", str(error))
        detail = f" ({found.group(1).strip()})" if found else ""
        raise ValueError(
            f"{path}: refused: it holds pickled objects other than tensors, and loading them "
            f"could run code{detail}"
        ) from None
    except FileNotFoundError:
        raise ValueError(f"{path}: missing") from None
    except EOFError:
        raise ValueError(
            f"{path}: not a tensor file written by ega-sim (it is empty or cut short)"
        ) from None
    except (OSError, RuntimeError, ValueError, zipfile.BadZipFile) as error:
        raise ValueError(
            f"{path}: not a tensor file written by ega-sim ({_first_sentence(error)})"
        ) from None


def load_weights(module: torch.nn.Module, path: str | Path, record_path: str | Path) -> None:
    """Load the state dict in `path` into `module`, built from the settings in `record_path`;
    weights that do not fit those settings are a ValueError naming both."""
    state = load_tensors(path)
    try:
        module.load_state_dict(state)
    except (RuntimeError, TypeError, AttributeError, KeyError) as error:
        raise ValueError(
            f"checkpoint: {path} does not fit the settings in {record_path} "
            f"({_first_sentence(error)})"
        ) from None


def stage_files(stages: Iterable[str]) -> list[str]:
    """The files of finished generative stages, relative to the checkpoint folder."""
    return [
        f"stages/{stage}/{name}"
        for stage in stages
        for name in (STAGE_RECORD, STAGE_TENSORS[stage])
    ]


def write_checkpoint_record(
    directory: str | Path,
    *,
    kind: str,
    format_version: int,
    scenario,
    files: Iterable[str],
    **fields,
) -> Path:
    """Write DIR/checkpoint.json, last, once `files` (relative to DIR) are written: the kind,
    format, scenario name and world fingerprint, `fields`, the files' checksums, provenance."""
    directory = Path(directory)
    record = {
        "format_version": format_version,
        "kind": kind,
        "scenario": scenario.name,
        "world": world_fingerprint(scenario),
        **fields,
        "files": file_checksums(directory, files),
        **provenance(),
    }
    return write_text_atomic(directory / RECORD, json.dumps(record, indent=2) + "\n")


def train_command(scenario, mechanism: str) -> str:
    """The command that trains `mechanism` on `scenario`, for errors."""
    return f"`ega-sim train --scenario {scenario.name} --mechanism {mechanism} --out DIR`"


def verify_files(directory: str | Path, record: dict, names: Iterable[str], remedy: str) -> None:
    """Check the files `names` and every other file checkpoint.json vouches for against their
    checksums there; anything amiss is a ValueError naming the file."""
    directory = Path(directory)
    record_path = directory / RECORD
    files = record["files"]
    for name in dict.fromkeys([*names, *files]):
        read_verified(directory, name, files, record_path, remedy=remedy)


def read_checkpoint_record(
    directory: str | Path,
    *,
    kind: str,
    format_version: int,
    scenario,
    mechanism: str,
    keys: Iterable[str] = (),
    files: Iterable[str] = (),
) -> dict:
    """DIR/checkpoint.json of `kind` and `format_version`, trained on the world of `scenario`,
    with the settings `keys`, after checking `files` and every other file it vouches for; a
    missing, malformed, foreign or damaged one is a ValueError that names the file and says
    how to make the right one."""
    directory = Path(directory)
    record_path = directory / RECORD
    command = train_command(scenario, mechanism)
    retrain = f"retrain with {command}"
    if not record_path.is_file():
        raise ValueError(f"checkpoint: {record_path} is missing; train one with {command}")
    try:
        record = json.loads(record_path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise ValueError(f"checkpoint: {record_path} is not valid JSON ({error})") from None
    if not isinstance(record, dict):
        raise ValueError(f"checkpoint: {record_path} is not a JSON object")
    if record.get("kind") != kind:
        raise ValueError(
            f"checkpoint: {record_path} is not a {kind} checkpoint (kind {record.get('kind')!r})"
        )
    if record.get("format_version") != format_version:
        raise ValueError(
            f"checkpoint: {record_path} is of format {record.get('format_version')!r}, this "
            f"ega-sim reads format {format_version} (with checksums of its files and the "
            f"fingerprint of its world); {retrain}"
        )
    if record.get("scenario") != scenario.name:
        raise ValueError(
            f"checkpoint: {directory} was trained on scenario {record.get('scenario')!r}, "
            f"not {scenario.name!r}"
        )
    if (mismatch := world_mismatch(record.get("world"), scenario)) is not None:
        raise ValueError(f"checkpoint: {record_path} was trained on {mismatch}; {retrain}")
    for key in ("files", *keys):
        if key not in record:
            raise ValueError(f"checkpoint: {record_path} lacks the key {key!r}; {retrain}")
    if not isinstance(record["files"], dict):
        raise ValueError(f"checkpoint: {record_path}: key 'files' is not an object; {retrain}")
    verify_files(directory, record, files, retrain)
    return record


def stage_dir(directory: str | Path, stage: str) -> Path:
    """Where a generative training stage keeps its files."""
    return Path(directory) / "stages" / stage


def finished_stage(directory: str | Path, stage: str) -> dict | None:
    """The report of a finished generative stage, None while it is unfinished."""
    marker = stage_dir(directory, stage) / STAGE_RECORD
    if not marker.is_file():
        return None
    try:
        return json.loads(marker.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise ValueError(f"checkpoint: {marker} is not valid JSON ({error})") from None
