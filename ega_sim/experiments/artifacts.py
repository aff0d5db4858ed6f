"""Trained parts an experiment needs: logs, the cascade's pCTR model, the generative pipeline,
payment networks. Each is trained once into `ARTIFACTS/<id>/` and shared by every cell that
uses it; its id hashes everything that shapes it (scenario, training settings, seed, file
format), so a changed setting trains a new one and an unchanged one is never trained twice.
Torch's thread count is part of a learned part's id when it is not 1: float sums run in
another order with more threads, and the trained weights (and every figure computed from
them) differ in the last digits, so parts trained with different `--threads` are kept apart.
`done.json` is written (atomically) last: a folder without it is unfinished, and its training
resumes (every trainer here resumes from its own saved state). Every path under the artifacts
folder is checked to lie inside it (paths.inside): an id holds the scenario's name.
"""

from __future__ import annotations

import contextlib
import json
import shutil
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ega_sim.atomic import write_text_atomic
from ega_sim.config.fingerprint import content_digest, scenario_identity
from ega_sim.config.scenario import ScenarioConfig, load_scenario
from ega_sim.paths import inside
from ega_sim.progress import Progress, labelled

KINDS = ("logs", "cascade", "generative", "paynet")
LEARNED = ("cascade", "generative", "paynet")  # trained by float optimization: threads matter
GENERATED_FEATURES = 2  # version of a generated list's payment features (2: own-bid thresholds)
DONE = "done.json"


def _digest(record: Any) -> str:
    """The short content hash of an id."""
    return content_digest(record)[:12]


@dataclass(frozen=True)
class Artifact:
    """One trained part; `needs` are the ids of the artifacts it is trained from."""

    kind: str
    scenario: str  # scenario reference: shipped name or file path
    overrides: dict[str, Any]  # dotted scenario keys set by a sweep
    config: dict[str, Any]  # the training section's settings (defaults left out)
    seed: int
    log_requests: int = 0  # logs only
    allocator: str = ""  # paynet only: the allocator it prices
    needs: tuple[str, ...] = ()
    device: str = "cpu"  # generative pipelines and payment networks train there
    threads: int = 1  # torch threads of the task that trains it
    # The scenario with the overrides applied, validated (loaded here when not given).
    validated: ScenarioConfig | None = field(default=None, compare=False, repr=False)
    id: str = field(default="", compare=False)

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"artifact kind: expected one of {', '.join(KINDS)}")
        if self.validated is None:
            validated = load_scenario(self.scenario, self.overrides or None)
            object.__setattr__(self, "validated", validated)
        scenario = scenario_identity(self.validated)
        identity = {
            "kind": self.kind,
            "scenario": scenario,
            "config": self.config,
            "seed": self.seed,
            "log_requests": self.log_requests,
            "allocator": self.allocator,
            "needs": self.needs,
        }
        # A new file format trains a new artifact: a folder of the old one would be refused.
        identity["format"] = _formats()[self.kind]
        if self.kind == "paynet" and self.allocator in ("ega", "gr"):
            identity["features"] = GENERATED_FEATURES  # what its network reads has changed
        if self.device != "cpu" and self.kind in ("generative", "paynet"):
            identity["device"] = self.device  # a GPU trains other weights; CPU ids unchanged
        if self.threads != 1 and self.kind in LEARNED:
            identity["threads"] = self.threads  # other float sums, other weights; 1: ids kept
        label = f"{self.allocator}-paynet" if self.kind == "paynet" else self.kind
        object.__setattr__(self, "id", f"{label}-{scenario['name']}-{_digest(identity)}")


def artifact_path(root: Path, artifact_id: str) -> Path:
    """The folder of an artifact: ROOT/<id>, refused if the id would lead out of ROOT."""
    return inside(root, artifact_id)


def _formats() -> dict[str, int]:
    """The on-disk format version of each kind of artifact."""
    from ega_sim.checkpoints import CASCADE_FORMAT, GENERATIVE_FORMAT, PAYNET_FORMAT
    from ega_sim.logs.store import FORMAT_VERSION

    return {
        "logs": FORMAT_VERSION,
        "cascade": CASCADE_FORMAT,
        "generative": GENERATIVE_FORMAT,
        "paynet": PAYNET_FORMAT,
    }


