"""The batched misreport engine of the generative mechanisms: running a request's misreports
together (shared encoder, shared partial lists, each distinct list scored once) gives exactly
what running every profile alone gives; the regret search of the shown ads equals re-running
each of them by hand."""

from __future__ import annotations

import math

import pytest
import torch

import ega_sim
from ega_sim.mechanisms.base import per_bidder
from ega_sim.mechanisms.registry import paynet_mechanism
from ega_sim.metrics.regret import MisreportSpec, candidate_misreports, misreport_utility
from ega_sim.metrics.regret_summary import searched_bidders
from ega_sim.metrics.rerun import deviation_profiles
from ega_sim.payment.generated_rule import generated_feature_count
from ega_sim.payment.network import PaymentNetwork
from ega_sim.seeding import make_generator


@pytest.fixture(scope="module")
def world():
    return ega_sim.make_world("feed_small")


def _mechanism(name, world, checkpoint):
    settings = {"beams": 4}
    if name.endswith("/paynet"):  # an untrained network prices as any would
        allocator = name.split("/")[0]
        network = PaymentNetwork(
            generated_feature_count(world.config.n_slots, 3), generator=make_generator(0, "net")
        )
        return paynet_mechanism(allocator, world, network, checkpoint, settings)
    return ega_sim.make_mechanism(name, world, checkpoint=checkpoint, settings=settings)


@pytest.mark.parametrize("name", ["ega/gsp", "gr/gsp", "ega/first", "ega/paynet"])
def test_run_searches_equals_running_every_profile_alone(world, feed_small_ega, name):
    mechanism = _mechanism(name, world, feed_small_ega)
    requests = world.sample_requests(6, make_generator(3, "engine"))
    bids = requests.value_per_click
    misreports = candidate_misreports(MisreportSpec("grid"), requests)  # [B, N, 10]
    n_bidders, n_candidates = misreports.shape[1:]
    every = torch.arange(n_bidders).expand(len(bids), -1)
    profiles = deviation_profiles(bids, misreports, every, torch.ones_like(every, dtype=bool))
    together = mechanism.run_searches(requests, profiles)
    alone = mechanism.run(requests.repeat_each(n_bidders * n_candidates), profiles.flatten(0, 1))
    assert torch.equal(together.allocation.slot_item, alone.allocation.slot_item)
    assert torch.equal(together.allocation.slot_creative, alone.allocation.slot_creative)
    assert torch.equal(together.price_per_click, alone.price_per_click)
    assert torch.equal(together.allocation.slot_log_z, alone.allocation.slot_log_z)
    # and the misreports did move lists: the test is not about identical rows
    truthful = mechanism.run(requests, bids).allocation.slot_item.repeat_interleave(
        n_bidders * n_candidates, dim=0
    )
    if name.startswith("ega"):
        assert bool((together.allocation.slot_item != truthful).any(1).any())


def _shown(outcome, n_bidders: int) -> torch.Tensor:
    """[B, N] bool: the ads in the list, the bidders the paper's regret search covers."""
    return searched_bidders(MisreportSpec("grid", bidders="shown"), None, outcome, n_bidders)


def test_shown_ads_regret_equals_rerunning_each_misreport_by_hand(world, feed_small_ega):
    # First price: the engine's allocation is the subject, not a price rule. The misreports are
    # re-run here as requests of their own, all in one batch (a lone request on the CPU runs
    # other float kernels, which can turn a near-tie between beams the other way).
    mechanism = _mechanism("ega/first", world, feed_small_ega)
    requests = world.sample_requests(4, make_generator(4, "engine"))
    bids = requests.value_per_click
    outcome = mechanism.run(requests, bids)
    n_bidders = bids.shape[1]
    searched = _shown(outcome, n_bidders)
    search = misreport_utility(
        MisreportSpec("grid"), mechanism, world, requests, bids, searched=searched
    )
    misreports, utility = search.misreports, search.utility
    assert bool(torch.isnan(utility[~searched]).all())
    rows, expected_at = [], []
    for b, i in searched.nonzero().tolist():
        for c, misreport in enumerate(misreports[b, i].tolist()):
            deviated = bids[b].clone()
            deviated[i] = misreport
            rows.append((b, i, deviated))
            expected_at.append((b, i, c))
    index = torch.tensor([b for b, _, _ in rows])
    by_hand = requests.select(index)
    alone = mechanism.run(by_hand, torch.stack([d for _, _, d in rows]))
    clicks = world.expected_clicks(by_hand, alone.allocation)
    for row, (b, i, c) in enumerate(expected_at):
        own = alone.slot_bidder[row] == i
        expected = float(((bids[b, i] - alone.price_per_click[row]) * clicks[row])[own].sum())
        assert utility[b, i, c].item() == pytest.approx(expected, rel=1e-12, abs=1e-15)


