"""Outputs stay where they belong: names that become paths are safe names, every path an
experiment writes lies inside its folder, outputs and swept values are checked before any work,
killed writes leave nothing for long, and the thread count keeps learned results apart."""

from __future__ import annotations

import dataclasses
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from ega_sim import atomic
from ega_sim.cli import main
from ega_sim.config.errors import ConfigError
from ega_sim.config.reader import TableReader
from ega_sim.config.scenario import PositionAuctionConfig
from ega_sim.experiments import load_experiment, run_experiment
from ega_sim.experiments import runner as runner_module
from ega_sim.experiments.artifacts import Artifact, train_artifact
from ega_sim.experiments.cells import plan_experiment
from ega_sim.paths import check_output_file, check_output_folder, inside
from ega_sim.world.distributions import Uniform

ESCAPING = "a/../.cascade-paynet-a/../../../../ESCAPED/p"  # the scenario name
SCENARIO = """
kind = "position_auction"
name = "{name}"
n_bidders = 2
slot_ctr = [1.0]
[values]
dist = "uniform"
low = 0.0
high = 1.0
"""
PAYNET = """
scenarios = ["scenario.toml"]
mechanisms = ["cascade/paynet"]
"""


def _files(folder: Path) -> set[str]:
    return {str(path.relative_to(folder)) for path in folder.rglob("*") if path.is_file()}


def _write(folder: Path, name: str, text: str) -> Path:
    path = folder / name
    path.write_text(text)
    return path


# Names that become paths: refused when read.


def test_escaping_scenario_name_is_refused_at_load(tmp_path):
    scenario = _write(tmp_path, "scenario.toml", SCENARIO.format(name=ESCAPING))
    with pytest.raises(ConfigError) as raised:
        load_experiment(_write(tmp_path, "experiment.toml", PAYNET))
    message = str(raised.value)
    assert message.startswith(f"{scenario}: key 'name': expected a name of at most 100 letters")
    assert ESCAPING in message and "\n" not in message


def test_escaping_experiment_name_is_refused_at_load(tmp_path):
    _write(tmp_path, "scenario.toml", SCENARIO.format(name="small"))
    path = _write(tmp_path, "experiment.toml", 'name = "../../ESCAPED"\n' + PAYNET)
    with pytest.raises(ConfigError, match=rf"^{path}: key 'name': expected a name .*ESCAPED"):
        load_experiment(path)


@pytest.mark.parametrize("name", ["feed_small", "a", "v1.2-b_c", "a..b"])
def test_safe_names_pass(tmp_path, name):
    _write(tmp_path, "scenario.toml", SCENARIO.format(name=name))
    assert load_experiment(_write(tmp_path, "experiment.toml", PAYNET)).scenarios


# Every path written lies inside its folder: the helper, a writer, and the runner.


@pytest.mark.parametrize("parts", [("..",), ("cells", "../../x.json"), ("/etc/x",), ("",), ()])
def test_inside_refuses_what_leads_out_of_the_root(parts):
    with pytest.raises(ValueError, match="expected a path inside the output folder out"):
        inside("out", *parts)


def test_inside_joins_what_stays_inside():
    assert inside("out", "cells", "a..b.json") == Path("out/cells/a..b.json")
    assert inside(Path("out"), ".x.lock") == Path("out/.x.lock")


def test_an_artifact_writer_refuses_an_escaping_id(tmp_path):
    """A scenario built in Python skips the file's check; the writer's own check holds."""
    root = tmp_path / "A" / "B" / "artifacts"
    scenario = PositionAuctionConfig(ESCAPING, 2, (1.0,), Uniform(0.0, 1.0))
    artifact = Artifact("paynet", "textbook", {}, {}, 0, allocator="cascade", validated=scenario)
    with pytest.raises(ValueError, match="expected a path inside the output folder"):
        train_artifact(artifact, root)
    assert _files(tmp_path) == set() and not (tmp_path / "A").exists()


