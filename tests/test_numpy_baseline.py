"""The bench's NumPy yardstick (bench/numpy_baseline.py) runs the same auction as cascade/gsp:
equal slot bidders and prices on tie-heavy profiles, and its evaluate's means agree with the
closed form of the bench auction."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from ega_sim.bench.numpy_baseline import numpy_evaluate, numpy_gsp
from ega_sim.mechanisms.registry import make_mechanism
from ega_sim.world.build import make_world
from ega_sim.world.distributions import Uniform
from ega_sim.world.position_auction import AuctionRequests
from tests.conftest import position_auction


@pytest.mark.parametrize(("n_bidders", "slot_ctr"), [(10, (1.0, 0.75, 0.5, 0.25)), (3, (1.0,) * 4)])
def test_numpy_gsp_is_cascade_gsp(n_bidders: int, slot_ctr: tuple[float, ...]) -> None:
    generator = np.random.default_rng(0)
    values = generator.integers(0, 6, (2_000, n_bidders)) / 5.0  # ties and zeros
    quality = generator.choice([0.5, 1.0], (2_000, n_bidders))
    slot_bidder, price = numpy_gsp(values, quality, len(slot_ctr))
    config = position_auction(n_bidders, slot_ctr, quality=Uniform(0.5, 1.0))
    mechanism = make_mechanism("cascade/gsp", make_world(config, "cpu"))
    requests = AuctionRequests(torch.from_numpy(values), torch.from_numpy(quality))
    outcome = mechanism.run(requests, requests.value_per_click)
    shown = outcome.slot_bidder.numpy() >= 0
    # ega-sim leaves a bidder with score 0 (bid 0) shown; NumPy has no eligibility rule either.
    assert np.array_equal(np.where(shown, slot_bidder, -1), outcome.slot_bidder.numpy())
    assert np.array_equal(np.where(shown, price, 0.0), outcome.price_per_click.numpy())


def test_numpy_evaluate_matches_the_closed_form_of_one_slot() -> None:
    """n = 2, one slot, values U[0, 1], qualities U[0.5, 1]: welfare per request is
    E[max(q1 v1, q2 v2)] (clicks q, value v: welfare = q v of the winner), computed here by
    numerical integration, within 4.5 standard errors."""
    mean, se = numpy_evaluate(100_000, 2, np.array([1.0]), 4_096, seed=1)
    # E[max(X1, X2)] with X = q v, q ~ U[0.5, 1], v ~ U[0, 1] i.i.d.: integral of 1 - F(x)^2.
    # Midpoint rule over q (error ~1e-7 at 400 points), trapezoid over x (~1e-9).
    grid = np.linspace(0.0, 1.0, 20_001)
    q = (0.5 + 0.5 * (np.arange(400) + 0.5) / 400)[:, None]
    cdf = np.clip(grid[None, :] / q, 0.0, 1.0).mean(0)  # P(q v <= x)
    expected = np.trapezoid(1.0 - cdf**2, grid)
    assert abs(mean[1] - expected) <= 4.5 * se[1] + 1e-5
    assert math.isclose(mean[2], mean[1] - mean[0], rel_tol=1e-9)
    # One slot, two bidders with scores > 0: exactly one ad, and GSP charges at most the bid.
    assert (mean[4], se[4], mean[5], se[5]) == (1.0, 0.0, 0.0, 0.0)
    # Clicks are the winner's quality: E[q_w] = 2 E[q1 F(q1 v1)], F the cdf of q v above.
    v = (np.arange(2_000) + 0.5) / 2_000
    expected_clicks = 2.0 * (q * np.interp(q * v[None, :], grid, cdf)).mean()
    assert abs(mean[3] - expected_clicks) <= 4.5 * se[3] + 1e-5
