"""Bid strategies as functions of value, with their parameters held as tensors so that many
perturbed copies are evaluated in one batched call (the learner's common random numbers).

A `BidFunction` maps parameters [C, S, P] (C candidate copies, S strategies, P parameters) and
values [B, N] to bids [B, N, C], seat n playing strategy `seat_strategy[n]`: one strategy
shared by all seats of a symmetric scenario (S = 1), or one per seat (S = N).

- `PiecewiseLinearBid`: a bid multiplier m_j at J value quantiles v_j (readable: "at the median
  value, bid 80% of it"); bids are linear between the knots' bids m_j v_j, m_1 v below the first
  knot and m_J v above the last, so the function is monotone whenever the knots' bids are
  nondecreasing, which `project` enforces (cumulative maximum).
- `MonotoneNetworkBid`: bid(v) = softplus(a_0) v + sum_h softplus(a_h) (sigmoid(softplus(w_h) v /
  scale + c_h) - sigmoid(c_h)), nondecreasing and 0 at v = 0 for any parameters.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass

import torch

STRATEGY_KINDS = ("piecewise", "network")


def _check_parameters(parameters: torch.Tensor, size: int, name: str) -> None:
    if parameters.ndim != 3 or parameters.shape[2] != size:
        raise ValueError(
            f"{name}: expected parameters [C, S, {size}], got {tuple(parameters.shape)}"
        )


def _per_seat(parameters: torch.Tensor, seat_strategy: torch.Tensor) -> torch.Tensor:
    """[C, S, P] -> [N, C, P]: the parameters each seat plays."""
    return parameters.index_select(1, seat_strategy).transpose(0, 1)


@dataclass(frozen=True)
class PiecewiseLinearBid:
    """Multipliers at value quantiles; see the module docstring."""

    knots: tuple[float, ...]  # [J] values v_1 < ... < v_J > 0
    max_multiplier: float = 2.0

    def __post_init__(self) -> None:
        knots = self.knots
        if len(knots) < 1 or knots[0] <= 0 or any(b <= a for a, b in itertools.pairwise(knots)):
            raise ValueError(f"knots: expected increasing values > 0, got {knots!r}")

    @property
    def size(self) -> int:
        return len(self.knots)

    def initial(self, multiplier: float, strategies: int) -> torch.Tensor:
        """Parameters [S, P] of the constant multiplier `multiplier`."""
        return torch.full((strategies, self.size), float(multiplier), dtype=torch.float64)

    def feasible(self, parameters: torch.Tensor) -> torch.Tensor:
        """Parameters whose bids are >= 0 (perturbed candidates need no monotonicity)."""
        return parameters.clamp(0.0, self.max_multiplier)

    def project(self, parameters: torch.Tensor) -> torch.Tensor:
        """The nearest monotone parameters [..., P]: multipliers in [0, max], and knot bids
        nondecreasing, by isotonic regression (least squares) of the knot bids."""
        knots = parameters.new_tensor(self.knots)
        clamped = parameters.clamp(0.0, self.max_multiplier)
        return isotonic(clamped * knots) / knots

    def support(self, values: torch.Tensor) -> torch.Tensor:
        """Which parameters each value's bid depends on [B, N, P] (bool): knot j moves only the
        bids of values strictly between knots j - 1 and j + 1 (the first also those below it,
        the last those above it), so the learner scores knot j's perturbations on those alone."""
        knots = values.new_tensor(self.knots)  # [J]
        lower = torch.cat([knots.new_tensor([-torch.inf]), knots[:-1]])  # [J] v_(j-1)
        upper = torch.cat([knots[1:], knots.new_tensor([torch.inf])])  # [J] v_(j+1)
        v = values.unsqueeze(2)  # [B, N, 1]
        return (v > lower) & (v < upper)

    def bids(
        self, parameters: torch.Tensor, values: torch.Tensor, seat_strategy: torch.Tensor
    ) -> torch.Tensor:
        """Bids [B, N, C] of values [B, N] under parameters [C, S, P]."""
        _check_parameters(parameters, self.size, "piecewise bid function")
        knots = values.new_tensor(self.knots)  # [J]
        seat = _per_seat(parameters.to(values), seat_strategy)  # [N, C, J]
        knot_bids = seat * knots  # [N, C, J]
        # Segment j covers [v_j, v_(j+1)); below v_1 and above v_J the multiplier is constant.
        right = torch.searchsorted(knots, values.contiguous(), right=True)  # [B, N] in 0..J
        left = (right - 1).clamp(min=0)
        right = right.clamp(max=len(self.knots) - 1)
        n_seats = values.shape[1]
        seats = torch.arange(n_seats, device=values.device)
        bid_left = knot_bids[seats, :, left]  # [B, N, C]
        bid_right = knot_bids[seats, :, right]
        v_left, v_right = knots[left].unsqueeze(2), knots[right].unsqueeze(2)  # [B, N, 1]
        width = (v_right - v_left).clamp(min=1e-300)
        weight = ((values.unsqueeze(2) - v_left) / width).clamp(0.0, 1.0)
        inside = bid_left + weight * (bid_right - bid_left)
        below = values < knots[0]
        above = values >= knots[-1]
        first = seat[:, :, 0].unsqueeze(0) * values.unsqueeze(2)  # [B, N, C]
        last = seat[:, :, -1].unsqueeze(0) * values.unsqueeze(2)
        bids = torch.where(below.unsqueeze(2), first, torch.where(above.unsqueeze(2), last, inside))
        # The advanced indexing above lays [B, N, C] out permuted; consumers binary-search it.
        return bids.contiguous()


