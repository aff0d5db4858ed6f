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


def test_shown_ads_regret_equals_rerunning_each_misreport_by_hand(world, feed_small_ega):
    mechanism = _mechanism("ega/gsp", world, feed_small_ega)
    requests = world.sample_requests(4, make_generator(4, "engine"))
    bids = requests.value_per_click
    outcome = mechanism.run(requests, bids)
    n_bidders = bids.shape[1]
    shown = per_bidder(outcome.allocation.shown.to(torch.uint8), outcome.slot_bidder, n_bidders)
    searched = shown.bool()
    misreports, utility = misreport_utility(
        MisreportSpec("grid"), mechanism, world, requests, bids, searched=searched
    )
    assert bool(torch.isnan(utility[~searched]).all())
    for b, i in searched.nonzero().tolist():
        one = requests.slice(b, b + 1)
        for c, misreport in enumerate(misreports[b, i].tolist()):
            deviated = bids[b : b + 1].clone()
            deviated[0, i] = misreport
            alone = mechanism.run(one, deviated)
            clicks = world.expected_clicks(one, alone.allocation)[0]
            own = alone.slot_bidder[0] == i
            expected = float(
                ((bids[b, i] - alone.price_per_click[0]) * clicks)[own].sum()
            )  # 0 when the misreport drops the ad from the list
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
