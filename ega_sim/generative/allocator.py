"""The generative allocators `ega` (EGA-V2: token-level bidding) and `gr` (the same generator
with bids ignored, the paper's generative-recommendation baseline), with their payment rules.

run(): beam search proposes `beams` lists per request (ega: bids enter the code softmax; gr:
they do not); the frozen reward model scores each list (each distinct list once); the best one
by
    sum over ads of bid x pCTR  +  ctr_weight x sum over all items of pCTR   (ega)
    sum over all items of pCTR                                              (gr)
is shown. Payment rules on a generated list, per click, never above the bid, each from how the
ad's own allocation responds to its bid, the others fixed (mechanisms/bid_response.py: the
allocator re-run on a grid of bids and bisected where the ad's outcome changes):
- gsp: the lowest bid at which the allocator still gives the ad the same or a better position
  (GSP's definition for any allocator; an ad that shades below it moves down);
- threshold: Myerson's lemma, (b ctr(b) - integral_0^b ctr(z) dz) / ctr(b), ctr the reward
  model's pCTR of the ad at the position the generator gives it at bid z: the incentive-
  compatible price of a monotone allocation, and the reference for the others;
- first: the bid;
- paynet: the learned payment network (ega_sim/payment/generated_rule.py).

run_searches() runs a request under several bid profiles at once (its misreports, in the regret
search) and gives, row for row, what run() gives each profile alone: the searches share the
encoder, the partial lists they have in common (beam_search.py) and the reward model's scores
of equal lists. For gsp and threshold, the regret search takes unilateral_utility(): one
own-bid response per (request, ad) serves all its misreports.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ega_sim.generative.beam_search import (
    beam_search,
    candidate_bids,
    candidate_set,
)
from ega_sim.generative.generator import Generator
from ega_sim.generative.items import ItemTables, ItemTokenizers
from ega_sim.generative.reward_model import PermutationAwareRM, list_inputs
from ega_sim.generative.token_bidding import BiddingConfig
from ega_sim.mechanisms.base import Outcome
from ega_sim.mechanisms.bid_response import own_bid_response
from ega_sim.mechanisms.feed_cascade import FeedAllocation
from ega_sim.mechanisms.mechanism import check_bid_values, check_bids
from ega_sim.payment.generated_rule import THRESHOLDS, generated_price
from ega_sim.world.feed_market import ObservedMarket
from ega_sim.world.requests import MarketRequests

GENERATIVE_PAYMENTS = ("gsp", "threshold", "first", "paynet")
# Payments priced from each ad's own-bid response, and the changes each tracks: GSP and the
# payment network's thresholds need the position only, Myerson's price the pCTR too.
RESPONSE_TRACK = {"gsp": "position", "threshold": "ctr", "paynet": "position"}
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
                f"{', '.join(GENERATIVE_PAYMENTS)} (the Clarke pivot would need the reward "
                "model's welfare of the list without each ad: not defined here)"
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
        self.prices_by_response = payment in RESPONSE_TRACK  # regret: unilateral_utility

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
        allocation = self._generate(requests, bids)[0]
        search_bids = bids.reshape(batch * searches, n_ads)
        shown, items = allocation.shown, allocation.slot_item
        if self.payment in RESPONSE_TRACK:
            rows = torch.arange(batch, device=bids.device).repeat_interleave(searches)
            price = self._response_prices(requests.select(rows), search_bids, allocation)
        else:
            price = search_bids.gather(1, items.clamp(max=n_ads - 1))
        return Outcome(allocation, torch.where(shown, price, 0.0))

    def _response_prices(self, requests, bids, allocation) -> torch.Tensor:
        """gsp, threshold or paynet prices [R, K] of the shown ads of rows bids [R, N]
        (requests [R]), each from its own-bid response on [0, its bid]."""
        row, slot = allocation.shown.nonzero(as_tuple=True)
        bidder = allocation.slot_bidder[row, slot]
        bid = bids[row, bidder]
        track = RESPONSE_TRACK[self.payment]
        response = own_bid_response(
            self, requests, bids, row, bidder, bid, bid.unsqueeze(1), track=track
        )
        prices = torch.zeros(allocation.slot_bidder.shape, dtype=bids.dtype, device=bids.device)
        if self.payment == "paynet":
            thresholds = prices.new_zeros((*prices.shape, THRESHOLDS))
            thresholds[row, slot] = self._thresholds(response, bid.unsqueeze(1))[:, 0]
            return self._network_prices(allocation, bids, thresholds)
        price = response.gsp_price if self.payment == "gsp" else response.threshold_price
        prices[row, slot] = price(bid.unsqueeze(1))[:, 0]
        return prices

    def _thresholds(self, response, bid: torch.Tensor) -> torch.Tensor:
        """[R, C, 2]: the lowest bids keeping the position at `bid` [R, C] and keeping the list."""
        in_list = torch.full_like(bid, self.scenario.n_slots - 1, dtype=torch.long)
        return torch.stack(
            [response.gsp_price(bid), response.lowest_bid_keeping(bid, in_list)], dim=2
        )

    def _network_prices(self, allocation, bids, thresholds) -> torch.Tensor:
        return generated_price(
            self.payment_network,
            allocation.slot_bidder,
            allocation.slot_ctr_model,
            allocation.slot_log_z,
            bids,
            self.max_ads,
            thresholds,
        )

    @torch.no_grad()
    def unilateral_utility(self, world, requests, bids, misreports, searched):
        """Utility [B, N, C] of each searched bidder [B, N] bidding misreports[b, i, c] alone,
        under the world's clicks and under the reward model's, and whether its allocation was
        monotone in its bid [B, N] (NaN-free only where searched): from one own-bid response
        per (request, bidder) on [0, its largest misreport], probing the misreports themselves
        (their lists are those of re-running the mechanism on them) - gsp, threshold, paynet.
        Prices equal re-running the mechanism within the response's resolution."""
        request, bidder = searched.nonzero(as_tuple=True)
        candidates = misreports[request, bidder]  # [R, C]
        n_candidates = candidates.shape[1]
        top = torch.maximum(candidates.amax(1), bids[request, bidder])
        response, lists = own_bid_response(
            self,
            requests,
            bids,
            request,
            bidder,
            top,
            candidates,
            track=RESPONSE_TRACK[self.payment],
            keep_extra=True,
        )
        rows = request.repeat_interleave(n_candidates)
        own = lists.slot_bidder == bidder.repeat_interleave(n_candidates).unsqueeze(1)  # [R*C, K]
        if self.payment == "paynet":  # the network's price at the ad's own slot of each list
            profiles = bids[rows].scatter(
                1, bidder.repeat_interleave(n_candidates).unsqueeze(1), candidates.reshape(-1, 1)
            )
            thresholds = self._thresholds(response, candidates).reshape(-1, 1, THRESHOLDS)
            every_slot = self._network_prices(
                lists, profiles, thresholds.expand(-1, own.shape[1], -1)
            )
            price = torch.where(own, every_slot, 0.0).sum(1).view(-1, n_candidates)
        else:
            price_of = response.gsp_price if self.payment == "gsp" else response.threshold_price
            price = price_of(candidates)  # [R, C]
        clicks = world.expected_clicks(requests.select(rows), lists)
        margin = (requests.value_per_click[request, bidder].unsqueeze(1) - price).reshape(-1)
        utility = torch.where(own, clicks, 0.0).sum(1) * margin
        utility_model = torch.where(own, lists.slot_ctr_model, 0.0).sum(1) * margin
        truth = torch.full_like(misreports, torch.nan)
        model = torch.full_like(misreports, torch.nan)
        truth[request, bidder] = utility.view(-1, n_candidates).to(truth.dtype)
        model[request, bidder] = utility_model.view(-1, n_candidates).to(model.dtype)
        monotone = torch.full(bids.shape, torch.nan, dtype=bids.dtype, device=bids.device)
        monotone[request, bidder] = response.monotone().to(bids.dtype)
        return truth, model, monotone
