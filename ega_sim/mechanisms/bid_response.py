"""How a bidder's allocation responds to its own bid, the others' bids fixed, for any allocator:
found by re-running the allocator, and what prices follow from it.

For each (request, bidder) pair, the allocator is re-run at GRID_POINTS bids evenly spaced on
[0, top] and at any extra bids asked for (the bidder's own bid, a regret search's misreports);
wherever two neighbouring bids give the bidder different outcomes (its list position, or the
allocator's own pCTR of it there), the change is located by BISECTIONS halvings. A change is
placed at the upper end of its final bracket, so the response is known to within
top / ((GRID_POINTS - 1) x 2^BISECTIONS) of the bid (`resolution`): 1.2e-4 of `top` with the
defaults. A bracket whose upper end differs from the next probe holds a further change, found
in the next round (up to MAX_ROUNDS). GSP needs only the changes of position; Myerson's price
every change of the pCTR too (`track="ctr"`), which costs more re-runs on generated lists,
whose rest moves. A change and its reversal inside one grid interval (a non-monotone blip
between two probes that agree) is not seen: a finer grid finds it.

From the response (the others fixed):
- GSP for any allocator: the lowest bid at which the allocator still gives the bidder the same
  or a better position (the connected stretch of bids below its own that keeps it there); on
  rank-by-score this is the next score / own quality (tested, up to the resolution).
- Myerson's threshold price: (b ctr(b) - integral_0^b ctr(z) dz) / ctr(b), ctr the allocator's
  own pCTR of the bidder as a function of its bid (Myerson 1981, lemma 3; Archer and Tardos
  2001 for per-click prices); on rank-by-score it is the threshold (= VCG) rule (tested).
- Whether the allocation is monotone in the own bid (a position never worsens and the pCTR never
  falls as the bid rises): the premise of both.

Re-runs go through the mechanism's batched path: a request's probe profiles together
(`allocate_searches`, which shares a generative allocator's beam search), else `allocate`.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

GRID_POINTS = 9
BISECTIONS = 10
MAX_ROUNDS = 8  # brackets re-searched for a further change inside them, at most this often


@dataclass(frozen=True)
class BidResponse:
    """The responses of R (request, bidder) pairs on [0, top], P probe bids each, sorted: the
    outcome at bid z is the one of the largest probe <= z."""

    bid: torch.Tensor  # [R, P] probe bids, sorted
    position: torch.Tensor  # [R, P] long: the bidder's list position, K when not shown
    ctr: torch.Tensor  # [R, P] the allocator's own pCTR of the bidder there, 0 when not shown
    top: torch.Tensor  # [R] the range searched is [0, top]

    @property
    def resolution(self) -> torch.Tensor:
        """[R] how far a located change can lie below the probe it is placed at."""
        return self.top / ((GRID_POINTS - 1) * 2**BISECTIONS)

    def at(self, bid: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(position, ctr) at bids [R, C] (each within [0, top])."""
        index = (torch.searchsorted(self.bid, bid, right=True) - 1).clamp(min=0)
        return self.position.gather(1, index), self.ctr.gather(1, index)

    def gsp_price(self, bid: torch.Tensor) -> torch.Tensor:
        """Per click [R, C]: the lowest bid at which the position is still the one at `bid` or
        better (0 when even a bid of 0 keeps it), over the connected stretch below `bid`."""
        return self.lowest_bid_keeping(bid, self.at(bid)[0])

    def lowest_bid_keeping(self, bid: torch.Tensor, position: torch.Tensor) -> torch.Tensor:
        """[R, C]: the lowest bid from which up to `bid` the position stays `position` [R, C] or
        better (0 when even a bid of 0 does; `bid` itself when it does not)."""
        below = self.bid.unsqueeze(1) <= bid.unsqueeze(2)  # [R, C, P]
        worse = below & (self.position.unsqueeze(1) > position.unsqueeze(2))
        # The last probe below `bid` with a worse position; the price is the next probe.
        last_worse = torch.where(worse, torch.arange(self.bid.shape[1], device=bid.device), -1)
        index = last_worse.amax(dim=2) + 1  # [R, C], 0 when none is worse
        price = torch.where(
            index > 0, self.bid.gather(1, index.clamp(max=self.bid.shape[1] - 1)), 0.0
        )
        return torch.minimum(price, bid)

    def threshold_price(self, bid: torch.Tensor) -> torch.Tensor:
        """Per click [R, C]: Myerson's (b ctr(b) - integral_0^b ctr) / ctr(b); 0 where not
        shown."""
        _, ctr_at = self.at(bid)
        start = self.bid.unsqueeze(1)  # [R, 1, P]
        stop = torch.cat([self.bid[:, 1:], self.bid[:, -1:]], dim=1).unsqueeze(1)
        stop = torch.where(
            torch.arange(self.bid.shape[1], device=bid.device) == self.bid.shape[1] - 1,
            torch.inf,
            stop,
        )
        width = (torch.minimum(stop, bid.unsqueeze(2)) - start).clamp(min=0)  # [R, C, P]
        area = (width * self.ctr.unsqueeze(1)).sum(2)  # integral of ctr over [0, bid]
        price = (bid * ctr_at - area) / ctr_at.clamp(min=1e-300)
        return torch.where(ctr_at > 0, price.clamp(min=0.0), 0.0)

    def monotone(self) -> torch.Tensor:
        """[R] bool: the position never worsens and the pCTR never falls as the bid rises."""
        position_ok = (self.position.diff(dim=1) <= 0).all(1)
        ctr_ok = (self.ctr.diff(dim=1) >= -1e-12).all(1)
        return position_ok & ctr_ok


