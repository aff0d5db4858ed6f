"""Strategic advertisers: the environments meet the Gymnasium and PettingZoo contracts, and
best responses found through them match auction theory.

The GSP oracle: n = 3 bidders with values U[0, 1], quality 1, slots alpha = (1, 1/2), truthful
opponents. Bidding b with value v earns U(b) = v b^2 - 2 b^3 / 3 + (1 - b)(v b - b^2 / 2) for
b <= 1 (slot 1 when b beats both others, paying the higher; slot 2 between them, paying the
lower, at half the clicks), so U'(b) = v - b - b^2 / 2 = 0 at b*(v) = sqrt(1 + 2v) - 1: 0.732 at
v = 1, with U(b*) / U(1) - 1 = 19.6%.
"""

from __future__ import annotations

import math
import warnings

import gymnasium
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

import ega_sim  # noqa: F401 (registers ega_sim/AdAuction-v0)
from ega_sim.envs import ENV_ID, parallel_env
from ega_sim.envs.best_response import learn_multiplier, utility_curve
from ega_sim.envs.market import AuctionMarket
from ega_sim.envs.strategies import UCBBandit, make_strategy
from ega_sim.world.distributions import Uniform
from ega_sim.world.value_range import VALUE_MAX, VALUE_MIN
from tests.conftest import position_auction, within_standard_errors

# What check_env may say, and why it is fine here: the issue asks for a bid multiplier in
# [0, gamma_max], not a normalized [-1, 1] box. (The observation box is finite: values per
# click are bounded when a scenario loads, world/value_range.py.)
ALLOWED_WARNINGS = ("For Box action spaces, we recommend using a symmetric and normalized space",)

SCENARIOS = [("textbook", "cascade/gsp"), ("feed_small", "oracle_cascade/gsp")]


@pytest.mark.parametrize(("scenario", "mechanism"), SCENARIOS)
def test_check_env_passes_with_only_the_allowed_warnings(scenario, mechanism):
    env = gymnasium.make(ENV_ID, scenario=scenario, mechanism=mechanism, requests_per_step=3)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        check_env(env.unwrapped, skip_render_check=True)
    unexpected = [
        str(w.message) for w in caught if not any(a in str(w.message) for a in ALLOWED_WARNINGS)
    ]
    assert unexpected == []


@pytest.mark.parametrize("high", [VALUE_MIN, VALUE_MAX])
def test_observations_at_the_value_bounds_are_finite_nonzero_and_in_the_box(high):
    """The largest and smallest uniform value range a scenario may declare: the float32
    observations stay finite and nonzero, and an infinite one would be outside the box."""
    scenario = position_auction(2, (1.0,), values=Uniform(0.0, high))
    env = gymnasium.make(ENV_ID, scenario=scenario, requests_per_step=4)
    observation, _ = env.reset(seed=0)
    values = observation[:, 0]
    assert np.isfinite(values).all() and (values > 0).all()
    assert env.observation_space.contains(observation)
    assert not env.observation_space.contains(np.full_like(observation, np.inf))


@pytest.mark.parametrize(("scenario", "mechanism"), SCENARIOS)
def test_parallel_api_test_passes(scenario, mechanism):
    from pettingzoo.test import parallel_api_test

    env = parallel_env(scenario=scenario, mechanism=mechanism, requests_per_step=2, max_steps=4)
    parallel_api_test(env, num_cycles=10)
    expected = 5 if scenario == "textbook" else 120  # bidders / advertisers of the market
    assert len(env.possible_agents) == expected


def _trajectory(env, seed: int, steps: int = 6):
    observation, _ = env.reset(seed=seed)
    env.action_space.seed(seed)
    seen = [observation]
    for _ in range(steps):
        observation, reward, _, truncated, info = env.step(env.action_space.sample())
        prices = info.get("price_per_click", np.zeros(0))  # an autoreset step has no info
        seen += [observation, np.asarray(reward), prices, np.asarray(truncated)]
    return seen


