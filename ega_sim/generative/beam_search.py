"""Constrained beam search over a request's candidates, with token-level bidding.

Generation is restricted to the request's candidates: at every step only unused candidates are
allowed, organic items only in their fixed upstream order (the next one), and ads only while
fewer than `max_ads` are in the list. Each step runs one cached decoder step for all beams,
scores every allowed candidate with `token_bidding.item_log_probs` (its semantic ID code by code,
bids entering as log weights; none for the GR baseline), and keeps the `beams` best partial lists
per request. An ad's creative is then chosen by the MTP head among the ad's creatives.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ega_sim.generative.generator import Generator, level_lookup
from ega_sim.generative.items import ItemTables
from ega_sim.generative.token_bidding import BiddingConfig, item_log_probs, shared_prefix
from ega_sim.world.requests import MarketRequests


@dataclass(frozen=True)
class CandidateSet:
    """A request's N ads and M organic items as the generator sees them; I = N + M."""

    user: torch.Tensor  # [B] long
    poi_codes: torch.Tensor  # [B, I, Lp]
    features: torch.Tensor  # [B, I, F]
    is_ad: torch.Tensor  # [B, I] bool
    organic_rank: torch.Tensor  # [B, I] long, position in the organic order (-1 for ads)
    creative_codes: torch.Tensor  # [B, I, Cmax, Lc] (organic items: the organic code)
    creative_valid: torch.Tensor  # [B, I, Cmax] bool (organic items: creative 0 only)
    bids: torch.Tensor  # [B, I] per click, 0 for organic items

    @property
    def n_candidates(self) -> int:
        return self.poi_codes.shape[1]


def candidate_set(
    tables: ItemTables, observed, requests: MarketRequests, bids: torch.Tensor
) -> CandidateSet:
    """Assemble the generator's view of requests and bids [B, N]."""
    n_ads = requests.n_bidders
    ad_poi = observed.advertiser_poi[requests.ad_advertiser]
    poi = torch.cat([ad_poi, requests.organic_poi], dim=1)  # [B, I]
    batch, n_candidates = poi.shape
    is_ad = torch.arange(n_candidates, device=poi.device) < n_ads
    is_ad = is_ad.expand(batch, -1)
    organic_rank = torch.where(is_ad, -1, torch.arange(n_candidates, device=poi.device) - n_ads)
    ad_creatives = tables.creative_codes[requests.ad_advertiser]  # [B, N, Cmax, Lc]
    organic_creatives = tables.no_creative.expand(
        batch, requests.n_organic, ad_creatives.shape[2], -1
    )
    ad_valid = observed.creative_valid[requests.ad_advertiser]  # [B, N, Cmax]
    organic_valid = torch.zeros(
        (batch, requests.n_organic, ad_valid.shape[2]), dtype=torch.bool, device=poi.device
    )
    organic_valid[..., 0] = True
    return CandidateSet(
        user=requests.user,
        poi_codes=tables.poi_codes[poi],
        features=tables.poi_features[poi],
        is_ad=is_ad,
        organic_rank=organic_rank,
        creative_codes=torch.cat([ad_creatives, organic_creatives], dim=1),
        creative_valid=torch.cat([ad_valid, organic_valid], dim=1),
        bids=torch.cat([bids, torch.zeros_like(requests.organic_poi, dtype=bids.dtype)], dim=1),
    )


@dataclass(frozen=True)
class GeneratedLists:
    items: torch.Tensor  # [B, S, K] long candidate index (ads 0..N-1, organic N..)
    creative: torch.Tensor  # [B, S, K] long creative of each ad, -1 for organic items
    log_prob: torch.Tensor  # [B, S] the beam's total log probability (-inf: no such beam)
    item_log_z: torch.Tensor  # [B, S, K] log z of each item when it was chosen


@torch.no_grad()
def allowed_items(used, is_ad, organic_rank, ads_shown, max_ads) -> torch.Tensor:
    """[rows, I]: unused candidates; of the organic items only the first unused one in the
    fixed order; ads while fewer than max_ads are shown."""
    free_organic = torch.where(is_ad | used, torch.iinfo(torch.long).max, organic_rank)
    next_organic = free_organic.amin(dim=1, keepdim=True)
    return ~used & torch.where(
        is_ad, (ads_shown < max_ads).unsqueeze(1), organic_rank == next_organic
    )


