"""Re-running a mechanism on misreports: each searched bidder alone bids each of its candidate
misreports, the others' bids fixed, and the whole mechanism (allocation and payment) re-runs on
the new profile; the world's click model scores the list.

Rows are request-major: request b's searched bidders in index order, each with its C candidate
bids. A mechanism that runs several bid profiles of one request at once (`run_searches`: the
generative allocators, which share the encoder, the partial lists and the reward model's scores
between a request's misreports) gets each request's profiles in one call; any other mechanism
gets them as independent requests (`run`). Either way the chunk of requests per call is sized
by the mechanism's `rerun_rows`.
"""

from __future__ import annotations

import torch

from ega_sim.mechanisms.base import per_bidder

RERUN_ROWS = 32_768  # mechanism rows per re-run call: bounds memory, keeps caches warm


def searched_layout(searched: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The searched bidders of each request in index order, padded to the most searched:
    (bidder [B, W] long, valid [B, W] bool); W = N when every bidder is searched."""
    width = int(searched.sum(1).max()) if searched.numel() else 0
    order = torch.argsort((~searched).to(torch.int8), dim=1, stable=True)[:, :width]
    return order, searched.gather(1, order)


def deviation_profiles(bids, misreports, bidder, valid) -> torch.Tensor:
    """Bid profiles [B, W * C, N]: profile (j, c) of request b is bids[b] with bidder[b, j]
    bidding misreports[b, bidder[b, j], c] (the truthful bids where `valid` is False)."""
    width, n_candidates = bidder.shape[1], misreports.shape[2]
    profiles = bids.unsqueeze(1).repeat(1, width * n_candidates, 1)  # [B, W * C, N]
    own = bidder.repeat_interleave(n_candidates, dim=1)  # [B, W * C]
    own_misreport = misreports.gather(1, bidder.unsqueeze(2).expand(-1, -1, n_candidates))
    truthful = bids.gather(1, own)
    value = torch.where(
        valid.repeat_interleave(n_candidates, dim=1), own_misreport.flatten(1), truthful
    )
    return profiles.scatter(2, own.unsqueeze(2), value.unsqueeze(2))


def rerun_utility(
    mechanism,
    world,
    requests,
    bids: torch.Tensor,
    misreports: torch.Tensor,
    *,
    searched: torch.Tensor | None = None,
    context=None,
    with_model: bool = False,
):
    """u_i of bidder i bidding misreports[b, i, c] alone, by re-running the whole mechanism and
    the world's click model: [B, N, C], NaN for bidders not `searched` [B, N] (default: all).
    With `with_model`, also the utility under the mechanism's own CTRs of the allocation
    (`slot_ctr_model`): (truth, model). The reference path, and the only one where clicks
    depend on the whole list. A mechanism with a bid-independent stage (`prepare`) computes it
    once per request."""
    batch, n_bidders, n_candidates = misreports.shape
    searched = torch.ones_like(bids, dtype=torch.bool) if searched is None else searched
    bidder, valid = searched_layout(searched)
    width = bidder.shape[1]
    truth = torch.full_like(misreports, torch.nan)
    model = torch.full_like(misreports, torch.nan)
    if width == 0:
        return (truth, model) if with_model else truth
    per_request = width * n_candidates
    if context is None and hasattr(mechanism, "prepare"):
        context = mechanism.prepare(requests)
    step = max(1, getattr(mechanism, "rerun_rows", RERUN_ROWS) // per_request)
    for start in range(0, batch, step):
        stop = min(batch, start + step)
        chunk = requests.slice(start, stop)
        profiles = deviation_profiles(
            bids[start:stop], misreports[start:stop], bidder[start:stop], valid[start:stop]
        )
        expanded = chunk.repeat_each(per_request)
        if hasattr(mechanism, "run_searches"):
            outcome = mechanism.run_searches(chunk, profiles)
        elif context is None:
            outcome = mechanism.run(expanded, profiles.reshape(-1, n_bidders))
        else:
            extra = context.slice(start, stop).repeat_each(per_request)
            outcome = mechanism.run(expanded, profiles.reshape(-1, n_bidders), context=extra)
        own = bidder[start:stop].repeat_interleave(n_candidates, dim=1).reshape(-1, 1)  # [rows, 1]
        shown = outcome.slot_bidder >= 0
        value = expanded.value_per_click.gather(1, outcome.slot_bidder.clamp(min=0))
        margin = torch.where(shown, value - outcome.price_per_click, 0.0)
        place = (stop - start, width, n_candidates)
        index = bidder[start:stop].unsqueeze(2).expand(-1, -1, n_candidates)
        mask = valid[start:stop].unsqueeze(2).expand(-1, -1, n_candidates)
        for target, clicks in (
            (truth, world.expected_clicks(expanded, outcome.allocation)),
            (model, outcome.allocation.slot_ctr_model if with_model else None),
        ):
            if clicks is None:
                continue
            utility = per_bidder(
                margin * torch.where(shown, clicks, 0.0), outcome.slot_bidder, n_bidders
            )
            own_utility = utility.gather(1, own).view(place)  # [b, W, C]
            part = target[start:stop]
            part.scatter_(1, index, torch.where(mask, own_utility, part.gather(1, index)))
    return (truth, model) if with_model else truth