def finished(root: Path, artifact_id: str) -> dict | None:
    """The done record of a trained artifact, or None while it is unfinished."""
    path = artifact_path(root, artifact_id) / DONE
    if not path.is_file():
        return None
    return json.loads(path.read_text(encoding="utf-8"))


@contextlib.contextmanager
def _exclusive(path: Path) -> Iterator[None]:
    """Hold an exclusive lock on `path` (POSIX): two runs sharing an artifacts folder train
    a part once, the second waiting for the first. Where fcntl is missing, no lock."""
    try:
        import fcntl
    except ImportError:  # Windows
        yield
        return
    with path.open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def train_artifact(artifact: Artifact, root: Path, progress: Progress = False) -> dict:
    """Train one artifact into root/<id>/ (resuming an unfinished one); returns its record.
    `progress`: the trainers' (progress.py), their lines labelled with the artifact's id. The
    torch thread count is the caller's (the task's: executors.run_task)."""
    done = finished(root, artifact.id)
    if done is not None:
        return done
    out = artifact_path(root, artifact.id)
    lock = inside(root, f".{artifact.id}.lock")
    out.mkdir(parents=True, exist_ok=True)
    with _exclusive(lock), labelled(artifact.id):
        return finished(root, artifact.id) or _train(artifact, root, out, progress)


def _train(artifact: Artifact, root: Path, out: Path, progress: Progress) -> dict:
    from ega_sim.training import training_config
    from ega_sim.world.build import make_world

    scenario = artifact.validated
    started = time.perf_counter()
    source = f"training settings of {artifact.id}"
    keep = {"seed": artifact.seed, "progress": progress, "threads": None}  # the task's threads
    if artifact.kind == "logs":
        from ega_sim.logs.simulate import simulate_logs

        simulate_logs(make_world(scenario), artifact.log_requests, out, **keep)
        summary = f"{artifact.log_requests} logged requests"
    elif artifact.kind == "cascade":
        from ega_sim.logs.store import read_logs
        from ega_sim.ranking.train import save_cascade_checkpoint, train_pctr

        logs = read_logs(artifact_path(root, artifact.needs[0]), scenario)
        config = training_config("cascade", artifact.config, source)
        model, report = train_pctr(logs, config, seed=artifact.seed, progress=progress)
        save_cascade_checkpoint(out, model, report, scenario, config, logs.meta)
        summary = f"pCTR validation AUC {report['validation_auc']:.4f}"
    elif artifact.kind == "generative":
        from ega_sim.generative.train import train_ega
        from ega_sim.logs.store import read_logs

        logs = read_logs(artifact_path(root, artifact.needs[0]), scenario)
        config = training_config("ega", artifact.config, source)
        world = make_world(scenario, artifact.device)  # for the alignment-versus-truth curve
        reports = train_ega(
            scenario, logs, out, config, device=artifact.device, world=world, **keep
        )
        summary = f"reward model AUC {reports['reward_model']['validation_poi_auc']:.4f}"
    else:
        from ega_sim.payment.fit import train_paynet

        if artifact.needs:  # the allocator's trained parts sit beside the network
            shutil.copytree(artifact_path(root, artifact.needs[0]), out, dirs_exist_ok=True)
            (out / DONE).unlink(missing_ok=True)
        config = training_config("paynet", artifact.config, source)
        world = make_world(scenario, artifact.device)
        report = train_paynet(world, artifact.allocator, out, config, **keep)
        validation = report["validation"]
        summary = f"held-out revenue/request {validation['revenue_per_request']:.4f}"
    record = {
        "id": artifact.id,
        "kind": artifact.kind,
        "seconds": time.perf_counter() - started,
        "summary": summary,
    }
    write_text_atomic(out / DONE, json.dumps(record, indent=2) + "\n")
    return record
