"""Training batches for `paynet` on a rank allocator: fresh requests every step, each bidder's
truthful bid and misreports placed by its thresholds (no re-sort), priced by the network.

The allocator's own click model is separable (alpha_k x q_i), so where a bid puts the bidder
decides its clicks; in a position auction this is the ground truth, in the feed cascade it is
the cascade's pCTR model.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from ega_sim.mechanisms.mechanism import RankMechanism
from ega_sim.mechanisms.rank import BidderView
from ega_sim.metrics.regret import PAPER_MULTIPLIERS, MisreportSpec, candidate_misreports
from ega_sim.payment.deviations import Deviations, training_misreports
from ega_sim.world.position_auction import AuctionRequests

DrawAuctions = Callable[[int, torch.Generator], AuctionRequests]


class RankDeviationSource:
    """Deviations of a RankMechanism whose payment rule is the network (LearnedPayment)."""

    def __init__(
        self,
        mechanism: RankMechanism,
        draw_auctions: DrawAuctions,
        n_bidders: int,
        *,
        random_draws: int,
        gamma_max: float,
    ):
        self.mechanism = mechanism
        self.draw_auctions = draw_auctions
        self.n_bidders = n_bidders
        self.random_draws = random_draws
        self.gamma_max = gamma_max

    def _deviations(
        self, requests: AuctionRequests, misreports_of: Callable[[BidderView], torch.Tensor]
    ) -> Deviations:
        values = requests.value_per_click  # [B, N]
        with torch.no_grad():
            view = self.mechanism.bidder_views(requests, values)  # [B, N, K]
            bids = misreports_of(view)  # [B, N, C], column 0 truthful
            slot = view.slot_for_bid(bids)
            ctr = view.quality.unsqueeze(2) * view.slot_ctr[slot.clamp(min=0)]
            clicks = torch.where(slot >= 0, ctr, 0.0)
        price = self.mechanism.payment_rule.price_per_click(view, slot, bids)
        return Deviations(values, bids, clicks, price)

    def training_batch(self, size: int, generator: torch.Generator) -> Deviations:
        """Truthful bids, the paper's multipliers, uniform draws and a bid just above each
        threshold (the one-point exact candidates), for `size` fresh requests."""
        requests = self.draw_auctions(size, generator)
        spec = MisreportSpec("exact", gamma_max=self.gamma_max)

        def misreports(view: BidderView) -> torch.Tensor:
            exact = candidate_misreports(spec, requests, view.threshold)
            return training_misreports(
                requests.value_per_click,
                exact,
                multipliers=PAPER_MULTIPLIERS,
                random_draws=self.random_draws,
                gamma_max=self.gamma_max,
                generator=generator,
            )

        return self._deviations(requests, misreports)

    @torch.no_grad()
    def validation_batch(
        self, requests: AuctionRequests, spec: MisreportSpec, chunk: int = 512
    ) -> Deviations:
        """Truthful bids and the exact search of `spec` (interval_points bids per interval),
        computed `chunk` requests at a time to bound memory."""
        parts = []
        for start in range(0, requests.batch_size, chunk):
            part = requests.slice(start, start + chunk)

            def misreports(view: BidderView, part=part) -> torch.Tensor:
                exact = candidate_misreports(
                    spec, part, view.threshold, interval_points=spec.interval_points
                )
                return torch.cat([part.value_per_click.unsqueeze(2), exact], dim=2)

            parts.append(self._deviations(part, misreports))
        return Deviations.concatenate(parts)
