"""Scenario files: the documented schema loads; every malformed file is a clear ConfigError
naming the file, the key and what was expected."""

from __future__ import annotations

import pytest
import torch

import ega_sim
from ega_sim.config import ConfigError, available_scenarios, load_scenario
from ega_sim.world.distributions import Fixed, LogNormal, Uniform
from ega_sim.world.position_auction import AuctionRequests
from tests.conftest import VALID_SCENARIO


def test_valid_scenario_loads(write_scenario):
    scenario = load_scenario(write_scenario(VALID_SCENARIO))
    assert scenario.name == "tiny"
    assert scenario.n_bidders == 3 and scenario.n_slots == 2
    assert scenario.slot_ctr == (1.0, 0.5)
    assert scenario.values == Uniform(0.0, 1.0)
    assert scenario.quality == Fixed((1.0,))


def test_shipped_scenarios_load_by_name():
    names = available_scenarios()
    assert {"textbook", "single_slot", "three_bidders_two_slots", "lognormal_heavy_tail"} <= set(
        names
    )
    for name in names:
        scenario = load_scenario(name)
        assert scenario.name == name
    heavy = load_scenario("lognormal_heavy_tail")
    assert heavy.values == LogNormal(0.0, 2.0)
    assert heavy.quality == Fixed((0.9, 0.8, 0.8, 0.6, 0.5, 0.5))


def test_quality_defaults_to_one(write_scenario):
    text = VALID_SCENARIO.split("[quality]")[0]
    assert load_scenario(write_scenario(text)).quality == Fixed((1.0,))


def _error_for(write_scenario, text: str) -> str:
    path = write_scenario(text)
    with pytest.raises(ConfigError) as caught:
        load_scenario(path)
    message = str(caught.value)
    assert str(path) in message  # every error names the file
    return message


@pytest.mark.parametrize(
    ("change", "key", "expected"),
    [
        (("n_bidders = 3", "n_bidders = 3\nslots = 2"), "slots", "known key"),
        (("n_bidders = 3", 'n_bidders = "three"'), "n_bidders", "an integer"),
        (("n_bidders = 3", "n_bidders = 0"), "n_bidders", ">= 1"),
        (("n_bidders = 3", "n_bidders = 2.5"), "n_bidders", "an integer"),
        (("slot_ctr = [1.0, 0.5]", "slot_ctr = [0.5, 1.0]"), "slot_ctr", "non-increasing"),
        (("slot_ctr = [1.0, 0.5]", "slot_ctr = []"), "slot_ctr", "at least 1"),
        (("slot_ctr = [1.0, 0.5]", "slot_ctr = [1.0, -0.5]"), "slot_ctr[1]", "(0, 1]"),
        (("slot_ctr = [1.0, 0.5]", 'slot_ctr = [1.0, "x"]'), "slot_ctr[1]", "a number"),
        (("reserve = 0.0", "reserve = -1.0"), "reserve", ">= 0"),
        (('kind = "position_auction"', 'kind = "auction"'), "kind", "'position_auction'"),
        (('dist = "uniform"', 'dist = "normal"'), "values.dist", "'uniform'"),
        (("low = 0.0\nhigh = 1.0", "low = 0.0\nhigh = nan"), "values.high", "finite"),
        (("low = 0.0\nhigh = 1.0", "low = 1.0\nhigh = 0.5"), "values.high", "> low"),
        (("low = 0.0\nhigh = 1.0", "low = 0.0"), "values.high", "required"),
        (
            ("low = 0.0\nhigh = 1.0", "low = 0.0\nhigh = 1.0\nhihg = 2.0"),
            "values.hihg",
            "known key",
        ),
        (("value = 1.0", "value = 0.0"), "quality.values[0]", "(0, 1]"),
        (("value = 1.0", "values = [0.5, 0.5]"), "quality.values", "n_bidders = 3"),
    ],
)
def test_malformed_scenarios_name_the_key(write_scenario, change, key, expected):
    old, new = change
    assert old in VALID_SCENARIO
    message = _error_for(write_scenario, VALID_SCENARIO.replace(old, new, 1))
    assert f"'{key}'" in message, message
    assert expected in message, message


@pytest.mark.parametrize(
    ("values", "key"),
    [
        ('dist = "uniform"\nlow = 0.0\nhigh = 1e308', "values.high"),  # money figures overflow
        ('dist = "uniform"\nlow = 0.0\nhigh = 1e40', "values.high"),  # observed as inf
        ('dist = "uniform"\nlow = 0.0\nhigh = 1e-46', "values.high"),  # observed as 0
        ('dist = "lognormal"\nmean = 800.0\nsigma = 1.0', "values.mean"),  # exp(800) = inf
        ('dist = "lognormal"\nmean = 0.0\nsigma = 9.0', "values.sigma"),  # e^(8 x 9) > 7.9e28
    ],
)
def test_values_beyond_what_float32_carries_name_the_key(write_scenario, values, key):
    text = VALID_SCENARIO.replace('dist = "uniform"\nlow = 0.0\nhigh = 1.0', values)
    message = _error_for(write_scenario, text)
    assert f"'{key}'" in message and "float32" in message and "\n" not in message, message


