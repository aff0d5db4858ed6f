"""How far from equilibrium a strategy profile is: each advertiser's utility loss against its
best response, exact for rank mechanisms.

For seat i with value v, the others bidding by their strategies, the interim utility of a bid b
over R requests is u(v, b) = (1/R) sum_r ctr_r(slot_r(b)) (v - price_r(slot_r(b), b)). On a rank
allocator seat i's slot changes only at its K own-bid thresholds per request
(mechanisms/rank.py), and gsp, vcg, threshold and first price are affine in the own bid inside
a slot (price = c + d b). So u(v, b) = v A(b) - C(b) - D(b) b with step functions A, C, D that
are cumulative sums over the sorted thresholds of all requests: u is linear and nonincreasing
in b between consecutive thresholds, and its supremum over all bids is attained just above one
of them (or at 0). That is the exact best response against the empirical distribution of the
requests, found for a whole grid of values in one pass (bnelearn's utility loss, Bichler et
al. 2021, without its bid grid).

epsilon_i = (E_v max_b u(v, b) - E_v u(v, beta_i(v))) / E_v u(v, beta_i(v)), with v on the
midpoints of `values` quantile bins of the value distribution (so the grid mean is E_v). The
best response is searched on the same requests it is scored on, so epsilon is biased up by the
noise of R requests (it is 0 exactly for a truthful mechanism at truthful bids, where truth is
best on every request); its 95% interval treats the best-response bids as fixed and takes
the delta method over requests (intervals.py).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from ega_sim.intervals import defined_ratio
from ega_sim.metrics.regret_summary import ratio_sums


@dataclass(frozen=True)
class Certificate:
    """Per seat [N]: epsilon, its 95% interval, and the interim utilities behind it; the value
    grid [V] with each seat's best-response bids [N, V] and utilities [N, V]."""

    epsilon: np.ndarray  # [N]
    epsilon_low: np.ndarray  # [N]
    epsilon_high: np.ndarray  # [N]
    utility: np.ndarray  # [N] E_v u(v, beta(v)) per request
    best_utility: np.ndarray  # [N] E_v max_b u(v, b)
    values: np.ndarray  # [V]
    best_bid: np.ndarray  # [N, V]
    utility_at_value: np.ndarray  # [N, V] u(v, beta(v))
    best_utility_at_value: np.ndarray  # [N, V]
    requests: int
    seconds: float = math.nan
    # dense.py: all advertisers' loss over all their utility, with its 95% interval (a ratio of
    # sums: stable where single advertisers earn little); None for the exact certificate.
    pooled: tuple[float, float, float] | None = None

    def summary(self) -> dict:
        """epsilon max and mean over seats, each with its 95% interval (the max: the interval
        of the seat that attains it; the mean: the mean of the seats' bounds, left null where
        a pooled ratio is given: dense.py's advertisers that earn little have intervals too
        wide to average)."""
        if np.isnan(self.epsilon).any():  # a seat that earns nothing: undefined
            worst = int(np.argmax(np.isnan(self.epsilon)))
        else:
            worst = int(np.argmax(self.epsilon))
        return {
            "epsilon_max": float(self.epsilon[worst]),
            "epsilon_max_low": float(self.epsilon_low[worst]),
            "epsilon_max_high": float(self.epsilon_high[worst]),
            "epsilon_mean": float(self.epsilon.mean()),
            "epsilon_mean_low": float(self.epsilon_low.mean()) if self.pooled is None else None,
            "epsilon_mean_high": float(self.epsilon_high.mean()) if self.pooled is None else None,
            "certificate_requests": self.requests,
            "certificate_seconds": self.seconds,
            **(
                {}
                if self.pooled is None
                else dict(
                    zip(
                        ("epsilon_pooled", "epsilon_pooled_low", "epsilon_pooled_high"),
                        self.pooled,
                        strict=True,
                    )
                )
            ),
        }


def has_exact_certificate(mechanism, world) -> bool:
    """Whether the exact certificate applies: a rank mechanism in a separable world with
    prices affine in the own bid inside a slot (else dense.py's search)."""
    rank = hasattr(mechanism, "bidder_views") and hasattr(world, "click_probability_per_slot")
    return rank and not getattr(mechanism, "price_varies_within_slot", False)