def test_the_runner_writes_nothing_when_a_name_would_escape(tmp_path, monkeypatch):
    """The issue's run (--quick --out A/B/out) with the load-time check switched off: the
    runner refuses before writing anything, inside its folder or out of it."""
    monkeypatch.setattr(TableReader, "safe_name", TableReader.str)
    _write(tmp_path, "scenario.toml", SCENARIO.format(name=ESCAPING))
    spec = load_experiment(_write(tmp_path, "experiment.toml", PAYNET))
    before = _files(tmp_path)
    out = tmp_path / "A" / "B" / "out"
    with pytest.raises(ValueError, match=r"ESCAPED.*expected a path inside .*artifacts"):
        run_experiment(spec, out, workers=1, progress=False)
    assert _files(tmp_path) == before and not (tmp_path / "A").exists()


def test_the_default_report_folder_stays_in_reports(tmp_path, monkeypatch):
    _write(tmp_path, "scenario.toml", SCENARIO.format(name="small"))
    spec = load_experiment(_write(tmp_path, "experiment.toml", PAYNET))
    spec = dataclasses.replace(spec, name="../../ESCAPED")  # as built in Python, unchecked
    work = tmp_path / "w" / "d"
    work.mkdir(parents=True)
    monkeypatch.chdir(work)
    with pytest.raises(ValueError, match="expected a path inside the output folder reports"):
        run_experiment(spec, workers=1, progress=False)
    assert _files(tmp_path) == {"scenario.toml", "experiment.toml"}


# Checked before any work: output paths and swept training values.


def test_output_checks(tmp_path):
    blocker = _write(tmp_path, "file", "x")
    with pytest.raises(ValueError, match=r"^--out: expected a file to write, got .*, a folder$"):
        check_output_file(tmp_path, "--out")
    with pytest.raises(ValueError, match=r"^--out: expected a file in a folder, but .*file"):
        check_output_file(blocker / "x.jsonl", "--out")
    with pytest.raises(ValueError, match=r"^--out: expected a folder to write into"):
        check_output_folder(blocker, "--out")
    assert check_output_file(tmp_path / "new" / "x.jsonl", "--out")
    assert check_output_folder(tmp_path / "new", "--out")


def test_evaluate_out_folder_is_refused_before_evaluating(tmp_path, capsys, monkeypatch):
    import ega_sim.evaluation

    def never(*args, **kwargs):
        raise AssertionError("evaluated before --out was checked")

    monkeypatch.setattr(ega_sim.evaluation, "evaluate", never)
    argv = ["evaluate", "--scenario", "single_slot", "--requests", "10", "--out", str(tmp_path)]
    assert main(argv) == 2
    err = capsys.readouterr().err
    expected = f"--out: expected a file to write, got {str(tmp_path)!r}, a folder"
    assert err == f"ega-sim evaluate: error: {expected}\n"


def test_run_out_file_is_refused_before_running(tmp_path, capsys):
    _write(tmp_path, "scenario.toml", SCENARIO.format(name="small"))
    experiment = _write(tmp_path, "experiment.toml", PAYNET)
    blocker = _write(tmp_path, "report", "x")
    assert main(["run", str(experiment), "--out", str(blocker)]) == 2
    assert "--out: expected a folder to write into" in capsys.readouterr().err
    assert _files(tmp_path) == {"scenario.toml", "experiment.toml", "report"}


@pytest.mark.parametrize(
    ("sweep", "message"),
    [
        ('"training.paynet.steps" = ["ten"]', "'sweep.training.paynet.steps': expected valid"),
        ('"training.cascade.epochs" = [1, 0]', "'sweep.training.cascade.epochs': expected a"),
        ('"training.paynet.stepz" = [10]', "'sweep.training.paynet.stepz': expected one of"),
        ('"training.log_requests" = [100]', "'sweep.training.log_requests': expected training."),
    ],
)
def test_swept_training_values_are_checked_at_load(tmp_path, sweep, message):
    _write(tmp_path, "scenario.toml", SCENARIO.format(name="small"))
    path = _write(tmp_path, "experiment.toml", PAYNET + "[sweep]\n" + sweep)
    with pytest.raises(ConfigError) as raised:
        load_experiment(path)
    assert str(raised.value).startswith(f"{path}: key ") and message in str(raised.value)


