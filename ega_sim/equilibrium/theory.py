"""Equilibrium bid functions known in closed form, for the figure and the tests.

- Truthful mechanisms (cascade/vcg, cascade/threshold, myerson/threshold): bidding the value is
  dominant, so beta(v) = v.
- First price, one slot, n bidders with values U[0, h], equal qualities, no reserve: the
  symmetric equilibrium beta(v) = (n - 1) / n v (Krishna, Auction Theory, section 2.3), revenue
  h (n - 1) / (n + 1).
- GSP, n = 3, slots (1, 1/2), values U[0, h], equal qualities, no reserve: the symmetric
  equilibrium solves (v - beta)(1 + v) = v^2 - int_0^v beta (the first-order condition of
  bidding as value x against the other two), so beta(v) = h ln(1 + v / h), revenue h / 2
  (VCG's, by revenue equivalence; Gomes and Sweeney, Games and Economic Behavior 2014).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from ega_sim.world.distributions import Fixed, Uniform

TRUTHFUL = ("cascade/vcg", "cascade/threshold", "myerson/threshold")


def known_equilibrium_bid(scenario, mechanism: str) -> Callable[[np.ndarray], np.ndarray] | None:
    """The equilibrium bid function of `mechanism` on the position-auction `scenario` where
    theory gives one (module docstring), else None."""
    if getattr(scenario, "kind", None) != "position_auction":
        return None  # feed markets: no closed form (and VCG is truthful only in its own CTRs)
    if mechanism in TRUTHFUL:
        return lambda v: np.asarray(v, float)
    values, quality = scenario.values, scenario.quality
    plain = (
        isinstance(values, Uniform)
        and values.low == 0.0
        and isinstance(quality, Fixed)
        and len(set(quality.values)) == 1
        and scenario.reserve == 0.0
        and scenario.ecpm_floor == 0.0
    )
    if not plain:
        return None
    n, high = scenario.n_bidders, values.high
    if mechanism == "cascade/first" and len(scenario.slot_ctr) == 1:
        return lambda v: (n - 1) / n * np.asarray(v, float)
    if mechanism == "cascade/gsp" and n == 3 and tuple(scenario.slot_ctr) == (1.0, 0.5):
        return lambda v: high * np.log1p(np.asarray(v, float) / high)
    return None