def check_exact_certificate(mechanism, world) -> None:
    """A ValueError naming the mechanism unless the exact certificate applies to it."""
    if not has_exact_certificate(mechanism, world):
        raise ValueError(
            f"mechanism {getattr(mechanism, 'name', mechanism)!r}: the equilibrium certificate "
            "and best response are exact only for rank mechanisms of position auctions with "
            "gsp, vcg, threshold or first prices"
        )


@dataclass(frozen=True)
class InterimTable:
    """u(v, b) = v A(b) - C(b) - D(b) b for b at or above each breakpoint, per seat."""

    position: torch.Tensor  # [N, M] sorted breakpoints (own bids), +inf where unused
    clicks: torch.Tensor  # [N, M] A: expected clicks per request at bids in [pos_m, pos_m+1)
    constant: torch.Tensor  # [N, M] C
    slope: torch.Tensor  # [N, M] D
    usable: torch.Tensor  # [N, M] bool: the last of a group of equal finite breakpoints

    def utility(self, values: torch.Tensor) -> torch.Tensor:
        """u(v, pos_m) [N, V, M] at values [V] (-inf at unusable breakpoints)."""
        u = (
            values.view(1, -1, 1) * self.clicks.unsqueeze(1)
            - self.constant.unsqueeze(1)
            - self.slope.unsqueeze(1) * self.position.unsqueeze(1)
        )
        return torch.where(self.usable.unsqueeze(1), u, -torch.inf)

    def utility_of_bid(self, values: torch.Tensor, bids: torch.Tensor) -> torch.Tensor:
        """u(v_j, bids[n, j]) [N, V] for values [V] and bids [N, V]."""
        index = torch.searchsorted(self.position, bids.contiguous(), right=True) - 1  # [N, V]
        index = index.clamp(min=0)  # the first breakpoint is the sentinel at bid 0
        pick = lambda t: t.gather(1, index)  # noqa: E731
        return (
            values.view(1, -1) * pick(self.clicks) - pick(self.constant) - pick(self.slope) * bids
        )


def interim_table(mechanism, world, requests, bids: torch.Tensor) -> InterimTable:
    """The step functions of every seat's interim utility against `bids` [R, N] of the others
    (module docstring); a seat's own column of `bids` is ignored."""
    views = mechanism.bidder_views(requests, bids)
    threshold = views.threshold  # [R, N, K] t_1 >= ... >= t_K
    n_requests, n_seats, n_slots = threshold.shape
    clicks = world.click_probability_per_slot(requests)  # [R, N, K]
    slots = torch.arange(n_slots, device=bids.device).expand_as(threshold)
    at_threshold = mechanism.payment_rule.price_per_click(views, slots, threshold)
    above = mechanism.payment_rule.price_per_click(views, slots, threshold + 1.0)
    slope = above - at_threshold  # d: price per click per unit of own bid inside the slot
    constant = at_threshold - slope * threshold  # c
    # Slot k holds on [t_k, t_(k-1)): its terms start at t_k and stop at t_(k-1).
    weights = torch.stack([clicks, clicks * constant, clicks * slope], dim=3)  # [R, N, K, 3]
    start, stop = threshold, threshold[:, :, :-1]  # stop of slot k >= 1 only
    position = torch.cat([start, stop], dim=2)  # [R, N, 2K - 1]
    change = torch.cat([weights, -weights[:, :, 1:]], dim=2)  # [R, N, 2K - 1, 3]
    position = position.permute(1, 0, 2).reshape(n_seats, -1)  # [N, R (2K - 1)]
    change = change.permute(1, 0, 2, 3).reshape(n_seats, -1, 3) / n_requests
    sentinel = position.new_zeros(n_seats, 1)  # bid 0: nothing won unless a threshold is 0
    position = torch.cat([sentinel, position], dim=1)
    change = torch.cat([change.new_zeros(n_seats, 1, 3), change], dim=1)
    position, order = torch.sort(position, dim=1, stable=True)
    totals = change.gather(1, order.unsqueeze(2).expand_as(change)).cumsum(dim=1)
    last_of_group = torch.cat(
        [position[:, 1:] > position[:, :-1], torch.ones_like(position[:, :1], dtype=torch.bool)],
        dim=1,
    )
    usable = last_of_group & torch.isfinite(position)
    return InterimTable(position, totals[..., 0], totals[..., 1], totals[..., 2], usable)


