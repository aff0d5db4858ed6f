"""Where a result came from: package version, git commit and whether the tree was dirty."""

from __future__ import annotations

import functools
import subprocess
from importlib import metadata
from pathlib import Path


def package_version() -> str:
    try:
        return metadata.version("ega-sim")
    except metadata.PackageNotFoundError:
        return "0+unknown"


@functools.cache
def git_commit() -> str:
    """The commit of the source tree ega_sim runs from, with '-dirty' if it has local changes;
    'unknown' outside a git checkout (e.g. an installed wheel)."""
    root = Path(__file__).resolve().parent.parent
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True, timeout=5
        )
        if commit.returncode != 0:
            return "unknown"
        status = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=root,
            capture_output=True,
            text=True,
            timeout=5,
        )
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    dirty = "-dirty" if status.stdout.strip() else ""
    return commit.stdout.strip() + dirty


def provenance() -> dict[str, str]:
    return {"version": package_version(), "git_commit": git_commit()}
