"""check_mechanism(): the contract every mechanism must meet, runnable on any new one.

Like Gymnasium's env checker: it runs the mechanism on random requests and asserts shapes,
dtypes, that each bidder is shown at most once, that empty slots and losers pay nothing, that
prices are finite and >= 0 (and <= bid where the mechanism claims IR), that the result is
deterministic and independent across requests, that bad bids are refused, and, for mechanisms
with a fast unilateral-deviation path, that it agrees with re-running the whole mechanism. In a
feed market it also checks the list: K distinct real candidates, organic items in their fixed
order, a real creative for every ad.
"""

from __future__ import annotations

import torch

from ega_sim.config.scenario import ScenarioConfig
from ega_sim.metrics.outcomes import IR_TOLERANCE
from ega_sim.metrics.regret import MisreportSpec, candidate_misreports
from ega_sim.metrics.rerun import rerun_utility
from ega_sim.seeding import make_generator
from ega_sim.threads import sets_threads
from ega_sim.world.build import World, as_world


def _fail(mechanism, message: str) -> AssertionError:
    return AssertionError(f"{mechanism.name}: {message}")


@sets_threads
def check_mechanism(
    mechanism,
    scenario: World | ScenarioConfig | str,
    requests: int = 64,
    seed: int = 0,
    *,
    threads: int | None = 1,
):
    """Raise AssertionError naming the first broken rule of the mechanism contract, on
    requests of a world (or of a scenario's world on the CPU). `threads`: torch's CPU threads
    for the call (default 1; None keeps the caller's setting), restored afterwards."""
    world = as_world(scenario)
    scenario = world.config
    batch = world.sample_requests(requests, make_generator(seed, "check_mechanism"))
    bids = batch.value_per_click
    n_bidders, n_slots = scenario.n_bidders, scenario.n_slots

    outcome = mechanism.run(batch, bids)
    slot_bidder, price = outcome.slot_bidder, outcome.price_per_click
    if slot_bidder.shape != (requests, n_slots) or slot_bidder.dtype != torch.long:
        raise _fail(
            mechanism,
            f"slot_bidder must be long [B, K], got {slot_bidder.dtype} {tuple(slot_bidder.shape)}",
        )
    if price.shape != (requests, n_slots) or not price.is_floating_point():
        raise _fail(mechanism, f"price_per_click must be float [B, K], got {tuple(price.shape)}")
    if bool(((slot_bidder < -1) | (slot_bidder >= n_bidders)).any()):
        raise _fail(mechanism, "slot_bidder holds an index outside -1 .. N-1")
    shown = slot_bidder >= 0
    counts = torch.zeros(requests, n_bidders + 1, dtype=torch.long)
    counts.scatter_add_(1, torch.where(shown, slot_bidder, n_bidders), torch.ones_like(slot_bidder))
    if bool((counts[:, :n_bidders] > 1).any()):
        raise _fail(mechanism, "a bidder is shown in more than one slot of a request")
    if bool((price[~shown] != 0).any()) or bool(
        (outcome.allocation.slot_ctr_model[~shown] != 0).any()
    ):
        raise _fail(mechanism, "an empty slot has a price or a CTR")
    if not bool(torch.isfinite(price).all()) or bool((price < 0).any()):
        raise _fail(mechanism, "prices must be finite and >= 0")
    if getattr(mechanism, "individually_rational", False):
        bid = bids.gather(1, slot_bidder.clamp(min=0))
        if bool((shown & (price > bid * (1 + IR_TOLERANCE) + IR_TOLERANCE)).any()):
            raise _fail(mechanism, "claims IR but charges a price per click above the bid")

    if hasattr(outcome.allocation, "slot_item"):
        _check_feed_list(mechanism, world, batch, outcome)
    if hasattr(mechanism, "prepare"):
        with_context = mechanism.run(batch, bids, context=mechanism.prepare(batch))
        if not torch.equal(with_context.price_per_click, price):
            raise _fail(mechanism, "run() with a prepared context differs from run() without")

    again = mechanism.run(batch, bids)
    if not (
        torch.equal(again.slot_bidder, slot_bidder) and torch.equal(again.price_per_click, price)
    ):
        raise _fail(mechanism, "two runs on the same input differ")
    half = batch.slice(0, requests // 2)
    part = mechanism.run(half, half.value_per_click)
    if not (
        torch.equal(part.slot_bidder, slot_bidder[: requests // 2])
        and torch.allclose(part.price_per_click, price[: requests // 2], rtol=1e-12, atol=0)
    ):
        raise _fail(mechanism, "a request's outcome depends on the other requests of its batch")

    for bad, what in ((-bids, "negative"), (bids * torch.nan, "NaN")):
        try:
            mechanism.run(batch, bad)
        except ValueError:
            continue
        raise _fail(mechanism, f"accepted {what} bids without a ValueError")

    if hasattr(mechanism, "unilateral"):
        for method in ("exact", "grid"):
            spec = MisreportSpec(method)
            views = mechanism.bidder_views(batch, bids)
            misreports = candidate_misreports(spec, batch, views.threshold)
            slot, fast_price = mechanism.unilateral(views, misreports)
            probability = world.click_probability_per_slot(batch)
            clicks = torch.where(slot >= 0, probability.gather(2, slot.clamp(min=0)), 0.0)
            fast = clicks * (batch.value_per_click.unsqueeze(2) - fast_price)
            slow = rerun_utility(mechanism, world, batch, bids, misreports)
            if not torch.allclose(fast, slow, rtol=1e-9, atol=1e-12):
                raise _fail(mechanism, f"unilateral() disagrees with re-running it ({method})")


def _check_feed_list(mechanism, world, batch, outcome) -> None:
    allocation = outcome.allocation
    item, slot_bidder = allocation.slot_item, allocation.slot_bidder
    n_ads, n_organic = batch.n_bidders, batch.n_organic
    if bool(((item < 0) | (item >= n_ads + n_organic)).any()):
        raise _fail(mechanism, "a slot holds no candidate of its request")
    if bool((item.sort(dim=1).values.diff(dim=1) == 0).any()):
        raise _fail(mechanism, "a candidate is shown twice in one list")
    is_ad = item < n_ads
    if not torch.equal(slot_bidder, torch.where(is_ad, item, -1)):
        raise _fail(mechanism, "slot_bidder does not match the ads of slot_item")
    organic_rank = torch.where(is_ad, -1, item - n_ads)
    running = torch.cummax(organic_rank, dim=1).values
    if bool(((organic_rank >= 0) & (organic_rank < running)).any()):
        raise _fail(mechanism, "organic items are out of their fixed order")
    advertiser = batch.ad_advertiser.gather(1, item.clamp(max=n_ads - 1))
    count = world.market.platform.creative_count[advertiser]
    creative = allocation.slot_creative
    if bool((is_ad & ((creative < 0) | (creative >= count))).any()):
        raise _fail(mechanism, "an ad is shown with a creative it does not have")
    if bool((~is_ad & (creative != -1)).any()):
        raise _fail(mechanism, "an organic item carries a creative")
