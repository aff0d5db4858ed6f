"""Torch threads: every command takes --threads (default 1), every public compute entry point
`threads=` (default 1, None keeps the caller's), validated, and never leaking past the call."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import ega_sim
from ega_sim.cli import build_parser, main
from ega_sim.threads import sets_threads, using_threads

REPO = Path(__file__).resolve().parent.parent

# Each command with the arguments it requires (parsing only: nothing runs).
COMMANDS = {
    "evaluate": ["--scenario", "single_slot"],
    "train": ["--scenario", "single_slot", "--mechanism", "cascade/paynet", "--out", "OUT"],
    "simulate-logs": ["--scenario", "feed_small", "--out", "OUT"],
    "misreport": ["--scenario", "single_slot", "--out", "OUT"],
    "run": ["experiment.toml"],
    "bench": [],
}


@pytest.fixture
def two_threads():
    """Torch at 2 threads during the test (so a call setting 1 is seen), restored after."""
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    yield 2
    torch.set_num_threads(before)


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_every_compute_command_parses_threads_with_default_1(command):
    parser = build_parser()
    assert parser.parse_args([command, *COMMANDS[command]]).threads == 1
    assert parser.parse_args([command, *COMMANDS[command], "--threads", "3"]).threads == 3


@pytest.mark.parametrize("command", sorted(COMMANDS))
@pytest.mark.parametrize("bad", ["0", "-2"])
def test_threads_below_1_is_a_one_line_error_before_any_work(command, bad, tmp_path, capsys):
    argv = [arg.replace("OUT", str(tmp_path / "out")) for arg in COMMANDS[command]]
    assert main([command, *argv, "--threads", bad]) == 2
    err = capsys.readouterr().err
    assert err == (
        f"ega-sim {command}: error: --threads: expected an integer >= 1 (torch CPU threads), "
        f"got {bad}\n"
    )
    assert not (tmp_path / "out").exists()


def test_evaluate_threads_is_used_recorded_and_restored(two_threads):
    result = ega_sim.evaluate("cascade/vcg", "single_slot", requests=50, threads=1)
    assert result.threads == 1 and torch.get_num_threads() == two_threads
    kept = ega_sim.evaluate("cascade/vcg", "single_slot", requests=50, threads=None)
    assert kept.threads == two_threads  # None: the caller's setting
    default = ega_sim.evaluate("cascade/vcg", "single_slot", requests=50)
    assert default.threads == 1 and torch.get_num_threads() == two_threads


def test_threads_are_restored_when_the_call_fails(two_threads):
    with pytest.raises(ValueError, match="requests"):
        ega_sim.evaluate("cascade/vcg", "single_slot", requests=0, threads=1)
    assert torch.get_num_threads() == two_threads


@pytest.mark.parametrize("bad", [0, -1, 1.5, True, "2"])
def test_bad_threads_name_the_argument(bad, two_threads):
    with pytest.raises(ValueError, match=r"^threads: expected an integer >= 1"):
        ega_sim.evaluate("cascade/vcg", "single_slot", requests=10, threads=bad)
    assert torch.get_num_threads() == two_threads


def test_nested_calls_with_none_keep_the_outer_setting(two_threads):
    seen = []

    @sets_threads
    def inner(threads: int | None = 1):
        seen.append(torch.get_num_threads())

    @sets_threads
    def outer(threads: int | None = 1):
        inner(threads=None)
        inner()

    outer(threads=2)
    outer()
    assert seen == [2, 1, 1, 1]
    with using_threads(1):
        assert torch.get_num_threads() == 1
    assert torch.get_num_threads() == two_threads


def _entry_points():
    from ega_sim.envs.misreport import run_misreport_study
    from ega_sim.evaluation import evaluate_detailed
    from ega_sim.generative.train import train_ega
    from ega_sim.logs.simulate import simulate_logs
    from ega_sim.payment.fit import train_paynet
    from ega_sim.testing import check_mechanism
    from ega_sim.training import train_mechanism

    return [
        evaluate_detailed,
        train_mechanism,
        train_paynet,
        train_ega,
        simulate_logs,
        run_misreport_study,
        check_mechanism,
    ]


@pytest.mark.parametrize("function", _entry_points(), ids=lambda f: f.__name__)
def test_public_entry_points_take_threads_default_1_and_scope_it(function):
    import inspect

    assert inspect.signature(function).parameters["threads"].default == 1
    assert hasattr(function, "__wrapped__")  # decorated with sets_threads


def test_check_mechanism_and_misreport_study_restore_threads(two_threads):
    from ega_sim.envs.misreport import run_misreport_study
    from ega_sim.testing import check_mechanism

    world = ega_sim.make_world("single_slot")
    check_mechanism(ega_sim.make_mechanism("cascade/vcg", world), world, threads=1)
    assert torch.get_num_threads() == two_threads
    table = run_misreport_study(world, ["cascade/vcg"], requests=20, bandit_steps=0)
    assert set(table["threads"]) == {1} and torch.get_num_threads() == two_threads


def test_cli_evaluate_runs_torch_on_1_thread_by_default():
    """As users run it, in a fresh process, with OMP_NUM_THREADS asking for 2: the command's
    default (1) is what torch runs with, and the JSON record says so."""
    env = {**os.environ, "OMP_NUM_THREADS": "2"}
    argv = ["evaluate", "--scenario", "single_slot", "--requests", "50", "--misreport", "none"]
    done = subprocess.run(
        [sys.executable, "-m", "ega_sim.cli", *argv, "--json"],
        capture_output=True,
        text=True,
        env=env,
        cwd=REPO,
        check=True,
    )
    records = [json.loads(line) for line in done.stdout.splitlines()]
    assert records and all(record["threads"] == 1 for record in records)


def test_cli_threads_apply_to_the_command_and_are_restored(capsys, two_threads):
    argv = ["evaluate", "--scenario", "single_slot", "--mechanism", "cascade/vcg"]
    argv += ["--requests", "50", "--misreport", "none"]
    assert main([*argv, "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["threads"] == 1
    torch.set_num_threads(1)
    assert main([*argv, "--json", "--threads", "2"]) == 0
    assert json.loads(capsys.readouterr().out)["threads"] == 2
    assert torch.get_num_threads() == 1