def beam_search(
    generator: Generator,
    tables: ItemTables,
    candidates: CandidateSet,
    *,
    n_items: int,
    beams: int,
    max_ads: int,
    bidding: BiddingConfig | None,
    banned: torch.Tensor | None = None,
) -> GeneratedLists:
    """The `beams` most likely lists of `n_items` items per request (see module docstring).
    `banned` [B, I] removes candidates (the alignment's masked re-decode)."""
    batch, n_candidates = candidates.is_ad.shape
    rows = batch * beams
    request_of = torch.arange(batch, device=candidates.bids.device).repeat_interleave(beams)

    def per_beam(t: torch.Tensor) -> torch.Tensor:
        return t[request_of]

    user = candidates.user
    memory = generator.encode(
        tables.poi_codes[tables.user_history[user]],
        tables.poi_features[tables.user_history[user]],
        tables.user_features[user],
    )
    state, cache = generator.start_cache(memory, beams)
    heads = generator.poi_heads
    own_code = level_lookup(heads.code_embedding, candidates.poi_codes)  # [B, I, Lp, d]
    code_bias = heads.code_bias(candidates.poi_codes)  # [B, I, Lp]
    prefix = shared_prefix(candidates.poi_codes)  # [B, Lp + 1, I, I]
    bids = per_beam(candidates.bids)
    is_ad, organic_rank = per_beam(candidates.is_ad), per_beam(candidates.organic_rank)

    log_prob = torch.full((batch, beams), -torch.inf, device=bids.device)
    log_prob[:, 0] = 0.0
    used = torch.zeros((rows, n_candidates), dtype=torch.bool, device=bids.device)
    if banned is not None:
        used = per_beam(banned).clone()
    ads_shown = torch.zeros(rows, dtype=torch.long, device=bids.device)
    items = torch.zeros((rows, n_items), dtype=torch.long, device=bids.device)
    creatives = torch.full((rows, n_items), -1, dtype=torch.long, device=bids.device)
    item_log_z = torch.zeros((rows, n_items), device=bids.device)
    for step in range(n_items):
        allowed = allowed_items(used, is_ad, organic_rank, ads_shown, max_ads)
        scores = torch.einsum("bsd,bild->bsil", state.view(batch, beams, -1), own_code)
        scores = scores.reshape(rows, n_candidates, -1) + per_beam(code_bias)
        log_z = item_log_probs(scores, per_beam(prefix), bids, allowed, bidding)  # [rows, I]
        total = (log_prob.reshape(rows, 1) + log_z).view(batch, beams * n_candidates)
        best, flat = torch.topk(total, beams, dim=1)  # [B, S]
        parent = (
            flat // n_candidates + torch.arange(batch, device=flat.device).unsqueeze(1) * beams
        ).reshape(-1)
        chosen = (flat % n_candidates).reshape(-1)  # [rows]
        log_prob = best
        state = state[parent]
        cache = cache.reorder(parent)
        used, ads_shown = used[parent], ads_shown[parent]
        items, creatives, item_log_z = items[parent], creatives[parent], item_log_z[parent]
        chosen_log_z = log_z[parent, chosen]
        used[torch.arange(rows), chosen] = True
        chosen_is_ad = is_ad[torch.arange(rows), chosen]
        ads_shown = ads_shown + chosen_is_ad.long()
        items[:, step] = chosen
        item_log_z[:, step] = chosen_log_z
        creative, token = _choose_creative(generator, candidates, request_of, chosen, state)
        creatives[:, step] = torch.where(chosen_is_ad, creative, -1)
        state, cache = generator.step(token, cache)
    return GeneratedLists(
        items=items.view(batch, beams, n_items),
        creative=creatives.view(batch, beams, n_items),
        log_prob=log_prob,
        item_log_z=item_log_z.view(batch, beams, n_items),
    )


def _choose_creative(
    generator: Generator,
    candidates: CandidateSet,
    request_of: torch.Tensor,
    chosen: torch.Tensor,
    state: torch.Tensor,
) -> tuple[torch.Tensor, torch.Tensor]:
    """The MTP head's most likely creative of each chosen item, and the item's token [rows, d]."""
    poi_codes = candidates.poi_codes[request_of, chosen]  # [rows, Lp]
    features = candidates.features[request_of, chosen]
    creative_codes = candidates.creative_codes[request_of, chosen]  # [rows, Cmax, Lc]
    valid = candidates.creative_valid[request_of, chosen]  # [rows, Cmax]
    poi = generator.poi_embedding(poi_codes, features)
    creative_state = generator.creative_state(state, poi)  # [rows, d]
    logits = generator.creative_heads.logits(creative_state.unsqueeze(1), creative_codes)
    own = logits.gather(-1, creative_codes.unsqueeze(-1)).squeeze(-1).sum(-1)  # [rows, Cmax]
    creative = torch.where(valid, own, -torch.inf).argmax(dim=1)
    codes = creative_codes[torch.arange(len(creative)), creative]  # [rows, Lc]
    return creative, generator.item_embedding(poi_codes, features, codes)
