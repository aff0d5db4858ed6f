"""Write files atomically: to a temporary file in the same folder, then rename over the target,
so a reader never sees a half-written result, even when the writer is killed mid-way.

A writer killed between the two steps leaves its temporary file behind. Each one is named
`.<target>.<host>-<pid>.<random>.tmp` (host: a short hash of the machine's name), so the next
run of the same folder can tell a leftover from a live write: `remove_stale_temporaries`
removes those of this machine whose writer has ended, and any older than `STALE_SECONDS`
(from another machine of a cluster sharing the folder, or from before this naming).
"""

from __future__ import annotations

import hashlib
import os
import re
import socket
import tempfile
import time
from pathlib import Path

STALE_SECONDS = 600.0  # a temporary this old is a leftover whoever wrote it
# mkstemp's random part: 8 characters of [a-z0-9_]
_TEMPORARY = re.compile(r"\..+?(?:\.(?P<host>[0-9a-f]{8})-(?P<pid>\d+))?\.[a-z0-9_]{8}\.tmp")


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _host() -> str:
    return hashlib.sha256(socket.gethostname().encode("utf-8")).hexdigest()[:8]


def write_bytes_atomic(path: str | Path, data: bytes) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    prefix = f".{path.name}.{_host()}-{os.getpid()}."
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=prefix, suffix=".tmp")
    try:
        os.chmod(temporary, 0o666 & ~_umask())  # mkstemp makes 0600; give the usual mode
        with os.fdopen(handle, "wb") as stream:
            stream.write(data)
            stream.flush()
            os.fsync(stream.fileno())
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    return path


def write_text_atomic(path: str | Path, text: str) -> Path:
    return write_bytes_atomic(path, text.encode("utf-8"))


def _running(pid: int) -> bool:
    """Whether a process of this id runs on this machine (a reused id counts as running)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process
        return True
    return True


def _stale(path: Path, now: float, older_than: float) -> bool:
    match = _TEMPORARY.fullmatch(path.name)
    if match is None:
        return False  # not one of ours
    try:
        age = now - path.stat().st_mtime
    except FileNotFoundError:  # its writer just renamed it
        return False
    if age > older_than:
        return True
    pid = match["pid"]
    return match["host"] == _host() and int(pid) != os.getpid() and not _running(int(pid))


def remove_stale_temporaries(folder: str | Path, older_than: float = STALE_SECONDS) -> list[Path]:
    """Remove the temporary files that killed atomic writes left in `folder` and below (see
    the module docstring); returns those removed. A live writer's file is kept."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    now = time.time()
    removed = []
    for path in folder.rglob(".*.tmp"):
        if path.is_file() and _stale(path, now, older_than):
            path.unlink(missing_ok=True)
            removed.append(path)
    return removed
