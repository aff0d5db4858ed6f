"""Placing ranked ads among the fixed organic order of a feed."""

from __future__ import annotations

import torch


def place_ads(
    ad_order: torch.Tensor,
    n_ads_shown: torch.Tensor,
    ad_positions: tuple[int, ...],
    n_slots: int,
    n_candidate_ads: int,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Merge ranked ads into the fixed organic order.

    ad_order [B, J] holds candidate ad indices by rank; the first n_ads_shown [B] of them take
    the first ad positions (1-based) in rank order; organic items (candidate index N + m) fill
    every other slot in their fixed order, including ad positions left empty. Returns the
    candidate index of each slot [B, K] and the rank of the ad in each slot [B, K] (-1 organic).
    """
    batch = ad_order.shape[0]
    device = ad_order.device
    position = torch.arange(1, n_slots + 1, device=device)
    allowed = torch.isin(position, torch.tensor(ad_positions, device=device))  # [K]
    ad_rank = (allowed.long().cumsum(0) - 1).expand(batch, -1)  # rank an ad position would take
    is_ad = allowed & (ad_rank < n_ads_shown.unsqueeze(1))  # [B, K]
    ads_before = is_ad.long().cumsum(1) - is_ad.long()
    organic_rank = torch.arange(n_slots, device=device) - ads_before  # [B, K]
    ad_item = ad_order.gather(1, ad_rank.clamp(0, ad_order.shape[1] - 1))
    slot_item = torch.where(is_ad, ad_item, n_candidate_ads + organic_rank)
    return slot_item, torch.where(is_ad, ad_rank, -1)
