"""Byte sizes and SHA-256 of the files a record vouches for (a log folder's meta.json, a
checkpoint folder's checkpoint.json): computed when the files are written, checked before
they are read, so a truncated, corrupt or swapped file is a one-line error naming it."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from pathlib import Path


def checksum(data: bytes) -> dict:
    """The record of one file's content: {"bytes": size, "sha256": hex digest}."""
    return {"bytes": len(data), "sha256": hashlib.sha256(data).hexdigest()}


def file_checksums(directory: Path, names: Iterable[str]) -> dict[str, dict]:
    """The checksums of the files `names` (paths relative to `directory`) as they are on disk."""
    return {name: checksum((Path(directory) / name).read_bytes()) for name in names}


def read_verified(
    directory: Path,
    name: str,
    files: dict,
    record_path: Path,
    *,
    remedy: str,
    error: type[ValueError] = ValueError,
) -> bytes:
    """The bytes of directory/name, checked against files[name] of the record at
    `record_path`; anything amiss is an `error` naming the file, ending with `remedy`."""
    expected = files.get(name)
    if (
        not isinstance(expected, dict)
        or isinstance(expected.get("bytes"), bool)
        or not isinstance(expected.get("bytes"), int)
        or not isinstance(expected.get("sha256"), str)
    ):
        raise error(
            f"{record_path}: key 'files.{name}': expected an object "
            f'{{"bytes": N, "sha256": HEX}}, got {expected!r}; {remedy}'
        )
    path = Path(directory) / name
    if not path.is_file():
        raise error(f"{path}: missing; {remedy}")
    data = path.read_bytes()
    found = checksum(data)
    if found["bytes"] != expected["bytes"]:
        raise error(
            f"{path}: {found['bytes']} bytes, not the {expected['bytes']} of {record_path.name}: "
            f"the file is truncated or was replaced; {remedy}"
        )
    if found["sha256"] != expected["sha256"]:
        raise error(
            f"{path}: its SHA-256 differs from {record_path.name}'s: the file is corrupt or was "
            f"replaced; {remedy}"
        )
    return data
