"""Where the tool may write: every path it builds from a name (a scenario's, an experiment's,
a cell's or a trained part's id) must lie inside its output folder, and an output named on
the command line is checked before any work, so a run never ends in a write that cannot be.

`inside` is the one check every writer of an experiment uses; it is lexical (no link is
followed): a name holding `..` or an absolute path is refused, while a link the user made in
the folder (a shared artifacts folder, say) stays the user's choice.
"""

from __future__ import annotations

from pathlib import Path, PurePath


def inside(root: str | Path, *parts: str) -> Path:
    """`root / parts`, or a one-line ValueError when that would not lie strictly inside
    `root` (an empty, absolute or `..` part)."""
    relative = PurePath(*parts)
    if not relative.parts or relative.anchor or ".." in relative.parts:
        joined = "/".join(str(part) for part in parts)
        raise ValueError(
            f"path {joined!r}: expected a path inside the output folder {root} "
            "(no '..', not absolute)"
        )
    return Path(root).joinpath(relative)


def _file_in_the_way(path: Path) -> Path | None:
    """The first existing ancestor of `path` that is not a folder, if any."""
    for parent in path.parents:
        if parent.exists():
            return None if parent.is_dir() else parent
    return None


def check_output_file(path: str | Path, option: str) -> Path:
    """An output file named by `option`, refused up front (ValueError naming the option)
    when it is an existing folder or a file stands where one of its folders must be."""
    path = Path(path)
    if path.is_dir():
        raise ValueError(f"{option}: expected a file to write, got {str(path)!r}, a folder")
    blocker = _file_in_the_way(path)
    if blocker is not None:
        raise ValueError(
            f"{option}: expected a file in a folder, but {str(blocker)!r} is a file, not a folder"
        )
    return path


def check_output_folder(path: str | Path, option: str) -> Path:
    """An output folder named by `option`, refused up front (ValueError naming the option)
    when it, or one of the folders above it, exists and is a file."""
    path = Path(path)
    blocker = path if path.exists() and not path.is_dir() else _file_in_the_way(path)
    if blocker is not None:
        raise ValueError(
            f"{option}: expected a folder to write into, but {str(blocker)!r} is a file"
        )
    return path
