"""Checkpoints and logs prove their content and their world: a corrupt, truncated, empty or
swapped file, a checkpoint or logs of another world than the scenario's (same name, another
content), a damaged checkpoint.json or meta.json, an old format, and a .pt that would run code
when unpickled are each one line naming the file, exit code 2 on the command line."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch

import ega_sim
from ega_sim.checkpoints import load_tensors
from ega_sim.checksums import checksum
from ega_sim.cli import main
from ega_sim.config import load_scenario
from ega_sim.config.scenario import resolve_scenario_path
from ega_sim.logs.store import LogError, read_logs
from ega_sim.payment.config import PaynetTrainConfig
from ega_sim.payment.fit import train_paynet
from ega_sim.trained_parts import load_cascade_ctr_model, load_payment_network


@pytest.fixture(scope="module")
def single_slot_paynet(tmp_path_factory) -> Path:
    """cascade/paynet on single_slot after 2 training steps: the smallest payment network."""
    out = tmp_path_factory.mktemp("tiny_paynet")
    config = PaynetTrainConfig(steps=2, batch_size=8, validation_requests=16)
    train_paynet(load_scenario("single_slot"), "cascade", out, config, seed=0)
    return out


def _copy(folder: Path, tmp_path: Path) -> Path:
    target = tmp_path / "checkpoint"
    shutil.copytree(folder, target)
    return target


def _flip_middle(path: Path, count: int = 64) -> None:
    data = bytearray(path.read_bytes())
    middle = len(data) // 2
    data[middle : middle + count] = bytes(b ^ 0xFF for b in data[middle : middle + count])
    path.write_bytes(bytes(data))


def _one_line_error(capsys, argv: list[str]) -> str:
    """stderr of a command line that must fail with exit code 2 and one line."""
    assert main(argv) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1, lines
    return lines[0]


def _evaluate(checkpoint: Path, scenario: str, mechanism: str) -> list[str]:
    """`ega-sim evaluate` of `mechanism` on a few requests, without regret."""
    return [
        "evaluate",
        "--scenario",
        scenario,
        "--mechanism",
        mechanism,
        "--requests",
        "8",
        "--misreport",
        "none",
        "--checkpoint",
        str(checkpoint),
    ]


def _evaluate_paynet(checkpoint: Path, scenario: str = "single_slot") -> list[str]:
    return _evaluate(checkpoint, scenario, "cascade/paynet")


def _evaluate_cascade(checkpoint: Path, scenario: str = "feed_small") -> list[str]:
    return _evaluate(checkpoint, scenario, "cascade/gsp")


def test_flipped_bytes_in_paynet_pt_are_refused(single_slot_paynet, tmp_path, capsys):
    checkpoint = _copy(single_slot_paynet, tmp_path)
    weights = checkpoint / "paynet" / "paynet.pt"
    _flip_middle(weights)
    with pytest.raises(ValueError, match=r"paynet\.pt: its SHA-256 differs"):
        load_payment_network(checkpoint, load_scenario("single_slot"), "cascade")
    line = _one_line_error(capsys, _evaluate_paynet(checkpoint))
    assert str(weights) in line and "corrupt" in line


def test_flipped_bytes_in_pctr_pt_are_refused(feed_small_checkpoint, tmp_path, capsys):
    checkpoint = _copy(feed_small_checkpoint, tmp_path)
    weights = checkpoint / "pctr.pt"
    _flip_middle(weights)
    with pytest.raises(ValueError, match=r"pctr\.pt: its SHA-256 differs"):
        load_cascade_ctr_model(checkpoint, load_scenario("feed_small"))
    line = _one_line_error(capsys, _evaluate_cascade(checkpoint))
    assert str(weights) in line


def _feed_small_of_another_world(tmp_path: Path) -> Path:
    """A copy of feed_small, named feed_small, with another world_seed."""
    text = resolve_scenario_path("feed_small").read_text()
    assert "world_seed = 0" in text
    path = tmp_path / "feed_small.toml"
    path.write_text(text.replace("world_seed = 0", "world_seed = 1"))
    return path


def test_a_checkpoint_of_another_world_is_refused(feed_small_checkpoint, tmp_path, capsys):
    other = _feed_small_of_another_world(tmp_path)
    with pytest.raises(ValueError, match="trained on another world than scenario 'feed_small'"):
        load_cascade_ctr_model(feed_small_checkpoint, load_scenario(other))
    line = _one_line_error(capsys, _evaluate_cascade(feed_small_checkpoint, str(other)))
    assert str(feed_small_checkpoint / "checkpoint.json") in line and "retrain" in line
    # the world, not the name: the same content under the same name loads
    load_cascade_ctr_model(feed_small_checkpoint, load_scenario("feed_small"))


def test_a_payment_network_of_another_world_is_refused(single_slot_paynet):
    other = load_scenario("single_slot", {"values.high": 2.0})
    with pytest.raises(ValueError, match=r"paynet/checkpoint\.json was trained on another world"):
        load_payment_network(single_slot_paynet, other, "cascade")


def test_logs_of_another_world_are_refused(feed_small_logs, tmp_path, capsys):
    other = load_scenario("feed_small", {"market.world_seed": 1})
    with pytest.raises(LogError, match=r"meta\.json: logs of another world"):
        read_logs(feed_small_logs, other)
    argv = ["train", "--scenario", str(_feed_small_of_another_world(tmp_path))]
    argv += ["--mechanism", "cascade/gsp", "--logs", str(feed_small_logs)]
    line = _one_line_error(capsys, [*argv, "--out", str(tmp_path / "out")])
    assert str(feed_small_logs / "meta.json") in line and "another world" in line


@pytest.mark.parametrize("damage", ["empty", "truncated"])
def test_empty_and_truncated_paynet_pt_are_refused(single_slot_paynet, tmp_path, capsys, damage):
    checkpoint = _copy(single_slot_paynet, tmp_path)
    weights = checkpoint / "paynet" / "paynet.pt"
    data = weights.read_bytes()
    weights.write_bytes(b"" if damage == "empty" else data[: len(data) // 2])
    line = _one_line_error(capsys, _evaluate_paynet(checkpoint))
    assert f"{weights}: {0 if damage == 'empty' else len(data) // 2} bytes" in line
    assert "truncated" in line


@pytest.mark.parametrize("damage", ["empty", "truncated"])
def test_a_damaged_tensor_file_without_a_record_is_one_clear_error(
    single_slot_paynet, tmp_path, damage
):
    path = tmp_path / "train_state.pt"
    data = (single_slot_paynet / "paynet" / "paynet.pt").read_bytes()
    path.write_bytes(b"" if damage == "empty" else data[: len(data) // 2])
    with pytest.raises(ValueError, match="not a tensor file written by ega-sim") as error:
        load_tensors(path)
    assert str(path) in str(error.value) and "\n" not in str(error.value)


def _edit_record(path: Path, edit) -> None:
    record = json.loads(path.read_text())
    edit(record)
    path.write_text(json.dumps(record))


def test_checkpoint_json_with_another_hidden_size_is_refused(single_slot_paynet, tmp_path, capsys):
    checkpoint = _copy(single_slot_paynet, tmp_path)
    record = checkpoint / "paynet" / "checkpoint.json"
    _edit_record(record, lambda r: r["train"]["network"].update(hidden=7))
    line = _one_line_error(capsys, _evaluate_paynet(checkpoint))
    assert f"{checkpoint / 'paynet' / 'paynet.pt'} does not fit the settings in {record}" in line
    assert "size mismatch" in line


def test_checkpoint_json_without_train_is_refused(single_slot_paynet, tmp_path, capsys):
    checkpoint = _copy(single_slot_paynet, tmp_path)
    record = checkpoint / "paynet" / "checkpoint.json"
    _edit_record(record, lambda r: r.pop("train"))
    line = _one_line_error(capsys, _evaluate_paynet(checkpoint))
    assert f"{record} lacks the key 'train'" in line


def test_a_checkpoint_of_the_previous_format_is_refused(feed_small_checkpoint, tmp_path):
    checkpoint = _copy(feed_small_checkpoint, tmp_path)

    def as_format_1(record: dict) -> None:
        record.update(format_version=1)
        del record["world"], record["files"]

    _edit_record(checkpoint / "checkpoint.json", as_format_1)
    with pytest.raises(ValueError, match=r"of format 1, this ega-sim reads format 2 .* retrain"):
        load_cascade_ctr_model(checkpoint, load_scenario("feed_small"))


def test_meta_json_with_a_bare_number_for_a_checksum_is_refused(feed_small_logs, tmp_path):
    logs = _copy(feed_small_logs, tmp_path)
    _edit_record(logs / "meta.json", lambda r: r.update(files={"exposures.npz": 5}))
    with pytest.raises(LogError, match=r"meta\.json: key 'files\.exposures\.npz': expected"):
        read_logs(logs, load_scenario("feed_small"))


@pytest.mark.parametrize(
    "key, value", [("requests", "many"), ("requests", 1), ("seed", "0"), ("seed", None)]
)
def test_meta_json_counts_that_are_not_the_logs_are_refused(feed_small_logs, tmp_path, key, value):
    logs = _copy(feed_small_logs, tmp_path)
    _edit_record(logs / "meta.json", lambda r: r.update({key: value}))
    with pytest.raises(LogError, match=rf"meta\.json: key '{key}': expected"):
        read_logs(logs, load_scenario("feed_small"))


class _RunsCode:
    """Unpickled, it would create the file `marker`."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


