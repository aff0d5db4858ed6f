"""`paynet` on a generated list (`ega`, `gr`): what the network reads of each shown ad.

Per slot k of a list (value units divided by the network's value scale s), the ad there gets:
- its position, one-hot over the K list slots;
- its pCTR under the reward model at that position, its allocation probability z_k (the
  generator's probability of the item at its decoding step), z_k x pCTR_k, and its eCPM
  bid x pCTR / s (its bid itself is the network's last input);
- the other ads of the list in list order: bid / s, pCTR and eCPM / s each (zeros in its own
  place and where the list has fewer ads);
- the OUTSIDE_BIDS highest bids / s of the request's candidate ads left out of the list: who it
  competes with for its place;
- how far its own bid can fall, the others fixed: the lowest bid / s that keeps its position
  and the lowest that keeps it in the list (its own-bid response, mechanisms/bid_response.py),
  what an incentive-compatible price of a monotone allocation is made of (Myerson's lemma).
"""

from __future__ import annotations

import torch

from ega_sim.payment.network import PaymentNetwork

OUTSIDE_BIDS = 4


THRESHOLDS = 2  # the lowest bids keeping the position and keeping the list


def generated_feature_count(n_slots: int, max_ads: int) -> int:
    return n_slots + 4 + 3 * max_ads + OUTSIDE_BIDS + THRESHOLDS


def generated_features(
    slot_bidder: torch.Tensor,
    slot_ctr: torch.Tensor,
    slot_log_z: torch.Tensor,
    bids: torch.Tensor,
    max_ads: int,
    value_scale: float,
    thresholds: torch.Tensor,
) -> torch.Tensor:
    """Features [B, K, F] of every slot of lists `slot_bidder` [B, K] (-1 organic) with the
    reward model's pCTR `slot_ctr` [B, K] (0 on organic slots), log z `slot_log_z` [B, K], the
    request's bids [B, N] and each ad's own-bid thresholds [B, K, 2] (the lowest bids keeping
    its position and the list); rows of organic slots are zeros."""
    batch, n_slots = slot_bidder.shape
    n_ads = bids.shape[1]
    shown = slot_bidder >= 0  # [B, K]
    bid = torch.where(shown, bids.gather(1, slot_bidder.clamp(min=0)), 0.0)  # [B, K]
    z = torch.where(shown, slot_log_z.exp(), 0.0)
    own = torch.stack([slot_ctr, z, z * slot_ctr, bid * slot_ctr / value_scale], dim=2)

    # The list's ads in list order: [B, A] slots (shown first, stable), then their figures.
    ad_slot = torch.argsort((~shown).to(torch.int8), dim=1, stable=True)[:, :max_ads]
    ad_present = shown.gather(1, ad_slot)  # [B, A]
    ad_bid = bid.gather(1, ad_slot)
    ad_ctr = slot_ctr.gather(1, ad_slot)
    ads = torch.stack([ad_bid / value_scale, ad_ctr, ad_bid * ad_ctr / value_scale], dim=2)
    ads = torch.where(ad_present.unsqueeze(2), ads, 0.0)  # [B, A, 3]
    is_self = ad_slot.unsqueeze(1) == torch.arange(n_slots, device=bids.device).view(1, -1, 1)
    others = torch.where(is_self.unsqueeze(3), 0.0, ads.unsqueeze(1))  # [B, K, A, 3]

    ad_index = torch.arange(n_ads, device=bids.device)
    in_list = ((slot_bidder.unsqueeze(2) == ad_index) & shown.unsqueeze(2)).any(dim=1)  # [B, N]
    outside = torch.where(in_list, 0.0, bids) / value_scale
    if n_ads < OUTSIDE_BIDS:
        outside = torch.nn.functional.pad(outside, (0, OUTSIDE_BIDS - n_ads))
    outside = torch.topk(outside, OUTSIDE_BIDS, dim=1).values  # [B, OUTSIDE_BIDS]

    position = torch.eye(n_slots, dtype=bids.dtype, device=bids.device).expand(batch, -1, -1)
    features = torch.cat(
        [
            position,
            own.to(bids.dtype),
            others.reshape(batch, n_slots, -1),
            outside.unsqueeze(1).expand(-1, n_slots, -1),
            thresholds.to(bids.dtype) / value_scale,
        ],
        dim=2,
    )
    return torch.where(shown.unsqueeze(2), features, 0.0)


def generated_price(
    network: PaymentNetwork,
    slot_bidder: torch.Tensor,
    slot_ctr: torch.Tensor,
    slot_log_z: torch.Tensor,
    bids: torch.Tensor,
    max_ads: int,
    thresholds: torch.Tensor,
) -> torch.Tensor:
    """Price per click [B, K] of the list's ads (0 on organic slots), at most their bids."""
    features = generated_features(
        slot_bidder, slot_ctr, slot_log_z, bids, max_ads, float(network.value_scale), thresholds
    )
    shown = slot_bidder >= 0
    bid = torch.where(shown, bids.gather(1, slot_bidder.clamp(min=0)), 0.0)
    return torch.where(shown, network(features, bid), 0.0)