@pytest.mark.parametrize(
    ("values", "key"),
    [
        ("shock_sigma = 1000.0", "values.shock_sigma"),  # every value 0
        ("spread = 20.0", "values.spread"),
        ("mean_log = 20.0\nspread = 6.0", "values.spread"),
    ],
)
def test_feed_market_values_beyond_float32_name_the_key(write_scenario, values, key):
    message = _error_for(write_scenario, f'kind = "feed_market"\n[values]\n{values}\n')
    assert f"'{key}'" in message and "float32" in message, message


@pytest.mark.parametrize(
    ("text", "key", "gib"),
    [
        # 1e8 bidders x (8 x 1 slot + 4 x 64 dense misreports + 2) x 8 bytes = 198.2 GiB
        (VALID_SCENARIO.replace("n_bidders = 3", "n_bidders = 100000000"), "n_bidders", "198"),
        ('kind = "feed_market"\n[market]\nn_pois = 1000000000000\n', "market.n_pois", None),
    ],
)
def test_sizes_beyond_memory_are_refused_at_load(write_scenario, monkeypatch, text, key, gib):
    """On a machine of 128 GiB (the estimate is a lower bound; see config/memory.py)."""
    from ega_sim.config import memory

    monkeypatch.setattr(memory, "physical_memory", lambda: 128 * 2**30)
    if key == "n_bidders":
        text = text.replace("slot_ctr = [1.0, 0.5]", "slot_ctr = [1.0]")
    message = _error_for(write_scenario, text)
    assert f"'{key}'" in message and "this machine has 128 GiB" in message, message
    assert gib is None or f"at least {gib} GiB" in message, message
    for name in ("textbook", "feed_medium"):  # the shipped scenarios still load there
        load_scenario(name)


def test_value_bounds_come_from_float32():
    """Independent arithmetic: float32's max is (2 - 2^-23) 2^127, its smallest normal 2^-126;
    the headroom is 2^32 either way."""
    from ega_sim.world.value_range import VALUE_MAX, VALUE_MIN

    assert VALUE_MAX == (2 - 2**-23) * 2.0**95 and VALUE_MIN == 2.0**-94


def test_lognormal_sigma_must_be_positive(write_scenario):
    text = VALID_SCENARIO.replace(
        'dist = "uniform"\nlow = 0.0\nhigh = 1.0', 'dist = "lognormal"\nmean = 0.0\nsigma = 0.0'
    )
    assert "'values.sigma'" in _error_for(write_scenario, text)


def test_missing_and_malformed_files(write_scenario, tmp_path):
    with pytest.raises(ConfigError, match=r"shipped names: .*textbook"):
        load_scenario("no_such_scenario")
    with pytest.raises(ConfigError, match="no such file"):
        load_scenario(tmp_path / "missing.toml")
    assert "valid UTF-8 TOML" in _error_for(write_scenario, "n_bidders = = 3")


def test_unknown_mechanism_lists_the_known_ones():
    with pytest.raises(ValueError, match=r"cascade/gsp.*myerson/threshold"):
        ega_sim.make_mechanism("cascade/second", "textbook")
    with pytest.raises(ValueError, match="ALLOCATOR/PAYMENT"):
        ega_sim.make_mechanism("vcg", "textbook")


def test_bad_bids_and_arguments_in_the_api():
    mechanism = ega_sim.make_mechanism("cascade/gsp", "three_bidders_two_slots")
    values = torch.tensor([[0.5, 0.4, 0.3]], dtype=torch.float64)
    requests = AuctionRequests(values, torch.ones_like(values))
    with pytest.raises(ValueError, match="bids >= 0"):
        mechanism.run(requests, torch.tensor([[0.5, -0.1, 0.3]], dtype=torch.float64))
    with pytest.raises(ValueError, match="finite"):
        mechanism.run(requests, torch.tensor([[0.5, float("nan"), 0.3]], dtype=torch.float64))
    with pytest.raises(ValueError, match="shape"):
        mechanism.run(requests, torch.ones(1, 2, dtype=torch.float64))
    with pytest.raises(ValueError, match="requests"):
        ega_sim.evaluate("cascade/gsp", "textbook", requests=0)
    with pytest.raises(ValueError, match="misreport"):
        ega_sim.evaluate("cascade/gsp", "textbook", requests=10, misreport="random")
    with pytest.raises(ValueError, match="seed"):
        ega_sim.evaluate("cascade/gsp", "textbook", requests=10, seed=-1)