@dataclass(frozen=True)
class MonotoneNetworkBid:
    """A small monotone network; see the module docstring. `scale` is a typical value."""

    hidden: int = 8
    scale: float = 1.0

    def __post_init__(self) -> None:
        if self.hidden < 1 or not (math.isfinite(self.scale) and self.scale > 0):
            raise ValueError(
                f"network: expected hidden >= 1 and scale > 0, got {self.hidden!r}, {self.scale!r}"
            )

    @property
    def size(self) -> int:
        return 1 + 3 * self.hidden

    def initial(self, multiplier: float, strategies: int) -> torch.Tensor:
        """Parameters [S, P] close to the constant multiplier `multiplier` (the hidden units
        start small and spread over the value range)."""
        hidden = self.hidden
        linear = math.log(math.expm1(max(multiplier, 1e-6)))  # softplus^-1
        amplitude = torch.full((hidden,), -6.0, dtype=torch.float64)  # softplus(-6) ~ 0.0025
        slope = torch.full((hidden,), math.log(math.expm1(4.0)), dtype=torch.float64)
        offset = -4.0 * torch.linspace(0.0, 1.0, hidden, dtype=torch.float64)
        one = torch.cat([torch.tensor([linear], dtype=torch.float64), amplitude, slope, offset])
        return one.expand(strategies, -1).clone()

    def support(self, values: torch.Tensor) -> torch.Tensor:
        """Which parameters each value's bid depends on [B, N, P]: all of them."""
        return values.new_ones((*values.shape, self.size), dtype=torch.bool)

    def project(self, parameters: torch.Tensor) -> torch.Tensor:
        """Every parameter vector is monotone already."""
        return parameters

    def feasible(self, parameters: torch.Tensor) -> torch.Tensor:
        """Every parameter vector bids >= 0 already."""
        return parameters

    def bids(
        self, parameters: torch.Tensor, values: torch.Tensor, seat_strategy: torch.Tensor
    ) -> torch.Tensor:
        """Bids [B, N, C] of values [B, N] under parameters [C, S, P]."""
        _check_parameters(parameters, self.size, "network bid function")
        seat = _per_seat(parameters.to(values), seat_strategy)  # [N, C, P]
        hidden = self.hidden
        linear = torch.nn.functional.softplus(seat[:, :, 0])  # [N, C]
        amplitude = torch.nn.functional.softplus(seat[:, :, 1 : 1 + hidden])  # [N, C, H]
        slope = torch.nn.functional.softplus(seat[:, :, 1 + hidden : 1 + 2 * hidden])
        offset = seat[:, :, 1 + 2 * hidden :]
        x = values.unsqueeze(2).unsqueeze(3) / self.scale  # [B, N, 1, 1]
        units = torch.sigmoid(slope * x + offset) - torch.sigmoid(offset)  # [B, N, C, H]
        return (linear * values.unsqueeze(2) + (amplitude * units).sum(3)).contiguous()


BidFunction = PiecewiseLinearBid | MonotoneNetworkBid


def isotonic(y: torch.Tensor) -> torch.Tensor:
    """The least-squares nondecreasing fit of y [..., J] along its last axis, by the min-max
    formula fit_j = max_(i <= j) min_(k >= j) mean(y_i..y_k) (Barlow et al., Statistical
    Inference under Order Restrictions, 1972, theorem 1.4): O(J^3), batched, for small J."""
    size = y.shape[-1]
    total = torch.nn.functional.pad(y.cumsum(-1), (1, 0))  # [..., J + 1]
    i = torch.arange(size, device=y.device)
    count = (i.view(1, -1) - i.view(-1, 1) + 1).to(y)  # [i, k]: k - i + 1
    mean = (total[..., 1:].unsqueeze(-2) - total[..., :-1].unsqueeze(-1)) / count.clamp(min=1)
    mean = torch.where(count > 0, mean, torch.inf)  # [..., i, k], only k >= i
    # min over k >= j of mean[i, k]: a reversed cumulative minimum along k.
    tail_min = mean.flip(-1).cummin(-1).values.flip(-1)  # [..., i, j]
    lower = i.view(-1, 1) <= i.view(1, -1)  # i <= j
    return torch.where(lower, tail_min, -torch.inf).amax(dim=-2)


def make_bid_function(kind: str, value_quantile, *, knots: int = 10, hidden: int = 8):
    """The bid function `kind` ("piecewise" or "network") for values with quantile function
    `value_quantile` (knots at the quantiles j / J, the last at 0.995 for unbounded values)."""
    if kind == "piecewise":
        if knots < 1:
            raise ValueError(f"knots: expected an integer >= 1, got {knots!r}")
        levels = [(j + 1) / knots for j in range(knots)]
        levels[-1] = min(levels[-1], 0.995) if not _bounded(value_quantile) else levels[-1]
        return PiecewiseLinearBid(tuple(float(value_quantile(q)) for q in levels))
    if kind == "network":
        return MonotoneNetworkBid(hidden, scale=float(value_quantile(0.5)) * 2.0)
    raise ValueError(f"strategy: expected one of {', '.join(STRATEGY_KINDS)}, got {kind!r}")


def _bounded(value_quantile) -> bool:
    return math.isfinite(float(value_quantile(1.0)))
