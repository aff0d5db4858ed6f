"""The command line as users run it: evaluate (table and JSON Lines), bench, --help, errors."""

from __future__ import annotations

import json
import math
import shutil
import subprocess

import pytest

from ega_sim.bench.auctions import STEPS
from ega_sim.cli import main
from ega_sim.mechanisms.rank_path import kernel_available

JSON_KEYS = {
    "mechanism",
    "scenario",
    "requests",
    "seed",
    "revenue_per_request",
    "welfare_per_request",
    "utility_per_request",
    "clicks_per_request",
    "regret_mean",
    "regret_max",
    "psi",
    "ir_violation_rate",
    "seconds",
    "version",
    "git_commit",
}


def test_evaluate_json_lines(capsys):
    code = main(
        [
            "evaluate",
            "--scenario",
            "single_slot",
            "--mechanism",
            "cascade/vcg",
            "cascade/first",
            "--requests",
            "4000",
            "--seed",
            "7",
            "--json",
        ]
    )
    assert code == 0
    lines = capsys.readouterr().out.strip().splitlines()
    records = [json.loads(line) for line in lines]
    assert [r["mechanism"] for r in records] == ["cascade/vcg", "cascade/first"]
    for record in records:
        assert set(record) >= JSON_KEYS
        assert (
            record["scenario"] == "single_slot"
            and record["requests"] == 4000
            and record["seed"] == 7
        )
        assert isinstance(record["revenue_per_request"], float)
    assert records[0]["regret_max"] == 0.0
    assert records[1]["psi"] is None  # truthful first-price bidders earn nothing: psi undefined
    # Second price on U[0, 1] x 2 bidders earns 1/3.
    vcg = records[0]
    assert abs(vcg["revenue_per_request"] - 1 / 3) < 4.5 * vcg["revenue_per_request_se"]


NO_AD_SHOWN = """kind = "position_auction"
n_bidders = 1
slot_ctr = [1.0]
reserve = 2.0
[values]
dist = "uniform"
low = 0.0
high = 1.0
"""


def test_ratios_without_a_denominator_are_null_not_zero(tmp_path, capsys):
    """A reserve above every value: no ad is ever shown, so nothing has a click rate, an IR
    share or a psi (truthful utility sums to 0): null in JSON and n/a in the table, while the
    mean regret (over the searched pairs) is a real 0."""
    scenario = tmp_path / "no_ad_shown.toml"
    scenario.write_text(NO_AD_SHOWN)
    argv = ["evaluate", "--scenario", str(scenario), "--mechanism", "cascade/gsp"]
    assert main([*argv, "--requests", "2", "--json"]) == 0
    record = json.loads(capsys.readouterr().out)
    assert record["ads_per_request"] == 0.0 and record["regret_mean"] == 0.0
    for key in ("psi", "psi_model", "ctr_poi", "ctr_poi_model", "ad_load", "ir_violation_rate"):
        assert record[key] is None, key
    assert main([*argv, "--requests", "2"]) == 0
    row = capsys.readouterr().out.strip().splitlines()[-1].split()
    assert row[0] == "cascade/gsp" and row[-3:-1] == ["n/a", "n/a"]  # psi, IR viol.


def test_evaluate_table_lists_every_mechanism(capsys):
    assert main(["evaluate", "--scenario", "textbook", "--requests", "500"]) == 0
    out = capsys.readouterr().out
    for name in (
        "cascade/gsp",
        "cascade/vcg",
        "cascade/threshold",
        "cascade/first",
        "myerson/gsp",
        "myerson/vcg",
        "myerson/threshold",
        "myerson/first",
    ):
        assert name in out
    assert "regret_mean" in out and "psi" in out


