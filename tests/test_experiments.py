"""`ega-sim run`: experiment files, the runner, resumption, executors, and the report folder."""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

from ega_sim.config.errors import ConfigError
from ega_sim.experiments import load_experiment, quick_spec, run_experiment, write_outputs
from ega_sim.experiments import runner as runner_module
from ega_sim.experiments.cells import plan_experiment

REPO = Path(__file__).resolve().parent.parent
METRICS = {"revenue_per_request", "welfare_per_request", "regret_mean", "psi"}

TINY = """
name = "tiny"
scenarios = ["single_slot", "three_bidders_two_slots"]
mechanisms = ["cascade/gsp", {{name = "cascade/vcg", label = "VCG"}}, "cascade/first"]
seeds = [0, 1]
requests = {requests}
misreport = "grid"
reference = "closed_form"
"""


def write_experiment(tmp_path: Path, text: str, name: str = "tiny.toml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def tiny(tmp_path: Path, requests: int = 400):
    return load_experiment(write_experiment(tmp_path, TINY.format(requests=requests)))


def test_tiny_experiment_end_to_end(tmp_path):
    spec = tiny(tmp_path)
    out = tmp_path / "report"
    summary = run_experiment(spec, out, workers=2, progress=False)
    assert (summary.cells, summary.reused, summary.computed, summary.failed) == (12, 0, 12, [])
    for name in ("results.csv", "curves.csv", "regret.csv", "report.md", "report.html"):
        assert (out / name).stat().st_size > 0, name
    figures = sorted((out / "figures").glob("*.png"))
    assert figures and all(path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" for path in figures)
    results = pd.read_csv(out / "results.csv")
    cells = results.groupby(["scenario", "label", "seed"]).size()
    assert len(cells) == 2 * 3 * 2
    assert set(results["label"]) == {"cascade/gsp", "VCG", "cascade/first"}
    for _, group in results.groupby("cell"):
        assert set(group["metric"]) >= METRICS
    assert set(results["git_commit"]) and set(results["version"]) and results["seconds"].gt(0).all()
    # The grid curve's truthful point is the truthful utility: a second computation of it.
    curves = pd.read_csv(out / "curves.csv")
    truthful = curves[curves["multiplier"] == 1.0].set_index("cell")["utility"]
    utility = results[results["metric"] == "utility_per_request"].set_index("cell")["value"]
    n_bidders = {"single_slot": 2, "three_bidders_two_slots": 3}
    scenario = results.drop_duplicates("cell").set_index("cell")["scenario"]
    for cell, value in truthful.items():
        assert value * n_bidders[scenario[cell]] == pytest.approx(utility[cell], rel=1e-9)


def test_cells_record_the_closed_forms_the_report_shows(tmp_path):
    # The report reads files only: each position-auction cell records theory's closed forms.
    out = tmp_path / "report"
    run_experiment(tiny(tmp_path, requests=200), out, workers=1, progress=False)
    closed = pd.read_csv(out / "closed_forms.csv")
    assert len(closed) == 12
    single = closed[closed["scenario"] == "single_slot"].set_index(["label", "seed"])
    # Two U[0, 1] bidders, one slot: second price earns E[min] = 1/3, first price E[max] = 2/3
    # with regret E[(v - b_other)+ ...] = 1/6 per bidder (tests/test_theory.py derives them).
    assert single.loc[("cascade/gsp", 0), "revenue_per_request"] == pytest.approx(1 / 3)
    assert single.loc[("cascade/first", 1), "revenue_per_request"] == pytest.approx(2 / 3)
    assert single.loc[("cascade/first", 1), "regret_mean"] == pytest.approx(1 / 6)
    section = (out / "report.md").read_text().split("## Closed forms")[1].split("\n## ")[0]
    vcg_row = next(
        line for line in section.splitlines() if "`single_slot`" in line and "VCG" in line
    )
    assert "| 0.3333 |" in vcg_row and "| 0.00000 |" in vcg_row


def test_sweep_matches_closed_form_reserve_revenue(tmp_path):
    """Second price with reserve r, two U[0, 1] bidders: revenue 1/3 + r^2 - 4 r^3 / 3."""
    text = """
name = "reserve"
scenarios = ["single_slot"]
mechanisms = ["cascade/vcg"]
seeds = [0, 1]
requests = 20000
misreport = "none"
figures = ["comparison", "sweeps"]
[sweep]
"scenario.reserve" = [0.0, 0.25, 0.5]
"""
    out = tmp_path / "report"
    run_experiment(load_experiment(write_experiment(tmp_path, text)), out, progress=False)
    results = pd.read_csv(out / "results.csv")
    revenue = results[results["metric"] == "revenue_per_request"]
    assert len(revenue) == 6
    for _, row in revenue.iterrows():
        r = row["scenario.reserve"]
        expected = 1 / 3 + r**2 - 4 * r**3 / 3
        assert abs(row["value"] - expected) < 4.5 * row["se"], (r, row["value"], expected)
    assert (out / "report.html").is_file()


def test_interrupted_run_resumes_without_recomputing(tmp_path, monkeypatch):
    spec = tiny(tmp_path, requests=200)
    out = tmp_path / "report"
    calls = []
    real_run_cell = runner_module.run_cell

    def interrupted(cell, root):
        if len(calls) == 5:
            raise KeyboardInterrupt  # the run dies in the middle of its sixth cell
        calls.append(cell.id)
        return real_run_cell(cell, root)

    monkeypatch.setattr(runner_module, "run_cell", interrupted)
    with pytest.raises(KeyboardInterrupt):
        run_experiment(spec, out, workers=1, progress=False)
    finished = {path.stem: path.read_bytes() for path in (out / "cells").glob("*.json")}
    assert sorted(finished) == sorted(calls) and len(finished) == 5
    assert not (out / "results.csv").exists()

    resumed = []

    def counting(cell, root):
        resumed.append(cell.id)
        return real_run_cell(cell, root)

    monkeypatch.setattr(runner_module, "run_cell", counting)
    summary = run_experiment(spec, out, workers=1, progress=False)
    assert (summary.reused, summary.computed, summary.failed) == (5, 7, [])
    assert len(resumed) == 7 and not set(resumed) & set(finished)
    for cell_id, content in finished.items():  # finished cells are left as they were
        assert (out / "cells" / f"{cell_id}.json").read_bytes() == content
    assert len(pd.read_csv(out / "results.csv").groupby("cell")) == 12
    again = run_experiment(spec, out, workers=1, progress=False)
    assert (again.reused, again.computed) == (12, 0)


def test_killed_command_resumes(tmp_path):
    """Kill `ega-sim run` (its worker processes too) once some cells are written; the rerun
    computes only the rest."""
    path = write_experiment(tmp_path, TINY.format(requests=30000))
    out = tmp_path / "report"
    command = [sys.executable, "-m", "ega_sim.cli", "run", str(path), "--out", str(out)]
    process = subprocess.Popen(
        [*command, "--workers", "2"],
        start_new_session=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 120
    while len(list((out / "cells").glob("*.json"))) < 2 and time.monotonic() < deadline:
        time.sleep(0.05)
    os.killpg(process.pid, signal.SIGKILL)
    process.wait()
    finished = len(list((out / "cells").glob("*.json")))
    assert 2 <= finished < 12, "the run finished before it could be killed: give cells more work"
    rerun = subprocess.run([*command, "--workers", "1"], capture_output=True, text=True, check=True)
    assert f"12 cells, {finished} finished before, {12 - finished} computed now" in rerun.stdout
    assert len(list((out / "cells").glob("*.json"))) == 12


def test_failed_cell_is_reported_and_retried(tmp_path, monkeypatch):
    spec = tiny(tmp_path, requests=100)
    out = tmp_path / "report"
    real_run_cell = runner_module.run_cell

    def failing(cell, root):
        if cell.mechanism.label == "VCG" and cell.seed == 1:
            raise RuntimeError("boom")
        return real_run_cell(cell, root)

    monkeypatch.setattr(runner_module, "run_cell", failing)
    summary = run_experiment(spec, out, workers=1, progress=False)
    assert summary.computed == 10 and len(summary.failed) == 2
    assert all("RuntimeError: boom" in line for line in summary.failed)
    assert len(list((out / "failures").glob("*.txt"))) == 2
    monkeypatch.setattr(runner_module, "run_cell", real_run_cell)
    summary = run_experiment(spec, out, workers=1, progress=False)
    assert (summary.reused, summary.computed, summary.failed) == (10, 2, [])
    assert not list((out / "failures").glob("*.txt"))


def test_report_redraws_from_stored_results(tmp_path, monkeypatch):
    spec = tiny(tmp_path, requests=100)
    out = tmp_path / "report"
    run_experiment(spec, out, workers=1, progress=False)
    (out / "report.html").unlink()
    (out / "results.csv").unlink()
    monkeypatch.setattr(runner_module, "run_cell", None)  # nothing may be recomputed
    written = write_outputs(out)
    assert out / "report.html" in written and (out / "results.csv").is_file()
    from ega_sim.cli import main

    assert main(["report", str(out)]) == 0
    with pytest.raises(ValueError, match=r"experiment\.json"):
        write_outputs(tmp_path / "nowhere")


def test_ray_executor_gives_the_local_numbers(tmp_path):
    ray = pytest.importorskip(
        "ray", reason="ray is not installed (pip install -e '.[distributed]'); CI installs it"
    )
    spec = tiny(tmp_path, requests=300)
    run_experiment(spec, tmp_path / "local", workers=2, progress=False)
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        summary = run_experiment(spec, tmp_path / "ray", executor="ray", workers=2, progress=False)
    finally:
        ray.shutdown()
    assert summary.failed == [] and summary.computed == 12
    columns = ["cell", "metric", "value", "se"]
    local = pd.read_csv(tmp_path / "local" / "results.csv")[columns].sort_values(columns[:2])
    remote = pd.read_csv(tmp_path / "ray" / "results.csv")[columns].sort_values(columns[:2])
    pd.testing.assert_frame_equal(local.reset_index(drop=True), remote.reset_index(drop=True))


def test_shipped_experiments_load_and_plan():
    from ega_sim.equilibrium.experiment import is_equilibrium_experiment
    from ega_sim.equilibrium.experiment import load_experiment as load_equilibrium_experiment

    for path in sorted((REPO / "experiments").glob("*.toml")):
        if is_equilibrium_experiment(path):  # `ega-sim run` hands it to the equilibrium study
            assert load_equilibrium_experiment(path), path
            continue
        spec = load_experiment(path)
        plan = plan_experiment(spec)
        assert plan.cells, path
        assert len({cell.id for cell in plan.cells}) == len(plan.cells), path
        assert plan_experiment(quick_spec(spec)).cells


def test_the_documented_keys_are_accepted(tmp_path):
    """experiments/README.md's block of every key is a valid experiment (its one alternative,
    the plain mechanism list beside the [[mechanisms]] tables, dropped): a documented example
    the tool refuses is a bug (it once swept beta = 0)."""
    text = (REPO / "experiments" / "README.md").read_text()
    block = text.split("## Keys", 1)[1].split("```toml", 1)[1].split("```", 1)[0]
    lines = [line for line in block.splitlines() if not line.startswith("mechanisms = [")]
    path = tmp_path / "my_experiment.toml"
    path.write_text("\n".join(lines))
    spec = load_experiment(path)
    assert [mechanism.name for mechanism in spec.mechanisms] == ["ega/paynet"]
    assert plan_experiment(spec).cells


def test_learned_parts_are_trained_once_and_shared():
    plan = plan_experiment(load_experiment(REPO / "experiments" / "quickstart.toml"))
    kinds = sorted(artifact.kind for artifact in plan.artifacts.values())
    assert kinds == ["cascade", "generative", "logs", "paynet"]  # gr and ega share one pipeline
    by_label = {cell.mechanism.label: cell.checkpoint for cell in plan.cells}
    assert by_label["cascade/gsp"] == by_label["cascade/vcg"]
    assert by_label["gr/gsp"] == by_label["ega/gsp"] != by_label["ega/paynet"]


@pytest.mark.parametrize(
    ("text", "key"),
    [
        ('scenarios = ["textbook"]\nmechanisms = ["cascade/gsp"]\nseed = [0]', "seed"),
        ('scenarios = ["nowhere"]\nmechanisms = ["cascade/gsp"]', "scenarios[0]"),
        ('scenarios = "textbook"\nmechanisms = ["cascade/gsp"]', "scenarios"),
        ('scenarios = ["textbook"]\nmechanisms = ["cascade/gdp"]', "mechanisms[0].name"),
        ('scenarios = ["textbook"]\nmechanisms = []', "mechanisms"),
        ('scenarios = ["textbook"]\nmechanisms = ["cascade/gsp", "cascade/gsp"]', "mechanisms"),
        ('scenarios = ["textbook"]\nmechanisms = ["cascade/gsp"]\nseeds = [0, -1]', "seeds"),
        ('scenarios = ["textbook"]\nmechanisms = ["cascade/gsp"]\nrequests = 0', "requests"),
        ('scenarios = ["textbook"]\nmechanisms = ["cascade/gsp"]\nmisreport = "all"', "misreport"),
        ('scenarios = ["textbook"]\nmechanisms = ["cascade/gsp"]\nfigures = ["pie"]', "figures"),
        (
            'scenarios = ["textbook"]\nmechanisms = ["cascade/gsp"]\n[sweep]\n"reserve" = [0.1]',
            "sweep.reserve",
        ),
        (
            'scenarios = ["textbook"]\nmechanisms = ["cascade/gsp"]\n[sweep]\n'
            '"scenario.reserve" = []',
            "sweep.scenario.reserve",
        ),
        (
            'scenarios = ["textbook"]\nmechanisms = ["cascade/gsp"]\n[training.paynet]\nstep = 5',
            "step",
        ),
        (
            'scenarios = ["feed_small"]\nmechanisms = [{name = "cascade/gsp", '
            'settings = {"bidding.alpha" = 1.0}}]',
            "mechanisms[0].settings",
        ),
        ('scenarios = ["textbook"]\nmechanisms = [{name = "cascade/gsp", lable = "x"}]', "lable"),
        (
            'scenarios = ["textbook"]\nmechanisms = ["cascade/gsp"]\n[training]\nper_seed = 1',
            "per_seed",
        ),
        ("scenarios = [", "<file>"),
    ],
)
def test_malformed_experiment_names_the_key(tmp_path, text, key):
    path = write_experiment(tmp_path, text, "bad.toml")
    with pytest.raises(ConfigError) as raised:
        load_experiment(path)
    assert str(path) in str(raised.value) and key in str(raised.value)


def test_swept_scenario_values_are_validated_on_load(tmp_path):
    text = 'scenarios = ["textbook"]\nmechanisms = ["cascade/gsp"]\n[sweep]\n'
    path = write_experiment(tmp_path, text + '"scenario.reserve" = [0.1, -1]', "bad.toml")
    with pytest.raises(ConfigError, match=r"bad\.toml: key 'sweep\.scenario\.reserve'"):
        load_experiment(path)
    path = write_experiment(tmp_path, text + '"scenario.n_bidders" = [0]', "bad.toml")
    with pytest.raises(ConfigError, match=r"bad\.toml: key 'sweep\.scenario\.n_bidders'"):
        load_experiment(path)


def test_cell_records_are_strict_json(tmp_path):
    """Strict JSON (no NaN or Infinity, which strict readers reject). First price earns
    bidders nothing, so psi (regret / a truthful utility of 0) is undefined: null in the
    record, empty in results.csv."""
    spec = tiny(tmp_path, requests=50)
    out = tmp_path / "report"
    run_experiment(spec, out, workers=1, progress=False)
    for path in (out / "cells").glob("*.json"):
        record = json.loads(path.read_text(), parse_constant=lambda name: pytest.fail(name))
        assert record["version"] and record["git_commit"]
        for value, _ in record["metrics"].values():
            assert value is None or value == "inf" or math.isfinite(value)
    results = pd.read_csv(out / "results.csv")
    psi = results[results["metric"] == "psi"].set_index("label")["value"]
    assert math.isnan(psi["cascade/first"].iloc[0]) and (psi["VCG"] == 0).all()


def test_quickstart_smoke_run(tmp_path):
    """The README's main job at smoke size: logs, the cascade, the EGA pipeline and its payment
    network each trained once, every cell run, every figure drawn."""
    spec = quick_spec(load_experiment(REPO / "experiments" / "quickstart.toml"))
    out = tmp_path / "quickstart"
    summary = run_experiment(spec, out, workers=2, progress=False)
    cells = len(spec.scenarios) * len(spec.mechanisms) * len(spec.seeds)
    assert cells == 21  # 7 mechanisms x 3 seeds on feed_small
    assert (summary.cells, summary.computed, summary.failed) == (cells, cells, [])
    assert len(list((out / "artifacts").glob("*/done.json"))) == 4
    results = pd.read_csv(out / "results.csv")
    assert {"rpm", "ctr_poi", "ctr_img", "psi", "ctr_poi_model", "rpm_model"} <= set(
        results["metric"]
    )
    html = (out / "report.html").read_text()
    assert html.count("data:image/png;base64,") == len(spec.figures) == 5


class DeferredExecutor:
    """Runs each task only when the runner waits, one at a time, recording the order: the
    way worker processes finish tasks later than they are submitted."""

    def __init__(self):
        self.queue, self.events = [], []

    def submit(self, function, *args):
        handle = object()
        self.queue.append((handle, function, args))
        self.events.append(("submit", _task_id(args[0])))
        return handle

    def wait(self, pending):
        handle, function, args = self.queue.pop(0)
        self.events.append(("done", _task_id(args[0])))
        return [(handle, function(*args), None)]

    def close(self):
        pass


def _task_id(task) -> str:
    return task.id


def test_nothing_starts_before_what_it_needs_is_trained(tmp_path, monkeypatch):
    text = """
name = "feed"
scenarios = ["feed_small"]
mechanisms = ["cascade/gsp", "cascade/paynet"]
seeds = [0, 1]
requests = 50
misreport = "none"
"""
    spec = quick_spec(load_experiment(write_experiment(tmp_path, text)))
    executor = DeferredExecutor()
    monkeypatch.setattr(runner_module, "make_executor", lambda *args, **kwargs: executor)
    summary = run_experiment(spec, tmp_path / "report", workers=3, progress=False)
    assert (summary.computed, summary.failed) == (4, [])
    plan = plan_experiment(spec)
    needs = {a.id: a.needs for a in plan.artifacts.values()}
    needs |= {cell.id: cell.trained_from for cell in plan.cells}
    done: set[str] = set()
    for event, task_id in executor.events:
        if event == "submit":
            assert set(needs[task_id]) <= done, f"{task_id} started before {needs[task_id]}"
        else:
            done.add(task_id)
    submitted = [task_id for event, task_id in executor.events if event == "submit"]
    assert len(submitted) == len(set(submitted)) == 3 + 4  # logs, cascade, paynet; 4 cells


def test_two_runs_sharing_artifacts_train_a_part_once(tmp_path, monkeypatch):
    """Two runs (here two threads) needing the same trained part: one trains, one waits."""
    import threading

    from ega_sim.experiments import artifacts

    artifact = artifacts.Artifact("paynet", "textbook", {}, {"steps": 5}, 0, allocator="cascade")
    trained = []

    def slow_train(artifact, root, out, progress):
        trained.append(artifact.id)
        time.sleep(0.5)
        record = {"id": artifact.id, "seconds": 0.5, "summary": "fake"}
        (out / artifacts.DONE).write_text(json.dumps(record))
        return record

    monkeypatch.setattr(artifacts, "_train", slow_train)
    records = []
    threads = [
        threading.Thread(
            target=lambda: records.append(artifacts.train_artifact(artifact, tmp_path))
        )
        for _ in range(2)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert trained == [artifact.id] and len(records) == 2 and records[0] == records[1]


def test_misreport_study_experiment(tmp_path):
    """kind = "misreport": shading pays under GSP (about +20% on textbook, README) and not
    under VCG, where truthful bidding is a best response (the searched best is 1 or gains
    nothing beyond Monte Carlo noise)."""
    text = """
name = "study"
kind = "misreport"
scenarios = ["textbook"]
mechanisms = ["cascade/gsp", "cascade/vcg"]
seeds = [0]
requests = 4000
figures = ["comparison", "utility_curve"]
[study]
bandit_steps = 10
requests_per_step = 16
"""
    out = tmp_path / "report"
    summary = run_experiment(load_experiment(write_experiment(tmp_path, text)), out, workers=1)
    assert (summary.computed, summary.failed) == (2, [])
    results = pd.read_csv(out / "results.csv").set_index(["label", "metric"])["value"]
    assert results["cascade/gsp", "best_gain"] > 0.1
    assert results["cascade/gsp", "best_multiplier"] < 1
    assert abs(results["cascade/vcg", "best_gain"]) < 0.01
    curves = pd.read_csv(out / "curves.csv")
    assert set(curves["label"]) == {"cascade/gsp", "cascade/vcg"} and len(curves) > 20
    assert (out / "figures" / "utility_curve.png").stat().st_size > 0


def test_swept_serving_settings_are_validated_on_load(tmp_path):
    """beta = 0 would leave organic items weight 0: no list could be generated."""
    text = (
        'scenarios = ["feed_small"]\nmechanisms = ["ega/gsp"]\n[sweep]\n'
        '"mechanism.bidding.beta" = [1.0, 0.0]'
    )
    with pytest.raises(ConfigError, match="beta"):
        load_experiment(write_experiment(tmp_path, text, "bad.toml"))