def value_grid(value_quantile, points: int) -> np.ndarray:
    """Midpoints of `points` equal-probability bins of the value distribution [V]."""
    return np.array([float(value_quantile((j + 0.5) / points)) for j in range(points)])


def best_response(
    table: InterimTable, values: torch.Tensor, chunk: int = 8
) -> tuple[torch.Tensor, torch.Tensor]:
    """(max_b u(v, b) [N, V], the maximizing bid [N, V]) for values [V]: the bid is just above
    its breakpoint (where a tie is won or the slot changes)."""
    best, where = [], []
    for start in range(0, values.shape[0], chunk):
        u = table.utility(values[start : start + chunk])  # [N, v, M]
        top, index = u.max(dim=2)
        best.append(top)
        where.append(table.position.gather(1, index))
    return torch.cat(best, dim=1), torch.cat(where, dim=1)


def certify(
    mechanism,
    world,
    requests,
    bid_function,
    parameters: torch.Tensor,
    seat_strategy: torch.Tensor,
    values: np.ndarray,
    chunk: int = 4096,
) -> Certificate:
    """epsilon per seat of the profile `parameters` [S, P] on `requests` (module docstring),
    at the value grid `values` [V]; a ValueError for mechanisms without an exact certificate."""
    import time

    check_exact_certificate(mechanism, world)
    started = time.perf_counter()
    value = requests.value_per_click
    bids = bid_function.bids(parameters.unsqueeze(0), value, seat_strategy).squeeze(2)  # [R, N]
    table = interim_table(mechanism, world, requests, bids)
    grid = value.new_tensor(values)  # [V]
    n_seats = value.shape[1]
    at_grid = grid.unsqueeze(1).expand(-1, n_seats).contiguous()  # [V, N]: seat i valued v_j
    played = bid_function.bids(parameters.unsqueeze(0), at_grid, seat_strategy)[..., 0].T
    best, best_bid = best_response(table, grid)
    own = table.utility_of_bid(grid, played)  # [N, V]
    best = torch.maximum(best, own)  # the played bid itself is a candidate
    # Per-request figures for the interval: every seat at every grid value, both bids.
    views = mechanism.bidder_views(requests, bids)
    click_probability = world.click_probability_per_slot(requests)  # [R, N, K]

    def per_request(bid_grid: torch.Tensor) -> torch.Tensor:  # [N, V] -> [R, N] mean over v
        parts = []
        for start in range(0, value.shape[0], chunk):
            view = _slice_view(views, start, start + chunk)
            rows = view.threshold.shape[0]
            misreports = bid_grid.unsqueeze(0).expand(rows, -1, -1).contiguous()  # [r, N, V]
            slot, price = mechanism.unilateral(view, misreports)
            ctr = click_probability[start : start + rows]
            clicks = torch.where(slot >= 0, ctr.gather(2, slot.clamp(min=0)), 0.0)
            parts.append((clicks * (grid.view(1, 1, -1) - price)).mean(dim=2))
        return torch.cat(parts)

    base = per_request(played)  # [R, N]
    gain = per_request(torch.where(best > own, best_bid * (1 + 1e-9) + 1e-12, played)) - base
    low, high, epsilon = [], [], []
    for seat in range(n_seats):
        sums = ratio_sums(gain[:, seat], base[:, seat])
        lo, hi = sums.interval()
        loss = max(float((best - own)[seat].mean()), 0.0)
        epsilon.append(defined_ratio(loss, float(own[seat].mean())))
        low.append(lo)
        high.append(hi)
    return Certificate(
        epsilon=np.array(epsilon),
        epsilon_low=np.array(low),
        epsilon_high=np.array(high),
        utility=own.mean(dim=1).cpu().numpy(),
        best_utility=best.mean(dim=1).cpu().numpy(),
        values=np.asarray(values, dtype=float),
        best_bid=best_bid.cpu().numpy(),
        utility_at_value=own.cpu().numpy(),
        best_utility_at_value=best.cpu().numpy(),
        requests=int(value.shape[0]),
        seconds=time.perf_counter() - started,
    )


def _slice_view(view, start: int, stop: int):
    """Rows start:stop of a BidderView (its [B, ...] fields)."""
    import dataclasses

    batched = ("bidder", "threshold", "competitor", "competitor_score", "competitor_welfare")
    changes = {name: getattr(view, name)[start:stop] for name in (*batched, "quality")}
    return dataclasses.replace(view, **changes)
