"""Run an experiment: plan its cells, train what they need, run them, write the report.

Work is a small graph: artifacts (logs, trained models) before the cells that load them.
The runner keeps at most `workers` tasks in flight, submits each task as soon as what it needs
exists, and writes every cell's record to OUT/cells/<id>.json (atomically) the moment it
ends. A rerun skips finished cells and finished artifacts, so a run killed at any moment
resumes and loses nothing finished. A failed task is reported and the rest go on; the tables
and the report are written once every cell has a record.
"""

from __future__ import annotations

import dataclasses
import json
import math
import time
from dataclasses import dataclass, field
from pathlib import Path

from ega_sim.atomic import remove_stale_temporaries, write_text_atomic
from ega_sim.experiments.artifacts import artifact_path, finished, train_artifact
from ega_sim.experiments.cells import Cell, Plan, plan_experiment, run_cell
from ega_sim.experiments.executors import make_executor
from ega_sim.experiments.results import CELLS, read_records, tables, write_tables
from ega_sim.experiments.spec import ExperimentSpec
from ega_sim.paths import check_output_folder, inside
from ega_sim.progress import Progress, Stage, progress_style
from ega_sim.provenance import provenance

ARTIFACTS = "artifacts"
FAILURES = "failures"
REPORTS = "reports"  # where reports go without --out
CELL_LINE_EVERY = 10.0  # seconds between two lines about finished cells, off a terminal


@dataclass
class RunSummary:
    out: Path
    cells: int  # cells of the experiment
    reused: int  # finished before this run
    computed: int  # finished by this run
    failed: list[str] = field(default_factory=list)  # "id: error"
    seconds: float = 0.0
    written: list[Path] = field(default_factory=list)
    name: str = ""  # the experiment's

    def counts_line(self) -> str:
        return (
            f"{self.name}: {self.cells} cells, {self.reused} finished before, {self.computed} "
            f"computed now, {len(self.failed)} failed; {self.seconds:.0f} s"
        )

    def failure_lines(self) -> list[str]:
        """What failed and how to retry; empty when nothing failed."""
        if not self.failed:
            return []
        retry = f"rerun the same command to retry them; finished cells are kept in {self.out}"
        return [*(f"  failed: {line}" for line in self.failed), retry]


def default_out(spec: ExperimentSpec) -> Path:
    """reports/<name>/ (reports/<name>-quick/ with --quick), never outside reports/."""
    return inside(REPORTS, f"{spec.name}-quick" if spec.quick else spec.name)


def experiment_record(spec: ExperimentSpec, plan: Plan) -> dict:
    """experiment.json: what the report needs to know about the experiment."""
    return {
        "name": spec.name,
        "title": spec.title,
        "description": spec.description,
        "kind": spec.kind,
        "source": spec.source,
        "figures": list(spec.figures),
        "reference": spec.reference,
        "sweep_keys": list(spec.sweep),
        "labels": [m.label for m in spec.mechanisms],
        "mechanisms": {m.label: m.name for m in spec.mechanisms},
        "paper_rows": {m.label: m.paper for m in spec.mechanisms if m.paper},
        "scenarios": sorted({c.scenario for c in plan.cells}, key=list(spec.scenarios).index),
        "scenario_names": list(dict.fromkeys(c.validated.name for c in plan.cells)),
        "seeds": list(spec.seeds),
        "requests": spec.requests,
        "regret_requests": spec.regret_requests,
        "misreport": spec.misreport,
        "quick": spec.quick,
        "training": dataclasses.asdict(spec.training),
        "cells": [cell.id for cell in plan.cells],
        **provenance(),
    }


def _cell_path(out: Path, cell: Cell) -> Path:
    return inside(out, CELLS, f"{cell.id}.json")


def _failure_path(out: Path, task_id: str) -> Path:
    return inside(out, FAILURES, f"{task_id}.txt")


def _check_paths(plan: Plan, out: Path, artifacts_root: Path) -> None:
    """Every path the run will write lies inside its folder (ValueError otherwise), checked
    before anything is written: ids are built from names read from files."""
    for cell in plan.cells:
        _cell_path(out, cell)
        _failure_path(out, cell.id)
    for artifact_id in plan.artifacts:
        artifact_path(artifacts_root, artifact_id)
        _failure_path(out, artifact_id)


def _json_safe(record):
    """Strict JSON: NaN (an undefined figure, e.g. psi where truthful bidders earn nothing) as
    null, infinities as the strings "inf" and "-inf"."""
    if isinstance(record, float):
        if math.isinf(record):
            return "inf" if record > 0 else "-inf"
        return record if math.isfinite(record) else None
    if isinstance(record, dict):
        return {key: _json_safe(value) for key, value in record.items()}
    if isinstance(record, list | tuple):
        return [_json_safe(value) for value in record]
    return record


