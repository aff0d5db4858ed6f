"""Feed-market scenario files and world generation: validation, determinism, requests."""

from __future__ import annotations

import pytest
import torch

from ega_sim.config import ConfigError, load_scenario
from ega_sim.seeding import make_generator
from ega_sim.world.feed_market import generate_market
from ega_sim.world.requests import sample_market_requests

FEED = """
name = "feed_test"
kind = "feed_market"
[market]
n_pois = 60
n_users = 50
[requests]
candidate_ads = 6
organic_items = 10
slots = 6
ad_positions = [2, 4]
retrieval = 4
"""


def test_feed_scenarios_load_with_defaults(write_scenario):
    scenario = load_scenario(write_scenario(FEED))
    assert scenario.kind == "feed_market" and scenario.n_advertisers == 18
    assert scenario.click_model.position_decay == 0.9  # a documented default
    small = load_scenario("feed_small")
    assert small.requests.ad_positions == (2, 5, 8)
    medium = load_scenario("feed_medium")
    assert medium.market.n_pois == 5000 and medium.market.n_users == 50_000


@pytest.mark.parametrize(
    ("old", "new", "key", "expected"),
    [
        ("n_users = 50", "n_users = 50\nn_user = 5", "market.n_user", "known key"),
        (
            "ad_positions = [2, 4]",
            "ad_positions = [2, 7]",
            "requests.ad_positions",
            "within 1..slots",
        ),
        ("ad_positions = [2, 4]", "ad_positions = [4, 2]", "requests.ad_positions", "increasing"),
        (
            "ad_positions = [2, 4]",
            'ad_positions = ["2"]',
            "requests.ad_positions",
            "list of integers",
        ),
        ("candidate_ads = 6", "candidate_ads = 40", "requests.candidate_ads", "at most the number"),
        ("retrieval = 4", "retrieval = 9", "requests.retrieval", "at most candidate_ads"),
        ("slots = 6", "slots = 0", "requests.slots", ">= 1"),
        ("n_pois = 60", "n_pois = 60.5", "market.n_pois", "an integer"),
        (
            "[requests]",
            "[click_model]\nposition_decay = 1.5\n[requests]",
            "click_model.position_decay",
            "<= 1.0",
        ),
    ],
)
def test_malformed_feed_scenarios_name_the_key(write_scenario, old, new, key, expected):
    path = write_scenario(FEED.replace(old, new, 1))
    with pytest.raises(ConfigError) as caught:
        load_scenario(path)
    message = str(caught.value)
    assert str(path) in message and f"'{key}'" in message and expected in message, message


def test_market_generation_is_deterministic_and_plausible(write_scenario):
    scenario = load_scenario(write_scenario(FEED))
    first = generate_market(scenario)
    second = generate_market(scenario)
    assert first is not second
    for part, other in ((first, second), (first.platform, second.platform)):
        for name, value in vars(part).items():
            if isinstance(value, torch.Tensor):
                assert torch.equal(value, getattr(other, name)), name
    assert first.platform.user_history.shape == (50, scenario.market.history_length)
    assert torch.allclose(first.poi_latent.norm(dim=1), torch.ones(60, dtype=torch.float64))
    counts = first.platform.creative_count
    assert bool(((counts >= 1) & (counts <= 3)).all())
    assert bool((first.creative_appeal[~first.observed().creative_valid] == 0).all())


def test_requests_hold_nearby_candidates(write_scenario):
    scenario = load_scenario(write_scenario(FEED))
    market = generate_market(scenario)
    requests = sample_market_requests(market, 200, make_generator(0, "requests"))
    assert requests.ad_advertiser.shape == (200, 6) and requests.organic_poi.shape == (200, 10)
    # distinct candidates, organic items are non-advertisers
    assert bool((requests.ad_advertiser.sort(1).values.diff(1) > 0).all())
    assert not bool(market.observed().is_advertiser[requests.organic_poi].any())
    assert bool((requests.value_per_click > 0).all())
    # Nearby: candidate ads are closer to the user than advertisers at random.
    user_location = market.platform.user_location[requests.user].unsqueeze(1)
    chosen = (
        market.platform.poi_location[market.platform.advertiser_poi[requests.ad_advertiser]]
        - user_location
    ).norm(dim=-1)
    everyone = (
        market.platform.poi_location[market.platform.advertiser_poi].unsqueeze(0) - user_location
    ).norm(dim=-1)
    assert float(chosen.mean()) < float(everyone.mean())


def test_lists_always_fill_with_organic_items(write_scenario):
    # Ad positions left empty are filled with organic items, so M >= K is required.
    with pytest.raises(ConfigError, match="at least slots"):
        load_scenario(write_scenario(FEED.replace("organic_items = 10", "organic_items = 5")))
    with pytest.raises(ConfigError, match=r"'market\.history_length'"):
        load_scenario(
            write_scenario(FEED.replace("n_users = 50", "n_users = 50\nhistory_length = 70"))
        )
    with pytest.raises(ConfigError, match=r"'click_model\.similarity_threshold'"):
        load_scenario(
            write_scenario(
                FEED.replace("[requests]", "[click_model]\nsimilarity_threshold = 1.0\n[requests]")
            )
        )
