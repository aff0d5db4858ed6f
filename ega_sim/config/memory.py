"""Refuse, when a scenario is loaded, sizes that this machine's memory cannot hold.

A scenario's size keys (bidders, POIs, users, dimensions) set the size of the tensors the
simulator allocates; past what memory holds they would end in an allocator traceback deep in
a run. The estimates below count the float64 entries (8 bytes) of the largest tensors only --
the world's tables, plus one unit of work: one request, or one chunk of users while the
market's histories are drawn -- so they are lower bounds: a scenario that passes may still
need a smaller batch (`chunk_size`, fewer requests). One that fails cannot run at all.

The error names the key that drives the estimate: the one whose default value would shrink
it the most.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable

BYTES = 8  # float64
DENSE_POINTS = 64  # the dense misreport search's bids per bidder (metrics/regret.py)
HISTORY_CHUNK = 4_096  # users per chunk while histories are drawn (world/feed_market.py)


def physical_memory() -> int | None:
    """This machine's memory in bytes; None where the OS does not say (then nothing is
    refused)."""
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return None


def position_auction_bytes(n_bidders: int, n_slots: int) -> int:
    """One request: the bidders' views of their slots ([N, K], about 8 tensors), the misreport
    search ([N, C] with C up to DENSE_POINTS, about 4 tensors), values and qualities ([N])."""
    return BYTES * n_bidders * (8 * n_slots + 4 * DENSE_POINTS + 2)


def feed_market_bytes(market, requests) -> int:
    """The market's tables (POIs, advertisers' creatives, users and their histories), a chunk
    of users' scores against every POI while histories are drawn, and one request's scores
    against every POI plus its candidates' features."""
    n_advertisers = round(market.n_pois * market.advertiser_share)
    pois = market.n_pois * (2 * market.latent_dim + 8)
    creatives = n_advertisers * market.creatives_max * (2 * market.creative_dim + 2)
    users = market.n_users * (market.latent_dim + market.history_length + 4)
    history_chunk = min(HISTORY_CHUNK, market.n_users) * market.n_pois * 4
    request = 4 * market.n_pois + requests.candidate_ads * market.creatives_max * (
        market.latent_dim + market.creative_dim + 16
    )
    return BYTES * (pois + creatives + users + history_chunk + request)


def check_memory(
    estimate: Callable[[dict], int],
    candidates: dict[str, tuple[object, object]],
    fail: Callable[[str, str, object], Exception],
) -> None:
    """Raise fail(key, expected, got) when estimate({}) exceeds this machine's memory.

    `estimate(overrides)` gives the bytes with some keys set to other values; `candidates`
    maps each size key to (its value, its default). The key blamed is the one whose default
    shrinks the estimate the most.
    """
    memory = physical_memory()
    needed = estimate({})
    if memory is None or needed <= memory:
        return
    key = min(candidates, key=lambda name: estimate({name: candidates[name][1]}))
    raise fail(
        key,
        f"a size that fits in memory: this scenario needs at least {needed / 2**30:.3g} GiB "
        f"(its world and one request's largest tensors), this machine has "
        f"{memory / 2**30:.3g} GiB",
        candidates[key][0],
    )


def replaced(table, overrides: dict[str, object], prefix: str):
    """A copy of a config table with the overrides under `prefix.` applied."""
    mine = {key.removeprefix(prefix): value for key, value in overrides.items()}
    mine = {key: value for key, value in mine.items() if hasattr(table, key)}
    return dataclasses.replace(table, **mine) if mine else table