def allocate_profiles(mechanism, requests, request: torch.Tensor, profiles: torch.Tensor):
    """The allocation of each profile [P, N] of requests `request` [P]: one batched call per
    chunk, a request's profiles together where the mechanism can (`allocate_searches`)."""
    if not hasattr(mechanism, "allocate_searches"):
        return mechanism.allocator.allocate(requests.select(request), profiles)
    present, local = torch.unique(request, return_inverse=True)
    count = torch.bincount(local, minlength=len(present))
    order = torch.argsort(local, stable=True)
    place = torch.empty_like(local)
    place[order] = (
        torch.arange(len(local), device=local.device) - (count.cumsum(0) - count)[local[order]]
    )
    width = int(count.max())
    first = profiles[order[count.cumsum(0) - count]]  # [U, N] each request's first profile
    padded = first.unsqueeze(1).repeat(1, width, 1)  # padding: a copy, nearly free in the pool
    padded[local, place] = profiles
    allocation = mechanism.allocate_searches(requests.select(present), padded)
    rows = local * width + place
    return type(allocation)(
        **{name: getattr(allocation, name)[rows] for name in allocation.__dataclass_fields__}
    )


def own_bid_response(
    mechanism,
    requests,
    bids: torch.Tensor,
    request: torch.Tensor,
    bidder: torch.Tensor,
    top: torch.Tensor,
    extra: torch.Tensor | None = None,
    *,
    track: str = "position",
    keep_extra: bool = False,
):
    """The BidResponse of pairs (request [R], bidder [R]) on [0, top [R]] (module docstring),
    probing the `extra` bids [R, E] too. `track`: which changes are located by bisection,
    "position" (GSP's) or "ctr" (every change of the allocator's pCTR too: Myerson's). With
    `keep_extra`, also the allocation at each extra bid (whole lists, for the true clicks
    there): (response, allocation [R * E, K])."""
    if track not in ("position", "ctr"):
        raise ValueError(f"track: expected 'position' or 'ctr', got {track!r}")
    n_pairs = len(request)
    grid = torch.linspace(0.0, 1.0, GRID_POINTS, dtype=bids.dtype, device=bids.device)
    probes = [grid * top.unsqueeze(1)]
    if extra is not None:
        probes.append(extra.to(bids.dtype))
    probe = torch.cat(probes, dim=1)  # [R, P0]
    position, ctr, allocation = _outcome(mechanism, requests, bids, request, bidder, probe)
    kept = None
    if keep_extra and extra is not None:
        index = torch.arange(n_pairs * probe.shape[1], device=bids.device).view(n_pairs, -1)
        kept = type(allocation)(
            **{
                name: getattr(allocation, name)[index[:, GRID_POINTS:].reshape(-1)]
                for name in allocation.__dataclass_fields__
            }
        )
    bid, position, ctr = _sorted(probe, position, ctr)
    resolution = (top / ((GRID_POINTS - 1) * 2**BISECTIONS)).unsqueeze(1)  # [R, 1]
    for _ in range(MAX_ROUNDS):  # a round locates one change in every bracket that has one
        changes = position[:, 1:] != position[:, :-1]
        if track == "ctr":
            changes |= ctr[:, 1:] != ctr[:, :-1]
        changes &= torch.isfinite(bid[:, 1:]) & ((bid[:, 1:] - bid[:, :-1]) > resolution)
        if not bool(changes.any()):
            break
        brackets = (top, bid, position, ctr, changes)
        low, high = _bisect(mechanism, requests, bids, request, bidder, *brackets, track)
        bid = torch.cat(
            [
                bid,
                torch.where(changes, low[0], torch.inf),
                torch.where(changes, high[0], torch.inf),
            ],
            1,
        )
        position = torch.cat([position, low[1], high[1]], 1)
        ctr = torch.cat([ctr, low[2], high[2]], 1)
        bid, position, ctr = _sorted(bid, position, ctr)
        width = int(torch.isfinite(bid).sum(1).max())
        bid, position, ctr = bid[:, :width], position[:, :width], ctr[:, :width]
    # Rows with fewer points than the widest repeat their last point (at top) to fill.
    real = torch.isfinite(bid)
    last = (real.sum(1) - 1).unsqueeze(1)
    bid = torch.where(real, bid, top.unsqueeze(1).to(bid.dtype))
    position = torch.where(real, position, position.gather(1, last))
    ctr = torch.where(real, ctr, ctr.gather(1, last))
    response = BidResponse(bid, position, ctr, top)
    return (response, kept) if keep_extra else response


