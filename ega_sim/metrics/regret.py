"""Ex-post regret: what a bidder gains by misreporting, the others' bids fixed.

regret_i = max(0, max over misreports b' of u_i(v_i; b', b_-i) - u_i(v_i; b_i, b_-i)), with
u_i = (v_i - price_i) x expected clicks under the ground-truth click model. Misreports come from
one of three methods (DESIGN.md section 4):

- `exact`: for rank-based allocators a bidder's slot only changes at its K bid thresholds, so a
  bid just above each threshold plus a bid of 0 covers every outcome it can reach. Exact for
  gsp, vcg and threshold (prices are constant between thresholds); for `first` the best bid of a
  slot is its threshold itself, approached to within EXACT_NUDGE. A learned price (`paynet`)
  may move with the bid inside a slot, so for it each interval between thresholds is searched
  with `interval_points` evenly spaced bids (the first just above the threshold), the top one
  up to gamma_max x max(value, highest threshold).
- `dense`: `dense_points` bids evenly spaced on [0, gamma_max x value].
- `grid`: the paper's multipliers 0.2, 0.4, ..., 2.0 of the value.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ega_sim.metrics.rerun import rerun_utility
from ega_sim.world.position_auction import AuctionRequests, SeparableClickModel

MISREPORT_METHODS = ("exact", "dense", "grid", "none")
REGRET_BIDDERS = ("default", "shown", "all")
PAPER_MULTIPLIERS = tuple(round(0.2 * k, 1) for k in range(1, 11))  # 0.2 .. 2.0
EXACT_NUDGE = 1e-9  # relative step above a threshold: inside the next interval, not on its edge


@dataclass(frozen=True)
class MisreportSpec:
    """How misreports are searched: method, and for `dense` the points and range."""

    method: str = "exact"
    dense_points: int = 64
    gamma_max: float = 2.0
    interval_points: int = 16  # exact, for prices that move inside a slot: bids per interval
    # Whose misreports are searched: every candidate ("all"), the ads shown at truthful bids
    # ("shown", the paper's way for generated lists), or the mechanism's default ("default":
    # shown for the generative allocators, all for the others); metrics/regret_summary.py.
    bidders: str = "default"

    def __post_init__(self) -> None:
        if self.method not in MISREPORT_METHODS:
            raise ValueError(
                f"misreport: expected one of {', '.join(MISREPORT_METHODS)}, got {self.method!r}"
            )
        if self.bidders not in REGRET_BIDDERS:
            raise ValueError(
                f"regret bidders: expected one of {', '.join(REGRET_BIDDERS)}, got {self.bidders!r}"
            )
        if self.dense_points < 2:
            raise ValueError(f"dense_points: expected an integer >= 2, got {self.dense_points!r}")
        if self.interval_points < 1:
            raise ValueError(
                f"interval_points: expected an integer >= 1, got {self.interval_points!r}"
            )
        if not self.gamma_max > 0:
            raise ValueError(f"gamma_max: expected a number > 0, got {self.gamma_max!r}")

    @property
    def multipliers(self) -> tuple[float, ...]:
        """The fixed multipliers of the value that `grid` and `dense` try (the same for every
        bidder, so utility against multiplier is a curve); none for `exact` and `none`."""
        if self.method == "grid":
            return PAPER_MULTIPLIERS
        if self.method == "dense":
            points = torch.linspace(0.0, self.gamma_max, self.dense_points, dtype=torch.float64)
            return tuple(points.tolist())
        return ()


def candidate_misreports(
    spec: MisreportSpec,
    requests: AuctionRequests,
    thresholds: torch.Tensor | None = None,
    *,
    interval_points: int = 1,
) -> torch.Tensor:
    """The misreports to try for every bidder: [B, N, C]. `exact` needs the bidders' own-bid
    thresholds [B, N, K] (others fixed), which only rank-based allocators have; with
    `interval_points` > 1 it searches each interval between them with that many bids."""
    values = requests.value_per_click  # [B, N]
    if spec.multipliers:  # grid, dense
        return values.unsqueeze(2) * values.new_tensor(spec.multipliers)
    if spec.method == "exact":
        if thresholds is None:
            raise ValueError(
                "misreport 'exact' needs a rank-based allocator: use 'dense' or 'grid'"
            )
        # Just above each threshold, relative to its size (an absolute step would skip whole
        # intervals at small value scales); above a threshold of 0, by a step relative to the
        # request's largest value (a bare next float can vanish in q x bid).
        scale = values.amax(dim=1, keepdim=True).unsqueeze(2)  # [B, 1, 1]
        floor_step = torch.where(
            scale > 0, EXACT_NUDGE * scale, torch.nextafter(scale, scale.new_tensor(torch.inf))
        )
        above = torch.where(thresholds > 0, thresholds * (1 + EXACT_NUDGE), floor_step)
        lower = torch.cat([torch.zeros_like(thresholds[..., :1]), above], dim=2)  # [B, N, K+1]
        if interval_points == 1:
            return lower
        # Interval [0, t_K) ends at t_K, [t_l, t_(l-1)) at t_(l-1), the top one [t_1, ...) at
        # gamma_max x max(value, t_1).
        top = spec.gamma_max * torch.maximum(values.unsqueeze(2), thresholds[..., :1])
        upper = torch.cat([thresholds[..., -1:], top, thresholds[..., :-1]], dim=2)
        fraction = torch.arange(interval_points, dtype=values.dtype, device=values.device)
        fraction = fraction / interval_points  # [M], 0 first: the one-point exact candidate
        width = (upper - lower).clamp(min=0.0).unsqueeze(3)
        points = lower.unsqueeze(3) + width * fraction  # [B, N, K+1, M]
        return points.flatten(2)
    raise ValueError(f"misreport method {spec.method!r} proposes no candidates")


@dataclass(frozen=True)
class MisreportSearch:
    """What a misreport search found, per bidder and candidate [B, N, C] (NaN: not searched).
    On the compiled rank kernel the exact search keeps only each bidder's best candidate
    (C = 1): the first of the candidates with the highest utility."""

    misreports: torch.Tensor  # [B, N, C] the candidate bids
    utility: torch.Tensor  # [B, N, C] under the world's click model
    utility_model: torch.Tensor | None = None  # [B, N, C] under the mechanism's own CTRs
    monotone: torch.Tensor | None = None  # [B, N] 1.0 / 0.0 where the search saw it, else NaN


def misreport_utility(
    spec: MisreportSpec,
    mechanism,
    world,
    requests,
    bids: torch.Tensor,
    *,
    rerun: bool = False,
    context=None,
    searched: torch.Tensor | None = None,
    with_model: bool = False,
    misreports: torch.Tensor | None = None,
    outcome=None,
) -> MisreportSearch:
    """The candidate misreports [B, N, C] and the utility each gives its bidder (NaN for bidders
    not `searched` [B, N], default all); with `with_model` also under the mechanism's own CTRs.
    `misreports` [B, N, C], when given, are the bids tried instead of the spec's candidates
    (the equilibrium learner's perturbed strategies).

    A rank mechanism in a separable world (a position auction) answers from each bidder's
    thresholds in one batched pass (`RankMechanism.unilateral`); a mechanism that prices from
    each bidder's own-bid response (`unilateral_utility`: generated lists priced by gsp or
    threshold) from one response per bidder; otherwise, or with `rerun=True`, the whole
    mechanism is re-run on every misreport (metrics/rerun.py). `outcome`: the mechanism's
    outcome at `bids` when the caller has it, whose allocation the rank path reuses.
    """
    fast = (
        not rerun
        and hasattr(mechanism, "bidder_views")
        and hasattr(world, "click_probability_per_slot")
    )
    points = spec.interval_points if getattr(mechanism, "price_varies_within_slot", False) else 1
    if fast and misreports is None and spec.method == "exact" and points == 1:
        best = _kernel_best_misreports(mechanism, world, requests, bids, outcome)
        if best is not None:
            misreports, utility = best  # [B, N, 1] each: the best candidate only
            if searched is not None:
                utility = torch.where(searched.unsqueeze(2), utility, torch.nan)
            return MisreportSearch(misreports, utility, utility if with_model else None)
    if fast:
        allocation = None if outcome is None else outcome.allocation
        views = mechanism.bidder_views(requests, bids, allocation)
        if misreports is None:
            misreports = candidate_misreports(
                spec, requests, views.threshold, interval_points=points
            )
        slot, price = mechanism.unilateral(views, misreports)  # [B, N, C] each
        click_probability = world.click_probability_per_slot(requests)  # [B, N, K]
        clicks = torch.where(slot >= 0, click_probability.gather(2, slot.clamp(min=0)), 0.0)
        utility = clicks * (requests.value_per_click.unsqueeze(2) - price)
        if searched is not None:
            utility = torch.where(searched.unsqueeze(2), utility, torch.nan)
        # A position auction's mechanism knows the true click model: its own view is the truth.
        return MisreportSearch(misreports, utility, utility if with_model else None)
    if misreports is None:
        thresholds = None
        if spec.method == "exact" and hasattr(mechanism, "bid_thresholds"):
            extra = {} if context is None else {"context": context}
            thresholds = mechanism.bid_thresholds(requests, bids, **extra)
        misreports = candidate_misreports(spec, requests, thresholds, interval_points=points)
    if not rerun and getattr(mechanism, "prices_by_response", False):
        everyone = torch.ones_like(bids, dtype=torch.bool) if searched is None else searched
        truth, model, monotone = mechanism.unilateral_utility(
            world, requests, bids, misreports, everyone
        )
        return MisreportSearch(misreports, truth, model if with_model else None, monotone)
    utilities = rerun_utility(
        mechanism,
        world,
        requests,
        bids,
        misreports,
        searched=searched,
        context=context,
        with_model=with_model,
    )
    if with_model:
        return MisreportSearch(misreports, *utilities)
    return MisreportSearch(misreports, utilities)


def _kernel_best_misreports(mechanism, world, requests, bids, outcome):
    """The exact search on the compiled rank kernel (mechanisms/rank_path.py): each bidder's
    best candidate and its utility [B, N, 1], or None where the kernel does not apply."""
    from ega_sim.mechanisms.rank_path import kernel_best_misreports, uses_kernel

    if not isinstance(world, SeparableClickModel) or not uses_kernel(mechanism, bids, requests):
        return None
    allocation = None if outcome is None else outcome.allocation
    if not hasattr(allocation, "order"):  # not a rank allocation of these bids: allocate
        allocation = mechanism.run(requests, bids).allocation  # on the kernel
    best = kernel_best_misreports(mechanism, world, requests, bids, allocation, EXACT_NUDGE)
    if best is None:  # a score of +inf: torch's comparisons
        return None
    bid, utility = best
    return bid.unsqueeze(2), utility.unsqueeze(2)


def ex_post_regret(
    spec: MisreportSpec,
    mechanism,
    world,
    requests,
    bids: torch.Tensor,
    utility: torch.Tensor,
    *,
    rerun: bool = False,
    context=None,
    outcome=None,
) -> torch.Tensor:
    """Regret [B, N] of each bidder at the bid profile `bids`, whose utilities are `utility`
    (`outcome`: the outcome at `bids`, reused where the search can)."""
    search = misreport_utility(
        spec, mechanism, world, requests, bids, rerun=rerun, context=context, outcome=outcome
    )
    return regret_of(search.utility, utility)


def regret_of(deviation: torch.Tensor, utility: torch.Tensor) -> torch.Tensor:
    """Ex-post regret [B, N]: the best utility over the candidates `deviation` [B, N, C] less
    the utility at the bids `utility` [B, N], at least 0 (NaN stays NaN)."""
    best = deviation[..., 0] if deviation.shape[2] == 1 else deviation.amax(dim=2)  # [B, N]
    return (best - utility).clamp_(min=0.0)
