"""Logs: written and read back equal, consistent with the scenario, reproducible, and every
broken folder (truncated, missing, foreign) a clear error."""

from __future__ import annotations

import hashlib
import math
import shutil

import pytest
import torch

from ega_sim.config import load_scenario
from ega_sim.logs.simulate import simulate_logs
from ega_sim.logs.store import EXPOSURE_COLUMNS, LogError, read_logs, write_logs
from ega_sim.world.feed_market import generate_market


def test_write_then_read_round_trips(tmp_path):
    scenario = load_scenario("feed_small")
    platform = generate_market(scenario).observed()
    generator = torch.Generator().manual_seed(0)
    rows, n_slots = 7, scenario.n_slots
    exposures = {
        "user": torch.randint(100, (rows,), generator=generator),
        "candidate_advertiser": torch.randint(100, (rows, 12), generator=generator),
        "candidate_bid": torch.rand(rows, 12, generator=generator, dtype=torch.float64),
        "organic_poi": torch.randint(100, (rows, 20), generator=generator),
        "poi": torch.randint(100, (rows, n_slots), generator=generator),
        "is_ad": torch.rand(rows, n_slots, generator=generator) < 0.3,
        "advertiser": torch.randint(-1, 100, (rows, n_slots), generator=generator),
        "creative": torch.randint(-1, 3, (rows, n_slots), generator=generator),
        "bid": torch.rand(rows, n_slots, generator=generator, dtype=torch.float64),
        "explored": torch.rand(rows, generator=generator) < 0.5,
        "poi_click": torch.randint(2, (rows, n_slots), generator=generator, dtype=torch.uint8),
        "img_click": torch.randint(2, (rows, n_slots), generator=generator, dtype=torch.uint8),
        "order": torch.randint(2, (rows, n_slots), generator=generator, dtype=torch.uint8),
        "gmv": torch.rand(rows, n_slots, generator=generator, dtype=torch.float64),
    }
    write_logs(tmp_path, exposures, platform, {"scenario": scenario.name, "seed": 3})
    logs = read_logs(tmp_path, scenario)
    for name in EXPOSURE_COLUMNS:
        assert torch.equal(logs.exposures[name], exposures[name]), name
        assert logs.exposures[name].dtype == exposures[name].dtype
    assert torch.equal(logs.platform.observed_poi_latent, platform.observed_poi_latent)
    assert torch.equal(logs.platform.user_history, platform.user_history)
    assert logs.meta["seed"] == 3


def test_simulated_logs_are_consistent(feed_small_logs):
    scenario = load_scenario("feed_small")
    logs = read_logs(feed_small_logs, scenario)
    x = logs.exposures
    market = generate_market(scenario)
    assert logs.n_requests == 6_000
    assert torch.equal(x["is_ad"], x["advertiser"] >= 0)
    assert torch.equal(
        x["poi"][x["is_ad"]], market.platform.advertiser_poi[x["advertiser"][x["is_ad"]]]
    )
    assert bool(
        (
            x["creative"][x["is_ad"]] < market.platform.creative_count[x["advertiser"][x["is_ad"]]]
        ).all()
    )
    assert bool((x["order"] <= x["poi_click"]).all())
    assert bool((x["gmv"][x["order"] == 0] == 0).all())
    assert bool((x["bid"][~x["is_ad"]] == 0).all())
    # Each shown ad's bid is its candidate's bid.
    ad_rows, ad_slots = torch.nonzero(x["is_ad"], as_tuple=True)
    candidates = x["candidate_advertiser"][ad_rows]
    match = candidates == x["advertiser"][ad_rows, ad_slots].unsqueeze(1)
    assert bool(match.any(1).all())
    bids = (x["candidate_bid"][ad_rows] * match).sum(1)
    assert torch.allclose(bids, x["bid"][ad_rows, ad_slots])
    # Exploration share: Binomial(6000, 0.2), 4.5 standard errors.
    share = float(x["explored"].double().mean())
    assert abs(share - 0.2) < 4.5 * math.sqrt(0.2 * 0.8 / 6_000)
    # The platform tables carry no truth.
    assert not hasattr(logs.platform, "poi_latent") and not hasattr(
        logs.platform, "creative_appeal"
    )


def test_same_seed_same_logs(tmp_path):
    scenario = load_scenario("feed_small")
    for name in ("a", "b"):
        simulate_logs(scenario, 300, tmp_path / name, seed=5)
    digest = [
        hashlib.sha256((tmp_path / n / "exposures.npz").read_bytes()).hexdigest() for n in "ab"
    ]
    assert digest[0] == digest[1]
    simulate_logs(scenario, 300, tmp_path / "c", seed=6)
    assert (tmp_path / "c" / "exposures.npz").read_bytes() != (
        tmp_path / "a" / "exposures.npz"
    ).read_bytes()


def test_broken_log_folders_are_clear_errors(tmp_path, feed_small_logs):
    scenario = load_scenario("feed_small")
    with pytest.raises(LogError, match=r"meta\.json: missing"):
        read_logs(tmp_path, scenario)

    truncated = tmp_path / "truncated"
    shutil.copytree(feed_small_logs, truncated)
    data = (truncated / "exposures.npz").read_bytes()
    (truncated / "exposures.npz").write_bytes(data[: len(data) // 2])
    with pytest.raises(LogError, match=r"exposures.npz: .* truncated"):
        read_logs(truncated, scenario)

    missing = tmp_path / "missing"
    shutil.copytree(feed_small_logs, missing)
    (missing / "platform.npz").unlink()
    with pytest.raises(LogError, match=r"platform\.npz: missing"):
        read_logs(missing, scenario)

    with pytest.raises(LogError, match="not 'feed_medium'"):
        read_logs(feed_small_logs, load_scenario("feed_medium"))


def test_simulate_logs_refuses_position_auctions(tmp_path):
    with pytest.raises(ValueError, match="feed_market scenarios only"):
        simulate_logs(load_scenario("textbook"), 10, tmp_path)