def test_same_seed_same_trajectory():
    for make in (
        lambda: gymnasium.make(ENV_ID, scenario="textbook", requests_per_step=4, max_steps=4),
        lambda: gymnasium.make_vec(
            ENV_ID,
            num_envs=3,
            vectorization_mode="vector_entry_point",
            scenario="textbook",
            requests_per_step=2,
            max_steps=4,
        ),
    ):
        first, second, other = (
            _trajectory(make(), 5),
            _trajectory(make(), 5),
            _trajectory(make(), 6),
        )
        assert all(np.array_equal(a, b) for a, b in zip(first, second, strict=True))
        assert not all(np.array_equal(a, b) for a, b in zip(first, other, strict=True))


def test_native_vector_env_is_the_vector_entry_point_and_truncates_together():
    envs = gymnasium.make_vec(
        ENV_ID, num_envs=4, vectorization_mode="vector_entry_point", max_steps=2
    )
    assert type(envs).__name__ == "AdAuctionVectorEnv"
    observations, _ = envs.reset(seed=0)
    assert observations.shape == (4, 1, 2)
    ones = np.ones((4, 1), dtype=np.float32)
    truncations = [envs.step(ones)[3] for _ in range(3)]
    assert not truncations[0].any() and truncations[1].all() and not truncations[2].any()


@pytest.mark.parametrize(
    ("action", "message"),
    [
        ([float("nan")], "finite"),
        ([-0.1], r"in \[0.0, 2.0\]"),
        ([2.5], r"in \[0.0, 2.0\]"),
        ([1.0, 1.0], "shape"),
    ],
)
def test_bad_actions_are_clear_errors(action, message):
    env = gymnasium.make(ENV_ID, scenario="textbook", disable_env_checker=True)
    env.reset(seed=0)
    with pytest.raises(ValueError, match=message):
        env.step(np.asarray(action, dtype=np.float32))
    env.step(np.ones(1, dtype=np.float32))  # the state is intact


def test_parallel_step_refuses_actions_for_unknown_agents():
    env = parallel_env(scenario="textbook", requests_per_step=1)
    env.reset(seed=0)
    actions = {agent: np.ones(1, dtype=np.float32) for agent in env.agents}
    with pytest.raises(ValueError, match=r"unknown \['bidder_9'\]"):
        env.step({**actions, "bidder_9": np.ones(1, dtype=np.float32)})  # textbook: 0 to 4
    env.step(actions)  # the state is intact


def test_bad_settings_name_the_argument():
    with pytest.raises(ValueError, match="focal"):
        gymnasium.make(ENV_ID, scenario="textbook", focal=9)
    with pytest.raises(ValueError, match="reward"):
        gymnasium.make(ENV_ID, scenario="textbook", reward="clicks")
    with pytest.raises(ValueError, match="opponents"):
        gymnasium.make(ENV_ID, scenario="textbook", opponents="shade:x")
    with pytest.raises(ValueError, match="opponents"):
        make_strategy("greedy")


def test_info_holds_the_truthful_counterfactual():
    env = gymnasium.make(ENV_ID, scenario="textbook", mechanism="cascade/vcg", requests_per_step=64)
    env.reset(seed=1)
    _, _, _, _, info = env.step(np.ones(64, dtype=np.float32))  # truthful: the same bids
    np.testing.assert_array_equal(info["expected_utility"], info["truthful_utility"])
    _, _, _, _, info = env.step(np.full(64, 0.5, dtype=np.float32))
    assert (info["expected_utility"] <= info["truthful_utility"] + 1e-12).all()  # VCG is IC


def _gsp_utility(b: np.ndarray, v: float) -> np.ndarray:
    b = np.minimum(b, 1.0)
    return v * b**2 - 2 * b**3 / 3 + (1 - b) * (v * b - b**2 / 2)


GSP_WORLD = position_auction(3, (1.0, 0.5))
GRID = np.round(np.arange(0.50, 1.2001, 0.05), 2)
FINE_GRID = np.append(np.round(np.arange(0.60, 0.9001, 0.01), 2), 1.0)  # around b*(1) = 0.732


