"""The generative allocators `ega` (EGA-V2: token-level bidding) and `gr` (the same generator
with bids ignored, the paper's generative-recommendation baseline), with their payment rules.

run(): beam search proposes `beams` lists per request (ega: bids enter the code softmax; gr:
they do not); the frozen reward model scores each list; the best one by
    sum over ads of bid x pCTR  +  ctr_weight x sum over all items of pCTR   (ega)
    sum over all items of pCTR                                              (gr)
is shown. Payment rules on a generated list, per click, never above the bid:
- gsp: rank the list's ads by eCPM = bid x pCTR (the RM's, at their positions); each pays the
  next one's eCPM / its own pCTR; the last pays the best eCPM among the request's other ads,
  each scored by the RM in the last ad's place (with its first creative);
- first: the bid;
- paynet: the learned payment network (ega_sim/payment/generated_rule.py).
VCG and threshold prices are not defined for a generated list.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ega_sim.generative.beam_search import beam_search, candidate_set
from ega_sim.generative.generator import Generator
from ega_sim.generative.items import ItemTables, ItemTokenizers
from ega_sim.generative.reward_model import PermutationAwareRM, list_inputs
from ega_sim.generative.token_bidding import BiddingConfig
from ega_sim.mechanisms.base import Outcome
from ega_sim.mechanisms.feed_cascade import FeedAllocation
from ega_sim.mechanisms.mechanism import check_bids
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


class GenerativeMechanism:
    rerun_rows = 2_048  # rows per re-run call in the regret search: beam search is heavy

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

    def _poi_and_advertiser(self, requests: MarketRequests, items: torch.Tensor):
        """POI and advertiser (-1 for organic items) of candidate indices items [B, S, K]."""
        n_ads = requests.n_bidders
        is_ad = items < n_ads
        lists = items.shape[1]
        advertiser = (
            requests.ad_advertiser.unsqueeze(1)
            .expand(-1, lists, -1)
            .gather(2, items.clamp(max=n_ads - 1))
        )
        organic = (
            requests.organic_poi.unsqueeze(1)
            .expand(-1, lists, -1)
            .gather(2, (items - n_ads).clamp(min=0))
        )
        poi = torch.where(is_ad, self.parts.platform.advertiser_poi[advertiser], organic)
        return poi, torch.where(is_ad, advertiser, -1)

    def score_lists(
        self, requests: MarketRequests, items: torch.Tensor, creative: torch.Tensor
    ) -> torch.Tensor:
        """The reward model's P(POI click) [B, S, K] of lists items [B, S, K]."""
        batch, beams, n_items = items.shape
        poi, advertiser = self._poi_and_advertiser(requests, items)
        user = requests.user.repeat_interleave(beams)
        inputs = list_inputs(
            self.parts.platform,
            self.parts.tokenizers,
            user,
            poi.reshape(-1, n_items),
            advertiser.reshape(-1, n_items),
            creative.reshape(-1, n_items),
        )
        p_poi, _, _ = self.parts.reward_model.predict(inputs)
        return p_poi.reshape(batch, beams, n_items).to(torch.float64)

    @property
    def max_ads(self) -> int:
        return len(self.scenario.requests.ad_positions)

    @torch.no_grad()
    def allocate(self, requests: MarketRequests, bids: torch.Tensor) -> GeneratedAllocation:
        """The shown list of each request: beam search, then the best list by RM value."""
        n_ads, n_slots = requests.n_bidders, self.scenario.n_slots
        candidates = candidate_set(self.parts.tables, self.parts.platform, requests, bids.float())
        lists = beam_search(
            self.parts.generator,
            self.parts.tables,
            candidates,
            n_items=n_slots,
            beams=self.beams,
            max_ads=self.max_ads,
            bidding=self.bidding if self.uses_bids else None,
        )
        p_poi = self.score_lists(requests, lists.items, lists.creative)  # [B, S, K]
        is_ad = lists.items < n_ads
        list_bids = torch.where(
            is_ad,
            bids.unsqueeze(1)
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
        best = value.argmax(dim=1)  # [B]
        rows = torch.arange(len(best), device=best.device)
        items, creative = lists.items[rows, best], lists.creative[rows, best]  # [B, K]
        ctr, shown = p_poi[rows, best], is_ad[rows, best]
        return GeneratedAllocation(
            slot_bidder=torch.where(shown, items, -1),
            slot_ctr_model=torch.where(shown, ctr, 0.0),  # the RM's pCTR of each ad
            slot_item=items,
            slot_creative=creative,
            slot_log_z=lists.item_log_z[rows, best].to(ctr.dtype),
        )

    @torch.no_grad()
    def run(self, requests: MarketRequests, bids: torch.Tensor, context=None) -> Outcome:
        """Allocate and price a batch: bids [B, N] -> Outcome with [B, K] tensors."""
        check_bids(bids, requests)
        allocation = self.allocate(requests, bids)
        shown, items = allocation.shown, allocation.slot_item
        if self.payment == "gsp":
            ctr, creative = allocation.slot_ctr_model, allocation.slot_creative
            price = self._gsp(requests, bids, items, creative, ctr, shown)
        elif self.payment == "paynet":
            price = generated_price(
                self.payment_network,
                allocation.slot_bidder,
                allocation.slot_ctr_model,
                allocation.slot_log_z,
                bids,
                self.max_ads,
            )
        else:
            price = bids.gather(1, items.clamp(max=requests.n_bidders - 1))
        return Outcome(allocation, torch.where(shown, price, 0.0))

    def _gsp(self, requests, bids, items, creative, ctr, shown) -> torch.Tensor:
        """Per-click GSP prices [B, K] of the shown lists' ads (see the module docstring);
        entries of organic slots are meaningless and masked by the caller."""
        n_ads, n_slots = requests.n_bidders, items.shape[1]
        bid = bids.gather(1, items.clamp(max=n_ads - 1))  # [B, K]
        ecpm = torch.where(shown, bid * ctr, -torch.inf)
        order = torch.argsort(ecpm, dim=1, descending=True, stable=True)  # shown ads first
        sorted_ecpm = ecpm.gather(1, order)
        next_ecpm = torch.cat(
            [sorted_ecpm[:, 1:], torch.full_like(sorted_ecpm[:, :1], -torch.inf)], 1
        )
        last_rank = (shown.sum(1) - 1).clamp(min=0)  # [B]
        last_slot = order.gather(1, last_rank.unsqueeze(1)).squeeze(1)
        outside = self._best_outside_ecpm(requests, bids, items, creative, last_slot)  # [B]
        rank = torch.arange(n_slots, device=items.device)
        next_ecpm = torch.where(rank == last_rank.unsqueeze(1), outside.unsqueeze(1), next_ecpm)
        price_sorted = next_ecpm.clamp(min=0) / ctr.gather(1, order).clamp(min=1e-12)
        price = torch.zeros_like(price_sorted).scatter(1, order, price_sorted)
        return torch.minimum(price, bid)

    def _best_outside_ecpm(self, requests, bids, items, creative, slot) -> torch.Tensor:
        """Max over the ads not shown of bid x RM pCTR in the list's `slot` [B] (0 if none)."""
        n_ads = requests.n_bidders
        batch = items.shape[0]
        candidates = torch.arange(n_ads, device=items.device).expand(batch, -1)  # [B, N]
        in_list = (items.unsqueeze(1) == candidates.unsqueeze(2)).any(-1)  # [B, N]
        trial = items.unsqueeze(1).repeat(1, n_ads, 1)  # [B, N, K]: ad n in the slot
        trial.scatter_(2, slot.view(batch, 1, 1).expand(-1, n_ads, 1), candidates.unsqueeze(2))
        trial_creative = creative.unsqueeze(1).repeat(1, n_ads, 1)
        trial_creative.scatter_(
            2,
            slot.view(batch, 1, 1).expand(-1, n_ads, 1),
            torch.zeros_like(candidates.unsqueeze(2)),
        )
        p_poi = self.score_lists(requests, trial, trial_creative)  # [B, N, K]
        at_slot = p_poi.gather(2, slot.view(batch, 1, 1).expand(-1, n_ads, 1)).squeeze(2)
        ecpm = torch.where(in_list, 0.0, bids * at_slot)
        return ecpm.amax(dim=1).clamp(min=0)
