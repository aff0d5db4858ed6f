"""The generative allocators `ega` (EGA-V2: token-level bidding) and `gr` (the same generator
with bids ignored, the paper's generative-recommendation baseline), with their payment rules.

run(): beam search proposes `beams` lists per request (ega: bids enter the code softmax; gr:
they do not); the frozen reward model scores each list (each distinct list once); the best one
by
    sum over ads of bid x pCTR  +  ctr_weight x sum over all items of pCTR   (ega)
    sum over all items of pCTR                                              (gr)
is shown. Payment rules on a generated list, per click, never above the bid:
- gsp: rank the list's ads by eCPM = bid x pCTR (the RM's, at their positions); each pays the
  next one's eCPM / its own pCTR; the last pays the best eCPM among the request's other ads,
  each scored by the RM in the last ad's place (with its first creative);
- first: the bid;
- paynet: the learned payment network (ega_sim/payment/generated_rule.py).
VCG and threshold prices are not defined for a generated list.

run_searches() runs a request under several bid profiles at once (its misreports, in the regret
search) and gives, row for row, what run() gives each profile alone: the searches share the
encoder, the partial lists they have in common (beam_search.py), the reward model's scores of
equal lists and the GSP trial lists of equal (list, slot) pairs.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ega_sim.generative.beam_search import (
    GeneratedLists,
    beam_search,
    candidate_bids,
    candidate_set,
)
from ega_sim.generative.generator import Generator
from ega_sim.generative.items import ItemTables, ItemTokenizers
from ega_sim.generative.reward_model import PermutationAwareRM, list_inputs
from ega_sim.generative.token_bidding import BiddingConfig
from ega_sim.mechanisms.base import Outcome
from ega_sim.mechanisms.feed_cascade import FeedAllocation
from ega_sim.mechanisms.mechanism import check_bid_values, check_bids
from ega_sim.payment.generated_rule import generated_price
from ega_sim.world.feed_market import ObservedMarket
from ega_sim.world.requests import MarketRequests

GENERATIVE_PAYMENTS = ("gsp", "first", "paynet")
DEFAULT_BIDDING = BiddingConfig()


@dataclass(frozen=True)
class GeneratedAllocation(FeedAllocation):
    """A generated list, with what the payment network reads of each slot."""

    slot_log_z: torch.Tensor  # [B, K] log allocation probability of the item at its step


@dataclass(frozen=True)
class GenerativeParts:
    """Everything a generative allocator loads from its checkpoint."""

    platform: ObservedMarket
    tokenizers: ItemTokenizers
    tables: ItemTables
    generator: Generator
    reward_model: PermutationAwareRM

    def to(self, device: torch.device | str) -> GenerativeParts:
        """The parts on `device` (the models moved in place)."""
        return GenerativeParts(
            self.platform.to(device),
            self.tokenizers.to(device),
            self.tables.to(device),
            self.generator.to(device),
            self.reward_model.to(device),
        )


class GenerativeMechanism:
    regret_bidders = "shown"  # the paper measures the regret of the ads in the list

    def __init__(
        self,
        allocator_name: str,
        scenario,
        parts: GenerativeParts,
        payment: str,
        *,
        beams: int = 16,
        bidding: BiddingConfig = DEFAULT_BIDDING,
        ctr_weight: float = 1.0,
        payment_network=None,
    ):
        if allocator_name not in ("ega", "gr"):
            raise ValueError(
                f"generative allocator: expected 'ega' or 'gr', got {allocator_name!r}"
            )
        if payment not in GENERATIVE_PAYMENTS:
            raise ValueError(
                f"{allocator_name}/{payment}: a generated list is priced with "
                f"{' or '.join(GENERATIVE_PAYMENTS)} (VCG and threshold prices are "
                "not defined for it)"
            )
        if (payment == "paynet") != (payment_network is not None):
            raise ValueError(
                f"{allocator_name}/{payment}: a payment network goes with paynet, and only there"
            )
        self.name = f"{allocator_name}/{payment}"
        self.payment_network = payment_network
        self.uses_bids = allocator_name == "ega"
        self.scenario = scenario
        self.parts = parts
        self.payment = payment
        self.beams = beams
        self.bidding = bidding
        self.ctr_weight = ctr_weight
        self.individually_rational = True

    def __repr__(self) -> str:
        return f"GenerativeMechanism({self.name!r}, beams={self.beams})"

    @property
    def rerun_rows(self) -> int:
        """Bid profiles per call in the regret search and the payment network's cache. Memory
        grows with profiles x candidates (4,096 profiles of feed_small's 32 candidates peak
        near 1 GiB); a GPU takes eight times more."""
        device = self.parts.tables.poi_codes.device
        budget = 2**20 if device.type == "cuda" else 2**17  # profiles x candidates per call
        requests = self.scenario.requests
        return max(1, budget // (requests.candidate_ads + requests.organic_items))

    def list_clicks(
        self,
        requests: MarketRequests,
        request: torch.Tensor,
        items: torch.Tensor,
        creative: torch.Tensor,
    ) -> torch.Tensor:
        """The reward model's P(POI click) [E, K] (float64) of lists items [E, K] with
        creatives [E, K] shown to the user of request[e] [E] of `requests`."""
        n_ads = requests.n_bidders
        is_ad = items < n_ads
        advertiser = requests.ad_advertiser[request.unsqueeze(1), items.clamp(max=n_ads - 1)]
        organic = requests.organic_poi[request.unsqueeze(1), (items - n_ads).clamp(min=0)]
        poi = torch.where(is_ad, self.parts.platform.advertiser_poi[advertiser], organic)
        inputs = list_inputs(
            self.parts.platform,
            self.parts.tokenizers,
            requests.user[request],
            poi,
            torch.where(is_ad, advertiser, -1),
            creative,
        )
        p_poi, _, _ = self.parts.reward_model.predict(inputs)
        return p_poi.to(torch.float64)

    def score_lists(
        self, requests: MarketRequests, items: torch.Tensor, creative: torch.Tensor
    ) -> torch.Tensor:
        """The reward model's P(POI click) [B, S, K] of lists items [B, S, K]."""
        batch, lists, n_items = items.shape
        request = torch.arange(batch, device=items.device).repeat_interleave(lists)
        flat = self.list_clicks(
            requests, request, items.reshape(-1, n_items), creative.reshape(-1, n_items)
        )
        return flat.view(batch, lists, n_items)

    @property
    def max_ads(self) -> int:
        return len(self.scenario.requests.ad_positions)

    @torch.no_grad()
    def _generate(self, requests: MarketRequests, bids: torch.Tensor):
        """Beam search under bids [B, M, N] and the best list of each of the B x M searches:
        (allocation [B * M, K], the lists, the chosen pool entry [B * M])."""
        batch, searches, n_ads = bids.shape
        candidates = candidate_set(
            self.parts.tables, self.parts.platform, requests, bids[:, 0].float()
        )
        lists = beam_search(
            self.parts.generator,
            self.parts.tables,
            candidates,
            n_items=self.scenario.n_slots,
            beams=self.beams,
            max_ads=self.max_ads,
            bidding=self.bidding if self.uses_bids else None,
            bids=candidate_bids(bids.float(), requests.n_organic),
        )
        entry_clicks = self.list_clicks(
            requests, lists.entry_request, lists.entry_items, lists.entry_creative
        )  # [E, K]: every distinct list scored once
        p_poi = entry_clicks[lists.entry]  # [R, S, K]
        search_bids = bids.reshape(batch * searches, n_ads)
        is_ad = lists.items < n_ads
        list_bids = torch.where(
            is_ad,
            search_bids.unsqueeze(1)
            .expand(-1, self.beams, -1)
            .gather(2, lists.items.clamp(max=n_ads - 1)),
            0.0,
        )
        value = (
            p_poi.sum(-1)
            if not self.uses_bids
            else ((list_bids * p_poi).sum(-1) + self.ctr_weight * p_poi.sum(-1))
        )
        value = torch.where(lists.log_prob > -torch.inf, value, -torch.inf)
        best = value.argmax(dim=1)  # [R]
        rows = torch.arange(len(best), device=best.device)
        items, creative = lists.items[rows, best], lists.creative[rows, best]  # [R, K]
        ctr, shown = p_poi[rows, best], is_ad[rows, best]
        allocation = GeneratedAllocation(
            slot_bidder=torch.where(shown, items, -1),
            slot_ctr_model=torch.where(shown, ctr, 0.0),  # the RM's pCTR of each ad
            slot_item=items,
            slot_creative=creative,
            slot_log_z=lists.item_log_z[rows, best].to(ctr.dtype),
        )
        return allocation, lists, lists.entry[rows, best]

    @torch.no_grad()
    def allocate(self, requests: MarketRequests, bids: torch.Tensor) -> GeneratedAllocation:
        """The shown list of each request: beam search, then the best list by RM value."""
        return self._generate(requests, bids.unsqueeze(1))[0]

    @torch.no_grad()
    def allocate_searches(self, requests: MarketRequests, bids: torch.Tensor):
        """allocate() of each request b under every bid profile bids[b, m] [B, M, N]: an
        allocation of B * M rows (row b * M + m), each what allocate() gives alone."""
        return self._generate(requests, bids)[0]

    @torch.no_grad()
    def run(self, requests: MarketRequests, bids: torch.Tensor, context=None) -> Outcome:
        """Allocate and price a batch: bids [B, N] -> Outcome with [B, K] tensors."""
        check_bids(bids, requests)
        return self.run_searches(requests, bids.unsqueeze(1))

    @torch.no_grad()
    def run_searches(self, requests: MarketRequests, bids: torch.Tensor) -> Outcome:
        """run() of each request b under every bid profile bids[b, m] [B, M, N]: an Outcome of
        B * M rows (row b * M + m), each equal to run() on that profile alone."""
        expected = (requests.batch_size, requests.n_bidders)
        if bids.ndim != 3 or (bids.shape[0], bids.shape[2]) != expected:
            raise ValueError(f"bids: expected [B, M, N] with B, N = {expected}, got {bids.shape}")
        check_bid_values(bids)
        batch, searches, n_ads = bids.shape
        allocation, lists, chosen = self._generate(requests, bids)
        search_bids = bids.reshape(batch * searches, n_ads)
        shown, items = allocation.shown, allocation.slot_item
        if self.payment == "gsp":
            price = self._gsp(requests, search_bids, allocation, lists, chosen)
        elif self.payment == "paynet":
            price = generated_price(
                self.payment_network,
                allocation.slot_bidder,
                allocation.slot_ctr_model,
                allocation.slot_log_z,
                search_bids,
                self.max_ads,
            )
        else:
            price = search_bids.gather(1, items.clamp(max=n_ads - 1))
        return Outcome(allocation, torch.where(shown, price, 0.0))

    def _gsp(self, requests, bids, allocation, lists: GeneratedLists, chosen) -> torch.Tensor:
        """Per-click GSP prices [R, K] of the shown lists' ads (see the module docstring);
        entries of organic slots are meaningless and masked by the caller."""
        items, ctr, shown = allocation.slot_item, allocation.slot_ctr_model, allocation.shown
        n_ads, n_slots = bids.shape[1], items.shape[1]
        bid = bids.gather(1, items.clamp(max=n_ads - 1))  # [R, K]
        ecpm = torch.where(shown, bid * ctr, -torch.inf)
        order = torch.argsort(ecpm, dim=1, descending=True, stable=True)  # shown ads first
        sorted_ecpm = ecpm.gather(1, order)
        next_ecpm = torch.cat(
            [sorted_ecpm[:, 1:], torch.full_like(sorted_ecpm[:, :1], -torch.inf)], 1
        )
        last_rank = (shown.sum(1) - 1).clamp(min=0)  # [R]
        last_slot = order.gather(1, last_rank.unsqueeze(1)).squeeze(1)
        outside = self._best_outside_ecpm(requests, bids, items, lists, chosen, last_slot)  # [R]
        rank = torch.arange(n_slots, device=items.device)
        next_ecpm = torch.where(rank == last_rank.unsqueeze(1), outside.unsqueeze(1), next_ecpm)
        price_sorted = next_ecpm.clamp(min=0) / ctr.gather(1, order).clamp(min=1e-12)
        price = torch.zeros_like(price_sorted).scatter(1, order, price_sorted)
        return torch.minimum(price, bid)

    def _best_outside_ecpm(self, requests, bids, items, lists, chosen, slot) -> torch.Tensor:
        """Max over the ads not in the list of bid x RM pCTR in the list's `slot` [R] (0 if
        none), each ad scored in that place with its first creative; every distinct (list,
        slot) pair is scored once."""
        n_ads, n_slots = bids.shape[1], items.shape[1]
        unique, inverse = torch.unique(chosen * n_slots + slot, return_inverse=True)
        entry, at = unique // n_slots, unique % n_slots  # [U]
        ads = torch.arange(n_ads, device=items.device)
        trial = lists.entry_items[entry].unsqueeze(1).repeat(1, n_ads, 1)  # [U, N, K]
        outside = ~(trial == ads.view(1, -1, 1)).any(-1)  # [U, N] ads not in the list
        trial_creative = lists.entry_creative[entry].unsqueeze(1).repeat(1, n_ads, 1)
        place = at.view(-1, 1, 1).expand(-1, n_ads, 1)
        trial.scatter_(2, place, ads.view(1, -1, 1).expand(len(unique), -1, 1))
        trial_creative.scatter_(2, place, torch.zeros_like(place))
        request = lists.entry_request[entry].unsqueeze(1).expand(-1, n_ads)
        at_slot = torch.zeros((len(unique), n_ads), dtype=torch.float64, device=items.device)
        p_poi = self.list_clicks(
            requests, request[outside], trial[outside], trial_creative[outside]
        )  # [outside ads, K]: only the ads left out are scored
        at_slot[outside] = p_poi.gather(1, at.unsqueeze(1).expand(-1, n_ads)[outside].unsqueeze(1))[
            :, 0
        ]
        at_slot = at_slot[inverse]  # [R, N]
        in_list = ~outside[inverse]
        ecpm = torch.where(in_list, 0.0, bids * at_slot)
        return ecpm.amax(dim=1).clamp(min=0)
