"""Where tasks run: in this process, in local worker processes, or as Ray tasks.

Each executor takes a module-level function and its arguments, and hands back finished tasks
one at a time with their result or exception, so the runner writes every result the moment
it exists. Every task sets the torch thread count first: float sums differ between one and
two threads, and a cell must give the same numbers wherever it runs.
"""

from __future__ import annotations

import concurrent.futures as futures
import multiprocessing
import os
from collections.abc import Callable
from typing import Any, Protocol

EXECUTORS = ("local", "ray")


def run_task(threads: int, function: Callable, *args: Any) -> Any:
    """The body of every task: fix the thread count, then run."""
    import torch

    torch.set_num_threads(threads)
    return function(*args)


class Executor(Protocol):
    cpus: int  # CPUs it can use: what `workers` defaults to (divided by the threads per task)

    def submit(self, function: Callable, *args: Any) -> Any: ...

    def wait(self, pending: set) -> list[tuple[Any, Any, BaseException | None]]:
        """Block until at least one pending task ends: [(handle, result, error)]."""
        ...

    def close(self) -> None: ...


class InlineExecutor:
    """One worker: run each task here, at submission (no processes to start)."""

    def __init__(self, threads: int):
        self.threads = threads
        self.cpus = threads

    def submit(self, function: Callable, *args: Any) -> futures.Future:
        future: futures.Future = futures.Future()
        try:
            future.set_result(run_task(self.threads, function, *args))
        except Exception as error:  # handed to the runner, which records it
            future.set_exception(error)
        return future

    def wait(self, pending: set) -> list[tuple[Any, Any, BaseException | None]]:
        return _done_futures(pending)

    def close(self) -> None:
        pass


class LocalExecutor:
    """Worker processes on this machine (spawned: no torch state is forked)."""

    def __init__(self, workers: int | None, threads: int):
        self.threads = threads
        self.cpus = os.cpu_count() or 1
        workers = workers or max(1, self.cpus // threads)
        self.pool = futures.ProcessPoolExecutor(
            max_workers=workers, mp_context=multiprocessing.get_context("spawn")
        )

    def submit(self, function: Callable, *args: Any) -> futures.Future:
        return self.pool.submit(run_task, self.threads, function, *args)

    def wait(self, pending: set) -> list[tuple[Any, Any, BaseException | None]]:
        futures.wait(pending, return_when=futures.FIRST_COMPLETED)
        return _done_futures(pending)

    def close(self) -> None:
        self.pool.shutdown(wait=True, cancel_futures=True)


def _done_futures(pending: set) -> list[tuple[Any, Any, BaseException | None]]:
    done = []
    for future in pending:
        if future.done():
            error = future.exception()
            done.append((future, None if error else future.result(), error))
    return done


class RayExecutor:
    """Ray tasks: `ray.init()` starts a local cluster of `workers` CPUs, or joins the one at
    `address`. Results come back to this process, which writes them; with a multi-node
    cluster the output folder must be on a file system every node sees (trained parts are
    written there by the workers)."""

    def __init__(self, workers: int | None, threads: int, address: str | None):
        try:
            import ray
        except ImportError:
            raise ValueError(
                "executor 'ray': ray is not installed; pip install 'ega-sim[distributed]'"
            ) from None
        self.ray = ray
        self.threads = threads
        self.started = False
        if not ray.is_initialized():
            options = {"address": address} if address else {"num_cpus": workers}
            ray.init(**options, include_dashboard=False, log_to_driver=False)
            self.started = True
        self.cpus = int(ray.cluster_resources().get("CPU", 1))
        self.remote = ray.remote(num_cpus=threads, max_retries=0)(run_task)

    def submit(self, function: Callable, *args: Any) -> Any:
        return self.remote.remote(self.threads, function, *args)

    def wait(self, pending: set) -> list[tuple[Any, Any, BaseException | None]]:
        ready, _ = self.ray.wait(list(pending), num_returns=1)
        done = []
        for handle in ready:
            try:
                done.append((handle, self.ray.get(handle), None))
            except Exception as error:  # a task's error, re-raised by ray.get
                done.append((handle, None, getattr(error, "cause", None) or error))
        return done

    def close(self) -> None:
        if self.started:
            self.ray.shutdown()


def make_executor(name: str, *, workers: int, threads: int, address: str | None = None) -> Executor:
    if name == "local":
        return InlineExecutor(threads) if workers == 1 else LocalExecutor(workers, threads)
    if name == "ray":
        return RayExecutor(workers, threads, address)
    raise ValueError(f"executor: expected one of {', '.join(EXECUTORS)}, got {name!r}")
