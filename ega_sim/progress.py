"""Progress of long work, one mechanism for all of it: a tqdm bar on a terminal and, off one (a
log file, a pipe, a worker process of `ega-sim run`), plain lines on stderr: at most one every
`every` seconds while a stage runs (step k/n, elapsed seconds, the stage's figures such as its
loss) and one when it ends, so a log shows every stage and moves at a steady pace.

`progress` arguments: False (nothing), True (a bar if stderr is a terminal, else lines), "bar"
or "lines" (forced). Lines can carry a label (`labelled`), e.g. the trained part a worker of
`ega-sim run` is training, since several workers write to one log.
"""

from __future__ import annotations

import contextlib
import sys
import time
from collections.abc import Iterable, Iterator
from typing import Literal, TypeVar

from tqdm.auto import tqdm

Progress = bool | Literal["bar", "lines"]
STYLES = ("bar", "lines")
LINE_EVERY = 30.0  # seconds between two lines of a stage off a terminal, at most
POSTFIX_EVERY = 0.5  # seconds between two refreshes of a bar's figures (each may sync a GPU)

T = TypeVar("T")
_label: list[str] = []  # the innermost `labelled` label prefixes every line


def clock() -> float:
    """Seconds on a monotonic clock (a function, so tests can replace it)."""
    return time.monotonic()


def progress_style(progress: Progress | None) -> str:
    """ "off", "bar" or "lines" for a `progress` argument (module docstring); ValueError for
    anything else."""
    if progress is None or progress is False:
        return "off"
    if progress is True:
        return "bar" if sys.stderr.isatty() else "lines"
    if progress in STYLES:
        return progress
    raise ValueError(f"progress: expected True, False, 'bar' or 'lines', got {progress!r}")


@contextlib.contextmanager
def labelled(label: str) -> Iterator[None]:
    """Prefix every progress line written in the block with `[label] `."""
    _label.append(label)
    try:
        yield
    finally:
        _label.pop()


def _format(value) -> str:
    """A figure for a line or a bar: numbers (floats, 0-d tensors) to 4 significant digits."""
    if isinstance(value, str):
        return value
    number = float(value)  # a tensor's .item(): read only when shown
    return f"{number:.0f}" if number.is_integer() and abs(number) < 1e6 else f"{number:.4g}"


class Stage:
    """The progress of one stage of `total` units: `update(n, **figures)` after each unit of
    work, `close()` at the end (or use it as a context manager). Figures (e.g. loss=tensor)
    are read only when shown. `write(line)` prints a message to stdout without breaking a bar
    (always, whatever the style)."""

    def __init__(
        self,
        desc: str,
        total: int | None,
        *,
        progress: Progress | None,
        unit: str = "step",
        initial: int = 0,
        every: float = LINE_EVERY,
    ):
        self.style = progress_style(progress)
        self.desc, self.total, self.unit, self.every = desc, total, unit, every
        self.count = initial
        self.figures: dict = {}
        now = clock() if self.style != "off" else 0.0
        self.started = self.last_line = self.last_postfix = now
        self.closed = False
        self.bar = None
        if self.style == "bar":
            self.bar = tqdm(total=total, initial=initial, desc=desc, unit=unit, file=sys.stderr)

    def __enter__(self) -> Stage:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def update(self, n: int = 1, **figures) -> None:
        self.count += n
        self.figures.update(figures)
        if self.style == "off":
            return
        now = clock()
        if self.bar is not None:
            self.bar.update(n)
            if self.figures and now - self.last_postfix >= POSTFIX_EVERY:
                shown = {key: _format(value) for key, value in self.figures.items()}
                self.bar.set_postfix(shown, refresh=False)
                self.last_postfix = now
        elif now - self.last_line >= self.every:
            self._line(f"{self._counted()}, {now - self.started:.0f} s", now)

    def write(self, line: str) -> None:
        if self.bar is not None:
            self.bar.write(line, file=sys.stdout)
        else:
            print(line, flush=True)

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        if self.bar is not None:
            self.bar.close()
        elif self.style == "lines":
            now = clock()
            self._line(f"done, {self._counted()} in {now - self.started:.1f} s", now)

    def _counted(self) -> str:
        total = "" if self.total is None else f"/{self.total}"
        return f"{self.count}{total} {self.unit}s"

    def _line(self, text: str, now: float) -> None:
        prefix = f"[{_label[-1]}] " if _label else ""
        figures = "".join(f", {key} {_format(value)}" for key, value in self.figures.items())
        print(f"{prefix}{self.desc}: {text}{figures}", file=sys.stderr, flush=True)
        self.last_line = now


def track(
    items: Iterable[T],
    desc: str,
    *,
    progress: Progress | None,
    unit: str = "step",
    total: int | None = None,
    every: float = LINE_EVERY,
) -> Iterator[T]:
    """Iterate over `items`, one unit of a Stage each (tqdm(items) with this module's lines)."""
    if total is None and hasattr(items, "__len__"):
        total = len(items)  # type: ignore[arg-type]
    with Stage(desc, total, progress=progress, unit=unit, every=every) as stage:
        for item in items:
            yield item
            stage.update()
