"""Feed-market metrics beyond the auction's: image clicks, feed CTR, GMV, and regret as the
mechanism's own CTR model sees it (the paper's way of computing it)."""

from __future__ import annotations

import torch

from ega_sim.metrics.outcomes import measure_outcome
from ega_sim.metrics.regret import MisreportSpec, ex_post_regret
from ega_sim.world.position_auction import SeparableClickModel


def model_regret(
    spec: MisreportSpec, mechanism, requests, bids: torch.Tensor, context
) -> tuple[torch.Tensor, torch.Tensor]:
    """Regret and truthful utility [B, N] of each candidate ad under the cascade's own model:
    separable clicks alpha_k x q in its ad auction. Ads that retrieval drops get 0 for both:
    no bid brings them back (retrieval does not read bids)."""
    auction_requests, auction_bids = mechanism.ad_auction(requests, bids, context)
    auction = mechanism.auction
    model_clicks = SeparableClickModel(
        torch.tensor(auction.allocator.slot_ctr_values, dtype=bids.dtype, device=bids.device)
    )
    outcome = auction.run(auction_requests, auction_bids)
    utility = measure_outcome(
        auction_requests,
        auction_bids,
        outcome,
        model_clicks.expected_clicks(auction_requests, outcome.allocation),
    ).utility  # [B, R]
    regret = ex_post_regret(spec, auction, model_clicks, auction_requests, auction_bids, utility)
    index = context.retrieved
    zeros = torch.zeros_like(bids)
    return zeros.scatter(1, index, regret), zeros.scatter(1, index, utility)
