"""`paynet` as the payment rule of a rank-by-score allocator (`cascade`, `myerson`, and the ad
auction inside the feed market's cascade).

What the network reads of bidder i facing slot j with bid b (all from its `BidderView`, the
others' bids fixed; value units divided by the network's value scale s):
- the slot, one-hot over the K slots (all zero when it wins none);
- its quality q_i and its own eCPM q_i b / s (the bid itself is the network's last input);
- the others' scores at each rank, s_(l) / s (0 where there is none);
- the thresholds of its own bid, t_l / b for l = 1..K (capped at RATIO_CAP): the bids at which
  its slot changes, which the allocator exposes. Myerson's lemma prices a monotone allocation
  from exactly these, but the network is not told how: GSP (t_j / b), VCG (a slot-dependent
  mix of t_j..t_K) and first price (1) are all in reach, and training picks by regret.
"""

from __future__ import annotations

import torch

from ega_sim.mechanisms.rank import BidderView
from ega_sim.payment.network import PaymentNetwork

RATIO_CAP = 4.0  # t_l / b above this says only "far out of reach"


def rank_feature_count(n_slots: int) -> int:
    return 3 * n_slots + 2


def rank_features(
    view: BidderView, slot: torch.Tensor, bid: torch.Tensor, value_scale: float
) -> torch.Tensor:
    """Features [B, R, C, 3K + 2] of the bidders of `view` ending in `slot` [B, R, C] having bid
    `bid` [B, R, C] (see the module docstring)."""
    n_slots = view.n_slots
    candidates = slot.shape[2]
    won = (slot >= 0).unsqueeze(3)
    slot_onehot = torch.nn.functional.one_hot(slot.clamp(min=0), n_slots) * won  # [B, R, C, K]
    quality = view.quality.unsqueeze(2).expand_as(bid)  # [B, R, C]
    own_ecpm = quality * bid / value_scale
    others = torch.where(
        view.competitor_score > -torch.inf, view.competitor_score / value_scale, 0.0
    )  # [B, R, K]
    others = others.unsqueeze(2).expand(-1, -1, candidates, -1)
    tiny = torch.finfo(bid.dtype).tiny
    ratio = view.threshold.unsqueeze(2) / bid.clamp(min=tiny).unsqueeze(3)  # [B, R, C, K]
    ratio = ratio.clamp(max=RATIO_CAP)
    scalars = torch.stack([quality, own_ecpm], dim=3)  # [B, R, C, 2]
    return torch.cat([slot_onehot.to(bid.dtype), scalars, others, ratio], dim=3)


class LearnedPayment:
    """The payment network as a rank allocator's payment rule (`price_per_click(view, ...)`).

    Gradients flow to the network when it is called with grad enabled (training); the
    mechanism's regret search only ever calls it under no_grad through `RankMechanism`.
    """

    name = "paynet"
    price_varies_within_slot = True  # a learned price may move with the bid inside a slot

    def __init__(self, network: PaymentNetwork):
        self.network = network

    def price_per_click(
        self, view: BidderView, slot: torch.Tensor, bid: torch.Tensor
    ) -> torch.Tensor:
        """Price per click [B, R, C] of ending in `slot` with `bid` (0 where no slot)."""
        features = rank_features(view, slot, bid, float(self.network.value_scale))
        with torch.set_grad_enabled(torch.is_grad_enabled() and self.network.training):
            price = self.network(features, bid)
        return torch.where(slot >= 0, price, 0.0)