def test_best_response_under_gsp_is_sqrt_one_plus_two_v_minus_one():
    curve = utility_curve(
        AuctionMarket(GSP_WORLD, "cascade/gsp"), FINE_GRID, value=1.0, requests=100_000, seed=3
    )
    expected = _gsp_utility(FINE_GRID, 1.0)
    assert all(
        within_standard_errors(u, e, se)
        for u, e, se in zip(curve.utility, expected, curve.utility_se, strict=True)
    )
    assert abs(curve.best_multiplier - (math.sqrt(3) - 1)) <= 0.03
    gain = _gsp_utility(np.array([math.sqrt(3) - 1]), 1.0)[0] / (1 / 3) - 1  # 19.6%
    assert abs(curve.gain_over_truthful - gain) <= 0.02


def test_truthful_is_a_best_response_under_vcg():
    curve = utility_curve(
        AuctionMarket(GSP_WORLD, "cascade/vcg"), GRID, value=0.8, requests=100_000, seed=4
    )
    truthful = curve.utility_at(1.0)
    # No multiplier beats truthful bidding by more than noise (paired differences).
    assert ((curve.utility - truthful) <= 4.5 * curve.gain_se + 1e-12).all()


@pytest.mark.parametrize(
    ("mechanism", "low", "high"), [("cascade/vcg", 0.8, 1.2), ("cascade/first", 0.0, 0.8)]
)
def test_bandit_learns_truthful_under_vcg_and_shading_under_first_price(mechanism, low, high):
    env = gymnasium.make(
        ENV_ID,
        scenario="textbook",
        mechanism=mechanism,
        requests_per_step=256,
        reward="expected",
        max_steps=10_000,
    )
    env.reset(seed=0)
    learned = learn_multiplier(env, UCBBandit(), steps=400)
    assert low <= learned <= high


def test_shaded_opponents_and_a_policy_opponent_play():
    import torch

    from ega_sim.envs.strategies import Shade

    values = torch.rand(6, 5, dtype=torch.float64)
    assert torch.equal(
        make_strategy("shade:0.8").multipliers(values, None), torch.full_like(values, 0.8)
    )
    assert isinstance(make_strategy(Shade(0.5)), Shade)
    env = gymnasium.make(ENV_ID, scenario="textbook", opponents="shade:0.5", requests_per_step=256)
    env.reset(seed=0)
    _, _, _, _, shaded = env.step(np.ones(256, dtype=np.float32))
    env = gymnasium.make(ENV_ID, scenario="textbook", requests_per_step=256)
    env.reset(seed=0)
    _, _, _, _, truthful = env.step(np.ones(256, dtype=np.float32))
    # Shading opponents leave more for a truthful focal bidder (same requests, same seed).
    assert shaded["expected_utility"].sum() > truthful["expected_utility"].sum()


def test_ppo_trains_improves_on_random_and_plays_as_an_opponent():
    pytest.importorskip("stable_baselines3")
    import torch

    from ega_sim.envs.sb3 import PolicyStrategy, evaluate_policy, normalized, train_ppo

    settings = dict(scenario="textbook", requests_per_step=16, reward="expected", max_steps=16)
    env = normalized(gymnasium.make(ENV_ID, disable_env_checker=True, **settings))
    env.reset(seed=0)
    model = train_ppo(env, steps=512, seed=0, n_steps=128)  # a smoke run: seconds
    evaluation = normalized(gymnasium.make(ENV_ID, disable_env_checker=True, **settings))
    evaluation.reset(seed=1)
    multiplier, utility = evaluate_policy(model, evaluation, steps=8)

    class Uniform:  # the random policy: multipliers uniform on [0, 2]
        rng = np.random.default_rng(0)

        def predict(self, observation, deterministic=True):
            return self.rng.uniform(-1, 1, observation.shape[:-1]).astype(np.float32), None

    evaluation.reset(seed=1)
    _, random_utility = evaluate_policy(Uniform(), evaluation, steps=8)
    assert 0.0 <= multiplier <= 2.0
    assert utility > random_utility
    # Any SB3 policy bids as a strategy: [B, N] multipliers from values and contexts.
    inner = gymnasium.make(ENV_ID, disable_env_checker=True, **settings)
    strategy = PolicyStrategy(model)
    values = torch.rand(40, 5, dtype=torch.float64)
    # It acts in [-1, 1] and bids through normalized's map (equality: tests/test_sb3.py).
    played = strategy.multipliers(values, None, torch.ones_like(values))
    assert played.shape == (40, 5) and bool(((played >= 0) & (played <= 2)).all())
    assert inner.action_space.shape == (16,)