def test_evaluate_searches_the_shown_ads_of_generated_lists(world, feed_small_ega):
    mechanism = _mechanism("ega/gsp", world, feed_small_ega)
    shown_only = ega_sim.evaluate(mechanism, world, requests=8, seed=2, misreport="grid")
    every = ega_sim.evaluate(
        mechanism, world, requests=8, seed=2, misreport=MisreportSpec("grid", bidders="all")
    )
    assert shown_only.regret_bidders == "shown" and every.regret_bidders == "all"
    assert every.regret_pairs == 8 * world.config.n_bidders
    assert shown_only.regret_pairs == round(shown_only.ads_per_request * 8)
    # The same requests: the shown ads' regret is part of all bidders' regret.
    assert shown_only.regret_mean * shown_only.regret_pairs <= (
        every.regret_mean * every.regret_pairs + 1e-12
    )
    for result in (shown_only, every):
        low, high = result.psi_interval
        assert 0 <= low <= result.psi <= high
        assert math.isfinite(result.psi_model) and result.psi_model >= 0


def _response_priced(world, checkpoint, payment):
    return ega_sim.make_mechanism(f"ega/{payment}", world, checkpoint=checkpoint)


def test_bidding_the_gsp_price_keeps_the_position_and_less_loses_it(world, feed_small_ega):
    from ega_sim.mechanisms.bid_response import own_bid_response

    mechanism = _response_priced(world, feed_small_ega, "gsp")
    requests = world.sample_requests(16, make_generator(5, "engine"))
    bids = requests.value_per_click
    outcome = mechanism.run(requests, bids)
    request, slot = outcome.allocation.shown.nonzero(as_tuple=True)
    bidder = outcome.slot_bidder[request, slot]
    price = outcome.price_per_click[request, slot]
    bid = bids[request, bidder]
    response = own_bid_response(mechanism, requests, bids, request, bidder, bid, bid[:, None])
    # Re-run every ad just above its price and a little below, as requests of their own in one
    # batch. Not at the price itself: it is the edge of the position, where another batch's
    # float rounding may fall on either side.
    at_price = bids[request].clone()
    above = torch.minimum(price + response.resolution, bid)
    at_price[torch.arange(len(request)), bidder] = above
    kept = mechanism.allocate(requests.select(request), at_price).slot_bidder  # [R, K]
    position = (kept == bidder.unsqueeze(1)).to(torch.int8)
    assert bool((position.any(1) & (position.argmax(1) <= slot)).all())  # same or better
    below = price - 2 * response.resolution
    check = (price > 0) & (below > 0) & response.monotone()
    assert bool(check.any())
    at_less = at_price.clone()
    at_less[torch.arange(len(request)), bidder] = below.clamp(min=0)
    lost = mechanism.allocate(requests.select(request), at_less).slot_bidder
    where = lost == bidder.unsqueeze(1)
    moved_down = ~where.any(1) | (where.to(torch.int8).argmax(1) > slot)
    assert bool(moved_down[check].all())  # shading below the price moves the ad down


def test_the_threshold_price_leaves_no_profitable_misreport_under_the_model(world, feed_small_ega):
    mechanism = _response_priced(world, feed_small_ega, "threshold")
    requests = world.sample_requests(16, make_generator(6, "engine"))
    bids = requests.value_per_click
    outcome = mechanism.run(requests, bids)
    n_bidders = bids.shape[1]
    shown = _shown(outcome, n_bidders)
    search = misreport_utility(
        MisreportSpec("grid"), mechanism, world, requests, bids, searched=shown, with_model=True
    )
    margin = torch.where(
        outcome.allocation.shown,
        bids.gather(1, outcome.slot_bidder.clamp(min=0)) - outcome.price_per_click,
        0.0,
    )
    truthful = per_bidder(
        margin * outcome.allocation.slot_ctr_model, outcome.slot_bidder, n_bidders
    )
    regret = (search.utility_model.amax(2) - truthful).clamp(min=0)  # [B, N], NaN: not searched
    monotone = search.monotone == 1.0
    assert bool(monotone.any())
    # Myerson's price of a monotone allocation: no grid misreport pays under the allocator's
    # own clicks, up to the response's resolution (1.2e-4 of the largest misreport, 2 x value).
    tolerance = 2.5e-4 * bids.amax()
    assert float(regret[monotone].max()) <= float(tolerance)


def test_one_response_per_ad_equals_rerunning_every_misreport(world, feed_small_ega):
    mechanism = _response_priced(world, feed_small_ega, "gsp")
    requests = world.sample_requests(6, make_generator(7, "engine"))
    bids = requests.value_per_click
    outcome = mechanism.run(requests, bids)
    n_bidders = bids.shape[1]
    searched = _shown(outcome, n_bidders)
    spec = MisreportSpec("grid")
    fast = misreport_utility(spec, mechanism, world, requests, bids, searched=searched)
    slow = misreport_utility(spec, mechanism, world, requests, bids, searched=searched, rerun=True)
    assert torch.equal(torch.isnan(fast.utility), torch.isnan(slow.utility))
    known = ~torch.isnan(slow.utility)
    # Prices come from responses on [0, 2 x value] against [0, misreport]: equal within the
    # responses' resolution (x the ad's clicks, below 1).
    resolution = 2.0 * bids.amax() / (8 * 2**10)
    assert torch.allclose(
        fast.utility[known], slow.utility[known], rtol=0, atol=float(2 * resolution)
    )
