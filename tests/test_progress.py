"""Progress off a terminal: a line per stage and at a steady pace within long stages, a bar on
a terminal, and a bounded number of lines for a run of many cells."""

from __future__ import annotations

import itertools
import re

import pytest

import ega_sim.progress
from ega_sim.progress import Stage, labelled, progress_style, track

LABEL = r"^(?:\[(?P<label>[^\]]+)\] )?(?P<desc>[^:]+): "
PACED = re.compile(LABEL + r"(?P<count>\d+)/(?P<total>\d+) \w+, (?P<elapsed>\d+) s")
DONE = re.compile(LABEL + r"done, (?P<count>\d+)/(?P<total>\d+) \w+ in")


class FakeClock:
    """Advances `step` seconds at every reading."""

    def __init__(self, step: float):
        self.step, self.now = step, 0.0

    def __call__(self) -> float:
        self.now += self.step
        return self.now


def _paced(err: str, desc: str) -> list[re.Match]:
    return [m for line in err.splitlines() if (m := PACED.match(line)) and m["desc"] == desc]


def test_style_is_a_bar_on_a_terminal_and_lines_off_one(monkeypatch):
    monkeypatch.setattr("sys.stderr.isatty", lambda: True)
    assert progress_style(True) == "bar"
    monkeypatch.setattr("sys.stderr.isatty", lambda: False)
    assert progress_style(True) == "lines"
    assert [progress_style(p) for p in (False, None, "bar", "lines")] == [
        "off",
        "off",
        "bar",
        "lines",
    ]
    with pytest.raises(ValueError, match="progress: expected"):
        progress_style("loud")


def test_a_long_stage_logs_at_the_promised_pace(monkeypatch, capsys):
    """Units of 7 s and a 30 s pace: a line once 30 s have passed since the last, so every 5
    units (35 s), 100 units: 20 lines, then the end line; nothing on stdout."""
    monkeypatch.setattr(ega_sim.progress, "clock", FakeClock(7.0))
    with Stage("fit", 100, progress="lines", every=30.0) as stage:
        for _ in range(100):
            stage.update(loss=0.5)
    out, err = capsys.readouterr()
    assert out == ""
    lines = err.splitlines()
    paced = _paced(err, "fit")
    assert len(paced) == 20 and len(lines) == 21
    assert [int(m["count"]) for m in paced] == list(range(5, 101, 5))
    elapsed = [int(m["elapsed"]) for m in paced]
    assert all(30 <= later - earlier < 37 for earlier, later in itertools.pairwise(elapsed))
    assert all(line.endswith("loss 0.5") for line in lines)
    assert DONE.match(lines[-1])["count"] == "100"


def test_off_means_silent_and_labels_prefix_lines(monkeypatch, capsys):
    monkeypatch.setattr(ega_sim.progress, "clock", FakeClock(100.0))
    assert list(track(range(3), "quiet", progress=False)) == [0, 1, 2]
    with labelled("part-1"):
        assert list(track(range(3), "loud", progress="lines")) == [0, 1, 2]
    out, err = capsys.readouterr()
    assert out == ""
    lines = err.splitlines()
    assert len(lines) == 4 and all(line.startswith("[part-1] loud: ") for line in lines)


def test_a_real_training_stage_logs_at_the_pace_with_its_figures(monkeypatch, capsys, tmp_path):
    """A payment network's 40 steps, each read as 11 s: a line every 3 steps (33 s >= 30 s),
    with its figures, and the end line."""
    from ega_sim.config import load_scenario
    from ega_sim.payment.config import PaynetTrainConfig
    from ega_sim.payment.fit import train_paynet

    monkeypatch.setattr(ega_sim.progress, "clock", FakeClock(11.0))
    config = PaynetTrainConfig(steps=40, batch_size=16, validation_requests=64)
    train_paynet(load_scenario("single_slot"), "cascade", tmp_path, config, progress="lines")
    err = capsys.readouterr().err
    paced = _paced(err, "train paynet")
    assert [int(m["count"]) for m in paced] == list(range(3, 40, 3))
    assert all(re.search(r", revenue \S+, regret \S+, lam \S+, rho \S+$", m.string) for m in paced)
    assert any((m := DONE.match(line)) and m["desc"] == "train paynet" for line in err.splitlines())


def test_every_stage_of_the_generative_pipeline_logs_a_line(feed_small_logs, tmp_path, capsys):
    """Off a terminal (progress=True under pytest's capture), each stage of `train_ega` and of
    a payment network on its lists ends with a line."""
    from ega_sim.config import load_scenario
    from ega_sim.generative.train import train_ega
    from ega_sim.logs.store import read_logs
    from ega_sim.payment.config import PaynetTrainConfig
    from ega_sim.payment.fit import train_paynet
    from tests.conftest import TINY_EGA

    scenario = load_scenario("feed_small")
    logs = read_logs(feed_small_logs, scenario)
    train_ega(scenario, logs, tmp_path, TINY_EGA, progress=True)
    config = PaynetTrainConfig(
        steps=2, batch_size=4, random_misreports=1, cached_requests=2, cached_validation_requests=1
    )
    train_paynet(scenario, "ega", tmp_path, config, progress=True)
    ended = [m["desc"] for line in capsys.readouterr().err.splitlines() if (m := DONE.match(line))]
    assert ended == [
        "POI RQ-VAE",
        "creative RQ-VAE",
        "pre-train generator",
        "train reward model",
        "align",
        "paynet cache",  # training requests
        "paynet cache",  # held-out requests
        "train paynet",
    ]


MANY_CELLS = """
name = "many"
scenarios = ["single_slot"]
mechanisms = ["cascade/gsp", "cascade/vcg", "cascade/first", "cascade/paynet"]
seeds = [0, 1, 2]
requests = 50
misreport = "none"
"""


def test_a_quick_run_off_a_terminal_prints_a_bounded_number_of_lines(monkeypatch, capsys, tmp_path):
    """12 cells and a trained payment network, every clock reading 4 s apart: the cells get a
    line at most every 10 s and one at the end (not one each), the training its labelled stage
    lines, and stdout the counts line."""
    from ega_sim.cli import main

    monkeypatch.setattr(ega_sim.progress, "clock", FakeClock(4.0))
    experiment = tmp_path / "many.toml"
    experiment.write_text(MANY_CELLS)
    argv = ["run", str(experiment), "--quick", "--workers", "1", "--out", str(tmp_path / "out")]
    assert main(argv) == 0
    out, err = capsys.readouterr()
    assert not any(re.match(r"^\[\d+/\d+\]", line) for line in out.splitlines())
    assert "many: 12 cells, 0 finished before, 12 computed now, 0 failed" in out
    run_lines = [line for line in err.splitlines() if line.startswith("many: ")]
    paced = _paced(err, "many")
    done = DONE.match(run_lines[-1])
    assert done and done["count"] == "12" and len(run_lines) == len(paced) + 1
    elapsed = [int(m["elapsed"]) for m in paced]
    assert all(later - earlier >= 10 for earlier, later in itertools.pairwise(elapsed))
    seconds = float(re.search(r"in ([\d.]+) s", run_lines[-1])[1])
    assert len(paced) <= seconds / 10
    trained = [m for line in err.splitlines() if (m := DONE.match(line)) and m["label"]]
    assert [m["desc"] for m in trained] == ["train paynet"]
    assert trained[0]["label"].startswith("cascade-paynet-single_slot-")
