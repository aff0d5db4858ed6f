"""Torch's CPU thread count for one call, set and then restored.

Torch starts with one intra-op thread per core; on a busy machine, or with several runs at once,
that oversubscribes the cores and runs far slower than one thread (measured on two shared cores
under a load near 5: the evaluations of `ega-sim evaluate --scenario textbook` took 10.5 s with
torch's default against 0.9 s with one thread). So every public compute entry point (evaluate,
train_mechanism, simulate_logs, ...) takes `threads` (default 1; None keeps the caller's setting)
and every command `--threads` (default 1). Float sums run in another order with another thread
count, so the same seed gives the same numbers only at the same thread count.
"""

from __future__ import annotations

import contextlib
import functools
import inspect
from collections.abc import Callable, Iterator
from typing import TypeVar

import torch

F = TypeVar("F", bound=Callable)


def check_threads(threads: object, name: str = "threads") -> int:
    """`threads` if it is an integer >= 1; ValueError naming `name` otherwise."""
    if isinstance(threads, bool) or not isinstance(threads, int) or threads < 1:
        raise ValueError(f"{name}: expected an integer >= 1 (torch CPU threads), got {threads!r}")
    return threads


@contextlib.contextmanager
def using_threads(threads: int | None, name: str = "threads") -> Iterator[int]:
    """Run the block with torch's intra-op thread count at `threads` (None: as it is), and
    restore the previous count afterwards; yields the count in force. ValueError (naming
    `name`) unless `threads` is None or an integer >= 1."""
    if threads is None:
        yield torch.get_num_threads()
        return
    check_threads(threads, name)
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        yield threads
    finally:
        torch.set_num_threads(before)


def sets_threads(function: F) -> F:
    """Decorate a function that takes a `threads` argument (int >= 1, or None to keep the
    caller's setting): it runs under `using_threads(threads)`, so the setting never leaks
    past the call. Nested calls pass `threads=None` to keep the outer call's setting."""
    signature = inspect.signature(function)
    default = signature.parameters["threads"].default

    @functools.wraps(function)
    def scoped(*args, **kwargs):
        threads = signature.bind_partial(*args, **kwargs).arguments.get("threads", default)
        with using_threads(threads):
            return function(*args, **kwargs)

    return scoped  # type: ignore[return-value]