def test_evaluate_writes_out_file(tmp_path, capsys):
    out = tmp_path / "results" / "eval.jsonl"
    assert (
        main(
            [
                "evaluate",
                "--scenario",
                "single_slot",
                "--mechanism",
                "cascade/gsp",
                "--requests",
                "100",
                "--misreport",
                "grid",
                "--out",
                str(out),
            ]
        )
        == 0
    )
    record = json.loads(out.read_text())
    assert record["misreport"] == "grid" and math.isfinite(record["regret_mean"])
    assert not list(out.parent.glob(".*.tmp"))  # no temporary left behind


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["evaluate", "--scenario", "nope"], "shipped names"),
        (["evaluate", "--scenario", "textbook", "--mechanism", "cascade/xyz"], "ALLOCATOR/PAYMENT"),
        (["evaluate", "--scenario", "textbook", "--requests", "0"], "requests"),
        (["evaluate", "--scenario", "textbook", "--device", "cuda:99"], "device"),
    ],
)
def test_errors_are_one_clear_line(capsys, argv, message):
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "error:" in err and message in err


def test_a_bad_rank_path_is_one_line_before_any_work(capsys, monkeypatch):
    monkeypatch.setenv("EGA_SIM_RANK_PATH", "fast")
    assert main(["evaluate", "--scenario", "textbook", "--requests", "100"]) == 2
    captured = capsys.readouterr()
    assert captured.err.strip() == (
        "ega-sim evaluate: error: EGA_SIM_RANK_PATH: expected one of auto, kernel, torch, "
        "got 'fast'"
    )
    assert captured.out == ""


def test_help_has_examples(capsys):
    for command in ("evaluate", "simulate-logs", "train", "bench"):
        with pytest.raises(SystemExit) as exit_info:
            main([command, "--help"])
        assert exit_info.value.code == 0
        assert "examples:" in capsys.readouterr().out


def test_bench_prints_throughput(capsys):
    main(["bench", "--suite", "position", "--requests", "2000", "--repeats", "1", "--json"])
    records = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    paths = ("kernel", "torch") if kernel_available() else ("torch",)

    def at(slots: int) -> list[str]:
        names = ["numpy baseline (no regret)"]
        for path in paths:
            regret = 1 if slots == 1 else 2 + (path == "torch")  # gsp, vcg, myerson on torch
            names += [f"no regret [{path}]", f"no regret [{path}]: ratio"]
            names += [f"exact regret [{path}]"] * regret + [f"exact regret steps [{path}]"]
        return names

    tail = [
        "evaluate (no regret)",
        "numpy evaluate (no regret)",
        "numpy evaluate (no regret): ratio",
    ]
    assert [r["benchmark"] for r in records] == at(1) + at(4) + tail
    assert all(r["auctions_per_second"] > 0 for r in records)
    for record in records:  # each rank auction's record says which path ran it
        if record["benchmark"].startswith(("no regret [", "exact regret [")):
            expected = "numba" if "[kernel]" in record["benchmark"] else "torch (sort)"
            assert expected in record["rank_path"]
    # each ratio is ega-sim's rate over the NumPy program's, both from this run
    rows = {(r["benchmark"], r["scenario"]): r for r in records}
    for scenario in ("bench_n10_k1", "bench_n10_k4"):
        numpy = rows[("numpy baseline (no regret)", scenario)]["auctions_per_second"]
        for path in paths:
            ours = rows[(f"no regret [{path}]", scenario)]["auctions_per_second"]
            ratio = rows[(f"no regret [{path}]: ratio", scenario)]["ega_sim_over_numpy"]
            assert ratio == pytest.approx(ours / numpy)
            # where exact regret's time goes: every step, in ms per 100,000 requests
            steps = rows[(f"exact regret steps [{path}]", scenario)]
            per_100k = steps["milliseconds_per_100k_requests"]
            assert list(per_100k) == list(STEPS) and min(per_100k.values()) > 0
            total_ms = 1e3 * steps["seconds"] * 100_000 / steps["requests"]
            assert sum(per_100k.values()) == pytest.approx(total_ms)


