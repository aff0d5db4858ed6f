"""Content hashes of validated scenarios: what a result rests on, and the world it was drawn
from. Experiment artifact and cell ids hash the scenario's identity; checkpoints and logs
record its world fingerprint, so a file trained or simulated on one world is refused on
another, whatever the scenarios are called."""

from __future__ import annotations

import dataclasses
import hashlib
import json
from typing import Any


def content_digest(record: Any) -> str:
    """SHA-256 (hex) of the canonical JSON of plain data (keys sorted)."""
    text = json.dumps(record, sort_keys=True, default=str)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def scenario_identity(scenario) -> dict:
    """The validated scenario as plain data (its file path left out): what a result rests on."""
    record = dataclasses.asdict(scenario)
    record.pop("source", None)
    return record


def world_fingerprint(scenario) -> str:
    """The digest of everything in the validated scenario that shapes its world: all but its
    name and file path. Two copies of a scenario differing in `world_seed` differ here."""
    record = scenario_identity(scenario)
    record.pop("name", None)
    return content_digest(record)


def world_mismatch(recorded: object, scenario) -> str | None:
    """None when `recorded` is the world fingerprint of `scenario`; else the mismatch in words,
    for an error that names the file recording it."""
    expected = world_fingerprint(scenario)
    if recorded == expected:
        return None
    got = recorded[:12] if isinstance(recorded, str) else repr(recorded)
    return (
        f"another world than scenario {scenario.name!r} ({scenario.source}): world fingerprint "
        f"{got}, the scenario's {expected[:12]}"
    )
