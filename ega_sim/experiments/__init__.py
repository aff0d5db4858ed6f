"""Experiments: one file names scenarios, mechanisms, seeds and sweeps; `ega-sim run` turns it
into cells, trains what they need once, runs them locally or on Ray, and writes a report.

Its names load on first use (PEP 562): the CLI reads `ega_sim.experiments.executors` without
paying for the runner's report, pandas and matplotlib."""

from __future__ import annotations

from ega_sim.lazy import lazy_getattr

_EXPORTS = {
    "ExperimentSpec": "ega_sim.experiments.spec",
    "RunSummary": "ega_sim.experiments.runner",
    "load_experiment": "ega_sim.experiments.spec",
    "quick_spec": "ega_sim.experiments.spec",
    "run_experiment": "ega_sim.experiments.runner",
    "write_outputs": "ega_sim.experiments.runner",
}

__all__ = sorted(_EXPORTS)

__getattr__ = lazy_getattr(__name__, _EXPORTS)
