"""Myerson's optimal auction: virtual values, ironing of irregular lognormals, the reserve, and
Myerson's lemma (expected revenue = expected virtual surplus) checked by independent numpy code."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy import integrate, optimize, stats

import ega_sim
from ega_sim.mechanisms.score import virtual_value_score
from ega_sim.seeding import make_generator
from ega_sim.world.distributions import Fixed, LogNormal, Uniform
from ega_sim.world.position_auction import PositionAuctionWorld
from tests.conftest import position_auction, within_standard_errors


def _phi_scipy(dist: LogNormal, v: np.ndarray) -> np.ndarray:
    frozen = stats.lognorm(s=dist.sigma, scale=math.exp(dist.mean))
    return v - frozen.sf(v) / frozen.pdf(v)


def test_uniform_virtual_value_is_two_v_minus_high():
    score = virtual_value_score(Uniform(0.5, 2.0))
    v = torch.tensor([0.5, 1.0, 1.7, 2.0], dtype=torch.float64)
    assert torch.allclose(score(v), 2 * v - 2.0)


def test_regular_lognormal_virtual_value_matches_scipy():
    dist = LogNormal(0.3, 0.5)
    v = np.exp(0.3 + 0.5 * np.linspace(-3, 3, 41))
    got = virtual_value_score(dist)(torch.from_numpy(v)).numpy()
    assert np.allclose(got, _phi_scipy(dist, v), rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("sigma", [2.0, 2.5, 3.0])
def test_irregular_lognormal_is_ironed(sigma):
    # Ironing replaces phi on an interval [a, b] by its conditional mean E[phi(V) | a <= V <= b]
    # (the slope of the revenue curve's concave hull); elsewhere it keeps phi. Both checked
    # against scipy's density with numerical integration.
    dist = LogNormal(0.0, sigma)
    frozen = stats.lognorm(s=sigma)
    v = np.exp(sigma * np.linspace(-5, 5, 2001))
    raw = _phi_scipy(dist, v)
    assert np.any(np.diff(raw) < -1e-6), f"sigma = {sigma} should be irregular"
    ironed = virtual_value_score(dist)(torch.from_numpy(v)).numpy()
    assert np.all(np.diff(ironed) >= 0)
    flat = np.isclose(np.diff(ironed), 0.0, atol=1e-12)
    assert flat.any()
    # The ironed interval: the longest run of flat steps.
    runs = np.split(np.arange(len(flat)), np.where(np.diff(flat.astype(int)) != 0)[0] + 1)
    run = max((r for r in runs if flat[r[0]]), key=len)
    low, high = v[run[0]], v[run[-1] + 1]
    mass = frozen.cdf(high) - frozen.cdf(low)
    mean_phi = (
        integrate.quad(
            lambda x: (x - frozen.sf(x) / frozen.pdf(x)) * frozen.pdf(x), low, high, limit=200
        )[0]
        / mass
    )
    assert ironed[run[0] + 1] == pytest.approx(mean_phi, rel=2e-3, abs=2e-3)
    outside = (v < low * 0.9) | (v > high * 1.1)
    assert np.allclose(ironed[outside], raw[outside], rtol=1e-3, atol=1e-3)


@pytest.mark.parametrize("sigma", [0.5, 1.0, 2.0, 2.5, 3.0])
def test_myerson_reserve_is_the_monopoly_price(sigma):
    # One bidder: the optimal mechanism posts argmax_p p (1 - F(p)); Myerson's reserve is
    # where the ironed virtual value crosses 0, which must be the same price.
    dist = LogNormal(0.0, sigma)
    frozen = stats.lognorm(s=sigma)
    best = optimize.minimize_scalar(
        lambda logp: -math.exp(logp) * frozen.sf(math.exp(logp)),
        bounds=(-10, 10),
        method="bounded",
        options={"xatol": 1e-10},
    )
    monopoly_price = math.exp(best.x)
    allocator = ega_sim.make_mechanism(
        "myerson/threshold", position_auction(1, (1.0,), values=dist)
    ).allocator
    assert allocator.reserve_per_click == pytest.approx(monopoly_price, rel=2e-3)


def _virtual_surplus(
    values: np.ndarray, quality: np.ndarray, slot_ctr, phi, order_key
) -> np.ndarray:
    """Per request: sum over slots of alpha_k q phi(v) of the bidder the ranking puts there."""
    surplus = np.zeros(values.shape[0])
    for b in range(values.shape[0]):
        eligible = [
            i for i in range(values.shape[1]) if order_key(values[b, i], quality[b, i]) is not None
        ]
        ranked = sorted(eligible, key=lambda i: (-order_key(values[b, i], quality[b, i]), i))
        for k, i in enumerate(ranked[: len(slot_ctr)]):
            surplus[b] += slot_ctr[k] * quality[b, i] * phi(values[b, i])
    return surplus


@pytest.mark.parametrize("allocator", ["cascade", "myerson"])
def test_myersons_lemma_revenue_equals_virtual_surplus(allocator):
    # For any monotone allocation with threshold payments, E[revenue] = E[virtual surplus].
    # Checked on U[0, 1] values (phi(v) = 2v - 1) with qualities, paired on the same requests.
    slot_ctr = (1.0, 0.7, 0.4)
    scenario = position_auction(4, slot_ctr, quality=Uniform(0.5, 1.0))
    world = PositionAuctionWorld(scenario)
    requests = world.sample_requests(20_000, make_generator(5, "lemma"))
    mechanism = ega_sim.make_mechanism(f"{allocator}/threshold", scenario)
    outcome = mechanism.run(requests, requests.value_per_click)
    revenue = (
        (outcome.price_per_click * world.expected_clicks(requests, outcome.allocation))
        .sum(1)
        .numpy()
    )
    if allocator == "cascade":

        def key(v, q):
            return q * v
    else:

        def key(v, q):
            return q * (2 * v - 1) if v >= 0.5 else None

    surplus = _virtual_surplus(
        requests.value_per_click.numpy(),
        requests.quality.numpy(),
        slot_ctr,
        lambda v: 2 * v - 1,
        key,
    )
    difference = revenue - surplus
    se = difference.std(ddof=1) / math.sqrt(len(difference))
    assert within_standard_errors(difference.mean(), 0.0, se)


def test_myerson_on_irregular_values_is_ic_and_beats_reserve_prices():
    # sigma = 2 lognormal (ironed), 3 bidders, one slot, same requests for every mechanism:
    # Myerson's revenue is at least the second price's with any reserve on a grid.
    scenario = position_auction(3, (1.0,), values=LogNormal(0.0, 2.0), quality=Fixed((1.0,)))
    myerson = ega_sim.evaluate("myerson/threshold", scenario, requests=100_000, seed=4)
    assert myerson.regret_max < 1e-9
    world = PositionAuctionWorld(scenario)
    requests = world.sample_requests(100_000, make_generator(4, "requests"))
    best_mechanism = ega_sim.make_mechanism("myerson/threshold", scenario)

    def revenue(mechanism):
        outcome = mechanism.run(requests, requests.value_per_click)
        return (outcome.price_per_click * world.expected_clicks(requests, outcome.allocation)).sum(
            1
        )

    optimal = revenue(best_mechanism)
    for reserve in (0.0, 0.5, 1.0, 2.0, 4.0):
        other = revenue(
            ega_sim.make_mechanism(
                "cascade/vcg",
                position_auction(3, (1.0,), values=LogNormal(0.0, 2.0), reserve=reserve),
            )
        )
        difference = optimal - other
        se = float(difference.std()) / math.sqrt(difference.numel())
        assert float(difference.mean()) > -4.5 * se, reserve
