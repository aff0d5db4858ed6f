"""The on-disk log format: a folder of NPZ files and a meta.json that vouches for them.

    DIR/exposures.npz   one row per logged request (R rows), K slots per row:
        user [R] int64                 the user of the request
        candidate_advertiser [R, N]    the request's candidate ads (advertiser ids)
        candidate_bid [R, N] float64   their bids per click (truthful: their values)
        organic_poi [R, M] int64       the request's organic items, in upstream order
        poi [R, K] int64               POI shown in each slot
        is_ad [R, K] bool
        advertiser [R, K] int64        -1 for organic items
        creative [R, K] int64          creative index of the ad's advertiser, -1 for organic
        bid [R, K] float64             bid per click of the ad shown, 0 for organic
        explored [R] bool              the list was shown in a random order
        poi_click, img_click, order [R, K] uint8   realized outcomes
        gmv [R, K] float64             realized order value
    DIR/platform.npz    the platform's tables of the market (ObservedMarket fields: locations,
                        price levels, categories, advertisers and creative counts, users'
                        histories, noisy latents, qualities and creative styles); no truth
    DIR/meta.json       format version, scenario, the fingerprint of its world
                        (config/fingerprint.py), seed, requests, policy, package version, git
                        commit, and the byte size and SHA-256 of each NPZ file (checksums.py)

Files are written atomically and meta.json last, so a folder with a meta.json is complete;
reading checks every file against it, so a truncated or swapped file is a clear error, and
checks the world against the scenario's, so logs of another world are refused.
"""

from __future__ import annotations

import io
import json
import zipfile
from dataclasses import dataclass, fields
from pathlib import Path

import numpy as np
import torch

from ega_sim.atomic import write_bytes_atomic, write_text_atomic
from ega_sim.checksums import checksum, read_verified
from ega_sim.config.feed_market import FeedMarketConfig
from ega_sim.config.fingerprint import world_fingerprint, world_mismatch
from ega_sim.world.feed_market import ObservedMarket

FORMAT_VERSION = 2  # 2: meta.json records the world's fingerprint
RESIMULATE = "simulate the logs again with `ega-sim simulate-logs`"
EXPOSURE_COLUMNS = (
    "user",
    "candidate_advertiser",
    "candidate_bid",
    "organic_poi",
    "poi",
    "is_ad",
    "advertiser",
    "creative",
    "bid",
    "explored",
    "poi_click",
    "img_click",
    "order",
    "gmv",
)


class LogError(ValueError):
    """A log folder is missing, incomplete, truncated or of another format."""


@dataclass(frozen=True)
class Logs:
    """Logged exposures (torch tensors, CPU as read) with the platform's tables and the
    metadata."""

    exposures: dict[str, torch.Tensor]
    platform: ObservedMarket
    meta: dict

    @property
    def n_requests(self) -> int:
        return self.exposures["user"].shape[0]

    def to(self, device: torch.device | str) -> Logs:
        """The logs with their tensors on `device` (training reads them there)."""
        exposures = {name: column.to(device) for name, column in self.exposures.items()}
        return Logs(exposures, self.platform.to(device), self.meta)


def _npz_bytes(arrays: dict[str, np.ndarray]) -> bytes:
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    return buffer.getvalue()


def _platform_arrays(platform: ObservedMarket) -> dict[str, np.ndarray]:
    return {
        spec.name: getattr(platform, spec.name).cpu().numpy()
        for spec in fields(platform)
        if isinstance(getattr(platform, spec.name), torch.Tensor)
    }


def write_logs(
    out: str | Path, exposures: dict[str, torch.Tensor], platform: ObservedMarket, meta: dict
) -> Path:
    """Write a log folder; `meta` gets the format version, the count of logged requests, the
    fingerprint of the platform's world and the files' checksums."""
    out = Path(out)
    missing = set(EXPOSURE_COLUMNS) - set(exposures)
    if missing:
        raise ValueError(f"write_logs: exposures lack the columns {sorted(missing)}")
    files = {
        "exposures.npz": _npz_bytes({k: exposures[k].cpu().numpy() for k in EXPOSURE_COLUMNS}),
        "platform.npz": _npz_bytes(_platform_arrays(platform)),
    }
    checksums = {}
    for name, data in files.items():
        write_bytes_atomic(out / name, data)
        checksums[name] = checksum(data)
    record = {
        "format_version": FORMAT_VERSION,
        **meta,
        "requests": len(exposures["user"]),  # what read_logs checks the rows against
        "world": world_fingerprint(platform.config),
        "files": checksums,
    }
    write_text_atomic(out / "meta.json", json.dumps(record, indent=2, sort_keys=True) + "\n")
    return out


