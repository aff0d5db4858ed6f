"""Experiments: one file names scenarios, mechanisms, seeds and sweeps; `ega-sim run` turns it
into cells, trains what they need once, runs them locally or on Ray, and writes a report."""

from ega_sim.experiments.runner import RunSummary, run_experiment, write_outputs
from ega_sim.experiments.spec import ExperimentSpec, load_experiment, quick_spec

__all__ = [
    "ExperimentSpec",
    "RunSummary",
    "load_experiment",
    "quick_spec",
    "run_experiment",
    "write_outputs",
]
