"""Payment rules of rank-based allocators, as functions of a bidder's view of its own bid.

Each rule answers: what price per click does bidder i pay when it ends in slot j having bid b?
(`BidderView` holds its thresholds and competitors; see mechanisms/rank.py.) Organic items do
not exist here, losers pay nothing, and for gsp, vcg and threshold the price never exceeds the
bid, because the bidder's own threshold for its slot is at most its bid.
"""

from __future__ import annotations

import torch

from ega_sim.mechanisms.rank import BidderView


def _gather_slot(table: torch.Tensor, slot: torch.Tensor) -> torch.Tensor:
    """table [B, R, K] at slot [B, R, C] (-1 = no slot -> 0)."""
    price = table.gather(2, slot.clamp(min=0))
    return torch.where(slot >= 0, price, 0.0)


def _suffix_weighted(view: BidderView, per_slot: torch.Tensor) -> torch.Tensor:
    """sum_{l >= j} (alpha_l - alpha_{l+1}) * per_slot[..., l], for every j: [B, R, K]."""
    alpha = view.slot_ctr
    drop = alpha - torch.cat([alpha[1:], alpha.new_zeros(1)])  # alpha_l - alpha_{l+1}, [K]
    return (per_slot * drop).flip(-1).cumsum(-1).flip(-1)


class GSP:
    """Generalized second price: pay the lowest bid that keeps your slot (s_(k+1) / q_k)."""

    name = "gsp"
    from_ranking = True  # RankMechanism.run prices winners from the top K + 1 ranks

    def price_per_click(
        self, view: BidderView, slot: torch.Tensor, bid: torch.Tensor
    ) -> torch.Tensor:
        return _gather_slot(view.threshold, slot)


class VCG:
    """Clarke pivot under the allocator's CTR model: the clicks-weighted welfare the bidder
    takes from the bidders ranked below it. Expected payment of slot j is
    sum_{l >= j} (alpha_l - alpha_{l+1}) * max(q_(l+1) b_(l+1), q_i * reserve, reserve_score):
    the reserves act as the seller's standing bid, so prices never fall below them.
    """

    name = "vcg"
    from_ranking = True  # RankMechanism.run prices winners from the top K + 1 ranks

    def price_per_click(
        self, view: BidderView, slot: torch.Tensor, bid: torch.Tensor
    ) -> torch.Tensor:
        floor = (view.quality.unsqueeze(2) * view.reserve_per_click).clamp(min=view.reserve_score)
        expected = _suffix_weighted(view, torch.maximum(view.competitor_welfare, floor))
        per_click = expected / (view.slot_ctr * view.quality.unsqueeze(2))  # [B, R, K]
        return _gather_slot(per_click, slot)


class Threshold:
    """Myerson's lemma: expected payment = b x(b) - integral_0^b x(t) dt for the allocator's own
    clicks curve x(b), i.e. sum_{l >= j} (alpha_l - alpha_{l+1}) * q_i * t_l, paid per click.
    Equals VCG for `cascade`; gives the optimal auction for `myerson`.
    """

    name = "threshold"
    from_ranking = True  # RankMechanism.run prices winners from the top K + 1 ranks

    def price_per_click(
        self, view: BidderView, slot: torch.Tensor, bid: torch.Tensor
    ) -> torch.Tensor:
        per_click = _suffix_weighted(view, view.threshold) / view.slot_ctr  # [B, R, K]
        return _gather_slot(per_click, slot)


class FirstPrice:
    """Pay your bid per click: a sanity baseline that bidders gain by shading."""

    name = "first"
    from_ranking = True  # RankMechanism.run prices winners from the top K + 1 ranks

    def price_per_click(
        self, view: BidderView, slot: torch.Tensor, bid: torch.Tensor
    ) -> torch.Tensor:
        return torch.where(slot >= 0, bid, 0.0)


PAYMENT_RULES = {rule.name: rule for rule in (GSP, VCG, Threshold, FirstPrice)}