def _load_checked(directory: Path, name: str, files: dict) -> dict[str, np.ndarray]:
    path = directory / name
    data = read_verified(
        directory, name, files, directory / "meta.json", remedy=RESIMULATE, error=LogError
    )
    try:
        with np.load(io.BytesIO(data), allow_pickle=False) as npz:
            return {key: npz[key] for key in npz.files}
    except (zipfile.BadZipFile, ValueError, OSError) as error:
        raise LogError(f"{path}: not a readable NPZ file ({error})") from None


def _check_counts(meta: dict, meta_path: Path, rows: int) -> None:
    """meta.json's seed and request count are what a trainer copies into its checkpoint and
    matches against what it was asked for: an integer seed and the logged rows' count."""
    seed, requests = meta.get("seed"), meta.get("requests")
    if not isinstance(seed, int) or isinstance(seed, bool):
        raise LogError(f"{meta_path}: key 'seed': expected an integer, got {seed!r}; {RESIMULATE}")
    if requests != rows or isinstance(requests, bool):
        raise LogError(
            f"{meta_path}: key 'requests': expected the {rows} logged requests of "
            f"exposures.npz, got {requests!r}; {RESIMULATE}"
        )


def read_logs(directory: str | Path, scenario: FeedMarketConfig | None = None) -> Logs:
    """Read and verify a log folder; with `scenario`, also check the logs came from it."""
    directory = Path(directory)
    meta_path = directory / "meta.json"
    if not meta_path.is_file():
        raise LogError(
            f"{meta_path}: missing; {directory} is not a complete log folder "
            "(make one with `ega-sim simulate-logs`)"
        )
    try:
        meta = json.loads(meta_path.read_text())
    except json.JSONDecodeError as error:
        raise LogError(f"{meta_path}: not valid JSON ({error})") from None
    if not isinstance(meta, dict) or not isinstance(meta.get("files"), dict):
        raise LogError(f"{meta_path}: expected a JSON object with a 'files' object")
    if meta.get("format_version") != FORMAT_VERSION:
        raise LogError(
            f"{meta_path}: format_version {meta.get('format_version')!r}, this "
            f"ega-sim reads {FORMAT_VERSION}; {RESIMULATE}"
        )
    if scenario is None:
        from ega_sim.config.scenario import load_scenario

        if not isinstance(meta.get("scenario_source"), str):
            raise LogError(f"{meta_path}: no 'scenario_source'; pass the scenario")
        scenario = load_scenario(meta["scenario_source"])
    if meta.get("scenario") != scenario.name:
        raise LogError(
            f"{meta_path}: logs of scenario {meta.get('scenario')!r}, not {scenario.name!r}"
        )
    if (mismatch := world_mismatch(meta.get("world"), scenario)) is not None:
        raise LogError(f"{meta_path}: logs of {mismatch}; {RESIMULATE}")
    exposures = _load_checked(directory, "exposures.npz", meta["files"])
    platform = _load_checked(directory, "platform.npz", meta["files"])
    missing = set(EXPOSURE_COLUMNS) - set(exposures)
    if missing:
        raise LogError(f"{directory / 'exposures.npz'}: missing columns {sorted(missing)}")
    _check_counts(meta, meta_path, rows=len(exposures["user"]))
    try:
        observed = ObservedMarket(
            config=scenario, **{k: torch.from_numpy(v) for k, v in platform.items()}
        )
    except TypeError as error:
        raise LogError(f"{directory / 'platform.npz'}: not the platform tables ({error})") from None
    return Logs({k: torch.from_numpy(v) for k, v in exposures.items()}, observed, meta)
