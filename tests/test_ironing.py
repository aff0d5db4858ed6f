"""Ironing that binds: the mixture value distribution and envs/bimodal_ironing.toml.

Every expected number comes from theory worked out below or from independent numerics (scipy
quadrature, a convex hull by qhull on a fine quantile grid, plain numpy ranking), never from the
package's own ironing code path.

The scenario's values: with probability 0.9 U[0, 1], with 0.1 U[1, 5]; so F(v) = 0.9 v on
[0, 1] and 0.9 + (v - 1) / 40 on [1, 5], density 0.9 then 1/40. Its virtual value
phi(v) = v - (1 - F) / f is 2v - 10/9 below 1 and 2v - 5 above: it falls from 8/9 to -3 at 1.
Ironing replaces phi on [a, b] by one level c = phi(a) = phi(b) whose conditional mean over
[a, b] is c: since integral_a^b phi dF = R(a) - R(b) with R(p) = p (1 - F(p)), the condition is
R(a) - R(b) = c (F(b) - F(a)) with a = (c + 10/9) / 2, b = (c + 5) / 2; it solves to c = 1/3,
a = 13/18, b = 8/3 (R(a) = 0.35 x 13/18, R(b) = 8/3 x 7/120, F(b) - F(a) = 7/24). The reserve,
where the ironed phi crosses 0, is 5/9 < 13/18: the ironed interval lies above it.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy import integrate, optimize, stats
from scipy.spatial import ConvexHull

import ega_sim
from ega_sim.config import ConfigError, load_scenario
from ega_sim.mechanisms.score import virtual_value_score
from ega_sim.seeding import make_generator
from ega_sim.world.distributions import LogNormal, Mixture, Uniform
from ega_sim.world.position_auction import PositionAuctionWorld
from tests.conftest import VALID_SCENARIO, position_auction, within_standard_errors

SCENARIO = load_scenario("bimodal_ironing")
N_BIDDERS, SLOT_CTR = 5, (1.0, 0.5)
IRONED_LOW, IRONED_HIGH, IRONED_LEVEL, RESERVE = 13 / 18, 8 / 3, 1 / 3, 5 / 9


# Independent reference: the scenario's distribution written out by hand.
def cdf(v):
    v = np.asarray(v, float)
    return np.where(v <= 1.0, 0.9 * np.clip(v, 0.0, 1.0), 0.9 + np.clip(v - 1.0, 0.0, 4.0) / 40)


def quantile(q):
    q = np.asarray(q, float)
    return np.where(q <= 0.9, q / 0.9, 1.0 + 40.0 * (q - 0.9))


def raw_phi(v):
    v = np.asarray(v, float)
    return np.where(v <= 1.0, 2 * v - 10 / 9, 2 * v - 5)


def ironed_phi(v):
    """The closed form derived in the module docstring."""
    v = np.asarray(v, float)
    return np.where((v >= IRONED_LOW) & (v <= IRONED_HIGH), IRONED_LEVEL, raw_phi(v))


def hull_ironed_phi(points: int = 400_001):
    """phi-bar from the upper concave hull (qhull) of R(u) = u F^-1(1 - u) on a fine grid.

    Returns (phi_bar(v), the hull's ironed interval in values). On an ironed (long) chord phi-bar
    is the chord's slope. Elsewhere consecutive grid points are hull vertices, and since R is
    quadratic in u on each mode a chord's slope is R' at the chord's midpoint exactly: slopes
    are interpolated between midpoints."""
    u = np.linspace(0.0, 1.0, points)
    revenue = u * quantile(1.0 - u)
    below = np.array([[0.5, revenue.min() - 10.0]])  # one point under everything: the lower
    cloud = np.concatenate([np.stack([u, revenue], 1), below])  # hull is then that point only
    vertices = np.sort([i for i in ConvexHull(cloud).vertices if i < points])
    slopes = np.diff(revenue[vertices]) / np.diff(u[vertices])
    middles = 0.5 * (u[vertices[1:]] + u[vertices[:-1]])
    long = np.diff(vertices) > 1  # chords that skip grid points: ironed intervals
    widest = np.argmax(np.diff(vertices))
    interval = (quantile(1 - u[vertices[widest + 1]]), quantile(1 - u[vertices[widest]]))

    def phi_bar(v):
        at = 1.0 - cdf(v)  # u of each value
        chord = (np.searchsorted(u[vertices], at, side="right") - 1).clip(0, len(slopes) - 1)
        return np.where(long[chord], slopes[chord], np.interp(at, middles, slopes))

    return phi_bar, interval


def optimal_revenue() -> float:
    """sum_k alpha_k E[max(phi_bar(V_(k)), 0)], V_(k) the k-th highest of n values: the
    quantile of V_(k) is Beta(n - k + 1, k) (Myerson 1981 for slots: rank by phi_bar)."""
    return _rank_revenue(lambda q: np.maximum(ironed_phi(quantile(q)), 0.0), 0.0)


def second_price_revenue(reserve: float) -> float:
    """Rank by value among values >= reserve, threshold prices (VCG with a standing bid):
    sum_k alpha_k E[phi(V_(k)) 1{V_(k) >= r}] by Myerson's lemma, the raw phi since this
    allocation is not constant on the ironed interval."""
    return _rank_revenue(lambda q: raw_phi(quantile(q)), float(cdf(reserve)))


def _rank_revenue(virtual_value_at_quantile, q_low: float) -> float:
    total = 0.0
    breaks = [x for x in (cdf(IRONED_LOW), 0.9, cdf(IRONED_HIGH)) if x > q_low]
    for k, alpha in enumerate(SLOT_CTR, start=1):
        density = stats.beta(N_BIDDERS - k + 1, k).pdf
        integral, _ = integrate.quad(
            lambda q, d=density: float(virtual_value_at_quantile(q)) * d(q),
            q_low,
            1.0,
            points=breaks,
            epsabs=1e-12,
            limit=200,
        )
        total += alpha * integral
    return total


def rank_slots(score: np.ndarray) -> np.ndarray:
    """Slot bidders [B, K] (-1 empty) ranking by score [B, N] (-inf = ineligible), ties to the
    lower index: plain numpy, independent of the package's sort."""
    order = np.argsort(-score, axis=1, kind="stable")[:, : len(SLOT_CTR)]
    return np.where(np.take_along_axis(score, order, 1) > -np.inf, order, -1)


def draw_requests(count: int, seed: int):
    world = PositionAuctionWorld(SCENARIO)
    return world, world.sample_requests(count, make_generator(seed, "ironing"))


def revenue_per_request(world, requests, name: str, scenario=SCENARIO) -> np.ndarray:
    mechanism = ega_sim.make_mechanism(name, scenario)
    outcome = mechanism.run(requests, requests.value_per_click)
    clicks = world.expected_clicks(requests, outcome.allocation)
    return (outcome.price_per_click * clicks).sum(1).numpy()


# --- the distribution -------------------------------------------------------------------------


def test_closed_form_ironing_solves_its_equation():
    # The docstring's derivation, checked by a root finder: c solves R(a) - R(b) = c (F(b) - F(a)).
    def revenue(p):
        return p * (1 - cdf(p))

    def gap(c):
        a, b = (c + 10 / 9) / 2, (c + 5) / 2
        return revenue(a) - revenue(b) - c * (cdf(b) - cdf(a))

    level = optimize.brentq(gap, 0.0, 0.8, xtol=1e-14)
    assert level == pytest.approx(IRONED_LEVEL, abs=1e-12)
    assert (level + 10 / 9) / 2 == pytest.approx(IRONED_LOW)
    assert (level + 5) / 2 == pytest.approx(IRONED_HIGH)


@pytest.mark.parametrize(
    "mixture",
    [
        SCENARIO.values,
        Mixture((0.3, 0.7), (LogNormal(0.0, 0.5), LogNormal(1.5, 0.3))),
        Mixture((0.5, 0.2, 0.3), (Uniform(0.0, 2.0), LogNormal(0.0, 1.0), Uniform(3.0, 4.0))),
    ],
)
def test_mixture_cdf_pdf_quantile_agree(mixture):
    # The pdf integrates to the cdf (scipy quad), the quantile inverts the cdf, and the cdf is
    # the weighted sum of scipy's component cdfs.
    frozen = [
        stats.uniform(c.low, c.high - c.low)
        if isinstance(c, Uniform)
        else stats.lognorm(s=c.sigma, scale=math.exp(c.mean))
        for c in mixture.components
    ]
    q = np.linspace(0.0, 1.0, 401)[1:-1]
    v = mixture.quantile(q)
    assert np.all(np.diff(v) > 0)
    assert np.allclose(mixture.cdf(v), q, rtol=0, atol=1e-12)
    expected = sum(w * d.cdf(v) for w, d in zip(mixture.weights, frozen, strict=True))
    assert np.allclose(mixture.cdf(v), expected, rtol=0, atol=1e-12)
    breaks = sorted(
        {b for c in mixture.components if isinstance(c, Uniform) for b in (c.low, c.high)}
    )
    for x in v[::40]:
        inside = [b for b in breaks if b < x]
        integral, _ = integrate.quad(lambda t: float(mixture.pdf(t)), 0.0, x, points=inside or None)
        assert integral == pytest.approx(float(mixture.cdf(x)), abs=1e-8)
    assert float(mixture.quantile(0.0)) == pytest.approx(min(float(d.ppf(0.0)) for d in frozen))


def test_scenario_quantile_is_the_closed_form():
    q = np.linspace(0.0, 1.0, 1001)
    assert np.allclose(SCENARIO.values.quantile(q), quantile(q), rtol=1e-13, atol=1e-13)
    with pytest.raises(ValueError, match=r"q in \[0, 1\]"):
        SCENARIO.values.quantile(np.array([0.5, 1.5]))


def test_mixture_samples_follow_the_cdf():
    # Kolmogorov-Smirnov: sqrt(n) D_n exceeds 1.95 with probability 0.001 (asymptotic), so a
    # correct sampler passes with n = 200,000 draws at D_n <= 1.95 / sqrt(n) = 0.0044. The share
    # of large advertisers is 0.1 within 4.5 binomial standard errors.
    draws = SCENARIO.values.sample((40_000, 5), make_generator(1, "ks")).numpy().ravel()
    statistic = stats.kstest(draws, cdf).statistic
    assert statistic <= 1.95 / math.sqrt(draws.size)
    share = float(np.mean(draws > 1.0))
    assert within_standard_errors(share, 0.1, math.sqrt(0.1 * 0.9 / draws.size))
    again = SCENARIO.values.sample((40_000, 5), make_generator(1, "ks")).numpy().ravel()
    assert np.array_equal(draws, again)  # the run's seeded generator, nothing else


# --- the ironed virtual value -------------------------------------------------------------------


def test_ironed_virtual_value_matches_an_independent_hull():
    hull_phi, (low, high) = hull_ironed_phi()
    assert low == pytest.approx(IRONED_LOW, abs=1e-4)
    assert high == pytest.approx(IRONED_HIGH, abs=1e-3)
    v = np.linspace(0.001, 4.999, 20_001)
    # The hull's interval ends are grid points, within a grid step (1e-4 in value) of the true
    # ends; elsewhere it matches the closed form.
    near_ends = (np.abs(v - IRONED_LOW) < 1e-3) | (np.abs(v - IRONED_HIGH) < 1e-3)
    assert np.allclose(hull_phi(v[~near_ends]), ironed_phi(v[~near_ends]), atol=1e-6)
    # The package's table is exact at its grid values and linear between (value_grid's doc),
    # so away from one grid step of the interval's ends it equals the hull's phi-bar.
    package = virtual_value_score(SCENARIO.values)(torch.from_numpy(v)).numpy()
    away = (np.abs(v - IRONED_LOW) > 2e-3) & (np.abs(v - IRONED_HIGH) > 2e-2)
    assert np.allclose(package[away], hull_phi(v[away]), atol=1e-6)
    assert np.all(np.diff(package) >= 0)


def test_ironed_interval_lies_above_the_reserve():
    # Fails if ironing does not bind: the flat stretch must start above Myerson's reserve, which
    # is the monopoly price argmax p (1 - F(p)) found by scipy (5/9 by hand), at a level > 0.
    # R(p) has two local maxima (5/9 and 2.5, one per mode): a grid finds the global one and a
    # bounded search refines it.
    prices = np.linspace(0.0, 5.0, 50_001)
    start = prices[np.argmax(prices * (1 - cdf(prices)))]
    monopoly = optimize.minimize_scalar(
        lambda p: -p * (1 - cdf(p)),
        bounds=(start - 1e-4, start + 1e-4),
        method="bounded",
        options={"xatol": 1e-12},
    ).x
    allocator = ega_sim.make_mechanism("myerson/threshold", SCENARIO).allocator
    assert allocator.reserve_per_click == pytest.approx(monopoly, abs=1e-6)
    assert monopoly == pytest.approx(RESERVE, abs=1e-6)
    v = torch.linspace(0.0, 5.0, 50_001, dtype=torch.float64)
    score = allocator.score_function(v)
    flat = torch.diff(score) == 0
    assert bool(flat.any())
    ironed_values = v[1:][flat]
    assert float(ironed_values.min()) == pytest.approx(IRONED_LOW, abs=1e-3)
    assert float(ironed_values.max()) == pytest.approx(IRONED_HIGH, abs=2e-2)
    assert float(ironed_values.min()) > allocator.reserve_per_click + 0.1
    assert float(score[1:][flat].min()) == pytest.approx(IRONED_LEVEL, abs=1e-5)


# --- revenue: Myerson's lemma, the optimum, and every reserve price ------------------------------


def test_myersons_lemma_and_the_optimum_with_binding_ironing():
    # E[revenue] of myerson/threshold = E[sum_k alpha_k phi_bar(winner k)] (paired on the same
    # requests, 4.5 standard errors of the difference), and both equal the optimum integral.
    world, requests = draw_requests(60_000, seed=2)
    revenue = revenue_per_request(world, requests, "myerson/threshold")
    values = requests.value_per_click.numpy()
    phi_bar = ironed_phi(values)
    slots = rank_slots(np.where(phi_bar >= 0, phi_bar, -np.inf))
    winner_phi = np.where(slots >= 0, np.take_along_axis(phi_bar, slots.clip(0), 1), 0.0)
    surplus = winner_phi @ np.array(SLOT_CTR)
    difference = revenue - surplus
    assert within_standard_errors(
        difference.mean(), 0.0, difference.std(ddof=1) / math.sqrt(len(difference))
    )
    optimum = optimal_revenue()
    for measured in (revenue, surplus):
        se = measured.std(ddof=1) / math.sqrt(len(measured))
        assert within_standard_errors(measured.mean(), optimum, se), (measured.mean(), optimum)


def test_myerson_beats_every_reserve_price_by_more_than_the_noise():
    # Second price with reserve r (cascade/vcg: VCG with the reserve as a standing bid): its
    # measured revenue matches the quadrature of sum_k alpha_k E[phi(V_(k)) 1{V_(k) >= r}], and
    # Myerson's exceeds it on the same requests by more than 4.5 standard errors of the paired
    # difference, for every r; the optimum beats the best r on a fine grid by about 5%.
    world, requests = draw_requests(40_000, seed=3)
    optimal = revenue_per_request(world, requests, "myerson/threshold")
    for reserve in (0.0, 0.3, 0.5, RESERVE, 0.65, IRONED_LOW, 1.0, 1.5, 2.5):
        scenario = load_scenario("bimodal_ironing", {"reserve": reserve})
        other = revenue_per_request(world, requests, "cascade/vcg", scenario)
        se = other.std(ddof=1) / math.sqrt(len(other))
        assert within_standard_errors(other.mean(), second_price_revenue(reserve), se), reserve
        difference = optimal - other
        se_difference = difference.std(ddof=1) / math.sqrt(len(difference))
        assert difference.mean() > 4.5 * se_difference, reserve
    best = max(second_price_revenue(r) for r in np.linspace(0.0, 3.0, 301))
    assert optimal_revenue() > 1.03 * best


def test_myerson_is_ex_post_ic_with_ties_in_the_ironed_interval():
    # Exact search: one bid inside every interval between the bidder's thresholds (flat stretches
    # included: a bidder that loses ties pays the interval's upper end) finds no gain.
    result = ega_sim.evaluate("myerson/threshold", SCENARIO, requests=4_000, seed=5)
    assert result.regret_max < 1e-9
    assert result.ir_violation_rate == 0.0


# --- ironing changes allocations and prices --------------------------------------------------


def test_ironing_changes_allocations_and_prices_on_many_requests():
    # The package's allocation equals plain ranking by the closed-form phi_bar (up to values in
    # a grid step of the interval's ends), and differs on a large share of requests from
    # (a) ranking by value above the same reserve: ties in the ironed interval go to the lower
    # index, so the allocation and the threshold prices change (a price becomes an interval's
    # end); (b) ranking by the raw phi, which is not even monotone (below).
    _, requests = draw_requests(20_000, seed=4)
    values = requests.value_per_click.numpy()
    myerson = ega_sim.make_mechanism("myerson/threshold", SCENARIO)
    outcome = myerson.run(requests, requests.value_per_click)
    package = outcome.slot_bidder.numpy()
    phi_bar = ironed_phi(values)
    ironed = rank_slots(np.where(phi_bar >= 0, phi_bar, -np.inf))
    assert np.mean(np.all(package == ironed, axis=1)) >= 0.999
    by_value = rank_slots(np.where(values >= RESERVE, values, -np.inf))
    raw = raw_phi(values)
    by_raw_phi = rank_slots(np.where(raw >= 0, raw, -np.inf))
    changed_vs_value = np.mean(np.any(ironed != by_value, axis=1))
    changed_vs_raw = np.mean(np.any(ironed != by_raw_phi, axis=1))
    assert changed_vs_value > 0.2 and changed_vs_raw > 0.2, (changed_vs_value, changed_vs_raw)
    reserve_scenario = load_scenario("bimodal_ironing", {"reserve": RESERVE})
    second_price = ega_sim.make_mechanism("cascade/vcg", reserve_scenario)
    other = second_price.run(requests, requests.value_per_click)
    price_changed = np.any(
        ~np.isclose(outcome.price_per_click.numpy(), other.price_per_click.numpy(), atol=1e-9),
        axis=1,
    )
    assert np.mean(price_changed) > 0.2


def test_raw_virtual_value_ranking_is_not_monotone():
    # Why the raw phi cannot be used: phi(0.9) = 0.69 > 0 wins a lone auction, phi(1.5) = -2 < 0
    # loses it, phi(3) = 1 wins again; no payment makes a non-monotone allocation IC (Myerson's
    # lemma), so its larger virtual surplus is not a revenue any mechanism earns.
    assert raw_phi(0.9) > 0 > raw_phi(1.5) and raw_phi(3.0) > 0
    assert ironed_phi(1.5) == pytest.approx(IRONED_LEVEL)


# --- the scenario file -----------------------------------------------------------------------


def test_scenario_file_loads_the_mixture():
    assert SCENARIO.n_bidders == N_BIDDERS and SCENARIO.slot_ctr == SLOT_CTR
    assert SCENARIO.values == Mixture((0.9, 0.1), (Uniform(0.0, 1.0), Uniform(1.0, 5.0)))


MIXTURE = """[values]
dist = "mixture"
[[values.components]]
dist = "uniform"
weight = 0.9
low = 0.0
high = 1.0
[[values.components]]
dist = "lognormal"
weight = 0.1
mean = 1.0
sigma = 0.5
"""


@pytest.mark.parametrize(
    ("change", "key", "expected"),
    [
        (("weight = 0.1", "weight = 0.2"), "values.components", "summing to 1"),
        (("weight = 0.9", "weight = -0.9"), "values.components[0].weight", "> 0"),
        (("weight = 0.9\n", ""), "values.components[0].weight", "required"),
        (("sigma = 0.5", "sigma = 0.0"), "values.components[1].sigma", "> 0"),
        (("high = 1.0", "high = -1.0"), "values.components[0].high", "> low"),
        (('dist = "lognormal"', 'dist = "mixture"'), "values.components[1].dist", "'uniform'"),
        (("mean = 1.0", "mean = 1.0\nmode = 2.0"), "values.components[1].mode", "known key"),
        (("[[values.components]]", "[[values.parts]]"), "values.parts", "known key"),
    ],
)
def test_bad_mixtures_name_the_key(write_scenario, change, key, expected):
    block = 'dist = "uniform"\nlow = 0.0\nhigh = 1.0'
    text = VALID_SCENARIO.replace("[values]\n" + block, MIXTURE.replace(*change, 1))
    text = text.replace("[quality]", "\n[quality]")
    with pytest.raises(ConfigError) as error:
        load_scenario(write_scenario(text))
    message = str(error.value)
    assert f"'{key}'" in message and expected in message, message


def test_a_valid_lognormal_mixture_loads_and_prices(write_scenario):
    block = 'dist = "uniform"\nlow = 0.0\nhigh = 1.0'
    text = VALID_SCENARIO.replace("[values]\n" + block, MIXTURE).replace("[quality]", "\n[quality]")
    scenario = load_scenario(write_scenario(text))
    assert scenario.values.components[1] == LogNormal(1.0, 0.5)
    result = ega_sim.evaluate("myerson/threshold", scenario, requests=500, seed=0)
    assert result.regret_max < 1e-9


def test_mixture_built_in_python_is_validated():
    with pytest.raises(ConfigError, match=r"values.components\[1\].high"):
        position_auction(2, (1.0,), values=Mixture((0.5, 0.5), (Uniform(0, 1), Uniform(2, 1))))