def test_misreport_command_writes_the_table_and_figure(tmp_path, capsys):
    import pandas as pd

    from ega_sim.cli import main

    argv = ["misreport", "--scenario", "single_slot", "--mechanism", "cascade/vcg", "cascade/first"]
    assert main([*argv, "--requests", "2000", "--bandit-steps", "40", "--out", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "cascade/vcg" in out and "bandit" in out
    table = pd.read_csv(tmp_path / "misreport.csv")
    assert set(table["kind"]) == {"curve", "best_response", "bandit"}
    assert len(table[table["kind"] == "curve"]) == 2 * 40
    assert (tmp_path / "misreport.png").stat().st_size > 10_000
    vcg = table[(table["mechanism"] == "cascade/vcg") & (table["kind"] == "best_response")]
    assert float(vcg["multiplier"].iloc[0]) == 1.0  # truthful is the best response under VCG


def test_misreport_summary_prints_the_truthful_utility(tmp_path, capsys):
    """The printed summary gives each mechanism's truthful utility (multiplier 1) with its 95%
    half-width: the study's own figures, and the closed forms of single_slot (two U[0, 1]
    bidders, one slot): second price leaves the focal bidder E[(v - v')+] = 1/6 per request,
    first price with truthful bids leaves it nothing."""
    import re

    import pandas as pd

    from ega_sim.cli import main
    from ega_sim.intervals import Z95

    argv = ["misreport", "--scenario", "single_slot", "--mechanism", "cascade/vcg", "cascade/first"]
    assert main([*argv, "--requests", "4000", "--bandit-steps", "0", "--out", str(tmp_path)]) == 0
    lines = capsys.readouterr().out.splitlines()
    table = pd.read_csv(tmp_path / "misreport.csv")
    curve = table[(table["kind"] == "curve") & (table["multiplier"] == 1.0)].set_index("mechanism")
    for mechanism, expected in (("cascade/vcg", 1 / 6), ("cascade/first", 0.0)):
        line = next(line for line in lines if line.startswith(mechanism + " "))
        utility, half_width = map(float, re.search(r"truthful u (\S+) ±(\S+)", line).groups())
        truthful = curve.loc[mechanism]
        assert utility == round(truthful["utility_per_request"], 4)
        assert half_width == round(Z95 * truthful["utility_se"], 4)
        assert within_standard_errors(
            truthful["utility_per_request"], expected, truthful["utility_se"]
        )
    assert "truthful u 0.0000 ±0.0000" in next(line for line in lines if "cascade/first" in line)


def test_best_response_strategy_bids_b_star_in_each_value_bin():
    from ega_sim.envs.best_response import BestResponse

    strategy = BestResponse(AuctionMarket(GSP_WORLD, "cascade/gsp"), requests=60_000, bins=10)
    import torch

    values = torch.tensor([[0.95, 0.55, 0.25]], dtype=torch.float64)
    played = strategy.multipliers(values, None)[0].numpy()
    # The bin's best multiplier against truthful opponents is near b*(v) / v at its values
    # (bins are 0.1 wide, the grid 0.02, the utility flat near its top: 0.06 of slack).
    expected = (np.sqrt(1 + 2 * values[0].numpy()) - 1) / values[0].numpy()
    assert np.abs(played - expected).max() <= 0.06
    env = gymnasium.make(ENV_ID, scenario=GSP_WORLD, opponents=strategy, requests_per_step=8)
    env.reset(seed=0)
    env.step(np.ones(8, dtype=np.float32))