def test_feed_bench_runs(capsys, feed_small_checkpoint):
    main(
        [
            "bench",
            "--suite",
            "feed",
            "--feed-requests",
            "300",
            "--checkpoint",
            str(feed_small_checkpoint),
            "--json",
        ]
    )
    records = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [r["benchmark"] for r in records] == [
        "evaluate cascade/gsp, no regret",
        "evaluate cascade/gsp, grid regret",
    ]
    assert all(r["per_second"] > 0 for r in records)


def test_ega_bench_runs(feed_small_ega):
    """The generative suite at toy sizes: the allocation, both response prices, grid regret."""
    from ega_sim.bench.common import Printer
    from ega_sim.bench.generative import run_generative_bench

    printer = Printer(as_json=True)
    run_generative_bench(
        printer,
        checkpoint=str(feed_small_ega),
        requests=8,
        priced_requests=4,
        regret_requests=4,
        beams=(4,),
        batch_sizes=(8,),
    )
    assert [r["benchmark"] for r in printer.records] == [
        "ega allocation",
        "ega/gsp priced by bid response",
        "ega/threshold priced by bid response",
        "ega/gsp grid regret",
    ]
    assert all(r["per_second"] > 0 for r in printer.records)


@pytest.mark.skipif(shutil.which("ega-sim") is None, reason="console script not installed")
def test_console_script_runs():
    done = subprocess.run(
        ["ega-sim", "evaluate", "--scenario", "single_slot", "--requests", "200", "--json"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert len(done.stdout.strip().splitlines()) == 8


def test_feed_market_commands_end_to_end(tmp_path, capsys):
    logs = tmp_path / "logs"
    assert (
        main(
            ["simulate-logs", "--scenario", "feed_small", "--requests", "3000", "--out", str(logs)]
        )
        == 0
    )
    assert "wrote 3000 logged requests" in capsys.readouterr().out
    checkpoint = tmp_path / "cascade"
    assert (
        main(
            [
                "train",
                "--scenario",
                "feed_small",
                "--mechanism",
                "cascade/gsp",
                "--logs",
                str(logs),
                "--out",
                str(checkpoint),
                "--epochs",
                "2",
            ]
        )
        == 0
    )
    assert "validation AUC" in capsys.readouterr().out
    assert (
        main(
            [
                "evaluate",
                "--scenario",
                "feed_small",
                "--checkpoint",
                str(checkpoint),
                "--requests",
                "200",
                "--misreport",
                "grid",
                "--json",
            ]
        )
        == 0
    )
    records = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [r["mechanism"] for r in records] == ["cascade/gsp", "cascade/vcg"]
    for record in records:
        for key in (
            "rpm",
            "ctr_poi",
            "ctr_img",
            "ad_load",
            "gmv_per_request",
            "welfare_per_request",
            "regret_mean",
            "psi",
            "regret_mean_model",
            "psi_model",
        ):
            assert isinstance(record[key], float), key
        assert record["rpm"] == pytest.approx(1000 * record["revenue_per_request"])
    assert main(["evaluate", "--scenario", "feed_small", "--requests", "10"]) == 2
    assert "ega-sim train --scenario feed_small" in capsys.readouterr().err
    assert (
        main(
            [
                "train",
                "--scenario",
                "textbook",
                "--mechanism",
                "cascade/gsp",
                "--out",
                str(tmp_path / "x"),
            ]
        )
        == 2
    )
    assert "learns nothing" in capsys.readouterr().err


def test_file_system_and_argument_errors_are_one_line(tmp_path, capsys):
    blocker = tmp_path / "a_file"
    blocker.write_text("x")
    assert (
        main(
            ["simulate-logs", "--scenario", "feed_small", "--requests", "10", "--out", str(blocker)]
        )
        == 2
    )
    assert "error:" in capsys.readouterr().err
    assert main(["bench", "--suite", "position", "--threads", "0"]) == 2
    assert "--threads" in capsys.readouterr().err
