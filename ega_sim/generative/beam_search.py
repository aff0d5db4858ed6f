"""Constrained beam search over a request's candidates, with token-level bidding, for several
bid profiles of each request at once.

Generation is restricted to the request's candidates: at every step only unused candidates are
allowed, organic items only in their fixed upstream order (the next one), and ads only while
fewer than `max_ads` are in the list. Each step scores every allowed candidate with
`token_bidding.item_log_probs` (its semantic ID code by code, bids entering as log weights; none
for the GR baseline), keeps the `beams` best partial lists of each search, and lets the MTP head
choose an ad's creative among the ad's creatives.

One request may be searched under M bid profiles (its truthful bids and the misreports of the
regret search). The searches of a request share a pool of partial lists: a partial list that
several searches (or beams) reach is decoded once, its decoder state and cache shared, so a
misreport that leaves the beams as they were costs only its own softmax. The history encoder
and the cross-attention keys run once per request. Every search gives exactly what a search of
that profile alone gives.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import torch

from ega_sim.generative.generator import Generator
from ega_sim.generative.items import ItemTables
from ega_sim.generative.token_bidding import (
    BiddingConfig,
    CodeTree,
    code_tree,
    log_probs_from_levels,
    member_weights,
    prepare_levels,
)
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
    tree: CodeTree  # [B, Lp, I] the candidates' semantic-ID prefix groups

    @property
    def n_candidates(self) -> int:
        return self.poi_codes.shape[1]

    def rows(self, index: torch.Tensor) -> CandidateSet:
        """The candidate sets of requests `index` [R] (repeats allowed)."""
        fields = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        return CandidateSet(
            **{name: value[index] for name, value in fields.items() if name != "tree"},
            tree=self.tree.rows(index),
        )


def candidate_bids(bids: torch.Tensor, n_organic: int) -> torch.Tensor:
    """Bids [..., N] of the ads -> [..., I] with 0 for the organic items."""
    zeros = torch.zeros((*bids.shape[:-1], n_organic), dtype=bids.dtype, device=bids.device)
    return torch.cat([bids, zeros], dim=-1)


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
    poi_codes = tables.poi_codes[poi]
    return CandidateSet(
        user=requests.user,
        poi_codes=poi_codes,
        features=tables.poi_features[poi],
        is_ad=is_ad,
        organic_rank=organic_rank,
        creative_codes=torch.cat([ad_creatives, organic_creatives], dim=1),
        creative_valid=torch.cat([ad_valid, organic_valid], dim=1),
        bids=candidate_bids(bids, requests.n_organic),
        tree=code_tree(poi_codes),
    )


@dataclass(frozen=True)
class GeneratedLists:
    """The final beams of R = B x M searches (rows b * M + m), and the pool they point into."""

    items: torch.Tensor  # [R, S, K] long candidate index (ads 0..N-1, organic N..)
    creative: torch.Tensor  # [R, S, K] long creative of each ad, -1 for organic items
    log_prob: torch.Tensor  # [R, S] the beam's total log probability (-inf: no such beam)
    item_log_z: torch.Tensor  # [R, S, K] log z of each item when it was chosen
    entry: torch.Tensor  # [R, S] the pool entry of each beam: equal entries, equal lists
    entry_request: torch.Tensor  # [E] the request of each pool entry
    entry_items: torch.Tensor  # [E, K]
    entry_creative: torch.Tensor  # [E, K]


@torch.no_grad()
def allowed_items(used, is_ad, organic_rank, ads_shown, max_ads) -> torch.Tensor:
    """[rows, I]: unused candidates; of the organic items only the first unused one in the
    fixed order; ads while fewer than max_ads are shown."""
    free_organic = torch.where(is_ad | used, torch.iinfo(torch.long).max, organic_rank)
    next_organic = free_organic.amin(dim=1, keepdim=True)
    return ~used & torch.where(
        is_ad, (ads_shown < max_ads).unsqueeze(1), organic_rank == next_organic
    )


@torch.no_grad()
def beam_search(
    generator: Generator,
    tables: ItemTables,
    candidates: CandidateSet,
    *,
    n_items: int,
    beams: int,
    max_ads: int,
    bidding: BiddingConfig | None,
    bids: torch.Tensor | None = None,
    banned: torch.Tensor | None = None,
) -> GeneratedLists:
    """The `beams` most likely lists of `n_items` items of every search (module docstring).
    `bids` [B, M, I]: M bid profiles per request (default: candidates.bids, M = 1); `banned`
    [B, I] removes candidates (the alignment's masked re-decode)."""
    bids = candidates.bids.unsqueeze(1) if bids is None else bids
    batch, searches, n_candidates = bids.shape
    device = bids.device
    rows = batch * searches
    search_request = torch.arange(batch, device=device).repeat_interleave(searches)  # [R]
    row_bids = bids.reshape(rows, 1, n_candidates).expand(-1, beams, -1).reshape(-1, n_candidates)
    row_weights = None if bidding is None else member_weights(row_bids, bidding)
    heads = generator.poi_heads
    code_bias = heads.code_bias(candidates.poi_codes)  # [B, I, Lp]
    creative_bias = generator.creative_heads.code_bias(candidates.creative_codes)  # [B, I, C, Lc]

    # The pool starts with one empty list per request; every beam of its searches points there.
    user = candidates.user
    memory = generator.encode(
        tables.poi_codes[tables.user_history[user]],
        tables.poi_features[tables.user_history[user]],
        tables.user_features[user],
    )
    state, cache = generator.start_cache(memory)  # [B, d]: entries 0..B-1
    entry_request = torch.arange(batch, device=device)
    used = torch.zeros((batch, n_candidates), dtype=torch.bool, device=device)
    if banned is not None:
        used = banned.clone()
    ads_shown = torch.zeros(batch, dtype=torch.long, device=device)
    entry_items = torch.zeros((batch, 0), dtype=torch.long, device=device)
    entry_creative = torch.zeros((batch, 0), dtype=torch.long, device=device)
    pointer = search_request.unsqueeze(1).expand(-1, beams).contiguous()  # [R, S] pool entries
    log_prob = torch.full((rows, beams), -torch.inf, device=device)
    log_prob[:, 0] = 0.0
    item_log_z = torch.zeros((rows, beams, 0), device=device)
    for step in range(n_items):
        allowed = allowed_items(
            used,
            candidates.is_ad[entry_request],
            candidates.organic_rank[entry_request],
            ads_shown,
            max_ads,
        )  # [E, I]
        scores = heads.own_logits(
            state, candidates.poi_codes[entry_request], code_bias[entry_request]
        )  # [E, I, Lp]: each candidate's own code at each level
        # The bid-free part once per partial list, the bids' part once per (search, beam);
        # columns are each partial list's allowed candidates (Levels.candidate).
        levels = prepare_levels(scores, candidates.tree.rows(entry_request), allowed)
        flat_pointer = pointer.reshape(-1)
        if bidding is None:  # no bids: the same for every search at a partial list
            log_z = log_probs_from_levels(levels, None, None, n_candidates)[flat_pointer]
        else:
            log_z = log_probs_from_levels(
                levels.rows(flat_pointer), row_weights, bidding, n_candidates
            )  # [R * S, A]
        width = log_z.shape[1]
        total = (log_prob.reshape(-1, 1) + log_z).view(rows, beams * width)
        log_prob, flat = torch.topk(total, beams, dim=1)  # [R, S]
        parent_beam = flat // width
        chosen = levels.candidate[flat_pointer].view(rows, -1).gather(1, flat)
        chosen_log_z = log_z.view(rows, -1).gather(1, flat)
        item_log_z = torch.cat(
            [
                item_log_z.gather(1, parent_beam.unsqueeze(2).expand(-1, -1, step)),
                chosen_log_z.unsqueeze(2),
            ],
            dim=2,
        )
        # The new partial lists, each once: (parent entry, chosen candidate), sorted.
        key = pointer.gather(1, parent_beam) * n_candidates + chosen
        unique, inverse = torch.unique(key, return_inverse=True)
        parent, new = unique // n_candidates, unique % n_candidates
        pointer = inverse.view(rows, beams)
        entry_request = entry_request[parent]
        state = state[parent]
        creative, token = _choose_creative(
            generator, candidates, creative_bias, entry_request, new, state
        )
        new_is_ad = candidates.is_ad[entry_request, new]
        used = used[parent].scatter(1, new.unsqueeze(1), True)
        ads_shown = ads_shown[parent] + new_is_ad.long()
        entry_items = torch.cat([entry_items[parent], new.unsqueeze(1)], dim=1)
        entry_creative = torch.cat(
            [entry_creative[parent], torch.where(new_is_ad, creative, -1).unsqueeze(1)], dim=1
        )
        if step + 1 < n_items:  # the last token needs no decoding
            state, cache = generator.step(token, cache.reorder(parent))
    return GeneratedLists(
        items=entry_items[pointer],
        creative=entry_creative[pointer],
        log_prob=log_prob,
        item_log_z=item_log_z,
        entry=pointer,
        entry_request=entry_request,
        entry_items=entry_items,
        entry_creative=entry_creative,
    )


def _choose_creative(
    generator: Generator,
    candidates: CandidateSet,
    creative_bias: torch.Tensor,
    request: torch.Tensor,
    chosen: torch.Tensor,
    state: torch.Tensor,
) -> tuple[torch.Tensor, torch.Tensor]:
    """The MTP head's most likely creative of each chosen item, and the item's token [E, d]."""
    poi_codes = candidates.poi_codes[request, chosen]  # [E, Lp]
    features = candidates.features[request, chosen]
    creative_codes = candidates.creative_codes[request, chosen]  # [E, Cmax, Lc]
    valid = candidates.creative_valid[request, chosen]  # [E, Cmax]
    poi = generator.poi_embedding(poi_codes, features)
    creative_state = generator.creative_state(state, poi)  # [E, d]
    bias = creative_bias[request, chosen]  # [E, Cmax, Lc]
    own = generator.creative_heads.own_logits(creative_state, creative_codes, bias).sum(-1)
    creative = torch.where(valid, own, -torch.inf).argmax(dim=1)
    codes = creative_codes[torch.arange(len(creative), device=creative.device), creative]
    return creative, generator.item_embedding(poi_codes, features, codes)