@pytest.mark.parametrize(
    ("value", "quality", "error", "message"),
    [
        (
            [[0.9, 0.5, 0.3]],
            [[0.0, 0.0, 1.0]],
            ValueError,
            r"quality: expected pCTRs in \(0, 1\], got 0",
        ),
        ([[0.9, 0.5, 0.3]], [[1.0, 5.0, 1.0]], ValueError, r"quality: expected pCTRs .* got 5"),
        ([[0.9, 0.5, 0.3]], [[1.0, float("nan"), 1.0]], ValueError, "quality: expected finite"),
        ([[0.9, float("inf"), 0.3]], [[1.0] * 3], ValueError, "value_per_click: expected finite"),
        ([[0.9, -0.5, 0.3]], [[1.0] * 3], ValueError, "value_per_click: expected values >= 0"),
        ([[True, False, True]], [[1.0] * 3], TypeError, "value_per_click: expected a floating"),
        ([[1, 0, 1]], [[1.0] * 3], TypeError, "value_per_click: expected a floating"),
        ([[0.9, 0.5, 0.3]], [[1.0, 1.0]], ValueError, r"\[B, N\]"),
    ],
)
def test_auction_requests_follow_the_scenario_files_rules(value, quality, error, message):
    """What a scenario file refuses, AuctionRequests refuses too; quality 0 used to price gsp,
    vcg and threshold at NaN (a division by the pCTR), bools to be read as bids of 0 and 1."""
    with pytest.raises(error, match=message):
        AuctionRequests(torch.tensor(value), torch.tensor(quality, dtype=torch.float64))


def test_bool_bids_are_refused():
    mechanism = ega_sim.make_mechanism("cascade/gsp", "single_slot")
    requests = AuctionRequests(torch.tensor([[0.9, 0.5]]), torch.ones(1, 2))
    with pytest.raises(TypeError, match="bids: expected a floating-point tensor"):
        mechanism.run(requests, torch.tensor([[True, False]]))


@pytest.mark.parametrize("name", ["cascade/gsp", "cascade/vcg", "myerson/threshold"])
def test_an_empty_batch_gives_an_empty_outcome(name):
    mechanism = ega_sim.make_mechanism(name, "three_bidders_two_slots")
    empty = torch.empty(0, 3, dtype=torch.float64)
    outcome = mechanism.run(AuctionRequests(empty, empty.clone()), empty)
    assert outcome.slot_bidder.shape == (0, 2) and outcome.price_per_click.shape == (0, 2)


@pytest.mark.parametrize("device", ["meta", "nonsense", "cuda:99"])
def test_unusable_devices_are_one_line_errors(device):
    with pytest.raises(ValueError, match=r"^device: ") as caught:
        ega_sim.make_world("single_slot", device=device)
    assert "\n" not in str(caught.value)


def test_non_utf8_scenario_names_the_file(tmp_path):
    path = tmp_path / "binary.toml"
    path.write_bytes(b"\xff\xfe")
    with pytest.raises(ConfigError, match=r"binary\.toml.*UTF-8"):
        load_scenario(path)


def test_exact_regret_does_not_depend_on_the_value_scale():
    # Scaling every value by s scales utilities and regret by s: the exact search must find
    # the same regret / s at any scale (an absolute nudge above thresholds used to skip
    # intervals below about 1e-9). Theory for this scenario: a^2 / 12 = 0.03.
    from ega_sim.metrics.outcomes import measure_outcome
    from ega_sim.metrics.regret import MisreportSpec, ex_post_regret
    from ega_sim.seeding import make_generator
    from ega_sim.world.position_auction import AuctionRequests, PositionAuctionWorld

    scenario = load_scenario("three_bidders_two_slots")
    world = PositionAuctionWorld(scenario)
    base = world.sample_requests(2000, make_generator(0, "scale"))
    results = []
    for scale in (1.0, 1e-9, 1e-12):
        requests = AuctionRequests(base.value_per_click * scale, base.quality)
        bids = requests.value_per_click
        for name in ("cascade/gsp", "cascade/first"):
            mechanism = ega_sim.make_mechanism(name, scenario)
            outcome = mechanism.run(requests, bids)
            clicks = world.expected_clicks(requests, outcome.allocation)
            utility = measure_outcome(requests, bids, outcome, clicks).utility
            regret = ex_post_regret(
                MisreportSpec("exact"), mechanism, world, requests, bids, utility
            )
            results.append(float(regret.mean()) / scale)
    assert results[0::2] == pytest.approx([results[0]] * 3, rel=1e-6)
    assert results[1::2] == pytest.approx([results[1]] * 3, rel=1e-6)