# Leftovers of killed writes.


def _temporary(folder: Path, target: str, tag: str) -> Path:
    return _write(folder, f".{target}.{tag}abcd_123.tmp", "half")


def test_stale_temporaries_are_removed_and_live_ones_kept(tmp_path):
    (tmp_path / "cells").mkdir()
    ended = subprocess.Popen([sys.executable, "-c", "pass"])
    ended.wait()
    host = atomic._host()
    dead = _temporary(tmp_path / "cells", "a.json", f"{host}-{ended.pid}.")
    live = _temporary(tmp_path / "cells", "b.json", f"{host}-{os.getpid()}.")
    elsewhere = _temporary(tmp_path, "c.json", f"0123abcd-{ended.pid}.")  # another machine
    legacy_old = _temporary(tmp_path, "d.json", "")  # named before the writer's tag
    legacy_new = _temporary(tmp_path, "e.json", "")
    other = _write(tmp_path, ".notes.tmp", "mine")
    hour_ago = time.time() - 3600
    os.utime(legacy_old, (hour_ago, hour_ago))
    removed = atomic.remove_stale_temporaries(tmp_path)
    assert sorted(removed) == sorted([dead, legacy_old])
    assert all(path.exists() for path in (live, elsewhere, legacy_new, other))


def test_a_run_removes_what_a_killed_write_left(tmp_path):
    """A writer killed between writing and renaming leaves its temporary file; the next run
    of the same folder removes it."""
    out = tmp_path / "report"
    target = out / "cells" / "x.json"
    kill = (
        "import os; from ega_sim import atomic; os.replace = lambda *a: os._exit(9); "
        f"atomic.write_text_atomic({str(target)!r}, 'half')"
    )
    repo = Path(__file__).resolve().parent.parent
    killed = subprocess.run([sys.executable, "-c", kill], cwd=repo, check=False)
    assert killed.returncode == 9
    (leftover,) = out.rglob(".*.tmp")
    text = 'scenarios = ["single_slot"]\nmechanisms = ["cascade/gsp"]\nrequests = 20\n'
    text += 'misreport = "none"\nfigures = []\n'
    summary = run_experiment(
        load_experiment(_write(tmp_path, "e.toml", text)), out, workers=1, progress=False
    )
    assert summary.computed == 1 and not leftover.exists()
    assert not list(out.rglob("*.tmp"))


# The thread count in the identity of what is learned.


def test_threads_are_part_of_learned_ids_only(tmp_path):
    text = 'scenarios = ["feed_small"]\nmechanisms = ["cascade/gsp", "oracle_cascade/gsp"]\n'
    spec = load_experiment(_write(tmp_path, "e.toml", text))
    default, one, two = plan_experiment(spec), *(plan_experiment(spec, threads=t) for t in (1, 2))
    kinds = {t: {a.kind: a_id for a_id, a in p.artifacts.items()} for t, p in ((1, one), (2, two))}
    assert one.artifacts.keys() == default.artifacts.keys()  # one thread: the ids of before
    assert kinds[1]["logs"] == kinds[2]["logs"]  # simulated, not learned
    assert kinds[1]["cascade"] != kinds[2]["cascade"]  # the pCTR model is learned
    cells = {t: {c.mechanism.name: c.id for c in p.cells} for t, p in ((1, one), (2, two))}
    assert cells[1]["cascade/gsp"] != cells[2]["cascade/gsp"]  # it loads the learned model
    assert cells[1]["oracle_cascade/gsp"] == cells[2]["oracle_cascade/gsp"]  # nothing learned


def test_the_runner_plans_with_its_thread_count(tmp_path, monkeypatch):
    seen = []

    class PlannedError(Exception):
        pass

    def spy(spec, threads=1):
        seen.append(threads)
        raise PlannedError

    monkeypatch.setattr(runner_module, "plan_experiment", spy)
    spec = load_experiment(_write(tmp_path, "e.toml", PAYNET.replace("scenario.toml", "textbook")))
    with pytest.raises(PlannedError):
        run_experiment(spec, tmp_path / "out", threads=2, progress=False)
    assert seen == [2]
