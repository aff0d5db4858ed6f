"""The checkpoint.json every trained mechanism folder carries, read with clear errors."""

from __future__ import annotations

import json
from pathlib import Path


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
