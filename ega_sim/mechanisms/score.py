"""Monotone score functions g(bid) that rank-based allocators sort by, with their inverses.

A rank-by-score allocator ranks bidder i by q_i * g(b_i). Its payment thresholds are the
inverses of g: the lowest own bid that still beats a competitor's score. `cascade` uses the
identity; `myerson` uses the (ironed) virtual value of the value distribution.
"""

from __future__ import annotations

import itertools

import numpy as np
import torch

from ega_sim.world.distributions import ContinuousDistribution, LogNormal, Mixture, Uniform


class MonotoneScore:
    """A non-decreasing piecewise-linear g with strictly increasing end segments.

    Flat segments (ironed intervals) are allowed inside; there g has no unique inverse, so
    `inverse` returns the lowest bid with g(b) >= y or the highest bid with g(b) <= y, which is
    what ties need: a bidder that wins ties pays the lower, one that loses ties the upper end.
    """

    def __init__(self, knots_bid: np.ndarray, knots_score: np.ndarray, *, identity: bool = False):
        knots_bid = np.asarray(knots_bid, dtype=np.float64)
        knots_score = np.asarray(knots_score, dtype=np.float64)
        if knots_bid.ndim != 1 or knots_bid.shape != knots_score.shape or len(knots_bid) < 2:
            raise ValueError("MonotoneScore needs two equal-length 1-D knot arrays (>= 2 knots)")
        if np.any(np.diff(knots_bid) <= 0) or np.any(np.diff(knots_score) < 0):
            raise ValueError("MonotoneScore knots must increase in bid and not decrease in score")
        slopes = np.diff(knots_score) / np.diff(knots_bid)
        if slopes[0] <= 0 or slopes[-1] <= 0:
            raise ValueError("MonotoneScore end segments must be strictly increasing")
        self.identity = identity
        self._bid = torch.from_numpy(knots_bid)
        self._score = torch.from_numpy(knots_score)
        self._slope = torch.from_numpy(slopes)
        self._last = len(knots_bid) - 1

    @classmethod
    def make_identity(cls) -> MonotoneScore:
        return cls(np.array([0.0, 1.0]), np.array([0.0, 1.0]), identity=True)

    def _knots(self, like: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        return (
            self._bid.to(like.device, like.dtype),
            self._score.to(like.device, like.dtype),
            self._slope.to(like.device, like.dtype),
        )

    def __call__(self, bid: torch.Tensor) -> torch.Tensor:
        """g(bid), elementwise; linear extrapolation beyond the knots."""
        if self.identity:
            return bid
        knots_bid, knots_score, slope = self._knots(bid)
        segment = (torch.searchsorted(knots_bid, bid.contiguous(), right=True) - 1).clamp(
            0, self._last - 1
        )
        return knots_score[segment] + (bid - knots_bid[segment]) * slope[segment]

    def inverse(self, score: torch.Tensor, upper: torch.Tensor) -> torch.Tensor:
        """inf{b: g(b) >= score} where `upper` is False, sup{b: g(b) <= score} where True."""
        if self.identity:
            return score
        knots_bid, knots_score, slope = self._knots(score)
        score = score.contiguous()
        lower_knot = torch.searchsorted(knots_score, score, right=False)  # first knot >= score
        upper_knot = torch.searchsorted(knots_score, score, right=True)  # first knot > score
        knot = torch.where(upper, upper_knot, lower_knot)
        # The segment that ends at that knot is strictly increasing (or it is an end segment).
        segment = (knot - 1).clamp(0, self._last - 1)
        return knots_bid[segment] + (score - knots_score[segment]) / slope[segment]


def virtual_value_score(values: ContinuousDistribution, grid_points: int = 4001) -> MonotoneScore:
    """The ironed virtual value of a value distribution as a MonotoneScore.

    Uniform[low, high]: phi(v) = 2v - high exactly (regular). Otherwise phi is tabulated on
    `value_grid` and ironed where it decreases (Myerson 1981: the derivative of the concave hull
    of the revenue curve R(u) = u * F^-1(1 - u) in quantile space), then interpolated linearly
    between grid values. Lognormals with sigma >~ 1.6 need ironing, but their ironed stretch
    lies below the reserve (its level is negative for sigma 1.8 to 4, measured); a bimodal
    mixture can iron above it (envs/bimodal_ironing.toml). Raises ValueError when the top of
    the grid is still ironed.
    """
    if isinstance(values, Uniform):
        return MonotoneScore(
            np.array([values.low, values.high]),
            np.array([2 * values.low - values.high, values.high]),
        )
    if not isinstance(values, LogNormal | Mixture):
        raise TypeError(f"no virtual value for {values!r}")
    bids = value_grid(values, grid_points)  # ascending values
    phi = values.virtual_value(bids)
    if np.all(np.diff(phi) > 0):
        return MonotoneScore(bids, phi)
    ironed = _iron(bids, 1.0 - values.cdf(bids), phi)
    if ironed[-1] <= ironed[-2]:
        raise ValueError(
            f"myerson: the virtual value of {values} is still ironed at the top of its grid "
            "(its 1 - 1e-9 quantile; 6 standard deviations of a lognormal): a tail this heavy "
            "is not supported"
        )
    # With large sigma the lowest ironed interval reaches the grid's first value; a knot at
    # bid 0 one unit lower keeps the left end invertible. Such bids sit far below the reserve
    # (phi < 0), so no allocation or threshold depends on them.
    return MonotoneScore(np.concatenate([[0.0], bids]), np.concatenate([[ironed[0] - 1.0], ironed]))


def value_grid(values: LogNormal | Mixture, grid_points: int) -> np.ndarray:
    """Ascending positive values at which the virtual value is tabulated.

    Lognormal: `grid_points` values equally spaced in the normal quantile z in [-6, 6]
    (quantile levels 1e-9 .. 1 - 1e-9, dense in the tails). Mixture: the quantiles at those
    levels and at `grid_points` equally spaced levels in (0, 1), so the body is resolved to
    1/(grid_points - 1) in quantile (0.00025 at the default; a value step of 0.00025 / f(v)),
    and the tails as for a lognormal. The score is exact at grid values and linear between, so
    an ironed interval's ends are placed to within one grid step.
    """
    z = np.linspace(-6.0, 6.0, grid_points)
    if isinstance(values, LogNormal):
        return np.exp(values.mean + values.sigma * z)
    from scipy import special  # lazy: short commands do not pay scipy's import

    levels = np.union1d(special.ndtr(z), np.linspace(0.0, 1.0, grid_points)[1:-1])
    bids = np.unique(values.quantile(levels))
    return bids[bids > 0.0]  # the knot at bid 0 stays free for the left end


def _iron(bids: np.ndarray, sale_probability: np.ndarray, phi: np.ndarray) -> np.ndarray:
    """Replace phi by the slope of the concave hull of R(u) = u * v on its ironed stretches."""
    # Work in increasing u (descending bids): R'(u) = phi(v(u)).
    u = sale_probability[::-1]
    revenue = u * bids[::-1]
    hull: list[int] = []  # indices of the upper concave hull, monotone chain
    for index in range(len(u)):
        while len(hull) >= 2:
            a, b = hull[-2], hull[-1]
            cross = (u[b] - u[a]) * (revenue[index] - revenue[a]) - (revenue[b] - revenue[a]) * (
                u[index] - u[a]
            )
            if cross < 0:  # b lies above the chord a-index: keep it
                break
            hull.pop()
        hull.append(index)
    ironed = phi[::-1].copy()
    for a, b in itertools.pairwise(hull):
        if b - a > 1:  # points skipped by the hull: an ironed interval with one constant slope
            ironed[a : b + 1] = (revenue[b] - revenue[a]) / (u[b] - u[a])
    ironed = ironed[::-1]  # back to ascending bids
    return np.maximum.accumulate(ironed)  # removes grid-level wiggles at interval edges
