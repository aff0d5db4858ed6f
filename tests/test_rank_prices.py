"""Winners' prices read off the top K + 1 ranks (mechanisms/rank_prices.py) equal, bit for bit,
the prices read off each winner's BidderView (`RankMechanism.reference_run`), on thousands of
tie-heavy random profiles per scenario: bids and qualities from small grids (so scores tie
exactly), reserves and eCPM floors, fewer bidders than slots, and Myerson's ironed (flat)
virtual values, where whole intervals of bids share one score."""

from __future__ import annotations

import zlib

import pytest
import torch

from ega_sim.config.scenario import load_scenario
from ega_sim.mechanisms.rank_path import rank_path
from ega_sim.mechanisms.registry import make_mechanism
from ega_sim.metrics.regret import MisreportSpec, misreport_utility
from ega_sim.world.build import make_world
from ega_sim.world.distributions import LogNormal, Uniform
from ega_sim.world.position_auction import AuctionRequests
from tests.conftest import position_auction

RULES = ("gsp", "vcg", "threshold", "first")
PROFILES = 4_000


def tie_heavy(n_bidders: int, top: float, seed: int) -> AuctionRequests:
    """PROFILES requests: half the bids on a grid of 9 values in [0, top] (exact ties, zeros),
    half continuous; qualities from {0.25, 0.5, 1}."""
    generator = torch.Generator().manual_seed(seed)
    shape = (PROFILES, n_bidders)
    grid = torch.randint(0, 9, shape, generator=generator).double() * (top / 8)
    smooth = torch.rand(shape, generator=generator, dtype=torch.float64) * top
    values = torch.where(torch.rand(shape, generator=generator) < 0.5, grid, smooth)
    quality = torch.tensor([0.25, 0.5, 1.0], dtype=torch.float64)[
        torch.randint(0, 3, shape, generator=generator)
    ]
    return AuctionRequests(values, quality)


SCENARIOS = {
    "plain": (position_auction(10, (1.0, 0.7, 0.5, 0.2)), 1.0),
    "reserve_and_floor": (
        position_auction(6, (1.0, 0.6, 0.3), reserve=0.25, ecpm_floor=0.125),
        1.0,
    ),
    "floor_only": (position_auction(5, (1.0, 0.5), ecpm_floor=0.25), 1.0),
    "more_slots_than_bidders": (position_auction(3, (1.0, 0.8, 0.6, 0.4, 0.2)), 1.0),
    "one_slot": (position_auction(10, (1.0,)), 1.0),
    "one_bidder": (position_auction(1, (1.0, 0.5)), 1.0),
    "lognormal": (
        position_auction(8, (1.0, 0.5, 0.25), values=LogNormal(0.0, 1.0)),
        4.0,
    ),
    "uniform_shifted": (
        position_auction(4, (1.0, 0.5), values=Uniform(1.0, 3.0), reserve=1.5),
        3.0,
    ),
    "bimodal_ironing": (load_scenario("bimodal_ironing"), 4.0),
}


@pytest.mark.parametrize("scenario", SCENARIOS)
@pytest.mark.parametrize("allocator", ("cascade", "myerson"))
def test_prices_from_ranking_equal_view_prices(scenario: str, allocator: str) -> None:
    config, top = SCENARIOS[scenario]
    world = make_world(config, "cpu")
    requests = tie_heavy(config.n_bidders, top, seed=zlib.crc32(f"{scenario}/{allocator}".encode()))
    bids = requests.value_per_click
    ties = 0
    for rule in RULES:
        mechanism = make_mechanism(f"{allocator}/{rule}", world)
        with rank_path("torch"):  # the sort-based path (the kernel: test_rank_kernel.py)
            fast = mechanism.run(requests, bids)
        reference = mechanism.reference_run(requests, bids)
        assert torch.equal(fast.slot_bidder, reference.slot_bidder)
        assert torch.equal(fast.price_per_click, reference.price_per_click), rule
        score = fast.allocation.score
        ties = int(((score.unsqueeze(1) == score.unsqueeze(2)).sum((1, 2)) > score.shape[1]).sum())
    if config.n_bidders > 1:
        assert ties > PROFILES // 50  # many profiles do tie (the point of the test)


@pytest.mark.parametrize("name", ("cascade/gsp", "cascade/vcg", "myerson/threshold"))
def test_exact_regret_reusing_the_allocation_is_unchanged(name: str) -> None:
    """The exact search handed the run's outcome gives the same utilities as re-ranking."""
    config, top = SCENARIOS["reserve_and_floor"]
    world = make_world(config, "cpu")
    requests = tie_heavy(config.n_bidders, top, seed=7)
    bids = requests.value_per_click
    mechanism = make_mechanism(name, world)
    spec = MisreportSpec("exact")
    with rank_path("torch"):
        outcome = mechanism.run(requests, bids)
        again = misreport_utility(spec, mechanism, world, requests, bids)
        reused = misreport_utility(spec, mechanism, world, requests, bids, outcome=outcome)
    assert torch.equal(again.misreports, reused.misreports)
    assert torch.equal(again.utility, reused.utility)