def _sorted(bid, position, ctr):
    order = torch.argsort(bid, dim=1, stable=True)
    return bid.gather(1, order), position.gather(1, order), ctr.gather(1, order)


def _bisect(mechanism, requests, bids, request, bidder, top, bid, position, ctr, changes, track):
    """Halve every bracket [bid_j, bid_j+1] where `changes` [R, P-1] until it is within the
    resolution (BISECTIONS times from a grid interval), keeping the left outcome at the low end:
    ((low, position, ctr), (high, position, ctr)) [R, P-1]."""
    low, high = bid[:, :-1].clone(), bid[:, 1:].clone()
    low_position, low_ctr = position[:, :-1].clone(), ctr[:, :-1].clone()
    high_position, high_ctr = position[:, 1:].clone(), ctr[:, 1:].clone()
    pair, interval = changes.nonzero(as_tuple=True)
    resolution = top / ((GRID_POINTS - 1) * 2**BISECTIONS)
    for _ in range(BISECTIONS):
        wide = (high[pair, interval] - low[pair, interval]) > resolution[pair]
        pair, interval = pair[wide], interval[wide]  # a bracket within the resolution is done
        if not len(pair):
            break
        middle = (low[pair, interval] + high[pair, interval]) / 2
        mid_position, mid_ctr, _ = _outcome(
            mechanism, requests, bids, request[pair], bidder[pair], middle.unsqueeze(1)
        )
        mid_position, mid_ctr = mid_position[:, 0], mid_ctr[:, 0]
        same = mid_position == low_position[pair, interval]
        if track == "ctr":
            same &= mid_ctr == low_ctr[pair, interval]
        low[pair, interval] = torch.where(same, middle, low[pair, interval])
        high[pair, interval] = torch.where(same, high[pair, interval], middle)
        high_position[pair, interval] = torch.where(
            same, high_position[pair, interval], mid_position
        )
        high_ctr[pair, interval] = torch.where(same, high_ctr[pair, interval], mid_ctr)
    return (low, low_position, low_ctr), (high, high_position, high_ctr)


def _outcome(mechanism, requests, bids, request, bidder, probe):
    """(position [R, P], ctr [R, P], allocation [R * P, K]) of bidder [R] bidding probe [R, P]
    alone in request [R]."""
    n_pairs, n_probes = probe.shape
    profiles = bids[request].unsqueeze(1).repeat(1, n_probes, 1)  # [R, P, N]
    profiles.scatter_(2, bidder.view(-1, 1, 1).expand(-1, n_probes, 1), probe.unsqueeze(2))
    row_request = request.repeat_interleave(n_probes)
    step = max(1, getattr(mechanism, "rerun_rows", 32_768))
    flat = profiles.reshape(-1, bids.shape[1])
    parts = [
        allocate_profiles(mechanism, requests, row_request[s : s + step], flat[s : s + step])
        for s in range(0, len(flat), step)
    ]
    allocation = type(parts[0])(
        **{
            name: torch.cat([getattr(part, name) for part in parts])
            for name in parts[0].__dataclass_fields__
        }
    )
    own = allocation.slot_bidder == bidder.repeat_interleave(n_probes).unsqueeze(1)  # [R*P, K]
    n_slots = own.shape[1]
    position = torch.where(own.any(1), own.to(torch.int8).argmax(1), n_slots)
    ctr = torch.where(own, allocation.slot_ctr_model, 0.0).sum(1)
    return position.view(n_pairs, n_probes), ctr.view(n_pairs, n_probes), allocation