def test_a_pt_that_would_run_code_is_refused(single_slot_paynet, tmp_path, capsys):
    checkpoint = _copy(single_slot_paynet, tmp_path)
    weights = checkpoint / "paynet" / "paynet.pt"
    marker = tmp_path / "ran"
    torch.save({"weight": _RunsCode(marker)}, weights)
    # even with its checksum recorded: weights_only refuses what is not tensors
    _edit_record(
        checkpoint / "paynet" / "checkpoint.json",
        lambda r: r["files"].update({"paynet.pt": checksum(weights.read_bytes())}),
    )
    line = _one_line_error(capsys, _evaluate_paynet(checkpoint))
    assert f"{weights}: refused" in line and "could run code" in line
    assert not marker.exists()


def test_generative_weights_are_checked_too(feed_small_ega, tmp_path):
    checkpoint = _copy(feed_small_ega, tmp_path)
    _flip_middle(checkpoint / "stages" / "alignment" / "generator.pt")
    world = ega_sim.make_world("feed_small")
    for mechanism in ("ega/gsp", "gr/gsp"):  # gr reads pretrain's generator: still refused
        with pytest.raises(ValueError, match=r"alignment/generator\.pt: its SHA-256 differs"):
            ega_sim.make_mechanism(mechanism, world, checkpoint=checkpoint)