def run_experiment(
    spec: ExperimentSpec,
    out: str | Path | None = None,
    *,
    executor: str = "local",
    workers: int | None = None,
    threads: int = 1,
    address: str | None = None,
    artifacts: str | Path | None = None,
    progress: Progress = True,
) -> RunSummary:
    """Run every unfinished cell of `spec` into `out` (default reports/<name>/), then write
    the tables and the report. `workers` tasks at a time (default: CPU cores / threads, of
    the Ray cluster with the ray executor) each run torch with `threads` threads. Trained
    parts go to `artifacts` (default OUT/artifacts/); their ids hash everything that shapes
    them (the thread count too, when not 1), so experiments may share one folder. Every path
    is checked to lie inside its folder before anything is written, and temporary files
    that killed writes left there are removed. `progress` (progress.py): a bar of the cells on
    a terminal; off one, a line at most every CELL_LINE_EVERY seconds and at the end; trained
    parts log their stages as lines either way (a worker's bar would fight the run's)."""
    started = time.perf_counter()
    out = check_output_folder(out, "--out") if out is not None else default_out(spec)
    if (workers is not None and workers < 1) or threads < 1:
        raise ValueError(f"workers and threads: expected integers >= 1, got {workers}, {threads}")
    plan = plan_experiment(spec, threads=threads)
    if artifacts is not None:
        artifacts_root = check_output_folder(artifacts, "--artifacts")
    else:
        artifacts_root = out / ARTIFACTS
    _check_paths(plan, out, artifacts_root)
    for folder in (out, artifacts_root):  # what writers killed by an earlier run left
        remove_stale_temporaries(folder)
    (out / CELLS).mkdir(parents=True, exist_ok=True)
    record = json.dumps(_json_safe(experiment_record(spec, plan)), indent=2)
    write_text_atomic(inside(out, "experiment.json"), record)
    pending_cells = [c for c in plan.cells if not _cell_path(out, c).is_file()]
    summary = RunSummary(out, len(plan.cells), len(plan.cells) - len(pending_cells), 0)
    summary.name = spec.name
    needed: set[str] = set()
    for cell in pending_cells:
        needed.update(cell.trained_from)
    pending_artifacts = {
        a_id: a
        for a_id, a in plan.artifacts.items()
        if a_id in needed and finished(artifacts_root, a_id) is None
    }

    training_progress: Progress = "lines" if progress_style(progress) != "off" else False
    bar = Stage(
        spec.name,
        len(plan.cells),
        progress=progress,
        unit="cell",
        initial=summary.reused,
        every=CELL_LINE_EVERY,
    )
    pool = make_executor(executor, workers=workers, threads=threads, address=address)
    workers = workers or max(1, pool.cpus // threads)
    in_flight: dict = {}  # handle -> ("artifact" | "cell", id, object)
    failed_artifacts: set[str] = set()
    try:
        while pending_artifacts or pending_cells or in_flight:
            _submit_ready(
                pool,
                workers,
                in_flight,
                pending_artifacts,
                pending_cells,
                artifacts_root,
                failed_artifacts,
                summary,
                training_progress,
            )
            if not in_flight:
                break
            for handle, result, error in pool.wait(set(in_flight)):
                kind, task_id, task = in_flight.pop(handle)
                if error is not None:
                    message = f"{type(error).__name__}: {error}"
                    summary.failed.append(f"{kind} {task_id}: {message}")
                    write_text_atomic(_failure_path(out, task_id), message + "\n")
                    if kind == "artifact":
                        failed_artifacts.add(task_id)
                    else:
                        bar.update(1)
                    bar.write(f"failed: {kind} {task_id}: {message}")
                    continue
                if kind == "artifact":
                    bar.write(
                        f"trained {task_id} in {result['seconds']:.0f} s ({result['summary']})"
                    )
                else:
                    write_text_atomic(_cell_path(out, task), json.dumps(_json_safe(result)))
                    _failure_path(out, task_id).unlink(missing_ok=True)
                    summary.computed += 1
                    last = f"{task.scenario} {task.mechanism.label} seed {task.seed}"
                    bar.update(1, last=last)
    finally:
        pool.close()
        bar.close()
    summary.failed += [
        f"cell {c.id}: never ran (what it needs did not finish)" for c in pending_cells
    ]
    summary.seconds = time.perf_counter() - started
    if not summary.failed:
        summary.written = write_outputs(out)
    return summary


def _submit_ready(
    pool,
    workers,
    in_flight,
    pending_artifacts,
    pending_cells,
    root,
    failed_artifacts,
    summary,
    progress,
) -> None:
    """Submit artifacts whose needs are trained, then cells whose artifacts are, up to
    `workers` tasks in flight; cells whose artifact failed are failed too."""

    def state(artifact_id: str) -> str:
        if artifact_id in failed_artifacts:
            return "failed"
        running = any(task_id == artifact_id for _, task_id, _ in in_flight.values())
        if artifact_id in pending_artifacts or running:
            return "waiting"
        return "done"

    for artifact_id in list(pending_artifacts):
        if len(in_flight) >= workers:
            return
        artifact = pending_artifacts[artifact_id]
        states = {state(need) for need in artifact.needs}
        if "failed" in states:
            failed_artifacts.add(artifact_id)
            del pending_artifacts[artifact_id]
        elif states <= {"done"}:
            del pending_artifacts[artifact_id]
            handle = pool.submit(train_artifact, artifact, root, progress)
            in_flight[handle] = ("artifact", artifact_id, artifact)
    for cell in list(pending_cells):
        if len(in_flight) >= workers:
            return
        states = {state(a) for a in cell.trained_from}
        if "failed" in states:
            pending_cells.remove(cell)
            summary.failed.append(f"cell {cell.id}: a trained part it needs failed")
        elif states <= {"done"}:
            pending_cells.remove(cell)
            handle = pool.submit(run_cell, cell, root)
            in_flight[handle] = ("cell", cell.id, cell)


def write_outputs(out: Path) -> list[Path]:
    """The tidy tables and the report from the records in OUT (no cell is rerun)."""
    from ega_sim.report import write_report

    meta_path = out / "experiment.json"
    if not meta_path.is_file():
        raise ValueError(f"{meta_path}: missing; {out} is not an experiment folder")
    meta = json.loads(meta_path.read_text(encoding="utf-8"))
    wanted = set(meta["cells"])  # records of an earlier version of the experiment stay out
    records = [r for r in read_records(out) if r["cell"] in wanted]
    if not records:
        raise ValueError(f"{out / CELLS}: no finished cells to report")
    written = write_tables(tables(records, meta["sweep_keys"]), out)
    return written + write_report(out)
