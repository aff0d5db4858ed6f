"""The equilibrium certificate on any mechanism (feed markets: the cascade, generated lists), by
dense search: the `dense` misreport grid of `evaluate` (bid multipliers gamma in
[0, gamma_max] of the value, every one re-running the mechanism with the others' bids fixed;
metrics/regret.misreport_utility) scored per advertiser and value bin.

An advertiser's best response is searched among strategies that bid one multiplier of the
grid per value bin (equal-probability bins of the value distribution): for each advertiser a
and bin k, the multiplier with the highest utility summed over a's seats with values in bin k
on the requests, or the learned strategy where that is higher. So the best-response utility is
a LOWER bound on the true best response's (the grid's resolution: 2 / (dense_points - 1) of
the value with the defaults, and one multiplier per bin), and epsilon_a = (best - played) /
played is a lower bound on the utility loss up to the noise of searching on the requests it is
scored on (which biases it up, as in certificate.py). In a feed market an advertiser is a
merchant that advertises (`requests.ad_advertiser`: the seat's owner), scored over all its
seats on all requests; in a position auction each seat is one.
"""

from __future__ import annotations

import math
import time

import numpy as np
import torch

from ega_sim.equilibrium.certificate import Certificate
from ega_sim.intervals import defined_ratio
from ega_sim.metrics.regret import MisreportSpec, misreport_utility
from ega_sim.metrics.regret_summary import ratio_sums

DENSE_POINTS = 21  # multipliers 0, 0.1, ..., 2 of the value
DENSE_BINS = 8  # value bins of the best response (few: each bin's search is on its own seats)


@torch.no_grad()
def certify_dense(
    mechanism,
    world,
    requests,
    bids: torch.Tensor,
    value_edges: np.ndarray,
    *,
    dense_points: int = DENSE_POINTS,
    gamma_max: float = 2.0,
) -> Certificate:
    """epsilon per advertiser of the bids `bids` [R, N] a strategy profile makes on `requests`
    (module docstring), with value bins cut at `value_edges` [V - 1] (increasing). Advertisers
    that earn nothing at the profile are left out (their epsilon is undefined)."""
    started = time.perf_counter()
    spec = MisreportSpec(method="dense", dense_points=dense_points, gamma_max=gamma_max)
    grid = misreport_utility(spec, mechanism, world, requests, bids).utility  # [R, N, G]
    played = misreport_utility(
        spec, mechanism, world, requests, bids, misreports=bids.unsqueeze(2)
    ).utility[..., 0]  # [R, N]: each seat "deviating" to its own bid
    values = requests.value_per_click  # [R, N]
    n_requests, n_seats = values.shape
    owner = getattr(requests, "ad_advertiser", None)  # [R, N] the advertiser of each seat
    if owner is None:
        owner = torch.arange(n_seats, device=values.device).expand(n_requests, -1)
    agents, owner = torch.unique(owner, return_inverse=True)  # [A], [R, N] in 0..A-1
    edges = values.new_tensor(np.asarray(value_edges, dtype=float))  # [V - 1]
    n_bins = edges.shape[0] + 1
    group = (owner * n_bins + torch.searchsorted(edges, values.contiguous())).flatten()  # [R N]
    n_groups = agents.shape[0] * n_bins
    points = grid.shape[2]
    played_sum = values.new_zeros(n_groups).index_add_(0, group, played.flatten())
    grid_sum = values.new_zeros(n_groups, points).index_add_(0, group, grid.reshape(-1, points))
    grid_best, choice = grid_sum.max(dim=1)  # [A V]
    better = grid_best > played_sum  # [A V]: a grid multiplier beats the strategy there
    best_sum = torch.where(better, grid_best, played_sum)
    # Per request and advertiser, for the interval: the gain of the chosen multipliers.
    chosen = grid.gather(2, choice[group].view(n_requests, n_seats, 1))[..., 0]  # [R, N]
    gain = torch.where(better[group].view(n_requests, n_seats), chosen - played, 0.0)
    rows = torch.arange(n_requests, device=values.device).unsqueeze(1).expand_as(owner)
    index = (rows * agents.shape[0] + owner).flatten()  # [R N] into [R, A]
    per_request = values.new_zeros(n_requests * agents.shape[0], 2)
    per_request.index_add_(0, index, torch.stack([gain.flatten(), played.flatten()], dim=1))
    per_request = per_request.view(n_requests, agents.shape[0], 2)  # [R, A, (gain, played)]
    played_bins = played_sum.view(-1, n_bins) / n_requests  # [A, V] per request
    best_bins = best_sum.view(-1, n_bins) / n_requests
    earns = played_bins.sum(1) > 0  # [A]
    epsilon, low, high = [], [], []
    for agent in torch.nonzero(earns)[:, 0].tolist():
        loss = float((best_bins[agent] - played_bins[agent]).sum())
        epsilon.append(defined_ratio(loss, float(played_bins[agent].sum())))
        lo, hi = ratio_sums(per_request[:, agent, 0], per_request[:, agent, 1]).interval()
        low.append(lo)
        high.append(hi)
    everyone = per_request.sum(dim=1)  # [R, 2]: all advertisers together
    pooled_sums = ratio_sums(everyone[:, 0], everyone[:, 1])
    pooled = (pooled_sums.ratio, *pooled_sums.interval())
    multipliers = values.new_tensor(spec.multipliers)  # [G]
    middle = _bin_middles(values, edges)  # [V]
    best_bid = multipliers[choice].view(-1, n_bins) * middle  # [A, V]
    keep = earns.cpu().numpy()
    return Certificate(
        epsilon=np.array(epsilon, dtype=float),
        epsilon_low=np.array(low, dtype=float),
        epsilon_high=np.array(high, dtype=float),
        utility=played_bins.sum(1).cpu().numpy()[keep],
        best_utility=best_bins.sum(1).cpu().numpy()[keep],
        values=middle.cpu().numpy(),
        best_bid=best_bid.cpu().numpy()[keep],
        utility_at_value=played_bins.cpu().numpy()[keep],
        best_utility_at_value=best_bins.cpu().numpy()[keep],
        requests=int(n_requests),
        seconds=time.perf_counter() - started,
        pooled=pooled,
    )


def _bin_middles(values: torch.Tensor, edges: torch.Tensor) -> torch.Tensor:
    """The median value of each bin [V] on these requests (NaN for an empty bin)."""
    flat = values.flatten()
    which = torch.searchsorted(edges, flat.contiguous())
    return torch.stack(
        [
            flat[which == k].median() if bool((which == k).any()) else flat.new_tensor(math.nan)
            for k in range(edges.shape[0] + 1)
        ]
    )
