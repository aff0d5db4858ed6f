"""Shared fixtures: small position-auction scenarios built in code, and scenario-file writers."""

from __future__ import annotations

from pathlib import Path

import pytest

from ega_sim.config.scenario import PositionAuctionConfig
from ega_sim.world.distributions import Fixed, Uniform


def position_auction(
    n_bidders: int,
    slot_ctr: tuple[float, ...],
    *,
    values=None,
    quality=None,
    reserve: float = 0.0,
    ecpm_floor: float = 0.0,
    name: str = "test",
) -> PositionAuctionConfig:
    """A validated position-auction config; values U[0, 1] and quality 1 unless given."""
    return PositionAuctionConfig(
        name=name,
        n_bidders=n_bidders,
        slot_ctr=tuple(slot_ctr),
        values=values if values is not None else Uniform(0.0, 1.0),
        quality=quality if quality is not None else Fixed((1.0,)),
        reserve=reserve,
        ecpm_floor=ecpm_floor,
    )


def within_standard_errors(measured: float, expected: float, se: float, z: float = 4.5) -> bool:
    """|measured - expected| <= z standard errors: a false alarm has odds below 1e-5 at z = 4.5.
    The seeds are fixed, so a test is deterministic; z only sizes how much slack the closed form
    is given against Monte Carlo noise."""
    return abs(measured - expected) <= z * se


VALID_SCENARIO = """
name = "tiny"
kind = "position_auction"
n_bidders = 3
slot_ctr = [1.0, 0.5]
reserve = 0.0
[values]
dist = "uniform"
low = 0.0
high = 1.0
[quality]
dist = "fixed"
value = 1.0
"""


@pytest.fixture
def write_scenario(tmp_path: Path):
    """Write scenario text to a file and return its path."""

    def write(text: str, name: str = "scenario.toml") -> Path:
        path = tmp_path / name
        path.write_text(text)
        return path

    return write


@pytest.fixture(scope="session")
def feed_small_logs(tmp_path_factory):
    """Logs of feed_small (6,000 requests, seed 0), simulated once per test session."""
    from ega_sim.config import load_scenario
    from ega_sim.logs.simulate import simulate_logs

    out = tmp_path_factory.mktemp("feed_small_logs")
    simulate_logs(load_scenario("feed_small"), 6_000, out, seed=0)
    return out


@pytest.fixture(scope="session")
def feed_small_checkpoint(tmp_path_factory, feed_small_logs):
    """A cascade checkpoint trained on feed_small_logs (a few seconds)."""
    from ega_sim.config import load_scenario
    from ega_sim.logs.store import read_logs
    from ega_sim.ranking.train import PCTRTrainConfig, save_cascade_checkpoint, train_pctr

    scenario = load_scenario("feed_small")
    logs = read_logs(feed_small_logs, scenario)
    config = PCTRTrainConfig(epochs=3)
    model, report = train_pctr(logs, config, seed=0)
    out = tmp_path_factory.mktemp("feed_small_cascade")
    return save_cascade_checkpoint(out, model, report, scenario, config, logs.meta)


def _tiny_ega():
    from ega_sim.generative.config import (
        AlignmentConfig,
        EGAConfig,
        PretrainConfig,
        RewardModelConfig,
    )

    return EGAConfig(
        tokenizer_steps=100,
        d_model=16,
        heads=2,
        encoder_layers=1,
        decoder_layers=1,
        pretrain=PretrainConfig(epochs=1, batch_size=512),
        reward_model=RewardModelConfig(d_model=16, heads=2, layers=1, epochs=1),
        alignment=AlignmentConfig(steps=2, batch_size=8),
        beams=2,
    )


TINY_EGA = _tiny_ega()  # the EGA-V2 pipeline at the size of a test


@pytest.fixture(scope="session")
def feed_small_ega(tmp_path_factory, feed_small_logs):
    """A checkpoint folder of the whole EGA-V2 pipeline (TINY_EGA) on feed_small_logs."""
    from ega_sim.config import load_scenario
    from ega_sim.generative.train import train_ega
    from ega_sim.logs.store import read_logs

    scenario = load_scenario("feed_small")
    out = tmp_path_factory.mktemp("ega")
    train_ega(scenario, read_logs(feed_small_logs, scenario), out, TINY_EGA, seed=0)
    return out
